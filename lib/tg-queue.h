/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A durable queue of items in one SQLite file (WAL). Used for the outbox
 * (classifier writes deferred-data segments, key-sync drains them to the
 * key) and for the classifier's real-time backlog (HTTP batches waiting for
 * the uplink).
 *
 * An item is an opaque blob with a priority (0 most important … 9 least), a
 * kind, an encoding, a record count and an expiry. Ids are chosen by the
 * writer, are unique and never reused, so they can serve as idempotency keys
 * end to end.
 *
 * Writers group many inserts into one transaction (group commit):
 *   tg_queue_begin → tg_queue_insert… / tg_queue_delete… → tg_queue_enforce → tg_queue_commit
 *
 * Accounting: per-priority counts of items, records and bytes (bytes = the
 * blobs' lengths) live in table item_stats, kept exact by triggers, so every
 * process sharing the file reads the same figures cheaply.
 *
 * Eviction rule (tg_queue_enforce):
 *   1. items whose expiry has passed are deleted, whatever their priority;
 *   2. a priority over its own quota loses its oldest items until it fits;
 *   3. while the queue is over its total quota, the least important
 *      priority that has items loses its oldest items.
 * A row leaves the queue only by tg_queue_delete (its consumer's
 * acknowledgement) or by this rule; evictions are reported to the caller.
 */

#include <sqlite3.h>

#include "tg-db.h"

#define TG_PRIORITY_MAX 9
#define TG_PRIORITIES (TG_PRIORITY_MAX + 1)

typedef struct TgQueue TgQueue;

typedef struct TgQueueItem {
        uint64_t id;
        unsigned priority;
        const char *kind;
        const char *encoding;
        uint64_t created_usec;
        uint64_t expires_usec; /* CLOCK_REALTIME; 0 = never */
        uint32_t records;
        const void *data;
        size_t size;
} TgQueueItem;

typedef struct TgQueueCounts {
        uint64_t items;
        uint64_t records;
        uint64_t bytes;
} TgQueueCounts;

typedef struct TgQueueLimits {
        uint64_t max_bytes;                       /* 0 = unlimited */
        uint64_t priority_max_bytes[TG_PRIORITIES]; /* 0 = no quota of its own */
} TgQueueLimits;

typedef struct TgQueueEvicted {
        TgQueueCounts expired;
        TgQueueCounts over_quota;
} TgQueueEvicted;

int tg_queue_open(const char *path, const TgDbOptions *opts, TgQueue **ret, char **ret_moved_aside);
TgQueue *tg_queue_free(TgQueue *q);
sqlite3 *tg_queue_db(TgQueue *q);
const char *tg_queue_path(TgQueue *q);

int tg_queue_begin(TgQueue *q);
int tg_queue_commit(TgQueue *q);
int tg_queue_rollback(TgQueue *q);

int tg_queue_insert(TgQueue *q, const TgQueueItem *item);
/* Returns 1 if the item was there, 0 if it was not (already gone). */
int tg_queue_delete(TgQueue *q, uint64_t id);
/* Re-label an item (e.g. a batch the receiver refused for good). */
int tg_queue_relabel(TgQueue *q, uint64_t id, const char *kind, unsigned priority);
int tg_queue_enforce(TgQueue *q, const TgQueueLimits *limits, uint64_t now_usec, TgQueueEvicted *ret);

int tg_queue_counts(TgQueue *q, TgQueueCounts *ret_total, TgQueueCounts ret_by_priority[TG_PRIORITIES]);
/* Earliest expiry of any item (-ENOENT if none expires). */
int tg_queue_next_expiry(TgQueue *q, uint64_t *ret);

/* The next item of `kind` after `after` in drain order: by (priority, id) when
 * by_priority, else by id. Pass after = NULL for the first. Items with an id
 * of `before` or more are not returned (0 or UINT64_MAX: no bound). The item's data
 * is copied into *ret_data (caller frees); strings in *ret point into it.
 * -ENOENT when there is none. */
typedef struct TgQueueCursor {
        unsigned priority;
        uint64_t id;
        uint64_t before;
} TgQueueCursor;

int tg_queue_next(TgQueue *q, const char *kind, bool by_priority, const TgQueueCursor *after, TgQueueItem *ret,
                  void **ret_data);

/* Read up to `size` bytes of item `id`'s data from `offset`, without loading
 * the whole blob (SQLite incremental blob I/O). Returns the bytes read (0 at
 * the end), -ENOENT if the item is gone. The blob handle stays open for the
 * next read of the same item until tg_queue_read_end() or tg_queue_begin().
 * An open handle is an open read transaction, which keeps the WAL from being
 * checkpointed: end reading whenever the caller would wait (a socket that
 * takes no more). */
ssize_t tg_queue_read(TgQueue *q, uint64_t id, uint64_t offset, void *buf, size_t size);
void tg_queue_read_end(TgQueue *q);

/* Metadata of item `id` (no data: ret->data is NULL, strings are not set). */
int tg_queue_get(TgQueue *q, uint64_t id, TgQueueItem *ret);

TG_DEFINE_TRIVIAL_CLEANUP_FUNC(TgQueue *, tg_queue_free);
