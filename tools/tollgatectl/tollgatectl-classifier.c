/* SPDX-License-Identifier: MIT */

/*
 * tollgatectl's side of org.tollgate.Classifier1 (docs/classifier.md): the
 * classifier's status section, outbox figures, reload, watch signals, and its
 * commands classify, submit, downlink and downlink-ack.
 */

#include <limits.h>
#include <time.h>

#include "tg-parse.h"
#include "tg-time.h"
#include "tollgatectl.h"

/* submit reads a payload from standard input up to this size; larger ones are
 * refused here, smaller ones by the classifier's MaxPayloadSize= (at most 64K). */
#define SUBMIT_STDIN_MAX (1024 * 1024)
/* FetchDownlink() answers at most this many records per call. */
#define DOWNLINK_FETCH_MAX 1000
#define PAYLOAD_PREVIEW_WIDTH 48

static void classifier_status(const Context *c, const Service *s, const PropertyList *p) {
        char b1[FORMAT_BYTES_MAX], b2[FORMAT_BYTES_MAX], b3[FORMAT_BYTES_MAX];

        print_field("Uplink", "%s", property_str(p, "Uplink"));
        print_field("Real-time", "%" PRIu64 " sent, %" PRIu64 " in backlog (%" PRIu64 " evicted), %" PRIu64
                                 " refused by the TSP",
                    property_u64(p, "RealtimeSent"), property_u64(p, "RealtimeBacklog"),
                    property_u64(p, "BacklogEvicted"), property_u64(p, "RealtimeRejected"));
        print_field("Cellular", "%s", format_bytes(b1, sizeof b1, property_u64(p, "CellularBytes")));
        print_field("Outbox", "%" PRIu64 " records, %s (%" PRIu64 " evicted)", property_u64(p, "DeferredQueued"),
                    format_bytes(b2, sizeof b2, property_u64(p, "DeferredBytes")),
                    property_u64(p, "DeferredEvicted"));
        print_field("Records", "%" PRIu64 " accepted (%s), %" PRIu64 " rejected", property_u64(p, "RecordsAccepted"),
                    format_bytes(b3, sizeof b3, property_u64(p, "AcceptedBytes")),
                    property_u64(p, "RecordsRejected"));
        print_field("Downlink", "%" PRIu64 " queued", property_u64(p, "DownlinkQueued"));
}

static void classifier_outbox(const PropertyList *p, uint64_t *ret_records, uint64_t *ret_bytes) {
        *ret_records = property_u64(p, "DeferredQueued");
        *ret_bytes = property_u64(p, "DeferredBytes");
}

static int on_downlink_received(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Context *c = userdata;
        uint32_t count;
        uint64_t last_id;
        Json j = { .f = stdout };

        if (sd_bus_message_read(m, "ut", &count, &last_id) < 0)
                return 0; /* not the signal the interface promises: ignore it */
        watch_event_begin(c, &service_classifier, "downlink-received", &j);
        if (c->json) {
                json_u64(&j, "count", count);
                json_u64(&j, "last_id", last_id);
        } else
                printf("downlink received: %" PRIu32 " records, last id %" PRIu64, count, last_id);
        watch_event_end(c, &j);
        return 0;
}

static int classifier_watch(Context *c, const Service *s) {
        return sd_bus_match_signal(c->bus, NULL, s->bus_name, s->path, s->interface, "DownlinkReceived",
                                   on_downlink_received, c);
}

/* --- classify TOPIC ------------------------------------------------------------ */

static int verb_classify(Context *c, int argc, char *argv[]) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *class, *rule;
        uint32_t priority;
        uint64_t ttl;
        int r;

        r = service_call(c, &service_classifier, "Classify", &error, &reply, "s", argv[1]);
        if (r < 0)
                return ctl_bus_failure(&error, r, "Classify()");
        r = sd_bus_message_read(reply, "suts", &class, &priority, &ttl, &rule);
        if (r < 0)
                return ctl_reply_failure(r, "Classify");

        if (c->json) {
                Json j = { .f = stdout, .pretty = c->json_pretty };
                json_object_open(&j, NULL);
                json_string(&j, "topic", argv[1]);
                json_string(&j, "class", class);
                json_u64(&j, "priority", priority);
                if (ttl == UINT64_MAX)
                        json_null(&j, "ttl_usec"); /* kept forever */
                else
                        json_u64(&j, "ttl_usec", ttl);
                if (*rule)
                        json_string(&j, "rule", rule);
                else
                        json_null(&j, "rule"); /* no [Rule] matched: the [Classifier] defaults */
                json_object_close(&j);
                json_finish(&j);
        } else {
                char buf[FORMAT_TIMESPAN_MAX];
                print_field("Topic", "%s", argv[1]);
                print_field("Class", "%s", class);
                print_field("Priority", "%" PRIu32, priority);
                print_field("Time to live", "%s", format_timespan(buf, sizeof buf, ttl));
                print_field("Rule", "%s", *rule ? rule : "(none, the [Classifier] defaults)");
        }
        return CTL_EXIT_SUCCESS;
}

/* --- submit TOPIC [PAYLOAD|-] ---------------------------------------------------- */

static int read_stdin(uint8_t **ret, size_t *ret_size) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t size = 0, allocated = 0;

        for (;;) {
                ssize_t n;

                if (allocated - size < 4096) {
                        size_t a = MAX(allocated * 2, (size_t) 16384);
                        uint8_t *b = realloc(buf, MIN(a, (size_t) SUBMIT_STDIN_MAX + 1));
                        if (!b)
                                return -ENOMEM;
                        buf = b;
                        allocated = MIN(a, (size_t) SUBMIT_STDIN_MAX + 1);
                }
                n = read(STDIN_FILENO, buf + size, allocated - size);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                size += (size_t) n;
                if (size > SUBMIT_STDIN_MAX)
                        return -EFBIG;
        }
        *ret = TAKE_PTR(buf);
        *ret_size = size;
        return 0;
}

static int verb_submit(Context *c, int argc, char *argv[]) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_free_ uint8_t *input = NULL;
        const void *payload = "";
        size_t size = 0;
        uint64_t ts = c->timestamp_usec ? c->timestamp_usec : tg_now(CLOCK_REALTIME);
        const char *class;
        int r;

        if (argc > 2 && streq(argv[2], "-")) {
                r = read_stdin(&input, &size);
                if (r == -EFBIG)
                        return ctl_error_errno(r, "The payload on standard input is larger than %u bytes.",
                                               SUBMIT_STDIN_MAX);
                if (r < 0)
                        return ctl_error_errno(r, "Cannot read the payload from standard input: %m");
                payload = input;
        } else if (argc > 2) {
                payload = argv[2];
                size = strlen(argv[2]);
        }

        r = sd_bus_message_new_method_call(c->bus, &m, service_classifier.bus_name, service_classifier.path,
                                           service_classifier.interface, "Submit");
        if (r >= 0)
                r = sd_bus_message_append(m, "st", argv[1], ts);
        if (r >= 0)
                r = sd_bus_message_append_array(m, 'y', payload, size);
        if (r < 0)
                return ctl_error_errno(r, "Cannot build the Submit() call: %m");
        /* Answered once the record is committed (outbox, TSP or backlog). */
        r = service_call_message(c, m, &error, &reply);
        if (r < 0)
                return ctl_bus_failure(&error, r, "Submit()");
        r = sd_bus_message_read(reply, "s", &class);
        if (r < 0)
                return ctl_reply_failure(r, "Submit");

        if (c->json) {
                Json j = { .f = stdout, .pretty = c->json_pretty };
                json_object_open(&j, NULL);
                json_string(&j, "topic", argv[1]);
                json_u64(&j, "timestamp_usec", ts);
                json_u64(&j, "size", size);
                json_string(&j, "class", class);
                json_object_close(&j);
                json_finish(&j);
        } else
                printf("%s\n", class);
        return CTL_EXIT_SUCCESS;
}

/* --- downlink [PATTERN] ----------------------------------------------------------- */

static int verb_downlink(Context *c, int argc, char *argv[]) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_table_ Table *t = NULL;
        const char *pattern = argc > 1 ? argv[1] : "";
        uint32_t max = c->max ? c->max : DOWNLINK_FETCH_MAX;
        Json j = { .f = stdout, .pretty = c->json_pretty };
        size_t n = 0;
        int r;

        r = service_call(c, &service_classifier, "FetchDownlink", &error, &reply, "stu", pattern, (uint64_t) 0, max);
        if (r < 0)
                return ctl_bus_failure(&error, r, "FetchDownlink()");

        t = table_new("ID", "TIME", "TOPIC", ">SIZE", "PAYLOAD", NULL);
        if (!t)
                return ctl_error_errno(-ENOMEM, "Out of memory.");
        if (c->json)
                json_array_open(&j, NULL);

        r = sd_bus_message_enter_container(reply, 'a', "(tstay)");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'r', "tstay")) > 0) {
                uint64_t id = 0, ts = 0;
                const char *topic = NULL;
                const void *payload = NULL;
                size_t size = 0;

                r = sd_bus_message_read(reply, "tst", &id, &topic, &ts);
                if (r >= 0)
                        r = sd_bus_message_read_array(reply, 'y', &payload, &size);
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        break;
                n++;
                if (c->json) {
                        _cleanup_free_ char *b64 = base64_encode(payload, size);
                        if (!b64)
                                return ctl_error_errno(-ENOMEM, "Out of memory.");
                        json_object_open(&j, NULL);
                        json_u64(&j, "id", id);
                        json_string(&j, "topic", topic);
                        json_u64(&j, "timestamp_usec", ts);
                        json_u64(&j, "size", size);
                        /* Text payloads as they are, for jq; every payload in base64. */
                        if (utf8_valid(payload, size))
                                json_string_n(&j, "payload_text", payload, size);
                        else
                                json_null(&j, "payload_text");
                        json_string(&j, "payload_base64", b64);
                        json_object_close(&j);
                } else {
                        char tsbuf[FORMAT_TIMESTAMP_MAX];
                        _cleanup_free_ char *preview = format_payload(payload, size, PAYLOAD_PREVIEW_WIDTH);

                        if (!preview || table_addf(t, "%" PRIu64, id) < 0 ||
                            table_add(t, format_timestamp(tsbuf, sizeof tsbuf, ts)) < 0 || table_add(t, topic) < 0 ||
                            table_addf(t, "%zu", size) < 0 || table_add(t, preview) < 0)
                                return ctl_error_errno(-ENOMEM, "Out of memory.");
                }
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(reply);
        if (r < 0)
                return ctl_reply_failure(r, "FetchDownlink");

        if (c->json) {
                json_array_close(&j);
                json_finish(&j);
                return CTL_EXIT_SUCCESS;
        }
        if (n > 0)
                table_print(t, stdout, c->legend);
        if (c->legend) {
                if (n > 0)
                        putchar('\n');
                printf("%zu downlink record%s%s%s.\n", n, n == 1 ? "" : "s", *pattern ? " matching " : "",
                       pattern);
                if (n == max)
                        printf("At most %" PRIu32 " are listed; acknowledge them (downlink-ack) to see the next.\n",
                               max);
        }
        return CTL_EXIT_SUCCESS;
}

/* --- downlink-ack ID... ------------------------------------------------------------ */

static int verb_downlink_ack(Context *c, int argc, char *argv[]) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_free_ uint64_t *ids = calloc((size_t) argc, sizeof *ids);
        size_t n = (size_t) argc - 1;
        uint32_t deleted;
        int r;

        if (!ids)
                return ctl_error_errno(-ENOMEM, "Out of memory.");
        for (size_t i = 0; i < n; i++)
                if (tg_parse_uint64(argv[i + 1], &ids[i]) < 0) {
                        ctl_error("Not a downlink record id: \"%s\".", argv[i + 1]);
                        return CTL_EXIT_USAGE;
                }

        r = sd_bus_message_new_method_call(c->bus, &m, service_classifier.bus_name, service_classifier.path,
                                           service_classifier.interface, "AckDownlink");
        if (r >= 0)
                r = sd_bus_message_append_array(m, 't', ids, n * sizeof *ids);
        if (r < 0)
                return ctl_error_errno(r, "Cannot build the AckDownlink() call: %m");
        r = service_call_message(c, m, &error, &reply);
        if (r < 0)
                return ctl_bus_failure(&error, r, "AckDownlink()");
        r = sd_bus_message_read(reply, "u", &deleted);
        if (r < 0)
                return ctl_reply_failure(r, "AckDownlink");

        if (c->json) {
                Json j = { .f = stdout, .pretty = c->json_pretty };
                json_object_open(&j, NULL);
                json_u64(&j, "requested", n);
                json_u64(&j, "deleted", deleted);
                json_object_close(&j);
                json_finish(&j);
        } else
                /* Ids not there any more were deleted before (or expired): acknowledging
                 * is idempotent, so that is not an error. */
                printf("Deleted %" PRIu32 " of %zu downlink record%s.\n", deleted, n, n == 1 ? "" : "s");
        return CTL_EXIT_SUCCESS;
}

static const Verb classifier_verbs[] = {
        { "classify", "TOPIC", "Show class, priority, TTL and rule of a topic", 1, 1, verb_classify },
        { "submit", "TOPIC [PAYLOAD|-]", "Hand one record to the classifier, print its class", 1, 2, verb_submit },
        { "downlink", "[PATTERN]", "List cloud-to-car records waiting in the inbox", 0, 1, verb_downlink },
        { "downlink-ack", "ID...", "Delete downlink records that have been taken over", 1, UINT_MAX,
          verb_downlink_ack },
        {},
};

static const char *const classifier_byte_properties[] = { "CellularBytes", "DeferredBytes", "AcceptedBytes", NULL };

const Service service_classifier = {
        .name = "classifier",
        .title = "Classifier",
        .bus_name = "org.tollgate.Classifier1",
        .path = "/org/tollgate/Classifier1",
        .interface = "org.tollgate.Classifier1",
        .byte_properties = classifier_byte_properties,
        .status = classifier_status,
        .outbox = classifier_outbox,
        .reload = service_reload,
        .watch = classifier_watch,
        .verbs = classifier_verbs,
};
