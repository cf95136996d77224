/* SPDX-License-Identifier: MIT */
#include <float.h>
#include <linux/can.h>
#include <linux/can/error.h>
#include <math.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "tg-can.h"
#include "tg-test-proc.h"

/* ---- helpers ---- */

static uint64_t rng = UINT64_C(0x9E3779B97F4A7C15);

static uint64_t rnd(void) { /* xorshift64*: reproducible, no libc state */
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        return rng * UINT64_C(2685821657736338717);
}

static void put_id(uint8_t *p, uint32_t id) {
        memcpy(p, &id, sizeof id); /* host byte order, as the kernel has it */
}

static TgCanFrame frame8(const uint8_t d[8]) {
        TgCanFrame f = { .id = 0x123, .len = 8 };
        memcpy(f.data, d, 8);
        return f;
}

static TgCanSignal sig(unsigned start, unsigned length, TgCanByteOrder order, bool is_signed, double scale,
                       double offset) {
        return (TgCanSignal) { .frame_id = 0x123, .start_bit = start, .length = length, .byte_order = order,
                               .is_signed = is_signed, .scale = scale, .offset = offset };
}

/* A signal as a pointer, for calls: S(0, 8, LE, false, 1, 0). */
#define S(...) ((const TgCanSignal[]) { sig(__VA_ARGS__) })

#define LE TG_CAN_LITTLE_ENDIAN
#define BE TG_CAN_BIG_ENDIAN

static void assert_near(double a, double b, double tolerance) {
        if (!(fabs(a - b) <= tolerance)) {
                fprintf(stderr, "%.17g and %.17g differ by more than %.3g\n", a, b, tolerance);
                assert_se(fabs(a - b) <= tolerance);
        }
}

static int64_t raw_of(const TgCanSignal *s, const TgCanFrame *f) {
        int64_t v;
        assert_ok(tg_can_signal_raw(s, f, &v));
        return v;
}

static double value_of(const TgCanSignal *s, const TgCanFrame *f) {
        double v;
        assert_ok(tg_can_signal_decode(s, f, &v));
        return v;
}

/* ---- frames ---- */

static void test_len_valid(void) {
        for (unsigned len = 0; len <= 70; len++) {
                bool fd = len <= 8 || len == 12 || len == 16 || len == 20 || len == 24 || len == 32 || len == 48 ||
                          len == 64;
                assert_eq(tg_can_len_valid(len, false), len <= 8);
                assert_eq(tg_can_len_valid(len, true), fd);
        }
        assert_se(!tg_can_len_valid(255, true));
}

static void test_encode_classic(void) {
        TgCanFrame f = { .id = 0x123, .len = 3, .data = { 0x11, 0x22, 0x33, 0xaa /* past len */ } };
        uint8_t buf[TG_CANFD_MTU + 1], want[TG_CAN_MTU] = {};
        struct can_frame cf;

        put_id(want, 0x123);
        want[4] = 3;
        want[8] = 0x11, want[9] = 0x22, want[10] = 0x33;
        memset(buf, 0xcc, sizeof buf);
        assert_eq(tg_can_frame_encode(&f, buf, sizeof buf), TG_CAN_MTU);
        assert_memeq(buf, want, sizeof want);
        assert_eq(buf[TG_CAN_MTU], 0xcc);
        /* The same as the kernel's struct. */
        memcpy(&cf, buf, sizeof cf);
        assert_eq(cf.can_id, 0x123u);
        assert_eq(cf.len, 3);
        assert_eq(cf.data[2], 0x33);
        assert_eq(cf.data[3], 0);

        assert_eq(tg_can_frame_encode(&f, buf, TG_CAN_MTU), TG_CAN_MTU);
        assert_eq(tg_can_frame_encode(&f, buf, TG_CAN_MTU - 1), -EINVAL);

        /* 29-bit id, remote frame, error frame, empty frame */
        f = (TgCanFrame) { .id = 0x18DAF110 | CAN_EFF_FLAG, .len = 8, .data = { 1, 2, 3, 4, 5, 6, 7, 8 } };
        assert_eq(tg_can_frame_encode(&f, buf, sizeof buf), TG_CAN_MTU);
        memcpy(&cf, buf, sizeof cf);
        assert_eq(cf.can_id, 0x98DAF110u);
        f = (TgCanFrame) { .id = 0x7FF | CAN_RTR_FLAG, .len = 0 };
        assert_eq(tg_can_frame_encode(&f, buf, sizeof buf), TG_CAN_MTU);
        f = (TgCanFrame) { .id = CAN_ERR_FLAG | CAN_ERR_BUSOFF, .len = CAN_ERR_DLC };
        assert_eq(tg_can_frame_encode(&f, buf, sizeof buf), TG_CAN_MTU);
}

static void test_encode_fd(void) {
        TgCanFrame f = { .id = 0x18DAF110 | CAN_EFF_FLAG, .len = 12, .fd = true, .flags = CANFD_BRS };
        uint8_t buf[TG_CANFD_MTU + 1], want[TG_CANFD_MTU] = {};
        struct canfd_frame cfd;

        for (unsigned i = 0; i < TG_CANFD_MAX_DLEN; i++)
                f.data[i] = (uint8_t) (0xa0 + i); /* bytes past len are not sent */
        put_id(want, 0x98DAF110);
        want[4] = 12;
        want[5] = CANFD_BRS | CANFD_FDF;
        for (unsigned i = 0; i < 12; i++)
                want[8 + i] = (uint8_t) (0xa0 + i);
        memset(buf, 0xcc, sizeof buf);
        assert_eq(tg_can_frame_encode(&f, buf, sizeof buf), TG_CANFD_MTU);
        assert_memeq(buf, want, sizeof want);
        assert_eq(buf[TG_CANFD_MTU], 0xcc);
        memcpy(&cfd, buf, sizeof cfd);
        assert_eq(cfd.len, 12);
        assert_eq(cfd.flags, CANFD_BRS | CANFD_FDF);
        assert_eq(tg_can_frame_encode(&f, buf, TG_CANFD_MTU - 1), -EINVAL);

        /* An FD frame with up to 8 bytes is still 72 bytes on the wire. */
        f.len = 0;
        assert_eq(tg_can_frame_encode(&f, buf, sizeof buf), TG_CANFD_MTU);
        f.len = 64;
        f.flags = CANFD_BRS | CANFD_ESI | CANFD_FDF;
        assert_eq(tg_can_frame_encode(&f, buf, sizeof buf), TG_CANFD_MTU);
        assert_eq(buf[5], CANFD_BRS | CANFD_ESI | CANFD_FDF);
        assert_eq(buf[71], 0xa0 + 63);
}

static void test_encode_invalid(void) {
        static const TgCanFrame bad[] = {
                { .id = 0x123, .len = 9 },
                { .id = 0x123, .len = 64 },                         /* classic */
                { .id = 0x123, .len = 13, .fd = true },
                { .id = 0x123, .len = 65, .fd = true },
                { .id = 0x123, .len = 255, .fd = true },
                { .id = 0x123, .len = 1, .flags = CANFD_BRS },      /* flags on a classic frame */
                { .id = 0x123, .len = 1, .fd = true, .flags = 0x80 },
                { .id = 0x800, .len = 1 },                          /* 12 bits without EFF */
                { .id = 0x1FFFFFFF, .len = 1 },
                { .id = 0x123 | CAN_RTR_FLAG, .len = 0, .fd = true }, /* FD has no remote frames */
                { .id = CAN_ERR_FLAG | CAN_ERR_BUSOFF, .len = 8, .fd = true },
        };
        uint8_t buf[TG_CANFD_MTU];

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                fprintf(stderr, "  bad frame %zu\n", i);
                assert_eq(tg_can_frame_encode(&bad[i], buf, sizeof buf), -EINVAL);
        }
        assert_eq(tg_can_frame_encode(NULL, buf, sizeof buf), -EINVAL);
        assert_eq(tg_can_frame_encode(&bad[0], NULL, 72), -EINVAL);
}

static void test_decode(void) {
        uint8_t b[TG_CANFD_MTU + 8];
        TgCanFrame f;

        /* classic, reserved bytes and data past len ignored */
        memset(b, 0xff, sizeof b);
        put_id(b, 0x3C0);
        b[4] = 2;
        b[8] = 0x01, b[9] = 0x02;
        assert_ok(tg_can_frame_decode(b, TG_CAN_MTU, &f));
        assert_eq(f.id, 0x3C0u);
        assert_eq(f.len, 2);
        assert_se(!f.fd);
        assert_eq(f.flags, 0);
        assert_eq(f.data[0], 1);
        assert_eq(f.data[1], 2);
        for (unsigned i = 2; i < TG_CANFD_MAX_DLEN; i++)
                assert_eq(f.data[i], 0);

        /* len8_dlc (byte 7) says 9..15 for an 8-byte frame: still 8 bytes */
        b[4] = 8;
        b[7] = 15;
        assert_ok(tg_can_frame_decode(b, TG_CAN_MTU, &f));
        assert_eq(f.len, 8);
        for (unsigned len = 9; len <= 255; len++) {
                b[4] = (uint8_t) len;
                assert_eq(tg_can_frame_decode(b, TG_CAN_MTU, &f), -EBADMSG);
        }

        /* 11-bit ids only up to 0x7FF; 29-bit ids with EFF; error frames */
        b[4] = 1;
        put_id(b, 0x800);
        assert_eq(tg_can_frame_decode(b, TG_CAN_MTU, &f), -EBADMSG);
        put_id(b, 0x1FFFFFFF | CAN_EFF_FLAG);
        assert_ok(tg_can_frame_decode(b, TG_CAN_MTU, &f));
        assert_eq(f.id, 0x9FFFFFFFu);
        put_id(b, 0x7FF | CAN_RTR_FLAG);
        assert_ok(tg_can_frame_decode(b, TG_CAN_MTU, &f));
        put_id(b, CAN_ERR_FLAG | CAN_ERR_BUSOFF);
        b[4] = CAN_ERR_DLC;
        assert_ok(tg_can_frame_decode(b, TG_CAN_MTU, &f));
        assert_eq(f.id, CAN_ERR_FLAG | CAN_ERR_BUSOFF);

        /* FD: every valid length, flags other than BRS/ESI dropped */
        memset(b, 0xee, sizeof b);
        put_id(b, 0x123);
        b[5] = CANFD_BRS | CANFD_FDF | 0x80;
        for (unsigned len = 0; len <= 255; len++) {
                int r;

                b[4] = (uint8_t) len;
                r = tg_can_frame_decode(b, TG_CANFD_MTU, &f);
                if (!tg_can_len_valid(len, true)) {
                        assert_eq(r, -EBADMSG);
                        continue;
                }
                assert_ok(r);
                assert_se(f.fd);
                assert_eq(f.len, len);
                assert_eq(f.flags, CANFD_BRS);
                for (unsigned i = 0; i < TG_CANFD_MAX_DLEN; i++)
                        assert_eq(f.data[i], i < len ? 0xee : 0);
        }
        b[4] = 8;
        put_id(b, 0x123 | CAN_RTR_FLAG);
        assert_eq(tg_can_frame_decode(b, TG_CANFD_MTU, &f), -EBADMSG);
        put_id(b, CAN_ERR_FLAG | CAN_ERR_BUSOFF);
        assert_eq(tg_can_frame_decode(b, TG_CANFD_MTU, &f), -EBADMSG);

        /* sizes other than 16 and 72 */
        put_id(b, 0x123);
        b[4] = 0;
        static const size_t sizes[] = { 0, 1, 5, 8, 15, 17, 64, 71, 73, 80 };
        for (size_t i = 0; i < ELEMENTSOF(sizes); i++)
                assert_eq(tg_can_frame_decode(b, sizes[i], &f), -EBADMSG);
}

static void test_frame_round_trip(void) {
        for (unsigned i = 0; i < 20000; i++) {
                static const uint8_t fd_lens[] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64 };
                TgCanFrame f = {}, g;
                uint8_t buf[TG_CANFD_MTU];
                uint64_t x = rnd();
                int n;

                f.fd = x & 1;
                f.len = f.fd ? fd_lens[(x >> 1) % ELEMENTSOF(fd_lens)] : (uint8_t) ((x >> 1) % 9);
                f.flags = f.fd ? (uint8_t) ((x >> 8) & (CANFD_BRS | CANFD_ESI)) : 0;
                switch ((x >> 12) % 4) {
                case 0: f.id = (uint32_t) (x >> 20) & CAN_SFF_MASK; break;
                case 1: f.id = ((uint32_t) (x >> 20) & CAN_EFF_MASK) | CAN_EFF_FLAG; break;
                case 2: f.id = f.fd ? 0x100 : (((uint32_t) (x >> 20) & CAN_SFF_MASK) | CAN_RTR_FLAG); break;
                default: f.id = 0x7FF; break;
                }
                for (unsigned k = 0; k < f.len; k++)
                        f.data[k] = (uint8_t) rnd();
                n = tg_can_frame_encode(&f, buf, sizeof buf);
                assert_eq(n, f.fd ? TG_CANFD_MTU : TG_CAN_MTU);
                assert_ok(tg_can_frame_decode(buf, (size_t) n, &g));
                assert_eq(g.id, f.id);
                assert_eq(g.len, f.len);
                assert_eq(g.fd, f.fd);
                assert_eq(g.flags, f.flags);
                assert_memeq(g.data, f.data, sizeof f.data);
        }
}

static void test_format(void) {
        char s[TG_CAN_FRAME_STRING_MAX];
        TgCanFrame f = { .id = 0x3C0, .len = 3, .data = { 0x01, 0xab, 0xff } };

        assert_streq(tg_can_frame_format(&f, s, sizeof s), "3C0#01ABFF");
        f = (TgCanFrame) { .id = 0x18DAF110 | CAN_EFF_FLAG };
        assert_streq(tg_can_frame_format(&f, s, sizeof s), "18DAF110#");
        f = (TgCanFrame) { .id = 0x12 | CAN_RTR_FLAG };
        assert_streq(tg_can_frame_format(&f, s, sizeof s), "012#R");
        f = (TgCanFrame) { .id = 0x123, .fd = true, .flags = CANFD_BRS, .len = 12 };
        assert_streq(tg_can_frame_format(&f, s, sizeof s), "123##1000000000000000000000000");
        f = (TgCanFrame) { .id = CAN_ERR_FLAG | CAN_ERR_BUSOFF, .len = 8 };
        assert_streq(tg_can_frame_format(&f, s, sizeof s), "20000040#0000000000000000");
        f = (TgCanFrame) { .id = 0x123, .fd = true, .len = 64 };
        memset(f.data, 0xff, sizeof f.data);
        assert_eq(strlen(tg_can_frame_format(&f, s, sizeof s)), 3 + 3 + 128u);
        /* short buffers are cut, never overrun */
        assert_streq(tg_can_frame_format(&f, s, 5), "123#");
        assert_streq(tg_can_frame_format(&f, s, 1), "");
}

/* ---- signals ---- */

/* cantools' tests/files/dbc/socialledge.dbc, message SENSOR_SONARS (200),
 * little endian; the bytes are cantools' own test vectors
 * (test_socialledge_encode_decode_mux_0/_1), checked by hand too: mux 0|4,
 * err_count 4|12, then 12-bit fields at 16, 28, 40, 52, scale 0.1. */
static void test_signal_intel_cantools(void) {
        const TgCanSignal s[] = {
                sig(0, 4, LE, false, 1, 0),    sig(4, 12, LE, false, 1, 0),    sig(16, 12, LE, false, 0.1, 0),
                sig(28, 12, LE, false, 0.1, 0), sig(40, 12, LE, false, 0.1, 0), sig(52, 12, LE, false, 0.1, 0),
        };
        static const struct {
                double v[6];
                uint8_t data[8];
        } vectors[] = {
                { { 0, 1, 2, 3, 4, 5 }, { 0x10, 0x00, 0x14, 0xe0, 0x01, 0x28, 0x20, 0x03 } }, /* b'\x10\x00\x14\xe0\x01( \x03' */
                { { 1, 2, 3, 4, 5, 6 }, { 0x21, 0x00, 0x1e, 0x80, 0x02, 0x32, 0xc0, 0x03 } }, /* b'!\x00\x1e\x80\x022\xc0\x03' */
        };

        for (size_t i = 0; i < ELEMENTSOF(vectors); i++) {
                TgCanFrame f = { .id = 200, .len = 8 }, g = frame8(vectors[i].data);

                for (size_t k = 0; k < ELEMENTSOF(s); k++) {
                        assert_ok(tg_can_signal_check(&s[k], 8, NULL, 0));
                        assert_ok(tg_can_signal_encode(&s[k], vectors[i].v[k], &f));
                        assert_near(value_of(&s[k], &g), vectors[i].v[k], 1e-9);
                }
                assert_memeq(f.data, vectors[i].data, 8);
        }
}

/* cantools' tests/files/dbc/motohawk.dbc, ExampleMessage (0x1f0), big
 * endian: Enable 7|1@0+, AverageRadius 6|6@0+ (0.1,0), Temperature
 * 0|12@0- (0.01,250). The bytes are cantools' vectors
 * (test_motohawk_encode_decode, test_encode_decode_no_scaling_no_decode_choices,
 * the C generator's test with raw -2048), each worked out by hand as well:
 * Temperature's MSB is byte 0 bit 0, then byte 1, then bits 7…5 of byte 2. */
static void test_signal_motorola_cantools(void) {
        const TgCanSignal enable = sig(7, 1, BE, false, 1, 0), radius = sig(6, 6, BE, false, 0.1, 0),
                          temperature = sig(0, 12, BE, true, 0.01, 250);
        const TgCanSignal raw_temperature = sig(0, 12, BE, true, 1, 0);
        static const struct {
                double enable, radius, temperature;
                uint8_t data[8];
        } vectors[] = {
                { 1, 3.2, 250.55, { 0xc0, 0x06, 0xe0 } }, /* raw 1, 32, 55 */
                { 0, 0, 229.53, { 0x01, 0x00, 0x20 } },   /* raw 0, 0, -2047 */
                { 0, 0, 229.52, { 0x01, 0x00, 0x00 } },   /* raw 0, 0, -2048 */
                { 1, 0.2, 250.03, { 0x84, 0x00, 0x60 } }, /* raw 1, 2, 3 */
        };

        assert_ok(tg_can_signal_check(&temperature, 8, NULL, 0));
        for (size_t i = 0; i < ELEMENTSOF(vectors); i++) {
                TgCanFrame f = { .id = 0x1f0, .len = 8 }, g = frame8(vectors[i].data);

                assert_ok(tg_can_signal_encode(&enable, vectors[i].enable, &f));
                assert_ok(tg_can_signal_encode(&radius, vectors[i].radius, &f));
                assert_ok(tg_can_signal_encode(&temperature, vectors[i].temperature, &f));
                assert_memeq(f.data, vectors[i].data, 8);
                assert_near(value_of(&enable, &g), vectors[i].enable, 1e-9);
                assert_near(value_of(&radius, &g), vectors[i].radius, 1e-9);
                assert_near(value_of(&temperature, &g), vectors[i].temperature, 1e-9);
        }
        {
                TgCanFrame g = frame8((const uint8_t[8]) { 0x01, 0x00, 0x00 });
                assert_eq(raw_of(&raw_temperature, &g), -2048);
                g = frame8((const uint8_t[8]) { 0xc0, 0x06, 0xe0 });
                assert_eq(raw_of(&raw_temperature, &g), 55);
                assert_eq(raw_of(&radius, &g), 32);
        }
}

/* canmatrix's wiki ("signal Byteorder"): 7|32@0 and 39|32@0 are bytes 0-3
 * and 4-7 (CANdb++ shows their LSBs at 24 and 56); 3|11@0 runs from byte 0
 * bit 3 to byte 1 bit 1 (CANdb++ shows the LSB at 9). */
static void test_signal_motorola_canmatrix(void) {
        const TgCanSignal s1 = sig(7, 32, BE, true, 1, 0), s2 = sig(39, 32, BE, false, 1, 0), s3 = sig(3, 11, BE, false, 1, 0);
        TgCanFrame f = { .len = 8 };

        assert_ok(tg_can_signal_put_raw(&s1, 0x12345678, &f));
        assert_ok(tg_can_signal_put_raw(&s2, 0x9abcdef0, &f));
        assert_memeq(f.data, ((const uint8_t[]) { 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0 }), 8);
        assert_eq(raw_of(&s2, &f), 0x9abcdef0);

        f = (TgCanFrame) { .len = 8 };
        assert_ok(tg_can_signal_put_raw(&s3, 1, &f)); /* the LSB: byte 1 bit 1, DBC bit 9 */
        assert_memeq(f.data, ((const uint8_t[]) { 0x00, 0x02 }), 2);
        assert_ok(tg_can_signal_put_raw(&s3, 0x400, &f)); /* the MSB: byte 0 bit 3 */
        assert_memeq(f.data, ((const uint8_t[]) { 0x08, 0x00 }), 2);
        assert_ok(tg_can_signal_put_raw(&s3, 0x7ff, &f));
        assert_memeq(f.data, ((const uint8_t[]) { 0x0f, 0xfe, 0x00 }), 3);
        f.data[0] = 0xf0; /* bits outside the signal are not its business */
        f.data[1] = 0x01;
        assert_eq(raw_of(&s3, &f), 0);
}

/* Worked out by hand: the reference vehicle of power-wake's design and a
 * signed little-endian nibble (cantools' socialledge MOTOR_CMD steer,
 * 0|4@1- (1,-5)). */
static void test_signal_intel_by_hand(void) {
        const TgCanSignal gear = sig(0, 3, LE, false, 1, 0), speed = sig(8, 16, LE, false, 0.01, 0),
                          battery = sig(0, 16, LE, false, 0.001, 0), steer = sig(0, 4, LE, true, 1, -5),
                          drive = sig(4, 4, LE, false, 1, 0);
        TgCanFrame f = { .id = 0x3C1, .len = 8 };

        assert_ok(tg_can_signal_encode(&gear, 3, &f));      /* D */
        assert_ok(tg_can_signal_encode(&speed, 50.0, &f));  /* 5000 = 0x1388 */
        assert_memeq(f.data, ((const uint8_t[]) { 0x03, 0x88, 0x13, 0x00 }), 4);
        assert_near(value_of(&speed, &f), 50.0, 1e-9);
        assert_eq(raw_of(&gear, &f), 3);

        f = (TgCanFrame) { .len = 2 };
        assert_ok(tg_can_signal_encode(&battery, 12.6, &f)); /* 12600 = 0x3138 */
        assert_memeq(f.data, ((const uint8_t[]) { 0x38, 0x31 }), 2);
        assert_near(value_of(&battery, &f), 12.6, 1e-9);

        f = (TgCanFrame) { .len = 1 };
        assert_ok(tg_can_signal_encode(&steer, -7, &f)); /* raw -2 = 0xE */
        assert_ok(tg_can_signal_encode(&drive, 3, &f));
        assert_eq(f.data[0], 0x3e);
        assert_eq(raw_of(&steer, &f), -2);
        assert_near(value_of(&steer, &f), -7, 0);
        /* clamped to the raw range -8…7 */
        assert_ok(tg_can_signal_encode(&steer, -100, &f));
        assert_eq(f.data[0], 0x38);
        assert_near(value_of(&steer, &f), -13, 0);
        assert_ok(tg_can_signal_encode(&steer, 100, &f));
        assert_near(value_of(&steer, &f), 2, 0);
        assert_eq(f.data[0], 0x37);
        /* rounding: half a step away from zero */
        assert_ok(tg_can_signal_encode(&speed, 0.005, &(TgCanFrame) { .len = 8 }));
        f = (TgCanFrame) { .len = 8 };
        assert_ok(tg_can_signal_encode(&speed, 0.015, &f));
        assert_eq(raw_of(&speed, &f), 2);
        assert_ok(tg_can_signal_encode(&speed, 0.0149, &f));
        assert_eq(raw_of(&speed, &f), 1);
        assert_ok(tg_can_signal_encode(&speed, -3, &f)); /* unsigned: 0 */
        assert_eq(raw_of(&speed, &f), 0);
        assert_ok(tg_can_signal_encode(&speed, 1e300, &f));
        assert_eq(raw_of(&speed, &f), 0xffff);
        assert_ok(tg_can_signal_encode(&speed, -INFINITY, &f));
        assert_eq(raw_of(&speed, &f), 0);
        assert_eq(tg_can_signal_encode(&speed, NAN, &f), -EINVAL);
}

static void test_signal_edges(void) {
        static const uint8_t d[8] = { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x88 };
        TgCanFrame f = frame8(d), z = { .len = 8 };

        /* the whole frame */
        assert_eq((uint64_t) raw_of(S(0, 64, LE, false, 1, 0), &f), UINT64_C(0x8807060504030201));
        assert_eq((uint64_t) raw_of(S(7, 64, BE, false, 1, 0), &f), UINT64_C(0x0102030405060788));
        assert_eq(raw_of(S(0, 64, LE, true, 1, 0), &f), (int64_t) UINT64_C(0x8807060504030201));
        /* single bits at the corners */
        assert_eq(raw_of(S(63, 1, LE, false, 1, 0), &f), 1);
        assert_eq(raw_of(S(63, 1, BE, false, 1, 0), &f), 1);
        assert_eq(raw_of(S(0, 1, LE, false, 1, 0), &f), 1);
        assert_eq(raw_of(S(0, 1, BE, false, 1, 0), &f), 1);
        assert_eq(raw_of(S(7, 1, BE, false, 1, 0), &f), 0);
        /* the last byte */
        assert_eq(raw_of(S(56, 8, LE, false, 1, 0), &f), 0x88);
        assert_eq(raw_of(S(63, 8, BE, false, 1, 0), &f), 0x88);
        assert_eq(raw_of(S(56, 8, LE, true, 1, 0), &f), -120);
        /* crossing bytes: 12 bits from bit 4 */
        assert_eq(raw_of(S(4, 12, LE, false, 1, 0), &f), 0x020);
        assert_eq(raw_of(S(3, 12, BE, false, 1, 0), &f), 0x102); /* 0001 of byte 0, then all of byte 1: 00000010 */

        /* signed: 1 bit, 12 bits, 64 bits; unsigned 64 bits */
        assert_ok(tg_can_signal_put_raw(S(5, 1, LE, true, 1, 0), -1, &z));
        assert_eq(z.data[0], 0x20);
        assert_eq(raw_of(S(5, 1, LE, true, 1, 0), &z), -1);
        assert_eq(tg_can_signal_put_raw(S(5, 1, LE, true, 1, 0), 1, &z), -ERANGE);
        assert_eq(tg_can_signal_put_raw(S(5, 1, LE, true, 1, 0), -2, &z), -ERANGE);
        assert_eq(tg_can_signal_put_raw(S(0, 12, LE, true, 1, 0), 2047, &z), 0);
        assert_eq(tg_can_signal_put_raw(S(0, 12, LE, true, 1, 0), 2048, &z), -ERANGE);
        assert_eq(tg_can_signal_put_raw(S(0, 12, LE, true, 1, 0), -2048, &z), 0);
        assert_eq(raw_of(S(0, 12, LE, true, 1, 0), &z), -2048);
        assert_eq(tg_can_signal_put_raw(S(0, 12, LE, false, 1, 0), 4096, &z), -ERANGE);
        assert_eq(tg_can_signal_put_raw(S(0, 12, LE, false, 1, 0), -1, &z), -ERANGE);
        z = (TgCanFrame) { .len = 8 };
        assert_ok(tg_can_signal_put_raw(S(7, 64, BE, true, 1, 0), INT64_MIN, &z));
        assert_eq(z.data[0], 0x80);
        assert_eq(raw_of(S(7, 64, BE, true, 1, 0), &z), INT64_MIN);
        assert_ok(tg_can_signal_encode(S(0, 64, LE, true, 1, 0), -1e30, &z));
        assert_eq(raw_of(S(0, 64, LE, true, 1, 0), &z), INT64_MIN);
        assert_ok(tg_can_signal_encode(S(0, 64, LE, true, 1, 0), 1e30, &z));
        assert_eq(raw_of(S(0, 64, LE, true, 1, 0), &z), INT64_MAX);
        assert_ok(tg_can_signal_encode(S(0, 64, LE, false, 1, 0), 1e30, &z));
        assert_eq((uint64_t) raw_of(S(0, 64, LE, false, 1, 0), &z), UINT64_MAX);
        assert_near(value_of(S(0, 64, LE, false, 1, 0), &z), 18446744073709551615.0, 0);
        assert_ok(tg_can_signal_put_raw(S(0, 64, LE, false, 1, 0), -1, &z)); /* any pattern */

        /* the frame must cover the signal */
        f.len = 7;
        int64_t v;
        assert_eq(tg_can_signal_raw(S(56, 8, LE, false, 1, 0), &f, &v), -EBADMSG);
        assert_eq(tg_can_signal_raw(S(63, 1, BE, false, 1, 0), &f, &v), -EBADMSG);
        assert_eq(tg_can_signal_encode(S(56, 8, LE, false, 1, 0), 1, &f), -EINVAL);
        assert_eq(tg_can_signal_raw(S(48, 8, LE, false, 1, 0), &f, &v), 0);
        /* impossible layouts */
        assert_eq(tg_can_signal_raw(S(0, 0, LE, false, 1, 0), &f, &v), -EINVAL);
        assert_eq(tg_can_signal_raw(S(0, 65, LE, false, 1, 0), &f, &v), -EINVAL);
        assert_eq(tg_can_signal_raw(S(512, 1, LE, false, 1, 0), &f, &v), -EINVAL);
        assert_eq(tg_can_signal_raw(S(504, 9, LE, false, 1, 0), &f, &v), -EINVAL);
        assert_eq(tg_can_signal_encode(S(0, 8, LE, false, 0, 0), 1, &f), -EINVAL);
        f.len = 65;
        assert_eq(tg_can_signal_raw(S(0, 8, LE, false, 1, 0), &f, &v), -EINVAL);
}

/* CAN FD: signals in the last bytes of a 64-byte frame. */
static void test_signal_fd(void) {
        TgCanFrame f = { .id = 0x123, .fd = true, .len = 64 };
        int64_t v;

        for (unsigned i = 0; i < 64; i++)
                f.data[i] = (uint8_t) i;
        assert_eq(raw_of(S(504, 8, LE, false, 1, 0), &f), 63);
        assert_eq(raw_of(S(511, 8, BE, false, 1, 0), &f), 63);
        assert_eq((uint64_t) raw_of(S(448, 64, LE, false, 1, 0), &f), UINT64_C(0x3f3e3d3c3b3a3938));
        assert_eq((uint64_t) raw_of(S(455, 64, BE, false, 1, 0), &f), UINT64_C(0x38393a3b3c3d3e3f));
        assert_eq(raw_of(S(500, 12, LE, false, 1, 0), &f), 0x3f3); /* byte 62 bits 7…4, byte 63 */
        for (unsigned b = 0; b < 512; b++) /* every bit of the frame, both numberings */
                assert_eq(raw_of(S(b, 1, LE, false, 1, 0), &f), (f.data[b / 8] >> (b % 8)) & 1);
        assert_ok(tg_can_signal_check(S(455, 64, BE, false, 1, 0), 64, NULL, 0));
        assert_eq(tg_can_signal_check(S(455, 64, BE, false, 1, 0), 48, NULL, 0), -EINVAL);

        f.len = 48;
        assert_eq(tg_can_signal_raw(S(504, 8, LE, false, 1, 0), &f, &v), -EBADMSG);
        assert_ok(tg_can_signal_raw(S(376, 8, LE, false, 1, 0), &f, &v));
        assert_eq(v, 47);

        f = (TgCanFrame) { .fd = true, .len = 64 };
        assert_ok(tg_can_signal_encode(S(455, 64, BE, true, 0.5, 0), -2.5, &f));
        assert_eq(raw_of(S(455, 64, BE, true, 1, 0), &f), -5);
        for (unsigned i = 0; i < 56; i++)
                assert_eq(f.data[i], 0);
        assert_memeq(f.data + 56, ((const uint8_t[]) { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfb }), 8);
}

static void test_signal_check(void) {
        static const struct {
                TgCanSignal s;
                unsigned frame_len;
                const char *reason;
        } bad[] = {
                { { .start_bit = 0, .length = 0, .scale = 1 }, 8, "length 0 is not in 1-64" },
                { { .start_bit = 0, .length = 65, .scale = 1 }, 8, "length 65" },
                { { .start_bit = 512, .length = 1, .scale = 1 }, 64, "start bit 512 is past bit 511" },
                { { .start_bit = 60, .length = 8, .scale = 1 }, 8, "start bit 60 + length 8 runs past the 8-byte frame" },
                { { .start_bit = 56, .length = 16, .byte_order = BE, .scale = 1 }, 8,
                  "start bit 56 + length 16 (big endian) runs past the 8-byte frame (needs 10 bytes)" },
                { { .start_bit = 56, .length = 8, .byte_order = BE, .scale = 1 }, 8, "runs past the 8-byte frame (needs 9 bytes)" },
                { { .start_bit = 6, .length = 64, .byte_order = BE, .scale = 1 }, 8, "(needs 9 bytes)" },
                { { .start_bit = 0, .length = 9, .scale = 1 }, 1, "runs past the 1-byte frame" },
                { { .start_bit = 505, .length = 8, .scale = 1 }, 64, "runs past bit 511" },
                { { .start_bit = 0, .length = 8, .scale = 1 }, 0, "frame length 0" },
                { { .start_bit = 0, .length = 8, .scale = 1 }, 65, "frame length 65" },
                { { .start_bit = 0, .length = 8, .byte_order = 7, .scale = 1 }, 8, "unknown byte order 7" },
                { { .frame_id = 0x800, .length = 8, .scale = 1 }, 8, "frame id 0x800 does not fit in 11 bits" },
                { { .frame_id = 0x123 | CAN_RTR_FLAG, .length = 8, .scale = 1 }, 8, "RTR or ERR flag" },
                { { .length = 8, .scale = 0 }, 8, "scale 0 is not a finite number" },
                { { .length = 8, .scale = NAN }, 8, "scale nan" },
                { { .length = 8, .scale = INFINITY }, 8, "scale inf" },
                { { .length = 8, .scale = 1, .offset = -INFINITY }, 8, "offset -inf is not finite" },
        };
        static const struct {
                TgCanSignal s;
                unsigned frame_len;
        } good[] = {
                { { .frame_id = 0x7FF, .start_bit = 56, .length = 8, .scale = 1 }, 8 },
                { { .frame_id = 0x800 | CAN_EFF_FLAG, .start_bit = 63, .length = 8, .byte_order = BE, .scale = 1 }, 8 },
                { { .frame_id = 0x1FFFFFFF | CAN_EFF_FLAG, .start_bit = 0, .length = 64, .scale = -0.5 }, 8 },
                { { .start_bit = 7, .length = 64, .byte_order = BE, .scale = 1e-9, .offset = -1e9 }, 8 },
                { { .start_bit = 0, .length = 1, .is_signed = true, .scale = 1 }, 1 },
                { { .start_bit = 511, .length = 8, .byte_order = BE, .scale = 1 }, 64 },
                { { .start_bit = 504, .length = 8, .scale = 1 }, 64 },
        };
        char reason[200];

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                assert_eq(tg_can_signal_check(&bad[i].s, bad[i].frame_len, reason, sizeof reason), -EINVAL);
                fprintf(stderr, "  %s\n", reason);
                assert_contains(reason, bad[i].reason);
                assert_eq(tg_can_signal_check(&bad[i].s, bad[i].frame_len, NULL, 0), -EINVAL);
        }
        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                strcpy(reason, "stale");
                assert_ok(tg_can_signal_check(&good[i].s, good[i].frame_len, reason, sizeof reason));
                assert_streq(reason, "");
        }
        /* a short reason buffer is cut, not overrun */
        memset(reason, 'x', sizeof reason);
        assert_eq(tg_can_signal_check(&bad[3].s, 8, reason, 10), -EINVAL);
        assert_eq(strlen(reason), 9u);
        assert_eq(reason[10], 'x');
        assert_eq(tg_can_signal_check(NULL, 8, NULL, 0), -EINVAL);
}

/* ---- signals: property test against independent formulations ---- */

/* The DBC positions of a signal's bits, most significant first, walked the
 * way the DBC spec describes it (big endian: down inside a byte, then bit 7
 * of the next byte, the "sawtooth"). Returns false if one is past the frame. */
static bool dbc_positions(const TgCanSignal *s, unsigned frame_len, unsigned pos[64]) {
        if (s->byte_order == LE) {
                for (unsigned k = 0; k < s->length; k++)
                        pos[s->length - 1 - k] = s->start_bit + k;
        } else {
                unsigned p = s->start_bit;
                for (unsigned k = 0; k < s->length; k++) {
                        pos[k] = p;
                        if (k + 1 < s->length) {
                                if (p % 8 == 0)
                                        p += 15;
                                else
                                        p--;
                        }
                }
        }
        for (unsigned k = 0; k < s->length; k++)
                if (pos[k] >= frame_len * 8)
                        return false;
        return true;
}

static uint64_t mask_of(unsigned length) {
        return length == 64 ? UINT64_MAX : (UINT64_C(1) << length) - 1;
}

static void test_signal_property(void) {
        static const uint8_t lens[] = { 1, 2, 3, 4, 5, 6, 7, 8, 8, 8, 12, 16, 20, 24, 32, 48, 64, 64 };
        static const double scales[] = { 1, 0.1, 0.01, 0.001, 0.5, 2, 0.25, -0.5, 1e-6, 3.7, 1000, -1 };
        unsigned fitting = 0, tried = 0;

        for (unsigned iter = 0; iter < 200000; iter++) {
                unsigned frame_len = lens[rnd() % ELEMENTSOF(lens)], pos[64];
                TgCanSignal s = {
                        .frame_id = 0x3C0,
                        .byte_order = (rnd() & 1) ? BE : LE,
                        .length = 1 + (unsigned) (rnd() % 64),
                        .start_bit = (unsigned) (rnd() % (frame_len * 8)),
                        .is_signed = rnd() & 1,
                        .scale = scales[rnd() % ELEMENTSOF(scales)],
                        .offset = (double) ((int) (rnd() % 2001) - 1000) * 0.25,
                };
                TgCanFrame f = { .len = (uint8_t) frame_len, .fd = frame_len > 8 }, before;
                char reason[128];
                bool fits = dbc_positions(&s, frame_len, pos);
                uint64_t want = 0;
                int64_t raw_min, raw_max, r0;
                double v, d, tolerance;

                tried++;
                assert_eq(tg_can_signal_check(&s, frame_len, reason, sizeof reason) == 0, fits);
                if (!fits)
                        continue;
                fitting++;

                /* raw: the bits at the walked positions, MSB first */
                for (unsigned i = 0; i < frame_len; i++)
                        f.data[i] = (uint8_t) rnd();
                for (unsigned k = 0; k < s.length; k++)
                        want = want << 1 | ((f.data[pos[k] / 8] >> (pos[k] % 8)) & 1);
                if (s.is_signed && s.length < 64 && (want >> (s.length - 1) & 1))
                        want |= ~mask_of(s.length);
                assert_eq((uint64_t) raw_of(&s, &f), want);

                /* and for 8-byte frames, as shifts of the frame read as one integer */
                if (frame_len == 8) {
                        uint64_t le = 0, be = 0, x;
                        for (int i = 7; i >= 0; i--)
                                le = le << 8 | f.data[i];
                        for (int i = 0; i < 8; i++)
                                be = be << 8 | f.data[i];
                        if (s.byte_order == LE)
                                x = (le >> s.start_bit) & mask_of(s.length);
                        else {
                                unsigned msb = s.start_bit / 8 * 8 + 7 - s.start_bit % 8;
                                x = (be >> (64 - msb - s.length)) & mask_of(s.length);
                        }
                        assert_eq(x, want & mask_of(s.length));
                }

                /* put_raw: the value comes back, no other bit changes */
                if (s.is_signed) {
                        raw_max = (int64_t) mask_of(s.length - 1);
                        raw_min = -raw_max - 1;
                } else {
                        raw_min = 0;
                        raw_max = s.length == 64 ? INT64_MAX : (int64_t) mask_of(s.length);
                }
                r0 = (int64_t) rnd();
                if (s.length < 64)
                        r0 = s.is_signed ? (int64_t) (rnd() % mask_of(s.length)) + raw_min
                                         : (int64_t) (rnd() & mask_of(s.length));
                before = f;
                assert_ok(tg_can_signal_put_raw(&s, r0, &f));
                if (s.is_signed || s.length < 64)
                        assert_eq(raw_of(&s, &f), r0);
                else
                        assert_eq((uint64_t) raw_of(&s, &f), (uint64_t) r0);
                for (unsigned b = 0; b < frame_len * 8; b++) {
                        bool mine = false;
                        for (unsigned k = 0; k < s.length; k++)
                                mine = mine || pos[k] == b;
                        if (!mine)
                                assert_eq((f.data[b / 8] >> (b % 8)) & 1, (before.data[b / 8] >> (b % 8)) & 1);
                }

                /* physical round trip, within the range: half a step (plus the
                 * rounding of doubles for values beyond 2^53 steps) */
                r0 = s.is_signed ? (int64_t) (rnd() % (mask_of(MIN(s.length, 63u)))) + raw_min
                                 : (int64_t) (rnd() % (uint64_t) raw_max);
                if (s.is_signed && s.length == 64)
                        r0 = (int64_t) rnd();
                v = ((s.is_signed ? (double) r0 : (double) (uint64_t) r0) +
                     ((double) (rnd() % 981) / 1000.0 - 0.49)) * s.scale + s.offset;
                if (s.length == 1 && !s.is_signed)
                        v = (double) (r0 & 1) * s.scale + s.offset;
                assert_ok(tg_can_signal_encode(&s, v, &f));
                d = value_of(&s, &f);
                tolerance = fabs(s.scale) * 0.5 * (1 + 1e-9) + 8 * DBL_EPSILON * (fabs(v) + fabs(s.offset));
                if (v < fmin((double) raw_min * s.scale, (double) raw_max * s.scale) + s.offset ||
                    v > fmax((double) raw_min * s.scale, (double) raw_max * s.scale) + s.offset)
                        tolerance += fabs(s.scale); /* the half step past an end of the range */
                assert_near(d, v, tolerance);

                /* far outside the range: clamped to the ends */
                assert_ok(tg_can_signal_encode(&s, ((double) raw_max * 4 + 1e6) * s.scale + s.offset, &f));
                if (s.is_signed || s.length < 64)
                        assert_eq(raw_of(&s, &f), raw_max);
                else
                        assert_eq((uint64_t) raw_of(&s, &f), UINT64_MAX);
                assert_ok(tg_can_signal_encode(&s, ((double) raw_min * 4 - 1e6) * s.scale + s.offset, &f));
                assert_eq(raw_of(&s, &f), raw_min);
        }
        fprintf(stderr, "  %u of %u random layouts fit their frame\n", fitting, tried);
        assert_se(fitting > 20000);
}

/* ---- buses without a hub ---- */

static void test_open_errors(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_free_ char *stale = tg_test_path(dir, "stale.sock"), *spec = NULL;
        char long_spec[140];
        uint32_t filters[600];
        TgCanBus *bus = NULL;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd, r;

        assert_eq(tg_can_open(NULL, NULL, &bus), -EINVAL);
        assert_eq(tg_can_open("", NULL, &bus), -EINVAL);
        assert_eq(tg_can_open("unix:", NULL, &bus), -EINVAL);
        assert_eq(tg_can_open("can/0", NULL, &bus), -EINVAL);
        assert_eq(tg_can_open("tcp:1.2.3.4", NULL, &bus), -EINVAL);
        assert_eq(tg_can_open("can 0", NULL, &bus), -EINVAL);
        assert_eq(tg_can_open("averyveryverylongname0", NULL, &bus), -EINVAL);
        memset(long_spec, 'a', sizeof long_spec - 1);
        long_spec[sizeof long_spec - 1] = '\0';
        memcpy(long_spec, "unix:/", 6);
        assert_eq(tg_can_open(long_spec, NULL, &bus), -EINVAL);
        assert_eq(tg_can_open("can0", NULL, NULL), -EINVAL);

        /* filters: valid ids only, at most 512 */
        assert_eq(tg_can_open("unix:/x", &(TgCanOptions) { .filters = (const uint32_t[]) { 0x800 }, .n_filters = 1 }, &bus),
                  -EINVAL);
        assert_eq(tg_can_open("unix:/x", &(TgCanOptions) { .filters = (const uint32_t[]) { 0x1 | CAN_RTR_FLAG }, .n_filters = 1 },
                              &bus),
                  -EINVAL);
        assert_eq(tg_can_open("unix:/x", &(TgCanOptions) { .n_filters = 1 }, &bus), -EINVAL);
        for (size_t i = 0; i < ELEMENTSOF(filters); i++)
                filters[i] = (uint32_t) i;
        assert_eq(tg_can_open("unix:/x", &(TgCanOptions) { .filters = filters, .n_filters = 513 }, &bus), -EINVAL);

        /* no such interface, whatever the kernel has */
        assert_eq(tg_can_open("tgnocan9", NULL, &bus), -ENODEV);
        /* can0 on this machine: no interface (or no PF_CAN); a gateway may have one */
        r = tg_can_open("can0", &(TgCanOptions) { .fd = true, .receive_errors = true }, &bus);
        fprintf(stderr, "  can0: %s\n", r < 0 ? strerror(-r) : "opened");
        assert_se(r == -ENODEV || r == -EAFNOSUPPORT || r == 0);
        bus = tg_can_close(bus);

        /* hub specs: no socket file, a socket file nobody listens on */
        assert_ok(asprintf(&spec, "unix:%s/none.sock", dir));
        assert_eq(tg_can_open(spec, NULL, &bus), -ENOENT);
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        assert_se(fd >= 0);
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", stale);
        assert_se(bind(fd, (struct sockaddr *) &sa, sizeof sa) == 0);
        close(fd);
        free(spec);
        assert_ok(asprintf(&spec, "unix:%s", stale));
        assert_eq(tg_can_open(spec, NULL, &bus), -ECONNREFUSED);
        assert_se(bus == NULL);

        assert_se(tg_can_close(NULL) == NULL);
        assert_eq(tg_can_fd(NULL), -EBADF);
        assert_se(tg_can_name(NULL) == NULL);
}

static void test_link(void) {
        int r;

        assert_eq(tg_can_link_up("unix:/run/tollgate/can0.sock", 500000, 0, 100), 0);
        assert_eq(tg_can_link_up("unix:/run/tollgate/can0.sock", 500000, 2000000, 100), 0);
        assert_eq(tg_can_link_restart("unix:/run/tollgate/can0.sock"), 0);
        assert_eq(tg_can_link_up("", 500000, 0, 100), -EINVAL);
        assert_eq(tg_can_link_up(NULL, 500000, 0, 100), -EINVAL);
        assert_eq(tg_can_link_up("can/0", 500000, 0, 100), -EINVAL);
        assert_eq(tg_can_link_restart("unix:"), -EINVAL);
        /* The FD data phase cannot be set through libsocketcan. */
        assert_eq(tg_can_link_up("can0", 500000, 2000000, 100), -EOPNOTSUPP);

        /* No interface here (or no libsocketcan in this build): an error, not a crash. */
        r = tg_can_link_up("tgnocan9", 500000, 0, 100);
        fprintf(stderr, "  link up tgnocan9: %s\n", strerror(-r));
        assert_se(r == -ENODEV || r == -EOPNOTSUPP);
        r = tg_can_link_restart("tgnocan9");
        assert_se(r == -ENODEV || r == -EOPNOTSUPP);
        if (if_nametoindex("can0") == 0) {
                r = tg_can_link_up("can0", 500000, 0, 100);
                fprintf(stderr, "  link up can0: %s\n", strerror(-r));
                assert_se(r < 0);
                assert_se(tg_can_link_restart("can0") < 0);
        } else
                fprintf(stderr, "  can0 exists here: not touching it\n");
}

/* ---- the hub ---- */

static uint64_t now_msec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

/* A frame within timeout_ms: 0, or the error tg_can_recv() gave (-ETIMEDOUT
 * if nothing came). */
static int recv_wait(TgCanBus *bus, TgCanFrame *f, int timeout_ms) {
        uint64_t end = now_msec() + (uint64_t) timeout_ms;

        for (;;) {
                struct pollfd p = { .fd = tg_can_fd(bus), .events = POLLIN };
                int r = tg_can_recv(bus, f), left;

                if (r != -EAGAIN)
                        return r;
                left = (int) (end - MIN(end, now_msec()));
                if (left == 0)
                        return -ETIMEDOUT;
                (void) poll(&p, 1, left);
        }
}

static void expect_frame(TgCanBus *bus, const TgCanFrame *want) {
        TgCanFrame f;

        assert_eq(recv_wait(bus, &f, 2000), 0);
        assert_eq(f.id, want->id);
        assert_eq(f.len, want->len);
        assert_eq(f.fd, want->fd);
        assert_eq(f.flags, want->flags & (CANFD_BRS | CANFD_ESI));
        assert_memeq(f.data, want->data, want->len);
}

static void expect_nothing(TgCanBus *bus) {
        TgCanFrame f;

        assert_eq(recv_wait(bus, &f, 100), -ETIMEDOUT);
}

static TgCanBus *open_bus(const char *spec, const TgCanOptions *o) {
        TgCanBus *bus = NULL;

        assert_ok(tg_can_open(spec, o, &bus));
        assert_streq(tg_can_name(bus), spec);
        assert_se(tg_can_fd(bus) >= 0);
        return bus;
}

static void test_hub_round_trip(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_(tg_can_closep) TgCanBus *a = NULL, *b = NULL, *c = NULL;
        const TgCanFrame f1 = { .id = 0x3C0, .len = 2, .data = { 1, 2 } },
                         f2 = { .id = 0x18DAF110 | CAN_EFF_FLAG, .len = 8, .data = { 8, 7, 6, 5, 4, 3, 2, 1 } },
                         f3 = { .id = 0x3C1 | CAN_RTR_FLAG };
        _cleanup_free_ char *path = NULL;
        struct stat st;
        TgTestHub hub;

        if (!tg_test_hub_start(&hub, dir, "bus", NULL))
                return;
        assert_se(stat(hub.path, &st) == 0);
        assert_eq(st.st_mode & 07777, 0660u);

        a = open_bus(hub.spec, NULL);
        b = open_bus(hub.spec, NULL);
        c = open_bus(hub.spec, NULL);

        /* to every other member, in order, never back to the sender */
        assert_ok(tg_can_send(a, &f1));
        assert_ok(tg_can_send(a, &f2));
        expect_frame(b, &f1);
        expect_frame(b, &f2);
        expect_frame(c, &f1);
        expect_frame(c, &f2);
        expect_nothing(a);
        assert_ok(tg_can_send(c, &f3));
        expect_frame(a, &f3);
        expect_frame(b, &f3);
        expect_nothing(c);

        /* the hub goes: the members notice */
        path = strdup(hub.path);
        assert_se(path);
        assert_eq(tg_test_hub_stop(&hub), 0); /* exit status 0 after SIGTERM */
        assert_se(access(path, F_OK) < 0 && errno == ENOENT); /* the socket file is gone */
        TgCanFrame g;
        assert_eq(recv_wait(b, &g, 2000), -ECONNRESET);
        assert_eq(tg_can_send(b, &f1), -ECONNRESET);
}

static void test_hub_filters(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_(tg_can_closep) TgCanBus *a = NULL, *plain = NULL, *filtered = NULL, *errors = NULL, *fd = NULL;
        static const uint32_t ids[] = { 0x3C0, 0x18DAF110 | CAN_EFF_FLAG };
        const TgCanFrame other = { .id = 0x3C1, .len = 1 }, remote = { .id = 0x3C0 | CAN_RTR_FLAG },
                         ext = { .id = 0x18DAF110 | CAN_EFF_FLAG, .len = 1, .data = { 0xee } },
                         ext_same_number = { .id = 0x3C0 | CAN_EFF_FLAG, .len = 1 },
                         wanted = { .id = 0x3C0, .len = 3, .data = { 1, 2, 3 } },
                         busoff = { .id = CAN_ERR_FLAG | CAN_ERR_BUSOFF, .len = CAN_ERR_DLC },
                         big = { .id = 0x123, .fd = true, .flags = CANFD_BRS, .len = 64, .data = { [63] = 0x63 } },
                         last = { .id = 0x7FF, .len = 8, .data = { 0xff } };
        TgTestHub hub;

        if (!tg_test_hub_start(&hub, dir, "bus", NULL))
                return;
        a = open_bus(hub.spec, &(TgCanOptions) { .fd = true });
        plain = open_bus(hub.spec, NULL);
        filtered = open_bus(hub.spec, &(TgCanOptions) { .filters = ids, .n_filters = ELEMENTSOF(ids) });
        errors = open_bus(hub.spec, &(TgCanOptions) { .receive_errors = true, .filters = ids, .n_filters = 1 });
        fd = open_bus(hub.spec, &(TgCanOptions) { .fd = true });

        /* a bus opened without .fd cannot send FD frames */
        assert_eq(tg_can_send(plain, &big), -EINVAL);

        assert_ok(tg_can_send(a, &other));
        assert_ok(tg_can_send(a, &remote));
        assert_ok(tg_can_send(a, &ext));
        assert_ok(tg_can_send(a, &ext_same_number));
        assert_ok(tg_can_send(a, &wanted));
        assert_ok(tg_can_send(a, &busoff));
        assert_ok(tg_can_send(a, &big));
        assert_ok(tg_can_send(a, &last));

        /* no filter: every data frame, no error frame, no FD frame */
        expect_frame(plain, &other);
        expect_frame(plain, &remote);
        expect_frame(plain, &ext);
        expect_frame(plain, &ext_same_number);
        expect_frame(plain, &wanted);
        expect_frame(plain, &last);
        expect_nothing(plain);
        /* 0x3C0 (remote frames too) and the 29-bit 0x18DAF110, not the 29-bit 0x3C0 */
        expect_frame(filtered, &remote);
        expect_frame(filtered, &ext);
        expect_frame(filtered, &wanted);
        expect_nothing(filtered);
        /* error frames pass whatever the id filter */
        expect_frame(errors, &remote);
        expect_frame(errors, &wanted);
        expect_frame(errors, &busoff);
        expect_nothing(errors);
        /* FD frames for FD buses */
        expect_frame(fd, &other);
        expect_frame(fd, &remote);
        expect_frame(fd, &ext);
        expect_frame(fd, &ext_same_number);
        expect_frame(fd, &wanted);
        expect_frame(fd, &big);
        expect_frame(fd, &last);
        expect_nothing(fd);
        assert_eq(tg_test_hub_stop(&hub), 0);
}

/* Garbage travels through the hub as it would on a bus; the receiver sees
 * -EBADMSG for it and the next frame is fine. */
static void test_hub_garbage(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_(tg_can_closep) TgCanBus *b = NULL;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        const TgCanFrame good = { .id = 0x3C0, .len = 1, .data = { 0x42 } };
        uint8_t bad16[TG_CAN_MTU] = {}, big[100] = {}, wire[TG_CANFD_MTU];
        TgCanFrame f;
        TgTestHub hub;
        int raw;

        if (!tg_test_hub_start(&hub, dir, "bus", NULL))
                return;
        b = open_bus(hub.spec, NULL);
        raw = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        assert_se(raw >= 0);
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", hub.path);
        assert_se(connect(raw, (struct sockaddr *) &sa, sizeof sa) == 0);

        put_id(bad16, 0x123);
        bad16[4] = 15;
        assert_se(send(raw, "\x01\x02\x03\x04\x05", 5, 0) == 5);
        assert_se(send(raw, bad16, sizeof bad16, 0) == sizeof bad16);
        assert_se(send(raw, big, sizeof big, 0) == sizeof big); /* dropped by the hub */
        assert_se(send(raw, "", 0, 0) == 0);                    /* dropped by the hub */
        assert_eq(tg_can_frame_encode(&good, wire, sizeof wire), TG_CAN_MTU);
        assert_se(send(raw, wire, TG_CAN_MTU, 0) == TG_CAN_MTU);

        assert_eq(recv_wait(b, &f, 2000), -EBADMSG);
        assert_eq(recv_wait(b, &f, 2000), -EBADMSG);
        expect_frame(b, &good);
        expect_nothing(b);
        close(raw);

        assert_se(kill(hub.proc.pid, SIGUSR1) == 0);
        assert_se(tg_test_proc_wait_log(&hub.proc, "dropped oversize 1, empty 1", 5000));
        assert_eq(tg_test_hub_stop(&hub), 0);
}

/* A member that does not read loses frames; the others get every one. */
static void test_hub_overrun(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_(tg_can_closep) TgCanBus *a = NULL, *b = NULL, *sleeper = NULL;
        _cleanup_free_ char *log = NULL;
        const unsigned n = 3000;
        unsigned sent = 0, got = 0, slept = 0;
        TgCanFrame f = { .id = 0x100, .len = 4 }, g;
        TgTestHub hub;
        int r;

        if (!tg_test_hub_start(&hub, dir, "bus", NULL))
                return;
        a = open_bus(hub.spec, NULL);
        b = open_bus(hub.spec, NULL);
        sleeper = open_bus(hub.spec, NULL);

        while (got < n) {
                if (sent < n && sent - got < 64) {
                        memcpy(f.data, &sent, 4);
                        r = tg_can_send(a, &f);
                        if (r == 0)
                                sent++;
                        else
                                assert_eq(r, -EAGAIN);
                }
                while ((r = tg_can_recv(b, &g)) == 0) {
                        unsigned k;
                        memcpy(&k, g.data, 4);
                        assert_eq(k, got); /* in order, none lost */
                        got++;
                }
                assert_eq(r, -EAGAIN);
                if (sent == n || sent - got >= 64) {
                        struct pollfd p = { .fd = tg_can_fd(b), .events = POLLIN };
                        assert_se(poll(&p, 1, 2000) >= 0);
                }
        }
        /* the sleeper kept the first ones, as a controller keeps what fits */
        while ((r = tg_can_recv(sleeper, &g)) == 0) {
                unsigned k;
                memcpy(&k, g.data, 4);
                assert_eq(k, slept);
                slept++;
        }
        assert_eq(r, -EAGAIN);
        fprintf(stderr, "  the sleeping member kept %u of %u frames\n", slept, n);
        assert_se(slept > 0 && slept < n);

        assert_se(kill(hub.proc.pid, SIGUSR1) == 0);
        {
                char want[64];
                snprintf(want, sizeof want, "sent 0, overruns %u.", n - slept);
                assert_se(tg_test_proc_wait_log(&hub.proc, want, 5000));
        }
        log = tg_test_read_text(hub.proc.log);
        assert_contains(log, "does not keep up");
        assert_eq(tg_test_hub_stop(&hub), 0);
}

/* --bitrate: frames leave at the pace of the bus. */
static void test_hub_pacing(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_(tg_can_closep) TgCanBus *a = NULL, *b = NULL;
        const unsigned n = 50;
        TgCanFrame f = { .id = 0x100, .len = 8 }, g;
        uint64_t start, elapsed;
        TgTestHub hub;

        if (!tg_test_hub_start(&hub, dir, "bus", "--bitrate=125k"))
                return;
        a = open_bus(hub.spec, NULL);
        b = open_bus(hub.spec, NULL);
        start = now_msec();
        for (unsigned i = 0; i < n; i++) {
                f.data[0] = (uint8_t) i;
                assert_ok(tg_can_send(a, &f));
        }
        for (unsigned i = 0; i < n; i++) {
                assert_eq(recv_wait(b, &g, 5000), 0);
                assert_eq(g.data[0], i);
        }
        elapsed = now_msec() - start;
        /* (47 + 64) bits + 20 % = 133 bits = 1.064 ms each at 125 kbit/s */
        fprintf(stderr, "  %u frames in %" PRIu64 " ms (the wire needs 53 ms)\n", n, elapsed);
        assert_se(elapsed >= 50);
        assert_se(elapsed < 5000);
        assert_eq(tg_test_hub_stop(&hub), 0);
}

/* 64 members at most; a stale socket is replaced; a live hub is not. */
static void test_hub_limits(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_free_ char *path = tg_test_path(dir, "bus.sock"), *socket_arg = NULL;
        const char *bin = tg_test_binary("TG_CANHUB");
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        TgCanBus *members[65] = {};
        TgCanFrame f = { .id = 1, .len = 1 }, g;
        TgTestHub hub;
        TgTestProc second;
        int fd;

        if (!bin)
                return;
        /* a stale socket file from a hub that died */
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
        assert_se(bind(fd, (struct sockaddr *) &sa, sizeof sa) == 0);
        close(fd);
        assert_se(tg_test_hub_start(&hub, dir, "bus", NULL));

        /* a second hub on the same path refuses to start */
        assert_ok(asprintf(&socket_arg, "--socket=%s", path));
        tg_test_proc_start(&second, dir, "second", bin, (const char *const[]) { "tollgate-canhub", socket_arg, NULL });
        assert_eq(tg_test_proc_wait(&second), EXIT_FAILURE);

        for (unsigned i = 0; i < 65; i++) {
                int r;
                /* the listen backlog may be full for a moment: -EAGAIN, try again */
                for (unsigned k = 0; (r = tg_can_open(hub.spec, NULL, &members[i])) == -EAGAIN && k < 100; k++)
                        usleep(10000);
                assert_ok(r);
        }
        /* the 65th is accepted and closed at once */
        assert_eq(recv_wait(members[64], &g, 2000), -ECONNRESET);
        assert_ok(tg_can_send(members[0], &f));
        for (unsigned i = 1; i < 64; i++)
                expect_frame(members[i], &f);

        /* A member leaves while a newcomer waits. With the hub stopped both
         * are pending when it runs again, and it takes newcomers before
         * hang-ups: the departed member's seat must go to the newcomer, not
         * be held against it (as the probe of the second hub above held one,
         * now and then, before the hub freed such seats). */
        tg_can_close(members[64]);
        assert_se(kill(hub.proc.pid, SIGSTOP) == 0);
        members[1] = tg_can_close(members[1]);
        assert_ok(tg_can_open(hub.spec, NULL, &members[64]));
        assert_se(kill(hub.proc.pid, SIGCONT) == 0);
        assert_ok(tg_can_send(members[0], &f));
        expect_frame(members[64], &f);
        expect_frame(members[2], &f);
        for (unsigned i = 0; i < 65; i++)
                tg_can_close(members[i]);
        assert_eq(tg_test_hub_stop(&hub), 0);
}

TG_TEST_MAIN(TEST(len_valid), TEST(encode_classic), TEST(encode_fd), TEST(encode_invalid), TEST(decode),
             TEST(frame_round_trip), TEST(format), TEST(signal_intel_cantools), TEST(signal_motorola_cantools),
             TEST(signal_motorola_canmatrix), TEST(signal_intel_by_hand), TEST(signal_edges), TEST(signal_fd),
             TEST(signal_check), TEST(signal_property), TEST(open_errors), TEST(link), TEST(hub_round_trip),
             TEST(hub_filters), TEST(hub_garbage), TEST(hub_overrun), TEST(hub_pacing), TEST(hub_limits))
