/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "classifier.h"
#include "tg-event.h"
#include "tg-log.h"
#include "tg-message-ids.h"
#include "tg-time.h"

#define BACKLOG_PRIORITY 0          /* batches waiting for the uplink */
#define REJECTED_PRIORITY TG_PRIORITY_MAX /* batches the TSP refused for good: kept, never re-sent */

static int open_queue(Manager *m, const char *name, TgQueue **ret) {
        _cleanup_free_ char *path = NULL, *aside = NULL;
        TgDbOptions opts = { .durable = m->config.durable, .cache_kib = 512 };
        int r;

        if (asprintf(&path, "%s/%s", m->config.state_dir, name) < 0)
                return log_error_errno(-ENOMEM, "Out of memory.");
        r = tg_queue_open(path, &opts, ret, &aside);
        if (r == -EPROTO)
                return log_event_errno(LOG_ERR, r, TG_MID_STORAGE_FAILED,
                                       "%s was written by a newer Tollgate; refusing to touch it.", path);
        if (r < 0)
                return log_event_errno(LOG_ERR, r, TG_MID_STORAGE_FAILED, "Cannot open %s: %m", path);
        if (aside)
                log_event(LOG_WARNING, TG_MID_STORAGE_RECOVERED,
                          "%s was not a readable database; kept it as %s and started a new one.", path, aside);
        return 0;
}

static int max_run_in(TgQueue *q, uint64_t *run) {
        sqlite3_stmt *s = NULL;
        uint64_t v;
        int r, rc;

        r = tg_db_meta_get_u64(tg_queue_db(q), "run", &v);
        if (r >= 0)
                *run = MAX(*run, v);
        else if (r != -ENOENT)
                return r;

        r = tg_db_prepare(tg_queue_db(q), "SELECT max(id) FROM items", &s);
        if (r < 0)
                return r;
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL)
                *run = MAX(*run, (uint64_t) sqlite3_column_int64(s, 0) >> ID_RUN_SHIFT);
        sqlite3_finalize(s);
        return 0;
}

/* Record ids are (run << 40 | n). The run number goes up by one at every start and
 * is stored in both files before any id of the run is handed out, so ids are never
 * reused — they are the TSP's and the cloud's deduplication keys. With no state at
 * all (first start, or both files lost) the run starts at a random point, so a
 * gateway that lost its disk does not replay ids the cloud already has. */
static int allocate_run(Manager *m) {
        uint64_t run = 0;
        int r;

        r = max_run_in(m->outbox, &run);
        if (r >= 0)
                r = max_run_in(m->backlog, &run);
        if (r < 0)
                return log_event_errno(LOG_ERR, r, TG_MID_STORAGE_FAILED, "Cannot read the run counter: %m");
        if (run == 0) {
                uint32_t rnd = 0;
                if (getrandom(&rnd, sizeof rnd, 0) != sizeof rnd)
                        rnd = (uint32_t) tg_now(CLOCK_REALTIME);
                run = rnd & 0x3fffff;
        }
        run++;
        if (run >= UINT64_C(1) << (64 - ID_RUN_SHIFT - 1))
                return log_error_errno(-EOVERFLOW, "Run counter exhausted.");
        r = tg_db_meta_set_u64(tg_queue_db(m->outbox), "run", run);
        if (r >= 0)
                r = tg_db_meta_set_u64(tg_queue_db(m->backlog), "run", run);
        if (r < 0)
                return log_event_errno(LOG_ERR, r, TG_MID_STORAGE_FAILED, "Cannot store the run counter: %m");
        m->run = run;
        m->next_seq = 0;
        return 0;
}

int store_refresh_counts(Manager *m) {
        TgQueueCounts by_priority[TG_PRIORITIES];
        int r;

        r = tg_queue_counts(m->outbox, &m->outbox_counts, NULL);
        if (r >= 0)
                r = tg_queue_counts(m->backlog, NULL, by_priority);
        if (r < 0)
                return r;
        m->backlog_counts = by_priority[BACKLOG_PRIORITY];
        return 0;
}

static int on_expiry(sd_event_source *s, uint64_t usec, void *userdata);

static void schedule_expiry(Manager *m) {
        uint64_t a = USEC_INFINITY, b = USEC_INFINITY, next;
        int r;

        (void) tg_queue_next_expiry(m->outbox, &a);
        (void) tg_queue_next_expiry(m->backlog, &b);
        next = MIN(a, b);
        if (next == USEC_INFINITY) {
                if (m->expiry_timer)
                        (void) sd_event_source_set_enabled(m->expiry_timer, SD_EVENT_OFF);
                return;
        }
        r = tg_event_arm(m->event, &m->expiry_timer, CLOCK_REALTIME, next, USEC_PER_SEC, on_expiry, m, "expiry");
        if (r < 0)
                log_warning_errno(r, "Cannot arm the expiry timer: %m");
}

static void report_evictions(Manager *m, const char *what, const char *msgid, const TgQueueEvicted *ev) {
        if (ev->expired.items > 0)
                log_event(LOG_NOTICE, msgid, "%s: %" PRIu64 " records (%" PRIu64 " bytes) expired and were deleted.",
                          what, ev->expired.records, ev->expired.bytes);
        if (ev->over_quota.items > 0)
                log_event(LOG_WARNING, msgid,
                          "%s: over its size quota, evicted %" PRIu64 " records (%" PRIu64 " bytes), least important and oldest first.",
                          what, ev->over_quota.records, ev->over_quota.bytes);
}

static TgQueueLimits outbox_limits(const Manager *m) {
        TgQueueLimits l = { .max_bytes = m->config.outbox_max_bytes };
        memcpy(l.priority_max_bytes, m->config.outbox_priority_max_bytes, sizeof l.priority_max_bytes);
        return l;
}

static int on_expiry(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        TgQueueEvicted ev;
        TgQueueLimits lo = outbox_limits(m), lb = { .max_bytes = m->config.backlog_max_bytes };
        uint64_t now = tg_now(CLOCK_REALTIME);
        int r;

        r = tg_queue_begin(m->outbox);
        if (r >= 0)
                r = tg_queue_enforce(m->outbox, &lo, now, &ev);
        if (r >= 0)
                r = tg_queue_commit(m->outbox);
        if (r < 0)
                (void) tg_queue_rollback(m->outbox);
        else {
                m->counters.deferred_evicted += ev.expired.records + ev.over_quota.records;
                report_evictions(m, "Outbox", TG_MID_OUTBOX_EVICTED, &ev);
        }

        r = tg_queue_begin(m->backlog);
        if (r >= 0)
                r = tg_queue_enforce(m->backlog, &lb, now, &ev);
        if (r >= 0)
                r = tg_queue_commit(m->backlog);
        if (r < 0)
                (void) tg_queue_rollback(m->backlog);
        else {
                m->counters.backlog_evicted += ev.expired.records + ev.over_quota.records;
                report_evictions(m, "Real-time backlog", TG_MID_BACKLOG_EVICTED, &ev);
        }
        (void) store_refresh_counts(m);
        manager_properties_changed(m);
        schedule_expiry(m);
        return 0;
}

int store_setup(Manager *m) {
        int r;

        if (mkdir(m->config.state_dir, 0750) < 0 && errno != EEXIST)
                return log_error_errno(negative_errno(), "Cannot create %s: %m", m->config.state_dir);
        r = open_queue(m, "outbox.db", &m->outbox);
        if (r < 0)
                return r;
        r = open_queue(m, "backlog.db", &m->backlog);
        if (r < 0)
                return r;
        r = allocate_run(m);
        if (r < 0)
                return r;
        r = store_refresh_counts(m);
        if (r < 0)
                return log_error_errno(r, "Cannot read queue sizes: %m");
        schedule_expiry(m);
        log_info("Storage in %s: outbox %" PRIu64 " records / %" PRIu64 " bytes, backlog %" PRIu64
                 " real-time records; run %" PRIu64 ".",
                 m->config.state_dir, m->outbox_counts.records, m->outbox_counts.bytes, m->backlog_counts.records,
                 m->run);
        return 0;
}

static void segments_free(Manager *m) {
        for (size_t i = 0; i < m->n_segments; i++)
                tg_buf_free(&m->segments[i].data);
        free(m->segments);
        m->segments = NULL;
        m->n_segments = 0;
}

void store_done(Manager *m) {
        PendingReply *p;

        segments_free(m);
        while ((p = m->replies)) {
                m->replies = p->next;
                sd_bus_message_unref(p->message);
                free(p);
        }
        free(m->backlog_deletes);
        m->commit_timer = sd_event_source_disable_unref(m->commit_timer);
        m->expiry_timer = sd_event_source_disable_unref(m->expiry_timer);
        m->outbox = tg_queue_free(m->outbox);
        m->backlog = tg_queue_free(m->backlog);
}

int store_add_deferred(Manager *m, const TgRecord *rec, unsigned priority, uint64_t ttl_usec) {
        Segment *seg = NULL;
        size_t size = tg_record_size(rec);

        /* The newest segment with this (priority, TTL) that still has room. */
        for (size_t i = m->n_segments; i > 0; i--) {
                Segment *s = &m->segments[i - 1];
                if (s->priority == priority && s->ttl_usec == ttl_usec) {
                        if (s->data.size + size <= m->config.segment_max_bytes)
                                seg = s;
                        break;
                }
        }
        if (!seg) {
                Segment *a = realloc(m->segments, (m->n_segments + 1) * sizeof *a);
                if (!a)
                        return -ENOMEM;
                m->segments = a;
                seg = &m->segments[m->n_segments++];
                *seg = (Segment) { .priority = priority, .ttl_usec = ttl_usec, .first_id = rec->id };
        }
        if (tg_buf_append_record(&seg->data, rec) < 0)
                return -ENOMEM;
        seg->records++;
        return 0;
}

int store_queue_reply(Manager *m, sd_bus_message *msg, DataClass class, uint64_t id) {
        PendingReply *p = malloc(sizeof *p);

        if (!p)
                return -ENOMEM;
        *p = (PendingReply) { .message = sd_bus_message_ref(msg), .class = class, .id = id };
        *m->replies_tail = p;
        m->replies_tail = &p->next;
        return 0;
}

int store_backlog_delete(Manager *m, uint64_t id) {
        if (m->n_backlog_deletes == m->allocated_backlog_deletes) {
                size_t n = MAX(m->allocated_backlog_deletes * 2, (size_t) 64);
                uint64_t *a = realloc(m->backlog_deletes, n * sizeof *a);
                if (!a)
                        return -ENOMEM;
                m->backlog_deletes = a;
                m->allocated_backlog_deletes = n;
        }
        m->backlog_deletes[m->n_backlog_deletes++] = id;
        store_schedule_commit(m, false);
        return 0;
}

bool store_backlog_delete_pending(Manager *m, uint64_t id) {
        for (size_t i = 0; i < m->n_backlog_deletes; i++)
                if (m->backlog_deletes[i] == id)
                        return true;
        return false;
}

static int on_commit_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        (void) store_commit(userdata);
        return 0;
}

void store_schedule_commit(Manager *m, bool now) {
        uint64_t when;
        int r;

        if (m->daemon->stopping)
                return; /* the final commit is already under way */
        if (!now && tg_event_armed(m->commit_timer))
                return; /* already armed: this record rides along */
        if (sd_event_now(m->event, CLOCK_MONOTONIC, &when) < 0)
                return;
        if (!now)
                when += m->commit_failed ? USEC_PER_SEC : m->config.commit_interval_usec;
        r = tg_event_arm(m->event, &m->commit_timer, CLOCK_MONOTONIC, when, TG_TIMER_EXACT, on_commit_timer, m,
                         "group-commit");
        if (r < 0)
                log_error_errno(r, "Cannot arm the commit timer: %m");
}

static int commit_outbox(Manager *m, uint64_t now, TgQueueEvicted *ev) {
        TgQueueLimits limits = outbox_limits(m);
        int r;

        if (m->n_segments == 0)
                return 0;
        r = tg_queue_begin(m->outbox);
        if (r < 0)
                return r;
        for (size_t i = 0; i < m->n_segments && r >= 0; i++) {
                const Segment *s = &m->segments[i];
                TgQueueItem item = {
                        .id = s->first_id,
                        .priority = s->priority,
                        .kind = "telemetry",
                        .encoding = "tgr1",
                        .created_usec = now,
                        .expires_usec = s->ttl_usec == USEC_INFINITY ? 0 : now + s->ttl_usec,
                        .records = s->records,
                        .data = s->data.data,
                        .size = s->data.size,
                };
                r = tg_queue_insert(m->outbox, &item);
        }
        if (r >= 0)
                r = tg_queue_enforce(m->outbox, &limits, now, ev);
        if (r >= 0)
                r = tg_queue_commit(m->outbox);
        if (r < 0)
                (void) tg_queue_rollback(m->outbox);
        return r;
}

static int commit_backlog(Manager *m, uint64_t now, TgQueueEvicted *ev) {
        TgQueueLimits limits = { .max_bytes = m->config.backlog_max_bytes };
        int r;

        if (m->n_backlog_deletes == 0 && !uplink_spill_due(m, m->daemon->stopping))
                return 0; /* nothing to write: no transaction, no fsync */
        r = tg_queue_begin(m->backlog);
        if (r < 0)
                return r;
        r = uplink_persist(m, m->backlog, now, m->daemon->stopping);
        for (size_t i = 0; i < m->n_backlog_deletes && r >= 0; i++)
                r = tg_queue_delete(m->backlog, m->backlog_deletes[i]);
        if (r >= 0)
                r = tg_queue_enforce(m->backlog, &limits, now, ev);
        if (r >= 0)
                r = tg_queue_commit(m->backlog);
        if (r < 0)
                (void) tg_queue_rollback(m->backlog);
        return r;
}

/* Answer the D-Bus callers whose records are resolved. Those a failed commit
 * holds keep waiting for the retry: an error reply would make them submit
 * again and store the record twice. */
void store_reply_resolved(Manager *m) {
        uint64_t watermark = uplink_watermark(m);
        PendingReply **pp = &m->replies, *p;

        while ((p = *pp)) {
                bool resolved = p->class == CLASS_REALTIME ? p->id < watermark : p->committed;
                if (!resolved) {
                        pp = &p->next;
                        continue;
                }
                *pp = p->next;
                (void) sd_bus_reply_method_return(p->message, "s", data_class_to_string(p->class));
                sd_bus_message_unref(p->message);
                free(p);
        }
        m->replies_tail = pp;
}

static void replies_committed(Manager *m) {
        for (PendingReply *p = m->replies; p; p = p->next)
                p->committed = true;
}

int store_commit(Manager *m) {
        TgQueueEvicted evo = {}, evb = {};
        uint64_t now = tg_now(CLOCK_REALTIME);
        int r;

        r = commit_outbox(m, now, &evo);
        if (r >= 0) {
                segments_free(m);
                r = commit_backlog(m, now, &evb);
        }
        if (r < 0) {
                /* Keep everything in memory and try again; producers stay unacknowledged
                 * and are paused once MaxPendingSize is reached. */
                if (!m->commit_failed)
                        log_event_errno(LOG_ERR, r, TG_MID_STORAGE_FAILED,
                                        "Commit to %s failed, retrying every second: %m", m->config.state_dir);
                m->commit_failed = true;
                if (m->pending_bytes >= m->config.max_pending_bytes)
                        ingest_pause(m, true);
                store_schedule_commit(m, false);
                return r;
        }
        if (m->commit_failed)
                log_event(LOG_NOTICE, TG_MID_STORAGE_RECOVERED, "Commits to %s work again.", m->config.state_dir);
        m->commit_failed = false;
        m->n_backlog_deletes = 0;
        m->pending_bytes = 0;

        m->counters.deferred_evicted += evo.expired.records + evo.over_quota.records;
        m->counters.backlog_evicted += evb.expired.records + evb.over_quota.records;
        report_evictions(m, "Outbox", TG_MID_OUTBOX_EVICTED, &evo);
        report_evictions(m, "Real-time backlog", TG_MID_BACKLOG_EVICTED, &evb);

        replies_committed(m);
        ingest_commit_done(m);
        uplink_after_commit(m);
        manager_acknowledge(m);
        (void) store_refresh_counts(m);
        schedule_expiry(m); /* new items may expire before the armed time */
        if (m->paused && !m->daemon->stopping)
                ingest_pause(m, false);
        manager_properties_changed(m);
        return 0;
}
