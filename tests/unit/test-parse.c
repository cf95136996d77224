/* SPDX-License-Identifier: MIT */
#include "tg-parse.h"
#include "tg-test.h"

#define SENTINEL UINT64_C(0x5a5a5a5a5a5a5a5a)

static void test_bool(void) {
        static const char *const yes[] = { "1", "yes", "YES", "y", "true", "True", "t", "on", "ON" };
        static const char *const no[] = { "0", "no", "No", "n", "false", "FALSE", "f", "off", "Off" };
        static const char *const bad[] = { "", "2", "yess", "enable", " yes", "yes ", "o", "-1", "nope" };
        bool b;

        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                b = false;
                assert_ok(tg_parse_bool(yes[i], &b));
                assert_se(b);
        }
        for (size_t i = 0; i < ELEMENTSOF(no); i++) {
                b = true;
                assert_ok(tg_parse_bool(no[i], &b));
                assert_se(!b);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                b = true;
                assert_eq(tg_parse_bool(bad[i], &b), -EINVAL);
                assert_se(b); /* untouched on failure */
        }
}

static void test_uint64(void) {
        uint64_t v;
        unsigned u;

        assert_ok(tg_parse_uint64("0", &v));
        assert_eq(v, UINT64_C(0));
        assert_ok(tg_parse_uint64("007", &v));
        assert_eq(v, UINT64_C(7));
        assert_ok(tg_parse_uint64("18446744073709551615", &v));
        assert_eq(v, UINT64_MAX);

        v = SENTINEL;
        assert_eq(tg_parse_uint64("18446744073709551616", &v), -ERANGE);
        assert_eq(tg_parse_uint64("18446744073709551620", &v), -ERANGE);
        assert_eq(tg_parse_uint64("99999999999999999999999", &v), -ERANGE);
        assert_eq(v, SENTINEL);

        static const char *const bad[] = { "", "-1", "+1", " 1", "1 ", "0x10", "1.5", "1e3", "12a", "a" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                assert_eq(tg_parse_uint64(bad[i], &v), -EINVAL);
                assert_eq(v, SENTINEL);
        }

        assert_ok(tg_parse_unsigned("4294967295", &u));
        assert_eq(u, 4294967295u);
        u = 17;
        assert_eq(tg_parse_unsigned("4294967296", &u), -ERANGE);
        assert_eq(tg_parse_unsigned("-5", &u), -EINVAL);
        assert_eq(u, 17u);
}

static void test_size(void) {
        static const struct {
                const char *s;
                uint64_t v;
        } good[] = {
                { "0", 0 },
                { "512", 512 },
                { "10B", 10 },
                { "64K", 64 * 1024 },
                { "16M", 16 * 1024 * 1024 },
                { "1G", UINT64_C(1073741824) },
                { "2T", UINT64_C(2) << 40 },
                { "16777215T", UINT64_MAX - ((UINT64_C(1) << 40) - 1) },
                { "18446744073709551615", UINT64_MAX },
        };
        static const char *const bad[] = { "", "K", "12X", "1KB", "1 K", "-1K", "1.5G", " 64K", "64K " };
        uint64_t v;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                v = SENTINEL;
                assert_ok(tg_parse_size(good[i].s, &v));
                assert_eq(v, good[i].v);
        }
        v = SENTINEL;
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_eq(tg_parse_size(bad[i], &v), -EINVAL);
        /* 2^24 T and 2^34 G are exactly 2^64: one past the largest size. */
        assert_eq(tg_parse_size("16777216T", &v), -ERANGE);
        assert_eq(tg_parse_size("17179869184G", &v), -ERANGE);
        assert_eq(tg_parse_size("18446744073709551616", &v), -ERANGE);
        assert_eq(tg_parse_size("18446744073709551615K", &v), -ERANGE);
        assert_eq(v, SENTINEL);
}

static void test_timespan(void) {
        static const struct {
                const char *s;
                uint64_t unit;
                uint64_t v;
        } good[] = {
                { "250ms", USEC_PER_SEC, 250 * USEC_PER_MSEC },
                { "250msec", USEC_PER_SEC, 250 * USEC_PER_MSEC },
                { "100us", USEC_PER_SEC, 100 },
                { "100usec", USEC_PER_SEC, 100 },
                { "5s", USEC_PER_SEC, 5 * USEC_PER_SEC },
                { "5sec", USEC_PER_SEC, 5 * USEC_PER_SEC },
                { "1min", USEC_PER_SEC, 60 * USEC_PER_SEC },
                { "2h", USEC_PER_SEC, 7200 * USEC_PER_SEC },
                { "7d", USEC_PER_SEC, 7 * 86400 * USEC_PER_SEC },
                { "1w", USEC_PER_SEC, 7 * 86400 * USEC_PER_SEC },
                { "1h 30min", USEC_PER_SEC, 5400 * USEC_PER_SEC },
                { "1h30min", USEC_PER_SEC, 5400 * USEC_PER_SEC },
                { "  1h   30min  ", USEC_PER_SEC, 5400 * USEC_PER_SEC },
                { "1s 500ms", USEC_PER_SEC, 1500 * USEC_PER_MSEC },
                /* A bare number is taken in the caller's default unit. */
                { "5", USEC_PER_SEC, 5 * USEC_PER_SEC },
                { "5", USEC_PER_MSEC, 5 * USEC_PER_MSEC },
                { "5", 1, 5 },
                { "0", USEC_PER_SEC, 0 },
                { "1 2", USEC_PER_SEC, 3 * USEC_PER_SEC },
                { "infinity", USEC_PER_SEC, USEC_INFINITY },
                /* The largest span still representable. */
                { "18446744073709551615us", USEC_PER_SEC, UINT64_MAX },
                { "30500568w", USEC_PER_SEC, UINT64_C(30500568) * 7 * 86400 * USEC_PER_SEC },
        };
        static const char *const bad[] = {
                "", " ", "ms", "-1", "-1s", "+1s", "5x", "1m", "1 m", "1.5s", "s5", "infinityx", "Infinity",
                "1hour", "1mins", "5ss",
        };
        uint64_t v;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                v = SENTINEL;
                assert_ok(tg_parse_timespan(good[i].s, good[i].unit, &v));
                assert_eq(v, good[i].v);
        }
        v = SENTINEL;
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                int r = tg_parse_timespan(bad[i], USEC_PER_SEC, &v);
                if (r != -EINVAL)
                        fprintf(stderr, "input \"%s\"\n", bad[i]);
                assert_eq(r, -EINVAL);
        }
        /* Overflow in the digits, in one term, and in the sum of terms. */
        assert_eq(tg_parse_timespan("18446744073709551616us", USEC_PER_SEC, &v), -ERANGE);
        assert_eq(tg_parse_timespan("30500569w", USEC_PER_SEC, &v), -ERANGE);
        assert_eq(tg_parse_timespan("18446744073709551615s", USEC_PER_SEC, &v), -ERANGE);
        assert_eq(tg_parse_timespan("18446744073709551615", USEC_PER_MSEC, &v), -ERANGE);
        assert_eq(tg_parse_timespan("30500568w 30500568w", USEC_PER_SEC, &v), -ERANGE);
        assert_eq(tg_parse_timespan("18446744073709551615us 1us", USEC_PER_SEC, &v), -ERANGE);
        assert_eq(v, SENTINEL);
}

static void test_format_timespan(void) {
        static const struct {
                uint64_t v;
                const char *s;
        } cases[] = {
                { 0, "0us" },
                { 1, "1us" },
                { 1500, "1500us" },
                { 10 * USEC_PER_MSEC, "10ms" },
                { 1500 * USEC_PER_MSEC, "1500ms" },
                { 5 * USEC_PER_SEC, "5s" },
                { 90 * USEC_PER_SEC, "90s" },
                { 120 * USEC_PER_SEC, "2min" },
                { 5400 * USEC_PER_SEC, "90min" },
                { 3600 * USEC_PER_SEC, "1h" },
                { 86400 * USEC_PER_SEC, "1d" },
                { 30 * 86400 * USEC_PER_SEC, "30d" },
                { 7 * 86400 * USEC_PER_SEC, "1w" },
                { 14 * 86400 * USEC_PER_SEC, "2w" },
                { USEC_INFINITY, "infinity" },
                { UINT64_MAX - 1, "18446744073709551614us" },
        };
        char buf[64];

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                uint64_t back;

                assert_se(tg_format_timespan(buf, sizeof buf, cases[i].v) == buf);
                assert_streq(buf, cases[i].s);
                /* What we print, we parse back to the same value. */
                assert_ok(tg_parse_timespan(buf, USEC_PER_SEC, &back));
                assert_eq(back, cases[i].v);
        }

        /* A short buffer is truncated, still NUL-terminated. */
        memset(buf, 'x', sizeof buf);
        tg_format_timespan(buf, 4, 30 * 86400 * USEC_PER_SEC);
        assert_streq(buf, "30d");
        tg_format_timespan(buf, 3, 30 * 86400 * USEC_PER_SEC);
        assert_streq(buf, "30");
}

TG_TEST_MAIN(TEST(bool), TEST(uint64), TEST(size), TEST(timespan), TEST(format_timespan));
