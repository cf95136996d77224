/* SPDX-License-Identifier: MIT */
/*
 * The sink of the key → car direction: what the cloud sent the car through
 * the key (SPEC C4, C8). An item is received into a partial file (kept
 * across broken connections, so a transfer resumes where it stopped),
 * checked against the offered SHA-256, fsync'ed, moved into the folder of
 * its kind and recorded in keysync.db — only then is it acknowledged
 * (SPEC C5). Upgrade packages go to ota-agent's inbox folder (and to
 * ota-agent over D-Bus once it runs), knowledge-base updates to the
 * knowledge-base folder; each with a journal entry.
 */

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "keysync.h"
#include "tg-db.h"
#include "tg-kplink.h"
#include "tg-log.h"
#include "tg-message-ids.h"
#include "tg-time.h"

static const char *const inbox_migrations[] = {
        /* 1 */
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value);"
        "CREATE TABLE received ("
        "  item_id INTEGER PRIMARY KEY,"
        "  peer TEXT NOT NULL,"
        "  kind INTEGER NOT NULL,"
        "  name TEXT NOT NULL,"
        "  size INTEGER NOT NULL,"
        "  sha256 BLOB NOT NULL,"
        "  path TEXT NOT NULL,"
        "  received_usec INTEGER NOT NULL);",
};

static int mkdir_p(const char *path, mode_t mode) {
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++)
                if (*s == '/') {
                        *s = '\0';
                        if (mkdir(p, mode) < 0 && errno != EEXIST)
                                return negative_errno();
                        *s = '/';
                }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return negative_errno();
        return 0;
}

/* The destination folders (at start, and after a reload may have moved them). */
int inbox_make_dirs(Manager *m) {
        const char *dirs[] = { m->config.ota_inbox_dir, m->config.kb_dir, m->config.file_dir };
        int r = 0;

        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(dirs); i++) {
                r = mkdir_p(dirs[i], 0750);
                if (r < 0)
                        return log_event_errno(LOG_ERR, r, TG_MID_STORAGE_FAILED, "Cannot create %s: %m", dirs[i]);
        }
        return 0;
}

int inbox_setup(Manager *m) {
        _cleanup_free_ char *path = NULL, *aside = NULL;
        TgDbOptions opts = { .durable = true, .cache_kib = 256 };
        int r;

        if (asprintf(&m->partial_dir, "%s/key-sync/partial", m->config.state_dir) < 0 ||
            asprintf(&path, "%s/key-sync/keysync.db", m->config.state_dir) < 0)
                return log_error_errno(-ENOMEM, "Out of memory.");
        r = mkdir_p(m->partial_dir, 0750);
        if (r < 0)
                return log_error_errno(r, "Cannot create %s: %m", m->partial_dir);
        r = inbox_make_dirs(m);
        if (r < 0)
                return r;
        r = tg_db_open(path, &opts, inbox_migrations, ELEMENTSOF(inbox_migrations), &m->db, &aside);
        if (r < 0)
                return log_event_errno(LOG_ERR, r, TG_MID_STORAGE_FAILED, "Cannot open %s: %m", path);
        if (aside)
                log_event(LOG_WARNING, TG_MID_STORAGE_RECOVERED,
                          "%s was not a readable database; kept it as %s and started a new one.", path, aside);
        return 0;
}

void inbox_done(Manager *m) {
        sqlite3_close_v2(m->db);
        m->db = NULL;
        free(m->partial_dir);
        m->partial_dir = NULL;
}

static Incoming *incoming_find(Link *l, uint64_t id) {
        for (size_t i = 0; i < l->n_incoming; i++)
                if (l->incoming[i].id == id)
                        return &l->incoming[i];
        return NULL;
}

static void incoming_drop(Link *l, Incoming *in) {
        safe_close(in->fd);
        *in = l->incoming[--l->n_incoming];
}

void inbox_session_end(Link *l) {
        /* Partial files stay: the next session resumes them. */
        while (l->n_incoming > 0)
                incoming_drop(l, &l->incoming[0]);
}

static int received_before(Manager *m, uint64_t id) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *s = NULL;
        int r, rc;

        r = tg_db_prepare(m->db, "SELECT 1 FROM received WHERE item_id = ?", &s);
        if (r < 0)
                return r;
        sqlite3_bind_int64(s, 1, (sqlite3_int64) id);
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW)
                return 1;
        return rc == SQLITE_DONE ? 0 : (tg_db_errno(rc) ?: -EIO);
}

static const char *kind_dir(Manager *m, uint8_t kind) {
        switch (kind) {
        case TG_KP_KIND_UPGRADE_PACKAGE:
                return m->config.ota_inbox_dir;
        case TG_KP_KIND_KB_UPDATE:
                return m->config.kb_dir;
        case TG_KP_KIND_FILE:
                return m->config.file_dir;
        default:
                return NULL;
        }
}

/* A name from the peer becomes part of a file name: keep [A-Za-z0-9._-], no leading dot. */
static void sanitize_name(const char *name, size_t len, char *out, size_t size) {
        size_t n = 0;

        for (size_t i = 0; i < len && n + 1 < size; i++) {
                char c = name[i];
                bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                          c == '-' || (c == '.' && n > 0);
                out[n++] = ok ? c : '_';
        }
        out[n] = '\0';
        if (n == 0)
                snprintf(out, size, "item");
}

static char *partial_path(Manager *m, uint64_t id) {
        char *p;

        if (asprintf(&p, "%s/%016" PRIx64 ".part", m->partial_dir, id) < 0)
                return NULL;
        return p;
}

int inbox_offered(void *userdata, const TgKpOffer *offer, uint64_t *ret_offset) {
        Link *l = userdata;
        Manager *m = l->manager;
        _cleanup_free_ char *path = NULL;
        Incoming *in;
        struct stat st;
        int fd, r;

        if (!kind_dir(m, offer->kind)) {
                log_warning("Key %s offered item %016" PRIx64 " of kind %s, which the car does not take.", l->peer,
                            offer->item_id, tg_kp_kind_to_string(offer->kind));
                return TG_KP_ANSWER_REFUSE;
        }
        if (offer->size > m->config.max_item_size) {
                log_warning("Key %s offered item %016" PRIx64 " of %" PRIu64 " bytes, more than MaxItemSize=.",
                            l->peer, offer->item_id, offer->size);
                return TG_KP_ANSWER_REFUSE;
        }
        r = received_before(m, offer->item_id);
        if (r < 0)
                return r;
        if (r > 0)
                return TG_KP_ANSWER_HAVE;
        if (incoming_find(l, offer->item_id))
                return -EEXIST; /* the engine does not offer an item twice */
        if (l->n_incoming >= ELEMENTSOF(l->incoming))
                return TG_KP_ANSWER_REFUSE; /* more than our window: the session refuses that first */

        path = partial_path(m, offer->item_id);
        if (!path)
                return -ENOMEM;
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
        if (fd < 0)
                return log_error_errno(negative_errno(), "Cannot open %s: %m", path);
        if (fstat(fd, &st) < 0 || (uint64_t) st.st_size > offer->size) {
                /* Not what we thought we had: start again. */
                if (ftruncate(fd, 0) < 0) {
                        r = negative_errno();
                        safe_close(fd);
                        return r;
                }
                st.st_size = 0;
        }
        in = &l->incoming[l->n_incoming++];
        *in = (Incoming) { .id = offer->item_id, .kind = offer->kind, .fd = fd };
        sanitize_name(offer->name, offer->name_len, in->name, sizeof in->name);
        *ret_offset = (uint64_t) st.st_size;
        if (st.st_size > 0)
                log_info("Resuming item %016" PRIx64 " from key %s at byte %" PRIu64 " of %" PRIu64 ".",
                         offer->item_id, l->peer, (uint64_t) st.st_size, offer->size);
        return TG_KP_ANSWER_PULL;
}

int inbox_write(void *userdata, uint64_t item_id, uint64_t offset, const void *data, size_t len) {
        Link *l = userdata;
        Incoming *in = incoming_find(l, item_id);
        size_t done = 0;

        if (!in)
                return -ENOENT;
        /* No fsync here: a crash keeps what the page cache holds, and a power cut
         * at worst spoils the partial file, which the hash check then catches. */
        while (done < len) {
                ssize_t n = pwrite(in->fd, (const uint8_t *) data + done, len - done, (off_t) (offset + done));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return log_error_errno(negative_errno(), "Cannot write item %016" PRIx64 ": %m", item_id);
                }
                done += (size_t) n;
        }
        l->manager->bytes_received += len;
        return 0;
}

static void route_to_ota(Manager *m, const char *path) {
        /* ota-agent takes the package if it runs (org.tollgate.Ota1, issue 6 and
         * later); until then the package waits in its inbox folder. */
        (void) sd_bus_call_method_async(m->bus, NULL, "org.tollgate.Ota1", "/org/tollgate/Ota1", "org.tollgate.Ota1",
                                        "Submit", NULL, NULL, "s", path);
}

static int record_received(Manager *m, Link *l, const TgKpOffer *offer, const Incoming *in, const char *path) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *s = NULL;
        int r, rc;

        r = tg_db_prepare(m->db, "INSERT OR REPLACE INTO received VALUES (?, ?, ?, ?, ?, ?, ?, ?)", &s);
        if (r < 0)
                return r;
        sqlite3_bind_int64(s, 1, (sqlite3_int64) offer->item_id);
        sqlite3_bind_text(s, 2, l->peer, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 3, in->kind);
        sqlite3_bind_text(s, 4, in->name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 5, (sqlite3_int64) offer->size);
        sqlite3_bind_blob(s, 6, offer->sha256, TG_KP_SHA256_SIZE, SQLITE_STATIC);
        sqlite3_bind_text(s, 7, path, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 8, (sqlite3_int64) tg_now(CLOCK_REALTIME));
        rc = sqlite3_step(s);
        return rc == SQLITE_DONE ? 0 : (tg_db_errno(rc) ?: -EIO);
}

int inbox_complete(void *userdata, const TgKpOffer *offer, TgKpHashCheck check) {
        Link *l = userdata;
        Manager *m = l->manager;
        Incoming *in = incoming_find(l, offer->item_id);
        _cleanup_free_ char *partial = NULL, *dest = NULL;
        uint8_t sha[TG_KP_SHA256_SIZE];
        const char *dir;
        char fsize[48], fkind[48], fkey[160];
        _cleanup_close_ int dfd = -EBADF;
        int r;

        if (!in)
                return -ENOENT;
        partial = partial_path(m, offer->item_id);
        dir = kind_dir(m, in->kind);
        if (!partial || asprintf(&dest, "%s/%016" PRIx64 "-%s", dir, offer->item_id, in->name) < 0)
                return -ENOMEM;

        if (check == TG_KP_HASH_UNCHECKED) {
                r = tg_kp_sha256_fd(in->fd, sha);
                if (r < 0)
                        return r;
                check = memcmp(sha, offer->sha256, sizeof sha) == 0 ? TG_KP_HASH_OK : TG_KP_HASH_MISMATCH;
        }
        if (check != TG_KP_HASH_OK) {
                log_warning("Item %016" PRIx64 " from key %s does not match its SHA-256; dropped, it comes again.",
                            offer->item_id, l->peer);
                incoming_drop(l, in);
                (void) unlink(partial);
                return TG_KP_ACK_BAD_HASH;
        }
        if (fsync(in->fd) < 0 || rename(partial, dest) < 0) {
                r = negative_errno();
                return log_event_errno(LOG_ERR, r, TG_MID_STORAGE_FAILED, "Cannot store %s: %m", dest);
        }
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0)
                (void) fsync(dfd); /* the rename is durable before the key may delete its copy */
        r = record_received(m, l, offer, in, dest);
        if (r < 0)
                return log_event_errno(LOG_ERR, r, TG_MID_STORAGE_FAILED, "Cannot record %s: %m", dest);

        snprintf(fsize, sizeof fsize, "ITEM_SIZE=%" PRIu64, offer->size);
        snprintf(fkind, sizeof fkind, "ITEM_KIND=%s", tg_kp_kind_to_string(in->kind));
        snprintf(fkey, sizeof fkey, "KEY_ID=%s", l->peer);
        log_event_fields(LOG_NOTICE, 0, TG_MID_KEY_ITEM_RECEIVED, ((const char *[]) { fsize, fkind, fkey, NULL }),
                         "Received %s %s (%" PRIu64 " bytes, SHA-256 checked) from key %s; stored as %s.",
                         tg_kp_kind_to_string(in->kind), in->name, offer->size, l->peer, dest);
        if (in->kind == TG_KP_KIND_UPGRADE_PACKAGE)
                route_to_ota(m, dest);
        incoming_drop(l, in);
        m->items_received++;
        return TG_KP_ACK_STORED;
}
