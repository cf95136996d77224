/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "tg-log.h"
#include "tg-queue.h"

/* Schema migrations: entry N takes user_version N to N+1. Never edit a
 * released entry; append a new one. */
static const char *const queue_migrations[] = {
        /* 1 */
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value);"
        "CREATE TABLE items ("
        "  id INTEGER PRIMARY KEY,"
        "  priority INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 9),"
        "  kind TEXT NOT NULL,"
        "  encoding TEXT NOT NULL,"
        "  created_usec INTEGER NOT NULL,"
        "  expires_usec INTEGER NOT NULL DEFAULT 0,"
        "  records INTEGER NOT NULL,"
        "  size INTEGER NOT NULL,"
        "  data BLOB NOT NULL);"
        "CREATE INDEX items_drain ON items(priority, id);"
        "CREATE INDEX items_expiry ON items(expires_usec) WHERE expires_usec > 0;"
        "CREATE TABLE item_stats ("
        "  priority INTEGER PRIMARY KEY,"
        "  items INTEGER NOT NULL, records INTEGER NOT NULL, bytes INTEGER NOT NULL);"
        "CREATE TRIGGER items_ai AFTER INSERT ON items BEGIN"
        "  INSERT INTO item_stats VALUES (NEW.priority, 1, NEW.records, NEW.size)"
        "  ON CONFLICT(priority) DO UPDATE SET items = items + 1,"
        "    records = records + NEW.records, bytes = bytes + NEW.size;"
        " END;"
        "CREATE TRIGGER items_ad AFTER DELETE ON items BEGIN"
        "  UPDATE item_stats SET items = items - 1, records = records - OLD.records,"
        "    bytes = bytes - OLD.size WHERE priority = OLD.priority;"
        " END;"
        "CREATE TRIGGER items_au AFTER UPDATE OF priority, records, size ON items BEGIN"
        "  UPDATE item_stats SET items = items - 1, records = records - OLD.records,"
        "    bytes = bytes - OLD.size WHERE priority = OLD.priority;"
        "  INSERT INTO item_stats VALUES (NEW.priority, 1, NEW.records, NEW.size)"
        "  ON CONFLICT(priority) DO UPDATE SET items = items + 1,"
        "    records = records + NEW.records, bytes = bytes + NEW.size;"
        " END;",
};

enum {
        STMT_INSERT,
        STMT_DELETE,
        STMT_SET_KIND,
        STMT_EXPIRE,
        STMT_OLDEST,
        STMT_DELETE_UPTO,
        STMT_COUNTS,
        STMT_NEXT_EXPIRY,
        STMT_NEXT_BY_ID,
        STMT_NEXT_BY_PRIORITY,
        STMT_GET,
        _STMT_MAX,
};

static const char *const queue_sql[_STMT_MAX] = {
        [STMT_INSERT] = "INSERT INTO items(id, priority, kind, encoding, created_usec, expires_usec, records, size, data) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [STMT_DELETE] = "DELETE FROM items WHERE id = ?",
        [STMT_SET_KIND] = "UPDATE items SET kind = ?, priority = ? WHERE id = ?",
        [STMT_EXPIRE] = "DELETE FROM items WHERE expires_usec > 0 AND expires_usec <= ? RETURNING records, size",
        [STMT_OLDEST] = "SELECT id, records, size FROM items WHERE priority = ? ORDER BY id",
        [STMT_DELETE_UPTO] = "DELETE FROM items WHERE priority = ? AND id <= ?",
        [STMT_COUNTS] = "SELECT priority, items, records, bytes FROM item_stats",
        [STMT_NEXT_EXPIRY] = "SELECT min(expires_usec) FROM items WHERE expires_usec > 0",
        [STMT_NEXT_BY_ID] = "SELECT id, priority, kind, encoding, created_usec, expires_usec, records, data "
                            "FROM items WHERE kind = ? AND id > ? AND id < ? ORDER BY id LIMIT 1",
        [STMT_NEXT_BY_PRIORITY] = "SELECT id, priority, kind, encoding, created_usec, expires_usec, records, data "
                                  "FROM items WHERE kind = ? AND (priority, id) > (?, ?) AND id < ? "
                                  "ORDER BY priority, id LIMIT 1",
        [STMT_GET] = "SELECT priority, created_usec, expires_usec, records, size FROM items WHERE id = ?",
};

struct TgQueue {
        sqlite3 *db;
        char *path;
        sqlite3_blob *read_blob; /* tg_queue_read()'s, until tg_queue_read_end() */
        uint64_t read_blob_id;
        sqlite3_stmt *stmt[_STMT_MAX];
};

TgQueue *tg_queue_free(TgQueue *q) {
        if (!q)
                return NULL;
        tg_queue_read_end(q);
        for (size_t i = 0; i < _STMT_MAX; i++)
                sqlite3_finalize(q->stmt[i]);
        sqlite3_close_v2(q->db);
        free(q->path);
        free(q);
        return NULL;
}

int tg_queue_open(const char *path, const TgDbOptions *opts, TgQueue **ret, char **ret_moved_aside) {
        _cleanup_(tg_queue_freep) TgQueue *q = NULL;
        int r;

        q = calloc(1, sizeof *q);
        if (!q)
                return -ENOMEM;
        q->path = strdup(path);
        if (!q->path)
                return -ENOMEM;
        r = tg_db_open(path, opts, queue_migrations, ELEMENTSOF(queue_migrations), &q->db, ret_moved_aside);
        if (r < 0)
                return r;
        for (size_t i = 0; i < _STMT_MAX; i++) {
                r = tg_db_prepare(q->db, queue_sql[i], &q->stmt[i]);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(q);
        return 0;
}

sqlite3 *tg_queue_db(TgQueue *q) {
        return q->db;
}

const char *tg_queue_path(TgQueue *q) {
        return q->path;
}

int tg_queue_begin(TgQueue *q) {
        tg_queue_read_end(q); /* a write may change or delete the item being read */
        return tg_db_exec(q->db, "BEGIN IMMEDIATE");
}

int tg_queue_commit(TgQueue *q) {
        return tg_db_exec(q->db, "COMMIT");
}

int tg_queue_rollback(TgQueue *q) {
        return tg_db_exec(q->db, "ROLLBACK");
}

/* Step a statement that returns no rows, then reset it. */
static int step_done(sqlite3_stmt *s) {
        int rc = sqlite3_step(s);
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
        return rc == SQLITE_DONE ? 0 : (tg_db_errno(rc) ?: -EIO);
}

int tg_queue_insert(TgQueue *q, const TgQueueItem *item) {
        sqlite3_stmt *s = q->stmt[STMT_INSERT];

        if (item->priority > TG_PRIORITY_MAX)
                return -EINVAL;
        sqlite3_bind_int64(s, 1, (sqlite3_int64) item->id);
        sqlite3_bind_int(s, 2, (int) item->priority);
        sqlite3_bind_text(s, 3, item->kind, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 4, item->encoding, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 5, (sqlite3_int64) item->created_usec);
        sqlite3_bind_int64(s, 6, (sqlite3_int64) item->expires_usec);
        sqlite3_bind_int64(s, 7, item->records);
        sqlite3_bind_int64(s, 8, (sqlite3_int64) item->size);
        sqlite3_bind_blob64(s, 9, item->data ? item->data : "", item->size, SQLITE_STATIC);
        return step_done(s);
}

int tg_queue_delete(TgQueue *q, uint64_t id) {
        sqlite3_stmt *s = q->stmt[STMT_DELETE];
        int r;

        sqlite3_bind_int64(s, 1, (sqlite3_int64) id);
        r = step_done(s);
        if (r < 0)
                return r;
        return sqlite3_changes(q->db) > 0;
}

int tg_queue_relabel(TgQueue *q, uint64_t id, const char *kind, unsigned priority) {
        sqlite3_stmt *s = q->stmt[STMT_SET_KIND];

        if (priority > TG_PRIORITY_MAX)
                return -EINVAL;
        sqlite3_bind_text(s, 1, kind, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 2, (int) priority);
        sqlite3_bind_int64(s, 3, (sqlite3_int64) id);
        return step_done(s);
}

int tg_queue_counts(TgQueue *q, TgQueueCounts *ret_total, TgQueueCounts ret_by_priority[TG_PRIORITIES]) {
        sqlite3_stmt *s = q->stmt[STMT_COUNTS];
        TgQueueCounts total = {};
        int rc;

        if (ret_by_priority)
                memset(ret_by_priority, 0, sizeof(TgQueueCounts) * TG_PRIORITIES);
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
                int p = sqlite3_column_int(s, 0);
                TgQueueCounts c = {
                        .items = (uint64_t) sqlite3_column_int64(s, 1),
                        .records = (uint64_t) sqlite3_column_int64(s, 2),
                        .bytes = (uint64_t) sqlite3_column_int64(s, 3),
                };
                total.items += c.items;
                total.records += c.records;
                total.bytes += c.bytes;
                if (ret_by_priority && p >= 0 && p <= TG_PRIORITY_MAX)
                        ret_by_priority[p] = c;
        }
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
                return tg_db_errno(rc) ?: -EIO;
        if (ret_total)
                *ret_total = total;
        return 0;
}

int tg_queue_next_expiry(TgQueue *q, uint64_t *ret) {
        sqlite3_stmt *s = q->stmt[STMT_NEXT_EXPIRY];
        int rc, r = -ENOENT;

        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL) {
                *ret = (uint64_t) sqlite3_column_int64(s, 0);
                r = 0;
        } else if (rc != SQLITE_ROW)
                r = tg_db_errno(rc) ?: -EIO;
        sqlite3_reset(s);
        return r;
}

/* Delete the oldest items of one priority until at least `need` bytes are freed
 * (or the priority is empty). */
static int evict_oldest(TgQueue *q, unsigned priority, uint64_t need, TgQueueCounts *evicted) {
        sqlite3_stmt *s = q->stmt[STMT_OLDEST], *d = q->stmt[STMT_DELETE_UPTO];
        uint64_t freed = 0, last = 0;
        bool any = false;
        int rc;

        sqlite3_bind_int(s, 1, (int) priority);
        while (freed < need && (rc = sqlite3_step(s)) == SQLITE_ROW) {
                last = (uint64_t) sqlite3_column_int64(s, 0);
                evicted->items++;
                evicted->records += (uint64_t) sqlite3_column_int64(s, 1);
                freed += (uint64_t) sqlite3_column_int64(s, 2);
                any = true;
        }
        sqlite3_reset(s);
        if (!any)
                return 0;
        evicted->bytes += freed;
        sqlite3_bind_int(d, 1, (int) priority);
        sqlite3_bind_int64(d, 2, (sqlite3_int64) last);
        return step_done(d);
}

int tg_queue_enforce(TgQueue *q, const TgQueueLimits *limits, uint64_t now_usec, TgQueueEvicted *ret) {
        sqlite3_stmt *s = q->stmt[STMT_EXPIRE];
        TgQueueCounts total, by_priority[TG_PRIORITIES];
        TgQueueEvicted ev = {};
        int rc, r;

        sqlite3_bind_int64(s, 1, (sqlite3_int64) now_usec);
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
                ev.expired.items++;
                ev.expired.records += (uint64_t) sqlite3_column_int64(s, 0);
                ev.expired.bytes += (uint64_t) sqlite3_column_int64(s, 1);
        }
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
                return tg_db_errno(rc) ?: -EIO;

        if (limits) {
                r = tg_queue_counts(q, &total, by_priority);
                if (r < 0)
                        return r;
                for (unsigned p = 0; p < TG_PRIORITIES; p++) {
                        uint64_t quota = limits->priority_max_bytes[p];
                        if (quota == 0 || by_priority[p].bytes <= quota)
                                continue;
                        r = evict_oldest(q, p, by_priority[p].bytes - quota, &ev.over_quota);
                        if (r < 0)
                                return r;
                }
                if (limits->max_bytes > 0) {
                        r = tg_queue_counts(q, &total, by_priority);
                        if (r < 0)
                                return r;
                        for (int p = TG_PRIORITY_MAX; p >= 0 && total.bytes > limits->max_bytes; p--) {
                                TgQueueCounts e = {};
                                if (by_priority[p].items == 0)
                                        continue;
                                r = evict_oldest(q, (unsigned) p, total.bytes - limits->max_bytes, &e);
                                if (r < 0)
                                        return r;
                                total.bytes -= MIN(e.bytes, total.bytes);
                                ev.over_quota.items += e.items;
                                ev.over_quota.records += e.records;
                                ev.over_quota.bytes += e.bytes;
                        }
                }
        }
        if (ret)
                *ret = ev;
        return 0;
}

int tg_queue_next(TgQueue *q, const char *kind, bool by_priority, const TgQueueCursor *after, TgQueueItem *ret,
                  void **ret_data) {
        sqlite3_stmt *s = q->stmt[by_priority ? STMT_NEXT_BY_PRIORITY : STMT_NEXT_BY_ID];
        const char *k, *enc;
        const void *blob;
        size_t size, klen, elen;
        uint8_t *buf;
        int rc, i = 1;

        sqlite3_bind_text(s, i++, kind, -1, SQLITE_STATIC);
        if (by_priority)
                sqlite3_bind_int(s, i++, after ? (int) after->priority : -1);
        sqlite3_bind_int64(s, i++, after ? (sqlite3_int64) after->id : -1);
        /* Ids are stored as signed 64-bit integers; no bound is INT64_MAX. */
        sqlite3_bind_int64(s, i++, after && after->before > 0 && after->before <= INT64_MAX
                                           ? (sqlite3_int64) after->before : INT64_MAX);
        rc = sqlite3_step(s);
        if (rc != SQLITE_ROW) {
                sqlite3_reset(s);
                return rc == SQLITE_DONE ? -ENOENT : (tg_db_errno(rc) ?: -EIO);
        }
        k = (const char *) sqlite3_column_text(s, 2);
        enc = (const char *) sqlite3_column_text(s, 3);
        blob = sqlite3_column_blob(s, 7);
        size = (size_t) sqlite3_column_bytes(s, 7);
        klen = k ? strlen(k) : 0;
        elen = enc ? strlen(enc) : 0;

        /* One allocation: data, then the two strings. */
        buf = malloc(size + klen + elen + 2);
        if (!buf) {
                sqlite3_reset(s);
                return -ENOMEM;
        }
        if (size > 0)
                memcpy(buf, blob, size);
        memcpy(buf + size, k ? k : "", klen + 1);
        memcpy(buf + size + klen + 1, enc ? enc : "", elen + 1);
        *ret = (TgQueueItem) {
                .id = (uint64_t) sqlite3_column_int64(s, 0),
                .priority = (unsigned) sqlite3_column_int(s, 1),
                .kind = (const char *) buf + size,
                .encoding = (const char *) buf + size + klen + 1,
                .created_usec = (uint64_t) sqlite3_column_int64(s, 4),
                .expires_usec = (uint64_t) sqlite3_column_int64(s, 5),
                .records = (uint32_t) sqlite3_column_int64(s, 6),
                .data = buf,
                .size = size,
        };
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
        *ret_data = buf;
        return 0;
}

void tg_queue_read_end(TgQueue *q) {
        if (q->read_blob)
                sqlite3_blob_close(q->read_blob);
        q->read_blob = NULL;
}

ssize_t tg_queue_read(TgQueue *q, uint64_t id, uint64_t offset, void *buf, size_t size) {
        int rc, length;

        /* One handle for consecutive reads of an item: SQLite finds an offset
         * by walking the item's overflow pages from the start, and only an
         * open handle remembers them (a new handle per 256 KiB piece of a
         * 32 MiB item costs 70 times the time). */
        for (int attempt = 0;; attempt++) {
                if (!q->read_blob || q->read_blob_id != id) {
                        tg_queue_read_end(q);
                        rc = sqlite3_blob_open(q->db, "main", "items", "data", (sqlite3_int64) id, 0, &q->read_blob);
                        if (rc != SQLITE_OK) {
                                tg_queue_read_end(q);
                                return rc == SQLITE_ERROR ? -ENOENT : (tg_db_errno(rc) ?: -EIO);
                        }
                        q->read_blob_id = id;
                }
                length = sqlite3_blob_bytes(q->read_blob);
                if (offset >= (uint64_t) length)
                        return 0;
                size = MIN(size, (size_t) ((uint64_t) length - offset));
                rc = sqlite3_blob_read(q->read_blob, buf, (int) size, (int) offset);
                if (rc == SQLITE_OK)
                        return (ssize_t) size;
                tg_queue_read_end(q);
                /* SQLITE_ABORT: the row changed since the handle was opened. */
                if (rc != SQLITE_ABORT || attempt > 0)
                        return tg_db_errno(rc) ?: -EIO;
        }
}

int tg_queue_get(TgQueue *q, uint64_t id, TgQueueItem *ret) {
        sqlite3_stmt *s = q->stmt[STMT_GET];
        int rc;

        sqlite3_bind_int64(s, 1, (sqlite3_int64) id);
        rc = sqlite3_step(s);
        if (rc != SQLITE_ROW) {
                sqlite3_reset(s);
                return rc == SQLITE_DONE ? -ENOENT : (tg_db_errno(rc) ?: -EIO);
        }
        *ret = (TgQueueItem) {
                .id = id,
                .priority = (unsigned) sqlite3_column_int(s, 0),
                .created_usec = (uint64_t) sqlite3_column_int64(s, 1),
                .expires_usec = (uint64_t) sqlite3_column_int64(s, 2),
                .records = (uint32_t) sqlite3_column_int64(s, 3),
                .size = (size_t) sqlite3_column_int64(s, 4),
        };
        sqlite3_reset(s);
        return 0;
}
