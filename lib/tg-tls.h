/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * TLS 1.3 for the car ↔ key link (docs/key-protocol.md §1), shared by
 * key-sync (server) and the key relay (client). wolfSSL underneath, on a
 * non-blocking socket the caller owns and watches with its own loop.
 *
 * A TgTlsContext holds one configuration: role, cipher suites, and either
 * certificates (CA, own certificate and key, optional CRL, a policy that
 * accepts or refuses the verified peer by its subject CN) or a pre-shared
 * key (server: a lookup from identity to key; client: identity and key).
 * Only TLS 1.3 is spoken; peer verification is always on.
 *
 * A TgTls is one connection over a connected, non-blocking stream socket.
 * Every call makes as much progress as the socket allows and returns:
 *
 *   -EAGAIN  it needs the socket: wait for tg_tls_want() (EPOLLIN and/or
 *            EPOLLOUT; the same bits as POLLIN/POLLOUT) and call again;
 *   other negative errno: the connection failed; tg_tls_error() says why
 *            in words an operator can act on ("certificate expired: CN=…",
 *            "unknown CA: CN=…", "peer not paired: CN=…", "PSK identity
 *            unknown: …", "not TLS …", "protocol version …"). A failed
 *            connection stays failed: every later call returns the same
 *            error. Main values: -EACCES the peer was refused or refused us
 *            (certificate, PSK; a policy refusal returns the policy's
 *            errno), -EPROTO not TLS / protocol error, -EBADMSG a record
 *            failed authentication, -ECONNRESET the peer went away (also a
 *            close without close_notify), others from the socket.
 *
 * Reads: read until -EAGAIN before going back to the loop. Decrypted bytes
 * can wait inside the library (tg_tls_pending()) where the socket's
 * readiness no longer shows them.
 *
 * Writes: a positive return is the number of bytes taken, which are then
 * the library's business; -EAGAIN took nothing. Encrypted bytes the socket
 * did not accept stay queued in the connection (at most about one record)
 * and tg_tls_want() includes EPOLLOUT until tg_tls_flush() (or any other
 * call) has sent them. So the caller may write whatever it likes next, but
 * must keep EPOLLOUT armed while tg_tls_want() asks for it, even when it
 * has nothing more to write itself.
 *
 * Records carry up to 16 KiB of plaintext (the TLS maximum); a large write
 * is cut into full records without an extra copy.
 *
 * Threads: a context and its connections belong to one thread at a time.
 * A thread other than the one that frees the last context must call
 * tg_tls_thread_cleanup() before it ends (wolfSSL keeps a per-thread ECC
 * cache).
 *
 * Library code: nothing here logs above debug; callers log the reason.
 */

#include <sys/epoll.h>
#include <sys/types.h>

#include "tg-macro.h"

#define TG_TLS_PSK_SIZE 32
/* A PSK identity (the key id) is 1 … 127 printable ASCII characters. */
#define TG_TLS_PSK_IDENTITY_MAX 127
/* TLS 1.3 suites in the gateway's order of preference (wolfSSL names). */
#define TG_TLS_CIPHERS "TLS13-CHACHA20-POLY1305-SHA256:TLS13-AES128-GCM-SHA256"
/* tg_tls_error() and the policy's reason fit in this, NUL included. */
#define TG_TLS_REASON_MAX 256

typedef struct TgTlsContext TgTlsContext;
typedef struct TgTls TgTls;

typedef enum TgTlsRole {
        TG_TLS_SERVER,
        TG_TLS_CLIENT,
} TgTlsRole;

/* Certificate mode (required): called from inside tg_tls_handshake() once
 * the peer's chain verified (CA, dates, CRL)
 * with its subject CN (printable ASCII, never empty). Return 0 to accept;
 * a negative errno to refuse, after writing a reason into `reason` (for
 * example "peer not paired: CN=KEY-0042"); an empty reason becomes
 * "peer refused by policy: CN=…". Refusal ends the handshake with a
 * bad_certificate alert to the peer. */
typedef int (*TgTlsPolicyFn)(const char *peer_cn, char *reason, size_t reason_size, void *userdata);

/* PSK server: the key for `identity` (printable, 1 … 127 characters).
 * Return 0 with the key written, -ENOENT if the identity is unknown (the
 * handshake fails with "PSK identity unknown: …"), another negative errno
 * on failure. */
typedef int (*TgTlsPskLookupFn)(const char *identity, uint8_t key[TG_TLS_PSK_SIZE], void *userdata);

typedef struct TgTlsConfig {
        TgTlsRole role;
        /* NULL: TG_TLS_CIPHERS. A ':'-separated list of wolfSSL TLS 1.3
         * suite names, first preferred (the server's order decides). */
        const char *ciphers;

        /* Certificate mode: all three files (PEM), plus a policy. The
         * certificate file may hold a chain, leaf first. */
        const char *ca_file;
        const char *cert_file;
        const char *key_file;
        /* Optional PEM CRL(s) of the CA: revoked peer certificates are
         * refused. A CRL past its nextUpdate makes every peer fail. */
        const char *crl_file;
        TgTlsPolicyFn policy;

        /* PSK mode (TLS 1.3 external PSK with (EC)DHE): no certificate
         * fields. Server: psk_lookup. Client: psk_identity and psk_key. */
        TgTlsPskLookupFn psk_lookup;
        const char *psk_identity;
        const uint8_t *psk_key; /* TG_TLS_PSK_SIZE bytes, copied */

        void *userdata; /* passed to policy and psk_lookup */
} TgTlsConfig;

/* On failure *ret_reason (if not NULL) names what was wrong, e.g. "cannot
 * load the private key (key_file)"; -ENOENT/-EACCES if a file cannot be
 * opened, -EINVAL for a bad configuration or a file that does not parse,
 * -EOPNOTSUPP if wolfSSL lacks a feature (PSK, CRL). */
int tg_tls_context_new(const TgTlsConfig *config, TgTlsContext **ret, const char **ret_reason);
TgTlsContext *tg_tls_context_ref(TgTlsContext *c);
TgTlsContext *tg_tls_context_unref(TgTlsContext *c);
TG_DEFINE_TRIVIAL_CLEANUP_FUNC(TgTlsContext *, tg_tls_context_unref);
#define _cleanup_tls_context_ _cleanup_(tg_tls_context_unrefp)

/* A connection over `fd` (connected, non-blocking — -EINVAL otherwise; not
 * owned: the caller closes it after tg_tls_free()). Holds a reference on
 * the context. Set TCP_NODELAY on the socket: frames are small and
 * latency-bound, records are already full-sized. */
int tg_tls_new(TgTlsContext *c, int fd, TgTls **ret);
TgTls *tg_tls_free(TgTls *t);
TG_DEFINE_TRIVIAL_CLEANUP_FUNC(TgTls *, tg_tls_free);
#define _cleanup_tls_ _cleanup_(tg_tls_freep)

/* 0 once the handshake completed and the peer was accepted. */
int tg_tls_handshake(TgTls *t);
/* > 0 bytes read, 0 when the peer closed cleanly (close_notify), -EAGAIN,
 * or an error (-ECONNRESET for a close without close_notify). */
ssize_t tg_tls_read(TgTls *t, void *buf, size_t size);
/* > 0 bytes taken, -EAGAIN (nothing taken), or an error. */
ssize_t tg_tls_write(TgTls *t, const void *buf, size_t size);
/* Send a TLS 1.3 KeyUpdate asking the peer to update its keys as well
 * (for a connection that lives long). 0 once sent or queued. */
int tg_tls_update_keys(TgTls *t);
/* Send queued encrypted bytes: 0 when none are left, -EAGAIN, or an error. */
int tg_tls_flush(TgTls *t);
/* Send close_notify (and flush): 0 when sent, -EAGAIN. Does not wait for
 * the peer's close_notify; close the socket afterwards. */
int tg_tls_shutdown(TgTls *t);

/* EPOLLIN/EPOLLOUT the connection waits for: what the last call that
 * returned -EAGAIN needs, plus EPOLLOUT while encrypted bytes are queued. */
uint32_t tg_tls_want(TgTls *t);
/* Decrypted bytes buffered inside, ready for tg_tls_read() now. */
size_t tg_tls_pending(TgTls *t);

/* Why the connection failed, or NULL if it did not. */
const char *tg_tls_error(TgTls *t);
/* After the handshake: the peer's subject CN (certificate mode) or its PSK
 * identity (PSK server); NULL for a PSK client (the key is the proof). */
const char *tg_tls_peer(TgTls *t);
bool tg_tls_is_psk(TgTls *t);
/* Negotiated suite (IANA name, "TLS_CHACHA20_POLY1305_SHA256") and
 * version ("TLSv1.3"); NULL before the handshake completed. */
const char *tg_tls_cipher(TgTls *t);
const char *tg_tls_version(TgTls *t);
/* Bytes on the socket so far (TLS records, handshake included). */
void tg_tls_wire_bytes(TgTls *t, uint64_t *ret_received, uint64_t *ret_sent);

/* PBKDF2-HMAC-SHA256(password, "tollgate-psk/<gateway_id>/<key_id>",
 * 100 000 iterations) → 32 bytes (key-protocol.md §1). -EINVAL for an empty
 * argument. Takes about 0.1 s: derive at pairing, not per connection. */
int tg_tls_psk_derive(const char *password, const char *gateway_id, const char *key_id,
                      uint8_t out[TG_TLS_PSK_SIZE]);

/* Free the calling thread's wolfSSL state (ECC cache). Call at the end of
 * every thread that ran handshakes, unless it frees the last context. */
void tg_tls_thread_cleanup(void);
