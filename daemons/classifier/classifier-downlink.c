/* SPDX-License-Identifier: MIT */
/*
 * Cloud → car real-time data (SPEC C9): the TSP answers a real-time batch
 * with the records it holds for this car (TGR1, docs/wire-formats.md §3).
 * They are validated, stored durably in inbox.db, announced on D-Bus, and
 * acknowledged to the TSP in the next request's Tollgate-Downlink-Ack
 * header — only once stored, so a crash in between makes the TSP send them
 * again, and ids at or below the acknowledged one are ignored. In-car
 * consumers read them with FetchDownlink() and delete them with
 * AckDownlink() once they have taken them over (SPEC C5).
 */

#include <fnmatch.h>
#include <stdio.h>

#include "classifier.h"
#include "tg-bus.h"
#include "tg-log.h"
#include "tg-message-ids.h"
#include "tg-time.h"

#define DOWNLINK_KIND "downlink"
#define DOWNLINK_CONTENT_TYPE "application/vnd.tollgate.records+tgr1"

int downlink_setup(Manager *m) {
        _cleanup_free_ char *path = NULL, *aside = NULL;
        TgDbOptions opts = { .durable = m->config.durable, .cache_kib = 256 };
        int r;

        if (asprintf(&path, "%s/inbox.db", m->config.state_dir) < 0)
                return log_error_errno(-ENOMEM, "Out of memory.");
        r = tg_queue_open(path, &opts, &m->inbox, &aside);
        if (r < 0)
                return log_event_errno(LOG_ERR, r, TG_MID_STORAGE_FAILED, "Cannot open %s: %m", path);
        if (aside)
                log_event(LOG_WARNING, TG_MID_STORAGE_RECOVERED,
                          "%s was not a readable database; kept it as %s and started a new one.", path, aside);
        r = tg_db_meta_get_u64(tg_queue_db(m->inbox), "downlink_ack", &m->downlink_ack);
        if (r < 0 && r != -ENOENT)
                return log_event_errno(LOG_ERR, r, TG_MID_STORAGE_FAILED, "Cannot read %s: %m", path);
        return downlink_refresh(m);
}

void downlink_done(Manager *m) {
        m->inbox = tg_queue_free(m->inbox);
}

int downlink_refresh(Manager *m) {
        TgQueueCounts c;
        int r;

        r = tg_queue_counts(m->inbox, &c, NULL);
        if (r < 0)
                return r;
        m->downlink_queued = c.records;
        return 0;
}

static void downlink_log_rejected(Manager *m, const char *why) {
        log_event(LOG_WARNING, TG_MID_DOWNLINK_REJECTED,
                  "TSP answer carried downlink data that is not valid TGR1 (%s); not stored, not acknowledged.", why);
}

/* Store the records of one TSP answer. All or nothing: a body with a bad
 * record is refused as a whole, so the TSP sends it again. */
void downlink_handle_response(Manager *m, const uint8_t *body, size_t size, const char *content_type) {
        uint64_t now = tg_now(CLOCK_REALTIME), highest = m->downlink_ack;
        size_t offset = 0;
        unsigned stored = 0;
        TgRecord rec;
        int r;

        if (size == 0)
                return;
        if (!content_type || strncmp(content_type, DOWNLINK_CONTENT_TYPE, strlen(DOWNLINK_CONTENT_TYPE)) != 0) {
                downlink_log_rejected(m, content_type ? content_type : "no Content-Type");
                return;
        }
        while (offset < size) {
                TgRecordError e = tg_record_decode(body, size, &offset, TG_PAYLOAD_MAX, &rec);
                if (e != TG_RECORD_OK) {
                        downlink_log_rejected(m, tg_record_error_to_string(e));
                        return;
                }
        }

        r = tg_queue_begin(m->inbox);
        for (offset = 0; r >= 0 && offset < size;) {
                size_t start = offset;

                (void) tg_record_decode(body, size, &offset, TG_PAYLOAD_MAX, &rec);
                if (rec.id <= m->downlink_ack)
                        continue; /* delivered before; the TSP did not see our ack yet */
                r = tg_queue_insert(m->inbox, &(TgQueueItem) {
                        .id = rec.id,
                        .priority = 0,
                        .kind = DOWNLINK_KIND,
                        .encoding = "tgr1",
                        .created_usec = now,
                        .expires_usec = m->config.downlink_ttl_usec == USEC_INFINITY ? 0
                                                                                     : now + m->config.downlink_ttl_usec,
                        .records = 1,
                        .data = body + start,
                        .size = offset - start,
                });
                if (r == -EEXIST)
                        r = 0; /* the same id twice in one answer */
                else if (r >= 0) {
                        stored++;
                        highest = MAX(highest, rec.id);
                }
        }
        if (r >= 0 && highest > m->downlink_ack)
                r = tg_db_meta_set_u64(tg_queue_db(m->inbox), "downlink_ack", highest);
        if (r >= 0)
                r = tg_queue_enforce(m->inbox, &(TgQueueLimits) { .max_bytes = m->config.downlink_max_bytes }, now,
                                     NULL);
        if (r >= 0)
                r = tg_queue_commit(m->inbox);
        if (r < 0) {
                (void) tg_queue_rollback(m->inbox);
                log_event_errno(LOG_ERR, r, TG_MID_STORAGE_FAILED,
                                "Cannot store downlink records; the TSP will send them again: %m");
                return;
        }
        m->downlink_ack = highest;
        (void) downlink_refresh(m);
        if (stored == 0)
                return;
        log_event(LOG_INFO, TG_MID_DOWNLINK_RECEIVED, "Stored %u downlink record(s) from the TSP, up to id %" PRIu64 ".",
                  stored, highest);
        (void) sd_bus_emit_signal(m->bus, "/org/tollgate/Classifier1", "org.tollgate.Classifier1",
                                  "DownlinkReceived", "ut", stored, highest);
        manager_properties_changed(m);
}

int bus_method_fetch_downlink(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *m = userdata;
        TgQueueCursor after = {};
        const char *pattern;
        uint32_t max, n = 0;
        int r;

        r = sd_bus_message_read(msg, "stu", &pattern, &after.id, &max);
        if (r < 0)
                return r;
        if (max == 0 || max > 1000)
                return sd_bus_error_set(error, TG_ERROR_INVALID_ARGUMENT, "max must be 1 … 1000.");
        r = sd_bus_message_new_method_return(msg, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(tstay)");
        while (r >= 0 && n < max) {
                _cleanup_free_ void *data = NULL;
                TgQueueItem item;
                TgRecord rec;
                size_t offset = 0;
                char topic[TG_TOPIC_MAX + 1];

                r = tg_queue_next(m->inbox, DOWNLINK_KIND, false, &after, &item, &data);
                if (r == -ENOENT) {
                        r = 0;
                        break;
                }
                if (r < 0)
                        break;
                after.id = item.id;
                if (tg_record_decode(item.data, item.size, &offset, TG_PAYLOAD_MAX, &rec) != TG_RECORD_OK)
                        continue; /* validated before it was stored; a damaged row is skipped */
                memcpy(topic, rec.topic, rec.topic_len);
                topic[rec.topic_len] = '\0';
                if (*pattern && fnmatch(pattern, topic, 0) != 0)
                        continue;
                r = sd_bus_message_open_container(reply, 'r', "tstay");
                if (r >= 0)
                        r = sd_bus_message_append(reply, "tst", item.id, topic, rec.timestamp_usec);
                if (r >= 0)
                        r = sd_bus_message_append_array(reply, 'y', rec.payload, rec.payload_len);
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
                n++;
        }
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

int bus_method_ack_downlink(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const uint64_t *ids;
        size_t size;
        uint32_t deleted = 0;
        int r;

        r = sd_bus_message_read_array(msg, 't', (const void **) &ids, &size);
        if (r < 0)
                return r;
        r = tg_queue_begin(m->inbox);
        for (size_t i = 0; r >= 0 && i < size / sizeof *ids; i++) {
                r = tg_queue_delete(m->inbox, ids[i]);
                if (r > 0)
                        deleted++;
        }
        if (r >= 0)
                r = tg_queue_commit(m->inbox);
        if (r < 0) {
                (void) tg_queue_rollback(m->inbox);
                return sd_bus_error_set_errnof(error, r, "Cannot delete downlink records: %m");
        }
        (void) downlink_refresh(m);
        manager_properties_changed(m);
        return sd_bus_reply_method_return(msg, "u", deleted);
}
