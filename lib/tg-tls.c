/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/socket.h>

#include "tg-log.h"
#include "tg-tls.h"

/* After tg-macro.h: wolfSSL defines MIN/MAX only when they are not defined
 * yet. options.h before any other wolfSSL header: it carries the feature
 * set the library was built with. */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/error-ssl.h>
#include <wolfssl/openssl/evp.h>
#include <wolfssl/openssl/pem.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/pwdbased.h>
#include <wolfssl/wolfcrypt/sha256.h>

#if defined(NO_PSK) || !defined(WOLFSSL_TLS13)
#define TG_TLS_HAVE_PSK 0
#else
#define TG_TLS_HAVE_PSK 1
#endif

#define PSK_ITERATIONS 100000
#define PSK_SALT_PREFIX "tollgate-psk/"
#define PEER_MAX 128
/* Encrypted bytes the socket did not take are kept here rather than left
 * inside wolfSSL, so a write that returned a count never has to be
 * repeated. In the normal course this holds at most one record (writes
 * stop once it is not empty) or part of a handshake flight; past the limit
 * wolfSSL's own WANT_WRITE retry takes over. */
#define OUT_QUEUE_MAX ((size_t) 64 * 1024)
/* The first bytes of the peer's stream, kept to recognise (and quote)
 * something that is not TLS at all. */
#define HEAD_MAX 24

struct TgTlsContext {
        unsigned n_ref;
        TgTlsRole role;
        bool psk;
        WOLFSSL_CTX *ctx;
        TgTlsPolicyFn policy;
        TgTlsPskLookupFn psk_lookup;
        void *userdata;
        char psk_identity[TG_TLS_PSK_IDENTITY_MAX + 1];
        uint8_t psk_key[TG_TLS_PSK_SIZE];
        char first_suite[64]; /* wolfSSL name of the preferred suite */
};

struct TgTls {
        TgTlsContext *context;
        WOLFSSL *ssl;
        int fd;

        bool established;
        bool sent_close;
        bool received_close;
        int error; /* negative errno once failed, then final */
        uint32_t want;

        uint8_t *out; /* queued ciphertext: out[out_start .. out_end) */
        size_t out_start, out_end, out_allocated;

        int io_error;   /* last socket error seen by the I/O callbacks */
        bool peer_eof;  /* recv() returned 0 */
        uint8_t head[HEAD_MAX];
        size_t head_len;

        bool peer_accepted; /* policy or PSK lookup said yes */
        bool psk_offered;   /* the peer named a PSK identity */
        int refusal;        /* errno of a refusal recorded in `reason` */
        char peer[PEER_MAX + 1];
        const char *cipher, *version; /* static strings from wolfSSL */
        char reason[TG_TLS_REASON_MAX];

        uint64_t rx_bytes, tx_bytes;
};

/* ---- reasons ------------------------------------------------------------ */

static void set_reason(TgTls *t, const char *format, ...) _printf_(2, 3);
static void set_reason(TgTls *t, const char *format, ...) {
        va_list ap;

        if (t->reason[0])
                return; /* the first cause is the one that matters */
        va_start(ap, format);
        (void) vsnprintf(t->reason, sizeof t->reason, format, ap);
        va_end(ap);
}

/* Quote peer bytes for a log line: printable ASCII as is, the rest \xNN. */
static void quote_bytes(const uint8_t *p, size_t n, char *buf, size_t size) {
        size_t k = 0;

        for (size_t i = 0; i < n && k + 5 < size; i++) {
                if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\')
                        buf[k++] = (char) p[i];
                else if (p[i] == '\r' || p[i] == '\n') {
                        buf[k++] = '\\';
                        buf[k++] = p[i] == '\r' ? 'r' : 'n';
                } else
                        k += (size_t) snprintf(buf + k, size - k, "\\x%02x", p[i]);
        }
        buf[k] = '\0';
}

static bool is_printable(const char *s) {
        if (!*s)
                return false;
        for (; *s; s++)
                if ((unsigned char) *s < 0x20 || (unsigned char) *s > 0x7e)
                        return false;
        return true;
}

/* Verification failures: OpenSSL X509_V_ERR_* codes (positive) or
 * wolfSSL's own (negative), depending on the check that failed. */
static const char *verify_error_text(int err) {
        switch (err) {
        case X509_V_ERR_CERT_HAS_EXPIRED:
        case X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD:
        case ASN_AFTER_DATE_E:
                return "certificate expired";
        case X509_V_ERR_CERT_NOT_YET_VALID:
        case X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD:
        case ASN_BEFORE_DATE_E:
                return "certificate not yet valid";
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
        case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        case ASN_NO_SIGNER_E:
        case ASN_SELF_SIGNED_E:
                return "unknown CA";
        case X509_V_ERR_CERT_REVOKED:
        case CRL_CERT_REVOKED:
                return "certificate revoked";
        case CRL_MISSING:
                return "no CRL loaded for the certificate's CA";
        case CRL_CERT_DATE_ERR:
                return "CRL out of date";
        case X509_V_ERR_CERT_SIGNATURE_FAILURE:
        case ASN_SIG_CONFIRM_E:
        case ASN_SIG_OID_E:
        case ASN_SIG_HASH_E:
        case ASN_SIG_KEY_E:
                return "bad certificate signature";
        }
        if (err < 0)
                return wolfSSL_ERR_reason_error_string((unsigned long) err);
        return wolfSSL_X509_verify_cert_error_string(err);
}

typedef struct AlertInfo {
        int code;
        int error;
        const char *text;
} AlertInfo;

/* Fatal alerts the peer sends when it refuses us, in our words. */
static const AlertInfo alert_table[] = {
        { 10, EPROTO, "unexpected message" },
        { 20, EBADMSG, "bad record MAC" },
        { 40, EPROTO, "handshake failure (no common cipher, group or key)" },
        { 42, EACCES, "our certificate refused (not paired, or bad)" },
        { 43, EACCES, "our certificate is of an unsupported type" },
        { 44, EACCES, "our certificate is revoked" },
        { 45, EACCES, "our certificate expired (or is not yet valid)" },
        { 46, EACCES, "our certificate is unknown" },
        { 47, EPROTO, "illegal parameter" },
        { 48, EACCES, "unknown CA: our certificate does not chain to the peer's CA" },
        { 49, EACCES, "access denied" },
        { 50, EPROTO, "decode error" },
        { 51, EACCES, "decrypt error (wrong PSK?)" },
        { 70, EPROTO, "protocol version: TLS 1.3 required" },
        { 71, EPROTO, "insufficient security" },
        { 80, EPROTO, "internal error" },
        { 109, EPROTO, "missing extension" },
        { 115, EACCES, "PSK identity unknown" },
        { 116, EACCES, "certificate required" },
};

static int alert_reason(TgTls *t, int code) {
        for (size_t i = 0; i < ELEMENTSOF(alert_table); i++)
                if (alert_table[i].code == code) {
                        set_reason(t, "refused by peer: %s (alert %d)", alert_table[i].text, code);
                        return -alert_table[i].error;
                }
        set_reason(t, "refused by peer: alert %s (%d)", wolfSSL_alert_desc_string_long(code), code);
        return -EPROTO;
}

/* Turn a failed wolfSSL call into a negative errno and a reason. */
static int classify(TgTls *t, int err) {
        bool psk_client = t->context->psk && t->context->role == TG_TLS_CLIENT;
        bool psk_server = t->context->psk && t->context->role == TG_TLS_SERVER;
        WOLFSSL_ALERT_HISTORY h = {};

        if (t->reason[0]) /* our callbacks said why */
                return t->refusal < 0 ? t->refusal : -EPROTO;

        if (err == FATAL_ERROR && wolfSSL_get_alert_history(t->ssl, &h) == WOLFSSL_SUCCESS &&
            h.last_rx.code > 0)
                return alert_reason(t, h.last_rx.code);

        if (t->peer_eof || err == SOCKET_PEER_CLOSED_E || err == WOLFSSL_ERROR_ZERO_RETURN) {
                if (t->established)
                        set_reason(t, "peer closed the connection without close_notify");
                else if (psk_client)
                        /* A PSK server refuses a key silently (wolfSSL sends no alert). */
                        set_reason(t, "peer closed the connection during the handshake: "
                                      "PSK refused (key id unknown or wrong password?)");
                else
                        set_reason(t, "peer closed the connection during the handshake%s",
                                   t->rx_bytes == 0 ? " before sending anything" : "");
                return -ECONNRESET;
        }
        if (t->io_error < 0) {
                set_reason(t, "socket: %s", strerror(-t->io_error));
                return t->io_error;
        }

        switch (err) {
        case VERSION_ERROR:
                set_reason(t, "protocol version: the peer does not offer TLS 1.3");
                return -EPROTO;
        case MATCH_SUITE_ERROR:
        case UNSUPPORTED_SUITE:
                set_reason(t, "no cipher suite in common (offered: %s)", TG_TLS_CIPHERS);
                return -EPROTO;
        case NO_PEER_CERT:
                set_reason(t, "peer sent no certificate");
                return -EACCES;
        case BAD_BINDER:
                set_reason(t, "PSK does not match for identity \"%s\" (wrong password?)",
                           t->peer[0] ? t->peer : "?");
                return -EACCES;
        case PSK_KEY_ERROR:
                set_reason(t, "PSK refused");
                return -EACCES;
        case VERIFY_MAC_ERROR:
        case DECRYPT_ERROR:
                set_reason(t, "record authentication failed (corrupted or forged data)");
                return -EBADMSG;
        case VERIFY_CERT_ERROR:
                set_reason(t, "peer certificate refused");
                return -EACCES;
        }
        if (psk_server && !t->psk_offered) {
                /* wolfSSL falls back to certificates, which we have none of,
                 * and fails somewhere in there. */
                set_reason(t, "peer offered no PSK identity (a certificate client?)");
                return -EACCES;
        }
        set_reason(t, "%s (wolfSSL error %d)", wolfSSL_ERR_reason_error_string((unsigned long) err), err);
        return -EPROTO;
}

static int fail(TgTls *t, int r) {
        if (t->error == 0)
                t->error = r < 0 ? r : -EIO;
        t->want = 0;
        wolfSSL_ERR_clear_error();
        log_debug("TLS connection on fd %d failed: %s", t->fd, t->reason);
        return t->error;
}

/* ---- socket I/O ----------------------------------------------------------- */

/* The peer's first bytes must start a TLS record: handshake (22) from a
 * client, handshake or alert (21) from a server, major version 3. Anything
 * else is refused at once, before wolfSSL waits for a "record" whose
 * length is made of ASCII. */
static bool check_head(TgTls *t, const uint8_t *p, size_t n) {
        bool server = t->context->role == TG_TLS_SERVER;
        size_t before = t->head_len;
        char quoted[HEAD_MAX * 4 + 1];

        if (before >= 2)
                return true;
        for (size_t i = 0; i < n && t->head_len < HEAD_MAX; i++)
                t->head[t->head_len++] = p[i];
        if ((t->head[0] == 22 || (!server && t->head[0] == 21)) && (t->head_len < 2 || t->head[1] == 3))
                return true;

        /* Quote a little more of what came, without taking it. */
        if (t->head_len < HEAD_MAX) {
                ssize_t k = recv(t->fd, t->head + t->head_len, HEAD_MAX - t->head_len, MSG_PEEK | MSG_DONTWAIT);
                if (k > 0)
                        t->head_len += (size_t) k;
        }
        quote_bytes(t->head, t->head_len, quoted, sizeof quoted);
        set_reason(t, "not TLS: the peer sent \"%s\"", quoted);
        t->refusal = -EPROTO;
        return false;
}

static int io_recv(_unused_ WOLFSSL *ssl, char *buf, int size, void *userdata) {
        TgTls *t = userdata;
        ssize_t n;

        do
                n = recv(t->fd, buf, (size_t) size, 0);
        while (n < 0 && errno == EINTR);

        if (n > 0) {
                t->rx_bytes += (uint64_t) n;
                if (!check_head(t, (const uint8_t *) buf, (size_t) n))
                        return WOLFSSL_CBIO_ERR_GENERAL;
                return (int) n;
        }
        if (n == 0) {
                t->peer_eof = true;
                return WOLFSSL_CBIO_ERR_CONN_CLOSE;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
                return WOLFSSL_CBIO_ERR_WANT_READ;
        t->io_error = -errno;
        return errno == ECONNRESET ? WOLFSSL_CBIO_ERR_CONN_RST : WOLFSSL_CBIO_ERR_GENERAL;
}

/* Bytes the socket took (≥ 0), or a negative errno (-EAGAIN only if it took none). */
static ssize_t socket_send(TgTls *t, const void *buf, size_t size) {
        ssize_t n;

        do
                n = send(t->fd, buf, size, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n >= 0) {
                t->tx_bytes += (uint64_t) n;
                return n;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
                return -EAGAIN;
        t->io_error = -errno;
        return -errno;
}

/* 0 once the queue is empty, -EAGAIN, or a socket error. */
static int out_flush(TgTls *t) {
        while (t->out_start < t->out_end) {
                ssize_t n = socket_send(t, t->out + t->out_start, t->out_end - t->out_start);
                if (n < 0)
                        return (int) n;
                t->out_start += (size_t) n;
        }
        t->out_start = t->out_end = 0;
        return 0;
}

static int out_queue(TgTls *t, const void *p, size_t n) {
        if (t->out_start > 0) {
                memmove(t->out, t->out + t->out_start, t->out_end - t->out_start);
                t->out_end -= t->out_start;
                t->out_start = 0;
        }
        if (t->out_end + n > t->out_allocated) {
                size_t want = MAX(t->out_end + n, MIN(OUT_QUEUE_MAX, t->out_allocated * 2 + 4096));
                uint8_t *b = realloc(t->out, want);
                if (!b)
                        return -ENOMEM;
                t->out = b;
                t->out_allocated = want;
        }
        memcpy(t->out + t->out_end, p, n);
        t->out_end += n;
        return 0;
}

static int send_error(int r) {
        return r == -EPIPE || r == -ECONNRESET ? WOLFSSL_CBIO_ERR_CONN_CLOSE : WOLFSSL_CBIO_ERR_GENERAL;
}

/* Everything wolfSSL sends: straight to the socket while nothing is queued
 * (no copy), the rest into the queue. */
static int io_send(_unused_ WOLFSSL *ssl, char *buf, int size, void *userdata) {
        TgTls *t = userdata;
        size_t sent = 0;
        int r;

        r = out_flush(t);
        if (r < 0 && r != -EAGAIN)
                return send_error(r);
        if (r == 0) {
                ssize_t n = socket_send(t, buf, (size_t) size);
                if (n < 0 && n != -EAGAIN)
                        return send_error((int) n);
                if (n > 0)
                        sent = (size_t) n;
                if (sent == (size_t) size)
                        return size;
        }
        if (t->out_end - t->out_start + ((size_t) size - sent) > OUT_QUEUE_MAX)
                return sent > 0 ? (int) sent : WOLFSSL_CBIO_ERR_WANT_WRITE;
        if (out_queue(t, buf + sent, (size_t) size - sent) < 0) {
                t->io_error = -ENOMEM;
                return sent > 0 ? (int) sent : WOLFSSL_CBIO_ERR_GENERAL;
        }
        return size;
}

static bool out_pending(TgTls *t) {
        return t->out_end > t->out_start;
}

/* ---- verification and PSK callbacks ---------------------------------------- */

static TgTls *tls_from_ssl(WOLFSSL *ssl) {
        return ssl ? wolfSSL_GetIOReadCtx(ssl) : NULL;
}

static int cert_cn(WOLFSSL_X509 *cert, char *buf, size_t size) {
        int n;

        buf[0] = '\0';
        if (!cert)
                return -ENOENT;
        n = wolfSSL_X509_NAME_get_text_by_NID(wolfSSL_X509_get_subject_name(cert), NID_commonName, buf,
                                              (int) size);
        if (n <= 0)
                return -ENOENT;
        if ((size_t) n >= size - 1)
                return -ENAMETOOLONG;
        return 0;
}

/* The peer's leaf passed chain, date and CRL checks: now the caller's policy. */
static int accept_peer(TgTls *t, const char *cn, int cn_result) {
        TgTlsContext *c = t->context;
        char reason[TG_TLS_REASON_MAX] = "";
        int r;

        if (cn_result == -ENAMETOOLONG) {
                set_reason(t, "peer certificate CN too long");
                return t->refusal = -EACCES;
        }
        if (cn_result < 0 || !is_printable(cn)) {
                set_reason(t, "peer certificate has no printable CN");
                return t->refusal = -EACCES;
        }
        snprintf(t->peer, sizeof t->peer, "%s", cn);
        if (c->policy) {
                r = c->policy(cn, reason, sizeof reason, c->userdata);
                if (r < 0) {
                        if (reason[0])
                                set_reason(t, "%s", reason);
                        else
                                set_reason(t, "peer refused by policy: CN=%s", cn);
                        return t->refusal = r;
                }
        }
        t->peer_accepted = true;
        return 0;
}

static int verify_cb(int preverify, WOLFSSL_X509_STORE_CTX *store) {
        WOLFSSL *ssl = wolfSSL_X509_STORE_CTX_get_ex_data(store, wolfSSL_get_ex_data_X509_STORE_CTX_idx());
        TgTls *t = tls_from_ssl(ssl);
        int depth = wolfSSL_X509_STORE_CTX_get_error_depth(store);
        char cn[PEER_MAX + 1];
        int r;

        if (!t)
                return 0;
        r = cert_cn(wolfSSL_X509_STORE_CTX_get_current_cert(store), cn, sizeof cn);

        if (!preverify) {
                int err = wolfSSL_X509_STORE_CTX_get_error(store);
                char depth_note[32] = "";

                if (depth > 0)
                        snprintf(depth_note, sizeof depth_note, " (chain depth %d)", depth);
                set_reason(t, "%s: CN=%s%s", verify_error_text(err), r >= 0 && is_printable(cn) ? cn : "?",
                           depth_note);
                t->refusal = -EACCES;
                return 0;
        }
        if (depth > 0)
                return 1; /* an intermediate that verified; the leaf decides */
        return accept_peer(t, cn, r) >= 0;
}

/* TLS 1.3 suites in both spellings: wolfSSL's (lists, PSK callbacks) and
 * IANA's (what we report; key-protocol.md uses it). */
static const struct {
        const char *iana, *wolfssl;
} suite_names[] = {
        { "TLS_CHACHA20_POLY1305_SHA256", "TLS13-CHACHA20-POLY1305-SHA256" },
        { "TLS_AES_128_GCM_SHA256", "TLS13-AES128-GCM-SHA256" },
        { "TLS_AES_256_GCM_SHA384", "TLS13-AES256-GCM-SHA384" },
        { "TLS_AES_128_CCM_SHA256", "TLS13-AES128-CCM-SHA256" },
        { "TLS_AES_128_CCM_8_SHA256", "TLS13-AES128-CCM-8-SHA256" },
};

/* wolfSSL_CIPHER_get_name() gives either spelling, depending on the build. */
static const char *suite_name(const char *name, bool iana) {
        for (size_t i = 0; name && i < ELEMENTSOF(suite_names); i++)
                if (streq(name, suite_names[i].iana) || streq(name, suite_names[i].wolfssl))
                        return iana ? suite_names[i].iana : suite_names[i].wolfssl;
        return name;
}

#if TG_TLS_HAVE_PSK
/* wolfSSL wants the suite the PSK is for; it tries the suites both sides
 * share, in our order, and takes the PSK only if the names match. So name
 * the best shared one (wolfSSL has narrowed its list to those by now). */
static const char *psk_suite(TgTls *t) {
        WOLF_STACK_OF(WOLFSSL_CIPHER) *sk = wolfSSL_get_ciphers_compat(t->ssl);
        WOLFSSL_CIPHER *best = sk ? wolfSSL_sk_SSL_CIPHER_value(sk, 0) : NULL;
        const char *name = best ? suite_name(wolfSSL_CIPHER_get_name(best), false) : NULL;

        return name ? name : t->context->first_suite;
}

static unsigned psk_server_cb(WOLFSSL *ssl, const char *identity, unsigned char *key, unsigned key_max,
                              const char **ret_suite) {
        TgTls *t = tls_from_ssl(ssl);
        uint8_t k[TG_TLS_PSK_SIZE];
        int r;

        if (!t || key_max < TG_TLS_PSK_SIZE)
                return 0;
        if (!identity || strlen(identity) > TG_TLS_PSK_IDENTITY_MAX || !is_printable(identity)) {
                set_reason(t, "PSK identity unknown: not 1-%d printable characters", TG_TLS_PSK_IDENTITY_MAX);
                t->refusal = -EACCES;
                return 0;
        }
        t->psk_offered = true;
        snprintf(t->peer, sizeof t->peer, "%s", identity);
        r = t->context->psk_lookup(identity, k, t->context->userdata);
        if (r < 0) {
                if (r == -ENOENT)
                        set_reason(t, "PSK identity unknown: %s", identity);
                else
                        set_reason(t, "PSK lookup for %s failed: %s", identity, strerror(-r));
                t->refusal = r == -ENOENT ? -EACCES : r;
                return 0;
        }
        memcpy(key, k, TG_TLS_PSK_SIZE);
        explicit_bzero(k, sizeof k);
        t->peer_accepted = true;
        *ret_suite = psk_suite(t);
        return TG_TLS_PSK_SIZE;
}

static unsigned psk_client_cb(WOLFSSL *ssl, _unused_ const char *hint, char *identity, unsigned id_max, unsigned char *key,
                              unsigned key_max, const char **ret_suite) {
        TgTls *t = tls_from_ssl(ssl);
        TgTlsContext *c = t ? t->context : NULL;

        if (!c || strlen(c->psk_identity) >= id_max || key_max < TG_TLS_PSK_SIZE)
                return 0;
        strcpy(identity, c->psk_identity);
        memcpy(key, c->psk_key, TG_TLS_PSK_SIZE);
        /* Both allowed suites hash with SHA-256, so the binder made for the
         * first one also fits the one the server picks. */
        *ret_suite = c->first_suite;
        return TG_TLS_PSK_SIZE;
}
#endif

/* ---- context ------------------------------------------------------------- */

static int file_error(const char *path) {
        if (access(path, R_OK) < 0)
                return errno == ENOENT ? -ENOENT : -EACCES;
        return -EINVAL;
}

/* wolfSSL_CTX_check_private_key() cannot compare ECC keys in a build
 * without HAVE_ECC_KEY_EXPORT (Debian's 5.5.4 among them: it says yes to
 * any pair). A signature made with the key and checked with the
 * certificate's public key can. */
static bool key_matches_certificate(const char *cert_file, const char *key_file) {
        static const char msg[] = "tollgate key check";
        WOLFSSL_X509 *cert = wolfSSL_X509_load_certificate_file(cert_file, WOLFSSL_FILETYPE_PEM);
        WOLFSSL_EVP_PKEY *pub = cert ? wolfSSL_X509_get_pubkey(cert) : NULL;
        WOLFSSL_BIO *bio = wolfSSL_BIO_new_file(key_file, "r");
        WOLFSSL_EVP_PKEY *priv = bio ? wolfSSL_PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
        WOLFSSL_EVP_MD_CTX *md = wolfSSL_EVP_MD_CTX_new();
        unsigned char sig[1024];
        size_t sig_len = sizeof sig;
        bool ok = false;

        if (pub && priv && md && wolfSSL_EVP_DigestSignInit(md, NULL, wolfSSL_EVP_sha256(), NULL, priv) == 1 &&
            wolfSSL_EVP_DigestSignUpdate(md, msg, sizeof msg) == 1 &&
            wolfSSL_EVP_DigestSignFinal(md, sig, &sig_len) == 1) {
                wolfSSL_EVP_MD_CTX_free(md);
                md = wolfSSL_EVP_MD_CTX_new();
                ok = md && wolfSSL_EVP_DigestVerifyInit(md, NULL, wolfSSL_EVP_sha256(), NULL, pub) == 1 &&
                     wolfSSL_EVP_DigestVerifyUpdate(md, msg, sizeof msg) == 1 &&
                     wolfSSL_EVP_DigestVerifyFinal(md, sig, sig_len) == 1;
        }
        wolfSSL_EVP_MD_CTX_free(md);
        wolfSSL_EVP_PKEY_free(priv);
        if (bio)
                wolfSSL_BIO_free(bio);
        wolfSSL_EVP_PKEY_free(pub);
        wolfSSL_X509_free(cert);
        wolfSSL_ERR_clear_error();
        return ok;
}

static int context_setup_certs(TgTlsContext *c, const TgTlsConfig *cfg, const char **reason) {
        if (!cfg->ca_file || !cfg->cert_file || !cfg->key_file || !cfg->policy) {
                *reason = "certificate mode needs ca_file, cert_file, key_file and a policy";
                return -EINVAL;
        }
        if (wolfSSL_CTX_load_verify_locations(c->ctx, cfg->ca_file, NULL) != WOLFSSL_SUCCESS) {
                *reason = "cannot load CA certificates (ca_file)";
                return file_error(cfg->ca_file);
        }
        if (wolfSSL_CTX_use_certificate_chain_file(c->ctx, cfg->cert_file) != WOLFSSL_SUCCESS) {
                *reason = "cannot load the certificate (cert_file)";
                return file_error(cfg->cert_file);
        }
        if (wolfSSL_CTX_use_PrivateKey_file(c->ctx, cfg->key_file, WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS) {
                *reason = "cannot load the private key (key_file)";
                return file_error(cfg->key_file);
        }
        if (wolfSSL_CTX_check_private_key(c->ctx) != WOLFSSL_SUCCESS ||
            !key_matches_certificate(cfg->cert_file, cfg->key_file)) {
                *reason = "the private key does not match the certificate";
                return -EINVAL;
        }
        if (cfg->crl_file) {
#ifdef HAVE_CRL
                if (wolfSSL_CTX_EnableCRL(c->ctx, WOLFSSL_CRL_CHECK) != WOLFSSL_SUCCESS ||
                    wolfSSL_CTX_LoadCRLFile(c->ctx, cfg->crl_file, WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS) {
                        *reason = "cannot load the CRL (crl_file; signed by the CA and not expired?)";
                        return file_error(cfg->crl_file);
                }
#else
                *reason = "this wolfSSL has no CRL support";
                return -EOPNOTSUPP;
#endif
        }
        /* Always verify; a peer without a certificate is refused. */
        wolfSSL_CTX_set_verify(c->ctx, WOLFSSL_VERIFY_PEER | WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_cb);
        return 0;
}

static int context_setup_psk(TgTlsContext *c, const TgTlsConfig *cfg, const char **reason) {
#if TG_TLS_HAVE_PSK
        if (cfg->ca_file || cfg->cert_file || cfg->key_file || cfg->crl_file || cfg->policy) {
                *reason = "PSK mode takes no certificate settings";
                return -EINVAL;
        }
        if (c->role == TG_TLS_SERVER) {
                if (!cfg->psk_lookup || cfg->psk_identity || cfg->psk_key) {
                        *reason = "a PSK server needs psk_lookup (and no identity or key)";
                        return -EINVAL;
                }
                c->psk_lookup = cfg->psk_lookup;
                wolfSSL_CTX_set_psk_server_tls13_callback(c->ctx, psk_server_cb);
        } else {
                if (!cfg->psk_identity || !cfg->psk_key || cfg->psk_lookup) {
                        *reason = "a PSK client needs psk_identity and psk_key (and no psk_lookup)";
                        return -EINVAL;
                }
                if (strlen(cfg->psk_identity) > TG_TLS_PSK_IDENTITY_MAX || !is_printable(cfg->psk_identity)) {
                        *reason = "psk_identity must be 1-127 printable ASCII characters";
                        return -EINVAL;
                }
                strcpy(c->psk_identity, cfg->psk_identity);
                memcpy(c->psk_key, cfg->psk_key, TG_TLS_PSK_SIZE);
                wolfSSL_CTX_set_psk_client_tls13_callback(c->ctx, psk_client_cb);
        }
        /* No CA is loaded: should a server answer with a certificate instead
         * of taking the PSK, the client refuses it. */
        wolfSSL_CTX_set_verify(c->ctx, WOLFSSL_VERIFY_PEER, verify_cb);
        return 0;
#else
        *reason = "this wolfSSL was built without PSK support (NO_PSK)";
        return -EOPNOTSUPP;
#endif
}

int tg_tls_context_new(const TgTlsConfig *cfg, TgTlsContext **ret, const char **ret_reason) {
        TgTlsContext *c = NULL;
        const char *reason = NULL, *ciphers;
        bool psk;
        int r;

        if (!ret_reason)
                ret_reason = &reason;
        *ret_reason = NULL;
        if (!cfg || !ret || (cfg->role != TG_TLS_SERVER && cfg->role != TG_TLS_CLIENT)) {
                *ret_reason = "invalid arguments";
                return -EINVAL;
        }
        psk = cfg->psk_lookup || cfg->psk_identity || cfg->psk_key;
        ciphers = cfg->ciphers ? cfg->ciphers : TG_TLS_CIPHERS;

        if (wolfSSL_Init() != WOLFSSL_SUCCESS) {
                *ret_reason = "cannot initialise wolfSSL";
                return -EIO;
        }
        c = calloc(1, sizeof *c);
        if (!c) {
                wolfSSL_Cleanup();
                *ret_reason = "out of memory";
                return -ENOMEM;
        }
        c->n_ref = 1;
        c->role = cfg->role;
        c->psk = psk;
        c->policy = cfg->policy;
        c->userdata = cfg->userdata;
        snprintf(c->first_suite, sizeof c->first_suite, "%.*s", (int) strcspn(ciphers, ":"), ciphers);

        /* TLS 1.3 only: these methods offer and accept nothing older. */
        c->ctx = wolfSSL_CTX_new(cfg->role == TG_TLS_SERVER ? wolfTLSv1_3_server_method()
                                                           : wolfTLSv1_3_client_method());
        if (!c->ctx) {
                *ret_reason = "cannot create a TLS context";
                r = -ENOMEM;
                goto fail;
        }

        r = psk ? context_setup_psk(c, cfg, ret_reason) : context_setup_certs(c, cfg, ret_reason);
        if (r < 0)
                goto fail;

        if (wolfSSL_CTX_set_cipher_list(c->ctx, ciphers) != WOLFSSL_SUCCESS) {
                *ret_reason = "invalid cipher list";
                r = -EINVAL;
                goto fail;
        }

        /* No resumption: a resumed session carries no certificate and skips
         * the policy, so every connection proves its identity in full. */
        (void) wolfSSL_CTX_set_session_cache_mode(c->ctx, WOLFSSL_SESS_CACHE_OFF);
        (void) wolfSSL_CTX_no_ticket_TLSv13(c->ctx);
        /* One record per wolfSSL_write(): tg_tls_write() loops itself, so a
         * blocked socket never leaves a half-reported write inside wolfSSL. */
        (void) wolfSSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);

        wolfSSL_CTX_SetIORecv(c->ctx, io_recv);
        wolfSSL_CTX_SetIOSend(c->ctx, io_send);

        *ret = c;
        return 0;
fail:
        log_debug_errno(r, "TLS context: %s", *ret_reason);
        tg_tls_context_unref(c);
        return r;
}

TgTlsContext *tg_tls_context_ref(TgTlsContext *c) {
        if (c)
                c->n_ref++;
        return c;
}

TgTlsContext *tg_tls_context_unref(TgTlsContext *c) {
        if (!c || --c->n_ref > 0)
                return NULL;
        if (c->ctx)
                wolfSSL_CTX_free(c->ctx);
        explicit_bzero(c->psk_key, sizeof c->psk_key);
        free(c);
        /* Reference counted inside wolfSSL; the last one also frees this
         * thread's ECC cache. */
        wolfSSL_Cleanup();
        return NULL;
}

/* ---- connection ------------------------------------------------------------ */

int tg_tls_new(TgTlsContext *c, int fd, TgTls **ret) {
        TgTls *t;
        int flags;

        if (!c || fd < 0 || !ret)
                return -EINVAL;
        flags = fcntl(fd, F_GETFL);
        if (flags < 0)
                return -errno;
        if (!(flags & O_NONBLOCK))
                return -EINVAL; /* a blocking socket would stall the caller's loop */
        t = calloc(1, sizeof *t);
        if (!t)
                return -ENOMEM;
        t->fd = fd;
        t->ssl = wolfSSL_new(c->ctx);
        if (!t->ssl) {
                free(t);
                return -ENOMEM;
        }
        t->context = tg_tls_context_ref(c);
        wolfSSL_SetIOReadCtx(t->ssl, t);
        wolfSSL_SetIOWriteCtx(t->ssl, t);
        /* The handshake starts with the first tg_tls_handshake(). */
        *ret = t;
        return 0;
}

TgTls *tg_tls_free(TgTls *t) {
        if (!t)
                return NULL;
        wolfSSL_free(t->ssl);
        free(t->out);
        tg_tls_context_unref(t->context);
        free(t);
        return NULL;
}

/* After wolfSSL's handshake: check what the callbacks should have checked. */
static int handshake_done(TgTls *t) {
        TgTlsContext *c = t->context;

        if (!c->psk && !t->peer_accepted) {
                /* wolfSSL calls verify_cb for the verified leaf too
                 * (WOLFSSL_ALWAYS_VERIFY_CB); should a build not, ask now. */
                WOLFSSL_X509 *peer = wolfSSL_get_peer_certificate(t->ssl);
                char cn[PEER_MAX + 1];
                int r = cert_cn(peer, cn, sizeof cn);

                wolfSSL_X509_free(peer);
                if (!peer) {
                        set_reason(t, "peer sent no certificate");
                        return -EACCES;
                }
                r = accept_peer(t, cn, r);
                if (r < 0)
                        return r;
        }
        if (c->psk && c->role == TG_TLS_SERVER && !t->peer_accepted) {
                set_reason(t, "handshake completed without a known PSK");
                return -EACCES;
        }
        if (c->psk && c->role == TG_TLS_CLIENT)
                t->peer[0] = '\0';
        t->version = wolfSSL_get_version(t->ssl);
        t->cipher = suite_name(wolfSSL_CIPHER_get_name(wolfSSL_get_current_cipher(t->ssl)), true);
        if (!t->version || !streq(t->version, "TLSv1.3")) {
                set_reason(t, "protocol version: %s negotiated, TLS 1.3 required", t->version ? t->version : "?");
                return -EPROTO;
        }
        t->established = true;
        return 0;
}

/* A wolfSSL call returned `ret` <= 0: -EAGAIN with t->want set, or failure. */
static int again_or_fail(TgTls *t, int ret) {
        int err = wolfSSL_get_error(t->ssl, ret);

        if (err == WOLFSSL_ERROR_WANT_READ) {
                t->want = EPOLLIN;
                return -EAGAIN;
        }
        if (err == WOLFSSL_ERROR_WANT_WRITE) {
                t->want = EPOLLOUT;
                return -EAGAIN;
        }
        return fail(t, classify(t, err));
}

int tg_tls_handshake(TgTls *t) {
        int r;

        if (t->error < 0)
                return t->error;
        if (t->established)
                return 0;

        r = out_flush(t);
        if (r < 0 && r != -EAGAIN)
                return fail(t, classify(t, SOCKET_ERROR_E));

        r = t->context->role == TG_TLS_SERVER ? wolfSSL_accept(t->ssl) : wolfSSL_connect(t->ssl);
        if (r != WOLFSSL_SUCCESS) {
                r = again_or_fail(t, r);
                if (r != -EAGAIN) {
                        /* Let the alert that says why reach the peer, if the
                         * socket takes it now. */
                        (void) out_flush(t);
                }
                return r;
        }
        r = handshake_done(t);
        if (r < 0)
                return fail(t, r);
        t->want = 0;
        (void) out_flush(t); /* what is left shows in tg_tls_want() */
        return 0;
}

ssize_t tg_tls_read(TgTls *t, void *buf, size_t size) {
        int n, r;

        if (t->error < 0)
                return t->error;
        if (!t->established)
                return -ENOTCONN;
        if (t->received_close)
                return 0;
        if (size == 0)
                return -EINVAL;

        /* Queued output goes first where it can; a broken socket shows up
         * in the read below as well. */
        (void) out_flush(t);

        n = wolfSSL_read(t->ssl, buf, (int) MIN(size, (size_t) INT_MAX));
        if (n > 0) {
                t->want = 0;
                return n;
        }
        if (wolfSSL_get_error(t->ssl, n) == WOLFSSL_ERROR_ZERO_RETURN) {
                t->received_close = true;
                t->want = 0;
                return 0;
        }
        r = again_or_fail(t, n);
        return r;
}

ssize_t tg_tls_write(TgTls *t, const void *buf, size_t size) {
        const uint8_t *p = buf;
        size_t done = 0;
        int r;

        if (t->error < 0)
                return t->error;
        if (!t->established)
                return -ENOTCONN;
        if (t->sent_close)
                return -EPIPE;
        if (size == 0)
                return 0;

        r = out_flush(t);
        if (r == -EAGAIN) {
                t->want = EPOLLOUT;
                return -EAGAIN;
        }
        if (r < 0)
                return fail(t, classify(t, SOCKET_ERROR_E));

        /* One record per wolfSSL_write() (partial-write mode), each straight
         * from the caller's buffer into wolfSSL's output buffer and
         * encrypted there. Stop when the socket is full: the record that
         * did not fit is queued and counts as written. */
        while (done < size) {
                int n = wolfSSL_write(t->ssl, p + done, (int) MIN(size - done, (size_t) INT_MAX));
                if (n <= 0) {
                        if (done > 0) {
                                wolfSSL_ERR_clear_error();
                                break;
                        }
                        return again_or_fail(t, n);
                }
                done += (size_t) n;
                if (out_pending(t))
                        break;
        }
        t->want = 0;
        return (ssize_t) done;
}

int tg_tls_update_keys(TgTls *t) {
        int r;

        if (t->error < 0)
                return t->error;
        if (!t->established)
                return -ENOTCONN;
        if (t->sent_close)
                return -EPIPE;
        r = wolfSSL_update_keys(t->ssl);
        if (r == WOLFSSL_SUCCESS)
                return 0;
        if (r == WOLFSSL_ERROR_WANT_WRITE) {
                /* Only if the queue is full: wolfSSL holds the message and
                 * sends it before its next record. */
                t->want = EPOLLOUT;
                return 0;
        }
        return fail(t, classify(t, r));
}

int tg_tls_flush(TgTls *t) {
        int r;

        if (t->error < 0)
                return t->error;
        r = out_flush(t);
        if (r == -EAGAIN) {
                t->want = EPOLLOUT;
                return -EAGAIN;
        }
        if (r < 0)
                return fail(t, classify(t, SOCKET_ERROR_E));
        t->want = 0;
        return 0;
}

int tg_tls_shutdown(TgTls *t) {
        if (t->error < 0)
                return t->error;
        if (!t->established)
                return -ENOTCONN;
        if (!t->sent_close) {
                int r = wolfSSL_shutdown(t->ssl);

                /* Sent (queued at worst): WOLFSSL_SHUTDOWN_NOT_DONE until the
                 * peer's close_notify, which we do not wait for. */
                if (r != WOLFSSL_SUCCESS && r != WOLFSSL_SHUTDOWN_NOT_DONE)
                        return again_or_fail(t, r);
                t->sent_close = true;
        }
        return tg_tls_flush(t);
}

uint32_t tg_tls_want(TgTls *t) {
        if (t->error < 0)
                return 0;
        return t->want | (out_pending(t) ? EPOLLOUT : 0);
}

size_t tg_tls_pending(TgTls *t) {
        int n;

        if (!t->established || t->error < 0)
                return 0;
        n = wolfSSL_pending(t->ssl);
        return n > 0 ? (size_t) n : 0;
}

const char *tg_tls_error(TgTls *t) {
        if (t->error == 0)
                return NULL;
        return t->reason[0] ? t->reason : "TLS failure";
}

const char *tg_tls_peer(TgTls *t) {
        return t->established && t->peer[0] ? t->peer : NULL;
}

bool tg_tls_is_psk(TgTls *t) {
        return t->context->psk;
}

const char *tg_tls_cipher(TgTls *t) {
        return t->established ? t->cipher : NULL;
}

const char *tg_tls_version(TgTls *t) {
        return t->established ? t->version : NULL;
}

void tg_tls_wire_bytes(TgTls *t, uint64_t *ret_received, uint64_t *ret_sent) {
        if (ret_received)
                *ret_received = t->rx_bytes;
        if (ret_sent)
                *ret_sent = t->tx_bytes;
}

/* ---- PSK derivation and thread state ------------------------------------------ */

int tg_tls_psk_derive(const char *password, const char *gateway_id, const char *key_id,
                      uint8_t out[TG_TLS_PSK_SIZE]) {
        _cleanup_free_ char *salt = NULL;
        int n, r;

        if (!password || !*password || !gateway_id || !*gateway_id || !key_id || !*key_id || !out)
                return -EINVAL;
        n = asprintf(&salt, PSK_SALT_PREFIX "%s/%s", gateway_id, key_id);
        if (n < 0)
                return -ENOMEM;
        if (strlen(password) > INT_MAX)
                return -EINVAL;
        r = wc_PBKDF2(out, (const byte *) password, (int) strlen(password), (const byte *) salt, n, PSK_ITERATIONS,
                      TG_TLS_PSK_SIZE, WC_SHA256);
        if (r != 0) {
                log_debug("wc_PBKDF2 failed: %d", r);
                return -EIO;
        }
        return 0;
}

void tg_tls_thread_cleanup(void) {
#if defined(HAVE_ECC) && defined(FP_ECC)
        wc_ecc_fp_free();
#endif
        wolfSSL_ERR_clear_error();
}
