/* SPDX-License-Identifier: MIT */
/*
 * tollgate-ecu-sim end to end (issue 6): the built simulator (TG_ECU_SIM)
 * on a free loopback port, driven by lib/tg-diag over DoIP with lib/tg-uds
 * encoders: the whole flash sequence of an A/B ECU up to the reset and the
 * new version, the state dump on SIGUSR1, the DoIP refusals and UDP vehicle
 * identification. The TransferData goodput figure is a benchmark now:
 * tests/bench/diag-bench.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tg-diag.h"
#include "tg-doip.h"
#include "tg-keyproto.h"
#include "tg-test-proc.h"
#include "tg-uds.h"

#define TESTER 0x0E80
#define ECU 0x0E01

typedef struct Sim {
        TgTestProc proc;
        uint16_t port;
        char *dir;
} Sim;

/* Start the simulator with args (NULL-terminated, at most 8) in a directory of its own. */
static bool sim_start(Sim *s, const char *const *args) {
        const char *bin = tg_test_binary("TG_ECU_SIM");
        const char *argv[16];
        size_t n = 0;

        if (!bin)
                return false;
        *s = (Sim) {};
        s->dir = tg_test_mkdtemp();
        argv[n++] = "tollgate-ecu-sim";
        /* Port 0: the simulator binds a free one and logs it; no race with
         * other tests for a port chosen here. */
        argv[n++] = "--listen=127.0.0.1:0";
        for (; *args && n < ELEMENTSOF(argv) - 1; args++)
                argv[n++] = *args;
        argv[n] = NULL;
        tg_test_proc_start(&s->proc, s->dir, "sim", bin, argv);
        s->port = tg_test_proc_wait_port(&s->proc, 5000);
        return true;
}

static void sim_stop(Sim *s) {
        assert_eq(tg_test_proc_stop(&s->proc), 0);
        tg_test_rmdtemp(s->dir);
        *s = (Sim) {};
}

static TgDiagChannel *channel_new(sd_event *e, uint16_t port, uint16_t tester) {
        TgDiagDoipConfig cfg = {
                .address = "127.0.0.1",
                .port = port,
                .tester_address = tester,
                .activation_type = TG_DOIP_ACTIVATION_DEFAULT,
        };
        TgDiagChannel *ch;

        assert_ok(tg_diag_doip_new(e, &cfg, &ch));
        /* Loaded CI machines and sanitizer builds answer slower than an ECU's
         * 50 ms P2; these tests are about behaviour, not timing. */
        ch->timing.p2_usec = 2 * USEC_PER_SEC;
        return ch;
}

static uint64_t mono_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* One request that must end TG_DIAG_OK; the response (malloc'ed). */
static uint8_t *request(TgDiagChannel *ch, uint16_t target, const uint8_t *req, int n, size_t *ret_len,
                        unsigned *ret_pending) {
        TgDiagResult r;
        uint8_t *data = NULL;
        size_t len = 0;
        int k;

        assert_ok(n);
        k = tg_diag_request_wait(ch, target, req, (size_t) n, &r, &data, &len);
        if (k < 0) {
                char buf[128];
                fprintf(stderr, "  request %02X: %s\n", req[0], tg_diag_result_format(&r, buf, sizeof buf));
        }
        assert_eq(k, 0);
        assert_eq(r.error, TG_DIAG_OK);
        if (ret_pending)
                *ret_pending = r.n_pending;
        *ret_len = len;
        return data;
}

static void make_image(uint8_t *img, size_t size) {
        uint32_t x = 0x12345678;

        for (size_t i = 0; i < size; i++) {
                x = x * 1103515245u + 12345u;
                img[i] = (uint8_t) (x >> 16);
        }
}

/* From the extended session to a verified image in the inactive bank.
 * Returns the TransferData goodput in MB/s. */
static double flash(TgDiagChannel *ch, const uint8_t *img, size_t size, const char *version, bool expect_pending) {
        uint8_t buf[128], hash_opt[32 + 64];
        _cleanup_free_ uint8_t *block = NULL;
        TgUdsError err;
        const uint8_t *p;
        size_t len, plen, n_opt;
        TgUdsSessionTiming timing;
        uint64_t max_block;
        unsigned pending = 0;
        uint8_t *d;

        /* 10 03, 85 02, 28 83 01 functional (suppressed), 10 02 */
        d = request(ch, ECU, buf, tg_uds_encode_session_control(buf, sizeof buf, 0x03, false), &len, NULL);
        assert_ok(tg_uds_parse_session_control(d, len, 0x03, &timing, &err));
        free(d);
        d = request(ch, ECU, buf,
                    tg_uds_encode_control_dtc_setting(buf, sizeof buf, TG_UDS_DTC_SETTING_OFF, NULL, 0, false), &len,
                    NULL);
        assert_ok(tg_uds_parse_control_dtc_setting(d, len, TG_UDS_DTC_SETTING_OFF, &err));
        free(d);
        d = request(ch, 0xE400, buf, tg_uds_encode_communication_control(buf, sizeof buf, 0x03, 0x01, 0, true), &len,
                    NULL);
        assert_eq(len, 0u);
        free(d);
        d = request(ch, ECU, buf, tg_uds_encode_session_control(buf, sizeof buf, 0x02, false), &len, NULL);
        assert_ok(tg_uds_parse_session_control(d, len, 0x02, &timing, &err));
        free(d);

        /* 27 01 / 27 02 */
        d = request(ch, ECU, buf, tg_uds_encode_request_seed(buf, sizeof buf, 0x01, false), &len, NULL);
        assert_ok(tg_uds_parse_request_seed(d, len, 0x01, &p, &plen, &err));
        assert_se(!tg_uds_seed_is_zero(p, plen));
        {
                uint8_t kbuf[64];
                int kn = tg_uds_encode_send_key_computed(kbuf, sizeof kbuf, 0x01, p, plen, tg_uds_key_demo, NULL,
                                                         false);
                free(d);
                d = request(ch, ECU, kbuf, kn, &len, NULL);
                assert_ok(tg_uds_parse_send_key(d, len, 0x01, &err));
                free(d);
        }

        /* 31 01 02 03, 31 01 FF 00 (erase, with 0x78s when it takes time) */
        d = request(ch, ECU, buf, tg_uds_encode_routine_control(buf, sizeof buf, 0x01, 0x0203, NULL, 0, false), &len,
                    NULL);
        assert_ok(tg_uds_parse_routine_control(d, len, 0x01, 0x0203, &p, &plen, &err));
        free(d);
        d = request(ch, ECU, buf, tg_uds_encode_erase_memory(buf, sizeof buf, 0, size, 4, 4), &len, &pending);
        assert_ok(tg_uds_parse_routine_control(d, len, 0x01, 0xFF00, &p, &plen, &err));
        free(d);
        if (expect_pending)
                assert_se(pending >= 1);

        /* 34, 36 × N, 37 */
        d = request(ch, ECU, buf, tg_uds_encode_request_download(buf, sizeof buf, 0x00, 0, size, 4, 4), &len, NULL);
        assert_ok(tg_uds_parse_request_download(d, len, &max_block, &err));
        free(d);
        size_t chunk = tg_uds_transfer_data_max(max_block, 0);
        assert_se(chunk > 0);
        block = malloc(chunk + 2);
        assert_se(block);
        uint8_t bsc = TG_UDS_BSC_FIRST;
        uint64_t t0 = mono_usec();
        for (size_t off = 0; off < size; off += chunk) {
                size_t n = size - off < chunk ? size - off : chunk;
                d = request(ch, ECU, block, tg_uds_encode_transfer_data(block, chunk + 2, bsc, img + off, n), &len,
                            NULL);
                assert_ok(tg_uds_parse_transfer_data(d, len, bsc, &p, &plen, &err));
                free(d);
                bsc = tg_uds_bsc_next(bsc);
        }
        uint64_t t1 = mono_usec();
        d = request(ch, ECU, buf, tg_uds_encode_request_transfer_exit(buf, sizeof buf, NULL, 0), &len, NULL);
        assert_ok(tg_uds_parse_request_transfer_exit(d, len, &p, &plen, &err));
        free(d);

        /* 31 01 FF 01 hash version */
        assert_ok(tg_kp_sha256(img, size, hash_opt));
        n_opt = 32 + strlen(version);
        memcpy(hash_opt + 32, version, strlen(version));
        {
                uint8_t rbuf[128];
                d = request(ch, ECU, rbuf,
                            tg_uds_encode_routine_control(rbuf, sizeof rbuf, 0x01, 0xFF01, hash_opt, n_opt, false),
                            &len, NULL);
                assert_ok(tg_uds_parse_routine_control(d, len, 0x01, 0xFF01, &p, &plen, &err));
                free(d);
        }
        return (double) size / (double) (t1 - t0 > 0 ? t1 - t0 : 1); /* bytes/µs = MB/s */
}

static void check_version(TgDiagChannel *ch, const char *version) {
        static const uint16_t did = 0xF189;
        uint8_t buf[16];
        const uint8_t *p;
        size_t len, plen;
        TgUdsError err;
        uint8_t *d = request(ch, ECU, buf, tg_uds_encode_read_data(buf, sizeof buf, &did, 1), &len, NULL);

        assert_ok(tg_uds_parse_read_data(d, len, 0xF189, &p, &plen, &err));
        assert_eq(plen, strlen(version));
        assert_memeq(p, version, plen);
        free(d);
}

/* The whole sequence on an A/B ECU: flash B, switch, reset (the connection
 * drops), reconnect, the new version; the state dump shows bank B's hash. */
static void test_flash_ab(void) {
        static const char *const args[] = { "--ecu=0x0E01:ab:1M:1.0.0", "--ecu=0x0E02:single:64K:0.1",
                                            "--erase-time=200", "--max-block=4095", "--write-speed=2M", NULL };
        _cleanup_free_ uint8_t *img = malloc(300000);
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        TgDiagChannel *ch;
        uint8_t buf[64], h[32];
        char hex[65];
        const uint8_t *p;
        size_t len, plen;
        TgUdsError err;
        uint8_t *d;
        Sim s;

        if (!sim_start(&s, args))
                return;
        assert_se(img);
        make_image(img, 300000);
        assert_ok(sd_event_new(&e));
        ch = channel_new(e, s.port, TESTER);
        check_version(ch, "1.0.0");
        (void) flash(ch, img, 300000, "2.0.0", true);

        /* 31 01 F0 B1: B becomes active at the reset */
        d = request(ch, ECU, buf, tg_uds_encode_routine_control(buf, sizeof buf, 0x01, 0xF0B1, NULL, 0, false), &len,
                    NULL);
        assert_ok(tg_uds_parse_routine_control(d, len, 0x01, 0xF0B1, &p, &plen, &err));
        free(d);
        check_version(ch, "1.0.0");

        /* 11 01: answered, then the connection drops */
        d = request(ch, ECU, buf, tg_uds_encode_ecu_reset(buf, sizeof buf, 0x01, false), &len, NULL);
        assert_ok(tg_uds_parse_ecu_reset(d, len, 0x01, NULL, &err));
        free(d);
        {
                /* the channel may see the drop now or have reconnected already */
                TgDiagResult r;
                uint8_t tp[8];
                int n = tg_uds_encode_tester_present(tp, sizeof tp, false);
                int k = tg_diag_request_wait(ch, ECU, tp, (size_t) n, &r, NULL, NULL);
                assert_se(k == 0 || (k == -EIO && r.error == TG_DIAG_CONNECTION_LOST));
        }
        ch = tg_diag_free(ch);
        assert_se(tg_test_proc_wait_log(&s.proc, "Closing the connection.", 5000));

        ch = channel_new(e, s.port, TESTER);
        check_version(ch, "2.0.0");
        ch = tg_diag_free(ch);

        _cleanup_free_ char *state = tg_test_proc_state(&s.proc);
        assert_ok(tg_kp_sha256(img, 300000, h));
        for (unsigned k = 0; k < 32; k++)
                snprintf(hex + 2 * k, 3, "%02x", h[k]);
        _cleanup_free_ char *line = NULL;
        assert_ok(asprintf(&line, "ecu 0x0E01 bank B valid=yes version=2.0.0 written=300000 sha256=%s", hex));
        assert_contains(state, line);
        assert_contains(state, "ecu 0x0E01 banks=2 active=B");
        assert_contains(state, "ecu 0x0E02 banks=1 active=A");
        sim_stop(&s);
}

/* 8003 0x03 for an unknown ECU; routing refused for a non-tester address. */
static void test_refusals(void) {
        static const char *const args[] = { "--ecu=0x0E01:single:64K", NULL };
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        TgDiagChannel *ch;
        TgDiagResult r;
        uint8_t buf[8];
        int n;
        Sim s;

        if (!sim_start(&s, args))
                return;
        assert_ok(sd_event_new(&e));
        ch = channel_new(e, s.port, TESTER);
        n = tg_uds_encode_tester_present(buf, sizeof buf, false);
        assert_eq(tg_diag_request_wait(ch, 0x0E55, buf, (size_t) n, &r, NULL, NULL), -EIO);
        assert_eq(r.error, TG_DIAG_NACK);
        assert_eq(r.code, TG_DOIP_DIAG_NACK_UNKNOWN_TARGET);
        assert_eq(tg_diag_request_wait(ch, 0x0E01, buf, (size_t) n, &r, NULL, NULL), 0);
        ch = tg_diag_free(ch);

        ch = channel_new(e, s.port, 0x0100);
        assert_eq(tg_diag_request_wait(ch, 0x0E01, buf, (size_t) n, &r, NULL, NULL), -EIO);
        assert_eq(r.error, TG_DIAG_ROUTING_DENIED);
        assert_eq(r.code, TG_DOIP_RA_UNKNOWN_SOURCE);
        ch = tg_diag_free(ch);
        sim_stop(&s);
}

/* UDP vehicle identification at the same address and port. */
static void test_vehicle_id(void) {
        static const char *const args[] = { "--ecu=0x0E01:single:64K", "--vin=WTOLLGATE00000042", NULL };
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        struct timeval tv = { .tv_sec = 2 };
        TgDoipMessage m = { .version = TG_DOIP_VERSION_2012, .type = TG_DOIP_VEHICLE_ID_REQUEST };
        uint8_t buf[256];
        size_t len;
        ssize_t n;
        int fd;
        Sim s;

        if (!sim_start(&s, args))
                return;
        sa.sin_port = htons(s.port);
        fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        assert_se(fd >= 0);
        assert_se(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
        assert_eq(tg_doip_message_encode(&m, buf, sizeof buf, &len), TG_DOIP_OK);
        assert_se(sendto(fd, buf, len, 0, (struct sockaddr *) &sa, sizeof sa) == (ssize_t) len);
        n = recv(fd, buf, sizeof buf, 0);
        assert_se(n > 0);
        assert_eq(tg_doip_message_decode(buf, (size_t) n, sizeof buf, &m), TG_DOIP_OK);
        assert_eq(m.type, TG_DOIP_VEHICLE_ANNOUNCEMENT);
        assert_eq(m.announcement.logical_address, 0x1000);
        assert_memeq(m.announcement.vin, "WTOLLGATE00000042", TG_DOIP_VIN_SIZE);
        close(fd);
        sim_stop(&s);
}

TG_TEST_MAIN(TEST(flash_ab), TEST(refusals), TEST(vehicle_id))
