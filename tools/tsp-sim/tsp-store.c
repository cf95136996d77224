/* SPDX-License-Identifier: MIT */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>

#include "tg-db.h"
#include "tg-log.h"
#include "tg-time.h"
#include "tsp-store.h"

#define SCHEMA_VERSION 1
/* Bounds on one response's downlink body, so a client that never acks
 * cannot make the simulator build an unbounded answer. 1 MiB is what the
 * classifier reads of a response (docs/wire-formats.md §3). */
#define DOWNLINK_MAX_RECORDS 1000
#define DOWNLINK_MAX_BYTES ((size_t) 1024 * 1024)


enum {
        STMT_BATCH_EXISTS,
        STMT_BATCH_INSERT,
        STMT_RECORD_INSERT,
        STMT_DOWNLINK_ACK,
        STMT_DOWNLINK_PENDING,
        STMT_DOWNLINK_MARK_SENT,
        STMT_DOWNLINK_INSERT,
        _STMT_MAX,
};

static const char *const statements[_STMT_MAX] = {
        [STMT_BATCH_EXISTS] = "SELECT 1 FROM batches WHERE client = ?1 AND idempotency_key = ?2",
        [STMT_BATCH_INSERT] = "INSERT INTO batches (client, idempotency_key, received_usec, records, "
                              "duplicate_records, body_bytes, decoded_bytes, encoding) "
                              "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        [STMT_RECORD_INSERT] = "INSERT OR IGNORE INTO records (client, id, timestamp_usec, topic, payload, "
                               "received_usec, batch_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        [STMT_DOWNLINK_ACK] = "UPDATE downlink SET delivered = 1, delivered_usec = ?3 "
                              "WHERE client = ?1 AND id <= ?2 AND delivered = 0",
        [STMT_DOWNLINK_PENDING] = "SELECT id, topic, timestamp_usec, payload FROM downlink "
                                  "WHERE client = ?1 AND delivered = 0 ORDER BY id LIMIT ?2",
        [STMT_DOWNLINK_MARK_SENT] = "UPDATE downlink SET sent_count = sent_count + 1, last_sent_usec = ?4 "
                                    "WHERE client = ?1 AND delivered = 0 AND id BETWEEN ?2 AND ?3",
        [STMT_DOWNLINK_INSERT] = "INSERT INTO downlink (client, topic, timestamp_usec, payload, queued_usec) "
                                 "VALUES (?1, ?2, ?3, ?4, ?5)",
};

/* Column names and meanings are documented in docs/tsp-simulator.md; tests
 * query them. Integers are SQLite's signed 64-bit: a u64 above 2^63-1
 * (never produced by Tollgate) reads back negative. */
static const char schema[] =
        "CREATE TABLE IF NOT EXISTS batches ("
        "  client TEXT NOT NULL,"
        "  idempotency_key TEXT NOT NULL,"
        "  received_usec INTEGER NOT NULL,"
        "  records INTEGER NOT NULL,"
        "  duplicate_records INTEGER NOT NULL DEFAULT 0,"
        "  body_bytes INTEGER NOT NULL,"
        "  decoded_bytes INTEGER NOT NULL DEFAULT 0,"
        "  encoding TEXT NOT NULL,"
        "  PRIMARY KEY (client, idempotency_key));"
        "CREATE TABLE IF NOT EXISTS records ("
        "  client TEXT NOT NULL,"
        "  id INTEGER NOT NULL,"
        "  timestamp_usec INTEGER NOT NULL,"
        "  topic TEXT NOT NULL,"
        "  payload BLOB NOT NULL,"
        "  received_usec INTEGER NOT NULL,"
        "  batch_key TEXT NOT NULL,"
        "  PRIMARY KEY (client, id)) WITHOUT ROWID;"
        /* AUTOINCREMENT: ids never come back after a reset, because a
         * gateway that acknowledged id N ignores any later id <= N. */
        "CREATE TABLE IF NOT EXISTS downlink ("
        "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  client TEXT NOT NULL,"
        "  topic TEXT NOT NULL,"
        "  timestamp_usec INTEGER NOT NULL,"
        "  payload BLOB NOT NULL,"
        "  delivered INTEGER NOT NULL DEFAULT 0,"
        "  queued_usec INTEGER NOT NULL DEFAULT 0,"
        "  sent_count INTEGER NOT NULL DEFAULT 0,"
        "  last_sent_usec INTEGER,"
        "  delivered_usec INTEGER);"
        "CREATE INDEX IF NOT EXISTS downlink_pending ON downlink (client, delivered, id);";

struct TspStore {
        sqlite3 *db;
        sqlite3_stmt *stmt[_STMT_MAX];
        /* One writer at a time: every request is one transaction. */
        pthread_mutex_t lock;
};

static int store_exec(TspStore *s, const char *sql) {
        int r = tg_db_exec(s->db, sql);

        if (r < 0)
                log_error("tsp-store: '%.40s...' failed: %s", sql, sqlite3_errmsg(s->db));
        return r;
}

static int store_step_done(TspStore *s, sqlite3_stmt *st) {
        int r = tg_db_step_done(st);

        if (r < 0)
                log_error("tsp-store: '%.60s' failed: %s", sqlite3_sql(st), sqlite3_errmsg(s->db));
        return r;
}

/* A database made by another version of the simulator would give tests
 * columns they do not expect; refuse it rather than guess. */
static int check_schema_version(TspStore *s, const char *path) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        char sql[64];
        int version;

        if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK ||
            sqlite3_step(st) != SQLITE_ROW)
                return log_error_errno(-EIO, "cannot read the schema version of %s: %s", path,
                                       sqlite3_errmsg(s->db));
        version = sqlite3_column_int(st, 0);
        if (version == SCHEMA_VERSION)
                return 0;
        if (version != 0)
                return log_error_errno(-EPROTONOSUPPORT,
                                       "%s has schema version %d, this simulator writes %d; use a new file",
                                       path, version, SCHEMA_VERSION);
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d;", SCHEMA_VERSION);
        return store_exec(s, sql);
}

int tsp_store_open(const char *path, TspStore **ret) {
        _cleanup_(tsp_store_freep) TspStore *s = NULL;
        int rc, r;

        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        pthread_mutex_init(&s->lock, NULL);

        rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             NULL);
        if (rc != SQLITE_OK)
                return log_error_errno(tg_db_errno(rc), "cannot open database %s: %s", path,
                                       s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        /* Tests read the file with the sqlite3 tool while we write; a
         * checkpoint may briefly need their read lock. */
        (void) sqlite3_busy_timeout(s->db, 5000);

        /* WAL: readers (tests) never block the writer. synchronous=NORMAL:
         * no fsync per commit; a simulator loses at most its last
         * transactions on a power cut, never consistency. */
        r = store_exec(s, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = OFF;");
        if (r < 0)
                return log_error_errno(r, "cannot configure database %s", path);
        r = store_exec(s, schema);
        if (r < 0)
                return log_error_errno(r, "cannot create the schema in %s", path);
        r = check_schema_version(s, path);
        if (r < 0)
                return r;

        for (size_t i = 0; i < _STMT_MAX; i++) {
                rc = sqlite3_prepare_v3(s->db, statements[i], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i],
                                        NULL);
                if (rc != SQLITE_OK)
                        return log_error_errno(tg_db_errno(rc), "cannot prepare '%s' in %s: %s",
                                               statements[i], path, sqlite3_errmsg(s->db));
        }

        *ret = TAKE_PTR(s);
        return 0;
}

TspStore *tsp_store_free(TspStore *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < _STMT_MAX; i++)
                sqlite3_finalize(s->stmt[i]);
        if (s->db)
                sqlite3_close(s->db);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return NULL;
}

static int64_t to_sql(uint64_t v) {
        return (int64_t) v;
}

static int batch_exists(TspStore *s, const TspBatch *b, bool *ret) {
        sqlite3_stmt *st = s->stmt[STMT_BATCH_EXISTS];
        int rc;

        sqlite3_bind_text(st, 1, b->client, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, b->key, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        (void) sqlite3_reset(st);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
                return tg_db_errno(rc);
        *ret = rc == SQLITE_ROW;
        return 0;
}

static int insert_records(TspStore *s, const TspBatch *b, TspBatchResult *res) {
        sqlite3_stmt *st = s->stmt[STMT_RECORD_INSERT];
        size_t offset = 0;
        int r;

        /* Bound once: the same for every record of the batch. */
        sqlite3_bind_text(st, 1, b->client, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, to_sql(b->received_usec));
        sqlite3_bind_text(st, 7, b->key, -1, SQLITE_STATIC);

        while (offset < b->records_size) {
                TgRecord rec;

                if (tg_record_decode(b->records, b->records_size, &offset, TG_PAYLOAD_MAX, &rec) != TG_RECORD_OK)
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
                        res->stored++;
                else
                        res->duplicates++;
        }
        return 0;
}

static int insert_batch(TspStore *s, const TspBatch *b, const TspBatchResult *res) {
        sqlite3_stmt *st = s->stmt[STMT_BATCH_INSERT];

        sqlite3_bind_text(st, 1, b->client, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, b->key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, to_sql(b->received_usec));
        sqlite3_bind_int64(st, 4, to_sql(b->n_records));
        sqlite3_bind_int64(st, 5, to_sql(res->duplicates));
        sqlite3_bind_int64(st, 6, to_sql(b->body_bytes));
        sqlite3_bind_int64(st, 7, to_sql(b->records_size));
        sqlite3_bind_text(st, 8, b->encoding, -1, SQLITE_STATIC);
        return store_step_done(s, st);
}

static int apply_ack(TspStore *s, const TspBatch *b, TspBatchResult *res) {
        sqlite3_stmt *st = s->stmt[STMT_DOWNLINK_ACK];
        int r;

        sqlite3_bind_text(st, 1, b->client, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (int64_t) MIN(b->ack, (uint64_t) INT64_MAX));
        sqlite3_bind_int64(st, 3, to_sql(b->received_usec));
        r = store_step_done(s, st);
        if (r < 0)
                return r;
        res->acked = (uint64_t) sqlite3_changes(s->db);
        return 0;
}

static int collect_downlink(TspStore *s, const TspBatch *b, TspBatchResult *res) {
        sqlite3_stmt *st = s->stmt[STMT_DOWNLINK_PENDING];
        int64_t first = 0, last = 0;
        int rc, r = 0;

        sqlite3_bind_text(st, 1, b->client, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, DOWNLINK_MAX_RECORDS);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                TgRecord rec = {
                        .id = (uint64_t) sqlite3_column_int64(st, 0),
                        .topic = (const char *) sqlite3_column_text(st, 1),
                        .topic_len = (uint16_t) sqlite3_column_bytes(st, 1),
                        .timestamp_usec = (uint64_t) sqlite3_column_int64(st, 2),
                        .payload = sqlite3_column_blob(st, 3),
                        .payload_len = (uint32_t) sqlite3_column_bytes(st, 3),
                };

                if (!rec.topic)
                        continue;
                if (res->n_downlink > 0 && res->downlink.size + tg_record_size(&rec) > DOWNLINK_MAX_BYTES)
                        break;
                r = tg_buf_append_record(&res->downlink, &rec);
                if (r < 0)
                        break;
                if (res->n_downlink == 0)
                        first = (int64_t) rec.id;
                last = (int64_t) rec.id;
                res->n_downlink++;
        }
        (void) sqlite3_reset(st);
        if (r < 0)
                return r;
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
                return tg_db_errno(rc);
        if (res->n_downlink == 0)
                return 0;

        st = s->stmt[STMT_DOWNLINK_MARK_SENT];
        sqlite3_bind_text(st, 1, b->client, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, first);
        sqlite3_bind_int64(st, 3, last);
        sqlite3_bind_int64(st, 4, to_sql(tg_now(CLOCK_REALTIME)));
        return store_step_done(s, st);
}

static int store_batch_locked(TspStore *s, const TspBatch *b, TspBatchResult *res) {
        int r;

        r = batch_exists(s, b, &res->duplicate_batch);
        if (r < 0)
                return r;
        if (!res->duplicate_batch) {
                r = insert_records(s, b, res);
                if (r < 0)
                        return r;
                r = insert_batch(s, b, res);
                if (r < 0)
                        return r;
        }
        if (b->has_ack) {
                r = apply_ack(s, b, res);
                if (r < 0)
                        return r;
        }
        return collect_downlink(s, b, res);
}

int tsp_store_batch(TspStore *s, const TspBatch *b, TspBatchResult *ret) {
        TspBatchResult res = {};
        int r;

        pthread_mutex_lock(&s->lock);
        r = store_exec(s, "BEGIN IMMEDIATE");
        if (r >= 0) {
                r = store_batch_locked(s, b, &res);
                if (r >= 0)
                        r = store_exec(s, "COMMIT");
                if (r < 0)
                        (void) store_exec(s, "ROLLBACK");
        }
        pthread_mutex_unlock(&s->lock);

        if (r < 0) {
                tg_buf_free(&res.downlink);
                return r;
        }
        *ret = res;
        return 0;
}

int tsp_store_queue_downlink(TspStore *s, const char *client, const char *topic, uint64_t timestamp_usec,
                             const void *payload, size_t size, uint64_t *ret_id) {
        sqlite3_stmt *st = s->stmt[STMT_DOWNLINK_INSERT];
        int r;

        if (size > INT32_MAX)
                return -E2BIG;

        pthread_mutex_lock(&s->lock);
        sqlite3_bind_text(st, 1, client, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, topic, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, to_sql(timestamp_usec));
        sqlite3_bind_blob(st, 4, size > 0 ? payload : "", (int) size, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, to_sql(tg_now(CLOCK_REALTIME)));
        r = store_step_done(s, st);
        if (r >= 0)
                *ret_id = (uint64_t) sqlite3_last_insert_rowid(s->db);
        pthread_mutex_unlock(&s->lock);
        return r;
}

int tsp_store_reset(TspStore *s) {
        int r;

        pthread_mutex_lock(&s->lock);
        r = store_exec(s, "BEGIN IMMEDIATE; DELETE FROM batches; DELETE FROM records; DELETE FROM downlink; COMMIT;");
        if (r < 0)
                (void) store_exec(s, "ROLLBACK");
        pthread_mutex_unlock(&s->lock);
        return r;
}
