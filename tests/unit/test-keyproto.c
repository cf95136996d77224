/* SPDX-License-Identifier: MIT */
#include "tg-keyproto.h"
#include "tg-test.h"

/* ─── helpers ───────────────────────────────────────────────────────────── */

static uint64_t rng = UINT64_C(0x9e3779b97f4a7c15);

static uint64_t rnd(void) {
        /* xorshift64*: reproducible runs, no libc state */
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        return rng * UINT64_C(0x2545f4914f6cdd1d);
}

static uint64_t rnd_below(uint64_t n) {
        return n ? rnd() % n : 0;
}

static void rnd_fill(uint8_t *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                p[i] = (uint8_t) (rnd() >> 32);
}

static void seed(uint64_t s) {
        rng = s ? s : 1;
        fprintf(stderr, "   seed %" PRIu64 "\n", s);
}

/* A frame from raw parts, for input the encoder refuses to make. */
static size_t mk(uint8_t *buf, uint32_t length, uint8_t type, const void *payload, size_t n) {
        tg_put_be32(buf, length);
        buf[4] = type;
        if (n > 0)
                memcpy(buf + 5, payload, n);
        return 5 + n;
}

static void encode_into(TgBuf *b, const TgKpFrame *f) {
        assert_eq(tg_kp_frame_encode(f, b), TG_KP_OK);
}

/* ─── codec: byte-exact layouts, written out by hand from the spec ─────── */

static const uint8_t hello_bytes[] = {
        0x00, 0x00, 0x00, 0x0e, /* length 14 */
        0x01,                   /* HELLO */
        0x00, 0x01,             /* version 1 */
        0x01,                   /* role: key */
        0x00, 0x01, 0x00, 0x00, /* max_chunk 65536 */
        0x00, 0x10,             /* window 16 */
        0x00, 0x02,             /* id_len */
        'K',  '1',              /* id */
};

static const uint8_t offer_bytes[] = {
        0x00, 0x00, 0x00, 0x3f,                         /* length 63 */
        0x02,                                           /* OFFER */
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, /* item_id */
        0x02,                                           /* kind: upgrade-package */
        0x03,                                           /* priority */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, /* size 4096 */
        0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, /* sha256 */
        0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
        0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7,
        0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf,
        0x00, 0x00, 0x00, 0x07,                         /* records */
        0x00, 0x06,                                     /* name_len */
        'f',  'w',  '.',  'b',  'i',  'n',              /* name */
};

static const uint8_t pull_bytes[] = {
        0x00, 0x00, 0x00, 0x11,                         /* length 17 */
        0x03,                                           /* PULL */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, /* item_id 5 */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, /* offset 65536 */
};

static const uint8_t data_bytes[] = {
        0x00, 0x00, 0x00, 0x15,                         /* length 21 */
        0x04,                                           /* DATA */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, /* item_id 5 */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, /* offset 16 */
        0xde, 0xad, 0xbe, 0xef,                         /* 21 - 17 = 4 bytes */
};

static const uint8_t ack_bytes[] = {
        0x00, 0x00, 0x00, 0x0a,                         /* length 10 */
        0x05,                                           /* ACK */
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, /* item_id */
        0x02,                                           /* bad-hash */
};

static const uint8_t done_bytes[] = { 0x00, 0x00, 0x00, 0x01, 0x06 };

static const uint8_t error_bytes[] = {
        0x00, 0x00, 0x00, 0x06, /* length 6 */
        0x07,                   /* ERROR */
        0x00, 0x03,             /* unexpected */
        'w',  'h',  'y',
};

static const uint8_t ping_bytes[] = {
        0x00, 0x00, 0x00, 0x09, 0x08, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
};

static const uint8_t pong_bytes[] = {
        0x00, 0x00, 0x00, 0x09, 0x09, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
};

/* Encoding f gives exactly `bytes`; decoding `bytes` gives f back. */
static void check_layout(const uint8_t *bytes, size_t n, const TgKpFrame *f, TgKpFrame *ret) {
        TgBuf b = {}, again = {};

        assert_eq(tg_kp_frame_size(f), n);
        encode_into(&b, f);
        assert_eq(b.size, n);
        assert_memeq(b.data, bytes, n);
        assert_eq(tg_kp_frame_decode(bytes, n, TG_KP_CHUNK_MAX, ret), TG_KP_OK);
        assert_eq(ret->type, f->type);
        encode_into(&again, ret);
        assert_eq(again.size, n);
        assert_memeq(again.data, bytes, n);
        tg_buf_free(&b);
        tg_buf_free(&again);
}

static void test_layouts(void) {
        uint8_t sha[32];
        TgKpFrame d;

        check_layout(hello_bytes, sizeof hello_bytes, &(TgKpFrame) {
                .type = TG_KP_HELLO,
                .hello = { .version = 1, .role = TG_KP_ROLE_KEY, .max_chunk = 65536, .window = 16, .id_len = 2, .id = "K1" },
        }, &d);
        assert_eq(d.hello.version, 1);
        assert_eq(d.hello.role, TG_KP_ROLE_KEY);
        assert_eq(d.hello.max_chunk, 65536u);
        assert_eq(d.hello.window, 16);
        assert_eq(d.hello.id_len, 2);
        assert_se(d.hello.id == (const char *) hello_bytes + 16); /* in place */

        for (unsigned i = 0; i < 32; i++)
                sha[i] = (uint8_t) (0xa0 + i);
        TgKpFrame offer = { .type = TG_KP_OFFER };
        offer.offer = (TgKpOffer) { .item_id = UINT64_C(0x0102030405060708), .kind = TG_KP_KIND_UPGRADE_PACKAGE,
                                    .priority = 3, .size = 4096, .records = 7, .name_len = 6, .name = "fw.bin" };
        memcpy(offer.offer.sha256, sha, 32);
        check_layout(offer_bytes, sizeof offer_bytes, &offer, &d);
        assert_eq(d.offer.item_id, UINT64_C(0x0102030405060708));
        assert_eq(d.offer.kind, 2);
        assert_eq(d.offer.priority, 3);
        assert_eq(d.offer.size, 4096u);
        assert_memeq(d.offer.sha256, sha, 32);
        assert_eq(d.offer.records, 7u);
        assert_eq(d.offer.name_len, 6);
        assert_se(memcmp(d.offer.name, "fw.bin", 6) == 0);

        check_layout(pull_bytes, sizeof pull_bytes,
                     &(TgKpFrame) { .type = TG_KP_PULL, .pull = { .item_id = 5, .offset = 65536 } }, &d);
        assert_eq(d.pull.item_id, 5u);
        assert_eq(d.pull.offset, 65536u);

        check_layout(data_bytes, sizeof data_bytes, &(TgKpFrame) {
                .type = TG_KP_DATA,
                .data = { .item_id = 5, .offset = 16, .data = (const uint8_t *) "\xde\xad\xbe\xef", .len = 4 },
        }, &d);
        assert_eq(d.data.item_id, 5u);
        assert_eq(d.data.offset, 16u);
        assert_eq(d.data.len, 4u);
        assert_se(d.data.data == data_bytes + 21); /* in place */
        {
                uint8_t h[TG_KP_DATA_HEADER_SIZE];
                tg_kp_put_data_header(h, 5, 16, 4);
                assert_memeq(h, data_bytes, sizeof h);
        }

        check_layout(ack_bytes, sizeof ack_bytes,
                     &(TgKpFrame) { .type = TG_KP_ACK, .ack = { .item_id = UINT64_MAX - 1, .status = TG_KP_ACK_BAD_HASH } },
                     &d);
        assert_eq(d.ack.item_id, UINT64_MAX - 1);
        assert_eq(d.ack.status, TG_KP_ACK_BAD_HASH);

        check_layout(done_bytes, sizeof done_bytes, &(TgKpFrame) { .type = TG_KP_DONE }, &d);

        check_layout(error_bytes, sizeof error_bytes,
                     &(TgKpFrame) { .type = TG_KP_ERROR, .error = { .code = 3, .text = "why", .text_len = 3 } }, &d);
        assert_eq(d.error.code, 3);
        assert_eq(d.error.text_len, 3u);
        assert_se(memcmp(d.error.text, "why", 3) == 0);

        check_layout(ping_bytes, sizeof ping_bytes,
                     &(TgKpFrame) { .type = TG_KP_PING, .nonce = UINT64_C(0x1122334455667788) }, &d);
        assert_eq(d.nonce, UINT64_C(0x1122334455667788));
        check_layout(pong_bytes, sizeof pong_bytes,
                     &(TgKpFrame) { .type = TG_KP_PONG, .nonce = UINT64_C(0x1122334455667788) }, &d);
}

static void test_names(void) {
        /* Every error has a name of its own and maps to a wire code. */
        for (unsigned i = 0; i < _TG_KP_ERROR_MAX; i++) {
                const char *n = tg_kp_error_to_string(i);

                assert_se(n && !streq(n, "unknown-error"));
                for (unsigned j = 0; j < i; j++)
                        assert_se(!streq(n, tg_kp_error_to_string(j)));
                if (i != TG_KP_OK)
                        assert_se(tg_kp_error_code(i) >= 1 && tg_kp_error_code(i) <= 6);
        }
        assert_streq(tg_kp_error_to_string(_TG_KP_ERROR_MAX), "unknown-error");
        assert_eq(tg_kp_error_code(TG_KP_TRAILING_BYTES), TG_KP_CODE_BAD_FRAME);
        assert_eq(tg_kp_error_code(TG_KP_CHUNK_TOO_LARGE), TG_KP_CODE_BAD_FRAME);
        assert_eq(tg_kp_error_code(TG_KP_BAD_VERSION), TG_KP_CODE_BAD_VERSION);
        assert_eq(tg_kp_error_code(TG_KP_NOT_PULLED), TG_KP_CODE_UNEXPECTED);
        assert_eq(tg_kp_error_code(TG_KP_WINDOW_EXCEEDED), TG_KP_CODE_UNEXPECTED);
        assert_eq(tg_kp_error_code(TG_KP_NOT_PAIRED), TG_KP_CODE_NOT_PAIRED);
        assert_eq(tg_kp_error_code(TG_KP_INTERNAL), TG_KP_CODE_INTERNAL);
        assert_eq(tg_kp_error_code(TG_KP_SHUTTING_DOWN), TG_KP_CODE_SHUTTING_DOWN);
        assert_streq(tg_kp_code_to_string(1), "bad-frame");
        assert_streq(tg_kp_code_to_string(6), "shutting-down");
        assert_streq(tg_kp_code_to_string(0), "unknown");
        assert_streq(tg_kp_code_to_string(7), "unknown");
        assert_streq(tg_kp_type_to_string(TG_KP_PONG), "PONG");
        assert_streq(tg_kp_type_to_string(10), "unknown");
        assert_streq(tg_kp_ack_status_to_string(TG_KP_ACK_BAD_HASH), "bad-hash");
        assert_streq(tg_kp_ack_status_to_string(4), "unknown");
        assert_streq(tg_kp_kind_to_string(TG_KP_KIND_KB_UPDATE), "kb-update");
        assert_streq(tg_kp_kind_to_string(0), "unknown");
}

/* The one-shot decoder gives `e`, and so does the incremental one, whole
 * and byte by byte (unless the frame is merely cut short: then it waits). */
static void expect_error(const uint8_t *buf, size_t n, uint32_t max_data, TgKpError e) {
        TgKpDecoder d;
        TgKpFrame f;
        size_t used;
        uint32_t length;
        TgKpError got;

        assert_streq(tg_kp_error_to_string(tg_kp_frame_decode(buf, n, max_data, &f)), tg_kp_error_to_string(e));
        if (n < 4)
                return;
        length = tg_get_be32(buf);
        if (length != 0 && length <= TG_KP_LENGTH_MAX && (uint64_t) length + 4 > n)
                return;
        tg_kp_decoder_init(&d, max_data);
        got = tg_kp_decoder_push(&d, buf, n, &used, &f);
        assert_streq(tg_kp_error_to_string(got), tg_kp_error_to_string(e));
        assert_eq(f.type, TG_KP_NONE);
        /* Sticky. */
        assert_eq(tg_kp_decoder_push(&d, done_bytes, sizeof done_bytes, &used, &f), e);
        tg_kp_decoder_done(&d);

        tg_kp_decoder_init(&d, max_data);
        got = TG_KP_OK;
        for (size_t i = 0; i < n && got == TG_KP_OK; i++)
                got = tg_kp_decoder_push(&d, buf + i, 1, &used, &f);
        assert_streq(tg_kp_error_to_string(got), tg_kp_error_to_string(e));
        tg_kp_decoder_done(&d);
}

static size_t hello(uint8_t *buf, uint16_t version, uint8_t role, uint32_t max_chunk, uint16_t window,
                    const char *id, size_t id_len, int id_len_delta) {
        uint8_t p[64];

        tg_put_be16(p, version);
        p[2] = role;
        tg_put_be32(p + 3, max_chunk);
        tg_put_be16(p + 7, window);
        tg_put_be16(p + 9, (uint16_t) (id_len + id_len_delta));
        memcpy(p + 11, id, id_len);
        return mk(buf, (uint32_t) (1 + 11 + id_len), TG_KP_HELLO, p, 11 + id_len);
}

static void test_decode_errors(void) {
        uint8_t buf[256], p[128] = {};
        TgKpFrame f;
        size_t n;

        /* The length field. */
        n = mk(buf, 0, TG_KP_DONE, NULL, 0);
        expect_error(buf, 4, TG_KP_CHUNK_MAX, TG_KP_BAD_LENGTH);
        n = mk(buf, TG_KP_LENGTH_MAX + 1, TG_KP_ERROR, NULL, 0);
        expect_error(buf, n, TG_KP_CHUNK_MAX, TG_KP_FRAME_TOO_LARGE);
        n = mk(buf, UINT32_MAX, TG_KP_ERROR, NULL, 0);
        expect_error(buf, n, TG_KP_CHUNK_MAX, TG_KP_FRAME_TOO_LARGE);
        expect_error(buf, 3, TG_KP_CHUNK_MAX, TG_KP_TRUNCATED);
        expect_error((const uint8_t *) "GET / HTTP/1.1\r\n", 16, TG_KP_CHUNK_MAX, TG_KP_FRAME_TOO_LARGE);

        /* The type. */
        n = mk(buf, 1, 0, NULL, 0);
        expect_error(buf, n, TG_KP_CHUNK_MAX, TG_KP_UNKNOWN_TYPE);
        n = mk(buf, 1, 10, NULL, 0);
        expect_error(buf, n, TG_KP_CHUNK_MAX, TG_KP_UNKNOWN_TYPE);
        n = mk(buf, 1, 0xff, NULL, 0);
        expect_error(buf, n, TG_KP_CHUNK_MAX, TG_KP_UNKNOWN_TYPE);

        /* Fixed sizes, one byte short and one too many. */
        static const struct {
                uint8_t type;
                uint32_t length;
        } fixed[] = { { TG_KP_PULL, 17 }, { TG_KP_ACK, 10 }, { TG_KP_DONE, 1 }, { TG_KP_PING, 9 }, { TG_KP_PONG, 9 } };
        for (size_t i = 0; i < ELEMENTSOF(fixed); i++) {
                n = mk(buf, fixed[i].length, fixed[i].type, p, fixed[i].length - 1);
                assert_eq(tg_kp_frame_decode(buf, n, TG_KP_CHUNK_MAX, &f), TG_KP_OK);
                if (fixed[i].length > 1) {
                        n = mk(buf, fixed[i].length - 1, fixed[i].type, p, fixed[i].length - 2);
                        expect_error(buf, n, TG_KP_CHUNK_MAX, TG_KP_TRUNCATED);
                }
                n = mk(buf, fixed[i].length + 1, fixed[i].type, p, fixed[i].length);
                expect_error(buf, n, TG_KP_CHUNK_MAX, TG_KP_TRAILING_BYTES);
        }
        /* Minimum sizes. */
        n = mk(buf, 16, TG_KP_DATA, p, 15);
        expect_error(buf, n, TG_KP_CHUNK_MAX, TG_KP_TRUNCATED);
        n = mk(buf, 56, TG_KP_OFFER, p, 55);
        expect_error(buf, n, TG_KP_CHUNK_MAX, TG_KP_TRUNCATED);
        n = mk(buf, 2, TG_KP_ERROR, p, 1);
        expect_error(buf, n, TG_KP_CHUNK_MAX, TG_KP_TRUNCATED);
        n = mk(buf, 2, TG_KP_HELLO, "\x00", 1);
        expect_error(buf, n, TG_KP_CHUNK_MAX, TG_KP_TRUNCATED);
        n = mk(buf, 3 + 8, TG_KP_ERROR, "\x00\x05" "12345678", 10);
        assert_eq(tg_kp_frame_decode(buf, n, TG_KP_CHUNK_MAX, &f), TG_KP_OK);

        /* The whole-frame decoder: fewer or more bytes than announced. */
        expect_error(pull_bytes, sizeof pull_bytes - 1, TG_KP_CHUNK_MAX, TG_KP_TRUNCATED);
        memcpy(buf, pull_bytes, sizeof pull_bytes);
        buf[sizeof pull_bytes] = 0;
        assert_eq(tg_kp_frame_decode(buf, sizeof pull_bytes + 1, TG_KP_CHUNK_MAX, &f), TG_KP_TRAILING_BYTES);

        /* HELLO fields. */
        n = hello(buf, 1, 0, 16384, 1, "VIN", 3, 0);
        assert_eq(tg_kp_frame_decode(buf, n, TG_KP_CHUNK_MAX, &f), TG_KP_OK);
        n = hello(buf, 1, 1, 1048576, 65535, "VIN", 3, 0);
        assert_eq(tg_kp_frame_decode(buf, n, TG_KP_CHUNK_MAX, &f), TG_KP_OK);
        n = hello(buf, 2, 0, 16384, 1, "VIN", 3, 0);
        expect_error(buf, n, TG_KP_CHUNK_MAX, TG_KP_BAD_VERSION);
        n = hello(buf, 0, 0, 16384, 1, "VIN", 3, 0);
        expect_error(buf, n, TG_KP_CHUNK_MAX, TG_KP_BAD_VERSION);
        /* Another version's HELLO may be shorter: still bad-version. */
        n = mk(buf, 3, TG_KP_HELLO, "\x00\x02", 2);
        expect_error(buf, n, TG_KP_CHUNK_MAX, TG_KP_BAD_VERSION);
        n = mk(buf, 3, TG_KP_HELLO, "\x00\x01", 2);
        expect_error(buf, n, TG_KP_CHUNK_MAX, TG_KP_TRUNCATED);
        n = hello(buf, 1, 2, 16384, 1, "VIN", 3, 0);
        expect_error(buf, n, TG_KP_CHUNK_MAX, TG_KP_BAD_ROLE);
        n = hello(buf, 1, 0, 16383, 1, "VIN", 3, 0);
        expect_error(buf, n, TG_KP_CHUNK_MAX, TG_KP_BAD_MAX_CHUNK);
        n = hello(buf, 1, 0, 1048577, 1, "VIN", 3, 0);
        expect_error(buf, n, TG_KP_CHUNK_MAX, TG_KP_BAD_MAX_CHUNK);
        n = hello(buf, 1, 0, 0, 1, "VIN", 3, 0);
        expect_error(buf, n, TG_KP_CHUNK_MAX, TG_KP_BAD_MAX_CHUNK);
        n = hello(buf, 1, 0, 16384, 0, "VIN", 3, 0);
        expect_error(buf, n, TG_KP_CHUNK_MAX, TG_KP_BAD_WINDOW);
        n = hello(buf, 1, 0, 16384, 1, "VIN", 3, 1);
        expect_error(buf, n, TG_KP_CHUNK_MAX, TG_KP_TRUNCATED);
        n = hello(buf, 1, 0, 16384, 1, "VIN", 3, -1);
        expect_error(buf, n, TG_KP_CHUNK_MAX, TG_KP_TRAILING_BYTES);

        static const struct {
                const char *id;
                bool valid;
        } ids[] = {
                { "", false },
                { "WVWZZZ1JZXW000001", true },
                { "clé-ünïcødé-€-𝄞", true },
                { "a\nb", false },        /* control characters would end up in logs */
                { "a\x7f", false },
                { "\xc2\x85", false },    /* C1 control */
                { "\xff", false },
                { "\xc0\x80", false },    /* overlong NUL */
                { "\xe0\x80\xaf", false },/* overlong '/' */
                { "\xed\xa0\x80", false },/* surrogate */
                { "\xf4\x90\x80\x80", false }, /* above U+10FFFF */
                { "\xe2\x82", false },    /* cut short */
                { "ok\xc3", false },
                { "\xc3\x28", false },   /* not a continuation byte */
        };
        for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
                n = hello(buf, 1, 0, 16384, 1, ids[i].id, strlen(ids[i].id), 0);
                if (ids[i].valid)
                        assert_eq(tg_kp_frame_decode(buf, n, TG_KP_CHUNK_MAX, &f), TG_KP_OK);
                else
                        expect_error(buf, n, TG_KP_CHUNK_MAX, TG_KP_BAD_ID);
        }
        {
                /* NUL inside the id. */
                n = hello(buf, 1, 0, 16384, 1, "a\0b", 3, 0);
                expect_error(buf, n, TG_KP_CHUNK_MAX, TG_KP_BAD_ID);
        }

        /* OFFER: kind, name length. */
        memcpy(buf, offer_bytes, sizeof offer_bytes);
        buf[13] = 0;
        expect_error(buf, sizeof offer_bytes, TG_KP_CHUNK_MAX, TG_KP_BAD_KIND);
        buf[13] = 5;
        expect_error(buf, sizeof offer_bytes, TG_KP_CHUNK_MAX, TG_KP_BAD_KIND);
        buf[13] = 4;
        assert_eq(tg_kp_frame_decode(buf, sizeof offer_bytes, TG_KP_CHUNK_MAX, &f), TG_KP_OK);
        buf[60] = 7; /* name_len one more than there is */
        expect_error(buf, sizeof offer_bytes, TG_KP_CHUNK_MAX, TG_KP_TRUNCATED);
        buf[60] = 5;
        expect_error(buf, sizeof offer_bytes, TG_KP_CHUNK_MAX, TG_KP_TRAILING_BYTES);
        buf[59] = 0x01; /* 261 */
        expect_error(buf, sizeof offer_bytes, TG_KP_CHUNK_MAX, TG_KP_TRUNCATED);

        /* ACK status. */
        memcpy(buf, ack_bytes, sizeof ack_bytes);
        buf[13] = 3;
        assert_eq(tg_kp_frame_decode(buf, sizeof ack_bytes, TG_KP_CHUNK_MAX, &f), TG_KP_OK);
        buf[13] = 4;
        expect_error(buf, sizeof ack_bytes, TG_KP_CHUNK_MAX, TG_KP_BAD_STATUS);

        /* DATA over the chunk: an error at the header. */
        n = mk(buf, 17 + 101, TG_KP_DATA, p, 17 + 100);
        assert_eq(tg_kp_frame_decode(buf, n, 101, &f), TG_KP_OK);
        assert_eq(f.data.len, 101u);
        expect_error(buf, n, 100, TG_KP_CHUNK_TOO_LARGE);
        assert_eq(tg_kp_check_header(17 + TG_KP_CHUNK_MAX + 1, TG_KP_DATA, TG_KP_CHUNK_MAX), TG_KP_CHUNK_TOO_LARGE);
        assert_eq(tg_kp_check_header(TG_KP_LENGTH_MAX, TG_KP_ERROR, 0), TG_KP_OK);
        assert_eq(tg_kp_check_header(TG_KP_LENGTH_MAX, TG_KP_OFFER, 0), TG_KP_OK);
        assert_eq(tg_kp_check_header(TG_KP_LENGTH_MAX + 1, TG_KP_ERROR, 0), TG_KP_FRAME_TOO_LARGE);
        assert_eq(tg_kp_frame_parse(done_bytes + 4, 0, 0, &f), TG_KP_BAD_LENGTH);
        assert_eq(tg_kp_frame_parse(done_bytes + 4, (size_t) TG_KP_LENGTH_MAX + 1, 0, &f), TG_KP_FRAME_TOO_LARGE);
        assert_eq(tg_kp_frame_parse(done_bytes + 4, 1, 0, &f), TG_KP_OK);
        assert_eq(f.type, TG_KP_DONE);

        /* ERROR frames are taken as they come: any code, any bytes. */
        n = mk(buf, 1 + 2 + 3, TG_KP_ERROR, "\xff\xff\x00\x01\xff", 5);
        assert_eq(tg_kp_frame_decode(buf, n, TG_KP_CHUNK_MAX, &f), TG_KP_OK);
        assert_eq(f.error.code, 0xffff);
        assert_eq(f.error.text_len, 3u);
}

static void test_decode_largest(void) {
        /* A frame of exactly TG_KP_LENGTH_MAX decodes; the decoder buffers it whole. */
        size_t n = TG_KP_LENGTH_SIZE + TG_KP_LENGTH_MAX;
        uint8_t *buf = malloc(n);
        TgKpDecoder d;
        TgKpFrame f;
        size_t used, half = n / 2;

        assert_se(buf);
        memset(buf, 'x', n);
        tg_put_be32(buf, TG_KP_LENGTH_MAX);
        buf[4] = TG_KP_ERROR;
        assert_eq(tg_kp_frame_decode(buf, n, TG_KP_CHUNK_MAX, &f), TG_KP_OK);
        assert_eq(f.error.text_len, (size_t) TG_KP_LENGTH_MAX - 3);

        tg_kp_decoder_init(&d, TG_KP_CHUNK_MAX);
        assert_eq(tg_kp_decoder_push(&d, buf, half, &used, &f), TG_KP_OK);
        assert_eq(used, half);
        assert_eq(f.type, TG_KP_NONE);
        assert_eq(tg_kp_decoder_pending(&d), half);
        assert_eq(tg_kp_decoder_push(&d, buf + half, n - half, &used, &f), TG_KP_OK);
        assert_eq(used, n - half);
        assert_eq(f.type, TG_KP_ERROR);
        assert_eq(f.error.text_len, (size_t) TG_KP_LENGTH_MAX - 3);
        assert_eq(tg_kp_decoder_pending(&d), 0u);
        tg_kp_decoder_done(&d);
        free(buf);
}

static void test_encode_refuses(void) {
        TgBuf b = {};
        char big[300];

        assert_eq(tg_kp_frame_encode(&(TgKpFrame) { .type = TG_KP_HELLO,
                .hello = { .version = 2, .max_chunk = 16384, .window = 1, .id_len = 1, .id = "x" } }, &b), TG_KP_BAD_VERSION);
        assert_eq(tg_kp_frame_encode(&(TgKpFrame) { .type = TG_KP_HELLO,
                .hello = { .version = 1, .role = 3, .max_chunk = 16384, .window = 1, .id_len = 1, .id = "x" } }, &b), TG_KP_BAD_ROLE);
        assert_eq(tg_kp_frame_encode(&(TgKpFrame) { .type = TG_KP_HELLO,
                .hello = { .version = 1, .max_chunk = 16384, .window = 1, .id_len = 0, .id = "" } }, &b), TG_KP_BAD_ID);
        assert_eq(tg_kp_frame_encode(&(TgKpFrame) { .type = TG_KP_OFFER, .offer = { .kind = 9 } }, &b), TG_KP_BAD_KIND);
        assert_eq(tg_kp_frame_encode(&(TgKpFrame) { .type = TG_KP_ACK, .ack = { .status = 4 } }, &b), TG_KP_BAD_STATUS);
        assert_eq(tg_kp_frame_encode(&(TgKpFrame) { .type = TG_KP_DATA, .data = { .data = (const uint8_t *) big,
                                                                                  .len = TG_KP_CHUNK_MAX + 1 } }, &b),
                  TG_KP_CHUNK_TOO_LARGE);
        assert_eq(tg_kp_frame_encode(&(TgKpFrame) { .type = 0 }, &b), TG_KP_UNKNOWN_TYPE);
        assert_eq(tg_kp_frame_encode(&(TgKpFrame) { .type = TG_KP_ERROR,
                                                    .error = { .text = big, .text_len = TG_KP_LENGTH_MAX } }, &b),
                  TG_KP_FRAME_TOO_LARGE);
        assert_eq(b.size, 0u); /* nothing written by a refused frame */
        memset(big, 'n', sizeof big);
        assert_eq(tg_kp_frame_encode(&(TgKpFrame) { .type = TG_KP_OFFER,
                .offer = { .kind = 1, .name = big, .name_len = sizeof big } }, &b), TG_KP_OK);
        assert_eq(b.size, 4 + 57 + sizeof big);
        tg_buf_free(&b);
}

/* ─── the incremental decoder ──────────────────────────────────────────── */

/* Decode a stream fed in pieces; return the frames re-encoded, one after the
 * other (the codec is canonical: the bytes come back as they went in). */
static void decode_stream(const uint8_t *s, size_t n, unsigned mode, TgBuf *out, size_t *ret_in_place) {
        TgKpDecoder d;
        size_t off = 0;

        tg_kp_decoder_init(&d, 256 * 1024);
        *ret_in_place = 0;
        while (off < n) {
                size_t piece, used;
                TgKpFrame f;

                piece = mode == 0 ? n - off : mode == 1 ? 1 : 1 + rnd_below(MIN(n - off, (size_t) (rnd() % 3 ? 64 : 300000)));
                piece = MIN(piece, n - off);
                /* Push the piece until all of it is taken. */
                const uint8_t *p = s + off;
                size_t left = piece;
                do {
                        assert_eq(tg_kp_decoder_push(&d, p, left, &used, &f), TG_KP_OK);
                        assert_le(used, left);
                        if (f.type != TG_KP_NONE) {
                                encode_into(out, &f);
                                if (f.type == TG_KP_DATA && f.data.len > 0 && f.data.data >= p &&
                                    f.data.data < p + left)
                                        (*ret_in_place)++;
                        } else
                                assert_eq(used, left);
                        p += used;
                        left -= used;
                } while (left > 0);
                off += piece;
        }
        assert_eq(tg_kp_decoder_pending(&d), 0u);
        tg_kp_decoder_done(&d);
}

static void test_decoder_splits(void) {
        TgBuf stream = {}, whole = {}, piece = {};
        uint8_t *payload = malloc(200000);
        size_t frames = 0, in_place;
        uint8_t sha[32] = { 1, 2, 3 };

        seed(7);
        assert_se(payload);
        rnd_fill(payload, 200000);
        encode_into(&stream, &(TgKpFrame) { .type = TG_KP_HELLO,
                .hello = { .version = 1, .role = 0, .max_chunk = 262144, .window = 8, .id_len = 3, .id = "VIN" } });
        for (unsigned i = 0; i < 40; i++) {
                TgKpFrame f = { .type = (uint8_t) (2 + rnd_below(8)) };

                switch (f.type) {
                case TG_KP_OFFER:
                        f.offer = (TgKpOffer) { .item_id = rnd(), .kind = (uint8_t) (1 + rnd_below(4)), .size = rnd(),
                                                .records = (uint32_t) rnd(), .name = (const char *) payload,
                                                .name_len = (uint16_t) rnd_below(3000) };
                        memcpy(f.offer.sha256, sha, 32);
                        break;
                case TG_KP_PULL:
                        f.pull = (TgKpPull) { rnd(), rnd() };
                        break;
                case TG_KP_DATA:
                        f.data = (TgKpData) { .item_id = rnd(), .offset = rnd(), .data = payload,
                                              .len = rnd() % 4 == 0 ? 200000 : rnd_below(70000) };
                        break;
                case TG_KP_ACK:
                        f.ack = (TgKpAck) { rnd(), (uint8_t) rnd_below(4) };
                        break;
                case TG_KP_ERROR:
                        f.error = (TgKpErrorFrame) { .code = 3, .text = "bye", .text_len = 3 };
                        break;
                case TG_KP_PING:
                case TG_KP_PONG:
                        f.nonce = rnd();
                        break;
                default:
                        break;
                }
                encode_into(&stream, &f);
                frames++;
        }

        decode_stream(stream.data, stream.size, 0, &whole, &in_place);
        assert_eq(whole.size, stream.size);
        assert_memeq(whole.data, stream.data, stream.size);
        assert_se(in_place > 0); /* fed whole: DATA decoded in place, never copied */

        decode_stream(stream.data, stream.size, 1, &piece, &in_place);
        assert_eq(piece.size, stream.size);
        assert_memeq(piece.data, stream.data, stream.size);
        assert_eq(in_place, 0u); /* byte by byte: every payload copied once, into the decoder */

        for (unsigned r = 0; r < 30; r++) {
                tg_buf_reset(&piece);
                decode_stream(stream.data, stream.size, 2, &piece, &in_place);
                assert_eq(piece.size, stream.size);
                assert_memeq(piece.data, stream.data, stream.size);
        }
        (void) frames;
        tg_buf_free(&stream);
        tg_buf_free(&whole);
        tg_buf_free(&piece);
        free(payload);
}

static void test_decoder_limit_before_buffering(void) {
        uint8_t hdr[5];
        TgKpDecoder d;
        TgKpFrame f;
        size_t used;

        /* A DATA frame one byte over the limit fails at its fifth byte. */
        tg_put_be32(hdr, 17 + 16384 + 1);
        hdr[4] = TG_KP_DATA;
        tg_kp_decoder_init(&d, 16384);
        for (size_t i = 0; i < 4; i++)
                assert_eq(tg_kp_decoder_push(&d, hdr + i, 1, &used, &f), TG_KP_OK);
        assert_eq(tg_kp_decoder_push(&d, hdr + 4, 1, &used, &f), TG_KP_CHUNK_TOO_LARGE);
        assert_se(d.buf == NULL && d.allocated == 0);
        tg_kp_decoder_done(&d);

        /* A huge length fails at its fourth byte. */
        tg_put_be32(hdr, 0x7fffffff);
        tg_kp_decoder_init(&d, 16384);
        assert_eq(tg_kp_decoder_push(&d, hdr, 3, &used, &f), TG_KP_OK);
        assert_eq(tg_kp_decoder_push(&d, hdr + 3, 2, &used, &f), TG_KP_FRAME_TOO_LARGE);
        assert_eq(used, 1u);
        assert_se(d.buf == NULL);
        tg_kp_decoder_done(&d);

        /* Raising the limit takes effect at the next frame. */
        tg_put_be32(hdr, 17 + 20000);
        tg_kp_decoder_init(&d, 16384);
        tg_kp_decoder_set_max_data(&d, 20000);
        assert_eq(tg_kp_decoder_push(&d, hdr, 5, &used, &f), TG_KP_OK);
        tg_kp_decoder_done(&d);
}

static void test_sha256(void) {
        /* FIPS 180-2 test vectors. */
        static const uint8_t empty[32] = {
                0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
                0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
        };
        static const uint8_t abc[32] = {
                0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
                0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad,
        };
        uint8_t h[32];

        assert_ok(tg_kp_sha256("", 0, h));
        assert_memeq(h, empty, 32);
        assert_ok(tg_kp_sha256("abc", 3, h));
        assert_memeq(h, abc, 32);
}

/* ─── session harness ──────────────────────────────────────────────────── */

typedef struct TItem {
        uint64_t id;
        uint8_t kind;
        size_t size;
        uint8_t *data;
        uint8_t sha[32];
        char name[32];
        bool present;  /* not deleted yet (acknowledged stored or have) */
        bool offered;  /* handed out in this session */
        bool refused;  /* refused in this session */
        unsigned acks[4];
} TItem;

typedef struct SItem {
        uint64_t id;
        uint64_t size;
        uint8_t sha[32];
        uint8_t *buf;
        uint64_t have;
        unsigned stored;
        bool waiting; /* complete() said later */
} SItem;

#define MAX_ITEMS 256

typedef struct Side {
        const char *name;
        TgKpRole role;
        uint32_t max_chunk;
        uint16_t window, max_offers;
        size_t output_target;
        uint64_t ping_interval, ping_timeout;
        TgKpSession *s;

        TItem src[MAX_ITEMS];
        size_t n_src;
        uint64_t bytes_read;

        SItem sink[MAX_ITEMS];
        size_t n_sink;
        unsigned checks[3];
        unsigned resumes;
        unsigned writes_failed;
        uint64_t fail_write_id;
        bool complete_later;
        uint64_t max_size;

        unsigned done_calls;
        uint64_t done_sent, done_received;
        int hello_result;
        /* faults: the callback returns this (-errno), or misbehaves */
        int fail_next_offer, fail_read, fail_acked, fail_offered, fail_complete;
        bool offer_bad_kind, offer_twice, offer_beyond, complete_nonsense;
} Side;

static TItem *src_find(Side *x, uint64_t id) {
        for (size_t i = 0; i < x->n_src; i++)
                if (x->src[i].id == id)
                        return x->src + i;
        return NULL;
}

static SItem *sink_find(Side *x, uint64_t id) {
        for (size_t i = 0; i < x->n_sink; i++)
                if (x->sink[i].id == id)
                        return x->sink + i;
        return NULL;
}

static TItem *add_item(Side *x, uint64_t id, size_t size) {
        TItem *t;

        assert_se(x->n_src < MAX_ITEMS);
        t = x->src + x->n_src++;
        *t = (TItem) { .id = id, .kind = (uint8_t) (1 + id % 4), .size = size, .present = true };
        t->data = malloc(size ?: 1);
        assert_se(t->data);
        rnd_fill(t->data, size);
        assert_ok(tg_kp_sha256(t->data, size, t->sha));
        snprintf(t->name, sizeof t->name, "item-%" PRIu64, id);
        return t;
}

static int cb_next_offer(void *userdata, TgKpOffer *ret) {
        Side *x = userdata;

        if (x->fail_next_offer)
                return x->fail_next_offer;
        for (size_t i = 0; i < x->n_src; i++) {
                TItem *t = x->src + i;
                if (!t->present || (t->offered && !x->offer_twice) || t->refused)
                        continue;
                t->offered = true;
                *ret = (TgKpOffer) { .item_id = t->id, .kind = t->kind, .priority = (uint8_t) (t->id % 10),
                                     .size = t->size, .records = 1, .name = t->name,
                                     .name_len = (uint16_t) strlen(t->name) };
                memcpy(ret->sha256, t->sha, 32);
                if (x->offer_bad_kind)
                        ret->kind = 0;
                return 1;
        }
        return 0;
}

static int cb_read(void *userdata, uint64_t id, uint64_t offset, void *buf, size_t len) {
        Side *x = userdata;
        TItem *t = src_find(x, id);

        assert_se(t && t->present);
        assert_le(offset + len, t->size);
        if (x->fail_read)
                return x->fail_read;
        memcpy(buf, t->data + offset, len);
        x->bytes_read += len;
        return 0;
}

static int cb_acked(void *userdata, uint64_t id, TgKpAckStatus status) {
        Side *x = userdata;
        TItem *t = src_find(x, id);

        assert_se(t && t->present && t->offered);
        t->acks[status]++;
        if (x->fail_acked)
                return x->fail_acked;
        switch (status) {
        case TG_KP_ACK_STORED:
        case TG_KP_ACK_HAVE:
                t->present = false; /* the peer has it: delete our copy */
                break;
        case TG_KP_ACK_BAD_HASH:
                t->offered = false; /* offer it again */
                break;
        case TG_KP_ACK_REFUSED:
                t->refused = true;
                break;
        }
        return 0;
}

static int cb_offered(void *userdata, const TgKpOffer *o, uint64_t *ret_offset) {
        Side *x = userdata;
        SItem *it = sink_find(x, o->item_id);

        if (x->fail_offered)
                return x->fail_offered;
        if (it && it->stored)
                return TG_KP_ANSWER_HAVE;
        if (x->max_size && o->size > x->max_size)
                return TG_KP_ANSWER_REFUSE;
        if (!it) {
                assert_se(x->n_sink < MAX_ITEMS);
                it = x->sink + x->n_sink++;
                *it = (SItem) { .id = o->item_id, .size = o->size };
                it->buf = malloc(o->size ?: 1);
                assert_se(it->buf);
        }
        assert_eq(it->size, o->size);
        memcpy(it->sha, o->sha256, 32);
        *ret_offset = x->offer_beyond ? it->size + 1 : it->have;
        if (it->have > 0)
                x->resumes++;
        return TG_KP_ANSWER_PULL;
}

static int cb_write(void *userdata, uint64_t id, uint64_t offset, const void *data, size_t len) {
        Side *x = userdata;
        SItem *it = sink_find(x, id);

        assert_se(it && !it->stored);
        assert_eq(offset, it->have); /* always the next bytes */
        assert_le(offset + len, it->size);
        if (id == x->fail_write_id) {
                x->writes_failed++;
                return -ENOSPC;
        }
        memcpy(it->buf + offset, data, len);
        it->have += len;
        return 0;
}

static int cb_complete(void *userdata, const TgKpOffer *o, TgKpHashCheck check) {
        Side *x = userdata;
        SItem *it = sink_find(x, o->item_id);
        uint8_t h[32];

        assert_se(it && !it->stored);
        assert_se(o->name == NULL);
        assert_eq(it->have, it->size);
        x->checks[check]++;
        if (x->fail_complete)
                return x->fail_complete;
        if (x->complete_nonsense)
                return 42;
        if (check == TG_KP_HASH_UNCHECKED) {
                /* Resumed: hash what we hold. */
                assert_ok(tg_kp_sha256(it->buf, it->size, h));
                if (memcmp(h, o->sha256, 32) != 0)
                        check = TG_KP_HASH_MISMATCH;
        }
        if (check == TG_KP_HASH_MISMATCH) {
                it->have = 0; /* drop, pull from 0 next time */
                return TG_KP_ACK_BAD_HASH;
        }
        if (x->complete_later) {
                it->waiting = true;
                return TG_KP_COMPLETE_LATER;
        }
        it->stored++;
        return TG_KP_ACK_STORED;
}

static int cb_hello(void *userdata, const TgKpHello *peer) {
        Side *x = userdata;

        assert_eq(peer->version, 1);
        assert_eq(strlen(peer->id), peer->id_len);
        return x->hello_result;
}

static void cb_done(void *userdata, uint64_t sent, uint64_t received) {
        Side *x = userdata;

        x->done_calls++;
        x->done_sent = sent;
        x->done_received = received;
}

static const TgKpCallbacks callbacks = {
        .next_offer = cb_next_offer,
        .read = cb_read,
        .acked = cb_acked,
        .offered = cb_offered,
        .write = cb_write,
        .complete = cb_complete,
        .hello = cb_hello,
        .done = cb_done,
};

static Side *side_new(const char *name, TgKpRole role) {
        Side *x = calloc(1, sizeof *x);

        assert_se(x);
        x->name = name;
        x->role = role;
        x->ping_interval = USEC_INFINITY;
        return x;
}

static void side_free(Side *x) {
        tg_kp_session_free(x->s);
        for (size_t i = 0; i < x->n_src; i++)
                free(x->src[i].data);
        for (size_t i = 0; i < x->n_sink; i++)
                free(x->sink[i].buf);
        free(x);
}

/* A new connection: the sources forget what they handed out, the sinks keep
 * what they received. */
static void start(Side *x) {
        x->s = tg_kp_session_free(x->s);
        for (size_t i = 0; i < x->n_src; i++)
                x->src[i].offered = x->src[i].refused = false;
        x->done_calls = 0;
        assert_ok(tg_kp_session_new(&x->s, &(TgKpConfig) {
                .role = x->role,
                .id = x->role == TG_KP_ROLE_GATEWAY ? "WVWZZZ1JZXW000001" : "key-0042",
                .max_chunk = x->max_chunk,
                .window = x->window,
                .max_offers = x->max_offers,
                .output_target = x->output_target,
                .ping_interval_usec = x->ping_interval,
                .ping_timeout_usec = x->ping_timeout,
                .callbacks = &callbacks,
                .userdata = x,
        }));
}

/* Watches one direction of the stream, frame by frame, byte by byte. */
typedef struct Tap {
        uint64_t pos; /* in the current frame */
        uint8_t hdr[TG_KP_DATA_HEADER_SIZE];
        uint32_t length;
        uint64_t data_whole;  /* DATA payload bytes in frames delivered whole */
        uint64_t frames[10];  /* whole frames by type */
        uint64_t corrupt_item; /* flip a payload byte of this item's next DATA (0: none) */
        uint64_t corrupt_after; /* … at this payload byte of a frame or later */
} Tap;

static void tap_bytes(Tap *t, uint8_t *p, size_t n) {
        for (size_t i = 0; i < n; i++) {
                if (t->pos < sizeof t->hdr)
                        t->hdr[t->pos] = p[i];
                if (t->pos == 3)
                        t->length = tg_get_be32(t->hdr);
                if (t->corrupt_item && t->pos >= TG_KP_DATA_HEADER_SIZE + t->corrupt_after &&
                    t->hdr[4] == TG_KP_DATA && tg_get_be64(t->hdr + 5) == t->corrupt_item) {
                        p[i] ^= 0x40;
                        t->corrupt_item = 0;
                }
                t->pos++;
                if (t->pos >= 5 && t->pos == 4 + (uint64_t) t->length) {
                        assert_le(t->hdr[4], 9);
                        t->frames[t->hdr[4]]++;
                        if (t->hdr[4] == TG_KP_DATA)
                                t->data_whole += t->length - 17;
                        t->pos = 0;
                }
        }
}

/* DATA payload bytes of a frame cut in the middle (lost with the connection). */
static uint64_t tap_partial(const Tap *t) {
        return t->pos > TG_KP_DATA_HEADER_SIZE && t->hdr[4] == TG_KP_DATA ? t->pos - TG_KP_DATA_HEADER_SIZE : 0;
}

typedef struct Link {
        uint64_t budget;      /* bytes until the cut; UINT64_MAX: no cut */
        bool whole;           /* hand over whole batches (else random pieces) */
        bool errors_ok;       /* a session may end with an error */
        Tap tap[2];           /* [0] a → b, [1] b → a */
        bool fresh[2];
        uint64_t batches[2], batch_bytes[2], big_batch_bytes[2];
        size_t max_batch[2];
        TgBuf scratch;
} Link;

static void link_init(Link *l, uint64_t budget) {
        *l = (Link) { .budget = budget, .fresh = { true, true } };
}

/* Move one piece from `from` to `to`; false if there was nothing to move or
 * the cut came. */
static bool move(Side *from, Side *to, Link *l, int dir, bool *ret_cut) {
        const uint8_t *p;
        size_t len, n;
        TgKpError e;

        (void) tg_kp_session_output(from->s, &p, &len);
        if (len == 0)
                return false;
        if (l->fresh[dir]) {
                l->batches[dir]++;
                l->batch_bytes[dir] += len;
                if (len >= 16384)
                        l->big_batch_bytes[dir] += len;
                l->max_batch[dir] = MAX(l->max_batch[dir], len);
        }
        if (l->whole)
                n = len;
        else
                switch (rnd() % 4) {
                case 0:
                        n = 1 + rnd_below(MIN(len, (size_t) 40));
                        break;
                case 1:
                        n = 1 + rnd_below(len);
                        break;
                default:
                        n = len;
                }
        if (l->budget != UINT64_MAX) {
                if (l->budget == 0) {
                        *ret_cut = true;
                        return false;
                }
                n = (size_t) MIN((uint64_t) n, l->budget);
                l->budget -= n;
        }
        tg_buf_reset(&l->scratch);
        assert_ok(tg_buf_append(&l->scratch, p, n));
        tap_bytes(&l->tap[dir], l->scratch.data, n);
        e = tg_kp_session_feed(to->s, l->scratch.data, n);
        if (!l->errors_ok && e != TG_KP_OK) {
                const char *text;
                (void) tg_kp_session_error(to->s, NULL, &text);
                fprintf(stderr, "%s: %s\n", to->name, text);
        }
        if (!l->errors_ok)
                assert_eq(e, TG_KP_OK);
        tg_kp_session_consumed(from->s, n);
        l->fresh[dir] = n == len;
        return true;
}

/* Until both are quiet (true) or the cut (false). Checks the windows on the way. */
static bool pump(Side *a, Side *b, Link *l) {
        for (;;) {
                bool progress = false, cut = false;

                progress |= move(a, b, l, 0, &cut);
                if (cut)
                        return false;
                progress |= move(b, a, l, 1, &cut);
                if (cut)
                        return false;
                /* The peer's offers not acknowledged never exceed our window. */
                assert_le(l->tap[0].frames[TG_KP_OFFER] - l->tap[1].frames[TG_KP_ACK], (uint64_t) (b->window ?: TG_KP_DEFAULT_WINDOW));
                assert_le(l->tap[1].frames[TG_KP_OFFER] - l->tap[0].frames[TG_KP_ACK], (uint64_t) (a->window ?: TG_KP_DEFAULT_WINDOW));
                if (!progress)
                        return true;
        }
}

static void link_done(Link *l) {
        tg_buf_free(&l->scratch);
}

static uint64_t sum_sizes(const Side *x) {
        uint64_t n = 0;

        for (size_t i = 0; i < x->n_src; i++)
                n += x->src[i].size;
        return n;
}

/* Everything `from` had arrived at `to` once, intact, and `from` deleted it. */
static void check_delivered(const Side *from, Side *to) {
        for (size_t i = 0; i < from->n_src; i++) {
                const TItem *t = from->src + i;
                SItem *it = sink_find(to, t->id);

                assert_se(!t->present);
                assert_se(it);
                assert_eq(it->stored, 1u);
                assert_eq(it->size, (uint64_t) t->size);
                assert_memeq(it->buf, t->data, t->size);
        }
}

static void check_alive(Side *x) {
        assert_eq(tg_kp_session_error(x->s, NULL, NULL), TG_KP_OK);
        assert_se(!tg_kp_session_finished(x->s));
}

/* ─── sessions ─────────────────────────────────────────────────────────── */

static void test_session_both_directions(void) {
        Side *gw = side_new("gateway", TG_KP_ROLE_GATEWAY), *key = side_new("key", TG_KP_ROLE_KEY);
        static const size_t fixed[] = { 0, 1, 2, 100, 16383, 16384, 16385, 32768, 65535, 65536, 65537, 200000,
                                        3 * 1024 * 1024 + 7 };
        TgKpStats gs, ks;
        Link l;
        uint64_t id = 1;

        seed(42);
        gw->max_chunk = 65536;
        gw->window = 3;
        key->max_chunk = 32768; /* the chunk is the smaller */
        key->window = 5;
        for (size_t i = 0; i < ELEMENTSOF(fixed); i++)
                add_item(gw, id++, fixed[i]);
        for (unsigned i = 0; i < 10; i++)
                add_item(gw, id++, rnd_below(1024 * 1024));
        add_item(key, 1000, 0);
        add_item(key, 1001, 1);
        add_item(key, 1002, 5 * 1024 * 1024);
        for (unsigned i = 0; i < 8; i++)
                add_item(key, id++ + 5000, rnd_below(300000));

        start(gw);
        start(key);
        link_init(&l, UINT64_MAX);
        assert_se(pump(gw, key, &l));

        check_alive(gw);
        check_alive(key);
        check_delivered(gw, key);
        check_delivered(key, gw);
        assert_eq(tg_kp_session_chunk(gw->s), 32768u);
        assert_eq(tg_kp_session_chunk(key->s), 32768u);
        assert_streq(tg_kp_session_peer(gw->s)->id, "key-0042");
        assert_streq(tg_kp_session_peer(key->s)->id, "WVWZZZ1JZXW000001");

        /* done() once on each side, with the counts. */
        assert_eq(gw->done_calls, 1u);
        assert_eq(gw->done_sent, (uint64_t) gw->n_src);
        assert_eq(gw->done_received, (uint64_t) key->n_src);
        assert_eq(key->done_calls, 1u);
        assert_eq(key->done_sent, (uint64_t) key->n_src);
        assert_eq(key->done_received, (uint64_t) gw->n_src);

        /* Every byte once: hashed on the way, never re-read, never resent. */
        tg_kp_session_stats(gw->s, &gs);
        tg_kp_session_stats(key->s, &ks);
        assert_eq(gs.acked_stored, (uint64_t) gw->n_src);
        assert_eq(gs.stored, (uint64_t) key->n_src);
        assert_eq(gs.data_bytes_sent, sum_sizes(gw));
        assert_eq(ks.data_bytes_sent, sum_sizes(key));
        assert_eq(gw->bytes_read, sum_sizes(gw));
        assert_eq(l.tap[0].data_whole, sum_sizes(gw));
        assert_eq(l.tap[1].data_whole, sum_sizes(key));
        assert_eq(key->checks[TG_KP_HASH_OK], (unsigned) gw->n_src);
        assert_eq(gw->checks[TG_KP_HASH_OK], (unsigned) key->n_src);
        assert_eq(gs.resumed + ks.resumed, 0u);
        assert_eq(gs.bytes_out, ks.bytes_in);
        assert_eq(ks.bytes_out, gs.bytes_in);
        assert_eq(l.tap[0].frames[TG_KP_DONE], 1u);
        assert_eq(l.tap[1].frames[TG_KP_DONE], 1u);

        /* Large writes: nearly all bytes leave in batches of ≥ 16 KiB (full
         * TLS records), none larger than the target plus one chunk. */
        for (int dir = 0; dir < 2; dir++) {
                fprintf(stderr, "   direction %d: %" PRIu64 " batches, %" PRIu64 " bytes, largest %zu\n", dir,
                        l.batches[dir], l.batch_bytes[dir], l.max_batch[dir]);
                assert_le(l.batch_bytes[dir] - l.big_batch_bytes[dir], l.batch_bytes[dir] / 50);
                assert_le(l.max_batch[dir], (size_t) TG_KP_DEFAULT_OUTPUT_TARGET + 32768 + TG_KP_DATA_HEADER_SIZE + 4096);
        }

        /* Nothing more to say. */
        {
                const uint8_t *p;
                size_t len;
                assert_eq(tg_kp_session_output(gw->s, &p, &len), TG_KP_OK);
                assert_eq(len, 0u);
        }
        link_done(&l);
        side_free(gw);
        side_free(key);
}

static void test_session_cuts(void) {
        for (uint64_t sd = 1; sd <= 4; sd++) {
                Side *gw = side_new("gateway", TG_KP_ROLE_GATEWAY), *key = side_new("key", TG_KP_ROLE_KEY);
                uint64_t whole[2] = {}, resent[2] = {}, id = 1;
                unsigned cuts = 0, resumed = 0;
                const uint32_t chunk = 16384;

                seed(sd * 1000 + 1);
                gw->max_chunk = key->max_chunk = chunk;
                gw->window = 4;
                key->window = 3;
                add_item(gw, id++, 0);
                add_item(gw, id++, 1);
                add_item(key, id++, 0);
                for (unsigned i = 0; i < 12; i++)
                        add_item(gw, id++, rnd_below(400000));
                add_item(gw, id++, 1024 * 1024 + 3);
                for (unsigned i = 0; i < 8; i++)
                        add_item(key, id++, rnd_below(300000));

                for (unsigned round = 0;; round++) {
                        Link l;
                        bool quiet;

                        start(gw);
                        start(key);
                        /* Cut anywhere: inside a HELLO, an OFFER, a DATA header, a payload. */
                        link_init(&l, round < 60 ? (rnd() % 5 == 0 ? rnd_below(200) : rnd_below(256 * 1024)) : UINT64_MAX);
                        quiet = pump(gw, key, &l);
                        for (int dir = 0; dir < 2; dir++) {
                                uint64_t partial = tap_partial(&l.tap[dir]);

                                /* What the cut loses, and is sent again: at most the
                                 * one chunk that was on its way. */
                                assert_le(partial, (uint64_t) chunk);
                                whole[dir] += l.tap[dir].data_whole;
                                resent[dir] += partial;
                        }
                        {
                                TgKpStats gs, ks;
                                tg_kp_session_stats(gw->s, &gs);
                                tg_kp_session_stats(key->s, &ks);
                                resumed += gs.resumed + ks.resumed;
                        }
                        link_done(&l);
                        if (quiet) {
                                check_alive(gw);
                                check_alive(key);
                                assert_eq(gw->done_calls, 1u);
                                assert_eq(key->done_calls, 1u);
                                break;
                        }
                        cuts++;
                        assert_le(round, 500u);
                }
                check_delivered(gw, key);
                check_delivered(key, gw);
                /* Each byte crossed in a whole DATA frame exactly once: what was
                 * received whole was kept, and resumed from. */
                assert_eq(whole[0], sum_sizes(gw));
                assert_eq(whole[1], sum_sizes(key));
                fprintf(stderr, "   %u cuts, %u resumes, resent %" PRIu64 " + %" PRIu64 " bytes of %" PRIu64 "\n", cuts,
                        resumed, resent[0], resent[1], sum_sizes(gw) + sum_sizes(key));
                assert_se(cuts >= 10);
                assert_se(resumed > 0);
                assert_se(key->checks[TG_KP_HASH_UNCHECKED] > 0); /* the sink re-hashed a resumed item */
                assert_eq(key->checks[TG_KP_HASH_MISMATCH], 0u);
                side_free(gw);
                side_free(key);
        }
}

static void test_session_bad_hash(void) {
        Side *gw = side_new("gateway", TG_KP_ROLE_GATEWAY), *key = side_new("key", TG_KP_ROLE_KEY);
        TgKpStats gs, ks;
        TItem *t;
        Link l;

        seed(5);
        for (uint64_t id = 1; id <= 3; id++)
                add_item(gw, id, 100000);
        add_item(key, 50, 70000);
        start(gw);
        start(key);
        link_init(&l, UINT64_MAX);
        l.tap[0].corrupt_item = 2;
        l.tap[0].corrupt_after = 777;
        l.tap[1].corrupt_item = 50;
        assert_se(pump(gw, key, &l));
        check_alive(gw);
        check_alive(key);
        assert_eq(l.tap[0].corrupt_item, 0u); /* it was corrupted */
        assert_eq(l.tap[1].corrupt_item, 0u);

        check_delivered(gw, key);
        check_delivered(key, gw);
        t = src_find(gw, 2);
        assert_eq(t->acks[TG_KP_ACK_BAD_HASH], 1u);
        assert_eq(t->acks[TG_KP_ACK_STORED], 1u);
        assert_eq(key->checks[TG_KP_HASH_MISMATCH], 1u);
        assert_eq(gw->checks[TG_KP_HASH_MISMATCH], 1u);
        tg_kp_session_stats(gw->s, &gs);
        tg_kp_session_stats(key->s, &ks);
        assert_eq(gs.acked_bad_hash, 1u);
        assert_eq(ks.bad_hash, 1u);
        /* Sent again from 0. */
        assert_eq(gs.data_bytes_sent, sum_sizes(gw) + 100000);
        assert_eq(gs.offers_sent, 4u);
        assert_eq(gw->done_calls, 1u);
        assert_eq(gw->done_sent, 3u);
        assert_eq(key->done_calls, 1u);
        assert_eq(key->done_received, 3u);
        link_done(&l);
        side_free(gw);
        side_free(key);
}

static void test_session_bad_hash_after_resume(void) {
        Side *gw = side_new("gateway", TG_KP_ROLE_GATEWAY), *key = side_new("key", TG_KP_ROLE_KEY);
        SItem *it;
        Link l;

        seed(6);
        gw->max_chunk = key->max_chunk = 16384;
        add_item(gw, 9, 200000);
        start(gw);
        start(key);
        /* About half of it, then the connection breaks. */
        link_init(&l, 100000);
        l.whole = true;
        assert_se(!pump(gw, key, &l));
        link_done(&l);
        it = sink_find(key, 9);
        assert_se(it && it->have > 0 && it->have < 200000);
        it->buf[it->have / 2] ^= 1; /* the partial copy rots */

        start(gw);
        start(key);
        link_init(&l, UINT64_MAX);
        assert_se(pump(gw, key, &l));
        link_done(&l);
        check_alive(gw);
        check_delivered(gw, key);
        assert_eq(key->resumes, 1u);
        assert_eq(key->checks[TG_KP_HASH_UNCHECKED], 1u); /* resumed: the sink hashed, found it bad */
        assert_eq(key->checks[TG_KP_HASH_OK], 1u);        /* from 0 again: the engine hashed */
        assert_eq(src_find(gw, 9)->acks[TG_KP_ACK_BAD_HASH], 1u);
        side_free(gw);
        side_free(key);
}

static void test_session_refuse_have_write_failure(void) {
        Side *gw = side_new("gateway", TG_KP_ROLE_GATEWAY), *key = side_new("key", TG_KP_ROLE_KEY);
        TgKpStats ks;
        Link l;

        seed(8);
        key->max_size = 500000;
        add_item(gw, 1, 1000);
        add_item(gw, 2, 600000);  /* too large: refused at once */
        add_item(gw, 3, 90000);   /* the sink's write fails: refused at the end */
        add_item(gw, 4, 5000);
        key->fail_write_id = 3;
        /* The key stored item 4 earlier: have. */
        key->sink[0] = (SItem) { .id = 4, .size = 5000, .stored = 1, .buf = malloc(1) };
        key->n_sink = 1;

        start(gw);
        start(key);
        link_init(&l, UINT64_MAX);
        assert_se(pump(gw, key, &l));
        check_alive(gw);
        check_alive(key);
        assert_eq(src_find(gw, 1)->acks[TG_KP_ACK_STORED], 1u);
        assert_eq(src_find(gw, 2)->acks[TG_KP_ACK_REFUSED], 1u);
        assert_eq(src_find(gw, 3)->acks[TG_KP_ACK_REFUSED], 1u);
        assert_eq(src_find(gw, 4)->acks[TG_KP_ACK_HAVE], 1u);
        assert_se(!src_find(gw, 1)->present && !src_find(gw, 4)->present);
        assert_se(src_find(gw, 2)->present && src_find(gw, 3)->present); /* kept, not offered again */
        assert_eq(key->writes_failed, 1u);
        tg_kp_session_stats(key->s, &ks);
        assert_eq(ks.refused, 2u);
        assert_eq(ks.have, 1u);
        assert_eq(ks.stored, 1u);
        assert_eq(gw->done_calls, 1u);
        assert_eq(gw->done_sent, 1u);
        link_done(&l);
        side_free(gw);
        side_free(key);
}

static void test_session_kick_and_complete_later(void) {
        Side *gw = side_new("gateway", TG_KP_ROLE_GATEWAY), *key = side_new("key", TG_KP_ROLE_KEY);
        Link l;

        seed(9);
        add_item(gw, 1, 3000);
        start(gw);
        start(key);
        link_init(&l, UINT64_MAX);
        assert_se(pump(gw, key, &l));
        assert_eq(gw->done_calls, 1u);
        assert_eq(key->done_calls, 1u);

        /* New telemetry while driving: offered after DONE, in the same session. */
        add_item(gw, 2, 70000);
        add_item(gw, 3, 0);
        key->complete_later = true;
        tg_kp_session_kick(gw->s);
        assert_se(pump(gw, key, &l));
        /* The sink has not answered yet: no ACKs, no done(). */
        assert_se(src_find(gw, 2)->present && src_find(gw, 3)->present);
        assert_eq(gw->done_calls, 1u);
        assert_eq(tg_kp_session_complete(key->s, 77, TG_KP_ACK_STORED), -ENOENT);
        assert_eq(tg_kp_session_complete(key->s, 2, TG_KP_ACK_HAVE), -EINVAL);
        for (uint64_t id = 2; id <= 3; id++) {
                SItem *it = sink_find(key, id);
                assert_se(it->waiting);
                it->stored = 1;
                assert_ok(tg_kp_session_complete(key->s, id, TG_KP_ACK_STORED));
        }
        assert_eq(tg_kp_session_complete(key->s, 2, TG_KP_ACK_STORED), -ENOENT);
        assert_se(pump(gw, key, &l));
        check_delivered(gw, key);
        assert_eq(gw->done_calls, 2u);
        assert_eq(gw->done_sent, 2u); /* since the previous done() */
        assert_eq(key->done_calls, 2u);
        assert_eq(key->done_received, 2u);
        /* A kick with nothing new: no second DONE, no new done(). */
        tg_kp_session_kick(gw->s);
        assert_se(pump(gw, key, &l));
        assert_eq(l.tap[0].frames[TG_KP_DONE], 2u);
        assert_eq(gw->done_calls, 2u);
        link_done(&l);
        side_free(gw);
        side_free(key);
}

/* A link with a delay and a bandwidth, in simulated milliseconds. */
typedef struct Pipe {
        TgBuf bytes;
        size_t head;
        uint64_t *due;  /* per byte run: (time, end offset) pairs */
        size_t n_due, allocated, due_head;
} Pipe;

static void pipe_push(Pipe *p, const uint8_t *data, size_t n, uint64_t when) {
        assert_ok(tg_buf_append(&p->bytes, data, n));
        if (p->n_due + 2 > p->allocated) {
                p->allocated = p->allocated * 2 + 64;
                p->due = realloc(p->due, p->allocated * sizeof *p->due);
                assert_se(p->due);
        }
        p->due[p->n_due++] = when;
        p->due[p->n_due++] = p->bytes.size;
}

static void pipe_deliver(Pipe *p, uint64_t now, TgKpSession *to) {
        while (p->due_head < p->n_due && p->due[p->due_head] <= now) {
                size_t end = p->due[p->due_head + 1];
                assert_eq(tg_kp_session_feed(to, p->bytes.data + p->head, end - p->head), TG_KP_OK);
                p->head = end;
                p->due_head += 2;
        }
}

static void test_session_fat_pipe(void) {
        /* 10 MB/s, 25 ms each way: 500 KB in flight to fill it. 48 items of
         * 64 KiB: stop and wait would take 48 round trips (2.4 s on top). */
        const uint64_t bytes_per_ms = 10000, latency_ms = 25;
        Side *gw = side_new("gateway", TG_KP_ROLE_GATEWAY), *key = side_new("key", TG_KP_ROLE_KEY);
        Pipe pipes[2] = {};
        uint64_t now, ideal;

        seed(10);
        key->window = 16;
        for (uint64_t id = 1; id <= 48; id++)
                add_item(gw, id, 65536);
        start(gw);
        start(key);
        for (now = 0; now < 100000; now++) {
                Side *sides[2] = { gw, key };

                for (int dir = 0; dir < 2; dir++) {
                        uint64_t budget = bytes_per_ms;
                        while (budget > 0) {
                                const uint8_t *p;
                                size_t len;
                                (void) tg_kp_session_output(sides[dir]->s, &p, &len);
                                if (len == 0)
                                        break;
                                len = (size_t) MIN((uint64_t) len, budget);
                                pipe_push(&pipes[dir], p, len, now + latency_ms);
                                tg_kp_session_consumed(sides[dir]->s, len);
                                budget -= len;
                        }
                }
                pipe_deliver(&pipes[0], now, key->s);
                pipe_deliver(&pipes[1], now, gw->s);
                if (gw->done_calls > 0 && key->done_calls > 0)
                        break;
        }
        check_delivered(gw, key);
        ideal = sum_sizes(gw) / bytes_per_ms;
        fprintf(stderr, "   %" PRIu64 " ms for %" PRIu64 " bytes; the wire alone needs %" PRIu64 " ms + %" PRIu64
                " ms per round trip\n", now, sum_sizes(gw), ideal, 2 * latency_ms);
        /* The wire time, a few round trips (HELLO, first OFFERs and PULLs,
         * last ACK), and little else. */
        assert_le(now, ideal * 11 / 10 + 4 * 2 * latency_ms);
        for (int dir = 0; dir < 2; dir++) {
                tg_buf_free(&pipes[dir].bytes);
                free(pipes[dir].due);
        }
        side_free(gw);
        side_free(key);
}

static void test_session_ping(void) {
        Side *a = side_new("gateway", TG_KP_ROLE_GATEWAY), *b = side_new("key", TG_KP_ROLE_KEY);
        const uint64_t S = USEC_PER_SEC;
        const uint8_t *p;
        size_t len;
        uint16_t code;
        const char *text;
        TgKpStats st;
        Link l;

        a->ping_interval = b->ping_interval = 0; /* defaults: 15 s, 30 s */
        start(a);
        start(b);
        assert_eq(tg_kp_session_next_tick(a->s), 0u); /* wants the clock */
        tg_kp_session_tick(a->s, 1000 * S);
        tg_kp_session_tick(b->s, 1000 * S);
        assert_eq(tg_kp_session_next_tick(a->s), 1015 * S);
        link_init(&l, UINT64_MAX);
        assert_se(pump(a, b, &l));
        assert_eq(a->done_calls, 1u);

        /* Busy: frames keep arriving, no PING. */
        tg_kp_session_tick(a->s, 1010 * S); /* the HELLO arrived since the last tick */
        assert_eq(tg_kp_session_next_tick(a->s), 1025 * S);
        tg_kp_session_tick(a->s, 1020 * S);
        assert_se(pump(a, b, &l));
        assert_eq(l.tap[0].frames[TG_KP_PING], 0u);

        /* Idle for 15 s: PING, answered. */
        tg_kp_session_tick(a->s, 1025 * S);
        assert_eq(tg_kp_session_next_tick(a->s), 1055 * S); /* the PONG's deadline */
        assert_se(pump(a, b, &l));
        assert_eq(l.tap[0].frames[TG_KP_PING], 1u);
        assert_eq(l.tap[1].frames[TG_KP_PONG], 1u);
        tg_kp_session_tick(a->s, 1026 * S);
        assert_eq(tg_kp_session_next_tick(a->s), 1041 * S);
        check_alive(a);

        /* b pings too and gets its PONG. */
        tg_kp_session_tick(b->s, 1026 * S); /* a's PING arrived: b's last word from a */
        tg_kp_session_tick(b->s, 1041 * S);
        assert_se(pump(a, b, &l));
        assert_eq(l.tap[1].frames[TG_KP_PING], 1u);
        assert_eq(l.tap[0].frames[TG_KP_PONG], 1u);
        check_alive(b);

        /* Now b goes silent: a pings, nothing comes back, a gives up 30 s later. */
        tg_kp_session_tick(a->s, 1042 * S); /* b's PING arrived */
        tg_kp_session_tick(a->s, 1056 * S);
        (void) tg_kp_session_output(a->s, &p, &len);
        assert_eq(len, 0u);
        tg_kp_session_tick(a->s, 1057 * S);
        (void) tg_kp_session_output(a->s, &p, &len);
        assert_eq(len, 13u); /* the PING */
        assert_eq(p[4], TG_KP_PING);
        tg_kp_session_consumed(a->s, len);
        tg_kp_session_tick(a->s, 1086 * S);
        check_alive(a);
        tg_kp_session_tick(a->s, 1087 * S);
        assert_eq(tg_kp_session_error(a->s, &code, &text), TG_KP_PING_TIMEOUT);
        assert_eq(code, TG_KP_CODE_UNEXPECTED);
        assert_contains(text, "ping-timeout");
        assert_eq(tg_kp_session_next_tick(a->s), USEC_INFINITY);
        (void) tg_kp_session_output(a->s, &p, &len);
        assert_se(len > 0 && p[4] == TG_KP_ERROR);
        tg_kp_session_consumed(a->s, len);
        assert_se(tg_kp_session_finished(a->s));
        tg_kp_session_stats(a->s, &st);
        assert_eq(st.frames_in, 4u); /* HELLO, DONE, PONG, PING */
        link_done(&l);
        side_free(a);
        side_free(b);
}

/* ─── violations: a scripted peer ──────────────────────────────────────── */

typedef struct Script {
        Side *x;
        TgBuf in;
} Script;

/* A key session that has the gateway's HELLO (window 2 on our side). */
static void script_start(Script *sc, bool hello) {
        sc->x = side_new("key", TG_KP_ROLE_KEY);
        sc->x->window = 2;
        add_item(sc->x, 100, 50000);
        start(sc->x);
        sc->in = (TgBuf) {};
        if (hello)
                encode_into(&sc->in, &(TgKpFrame) { .type = TG_KP_HELLO,
                        .hello = { .version = 1, .role = 0, .max_chunk = 16384, .window = 8, .id_len = 3, .id = "VIN" } });
}

static TgKpError script_feed(Script *sc) {
        TgKpError e = tg_kp_session_feed(sc->x->s, sc->in.data, sc->in.size);
        tg_buf_reset(&sc->in);
        return e;
}

/* Every byte of the session's output is a valid frame; the last one is
 * ERROR with `code`. */
static void expect_error_frame(Script *sc, uint16_t code) {
        TgKpDecoder d;
        TgKpFrame f = {}, last = {};
        const uint8_t *p;
        size_t len, used;
        unsigned guard = 0;

        tg_kp_decoder_init(&d, TG_KP_CHUNK_MAX);
        for (;;) {
                (void) tg_kp_session_output(sc->x->s, &p, &len);
                if (len == 0)
                        break;
                while (len > 0) {
                        assert_eq(tg_kp_decoder_push(&d, p, len, &used, &f), TG_KP_OK);
                        if (f.type != TG_KP_NONE)
                                last = f;
                        tg_kp_session_consumed(sc->x->s, used);
                        p += used;
                        len -= used;
                }
                assert_le(++guard, 1000u);
        }
        assert_eq(tg_kp_decoder_pending(&d), 0u);
        assert_eq(last.type, TG_KP_ERROR);
        assert_eq(last.error.code, code);
        assert_se(tg_kp_session_finished(sc->x->s));
        tg_kp_decoder_done(&d);
}

static void script_end(Script *sc, TgKpError e, uint16_t code) {
        uint16_t c;
        const char *text;

        assert_streq(tg_kp_error_to_string(tg_kp_session_error(sc->x->s, &c, &text)), tg_kp_error_to_string(e));
        assert_eq(c, code);
        assert_contains(text, tg_kp_error_to_string(e));
        expect_error_frame(sc, code);
        /* Dead: input is ignored, the error stays. */
        assert_eq(tg_kp_session_feed(sc->x->s, done_bytes, sizeof done_bytes), e);
        tg_buf_free(&sc->in);
        side_free(sc->x);
}

/* Write out what the session has to say, up to an ERROR frame (left for
 * expect_error_frame()). */
static void drain(Script *sc) {
        const uint8_t *p;
        size_t len;

        for (;;) {
                if (tg_kp_session_output(sc->x->s, &p, &len) != TG_KP_OK || len == 0)
                        return;
                tg_kp_session_consumed(sc->x->s, len);
        }
}

static void offer(Script *sc, uint64_t id, uint64_t size) {
        encode_into(&sc->in, &(TgKpFrame) { .type = TG_KP_OFFER,
                .offer = { .item_id = id, .kind = 1, .size = size, .name = "n", .name_len = 1 } });
}

static void data(Script *sc, uint64_t id, uint64_t offset, size_t len) {
        static const uint8_t zeros[100] = {};
        encode_into(&sc->in, &(TgKpFrame) { .type = TG_KP_DATA,
                .data = { .item_id = id, .offset = offset, .data = zeros, .len = len } });
}

static void test_violations(void) {
        Script sc;
        uint8_t buf[64];

        /* DATA for an item never pulled. */
        script_start(&sc, true);
        data(&sc, 77, 0, 10);
        assert_eq(script_feed(&sc), TG_KP_NOT_PULLED);
        script_end(&sc, TG_KP_NOT_PULLED, TG_KP_CODE_UNEXPECTED);

        /* DATA for an item offered, whose PULL has not gone out yet. */
        script_start(&sc, true);
        offer(&sc, 5, 10);
        data(&sc, 5, 0, 10);
        assert_eq(script_feed(&sc), TG_KP_NOT_PULLED);
        script_end(&sc, TG_KP_NOT_PULLED, TG_KP_CODE_UNEXPECTED);

        /* DATA at the wrong offset, and beyond the end. */
        script_start(&sc, true);
        offer(&sc, 5, 10);
        assert_eq(script_feed(&sc), TG_KP_OK);
        drain(&sc);
        data(&sc, 5, 0, 4);
        data(&sc, 5, 5, 4);
        assert_eq(script_feed(&sc), TG_KP_BAD_OFFSET);
        script_end(&sc, TG_KP_BAD_OFFSET, TG_KP_CODE_UNEXPECTED);
        script_start(&sc, true);
        offer(&sc, 5, 10);
        assert_eq(script_feed(&sc), TG_KP_OK);
        drain(&sc);
        data(&sc, 5, 0, 11);
        assert_eq(script_feed(&sc), TG_KP_BAD_OFFSET);
        script_end(&sc, TG_KP_BAD_OFFSET, TG_KP_CODE_UNEXPECTED);

        /* DATA for the second PULL while the first is due. */
        script_start(&sc, true);
        offer(&sc, 5, 10);
        offer(&sc, 6, 10);
        assert_eq(script_feed(&sc), TG_KP_OK);
        drain(&sc);
        data(&sc, 6, 0, 10);
        assert_eq(script_feed(&sc), TG_KP_UNEXPECTED);
        script_end(&sc, TG_KP_UNEXPECTED, TG_KP_CODE_UNEXPECTED);

        /* PULL for an item we never offered. */
        script_start(&sc, true);
        encode_into(&sc.in, &(TgKpFrame) { .type = TG_KP_PULL, .pull = { .item_id = 4242, .offset = 0 } });
        assert_eq(script_feed(&sc), TG_KP_UNKNOWN_ITEM);
        script_end(&sc, TG_KP_UNKNOWN_ITEM, TG_KP_CODE_UNEXPECTED);

        /* PULL twice, PULL beyond the size, ACK stored before the DATA went out, ACK unknown. */
        script_start(&sc, true);
        assert_eq(script_feed(&sc), TG_KP_OK);
        drain(&sc); /* our OFFER of item 100 goes out */
        encode_into(&sc.in, &(TgKpFrame) { .type = TG_KP_PULL, .pull = { .item_id = 100, .offset = 0 } });
        encode_into(&sc.in, &(TgKpFrame) { .type = TG_KP_PULL, .pull = { .item_id = 100, .offset = 0 } });
        assert_eq(script_feed(&sc), TG_KP_UNEXPECTED);
        script_end(&sc, TG_KP_UNEXPECTED, TG_KP_CODE_UNEXPECTED);
        script_start(&sc, true);
        assert_eq(script_feed(&sc), TG_KP_OK);
        drain(&sc);
        encode_into(&sc.in, &(TgKpFrame) { .type = TG_KP_PULL, .pull = { .item_id = 100, .offset = 50001 } });
        assert_eq(script_feed(&sc), TG_KP_BAD_OFFSET);
        script_end(&sc, TG_KP_BAD_OFFSET, TG_KP_CODE_UNEXPECTED);
        script_start(&sc, true);
        assert_eq(script_feed(&sc), TG_KP_OK);
        drain(&sc);
        encode_into(&sc.in, &(TgKpFrame) { .type = TG_KP_ACK, .ack = { .item_id = 100, .status = TG_KP_ACK_STORED } });
        assert_eq(script_feed(&sc), TG_KP_UNEXPECTED);
        script_end(&sc, TG_KP_UNEXPECTED, TG_KP_CODE_UNEXPECTED);
        script_start(&sc, true);
        encode_into(&sc.in, &(TgKpFrame) { .type = TG_KP_ACK, .ack = { .item_id = 1, .status = TG_KP_ACK_HAVE } });
        assert_eq(script_feed(&sc), TG_KP_UNKNOWN_ITEM);
        script_end(&sc, TG_KP_UNKNOWN_ITEM, TG_KP_CODE_UNEXPECTED);

        /* Window exceeded: ours is 2. */
        script_start(&sc, true);
        offer(&sc, 1, 10);
        offer(&sc, 2, 10);
        assert_eq(script_feed(&sc), TG_KP_OK);
        offer(&sc, 3, 10);
        assert_eq(script_feed(&sc), TG_KP_WINDOW_EXCEEDED);
        script_end(&sc, TG_KP_WINDOW_EXCEEDED, TG_KP_CODE_UNEXPECTED);

        /* The same item offered twice. */
        script_start(&sc, true);
        offer(&sc, 1, 10);
        offer(&sc, 1, 10);
        assert_eq(script_feed(&sc), TG_KP_DUPLICATE_OFFER);
        script_end(&sc, TG_KP_DUPLICATE_OFFER, TG_KP_CODE_UNEXPECTED);

        /* Wrong version. */
        script_start(&sc, false);
        sc.in.size = 0;
        assert_ok(tg_buf_append(&sc.in, buf, hello(buf, 2, 0, 16384, 1, "VIN", 3, 0)));
        assert_eq(script_feed(&sc), TG_KP_BAD_VERSION);
        script_end(&sc, TG_KP_BAD_VERSION, TG_KP_CODE_BAD_VERSION);

        /* Same role. */
        script_start(&sc, false);
        assert_ok(tg_buf_append(&sc.in, buf, hello(buf, 1, 1, 16384, 1, "KEY", 3, 0)));
        assert_eq(script_feed(&sc), TG_KP_SAME_ROLE);
        script_end(&sc, TG_KP_SAME_ROLE, TG_KP_CODE_UNEXPECTED);

        /* A frame before HELLO; a second HELLO. */
        script_start(&sc, false);
        offer(&sc, 1, 10);
        assert_eq(script_feed(&sc), TG_KP_UNEXPECTED);
        script_end(&sc, TG_KP_UNEXPECTED, TG_KP_CODE_UNEXPECTED);
        script_start(&sc, true);
        assert_ok(tg_buf_append(&sc.in, buf, hello(buf, 1, 0, 16384, 1, "VIN", 3, 0)));
        assert_eq(script_feed(&sc), TG_KP_UNEXPECTED);
        script_end(&sc, TG_KP_UNEXPECTED, TG_KP_CODE_UNEXPECTED);

        /* Not paired. */
        script_start(&sc, true);
        sc.x->hello_result = -EPERM;
        assert_eq(script_feed(&sc), TG_KP_NOT_PAIRED);
        script_end(&sc, TG_KP_NOT_PAIRED, TG_KP_CODE_NOT_PAIRED);

        /* A DATA frame over the agreed chunk (16384, the gateway's): refused at
         * its header, nothing buffered. */
        script_start(&sc, true);
        assert_eq(script_feed(&sc), TG_KP_OK);
        tg_put_be32(buf, 17 + 16385);
        buf[4] = TG_KP_DATA;
        assert_eq(tg_kp_session_feed(sc.x->s, buf, 5), TG_KP_CHUNK_TOO_LARGE);
        script_end(&sc, TG_KP_CHUNK_TOO_LARGE, TG_KP_CODE_BAD_FRAME);

        /* Garbage: an HTTP request. */
        script_start(&sc, false);
        assert_eq(tg_kp_session_feed(sc.x->s, "GET / HTTP/1.1\r\n", 16), TG_KP_FRAME_TOO_LARGE);
        script_end(&sc, TG_KP_FRAME_TOO_LARGE, TG_KP_CODE_BAD_FRAME);

        /* PONG without PING. */
        script_start(&sc, true);
        encode_into(&sc.in, &(TgKpFrame) { .type = TG_KP_PONG, .nonce = 1 });
        assert_eq(script_feed(&sc), TG_KP_UNEXPECTED);
        script_end(&sc, TG_KP_UNEXPECTED, TG_KP_CODE_UNEXPECTED);

        /* Shutting down. */
        script_start(&sc, true);
        assert_eq(script_feed(&sc), TG_KP_OK);
        tg_kp_session_shutdown(sc.x->s);
        script_end(&sc, TG_KP_SHUTTING_DOWN, TG_KP_CODE_SHUTTING_DOWN);

        /* The peer's ERROR: taken, kept (made printable), nothing sent back. */
        {
                const uint8_t *p;
                size_t len;
                uint16_t code;
                const char *text;

                script_start(&sc, false);
                encode_into(&sc.in, &(TgKpFrame) { .type = TG_KP_ERROR,
                        .error = { .code = 4, .text = "not paired\n\x01", .text_len = 12 } });
                assert_eq(script_feed(&sc), TG_KP_PEER_ERROR);
                assert_eq(tg_kp_session_error(sc.x->s, &code, &text), TG_KP_PEER_ERROR);
                assert_eq(code, 4);
                assert_streq(text, "not paired??");
                (void) tg_kp_session_output(sc.x->s, &p, &len);
                assert_eq(len, 0u);
                assert_se(tg_kp_session_finished(sc.x->s));
                tg_buf_free(&sc.in);
                side_free(sc.x);
        }
}

/* A callback that fails, or answers nonsense, ends the session with
 * internal-error: the peer learns it was not its fault. */
static void test_callback_failures(void) {
        static const struct {
                const char *what;
                size_t offset; /* of the field in Side */
                int value;
                bool incoming; /* the peer offers an item (else: ours are pulled) */
        } cases[] = {
                { "next_offer", offsetof(Side, fail_next_offer), -EIO, false },
                { "read", offsetof(Side, fail_read), -EIO, false },
                { "acked", offsetof(Side, fail_acked), -EIO, false },
                { "offered", offsetof(Side, fail_offered), -ENOMEM, true },
                { "offered (nonsense)", offsetof(Side, fail_offered), 7, true },
                { "complete", offsetof(Side, fail_complete), -EIO, true },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Script sc;

                fprintf(stderr, "   %s\n", cases[i].what);
                script_start(&sc, true);
                *(int *) ((uint8_t *) sc.x + cases[i].offset) = cases[i].value;
                if (cases[i].incoming) {
                        offer(&sc, 5, 0);
                        (void) script_feed(&sc);
                        drain(&sc); /* the PULL, and the item is complete at once */
                } else {
                        assert_eq(script_feed(&sc), TG_KP_OK);
                        drain(&sc); /* OFFER of item 100 */
                        encode_into(&sc.in, &(TgKpFrame) { .type = TG_KP_PULL, .pull = { .item_id = 100, .offset = 0 } });
                        (void) script_feed(&sc);
                        drain(&sc); /* its DATA */
                        encode_into(&sc.in, &(TgKpFrame) { .type = TG_KP_ACK, .ack = { .item_id = 100, .status = 0 } });
                        (void) script_feed(&sc);
                }
                script_end(&sc, TG_KP_INTERNAL, TG_KP_CODE_INTERNAL);
        }

        /* A source that offers nonsense, or the same item twice; a sink that
         * claims more than the item, or answers complete() with nonsense. */
        for (int k = 0; k < 4; k++) {
                Script sc;

                fprintf(stderr, "   misbehaviour %d\n", k);
                script_start(&sc, true);
                add_item(sc.x, 101, 10);
                sc.x->offer_bad_kind = k == 0;
                sc.x->offer_twice = k == 1;
                sc.x->offer_beyond = k == 2;
                sc.x->complete_nonsense = k == 3;
                if (k >= 2)
                        offer(&sc, 5, 0);
                (void) script_feed(&sc);
                drain(&sc);
                script_end(&sc, TG_KP_INTERNAL, TG_KP_CODE_INTERNAL);
        }
}

/* A peer that pings faster than we write gets its latest 16 PINGs answered. */
static void test_pong_queue(void) {
        Script sc;
        TgKpDecoder d;
        const uint8_t *p;
        size_t len, used;
        uint64_t first = 0, n = 0;

        script_start(&sc, true);
        assert_eq(script_feed(&sc), TG_KP_OK);
        for (uint64_t i = 1; i <= 40; i++)
                encode_into(&sc.in, &(TgKpFrame) { .type = TG_KP_PING, .nonce = i });
        assert_eq(script_feed(&sc), TG_KP_OK);
        tg_kp_decoder_init(&d, TG_KP_CHUNK_MAX);
        for (;;) {
                (void) tg_kp_session_output(sc.x->s, &p, &len);
                if (len == 0)
                        break;
                tg_kp_session_consumed(sc.x->s, len);
                while (len > 0) {
                        TgKpFrame f;
                        assert_eq(tg_kp_decoder_push(&d, p, len, &used, &f), TG_KP_OK);
                        if (f.type == TG_KP_PONG && n++ == 0)
                                first = f.nonce;
                        p += used;
                        len -= used;
                }
        }
        assert_eq(n, 16u);
        assert_eq(first, 25u);
        tg_kp_decoder_done(&d);
        tg_buf_free(&sc.in);
        side_free(sc.x);
}

static void test_session_config(void) {
        TgKpSession *s = NULL;
        static const TgKpCallbacks half = { .next_offer = cb_next_offer };

        assert_eq(tg_kp_session_new(&s, &(TgKpConfig) { .role = 0 }), -EINVAL);
        assert_eq(tg_kp_session_new(&s, &(TgKpConfig) { .role = 2, .id = "x" }), -EINVAL);
        assert_eq(tg_kp_session_new(&s, &(TgKpConfig) { .role = 0, .id = "" }), -EINVAL);
        assert_eq(tg_kp_session_new(&s, &(TgKpConfig) { .role = 0, .id = "a\tb" }), -EINVAL);
        assert_eq(tg_kp_session_new(&s, &(TgKpConfig) { .role = 0, .id = "x", .max_chunk = 1000 }), -EINVAL);
        assert_eq(tg_kp_session_new(&s, &(TgKpConfig) { .role = 0, .id = "x", .callbacks = &half }), -EINVAL);
        assert_se(!s);

        /* No callbacks at all: HELLO, then DONE; every offer refused. */
        assert_ok(tg_kp_session_new(&s, &(TgKpConfig) { .role = TG_KP_ROLE_KEY, .id = "k" }));
        {
                TgBuf in = {};
                const uint8_t *p;
                size_t len;
                TgKpFrame f;

                (void) tg_kp_session_output(s, &p, &len);
                assert_eq(len, 4 + 12 + 1u);
                assert_eq(tg_kp_frame_decode(p, len, TG_KP_CHUNK_MAX, &f), TG_KP_OK);
                assert_eq(f.hello.max_chunk, (uint32_t) TG_KP_DEFAULT_CHUNK);
                assert_eq(f.hello.window, TG_KP_DEFAULT_WINDOW);
                tg_kp_session_consumed(s, len);
                encode_into(&in, &(TgKpFrame) { .type = TG_KP_HELLO,
                        .hello = { .version = 1, .role = 0, .max_chunk = 1048576, .window = 1, .id_len = 1, .id = "g" } });
                encode_into(&in, &(TgKpFrame) { .type = TG_KP_OFFER, .offer = { .item_id = 3, .kind = 2, .size = 9 } });
                assert_eq(tg_kp_session_feed(s, in.data, in.size), TG_KP_OK);
                assert_eq(tg_kp_session_chunk(s), (uint32_t) TG_KP_DEFAULT_CHUNK);
                (void) tg_kp_session_output(s, &p, &len);
                assert_eq(len, 14u + 5u); /* ACK refused, DONE */
                assert_eq(tg_kp_frame_decode(p, 14, TG_KP_CHUNK_MAX, &f), TG_KP_OK);
                assert_eq(f.type, TG_KP_ACK);
                assert_eq(f.ack.status, TG_KP_ACK_REFUSED);
                assert_memeq(p + 14, done_bytes, 5);
                tg_buf_free(&in);
        }
        s = tg_kp_session_free(s);
        assert_se(!s);
}

TG_TEST_MAIN(TEST(layouts),
             TEST(names),
             TEST(decode_errors),
             TEST(decode_largest),
             TEST(encode_refuses),
             TEST(decoder_splits),
             TEST(decoder_limit_before_buffering),
             TEST(sha256),
             TEST(session_config),
             TEST(session_both_directions),
             TEST(session_cuts),
             TEST(session_bad_hash),
             TEST(session_bad_hash_after_resume),
             TEST(session_refuse_have_write_failure),
             TEST(session_kick_and_complete_later),
             TEST(session_fat_pipe),
             TEST(session_ping),
             TEST(violations),
             TEST(callback_failures),
             TEST(pong_queue))
