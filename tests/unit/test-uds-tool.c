/* SPDX-License-Identifier: MIT */
/*
 * tollgate-uds end to end: the built tool (TG_UDS_TOOL) against the built
 * ECU simulator (TG_ECU_SIM) on a free loopback port (DoIP) and, through the
 * built tollgate-canhub (TG_CANHUB), as an ISO-TP node from a configuration
 * file: flash a generated image into the A/B ECU, read the new version, the
 * simulator's state (SIGUSR1) shows the image's SHA-256 in the active bank,
 * rollback --ab brings 1.0 back; the same flash streamed from an HTTP
 * server on loopback (python3 -m http.server); reads, raw requests, negative
 * responses, transport errors and bad input with their exit statuses.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <unistd.h>

#include "tg-keyproto.h"
#include "tg-test-proc.h"

#define IMAGE_SIZE (300 * 1024 + 17) /* not a multiple of any block size */

typedef struct Sim {
        TgTestProc proc;
        uint16_t port;
} Sim;

/* The simulator with args (NULL-terminated); with a DoIP listener the port it logged. */
static bool sim_start(Sim *s, const char *dir, const char *const *args, bool doip) {
        const char *bin = tg_test_binary("TG_ECU_SIM");
        const char *argv[16];
        size_t n = 0;

        if (!bin)
                return false;
        *s = (Sim) {};
        argv[n++] = "tollgate-ecu-sim";
        for (; *args && n < ELEMENTSOF(argv) - 1; args++)
                argv[n++] = *args;
        argv[n] = NULL;
        tg_test_proc_start(&s->proc, dir, "sim", bin, argv);
        if (doip)
                s->port = tg_test_proc_wait_port(&s->proc, 5000);
        else
                assert_se(tg_test_proc_wait_log(&s->proc, "Simulating", 5000));
        return true;
}

/* One run of the tool: its exit status; its stdout and stderr in *ret_out, *ret_err. */
typedef struct Tool {
        const char *bin;
        const char *dir;
        const char *transport[8]; /* NULL-terminated */
        char doip[32];            /* --doip=…, for transport[] */
} Tool;

/* The simulator with the A/B ECU 0x1001 (1 MiB, version 1.0) behind DoIP,
 * and t aimed at it; false (the case is skipped) without the binaries. */
static bool doip_ab_ecu(Sim *sim, Tool *t) {
        if (!t->bin || !sim_start(sim, t->dir,
                                  (const char *const[]) { "--listen=127.0.0.1:0", "--ecu=0x1001:ab:1M:1.0", NULL }, true))
                return false;
        snprintf(t->doip, sizeof t->doip, "--doip=127.0.0.1:%u", sim->port);
        t->transport[0] = t->doip;
        t->transport[1] = "--target=0x1001";
        return true;
}

static int tool_run(const Tool *t, const char *const *args, char **ret_out, char **ret_err) {
        _cleanup_free_ char *out = tg_test_path(t->dir, "uds.out"), *err = tg_test_path(t->dir, "uds.log");
        const char *argv[32], *what = args[0];
        size_t n = 0;
        TgTestProc tool;
        int r;

        argv[n++] = "tollgate-uds";
        for (const char *const *p = t->transport; *p; p++)
                argv[n++] = *p;
        /* sanitizer builds on loaded machines answer slower than an ECU's 50 ms P2 */
        argv[n++] = "--p2=2s";
        for (; *args && n < ELEMENTSOF(argv) - 1; args++)
                argv[n++] = *args;
        argv[n] = NULL;
        tg_test_proc_start(&tool, t->dir, "uds", t->bin, argv);
        r = tg_test_proc_wait(&tool);
        assert_se(r < 128); /* exited, not killed by a signal */
        *ret_out = tg_test_read_text(out);
        *ret_err = tg_test_read_text(err);
        fprintf(stderr, "  tollgate-uds … %s → %d\n", what, r);
        return r;
}

#define RUN(t, expect, out, err, ...)                                                                     \
        do {                                                                                               \
                free(out);                                                                                 \
                free(err);                                                                                 \
                int _r = tool_run((t), (const char *const[]) { __VA_ARGS__, NULL }, &(out), &(err));      \
                if (_r != (expect))                                                                        \
                        fprintf(stderr, "stdout:\n%s\nstderr:\n%s\n", out, err);                           \
                assert_eq(_r, (expect));                                                                   \
        } while (0)

static void make_image(const char *path, uint8_t sha[32]) {
        _cleanup_free_ uint8_t *img = malloc(IMAGE_SIZE);
        uint32_t x = 0xC0FFEE;

        assert_se(img);
        for (size_t i = 0; i < IMAGE_SIZE; i++) {
                x = x * 1103515245u + 12345u;
                img[i] = (uint8_t) (x >> 16);
        }
        tg_test_write_file(path, img, IMAGE_SIZE);
        assert_ok(tg_kp_sha256(img, IMAGE_SIZE, sha));
}

static void hex32(const uint8_t h[32], char out[65]) {
        for (unsigned i = 0; i < 32; i++)
                snprintf(out + 2 * i, 3, "%02x", h[i]);
}

/* The dump line of bank B of the ECU. */
static void assert_bank(Sim *sim, char active, const char *bank_b_fragment) {
        _cleanup_free_ char *state = tg_test_proc_state(&sim->proc);
        char want[16];
        const char *b = strstr(state, " bank B ");

        snprintf(want, sizeof want, "active=%c", active);
        if (!strstr(state, want) || !b || !strstr(b, bank_b_fragment))
                fprintf(stderr, "state:\n%s\nwanted %s and %s\n", state, want, bank_b_fragment);
        assert_contains(state, want);
        assert_se(b);
        assert_contains(b, bank_b_fragment);
}

/* Flash, read, state, rollback, read: the same on both transports. */
static void flash_cycle(const Tool *t, Sim *sim, const char *dir) {
        _cleanup_free_ char *image = tg_test_path(dir, "image.bin"), *out = NULL, *err = NULL;
        uint8_t sha[32];
        char hex[65], frag[160];

        make_image(image, sha);
        hex32(sha, hex);

        RUN(t, 0, out, err, "read", "F189");
        assert_contains(out, "F189 software-version: 31 2E 30  \"1.0\"");

        RUN(t, 0, out, err, "flash", image, "--version=2.0", "--ab", "--extended");
        assert_contains(out, "step transfer-data");
        assert_contains(out, "progress 50%");
        assert_contains(out, "flash: done");
        assert_contains(out, hex);

        RUN(t, 0, out, err, "read", "software-version");
        assert_contains(out, "\"2.0\"");
        snprintf(frag, sizeof frag, "valid=yes version=2.0 written=%u sha256=%s", IMAGE_SIZE, hex);
        assert_bank(sim, 'B', frag);

        RUN(t, 0, out, err, "--json", "rollback", "--ab", "--extended");
        assert_contains(out, "\"command\":\"rollback\",\"result\":\"ok\"");
        RUN(t, 0, out, err, "--json", "read", "F189");
        assert_contains(out, "{\"did\":\"F189\",\"name\":\"software-version\",\"hex\":\"312e30\",\"ascii\":\"1.0\"}");
        assert_bank(sim, 'A', hex);
}

static void test_doip_flash_rollback(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        Sim sim;
        Tool t = { .bin = tg_test_binary("TG_UDS_TOOL"), .dir = dir };

        if (!doip_ab_ecu(&sim, &t))
                return;
        flash_cycle(&t, &sim, dir);
        tg_test_proc_stop(&sim.proc);
}

/* A free loopback TCP port (bound, read back, released). */
static uint16_t free_port(void) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t al = sizeof a;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_se(fd >= 0);
        assert_ok(bind(fd, (struct sockaddr *) &a, sizeof a));
        assert_ok(getsockname(fd, (struct sockaddr *) &a, &al));
        close(fd);
        return ntohs(a.sin_port);
}

static bool port_open(uint16_t port) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool ok;

        assert_se(fd >= 0);
        ok = connect(fd, (struct sockaddr *) &a, sizeof a) == 0;
        close(fd);
        return ok;
}

/* flash URL: the image streamed over HTTP from python3's http.server into
 * the A/B ECU, its hash from --sha256=; a wrong hash is refused by the ECU
 * at the dependency check with the old image still running; a 404, a URL
 * without --sha256= and a file that does not match --sha256= are refused
 * before anything is sent. */
static void test_doip_flash_url(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_free_ char *image = NULL, *url = NULL, *missing = NULL, *shaopt = NULL, *out = NULL, *err = NULL;
        Tool t = { .bin = tg_test_binary("TG_UDS_TOOL"), .dir = dir };
        TgTestProc http;
        Sim sim;
        uint8_t sha[32];
        char hex[65], port[8], frag[160];
        uint16_t p;

        if (access("/usr/bin/python3", X_OK) < 0) {
                fprintf(stderr, "  (no python3 for the HTTP server: skipped)\n");
                return;
        }
        if (!doip_ab_ecu(&sim, &t))
                return;
        image = tg_test_path(dir, "image.bin");
        make_image(image, sha);
        hex32(sha, hex);
        p = free_port();
        snprintf(port, sizeof port, "%u", p);
        tg_test_proc_start(&http, dir, "http", "/usr/bin/python3",
                           (const char *const[]) { "python3", "-m", "http.server", port, "--bind", "127.0.0.1",
                                                   "--directory", dir, NULL });
        for (unsigned i = 0; i < 500 && !port_open(p); i++) {
                tg_test_proc_assert_running(&http);
                usleep(10000);
        }
        assert_se(port_open(p));
        assert_ok(asprintf(&url, "http://127.0.0.1:%u/image.bin", p));
        assert_ok(asprintf(&missing, "http://127.0.0.1:%u/missing.bin", p));
        assert_ok(asprintf(&shaopt, "--sha256=%s", hex));

        RUN(&t, 0, out, err, "flash", url, shaopt, "--version=2.0", "--ab", "--extended");
        assert_contains(out, "flash: done: http://127.0.0.1:");
        assert_contains(out, hex);
        RUN(&t, 0, out, err, "read", "F189");
        assert_contains(out, "\"2.0\"");
        snprintf(frag, sizeof frag, "valid=yes version=2.0 written=%u sha256=%s", IMAGE_SIZE, hex);
        assert_bank(&sim, 'B', frag);

        /* the manifest's hash is not the stream's: the ECU refuses the image, B stays */
        RUN(&t, 1, out, err, "--json", "flash", url,
            "--sha256=00000000000000000000000000000000000000000000000000000000000000ff", "--version=3.0", "--ab",
            "--extended");
        assert_contains(out, "\"step\":\"check-dependencies\"");
        RUN(&t, 0, out, err, "read", "F189");
        assert_contains(out, "\"2.0\"");

        RUN(&t, 5, out, err, "flash", missing, shaopt, "--ab", "--extended");
        assert_contains(err, "HTTP 404");
        RUN(&t, 2, out, err, "flash", url, "--ab", "--extended");
        assert_contains(err, "needs --sha256=");
        RUN(&t, 2, out, err, "flash", image, "--sha256=00000000000000000000000000000000000000000000000000000000000000ff",
            "--ab", "--extended");
        assert_contains(err, "not the one --sha256= gives");
        RUN(&t, 2, out, err, "flash", url, "--sha256=12ab", "--ab", "--extended");
        assert_contains(err, "64 hex digits");
        RUN(&t, 0, out, err, "read", "F189");
        assert_contains(out, "\"2.0\"");

        tg_test_proc_stop(&http);
        tg_test_proc_stop(&sim.proc);
}

/* kill -9 of the tool in the middle of TransferData, on an A/B and a
 * single-bank ECU: no bank claims the half-written image, the A/B ECU still
 * runs 1.0, and the next flash goes through. */
static void test_doip_kill_mid_flash(void) {
        static const char *const ecus[] = { "--target=0x1001", "--target=0x1002" };
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_free_ char *doip = NULL, *image = NULL, *out = NULL, *err = NULL;
        const char *bin = tg_test_binary("TG_UDS_TOOL");
        Tool t = { .bin = bin, .dir = dir };
        uint8_t sha[32];
        char hex[65];
        Sim sim;

        /* 150 KiB/s: the 300 KiB image takes 2 s to write */
        if (!bin || !sim_start(&sim, dir,
                               (const char *const[]) { "--listen=127.0.0.1:0", "--ecu=0x1001:ab:1M:1.0",
                                                       "--ecu=0x1002:single:1M:1.0", "--write-speed=150K", NULL },
                               true))
                return;
        assert_ok(asprintf(&doip, "--doip=127.0.0.1:%u", sim.port));
        image = tg_test_path(dir, "image.bin");
        make_image(image, sha);
        hex32(sha, hex);
        t.transport[0] = doip;

        for (size_t i = 0; i < ELEMENTSOF(ecus); i++) {
                bool ab = i == 0;
                const char *argv[] = { "tollgate-uds", doip, ecus[i], "--p2=2s", "flash", image, "--version=2.0",
                                       "--extended", ab ? "--ab" : "--quiet", NULL };
                TgTestProc tool;

                tg_test_proc_start(&tool, dir, "killed", bin, argv);
                for (unsigned k = 0; k < 1000; k++) {
                        _cleanup_free_ char *o = tg_test_read_text(tool.out);
                        if (strstr(o, "progress 20%") || (!ab && k > 150))
                                break;
                        usleep(10000);
                }
                assert_se(kill(tool.pid, SIGKILL) == 0);
                assert_eq(tg_test_proc_wait(&tool), 128 + SIGKILL);

                _cleanup_free_ char *state = tg_test_proc_state(&sim.proc);
                char ecu_line[32];
                snprintf(ecu_line, sizeof ecu_line, "ecu 0x%s bank ", ab ? "1001" : "1002");
                fprintf(stderr, "  after kill -9:\n%s", state);
                /* no bank of that ECU is valid with the half-written image */
                for (const char *l = strstr(state, ecu_line); l; l = strstr(l + 1, ecu_line)) {
                        const char *eol = strchr(l, '\n');
                        _cleanup_free_ char *line = strndup(l, eol ? (size_t) (eol - l) : strlen(l));
                        assert_se(!strstr(line, "valid=yes") || strstr(line, "written=0 "));
                }
                t.transport[1] = ecus[i];
                if (ab) {
                        RUN(&t, 0, out, err, "read", "F189");
                        assert_contains(out, "\"1.0\"");
                }
                RUN(&t, 0, out, err, "flash", image, "--version=2.0", "--extended", ab ? "--ab" : "--quiet");
                RUN(&t, 0, out, err, "read", "F189");
                assert_contains(out, "\"2.0\"");
                free(state);
                state = tg_test_proc_state(&sim.proc);
                char want[160];
                snprintf(want, sizeof want, "%s%c valid=yes version=2.0 written=%u sha256=%s", ecu_line, ab ? 'B' : 'A',
                         IMAGE_SIZE, hex);
                assert_contains(state, want);
        }
        tg_test_proc_stop(&sim.proc);
}

static void test_doip_services(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_free_ char *out = NULL, *err = NULL, *image = NULL;
        Sim sim;
        Tool t = { .bin = tg_test_binary("TG_UDS_TOOL"), .dir = dir };

        if (!doip_ab_ecu(&sim, &t))
                return;

        RUN(&t, 0, out, err, "raw", "22", "F1", "87");
        assert_streq(out, "62 F1 87 54 47 2D 53 49 4D\n");
        RUN(&t, 0, out, err, "raw", "22F18C");
        assert_contains(out, "62 F1 8C");
        /* a negative response: printed, named, exit 1 */
        RUN(&t, 1, out, err, "raw", "0x22:12:34");
        assert_streq(out, "7F 22 31\n");
        assert_contains(err, "requestOutOfRange");
        RUN(&t, 1, out, err, "read", "F187", "vin");
        assert_contains(out, "F187 part-number: 54 47 2D 53 49 4D  \"TG-SIM\"");
        assert_contains(err, "read F190");
        assert_contains(err, "negative response 0x31 requestOutOfRange");
        RUN(&t, 0, out, err, "session", "extended");
        assert_contains(out, "session 0x03: P2 ");
        RUN(&t, 0, out, err, "tester-present");
        RUN(&t, 0, out, err, "--json", "reset", "hard");
        assert_contains(out, "\"reset\":\"hard\"");
        /* programming without the extended session first: refused by this ECU, with a hint */
        image = tg_test_path(dir, "small.bin");
        tg_test_write_file(image, "0123456789abcdef", 16);
        RUN(&t, 1, out, err, "flash", image, "--ab", "--no-extended");
        assert_contains(err, "flash failed at programming-session: negative response 0x22 conditionsNotCorrect");
        assert_contains(err, "drop --no-extended");
        RUN(&t, 1, out, err, "--json", "flash", image, "--ab", "--no-extended");
        assert_contains(out, "\"result\":\"failed\"");
        assert_contains(out, "\"nrc\":34");
        /* by default the extended session comes first, as the ECU wants */
        RUN(&t, 0, out, err, "-q", "flash", image, "--ab", "--version=1.1");
        RUN(&t, 0, out, err, "read", "F189");
        assert_contains(out, "\"1.1\"");

        /* transport failures: exit 3 */
        t.transport[1] = "--target=0x2002";
        RUN(&t, 3, out, err, "read", "F189");
        assert_contains(err, "diagnostic-nack");
        tg_test_proc_stop(&sim.proc);
        RUN(&t, 3, out, err, "--timeout=2s", "read", "F189");
        assert_contains(err, "Cannot connect to DoIP entity 127.0.0.1");
}

static void test_bad_input(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_free_ char *out = NULL, *err = NULL, *missing = NULL, *empty = NULL;
        /* nothing listens there: bad input must be found before connecting */
        Tool t = { .bin = tg_test_binary("TG_UDS_TOOL"), .dir = dir,
                   .transport = { "--doip=127.0.0.1:1", "--target=0x1001" } };
        Tool can = { .bin = t.bin, .dir = dir };

        if (!t.bin)
                return;
        missing = tg_test_path(dir, "missing.bin");
        empty = tg_test_path(dir, "empty.bin");
        tg_test_write_file(empty, "", 0);

        RUN(&t, 2, out, err, "raw", "22", "F1Z0");
        assert_contains(err, "Bad hex 'F1Z0'");
        RUN(&t, 2, out, err, "raw", "221");
        assert_contains(err, "Bad hex '221'");
        RUN(&t, 2, out, err, "raw");
        assert_contains(err, "raw takes the request");
        RUN(&t, 2, out, err, "read", "F18");
        RUN(&t, 2, out, err, "read", "bogus");
        assert_contains(err, "Bad DID 'bogus'");
        RUN(&t, 2, out, err, "read", "0x1F190");
        assert_contains(err, "Bad DID");
        RUN(&t, 2, out, err, "read");
        RUN(&t, 2, out, err, "session", "sleepy");
        assert_contains(err, "Bad session 'sleepy'");
        RUN(&t, 2, out, err, "reset", "warm");
        assert_contains(err, "Bad reset type 'warm'");
        RUN(&t, 2, out, err, "flash", missing);
        assert_contains(err, "Cannot open the image");
        assert_contains(err, "No such file or directory");
        RUN(&t, 2, out, err, "flash", empty);
        assert_contains(err, "is empty");
        RUN(&t, 2, out, err, "flash");
        assert_contains(err, "flash takes the image file");
        RUN(&t, 2, out, err, "flash", empty, "--dtc-off", "--no-extended");
        assert_contains(err, "drop --no-extended");
        RUN(&t, 2, out, err, "rollback");
        RUN(&t, 2, out, err, "rollback", "--ab", missing);
        RUN(&t, 2, out, err, "read", "F189", "--ab");
        assert_contains(err, "are for flash and rollback");
        RUN(&t, 2, out, err, "frobnicate");
        assert_contains(err, "Unknown command 'frobnicate'");
        RUN(&t, 2, out, err, "--no-such-option", "read", "F189");
        assert_contains(err, "--no-such-option");
        RUN(&t, 2, out, err, "--target=0x1FFFF", "read", "F189");
        assert_contains(err, "Bad address --target=0x1FFFF");
        RUN(&t, 2, out, err, "--timeout=soon", "read", "F189");
        assert_contains(err, "Bad --timeout=soon");

        /* the transports */
        RUN(&can, 2, out, err, "read", "F189");
        assert_contains(err, "--doip=ADDR[:PORT] or --can=SPEC");
        RUN(&can, 2, out, err, "--doip=127.0.0.1", "read", "F189");
        assert_contains(err, "--target=ADDR is required");
        RUN(&can, 2, out, err, "--doip=not:an:address:", "--target=1", "read", "F189");
        RUN(&can, 2, out, err, "--doip=127.0.0.1:99999", "--target=1", "read", "F189");
        assert_contains(err, "Bad --doip=127.0.0.1:99999");
        RUN(&can, 2, out, err, "--can=unix:/nonexistent.sock", "--tx-id=0x7E0", "read", "F189");
        assert_contains(err, "--can= needs --tx-id= and --rx-id=");
        RUN(&can, 2, out, err, "--can=unix:/nonexistent.sock", "--tx-id=0x7E0", "--rx-id=0x2000000G", "read", "F189");
        assert_contains(err, "Bad CAN id --rx-id=0x2000000G");
        RUN(&can, 2, out, err, "--can=unix:/nonexistent.sock", "--tx-id=0x7E0", "--rx-id=0x20000000", "read", "F189");
        assert_contains(err, "Bad CAN id --rx-id=0x20000000");
        RUN(&can, 2, out, err, "--can=unix:/nonexistent.sock", "--tx-id=0x7E0", "--rx-id=0x7E8", "--dl=64", "read",
            "F189");
        assert_contains(err, "need --fd");
        RUN(&can, 2, out, err, "--can=unix:/nonexistent.sock", "--tx-id=0x7E0", "--rx-id=0x7E8", "--fd", "--dl=63",
            "read", "F189");
        assert_contains(err, "Bad --dl=63");
        RUN(&can, 2, out, err, "--doip=127.0.0.1", "--target=1", "--can=unix:/x", "read", "F189");
        assert_contains(err, "exclude each other");
        RUN(&can, 2, out, err, "--can=tgtest0", "--tx-id=0x7E0", "--rx-id=0x7E8", "--kernel-isotp=maybe", "read",
            "F189");
        assert_contains(err, "Bad --kernel-isotp=maybe");
        RUN(&can, 2, out, err, "--can=tgtest0", "--tx-id=0x7E0", "--rx-id=0x7E8", "--bitrate=5", "read", "F189");
        assert_contains(err, "Bad --bitrate=5");
        RUN(&can, 2, out, err, "--doip=127.0.0.1", "--target=1", "--bitrate=500000", "read", "F189");
        assert_contains(err, "are for --can=");
        /* an interface this machine does not have: the kernel's ISO-TP, or
         * the bring-up through libsocketcan, fail with a named error */
        RUN(&can, 3, out, err, "--can=tgtest0", "--tx-id=0x7E0", "--rx-id=0x7E8", "--kernel-isotp=yes", "read",
            "F189");
        assert_contains(err, "tgtest0");
        RUN(&can, 3, out, err, "--can=tgtest0", "--tx-id=0x7E0", "--rx-id=0x7E8", "--bitrate=500000", "read", "F189");
        assert_contains(err, "tgtest0");

        /* and the harmless ones */
        RUN(&can, 0, out, err, "--help");
        assert_contains(out, "Usage: tollgate-uds");
        RUN(&can, 0, out, err, "--version");
        assert_contains(out, "tollgate-uds ");
        /* a bus that is not there: a transport error */
        RUN(&can, 3, out, err, "--can=unix:/nonexistent.sock", "--tx-id=0x7E0", "--rx-id=0x7E8", "read", "F189");
}

static void test_isotp_flash_rollback(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_free_ char *can = NULL, *conf = NULL, *conf_arg = NULL, *text = NULL, *out = NULL,
                            *err = NULL;
        TgTestHub hub;
        Sim sim;
        Tool t = { .bin = tg_test_binary("TG_UDS_TOOL"), .dir = dir };

        if (!t.bin || !tg_test_hub_start(&hub, dir, "hub", NULL))
                return;
        conf = tg_test_path(dir, "sim.conf");
        assert_ok(asprintf(&text,
                           "[Bus can0]\nSpec=%s\nFunctionalId=0x7DF\n\n"
                           "[Ecu bcm]\nBus=can0\nRequestId=0x7E0\nResponseId=0x7E8\nAddress=0x07E0\n"
                           "Banks=ab\nBankSize=1M\nVersion=1.0\n",
                           hub.spec));
        tg_test_write_file(conf, text, strlen(text));
        assert_ok(asprintf(&conf_arg, "--config=%s", conf));
        if (!sim_start(&sim, dir, (const char *const[]) { conf_arg, NULL }, false)) {
                tg_test_hub_stop(&hub);
                return;
        }
        assert_ok(asprintf(&can, "--can=%s", hub.spec));
        t.transport[0] = can;
        t.transport[1] = "--tx-id=0x7E0";
        t.transport[2] = "--rx-id=0x7E8";
        flash_cycle(&t, &sim, dir);
        /* functional addressing: the answer comes on the ECU's response id */
        RUN(&t, 0, out, err, "--functional-id=0x7DF", "--target=functional", "tester-present");
        assert_streq(out, "tester-present: ok\n");
        RUN(&t, 0, out, err, "--functional-id=0x7DF", "--target=functional", "raw", "3E80");
        assert_streq(out, "(no response: suppressed)\n");
        tg_test_proc_stop(&sim.proc);
        tg_test_hub_stop(&hub);
}

TG_TEST_MAIN(TEST(doip_kill_mid_flash), TEST(bad_input), TEST(doip_services), TEST(doip_flash_rollback),
             TEST(doip_flash_url), TEST(isotp_flash_rollback));
