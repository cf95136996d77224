/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "tg-frame.h"

static const char *const frame_errors[_TG_FRAME_ERROR_MAX] = {
        [TG_FRAME_OK] = "ok",
        [TG_FRAME_SHORT] = "short-frame",
        [TG_FRAME_BAD_MAGIC] = "bad-magic",
        [TG_FRAME_BAD_TYPE] = "bad-type",
        [TG_FRAME_BAD_FLAGS] = "bad-flags",
        [TG_FRAME_TOO_LARGE] = "frame-too-large",
        [TG_FRAME_TRAILING_BYTES] = "trailing-bytes",
        [TG_FRAME_TRUNCATED_RECORD] = "truncated-record",
        [TG_FRAME_EMPTY_TOPIC] = "empty-topic",
        [TG_FRAME_TOPIC_TOO_LONG] = "topic-too-long",
        [TG_FRAME_INVALID_TOPIC] = "invalid-topic",
        [TG_FRAME_PAYLOAD_TOO_LARGE] = "payload-too-large",
        [TG_FRAME_OVERLOADED] = "overloaded",
        [TG_FRAME_INTERNAL] = "internal-error",
};

const char *tg_frame_error_to_string(TgFrameError e) {
        return (unsigned) e < _TG_FRAME_ERROR_MAX ? frame_errors[e] : "unknown-error";
}

TgFrameError tg_frame_error_from_record(TgRecordError e) {
        switch (e) {
        case TG_RECORD_OK:
                return TG_FRAME_OK;
        case TG_RECORD_TRUNCATED:
                return TG_FRAME_TRUNCATED_RECORD;
        case TG_RECORD_TOPIC_EMPTY:
                return TG_FRAME_EMPTY_TOPIC;
        case TG_RECORD_TOPIC_TOO_LONG:
                return TG_FRAME_TOPIC_TOO_LONG;
        case TG_RECORD_TOPIC_INVALID:
                return TG_FRAME_INVALID_TOPIC;
        case TG_RECORD_PAYLOAD_TOO_LARGE:
                return TG_FRAME_PAYLOAD_TOO_LARGE;
        default:
                return TG_FRAME_INTERNAL;
        }
}

TgFrameError tg_frame_parse_header(const uint8_t *buf, size_t size, TgFrameHeader *ret) {
        TgFrameHeader h;

        if (size < TG_FRAME_HEADER_SIZE)
                return TG_FRAME_SHORT;
        h.type = buf[4];
        h.flags = buf[5];
        h.count = tg_get_be16(buf + 6);
        h.seq = tg_get_be32(buf + 8);
        /* Filled even for a bad frame, so the ERROR can echo its seq. */
        *ret = h;
        if (size > TG_FRAME_MAX)
                return TG_FRAME_TOO_LARGE;
        if (tg_get_be32(buf) != TG_FRAME_MAGIC)
                return TG_FRAME_BAD_MAGIC;
        if (h.type < TG_FRAME_RECORDS || h.type > TG_FRAME_ERROR)
                return TG_FRAME_BAD_TYPE;
        if (h.flags != 0)
                return TG_FRAME_BAD_FLAGS;
        return TG_FRAME_OK;
}

TgFrameError tg_frame_check_records(const uint8_t *buf, size_t size, const TgFrameHeader *h,
                                    uint32_t payload_max, uint16_t *ret_index) {
        size_t offset = TG_FRAME_HEADER_SIZE;

        *ret_index = UINT16_MAX;
        for (unsigned i = 0; i < h->count; i++) {
                TgRecord rec;
                TgRecordError e = tg_record_decode(buf, size, &offset, payload_max, &rec);
                if (e != TG_RECORD_OK) {
                        *ret_index = (uint16_t) i;
                        return tg_frame_error_from_record(e);
                }
        }
        if (offset != size)
                return TG_FRAME_TRAILING_BYTES;
        return TG_FRAME_OK;
}

void tg_frame_write_header(uint8_t *buf, const TgFrameHeader *h) {
        tg_put_be32(buf, TG_FRAME_MAGIC);
        buf[4] = h->type;
        buf[5] = h->flags;
        tg_put_be16(buf + 6, h->count);
        tg_put_be32(buf + 8, h->seq);
}

size_t tg_frame_build_ack(uint8_t *buf, uint32_t seq) {
        tg_frame_write_header(buf, &(TgFrameHeader) { .type = TG_FRAME_ACK, .seq = seq });
        return TG_FRAME_HEADER_SIZE;
}

size_t tg_frame_build_error(uint8_t *buf, uint32_t seq, TgFrameError code, uint16_t index, const char *text) {
        size_t n = text ? strnlen(text, TG_FRAME_ERROR_TEXT_MAX) : 0;

        tg_frame_write_header(buf, &(TgFrameHeader) { .type = TG_FRAME_ERROR, .seq = seq });
        tg_put_be16(buf + TG_FRAME_HEADER_SIZE, (uint16_t) code);
        tg_put_be16(buf + TG_FRAME_HEADER_SIZE + 2, index);
        if (n > 0)
                memcpy(buf + TG_FRAME_HEADER_SIZE + 4, text, n);
        return TG_FRAME_HEADER_SIZE + 4 + n;
}

int tg_frame_parse_error(const uint8_t *buf, size_t size, TgFrameErrorInfo *ret) {
        size_t n;

        if (size < 4)
                return -EBADMSG;
        ret->code = (TgFrameError) tg_get_be16(buf);
        ret->index = tg_get_be16(buf + 2);
        n = MIN(size - 4, (size_t) TG_FRAME_ERROR_TEXT_MAX);
        for (size_t i = 0; i < n; i++) {
                char c = (char) buf[4 + i];
                ret->text[i] = (c >= 0x20 && c < 0x7f) ? c : '?';
        }
        ret->text[n] = '\0';
        return 0;
}
