/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>

#include "tg-keyproto.h"

/* After tg-macro.h (ours MIN/MAX win); options.h before any other wolfSSL
 * header: it carries the feature set the library was built with. */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/sha256.h>

/* Fixed parts of the payloads (after the type byte). */
#define HELLO_FIXED 11  /* version, role, max_chunk, window, id_len */
#define OFFER_FIXED 56  /* item_id, kind, priority, size, sha256, records, name_len */
#define PULL_SIZE 16
#define DATA_FIXED 16
#define ACK_SIZE 9
#define NONCE_SIZE 8
#define ERROR_FIXED 2

#define PONG_QUEUE 16

static const char *const kp_errors[_TG_KP_ERROR_MAX] = {
        [TG_KP_OK] = "ok",
        [TG_KP_BAD_LENGTH] = "bad-length",
        [TG_KP_FRAME_TOO_LARGE] = "frame-too-large",
        [TG_KP_UNKNOWN_TYPE] = "unknown-type",
        [TG_KP_TRUNCATED] = "truncated-frame",
        [TG_KP_TRAILING_BYTES] = "trailing-bytes",
        [TG_KP_BAD_VERSION] = "bad-version",
        [TG_KP_BAD_ROLE] = "bad-role",
        [TG_KP_BAD_MAX_CHUNK] = "bad-max-chunk",
        [TG_KP_BAD_WINDOW] = "bad-window",
        [TG_KP_BAD_ID] = "bad-id",
        [TG_KP_BAD_KIND] = "bad-kind",
        [TG_KP_BAD_STATUS] = "bad-status",
        [TG_KP_CHUNK_TOO_LARGE] = "chunk-too-large",
        [TG_KP_UNEXPECTED] = "unexpected-frame",
        [TG_KP_SAME_ROLE] = "same-role",
        [TG_KP_NOT_PAIRED] = "not-paired",
        [TG_KP_WINDOW_EXCEEDED] = "window-exceeded",
        [TG_KP_DUPLICATE_OFFER] = "duplicate-offer",
        [TG_KP_UNKNOWN_ITEM] = "unknown-item",
        [TG_KP_NOT_PULLED] = "data-not-pulled",
        [TG_KP_BAD_OFFSET] = "bad-offset",
        [TG_KP_PING_TIMEOUT] = "ping-timeout",
        [TG_KP_PEER_ERROR] = "peer-error",
        [TG_KP_INTERNAL] = "internal-error",
        [TG_KP_SHUTTING_DOWN] = "shutting-down",
};

const char *tg_kp_error_to_string(TgKpError e) {
        return (unsigned) e < _TG_KP_ERROR_MAX ? kp_errors[e] : "unknown-error";
}

uint16_t tg_kp_error_code(TgKpError e) {
        switch (e) {
        case TG_KP_OK:
                return 0;
        case TG_KP_BAD_VERSION:
                return TG_KP_CODE_BAD_VERSION;
        case TG_KP_BAD_LENGTH ... TG_KP_TRAILING_BYTES:
        case TG_KP_BAD_ROLE ... TG_KP_CHUNK_TOO_LARGE:
                return TG_KP_CODE_BAD_FRAME;
        case TG_KP_NOT_PAIRED:
                return TG_KP_CODE_NOT_PAIRED;
        case TG_KP_INTERNAL:
                return TG_KP_CODE_INTERNAL;
        case TG_KP_SHUTTING_DOWN:
                return TG_KP_CODE_SHUTTING_DOWN;
        default:
                /* Out of order, out of window, not offered, not pulled, silent. */
                return TG_KP_CODE_UNEXPECTED;
        }
}

const char *tg_kp_code_to_string(uint16_t code) {
        static const char *const names[] = {
                [TG_KP_CODE_BAD_FRAME] = "bad-frame",         [TG_KP_CODE_BAD_VERSION] = "bad-version",
                [TG_KP_CODE_UNEXPECTED] = "unexpected",       [TG_KP_CODE_NOT_PAIRED] = "not-paired",
                [TG_KP_CODE_INTERNAL] = "internal",           [TG_KP_CODE_SHUTTING_DOWN] = "shutting-down",
        };
        return code < ELEMENTSOF(names) && names[code] ? names[code] : "unknown";
}

const char *tg_kp_type_to_string(uint8_t type) {
        static const char *const names[] = {
                [TG_KP_HELLO] = "HELLO", [TG_KP_OFFER] = "OFFER", [TG_KP_PULL] = "PULL",
                [TG_KP_DATA] = "DATA",   [TG_KP_ACK] = "ACK",     [TG_KP_DONE] = "DONE",
                [TG_KP_ERROR] = "ERROR", [TG_KP_PING] = "PING",   [TG_KP_PONG] = "PONG",
        };
        return type < ELEMENTSOF(names) && names[type] ? names[type] : "unknown";
}

const char *tg_kp_ack_status_to_string(uint8_t status) {
        static const char *const names[] = {
                [TG_KP_ACK_STORED] = "stored",
                [TG_KP_ACK_HAVE] = "have",
                [TG_KP_ACK_BAD_HASH] = "bad-hash",
                [TG_KP_ACK_REFUSED] = "refused",
        };
        return status < ELEMENTSOF(names) ? names[status] : "unknown";
}

const char *tg_kp_kind_to_string(uint8_t kind) {
        static const char *const names[] = {
                [TG_KP_KIND_TELEMETRY] = "telemetry",
                [TG_KP_KIND_UPGRADE_PACKAGE] = "upgrade-package",
                [TG_KP_KIND_KB_UPDATE] = "kb-update",
                [TG_KP_KIND_FILE] = "file",
        };
        return kind < ELEMENTSOF(names) && names[kind] ? names[kind] : "unknown";
}

/* ─── codec ─────────────────────────────────────────────────────────────── */

/* Well-formed UTF-8 (no overlong forms, no surrogates, nothing above
 * U+10FFFF) without control characters (C0, DEL, C1): an id ends up in logs
 * and on D-Bus. */
static bool id_valid(const char *s, size_t n) {
        const uint8_t *p = (const uint8_t *) s;
        size_t i = 0;

        if (n == 0)
                return false;
        while (i < n) {
                uint32_t c = p[i];
                unsigned k;

                if (c < 0x80) {
                        if (c < 0x20 || c == 0x7f)
                                return false;
                        i++;
                        continue;
                }
                if (c >= 0xc2 && c <= 0xdf)
                        k = 1, c &= 0x1f;
                else if (c >= 0xe0 && c <= 0xef)
                        k = 2, c &= 0x0f;
                else if (c >= 0xf0 && c <= 0xf4)
                        k = 3, c &= 0x07;
                else
                        return false;
                if (n - i - 1 < k)
                        return false;
                for (unsigned j = 1; j <= k; j++) {
                        if ((p[i + j] & 0xc0) != 0x80)
                                return false;
                        c = c << 6 | (p[i + j] & 0x3f);
                }
                if ((k == 2 && c < 0x800) || (k == 3 && (c < 0x10000 || c > 0x10ffff)) ||
                    (c >= 0xd800 && c <= 0xdfff) || (c >= 0x80 && c <= 0x9f))
                        return false;
                i += k + 1;
        }
        return true;
}

static TgKpError check_length(uint32_t length) {
        if (length == 0)
                return TG_KP_BAD_LENGTH;
        if (length > TG_KP_LENGTH_MAX)
                return TG_KP_FRAME_TOO_LARGE;
        return TG_KP_OK;
}

TgKpError tg_kp_check_header(uint32_t length, uint8_t type, uint32_t max_data) {
        uint32_t min, max = TG_KP_LENGTH_MAX;
        TgKpError e;

        e = check_length(length);
        if (e != TG_KP_OK)
                return e;
        switch (type) {
        case TG_KP_HELLO:
                /* Enough for the version: another version's HELLO may be laid
                 * out differently, and deserves bad-version, not bad-frame. */
                min = 1 + 2;
                break;
        case TG_KP_OFFER:
                min = 1 + OFFER_FIXED;
                break;
        case TG_KP_PULL:
                min = max = 1 + PULL_SIZE;
                break;
        case TG_KP_DATA:
                min = 1 + DATA_FIXED;
                if (length >= min && length - min > max_data)
                        return TG_KP_CHUNK_TOO_LARGE;
                break;
        case TG_KP_ACK:
                min = max = 1 + ACK_SIZE;
                break;
        case TG_KP_DONE:
                min = max = 1;
                break;
        case TG_KP_ERROR:
                min = 1 + ERROR_FIXED;
                break;
        case TG_KP_PING:
        case TG_KP_PONG:
                min = max = 1 + NONCE_SIZE;
                break;
        default:
                return TG_KP_UNKNOWN_TYPE;
        }
        if (length < min)
                return TG_KP_TRUNCATED;
        if (length > max)
                return TG_KP_TRAILING_BYTES;
        return TG_KP_OK;
}

static TgKpError check_hello(const TgKpHello *h) {
        if (h->version != TG_KP_VERSION)
                return TG_KP_BAD_VERSION;
        if (h->role != TG_KP_ROLE_GATEWAY && h->role != TG_KP_ROLE_KEY)
                return TG_KP_BAD_ROLE;
        if (h->max_chunk < TG_KP_CHUNK_MIN || h->max_chunk > TG_KP_CHUNK_MAX)
                return TG_KP_BAD_MAX_CHUNK;
        if (h->window == 0)
                return TG_KP_BAD_WINDOW;
        if (!h->id || !id_valid(h->id, h->id_len))
                return TG_KP_BAD_ID;
        return TG_KP_OK;
}

static TgKpError check_kind(uint8_t kind) {
        return kind >= TG_KP_KIND_TELEMETRY && kind <= TG_KP_KIND_FILE ? TG_KP_OK : TG_KP_BAD_KIND;
}

/* The payload p[0..n) of a frame of `type`, whose header was checked. */
static TgKpError parse_payload(uint8_t type, const uint8_t *p, size_t n, TgKpFrame *ret) {
        TgKpFrame f = { .type = type };
        TgKpError e;

        switch (type) {
        case TG_KP_HELLO:
                f.hello.version = tg_get_be16(p);
                if (f.hello.version != TG_KP_VERSION)
                        return TG_KP_BAD_VERSION;
                if (n < HELLO_FIXED)
                        return TG_KP_TRUNCATED;
                f.hello.role = p[2];
                f.hello.max_chunk = tg_get_be32(p + 3);
                f.hello.window = tg_get_be16(p + 7);
                f.hello.id_len = tg_get_be16(p + 9);
                if (n - HELLO_FIXED < f.hello.id_len)
                        return TG_KP_TRUNCATED;
                if (n - HELLO_FIXED > f.hello.id_len)
                        return TG_KP_TRAILING_BYTES;
                f.hello.id = (const char *) p + HELLO_FIXED;
                e = check_hello(&f.hello);
                if (e != TG_KP_OK)
                        return e;
                break;
        case TG_KP_OFFER:
                f.offer.item_id = tg_get_be64(p);
                f.offer.kind = p[8];
                f.offer.priority = p[9];
                f.offer.size = tg_get_be64(p + 10);
                memcpy(f.offer.sha256, p + 18, TG_KP_SHA256_SIZE);
                f.offer.records = tg_get_be32(p + 50);
                f.offer.name_len = tg_get_be16(p + 54);
                if (n - OFFER_FIXED < f.offer.name_len)
                        return TG_KP_TRUNCATED;
                if (n - OFFER_FIXED > f.offer.name_len)
                        return TG_KP_TRAILING_BYTES;
                f.offer.name = (const char *) p + OFFER_FIXED;
                e = check_kind(f.offer.kind);
                if (e != TG_KP_OK)
                        return e;
                break;
        case TG_KP_PULL:
                f.pull.item_id = tg_get_be64(p);
                f.pull.offset = tg_get_be64(p + 8);
                break;
        case TG_KP_DATA:
                f.data.item_id = tg_get_be64(p);
                f.data.offset = tg_get_be64(p + 8);
                f.data.data = p + DATA_FIXED;
                f.data.len = n - DATA_FIXED;
                break;
        case TG_KP_ACK:
                f.ack.item_id = tg_get_be64(p);
                f.ack.status = p[8];
                if (f.ack.status > TG_KP_ACK_REFUSED)
                        return TG_KP_BAD_STATUS;
                break;
        case TG_KP_DONE:
                break;
        case TG_KP_ERROR:
                f.error.code = tg_get_be16(p);
                f.error.text = (const char *) p + ERROR_FIXED;
                f.error.text_len = n - ERROR_FIXED;
                break;
        case TG_KP_PING:
        case TG_KP_PONG:
                f.nonce = tg_get_be64(p);
                break;
        default:
                return TG_KP_UNKNOWN_TYPE;
        }
        *ret = f;
        return TG_KP_OK;
}

TgKpError tg_kp_frame_parse(const uint8_t *body, size_t length, uint32_t max_data, TgKpFrame *ret) {
        TgKpError e;

        if (length > TG_KP_LENGTH_MAX)
                return TG_KP_FRAME_TOO_LARGE;
        if (length == 0)
                return TG_KP_BAD_LENGTH;
        e = tg_kp_check_header((uint32_t) length, body[0], max_data);
        if (e != TG_KP_OK)
                return e;
        return parse_payload(body[0], body + 1, length - 1, ret);
}

TgKpError tg_kp_frame_decode(const uint8_t *buf, size_t size, uint32_t max_data, TgKpFrame *ret) {
        uint32_t length;
        TgKpError e;

        if (size < TG_KP_LENGTH_SIZE)
                return TG_KP_TRUNCATED;
        length = tg_get_be32(buf);
        e = check_length(length);
        if (e != TG_KP_OK)
                return e;
        if (size - TG_KP_LENGTH_SIZE < length)
                return TG_KP_TRUNCATED;
        if (size - TG_KP_LENGTH_SIZE > length)
                return TG_KP_TRAILING_BYTES;
        return tg_kp_frame_parse(buf + TG_KP_LENGTH_SIZE, length, max_data, ret);
}

static size_t body_size(const TgKpFrame *f) {
        switch (f->type) {
        case TG_KP_HELLO:
                return 1 + HELLO_FIXED + (size_t) f->hello.id_len;
        case TG_KP_OFFER:
                return 1 + OFFER_FIXED + (size_t) f->offer.name_len;
        case TG_KP_PULL:
                return 1 + PULL_SIZE;
        case TG_KP_DATA:
                return 1 + DATA_FIXED + f->data.len;
        case TG_KP_ACK:
                return 1 + ACK_SIZE;
        case TG_KP_DONE:
                return 1;
        case TG_KP_ERROR:
                return 1 + ERROR_FIXED + f->error.text_len;
        case TG_KP_PING:
        case TG_KP_PONG:
                return 1 + NONCE_SIZE;
        default:
                return 0;
        }
}

size_t tg_kp_frame_size(const TgKpFrame *f) {
        return TG_KP_LENGTH_SIZE + body_size(f);
}

void tg_kp_put_data_header(uint8_t *p, uint64_t item_id, uint64_t offset, size_t len) {
        tg_put_be32(p, (uint32_t) (1 + DATA_FIXED + len));
        p[4] = TG_KP_DATA;
        tg_put_be64(p + 5, item_id);
        tg_put_be64(p + 13, offset);
}

TgKpError tg_kp_frame_encode(const TgKpFrame *f, TgBuf *b) {
        size_t body = body_size(f);
        TgKpError e = TG_KP_OK;
        uint8_t *p;

        switch (f->type) {
        case TG_KP_HELLO:
                e = check_hello(&f->hello);
                break;
        case TG_KP_OFFER:
                e = check_kind(f->offer.kind);
                if (e == TG_KP_OK && f->offer.name_len > 0 && !f->offer.name)
                        e = TG_KP_TRUNCATED;
                break;
        case TG_KP_DATA:
                if (f->data.len > TG_KP_CHUNK_MAX)
                        e = TG_KP_CHUNK_TOO_LARGE;
                else if (f->data.len > 0 && !f->data.data)
                        e = TG_KP_TRUNCATED;
                break;
        case TG_KP_ACK:
                if (f->ack.status > TG_KP_ACK_REFUSED)
                        e = TG_KP_BAD_STATUS;
                break;
        case TG_KP_ERROR:
                if (f->error.text_len > 0 && !f->error.text)
                        e = TG_KP_TRUNCATED;
                break;
        case TG_KP_PULL:
        case TG_KP_DONE:
        case TG_KP_PING:
        case TG_KP_PONG:
                break;
        default:
                e = TG_KP_UNKNOWN_TYPE;
        }
        if (e != TG_KP_OK)
                return e;
        if (body > TG_KP_LENGTH_MAX)
                return TG_KP_FRAME_TOO_LARGE;
        if (tg_buf_reserve(b, TG_KP_LENGTH_SIZE + body) < 0)
                return TG_KP_INTERNAL;

        p = b->data + b->size;
        tg_put_be32(p, (uint32_t) body);
        p[4] = f->type;
        p += 5;
        switch (f->type) {
        case TG_KP_HELLO:
                tg_put_be16(p, f->hello.version);
                p[2] = f->hello.role;
                tg_put_be32(p + 3, f->hello.max_chunk);
                tg_put_be16(p + 7, f->hello.window);
                tg_put_be16(p + 9, f->hello.id_len);
                memcpy(p + HELLO_FIXED, f->hello.id, f->hello.id_len);
                break;
        case TG_KP_OFFER:
                tg_put_be64(p, f->offer.item_id);
                p[8] = f->offer.kind;
                p[9] = f->offer.priority;
                tg_put_be64(p + 10, f->offer.size);
                memcpy(p + 18, f->offer.sha256, TG_KP_SHA256_SIZE);
                tg_put_be32(p + 50, f->offer.records);
                tg_put_be16(p + 54, f->offer.name_len);
                if (f->offer.name_len > 0)
                        memcpy(p + OFFER_FIXED, f->offer.name, f->offer.name_len);
                break;
        case TG_KP_PULL:
                tg_put_be64(p, f->pull.item_id);
                tg_put_be64(p + 8, f->pull.offset);
                break;
        case TG_KP_DATA:
                tg_put_be64(p, f->data.item_id);
                tg_put_be64(p + 8, f->data.offset);
                if (f->data.len > 0)
                        memcpy(p + DATA_FIXED, f->data.data, f->data.len);
                break;
        case TG_KP_ACK:
                tg_put_be64(p, f->ack.item_id);
                p[8] = f->ack.status;
                break;
        case TG_KP_ERROR:
                tg_put_be16(p, f->error.code);
                if (f->error.text_len > 0)
                        memcpy(p + ERROR_FIXED, f->error.text, f->error.text_len);
                break;
        case TG_KP_PING:
        case TG_KP_PONG:
                tg_put_be64(p, f->nonce);
                break;
        default:
                break;
        }
        b->size += TG_KP_LENGTH_SIZE + body;
        return TG_KP_OK;
}

/* ─── incremental decoder ───────────────────────────────────────────────── */

void tg_kp_decoder_init(TgKpDecoder *d, uint32_t max_data) {
        *d = (TgKpDecoder) { .max_data = max_data };
}

void tg_kp_decoder_done(TgKpDecoder *d) {
        free(d->buf);
        *d = (TgKpDecoder) {};
}

void tg_kp_decoder_set_max_data(TgKpDecoder *d, uint32_t max_data) {
        d->max_data = max_data;
}

size_t tg_kp_decoder_pending(const TgKpDecoder *d) {
        return d->header_got + d->got;
}

TgKpError tg_kp_decoder_push(TgKpDecoder *d, const uint8_t *buf, size_t size, size_t *ret_used, TgKpFrame *ret) {
        const uint8_t *payload;
        size_t used = 0, need;
        TgKpError e;

        ret->type = TG_KP_NONE;
        *ret_used = 0;
        if (d->error != TG_KP_OK)
                return d->error;

        /* The header, byte by byte, each part checked as soon as it is complete. */
        while (d->header_got < sizeof d->header && used < size) {
                d->header[d->header_got++] = buf[used++];
                if (d->header_got == TG_KP_LENGTH_SIZE) {
                        d->length = tg_get_be32(d->header);
                        e = check_length(d->length);
                } else if (d->header_got == sizeof d->header)
                        e = tg_kp_check_header(d->length, d->header[4], d->max_data);
                else
                        continue;
                if (e != TG_KP_OK) {
                        *ret_used = used;
                        return d->error = e;
                }
        }
        if (d->header_got < sizeof d->header)
                goto more;

        need = d->length - 1;
        if (d->got == 0 && size - used >= need) {
                /* All of it in the caller's buffer: decode in place. */
                payload = buf + used;
                used += need;
        } else {
                size_t take = MIN(need - d->got, size - used);

                if (d->allocated < need) {
                        /* Exactly the frame: its length was checked, so this is bounded. */
                        uint8_t *p = realloc(d->buf, need);
                        if (!p) {
                                *ret_used = used;
                                return d->error = TG_KP_INTERNAL;
                        }
                        d->buf = p;
                        d->allocated = need;
                }
                memcpy(d->buf + d->got, buf + used, take);
                d->got += take;
                used += take;
                if (d->got < need)
                        goto more;
                payload = d->buf;
        }

        *ret_used = used;
        e = parse_payload(d->header[4], payload, need, ret);
        if (e != TG_KP_OK) {
                ret->type = TG_KP_NONE;
                return d->error = e; /* the header stays, for the error message */
        }
        d->header_got = 0;
        d->got = 0;
        return TG_KP_OK;

more:
        *ret_used = used;
        return TG_KP_OK;
}

int tg_kp_sha256(const void *data, size_t size, uint8_t ret[TG_KP_SHA256_SIZE]) {
        const uint8_t *p = data;
        wc_Sha256 sha;
        int r;

        r = wc_InitSha256(&sha);
        if (r != 0)
                return -EIO;
        while (size > 0) {
                word32 n = (word32) MIN(size, (size_t) 1 << 30);

                r = wc_Sha256Update(&sha, p, n);
                if (r != 0)
                        break;
                p += n;
                size -= n;
        }
        if (r == 0)
                r = wc_Sha256Final(&sha, ret);
        wc_Sha256Free(&sha);
        return r == 0 ? 0 : -EIO;
}

/* ─── session ───────────────────────────────────────────────────────────── */

/* One of our items, offered and not yet acknowledged. */
typedef enum OutState {
        OUT_OFFERED, /* waiting for PULL or ACK */
        OUT_PULLED,  /* in the PULL queue, or being sent */
        OUT_SENT,    /* every byte composed, waiting for ACK */
} OutState;

typedef struct OutItem {
        uint64_t id;
        uint64_t size;
        uint64_t offset;   /* next byte to send */
        uint64_t pull_seq; /* PULLs are served in the order they came */
        OutState state;
} OutItem;

/* One of the peer's items, offered and not yet acknowledged by us. */
typedef enum InState {
        IN_PULL_PENDING, /* the sink accepted it; PULL not composed yet */
        IN_RECEIVING,    /* PULL composed: DATA expected */
        IN_COMPLETING,   /* complete() answers later */
        IN_ACK_PENDING,  /* ACK not composed yet */
} InState;

typedef struct InItem {
        TgKpOffer offer;   /* without its name */
        uint64_t offset;   /* next byte expected */
        uint64_t pull_seq;
        InState state;
        bool from_zero;    /* pulled from 0: the engine hashes it on the way */
        bool discarding;   /* write() failed: swallow the rest, answer refused */
        bool mismatch;     /* the hash did not match: bad-hash whatever the sink says */
        uint8_t ack;
} InItem;

struct TgKpSession {
        TgKpCallbacks cb;
        void *userdata;
        TgKpRole role;
        char *id;
        uint32_t max_chunk;
        uint16_t window;
        uint16_t max_offers;
        size_t output_target;
        uint64_t ping_interval;
        uint64_t ping_timeout;

        TgKpDecoder decoder;
        TgBuf out;
        size_t out_pos;

        bool have_peer;
        TgKpHello peer;
        char *peer_id;
        uint32_t chunk;
        size_t offer_cap; /* min(peer window, max_offers) */

        OutItem *outs;
        size_t n_outs;
        uint64_t out_seq;
        InItem *ins; /* `window` slots */
        size_t n_ins;
        uint64_t in_seq;

        /* The running hash: one item receives DATA at a time. */
        wc_Sha256 sha;
        bool sha_valid;
        uint64_t sha_item;

        bool source_empty;  /* next_offer() said none; ask again after kick() */
        bool done_sent;     /* DONE composed and no OFFER since */
        bool peer_done;     /* DONE received and no OFFER since */
        bool idle_reported; /* done() fired and nothing offered since */
        uint64_t round_sent, round_received;

        uint64_t pongs[PONG_QUEUE];
        unsigned n_pongs;
        bool have_time;
        uint64_t last_rx;
        bool rx_activity;
        bool ping_due;          /* decided, not composed yet */
        bool ping_outstanding;
        uint64_t ping_nonce;
        uint64_t ping_sent;

        TgKpError error;
        uint16_t error_code;
        bool error_from_peer;
        char error_text[TG_KP_ERROR_TEXT_MAX + 1];

        TgKpStats stats;
};

static void sanitize(char *dst, size_t dst_size, const char *src, size_t n) {
        n = MIN(n, dst_size - 1);
        for (size_t i = 0; i < n; i++)
                dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
        dst[n] = '\0';
}

static void append_frame(TgKpSession *s, const TgKpFrame *f);

/* The session ends with e: our ERROR frame goes out after what is queued. */
_printf_(3, 4) static void fail(TgKpSession *s, TgKpError e, const char *fmt, ...) {
        char text[TG_KP_ERROR_TEXT_MAX + 1];
        va_list ap;
        int k;

        if (s->error != TG_KP_OK)
                return;
        k = snprintf(text, sizeof text, "%s: ", tg_kp_error_to_string(e));
        va_start(ap, fmt);
        if (k > 0 && (size_t) k < sizeof text)
                (void) vsnprintf(text + k, sizeof text - k, fmt, ap);
        va_end(ap);
        sanitize(s->error_text, sizeof s->error_text, text, strlen(text));
        s->error = e;
        s->error_code = tg_kp_error_code(e);
        append_frame(s, &(TgKpFrame) {
                .type = TG_KP_ERROR,
                .error = { .code = s->error_code, .text = s->error_text, .text_len = strlen(s->error_text) },
        });
}

static void append_frame(TgKpSession *s, const TgKpFrame *f) {
        TgKpError e;

        e = tg_kp_frame_encode(f, &s->out);
        if (e == TG_KP_OK)
                s->stats.frames_out++;
        else if (f->type != TG_KP_ERROR)
                fail(s, TG_KP_INTERNAL, "cannot encode %s: %s", tg_kp_type_to_string(f->type),
                     tg_kp_error_to_string(e));
}

static OutItem *find_out(TgKpSession *s, uint64_t id) {
        for (size_t i = 0; i < s->n_outs; i++)
                if (s->outs[i].id == id)
                        return s->outs + i;
        return NULL;
}

static InItem *find_in(TgKpSession *s, uint64_t id) {
        for (size_t i = 0; i < s->n_ins; i++)
                if (s->ins[i].offer.item_id == id)
                        return s->ins + i;
        return NULL;
}

/* Ours being sent now: the oldest PULL. */
static OutItem *send_head(TgKpSession *s) {
        OutItem *head = NULL;

        for (size_t i = 0; i < s->n_outs; i++)
                if (s->outs[i].state == OUT_PULLED && (!head || s->outs[i].pull_seq < head->pull_seq))
                        head = s->outs + i;
        return head;
}

/* The peer's being received now: the oldest of our PULLs not complete. */
static InItem *recv_head(TgKpSession *s) {
        InItem *head = NULL;

        for (size_t i = 0; i < s->n_ins; i++)
                if (s->ins[i].state == IN_RECEIVING && (!head || s->ins[i].pull_seq < head->pull_seq))
                        head = s->ins + i;
        return head;
}

static void check_idle(TgKpSession *s) {
        uint64_t sent, received;

        if (s->error != TG_KP_OK || !s->have_peer || s->idle_reported)
                return;
        if (!s->source_empty || !s->done_sent || !s->peer_done || s->n_outs > 0 || s->n_ins > 0 ||
            s->out_pos < s->out.size)
                return;
        s->idle_reported = true;
        sent = s->round_sent;
        received = s->round_received;
        s->round_sent = s->round_received = 0;
        if (s->cb.done)
                s->cb.done(s->userdata, sent, received);
}

/* The ACK for one of the peer's items is decided. */
static void settle(TgKpSession *s, InItem *it, int status) {
        if (status < TG_KP_ACK_STORED || status > TG_KP_ACK_REFUSED) {
                fail(s, TG_KP_INTERNAL, "complete() of item %" PRIu64 " returned %d", it->offer.item_id, status);
                return;
        }
        if (it->mismatch)
                status = TG_KP_ACK_BAD_HASH;
        switch (status) {
        case TG_KP_ACK_STORED:
                s->stats.stored++;
                s->round_received++;
                break;
        case TG_KP_ACK_HAVE:
                s->stats.have++;
                break;
        case TG_KP_ACK_BAD_HASH:
                s->stats.bad_hash++;
                break;
        default:
                s->stats.refused++;
                break;
        }
        it->state = IN_ACK_PENDING;
        it->ack = (uint8_t) status;
}

/* Start the running hash over (a wolfSSL build may keep memory in it). */
static int sha_restart(TgKpSession *s, uint64_t item_id) {
        wc_Sha256Free(&s->sha);
        s->sha_valid = wc_InitSha256(&s->sha) == 0;
        s->sha_item = item_id;
        return s->sha_valid ? 0 : -EIO;
}

/* Every byte of one of the peer's items is there. */
static void item_complete(TgKpSession *s, InItem *it) {
        TgKpHashCheck check = TG_KP_HASH_UNCHECKED;
        /* The running hash is this item's if it got DATA from offset 0 (an
         * empty item got none: its hash starts here). */
        bool hashed = s->sha_valid && s->sha_item == it->offer.item_id;
        int r;

        s->sha_valid = false;
        if (it->discarding) {
                settle(s, it, TG_KP_ACK_REFUSED);
                return;
        }
        if (it->from_zero) {
                uint8_t digest[TG_KP_SHA256_SIZE];

                if ((!hashed && sha_restart(s, it->offer.item_id) < 0) || wc_Sha256Final(&s->sha, digest) != 0) {
                        fail(s, TG_KP_INTERNAL, "SHA-256 failed");
                        return;
                }
                s->sha_valid = false;
                it->mismatch = memcmp(digest, it->offer.sha256, sizeof digest) != 0;
                check = it->mismatch ? TG_KP_HASH_MISMATCH : TG_KP_HASH_OK;
        }
        r = s->cb.complete(s->userdata, &it->offer, check);
        if (r < 0) {
                fail(s, TG_KP_INTERNAL, "cannot store item %" PRIu64 ": %s", it->offer.item_id, strerror(-r));
                return;
        }
        if (r == TG_KP_COMPLETE_LATER) {
                it->state = IN_COMPLETING;
                return;
        }
        settle(s, it, r);
}

static void handle_hello(TgKpSession *s, const TgKpHello *h) {
        int r;

        if (s->have_peer) {
                fail(s, TG_KP_UNEXPECTED, "a second HELLO");
                return;
        }
        if (h->role == s->role) {
                fail(s, TG_KP_SAME_ROLE, "the peer is a %s too", s->role == TG_KP_ROLE_GATEWAY ? "gateway" : "key");
                return;
        }
        /* The id is not NUL-terminated in the frame: no str*() on it. */
        s->peer_id = malloc((size_t) h->id_len + 1);
        s->outs = calloc(MIN((size_t) h->window, (size_t) s->max_offers), sizeof *s->outs);
        if (!s->peer_id || !s->outs) {
                fail(s, TG_KP_INTERNAL, "out of memory");
                return;
        }
        memcpy(s->peer_id, h->id, h->id_len);
        s->peer_id[h->id_len] = '\0';
        s->peer = *h;
        s->peer.id = s->peer_id;
        if (s->cb.hello) {
                r = s->cb.hello(s->userdata, &s->peer);
                if (r < 0) {
                        fail(s, TG_KP_NOT_PAIRED, "%s", s->peer_id);
                        return;
                }
        }
        s->have_peer = true;
        s->chunk = MIN(s->max_chunk, h->max_chunk);
        s->offer_cap = MIN((size_t) h->window, (size_t) s->max_offers);
        /* DATA beyond the agreed chunk is an error before it is buffered. */
        tg_kp_decoder_set_max_data(&s->decoder, s->chunk);
}

static void handle_offer(TgKpSession *s, const TgKpOffer *o) {
        uint64_t offset = 0;
        InItem *it;
        int r;

        if (s->n_ins >= s->window) {
                fail(s, TG_KP_WINDOW_EXCEEDED, "OFFER of item %" PRIu64 " beyond the window of %u", o->item_id,
                     s->window);
                return;
        }
        if (find_in(s, o->item_id)) {
                fail(s, TG_KP_DUPLICATE_OFFER, "item %" PRIu64 " is already offered", o->item_id);
                return;
        }
        s->stats.offers_received++;
        s->peer_done = false;
        s->idle_reported = false;

        r = s->cb.offered ? s->cb.offered(s->userdata, o, &offset) : TG_KP_ANSWER_REFUSE;
        if (r < 0) {
                fail(s, TG_KP_INTERNAL, "cannot take item %" PRIu64 ": %s", o->item_id, strerror(-r));
                return;
        }
        it = s->ins + s->n_ins;
        *it = (InItem) { .offer = *o };
        it->offer.name = NULL;
        it->offer.name_len = 0;
        switch (r) {
        case TG_KP_ANSWER_PULL:
                if (offset > o->size) {
                        fail(s, TG_KP_INTERNAL, "offered() holds %" PRIu64 " bytes of item %" PRIu64
                             " of %" PRIu64, offset, o->item_id, o->size);
                        return;
                }
                it->state = IN_PULL_PENDING;
                it->offset = offset;
                it->from_zero = offset == 0;
                if (offset > 0)
                        s->stats.resumed++;
                break;
        case TG_KP_ANSWER_HAVE:
                it->state = IN_ACK_PENDING;
                it->ack = TG_KP_ACK_HAVE;
                s->stats.have++;
                break;
        case TG_KP_ANSWER_REFUSE:
                it->state = IN_ACK_PENDING;
                it->ack = TG_KP_ACK_REFUSED;
                s->stats.refused++;
                break;
        default:
                fail(s, TG_KP_INTERNAL, "offered() returned %d", r);
                return;
        }
        s->n_ins++;
}

static void handle_data(TgKpSession *s, const TgKpData *d) {
        InItem *it = find_in(s, d->item_id), *head;
        int r;

        if (!it || it->state != IN_RECEIVING) {
                fail(s, TG_KP_NOT_PULLED, "DATA for item %" PRIu64 ", which is not being pulled", d->item_id);
                return;
        }
        head = recv_head(s);
        if (it != head) {
                fail(s, TG_KP_UNEXPECTED, "DATA for item %" PRIu64 " while item %" PRIu64
                     " is due (PULLs are served in order)", d->item_id, head->offer.item_id);
                return;
        }
        if (d->offset != it->offset || d->len > it->offer.size - it->offset) {
                fail(s, TG_KP_BAD_OFFSET, "DATA of item %" PRIu64 " at %" PRIu64 "+%zu, expected at %" PRIu64
                     " of %" PRIu64, d->item_id, d->offset, d->len, it->offset, it->offer.size);
                return;
        }
        if (d->len > 0 && !it->discarding) {
                if (it->from_zero) {
                        if (it->offset == 0 && sha_restart(s, it->offer.item_id) < 0) {
                                fail(s, TG_KP_INTERNAL, "SHA-256 unavailable");
                                return;
                        }
                        if (wc_Sha256Update(&s->sha, d->data, (word32) d->len) != 0) {
                                fail(s, TG_KP_INTERNAL, "SHA-256 failed");
                                return;
                        }
                }
                r = s->cb.write(s->userdata, d->item_id, d->offset, d->data, d->len);
                if (r < 0)
                        /* Not the session's fault: take the rest, answer refused. */
                        it->discarding = true;
        }
        it->offset += d->len;
        s->stats.data_bytes_received += d->len;
        if (it->offset == it->offer.size)
                item_complete(s, it);
}

static void handle_pull(TgKpSession *s, const TgKpPull *p) {
        OutItem *o = find_out(s, p->item_id);

        if (!o) {
                fail(s, TG_KP_UNKNOWN_ITEM, "PULL for item %" PRIu64 ", which is not offered", p->item_id);
                return;
        }
        if (o->state != OUT_OFFERED) {
                fail(s, TG_KP_UNEXPECTED, "a second PULL for item %" PRIu64, p->item_id);
                return;
        }
        if (p->offset > o->size) {
                fail(s, TG_KP_BAD_OFFSET, "PULL of item %" PRIu64 " at %" PRIu64 ", beyond its %" PRIu64 " bytes",
                     p->item_id, p->offset, o->size);
                return;
        }
        o->offset = p->offset;
        /* Nothing left to send (an empty item, or all of it held): no DATA. */
        o->state = o->offset == o->size ? OUT_SENT : OUT_PULLED;
        o->pull_seq = ++s->out_seq;
}

static void handle_ack(TgKpSession *s, const TgKpAck *a) {
        OutItem *o = find_out(s, a->item_id);
        int r;

        if (!o) {
                fail(s, TG_KP_UNKNOWN_ITEM, "ACK for item %" PRIu64 ", which is not offered", a->item_id);
                return;
        }
        /* stored and bad-hash speak of bytes: only once they were all sent.
         * have and refused may come at any time (refused: no room after all). */
        if ((a->status == TG_KP_ACK_STORED || a->status == TG_KP_ACK_BAD_HASH) && o->state != OUT_SENT) {
                fail(s, TG_KP_UNEXPECTED, "ACK %s for item %" PRIu64 " before all of it was sent",
                     tg_kp_ack_status_to_string(a->status), a->item_id);
                return;
        }
        memmove(o, o + 1, (s->outs + s->n_outs - (o + 1)) * sizeof *o);
        s->n_outs--;
        switch (a->status) {
        case TG_KP_ACK_STORED:
                s->stats.acked_stored++;
                s->round_sent++;
                break;
        case TG_KP_ACK_HAVE:
                s->stats.acked_have++;
                break;
        case TG_KP_ACK_BAD_HASH:
                s->stats.acked_bad_hash++;
                /* The source may offer it again at once. */
                s->source_empty = !s->cb.next_offer;
                break;
        default:
                s->stats.acked_refused++;
        }
        r = s->cb.acked(s->userdata, a->item_id, (TgKpAckStatus) a->status);
        if (r < 0)
                fail(s, TG_KP_INTERNAL, "cannot settle item %" PRIu64 ": %s", a->item_id, strerror(-r));
}

static void handle_peer_error(TgKpSession *s, const TgKpErrorFrame *e) {
        sanitize(s->error_text, sizeof s->error_text, e->text, e->text_len);
        s->error = TG_KP_PEER_ERROR;
        s->error_code = e->code;
        s->error_from_peer = true;
        /* The peer closes: nothing more of ours matters. */
        s->out.size = s->out_pos = 0;
}

static void handle_frame(TgKpSession *s, const TgKpFrame *f) {
        if (!s->have_peer && f->type != TG_KP_HELLO && f->type != TG_KP_ERROR) {
                fail(s, TG_KP_UNEXPECTED, "%s before HELLO", tg_kp_type_to_string(f->type));
                return;
        }
        switch (f->type) {
        case TG_KP_HELLO:
                handle_hello(s, &f->hello);
                break;
        case TG_KP_OFFER:
                handle_offer(s, &f->offer);
                break;
        case TG_KP_PULL:
                handle_pull(s, &f->pull);
                break;
        case TG_KP_DATA:
                handle_data(s, &f->data);
                break;
        case TG_KP_ACK:
                handle_ack(s, &f->ack);
                break;
        case TG_KP_DONE:
                s->peer_done = true;
                break;
        case TG_KP_ERROR:
                handle_peer_error(s, &f->error);
                break;
        case TG_KP_PING:
                /* Answered at the next output; a peer that pings faster than
                 * we write gets its latest PINGs answered. */
                if (s->n_pongs == PONG_QUEUE) {
                        memmove(s->pongs, s->pongs + 1, (PONG_QUEUE - 1) * sizeof s->pongs[0]);
                        s->n_pongs--;
                }
                s->pongs[s->n_pongs++] = f->nonce;
                break;
        case TG_KP_PONG:
                if (!s->ping_outstanding || s->ping_due || f->nonce != s->ping_nonce) {
                        fail(s, TG_KP_UNEXPECTED, "PONG %" PRIu64 " answers no PING", f->nonce);
                        return;
                }
                s->ping_outstanding = false;
                break;
        default:
                fail(s, TG_KP_UNKNOWN_TYPE, "type %u", f->type);
        }
}

TgKpError tg_kp_session_feed(TgKpSession *s, const void *buf, size_t size) {
        const uint8_t *p = buf;

        if (s->error != TG_KP_OK)
                return s->error;
        s->stats.bytes_in += size;
        while (size > 0) {
                TgKpFrame f;
                size_t used;
                TgKpError e;

                e = tg_kp_decoder_push(&s->decoder, p, size, &used, &f);
                p += used;
                size -= used;
                if (e != TG_KP_OK) {
                        if (s->decoder.header_got > TG_KP_LENGTH_SIZE)
                                fail(s, e, "%s frame of length %" PRIu32, tg_kp_type_to_string(s->decoder.header[4]),
                                     s->decoder.length);
                        else
                                fail(s, e, "frame of length %" PRIu32, s->decoder.length);
                        break;
                }
                if (f.type == TG_KP_NONE)
                        break;
                s->stats.frames_in++;
                s->rx_activity = true;
                handle_frame(s, &f);
                if (s->error != TG_KP_OK)
                        break;
        }
        check_idle(s);
        return s->error;
}

/* PULLs and ACKs for the peer's offers. */
static void compose_answers(TgKpSession *s) {
        for (size_t i = 0; i < s->n_ins && s->error == TG_KP_OK; i++) {
                InItem *it = s->ins + i;

                if (it->state != IN_PULL_PENDING)
                        continue;
                append_frame(s, &(TgKpFrame) {
                        .type = TG_KP_PULL,
                        .pull = { .item_id = it->offer.item_id, .offset = it->offset },
                });
                it->state = IN_RECEIVING;
                it->pull_seq = ++s->in_seq;
                /* Pulled at its end (empty, or all of it held): no DATA will come. */
                if (it->offset == it->offer.size)
                        item_complete(s, it);
        }
        for (size_t i = 0; i < s->n_ins && s->error == TG_KP_OK;) {
                InItem *it = s->ins + i;

                if (it->state != IN_ACK_PENDING) {
                        i++;
                        continue;
                }
                append_frame(s, &(TgKpFrame) {
                        .type = TG_KP_ACK,
                        .ack = { .item_id = it->offer.item_id, .status = it->ack },
                });
                /* Out of the window once composed: the peer cannot offer
                 * more before it reads this ACK. */
                memmove(it, it + 1, (s->ins + s->n_ins - (it + 1)) * sizeof *it);
                s->n_ins--;
        }
}

static void compose_offers(TgKpSession *s) {
        while (!s->source_empty && s->n_outs < s->offer_cap && s->error == TG_KP_OK) {
                TgKpOffer o = {};
                TgKpError e;
                int r;

                r = s->cb.next_offer(s->userdata, &o);
                if (r < 0) {
                        fail(s, TG_KP_INTERNAL, "no next item: %s", strerror(-r));
                        return;
                }
                if (r == 0) {
                        s->source_empty = true;
                        break;
                }
                if (find_out(s, o.item_id)) {
                        fail(s, TG_KP_INTERNAL, "item %" PRIu64 " offered twice", o.item_id);
                        return;
                }
                e = tg_kp_frame_encode(&(TgKpFrame) { .type = TG_KP_OFFER, .offer = o }, &s->out);
                if (e != TG_KP_OK) {
                        fail(s, TG_KP_INTERNAL, "item %" PRIu64 ": %s", o.item_id, tg_kp_error_to_string(e));
                        return;
                }
                s->stats.frames_out++;
                s->stats.offers_sent++;
                s->outs[s->n_outs++] = (OutItem) { .id = o.item_id, .size = o.size, .state = OUT_OFFERED };
                s->done_sent = false;
                s->idle_reported = false;
        }
        if (s->source_empty && !s->done_sent && s->error == TG_KP_OK) {
                append_frame(s, &(TgKpFrame) { .type = TG_KP_DONE });
                s->done_sent = true;
        }
}

/* DATA for the PULLs in order, read from the source straight into the batch. */
static void compose_data(TgKpSession *s) {
        while (s->out.size < s->output_target && s->error == TG_KP_OK) {
                OutItem *o = send_head(s);
                size_t n;
                uint8_t *p;
                int r;

                if (!o)
                        return;
                n = (size_t) MIN(o->size - o->offset, (uint64_t) s->chunk);
                if (tg_buf_reserve(&s->out, TG_KP_DATA_HEADER_SIZE + n) < 0) {
                        fail(s, TG_KP_INTERNAL, "out of memory");
                        return;
                }
                p = s->out.data + s->out.size;
                r = s->cb.read(s->userdata, o->id, o->offset, p + TG_KP_DATA_HEADER_SIZE, n);
                if (r < 0) {
                        fail(s, TG_KP_INTERNAL, "cannot read item %" PRIu64 " at %" PRIu64 ": %s", o->id, o->offset,
                             strerror(-r));
                        return;
                }
                tg_kp_put_data_header(p, o->id, o->offset, n);
                s->out.size += TG_KP_DATA_HEADER_SIZE + n;
                s->stats.frames_out++;
                s->stats.data_bytes_sent += n;
                o->offset += n;
                if (o->offset == o->size)
                        o->state = OUT_SENT;
        }
}

/* A new batch, once the previous one is written: control frames first, then
 * DATA up to output_target, so a batch fills TLS records and the peer's
 * PULLs and ACKs wait behind at most one batch. */
static void compose(TgKpSession *s) {
        s->out.size = s->out_pos = 0;

        for (unsigned i = 0; i < s->n_pongs; i++)
                append_frame(s, &(TgKpFrame) { .type = TG_KP_PONG, .nonce = s->pongs[i] });
        s->n_pongs = 0;
        if (s->ping_due) {
                append_frame(s, &(TgKpFrame) { .type = TG_KP_PING, .nonce = s->ping_nonce });
                s->ping_due = false;
        }
        if (!s->have_peer)
                return;
        compose_answers(s);
        compose_offers(s);
        compose_data(s);
}

TgKpError tg_kp_session_output(TgKpSession *s, const uint8_t **ret, size_t *ret_len) {
        if (s->out_pos == s->out.size && s->error == TG_KP_OK) {
                compose(s);
                check_idle(s);
        }
        *ret = s->out.data + s->out_pos;
        *ret_len = s->out.size - s->out_pos;
        return s->error;
}

void tg_kp_session_consumed(TgKpSession *s, size_t n) {
        n = MIN(n, s->out.size - s->out_pos);
        s->out_pos += n;
        s->stats.bytes_out += n;
        if (s->out_pos == s->out.size)
                check_idle(s);
}

void tg_kp_session_tick(TgKpSession *s, uint64_t now) {
        if (s->error != TG_KP_OK)
                return;
        if (!s->have_time || s->rx_activity) {
                s->have_time = true;
                s->last_rx = now;
                s->rx_activity = false;
        }
        if (s->ping_outstanding) {
                if (now >= s->ping_sent && now - s->ping_sent >= s->ping_timeout)
                        fail(s, TG_KP_PING_TIMEOUT, "no PONG for %" PRIu64 " ms", (now - s->ping_sent) / USEC_PER_MSEC);
                return;
        }
        if (s->ping_interval != USEC_INFINITY && now >= s->last_rx && now - s->last_rx >= s->ping_interval) {
                s->ping_nonce++;
                s->ping_due = s->ping_outstanding = true;
                s->ping_sent = now;
        }
}

static uint64_t add_sat(uint64_t a, uint64_t b) {
        return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

uint64_t tg_kp_session_next_tick(const TgKpSession *s) {
        if (s->error != TG_KP_OK)
                return USEC_INFINITY;
        if (!s->have_time)
                return 0;
        if (s->ping_outstanding)
                return add_sat(s->ping_sent, s->ping_timeout);
        if (s->ping_interval == USEC_INFINITY)
                return USEC_INFINITY;
        return add_sat(s->last_rx, s->ping_interval);
}

void tg_kp_session_kick(TgKpSession *s) {
        if (s->cb.next_offer)
                s->source_empty = false;
}

int tg_kp_session_complete(TgKpSession *s, uint64_t item_id, TgKpAckStatus status) {
        InItem *it;

        if (s->error != TG_KP_OK)
                return -ESHUTDOWN;
        it = find_in(s, item_id);
        if (!it || it->state != IN_COMPLETING)
                return -ENOENT;
        if (status != TG_KP_ACK_STORED && status != TG_KP_ACK_BAD_HASH && status != TG_KP_ACK_REFUSED)
                return -EINVAL;
        settle(s, it, status);
        return 0;
}

void tg_kp_session_shutdown(TgKpSession *s) {
        fail(s, TG_KP_SHUTTING_DOWN, "the %s is shutting down", s->role == TG_KP_ROLE_GATEWAY ? "gateway" : "key");
}

TgKpError tg_kp_session_error(const TgKpSession *s, uint16_t *ret_code, const char **ret_text) {
        if (ret_code)
                *ret_code = s->error_code;
        if (ret_text)
                *ret_text = s->error_text;
        return s->error;
}

bool tg_kp_session_finished(const TgKpSession *s) {
        return s->error != TG_KP_OK && s->out_pos == s->out.size;
}

bool tg_kp_session_idle(const TgKpSession *s) {
        return s->error == TG_KP_OK && s->idle_reported;
}

const TgKpHello *tg_kp_session_peer(const TgKpSession *s) {
        return s->have_peer ? &s->peer : NULL;
}

uint32_t tg_kp_session_chunk(const TgKpSession *s) {
        return s->have_peer ? s->chunk : s->max_chunk;
}

void tg_kp_session_stats(const TgKpSession *s, TgKpStats *ret) {
        *ret = s->stats;
}

int tg_kp_session_new(TgKpSession **ret, const TgKpConfig *c) {
        _cleanup_(tg_kp_session_freep) TgKpSession *s = NULL;
        static const TgKpCallbacks none = {};
        TgKpHello hello;
        size_t id_len;

        if (!c || !c->id || (c->role != TG_KP_ROLE_GATEWAY && c->role != TG_KP_ROLE_KEY))
                return -EINVAL;
        id_len = strlen(c->id);
        if (id_len > UINT16_MAX || !id_valid(c->id, id_len))
                return -EINVAL;
        if (c->max_chunk != 0 && (c->max_chunk < TG_KP_CHUNK_MIN || c->max_chunk > TG_KP_CHUNK_MAX))
                return -EINVAL;
        if (c->callbacks) {
                const TgKpCallbacks *cb = c->callbacks;
                if (cb->next_offer && (!cb->read || !cb->acked))
                        return -EINVAL;
                if (cb->offered && (!cb->write || !cb->complete))
                        return -EINVAL;
        }

        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->cb = c->callbacks ? *c->callbacks : none;
        s->userdata = c->userdata;
        s->role = c->role;
        s->max_chunk = c->max_chunk ?: TG_KP_DEFAULT_CHUNK;
        s->window = c->window ?: TG_KP_DEFAULT_WINDOW;
        s->max_offers = c->max_offers ?: TG_KP_DEFAULT_MAX_OFFERS;
        s->output_target = c->output_target ?: TG_KP_DEFAULT_OUTPUT_TARGET;
        s->ping_interval = c->ping_interval_usec ?: TG_KP_DEFAULT_PING_INTERVAL_USEC;
        s->ping_timeout = c->ping_timeout_usec ?: TG_KP_DEFAULT_PING_TIMEOUT_USEC;
        s->source_empty = !s->cb.next_offer;
        s->id = strdup(c->id);
        s->ins = calloc(s->window, sizeof *s->ins);
        if (!s->id || !s->ins)
                return -ENOMEM;
        tg_kp_decoder_init(&s->decoder, s->max_chunk);

        hello = (TgKpHello) {
                .version = TG_KP_VERSION,
                .role = (uint8_t) s->role,
                .max_chunk = s->max_chunk,
                .window = s->window,
                .id_len = (uint16_t) id_len,
                .id = s->id,
        };
        if (tg_kp_frame_encode(&(TgKpFrame) { .type = TG_KP_HELLO, .hello = hello }, &s->out) != TG_KP_OK)
                return -ENOMEM;
        s->stats.frames_out++;
        *ret = TAKE_PTR(s);
        return 0;
}

TgKpSession *tg_kp_session_free(TgKpSession *s) {
        if (!s)
                return NULL;
        wc_Sha256Free(&s->sha);
        tg_kp_decoder_done(&s->decoder);
        tg_buf_free(&s->out);
        free(s->outs);
        free(s->ins);
        free(s->peer_id);
        free(s->id);
        free(s);
        return NULL;
}
