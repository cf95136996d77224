/* SPDX-License-Identifier: MIT */
#include "tg-record.h"

static const char *const record_errors[_TG_RECORD_ERROR_MAX] = {
        [TG_RECORD_OK] = "ok",
        [TG_RECORD_TRUNCATED] = "truncated-record",
        [TG_RECORD_TOPIC_EMPTY] = "empty-topic",
        [TG_RECORD_TOPIC_TOO_LONG] = "topic-too-long",
        [TG_RECORD_TOPIC_INVALID] = "invalid-topic",
        [TG_RECORD_PAYLOAD_TOO_LARGE] = "payload-too-large",
};

const char *tg_record_error_to_string(TgRecordError e) {
        return (unsigned) e < _TG_RECORD_ERROR_MAX ? record_errors[e] : "unknown-error";
}

TgRecordError tg_topic_validate(const char *topic, size_t len) {
        if (len == 0)
                return TG_RECORD_TOPIC_EMPTY;
        if (len > TG_TOPIC_MAX)
                return TG_RECORD_TOPIC_TOO_LONG;
        if (topic[0] == '.' || topic[len - 1] == '.')
                return TG_RECORD_TOPIC_INVALID;
        for (size_t i = 0; i < len; i++) {
                char c = topic[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                      c == '-' || c == '/' || c == '.'))
                        return TG_RECORD_TOPIC_INVALID;
                if (c == '.' && i > 0 && topic[i - 1] == '.')
                        return TG_RECORD_TOPIC_INVALID;
        }
        return TG_RECORD_OK;
}

TgRecordError tg_record_decode(const uint8_t *buf, size_t size, size_t *offset, uint32_t payload_max,
                               TgRecord *ret) {
        size_t o = *offset;
        TgRecord r;
        TgRecordError e;

        if (o > size || size - o < TG_RECORD_HEADER_SIZE)
                return TG_RECORD_TRUNCATED;
        r.id = tg_get_be64(buf + o);
        r.timestamp_usec = tg_get_be64(buf + o + 8);
        r.topic_len = tg_get_be16(buf + o + 16);
        r.payload_len = tg_get_be32(buf + o + 18);
        o += TG_RECORD_HEADER_SIZE;

        /* Check lengths before touching the bytes they describe. */
        if (r.topic_len == 0)
                return TG_RECORD_TOPIC_EMPTY;
        if (r.topic_len > TG_TOPIC_MAX)
                return TG_RECORD_TOPIC_TOO_LONG;
        if (r.payload_len > MIN(payload_max, (uint32_t) TG_PAYLOAD_MAX))
                return TG_RECORD_PAYLOAD_TOO_LARGE;
        if (size - o < (size_t) r.topic_len + r.payload_len)
                return TG_RECORD_TRUNCATED;

        r.topic = (const char *) buf + o;
        e = tg_topic_validate(r.topic, r.topic_len);
        if (e != TG_RECORD_OK)
                return e;
        r.payload = buf + o + r.topic_len;
        *offset = o + r.topic_len + r.payload_len;
        *ret = r;
        return TG_RECORD_OK;
}

size_t tg_record_encode(uint8_t *out, const TgRecord *r) {
        tg_put_be64(out, r->id);
        tg_put_be64(out + 8, r->timestamp_usec);
        tg_put_be16(out + 16, r->topic_len);
        tg_put_be32(out + 18, r->payload_len);
        memcpy(out + TG_RECORD_HEADER_SIZE, r->topic, r->topic_len);
        if (r->payload_len > 0)
                memcpy(out + TG_RECORD_HEADER_SIZE + r->topic_len, r->payload, r->payload_len);
        return tg_record_size(r);
}

int tg_buf_reserve(TgBuf *b, size_t extra) {
        size_t want;
        uint8_t *p;

        if (extra > SIZE_MAX - b->size)
                return -ENOMEM;
        want = b->size + extra;
        if (want <= b->allocated)
                return 0;
        want = MAX(want, MAX(b->allocated * 2, (size_t) 4096));
        p = realloc(b->data, want);
        if (!p)
                return -ENOMEM;
        b->data = p;
        b->allocated = want;
        return 0;
}

int tg_buf_append(TgBuf *b, const void *p, size_t n) {
        int r;

        r = tg_buf_reserve(b, n);
        if (r < 0)
                return r;
        if (n > 0)
                memcpy(b->data + b->size, p, n);
        b->size += n;
        return 0;
}

int tg_buf_append_exact(TgBuf *b, const void *p, size_t n) {
        uint8_t *d;

        if (n > SIZE_MAX - b->size)
                return -ENOMEM;
        if (b->size + n > b->allocated) {
                d = realloc(b->data, b->size + n);
                if (!d)
                        return -ENOMEM;
                b->data = d;
                b->allocated = b->size + n;
        }
        if (n > 0)
                memcpy(b->data + b->size, p, n);
        b->size += n;
        return 0;
}

int tg_buf_append_record(TgBuf *b, const TgRecord *rec) {
        int r;

        r = tg_buf_reserve(b, tg_record_size(rec));
        if (r < 0)
                return r;
        b->size += tg_record_encode(b->data + b->size, rec);
        return 0;
}

void tg_buf_reset(TgBuf *b) {
        b->size = 0;
}

void tg_buf_free(TgBuf *b) {
        free(b->data);
        *b = (TgBuf) {};
}
