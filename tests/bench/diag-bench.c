/* SPDX-License-Identifier: MIT */
/*
 * diag-bench: one whole flash through the real client stack (lib/tg-diag,
 * lib/tg-flash) into an ECU of a running tollgate-ecu-sim, over DoIP or over
 * userspace ISO-TP on a tollgate-canhub bus, and the figures: TransferData
 * goodput (bytes of the image per second from the first transfer-data
 * progress to the end of the last TransferData) and the whole flash time.
 * Driven by tests/bench/diag-bench, which starts the simulator and the hubs;
 * not a test, it asserts nothing about speed.
 *
 *   diag-bench doip --port=N --target=ADDR --size=BYTES [--ab] [--label=TEXT]
 *              [--url=URL [--window=BYTES]]
 *   diag-bench isotp --bus=unix:PATH --target=ADDR --tx-id=ID --rx-id=ID
 *              --size=BYTES [--ab] [--fd] [--brs] [--tx-dl=N]
 *              --bitrate=N [--data-bitrate=N] [--label=TEXT]
 *   diag-bench isotp-theory --bitrate=N [--data-bitrate=N] [--fd] [--brs] [--tx-dl=N]
 *   diag-bench image --size=BYTES > FILE
 *
 * With --url the image is not generated here but streamed from an HTTP
 * server (which serves what `diag-bench image` wrote) through
 * lib/tg-download's window (default 256 KiB), as ota-agent would stream it.
 *
 * The ISO-TP figures are shares of the theoretical ISO-TP payload rate of
 * the bus: the payload of one consecutive frame (TX_DL - 1) per wire time of
 * that frame, in tollgate-canhub's own bit model (tools/can-hub/can-wire.h),
 * i.e. back-to-back consecutive frames with nothing else on the bus.
 */

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "can-wire.h"
#include "tg-diag.h"
#include "tg-doip.h"
#include "tg-download.h"
#include "tg-flash.h"
#include "tg-http.h"
#include "tg-uds.h"

#define TESTER 0x0E80
#define FUNCTIONAL_ID 0x7DF

typedef struct Bench {
        sd_event *event;
        uint64_t size;
        uint64_t t_start, t_transfer_start, t_transfer_end, t_end;
        uint64_t blocks;          /* TransferData requests */
        uint64_t last_done;
        uint64_t max_block;       /* image bytes of the largest TransferData */
        bool in_transfer;
        TgFlashError err;
        bool finished;
        TgFlash *flash;           /* for the download's wake-ups */
} Bench;

static uint64_t mono_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

/* The image: byte i is byte i % 8 of splitmix64(i / 8), so any range can be
 * generated without holding the image. */
static uint64_t mix(uint64_t x) {
        x += UINT64_C(0x9E3779B97F4A7C15);
        x = (x ^ (x >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
        x = (x ^ (x >> 27)) * UINT64_C(0x94D049BB133111EB);
        return x ^ (x >> 31);
}

static void generate(uint64_t offset, uint8_t *buf, size_t len) {
        while (len > 0) {
                uint64_t w = mix(offset / 8);
                unsigned skip = (unsigned) (offset % 8), n = 8 - skip;
                uint8_t bytes[8];

                if (n > len)
                        n = (unsigned) len;
                for (unsigned k = 0; k < 8; k++)
                        bytes[k] = (uint8_t) (w >> (8 * k));
                memcpy(buf, bytes + skip, n);
                buf += n;
                offset += n;
                len -= n;
        }
}

static ssize_t read_image(void *userdata, uint64_t offset, uint8_t *buf, size_t len) {
        generate(offset, buf, len);
        return (ssize_t) len;
}

static int image_sha256(uint64_t size, uint8_t ret[32]) {
        static uint8_t chunk[1 << 16];
        wc_Sha256 sha;
        int r = wc_InitSha256(&sha);

        for (uint64_t off = 0; r == 0 && off < size; off += sizeof chunk) {
                size_t n = size - off < sizeof chunk ? (size_t) (size - off) : sizeof chunk;

                generate(off, chunk, n);
                r = wc_Sha256Update(&sha, chunk, (word32) n);
        }
        if (r == 0)
                r = wc_Sha256Final(&sha, ret);
        wc_Sha256Free(&sha);
        return r == 0 ? 0 : -EIO;
}

static void on_progress(TgFlash *f, uint64_t done, uint64_t total, const char *step, void *userdata) {
        Bench *b = userdata;
        uint64_t now = mono_usec();

        if (strcmp(step, "transfer-data") == 0) {
                if (!b->in_transfer && b->t_transfer_start == 0) {
                        b->in_transfer = true;
                        b->t_transfer_start = now;
                        b->last_done = done;
                } else if (done > b->last_done) {
                        b->blocks++;
                        if (done - b->last_done > b->max_block)
                                b->max_block = done - b->last_done;
                        b->last_done = done;
                        b->t_transfer_end = now; /* the last block's positive response */
                }
        } else if (b->in_transfer)
                b->in_transfer = false;
}

static void on_download_wake(TgDownload *d, void *userdata) {
        Bench *b = userdata;

        (void) d;
        if (b->flash)
                tg_flash_resume(b->flash);
}

static void on_finished(TgFlash *f, const TgFlashError *err, void *userdata) {
        Bench *b = userdata;

        b->err = *err;
        b->finished = true;
        b->t_end = mono_usec();
        (void) sd_event_exit(b->event, 0);
}

typedef struct Args {
        const char *mode;
        const char *label;
        const char *bus;
        uint16_t port;
        uint16_t target;
        uint32_t tx_id, rx_id;
        uint64_t size;
        bool ab, fd, brs;
        unsigned tx_dl;
        uint64_t bitrate, data_bitrate;
        const char *url;
        uint64_t window;
} Args;

/* ISO-TP payload bytes per second of back-to-back consecutive frames. */
static double isotp_theory(const Args *a, double *ret_cf_usec, unsigned *ret_cf_payload) {
        unsigned dl = a->fd ? (a->tx_dl ? a->tx_dl : 64) : 8;
        CanWireBits bits = a->fd ? can_wire_fd_bits(false, dl, a->brs) : can_wire_classic_bits(false, dl);
        uint64_t ns = can_wire_ns(bits, a->bitrate, a->data_bitrate);

        if (ret_cf_usec)
                *ret_cf_usec = (double) ns / 1000.0;
        if (ret_cf_payload)
                *ret_cf_payload = dl - 1;
        return (double) (dl - 1) * 1e9 / (double) ns;
}

static void print_size(char *buf, size_t n, uint64_t size) {
        if (size % (1024 * 1024) == 0)
                snprintf(buf, n, "%" PRIu64 " MiB", size / (1024 * 1024));
        else if (size % 1024 == 0)
                snprintf(buf, n, "%" PRIu64 " KiB", size / 1024);
        else
                snprintf(buf, n, "%" PRIu64 " B", size);
}

static int run_flash(const Args *a) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        TgDiagChannel *ch = NULL;
        TgFlash *f = NULL;
        TgFlashPlan plan = {
                .read = read_image,
                .size = a->size,
                .version = "9.9.9",
                .key_fn = tg_uds_key_demo,
                .ab_banks = a->ab,
                .extended_session = true,
                .dtc_off = true,
                .comm_off = true,
        };
        static const TgFlashCallbacks cb = { .progress = on_progress, .finished = on_finished };
        Bench b = { .size = a->size };
        _cleanup_(tg_http_freep) TgHttp *http = NULL;
        _cleanup_(tg_download_freep) TgDownload *dl = NULL;
        char sz[32];
        int r;

        r = image_sha256(a->size, plan.sha256);
        if (r < 0)
                return fprintf(stderr, "diag-bench: SHA-256 failed\n"), r;
        r = sd_event_new(&e);
        if (r < 0)
                return r;
        b.event = e;

        if (strcmp(a->mode, "doip") == 0) {
                TgDiagDoipConfig cfg = {
                        .address = "127.0.0.1",
                        .port = a->port,
                        .tester_address = TESTER,
                        .activation_type = TG_DOIP_ACTIVATION_DEFAULT,
                };
                r = tg_diag_doip_new(e, &cfg, &ch);
        } else {
                TgIsotpConfig iso;
                TgDiagIsotpEcu ecu = { .address = a->target, .tx_id = a->tx_id, .rx_id = a->rx_id };
                TgDiagIsotpConfig cfg = {
                        .bus = a->bus,
                        .isotp = &iso,
                        .ecus = &ecu,
                        .n_ecus = 1,
                        .functional_tx_id = FUNCTIONAL_ID,
                };

                tg_isotp_config_init(&iso, a->tx_id, a->rx_id, a->fd);
                iso.brs = a->brs;
                iso.tx_dl = (uint8_t) (a->fd ? (a->tx_dl ? a->tx_dl : 64) : 8);
                iso.pad = true;
                r = tg_diag_isotp_new(e, &cfg, &ch);
        }
        if (r < 0)
                return fprintf(stderr, "diag-bench: cannot create the channel: %s\n", strerror(-r)), r;
        /* The session's P2 (from 10 02's response) replaces p2_usec; the
         * margin stays. The simulated ECU hashes the whole image for 0xFF01
         * inside one request (64 MiB: longer than a P2), and a loaded machine
         * answers slower than an ECU: a wide margin, this measures speed. */
        ch->timing.margin_usec = 20 * 1000000ULL;
        ch->timing.p2_usec = 2 * 1000000ULL;

        if (a->url) {
                CURL *easy = curl_easy_init();

                r = easy ? tg_http_new(e, &http) : -ENOMEM;
                if (r >= 0) {
                        curl_easy_setopt(easy, CURLOPT_URL, a->url);
                        r = tg_download_start(http, easy, a->window, on_download_wake, &b, &dl);
                        easy = NULL; /* the download's now, also on failure */
                }
                if (easy)
                        curl_easy_cleanup(easy);
                if (r < 0) {
                        tg_diag_free(ch);
                        return fprintf(stderr, "diag-bench: cannot start the download: %s\n", strerror(-r)), r;
                }
                plan.read = tg_download_read;
                plan.read_userdata = dl;
                plan.max_block_data = a->window - CURL_MAX_WRITE_SIZE;
        }

        b.t_start = mono_usec();
        r = tg_flash_start(ch, a->target, &plan, &cb, &b, &f);
        b.flash = f;
        if (r < 0) {
                tg_diag_free(ch);
                return fprintf(stderr, "diag-bench: tg_flash_start: %s\n", strerror(-r)), r;
        }
        r = sd_event_loop(e);
        f = tg_flash_free(f);
        ch = tg_diag_free(ch);
        if (r < 0)
                return fprintf(stderr, "diag-bench: event loop: %s\n", strerror(-r)), r;
        if (!b.finished || b.err.error != 0) {
                fprintf(stderr, "diag-bench: %s: the flash failed: %s%s%s\n", a->label ? a->label : a->mode,
                        b.finished ? b.err.message : "did not finish", dl ? "; download: " : "",
                        dl ? tg_download_message(dl) : "");
                return -EIO;
        }

        double secs = (double) (b.t_transfer_end - b.t_transfer_start) / 1e6;
        double whole = (double) (b.t_end - b.t_start) / 1e6;
        double rate = (double) a->size / secs;
        uint64_t block = b.max_block;

        print_size(sz, sizeof sz, a->size);
        if (strcmp(a->mode, "doip") == 0) {
                printf("%-32s %8s  %10" PRIu64 " B in %7.3f s  %8.1f MB/s  (target >= 80 MB/s)  "
                       "%" PRIu64 " blocks of %" PRIu64 " B; whole flash %.3f s",
                       a->label ? a->label : "doip", sz, a->size, secs, rate / 1e6, b.blocks, block, whole);
                if (dl)
                        printf("; window %" PRIu64 " KiB, peak %zu KiB", a->window / 1024, tg_download_peak(dl) / 1024);
                printf("\n");
        } else {
                double cf_usec = 0;
                unsigned cf_payload = 0;
                double theory = isotp_theory(a, &cf_usec, &cf_payload);
                /* What ISO-TP carried for the tester: the image plus the 2-byte 36 header per block. */
                double raw = (double) (a->size + 2 * b.blocks) / secs;

                printf("%-32s %8s  %10" PRIu64 " B in %7.3f s  %8.0f B/s = %5.1f %% of theoretical %.0f B/s "
                       "(target >= 90 %%)  ISO-TP payload incl. 36 headers %5.1f %%; %" PRIu64
                       " blocks of %" PRIu64 " B; CF %u B per %.1f us; whole flash %.3f s\n",
                       a->label ? a->label : "isotp", sz, a->size, secs, rate, 100 * rate / theory, theory,
                       100 * raw / theory, b.blocks, block, cf_payload, cf_usec, whole);
        }
        return 0;
}

static int parse_u64(const char *s, uint64_t *ret) {
        char *end;
        unsigned long long v;

        errno = 0;
        v = strtoull(s, &end, 0);
        if (errno || end == s)
                return -EINVAL;
        if (*end == 'k' || *end == 'K')
                v *= 1024, end++;
        else if (*end == 'M')
                v *= 1024 * 1024, end++;
        if (*end)
                return -EINVAL;
        *ret = v;
        return 0;
}

int main(int argc, char *argv[]) {
        enum { A_PORT = 0x100, A_TARGET, A_SIZE, A_AB, A_LABEL, A_BUS, A_TX, A_RX, A_FD, A_BRS, A_DL, A_BR, A_DBR,
               A_URL, A_WINDOW };
        static const struct option options[] = {
                { "port", required_argument, NULL, A_PORT },
                { "target", required_argument, NULL, A_TARGET },
                { "size", required_argument, NULL, A_SIZE },
                { "ab", no_argument, NULL, A_AB },
                { "label", required_argument, NULL, A_LABEL },
                { "bus", required_argument, NULL, A_BUS },
                { "tx-id", required_argument, NULL, A_TX },
                { "rx-id", required_argument, NULL, A_RX },
                { "fd", no_argument, NULL, A_FD },
                { "brs", no_argument, NULL, A_BRS },
                { "tx-dl", required_argument, NULL, A_DL },
                { "bitrate", required_argument, NULL, A_BR },
                { "data-bitrate", required_argument, NULL, A_DBR },
                { "url", required_argument, NULL, A_URL },
                { "window", required_argument, NULL, A_WINDOW },
                {},
        };
        Args a = { .window = 256 * 1024 };
        uint64_t v = 0;
        int c;

        if (argc < 2) {
                fprintf(stderr, "Usage: diag-bench doip|isotp|isotp-theory OPTIONS (see tests/bench/diag-bench)\n");
                return 2;
        }
        a.mode = argv[1];
        optind = 2;
        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0) {
                if (c != A_AB && c != A_FD && c != A_BRS && c != A_LABEL && c != A_BUS && c != A_URL &&
                    parse_u64(optarg, &v) < 0) {
                        fprintf(stderr, "diag-bench: bad number: %s\n", optarg);
                        return 2;
                }
                switch (c) {
                case A_PORT: a.port = (uint16_t) v; break;
                case A_TARGET: a.target = (uint16_t) v; break;
                case A_SIZE: a.size = v; break;
                case A_AB: a.ab = true; break;
                case A_LABEL: a.label = optarg; break;
                case A_BUS: a.bus = optarg; break;
                case A_TX: a.tx_id = (uint32_t) v; break;
                case A_RX: a.rx_id = (uint32_t) v; break;
                case A_FD: a.fd = true; break;
                case A_BRS: a.brs = true; break;
                case A_DL: a.tx_dl = (unsigned) v; break;
                case A_BR: a.bitrate = v; break;
                case A_DBR: a.data_bitrate = v; break;
                case A_URL: a.url = optarg; break;
                case A_WINDOW: a.window = v; break;
                default: return 2;
                }
        }
        if (strcmp(a.mode, "isotp-theory") == 0) {
                double cf_usec = 0;
                unsigned cf_payload = 0;

                if (!a.bitrate)
                        return fprintf(stderr, "diag-bench: --bitrate= needed\n"), 2;
                double theory = isotp_theory(&a, &cf_usec, &cf_payload);

                printf("%.0f B/s (CF %u B per %.1f us)\n", theory, cf_payload, cf_usec);
                return 0;
        }
        if (strcmp(a.mode, "image") == 0) {
                static uint8_t chunk[1 << 16];

                if (a.size == 0)
                        return fprintf(stderr, "diag-bench: --size= needed\n"), 2;
                for (uint64_t off = 0; off < a.size; off += sizeof chunk) {
                        size_t n = a.size - off < sizeof chunk ? (size_t) (a.size - off) : sizeof chunk;

                        generate(off, chunk, n);
                        if (fwrite(chunk, 1, n, stdout) != n)
                                return fprintf(stderr, "diag-bench: cannot write the image: %s\n", strerror(errno)), 1;
                }
                return fflush(stdout) == 0 ? 0 : 1;
        }
        if (a.window < TG_DOWNLOAD_WINDOW_MIN)
                return fprintf(stderr, "diag-bench: --window= takes at least %u\n", TG_DOWNLOAD_WINDOW_MIN), 2;
        if (a.size == 0 || a.target == 0 ||
            (strcmp(a.mode, "doip") == 0 ? a.port == 0
                                         : strcmp(a.mode, "isotp") != 0 || !a.bus || !a.tx_id || !a.rx_id || !a.bitrate)) {
                fprintf(stderr, "diag-bench: missing or unknown arguments (see tests/bench/diag-bench)\n");
                return 2;
        }
        return run_flash(&a) < 0 ? 1 : 0;
}
