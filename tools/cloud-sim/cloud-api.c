/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <sys/stat.h>

#include "cloud-sim.h"
#include "tg-parse.h"
#include "tg-time.h"

/*
 * The key-facing API (docs/key-protocol.md §5), HTTPS with client
 * certificates; the key's id is its certificate's CN:
 *
 *   PUT  /v1/gateways/{gw}/items/{item_id}            upload one car item
 *   GET  /v1/gateways/{gw}/downloads                  what the cloud holds for the car
 *   GET  /v1/gateways/{gw}/downloads/{id}             its bytes; Range: bytes=N- resumes
 *   POST /v1/gateways/{gw}/downloads/{id}/ack         the key stored it durably
 *   POST /v1/gateways/{gw}/downloads/{id}/delivered   the car acknowledged it
 */

#define GATEWAYS_PREFIX "/v1/gateways/"

/* Bytes that no HTTP client can mistake for a response. */
static const char garbage[] = "\x16\x03\x01\xff\xfe TOLLGATE-SIM GARBAGE \x00\x01\x02\x03 not http\r\n\r\n";

static const char *const item_kinds[] = { "telemetry", "upgrade-package", "kb-update", "file" };

typedef enum Route {
        ROUTE_ITEM,
        ROUTE_LIST,
        ROUTE_DOWNLOAD,
        ROUTE_ACK,
        ROUTE_DELIVERED,
} Route;

typedef struct Target {
        Route route;
        char gateway[CLOUD_ID_MAX + 1];
        uint64_t id; /* item id or download id */
} Target;

/* A refusal: status and the text/plain reason the client gets. */
typedef struct Refusal {
        int status;
        char reason[160];
} Refusal;

static int refuse(Refusal *f, int status, const char *format, ...) _printf_(3, 4);
static int refuse(Refusal *f, int status, const char *format, ...) {
        va_list ap;

        f->status = status;
        va_start(ap, format);
        vsnprintf(f->reason, sizeof f->reason, format, ap);
        va_end(ap);
        return -EBADMSG;
}

/* ---- routing ---------------------------------------------------------------- */

/* Split "a/b/c" into at most `max` segments; -E2BIG for more. Segments
 * point into `buf`, which is modified. */
static int split_segments(char *buf, char **seg, size_t max, size_t *ret_n) {
        size_t n = 0;

        for (char *p = buf;;) {
                char *slash = strchr(p, '/');

                if (n >= max)
                        return -E2BIG;
                seg[n++] = p;
                if (!slash)
                        break;
                *slash = '\0';
                p = slash + 1;
        }
        *ret_n = n;
        return 0;
}

static int parse_id(const char *s, const char *what, uint64_t *ret, Refusal *f) {
        if (tg_parse_uint64(s, ret) < 0)
                return refuse(f, 400, "invalid-%s '%.30s' (want a decimal number below 2^64)", what, s);
        return 0;
}

/* What the path names. 404 for anything that is not one of the five
 * resources, 400 for one with a malformed id. */
static int parse_target(const char *path, Target *t, Refusal *f) {
        char buf[256], *seg[4];
        size_t n;

        if (!startswith(path, GATEWAYS_PREFIX) || strlen(path) >= sizeof buf)
                return refuse(f, 404, "no-such-resource '%.60s'", path);
        strcpy(buf, path + strlen(GATEWAYS_PREFIX));
        if (split_segments(buf, seg, ELEMENTSOF(seg), &n) < 0 || n < 2)
                return refuse(f, 404, "no-such-resource '%.60s'", path);

        if (n == 3 && streq(seg[1], "items"))
                t->route = ROUTE_ITEM;
        else if (n == 2 && streq(seg[1], "downloads"))
                t->route = ROUTE_LIST;
        else if (n == 3 && streq(seg[1], "downloads"))
                t->route = ROUTE_DOWNLOAD;
        else if (n == 4 && streq(seg[1], "downloads") && streq(seg[3], "ack"))
                t->route = ROUTE_ACK;
        else if (n == 4 && streq(seg[1], "downloads") && streq(seg[3], "delivered"))
                t->route = ROUTE_DELIVERED;
        else
                return refuse(f, 404, "no-such-resource '%.60s'", path);

        if (!cloud_id_valid(seg[0], strlen(seg[0])))
                return refuse(f, 400, "invalid-gateway-id '%.64s' (1-%d characters of [A-Za-z0-9._-])", seg[0],
                              CLOUD_ID_MAX);
        strcpy(t->gateway, seg[0]);
        if (n >= 3)
                return parse_id(seg[2], t->route == ROUTE_ITEM ? "item-id" : "download-id", &t->id, f);
        return 0;
}

static int require_method(const SimRequest *req, SimResponse *resp, const char *method, Refusal *f) {
        int r;

        if (streq(req->method, method))
                return 0;
        r = sim_response_add_header(resp, "Allow", "%s", method);
        if (r < 0)
                return r;
        return refuse(f, 405, "method-not-allowed '%.16s' (want %s)", req->method, method);
}

/* ---- PUT .../items/{item_id} ------------------------------------------------- */

typedef struct ItemHeaders {
        const char *kind;
        uint64_t records;
        char sha256[SHA256_HEX_SIZE];
} ItemHeaders;

static int unique_header(const SimRequest *req, const char *name, const char **ret, Refusal *f) {
        int r;

        r = sim_request_header_unique(req, name, ret);
        if (r == -ENOENT)
                return refuse(f, 400, "missing-header %s", name);
        if (r < 0)
                return refuse(f, 400, "duplicate-header %s", name);
        return 0;
}

static int check_item_headers(const SimRequest *req, ItemHeaders *h, Refusal *f) {
        const char *v;
        int r;

        /* sim-httpd gives a request without Content-Length an empty body;
         * an item upload must say how long it is. */
        if (!sim_request_header(req, "Content-Length"))
                return refuse(f, 411, "content-length-required");
        r = sim_request_header_unique(req, "Content-Encoding", &v);
        if (r == -ENOTUNIQ || (r >= 0 && strcasecmp(v, "identity") != 0))
                return refuse(f, 415, "unsupported-content-encoding (items are sent as they are)");

        r = unique_header(req, "Tollgate-Kind", &v, f);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(item_kinds); i++)
                if (streq(v, item_kinds[i]))
                        h->kind = item_kinds[i];
        if (!h->kind)
                return refuse(f, 400, "invalid-kind '%.30s' (want telemetry, upgrade-package, kb-update or file)",
                              v);

        r = unique_header(req, "Tollgate-Records", &v, f);
        if (r < 0)
                return r;
        if (tg_parse_uint64(v, &h->records) < 0)
                return refuse(f, 400, "invalid-records '%.30s' (want a decimal count)", v);

        r = unique_header(req, "Tollgate-SHA256", &v, f);
        if (r < 0)
                return r;
        if (!cloud_sha256_hex_valid(v))
                return refuse(f, 400, "invalid-sha256 (want 64 hex digits)");
        for (size_t i = 0; i < 64; i++)
                h->sha256[i] = (char) (v[i] | 0x20); /* lowercase: digits have the bit already */
        h->sha256[64] = '\0';
        return 0;
}

/* A telemetry item is a segment of TGR1 records: decode every one before
 * anything is stored, and check the announced count. */
static int check_records(const SimRequest *req, uint64_t announced, Refusal *f) {
        size_t offset = 0;
        uint64_t n = 0;

        while (offset < req->body_size) {
                TgRecordError e;
                TgRecord rec;

                e = tg_record_decode(req->body, req->body_size, &offset, TG_PAYLOAD_MAX, &rec);
                if (e != TG_RECORD_OK)
                        return refuse(f, 400, "%s at record %" PRIu64, tg_record_error_to_string(e), n + 1);
                n++;
        }
        if (n != announced)
                return refuse(f, 400, "records-mismatch (Tollgate-Records says %" PRIu64 ", the body has %" PRIu64 ")",
                              announced, n);
        return 0;
}

static int answer_upload(CloudSim *sim, const SimRequest *req, const Target *t, const CloudUploadResult *res,
                         SimResponse *resp, Refusal *f) {
        if (res->status == CLOUD_UPLOAD_CONFLICT) {
                cloud_count(&sim->counters.upload_conflicts, 1);
                return refuse(f, 409, "item-conflict (item %" PRIu64 " of %s was stored with another SHA-256)",
                              t->id, t->gateway);
        }

        cloud_count(&sim->counters.bytes_in, req->body_size);
        if (res->status == CLOUD_UPLOAD_DUPLICATE) {
                cloud_count(&sim->counters.duplicate_uploads, 1);
                resp->status = 200;
                return sim_response_add_header(resp, "Tollgate-Duplicate", "item");
        }
        cloud_count(&sim->counters.uploads, 1);
        cloud_count(&sim->counters.records, res->records_stored);
        cloud_count(&sim->counters.duplicate_records, res->records_duplicate);
        resp->status = 201;
        /* A simulator extra (not part of the protocol) for tests and logs. */
        return sim_response_add_header(resp, "Tollgate-Sim-Records", "stored=%" PRIu64 " duplicate=%" PRIu64,
                                       res->records_stored, res->records_duplicate);
}

static int put_item(CloudSim *sim, const SimRequest *req, const Target *t, SimResponse *resp, Refusal *f) {
        char actual[SHA256_HEX_SIZE];
        CloudUploadResult res = {};
        ItemHeaders h = {};
        bool tgr1;
        int r;

        r = require_method(req, resp, "PUT", f);
        if (r < 0)
                return r;
        r = check_item_headers(req, &h, f);
        if (r < 0)
                return r;

        r = cloud_sha256_hex(req->body, req->body_size, actual);
        if (r < 0)
                return r;
        if (!streq(actual, h.sha256))
                return refuse(f, 400, "sha256-mismatch (the body's is %s)", actual);
        tgr1 = streq(h.kind, "telemetry");
        if (tgr1) {
                r = check_records(req, h.records, f);
                if (r < 0)
                        return r;
        }

        r = cloud_store_upload(sim->store,
                               &(CloudUpload) {
                                       .gateway = t->gateway,
                                       .item_id = t->id,
                                       .kind = h.kind,
                                       .records = h.records,
                                       .sha256 = h.sha256,
                                       .key_id = req->peer_cn,
                                       .received_usec = req->received_usec,
                                       .data = req->body,
                                       .size = req->body_size,
                                       .tgr1 = tgr1,
                               },
                               &res);
        if (r < 0)
                return log_error_errno(r, "cloud: cannot store item %" PRIu64 " of %s", t->id, t->gateway);
        log_debug("cloud: item %" PRIu64 " of %s from %s: %s, %s, %zu bytes, %" PRIu64 " records (%" PRIu64 " new)",
                  t->id, t->gateway, req->peer_cn,
                  res.status == CLOUD_UPLOAD_STORED ? "stored" : res.status == CLOUD_UPLOAD_DUPLICATE ? "duplicate"
                                                                                                     : "conflict",
                  h.kind, req->body_size, h.records, res.records_stored);
        return answer_upload(sim, req, t, &res, resp, f);
}

/* ---- GET .../downloads --------------------------------------------------------- */

static int append_listing(TgBuf *b, const CloudDownload *list, size_t n) {
        int r;

        r = tg_buf_append(b, "[", 1);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                r = cloud_json_append(b, "%s{\"id\":%" PRIu64 ",\"kind\":\"%s\",\"size\":%" PRIu64
                                         ",\"sha256\":\"%s\",\"name\":",
                                      i > 0 ? "," : "", list[i].id, list[i].kind, list[i].size, list[i].sha256);
                if (r >= 0)
                        r = cloud_json_append_string(b, list[i].name);
                if (r >= 0)
                        r = tg_buf_append(b, "}", 1);
        }
        if (r >= 0)
                r = tg_buf_append(b, "]\n", 2);
        return r;
}

static int get_listing(CloudSim *sim, const SimRequest *req, const Target *t, SimResponse *resp, Refusal *f) {
        CloudDownload *list = NULL;
        size_t n = 0;
        int r;

        r = require_method(req, resp, "GET", f);
        if (r < 0)
                return r;
        r = cloud_store_list_downloads(sim->store, t->gateway, &list, &n);
        if (r < 0)
                return log_error_errno(r, "cloud: cannot list the downloads of %s", t->gateway);
        r = append_listing(&resp->body, list, n);
        cloud_downloads_free(list, n);
        if (r < 0)
                return r;
        resp->status = 200;
        resp->content_type = "application/json";
        cloud_count(&sim->counters.listings, 1);
        return 0;
}

/* ---- GET .../downloads/{id} ------------------------------------------------------ */

/* A single byte range of a `size`-byte body: "bytes=A-", "bytes=A-B",
 * "bytes=-N". -EINVAL for anything else (several ranges included),
 * -ERANGE when it is not satisfiable. */
static int parse_range(const char *v, uint64_t size, uint64_t *ret_first, uint64_t *ret_last) {
        const char *dash, *p;
        uint64_t a, b;
        char num[32];

        if (strncasecmp(v, "bytes=", 6) != 0)
                return -EINVAL;
        p = v + 6;
        dash = strchr(p, '-');
        if (!dash || strchr(p, ',') || (size_t) (dash - p) >= sizeof num || strlen(dash + 1) >= sizeof num)
                return -EINVAL;

        if (dash == p) { /* suffix: the last N bytes */
                if (tg_parse_uint64(dash + 1, &b) < 0)
                        return -EINVAL;
                if (b == 0 || size == 0)
                        return -ERANGE;
                *ret_first = size - MIN(b, size);
                *ret_last = size - 1;
                return 0;
        }

        memcpy(num, p, (size_t) (dash - p));
        num[dash - p] = '\0';
        if (tg_parse_uint64(num, &a) < 0)
                return -EINVAL;
        if (dash[1] == '\0')
                b = UINT64_MAX;
        else if (tg_parse_uint64(dash + 1, &b) < 0 || b < a)
                return -EINVAL;
        if (a >= size)
                return -ERANGE;
        *ret_first = a;
        *ret_last = MIN(b, size - 1);
        return 0;
}

typedef struct Slice {
        bool partial;
        uint64_t first;
        uint64_t length;
} Slice;

/* Which bytes of `d` to send: the whole, or the one range asked for. */
static int choose_slice(const SimRequest *req, const CloudDownload *d, SimResponse *resp, Slice *ret, Refusal *f) {
        const char *range, *if_range;
        char etag[SHA256_HEX_SIZE + 2];
        uint64_t first, last;
        int r;

        *ret = (Slice) { .length = d->size };
        r = sim_request_header_unique(req, "Range", &range);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return refuse(f, 400, "duplicate-header Range");

        /* RFC 9110 13.1.5: a Range for another representation is ignored. */
        snprintf(etag, sizeof etag, "\"%s\"", d->sha256);
        if_range = sim_request_header(req, "If-Range");
        if (if_range && !streq(if_range, etag))
                return 0;

        r = parse_range(range, d->size, &first, &last);
        if (r < 0) {
                int k = sim_response_add_header(resp, "Content-Range", "bytes */%" PRIu64, d->size);
                if (k < 0)
                        return k;
                if (r == -ERANGE)
                        return refuse(f, 416, "range-not-satisfiable '%.40s' (size %" PRIu64 ")", range, d->size);
                return refuse(f, 416, "unsupported-range '%.40s' (want bytes=N-, bytes=N-M or bytes=-N)", range);
        }
        *ret = (Slice) { .partial = true, .first = first, .length = last - first + 1 };
        return 0;
}

static int pread_all(int fd, uint8_t *buf, size_t size, uint64_t offset) {
        while (size > 0) {
                ssize_t n = pread(fd, buf, size, (off_t) offset);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (n == 0)
                        return -EIO; /* the file is shorter than recorded */
                buf += n;
                size -= (size_t) n;
                offset += (uint64_t) n;
        }
        return 0;
}

/* Read `length` bytes at `offset` of `fd` into `b`, replacing its content. */
static int read_into(TgBuf *b, int fd, uint64_t offset, uint64_t length) {
        int r;

        if (length > SIZE_MAX)
                return -EFBIG;
        tg_buf_reset(b);
        r = tg_buf_reserve(b, (size_t) length);
        if (r < 0)
                return r;
        r = pread_all(fd, b->data, (size_t) length, offset);
        if (r < 0)
                return r;
        b->size = (size_t) length;
        return 0;
}

/* The answer's body: the slice of the file. Takes `fd`. */
static int set_body(SimResponse *resp, int fd, const Slice *s) {
#ifdef SIM_HTTPD_HAVE_BODY_FD
        /* sim-httpd streams it from the file in pieces: a download of any
         * size costs a fixed amount of memory. */
        resp->body_fd = fd;
        resp->body_offset = s->first;
        resp->body_length = s->length;
        return 0;
#else
        int r = read_into(&resp->body, fd, s->first, s->length);
        safe_close(fd);
        return r;
#endif
}

/* truncate:N — a valid head that announces the whole slice, then only its
 * first N bytes, then the connection closes: what a dropped link does to a
 * download, for resumption tests. */
static int answer_truncated(CloudSim *sim, const CloudDownload *d, int fd, const Slice *s, uint64_t cut,
                            SimResponse *resp) {
        _cleanup_(tg_buf_free) TgBuf part = {};
        _cleanup_free_ char *head = NULL;
        uint64_t n = MIN(cut, s->length);
        int r, len;

        len = asprintf(&head,
                       "HTTP/1.1 %s\r\nServer: tollgate-cloud-sim\r\nContent-Length: %" PRIu64 "\r\n"
                       "Content-Type: application/octet-stream\r\nAccept-Ranges: bytes\r\nETag: \"%s\"\r\n"
                       "Tollgate-SHA256: %s\r\n",
                       s->partial ? "206 Partial Content" : "200 OK", s->length, d->sha256, d->sha256);
        if (len < 0)
                return -ENOMEM;
        r = read_into(&part, fd, s->first, n);
        if (r < 0)
                return r;

        tg_buf_reset(&resp->body);
        r = tg_buf_append(&resp->body, head, (size_t) len);
        if (r >= 0 && s->partial)
                r = cloud_json_append(&resp->body, "Content-Range: bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64 "\r\n",
                                      s->first, s->first + s->length - 1, d->size);
        if (r >= 0)
                r = tg_buf_append(&resp->body, "\r\n", 2);
        if (r >= 0)
                r = tg_buf_append(&resp->body, part.data, part.size);
        if (r < 0)
                return r;
        resp->action = SIM_ACTION_RAW_CLOSE;
        cloud_count(&sim->counters.bytes_out, n);
        cloud_count(&sim->counters.faults_injected, 1);
        return 0;
}

static int download_headers(SimResponse *resp, const CloudDownload *d, const Slice *s) {
        int r;

        resp->status = s->partial ? 206 : 200;
        resp->content_type = "application/octet-stream";
        r = sim_response_add_header(resp, "Accept-Ranges", "bytes");
        if (r >= 0)
                r = sim_response_add_header(resp, "ETag", "\"%s\"", d->sha256);
        if (r >= 0)
                r = sim_response_add_header(resp, "Tollgate-SHA256", "%s", d->sha256);
        if (r >= 0)
                r = sim_response_add_header(resp, "Tollgate-Kind", "%s", d->kind);
        if (r >= 0 && s->partial)
                r = sim_response_add_header(resp, "Content-Range", "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64,
                                            s->first, s->first + s->length - 1, d->size);
        return r;
}

/* Open the download's file and check that it still has the recorded size. */
static int open_download(const CloudDownload *d, Refusal *f) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;

        fd = open(d->path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT) /* acknowledged (or reset) just now */
                return refuse(f, 404, "no-such-download %" PRIu64, d->id);
        if (fd < 0)
                return log_error_errno(errno, "cloud: cannot open %s: %m", d->path);
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if ((uint64_t) st.st_size != d->size)
                return log_error_errno(-EIO, "cloud: %s has %" PRIu64 " bytes, the database says %" PRIu64, d->path,
                                       (uint64_t) st.st_size, d->size);
        return TAKE_FD(fd);
}

static int get_download(CloudSim *sim, const SimRequest *req, const Target *t, const CloudMode *mode,
                        SimResponse *resp, Refusal *f) {
        _cleanup_(cloud_download_done) CloudDownload d = {};
        _cleanup_close_ int fd = -EBADF;
        Slice s;
        int r;

        r = require_method(req, resp, "GET", f);
        if (r < 0)
                return r;
        r = cloud_store_get_download(sim->store, t->gateway, t->id, &d);
        if (r == -ENOENT)
                return refuse(f, 404, "no-such-download %" PRIu64, t->id);
        if (r < 0)
                return log_error_errno(r, "cloud: cannot look up download %" PRIu64, t->id);
        if (d.acked)
                return refuse(f, 404, "download-acknowledged %" PRIu64 " (the cloud dropped its copy)", t->id);

        r = choose_slice(req, &d, resp, &s, f);
        if (r < 0)
                return r;
        fd = open_download(&d, f);
        if (fd < 0)
                return fd;

        if (mode->kind == CLOUD_MODE_TRUNCATE)
                return answer_truncated(sim, &d, fd, &s, mode->arg, resp);

        r = download_headers(resp, &d, &s);
        if (r >= 0)
                r = set_body(resp, TAKE_FD(fd), &s);
        if (r < 0)
                return r;
        (void) cloud_store_count_fetch(sim->store, d.id);
        cloud_count(&sim->counters.downloads_served, 1);
        cloud_count(&sim->counters.bytes_out, s.length);
        log_debug("cloud: download %" PRIu64 " of %s to %s: bytes %" PRIu64 "+%" PRIu64 " of %" PRIu64, d.id,
                  t->gateway, req->peer_cn, s.first, s.length, d.size);
        return 0;
}

/* ---- POST .../downloads/{id}/ack|delivered ----------------------------------------- */

static int post_mark(CloudSim *sim, const SimRequest *req, const Target *t, SimResponse *resp, Refusal *f) {
        bool ack = t->route == ROUTE_ACK, first;
        int r;

        r = require_method(req, resp, "POST", f);
        if (r < 0)
                return r;
        if (ack)
                r = cloud_store_ack(sim->store, t->gateway, t->id, req->received_usec, &first);
        else
                r = cloud_store_delivered(sim->store, t->gateway, t->id, req->received_usec, &first);
        if (r == -ENOENT)
                return refuse(f, 404, "no-such-download %" PRIu64, t->id);
        if (r < 0)
                return log_error_errno(r, "cloud: cannot record %s of download %" PRIu64, ack ? "ack" : "delivery",
                                       t->id);

        if (ack)
                cloud_count(first ? &sim->counters.acks : &sim->counters.duplicate_acks, 1);
        else if (first)
                cloud_count(&sim->counters.delivered, 1);
        log_debug("cloud: download %" PRIu64 " of %s %s by %s%s", t->id, t->gateway, ack ? "acknowledged" : "delivered",
                  req->peer_cn, first ? "" : " (again)");
        resp->status = 204;
        return 0;
}

/* ---- the handler -------------------------------------------------------------------- */

static int route(CloudSim *sim, const SimRequest *req, const CloudMode *mode, SimResponse *resp, Refusal *f) {
        Target t = {};
        int r;

        r = parse_target(req->path, &t, f);
        if (r < 0)
                return r;
        if (!req->peer_cn)
                return refuse(f, 403, "no-client-identity (certificate without a usable CN)");
        if (!cloud_sim_is_paired(sim, req->peer_cn, t.gateway))
                return refuse(f, 403, "not-paired (key %.64s may not act for gateway %s)", req->peer_cn, t.gateway);

        switch (t.route) {
        case ROUTE_ITEM:
                return put_item(sim, req, &t, resp, f);
        case ROUTE_LIST:
                return get_listing(sim, req, &t, resp, f);
        case ROUTE_DOWNLOAD:
                return get_download(sim, req, &t, mode, resp, f);
        case ROUTE_ACK:
        case ROUTE_DELIVERED:
                return post_mark(sim, req, &t, resp, f);
        }
        return -EINVAL;
}

/* Modes that answer without looking at the request. */
static bool apply_fault_mode(CloudSim *sim, const CloudMode *mode, SimResponse *resp) {
        switch (mode->kind) {
        case CLOUD_MODE_HANG:
                resp->action = SIM_ACTION_HANG;
                break;
        case CLOUD_MODE_GARBAGE:
                resp->action = SIM_ACTION_RAW_CLOSE;
                if (tg_buf_append(&resp->body, garbage, sizeof garbage - 1) < 0)
                        resp->action = SIM_ACTION_CLOSE;
                break;
        case CLOUD_MODE_ERROR:
                if (sim_response_text(resp, 503, "simulated-outage") < 0 ||
                    sim_response_add_header(resp, "Retry-After", "1") < 0)
                        resp->action = SIM_ACTION_CLOSE;
                break;
        case CLOUD_MODE_REJECT:
                if (sim_response_text(resp, 400, "simulated-rejection") < 0)
                        resp->action = SIM_ACTION_CLOSE;
                break;
        case CLOUD_MODE_CLOSE:
                resp->action = SIM_ACTION_CLOSE;
                break;
        default:
                return false;
        }
        cloud_count(&sim->counters.faults_injected, 1);
        return true;
}

static void count_refusal(CloudSim *sim, int status) {
        if (status == 403)
                cloud_count(&sim->counters.forbidden, 1);
        else if (status < 500 && status != 409)
                cloud_count(&sim->counters.bad_requests, 1);
}

int cloud_api_handle(const SimRequest *req, SimResponse *resp, void *userdata) {
        CloudSim *sim = userdata;
        CloudMode mode = cloud_sim_get_mode(sim);
        Refusal f = {};
        int r;

        if (apply_fault_mode(sim, &mode, resp))
                return 0;

        r = route(sim, req, &mode, resp, &f);
        if (r == -EBADMSG) {
                count_refusal(sim, f.status);
                cloud_sim_log_peer(sim, f.status == 409 ? LOG_WARNING : LOG_NOTICE, "cloud: %d %s: %s %s from %s (%s)",
                                   f.status, f.reason, req->method, req->path, strempty(req->peer_cn),
                                   req->peer_address);
                r = sim_response_text(resp, f.status, "%s", f.reason);
        }
        if (r < 0)
                return r;

        if (mode.kind == CLOUD_MODE_LOSE_REPLY) {
                resp->action = SIM_ACTION_CLOSE;
                cloud_count(&sim->counters.faults_injected, 1);
        } else if (mode.kind == CLOUD_MODE_SLOW)
                resp->delay_usec = mode.arg * USEC_PER_MSEC;
        return 0;
}

void cloud_api_request_error(const char *peer_address, const char *peer_cn, int status, const char *reason,
                             void *userdata) {
        CloudSim *sim = userdata;

        count_refusal(sim, status);
        cloud_sim_log_peer(sim, LOG_NOTICE, "cloud: %d %s from %s (%s)", status, reason, strempty(peer_cn),
                           peer_address);
}

void cloud_api_tls_failure(const char *peer_address, const char *reason, void *userdata) {
        CloudSim *sim = userdata;

        cloud_sim_log_peer(sim, LOG_NOTICE, "cloud: TLS handshake with %s refused: %s", peer_address, reason);
}
