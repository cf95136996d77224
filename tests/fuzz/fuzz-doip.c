/* SPDX-License-Identifier: MIT */
/*
 * The DoIP codec (lib/tg-doip.h): the stream decoder and each payload
 * parser, fed what a TCP peer could send.
 *
 * Input: byte 0 picks the decoder's max_payload, byte 1 seeds the piece
 * sizes; the rest is the TCP stream. Shorter inputs are the stream only.
 *
 * Invariants:
 *  - the stream gives the same events (messages and header errors, at the
 *    same stream offsets) pushed whole as pushed in pieces of 1 … 300 bytes;
 *  - a message the decoder accepts encodes back to exactly the bytes it
 *    came from, and tg_doip_message_decode() accepts those bytes alone;
 *  - a closing error is sticky and takes no more bytes; after a discarding
 *    one the decoder takes the announced payload and goes on;
 *  - the stream (and every prefix of it, as a whole buffer) passes
 *    tg_doip_message_decode() only as the decoder says;
 *  - the stream's bytes as the payload of each known type: parsed only at
 *    a valid length, and then encoded back to the same payload.
 */
#include <string.h>

#include "fuzz.h"
#include "tg-doip.h"

static const uint32_t max_payloads[] = { 0, 0, 5, 16, 64, 4096, 1 << 16, 1 << 20 };

static const uint16_t types[] = {
        0x0000, 0x0001, 0x0002, 0x0003, 0x0004, 0x0005, 0x0006, 0x0007, 0x0008,
        0x4001, 0x4002, 0x4003, 0x4004, 0x8001, 0x8002, 0x8003, 0x0009, 0x8004, 0xFFFF,
};

#define MAX_EVENTS 4096

typedef struct Event {
        TgDoipError error;
        bool complete;
        uint16_t type;
        size_t end; /* stream offset after the event */
} Event;

/* Room for any message re-encoded: the input plus a header. */
static uint8_t *scratch;
static size_t scratch_size;

static size_t run(const uint8_t *s, size_t size, uint32_t max_payload, uint8_t seed, Event *events) {
        TgDoipDecoder d;
        size_t pos = 0, n = 0;
        uint32_t r = seed * 2654435761u + 1;

        tg_doip_decoder_init(&d, max_payload);
        while (pos < size && n < MAX_EVENTS) {
                size_t piece = size - pos, off = 0;

                if (seed != 0) {
                        r = r * 1103515245u + 12345u;
                        piece = MIN(piece, (size_t) 1 + (r >> 16) % 300);
                }
                while (off < piece && n < MAX_EVENTS) {
                        TgDoipMessage m;
                        TgDoipError e;
                        size_t used, k;
                        bool complete;

                        e = tg_doip_decoder_push(&d, s + pos + off, piece - off, &used, &m, &complete);
                        FUZZ_ASSERT(used <= piece - off);
                        FUZZ_ASSERT(!(complete && e != TG_DOIP_OK));
                        off += used;
                        if (e == TG_DOIP_OK && !complete) {
                                FUZZ_ASSERT(off == piece);
                                break;
                        }
                        events[n++] = (Event) { e, complete, m.type, pos + off };
                        if (complete) {
                                TgDoipMessage again;

                                FUZZ_ASSERT(tg_doip_decoder_pending(&d) == 0);
                                FUZZ_ASSERT(tg_doip_message_encode(&m, scratch, scratch_size, &k) == TG_DOIP_OK);
                                FUZZ_ASSERT(k <= pos + off);
                                FUZZ_ASSERT(memcmp(scratch, s + pos + off - k, k) == 0);
                                FUZZ_ASSERT(tg_doip_message_decode(s + pos + off - k, k, d.max_payload, &again) ==
                                            TG_DOIP_OK);
                                FUZZ_ASSERT(again.type == m.type && again.version == m.version);
                                continue;
                        }
                        FUZZ_ASSERT(tg_doip_error_nack_code(e) >= 0);
                        if (tg_doip_error_closes(e)) {
                                FUZZ_ASSERT(tg_doip_decoder_push(&d, s, size, &used, &m, &complete) == e);
                                FUZZ_ASSERT(used == 0 && !complete);
                                tg_doip_decoder_done(&d);
                                return n;
                        }
                        FUZZ_ASSERT(d.discard == d.header.payload_length);
                }
                pos += off;
                if (off < piece)
                        break; /* out of events */
        }
        tg_doip_decoder_done(&d);
        return n;
}

static void check_payloads(const uint8_t *p, size_t size) {
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
                TgDoipMessage m;
                TgDoipError e;
                size_t k;

                e = tg_doip_payload_parse(types[i], p, size, &m);
                FUZZ_ASSERT(e == TG_DOIP_OK || e == TG_DOIP_UNKNOWN_TYPE || e == TG_DOIP_INVALID_LENGTH);
                FUZZ_ASSERT((e == TG_DOIP_OK) == tg_doip_payload_length_valid(types[i], size));
                if (e != TG_DOIP_OK)
                        continue;
                FUZZ_ASSERT(m.type == types[i]);
                m.version = TG_DOIP_VERSION_2019;
                FUZZ_ASSERT(tg_doip_message_encode(&m, scratch, scratch_size, &k) == TG_DOIP_OK);
                FUZZ_ASSERT(k == TG_DOIP_HEADER_SIZE + size);
                FUZZ_ASSERT(memcmp(scratch + TG_DOIP_HEADER_SIZE, p, size) == 0);
                FUZZ_ASSERT(tg_get_be32(scratch + 4) == size);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static Event whole[MAX_EVENTS], pieces[MAX_EVENTS];
        uint32_t max_payload = 0;
        uint8_t seed = 1;
        size_t n_whole, n_pieces;

        if (size >= 2) {
                max_payload = max_payloads[data[0] % (sizeof max_payloads / sizeof max_payloads[0])];
                seed = data[1] | 1;
                data += 2;
                size -= 2;
        }

        scratch_size = size + 64;
        scratch = malloc(scratch_size);
        if (!scratch)
                abort();

        n_whole = run(data, size, max_payload, 0, whole);
        n_pieces = run(data, size, max_payload, seed, pieces);
        FUZZ_ASSERT(n_whole == n_pieces);
        for (size_t i = 0; i < n_whole; i++) {
                FUZZ_ASSERT(whole[i].error == pieces[i].error);
                FUZZ_ASSERT(whole[i].complete == pieces[i].complete);
                FUZZ_ASSERT(whole[i].type == pieces[i].type);
                FUZZ_ASSERT(whole[i].end == pieces[i].end);
        }

        /* The whole input as one message: accepted exactly when the decoder
         * finds one message ending at the end of the input. */
        {
                TgDoipMessage m;
                TgDoipError e = tg_doip_message_decode(data, size, max_payload ? max_payload : TG_DOIP_MAX_PAYLOAD_DEFAULT,
                                                       &m);

                if (e == TG_DOIP_OK) {
                        FUZZ_ASSERT(n_whole >= 1 && whole[0].complete && whole[0].end == size);
                        FUZZ_ASSERT(whole[0].type == m.type);
                } else if (n_whole >= 1 && !whole[0].complete)
                        FUZZ_ASSERT(e == whole[0].error);
        }

        check_payloads(data, size);
        free(scratch);
        scratch = NULL;
        return 0;
}
