/* SPDX-License-Identifier: MIT */
/*
 * The simulated ECU's UDS server core (tools/ecu-sim/ecu-model.h), driven
 * with the client codec of lib/tg-uds.h: full flash sequences on an A/B and
 * a single-bank ECU, every injected fault followed by a successful retry
 * (and never an invalid image marked valid), block sequence counters,
 * security lockout, S3 timeout, functional addressing, the dependency check
 * (0xFF01) taking time in proportion to the image.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ecu-model.h"
#include "tg-keyproto.h"
#include "tg-test.h"
#include "tg-uds.h"

#define B(...) ((const uint8_t[]) { __VA_ARGS__ })
#define N(...) sizeof((const uint8_t[]) { __VA_ARGS__ })
#define R(...) B(__VA_ARGS__), N(__VA_ARGS__)

#define BASE 0x08000000u
#define BANK_SIZE (64u * 1024u)
#define IMAGE_LEN 20000u
#define MAX_BLOCK 258u

typedef struct Tester {
        EcuModel *m;
        uint64_t now;
        uint8_t resp[1024];
        size_t len;
        unsigned n_pending;  /* 0x78s seen for the last request */
} Tester;

static const uint8_t initial_image[] = "TGV:1.0.0\nthe factory image";

static EcuModelConfig config(bool ab) {
        return (EcuModelConfig) {
                .ab_banks = ab,
                .bank_size = BANK_SIZE,
                .memory_address = BASE,
                .initial_image = initial_image,
                .initial_image_len = sizeof initial_image,
                .initial_version = "1.0.0",
                .part_number = "TG-ECU-0001",
                .serial = "SN123456",
                .erase_time_ms = 5000,
                .max_block_length = MAX_BLOCK,
                .prng_seed = 42,
        };
}

static void tester_init(Tester *t, const EcuModelConfig *c) {
        memset(t, 0, sizeof *t);
        t->m = ecu_model_new(c);
        assert_se(t->m);
        t->now = 1000 * USEC_PER_SEC;
}

/* Send one request; follow 0x78s through ecu_model_poll() with the clock
 * jumping to each deadline. Returns 1 with the final response in t->resp,
 * 0 when none came (t->len 0). */
static int send_req(Tester *t, const uint8_t *req, size_t n, bool functional) {
        int r = ecu_model_request(t->m, req, n, functional, t->now, t->resp, sizeof t->resp, &t->len);
        assert_ok(r);
        t->n_pending = 0;
        for (;;) {
                if (r == 1 && !tg_uds_response_is_pending(t->resp, t->len, req[0]))
                        return 1;
                if (r == 1) {
                        t->n_pending++;
                        assert_le(t->n_pending, 1000u);
                }
                if (!ecu_model_busy(t->m))
                        return 0; /* nothing owed */
                uint64_t d = ecu_model_next_deadline(t->m);
                assert_se(d != USEC_INFINITY);
                if (d > t->now)
                        t->now = d;
                r = ecu_model_poll(t->m, t->now, t->resp, sizeof t->resp, &t->len, NULL);
                assert_ok(r);
        }
}

/* A request that must get a positive response: returns nothing, the response is in t. */
static void expect_ok(Tester *t, const uint8_t *req, size_t n) {
        assert_eq(send_req(t, req, n, false), 1);
        if (t->resp[0] != (uint8_t) (req[0] + 0x40)) {
                fprintf(stderr, "request %02x: response %02x %02x %02x\n", req[0], t->resp[0],
                        t->len > 1 ? t->resp[1] : 0, t->len > 2 ? t->resp[2] : 0);
                assert_eq(t->resp[0], (uint8_t) (req[0] + 0x40));
        }
}

static void expect_nrc(Tester *t, const uint8_t *req, size_t n, uint8_t code) {
        assert_eq(send_req(t, req, n, false), 1);
        assert_eq(t->len, 3u);
        assert_eq(t->resp[0], 0x7F);
        assert_eq(t->resp[1], req[0]);
        assert_eq(t->resp[2], code);
}

static void make_image(uint8_t *img, size_t n, const char *version, uint8_t salt) {
        int l = snprintf((char *) img, n, "TGV:%s\n", version);
        for (size_t i = (size_t) l; i < n; i++)
                img[i] = (uint8_t) (i * 31 + salt);
}

/* Steps of a flash sequence; run_flash() stops at the first that fails and
 * says which (0: all passed). */
enum {
        STEP_OK = 0,
        STEP_PRECONDITIONS = 1,
        STEP_UNLOCK,
        STEP_ERASE,
        STEP_DOWNLOAD,
        STEP_TRANSFER,
        STEP_EXIT,
        STEP_DEPENDENCIES,
        STEP_SWITCH,
};

typedef struct FlashResult {
        int step;           /* the failed step, 0 none */
        uint8_t nrc;        /* its NRC, 0 when no response */
        unsigned blocks;    /* TransferData blocks answered */
        bool reset;         /* the ECU reset under us */
        unsigned check_pending; /* 0x78s before the 0xFF01 answer */
        uint64_t check_usec;    /* from the 0xFF01 request to its answer */
} FlashResult;

/* The whole sequence with tg-uds.h encoders and parsers. */
static FlashResult run_flash(Tester *t, const uint8_t *img, size_t n, const uint8_t *hash_or_null) {
        FlashResult fr = {};
        uint8_t req[MAX_BLOCK + 16];
        TgUdsError err;
        int l;

#define FAIL(s)                                                                   \
        do {                                                                      \
                fr.step = (s);                                                    \
                fr.nrc = t->len == 3 && t->resp[0] == 0x7F ? t->resp[2] : 0;      \
                fr.reset = ecu_model_take_reset(t->m);                            \
                return fr;                                                        \
        } while (0)

        /* 10 03, 85 02 (suppress), 28 03 01 functional (suppress), 10 02 */
        l = tg_uds_encode_session_control(req, sizeof req, TG_UDS_SESSION_EXTENDED, false);
        assert_eq(send_req(t, req, (size_t) l, false), 1);
        assert_ok(tg_uds_parse_session_control(t->resp, t->len, TG_UDS_SESSION_EXTENDED, NULL, NULL));
        l = tg_uds_encode_control_dtc_setting(req, sizeof req, TG_UDS_DTC_SETTING_OFF, NULL, 0, true);
        assert_eq(send_req(t, req, (size_t) l, true), 0);
        assert_se(!ecu_model_dtc_setting_on(t->m));
        l = tg_uds_encode_communication_control(req, sizeof req, TG_UDS_COMM_DISABLE_RX_TX,
                                                TG_UDS_COMM_TYPE_NORMAL, 0, true);
        assert_eq(send_req(t, req, (size_t) l, true), 0);
        assert_eq(ecu_model_comm_control(t->m), TG_UDS_COMM_DISABLE_RX_TX);

        /* 31 01 02 03 */
        l = tg_uds_encode_routine_control(req, sizeof req, TG_UDS_ROUTINE_START, TG_UDS_RID_CHECK_PRECONDITIONS, NULL,
                                          0, false);
        assert_eq(send_req(t, req, (size_t) l, false), 1);
        if (tg_uds_parse_routine_control(t->resp, t->len, 1, TG_UDS_RID_CHECK_PRECONDITIONS, NULL, NULL, &err) < 0)
                FAIL(STEP_PRECONDITIONS);

        l = tg_uds_encode_session_control(req, sizeof req, TG_UDS_SESSION_PROGRAMMING, false);
        assert_eq(send_req(t, req, (size_t) l, false), 1);
        assert_ok(tg_uds_parse_session_control(t->resp, t->len, TG_UDS_SESSION_PROGRAMMING, NULL, NULL));

        /* 27 01 / 27 02 */
        l = tg_uds_encode_request_seed(req, sizeof req, 0x01, false);
        assert_eq(send_req(t, req, (size_t) l, false), 1);
        const uint8_t *seed;
        size_t seed_len;
        if (tg_uds_parse_request_seed(t->resp, t->len, 0x01, &seed, &seed_len, &err) < 0)
                FAIL(STEP_UNLOCK);
        uint8_t seed_copy[16];
        assert_le(seed_len, sizeof seed_copy);
        memcpy(seed_copy, seed, seed_len);
        l = tg_uds_encode_send_key_computed(req, sizeof req, 0x01, seed_copy, seed_len, tg_uds_key_demo, NULL,
                                            false);
        assert_ok(l);
        assert_eq(send_req(t, req, (size_t) l, false), 1);
        if (tg_uds_parse_send_key(t->resp, t->len, 0x01, &err) < 0)
                FAIL(STEP_UNLOCK);

        /* 31 01 FF 00 erase (pending) */
        l = tg_uds_encode_erase_memory(req, sizeof req, BASE, BANK_SIZE, 4, 4);
        assert_eq(send_req(t, req, (size_t) l, false), 1);
        if (tg_uds_parse_routine_control(t->resp, t->len, 1, TG_UDS_RID_ERASE_MEMORY, NULL, NULL, &err) < 0)
                FAIL(STEP_ERASE);
        /* 5 s of erase: 0x78 at 0, 2 and 4 s */
        assert_eq(t->n_pending, 3u);

        /* 34 */
        l = tg_uds_encode_request_download(req, sizeof req, 0x00, BASE, n, 4, 4);
        assert_eq(send_req(t, req, (size_t) l, false), 1);
        uint64_t max_block;
        if (tg_uds_parse_request_download(t->resp, t->len, &max_block, &err) < 0)
                FAIL(STEP_DOWNLOAD);
        assert_eq(max_block, MAX_BLOCK);
        size_t chunk = tg_uds_transfer_data_max(max_block, 0);

        /* 36 × N */
        uint8_t bsc = TG_UDS_BSC_FIRST;
        for (size_t off = 0; off < n; off += chunk) {
                size_t c = MIN(chunk, n - off);
                l = tg_uds_encode_transfer_data(req, sizeof req, bsc, img + off, c);
                assert_ok(l);
                if (send_req(t, req, (size_t) l, false) == 0)
                        FAIL(STEP_TRANSFER);
                if (tg_uds_parse_transfer_data(t->resp, t->len, bsc, NULL, NULL, &err) < 0)
                        FAIL(STEP_TRANSFER);
                fr.blocks++;
                bsc = tg_uds_bsc_next(bsc);
        }

        /* 37 */
        l = tg_uds_encode_request_transfer_exit(req, sizeof req, NULL, 0);
        assert_eq(send_req(t, req, (size_t) l, false), 1);
        if (tg_uds_parse_request_transfer_exit(t->resp, t->len, NULL, NULL, &err) < 0)
                FAIL(STEP_EXIT);

        /* 31 01 FF 01 hash */
        uint8_t h[32];
        if (hash_or_null)
                memcpy(h, hash_or_null, 32);
        else
                assert_ok(tg_kp_sha256(img, n, h));
        l = tg_uds_encode_routine_control(req, sizeof req, 1, TG_UDS_RID_CHECK_PROGRAMMING_DEPENDENCIES, h, 32,
                                          false);
        uint64_t check_start = t->now;
        assert_eq(send_req(t, req, (size_t) l, false), 1);
        fr.check_pending = t->n_pending;
        fr.check_usec = t->now - check_start;
        if (tg_uds_parse_routine_control(t->resp, t->len, 1, TG_UDS_RID_CHECK_PROGRAMMING_DEPENDENCIES, NULL, NULL,
                                         &err) < 0)
                FAIL(STEP_DEPENDENCIES);

        /* 31 01 F0 B1 (A/B only), 11 01 */
        if (ecu_model_n_banks(t->m) == 2) {
                l = tg_uds_encode_routine_control(req, sizeof req, 1, TG_UDS_RID_TOLLGATE_BANK_SWITCH, NULL, 0, false);
                assert_eq(send_req(t, req, (size_t) l, false), 1);
                const uint8_t *st;
                size_t st_len;
                if (tg_uds_parse_routine_control(t->resp, t->len, 1, TG_UDS_RID_TOLLGATE_BANK_SWITCH, &st, &st_len,
                                                 &err) < 0)
                        FAIL(STEP_SWITCH);
                assert_eq(st_len, 1u);
                assert_eq(st[0], 1 - ecu_model_active_bank(t->m));
        }
        l = tg_uds_encode_ecu_reset(req, sizeof req, TG_UDS_RESET_HARD, false);
        assert_eq(send_req(t, req, (size_t) l, false), 1);
        assert_ok(tg_uds_parse_ecu_reset(t->resp, t->len, TG_UDS_RESET_HARD, NULL, NULL));
        assert_se(ecu_model_take_reset(t->m));
        assert_eq(ecu_model_session(t->m), TG_UDS_SESSION_DEFAULT);
        assert_eq(ecu_model_comm_control(t->m), TG_UDS_COMM_ENABLE_RX_TX);
        assert_se(ecu_model_dtc_setting_on(t->m));
        return fr;
#undef FAIL
}

static void read_version(Tester *t, char *buf, size_t size) {
        uint8_t req[8];
        const uint8_t *d;
        size_t dl;
        int l = tg_uds_encode_read_data(req, sizeof req, (const uint16_t[]) { TG_UDS_DID_SOFTWARE_VERSION }, 1);
        assert_eq(send_req(t, req, (size_t) l, false), 1);
        assert_ok(tg_uds_parse_read_data(t->resp, t->len, TG_UDS_DID_SOFTWARE_VERSION, &d, &dl, NULL));
        tg_uds_did_to_string(d, dl, buf, size);
}

/* The image is in the active bank, valid, with its hash and version. */
static void assert_flashed(Tester *t, const uint8_t *img, size_t n, const char *version) {
        char v[64];
        uint8_t h1[32], h2[32];
        unsigned a = ecu_model_active_bank(t->m);

        read_version(t, v, sizeof v);
        assert_streq(v, version);
        assert_se(ecu_model_bank_valid(t->m, a));
        assert_eq(ecu_model_bank_written(t->m, a), n);
        assert_ok(ecu_model_bank_sha256(t->m, a, h1));
        assert_ok(tg_kp_sha256(img, n, h2));
        assert_memeq(h1, h2, 32);
}

/* No bank holding something other than its verified image claims to be
 * valid: a valid bank's bytes are exactly one of the images flashed. */
static void assert_no_mixed_valid(Tester *t, const uint8_t *const *imgs, const size_t *lens, size_t n_imgs) {
        for (unsigned b = 0; b < ecu_model_n_banks(t->m); b++) {
                if (!ecu_model_bank_valid(t->m, b))
                        continue;
                size_t len;
                const uint8_t *d = ecu_model_bank_data(t->m, b, &len);
                bool match = false;
                for (size_t i = 0; i < n_imgs; i++)
                        if (lens[i] == len && memcmp(imgs[i], d, len) == 0)
                                match = true;
                assert_se(match);
        }
}

/* ---- cases ---- */

static void test_flash_ab(void) {
        Tester t;
        EcuModelConfig c = config(true);
        static uint8_t img[IMAGE_LEN];
        char v[64];

        tester_init(&t, &c);
        make_image(img, sizeof img, "2.0.0", 1);
        read_version(&t, v, sizeof v);
        assert_streq(v, "1.0.0");
        assert_eq(ecu_model_active_bank(t.m), 0u);

        FlashResult fr = run_flash(&t, img, sizeof img, NULL);
        assert_eq(fr.step, STEP_OK);
        assert_eq(fr.blocks, (IMAGE_LEN + MAX_BLOCK - 3) / (MAX_BLOCK - 2));
        assert_eq(ecu_model_active_bank(t.m), 1u);
        assert_flashed(&t, img, sizeof img, "2.0.0");
        /* the old bank is untouched, for a rollback */
        assert_se(ecu_model_bank_valid(t.m, 0));
        assert_streq(ecu_model_bank_version(t.m, 0), "1.0.0");

        /* again: the next image goes to bank A */
        static uint8_t img3[IMAGE_LEN - 100];
        make_image(img3, sizeof img3, "3.0.0", 7);
        fr = run_flash(&t, img3, sizeof img3, NULL);
        assert_eq(fr.step, STEP_OK);
        assert_eq(ecu_model_active_bank(t.m), 0u);
        assert_flashed(&t, img3, sizeof img3, "3.0.0");

        /* rollback to B (option 0x01) */
        expect_ok(&t, R(0x10, 0x03));
        expect_ok(&t, R(0x10, 0x02));
        expect_nrc(&t, R(0x31, 0x01, 0xF0, 0xB1, 0x01), TG_UDS_NRC_SECURITY_ACCESS_DENIED);
        expect_ok(&t, R(0x27, 0x01));
        uint8_t key[8] = { 0x27, 0x02 };
        size_t kl = 4;
        assert_ok(tg_uds_key_demo(t.resp + 2, 4, key + 2, &kl, NULL));
        expect_ok(&t, key, 6);
        expect_ok(&t, R(0x31, 0x01, 0xF0, 0xB1, 0x01));
        assert_eq(t.resp[4], 1);
        expect_ok(&t, R(0x31, 0x03, 0xF0, 0xB1));
        assert_eq(t.resp[4], 0); /* still A until the reset */
        expect_ok(&t, R(0x11, 0x01));
        assert_se(ecu_model_take_reset(t.m));
        assert_flashed(&t, img, sizeof img, "2.0.0");
        ecu_model_free(t.m);
}

static void test_flash_single(void) {
        Tester t;
        EcuModelConfig c = config(false);
        static uint8_t img[IMAGE_LEN];

        c.write_speed = 1000; /* 256 bytes take 256 ms > P2: every block gets a 0x78 */
        tester_init(&t, &c);
        make_image(img, sizeof img, "2.1.0", 3);
        FlashResult fr = run_flash(&t, img, sizeof img, NULL);
        assert_eq(fr.step, STEP_OK);
        assert_eq(ecu_model_active_bank(t.m), 0u);
        assert_flashed(&t, img, sizeof img, "2.1.0");

        /* the bank switch routine does not exist on a single-bank ECU */
        expect_ok(&t, R(0x10, 0x03));
        expect_nrc(&t, R(0x31, 0x01, 0xF0, 0xB1), TG_UDS_NRC_REQUEST_OUT_OF_RANGE);
        ecu_model_free(t.m);
}

static void test_pending(void) {
        Tester t;
        EcuModelConfig c = config(false);
        uint64_t next;

        c.write_speed = 1000;
        tester_init(&t, &c);
        expect_ok(&t, R(0x10, 0x03));
        expect_ok(&t, R(0x10, 0x02));
        expect_ok(&t, R(0x27, 0x01));
        uint8_t key[8] = { 0x27, 0x02 };
        size_t kl = 4;
        assert_ok(tg_uds_key_demo(t.resp + 2, 4, key + 2, &kl, NULL));
        expect_ok(&t, key, 6);

        /* erase: 0x78 at once, then every 2 s, the answer after 5 s */
        uint64_t t0 = t.now;
        assert_eq(ecu_model_request(t.m, R(0x31, 0x01, 0xFF, 0x00), false, t0, t.resp, sizeof t.resp, &t.len), 1);
        assert_se(tg_uds_response_is_pending(t.resp, t.len, 0x31));
        /* busy meanwhile */
        assert_eq(ecu_model_request(t.m, R(0x22, 0xF1, 0x89), false, t0 + 1, t.resp, sizeof t.resp, &t.len), 1);
        assert_memeq(t.resp, B(0x7F, 0x22, 0x21), 3);
        assert_eq(ecu_model_poll(t.m, t0 + USEC_PER_SEC, t.resp, sizeof t.resp, &t.len, &next), 0);
        assert_eq(next, t0 + 2 * USEC_PER_SEC);
        assert_eq(ecu_model_poll(t.m, next, t.resp, sizeof t.resp, &t.len, &next), 1);
        assert_se(tg_uds_response_is_pending(t.resp, t.len, 0x31));
        assert_eq(ecu_model_poll(t.m, next, t.resp, sizeof t.resp, &t.len, &next), 1);
        assert_se(tg_uds_response_is_pending(t.resp, t.len, 0x31));
        assert_eq(next, t0 + 5 * USEC_PER_SEC);
        assert_eq(ecu_model_poll(t.m, next, t.resp, sizeof t.resp, &t.len, &next), 1);
        assert_memeq(t.resp, B(0x71, 0x01, 0xFF, 0x00, 0x00), 5);
        t.now = t0 + 5 * USEC_PER_SEC;

        /* a block slower than P2: 0x78 then the answer */
        expect_ok(&t, R(0x34, 0x00, 0x44, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00));
        uint8_t blk[2 + 200] = { 0x36, 0x01 };
        t0 = t.now;
        expect_ok(&t, blk, sizeof blk);
        assert_eq(t.n_pending, 1u);
        assert_eq(t.now, t0 + 200 * USEC_PER_MSEC);
        /* a block faster than P2: no 0x78, the answer 40 ms later */
        blk[1] = 0x02;
        t0 = t.now;
        assert_eq(ecu_model_request(t.m, blk, 42, false, t0, t.resp, sizeof t.resp, &t.len), 0);
        assert_eq(ecu_model_next_deadline(t.m), t0 + 40 * USEC_PER_MSEC);
        assert_eq(ecu_model_poll(t.m, t0 + 40 * USEC_PER_MSEC, t.resp, sizeof t.resp, &t.len, &next), 1);
        assert_memeq(t.resp, B(0x76, 0x02), 2);

        /* a response-pending storm: N× 0x78, then the answer */
        EcuModelFaults f = { .pending_storm_sid = 0x22, .pending_storm_count = 7 };
        ecu_model_set_faults(t.m, &f);
        expect_ok(&t, R(0x22, 0xF1, 0x87));
        assert_eq(t.n_pending, 7u);
        assert_memeq(t.resp, B(0x62, 0xF1, 0x87, 'T', 'G'), 5);
        expect_ok(&t, R(0x22, 0xF1, 0x87));
        assert_eq(t.n_pending, 0u);
        ecu_model_free(t.m);
}

static void test_block_counter(void) {
        Tester t;
        EcuModelConfig c = config(true);
        static uint8_t img[1000];
        uint8_t h[32];

        tester_init(&t, &c);
        make_image(img, sizeof img, "4.0.0", 9);
        expect_ok(&t, R(0x10, 0x03));
        expect_ok(&t, R(0x10, 0x02));
        expect_ok(&t, R(0x27, 0x01));
        uint8_t key[8] = { 0x27, 0x02 };
        size_t kl = 4;
        assert_ok(tg_uds_key_demo(t.resp + 2, 4, key + 2, &kl, NULL));
        expect_ok(&t, key, 6);

        expect_ok(&t, R(0x31, 0x01, 0xFF, 0x00));
        /* out of the memory */
        expect_nrc(&t, R(0x34, 0x00, 0x44, 0x08, 0x00, 0xFF, 0xFF, 0x00, 0x00, 0x03, 0xE8),
                   TG_UDS_NRC_REQUEST_OUT_OF_RANGE);
        expect_nrc(&t, R(0x34, 0x00, 0x44, 0x07, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x03, 0xE8),
                   TG_UDS_NRC_REQUEST_OUT_OF_RANGE);
        expect_ok(&t, R(0x34, 0x00, 0x44, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xE8));

        uint8_t req[MAX_BLOCK];
        int l;
        /* the first block must carry 0x01 */
        l = tg_uds_encode_transfer_data(req, sizeof req, 0x00, img, 256);
        expect_nrc(&t, req, (size_t) l, TG_UDS_NRC_WRONG_BLOCK_SEQUENCE_COUNTER);
        l = tg_uds_encode_transfer_data(req, sizeof req, 0x01, img, 256);
        expect_ok(&t, req, (size_t) l);
        /* the same block again: accepted, not written twice */
        expect_ok(&t, req, (size_t) l);
        assert_eq(ecu_model_bank_written(t.m, 1), 256u);
        /* a skipped counter */
        l = tg_uds_encode_transfer_data(req, sizeof req, 0x03, img + 256, 256);
        expect_nrc(&t, req, (size_t) l, TG_UDS_NRC_WRONG_BLOCK_SEQUENCE_COUNTER);
        /* a block longer than maxNumberOfBlockLength */
        uint8_t big[MAX_BLOCK + 1] = { 0x36, 0x02 };
        expect_nrc(&t, big, sizeof big, 0x13);
        /* exit before all data: sequence error; 0xFF01 likewise */
        expect_nrc(&t, R(0x37), TG_UDS_NRC_REQUEST_SEQUENCE_ERROR);
        for (uint8_t bsc = 2, off = 1; off * 256u < sizeof img; bsc++, off++) {
                l = tg_uds_encode_transfer_data(req, sizeof req, bsc, img + off * 256u,
                                                MIN(256u, sizeof img - off * 256u));
                expect_ok(&t, req, (size_t) l);
        }
        /* more than announced */
        l = tg_uds_encode_transfer_data(req, sizeof req, 5, img, 1);
        expect_nrc(&t, req, (size_t) l, TG_UDS_NRC_TRANSFER_DATA_SUSPENDED);
        expect_ok(&t, R(0x37));

        /* a wrong hash: not valid, no switch possible */
        uint8_t ff01[4 + 32] = { 0x31, 0x01, 0xFF, 0x01 };
        expect_nrc(&t, ff01, sizeof ff01, TG_UDS_NRC_GENERAL_PROGRAMMING_FAILURE);
        assert_se(!ecu_model_bank_valid(t.m, 1));
        expect_nrc(&t, R(0x31, 0x01, 0xF0, 0xB1), TG_UDS_NRC_CONDITIONS_NOT_CORRECT);
        /* the right one, with the version in the option record */
        assert_ok(tg_kp_sha256(img, sizeof img, h));
        uint8_t ff01v[4 + 32 + 5] = { 0x31, 0x01, 0xFF, 0x01 };
        memcpy(ff01v + 4, h, 32);
        memcpy(ff01v + 36, "4.0.1", 5);
        expect_ok(&t, ff01v, sizeof ff01v);
        assert_se(ecu_model_bank_valid(t.m, 1));
        assert_streq(ecu_model_bank_version(t.m, 1), "4.0.1");
        /* a valid bank takes no more data without a new erase */
        expect_nrc(&t, R(0x34, 0x00, 0x44, 0x08, 0x00, 0x03, 0xE8, 0x00, 0x00, 0x00, 0x10),
                   TG_UDS_NRC_UPLOAD_DOWNLOAD_NOT_ACCEPTED);
        ecu_model_free(t.m);
}

static void test_faults(void) {
        static uint8_t img[IMAGE_LEN], img2[IMAGE_LEN];
        make_image(img, sizeof img, "5.0.0", 11);
        make_image(img2, sizeof img2, "5.0.1", 12);

        for (int ab = 0; ab <= 1; ab++) {
                const uint8_t *imgs[] = { initial_image, img, img2 };
                const size_t lens[] = { sizeof initial_image, sizeof img, sizeof img2 };
                static const struct {
                        const char *name;
                        EcuModelFaults f;
                        int step;
                        uint8_t nrc;
                        bool reset;
                } cases[] = {
                        { "nrc once", { .nrc_sid = 0x34, .nrc = 0x22 }, STEP_DOWNLOAD, 0x22, false },
                        { "nrc on 0x36", { .nrc_sid = 0x36, .nrc = 0x72 }, STEP_TRANSFER, 0x72, false },
                        { "reset mid-transfer", { .reset_after_blocks = 10 }, STEP_TRANSFER, 0, true },
                        { "power loss mid-write", { .power_loss_after_blocks = 20 }, STEP_TRANSFER, 0, true },
                        { "corrupted write", { .corrupt_after_blocks = 5 }, STEP_DEPENDENCIES, 0x72, false },
                        { "pending storm", { .pending_storm_sid = 0x37, .pending_storm_count = 30 }, STEP_OK, 0,
                          false },
                };
                for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                        Tester t;
                        EcuModelConfig c = config(ab);
                        fprintf(stderr, "   %s, %s\n", ab ? "A/B" : "single", cases[i].name);
                        tester_init(&t, &c);
                        ecu_model_set_faults(t.m, &cases[i].f);
                        FlashResult fr = run_flash(&t, img, sizeof img, NULL);
                        assert_eq(fr.step, cases[i].step);
                        assert_eq(fr.nrc, cases[i].nrc);
                        assert_eq(fr.reset, cases[i].reset);
                        assert_no_mixed_valid(&t, imgs, lens, ELEMENTSOF(imgs));
                        if (fr.step == STEP_OK) {
                                assert_flashed(&t, img, sizeof img, "5.0.0");
                                ecu_model_free(t.m);
                                continue;
                        }
                        char v[64];
                        read_version(&t, v, sizeof v);
                        if (ab) {
                                /* the running software is untouched */
                                assert_streq(v, "1.0.0");
                                assert_se(ecu_model_bank_valid(t.m, 0));
                                assert_se(!ecu_model_bank_valid(t.m, 1));
                        } else if (fr.step >= STEP_ERASE) {
                                /* single bank: no software until a flash passes */
                                assert_streq(v, "");
                                assert_se(!ecu_model_bank_valid(t.m, 0));
                        }
                        if (fr.reset)
                                assert_eq(ecu_model_session(t.m), TG_UDS_SESSION_DEFAULT);
                        /* the retry (a different image) succeeds */
                        fr = run_flash(&t, img2, sizeof img2, NULL);
                        assert_eq(fr.step, STEP_OK);
                        assert_flashed(&t, img2, sizeof img2, "5.0.1");
                        assert_no_mixed_valid(&t, imgs, lens, ELEMENTSOF(imgs));
                        ecu_model_free(t.m);
                }
        }
}

static void test_no_mixed_image(void) {
        /* after a reset mid-transfer the old bytes in the bank plus a
         * second, partial download never pass 0xFF01 with the full
         * image's hash, and 0xFF01 without a download is refused */
        Tester t;
        EcuModelConfig c = config(false);
        static uint8_t img[IMAGE_LEN];
        uint8_t h[32];

        tester_init(&t, &c);
        make_image(img, sizeof img, "6.0.0", 5);
        assert_ok(tg_kp_sha256(img, sizeof img, h));
        EcuModelFaults f = { .reset_after_blocks = 30 };
        ecu_model_set_faults(t.m, &f);
        FlashResult fr = run_flash(&t, img, sizeof img, NULL);
        assert_eq(fr.step, STEP_TRANSFER);
        assert_se(fr.reset);

        expect_ok(&t, R(0x10, 0x03));
        expect_ok(&t, R(0x10, 0x02));
        expect_ok(&t, R(0x27, 0x01));
        uint8_t key[8] = { 0x27, 0x02 };
        size_t kl = 4;
        assert_ok(tg_uds_key_demo(t.resp + 2, 4, key + 2, &kl, NULL));
        expect_ok(&t, key, 6);
        uint8_t ff01[4 + 32] = { 0x31, 0x01, 0xFF, 0x01 };
        memcpy(ff01 + 4, h, 32);
        /* the hash of the whole image over the partial bytes: refused */
        expect_nrc(&t, ff01, sizeof ff01, TG_UDS_NRC_GENERAL_PROGRAMMING_FAILURE);
        assert_se(!ecu_model_bank_valid(t.m, 0));
        /* resuming from the start without an erase: refused */
        expect_nrc(&t, R(0x34, 0x00, 0x44, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x4E, 0x20),
                   TG_UDS_NRC_UPLOAD_DOWNLOAD_NOT_ACCEPTED);
        /* erase, then 0xFF01 before any download: sequence error */
        expect_ok(&t, R(0x31, 0x01, 0xFF, 0x00));
        expect_nrc(&t, ff01, sizeof ff01, TG_UDS_NRC_REQUEST_SEQUENCE_ERROR);
        assert_se(!ecu_model_bank_valid(t.m, 0));
        ecu_model_free(t.m);
}

static void test_security(void) {
        Tester t;
        EcuModelConfig c = config(true);

        tester_init(&t, &c);
        /* not in the default session */
        expect_nrc(&t, R(0x27, 0x01), TG_UDS_NRC_SERVICE_NOT_SUPPORTED_IN_ACTIVE_SESSION);
        expect_ok(&t, R(0x10, 0x03));
        /* a key without a seed */
        expect_nrc(&t, R(0x27, 0x02, 1, 2, 3, 4), TG_UDS_NRC_REQUEST_SEQUENCE_ERROR);
        expect_nrc(&t, R(0x27, 0x03), TG_UDS_NRC_SUB_FUNCTION_NOT_SUPPORTED);

        uint8_t seeds[3][4];
        for (int i = 0; i < 3; i++) {
                expect_ok(&t, R(0x27, 0x01));
                assert_eq(t.len, 6u);
                memcpy(seeds[i], t.resp + 2, 4);
                expect_nrc(&t, R(0x27, 0x02, 0xDE, 0xAD, 0xBE, 0xEF),
                           i < 2 ? TG_UDS_NRC_INVALID_KEY : TG_UDS_NRC_EXCEEDED_NUMBER_OF_ATTEMPTS);
        }
        /* seeds differ from request to request */
        assert_se(memcmp(seeds[0], seeds[1], 4) != 0 || memcmp(seeds[1], seeds[2], 4) != 0);
        /* locked out for 10 s */
        expect_nrc(&t, R(0x27, 0x01), TG_UDS_NRC_REQUIRED_TIME_DELAY_NOT_EXPIRED);
        t.now += 4 * USEC_PER_SEC;
        expect_nrc(&t, R(0x27, 0x01), TG_UDS_NRC_REQUIRED_TIME_DELAY_NOT_EXPIRED);
        t.now += 4 * USEC_PER_SEC;
        expect_nrc(&t, R(0x27, 0x01), TG_UDS_NRC_REQUIRED_TIME_DELAY_NOT_EXPIRED);
        t.now += 2 * USEC_PER_SEC;
        expect_ok(&t, R(0x27, 0x01));
        uint8_t key[8] = { 0x27, 0x02 };
        size_t kl = 4;
        assert_ok(tg_uds_key_demo(t.resp + 2, 4, key + 2, &kl, NULL));
        expect_ok(&t, key, 6);
        assert_se(ecu_model_unlocked(t.m));
        /* the same key twice: the seed was used up */
        expect_nrc(&t, key, 6, TG_UDS_NRC_REQUEST_SEQUENCE_ERROR);
        /* unlocked: a zero seed */
        expect_ok(&t, R(0x27, 0x01));
        assert_memeq(t.resp, B(0x67, 0x01, 0, 0, 0, 0), 6);
        /* a new session locks again */
        expect_ok(&t, R(0x10, 0x02));
        assert_se(!ecu_model_unlocked(t.m));
        expect_nrc(&t, R(0x34, 0x00, 0x44, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10),
                   TG_UDS_NRC_SECURITY_ACCESS_DENIED);

        /* the same PRNG seed gives the same seeds */
        Tester t2;
        tester_init(&t2, &c);
        expect_ok(&t2, R(0x10, 0x03));
        expect_ok(&t2, R(0x27, 0x01));
        assert_memeq(t2.resp + 2, seeds[0], 4);
        ecu_model_free(t2.m);
        ecu_model_free(t.m);
}

static void test_s3_and_functional(void) {
        Tester t;
        EcuModelConfig c = config(true);
        uint64_t next;

        tester_init(&t, &c);
        /* functional 10 83: switched, no response */
        assert_eq(send_req(&t, R(0x10, 0x83), true), 0);
        assert_eq(ecu_model_session(t.m), TG_UDS_SESSION_EXTENDED);
        /* functional requests of other services get no response at all */
        assert_eq(ecu_model_request(t.m, R(0x22, 0xF1, 0x89), true, t.now, t.resp, sizeof t.resp, &t.len), 0);
        assert_eq(ecu_model_request(t.m, R(0x31, 0x01, 0x02, 0x03), true, t.now, t.resp, sizeof t.resp, &t.len), 0);
        /* functional NRC 0x12 is dropped; physical it is sent */
        assert_eq(ecu_model_request(t.m, R(0x3E, 0x05), true, t.now, t.resp, sizeof t.resp, &t.len), 0);
        expect_nrc(&t, R(0x3E, 0x05), TG_UDS_NRC_SUB_FUNCTION_NOT_SUPPORTED);
        /* physical 3E 00 is answered */
        expect_ok(&t, R(0x3E, 0x00));

        /* TesterPresent (functional, suppressed) keeps the session */
        for (int i = 0; i < 5; i++) {
                t.now += 4 * USEC_PER_SEC;
                assert_eq(ecu_model_poll(t.m, t.now, t.resp, sizeof t.resp, &t.len, &next), 0);
                assert_eq(ecu_model_session(t.m), TG_UDS_SESSION_EXTENDED);
                assert_eq(ecu_model_request(t.m, R(0x3E, 0x80), true, t.now, t.resp, sizeof t.resp, &t.len), 0);
        }
        assert_eq(ecu_model_next_deadline(t.m), t.now + 5 * USEC_PER_SEC);
        /* then S3 expires: back to default */
        t.now += 5 * USEC_PER_SEC - 1;
        assert_eq(ecu_model_poll(t.m, t.now, t.resp, sizeof t.resp, &t.len, &next), 0);
        assert_eq(ecu_model_session(t.m), TG_UDS_SESSION_EXTENDED);
        t.now += 1;
        assert_eq(ecu_model_poll(t.m, t.now, t.resp, sizeof t.resp, &t.len, &next), 0);
        assert_eq(ecu_model_session(t.m), TG_UDS_SESSION_DEFAULT);
        assert_eq(next, USEC_INFINITY);

        /* S3 also applies lazily on the next request, dropping the unlock */
        expect_ok(&t, R(0x10, 0x03));
        expect_ok(&t, R(0x27, 0x01));
        uint8_t key[8] = { 0x27, 0x02 };
        size_t kl = 4;
        assert_ok(tg_uds_key_demo(t.resp + 2, 4, key + 2, &kl, NULL));
        expect_ok(&t, key, 6);
        expect_ok(&t, R(0x28, 0x03, 0x01));
        t.now += 6 * USEC_PER_SEC;
        expect_ok(&t, R(0x22, 0xF1, 0x8C));
        assert_memeq(t.resp, B(0x62, 0xF1, 0x8C, 'S', 'N', '1', '2', '3', '4', '5', '6'), 11);
        assert_eq(ecu_model_session(t.m), TG_UDS_SESSION_DEFAULT);
        assert_se(!ecu_model_unlocked(t.m));
        assert_eq(ecu_model_comm_control(t.m), TG_UDS_COMM_ENABLE_RX_TX);

        /* programming only from a non-default session; 0x28 not in default */
        expect_nrc(&t, R(0x10, 0x02), TG_UDS_NRC_CONDITIONS_NOT_CORRECT);
        expect_nrc(&t, R(0x28, 0x03, 0x01), TG_UDS_NRC_SERVICE_NOT_SUPPORTED_IN_ACTIVE_SESSION);
        assert_eq(ecu_model_request(t.m, R(0x28, 0x83, 0x01), true, t.now, t.resp, sizeof t.resp, &t.len), 0);
        /* several DIDs in one request; an unknown one alone is out of range */
        expect_ok(&t, R(0x22, 0xF1, 0x87, 0xF1, 0x89));
        assert_eq(t.len, 3u + 11u + 2u + 5u);
        expect_nrc(&t, R(0x22, 0x12, 0x34), TG_UDS_NRC_REQUEST_OUT_OF_RANGE);
        expect_nrc(&t, R(0x23, 0x00), TG_UDS_NRC_SERVICE_NOT_SUPPORTED);

        /* preconditions */
        expect_ok(&t, R(0x10, 0x03));
        ecu_model_set_preconditions(t.m, false);
        expect_nrc(&t, R(0x31, 0x01, 0x02, 0x03), TG_UDS_NRC_CONDITIONS_NOT_CORRECT);
        ecu_model_set_preconditions(t.m, true);
        expect_ok(&t, R(0x31, 0x01, 0x02, 0x03));
        ecu_model_free(t.m);

        /* a too small buffer is refused, not overrun */
        tester_init(&t, &c);
        assert_eq(ecu_model_request(t.m, R(0x10, 0x03), false, t.now, t.resp, ECU_MODEL_RESP_MIN - 1, &t.len),
                  -ENOBUFS);
        assert_eq(ecu_model_session(t.m), TG_UDS_SESSION_DEFAULT);
        assert_eq(ecu_model_request(t.m, R(0x22, 0xF1, 0x87, 0xF1, 0x87, 0xF1, 0x87, 0xF1, 0x87, 0xF1, 0x87),
                                    false, t.now, t.resp, ECU_MODEL_RESP_MIN, &t.len),
                  -ENOBUFS);
        assert_eq(ecu_model_request(t.m, R(0x22, 0xF1, 0x87, 0xF1, 0x87), false, t.now, t.resp,
                                    ECU_MODEL_RESP_MIN, &t.len),
                  1);
        assert_eq(t.len, 1u + 2 * 13u);
        ecu_model_free(t.m);
}

static void test_preconditions_config(void) {
        Tester t;
        EcuModelConfig c = config(false);
        static uint8_t img[2000];

        c.preconditions_fail = true;
        tester_init(&t, &c);
        make_image(img, sizeof img, "7.0.0", 2);
        FlashResult fr = run_flash(&t, img, sizeof img, NULL);
        assert_eq(fr.step, STEP_PRECONDITIONS);
        assert_eq(fr.nrc, TG_UDS_NRC_CONDITIONS_NOT_CORRECT);
        ecu_model_set_preconditions(t.m, true);
        fr = run_flash(&t, img, sizeof img, NULL);
        assert_eq(fr.step, STEP_OK);
        assert_flashed(&t, img, sizeof img, "7.0.0");
        ecu_model_free(t.m);
}

/* 10 03, 10 02, 27 01, 27 02: programming session, unlocked. */
static void unlock_programming(Tester *t) {
        expect_ok(t, R(0x10, 0x03));
        expect_ok(t, R(0x10, 0x02));
        expect_ok(t, R(0x27, 0x01));
        uint8_t key[8] = { 0x27, 0x02 };
        size_t kl = 4;
        assert_ok(tg_uds_key_demo(t->resp + 2, 4, key + 2, &kl, NULL));
        expect_ok(t, key, 6);
}

/* 31 01 FF 00, 34, 36 × N, 37: img in the target bank, not checked yet. */
static void download(Tester *t, const uint8_t *img, size_t n) {
        uint8_t req[MAX_BLOCK];
        expect_ok(t, R(0x31, 0x01, 0xFF, 0x00));
        int l = tg_uds_encode_request_download(req, sizeof req, 0x00, BASE, n, 4, 4);
        assert_ok(l);
        expect_ok(t, req, (size_t) l);
        uint8_t bsc = TG_UDS_BSC_FIRST;
        for (size_t off = 0; off < n; off += MAX_BLOCK - 2) {
                size_t c = MIN((size_t) MAX_BLOCK - 2, n - off);
                l = tg_uds_encode_transfer_data(req, sizeof req, bsc, img + off, c);
                assert_ok(l);
                expect_ok(t, req, (size_t) l);
                bsc = tg_uds_bsc_next(bsc);
        }
        expect_ok(t, R(0x37));
}

/* 31 01 FF 01 + hash(32) */
static size_t check_request(uint8_t *req, const uint8_t *img, size_t n, bool corrupt) {
        memcpy(req, B(0x31, 0x01, 0xFF, 0x01), 4);
        assert_ok(tg_kp_sha256(img, n, req + 4));
        if (corrupt)
                req[4] ^= 0x01;
        return 36;
}

static int req_at(Tester *t, const uint8_t *req, size_t n, bool functional, uint64_t now) {
        return ecu_model_request(t->m, req, n, functional, now, t->resp, sizeof t->resp, &t->len);
}

static int poll_at(Tester *t, uint64_t now, uint64_t *next) {
        return ecu_model_poll(t->m, now, t->resp, sizeof t->resp, &t->len, next);
}

/* 0xFF01 with check_speed: 20000 bytes at 2000 bytes/s are 10 s of hashing. */
static void test_check_pending(void) {
        Tester t;
        EcuModelConfig c = config(true);
        static uint8_t img[IMAGE_LEN];
        uint8_t req[40];
        uint64_t next;
        const uint64_t S = USEC_PER_SEC;

        c.check_speed = 2000;
        tester_init(&t, &c);
        make_image(img, sizeof img, "2.0.0", 5);
        unlock_programming(&t);
        download(&t, img, sizeof img);

        /* 7F 31 78 at once; the bank is not valid yet */
        uint64_t t0 = t.now;
        size_t n = check_request(req, img, sizeof img, false);
        assert_eq(req_at(&t, req, n, false, t0), 1);
        assert_eq(t.len, 3u);
        assert_memeq(t.resp, B(0x7F, 0x31, 0x78), 3);
        assert_se(ecu_model_busy(t.m));
        assert_se(!ecu_model_bank_valid(t.m, 1));
        assert_streq(ecu_model_bank_version(t.m, 1), "");
        assert_eq(ecu_model_next_deadline(t.m), t0 + 2 * S);

        /* busy meanwhile: 0x21 to physical requests, the check again too;
         * functional TesterPresent gets nothing */
        assert_eq(req_at(&t, R(0x22, 0xF1, 0x89), false, t0 + 1), 1);
        assert_eq(t.len, 3u);
        assert_memeq(t.resp, B(0x7F, 0x22, 0x21), 3);
        assert_eq(req_at(&t, req, n, false, t0 + 2), 1);
        assert_memeq(t.resp, B(0x7F, 0x31, 0x21), 3);
        assert_eq(req_at(&t, R(0x3E, 0x80), true, t0 + 3), 0);
        assert_eq(t.len, 0u);

        /* 7F 31 78 every 2 s: at 2, 4, 6 and 8 s; nothing in between */
        assert_eq(poll_at(&t, t0 + S, &next), 0);
        assert_eq(next, t0 + 2 * S);
        for (unsigned i = 1; i <= 4; i++) {
                assert_eq(poll_at(&t, t0 + 2 * i * S, &next), 1);
                assert_eq(t.len, 3u);
                assert_memeq(t.resp, B(0x7F, 0x31, 0x78), 3);
                assert_eq(next, t0 + (2 * i + 2) * S);
                assert_se(!ecu_model_bank_valid(t.m, 1));
        }
        /* just before the 10 s: nothing; at them: the answer, and the bank is valid */
        assert_eq(poll_at(&t, t0 + 10 * S - 1, &next), 0);
        assert_eq(next, t0 + 10 * S);
        assert_eq(poll_at(&t, t0 + 10 * S, &next), 1);
        assert_eq(t.len, 5u);
        assert_memeq(t.resp, B(0x71, 0x01, 0xFF, 0x01, 0x00), 5);
        assert_se(!ecu_model_busy(t.m));
        assert_se(ecu_model_bank_valid(t.m, 1));
        assert_streq(ecu_model_bank_version(t.m, 1), "2.0.0");
        /* S3 runs from the answer: the session is still programming 4 s later */
        assert_eq(next, t0 + 10 * S + 5 * S);
        assert_eq(poll_at(&t, t0 + 14 * S, &next), 0);
        assert_eq(ecu_model_session(t.m), TG_UDS_SESSION_PROGRAMMING);
        t.now = t0 + 14 * S;

        /* a wrong hash: the 0x72 also comes after the 10 s of hashing */
        download(&t, img, sizeof img);
        assert_se(!ecu_model_bank_valid(t.m, 1));
        t0 = t.now;
        n = check_request(req, img, sizeof img, true);
        assert_eq(req_at(&t, req, n, false, t0), 1);
        assert_memeq(t.resp, B(0x7F, 0x31, 0x78), 3);
        t.now = t0;
        unsigned n78 = 0;
        for (;;) {
                next = ecu_model_next_deadline(t.m);
                assert_se(next != USEC_INFINITY);
                t.now = next;
                assert_eq(poll_at(&t, t.now, NULL), 1);
                if (t.resp[2] != 0x78)
                        break;
                n78++;
        }
        assert_eq(n78, 4u);
        assert_eq(t.now, t0 + 10 * S);
        assert_eq(t.len, 3u);
        assert_memeq(t.resp, B(0x7F, 0x31, 0x72), 3);
        assert_se(!ecu_model_bank_valid(t.m, 1));

        /* a power cycle during the check: the bank stays invalid, the check
         * can run again on the same bytes */
        n = check_request(req, img, sizeof img, false);
        t0 = t.now;
        assert_eq(req_at(&t, req, n, false, t0), 1);
        assert_memeq(t.resp, B(0x7F, 0x31, 0x78), 3);
        assert_eq(poll_at(&t, t0 + 2 * S, NULL), 1);
        ecu_model_power_cycle(t.m, t0 + 3 * S);
        assert_se(ecu_model_take_reset(t.m));
        assert_se(!ecu_model_busy(t.m));
        assert_eq(poll_at(&t, t0 + 10 * S, NULL), 0);
        assert_se(!ecu_model_bank_valid(t.m, 1));
        assert_se(!ecu_model_switch_pending(t.m));
        t.now = t0 + 10 * S;
        unlock_programming(&t);
        expect_ok(&t, req, n);
        assert_eq(t.n_pending, 5u);
        assert_se(ecu_model_bank_valid(t.m, 1));
        assert_streq(ecu_model_bank_version(t.m, 1), "2.0.0");
        ecu_model_free(t.m);
}

/* A check within P2: no 0x78, the answer from ecu_model_poll() when due;
 * suppressed (31 81) it never comes, but the bank is valid all the same. */
static void test_check_short(void) {
        Tester t;
        EcuModelConfig c = config(false);
        static uint8_t img[IMAGE_LEN];
        uint8_t req[40];
        uint64_t next;

        c.check_speed = 1000000; /* 20000 bytes: 20 ms < P2 (50 ms) */
        tester_init(&t, &c);
        make_image(img, sizeof img, "2.2.0", 9);
        unlock_programming(&t);
        download(&t, img, sizeof img);

        uint64_t t0 = t.now;
        size_t n = check_request(req, img, sizeof img, false);
        assert_eq(req_at(&t, req, n, false, t0), 0);
        assert_eq(t.len, 0u);
        assert_se(ecu_model_busy(t.m));
        assert_eq(ecu_model_next_deadline(t.m), t0 + 20 * USEC_PER_MSEC);
        assert_eq(req_at(&t, R(0x3E, 0x00), false, t0 + USEC_PER_MSEC), 1);
        assert_memeq(t.resp, B(0x7F, 0x3E, 0x21), 3);
        assert_eq(poll_at(&t, t0 + 19 * USEC_PER_MSEC, &next), 0);
        assert_se(!ecu_model_bank_valid(t.m, 0));
        assert_eq(poll_at(&t, t0 + 20 * USEC_PER_MSEC, &next), 1);
        assert_eq(t.len, 5u);
        assert_memeq(t.resp, B(0x71, 0x01, 0xFF, 0x01, 0x00), 5);
        assert_se(ecu_model_bank_valid(t.m, 0));
        assert_streq(ecu_model_version(t.m), "2.2.0");

        /* suppressPosRspMsgIndicationBit: nothing is sent, the bank is valid
         * when the check is done */
        t.now = t0 + 20 * USEC_PER_MSEC;
        download(&t, img, sizeof img);
        t0 = t.now;
        req[1] = 0x81;
        assert_eq(req_at(&t, req, n, false, t0), 0);
        assert_se(!ecu_model_bank_valid(t.m, 0));
        assert_eq(poll_at(&t, t0 + 20 * USEC_PER_MSEC, &next), 0);
        assert_eq(t.len, 0u);
        assert_se(!ecu_model_busy(t.m));
        assert_se(ecu_model_bank_valid(t.m, 0));
        ecu_model_free(t.m);
}

/* A whole flash of a 64 MiB image on a single-bank ECU hashing 8 MiB/s:
 * the tester sees 0x78 at 0, 2, 4 and 6 s and the answer after 8 s. */
static void test_check_large_image(void) {
        Tester t;
        EcuModelConfig c = config(false);
        const size_t big = 64u << 20;

        c.bank_size = big;
        c.check_speed = 8u << 20;
        tester_init(&t, &c);
        uint8_t *img = malloc(big);
        assert_se(img);
        make_image(img, big, "9.0.0", 4);
        FlashResult fr = run_flash(&t, img, big, NULL);
        assert_eq(fr.step, STEP_OK);
        assert_eq(fr.check_pending, 4u);
        assert_eq(fr.check_usec, 8 * USEC_PER_SEC);
        assert_flashed(&t, img, big, "9.0.0");
        free(img);
        ecu_model_free(t.m);
}

TG_TEST_MAIN(TEST(flash_ab), TEST(flash_single), TEST(pending), TEST(block_counter), TEST(faults),
             TEST(no_mixed_image), TEST(security), TEST(s3_and_functional), TEST(preconditions_config),
             TEST(check_pending), TEST(check_short), TEST(check_large_image))
