/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <zlib.h>

#include "tg-parse.h"
#include "tsp-sim.h"

#define TELEMETRY_PATH "/v1/telemetry"
#define TGR1_MEDIA_TYPE "application/vnd.tollgate.records+tgr1"
#define IDEMPOTENCY_KEY_MAX 64
/* A decompressed body may be up to 64 MiB; all connections together hold
 * at most this much decompressed data at once (beyond it: 503, retry). */
#define INFLATE_MAX ((size_t) 64 * 1024 * 1024)
#define INFLATE_BUDGET ((uint64_t) 512 * 1024 * 1024)

/* Bytes that no HTTP client can mistake for a response. */
static const char garbage[] = "\x16\x03\x01\xff\xfe TOLLGATE-SIM GARBAGE \x00\x01\x02\x03 not http\r\n\r\n";

typedef enum Encoding {
        ENCODING_IDENTITY,
        ENCODING_GZIP,
        ENCODING_DEFLATE,
} Encoding;

static const char *const encoding_names[] = {
        [ENCODING_IDENTITY] = "identity",
        [ENCODING_GZIP] = "gzip",
        [ENCODING_DEFLATE] = "deflate",
};

/* A refusal: status and the text/plain reason the client gets. */
typedef struct Refusal {
        int status;
        char reason[128];
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

/* ---- decompression ------------------------------------------------------- */

/* Take `n` more bytes from the shared budget, or -ENOBUFS. */
static int budget_take(TspSim *sim, uint64_t n) {
        uint64_t cur = __atomic_load_n(&sim->inflate_in_use, __ATOMIC_RELAXED);

        do {
                if (cur + n > INFLATE_BUDGET)
                        return -ENOBUFS;
        } while (!__atomic_compare_exchange_n(&sim->inflate_in_use, &cur, cur + n, true, __ATOMIC_RELAXED,
                                              __ATOMIC_RELAXED));
        return 0;
}

static void budget_give(TspSim *sim, uint64_t n) {
        __atomic_fetch_sub(&sim->inflate_in_use, n, __ATOMIC_RELAXED);
}

typedef struct Inflated {
        TspSim *sim;
        TgBuf buf;
        uint64_t budget; /* taken from sim->inflate_in_use */
} Inflated;

static void inflated_done(Inflated *d) {
        if (d->sim)
                budget_give(d->sim, d->budget);
        tg_buf_free(&d->buf);
}

/* Make room for at least one more byte, growing within INFLATE_MAX (one
 * byte beyond, to notice a body that is too large) and the shared budget.
 * The buffer is grown here, not with tg_buf_reserve(), so that what is
 * allocated is exactly what the budget accounts for. */
static int inflated_grow(Inflated *d, size_t size_hint, Refusal *f) {
        size_t want;
        uint8_t *p;

        if (d->buf.allocated >= INFLATE_MAX + 1)
                return refuse(f, 413, "decompressed-body-too-large (limit %zu bytes)", INFLATE_MAX);
        want = d->buf.allocated > 0 ? d->buf.allocated * 2 : MAX(size_hint, (size_t) 64 * 1024);
        want = MIN(want, INFLATE_MAX + 1);
        if (budget_take(d->sim, want - d->buf.allocated) < 0)
                return refuse(f, 503, "server-busy (decompression memory exhausted), retry");
        d->budget += want - d->buf.allocated;
        p = realloc(d->buf.data, want);
        if (!p)
                return -ENOMEM;
        d->buf.data = p;
        d->buf.allocated = want;
        return 0;
}

/* Inflate a gzip (RFC 1952, several members allowed) or deflate (RFC 1950
 * zlib stream; a raw RFC 1951 stream is accepted too, as some clients send
 * that) body into d->buf. */
static int inflate_body(const uint8_t *in, size_t size, Encoding enc, Inflated *d, Refusal *f) {
        z_stream z = {};
        bool raw_tried = false;
        int zr, r;

        zr = inflateInit2(&z, enc == ENCODING_GZIP ? 16 + MAX_WBITS : MAX_WBITS);
        if (zr != Z_OK)
                return -ENOMEM;

        z.next_in = (Bytef *) in;
        z.avail_in = (uInt) size;
        for (;;) {
                if (d->buf.allocated - d->buf.size == 0) {
                        /* Telemetry compresses about 4:1; start there. */
                        r = inflated_grow(d, size * 4, f);
                        if (r < 0)
                                goto finish;
                }
                z.next_out = d->buf.data + d->buf.size;
                z.avail_out = (uInt) MIN(d->buf.allocated - d->buf.size, (size_t) UINT32_MAX);

                zr = inflate(&z, Z_NO_FLUSH);
                d->buf.size = (size_t) (z.next_out - d->buf.data);
                if (d->buf.size > INFLATE_MAX) {
                        r = refuse(f, 413, "decompressed-body-too-large (limit %zu bytes)", INFLATE_MAX);
                        goto finish;
                }

                if (zr == Z_STREAM_END) {
                        if (z.avail_in == 0) {
                                r = 0;
                                goto finish;
                        }
                        /* RFC 1952 allows several members back to back. */
                        if (enc == ENCODING_GZIP && inflateReset(&z) == Z_OK)
                                continue;
                        r = refuse(f, 400, "trailing-data-after-compressed-stream");
                        goto finish;
                }
                if (zr == Z_DATA_ERROR && enc == ENCODING_DEFLATE && !raw_tried && d->buf.size == 0) {
                        raw_tried = true;
                        if (inflateReset2(&z, -MAX_WBITS) != Z_OK) {
                                r = -ENOMEM;
                                goto finish;
                        }
                        z.next_in = (Bytef *) in;
                        z.avail_in = (uInt) size;
                        continue;
                }
                if (zr == Z_MEM_ERROR) {
                        r = -ENOMEM;
                        goto finish;
                }
                if (zr == Z_DATA_ERROR || zr == Z_NEED_DICT) {
                        r = refuse(f, 400, "invalid-%s-stream: %s", encoding_names[enc], z.msg ?: "corrupt data");
                        goto finish;
                }
                if (zr == Z_BUF_ERROR && z.avail_in == 0 && z.avail_out > 0) {
                        r = refuse(f, 400, "truncated-%s-stream", encoding_names[enc]);
                        goto finish;
                }
                if (zr != Z_OK && zr != Z_BUF_ERROR) {
                        r = -EIO;
                        goto finish;
                }
        }
finish:
        inflateEnd(&z);
        return r;
}

/* ---- request checks -------------------------------------------------------- */

/* Media type without parameters, compared case-insensitively. */
static bool media_type_is(const char *value, const char *type) {
        size_t len = strlen(type);

        if (strncasecmp(value, type, len) != 0)
                return false;
        value += len;
        while (*value == ' ' || *value == '\t')
                value++;
        return *value == '\0' || *value == ';';
}

static bool idempotency_key_valid(const char *key) {
        size_t len = strlen(key);

        if (len < 1 || len > IDEMPOTENCY_KEY_MAX)
                return false;
        for (const char *p = key; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      *p == '.' || *p == '_' || *p == '-'))
                        return false;
        return true;
}

typedef struct UplinkHeaders {
        Encoding encoding;
        const char *key;
        bool has_ack;
        uint64_t ack;
} UplinkHeaders;

static int check_headers(const SimRequest *req, UplinkHeaders *ret, Refusal *f) {
        const char *v;
        int r;

        r = sim_request_header_unique(req, "Content-Type", &v);
        if (r == -ENOENT)
                return refuse(f, 415, "missing-content-type (want %s)", TGR1_MEDIA_TYPE);
        if (r < 0)
                return refuse(f, 400, "duplicate-content-type");
        if (!media_type_is(v, TGR1_MEDIA_TYPE))
                return refuse(f, 415, "unsupported-content-type '%.60s' (want %s)", v, TGR1_MEDIA_TYPE);

        r = sim_request_header_unique(req, "Content-Encoding", &v);
        if (r == -ENOENT)
                ret->encoding = ENCODING_IDENTITY;
        else if (r < 0)
                return refuse(f, 415, "multiple-content-encodings");
        else if (strcasecmp(v, "gzip") == 0 || strcasecmp(v, "x-gzip") == 0)
                ret->encoding = ENCODING_GZIP;
        else if (strcasecmp(v, "deflate") == 0)
                ret->encoding = ENCODING_DEFLATE;
        else if (strcasecmp(v, "identity") == 0)
                ret->encoding = ENCODING_IDENTITY;
        else
                return refuse(f, 415, "unsupported-content-encoding '%.40s' (want gzip, deflate or none)", v);

        r = sim_request_header_unique(req, "Idempotency-Key", &ret->key);
        if (r == -ENOENT)
                return refuse(f, 400, "missing-idempotency-key");
        if (r < 0)
                return refuse(f, 400, "duplicate-idempotency-key");
        if (!idempotency_key_valid(ret->key))
                return refuse(f, 400, "invalid-idempotency-key (1-%d characters of [A-Za-z0-9._-])",
                              IDEMPOTENCY_KEY_MAX);

        r = sim_request_header_unique(req, "Tollgate-Downlink-Ack", &v);
        if (r == -ENOTUNIQ)
                return refuse(f, 400, "duplicate-downlink-ack");
        if (r >= 0) {
                if (tg_parse_uint64(v, &ret->ack) < 0)
                        return refuse(f, 400, "invalid-downlink-ack '%.30s' (want a decimal record id)", v);
                ret->has_ack = true;
        }
        return 0;
}

/* Decode every record before anything is stored: one bad record refuses
 * the whole batch. */
static int validate_records(const uint8_t *data, size_t size, size_t *ret_n, Refusal *f) {
        size_t offset = 0, n = 0;

        while (offset < size) {
                TgRecordError e;
                TgRecord rec;

                e = tg_record_decode(data, size, &offset, TG_PAYLOAD_MAX, &rec);
                if (e != TG_RECORD_OK)
                        return refuse(f, 400, "%s at record %zu", tg_record_error_to_string(e), n + 1);
                n++;
        }
        *ret_n = n;
        return 0;
}

/* ---- the handler ------------------------------------------------------------- */

static int answer_stored(TspSim *sim, const TspBatchResult *res, SimResponse *resp) {
        int r;

        resp->status = 200;
        if (res->duplicate_batch) {
                r = sim_response_add_header(resp, "Tollgate-Duplicate", "batch");
                if (r < 0)
                        return r;
        }
        /* Simulator extras (not part of the protocol) that make tests and
         * logs easier to read. */
        r = sim_response_add_header(resp, "Tollgate-Sim-Records", "stored=%" PRIu64 " duplicate=%" PRIu64,
                                    res->stored, res->duplicates);
        if (r < 0)
                return r;
        if (res->n_downlink > 0) {
                resp->content_type = TGR1_MEDIA_TYPE;
                /* Hand the buffer over instead of copying it. */
                tg_buf_free(&resp->body);
                resp->body = res->downlink;
        }
        return 0;
}

static int process_telemetry(TspSim *sim, const SimRequest *req, SimResponse *resp, Refusal *f) {
        _cleanup_(inflated_done) Inflated inflated = { .sim = sim };
        TspBatchResult res = {};
        UplinkHeaders h = {};
        const uint8_t *data;
        size_t size, n_records = 0;
        int r;

        if (!req->peer_cn)
                return refuse(f, 403, "no-client-identity (certificate without a usable CN)");

        r = check_headers(req, &h, f);
        if (r < 0)
                return r;

        if (h.encoding == ENCODING_IDENTITY) {
                data = req->body;
                size = req->body_size;
        } else {
                r = inflate_body(req->body, req->body_size, h.encoding, &inflated, f);
                if (r < 0)
                        return r;
                data = inflated.buf.data;
                size = inflated.buf.size;
        }

        r = validate_records(data, size, &n_records, f);
        if (r < 0)
                return r;

        r = tsp_store_batch(sim->store,
                            &(TspBatch) {
                                    .client = req->peer_cn,
                                    .key = h.key,
                                    .encoding = encoding_names[h.encoding],
                                    .received_usec = req->received_usec,
                                    .records = data,
                                    .records_size = size,
                                    .n_records = n_records,
                                    .body_bytes = req->body_size,
                                    .has_ack = h.has_ack,
                                    .ack = h.ack,
                            },
                            &res);
        if (r < 0)
                return log_error_errno(r, "tsp: cannot store batch %s of %s", h.key, req->peer_cn);

        if (res.duplicate_batch)
                tsp_count(&sim->counters.duplicate_batches, 1);
        else
                tsp_count(&sim->counters.batches, 1);
        tsp_count(&sim->counters.records, res.stored);
        tsp_count(&sim->counters.duplicate_records, res.duplicates);
        tsp_count(&sim->counters.downlink_sent, res.n_downlink);
        tsp_count(&sim->counters.downlink_acked, res.acked);
        log_debug("tsp: %s batch %s from %s: %zu records, %" PRIu64 " new, %" PRIu64
                  " duplicate, %zu downlink sent, %" PRIu64 " acked",
                  res.duplicate_batch ? "duplicate" : "stored", h.key, req->peer_cn, n_records, res.stored,
                  res.duplicates, res.n_downlink, res.acked);

        r = answer_stored(sim, &res, resp);
        if (r < 0)
                tg_buf_free(&res.downlink);
        return r;
}

static int route(TspSim *sim, const SimRequest *req, SimResponse *resp, Refusal *f) {
        if (!streq(req->path, TELEMETRY_PATH))
                return refuse(f, 404, "no-such-resource '%.60s'", req->path);
        if (!streq(req->method, "POST")) {
                int r = sim_response_add_header(resp, "Allow", "POST");
                if (r < 0)
                        return r;
                return refuse(f, 405, "method-not-allowed '%.16s' (want POST)", req->method);
        }
        return process_telemetry(sim, req, resp, f);
}

/* Modes that answer without looking at the request. */
static bool apply_fault_mode(TspSim *sim, const TspMode *mode, SimResponse *resp) {
        switch (mode->kind) {
        case TSP_MODE_HANG:
                resp->action = SIM_ACTION_HANG;
                break;
        case TSP_MODE_GARBAGE:
                resp->action = SIM_ACTION_RAW_CLOSE;
                if (tg_buf_append(&resp->body, garbage, sizeof garbage - 1) < 0)
                        resp->action = SIM_ACTION_CLOSE;
                break;
        case TSP_MODE_ERROR:
                if (sim_response_text(resp, 503, "simulated-outage") < 0 ||
                    sim_response_add_header(resp, "Retry-After", "1") < 0)
                        resp->action = SIM_ACTION_CLOSE;
                break;
        case TSP_MODE_REJECT:
                if (sim_response_text(resp, 400, "simulated-rejection") < 0)
                        resp->action = SIM_ACTION_CLOSE;
                break;
        case TSP_MODE_CLOSE:
                resp->action = SIM_ACTION_CLOSE;
                break;
        default:
                return false;
        }
        tsp_count(&sim->counters.faults_injected, 1);
        return true;
}

int tsp_uplink_handle(const SimRequest *req, SimResponse *resp, void *userdata) {
        TspSim *sim = userdata;
        TspMode mode = tsp_sim_get_mode(sim);
        Refusal f = {};
        int r;

        if (apply_fault_mode(sim, &mode, resp))
                return 0;

        r = route(sim, req, resp, &f);
        if (r == -EBADMSG) {
                if (f.status < 500)
                        tsp_count(&sim->counters.bad_requests, 1);
                tsp_sim_log_peer(sim, f.status < 500 ? LOG_NOTICE : LOG_WARNING, "tsp: %d %s: %s %s from %s (%s)",
                                 f.status, f.reason, req->method, req->path, strempty(req->peer_cn),
                                 req->peer_address);
                r = sim_response_text(resp, f.status, "%s", f.reason);
                if (r >= 0 && f.status == 503)
                        r = sim_response_add_header(resp, "Retry-After", "1");
        }
        if (r < 0)
                return r;

        if (mode.kind == TSP_MODE_LOSE_REPLY) {
                resp->action = SIM_ACTION_CLOSE;
                tsp_count(&sim->counters.faults_injected, 1);
        } else if (mode.kind == TSP_MODE_SLOW)
                resp->delay_usec = mode.slow_msec * USEC_PER_MSEC;
        return 0;
}

void tsp_uplink_request_error(const char *peer_address, const char *peer_cn, int status, const char *reason,
                              void *userdata) {
        TspSim *sim = userdata;

        if (status < 500)
                tsp_count(&sim->counters.bad_requests, 1);
        tsp_sim_log_peer(sim, LOG_NOTICE, "tsp: %d %s from %s (%s)", status, reason, strempty(peer_cn),
                         peer_address);
}

void tsp_uplink_tls_failure(const char *peer_address, const char *reason, void *userdata) {
        TspSim *sim = userdata;

        tsp_sim_log_peer(sim, LOG_NOTICE, "tsp: TLS handshake with %s refused: %s", peer_address, reason);
}
