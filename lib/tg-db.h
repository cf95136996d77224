/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * SQLite plumbing: open a database in WAL mode with Tollgate's pragmas, and
 * migrate its schema forward. The schema version lives in PRAGMA
 * user_version; migration step N takes version N-1 to N inside one
 * IMMEDIATE transaction, so two processes opening the same file (the
 * classifier and key-sync share the outbox) never migrate it twice. A file
 * newer than this build knows is refused (-EPROTO), never "downgraded".
 */

#include <sqlite3.h>

#include "tg-macro.h"

typedef struct TgDbOptions {
        bool durable;            /* synchronous=FULL (fsync per commit) rather than NORMAL */
        unsigned cache_kib;      /* page cache per connection; 0 = 1024 KiB */
        unsigned busy_timeout_ms; /* 0 = 5000 */
} TgDbOptions;

/* Open (creating) `path`, apply pragmas and run the migrations. If the file is
 * not a database, it is moved aside to "<path>.corrupt-<usec>" (nothing is
 * deleted) and a fresh one is created; *ret_moved_aside tells the caller to log it. */
int tg_db_open(const char *path, const TgDbOptions *opts, const char *const *migrations, unsigned n_migrations,
               sqlite3 **ret, char **ret_moved_aside);

/* Map an SQLite result code to a negative errno. */
int tg_db_errno(int rc);

int tg_db_exec(sqlite3 *db, const char *sql);
int tg_db_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **ret);
/* Step a statement that returns no rows, then reset it: 0 or -errno. */
int tg_db_step_done(sqlite3_stmt *st);

/* Small key/value store in table `meta` (created by every Tollgate schema). */
int tg_db_meta_get_u64(sqlite3 *db, const char *key, uint64_t *ret);
int tg_db_meta_set_u64(sqlite3 *db, const char *key, uint64_t value);

TG_DEFINE_TRIVIAL_CLEANUP_FUNC(sqlite3_stmt *, sqlite3_finalize);
TG_DEFINE_TRIVIAL_CLEANUP_FUNC(sqlite3 *, sqlite3_close_v2);
