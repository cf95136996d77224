/* SPDX-License-Identifier: MIT */
/*
 * The source of the car → key direction: the outbox the classifier fills
 * (docs/wire-formats.md §4). Items are offered most important priority
 * first, oldest first; an item leaves the outbox only when the key has
 * acknowledged it stored (or already had it) — SPEC C5. Deletes are grouped
 * into one transaction every DELETE_DELAY: a crash in between only means the
 * key is offered the item again and answers "have".
 */

#include <stdio.h>

#include "keysync.h"
#include "tg-event.h"
#include "tg-log.h"
#include "tg-message-ids.h"
#include "tg-time.h"

#define DELETE_DELAY_USEC (50 * USEC_PER_MSEC)
#define TELEMETRY_KIND "telemetry"

int outbox_refresh(Manager *m) {
        TgQueueCounts c;
        int r;

        r = tg_queue_counts(m->outbox, &c, NULL);
        if (r < 0)
                return r;
        if (c.items != m->outbox_counts.items || c.bytes != m->outbox_counts.bytes) {
                m->outbox_counts = c;
                manager_properties_changed(m, "OutboxItems", "OutboxBytes", NULL);
        }
        return 0;
}

int outbox_setup(Manager *m) {
        _cleanup_free_ char *path = NULL, *aside = NULL;
        TgDbOptions opts = { .durable = true, .cache_kib = 512 };
        int r;

        if (asprintf(&path, "%s/outbox.db", m->config.state_dir) < 0)
                return log_error_errno(-ENOMEM, "Out of memory.");
        /* The classifier creates and migrates it; opening it here migrates too
         * (under an IMMEDIATE transaction), so the start order does not matter. */
        r = tg_queue_open(path, &opts, &m->outbox, &aside);
        if (r < 0)
                return log_event_errno(LOG_ERR, r, TG_MID_STORAGE_FAILED, "Cannot open the outbox %s: %m", path);
        if (aside)
                log_event(LOG_WARNING, TG_MID_STORAGE_RECOVERED,
                          "%s was not a readable database; kept it as %s and started a new one.", path, aside);
        return outbox_refresh(m);
}

static int on_delete_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        outbox_flush_deletes(userdata);
        return 0;
}

void outbox_flush_deletes(Manager *m) {
        int r;

        if (m->n_deletes == 0)
                return;
        if (m->delete_timer)
                (void) sd_event_source_set_enabled(m->delete_timer, SD_EVENT_OFF);
        r = tg_queue_begin(m->outbox);
        for (size_t i = 0; r >= 0 && i < m->n_deletes; i++)
                r = tg_queue_delete(m->outbox, m->deletes[i]);
        if (r >= 0)
                r = tg_queue_commit(m->outbox);
        if (r < 0) {
                (void) tg_queue_rollback(m->outbox);
                log_event_errno(LOG_ERR, r, TG_MID_STORAGE_FAILED,
                                "Cannot delete %zu acknowledged items from the outbox, retrying: %m", m->n_deletes);
                (void) tg_event_arm(m->event, &m->delete_timer, CLOCK_MONOTONIC,
                                    tg_now(CLOCK_MONOTONIC) + USEC_PER_SEC, TG_TIMER_EXACT, on_delete_timer, m,
                                    "outbox-delete");
                return;
        }
        m->n_deletes = 0;
        (void) outbox_refresh(m);
}

static int stage_delete(Manager *m, uint64_t id) {
        if (m->n_deletes == m->allocated_deletes) {
                size_t n = MAX(m->allocated_deletes * 2, (size_t) 64);
                uint64_t *a = realloc(m->deletes, n * sizeof *a);
                if (!a)
                        return -ENOMEM;
                m->deletes = a;
                m->allocated_deletes = n;
        }
        m->deletes[m->n_deletes++] = id;
        if (!tg_event_armed(m->delete_timer))
                (void) tg_event_arm(m->event, &m->delete_timer, CLOCK_MONOTONIC,
                                    tg_now(CLOCK_MONOTONIC) + DELETE_DELAY_USEC, TG_TIMER_EXACT, on_delete_timer, m,
                                    "outbox-delete");
        return 0;
}

void outbox_done(Manager *m) {
        (void) on_delete_timer(NULL, 0, m); /* acknowledged items must not come back */
        m->delete_timer = sd_event_source_disable_unref(m->delete_timer);
        free(m->deletes);
        m->deletes = NULL;
        m->outbox = tg_queue_free(m->outbox);
}

void outbox_session_start(Link *l) {
        l->cursor = (TgQueueCursor) { .id = 0 };
        l->n_offered = 0;
        free(l->refused);
        l->refused = NULL;
        l->n_refused = 0;
}

static bool in_list(const uint64_t *list, size_t n, uint64_t id) {
        for (size_t i = 0; i < n; i++)
                if (list[i] == id)
                        return true;
        return false;
}

static bool pending_delete(Manager *m, uint64_t id) {
        return in_list(m->deletes, m->n_deletes, id);
}

int outbox_next_offer(void *userdata, TgKpOffer *ret) {
        Link *l = userdata;
        Manager *m = l->manager;

        if (l->n_offered >= ELEMENTSOF(l->offered))
                return 0;
        for (;;) {
                _cleanup_free_ void *data = NULL;
                TgQueueItem item;
                int r;

                r = tg_queue_next(m->outbox, TELEMETRY_KIND, true, l->cursor.id ? &l->cursor : NULL, &item, &data);
                if (r == -ENOENT)
                        return 0;
                if (r < 0)
                        return log_error_errno(r, "Cannot read the outbox: %m");
                l->cursor = (TgQueueCursor) { .priority = item.priority, .id = item.id };
                if (in_list(l->offered, l->n_offered, item.id) || in_list(l->refused, l->n_refused, item.id) ||
                    pending_delete(m, item.id))
                        continue;
                *ret = (TgKpOffer) {
                        .item_id = item.id,
                        .kind = TG_KP_KIND_TELEMETRY,
                        .priority = (uint8_t) item.priority,
                        .size = item.size,
                        .records = item.records,
                };
                r = tg_kp_sha256(item.data, item.size, ret->sha256);
                if (r < 0)
                        return r;
                l->offered[l->n_offered++] = item.id;
                return 1;
        }
}

int outbox_read(void *userdata, uint64_t item_id, uint64_t offset, void *buf, size_t len) {
        Link *l = userdata;
        size_t done = 0;

        while (done < len) {
                ssize_t n = tg_queue_read(l->manager->outbox, item_id, offset + done, (uint8_t *) buf + done,
                                          len - done);
                if (n < 0)
                        return log_warning_errno((int) n, "Outbox item %016" PRIx64 " went away while being sent: %m",
                                                 item_id);
                if (n == 0)
                        return -EIO; /* shorter than offered */
                done += (size_t) n;
        }
        return 0;
}

int outbox_acked(void *userdata, uint64_t item_id, TgKpAckStatus status) {
        Link *l = userdata;
        Manager *m = l->manager;
        uint64_t *a;

        for (size_t i = 0; i < l->n_offered; i++)
                if (l->offered[i] == item_id) {
                        l->offered[i] = l->offered[--l->n_offered];
                        break;
                }
        switch (status) {
        case TG_KP_ACK_STORED:
        case TG_KP_ACK_HAVE:
                if (status == TG_KP_ACK_STORED)
                        m->items_sent++;
                return stage_delete(m, item_id);
        case TG_KP_ACK_BAD_HASH:
                /* Offered again at once: restart the scan (it skips what is in flight). */
                log_warning("The key received outbox item %016" PRIx64 " damaged; sending it again.", item_id);
                l->cursor = (TgQueueCursor) { .id = 0 };
                return 0;
        case TG_KP_ACK_REFUSED:
        default:
                log_warning("The key refused outbox item %016" PRIx64 "; it stays in the outbox.", item_id);
                a = realloc(l->refused, (l->n_refused + 1) * sizeof *a);
                if (!a)
                        return -ENOMEM;
                l->refused = a;
                l->refused[l->n_refused++] = item_id;
                return 0;
        }
}
