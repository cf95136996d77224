/* SPDX-License-Identifier: MIT */
#include "tg-frame.h"
#include "tg-record.h"
#include "tg-test.h"

/* id 0x0102030405060708, timestamp 0x1122334455667788, topic "a.b",
 * payload de ad be ef: written out by hand from the layout in tg-record.h. */
static const uint8_t known_record[] = {
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, /* u64 id */
        0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, /* u64 timestamp_usec */
        0x00, 0x03,                                     /* u16 topic_len */
        0x00, 0x00, 0x00, 0x04,                         /* u32 payload_len */
        'a', '.', 'b',                                  /* topic */
        0xde, 0xad, 0xbe, 0xef,                         /* payload */
};

/* A record header with the given lengths (id 0, timestamp 1), for crafting bad input. */
static size_t put_header(uint8_t *p, uint16_t topic_len, uint32_t payload_len) {
        memset(p, 0, 16);
        p[15] = 1;
        tg_put_be16(p + 16, topic_len);
        tg_put_be32(p + 18, payload_len);
        return TG_RECORD_HEADER_SIZE;
}

static void test_known_layout(void) {
        static const uint8_t payload[] = { 0xde, 0xad, 0xbe, 0xef };
        TgRecord r = {
                .id = UINT64_C(0x0102030405060708),
                .timestamp_usec = UINT64_C(0x1122334455667788),
                .topic = "a.b",
                .topic_len = 3,
                .payload = payload,
                .payload_len = sizeof payload,
        }, d;
        uint8_t out[sizeof known_record + 8];
        size_t offset = 0;

        assert_eq(sizeof known_record, (size_t) 29);
        assert_eq(tg_record_size(&r), sizeof known_record);
        memset(out, 0xcc, sizeof out);
        assert_eq(tg_record_encode(out, &r), sizeof known_record);
        assert_memeq(out, known_record, sizeof known_record);
        assert_eq(out[sizeof known_record], 0xcc); /* nothing written past the record */

        assert_eq(tg_record_decode(known_record, sizeof known_record, &offset, TG_PAYLOAD_MAX, &d), TG_RECORD_OK);
        assert_eq(offset, sizeof known_record);
        assert_eq(d.id, r.id);
        assert_eq(d.timestamp_usec, r.timestamp_usec);
        assert_eq(d.topic_len, 3);
        assert_se(memcmp(d.topic, "a.b", 3) == 0);
        assert_se(d.topic == (const char *) known_record + 22); /* points into the buffer */
        assert_eq(d.payload_len, 4u);
        assert_memeq(d.payload, payload, sizeof payload);
}

static void test_round_trip(void) {
        char long_topic[TG_TOPIC_MAX + 1];
        uint8_t *big;
        TgBuf b = {};
        size_t offset = 0;

        memset(long_topic, 'x', TG_TOPIC_MAX);
        long_topic[TG_TOPIC_MAX] = '\0';
        long_topic[100] = '/';
        big = malloc(TG_PAYLOAD_MAX);
        assert_se(big);
        for (size_t i = 0; i < TG_PAYLOAD_MAX; i++)
                big[i] = (uint8_t) (i * 31 + 7);

        const TgRecord recs[] = {
                { .id = 0, .timestamp_usec = 0, .topic = "t", .topic_len = 1 },
                { .id = UINT64_MAX, .timestamp_usec = UINT64_MAX, .topic = "vehicle.speed", .topic_len = 13,
                  .payload = (const uint8_t *) "\x00\x01\x02", .payload_len = 3 },
                { .id = 42, .timestamp_usec = 1700000000000000, .topic = long_topic, .topic_len = TG_TOPIC_MAX,
                  .payload = big, .payload_len = TG_PAYLOAD_MAX },
                { .id = 7, .timestamp_usec = 9, .topic = "Az09_-/.x", .topic_len = 9, .payload = big,
                  .payload_len = 1 },
        };

        for (size_t i = 0; i < ELEMENTSOF(recs); i++)
                assert_ok(tg_buf_append_record(&b, &recs[i]));
        assert_eq(b.size, (size_t) (4 * 22 + 1 + 13 + 3 + TG_TOPIC_MAX + TG_PAYLOAD_MAX + 9 + 1));

        for (size_t i = 0; i < ELEMENTSOF(recs); i++) {
                TgRecord d;

                assert_eq(tg_record_decode(b.data, b.size, &offset, TG_PAYLOAD_MAX, &d), TG_RECORD_OK);
                assert_eq(d.id, recs[i].id);
                assert_eq(d.timestamp_usec, recs[i].timestamp_usec);
                assert_eq(d.topic_len, recs[i].topic_len);
                assert_memeq(d.topic, recs[i].topic, d.topic_len);
                assert_eq(d.payload_len, recs[i].payload_len);
                if (d.payload_len > 0)
                        assert_memeq(d.payload, recs[i].payload, d.payload_len);
        }
        assert_eq(offset, b.size);
        {
                TgRecord d;
                /* At the end of the buffer there is no record. */
                assert_eq(tg_record_decode(b.data, b.size, &offset, TG_PAYLOAD_MAX, &d), TG_RECORD_TRUNCATED);
        }

        tg_buf_reset(&b);
        assert_eq(b.size, (size_t) 0);
        assert_se(b.data);
        assert_ok(tg_buf_append(&b, "abc", 3));
        assert_ok(tg_buf_append(&b, NULL, 0));
        assert_eq(b.size, (size_t) 3);
        assert_memeq(b.data, "abc", 3);
        tg_buf_free(&b);
        assert_se(b.data == NULL && b.size == 0 && b.allocated == 0);
        free(big);
}

static void expect_decode_error(const uint8_t *buf, size_t size, uint32_t payload_max, TgRecordError expect) {
        TgRecord d = { .id = 12345 };
        size_t offset = 0;

        assert_eq(tg_record_decode(buf, size, &offset, payload_max, &d), expect);
        assert_eq(offset, (size_t) 0); /* not advanced */
        assert_eq(d.id, UINT64_C(12345)); /* not written */
}

static void test_record_errors(void) {
        uint8_t buf[TG_RECORD_HEADER_SIZE + 300];
        size_t n;

        /* Truncated header: every length short of 22 bytes. */
        for (size_t len = 0; len < TG_RECORD_HEADER_SIZE; len++)
                expect_decode_error(known_record, len, TG_PAYLOAD_MAX, TG_RECORD_TRUNCATED);
        /* Truncated topic, truncated payload (one byte short of each). */
        expect_decode_error(known_record, 22 + 2, TG_PAYLOAD_MAX, TG_RECORD_TRUNCATED);
        expect_decode_error(known_record, sizeof known_record - 1, TG_PAYLOAD_MAX, TG_RECORD_TRUNCATED);
        /* An offset past the end. */
        {
                TgRecord d;
                size_t offset = sizeof known_record + 1;
                assert_eq(tg_record_decode(known_record, sizeof known_record, &offset, TG_PAYLOAD_MAX, &d),
                          TG_RECORD_TRUNCATED);
        }

        /* topic_len 0 and 256, with enough bytes behind them. */
        memset(buf, 'a', sizeof buf);
        put_header(buf, 0, 0);
        expect_decode_error(buf, sizeof buf, TG_PAYLOAD_MAX, TG_RECORD_TOPIC_EMPTY);
        put_header(buf, 256, 0);
        expect_decode_error(buf, sizeof buf, TG_PAYLOAD_MAX, TG_RECORD_TOPIC_TOO_LONG);
        put_header(buf, 0xffff, 0);
        expect_decode_error(buf, sizeof buf, TG_PAYLOAD_MAX, TG_RECORD_TOPIC_TOO_LONG);
        put_header(buf, 255, 0);
        {
                TgRecord d;
                size_t offset = 0;
                assert_eq(tg_record_decode(buf, 22 + 255, &offset, TG_PAYLOAD_MAX, &d), TG_RECORD_OK);
                assert_eq(offset, (size_t) 22 + 255);
        }

        /* Invalid topics: characters, leading/trailing '.', "..". */
        static const char *const bad_topics[] = {
                ".a", "a.", ".", "a..b", "..", "a b", "a*", "a?", "a#", "a\\b", "a:b", "ä", "a\tb", "a\x7f",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad_topics); i++) {
                size_t l = strlen(bad_topics[i]);
                n = put_header(buf, (uint16_t) l, 0);
                memcpy(buf + n, bad_topics[i], l);
                expect_decode_error(buf, n + l, TG_PAYLOAD_MAX, TG_RECORD_TOPIC_INVALID);
                assert_eq(tg_topic_validate(bad_topics[i], l), TG_RECORD_TOPIC_INVALID);
        }
        /* A NUL inside the topic. */
        n = put_header(buf, 3, 0);
        memcpy(buf + n, "a\0b", 3);
        expect_decode_error(buf, n + 3, TG_PAYLOAD_MAX, TG_RECORD_TOPIC_INVALID);

        /* Payload over the caller's limit, and over the format's limit whatever
         * the caller allows. Checked before the bytes: none are present here. */
        n = put_header(buf, 1, 16385);
        buf[n] = 't';
        expect_decode_error(buf, n + 1, 16384, TG_RECORD_PAYLOAD_TOO_LARGE);
        n = put_header(buf, 1, TG_PAYLOAD_MAX + 1);
        expect_decode_error(buf, n + 1, UINT32_MAX, TG_RECORD_PAYLOAD_TOO_LARGE);
        n = put_header(buf, 1, UINT32_MAX);
        expect_decode_error(buf, n + 1, UINT32_MAX, TG_RECORD_PAYLOAD_TOO_LARGE);
        /* At the caller's limit it is only truncated. */
        n = put_header(buf, 1, 16384);
        expect_decode_error(buf, n + 1, 16384, TG_RECORD_TRUNCATED);
}

static void test_topic_validate(void) {
        static const char *const good[] = { "a", "vehicle.speed", "a.b.c", "A-Z_0-9/x", "/leading/slash",
                                            "trailing/", "-", "_", "a.b-c/d_e" };
        char t[TG_TOPIC_MAX + 2];

        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                assert_eq(tg_topic_validate(good[i], strlen(good[i])), TG_RECORD_OK);
        assert_eq(tg_topic_validate("", 0), TG_RECORD_TOPIC_EMPTY);
        memset(t, 'q', sizeof t);
        assert_eq(tg_topic_validate(t, TG_TOPIC_MAX), TG_RECORD_OK);
        assert_eq(tg_topic_validate(t, TG_TOPIC_MAX + 1), TG_RECORD_TOPIC_TOO_LONG);
}

static void test_error_strings(void) {
        static const char *const rec[] = { "ok", "truncated-record", "empty-topic", "topic-too-long",
                                           "invalid-topic", "payload-too-large" };
        static const char *const frm[] = { "ok", "short-frame", "bad-magic", "bad-type", "bad-flags",
                                           "frame-too-large", "trailing-bytes", "truncated-record",
                                           "empty-topic", "topic-too-long", "invalid-topic",
                                           "payload-too-large", "overloaded", "internal-error" };

        assert_eq(ELEMENTSOF(rec), (size_t) _TG_RECORD_ERROR_MAX);
        for (size_t i = 0; i < ELEMENTSOF(rec); i++)
                assert_streq(tg_record_error_to_string((TgRecordError) i), rec[i]);
        assert_streq(tg_record_error_to_string(_TG_RECORD_ERROR_MAX), "unknown-error");
        assert_streq(tg_record_error_to_string((TgRecordError) -1), "unknown-error");

        assert_eq(ELEMENTSOF(frm), (size_t) _TG_FRAME_ERROR_MAX);
        for (size_t i = 0; i < ELEMENTSOF(frm); i++)
                assert_streq(tg_frame_error_to_string((TgFrameError) i), frm[i]);
        assert_streq(tg_frame_error_to_string(_TG_FRAME_ERROR_MAX), "unknown-error");
        assert_streq(tg_frame_error_to_string((TgFrameError) 0xffff), "unknown-error");

        /* Every record error maps to the frame error of the same name. */
        for (TgRecordError e = 0; e < _TG_RECORD_ERROR_MAX; e++)
                assert_streq(tg_frame_error_to_string(tg_frame_error_from_record(e)), tg_record_error_to_string(e));
        assert_eq(tg_frame_error_from_record(_TG_RECORD_ERROR_MAX), TG_FRAME_INTERNAL);
}

/* RECORDS frame, seq 7, two records ("a.b" with de ad be ef; "x" with no payload), by hand. */
static const uint8_t known_frame[] = {
        0x54, 0x47, 0x50, 0x31, /* magic "TGP1" */
        0x01,                   /* type RECORDS */
        0x00,                   /* flags */
        0x00, 0x02,             /* count */
        0x00, 0x00, 0x00, 0x07, /* seq */
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
        0x00, 0x03, 0x00, 0x00, 0x00, 0x04, 'a', '.', 'b', 0xde, 0xad, 0xbe, 0xef,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x09,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 'x',
};

static void test_frame_records(void) {
        TgFrameHeader h = {}, built = { .type = TG_FRAME_RECORDS, .count = 2, .seq = 7 };
        uint8_t hdr[TG_FRAME_HEADER_SIZE];
        uint16_t index = 0;
        size_t offset = TG_FRAME_HEADER_SIZE;
        TgRecord d;

        tg_frame_write_header(hdr, &built);
        assert_memeq(hdr, known_frame, TG_FRAME_HEADER_SIZE);

        assert_eq(tg_frame_parse_header(known_frame, sizeof known_frame, &h), TG_FRAME_OK);
        assert_eq(h.type, TG_FRAME_RECORDS);
        assert_eq(h.flags, 0);
        assert_eq(h.count, 2);
        assert_eq(h.seq, 7u);
        assert_eq(tg_frame_check_records(known_frame, sizeof known_frame, &h, 16384, &index), TG_FRAME_OK);
        assert_eq(index, UINT16_MAX);

        assert_eq(tg_record_decode(known_frame, sizeof known_frame, &offset, 16384, &d), TG_RECORD_OK);
        assert_eq(d.id, UINT64_C(0x0102030405060708));
        assert_eq(tg_record_decode(known_frame, sizeof known_frame, &offset, 16384, &d), TG_RECORD_OK);
        assert_eq(d.timestamp_usec, UINT64_C(9));
        assert_eq(d.topic_len, 1);
        assert_eq(d.topic[0], 'x');
        assert_eq(d.payload_len, 0u);
        assert_eq(offset, sizeof known_frame);

        /* count 0 is a flush request: the header alone. */
        h = (TgFrameHeader) { .count = 1 };
        assert_eq(tg_frame_parse_header(known_frame, TG_FRAME_HEADER_SIZE, &h), TG_FRAME_OK);
        h.count = 0;
        assert_eq(tg_frame_check_records(known_frame, TG_FRAME_HEADER_SIZE, &h, 16384, &index), TG_FRAME_OK);
}

/* The header is filled whenever all of it is there, even for a bad frame,
 * so the classifier's ERROR can echo the seq (tg-frame.h). */
static void expect_header_error(const uint8_t *buf, size_t size, TgFrameError expect) {
        TgFrameHeader h = { .type = 0xee, .seq = 999 };

        assert_eq(tg_frame_parse_header(buf, size, &h), expect);
        if (size < TG_FRAME_HEADER_SIZE) {
                assert_eq(h.seq, 999u);
                assert_eq(h.type, 0xee);
        } else {
                assert_eq(h.seq, tg_get_be32(buf + 8));
                assert_eq(h.type, buf[4]);
                assert_eq(h.flags, buf[5]);
                assert_eq(h.count, tg_get_be16(buf + 6));
        }
}

static void test_frame_header_errors(void) {
        uint8_t f[sizeof known_frame];
        uint8_t *big;

        for (size_t len = 0; len < TG_FRAME_HEADER_SIZE; len++)
                expect_header_error(known_frame, len, TG_FRAME_SHORT);

        memcpy(f, known_frame, sizeof f);
        f[3] = '2'; /* "TGP2" */
        expect_header_error(f, sizeof f, TG_FRAME_BAD_MAGIC);
        f[3] = '1';
        f[0] = 0;
        expect_header_error(f, sizeof f, TG_FRAME_BAD_MAGIC);

        memcpy(f, known_frame, sizeof f);
        for (unsigned type = 0; type < 256; type++) {
                f[4] = (uint8_t) type;
                if (type >= TG_FRAME_RECORDS && type <= TG_FRAME_ERROR) {
                        TgFrameHeader h;
                        assert_eq(tg_frame_parse_header(f, sizeof f, &h), TG_FRAME_OK);
                        assert_eq(h.type, type);
                } else
                        expect_header_error(f, sizeof f, TG_FRAME_BAD_TYPE);
        }

        memcpy(f, known_frame, sizeof f);
        f[5] = 1;
        expect_header_error(f, sizeof f, TG_FRAME_BAD_FLAGS);
        f[5] = 0x80;
        expect_header_error(f, sizeof f, TG_FRAME_BAD_FLAGS);

        /* Size is judged before content: even a frame of zeros is "too large". */
        big = calloc(1, TG_FRAME_MAX + 1);
        assert_se(big);
        memcpy(big, known_frame, TG_FRAME_HEADER_SIZE);
        expect_header_error(big, TG_FRAME_MAX + 1, TG_FRAME_TOO_LARGE);
        memset(big, 0, TG_FRAME_HEADER_SIZE);
        expect_header_error(big, TG_FRAME_MAX + 1, TG_FRAME_TOO_LARGE);
        free(big);
}

/* The largest frame accepted: exactly TG_FRAME_MAX bytes, two full-size records. */
static void test_frame_max(void) {
        uint8_t *f = calloc(1, TG_FRAME_MAX + 1);
        TgFrameHeader h;
        uint16_t index;
        size_t n;

        assert_se(f);
        tg_frame_write_header(f, &(TgFrameHeader) { .type = TG_FRAME_RECORDS, .count = 2, .seq = 1 });
        n = TG_FRAME_HEADER_SIZE;
        n += put_header(f + n, 1, TG_PAYLOAD_MAX);
        f[n] = 'a';
        n += 1 + TG_PAYLOAD_MAX;
        /* Whatever is left of the frame after the second record's header and topic. */
        n += put_header(f + n, 1, (uint32_t) (TG_FRAME_MAX - n - TG_RECORD_HEADER_SIZE - 1));
        f[n] = 'b';
        n = TG_FRAME_MAX;

        assert_eq(tg_frame_parse_header(f, n, &h), TG_FRAME_OK);
        assert_eq(tg_frame_check_records(f, n, &h, TG_PAYLOAD_MAX, &index), TG_FRAME_OK);
        /* With the daemon's default limit, the first record is too large. */
        assert_eq(tg_frame_check_records(f, n, &h, 16384, &index), TG_FRAME_PAYLOAD_TOO_LARGE);
        assert_eq(index, 0);
        /* One more byte: too large as a frame, and trailing as records. */
        assert_eq(tg_frame_parse_header(f, n + 1, &h), TG_FRAME_TOO_LARGE);
        assert_eq(tg_frame_check_records(f, n + 1, &h, TG_PAYLOAD_MAX, &index), TG_FRAME_TRAILING_BYTES);
        assert_eq(index, UINT16_MAX);
        free(f);
}

/* A RECORDS frame of one valid record "ok" then one crafted record. */
static size_t build_two(uint8_t *f, uint16_t count, uint16_t topic_len, uint32_t payload_len, const char *topic,
                        size_t present) {
        size_t n = TG_FRAME_HEADER_SIZE;

        tg_frame_write_header(f, &(TgFrameHeader) { .type = TG_FRAME_RECORDS, .count = count, .seq = 3 });
        n += put_header(f + n, 2, 1);
        memcpy(f + n, "ok!", 3);
        n += 3;
        n += put_header(f + n, topic_len, payload_len);
        memcpy(f + n, topic, present);
        return n + present;
}

static void expect_records_error(const uint8_t *f, size_t n, uint32_t payload_max, TgFrameError expect,
                                 uint16_t expect_index) {
        TgFrameHeader h;
        uint16_t index = 1234;

        assert_eq(tg_frame_parse_header(f, n, &h), TG_FRAME_OK);
        assert_eq(tg_frame_check_records(f, n, &h, payload_max, &index), expect);
        assert_eq(index, expect_index);
}

static void test_frame_record_errors(void) {
        uint8_t f[512];
        size_t n;

        /* The second record, index 1, is what each case breaks. */
        n = build_two(f, 2, 3, 0, "abc", 2);
        expect_records_error(f, n, 16384, TG_FRAME_TRUNCATED_RECORD, 1);
        n = build_two(f, 2, 3, 5, "abcde", 5);
        expect_records_error(f, n, 16384, TG_FRAME_TRUNCATED_RECORD, 1);
        n = build_two(f, 3, 3, 0, "abc", 3); /* count says three, two present */
        expect_records_error(f, n, 16384, TG_FRAME_TRUNCATED_RECORD, 2);
        n = build_two(f, 2, 0, 0, "", 0);
        expect_records_error(f, n, 16384, TG_FRAME_EMPTY_TOPIC, 1);
        n = build_two(f, 2, 256, 0, "", 0);
        memset(f + n, 'a', 256);
        n += 256;
        expect_records_error(f, n, 16384, TG_FRAME_TOPIC_TOO_LONG, 1);
        n = build_two(f, 2, 4, 0, "a..b", 4);
        expect_records_error(f, n, 16384, TG_FRAME_INVALID_TOPIC, 1);
        n = build_two(f, 2, 2, 0, ".a", 2);
        expect_records_error(f, n, 16384, TG_FRAME_INVALID_TOPIC, 1);
        n = build_two(f, 2, 2, 0, "a.", 2);
        expect_records_error(f, n, 16384, TG_FRAME_INVALID_TOPIC, 1);
        n = build_two(f, 2, 3, 0, "a b", 3);
        expect_records_error(f, n, 16384, TG_FRAME_INVALID_TOPIC, 1);
        n = build_two(f, 2, 1, 16385, "a", 1);
        expect_records_error(f, n, 16384, TG_FRAME_PAYLOAD_TOO_LARGE, 1);

        /* Bytes after the records the count announces. */
        n = build_two(f, 1, 3, 0, "abc", 3);
        expect_records_error(f, n, 16384, TG_FRAME_TRAILING_BYTES, UINT16_MAX);
        memcpy(f, known_frame, sizeof known_frame);
        f[sizeof known_frame] = 0;
        expect_records_error(f, sizeof known_frame + 1, 16384, TG_FRAME_TRAILING_BYTES, UINT16_MAX);
        f[7] = 0; /* count 0 with records behind it */
        expect_records_error(f, sizeof known_frame, 16384, TG_FRAME_TRAILING_BYTES, UINT16_MAX);
}

static void test_ack_frame(void) {
        static const uint8_t expect[] = { 0x54, 0x47, 0x50, 0x31, 0x02, 0x00, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef };
        uint8_t buf[TG_FRAME_HEADER_SIZE + 4];
        TgFrameHeader h;

        memset(buf, 0xcc, sizeof buf);
        assert_eq(tg_frame_build_ack(buf, 0xdeadbeef), (size_t) TG_FRAME_HEADER_SIZE);
        assert_memeq(buf, expect, sizeof expect);
        assert_eq(buf[TG_FRAME_HEADER_SIZE], 0xcc);
        assert_eq(tg_frame_parse_header(buf, TG_FRAME_HEADER_SIZE, &h), TG_FRAME_OK);
        assert_eq(h.type, TG_FRAME_ACK);
        assert_eq(h.count, 0);
        assert_eq(h.seq, 0xdeadbeefu);
}

static void test_error_frame(void) {
        static const uint8_t expect[] = {
                0x54, 0x47, 0x50, 0x31, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x05, /* ERROR, seq 261 */
                0x00, 0x0a,                                                             /* code 10 */
                0x00, 0x03,                                                             /* index 3 */
                'b', 'a', 'd', ' ', 't', 'o', 'p', 'i', 'c',
        };
        uint8_t buf[TG_FRAME_HEADER_SIZE + 4 + TG_FRAME_ERROR_TEXT_MAX + 16];
        char text[TG_FRAME_ERROR_TEXT_MAX + 50];
        TgFrameErrorInfo info;
        TgFrameHeader h;
        size_t n;

        assert_eq(TG_FRAME_INVALID_TOPIC, 10);
        n = tg_frame_build_error(buf, 261, TG_FRAME_INVALID_TOPIC, 3, "bad topic");
        assert_eq(n, sizeof expect);
        assert_memeq(buf, expect, sizeof expect);
        assert_eq(tg_frame_parse_header(buf, n, &h), TG_FRAME_OK);
        assert_eq(h.type, TG_FRAME_ERROR);
        assert_eq(h.seq, 261u);
        assert_ok(tg_frame_parse_error(buf + TG_FRAME_HEADER_SIZE, n - TG_FRAME_HEADER_SIZE, &info));
        assert_eq(info.code, TG_FRAME_INVALID_TOPIC);
        assert_eq(info.index, 3);
        assert_streq(info.text, "bad topic");

        /* Every code survives the trip, including those only the classifier
         * decides (overloaded, internal), and no-index/no-text errors. */
        for (TgFrameError e = 0; e < _TG_FRAME_ERROR_MAX; e++) {
                n = tg_frame_build_error(buf, e, e, UINT16_MAX, NULL);
                assert_eq(n, (size_t) TG_FRAME_HEADER_SIZE + 4);
                assert_ok(tg_frame_parse_error(buf + TG_FRAME_HEADER_SIZE, n - TG_FRAME_HEADER_SIZE, &info));
                assert_eq(info.code, e);
                assert_eq(info.index, UINT16_MAX);
                assert_streq(info.text, "");
        }

        /* Text is cut at 200 bytes when built ... */
        memset(text, 'e', sizeof text - 1);
        text[sizeof text - 1] = '\0';
        memset(buf, 0xcc, sizeof buf);
        n = tg_frame_build_error(buf, 1, TG_FRAME_OVERLOADED, 0, text);
        assert_eq(n, (size_t) TG_FRAME_HEADER_SIZE + 4 + TG_FRAME_ERROR_TEXT_MAX);
        assert_eq(buf[n], 0xcc);
        assert_ok(tg_frame_parse_error(buf + TG_FRAME_HEADER_SIZE, n - TG_FRAME_HEADER_SIZE, &info));
        assert_eq(strlen(info.text), (size_t) TG_FRAME_ERROR_TEXT_MAX);

        /* ... and when parsed from a longer body; control and high bytes become '?'. */
        {
                uint8_t body[4 + 300];
                memset(body, 'z', sizeof body);
                tg_put_be16(body, TG_FRAME_INTERNAL);
                tg_put_be16(body + 2, 7);
                body[4] = '\n';
                body[5] = 0;
                body[6] = 0xff;
                body[7] = 0x7f;
                assert_ok(tg_frame_parse_error(body, sizeof body, &info));
                assert_eq(info.code, TG_FRAME_INTERNAL);
                assert_eq(info.index, 7);
                assert_eq(strlen(info.text), (size_t) TG_FRAME_ERROR_TEXT_MAX);
                assert_se(startswith(info.text, "????zzz"));

                /* An unknown code is passed on as is, for the caller to name. */
                tg_put_be16(body, 0xbeef);
                assert_ok(tg_frame_parse_error(body, 4, &info));
                assert_eq(info.code, (TgFrameError) 0xbeef);
                assert_streq(tg_frame_error_to_string(info.code), "unknown-error");

                for (size_t len = 0; len < 4; len++)
                        assert_eq(tg_frame_parse_error(body, len, &info), -EBADMSG);
        }
}

TG_TEST_MAIN(TEST(known_layout), TEST(round_trip), TEST(record_errors), TEST(topic_validate), TEST(error_strings),
             TEST(frame_records), TEST(frame_header_errors), TEST(frame_max), TEST(frame_record_errors),
             TEST(ack_frame), TEST(error_frame));
