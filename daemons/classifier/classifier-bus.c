/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "classifier.h"
#include "tg-bus.h"
#include "tg-event.h"
#include "tg-log.h"

#define OBJECT_PATH "/org/tollgate/Classifier1"
#define INTERFACE "org.tollgate.Classifier1"
#define PROPS_MIN_INTERVAL_USEC (200 * USEC_PER_MSEC)

static int method_submit(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *topic;
        uint64_t ts;
        const void *payload;
        size_t size;
        DataClass class;
        TgRecordError e;
        uint64_t id;
        int r;

        r = sd_bus_message_read(msg, "st", &topic, &ts);
        if (r < 0)
                return r;
        r = sd_bus_message_read_array(msg, 'y', &payload, &size);
        if (r < 0)
                return r;
        if (m->daemon->stopping)
                return sd_bus_error_set(error, TG_ERROR_SHUTTING_DOWN, "The classifier is stopping.");
        e = tg_topic_validate(topic, strlen(topic));
        if (e != TG_RECORD_OK) {
                m->counters.rejected++;
                return sd_bus_error_setf(error, TG_ERROR_INVALID_TOPIC, "Topic \"%.64s\": %s", topic,
                                         tg_record_error_to_string(e));
        }
        if (size > m->config.max_payload) {
                m->counters.rejected++;
                return sd_bus_error_setf(error, TG_ERROR_PAYLOAD_TOO_LARGE,
                                         "Payload of %zu bytes is larger than MaxPayloadSize=%" PRIu64 ".", size,
                                         m->config.max_payload);
        }
        if (m->paused)
                return sd_bus_error_set(error, TG_ERROR_OVERLOADED, "Storage is behind; try again shortly.");

        r = manager_accept_record(m, &(TgRecord) {
                .timestamp_usec = ts,
                .topic = topic,
                .topic_len = (uint16_t) strlen(topic),
                .payload = payload,
                .payload_len = (uint32_t) size,
        }, &class, &id);
        if (r < 0)
                return r;
        /* Answered once the record is resolved: committed to the outbox, acknowledged
         * by the TSP, or spilled to the backlog. */
        r = store_queue_reply(m, msg, class, id);
        if (r < 0)
                return r;
        return 1;
}

static int method_classify(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *topic;
        const Rule *rule;
        DataClass class;
        unsigned priority;
        uint64_t ttl;
        TgRecordError e;
        int r;

        r = sd_bus_message_read(msg, "s", &topic);
        if (r < 0)
                return r;
        e = tg_topic_validate(topic, strlen(topic));
        if (e != TG_RECORD_OK)
                return sd_bus_error_setf(error, TG_ERROR_INVALID_TOPIC, "Topic \"%.64s\": %s", topic,
                                         tg_record_error_to_string(e));
        rule = manager_classify(m, topic, strlen(topic), &class, &priority, &ttl);
        return sd_bus_reply_method_return(msg, "suts", data_class_to_string(class), priority,
                                          ttl == USEC_INFINITY ? UINT64_MAX : ttl, rule ? rule->name : "");
}

static int method_reload(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int r;

        r = m->daemon->reload(m->daemon);
        if (r == -EBADMSG)
                return sd_bus_error_setf(error, TG_ERROR_INVALID_CONFIG,
                                         "Configuration rejected, the running one is kept: %s", m->config_error);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(msg, NULL);
}

static int property_get_cellular_bytes(sd_bus *bus, const char *path, const char *interface, const char *property,
                                       sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        /* Sampled from the kernel when read, not only when a change is emitted. */
        m->cellular_bytes = tg_http_wire_bytes(m->http);
        return sd_bus_message_append(reply, "t", m->cellular_bytes);
}

static int property_get_uplink(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        return sd_bus_message_append(reply, "s", m->online ? "online" : "offline");
}

/* Counters are uint64 fields of Manager: sd-bus reads them at the offset. */
#define PROP(name, field) \
        SD_BUS_PROPERTY(name, "t", NULL, offsetof(Manager, field), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE)

static const sd_bus_vtable classifier_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD_WITH_ARGS("Submit",
                                SD_BUS_ARGS("s", topic, "t", timestamp_usec, "ay", payload),
                                SD_BUS_RESULT("s", class),
                                method_submit, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Classify",
                                SD_BUS_ARGS("s", topic),
                                SD_BUS_RESULT("s", class, "u", priority, "t", ttl_usec, "s", rule),
                                method_classify, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Reload", NULL, NULL, method_reload, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("FetchDownlink",
                                SD_BUS_ARGS("s", topic_pattern, "t", after_id, "u", max),
                                SD_BUS_RESULT("a(tstay)", records),
                                bus_method_fetch_downlink, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("AckDownlink",
                                SD_BUS_ARGS("at", ids),
                                SD_BUS_RESULT("u", deleted),
                                bus_method_ack_downlink, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("DownlinkReceived", SD_BUS_ARGS("u", count, "t", last_id), 0),
        PROP("RealtimeSent", counters.realtime_sent),
        PROP("RealtimeBacklog", backlog_counts.records),
        SD_BUS_PROPERTY("CellularBytes", "t", property_get_cellular_bytes, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        PROP("DeferredQueued", outbox_counts.records),
        PROP("DeferredBytes", outbox_counts.bytes),
        SD_BUS_PROPERTY("Uplink", "s", property_get_uplink, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        PROP("RecordsAccepted", counters.accepted),
        PROP("RecordsRejected", counters.rejected),
        PROP("AcceptedBytes", counters.accepted_bytes),
        PROP("RealtimeRejected", counters.realtime_rejected),
        PROP("DeferredEvicted", counters.deferred_evicted),
        PROP("BacklogEvicted", counters.backlog_evicted),
        PROP("DownlinkQueued", downlink_queued),
        SD_BUS_VTABLE_END,
};

/* The property list PropertiesChanged carries; the ones with the same value as
 * last time are left out. */
static const struct {
        const char *name;
        size_t offset;
} watched[] = {
        { "RealtimeSent", offsetof(Manager, counters.realtime_sent) },
        { "RealtimeBacklog", offsetof(Manager, backlog_counts.records) },
        { "CellularBytes", offsetof(Manager, cellular_bytes) },
        { "DeferredQueued", offsetof(Manager, outbox_counts.records) },
        { "DeferredBytes", offsetof(Manager, outbox_counts.bytes) },
        { "RecordsAccepted", offsetof(Manager, counters.accepted) },
        { "RecordsRejected", offsetof(Manager, counters.rejected) },
        { "AcceptedBytes", offsetof(Manager, counters.accepted_bytes) },
        { "RealtimeRejected", offsetof(Manager, counters.realtime_rejected) },
        { "DeferredEvicted", offsetof(Manager, counters.deferred_evicted) },
        { "BacklogEvicted", offsetof(Manager, counters.backlog_evicted) },
        { "DownlinkQueued", offsetof(Manager, downlink_queued) },
};

static uint64_t last_values[ELEMENTSOF(watched)];
static bool last_online;
static bool emitted_once;

static void emit_now(Manager *m) {
        char *names[ELEMENTSOF(watched) + 2];
        size_t n = 0;

        for (size_t i = 0; i < ELEMENTSOF(watched); i++) {
                uint64_t v = *(uint64_t *) ((uint8_t *) m + watched[i].offset);
                if (!emitted_once || v != last_values[i]) {
                        names[n++] = (char *) watched[i].name;
                        last_values[i] = v;
                }
        }
        if (!emitted_once || last_online != m->online) {
                names[n++] = (char *) "Uplink";
                last_online = m->online;
        }
        names[n] = NULL;
        emitted_once = true;
        if (n > 0)
                (void) sd_bus_emit_properties_changed_strv(m->bus, OBJECT_PATH, INTERFACE, names);
        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &m->props_emitted_usec);
}

static int on_props_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        emit_now(userdata);
        return 0;
}

/* Coalesced: at most one PropertiesChanged per 200 ms, and always one after the
 * last change, so watchers never poll and the bus is not flooded under load. */
void manager_properties_changed(Manager *m) {
        uint64_t now, when;

        if (!m->bus || !m->daemon->ready || tg_event_armed(m->props_timer))
                return;
        m->cellular_bytes = tg_http_wire_bytes(m->http);
        if (sd_event_now(m->event, CLOCK_MONOTONIC, &now) < 0)
                return;
        when = m->props_emitted_usec + PROPS_MIN_INTERVAL_USEC;
        if (now >= when) {
                emit_now(m);
                return;
        }
        (void) tg_event_arm(m->event, &m->props_timer, CLOCK_MONOTONIC, when, 10 * USEC_PER_MSEC, on_props_timer, m,
                            "properties-changed");
}

int bus_setup(Manager *m) {
        int r;

        r = sd_bus_add_object_vtable(m->bus, NULL, OBJECT_PATH, INTERFACE, classifier_vtable, m);
        if (r < 0)
                return log_error_errno(r, "Cannot register %s: %m", OBJECT_PATH);
        return 0;
}
