/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * libcurl's multi-socket API driven by an sd-event loop: sockets become io
 * sources, curl's timer a one-shot loop timer; no thread, no blocking call,
 * no polling. Transfers are ordinary CURL easy handles that the caller
 * configures; tg_http_start() adds one and calls `done` exactly once when it
 * ends (unless cancelled first).
 *
 * It also counts what the transfers cost on the wire: for every socket it
 * opens, the kernel's TCP_INFO gives the TCP payload bytes sent (including
 * retransmissions) and received — TLS handshakes and records included — and
 * the segment counts, to which a fixed IP+TCP header size per segment is
 * added (40 bytes IPv4 / 60 IPv6, +12 for the timestamp option).
 */

#include <curl/curl.h>
#include <systemd/sd-event.h>

#include "tg-macro.h"

typedef struct TgHttp TgHttp;

typedef void (*TgHttpDoneFn)(CURL *easy, CURLcode result, void *userdata);

int tg_http_new(sd_event *event, TgHttp **ret);
TgHttp *tg_http_free(TgHttp *h);

/* Takes no ownership of `easy`; the caller frees it after `done` or after cancel. */
int tg_http_start(TgHttp *h, CURL *easy, TgHttpDoneFn done, void *userdata);
void tg_http_cancel(TgHttp *h, CURL *easy);

CURLM *tg_http_multi(TgHttp *h);
sd_event *tg_http_event(TgHttp *h);

/* Bytes on the wire, both directions, since tg_http_new(). */
uint64_t tg_http_wire_bytes(TgHttp *h);

TG_DEFINE_TRIVIAL_CLEANUP_FUNC(TgHttp *, tg_http_free);
