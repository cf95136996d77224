/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The telemetry record and its one binary encoding ("TGR1"), used unchanged
 * in producer frames, outbox segments, real-time HTTP batches and on the
 * key link, so a record is never re-encoded between producer and cloud.
 *
 *   u64  id              unique per gateway (0 from producers; the classifier assigns it)
 *   u64  timestamp_usec  producer's CLOCK_REALTIME, microseconds since the epoch
 *   u16  topic_len       1..TG_TOPIC_MAX
 *   u32  payload_len     0..TG_PAYLOAD_MAX
 *   u8   topic[topic_len]     [A-Za-z0-9_./-], no leading/trailing '.', no ".."
 *   u8   payload[payload_len] opaque
 *
 * All integers big-endian. See docs/wire-formats.md.
 */

#include <stddef.h>
#include <stdint.h>

#include "tg-macro.h"

#define TG_RECORD_HEADER_SIZE 22
#define TG_TOPIC_MAX 255
#define TG_PAYLOAD_MAX (64 * 1024)

typedef struct TgRecord {
        uint64_t id;
        uint64_t timestamp_usec;
        const char *topic; /* not NUL-terminated when decoded: use topic_len */
        uint16_t topic_len;
        const uint8_t *payload;
        uint32_t payload_len;
} TgRecord;

/* Named decoding errors, shared by every parser of TGR1 data. */
typedef enum TgRecordError {
        TG_RECORD_OK = 0,
        TG_RECORD_TRUNCATED,          /* buffer ends inside a record */
        TG_RECORD_TOPIC_EMPTY,
        TG_RECORD_TOPIC_TOO_LONG,
        TG_RECORD_TOPIC_INVALID,
        TG_RECORD_PAYLOAD_TOO_LARGE,
        _TG_RECORD_ERROR_MAX,
} TgRecordError;

const char *tg_record_error_to_string(TgRecordError e);

static inline size_t tg_record_size(const TgRecord *r) {
        return TG_RECORD_HEADER_SIZE + r->topic_len + r->payload_len;
}

TgRecordError tg_topic_validate(const char *topic, size_t len);

/* Decode one record at buf[*offset]; on success advance *offset. The record
 * points into buf. `payload_max` may be lower than TG_PAYLOAD_MAX. */
TgRecordError tg_record_decode(const uint8_t *buf, size_t size, size_t *offset, uint32_t payload_max,
                               TgRecord *ret);

/* Encode at out (which must have tg_record_size() bytes); returns bytes written. */
size_t tg_record_encode(uint8_t *out, const TgRecord *r);

/* A growable byte buffer for building segments and batches. */
typedef struct TgBuf {
        uint8_t *data;
        size_t size;
        size_t allocated;
} TgBuf;

int tg_buf_reserve(TgBuf *b, size_t extra);
int tg_buf_append(TgBuf *b, const void *p, size_t n);
/* Append without growing ahead: the buffer ends up exactly as large as needed. */
int tg_buf_append_exact(TgBuf *b, const void *p, size_t n);
int tg_buf_append_record(TgBuf *b, const TgRecord *r);
void tg_buf_reset(TgBuf *b); /* size = 0, keeps memory */
void tg_buf_free(TgBuf *b);
