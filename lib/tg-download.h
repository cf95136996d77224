/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * An HTTP(S) download as the image source of a flash (lib/tg-flash.h), in
 * bounded memory: the body goes into a window of a fixed size and is read
 * once, in order, by tg_download_read() (a TgFlashReadFn). When the window
 * is full the transfer pauses (CURL_WRITEFUNC_PAUSE; TCP's flow control
 * then holds the sender) until the reader has taken enough. Nothing is
 * written to disk and the image is never held whole.
 *
 * The transfer runs on a TgHttp (lib/tg-http.h), so on its sd-event loop.
 * `wake` runs from that loop, never from within a call of this API,
 * whenever bytes have come or the transfer has ended: the place to call
 * tg_flash_resume().
 *
 * Streaming is for images whose SHA-256 is known beforehand (a signed
 * manifest): the ECU checks it at the end (0xFF01) and an A/B ECU keeps
 * running its old image until then. A download that breaks ends the flash
 * with a named error at transfer-data; a retry starts a new download.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tg-http.h"
#include "tg-macro.h"

typedef struct TgDownload TgDownload;

typedef void (*TgDownloadWakeFn)(TgDownload *d, void *userdata);

/* The smallest window. libcurl hands over up to CURL_MAX_WRITE_SIZE (16 KiB)
 * at once, so a read of len bytes needs a window of len + 16 KiB: size it
 * for the largest TransferData block, or cap the blocks (TgFlashPlan's
 * max_block_data). */
#define TG_DOWNLOAD_WINDOW_MIN (64u * 1024u)

/* Start downloading with `easy`, which the caller has configured (URL, TLS,
 * CURLOPT_LOW_SPEED_LIMIT/TIME, …) and which the download owns from now on
 * (also on failure). It sets the write callback and CURLOPT_FAILONERROR. */
int tg_download_start(TgHttp *http, CURL *easy, size_t window, TgDownloadWakeFn wake, void *userdata,
                      TgDownload **ret);

/* TgFlashReadFn (userdata = the TgDownload): len bytes at offset. Offsets
 * only grow (the same one may be read again); bytes before the offset are
 * released. Returns len; -EAGAIN if they have not come yet; -ESPIPE for an
 * offset before the last one or beyond what came; -ENODATA if the body ended
 * before offset + len; -EMSGSIZE if len could never fit in the window
 * beside a chunk of libcurl's; the download's error if it failed (-EIO, -ETIMEDOUT,
 * -EPROTO for an HTTP error status, -E2BIG for a body longer than its
 * Content-Length…; tg_download_message() says more). */
ssize_t tg_download_read(void *userdata, uint64_t offset, uint8_t *buf, size_t len);

/* Content-Length once the headers came; -1 before, or if the server sent none. */
int64_t tg_download_size(const TgDownload *d);
/* Body bytes received so far. */
uint64_t tg_download_received(const TgDownload *d);
/* The most bytes the window ever held (≤ the window). */
size_t tg_download_peak(const TgDownload *d);
/* The transfer has ended (well or not). */
bool tg_download_finished(const TgDownload *d);
/* 0, or the negative errno the download failed with. */
int tg_download_error(const TgDownload *d);
/* "HTTP 404", "Timeout was reached", "body ended at 1048576 of 2097152 bytes", "" */
const char *tg_download_message(const TgDownload *d);

/* Cancels a transfer still running. */
TgDownload *tg_download_free(TgDownload *d);
TG_DEFINE_TRIVIAL_CLEANUP_FUNC(TgDownload *, tg_download_free);
