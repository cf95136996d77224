/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A TKP1 session (tg-keyproto) over a TLS connection (tg-tls): moves bytes
 * both ways until the socket says wait. Shared by key-sync and the key relay
 * so both ends drive the protocol the same way.
 */

#include "tg-keyproto.h"
#include "tg-tls.h"

typedef enum TgKpLinkState {
        TG_KP_LINK_AGAIN,    /* wait for tg_tls_want() | EPOLLIN, and the session's next tick */
        TG_KP_LINK_CLOSED,   /* the peer closed the connection */
        TG_KP_LINK_FAILED,   /* TLS or socket failure: tg_tls_error() */
        TG_KP_LINK_FINISHED, /* the session ended (its error says why) and its last bytes are out */
} TgKpLinkState;

/* buf is scratch space for reads. *ret_sent counts the bytes handed to TLS. */
TgKpLinkState tg_kp_link_pump(TgTls *tls, TgKpSession *s, uint8_t *buf, size_t size, uint64_t *ret_sent);

/* SHA-256 of a whole file (a sink checking an item it resumed). */
int tg_kp_sha256_fd(int fd, uint8_t ret[TG_KP_SHA256_SIZE]);

/* A sentence about why a finished session ended, for the journal. */
const char *tg_kp_link_reason(TgKpSession *s, char *buf, size_t size);
