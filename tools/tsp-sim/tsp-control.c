/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "tg-parse.h"
#include "tg-time.h"
#include "tsp-sim.h"

/*
 * The control API: plain HTTP on loopback, for tests and the sandbox.
 *
 *   GET  /stats                          counters, as one JSON object
 *   GET  /mode                           current mode, as text
 *   POST /mode                           body: the new mode
 *   POST /downlink?client=CN&topic=T     body: payload; queues a downlink record
 *   POST /reset                          empty the tables, zero the counters
 */

#define CLIENT_MAX 64

static int json_vappend(TgBuf *b, const char *format, va_list ap) _printf_(2, 0);
static int json_vappend(TgBuf *b, const char *format, va_list ap) {
        char buf[256];
        int n;

        n = vsnprintf(buf, sizeof buf, format, ap);
        if (n < 0 || (size_t) n >= sizeof buf)
                return -EINVAL;
        return tg_buf_append(b, buf, (size_t) n);
}

static int json_append(TgBuf *b, const char *format, ...) _printf_(2, 3);
static int json_append(TgBuf *b, const char *format, ...) {
        va_list ap;
        int r;

        va_start(ap, format);
        r = json_vappend(b, format, ap);
        va_end(ap);
        return r;
}

static int reply_json(SimResponse *resp, int status, const char *format, ...) _printf_(3, 4);
static int reply_json(SimResponse *resp, int status, const char *format, ...) {
        va_list ap;
        int r;

        resp->status = status;
        resp->content_type = "application/json";
        tg_buf_reset(&resp->body);
        va_start(ap, format);
        r = json_vappend(&resp->body, format, ap);
        va_end(ap);
        if (r < 0)
                return r;
        if (tg_buf_append(&resp->body, "\n", 1) < 0)
                return -ENOMEM;
        return 0;
}

static uint64_t load(const uint64_t *counter) {
        return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

static int get_stats(TspSim *sim, SimResponse *resp) {
        char mode[TSP_MODE_STRING_MAX];
        TspMode m = tsp_sim_get_mode(sim);
        SimHttpdStats h;
        TgBuf *b = &resp->body;
        int r;

        sim_httpd_get_stats(sim->uplink, &h);
        r = json_append(b,
                        "{\"requests\":%" PRIu64 ",\"batches\":%" PRIu64 ",\"duplicate_batches\":%" PRIu64
                        ",\"records\":%" PRIu64 ",\"duplicate_records\":%" PRIu64 ",\"bad_requests\":%" PRIu64
                        ",",
                        h.requests, load(&sim->counters.batches), load(&sim->counters.duplicate_batches),
                        load(&sim->counters.records), load(&sim->counters.duplicate_records),
                        load(&sim->counters.bad_requests));
        if (r >= 0)
                r = json_append(b,
                                "\"tls_failures\":%" PRIu64 ",\"connections_total\":%" PRIu64
                                ",\"connections_open\":%" PRIu64 ",\"connections_rejected\":%" PRIu64
                                ",\"wire_bytes_in\":%" PRIu64 ",\"wire_bytes_out\":%" PRIu64 ",",
                                h.tls_failures, h.connections_total, h.connections_open, h.connections_rejected,
                                h.wire_bytes_in, h.wire_bytes_out);
        if (r >= 0)
                r = json_append(b,
                                "\"faults_injected\":%" PRIu64 ",\"downlink_queued\":%" PRIu64
                                ",\"downlink_sent\":%" PRIu64 ",\"downlink_acked\":%" PRIu64
                                ",\"mode\":\"%s\"}\n",
                                load(&sim->counters.faults_injected), load(&sim->counters.downlink_queued),
                                load(&sim->counters.downlink_sent), load(&sim->counters.downlink_acked),
                                tsp_mode_to_string(&m, mode));
        if (r < 0)
                return r;
        resp->status = 200;
        resp->content_type = "application/json";
        return 0;
}

static int set_mode(TspSim *sim, const SimRequest *req, SimResponse *resp) {
        char text[TSP_MODE_STRING_MAX + 1], buf[TSP_MODE_STRING_MAX];
        size_t n = req->body_size;
        TspMode m;

        /* "echo slow:100 | curl --data-binary @-" leaves a newline. */
        while (n > 0 && (req->body[n - 1] == '\n' || req->body[n - 1] == '\r' || req->body[n - 1] == ' '))
                n--;
        if (n == 0 || n >= sizeof text)
                return sim_response_text(resp, 400, "invalid-mode (want normal, hang, garbage, error, reject, "
                                                    "close, lose-reply or slow:MS)");
        memcpy(text, req->body, n);
        text[n] = '\0';
        if (tsp_mode_from_string(text, &m) < 0)
                return sim_response_text(resp, 400, "invalid-mode '%s' (want normal, hang, garbage, error, "
                                                    "reject, close, lose-reply or slow:MS)", text);

        tsp_sim_set_mode(sim, &m);
        log_info("control: mode set to %s", tsp_mode_to_string(&m, buf));
        return reply_json(resp, 200, "{\"mode\":\"%s\"}", buf);
}

static bool client_valid(const char *s) {
        size_t len = strlen(s);

        if (len < 1 || len > CLIENT_MAX)
                return false;
        for (; *s; s++)
                if ((unsigned char) *s < 0x20 || (unsigned char) *s > 0x7e)
                        return false;
        return true;
}

static int queue_downlink(TspSim *sim, const SimRequest *req, SimResponse *resp) {
        _cleanup_free_ char *client = NULL, *topic = NULL, *ts = NULL;
        uint64_t id, timestamp = tg_now(CLOCK_REALTIME);
        int r;

        r = sim_request_query(req, "client", &client);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || !client_valid(client))
                return sim_response_text(resp, 400, "invalid-client (want client=CN, 1-%d printable characters)",
                                         CLIENT_MAX);
        r = sim_request_query(req, "topic", &topic);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || tg_topic_validate(topic, strlen(topic)) != TG_RECORD_OK)
                return sim_response_text(resp, 400, "invalid-topic (want topic=T, a valid TGR1 topic)");
        r = sim_request_query(req, "timestamp_usec", &ts);
        if (r == -ENOMEM)
                return r;
        if (r >= 0 && tg_parse_uint64(ts, &timestamp) < 0)
                return sim_response_text(resp, 400, "invalid-timestamp_usec");
        if (req->body_size > TG_PAYLOAD_MAX)
                return sim_response_text(resp, 413, "payload-too-large (limit %d bytes)", TG_PAYLOAD_MAX);

        r = tsp_store_queue_downlink(sim->store, client, topic, timestamp, req->body, req->body_size, &id);
        if (r < 0)
                return log_error_errno(r, "control: cannot queue a downlink record");
        tsp_count(&sim->counters.downlink_queued, 1);
        log_info("control: downlink record %" PRIu64 " queued for %s, topic %s, %zu bytes", id, client, topic,
                 req->body_size);
        return reply_json(resp, 200, "{\"id\":%" PRIu64 "}", id);
}

static int reset(TspSim *sim, SimResponse *resp) {
        int r;

        r = tsp_store_reset(sim->store);
        if (r < 0)
                return log_error_errno(r, "control: cannot empty the database");
        /* Field by field, atomically: connection threads keep counting. */
        for (size_t i = 0; i < sizeof sim->counters / sizeof(uint64_t); i++)
                __atomic_store_n((uint64_t *) &sim->counters + i, 0, __ATOMIC_RELAXED);
        sim_httpd_reset_stats(sim->uplink);
        log_info("control: database emptied, counters zeroed");
        return reply_json(resp, 200, "{\"reset\":true}");
}

static int method_not_allowed(SimResponse *resp, const char *allow) {
        int r;

        r = sim_response_add_header(resp, "Allow", "%s", allow);
        if (r < 0)
                return r;
        return sim_response_text(resp, 405, "method-not-allowed (want %s)", allow);
}

int tsp_control_handle(const SimRequest *req, SimResponse *resp, void *userdata) {
        TspSim *sim = userdata;
        bool get = streq(req->method, "GET"), post = streq(req->method, "POST");
        char buf[TSP_MODE_STRING_MAX];

        if (streq(req->path, "/stats"))
                return get ? get_stats(sim, resp) : method_not_allowed(resp, "GET");
        if (streq(req->path, "/mode")) {
                if (get) {
                        TspMode m = tsp_sim_get_mode(sim);
                        return sim_response_text(resp, 200, "%s", tsp_mode_to_string(&m, buf));
                }
                return post ? set_mode(sim, req, resp) : method_not_allowed(resp, "GET, POST");
        }
        if (streq(req->path, "/downlink"))
                return post ? queue_downlink(sim, req, resp) : method_not_allowed(resp, "POST");
        if (streq(req->path, "/reset"))
                return post ? reset(sim, resp) : method_not_allowed(resp, "POST");
        return sim_response_text(resp, 404, "no-such-resource (have /stats, /mode, /downlink, /reset)");
}
