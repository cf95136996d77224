/* SPDX-License-Identifier: MIT */
/*
 * The key protocol (lib/tg-keyproto.c): the incremental decoder, and a key's
 * session fed what a gateway — or anyone on the network — might send.
 *
 * Input: byte 0 is a control byte, the rest the byte stream.
 *   bit 0   a valid gateway HELLO goes first, so the stream reaches the
 *           session's frame handlers rather than its HELLO check;
 *   bits 1… seed how frames are cut into pieces.
 * The session gets the stream a frame at a time (as far as the length
 * prefixes say), each frame in one to three pieces, and its output is
 * drained in between, as a daemon would: so OFFER → PULL → DATA flows work.
 *
 * Invariants (FUZZ_ASSERT):
 *   - the decoder yields the same frames and stops at the same byte with
 *     the same error whether the stream comes whole or in pieces, and every
 *     frame re-encodes to exactly its bytes (the codec is canonical);
 *   - the session only ever writes valid frames, in batches bounded by its
 *     configuration; a session that dies of a local error says so with an
 *     ERROR frame last; after death input is ignored;
 *   - the sink is asked only for the next bytes of an item it accepted, never
 *     past its size, and complete() only with all of them;
 *   - the source is asked only for bytes of items it offered, within them.
 */
#include "fuzz.h"
#include "tg-keyproto.h"

#define CHUNK 16384
#define TARGET 32768
#define SINK_MAX_SIZE 65536
#define SINK_SLOTS 24

static const uint8_t gateway_hello[] = {
        0x00, 0x00, 0x00, 0x0f, 0x01, 0x00, 0x01, 0x00, /* length 15, HELLO, version 1, gateway */
        0x00, 0x00, 0x40, 0x00, 0x00, 0x04, 0x00, 0x03, /* max_chunk 16384, window 4, id_len 3 */
        'V',  'I',  'N',
};

/* ─── a source with three items ─── */

#define N_SRC 3
static const uint64_t src_size[N_SRC] = { 0, 10, 40000 };
static uint8_t src_sha[N_SRC][32];
static bool src_ready;

typedef struct Fuzz {
        bool src_present[N_SRC], src_offered[N_SRC];
        unsigned src_retries;
        struct {
                uint64_t id, size, have;
                bool stored, later;
        } in[SINK_SLOTS];
        size_t n_in;
        uint64_t rng;
} Fuzz;

static uint8_t src_byte(uint64_t offset) {
        return (uint8_t) (offset * 7 + 3);
}

static int fz_next_offer(void *userdata, TgKpOffer *ret) {
        Fuzz *z = userdata;

        for (unsigned i = 0; i < N_SRC; i++)
                if (z->src_present[i] && !z->src_offered[i]) {
                        z->src_offered[i] = true;
                        *ret = (TgKpOffer) { .item_id = i + 1, .kind = TG_KP_KIND_TELEMETRY, .priority = 1,
                                             .size = src_size[i], .records = 3, .name = "seg", .name_len = 3 };
                        memcpy(ret->sha256, src_sha[i], 32);
                        return 1;
                }
        return 0;
}

static int fz_read(void *userdata, uint64_t id, uint64_t offset, void *buf, size_t len) {
        Fuzz *z = userdata;
        uint8_t *p = buf;

        FUZZ_ASSERT(id >= 1 && id <= N_SRC);
        FUZZ_ASSERT(z->src_present[id - 1] && z->src_offered[id - 1]);
        FUZZ_ASSERT(offset <= src_size[id - 1] && len <= src_size[id - 1] - offset);
        FUZZ_ASSERT(len <= CHUNK);
        for (size_t i = 0; i < len; i++)
                p[i] = src_byte(offset + i);
        return 0;
}

static int fz_acked(void *userdata, uint64_t id, TgKpAckStatus status) {
        Fuzz *z = userdata;

        FUZZ_ASSERT(id >= 1 && id <= N_SRC);
        FUZZ_ASSERT(z->src_present[id - 1] && z->src_offered[id - 1]);
        FUZZ_ASSERT(status <= TG_KP_ACK_REFUSED);
        switch (status) {
        case TG_KP_ACK_STORED:
        case TG_KP_ACK_HAVE:
                z->src_present[id - 1] = false;
                break;
        case TG_KP_ACK_BAD_HASH:
                /* Offer it again, a couple of times. */
                if (z->src_retries++ < 3)
                        z->src_offered[id - 1] = false;
                break;
        default:
                break;
        }
        return 0;
}

static int fz_offered(void *userdata, const TgKpOffer *o, uint64_t *ret_offset) {
        Fuzz *z = userdata;
        size_t i;

        FUZZ_ASSERT(o->kind >= 1 && o->kind <= 4);
        if (o->item_id == 0xdead)
                return -EIO; /* the sink breaks: the session ends, internal */
        for (i = 0; i < z->n_in; i++)
                if (z->in[i].id == o->item_id)
                        break;
        if (i < z->n_in) {
                if (z->in[i].stored)
                        return TG_KP_ANSWER_HAVE;
                if (z->in[i].size != o->size)
                        return TG_KP_ANSWER_REFUSE;
        } else {
                if (o->size > SINK_MAX_SIZE || z->n_in == SINK_SLOTS)
                        return TG_KP_ANSWER_REFUSE;
                z->in[z->n_in++] = (typeof(z->in[0])) { .id = o->item_id, .size = o->size,
                                                        /* some items arrive partly held */
                                                        .have = o->item_id % 5 == 4 ? o->size / 2 : 0 };
        }
        *ret_offset = z->in[i].have;
        return TG_KP_ANSWER_PULL;
}

static int fz_write(void *userdata, uint64_t id, uint64_t offset, const void *data, size_t len) {
        Fuzz *z = userdata;

        for (size_t i = 0; i < z->n_in; i++)
                if (z->in[i].id == id) {
                        FUZZ_ASSERT(!z->in[i].stored);
                        FUZZ_ASSERT(offset == z->in[i].have);
                        FUZZ_ASSERT(len <= z->in[i].size - offset);
                        FUZZ_ASSERT(len <= CHUNK);
                        if (id == 13)
                                return -ENOSPC; /* the rest is swallowed, refused */
                        z->in[i].have += len;
                        return 0;
                }
        FUZZ_ASSERT(!"write() for an item the sink never accepted");
        return -EIO;
}

static int fz_complete(void *userdata, const TgKpOffer *o, TgKpHashCheck check) {
        Fuzz *z = userdata;

        for (size_t i = 0; i < z->n_in; i++)
                if (z->in[i].id == o->item_id) {
                        FUZZ_ASSERT(!z->in[i].stored && !z->in[i].later);
                        FUZZ_ASSERT(z->in[i].have == z->in[i].size);
                        FUZZ_ASSERT(o->size == z->in[i].size);
                        FUZZ_ASSERT(check <= TG_KP_HASH_UNCHECKED);
                        if (check == TG_KP_HASH_MISMATCH) {
                                z->in[i].have = 0;
                                return TG_KP_ACK_BAD_HASH;
                        }
                        if (o->item_id % 3 == 1) {
                                z->in[i].later = true;
                                return TG_KP_COMPLETE_LATER;
                        }
                        z->in[i].stored = true;
                        return TG_KP_ACK_STORED;
                }
        FUZZ_ASSERT(!"complete() for an item the sink never accepted");
        return -EIO;
}

static const TgKpCallbacks fz_callbacks = {
        .next_offer = fz_next_offer,
        .read = fz_read,
        .acked = fz_acked,
        .offered = fz_offered,
        .write = fz_write,
        .complete = fz_complete,
};

static uint64_t next_rnd(Fuzz *z) {
        z->rng ^= z->rng << 13;
        z->rng ^= z->rng >> 7;
        z->rng ^= z->rng << 17;
        return z->rng;
}

/* ─── the decoder: whole versus pieces ─── */

typedef struct Decoded {
        TgBuf frames;  /* re-encoded */
        size_t used;   /* bytes taken until the end or the error */
        TgKpError error;
} Decoded;

static void decode(const uint8_t *s, size_t n, Fuzz *z, bool pieces, Decoded *ret) {
        TgKpDecoder d;
        size_t off = 0;

        tg_kp_decoder_init(&d, CHUNK);
        *ret = (Decoded) {};
        while (off < n && ret->error == TG_KP_OK) {
                size_t piece = pieces ? 1 + next_rnd(z) % MIN(n - off, (size_t) 97) : n - off;
                size_t end = off + piece;

                while (off < end) {
                        TgKpFrame f;
                        size_t used;

                        ret->error = tg_kp_decoder_push(&d, s + off, end - off, &used, &f);
                        FUZZ_ASSERT(used <= end - off);
                        off += used;
                        if (ret->error != TG_KP_OK)
                                break;
                        if (f.type == TG_KP_NONE) {
                                FUZZ_ASSERT(off == end);
                                break;
                        }
                        size_t before = ret->frames.size;
                        FUZZ_ASSERT(tg_kp_frame_encode(&f, &ret->frames) == TG_KP_OK);
                        FUZZ_ASSERT(ret->frames.size - before == tg_kp_frame_size(&f));
                }
                /* The decoder holds at most one frame. */
                FUZZ_ASSERT(tg_kp_decoder_pending(&d) <= TG_KP_LENGTH_SIZE + TG_KP_LENGTH_MAX);
                FUZZ_ASSERT(d.allocated <= TG_KP_LENGTH_MAX);
        }
        ret->used = off;
        tg_kp_decoder_done(&d);
}

static void check_decoder(const uint8_t *s, size_t n, Fuzz *z) {
        Decoded whole, pieces;

        decode(s, n, z, false, &whole);
        decode(s, n, z, true, &pieces);
        FUZZ_ASSERT(whole.error == pieces.error);
        FUZZ_ASSERT(whole.used == pieces.used);
        FUZZ_ASSERT(whole.frames.size == pieces.frames.size);
        /* Canonical: the frames are the input bytes, up to the last whole frame. */
        FUZZ_ASSERT(whole.frames.size <= whole.used);
        if (whole.frames.size > 0) {
                FUZZ_ASSERT(memcmp(whole.frames.data, pieces.frames.data, whole.frames.size) == 0);
                FUZZ_ASSERT(memcmp(whole.frames.data, s, whole.frames.size) == 0);
        }
        FUZZ_ASSERT(tg_kp_error_to_string(whole.error) != NULL);
        tg_buf_free(&whole.frames);
        tg_buf_free(&pieces.frames);
}

/* ─── the session ─── */

/* Write out everything the session has to say; all of it must decode. */
static void drain(TgKpSession *s, TgKpDecoder *check, uint8_t *last_type) {
        for (unsigned guard = 0;; guard++) {
                const uint8_t *p;
                size_t len;

                FUZZ_ASSERT(guard < 10000);
                (void) tg_kp_session_output(s, &p, &len);
                if (len == 0)
                        return;
                FUZZ_ASSERT(len <= TARGET + CHUNK + TG_KP_DATA_HEADER_SIZE + 4096);
                for (size_t off = 0; off < len;) {
                        TgKpFrame f;
                        size_t used;

                        FUZZ_ASSERT(tg_kp_decoder_push(check, p + off, len - off, &used, &f) == TG_KP_OK);
                        off += used;
                        if (f.type != TG_KP_NONE)
                                *last_type = f.type;
                }
                tg_kp_session_consumed(s, len);
        }
}

static void run_session(const uint8_t *s, size_t n, bool with_hello, Fuzz *z) {
        _cleanup_(tg_kp_session_freep) TgKpSession *ses = NULL;
        TgKpDecoder check;
        uint8_t last_type = TG_KP_NONE;
        uint64_t now = 1000 * USEC_PER_SEC;
        size_t off = 0;
        TgKpError e = TG_KP_OK;

        for (unsigned i = 0; i < N_SRC; i++)
                z->src_present[i] = true;
        FUZZ_ASSERT(tg_kp_session_new(&ses, &(TgKpConfig) {
                .role = TG_KP_ROLE_KEY,
                .id = "key-1",
                .max_chunk = CHUNK,
                .window = 4,
                .max_offers = 2,
                .output_target = TARGET,
                .callbacks = &fz_callbacks,
                .userdata = z,
        }) == 0);
        tg_kp_decoder_init(&check, CHUNK);
        tg_kp_session_tick(ses, now);
        if (with_hello)
                e = tg_kp_session_feed(ses, gateway_hello, sizeof gateway_hello);
        drain(ses, &check, &last_type);

        while (off < n && e == TG_KP_OK) {
                /* One frame, as far as its length prefix says, in up to three pieces. */
                size_t frame = n - off;
                if (frame >= 4)
                        frame = (size_t) MIN((uint64_t) frame, 4 + (uint64_t) tg_get_be32(s + off));
                while (frame > 0 && e == TG_KP_OK) {
                        size_t piece = next_rnd(z) % 3 == 0 ? 1 + next_rnd(z) % frame : frame;

                        e = tg_kp_session_feed(ses, s + off, piece);
                        off += piece;
                        frame -= piece;
                }
                if (e != TG_KP_OK)
                        break;
                /* Some time passes; the sink answers what it put off. */
                now += (next_rnd(z) % 8) * 5 * USEC_PER_SEC;
                tg_kp_session_tick(ses, now);
                FUZZ_ASSERT(tg_kp_session_next_tick(ses) >= now || tg_kp_session_next_tick(ses) == 0 ||
                            tg_kp_session_error(ses, NULL, NULL) != TG_KP_OK);
                for (size_t i = 0; i < z->n_in; i++)
                        if (z->in[i].later && next_rnd(z) % 2 == 0) {
                                z->in[i].later = false;
                                z->in[i].stored = true;
                                FUZZ_ASSERT(tg_kp_session_complete(ses, z->in[i].id, TG_KP_ACK_STORED) == 0);
                        }
                if (next_rnd(z) % 4 == 0)
                        tg_kp_session_kick(ses);
                drain(ses, &check, &last_type);
                e = tg_kp_session_error(ses, NULL, NULL);
        }

        drain(ses, &check, &last_type);
        if (e == TG_KP_OK) {
                tg_kp_session_shutdown(ses);
                e = TG_KP_SHUTTING_DOWN;
                drain(ses, &check, &last_type);
        }
        {
                uint16_t code;
                const char *text;

                FUZZ_ASSERT(tg_kp_session_error(ses, &code, &text) == e);
                FUZZ_ASSERT(text && strlen(text) <= TG_KP_ERROR_TEXT_MAX);
                for (const char *c = text; *c; c++)
                        FUZZ_ASSERT(*c >= 0x20 && *c < 0x7f);
                /* Our own death is announced; the peer's is not answered. */
                if (e != TG_KP_PEER_ERROR) {
                        FUZZ_ASSERT(last_type == TG_KP_ERROR);
                        FUZZ_ASSERT(code == tg_kp_error_code(e));
                }
        }
        FUZZ_ASSERT(tg_kp_session_finished(ses));
        FUZZ_ASSERT(tg_kp_decoder_pending(&check) == 0);
        FUZZ_ASSERT(tg_kp_session_feed(ses, gateway_hello, sizeof gateway_hello) == e);
        tg_kp_decoder_done(&check);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Fuzz z = {};

        if (!src_ready) {
                for (unsigned i = 0; i < N_SRC; i++) {
                        uint8_t *b = malloc(src_size[i] + 1);
                        FUZZ_ASSERT(b);
                        for (uint64_t j = 0; j < src_size[i]; j++)
                                b[j] = src_byte(j);
                        FUZZ_ASSERT(tg_kp_sha256(b, src_size[i], src_sha[i]) == 0);
                        free(b);
                }
                src_ready = true;
        }
        if (size < 1)
                return 0;
        z.rng = ((uint64_t) data[0] >> 1) * UINT64_C(0x9e3779b97f4a7c15) + size + 1;

        check_decoder(data + 1, size - 1, &z);
        run_session(data + 1, size - 1, data[0] & 1, &z);
        return 0;
}
