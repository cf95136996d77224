/* SPDX-License-Identifier: MIT */
/*
 * The CAN frame codec and the DBC signal code (lib/tg-can.h), driven by
 * what arrives from a bus and by signal layouts from a configuration.
 *
 * Input: a 36-byte header that makes a signal layout and values, then the
 * datagram as tg_can_recv() would have read it. Shorter inputs are a
 * datagram only.
 *
 *   0      bit 0 byte order, bit 1 signed, bits 2-7 frame length for check()
 *   1-2    start bit (little endian u16: 0…65535, mostly impossible)
 *   3      length (0…255)
 *   4-11   scale (double, host order)
 *   12-19  offset (double)
 *   20-27  a physical value to encode (double)
 *   28-35  a raw value to put (int64)
 *
 * Invariants: a datagram decodes only if it is 16 or 72 bytes with a valid
 * len, and then re-encodes to the same frame; the signal calls read and
 * write only data[0…len) (the frame is allocated to end exactly there, so
 * ASan sees one byte more); a layout check() accepts can be read, written
 * and read back: put_raw(x) then raw() gives x, encode(v) then decode()
 * gives v within half a scale step (or the end of the range it was clamped
 * to), and no bit outside the signal changes.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "fuzz.h"
#include "tg-can.h"

#define HEADER 36

static const uint8_t frame_lens[] = { 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64 };

static void check_datagram(const uint8_t *data, size_t size, TgCanFrame *ret, bool *ret_ok) {
        uint8_t wire[TG_CANFD_MTU];
        char text[TG_CAN_FRAME_STRING_MAX];
        TgCanFrame f, g;
        int r, n;

        *ret_ok = false;
        r = tg_can_frame_decode(data, size, &f);
        if (r < 0) {
                FUZZ_ASSERT(r == -EBADMSG);
                return;
        }
        FUZZ_ASSERT(size == TG_CAN_MTU || size == TG_CANFD_MTU);
        FUZZ_ASSERT(f.fd == (size == TG_CANFD_MTU));
        FUZZ_ASSERT(tg_can_len_valid(f.len, f.fd));
        FUZZ_ASSERT(data[4] == f.len);
        FUZZ_ASSERT(memcmp(data, &f.id, 4) == 0);
        FUZZ_ASSERT(memcmp(data + 8, f.data, f.len) == 0);
        for (unsigned i = f.len; i < TG_CANFD_MAX_DLEN; i++)
                FUZZ_ASSERT(f.data[i] == 0);

        n = tg_can_frame_encode(&f, wire, sizeof wire);
        FUZZ_ASSERT(n == (int) size);
        FUZZ_ASSERT(memcmp(wire, data, 5) == 0); /* id and len */
        FUZZ_ASSERT(memcmp(wire + 8, data + 8, f.len) == 0);
        FUZZ_ASSERT(tg_can_frame_decode(wire, (size_t) n, &g) == 0);
        FUZZ_ASSERT(g.id == f.id && g.len == f.len && g.fd == f.fd && g.flags == f.flags);
        FUZZ_ASSERT(memcmp(g.data, f.data, sizeof f.data) == 0);

        FUZZ_ASSERT(strlen(tg_can_frame_format(&f, text, sizeof text)) < sizeof text);
        *ret = f;
        *ret_ok = true;
}

/* A frame whose allocation ends right after data[len - 1]. */
static TgCanFrame *frame_exact(const TgCanFrame *from) {
        TgCanFrame *f = malloc(offsetof(TgCanFrame, data) + from->len + (from->len == 0));

        if (!f)
                abort();
        f->id = from->id;
        f->len = from->len;
        f->fd = from->fd;
        f->flags = from->flags;
        memcpy(f->data, from->data, from->len);
        return f;
}

static double get_double(const uint8_t *p) {
        double d;
        memcpy(&d, p, sizeof d);
        return d;
}

static bool sane(const TgCanSignal *s, double v) {
        return isnormal(s->scale) && fabs(s->scale) >= 1e-12 && fabs(s->scale) <= 1e12 && fabs(s->offset) <= 1e15 &&
               isfinite(v) && fabs(v) <= 1e200;
}

static void check_signal(const TgCanSignal *s, unsigned frame_len, const TgCanFrame *template, double v,
                         int64_t raw_in) {
        TgCanFrame *f = frame_exact(template), *mask;
        char reason[128];
        int64_t raw, raw_min, raw_max;
        uint8_t before[TG_CANFD_MAX_DLEN];
        bool fits, covers;
        double d;
        int r;

        r = tg_can_signal_check(s, frame_len, reason, sizeof reason);
        FUZZ_ASSERT(r == 0 || r == -EINVAL);
        FUZZ_ASSERT(strlen(reason) < sizeof reason);
        FUZZ_ASSERT((r == 0) == (reason[0] == '\0'));
        fits = r == 0;
        covers = fits && f->len >= frame_len;

        if (s->length >= 1 && s->length <= 64) {
                raw_max = s->is_signed ? (int64_t) ((UINT64_C(1) << (s->length - 1)) - 1)
                                       : (s->length == 64 ? -1 : (int64_t) ((UINT64_C(1) << s->length) - 1));
                raw_min = s->is_signed ? -raw_max - 1 : 0;
        } else
                raw_min = raw_max = 0;

        /* reading */
        r = tg_can_signal_raw(s, f, &raw);
        FUZZ_ASSERT(r == 0 || r == -EINVAL || r == -EBADMSG);
        if (covers)
                FUZZ_ASSERT(r == 0);
        if (r == 0 && s->length < 64) {
                if (s->is_signed)
                        FUZZ_ASSERT(raw >= raw_min && raw <= raw_max);
                else
                        FUZZ_ASSERT(raw >= 0 && raw <= raw_max);
        }
        FUZZ_ASSERT(tg_can_signal_decode(s, f, &d) == r);

        /* the signal's bits: all ones into an empty frame of the same length */
        mask = frame_exact(&(TgCanFrame) { .len = f->len, .fd = f->fd });
        memset(mask->data, 0, mask->len);
        r = tg_can_signal_put_raw(s, s->is_signed || s->length == 64 ? -1 : raw_max, mask);
        if (r == 0) {
                unsigned bits = 0;
                for (unsigned i = 0; i < mask->len; i++)
                        bits += (unsigned) __builtin_popcount(mask->data[i]);
                FUZZ_ASSERT(bits == s->length);
        }

        /* writing a raw value */
        memcpy(before, f->data, f->len);
        r = tg_can_signal_put_raw(s, raw_in, f);
        FUZZ_ASSERT(r == 0 || r == -EINVAL || r == -ERANGE);
        if (r == 0) {
                FUZZ_ASSERT(tg_can_signal_raw(s, f, &raw) == 0);
                FUZZ_ASSERT(raw == raw_in);
                for (unsigned i = 0; i < f->len; i++)
                        FUZZ_ASSERT(((f->data[i] ^ before[i]) & ~mask->data[i]) == 0);
        } else if (r == -ERANGE)
                FUZZ_ASSERT(s->length < 64 && (raw_in < raw_min || (s->is_signed ? raw_in > raw_max
                                                                                   : (uint64_t) raw_in > (uint64_t) raw_max)));

        /* writing a physical value */
        memcpy(before, f->data, f->len);
        r = tg_can_signal_encode(s, v, f);
        FUZZ_ASSERT(r == 0 || r == -EINVAL);
        if (covers && !isnan(v))
                FUZZ_ASSERT(r == 0);
        if (r == 0) {
                for (unsigned i = 0; i < f->len; i++)
                        FUZZ_ASSERT(((f->data[i] ^ before[i]) & ~mask->data[i]) == 0);
                FUZZ_ASSERT(tg_can_signal_decode(s, f, &d) == 0);
                if (covers && sane(s, v)) {
                        double lo_raw = s->is_signed ? (double) raw_min : 0,
                               hi_raw = s->is_signed ? (double) raw_max
                                                     : (s->length == 64 ? 18446744073709551615.0 : (double) raw_max);
                        double a = lo_raw * s->scale + s->offset, b = hi_raw * s->scale + s->offset;
                        double lo = fmin(a, b), hi = fmax(a, b);
                        double eps = 8 * DBL_EPSILON * (fabs(v) + fabs(s->offset) + fabs(d) + fabs(lo) + fabs(hi));

                        if (v < lo)
                                FUZZ_ASSERT(fabs(d - lo) <= fabs(s->scale) + eps);
                        else if (v > hi)
                                FUZZ_ASSERT(fabs(d - hi) <= fabs(s->scale) + eps);
                        else
                                FUZZ_ASSERT(fabs(d - v) <= fabs(s->scale) * 0.5 * (1 + 1e-9) + eps);
                }
        }
        free(mask);
        free(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const uint8_t *datagram = data;
        size_t datagram_size = size;
        TgCanFrame f = {};
        TgCanSignal s;
        uint16_t start;
        bool decoded;

        if (size >= HEADER) {
                datagram = data + HEADER;
                datagram_size = size - HEADER;
        }
        check_datagram(datagram, datagram_size, &f, &decoded);
        if (size < HEADER)
                return 0;

        if (!decoded) {
                /* not a frame: use the bytes as a frame's payload anyway */
                f = (TgCanFrame) { .id = 0x123, .len = (uint8_t) MIN(datagram_size, (size_t) TG_CANFD_MAX_DLEN) };
                f.fd = f.len > TG_CAN_MAX_DLEN;
                memcpy(f.data, datagram, f.len);
        }

        memcpy(&start, data + 1, sizeof start);
        s = (TgCanSignal) {
                .frame_id = 0x3C0,
                .byte_order = (data[0] & 1) ? TG_CAN_BIG_ENDIAN : TG_CAN_LITTLE_ENDIAN,
                .is_signed = data[0] & 2,
                .start_bit = start,
                .length = data[3],
                .scale = get_double(data + 4),
                .offset = get_double(data + 12),
        };
        {
                int64_t raw_in;
                memcpy(&raw_in, data + 28, sizeof raw_in);
                check_signal(&s, frame_lens[(data[0] >> 2) % sizeof frame_lens], &f, get_double(data + 20), raw_in);
        }
        return 0;
}
