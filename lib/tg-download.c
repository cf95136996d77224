/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg-download.h"

struct TgDownload {
        TgHttp *http;
        CURL *easy;
        bool running;           /* handed to the TgHttp, not ended yet */
        TgDownloadWakeFn wake;
        void *userdata;

        /* the window: body bytes [base, base + fill) at buf[start…] */
        uint8_t *buf;
        size_t window;
        size_t start;
        size_t fill;
        uint64_t base;
        uint64_t received;
        size_t peak;
        int64_t size;

        bool paused;
        size_t paused_need;     /* the chunk libcurl will hand over again */
        bool finished;
        int error;
        char message[160];

        sd_event_source *wake_defer;
        sd_event_source *unpause_defer;
};

static int on_wake(sd_event_source *s, void *userdata) {
        TgDownload *d = userdata;

        (void) s;
        if (d->wake)
                d->wake(d, d->userdata);
        return 0;
}

static void schedule_wake(TgDownload *d) {
        /* Without a source the reader's stall timer ends the flash at worst. */
        (void) sd_event_source_set_enabled(d->wake_defer, SD_EVENT_ONESHOT);
}

static void fail(TgDownload *d, int error, const char *message) {
        if (d->error)
                return;
        d->error = error;
        snprintf(d->message, sizeof d->message, "%s", message);
}

static void update_size(TgDownload *d) {
        curl_off_t cl = -1;

        if (d->size < 0 && curl_easy_getinfo(d->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK && cl >= 0)
                d->size = (int64_t) cl;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata) {
        TgDownload *d = userdata;
        size_t n = size * nmemb;

        update_size(d);
        if (n > d->window) { /* libcurl's chunks are 16 KiB at most; the window is larger */
                fail(d, -E2BIG, "a chunk larger than the window");
                return 0; /* CURLE_WRITE_ERROR */
        }
        if (d->size >= 0 && d->received + n > (uint64_t) d->size) {
                fail(d, -E2BIG, "the body is longer than its Content-Length");
                return 0;
        }
        if (n > d->window - d->fill) {
                d->paused = true;
                d->paused_need = n;
                return CURL_WRITEFUNC_PAUSE;
        }
        if (n > d->window - d->start - d->fill) {
                memmove(d->buf, d->buf + d->start, d->fill);
                d->start = 0;
        }
        memcpy(d->buf + d->start + d->fill, ptr, n);
        d->fill += n;
        d->received += n;
        if (d->fill > d->peak)
                d->peak = d->fill;
        schedule_wake(d);
        return n;
}

static void on_done(CURL *easy, CURLcode result, void *userdata) {
        TgDownload *d = userdata;
        long status = 0;
        char what[96];

        d->running = false;
        d->finished = true;
        update_size(d);
        if (result == CURLE_HTTP_RETURNED_ERROR) {
                (void) curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
                snprintf(what, sizeof what, "HTTP %ld", status);
                fail(d, -EPROTO, what);
        } else if (result == CURLE_OPERATION_TIMEDOUT)
                fail(d, -ETIMEDOUT, curl_easy_strerror(result));
        else if (result != CURLE_OK && !d->error)
                fail(d, -EIO, curl_easy_strerror(result));
        else if (result == CURLE_OK && d->size >= 0 && d->received != (uint64_t) d->size) {
                snprintf(what, sizeof what, "body ended at %llu of %lld bytes", (unsigned long long) d->received,
                         (long long) d->size);
                fail(d, -ENODATA, what);
        }
        schedule_wake(d);
}

static int on_unpause(sd_event_source *s, void *userdata) {
        TgDownload *d = userdata;

        (void) s;
        if (!d->paused || !d->running)
                return 0;
        d->paused = false;
        /* libcurl hands the held chunk over again (maybe from within this
         * call) and re-arms its timer, which drives the transfer on. */
        (void) curl_easy_pause(d->easy, CURLPAUSE_CONT);
        return 0;
}

int tg_download_start(TgHttp *http, CURL *easy, size_t window, TgDownloadWakeFn wake, void *userdata,
                      TgDownload **ret) {
        TgDownload *d;
        int r;

        if (!http || !easy || !ret || window < TG_DOWNLOAD_WINDOW_MIN) {
                if (easy)
                        curl_easy_cleanup(easy);
                return -EINVAL;
        }
        d = calloc(1, sizeof *d);
        if (!d) {
                curl_easy_cleanup(easy);
                return -ENOMEM;
        }
        *d = (TgDownload) { .http = http, .easy = easy, .wake = wake, .userdata = userdata, .window = window,
                            .size = -1 };
        d->buf = malloc(window);
        if (!d->buf) {
                tg_download_free(d);
                return -ENOMEM;
        }
        r = sd_event_add_defer(tg_http_event(http), &d->wake_defer, on_wake, d);
        if (r >= 0)
                r = sd_event_source_set_enabled(d->wake_defer, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_add_defer(tg_http_event(http), &d->unpause_defer, on_unpause, d);
        if (r >= 0)
                r = sd_event_source_set_enabled(d->unpause_defer, SD_EVENT_OFF);
        if (r < 0) {
                tg_download_free(d);
                return r;
        }
        (void) sd_event_source_set_description(d->wake_defer, "download-wake");
        (void) sd_event_source_set_description(d->unpause_defer, "download-unpause");
        curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(easy, CURLOPT_WRITEDATA, d);
        curl_easy_setopt(easy, CURLOPT_FAILONERROR, 1L);
        r = tg_http_start(http, easy, on_done, d);
        if (r < 0) {
                tg_download_free(d);
                return r;
        }
        d->running = true;
        *ret = d;
        return 0;
}

ssize_t tg_download_read(void *userdata, uint64_t offset, uint8_t *buf, size_t len) {
        TgDownload *d = userdata;
        uint64_t drop;

        if (!d || (!buf && len > 0))
                return -EINVAL;
        if (offset < d->base || offset > d->base + d->fill)
                return -ESPIPE;
        /* what lies before offset has been read for good */
        drop = offset - d->base;
        d->start += (size_t) drop;
        d->fill -= (size_t) drop;
        d->base = offset;
        if (d->fill == 0)
                d->start = 0;
        if (d->paused && d->window - d->fill >= d->paused_need)
                (void) sd_event_source_set_enabled(d->unpause_defer, SD_EVENT_ONESHOT);

        if (d->fill >= len) {
                memcpy(buf, d->buf + d->start, len);
                return (ssize_t) len;
        }
        if (d->error)
                return d->error;
        if (d->finished)
                return -ENODATA;
        if (len > d->window - CURL_MAX_WRITE_SIZE)
                return -EMSGSIZE; /* would never fit beside a chunk of libcurl's */
        return -EAGAIN;
}

int64_t tg_download_size(const TgDownload *d) {
        return d->size;
}

uint64_t tg_download_received(const TgDownload *d) {
        return d->received;
}

size_t tg_download_peak(const TgDownload *d) {
        return d->peak;
}

bool tg_download_finished(const TgDownload *d) {
        return d->finished;
}

int tg_download_error(const TgDownload *d) {
        return d->error;
}

const char *tg_download_message(const TgDownload *d) {
        return d->message;
}

TgDownload *tg_download_free(TgDownload *d) {
        if (!d)
                return NULL;
        if (d->running)
                tg_http_cancel(d->http, d->easy);
        if (d->easy)
                curl_easy_cleanup(d->easy);
        sd_event_source_disable_unref(d->wake_defer);
        sd_event_source_disable_unref(d->unpause_defer);
        free(d->buf);
        free(d);
        return NULL;
}
