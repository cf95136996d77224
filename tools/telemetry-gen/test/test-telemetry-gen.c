/* SPDX-License-Identifier: MIT */

/*
 * The generator's promises, checked without a classifier: every payload is
 * valid JSON within its topic's size range and 32–512 bytes; topics are valid
 * TGR1 topics; a seed reproduces the same bytes; signals move; the reference
 * mix is 20/80 by payload bytes within ±1 %; the drive mix keeps its
 * frequencies.
 */

#include <stdio.h>
#include <stdlib.h>

#include "gen-topics.h"
#include "tg-macro.h"
#include "tg-record.h"

#define check(expr, ...)                                                                    \
        do {                                                                                \
                if (!(expr)) {                                                              \
                        fprintf(stderr, "%s:%d: %s: check failed: %s: ", __FILE__, __LINE__, \
                                __func__, #expr);                                           \
                        fprintf(stderr, __VA_ARGS__);                                       \
                        fputc('\n', stderr);                                                \
                        abort();                                                            \
                }                                                                           \
        } while (0)

/* ---- a strict JSON (RFC 8259) recogniser, enough for our payloads -------- */

typedef struct Scan {
        const char *p, *end;
        unsigned depth;
} Scan;

static bool json_value(Scan *s);

static void skip_ws(Scan *s) {
        while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
                s->p++;
}

static bool json_string(Scan *s) {
        if (s->p >= s->end || *s->p != '"')
                return false;
        for (s->p++; s->p < s->end; s->p++) {
                unsigned char c = (unsigned char) *s->p;
                if (c == '"') {
                        s->p++;
                        return true;
                }
                if (c < 0x20)
                        return false;
                if (c == '\\') {
                        s->p++;
                        if (s->p >= s->end || !strchr("\"\\/bfnrtu", *s->p))
                                return false;
                }
        }
        return false;
}

static bool json_number(Scan *s) {
        const char *start = s->p;

        if (s->p < s->end && *s->p == '-')
                s->p++;
        if (s->p >= s->end || *s->p < '0' || *s->p > '9')
                return false;
        if (*s->p == '0' && s->p + 1 < s->end && s->p[1] >= '0' && s->p[1] <= '9')
                return false; /* no leading zeros */
        while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
                s->p++;
        if (s->p < s->end && *s->p == '.') {
                s->p++;
                if (s->p >= s->end || *s->p < '0' || *s->p > '9')
                        return false;
                while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
                        s->p++;
        }
        return s->p > start;
}

static bool json_literal(Scan *s, const char *lit) {
        size_t n = strlen(lit);

        if ((size_t) (s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
                return false;
        s->p += n;
        return true;
}

static bool json_container(Scan *s, char close, bool object) {
        s->p++; /* the opening bracket */
        if (++s->depth > 16)
                return false;
        skip_ws(s);
        if (s->p < s->end && *s->p == close) {
                s->p++;
                s->depth--;
                return true;
        }
        for (;;) {
                skip_ws(s);
                if (object) {
                        if (!json_string(s))
                                return false;
                        skip_ws(s);
                        if (s->p >= s->end || *s->p++ != ':')
                                return false;
                }
                if (!json_value(s))
                        return false;
                skip_ws(s);
                if (s->p >= s->end)
                        return false;
                if (*s->p == ',') {
                        s->p++;
                        continue;
                }
                if (*s->p++ != close)
                        return false;
                s->depth--;
                return true;
        }
}

static bool json_value(Scan *s) {
        skip_ws(s);
        if (s->p >= s->end)
                return false;
        switch (*s->p) {
        case '{':
                return json_container(s, '}', true);
        case '[':
                return json_container(s, ']', false);
        case '"':
                return json_string(s);
        case 't':
                return json_literal(s, "true");
        case 'f':
                return json_literal(s, "false");
        case 'n':
                return json_literal(s, "null");
        default:
                return json_number(s);
        }
}

static bool json_valid_object(const char *buf, size_t n) {
        Scan s = { .p = buf, .end = buf + n };

        if (n == 0 || buf[0] != '{' || !json_value(&s))
                return false;
        skip_ws(&s);
        return s.p == s.end;
}

/* -------------------------------------------------------------------------- */

static void test_validator(void) {
        static const char *const good[] = { "{}", "{\"a\":[1,-2.50,0.0],\"b\":{\"c\":true}}", "{\"x\":\"导航\"}" };
        static const char *const bad[] = { "{", "{\"a\":}", "{\"a\":01}", "{\"a\":1,}", "{\"a\":1.}", "[1]", "{} x" };

        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                check(json_valid_object(good[i], strlen(good[i])), "%s", good[i]);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                check(!json_valid_object(bad[i], strlen(bad[i])), "%s", bad[i]);
}

static void test_topics(void) {
        for (unsigned i = 0; i < _GEN_TOPIC_MAX; i++) {
                const GenTopic *t = &gen_topics[i];
                check(tg_topic_validate(t->name, strlen(t->name)) == TG_RECORD_OK, "%s", t->name);
                check(t->min_size >= GEN_PAYLOAD_MIN && t->max_size <= GEN_PAYLOAD_MAX, "%s", t->name);
                check(t->drive_hz > 0, "%s", t->name);
        }
        check(gen_mix_from_string("reference") == GEN_MIX_REFERENCE, "reference");
        check(gen_mix_from_string("drive") == GEN_MIX_DRIVE, "drive");
        check((int) gen_mix_from_string("bogus") < 0, "bogus");
}

/* Every payload of a long run: valid JSON, in range, and the buffer bound holds. */
static void check_payloads(GenMix mix, uint64_t seed, unsigned records) {
        static Gen g;
        char buf[GEN_BUFFER_SIZE + 1];

        gen_init(&g, mix, seed);
        for (unsigned n = 0; n < records; n++) {
                GenTopicId id;
                size_t size;

                buf[GEN_BUFFER_SIZE] = 0x5a;
                size = gen_next(&g, &id, buf);
                check(buf[GEN_BUFFER_SIZE] == 0x5a, "buffer overrun");
                check(size >= gen_topics[id].min_size && size <= gen_topics[id].max_size,
                      "%s: %zu bytes, range %u–%u: %.*s", gen_topics[id].name, size, gen_topics[id].min_size,
                      gen_topics[id].max_size, (int) size, buf);
                check(json_valid_object(buf, size), "%s: %.*s", gen_topics[id].name, (int) size, buf);
        }
        for (unsigned i = 0; i < _GEN_TOPIC_MAX; i++)
                check(g.stats[i].records > 0, "%s never written (mix %s, seed %" PRIu64 ")", gen_topics[i].name,
                      gen_mix_to_string(mix), seed);
}

static void test_payloads(void) {
        for (uint64_t seed = 1; seed <= 3; seed++) {
                check_payloads(GEN_MIX_REFERENCE, seed, 200000);
                check_payloads(GEN_MIX_DRIVE, seed, 200000);
        }
}

static uint64_t fnv1a(uint64_t h, const char *p, size_t n) {
        for (size_t i = 0; i < n; i++) {
                h ^= (uint8_t) p[i];
                h *= UINT64_C(1099511628211);
        }
        return h;
}

static uint64_t run_hash(GenMix mix, uint64_t seed, unsigned records) {
        static Gen g;
        char buf[GEN_BUFFER_SIZE];
        uint64_t h = UINT64_C(1469598103934665603);

        gen_init(&g, mix, seed);
        for (unsigned n = 0; n < records; n++) {
                GenTopicId id;
                size_t size = gen_next(&g, &id, buf);
                h = fnv1a(h, gen_topics[id].name, strlen(gen_topics[id].name));
                h = fnv1a(h, buf, size);
        }
        return h;
}

static void test_deterministic(void) {
        for (unsigned m = 0; m < _GEN_MIX_MAX; m++) {
                check(run_hash(m, 42, 50000) == run_hash(m, 42, 50000), "seed 42 not reproducible");
                check(run_hash(m, 42, 50000) != run_hash(m, 43, 50000), "seeds 42 and 43 agree");
        }
}

/* Random walks, not constants: speed and pack voltage take many values, and
 * consecutive values stay close (no white noise). */
static void test_signals_move(void) {
        static Gen g;
        char buf[GEN_BUFFER_SIZE];
        double prev = -1, max_step = 0;
        char seen[2048] = {};
        unsigned distinct = 0, speeds = 0;

        gen_init(&g, GEN_MIX_DRIVE, 7);
        while (speeds < 20000) {
                GenTopicId id;
                size_t size = gen_next(&g, &id, buf);
                double kmh;

                buf[size] = '\0';
                if (id != GEN_TOPIC_SPEED)
                        continue;
                check(sscanf(buf, "{\"kmh\":%lf", &kmh) == 1, "%s", buf);
                speeds++;
                if (!seen[(unsigned) (kmh * 10) % sizeof seen]++)
                        distinct++;
                if (prev >= 0 && kmh - prev > max_step)
                        max_step = kmh - prev;
                prev = kmh;
        }
        check(distinct > 200, "only %u distinct speeds", distinct);
        /* 100 ms apart: no car gains more than ~1.5 km/h. */
        check(max_step < 2, "speed jumped by %.2f km/h in 100 ms", max_step);
}

static void test_reference_share(void) {
        static Gen g;
        char buf[GEN_BUFFER_SIZE];

        for (uint64_t seed = 1; seed <= 3; seed++) {
                double share;

                gen_init(&g, GEN_MIX_REFERENCE, seed);
                for (unsigned n = 0; n < 1000000; n++) {
                        GenTopicId id;
                        (void) gen_next(&g, &id, buf);
                }
                share = gen_realtime_share(&g);
                check(share > 0.19 && share < 0.21, "seed %" PRIu64 ": real-time share %.4f", seed, share);
                /* Within a class, topics keep their drive proportions: speed twice position. */
                check(g.stats[GEN_TOPIC_SPEED].records > 1.9 * g.stats[GEN_TOPIC_POSITION].records &&
                              g.stats[GEN_TOPIC_SPEED].records < 2.1 * g.stats[GEN_TOPIC_POSITION].records,
                      "speed %" PRIu64 " position %" PRIu64, g.stats[GEN_TOPIC_SPEED].records,
                      g.stats[GEN_TOPIC_POSITION].records);
        }
}

static double root(double x) {
        double y = x > 1 ? x : 1;

        for (unsigned i = 0; i < 40; i++)
                y = 0.5 * (y + x / y);
        return y;
}

static void test_drive_frequencies(void) {
        static Gen g;
        char buf[GEN_BUFFER_SIZE];

        gen_init(&g, GEN_MIX_DRIVE, 5);
        while (gen_next_time(&g) < 3600) {
                GenTopicId id;
                (void) gen_next(&g, &id, buf);
        }
        for (unsigned i = 0; i < _GEN_TOPIC_MAX; i++) {
                double expect = gen_topics[i].drive_hz * 3600, got = (double) g.stats[i].records;
                /* Periodic topics exactly; events (Poisson) within 5 standard deviations. */
                double tolerance = gen_topics[i].irregular ? 5 * root(expect) + 1 : 1.5;
                check(got > expect - tolerance && got < expect + tolerance,
                      "%s: %.0f records in an hour, expected %.0f", gen_topics[i].name, got, expect);
        }
}

int main(void) {
        test_validator();
        test_topics();
        test_payloads();
        test_deterministic();
        test_signals_move();
        test_reference_share();
        test_drive_frequencies();
        printf("test-telemetry-gen: all checks passed\n");
        return 0;
}
