/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Producer protocol: frames on the classifier's SOCK_SEQPACKET socket
 * (/run/tollgate/telemetry.sock). One frame per packet.
 *
 *   u32 magic  "TGP1" (0x54475031)
 *   u8  type   1 RECORDS (producer → classifier)
 *              2 ACK     (classifier → producer): every RECORDS frame with seq ≤ `seq` is committed
 *              3 ERROR   (classifier → producer): the frame `seq` was rejected as a whole
 *   u8  flags  0
 *   u16 count  RECORDS: number of TGR1 records that follow (0 = "ack me": a flush request)
 *   u32 seq    producer-chosen, increasing per connection
 *
 * ERROR frames carry: u16 code (TgFrameError), u16 index of the offending
 * record (0xffff if none), then up to 200 bytes of ASCII explanation.
 * A RECORDS frame is accepted or rejected atomically. See docs/wire-formats.md.
 */

#include <stddef.h>
#include <stdint.h>

#include "tg-record.h"

#define TG_FRAME_MAGIC UINT32_C(0x54475031)
#define TG_FRAME_HEADER_SIZE 12
#define TG_FRAME_MAX (128 * 1024)
#define TG_FRAME_ERROR_TEXT_MAX 200

enum {
        TG_FRAME_RECORDS = 1,
        TG_FRAME_ACK = 2,
        TG_FRAME_ERROR = 3,
};

typedef enum TgFrameError {
        TG_FRAME_OK = 0,
        TG_FRAME_SHORT,            /* shorter than the header */
        TG_FRAME_BAD_MAGIC,
        TG_FRAME_BAD_TYPE,
        TG_FRAME_BAD_FLAGS,
        TG_FRAME_TOO_LARGE,        /* longer than TG_FRAME_MAX */
        TG_FRAME_TRAILING_BYTES,   /* bytes after `count` records */
        TG_FRAME_TRUNCATED_RECORD, /* the record errors of tg-record.h, as frame errors */
        TG_FRAME_EMPTY_TOPIC,
        TG_FRAME_TOPIC_TOO_LONG,
        TG_FRAME_INVALID_TOPIC,
        TG_FRAME_PAYLOAD_TOO_LARGE,
        TG_FRAME_OVERLOADED,       /* the classifier cannot take more now; retry later */
        TG_FRAME_INTERNAL,         /* the classifier failed to store the frame */
        _TG_FRAME_ERROR_MAX,
} TgFrameError;

typedef struct TgFrameHeader {
        uint8_t type;
        uint8_t flags;
        uint16_t count;
        uint32_t seq;
} TgFrameHeader;

const char *tg_frame_error_to_string(TgFrameError e);
TgFrameError tg_frame_error_from_record(TgRecordError e);

/* *ret is filled whenever size ≥ TG_FRAME_HEADER_SIZE, even for a bad frame. */
TgFrameError tg_frame_parse_header(const uint8_t *buf, size_t size, TgFrameHeader *ret);

/* Check every record of a RECORDS frame (whole-frame validation before any
 * record is used). On error *ret_index names the record (or 0xffff). */
TgFrameError tg_frame_check_records(const uint8_t *buf, size_t size, const TgFrameHeader *h,
                                    uint32_t payload_max, uint16_t *ret_index);

void tg_frame_write_header(uint8_t *buf, const TgFrameHeader *h);
size_t tg_frame_build_ack(uint8_t *buf, uint32_t seq);
/* buf must hold TG_FRAME_HEADER_SIZE + 4 + TG_FRAME_ERROR_TEXT_MAX bytes. */
size_t tg_frame_build_error(uint8_t *buf, uint32_t seq, TgFrameError code, uint16_t index, const char *text);

typedef struct TgFrameErrorInfo {
        TgFrameError code;
        uint16_t index;
        char text[TG_FRAME_ERROR_TEXT_MAX + 1];
} TgFrameErrorInfo;

/* Parse the body of an ERROR frame (after the header). */
int tg_frame_parse_error(const uint8_t *buf, size_t size, TgFrameErrorInfo *ret);
