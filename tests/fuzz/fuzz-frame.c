/* SPDX-License-Identifier: MIT */
/*
 * The producer-frame parser, driven the way the classifier drives it
 * (daemons/classifier/classifier-ingest.c, handle_frame()): header, then the
 * whole-frame record check with the default MaxPayloadSize=16K, then the
 * records decoded one by one. The input is the packet exactly as recv()
 * returned it, so ASan sees any read past its end. The tail after the
 * header also goes through the ERROR-frame parser the producer library uses.
 */
#include "fuzz.h"
#include "tg-frame.h"

#define PAYLOAD_MAX 16384 /* the classifier's default MaxPayloadSize= */

static void records(const uint8_t *data, size_t size, const TgFrameHeader *h) {
        size_t offset = TG_FRAME_HEADER_SIZE;
        uint16_t index = 0;
        TgFrameError e;
        TgBuf copy = {};

        e = tg_frame_check_records(data, size, h, PAYLOAD_MAX, &index);
        FUZZ_ASSERT(tg_frame_error_to_string(e) != NULL);
        if (e != TG_FRAME_OK) {
                /* A record error names the record; a frame error names none. */
                if (e == TG_FRAME_TRAILING_BYTES)
                        FUZZ_ASSERT(index == UINT16_MAX);
                else
                        FUZZ_ASSERT(index < h->count);
                return;
        }
        FUZZ_ASSERT(index == UINT16_MAX);

        /* Checked as a whole: now every record decodes, as the daemon assumes
         * when it ignores tg_record_decode()'s result. Re-encoding them must
         * give back the frame byte for byte (records are never re-encoded
         * differently between producer and cloud). */
        FUZZ_ASSERT(tg_buf_append(&copy, data, TG_FRAME_HEADER_SIZE) == 0);
        for (unsigned i = 0; i < h->count; i++) {
                TgRecord rec;
                size_t before = offset;

                FUZZ_ASSERT(tg_record_decode(data, size, &offset, TG_PAYLOAD_MAX, &rec) == TG_RECORD_OK);
                FUZZ_ASSERT(offset - before == tg_record_size(&rec));
                FUZZ_ASSERT(rec.payload_len <= PAYLOAD_MAX);
                FUZZ_ASSERT(tg_topic_validate(rec.topic, rec.topic_len) == TG_RECORD_OK);
                FUZZ_ASSERT(tg_buf_append_record(&copy, &rec) == 0);
        }
        FUZZ_ASSERT(offset == size);
        FUZZ_ASSERT(copy.size == size);
        FUZZ_ASSERT(memcmp(copy.data, data, size) == 0);
        tg_buf_free(&copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        TgFrameHeader h = {};
        TgFrameErrorInfo info;
        TgFrameError e;

        if (size > TG_FRAME_MAX) {
                /* The daemon receives at most TG_FRAME_MAX + 1 bytes and then
                 * reads only the header, to echo the seq of its ERROR. */
                (void) tg_frame_parse_header(data, TG_FRAME_HEADER_SIZE, &h);
                FUZZ_ASSERT(tg_frame_parse_header(data, size, &h) == TG_FRAME_TOO_LARGE);
                return 0;
        }

        e = tg_frame_parse_header(data, size, &h);
        FUZZ_ASSERT(tg_frame_error_to_string(e) != NULL);
        FUZZ_ASSERT((size < TG_FRAME_HEADER_SIZE) == (e == TG_FRAME_SHORT));
        if (e == TG_FRAME_OK && h.type == TG_FRAME_RECORDS)
                records(data, size, &h);

        if (size >= TG_FRAME_HEADER_SIZE &&
            tg_frame_parse_error(data + TG_FRAME_HEADER_SIZE, size - TG_FRAME_HEADER_SIZE, &info) == 0) {
                size_t n = strlen(info.text);

                FUZZ_ASSERT(n <= TG_FRAME_ERROR_TEXT_MAX);
                FUZZ_ASSERT(n == (size - TG_FRAME_HEADER_SIZE - 4 < TG_FRAME_ERROR_TEXT_MAX ?
                                  size - TG_FRAME_HEADER_SIZE - 4 : TG_FRAME_ERROR_TEXT_MAX));
                for (size_t i = 0; i < n; i++)
                        FUZZ_ASSERT(info.text[i] >= 0x20 && info.text[i] < 0x7f);
                FUZZ_ASSERT(tg_frame_error_to_string(info.code) != NULL);
        }
        return 0;
}
