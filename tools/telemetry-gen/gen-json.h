/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Append-only JSON text writers for payloads, several times faster than
 * snprintf("%.2f"): each returns the new end of the buffer. The caller owns
 * the bound — every payload writer in gen-topics.c has a fixed maximum size
 * well under GEN_BUFFER_SIZE, and the unit test checks it.
 */

#include <stdint.h>
#include <string.h>

/* A literal: J(p, "\"kmh\":") */
#define J(p, lit) json_raw((p), "" lit, sizeof(lit) - 1)

static inline char *json_raw(char *p, const char *s, size_t n) {
        memcpy(p, s, n);
        return p + n;
}

/* A string from one of our tables (no characters that need escaping). */
static inline char *json_str(char *p, const char *s) {
        size_t n = strlen(s);

        *p++ = '"';
        memcpy(p, s, n);
        p += n;
        *p++ = '"';
        return p;
}

static inline char *json_u64(char *p, uint64_t v) {
        char tmp[20];
        unsigned n = 0;

        do {
                tmp[n++] = (char) ('0' + v % 10);
                v /= 10;
        } while (v > 0);
        while (n > 0)
                *p++ = tmp[--n];
        return p;
}

static inline char *json_i64(char *p, int64_t v) {
        if (v < 0) {
                *p++ = '-';
                return json_u64(p, -(uint64_t) v);
        }
        return json_u64(p, (uint64_t) v);
}

/* v rounded to `decimals` (0–6) places; "-0.00" comes out as "0.00". Always
 * inlined: with `decimals` a constant, the divisions become multiplications. */
static inline __attribute__((always_inline)) char *json_fixed(char *p, double v, unsigned decimals) {
        static const double scale[] = { 1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6 };
        static const uint64_t iscale[] = { 1, 10, 100, 1000, 10000, 100000, 1000000 };
        double s = v * scale[decimals];
        int64_t r = (int64_t) (s < 0 ? s - 0.5 : s + 0.5);
        uint64_t a, frac;

        if (r < 0) {
                *p++ = '-';
                a = -(uint64_t) r;
        } else
                a = (uint64_t) r;
        p = json_u64(p, a / iscale[decimals]);
        if (decimals == 0)
                return p;
        *p++ = '.';
        frac = a % iscale[decimals];
        for (unsigned i = decimals; i > 0; i--) {
                p[i - 1] = (char) ('0' + frac % 10);
                frac /= 10;
        }
        return p + decimals;
}

static inline char *json_bool(char *p, int b) {
        return b ? J(p, "true") : J(p, "false");
}
