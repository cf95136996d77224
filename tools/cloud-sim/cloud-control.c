/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>

#include "cloud-sim.h"
#include "tg-parse.h"

/*
 * The control API: plain HTTP on loopback, for tests and the sandbox.
 *
 *   GET  /stats                                        counters, as one JSON object
 *   GET  /mode                                         current mode, as text
 *   POST /mode                                         body: the new mode
 *   POST /downloads?gateway=GW&kind=K&name=N[&source=PATH]
 *                                                      body (or the file): queue a download
 *   GET  /pairs                                        the pairs, as JSON
 *   POST /pair?key=K&gateway=G, POST /unpair?...       add or remove a pair
 *   POST /reset                                        empty the tables, zero the counters
 */

#define NAME_MAX_BYTES 255

static const char *const download_kinds[] = { "upgrade-package", "kb-update", "file" };

static int reply_json_start(SimResponse *resp) {
        resp->status = 200;
        resp->content_type = "application/json";
        tg_buf_reset(&resp->body);
        return 0;
}

static uint64_t load(const uint64_t *counter) {
        return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

static int get_stats(CloudSim *sim, SimResponse *resp) {
        const CloudCounters *c = &sim->counters;
        char mode[CLOUD_MODE_STRING_MAX];
        CloudMode m = cloud_sim_get_mode(sim);
        TgBuf *b = &resp->body;
        SimHttpdStats h;
        int r;

        sim_httpd_get_stats(sim->api, &h);
        reply_json_start(resp);
        r = cloud_json_append(b,
                              "{\"requests\":%" PRIu64 ",\"uploads\":%" PRIu64 ",\"duplicate_uploads\":%" PRIu64
                              ",\"upload_conflicts\":%" PRIu64 ",\"bytes_in\":%" PRIu64 ",\"records\":%" PRIu64
                              ",\"duplicate_records\":%" PRIu64 ",",
                              h.requests, load(&c->uploads), load(&c->duplicate_uploads), load(&c->upload_conflicts),
                              load(&c->bytes_in), load(&c->records), load(&c->duplicate_records));
        if (r >= 0)
                r = cloud_json_append(b,
                                      "\"listings\":%" PRIu64 ",\"downloads_served\":%" PRIu64
                                      ",\"bytes_out\":%" PRIu64 ",\"acks\":%" PRIu64 ",\"duplicate_acks\":%" PRIu64
                                      ",\"delivered\":%" PRIu64 ",\"downloads_queued\":%" PRIu64 ",",
                                      load(&c->listings), load(&c->downloads_served), load(&c->bytes_out),
                                      load(&c->acks), load(&c->duplicate_acks), load(&c->delivered),
                                      load(&c->downloads_queued));
        if (r >= 0)
                r = cloud_json_append(b,
                                      "\"bad_requests\":%" PRIu64 ",\"forbidden\":%" PRIu64
                                      ",\"tls_failures\":%" PRIu64 ",\"connections_total\":%" PRIu64
                                      ",\"connections_open\":%" PRIu64 ",\"connections_rejected\":%" PRIu64
                                      ",\"wire_bytes_in\":%" PRIu64 ",\"wire_bytes_out\":%" PRIu64 ",",
                                      load(&c->bad_requests), load(&c->forbidden), h.tls_failures,
                                      h.connections_total, h.connections_open, h.connections_rejected,
                                      h.wire_bytes_in, h.wire_bytes_out);
        if (r >= 0)
                r = cloud_json_append(b, "\"faults_injected\":%" PRIu64 ",\"mode\":\"%s\"}\n",
                                      load(&c->faults_injected), cloud_mode_to_string(&m, mode));
        return r;
}

static int set_mode(CloudSim *sim, const SimRequest *req, SimResponse *resp) {
        char text[CLOUD_MODE_STRING_MAX + 1], buf[CLOUD_MODE_STRING_MAX];
        size_t n = req->body_size;
        CloudMode m;

        /* "echo slow:100 | curl --data-binary @-" leaves a newline. */
        while (n > 0 && (req->body[n - 1] == '\n' || req->body[n - 1] == '\r' || req->body[n - 1] == ' '))
                n--;
        if (n > 0 && n < sizeof text) {
                memcpy(text, req->body, n);
                text[n] = '\0';
        }
        if (n == 0 || n >= sizeof text || memchr(text, '\0', n) || cloud_mode_from_string(text, &m) < 0)
                return sim_response_text(resp, 400, "invalid-mode (want normal, hang, garbage, error, reject, "
                                                    "close, lose-reply, slow:MS or truncate:BYTES)");

        cloud_sim_set_mode(sim, &m);
        log_info("control: mode set to %s", cloud_mode_to_string(&m, buf));
        reply_json_start(resp);
        return cloud_json_append(&resp->body, "{\"mode\":\"%s\"}\n", buf);
}

/* 1-255 bytes of UTF-8 without control characters: it goes into JSON,
 * logs and, on the key link, an OFFER's name. */
static bool name_valid(const char *s) {
        size_t len = strlen(s);

        if (len < 1 || len > NAME_MAX_BYTES)
                return false;
        for (const unsigned char *p = (const unsigned char *) s; *p;) {
                unsigned extra, cp;

                if (*p < 0x20 || *p == 0x7f)
                        return false;
                if (*p < 0x80) {
                        p++;
                        continue;
                }
                if ((*p & 0xe0) == 0xc0 && *p >= 0xc2)
                        extra = 1, cp = *p & 0x1f;
                else if ((*p & 0xf0) == 0xe0)
                        extra = 2, cp = *p & 0x0f;
                else if ((*p & 0xf8) == 0xf0 && *p <= 0xf4)
                        extra = 3, cp = *p & 0x07;
                else
                        return false;
                p++;
                for (unsigned i = 0; i < extra; i++, p++) {
                        if ((*p & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (*p & 0x3f);
                }
                /* Overlong forms, surrogates, beyond U+10FFFF. */
                if ((extra == 2 && cp < 0x800) || (cp >= 0xd800 && cp <= 0xdfff) || (extra == 3 && cp < 0x10000) ||
                    cp > 0x10ffff)
                        return false;
        }
        return true;
}

/* Query parameter `name` into *ret; 400 (through the response) when it is
 * missing or fails `valid`. Returns 1 when *ret is set, 0 when the
 * response was filled in, negative errno. */
static int query_param(const SimRequest *req, SimResponse *resp, const char *name, bool (*valid)(const char *),
                       const char *want, char **ret) {
        _cleanup_free_ char *v = NULL;
        int r;

        r = sim_request_query(req, name, &v);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || !valid(v)) {
                r = sim_response_text(resp, 400, "invalid-%s (want %s=%s)", name, name, want);
                return r < 0 ? r : 0;
        }
        *ret = TAKE_PTR(v);
        return 1;
}

static bool id_valid(const char *s) {
        return cloud_id_valid(s, strlen(s));
}

static bool download_kind_valid(const char *s) {
        for (size_t i = 0; i < ELEMENTSOF(download_kinds); i++)
                if (streq(s, download_kinds[i]))
                        return true;
        return false;
}

/* source=PATH: the file to copy instead of the body. Returns 1 with
 * *ret_fd (-EBADF when there is no source), 0 when the response was
 * filled in (the source cannot be used), negative errno. */
static int open_source(const SimRequest *req, SimResponse *resp, int *ret_fd) {
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        int r;

        *ret_fd = -EBADF;
        r = sim_request_query(req, "source", &path);
        if (r == -ENOENT)
                return 1;
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                r = sim_response_text(resp, 400, "invalid-source");
        else if (req->body_size > 0)
                r = sim_response_text(resp, 400, "body-and-source (send the bytes or name a file, not both)");
        else if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) < 0)
                r = sim_response_text(resp, 400, "invalid-source '%.200s': %s", path, strerror(errno));
        else if (!S_ISREG(st.st_mode))
                r = sim_response_text(resp, 400, "invalid-source '%.200s': not a regular file", path);
        else {
                *ret_fd = TAKE_FD(fd);
                return 1;
        }
        return r < 0 ? r : 0;
}

static int queue_download(CloudSim *sim, const SimRequest *req, SimResponse *resp) {
        _cleanup_free_ char *gateway = NULL, *kind = NULL, *name = NULL;
        _cleanup_close_ int source_fd = -EBADF;
        char sha[SHA256_HEX_SIZE];
        uint64_t id, size;
        int r;

        r = query_param(req, resp, "gateway", id_valid, "GATEWAYID, 1-64 characters of [A-Za-z0-9._-]", &gateway);
        if (r <= 0)
                return r;
        r = query_param(req, resp, "kind", download_kind_valid, "upgrade-package, kb-update or file", &kind);
        if (r <= 0)
                return r;
        r = query_param(req, resp, "name", name_valid, "NAME, 1-255 bytes of UTF-8, no control characters",
                        &name);
        if (r <= 0)
                return r;
        r = open_source(req, resp, &source_fd);
        if (r <= 0)
                return r;

        r = cloud_store_queue_download(sim->store,
                                       &(CloudQueueRequest) {
                                               .gateway = gateway,
                                               .kind = kind,
                                               .name = name,
                                               .data = req->body,
                                               .size = req->body_size,
                                               .source_fd = source_fd,
                                       },
                                       &id, &size, sha);
        if (r < 0)
                return log_error_errno(r, "control: cannot queue a download for %s: %m", gateway);
        cloud_count(&sim->counters.downloads_queued, 1);
        log_info("control: download %" PRIu64 " queued for %s: %s '%s', %" PRIu64 " bytes, sha256 %s", id, gateway,
                 kind, name, size, sha);
        reply_json_start(resp);
        return cloud_json_append(&resp->body, "{\"id\":%" PRIu64 ",\"size\":%" PRIu64 ",\"sha256\":\"%s\"}\n", id,
                                 size, sha);
}

static int change_pair(CloudSim *sim, const SimRequest *req, SimResponse *resp, bool add) {
        _cleanup_free_ char *key = NULL, *gateway = NULL;
        int r;

        r = query_param(req, resp, "key", id_valid, "KEYID, 1-64 characters of [A-Za-z0-9._-]", &key);
        if (r <= 0)
                return r;
        r = query_param(req, resp, "gateway", id_valid, "GATEWAYID, 1-64 characters of [A-Za-z0-9._-]", &gateway);
        if (r <= 0)
                return r;

        r = add ? cloud_sim_pair(sim, key, gateway) : cloud_sim_unpair(sim, key, gateway);
        if (r < 0)
                return r;
        log_info("control: key %s %s gateway %s%s", key, add ? "paired with" : "unpaired from", gateway,
                 r == 0 ? " (no change)" : "");
        reply_json_start(resp);
        return cloud_json_append(&resp->body, "{\"key\":\"%s\",\"gateway\":\"%s\",\"paired\":%s,\"changed\":%s}\n",
                                 key, gateway, add ? "true" : "false", r > 0 ? "true" : "false");
}

static int get_pairs(CloudSim *sim, SimResponse *resp) {
        int r;

        reply_json_start(resp);
        r = cloud_sim_pairs_json(sim, &resp->body);
        if (r >= 0)
                r = tg_buf_append(&resp->body, "\n", 1);
        return r;
}

static int reset(CloudSim *sim, SimResponse *resp) {
        int r;

        r = cloud_store_reset(sim->store);
        if (r < 0)
                return log_error_errno(r, "control: cannot empty the database");
        /* Field by field, atomically: connection threads keep counting. */
        for (size_t i = 0; i < sizeof sim->counters / sizeof(uint64_t); i++)
                __atomic_store_n((uint64_t *) &sim->counters + i, 0, __ATOMIC_RELAXED);
        sim_httpd_reset_stats(sim->api);
        log_info("control: database emptied, downloads deleted, counters zeroed");
        reply_json_start(resp);
        return cloud_json_append(&resp->body, "{\"reset\":true}\n");
}

static int method_not_allowed(SimResponse *resp, const char *allow) {
        int r;

        r = sim_response_add_header(resp, "Allow", "%s", allow);
        if (r < 0)
                return r;
        return sim_response_text(resp, 405, "method-not-allowed (want %s)", allow);
}

int cloud_control_handle(const SimRequest *req, SimResponse *resp, void *userdata) {
        CloudSim *sim = userdata;
        bool get = streq(req->method, "GET"), post = streq(req->method, "POST");
        char buf[CLOUD_MODE_STRING_MAX];

        if (streq(req->path, "/stats"))
                return get ? get_stats(sim, resp) : method_not_allowed(resp, "GET");
        if (streq(req->path, "/mode")) {
                if (get) {
                        CloudMode m = cloud_sim_get_mode(sim);
                        return sim_response_text(resp, 200, "%s", cloud_mode_to_string(&m, buf));
                }
                return post ? set_mode(sim, req, resp) : method_not_allowed(resp, "GET, POST");
        }
        if (streq(req->path, "/downloads"))
                return post ? queue_download(sim, req, resp) : method_not_allowed(resp, "POST");
        if (streq(req->path, "/pairs"))
                return get ? get_pairs(sim, resp) : method_not_allowed(resp, "GET");
        if (streq(req->path, "/pair") || streq(req->path, "/unpair"))
                return post ? change_pair(sim, req, resp, streq(req->path, "/pair")) : method_not_allowed(resp, "POST");
        if (streq(req->path, "/reset"))
                return post ? reset(sim, resp) : method_not_allowed(resp, "POST");
        return sim_response_text(resp, 404, "no-such-resource (have /stats, /mode, /downloads, /pairs, /pair, "
                                            "/unpair, /reset)");
}
