/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>

#include "tg-db.h"
#include "tg-queue.h"
#include "tg-test.h"

/* Tests share one shape of item: `size` bytes of a pattern derived from the id. */
static void insert(TgQueue *q, uint64_t id, unsigned priority, const char *kind, uint32_t records, size_t size,
                   uint64_t expires_usec) {
        uint8_t *data = malloc(size + 1);

        assert_se(data);
        for (size_t i = 0; i < size; i++)
                data[i] = (uint8_t) (id + i);
        assert_ok(tg_queue_insert(q, &(TgQueueItem) {
                .id = id,
                .priority = priority,
                .kind = kind,
                .encoding = "tgr1",
                .created_usec = 1000 + id,
                .expires_usec = expires_usec,
                .records = records,
                .data = data,
                .size = size,
        }));
        free(data);
}

static void expect_counts(TgQueue *q, uint64_t items, uint64_t records, uint64_t bytes) {
        TgQueueCounts total;

        assert_ok(tg_queue_counts(q, &total, NULL));
        assert_eq(total.items, items);
        assert_eq(total.records, records);
        assert_eq(total.bytes, bytes);
}

static void expect_priority(TgQueue *q, unsigned p, uint64_t items, uint64_t records, uint64_t bytes) {
        TgQueueCounts by[TG_PRIORITIES];

        assert_ok(tg_queue_counts(q, NULL, by));
        assert_eq(by[p].items, items);
        assert_eq(by[p].records, records);
        assert_eq(by[p].bytes, bytes);
}

/* The stats kept by triggers must equal a fresh count over the rows. */
static void expect_stats_exact(TgQueue *q) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *s = NULL;
        TgQueueCounts by[TG_PRIORITIES];

        assert_ok(tg_queue_counts(q, NULL, by));
        assert_eq(sqlite3_prepare_v2(tg_queue_db(q),
                                     "SELECT count(*), coalesce(sum(records), 0), coalesce(sum(length(data)), 0) "
                                     "FROM items WHERE priority = ?",
                                     -1, &s, NULL),
                  SQLITE_OK);
        for (unsigned p = 0; p < TG_PRIORITIES; p++) {
                sqlite3_bind_int(s, 1, (int) p);
                assert_eq(sqlite3_step(s), SQLITE_ROW);
                assert_eq(by[p].items, (uint64_t) sqlite3_column_int64(s, 0));
                assert_eq(by[p].records, (uint64_t) sqlite3_column_int64(s, 1));
                assert_eq(by[p].bytes, (uint64_t) sqlite3_column_int64(s, 2));
                sqlite3_reset(s);
        }
}

static bool exists(TgQueue *q, uint64_t id) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *s = NULL;

        assert_eq(sqlite3_prepare_v2(tg_queue_db(q), "SELECT 1 FROM items WHERE id = ?", -1, &s, NULL), SQLITE_OK);
        sqlite3_bind_int64(s, 1, (sqlite3_int64) id);
        return sqlite3_step(s) == SQLITE_ROW;
}

static void pragma_text(sqlite3 *db, const char *sql, char *buf, size_t size) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *s = NULL;

        assert_eq(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
        assert_eq(sqlite3_step(s), SQLITE_ROW);
        snprintf(buf, size, "%s", (const char *) sqlite3_column_text(s, 0));
}

static void test_schema(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_free_ char *path = tg_test_path(dir, "q.db"), *aside = NULL;
        _cleanup_(tg_queue_freep) TgQueue *q = NULL;
        char buf[64];
        struct stat st;

        assert_se(stat(path, &st) < 0 && errno == ENOENT);
        assert_ok(tg_queue_open(path, NULL, &q, &aside));
        assert_se(aside == NULL);
        assert_streq(tg_queue_path(q), path);
        assert_se(stat(path, &st) == 0);

        pragma_text(tg_queue_db(q), "PRAGMA user_version", buf, sizeof buf);
        assert_streq(buf, "1");
        pragma_text(tg_queue_db(q), "PRAGMA journal_mode", buf, sizeof buf);
        assert_streq(buf, "wal");
        pragma_text(tg_queue_db(q), "SELECT group_concat(name, ',') FROM "
                                    "(SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger') ORDER BY name)",
                    buf, sizeof buf);
        assert_streq(buf, "item_stats,items,items_ad,items_ai,items_au,meta");
        expect_counts(q, 0, 0, 0);

        {
                uint64_t v = 77;
                assert_eq(tg_db_meta_get_u64(tg_queue_db(q), "next-id", &v), -ENOENT);
                assert_eq(v, UINT64_C(77));
                assert_ok(tg_db_meta_set_u64(tg_queue_db(q), "next-id", UINT64_C(1) << 62));
                assert_ok(tg_db_meta_set_u64(tg_queue_db(q), "next-id", 5));
                assert_ok(tg_db_meta_get_u64(tg_queue_db(q), "next-id", &v));
                assert_eq(v, UINT64_C(5));
        }
        {
                /* The durable option and a custom cache only change pragmas. */
                _cleanup_(tg_queue_freep) TgQueue *q2 = NULL;
                TgDbOptions opts = { .durable = true, .cache_kib = 64, .busy_timeout_ms = 100 };
                assert_ok(tg_queue_open(path, &opts, &q2, NULL));
                pragma_text(tg_queue_db(q2), "PRAGMA synchronous", buf, sizeof buf);
                assert_streq(buf, "2"); /* FULL */
                pragma_text(tg_queue_db(q), "PRAGMA synchronous", buf, sizeof buf);
                assert_streq(buf, "1"); /* NORMAL */
        }
}

static void test_insert_delete(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_free_ char *path = tg_test_path(dir, "q.db");
        _cleanup_(tg_queue_freep) TgQueue *q = NULL;

        assert_ok(tg_queue_open(path, NULL, &q, NULL));

        assert_ok(tg_queue_begin(q));
        insert(q, 1, 5, "segment", 10, 100, 0);
        insert(q, 2, 5, "segment", 20, 200, 0);
        insert(q, 3, 0, "batch", 1, 50, 0);
        insert(q, 4, 9, "segment", 4, 0, 0); /* an empty blob is an item too */
        assert_ok(tg_queue_commit(q));
        expect_counts(q, 4, 35, 350);
        expect_priority(q, 5, 2, 30, 300);
        expect_priority(q, 0, 1, 1, 50);
        expect_priority(q, 9, 1, 4, 0);
        expect_stats_exact(q);

        /* A rolled-back transaction leaves no trace, in rows or in stats. */
        assert_ok(tg_queue_begin(q));
        insert(q, 5, 5, "segment", 1000, 1000, 0);
        assert_eq(tg_queue_delete(q, 1), 1);
        expect_counts(q, 4, 1025, 1250);
        assert_ok(tg_queue_rollback(q));
        expect_counts(q, 4, 35, 350);
        assert_se(exists(q, 1) && !exists(q, 5));

        assert_ok(tg_queue_begin(q));
        assert_eq(tg_queue_delete(q, 2), 1);
        assert_eq(tg_queue_delete(q, 2), 0); /* already gone */
        assert_eq(tg_queue_delete(q, 999), 0);
        assert_ok(tg_queue_commit(q));
        expect_counts(q, 3, 15, 150);
        expect_priority(q, 5, 1, 10, 100);
        expect_stats_exact(q);

        /* Bad input: a priority out of range, an id used before. */
        assert_eq(tg_queue_insert(q, &(TgQueueItem) { .id = 50, .priority = 10, .kind = "k", .encoding = "e" }),
                  -EINVAL);
        assert_eq(tg_queue_insert(q, &(TgQueueItem) { .id = 1, .priority = 1, .kind = "k", .encoding = "e" }),
                  -EEXIST);
        expect_counts(q, 3, 15, 150);

        /* Delete everything: stats go back to zero, not negative. */
        assert_ok(tg_queue_begin(q));
        assert_eq(tg_queue_delete(q, 1), 1);
        assert_eq(tg_queue_delete(q, 3), 1);
        assert_eq(tg_queue_delete(q, 4), 1);
        assert_ok(tg_queue_commit(q));
        expect_counts(q, 0, 0, 0);
        expect_stats_exact(q);
}

static void test_relabel(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_free_ char *path = tg_test_path(dir, "q.db");
        _cleanup_(tg_queue_freep) TgQueue *q = NULL;
        _cleanup_free_ void *data = NULL;
        TgQueueItem item;

        assert_ok(tg_queue_open(path, NULL, &q, NULL));
        assert_ok(tg_queue_begin(q));
        insert(q, 10, 5, "batch", 7, 70, 0);
        insert(q, 11, 5, "batch", 3, 30, 0);
        assert_ok(tg_queue_commit(q));
        expect_priority(q, 5, 2, 10, 100);

        assert_ok(tg_queue_relabel(q, 10, "refused", 2));
        expect_priority(q, 5, 1, 3, 30);
        expect_priority(q, 2, 1, 7, 70);
        expect_counts(q, 2, 10, 100);
        expect_stats_exact(q);

        /* Same priority, new kind: the stats stay as they are. */
        assert_ok(tg_queue_relabel(q, 11, "refused", 5));
        expect_priority(q, 5, 1, 3, 30);
        expect_stats_exact(q);

        assert_eq(tg_queue_next(q, "batch", false, NULL, &item, &data), -ENOENT);
        assert_ok(tg_queue_next(q, "refused", true, NULL, &item, &data));
        assert_eq(item.id, UINT64_C(10));
        assert_eq(item.priority, 2u);
        assert_streq(item.kind, "refused");

        assert_eq(tg_queue_relabel(q, 10, "x", TG_PRIORITY_MAX + 1), -EINVAL);
        assert_ok(tg_queue_relabel(q, 12345, "x", 1)); /* no such item: nothing changes */
        expect_counts(q, 2, 10, 100);
        expect_stats_exact(q);
}

static void test_next(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_free_ char *path = tg_test_path(dir, "q.db");
        _cleanup_(tg_queue_freep) TgQueue *q = NULL;
        /* id, priority, kind */
        static const struct {
                uint64_t id;
                unsigned priority;
                const char *kind;
        } items[] = {
                { 10, 5, "seg" }, { 11, 1, "seg" }, { 12, 5, "seg" }, { 13, 1, "other" },
                { 14, 0, "seg" }, { 15, 9, "seg" }, { 16, 1, "seg" },
        };
        static const uint64_t by_id[] = { 10, 11, 12, 14, 15, 16 };
        static const uint64_t by_priority[] = { 14, 11, 16, 10, 12, 15 };
        TgQueueCursor cursor;
        TgQueueItem item;
        bool have;

        assert_ok(tg_queue_open(path, NULL, &q, NULL));
        assert_ok(tg_queue_begin(q));
        for (size_t i = 0; i < ELEMENTSOF(items); i++)
                insert(q, items[i].id, items[i].priority, items[i].kind, (uint32_t) i + 1, 10 + i,
                       i == 2 ? 5000 : 0);
        assert_ok(tg_queue_commit(q));

        for (int mode = 0; mode < 2; mode++) {
                const uint64_t *expect = mode ? by_priority : by_id;
                size_t n = 0;

                have = false;
                for (;;) {
                        _cleanup_free_ void *data = NULL;
                        int r = tg_queue_next(q, "seg", mode, have ? &cursor : NULL, &item, &data);
                        if (r == -ENOENT)
                                break;
                        assert_ok(r);
                        assert_se(n < ELEMENTSOF(by_id));
                        assert_eq(item.id, expect[n]);
                        assert_streq(item.kind, "seg");
                        assert_streq(item.encoding, "tgr1");
                        assert_eq(item.created_usec, 1000 + item.id);
                        assert_eq(item.expires_usec, item.id == 12 ? UINT64_C(5000) : UINT64_C(0));
                        assert_se(item.data == data);
                        for (size_t k = 0; k < item.size; k++)
                                assert_eq(((const uint8_t *) item.data)[k], (uint8_t) (item.id + k));
                        for (size_t k = 0; k < ELEMENTSOF(items); k++)
                                if (items[k].id == item.id) {
                                        assert_eq(item.priority, items[k].priority);
                                        assert_eq(item.records, (uint32_t) k + 1);
                                        assert_eq(item.size, 10 + k);
                                }
                        cursor = (TgQueueCursor) { .priority = item.priority, .id = item.id };
                        have = true;
                        n++;
                }
                assert_eq(n, ELEMENTSOF(by_id));
        }

        /* A cursor in the middle; a cursor pointing at an item deleted since. */
        {
                _cleanup_free_ void *data = NULL;
                cursor = (TgQueueCursor) { .priority = 1, .id = 16 };
                assert_ok(tg_queue_next(q, "seg", true, &cursor, &item, &data));
                assert_eq(item.id, UINT64_C(10));
        }
        {
                _cleanup_free_ void *data = NULL;
                assert_ok(tg_queue_begin(q));
                assert_eq(tg_queue_delete(q, 11), 1);
                assert_ok(tg_queue_commit(q));
                cursor = (TgQueueCursor) { .priority = 1, .id = 11 };
                assert_ok(tg_queue_next(q, "seg", true, &cursor, &item, &data));
                assert_eq(item.id, UINT64_C(16));
        }
        {
                _cleanup_free_ void *data = NULL;
                assert_ok(tg_queue_next(q, "other", false, NULL, &item, &data));
                assert_eq(item.id, UINT64_C(13));
                cursor = (TgQueueCursor) { .priority = item.priority, .id = item.id };
                free(data);
                data = NULL;
                assert_eq(tg_queue_next(q, "other", false, &cursor, &item, &data), -ENOENT);
                assert_eq(tg_queue_next(q, "none", true, NULL, &item, &data), -ENOENT);
                assert_se(data == NULL);
        }
}

static void test_expiry(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_free_ char *path = tg_test_path(dir, "q.db");
        _cleanup_(tg_queue_freep) TgQueue *q = NULL;
        TgQueueEvicted ev;
        uint64_t next;

        assert_ok(tg_queue_open(path, NULL, &q, NULL));
        assert_eq(tg_queue_next_expiry(q, &next), -ENOENT);

        assert_ok(tg_queue_begin(q));
        insert(q, 1, 0, "k", 1, 10, 0);        /* never expires */
        insert(q, 2, 3, "k", 2, 20, 100);
        insert(q, 3, 9, "k", 4, 40, 200);      /* expires exactly "now" */
        insert(q, 4, 3, "k", 8, 80, 201);
        insert(q, 5, 0, "k", 16, 160, 300);
        assert_ok(tg_queue_commit(q));
        assert_ok(tg_queue_next_expiry(q, &next));
        assert_eq(next, UINT64_C(100));

        /* Nothing due yet. */
        assert_ok(tg_queue_begin(q));
        assert_ok(tg_queue_enforce(q, NULL, 99, &ev));
        assert_ok(tg_queue_commit(q));
        assert_eq(ev.expired.items, UINT64_C(0));
        expect_counts(q, 5, 31, 310);

        assert_ok(tg_queue_begin(q));
        assert_ok(tg_queue_enforce(q, NULL, 200, &ev));
        assert_ok(tg_queue_commit(q));
        assert_eq(ev.expired.items, UINT64_C(2));
        assert_eq(ev.expired.records, UINT64_C(6));
        assert_eq(ev.expired.bytes, UINT64_C(60));
        assert_eq(ev.over_quota.items, UINT64_C(0));
        assert_se(exists(q, 1) && !exists(q, 2) && !exists(q, 3) && exists(q, 4) && exists(q, 5));
        expect_counts(q, 3, 25, 250);
        expect_stats_exact(q);
        assert_ok(tg_queue_next_expiry(q, &next));
        assert_eq(next, UINT64_C(201));

        /* Far in the future: everything that expires goes, the rest stays. */
        assert_ok(tg_queue_begin(q));
        assert_ok(tg_queue_enforce(q, NULL, UINT64_C(1) << 62, &ev));
        assert_ok(tg_queue_commit(q));
        assert_eq(ev.expired.items, UINT64_C(2));
        assert_eq(ev.expired.records, UINT64_C(24));
        assert_eq(ev.expired.bytes, UINT64_C(240));
        expect_counts(q, 1, 1, 10);
        assert_eq(tg_queue_next_expiry(q, &next), -ENOENT);
        expect_stats_exact(q);
}

static void test_priority_quota(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_free_ char *path = tg_test_path(dir, "q.db");
        _cleanup_(tg_queue_freep) TgQueue *q = NULL;
        TgQueueLimits limits = {};
        TgQueueEvicted ev;

        assert_ok(tg_queue_open(path, NULL, &q, NULL));
        assert_ok(tg_queue_begin(q));
        /* Priority 3: five items of 100 bytes, interleaved with priority 7 and 1 items. */
        for (uint64_t id = 1; id <= 15; id++)
                insert(q, id, id % 3 == 0 ? 7 : id % 3 == 1 ? 3 : 1, "k", (uint32_t) id, 100, 0);
        assert_ok(tg_queue_commit(q));
        expect_priority(q, 3, 5, 1 + 4 + 7 + 10 + 13, 500);

        /* 500 bytes against a quota of 250: the three oldest go (300 bytes),
         * not fewer (still over) and not more (already under). */
        limits.priority_max_bytes[3] = 250;
        limits.priority_max_bytes[1] = 500; /* exactly at quota: untouched */
        assert_ok(tg_queue_begin(q));
        assert_ok(tg_queue_enforce(q, &limits, 0, &ev));
        assert_ok(tg_queue_commit(q));
        assert_eq(ev.expired.items, UINT64_C(0));
        assert_eq(ev.over_quota.items, UINT64_C(3));
        assert_eq(ev.over_quota.records, UINT64_C(1 + 4 + 7));
        assert_eq(ev.over_quota.bytes, UINT64_C(300));
        assert_se(!exists(q, 1) && !exists(q, 4) && !exists(q, 7) && exists(q, 10) && exists(q, 13));
        expect_priority(q, 3, 2, 23, 200);
        expect_priority(q, 1, 5, 2 + 5 + 8 + 11 + 14, 500);
        expect_priority(q, 7, 5, 3 + 6 + 9 + 12 + 15, 500);
        expect_stats_exact(q);

        /* Enforcing again changes nothing. */
        assert_ok(tg_queue_begin(q));
        assert_ok(tg_queue_enforce(q, &limits, 0, &ev));
        assert_ok(tg_queue_commit(q));
        assert_eq(ev.over_quota.items, UINT64_C(0));
        expect_counts(q, 12, 23 + 40 + 45, 1200);
}

static void test_total_quota(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_free_ char *path = tg_test_path(dir, "q.db");
        _cleanup_(tg_queue_freep) TgQueue *q = NULL;
        TgQueueLimits limits = { .max_bytes = 350 };
        TgQueueEvicted ev;

        assert_ok(tg_queue_open(path, NULL, &q, NULL));
        assert_ok(tg_queue_begin(q));
        /* Oldest first by id, whatever the insertion order. */
        insert(q, 20, 0, "k", 1, 100, 0);
        insert(q, 21, 0, "k", 1, 100, 0);
        insert(q, 33, 5, "k", 3, 100, 0);
        insert(q, 31, 5, "k", 5, 100, 0);
        insert(q, 32, 5, "k", 7, 100, 0);
        insert(q, 40, 9, "k", 11, 60, 0);
        insert(q, 41, 9, "k", 13, 40, 0);
        assert_ok(tg_queue_commit(q));
        expect_counts(q, 7, 41, 600);

        /* 600 against 350: priority 9 goes entirely (100 bytes), then the two
         * oldest of priority 5 (ids 31, 32); priority 0 is untouched. */
        assert_ok(tg_queue_begin(q));
        assert_ok(tg_queue_enforce(q, &limits, 0, &ev));
        assert_ok(tg_queue_commit(q));
        assert_eq(ev.over_quota.items, UINT64_C(4));
        assert_eq(ev.over_quota.records, UINT64_C(11 + 13 + 5 + 7));
        assert_eq(ev.over_quota.bytes, UINT64_C(300));
        assert_se(exists(q, 20) && exists(q, 21) && exists(q, 33));
        assert_se(!exists(q, 31) && !exists(q, 32) && !exists(q, 40) && !exists(q, 41));
        expect_counts(q, 3, 5, 300);
        expect_stats_exact(q);

        /* Under quota: nothing more. A tighter quota reaches priority 0 last. */
        limits.max_bytes = 150;
        assert_ok(tg_queue_begin(q));
        assert_ok(tg_queue_enforce(q, &limits, 0, &ev));
        assert_ok(tg_queue_commit(q));
        assert_eq(ev.over_quota.items, UINT64_C(2));
        assert_eq(ev.over_quota.bytes, UINT64_C(200));
        assert_se(!exists(q, 33) && !exists(q, 20) && exists(q, 21));
        expect_counts(q, 1, 1, 100);
}

/* Expiry first, then own quotas, then the total: counted separately. */
static void test_enforce_order(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_free_ char *path = tg_test_path(dir, "q.db");
        _cleanup_(tg_queue_freep) TgQueue *q = NULL;
        TgQueueLimits limits = { .max_bytes = 300 };
        TgQueueEvicted ev;

        limits.priority_max_bytes[2] = 100;
        assert_ok(tg_queue_open(path, NULL, &q, NULL));
        assert_ok(tg_queue_begin(q));
        insert(q, 1, 9, "k", 1, 100, 50);      /* expired: would otherwise be the first evicted */
        insert(q, 2, 2, "k", 2, 100, 0);
        insert(q, 3, 2, "k", 4, 100, 0);       /* priority 2 over its quota by 100 */
        insert(q, 4, 9, "k", 8, 100, 0);
        insert(q, 5, 0, "k", 16, 100, 0);
        insert(q, 6, 0, "k", 32, 100, 0);
        assert_ok(tg_queue_commit(q));

        assert_ok(tg_queue_begin(q));
        assert_ok(tg_queue_enforce(q, &limits, 50, &ev));
        assert_ok(tg_queue_commit(q));
        /* After expiry (id 1) 500 bytes; own quota takes id 2 (400); the total
         * then takes priority 9's id 4 (300). */
        assert_eq(ev.expired.items, UINT64_C(1));
        assert_eq(ev.expired.records, UINT64_C(1));
        assert_eq(ev.expired.bytes, UINT64_C(100));
        assert_eq(ev.over_quota.items, UINT64_C(2));
        assert_eq(ev.over_quota.records, UINT64_C(2 + 8));
        assert_eq(ev.over_quota.bytes, UINT64_C(200));
        assert_se(!exists(q, 1) && !exists(q, 2) && exists(q, 3) && !exists(q, 4) && exists(q, 5) && exists(q, 6));
        expect_counts(q, 3, 52, 300);
        expect_stats_exact(q);
}

static void test_reopen_and_second_connection(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_free_ char *path = tg_test_path(dir, "q.db");
        _cleanup_(tg_queue_freep) TgQueue *q = NULL, *q2 = NULL;
        TgQueueItem item;

        assert_ok(tg_queue_open(path, NULL, &q, NULL));
        assert_ok(tg_queue_begin(q));
        insert(q, 1, 4, "seg", 3, 33, 0);
        assert_ok(tg_queue_commit(q));
        q = tg_queue_free(q);

        assert_ok(tg_queue_open(path, NULL, &q, NULL));
        expect_counts(q, 1, 3, 33);
        {
                _cleanup_free_ void *data = NULL;
                assert_ok(tg_queue_next(q, "seg", false, NULL, &item, &data));
                assert_eq(item.id, UINT64_C(1));
                assert_eq(item.size, (size_t) 33);
        }

        /* Two connections, as the classifier and key-sync share the outbox. */
        assert_ok(tg_queue_open(path, NULL, &q2, NULL));
        expect_counts(q2, 1, 3, 33);

        assert_ok(tg_queue_begin(q));
        insert(q, 2, 1, "seg", 5, 55, 0);
        /* Not committed: the other connection does not see it yet. */
        expect_counts(q2, 1, 3, 33);
        {
                _cleanup_free_ void *data = NULL;
                TgQueueCursor c = { .priority = 4, .id = 1 };
                assert_eq(tg_queue_next(q2, "seg", false, &c, &item, &data), -ENOENT);
        }
        /* While q holds the write lock, q2 cannot begin one (busy timeout 100ms here). */
        {
                _cleanup_(tg_queue_freep) TgQueue *q3 = NULL;
                TgDbOptions opts = { .busy_timeout_ms = 100 };
                assert_ok(tg_queue_open(path, &opts, &q3, NULL));
                assert_eq(tg_queue_begin(q3), -EBUSY);
        }
        assert_ok(tg_queue_commit(q));

        expect_counts(q2, 2, 8, 88);
        expect_priority(q2, 1, 1, 5, 55);
        {
                _cleanup_free_ void *data = NULL;
                assert_ok(tg_queue_next(q2, "seg", true, NULL, &item, &data));
                assert_eq(item.id, UINT64_C(2));
                for (size_t k = 0; k < item.size; k++)
                        assert_eq(((const uint8_t *) item.data)[k], (uint8_t) (2 + k));
        }

        /* And the other way round: q2 deletes, q sees the stats drop. */
        assert_ok(tg_queue_begin(q2));
        assert_eq(tg_queue_delete(q2, 1), 1);
        assert_ok(tg_queue_commit(q2));
        expect_counts(q, 1, 5, 55);
        expect_stats_exact(q);
}

/* A file from a newer build (user_version 99), in WAL mode as every Tollgate database is. */
static void make_future_db(const char *path, const char *journal_mode) {
        sqlite3 *db = NULL;
        char sql[256];

        assert_eq(sqlite3_open(path, &db), SQLITE_OK);
        snprintf(sql, sizeof sql,
                 "PRAGMA journal_mode=%s; CREATE TABLE future(x); INSERT INTO future VALUES (42); "
                 "PRAGMA user_version=99;",
                 journal_mode);
        assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        assert_eq(sqlite3_close(db), SQLITE_OK);
}

static void expect_refused_untouched(const char *dir, const char *path) {
        _cleanup_free_ uint8_t *before = NULL, *after = NULL;
        _cleanup_free_ char *wal = NULL, *shm = NULL;
        TgQueue *q = NULL;
        char *aside = (char *) "x";
        size_t n_before, n_after;
        struct stat st;

        before = tg_test_read_file(path, &n_before);
        assert_se(before);
        assert_eq(tg_queue_open(path, NULL, &q, &aside), -EPROTO);
        assert_se(q == NULL);
        assert_se(aside == NULL);
        after = tg_test_read_file(path, &n_after);
        assert_se(after);
        assert_eq(n_after, n_before);
        assert_memeq(after, before, n_before);

        /* Not moved aside, no side files left over. */
        wal = tg_test_path(dir, "future.db-wal");
        shm = tg_test_path(dir, "future.db-shm");
        assert_se(stat(wal, &st) < 0 && errno == ENOENT);
        assert_se(stat(shm, &st) < 0 && errno == ENOENT);
        {
                DIR *d = opendir(dir);
                struct dirent *de;
                assert_se(d);
                while ((de = readdir(d)))
                        assert_se(!startswith(de->d_name, "future.db.corrupt-"));
                closedir(d);
        }
}

static void test_newer_schema_refused(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_free_ char *path = tg_test_path(dir, "future.db");

        make_future_db(path, "WAL");
        expect_refused_untouched(dir, path);
}

/* The same with the file in rollback-journal mode: refusing it must not
 * first convert it to WAL. Regression test: tg_db_open() once set
 * journal_mode=WAL before it read user_version, rewriting bytes 18-19 of the
 * header of a file it then refused. */
static void test_newer_schema_untouched_any_journal_mode(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_free_ char *path = tg_test_path(dir, "future.db");

        make_future_db(path, "DELETE");
        expect_refused_untouched(dir, path);
}

static void test_garbage_moved_aside(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_free_ char *path = tg_test_path(dir, "q.db"), *aside = NULL, *prefix = NULL;
        _cleanup_(tg_queue_freep) TgQueue *q = NULL;
        _cleanup_free_ uint8_t *kept = NULL;
        uint8_t garbage[8192];
        uint32_t x = 0x12345678;
        size_t n;

        /* Deterministic noise (xorshift32), so a failure reproduces. */
        for (size_t i = 0; i < sizeof garbage; i++) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                garbage[i] = (uint8_t) x;
        }
        tg_test_write_file(path, garbage, sizeof garbage);

        assert_ok(tg_queue_open(path, NULL, &q, &aside));
        assert_se(aside);
        prefix = tg_test_path(dir, "q.db.corrupt-");
        assert_se(startswith(aside, prefix));
        assert_se(strlen(aside) > strlen(prefix));
        /* The evidence is kept byte for byte. */
        kept = tg_test_read_file(aside, &n);
        assert_se(kept);
        assert_eq(n, sizeof garbage);
        assert_memeq(kept, garbage, sizeof garbage);

        /* The fresh queue works. */
        expect_counts(q, 0, 0, 0);
        assert_ok(tg_queue_begin(q));
        insert(q, 1, 0, "k", 1, 10, 0);
        assert_ok(tg_queue_commit(q));
        expect_counts(q, 1, 1, 10);
        q = tg_queue_free(q);
        free(aside);
        aside = NULL;

        /* Reopening the fresh file moves nothing. */
        assert_ok(tg_queue_open(path, NULL, &q, &aside));
        assert_se(aside == NULL);
        expect_counts(q, 1, 1, 10);
}

/* A short file of text, as an editor or a mistaken copy leaves behind. */
static void test_text_file_moved_aside(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_free_ char *path = tg_test_path(dir, "q.db"), *aside = NULL;
        _cleanup_(tg_queue_freep) TgQueue *q = NULL;
        static const char text[] = "this is not a database, it is a note to self\n";

        tg_test_write_file(path, text, sizeof text - 1);
        assert_ok(tg_queue_open(path, NULL, &q, &aside));
        assert_se(aside);
        expect_counts(q, 0, 0, 0);
}

/* Incremental reads: pieces of one item, two items in turn, an item deleted
 * or changed between reads (by this connection and by another one), and
 * writes while a read handle is open. */
static void test_read_pieces(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_free_ char *path = tg_test_path(dir, "q.db");
        _cleanup_(tg_queue_freep) TgQueue *q = NULL, *other = NULL;
        const size_t big = 3 * 1024 * 1024 + 17;
        uint8_t *buf = malloc(big);
        size_t got = 0;
        ssize_t n;

        assert_se(buf);
        assert_ok(tg_queue_open(path, NULL, &q, NULL));
        assert_ok(tg_queue_open(path, NULL, &other, NULL));
        assert_ok(tg_queue_begin(q));
        insert(q, 1, 5, "segment", 1, big, 0);
        insert(q, 2, 5, "segment", 1, 1000, 0);
        assert_ok(tg_queue_commit(q));

        /* Item 1 in 64 KiB pieces, with reads of item 2 in between. */
        while ((n = tg_queue_read(q, 1, got, buf + got, 65536)) > 0) {
                uint8_t small[10];

                got += (size_t) n;
                assert_eq(tg_queue_read(q, 2, 990, small, sizeof small), 10);
                assert_eq(small[0], (uint8_t) (2 + 990));
        }
        assert_eq(n, 0);
        assert_eq(got, big);
        for (size_t i = 0; i < big; i++)
                if (buf[i] != (uint8_t) (1 + i))
                        assert_se(!"item 1 read back wrong");

        /* Deleted by this connection while its handle is open. */
        assert_eq(tg_queue_read(q, 1, 0, buf, 100), 100);
        assert_ok(tg_queue_begin(q));
        assert_ok(tg_queue_delete(q, 1));
        assert_ok(tg_queue_commit(q));
        assert_eq(tg_queue_read(q, 1, 100, buf, 100), -ENOENT);

        /* Deleted by another connection (the classifier evicting it) while the
         * handle is open: the next read says so. */
        assert_eq(tg_queue_read(q, 2, 0, buf, 10), 10);
        tg_queue_read_end(q); /* our read transaction would block its checkpoint, not its write */
        assert_ok(tg_queue_begin(other));
        assert_ok(tg_queue_delete(other, 2));
        assert_ok(tg_queue_commit(other));
        assert_eq(tg_queue_read(q, 2, 10, buf, 10), -ENOENT);
        free(buf);
}

TG_TEST_MAIN(TEST(schema), TEST(insert_delete), TEST(read_pieces), TEST(relabel), TEST(next), TEST(expiry), TEST(priority_quota),
             TEST(total_quota), TEST(enforce_order), TEST(reopen_and_second_connection),
             TEST(newer_schema_refused), TEST(newer_schema_untouched_any_journal_mode),
             TEST(garbage_moved_aside), TEST(text_file_moved_aside));
