/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "tg-db.h"
#include "tg-log.h"
#include "tg-time.h"

int tg_db_errno(int rc) {
        switch (rc & 0xff) {
        case SQLITE_OK:
        case SQLITE_ROW:
        case SQLITE_DONE:
                return 0;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_READONLY:
        case SQLITE_PERM:
        case SQLITE_AUTH:
                return -EACCES;
        case SQLITE_CANTOPEN:
                return -ENOENT;
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB:
                return -EUCLEAN;
        case SQLITE_TOOBIG:
                return -EMSGSIZE;
        case SQLITE_CONSTRAINT:
                return -EEXIST;
        case SQLITE_INTERRUPT:
                return -EINTR;
        default:
                return -EIO;
        }
}

int tg_db_exec(sqlite3 *db, const char *sql) {
        int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
        if (rc != SQLITE_OK)
                log_debug("SQL failed (%s): %s", sqlite3_errmsg(db), sql);
        return tg_db_errno(rc);
}

int tg_db_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **ret) {
        int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, ret, NULL);
        if (rc != SQLITE_OK)
                log_debug("Cannot prepare (%s): %s", sqlite3_errmsg(db), sql);
        return tg_db_errno(rc);
}

int tg_db_step_done(sqlite3_stmt *st) {
        int rc = sqlite3_step(st);

        (void) sqlite3_reset(st);
        if (rc != SQLITE_DONE)
                log_debug("SQL failed (%s): %s", sqlite3_errmsg(sqlite3_db_handle(st)), sqlite3_sql(st));
        return rc == SQLITE_DONE ? 0 : (tg_db_errno(rc) ?: -EIO);
}

static int get_user_version(sqlite3 *db, unsigned *ret) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *s = NULL;
        int r, rc;

        r = tg_db_prepare(db, "PRAGMA user_version", &s);
        if (r < 0)
                return r;
        rc = sqlite3_step(s);
        if (rc != SQLITE_ROW)
                return tg_db_errno(rc) ?: -EIO;
        *ret = (unsigned) sqlite3_column_int(s, 0);
        return 0;
}

static int migrate(sqlite3 *db, const char *const *migrations, unsigned n) {
        char sql[64];
        unsigned version;
        int r;

        r = get_user_version(db, &version);
        if (r < 0)
                return r;
        if (version == n)
                return 0;
        if (version > n) {
                log_debug("Database schema version %u is newer than this build's %u.", version, n);
                return -EPROTO;
        }

        /* IMMEDIATE takes the write lock first: a concurrent opener waits, then
         * sees the new version and does nothing. */
        r = tg_db_exec(db, "BEGIN IMMEDIATE");
        if (r < 0)
                return r;
        r = get_user_version(db, &version);
        if (r < 0)
                goto rollback;
        for (; version < n; version++) {
                r = tg_db_exec(db, migrations[version]);
                if (r < 0)
                        goto rollback;
        }
        snprintf(sql, sizeof sql, "PRAGMA user_version = %u", n);
        r = tg_db_exec(db, sql);
        if (r < 0)
                goto rollback;
        return tg_db_exec(db, "COMMIT");
rollback:
        (void) tg_db_exec(db, "ROLLBACK");
        return r;
}

static int open_once(const char *path, const TgDbOptions *opts, const char *const *migrations, unsigned n,
                     sqlite3 **ret) {
        _cleanup_(sqlite3_close_v2p) sqlite3 *db = NULL;
        char sql[256];
        unsigned version;
        int rc, r;

        rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc != SQLITE_OK)
                return tg_db_errno(rc);
        (void) sqlite3_extended_result_codes(db, 1);
        sqlite3_busy_timeout(db, (int) (opts && opts->busy_timeout_ms ? opts->busy_timeout_ms : 5000));

        /* Read the version before changing anything: a file from a newer build is
         * left exactly as it is, and a non-database fails here (-EUCLEAN). */
        r = get_user_version(db, &version);
        if (r < 0)
                return r;
        if (version > n) {
                log_debug("%s: schema version %u is newer than this build's %u.", path, version, n);
                return -EPROTO;
        }
        r = tg_db_exec(db, "PRAGMA journal_mode=WAL");
        if (r < 0)
                return r;
        snprintf(sql, sizeof sql,
                 "PRAGMA synchronous=%s; PRAGMA cache_size=-%u; PRAGMA foreign_keys=ON; "
                 "PRAGMA temp_store=MEMORY; PRAGMA journal_size_limit=%u",
                 opts && opts->durable ? "FULL" : "NORMAL", opts && opts->cache_kib ? opts->cache_kib : 1024u,
                 64u * 1024 * 1024);
        r = tg_db_exec(db, sql);
        if (r < 0)
                return r;
        r = migrate(db, migrations, n);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(db);
        return 0;
}

int tg_db_open(const char *path, const TgDbOptions *opts, const char *const *migrations, unsigned n,
               sqlite3 **ret, char **ret_moved_aside) {
        _cleanup_free_ char *aside = NULL;
        int r;

        if (ret_moved_aside)
                *ret_moved_aside = NULL;
        r = open_once(path, opts, migrations, n, ret);
        if (r != -EUCLEAN)
                return r;

        /* Not a database (or its header is destroyed): keep the evidence, start fresh. */
        if (asprintf(&aside, "%s.corrupt-%llu", path, (unsigned long long) tg_now(CLOCK_REALTIME)) < 0)
                return -ENOMEM;
        if (rename(path, aside) < 0)
                return negative_errno();
        for (const char *suffix = "-wal"; suffix; suffix = streq(suffix, "-wal") ? "-shm" : NULL) {
                _cleanup_free_ char *from = NULL, *to = NULL;
                if (asprintf(&from, "%s%s", path, suffix) < 0 || asprintf(&to, "%s%s", aside, suffix) < 0)
                        return -ENOMEM;
                if (rename(from, to) < 0 && errno != ENOENT)
                        return negative_errno();
        }
        r = open_once(path, opts, migrations, n, ret);
        if (r < 0)
                return r;
        if (ret_moved_aside)
                *ret_moved_aside = TAKE_PTR(aside);
        return 0;
}

int tg_db_meta_get_u64(sqlite3 *db, const char *key, uint64_t *ret) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *s = NULL;
        int r, rc;

        r = tg_db_prepare(db, "SELECT value FROM meta WHERE key = ?", &s);
        if (r < 0)
                return r;
        sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
                return -ENOENT;
        if (rc != SQLITE_ROW)
                return tg_db_errno(rc) ?: -EIO;
        *ret = (uint64_t) sqlite3_column_int64(s, 0);
        return 0;
}

int tg_db_meta_set_u64(sqlite3 *db, const char *key, uint64_t value) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *s = NULL;
        int r, rc;

        r = tg_db_prepare(db, "INSERT INTO meta(key, value) VALUES(?, ?) "
                              "ON CONFLICT(key) DO UPDATE SET value = excluded.value", &s);
        if (r < 0)
                return r;
        sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, (sqlite3_int64) value);
        rc = sqlite3_step(s);
        return rc == SQLITE_DONE ? 0 : (tg_db_errno(rc) ?: -EIO);
}
