/* SPDX-License-Identifier: MIT */

/*
 * tollgate-uds flash and rollback: lib/tg-flash with the image streamed from
 * its file (one pass for the SHA-256 first, then pread() block by block:
 * never held whole) or from an http(s) URL through lib/tg-download's window
 * (the SHA-256 from --sha256=), the demonstration seed-to-key algorithm for
 * SecurityAccess (tg_uds_key_demo(), the one the ECU simulator checks), and
 * the progress as a line per 10 % or, on a terminal, a bar.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tg-config.h"
#include "tg-download.h"
#include "tg-flash.h"
#include "tg-http.h"
#include "tg-uds.h"
#include "uds.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

/* After tg-macro.h (ours MIN/MAX win); options.h before any other wolfSSL
 * header: it carries the feature set the library was built with. */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/sha256.h>

#define HASH_CHUNK (64 * 1024)
#define BAR_WIDTH 30
/* A download's window: what a streamed image holds in memory at most. */
#define STREAM_WINDOW (256 * 1024)

typedef struct Image {
        const char *path;       /* the file, or the URL */
        int fd;
        uint64_t size;
        uint8_t sha256[32];
        /* streamed from a URL */
        TgHttp *http;
        TgDownload *download;
        TgFlash *flash;         /* the flash it feeds, woken when bytes come */
} Image;

typedef struct Run {
        Uds *u;
        bool tty;
        bool done;
        TgFlashError err;
        const char *step;       /* the last step reported */
        int decile;             /* the last 10 % line printed */
        bool bar;               /* a bar is on the terminal line */
        uint64_t start_usec;
} Run;

static uint64_t now_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static ssize_t image_read(void *userdata, uint64_t offset, uint8_t *buf, size_t len) {
        Image *img = userdata;
        size_t done = 0;

        while (done < len) {
                ssize_t n = pread(img->fd, buf + done, len - done, (off_t) (offset + done));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -EIO; /* the file shrank under us */
                done += (size_t) n;
        }
        return (ssize_t) done;
}

/* Open and hash IMAGE (streamed). UDS_EXIT_OK or an exit status (reported). */
static int image_open(Image *img, const char *path) {
        _cleanup_free_ uint8_t *buf = NULL;
        struct stat st;
        wc_Sha256 sha;
        uint64_t off = 0;
        int r;

        *img = (Image) { .path = path, .fd = -EBADF };
        img->fd = open(path, O_RDONLY | O_CLOEXEC);
        if (img->fd < 0) {
                uds_error("Cannot open the image %s: %s", path, strerror(errno));
                return UDS_EXIT_USAGE;
        }
        if (fstat(img->fd, &st) < 0) {
                uds_error("Cannot stat the image %s: %s", path, strerror(errno));
                return UDS_EXIT_USAGE;
        }
        if (!S_ISREG(st.st_mode)) {
                uds_error("The image %s is not a regular file.", path);
                return UDS_EXIT_USAGE;
        }
        if (st.st_size == 0) {
                uds_error("The image %s is empty.", path);
                return UDS_EXIT_USAGE;
        }
        img->size = (uint64_t) st.st_size;
        buf = malloc(HASH_CHUNK);
        if (!buf || wc_InitSha256(&sha) != 0) {
                uds_error("Cannot hash the image: out of memory.");
                return UDS_EXIT_LOCAL;
        }
        r = 0;
        while (off < img->size && r == 0) {
                size_t len = (size_t) MIN((uint64_t) HASH_CHUNK, img->size - off);
                ssize_t n = image_read(img, off, buf, len);

                if (n < 0) {
                        wc_Sha256Free(&sha);
                        uds_error("Cannot read the image %s: %s", path, strerror((int) -n));
                        return UDS_EXIT_USAGE;
                }
                r = wc_Sha256Update(&sha, buf, (word32) n);
                off += (uint64_t) n;
        }
        if (r == 0)
                r = wc_Sha256Final(&sha, img->sha256);
        wc_Sha256Free(&sha);
        if (r != 0) {
                uds_error("Cannot hash the image (wolfSSL error %d).", r);
                return UDS_EXIT_LOCAL;
        }
        return UDS_EXIT_OK;
}

static bool is_url(const char *s) {
        return startswith(s, "http://") || startswith(s, "https://");
}

static void on_stream_wake(TgDownload *d, void *userdata) {
        Image *img = userdata;

        (void) d;
        if (img->flash)
                tg_flash_resume(img->flash);
}

/* Start downloading url and wait for the first bytes, which tell its size
 * (Content-Length). UDS_EXIT_OK or an exit status (reported). */
static int image_open_url(Uds *u, Image *img, const char *url) {
        CURL *easy;
        int r;

        *img = (Image) { .path = url, .fd = -EBADF };
        memcpy(img->sha256, u->sha256, sizeof img->sha256);
        r = tg_http_new(u->event, &img->http);
        easy = r >= 0 ? curl_easy_init() : NULL;
        if (!easy) {
                uds_error("Cannot set up the download: out of memory.");
                return UDS_EXIT_LOCAL;
        }
        curl_easy_setopt(easy, CURLOPT_URL, url);
        curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(easy, CURLOPT_MAXREDIRS, 5L);
        curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) (u->timeout_usec / 1000));
        /* a server that sends nothing for 30 s ends the download (and the flash) */
        curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, 30L);
        curl_easy_setopt(easy, CURLOPT_USERAGENT, "tollgate-uds/" PACKAGE_VERSION);
        r = tg_download_start(img->http, easy, STREAM_WINDOW, on_stream_wake, img, &img->download);
        if (r < 0) {
                uds_error("Cannot start the download of %s: %s", url, strerror(-r));
                return UDS_EXIT_LOCAL;
        }
        while (tg_download_received(img->download) == 0 && !tg_download_finished(img->download)) {
                r = sd_event_run(u->event, UINT64_MAX);
                if (r < 0) {
                        uds_error("Event loop failed: %s", strerror(-r));
                        return UDS_EXIT_LOCAL;
                }
        }
        if (tg_download_error(img->download)) {
                uds_error("Cannot download %s: %s", url, tg_download_message(img->download));
                return UDS_EXIT_LOCAL;
        }
        if (tg_download_size(img->download) <= 0) {
                uds_error(tg_download_size(img->download) == 0 ? "The image at %s is empty."
                                                               : "The server sent no Content-Length for %s: a flash "
                                                                 "needs the image's size before it starts.",
                          url);
                return UDS_EXIT_LOCAL;
        }
        img->size = (uint64_t) tg_download_size(img->download);
        return UDS_EXIT_OK;
}

static void image_close(Image *img) {
        img->fd = safe_close(img->fd);
        img->flash = NULL;
        img->download = tg_download_free(img->download);
        img->http = tg_http_free(img->http);
}

static void sha256_hex(const uint8_t h[32], char out[65]) {
        for (unsigned i = 0; i < 32; i++)
                snprintf(out + 2 * i, 3, "%02x", h[i]);
}

static void on_progress(TgFlash *f, uint64_t done, uint64_t total, const char *step, void *userdata) {
        Run *run = userdata;
        int pct = total ? (int) (done * 100 / total) : 100;

        (void) f;
        /* --p2 is a floor: the session steps just took the ECU's own P2. */
        uds_apply_p2(run->u);
        if (run->u->quiet || run->u->json)
                return;
        if (run->tty) {
                int fill = pct * BAR_WIDTH / 100;

                printf("\r%-20s [", step);
                for (int i = 0; i < BAR_WIDTH; i++)
                        putchar(i < fill ? '#' : ' ');
                printf("] %3d%% %" PRIu64 "/%" PRIu64 " bytes", pct, done, total);
                fflush(stdout);
                run->bar = true;
                run->step = step;
                return;
        }
        if (!run->step || !streq(run->step, step)) {
                printf("step %s\n", step);
                run->step = step;
        }
        if (total > 0 && pct / 10 > run->decile) {
                run->decile = pct / 10;
                printf("progress %d%% (%" PRIu64 "/%" PRIu64 " bytes)\n", run->decile * 10, done, total);
        }
        fflush(stdout);
}

static void on_finished(TgFlash *f, const TgFlashError *err, void *userdata) {
        Run *run = userdata;

        (void) f;
        run->err = *err;
        run->done = true;
}

static int exit_status(const TgFlashError *e) {
        if (e->error == 0)
                return UDS_EXIT_OK;
        if (e->diag.error != TG_DIAG_OK)
                return UDS_EXIT_TRANSPORT;
        /* neither the ECU nor the transport: the image could not be read (or downloaded) */
        if (e->step == TG_FLASH_STEP_TRANSFER_DATA && e->nrc == 0 && e->error != -EBADMSG)
                return UDS_EXIT_LOCAL;
        switch (e->error) {
        case -EREMOTEIO:
                return UDS_EXIT_REFUSED;
        case -EBADMSG:
                return UDS_EXIT_PROTOCOL;
        case -ENOMEM:
        case -EIO:
                return UDS_EXIT_LOCAL; /* -EIO without a transport result: the image read */
        default:
                return UDS_EXIT_REFUSED;
        }
}

/* Run one flash (or rollback) to its end and report it. */
static int flash_run(Uds *u, const char *command, const TgFlashPlan *plan, Image *img, bool rollback) {
        _cleanup_(tg_flash_freep) TgFlash *f = NULL;
        Run run = { .u = u, .tty = isatty(STDOUT_FILENO) == 1, .decile = -1 };
        static const TgFlashCallbacks callbacks = {
                .progress = on_progress,
                .finished = on_finished,
        };
        char hex[65] = "";
        double secs;
        int r;

        r = uds_connect(u);
        if (r != UDS_EXIT_OK)
                return r;
        run.start_usec = now_usec();
        r = rollback ? tg_flash_rollback(u->ch, u->target, plan, &callbacks, &run, &f)
                     : tg_flash_start(u->ch, u->target, plan, &callbacks, &run, &f);
        if (r < 0) {
                uds_error("Cannot start the %s: %s", command, strerror(-r));
                return r == -EINVAL ? UDS_EXIT_USAGE : UDS_EXIT_LOCAL;
        }
        if (img)
                img->flash = f;
        while (!run.done) {
                r = sd_event_run(u->event, UINT64_MAX);
                if (r < 0) {
                        uds_error("Event loop failed: %s", strerror(-r));
                        return UDS_EXIT_LOCAL;
                }
        }
        secs = (double) (now_usec() - run.start_usec) / 1e6;
        if (run.bar)
                printf("\n");
        if (img) {
                img->flash = NULL;
                sha256_hex(img->sha256, hex);
        }
        r = exit_status(&run.err);
        if (u->json) {
                printf("{\"command\":\"%s\",\"result\":\"%s\",\"target\":\"0x%04X\"", command,
                       r == UDS_EXIT_OK ? "ok" : "failed", u->target);
                if (img) {
                        printf(",\"image\":");
                        uds_json_string(stdout, img->path);
                        printf(",\"size\":%" PRIu64 ",\"sha256\":\"%s\"", img->size, hex);
                }
                if (plan->version && *plan->version) {
                        printf(",\"version\":");
                        uds_json_string(stdout, plan->version);
                }
                printf(",\"ab\":%s,\"seconds\":%.3f", plan->ab_banks ? "true" : "false", secs);
                if (r != UDS_EXIT_OK) {
                        printf(",\"step\":\"%s\",\"error\":", tg_flash_step_to_string(run.err.step));
                        uds_json_string(stdout, run.err.message);
                        if (run.err.nrc)
                                printf(",\"nrc\":%u,\"nrc_name\":\"%s\"", run.err.nrc,
                                       tg_uds_nrc_to_string(run.err.nrc));
                        if (img && img->download && tg_download_error(img->download)) {
                                printf(",\"download_error\":");
                                uds_json_string(stdout, tg_download_message(img->download));
                        }
                }
                printf(",\"exit\":%d}\n", r);
        }
        if (r != UDS_EXIT_OK) {
                uds_error("%s failed at %s", command, run.err.message);
                if (img && img->download && tg_download_error(img->download))
                        uds_error("(the download of %s: %s)", img->path, tg_download_message(img->download));
                if (run.err.step == TG_FLASH_STEP_PROGRAMMING_SESSION && !u->extended &&
                    (run.err.nrc == TG_UDS_NRC_CONDITIONS_NOT_CORRECT ||
                     run.err.nrc == TG_UDS_NRC_SUB_FUNCTION_NOT_SUPPORTED_IN_ACTIVE_SESSION))
                        uds_error("(most ECUs enter the programming session from the extended one only: "
                                  "drop --no-extended)");
                return r;
        }
        if (!u->json) {
                if (img && !rollback)
                        printf("flash: done: %s (%" PRIu64 " bytes, sha256 %s) to 0x%04X%s%s in %.1f s (%.0f KiB/s)\n",
                               img->path, img->size, hex, u->target, plan->version ? " as version " : "",
                               plan->version ? plan->version : "", secs,
                               secs > 0 ? (double) img->size / 1024.0 / secs : 0.0);
                else if (img)
                        printf("rollback: done: %s (%" PRIu64 " bytes, sha256 %s) re-flashed to 0x%04X in %.1f s\n",
                               img->path, img->size, hex, u->target, secs);
                else
                        printf("rollback: done: 0x%04X switched back to its previous bank in %.1f s\n", u->target,
                               secs);
        }
        return UDS_EXIT_OK;
}

static void plan_init(Uds *u, TgFlashPlan *plan) {
        *plan = (TgFlashPlan) {
                .version = u->version,
                .memory_address = u->memory_address,
                .key_fn = u->no_security ? NULL : tg_uds_key_demo,
                .security_level = u->security_level,
                .ab_banks = u->ab,
                .extended_session = u->extended,
                .dtc_off = u->dtc_off,
                .comm_off = u->comm_off,
                .transport_max = uds_transport_max(u),
        };
}

static int check_plan(Uds *u) {
        if ((u->dtc_off || u->comm_off) && !u->extended) {
                uds_error("--dtc-off and --comm-off need the extended session (they are sent there): "
                          "drop --no-extended.");
                return UDS_EXIT_USAGE;
        }
        if (u->target == TG_DIAG_FUNCTIONAL_ADDRESS) {
                uds_error("Flashing takes one ECU's address, not the functional one.");
                return UDS_EXIT_USAGE;
        }
        return UDS_EXIT_OK;
}

/* image_open(), and the hash --sha256= gives, if it gives one. */
static int image_open_checked(Uds *u, Image *img, const char *path) {
        char hex[65];
        int r;

        r = image_open(img, path);
        if (r != UDS_EXIT_OK || !u->have_sha256 || memcmp(img->sha256, u->sha256, sizeof img->sha256) == 0)
                return r;
        sha256_hex(img->sha256, hex);
        uds_error("The image %s has the SHA-256 %s, not the one --sha256= gives.", path, hex);
        return UDS_EXIT_USAGE;
}

/* Open what path names (a file; for flash also an http(s) URL, streamed)
 * and program it: the command's work once its arguments are checked. */
static int flash_image(Uds *u, const char *path, const char *command, bool rollback) {
        TgFlashPlan plan;
        Image img = { .fd = -EBADF };
        int r;

        plan_init(u, &plan);
        if (!rollback && is_url(path)) {
                /* The ECU checks the hash at the end of the stream, and a
                 * stream is not read twice: the hash comes from the manifest. */
                if (!u->have_sha256) {
                        uds_error("flash %s needs --sha256= (the image's SHA-256, from its manifest).", path);
                        return UDS_EXIT_USAGE;
                }
                r = image_open_url(u, &img, path);
                plan.read = tg_download_read;
                plan.read_userdata = img.download;
                plan.max_block_data = STREAM_WINDOW - CURL_MAX_WRITE_SIZE;
        } else {
                r = image_open_checked(u, &img, path);
                plan.read = image_read;
                plan.read_userdata = &img;
        }
        if (r == UDS_EXIT_OK) {
                plan.size = img.size;
                memcpy(plan.sha256, img.sha256, sizeof plan.sha256);
                r = flash_run(u, command, &plan, &img, rollback);
        }
        image_close(&img);
        return r;
}

int uds_cmd_flash(Uds *u, char **args, int n) {
        int r;

        if (n != 1) {
                uds_error(n == 0 ? "flash takes the image file or URL (flash IMAGE)."
                                 : "flash takes one image file or URL.");
                return UDS_EXIT_USAGE;
        }
        r = check_plan(u);
        if (r != UDS_EXIT_OK)
                return r;
        return flash_image(u, args[0], "flash", false);
}

int uds_cmd_rollback(Uds *u, char **args, int n) {
        TgFlashPlan plan;
        int r;

        if (u->ab ? n != 0 : n != 1) {
                uds_error(u->ab ? "rollback --ab takes no image: the ECU switches back to its previous bank."
                                : "rollback takes --ab (A/B ECU) or the previous image file (single bank).");
                return UDS_EXIT_USAGE;
        }
        r = check_plan(u);
        if (r != UDS_EXIT_OK)
                return r;
        if (!u->ab)
                return flash_image(u, args[0], "rollback", true);
        plan_init(u, &plan);
        return flash_run(u, "rollback", &plan, NULL, true);
}
