/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <sys/stat.h>

#include "cloud-store.h"
#include "tg-db.h"
#include "tg-log.h"
#include "tg-record.h"
#include "tg-time.h"

/* Copying a queued file goes through a buffer of this size. */
#define COPY_CHUNK ((size_t) 1024 * 1024)

enum {
        STMT_UPLOAD_SHA256,
        STMT_UPLOAD_INSERT,
        STMT_UPLOAD_DUPLICATE,
        STMT_RECORD_INSERT,
        STMT_DOWNLOAD_INSERT,
        STMT_DOWNLOAD_LIST,
        STMT_DOWNLOAD_GET,
        STMT_DOWNLOAD_FETCHED,
        STMT_DOWNLOAD_ACK,
        STMT_DOWNLOAD_DELIVERED,
        _STMT_MAX,
};

static const char *const statements[_STMT_MAX] = {
        [STMT_UPLOAD_SHA256] = "SELECT sha256 FROM uploads WHERE gateway = ?1 AND item_id = ?2",
        [STMT_UPLOAD_INSERT] = "INSERT INTO uploads (gateway, item_id, kind, records, size, sha256, key_id, "
                               "received_usec, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        [STMT_UPLOAD_DUPLICATE] = "UPDATE uploads SET duplicates = duplicates + 1 "
                                  "WHERE gateway = ?1 AND item_id = ?2",
        [STMT_RECORD_INSERT] = "INSERT OR IGNORE INTO records (gateway, id, timestamp_usec, topic, payload, "
                               "item_id, received_usec) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        [STMT_DOWNLOAD_INSERT] = "INSERT INTO downloads (gateway, kind, name, size, sha256, path, queued_usec) "
                                 "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        [STMT_DOWNLOAD_LIST] = "SELECT id, kind, name, size, sha256, path FROM downloads "
                               "WHERE gateway = ?1 AND acked_usec IS NULL ORDER BY id",
        [STMT_DOWNLOAD_GET] = "SELECT kind, name, size, sha256, path, acked_usec IS NOT NULL FROM downloads "
                              "WHERE gateway = ?1 AND id = ?2",
        [STMT_DOWNLOAD_FETCHED] = "UPDATE downloads SET fetches = fetches + 1 WHERE id = ?1",
        [STMT_DOWNLOAD_ACK] = "UPDATE downloads SET acked_usec = ?3 "
                              "WHERE gateway = ?1 AND id = ?2 AND acked_usec IS NULL",
        [STMT_DOWNLOAD_DELIVERED] = "UPDATE downloads SET delivered_usec = ?3 "
                                    "WHERE gateway = ?1 AND id = ?2 AND delivered_usec IS NULL",
};

/* Schema version 1. Column names and meanings are documented in
 * docs/cloud-simulator.md; tests query them. Integers are SQLite's signed
 * 64-bit: a u64 above 2^63-1 reads back negative. */
static const char schema_v1[] =
        "CREATE TABLE uploads ("
        "  gateway TEXT NOT NULL,"
        "  item_id INTEGER NOT NULL,"
        "  kind TEXT NOT NULL,"
        "  records INTEGER NOT NULL,"
        "  size INTEGER NOT NULL,"
        "  sha256 TEXT NOT NULL,"
        "  key_id TEXT NOT NULL,"
        "  received_usec INTEGER NOT NULL,"
        "  duplicates INTEGER NOT NULL DEFAULT 0,"
        "  data BLOB NOT NULL,"
        "  PRIMARY KEY (gateway, item_id));"
        "CREATE TABLE records ("
        "  gateway TEXT NOT NULL,"
        "  id INTEGER NOT NULL,"
        "  timestamp_usec INTEGER NOT NULL,"
        "  topic TEXT NOT NULL,"
        "  payload BLOB NOT NULL,"
        "  item_id INTEGER NOT NULL,"
        "  received_usec INTEGER NOT NULL,"
        "  PRIMARY KEY (gateway, id)) WITHOUT ROWID;"
        /* AUTOINCREMENT: ids never come back after a reset, because a
         * gateway remembers the ids it stored and answers "have". */
        "CREATE TABLE downloads ("
        "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  gateway TEXT NOT NULL,"
        "  kind TEXT NOT NULL,"
        "  name TEXT NOT NULL,"
        "  size INTEGER NOT NULL,"
        "  sha256 TEXT NOT NULL,"
        "  path TEXT NOT NULL,"
        "  queued_usec INTEGER NOT NULL,"
        "  fetches INTEGER NOT NULL DEFAULT 0,"
        "  acked_usec INTEGER,"
        "  delivered_usec INTEGER);"
        "CREATE INDEX downloads_pending ON downloads (gateway, acked_usec, id);";

static const char *const migrations[] = { schema_v1 };

struct CloudStore {
        sqlite3 *db;
        sqlite3_stmt *stmt[_STMT_MAX];
        char *files_dir; /* absolute */
        /* One writer at a time: every call is one transaction. */
        pthread_mutex_t lock;
};

static int64_t to_sql(uint64_t v) {
        return (int64_t) v;
}

static const char *strempty_sql(const unsigned char *s) {
        return s ? (const char *) s : "";
}

static char *strdup_or_empty(const unsigned char *s) {
        return strdup(strempty_sql(s));
}

static int store_exec(CloudStore *s, const char *sql) {
        int r = tg_db_exec(s->db, sql);

        if (r < 0)
                log_error("cloud-store: '%.40s' failed: %s", sql, sqlite3_errmsg(s->db));
        return r;
}

static int store_step_done(CloudStore *s, sqlite3_stmt *st) {
        int r = tg_db_step_done(st);

        if (r < 0)
                log_error("cloud-store: '%.60s' failed: %s", sqlite3_sql(st), sqlite3_errmsg(s->db));
        return r;
}

static int store_step_error(CloudStore *s, sqlite3_stmt *st, int rc) {
        log_error("cloud-store: '%.60s' failed: %s", sqlite3_sql(st), sqlite3_errmsg(s->db));
        return tg_db_errno(rc) ?: -EIO;
}

static int make_files_dir(const char *dir, char **ret) {
        char *abs;

        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return log_error_errno(errno, "cannot create the download directory %s", dir);
        abs = realpath(dir, NULL);
        if (!abs)
                return log_error_errno(errno, "cannot resolve the download directory %s", dir);
        *ret = abs;
        return 0;
}

int cloud_store_open(const char *db_path, const char *files_dir, CloudStore **ret) {
        _cleanup_(cloud_store_freep) CloudStore *s = NULL;
        _cleanup_free_ char *aside = NULL;
        int r;

        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        pthread_mutex_init(&s->lock, NULL);

        r = make_files_dir(files_dir, &s->files_dir);
        if (r < 0)
                return r;

        r = tg_db_open(db_path, NULL, migrations, ELEMENTSOF(migrations), &s->db, &aside);
        if (r == -EPROTO)
                return log_error_errno(r, "%s was made by a newer simulator (schema version > %zu); use a new file",
                                       db_path, ELEMENTSOF(migrations));
        if (r < 0)
                return log_error_errno(r, "cannot open database %s: %m", db_path);
        if (aside)
                log_warning("%s was not a database; moved aside to %s", db_path, aside);

        for (size_t i = 0; i < _STMT_MAX; i++) {
                r = tg_db_prepare(s->db, statements[i], &s->stmt[i]);
                if (r < 0)
                        return log_error_errno(r, "cannot prepare '%s' in %s: %s", statements[i], db_path,
                                               sqlite3_errmsg(s->db));
        }

        *ret = TAKE_PTR(s);
        return 0;
}

CloudStore *cloud_store_free(CloudStore *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < _STMT_MAX; i++)
                sqlite3_finalize(s->stmt[i]);
        if (s->db)
                sqlite3_close(s->db);
        pthread_mutex_destroy(&s->lock);
        free(s->files_dir);
        free(s);
        return NULL;
}

const char *cloud_store_files_dir(const CloudStore *s) {
        return s->files_dir;
}

void cloud_download_done(CloudDownload *d) {
        free(d->gateway);
        free(d->kind);
        free(d->name);
        free(d->path);
        *d = (CloudDownload) {};
}

CloudDownload *cloud_downloads_free(CloudDownload *d, size_t n) {
        for (size_t i = 0; i < n; i++)
                cloud_download_done(&d[i]);
        free(d);
        return NULL;
}

/* Run `fn` in one IMMEDIATE transaction under the store's lock. */
static int store_transaction(CloudStore *s, int (*fn)(CloudStore *s, void *userdata), void *userdata) {
        int r;

        pthread_mutex_lock(&s->lock);
        r = store_exec(s, "BEGIN IMMEDIATE");
        if (r >= 0) {
                r = fn(s, userdata);
                if (r >= 0)
                        r = store_exec(s, "COMMIT");
                if (r < 0)
                        (void) store_exec(s, "ROLLBACK");
        }
        pthread_mutex_unlock(&s->lock);
        return r;
}

/* ---- uploads ------------------------------------------------------------- */

typedef struct UploadTx {
        const CloudUpload *u;
        CloudUploadResult res;
} UploadTx;

/* The SHA-256 of a stored (gateway, item_id) into `sha`, or "" if none. */
static int upload_lookup(CloudStore *s, const CloudUpload *u, char sha[static SHA256_HEX_SIZE]) {
        sqlite3_stmt *st = s->stmt[STMT_UPLOAD_SHA256];
        int rc;

        sqlite3_bind_text(st, 1, u->gateway, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, to_sql(u->item_id));
        rc = sqlite3_step(st);
        sha[0] = '\0';
        if (rc == SQLITE_ROW && sqlite3_column_text(st, 0))
                snprintf(sha, SHA256_HEX_SIZE, "%s", (const char *) sqlite3_column_text(st, 0));
        (void) sqlite3_reset(st);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
                return store_step_error(s, st, rc);
        return 0;
}

static int insert_records(CloudStore *s, const CloudUpload *u, CloudUploadResult *res) {
        sqlite3_stmt *st = s->stmt[STMT_RECORD_INSERT];
        size_t offset = 0;
        int r;

        /* Bound once: the same for every record of the item. */
        sqlite3_bind_text(st, 1, u->gateway, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, to_sql(u->item_id));
        sqlite3_bind_int64(st, 7, to_sql(u->received_usec));

        while (offset < u->size) {
                TgRecord rec;

                if (tg_record_decode(u->data, u->size, &offset, TG_PAYLOAD_MAX, &rec) != TG_RECORD_OK)
                        return -EBADMSG; /* validated by the caller: cannot happen */

                sqlite3_bind_int64(st, 2, to_sql(rec.id));
                sqlite3_bind_int64(st, 3, to_sql(rec.timestamp_usec));
                sqlite3_bind_text(st, 4, rec.topic, rec.topic_len, SQLITE_STATIC);
                /* A NULL pointer would bind SQL NULL, not an empty blob. */
                sqlite3_bind_blob(st, 5, rec.payload_len > 0 ? (const void *) rec.payload : "",
                                  (int) rec.payload_len, SQLITE_STATIC);
                r = store_step_done(s, st);
                if (r < 0)
                        return r;
                if (sqlite3_changes(s->db) > 0)
                        res->records_stored++;
                else
                        res->records_duplicate++;
        }
        return 0;
}

static int insert_upload(CloudStore *s, const CloudUpload *u) {
        sqlite3_stmt *st = s->stmt[STMT_UPLOAD_INSERT];

        sqlite3_bind_text(st, 1, u->gateway, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, to_sql(u->item_id));
        sqlite3_bind_text(st, 3, u->kind, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, to_sql(u->records));
        sqlite3_bind_int64(st, 5, to_sql(u->size));
        sqlite3_bind_text(st, 6, u->sha256, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 7, u->key_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 8, to_sql(u->received_usec));
        sqlite3_bind_blob64(st, 9, u->size > 0 ? (const void *) u->data : "", u->size, SQLITE_STATIC);
        return store_step_done(s, st);
}

static int upload_tx(CloudStore *s, void *userdata) {
        UploadTx *tx = userdata;
        const CloudUpload *u = tx->u;
        char stored[SHA256_HEX_SIZE];
        sqlite3_stmt *st;
        int r;

        r = upload_lookup(s, u, stored);
        if (r < 0)
                return r;
        if (stored[0]) {
                if (!streq(stored, u->sha256)) {
                        tx->res.status = CLOUD_UPLOAD_CONFLICT;
                        return 0;
                }
                tx->res.status = CLOUD_UPLOAD_DUPLICATE;
                st = s->stmt[STMT_UPLOAD_DUPLICATE];
                sqlite3_bind_text(st, 1, u->gateway, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 2, to_sql(u->item_id));
                return store_step_done(s, st);
        }

        tx->res.status = CLOUD_UPLOAD_STORED;
        r = insert_upload(s, u);
        if (r < 0)
                return r;
        return u->tgr1 ? insert_records(s, u, &tx->res) : 0;
}

int cloud_store_upload(CloudStore *s, const CloudUpload *u, CloudUploadResult *ret) {
        UploadTx tx = { .u = u };
        int r;

        r = store_transaction(s, upload_tx, &tx);
        if (r < 0)
                return r;
        *ret = tx.res;
        return 0;
}

/* ---- downloads: queueing -------------------------------------------------- */

static int write_all(int fd, const void *data, size_t size) {
        const uint8_t *p = data;

        while (size > 0) {
                ssize_t n = write(fd, p, size);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                p += n;
                size -= (size_t) n;
        }
        return 0;
}

/* Copy `source_fd` to its end into `fd`, hashing on the way. */
static int copy_hashing(int source_fd, int fd, CloudSha256 *h, uint64_t *ret_size) {
        _cleanup_free_ uint8_t *buf = malloc(COPY_CHUNK);
        uint64_t total = 0;
        int r;

        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t n = read(source_fd, buf, COPY_CHUNK);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (n == 0)
                        break;
                r = cloud_sha256_update(h, buf, (size_t) n);
                if (r >= 0)
                        r = write_all(fd, buf, (size_t) n);
                if (r < 0)
                        return r;
                total += (uint64_t) n;
        }
        *ret_size = total;
        return 0;
}

/* Write the bytes of `q` into a new file of the download directory. */
static int write_download_file(CloudStore *s, const CloudQueueRequest *q, char **ret_path, uint64_t *ret_size,
                               char sha[static SHA256_HEX_SIZE]) {
        _cleanup_(cloud_sha256_freep) CloudSha256 *h = NULL;
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -EBADF;
        uint64_t size = q->size;
        int r;

        r = cloud_sha256_new(&h);
        if (r < 0)
                return r;
        if (asprintf(&path, "%s/dl-XXXXXX", s->files_dir) < 0)
                return -ENOMEM;
        fd = mkostemp(path, O_CLOEXEC);
        if (fd < 0)
                return negative_errno();

        if (q->source_fd >= 0)
                r = copy_hashing(q->source_fd, fd, h, &size);
        else {
                r = cloud_sha256_update(h, q->data, q->size);
                if (r >= 0)
                        r = write_all(fd, q->data, q->size);
        }
        if (r >= 0)
                r = cloud_sha256_final(h, sha);
        /* mkstemp makes 0600; the file is as public as the database. */
        if (r >= 0 && fchmod(fd, 0644) < 0)
                r = negative_errno();
        if (r < 0) {
                (void) unlink(path);
                return r;
        }
        *ret_path = TAKE_PTR(path);
        *ret_size = size;
        return 0;
}

typedef struct QueueTx {
        const CloudQueueRequest *q;
        const char *path;
        uint64_t size;
        const char *sha256;
        uint64_t id;
} QueueTx;

static int queue_tx(CloudStore *s, void *userdata) {
        QueueTx *tx = userdata;
        sqlite3_stmt *st = s->stmt[STMT_DOWNLOAD_INSERT];
        int r;

        sqlite3_bind_text(st, 1, tx->q->gateway, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, tx->q->kind, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, tx->q->name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, to_sql(tx->size));
        sqlite3_bind_text(st, 5, tx->sha256, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 6, tx->path, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 7, to_sql(tg_now(CLOCK_REALTIME)));
        r = store_step_done(s, st);
        if (r < 0)
                return r;
        tx->id = (uint64_t) sqlite3_last_insert_rowid(s->db);
        return 0;
}

int cloud_store_queue_download(CloudStore *s, const CloudQueueRequest *q, uint64_t *ret_id, uint64_t *ret_size,
                               char ret_sha256[static SHA256_HEX_SIZE]) {
        _cleanup_free_ char *path = NULL;
        char sha[SHA256_HEX_SIZE];
        QueueTx tx = { .q = q, .sha256 = sha };
        int r;

        /* The file is complete before the row exists: a listing never
         * shows a download whose bytes are still being written. */
        r = write_download_file(s, q, &path, &tx.size, sha);
        if (r < 0)
                return r;
        tx.path = path;
        r = store_transaction(s, queue_tx, &tx);
        if (r < 0) {
                (void) unlink(path);
                return r;
        }
        *ret_id = tx.id;
        *ret_size = tx.size;
        memcpy(ret_sha256, sha, SHA256_HEX_SIZE);
        return 0;
}

/* ---- downloads: reading --------------------------------------------------- */

int cloud_store_list_downloads(CloudStore *s, const char *gateway, CloudDownload **ret, size_t *ret_n) {
        sqlite3_stmt *st = s->stmt[STMT_DOWNLOAD_LIST];
        CloudDownload *list = NULL;
        size_t n = 0;
        int rc, r = 0;

        pthread_mutex_lock(&s->lock);
        sqlite3_bind_text(st, 1, gateway, -1, SQLITE_STATIC);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                CloudDownload *grown = realloc(list, (n + 1) * sizeof *list), *d;

                if (!grown) {
                        r = -ENOMEM;
                        break;
                }
                list = grown;
                d = &list[n++];
                *d = (CloudDownload) {
                        .id = (uint64_t) sqlite3_column_int64(st, 0),
                        .gateway = strdup(gateway),
                        .kind = strdup_or_empty(sqlite3_column_text(st, 1)),
                        .name = strdup_or_empty(sqlite3_column_text(st, 2)),
                        .size = (uint64_t) sqlite3_column_int64(st, 3),
                        .path = strdup_or_empty(sqlite3_column_text(st, 5)),
                };
                snprintf(d->sha256, sizeof d->sha256, "%s", strempty_sql(sqlite3_column_text(st, 4)));
                if (!d->gateway || !d->kind || !d->name || !d->path) {
                        r = -ENOMEM;
                        break;
                }
        }
        if (r >= 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
                r = store_step_error(s, st, rc);
        (void) sqlite3_reset(st);
        pthread_mutex_unlock(&s->lock);

        if (r < 0) {
                cloud_downloads_free(list, n);
                return r;
        }
        *ret = list;
        *ret_n = n;
        return 0;
}

/* Under the lock. */
static int get_download_locked(CloudStore *s, const char *gateway, uint64_t id, CloudDownload *ret) {
        sqlite3_stmt *st = s->stmt[STMT_DOWNLOAD_GET];
        CloudDownload d = { .id = id };
        int rc, r = 0;

        sqlite3_bind_text(st, 1, gateway, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, to_sql(id));
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                d.gateway = strdup(gateway);
                d.kind = strdup_or_empty(sqlite3_column_text(st, 0));
                d.name = strdup_or_empty(sqlite3_column_text(st, 1));
                d.size = (uint64_t) sqlite3_column_int64(st, 2);
                snprintf(d.sha256, sizeof d.sha256, "%s", strempty_sql(sqlite3_column_text(st, 3)));
                d.path = strdup_or_empty(sqlite3_column_text(st, 4));
                d.acked = sqlite3_column_int(st, 5) != 0;
                if (!d.gateway || !d.kind || !d.name || !d.path)
                        r = -ENOMEM;
        } else if (rc == SQLITE_DONE)
                r = -ENOENT;
        else
                r = store_step_error(s, st, rc);
        (void) sqlite3_reset(st);

        if (r < 0) {
                cloud_download_done(&d);
                return r;
        }
        *ret = d;
        return 0;
}

int cloud_store_get_download(CloudStore *s, const char *gateway, uint64_t id, CloudDownload *ret) {
        int r;

        pthread_mutex_lock(&s->lock);
        r = get_download_locked(s, gateway, id, ret);
        pthread_mutex_unlock(&s->lock);
        return r;
}

int cloud_store_count_fetch(CloudStore *s, uint64_t id) {
        sqlite3_stmt *st = s->stmt[STMT_DOWNLOAD_FETCHED];
        int r;

        pthread_mutex_lock(&s->lock);
        sqlite3_bind_int64(st, 1, to_sql(id));
        r = store_step_done(s, st);
        pthread_mutex_unlock(&s->lock);
        return r;
}

/* ---- downloads: acknowledgements ------------------------------------------- */

typedef struct MarkTx {
        int stmt;
        const char *gateway;
        uint64_t id;
        uint64_t usec;
        bool first;
        char *path; /* of the download, when it was marked now */
} MarkTx;

static int mark_tx(CloudStore *s, void *userdata) {
        MarkTx *tx = userdata;
        sqlite3_stmt *st = s->stmt[tx->stmt];
        CloudDownload d = {};
        int r;

        sqlite3_bind_text(st, 1, tx->gateway, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, to_sql(tx->id));
        sqlite3_bind_int64(st, 3, to_sql(tx->usec));
        r = store_step_done(s, st);
        if (r < 0)
                return r;
        tx->first = sqlite3_changes(s->db) > 0;

        /* Not marked now: marked before, or no such download. */
        r = get_download_locked(s, tx->gateway, tx->id, &d);
        if (r < 0)
                return r;
        tx->path = TAKE_PTR(d.path);
        cloud_download_done(&d);
        return 0;
}

static int mark(CloudStore *s, int stmt, const char *gateway, uint64_t id, uint64_t usec, bool *ret_first,
                char **ret_path) {
        MarkTx tx = { .stmt = stmt, .gateway = gateway, .id = id, .usec = usec };
        int r;

        r = store_transaction(s, mark_tx, &tx);
        if (r < 0) {
                free(tx.path);
                return r;
        }
        *ret_first = tx.first;
        *ret_path = tx.path;
        return 0;
}

int cloud_store_ack(CloudStore *s, const char *gateway, uint64_t id, uint64_t usec, bool *ret_first) {
        _cleanup_free_ char *path = NULL;
        int r;

        r = mark(s, STMT_DOWNLOAD_ACK, gateway, id, usec, ret_first, &path);
        if (r < 0)
                return r;
        /* The cloud drops its copy (SPEC C5). A transfer still reading it
         * keeps its open descriptor and finishes. */
        if (*ret_first && unlink(path) < 0 && errno != ENOENT)
                log_warning_errno(errno, "cannot delete %s: %m", path);
        return 0;
}

int cloud_store_delivered(CloudStore *s, const char *gateway, uint64_t id, uint64_t usec, bool *ret_first) {
        _cleanup_free_ char *path = NULL;

        return mark(s, STMT_DOWNLOAD_DELIVERED, gateway, id, usec, ret_first, &path);
}

/* ---- reset ----------------------------------------------------------------- */

static int unlink_download_files(CloudStore *s) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int rc, r;

        r = tg_db_prepare(s->db, "SELECT path FROM downloads WHERE acked_usec IS NULL", &st);
        if (r < 0)
                return r;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *path = (const char *) sqlite3_column_text(st, 0);

                if (path && unlink(path) < 0 && errno != ENOENT)
                        log_warning_errno(errno, "cannot delete %s: %m", path);
        }
        return rc == SQLITE_DONE ? 0 : store_step_error(s, st, rc);
}

static int reset_tx(CloudStore *s, void *userdata) {
        int r;

        r = unlink_download_files(s);
        if (r < 0)
                return r;
        return store_exec(s, "DELETE FROM uploads; DELETE FROM records; DELETE FROM downloads;");
}

int cloud_store_reset(CloudStore *s) {
        return store_transaction(s, reset_tx, NULL);
}
