/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include "sim-httpd.h"
#include "tg-log.h"
#include "tg-parse.h"
#include "tg-time.h"

/* After tg-macro.h: wolfSSL defines MIN/MAX only when they are not defined
 * yet, tg-macro.h unconditionally. options.h before any other wolfSSL
 * header: it carries the feature set the library was built with. */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/ecc.h>

#define DEFAULT_MAX_CONNECTIONS 128U
#define DEFAULT_MAX_HEADER_SIZE ((size_t) 16 * 1024)
#define DEFAULT_MAX_BODY_SIZE ((size_t) 8 * 1024 * 1024)
#define DEFAULT_IDLE_TIMEOUT_USEC (30 * USEC_PER_SEC)
#define DEFAULT_REQUEST_TIMEOUT_USEC (60 * USEC_PER_SEC)
#define DEFAULT_HANDSHAKE_TIMEOUT_USEC (10 * USEC_PER_SEC)
#define WRITE_TIMEOUT_USEC (30 * USEC_PER_SEC)
/* After refusing a request whose body we did not read, keep reading (and
 * dropping) for a moment so the client sees our answer instead of a reset. */
#define LINGER_USEC (2 * USEC_PER_SEC)
#define MAX_HEADERS 100
#define ADDRESS_MAX (INET6_ADDRSTRLEN + 8)

struct SimHttpd {
        SimHttpdConfig config; /* its strings are not used after sim_httpd_new() */
        char *name;
        char *server_header;
        bool verify_peer;
        char address[ADDRESS_MAX];
        int listen_fd;
        /* Written once when the server stops and never read: every poll()
         * of every connection watches it, so one write wakes them all. */
        int stop_fd;
        WOLFSSL_CTX *tls;

        pthread_t accept_thread;
        bool accept_running;

        pthread_mutex_t lock;
        pthread_cond_t conn_gone;
        unsigned n_conns;

        TgRateLimit log_limit; /* under lock */

        /* Updated with __atomic builtins from every connection thread. */
        SimHttpdStats stats;
};

typedef struct SimConn {
        SimHttpd *httpd;
        int fd;
        WOLFSSL *ssl;
        char peer[ADDRESS_MAX];
        char peer_cn[65];
        bool have_cn;
        char tls_reason[256]; /* why verification failed, from the verify callback */

        uint64_t deadline; /* CLOCK_MONOTONIC µs for the current read or write */
        int io_error;      /* set by the wolfSSL I/O callbacks: -ETIMEDOUT, -ECANCELED, ... */
        bool peer_closed;

        SimHeader headers[MAX_HEADERS];

        /* Header block of the current request, then whatever followed it;
         * max_header_size bytes. */
        size_t in_len;
        char in[];
} SimConn;

typedef struct ParsedRequest {
        SimRequest req;
        char *path; /* owned copy of the target up to '?' */
        size_t header_len; /* bytes of in[] taken by the header block */
        uint64_t content_length;
        bool keep_alive;
        bool expect_continue;
} ParsedRequest;

/* An error the server answers itself, before the handler. */
typedef struct RequestError {
        int status;
        const char *reason;
} RequestError;

static void stat_add(uint64_t *counter, uint64_t n) {
        __atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

static void stat_sub(uint64_t *counter, uint64_t n) {
        __atomic_fetch_sub(counter, n, __ATOMIC_RELAXED);
}

const char *sim_status_reason(int status) {
        switch (status) {
        case 100: return "Continue";
        case 200: return "OK";
        case 204: return "No Content";
        case 400: return "Bad Request";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 408: return "Request Timeout";
        case 411: return "Length Required";
        case 413: return "Content Too Large";
        case 415: return "Unsupported Media Type";
        case 417: return "Expectation Failed";
        case 431: return "Request Header Fields Too Large";
        case 500: return "Internal Server Error";
        case 501: return "Not Implemented";
        case 503: return "Service Unavailable";
        case 505: return "HTTP Version Not Supported";
        default: return "Unknown";
        }
}

/* ---- waiting and raw socket I/O ---------------------------------------- */

/* Wait for `events` on the connection until its deadline; -ETIMEDOUT when
 * it passes, -ECANCELED when the server stops. */
static int conn_wait(SimConn *c, short events) {
        for (;;) {
                struct pollfd p[2] = {
                        { .fd = c->fd, .events = events },
                        { .fd = c->httpd->stop_fd, .events = POLLIN },
                };
                uint64_t now = tg_now(CLOCK_MONOTONIC);
                int timeout = -1, r;

                if (c->deadline != USEC_INFINITY) {
                        if (now >= c->deadline)
                                return -ETIMEDOUT;
                        /* Round up so we never spin on a sub-millisecond rest. */
                        timeout = (int) MIN((c->deadline - now + 999) / 1000, (uint64_t) INT32_MAX);
                }
                r = poll(p, 2, timeout);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (p[1].revents)
                        return -ECANCELED;
                if (p[0].revents)
                        return 0;
        }
}

/* Sleep that the server's stop cuts short (-ECANCELED). */
static int httpd_sleep(SimHttpd *h, uint64_t usec) {
        uint64_t end = tg_now(CLOCK_MONOTONIC) + usec;

        for (;;) {
                struct pollfd p = { .fd = h->stop_fd, .events = POLLIN };
                uint64_t now = tg_now(CLOCK_MONOTONIC);
                int r;

                if (now >= end)
                        return 0;
                r = poll(&p, 1, (int) MIN((end - now + 999) / 1000, (uint64_t) INT32_MAX));
                if (r < 0 && errno != EINTR)
                        return -errno;
                if (r > 0)
                        return -ECANCELED;
        }
}

static ssize_t raw_recv(SimConn *c, void *buf, size_t size) {
        for (;;) {
                ssize_t n = recv(c->fd, buf, size, MSG_DONTWAIT);
                int r;

                if (n >= 0) {
                        stat_add(&c->httpd->stats.wire_bytes_in, (uint64_t) n);
                        return n;
                }
                if (errno == EINTR)
                        continue;
                if (errno != EAGAIN)
                        return -errno;
                r = conn_wait(c, POLLIN);
                if (r < 0)
                        return r;
        }
}

static ssize_t raw_send(SimConn *c, const void *buf, size_t size) {
        for (;;) {
                ssize_t n = send(c->fd, buf, size, MSG_DONTWAIT | MSG_NOSIGNAL);
                int r;

                if (n >= 0) {
                        stat_add(&c->httpd->stats.wire_bytes_out, (uint64_t) n);
                        return n;
                }
                if (errno == EINTR)
                        continue;
                if (errno != EAGAIN)
                        return -errno;
                r = conn_wait(c, POLLOUT);
                if (r < 0)
                        return r;
        }
}

/* wolfSSL I/O callbacks: the same socket calls, so TLS traffic is counted
 * byte for byte and honours the connection's deadline and the server stop.
 * wolfSSL only sees generic failures; the precise cause stays in io_error. */
static int tls_io_recv(WOLFSSL *ssl, char *buf, int size, void *userdata) {
        SimConn *c = userdata;
        ssize_t n;

        n = raw_recv(c, buf, (size_t) size);
        if (n > 0)
                return (int) n;
        if (n == 0) {
                c->peer_closed = true;
                return WOLFSSL_CBIO_ERR_CONN_CLOSE;
        }
        c->io_error = (int) n;
        if (n == -ECONNRESET) {
                c->peer_closed = true;
                return WOLFSSL_CBIO_ERR_CONN_RST;
        }
        return WOLFSSL_CBIO_ERR_GENERAL;
}

static int tls_io_send(WOLFSSL *ssl, char *buf, int size, void *userdata) {
        SimConn *c = userdata;
        ssize_t n;

        n = raw_send(c, buf, (size_t) size);
        if (n >= 0)
                return (int) n;
        c->io_error = (int) n;
        if (n == -EPIPE || n == -ECONNRESET) {
                c->peer_closed = true;
                return WOLFSSL_CBIO_ERR_CONN_CLOSE;
        }
        return WOLFSSL_CBIO_ERR_GENERAL;
}

/* ---- connection I/O (TLS or plain) --------------------------------------- */

/* > 0 bytes read, 0 at end of stream, negative errno otherwise. */
static ssize_t conn_read(SimConn *c, void *buf, size_t size) {
        int n, err;

        if (!c->ssl)
                return raw_recv(c, buf, size);

        c->io_error = 0;
        n = wolfSSL_read(c->ssl, buf, (int) MIN(size, (size_t) INT32_MAX));
        if (n > 0)
                return n;
        err = wolfSSL_get_error(c->ssl, n);
        if (err == WOLFSSL_ERROR_ZERO_RETURN || c->peer_closed)
                return 0;
        if (c->io_error < 0)
                return c->io_error;
        log_debug("%s: TLS read from %s failed: %s", c->httpd->name, c->peer,
                  wolfSSL_ERR_reason_error_string((unsigned long) err));
        return -EPROTO;
}

static int conn_write_all(SimConn *c, const void *buf, size_t size) {
        const uint8_t *p = buf;

        c->deadline = tg_now(CLOCK_MONOTONIC) + WRITE_TIMEOUT_USEC;
        while (size > 0) {
                size_t chunk = MIN(size, (size_t) INT32_MAX);
                ssize_t n;

                if (c->ssl) {
                        c->io_error = 0;
                        n = wolfSSL_write(c->ssl, p, (int) chunk);
                        if (n <= 0)
                                return c->io_error < 0 ? c->io_error : -EPROTO;
                } else {
                        n = raw_send(c, p, chunk);
                        if (n < 0)
                                return (int) n;
                }
                p += n;
                size -= (size_t) n;
        }
        return 0;
}

/* End the connection politely: close_notify for TLS, then FIN. With
 * `linger`, read and drop what the client still sends for a moment, so a
 * refusal sent before its body was read reaches it instead of a reset. */
static void conn_shutdown(SimConn *c, bool linger) {
        if (c->ssl && !c->peer_closed) {
                c->deadline = tg_now(CLOCK_MONOTONIC) + USEC_PER_SEC;
                (void) wolfSSL_shutdown(c->ssl);
        }
        if (!linger || c->peer_closed)
                return;

        (void) shutdown(c->fd, SHUT_WR);
        c->deadline = tg_now(CLOCK_MONOTONIC) + LINGER_USEC;
        for (;;) {
                char sink[4096];

                if (raw_recv(c, sink, sizeof sink) <= 0)
                        break;
        }
}

/* ---- TLS ---------------------------------------------------------------- */

static const char *verify_error_string(int err) {
        /* wolfSSL 5.5 reports date failures as "error in the notBefore /
         * notAfter field" (13, 14), for which it has no text. */
        switch (err) {
        case X509_V_ERR_CERT_NOT_YET_VALID:
        case X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD:
                return "certificate not yet valid";
        case X509_V_ERR_CERT_HAS_EXPIRED:
        case X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD:
                return "certificate expired";
        }
        /* Some failures come as OpenSSL X509_V_ERR_* codes (positive), others
         * as wolfSSL's own (negative). */
        if (err < 0)
                return wolfSSL_ERR_reason_error_string((unsigned long) err);
        return wolfSSL_X509_verify_cert_error_string(err);
}

static int tls_verify_cb(int preverify, WOLFSSL_X509_STORE_CTX *store) {
        WOLFSSL *ssl;
        WOLFSSL_X509 *cert;
        SimConn *c;
        char cn[128] = "?";
        int err;

        if (preverify)
                return 1;

        ssl = wolfSSL_X509_STORE_CTX_get_ex_data(store, wolfSSL_get_ex_data_X509_STORE_CTX_idx());
        c = ssl ? wolfSSL_GetIOReadCtx(ssl) : NULL;
        if (!c)
                return 0;

        err = wolfSSL_X509_STORE_CTX_get_error(store);
        cert = wolfSSL_X509_STORE_CTX_get_current_cert(store);
        if (cert)
                (void) wolfSSL_X509_NAME_get_text_by_NID(wolfSSL_X509_get_subject_name(cert), NID_commonName,
                                                         cn, sizeof cn);
        snprintf(c->tls_reason, sizeof c->tls_reason, "certificate CN=%s (depth %d) refused: %s (%d)", cn,
                 wolfSSL_X509_STORE_CTX_get_error_depth(store), verify_error_string(err), err);
        return 0;
}

static int tls_context_new(const SimHttpdConfig *cfg, WOLFSSL_CTX **ret) {
        WOLFSSL_CTX *ctx;
        int r = -EINVAL;

        ctx = wolfSSL_CTX_new(wolfSSLv23_server_method());
        if (!ctx)
                return log_error_errno(-ENOMEM, "%s: cannot create a TLS context", cfg->name);

        if (wolfSSL_CTX_SetMinVersion(ctx, WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS) {
                log_error("%s: cannot restrict TLS to version 1.2 and later", cfg->name);
                goto fail;
        }
        if (wolfSSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != WOLFSSL_SUCCESS) {
                log_error("%s: cannot load certificate (chain) from %s", cfg->name, cfg->tls_cert);
                goto fail;
        }
        if (wolfSSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS) {
                log_error("%s: cannot load private key from %s", cfg->name, cfg->tls_key);
                goto fail;
        }
        if (wolfSSL_CTX_check_private_key(ctx) != WOLFSSL_SUCCESS) {
                log_error("%s: key %s does not match certificate %s", cfg->name, cfg->tls_key, cfg->tls_cert);
                goto fail;
        }
        if (cfg->tls_ca) {
                if (wolfSSL_CTX_load_verify_locations(ctx, cfg->tls_ca, NULL) != WOLFSSL_SUCCESS) {
                        log_error("%s: cannot load CA certificates from %s", cfg->name, cfg->tls_ca);
                        goto fail;
                }
                wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_PEER | WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                                       tls_verify_cb);
        } else
                wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, NULL);

        /* No resumption: a resumed session carries no client certificate in
         * wolfSSL, so the identity of every connection must come from a full
         * handshake. It also keeps each connection's wire cost honest. */
        (void) wolfSSL_CTX_set_session_cache_mode(ctx, WOLFSSL_SESS_CACHE_OFF);
        (void) wolfSSL_CTX_no_ticket_TLSv13(ctx);
        (void) wolfSSL_CTX_NoTicketTLSv12(ctx);

        wolfSSL_CTX_SetIORecv(ctx, tls_io_recv);
        wolfSSL_CTX_SetIOSend(ctx, tls_io_send);

        *ret = ctx;
        return 0;
fail:
        wolfSSL_CTX_free(ctx);
        return r;
}

static const char *tls_error_reason(SimConn *c, int err, char *buf, size_t size) {
        if (c->tls_reason[0])
                return c->tls_reason;
        if (c->io_error == -ETIMEDOUT)
                return "handshake timed out";
        if (c->io_error == -ECANCELED)
                return "server stopping";
        if (c->peer_closed)
                return "client closed the connection during the handshake";
        snprintf(buf, size, "%s (wolfSSL error %d)", wolfSSL_ERR_reason_error_string((unsigned long) err),
                 err);
        return buf;
}

/* The CN ends up in logs, JSON and database keys: printable ASCII only. */
static bool cn_is_printable(const char *cn) {
        for (const char *s = cn; *s; s++)
                if ((unsigned char) *s < 0x20 || (unsigned char) *s > 0x7e)
                        return false;
        return true;
}

static int conn_handshake(SimConn *c) {
        SimHttpd *h = c->httpd;
        char buf[256];
        int r, err;

        c->ssl = wolfSSL_new(h->tls);
        if (!c->ssl)
                return -ENOMEM;
        wolfSSL_SetIOReadCtx(c->ssl, c);
        wolfSSL_SetIOWriteCtx(c->ssl, c);

        c->deadline = tg_now(CLOCK_MONOTONIC) + h->config.handshake_timeout_usec;
        c->io_error = 0;
        r = wolfSSL_accept(c->ssl);
        if (r != WOLFSSL_SUCCESS) {
                err = wolfSSL_get_error(c->ssl, r);
                stat_add(&h->stats.tls_failures, 1);
                if (h->config.on_tls_failure)
                        h->config.on_tls_failure(c->peer, tls_error_reason(c, err, buf, sizeof buf),
                                                 h->config.userdata);
                /* The alert has been sent or the peer is gone: no close_notify. */
                c->peer_closed = true;
                return -EPERM;
        }

        if (h->verify_peer) {
                WOLFSSL_X509 *peer = wolfSSL_get_peer_certificate(c->ssl);
                int n;

                if (peer) {
                        n = wolfSSL_X509_NAME_get_text_by_NID(wolfSSL_X509_get_subject_name(peer),
                                                              NID_commonName, c->peer_cn,
                                                              sizeof c->peer_cn);
                        c->have_cn = n > 0 && cn_is_printable(c->peer_cn);
                        wolfSSL_X509_free(peer);
                }
        }
        return 0;
}

/* ---- request parsing ----------------------------------------------------- */

static bool is_tchar(char ch) {
        return ch != '\0' && (isalnum((unsigned char) ch) || strchr("!#$%&'*+-.^_`|~", ch));
}

static const char *strempty(const char *s) {
        return s ?: "";
}

static char *strip(char *s) {
        char *e;

        while (*s == ' ' || *s == '\t')
                s++;
        e = s + strlen(s);
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
                *--e = '\0';
        return s;
}

/* Does the comma-separated header value list contain `token`? */
static bool header_has_token(const char *value, const char *token) {
        size_t len = strlen(token);

        for (const char *p = value; *p;) {
                const char *end;

                while (*p == ' ' || *p == '\t' || *p == ',')
                        p++;
                end = p + strcspn(p, ",");
                while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
                        end--;
                if ((size_t) (end - p) == len && strncasecmp(p, token, len) == 0)
                        return true;
                p = end;
                while (*p && *p != ',')
                        p++;
        }
        return false;
}

/* "METHOD SP origin-form SP HTTP/1.x"; -EPROTONOSUPPORT for another version. */
static int parse_request_line(char *line, ParsedRequest *p) {
        char *method = line, *target, *version;

        target = strchr(method, ' ');
        if (!target)
                return -EBADMSG;
        *target++ = '\0';
        version = strchr(target, ' ');
        if (!version)
                return -EBADMSG;
        *version++ = '\0';

        if (!startswith(version, "HTTP/") || strlen(version) != 8 || !isdigit((unsigned char) version[5]) ||
            version[6] != '.' || !isdigit((unsigned char) version[7]))
                return -EBADMSG;
        /* Before the target check: HTTP/2's preface "PRI * HTTP/2.0" should
         * learn that the version is the problem. */
        if (version[5] != '1')
                return -EPROTONOSUPPORT;
        if (!*method)
                return -EBADMSG;
        for (const char *s = method; *s; s++)
                if (!is_tchar(*s))
                        return -EBADMSG;
        if (target[0] != '/')
                return -EBADMSG;
        for (const char *s = target; *s; s++)
                if ((unsigned char) *s <= 0x20 || (unsigned char) *s >= 0x7f)
                        return -EBADMSG;

        p->req.method = method;
        p->req.target = target;
        p->req.version_minor = version[7] - '0';
        return 0;
}

static int request_error(RequestError *e, int status, const char *reason, int r) {
        *e = (RequestError) { status, reason };
        return r;
}

/* Split "Name: value" in place. */
static int parse_header_line(char *line, SimHeader *ret, RequestError *e) {
        char *colon, *value;

        /* obs-fold (continuation lines) is obsolete; RFC 9112 lets a server
         * refuse it. */
        if (*line == ' ' || *line == '\t')
                return request_error(e, 400, "folded-header-line", -EBADMSG);
        colon = strchr(line, ':');
        if (!colon || colon == line)
                return request_error(e, 400, "malformed-header-line", -EBADMSG);
        *colon = '\0';
        for (const char *s = line; *s; s++)
                if (!is_tchar(*s))
                        return request_error(e, 400, "malformed-header-name", -EBADMSG);
        value = strip(colon + 1);
        for (const char *s = value; *s; s++)
                if ((unsigned char) *s < 0x20 && *s != '\t')
                        return request_error(e, 400, "control-character-in-header", -EBADMSG);

        *ret = (SimHeader) { .name = line, .value = value };
        return 0;
}

/* Split c->in[0..header_len) into the request line and the headers, in
 * place: every CRLF becomes a NUL. */
static int split_header_block(SimConn *c, size_t header_len, ParsedRequest *p, RequestError *e) {
        char *line, *next, *end = c->in + header_len - 2; /* at the final CRLF */
        size_t n = 0;
        int r;

        /* A NUL would silently cut a line short. */
        if (memchr(c->in, '\0', header_len))
                return request_error(e, 400, "nul-in-header", -EBADMSG);

        for (line = c->in; line < end; line = next + 2) {
                next = memmem(line, (size_t) (end - line) + 2, "\r\n", 2);
                if (!next) /* cannot happen: the block ends with CRLF CRLF */
                        return request_error(e, 400, "malformed-header-block", -EBADMSG);
                *next = '\0';
                /* A bare CR or LF inside a line is a classic request-smuggling
                 * vector: refuse it rather than guess. */
                if (strpbrk(line, "\r\n"))
                        return request_error(e, 400, "bare-cr-or-lf-in-header", -EBADMSG);

                if (line == c->in) {
                        r = parse_request_line(line, p);
                        if (r == -EPROTONOSUPPORT)
                                return request_error(e, 505, "unsupported-http-version", r);
                        if (r < 0)
                                return request_error(e, 400, "malformed-request-line", r);
                        continue;
                }
                if (n >= MAX_HEADERS)
                        return request_error(e, 431, "too-many-headers", -E2BIG);
                r = parse_header_line(line, &c->headers[n], e);
                if (r < 0)
                        return r;
                n++;
        }
        p->req.headers = c->headers;
        p->req.n_headers = n;
        return 0;
}

/* The headers the server interprets itself: message framing and the
 * connection's fate. */
static int check_framing(const SimHttpd *h, ParsedRequest *p, RequestError *e) {
        const char *cl, *conn, *expect;
        int r;

        /* HTTP/1.0 clients get one request per connection: answering their
         * keep-alive would need a "Connection: keep-alive" echo, and no
         * client of the simulators speaks 1.0. */
        conn = sim_request_header(&p->req, "Connection");
        p->keep_alive = p->req.version_minor >= 1 && !(conn && header_has_token(conn, "close"));

        /* We do not decode chunked (or any other transfer coding) bodies;
         * 411 tells the client to send a Content-Length instead. The framing
         * of what follows is unknown, so the connection ends after it. */
        if (sim_request_header(&p->req, "Transfer-Encoding"))
                return request_error(e, 411, "transfer-encoding-not-supported", -EBADMSG);

        r = sim_request_header_unique(&p->req, "Content-Length", &cl);
        if (r == -ENOTUNIQ)
                return request_error(e, 400, "duplicate-content-length", -EBADMSG);
        if (r >= 0) {
                r = tg_parse_uint64(cl, &p->content_length);
                if (r == -ERANGE || (r >= 0 && p->content_length > h->config.max_body_size))
                        return request_error(e, 413, "body-too-large", -EFBIG);
                if (r < 0)
                        return request_error(e, 400, "bad-content-length", -EBADMSG);
        } else if (h->config.require_content_length &&
                   (streq(p->req.method, "POST") || streq(p->req.method, "PUT") || streq(p->req.method, "PATCH")))
                return request_error(e, 411, "content-length-required", -EBADMSG);

        expect = sim_request_header(&p->req, "Expect");
        if (expect) {
                if (strcasecmp(expect, "100-continue") != 0)
                        return request_error(e, 417, "unsupported-expectation", -EBADMSG);
                p->expect_continue = p->req.version_minor >= 1;
        }
        return 0;
}

/* Parse the header block in c->in[0..header_len) in place. */
static int parse_request(SimConn *c, size_t header_len, ParsedRequest *p, RequestError *e) {
        const char *q;
        int r;

        *p = (ParsedRequest) { .header_len = header_len };

        r = split_header_block(c, header_len, p, e);
        if (r < 0)
                return r;

        /* target stays whole for logs; path is a copy cut at '?'. */
        q = strchr(p->req.target, '?');
        p->path = strndup(p->req.target, q ? (size_t) (q - p->req.target) : strlen(p->req.target));
        if (!p->path)
                return request_error(e, 503, "out-of-memory", -ENOMEM);
        p->req.path = p->path;
        p->req.query = q ? q + 1 : "";

        return check_framing(c->httpd, p, e);
}

/* ---- responses ------------------------------------------------------------ */

int sim_response_add_header(SimResponse *resp, const char *name, const char *format, ...) {
        _cleanup_free_ char *value = NULL;
        va_list ap;
        int r;

        va_start(ap, format);
        r = vasprintf(&value, format, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;

        r = tg_buf_append(&resp->headers, name, strlen(name));
        if (r >= 0)
                r = tg_buf_append(&resp->headers, ": ", 2);
        if (r >= 0)
                r = tg_buf_append(&resp->headers, value, strlen(value));
        if (r >= 0)
                r = tg_buf_append(&resp->headers, "\r\n", 2);
        return r;
}

int sim_response_text(SimResponse *resp, int status, const char *format, ...) {
        _cleanup_free_ char *text = NULL;
        va_list ap;
        int r;

        va_start(ap, format);
        r = vasprintf(&text, format, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;

        resp->status = status;
        resp->content_type = "text/plain";
        tg_buf_reset(&resp->body);
        r = tg_buf_append(&resp->body, text, strlen(text));
        if (r >= 0)
                r = tg_buf_append(&resp->body, "\n", 1);
        return r;
}

void sim_response_done(SimResponse *resp) {
        tg_buf_free(&resp->headers);
        tg_buf_free(&resp->body);
}

static int send_response(SimConn *c, const SimResponse *resp, bool keep_alive) {
        SimHttpd *h = c->httpd;
        _cleanup_(tg_buf_free) TgBuf out = {};
        char *head = NULL;
        int r, n;

        n = asprintf(&head,
                     "HTTP/1.1 %d %s\r\n"
                     "%s%s%s"
                     "Content-Length: %zu\r\n"
                     "%s%s%s"
                     "%s",
                     resp->status, sim_status_reason(resp->status),
                     h->server_header ? "Server: " : "", strempty(h->server_header),
                     h->server_header ? "\r\n" : "",
                     resp->body.size,
                     resp->content_type ? "Content-Type: " : "", strempty(resp->content_type),
                     resp->content_type ? "\r\n" : "",
                     keep_alive ? "" : "Connection: close\r\n");
        if (n < 0)
                return -ENOMEM;
        /* One buffer, one write: the whole answer leaves in as few TLS
         * records and TCP segments as possible. */
        r = tg_buf_append(&out, head, (size_t) n);
        free(head);
        if (r >= 0)
                r = tg_buf_append(&out, resp->headers.data, resp->headers.size);
        if (r >= 0)
                r = tg_buf_append(&out, "\r\n", 2);
        if (r >= 0)
                r = tg_buf_append(&out, resp->body.data, resp->body.size);
        if (r < 0)
                return r;
        return conn_write_all(c, out.data, out.size);
}

/* Refuse a request ourselves: count it, tell the owner, answer and close. */
static void refuse_request(SimConn *c, const RequestError *e, bool linger) {
        SimHttpd *h = c->httpd;
        SimResponse resp = {};

        stat_add(&h->stats.requests, 1);
        if (h->config.on_request_error)
                h->config.on_request_error(c->peer, c->have_cn ? c->peer_cn : NULL, e->status, e->reason,
                                           h->config.userdata);
        if (sim_response_text(&resp, e->status, "%s", e->reason) >= 0)
                (void) send_response(c, &resp, false);
        sim_response_done(&resp);
        conn_shutdown(c, linger);
}

/* ---- the connection loop -------------------------------------------------- */

/* Read until a whole header block is in c->in. Returns its length, 0 when the
 * connection should end quietly, or negative with *e set for a refusal. */
static ssize_t read_header_block(SimConn *c, RequestError *e) {
        SimHttpd *h = c->httpd;
        size_t scanned = 0;

        c->deadline = tg_now(CLOCK_MONOTONIC) + h->config.idle_timeout_usec;
        for (;;) {
                ssize_t n;
                char *end;

                /* Tolerate empty lines before a request (RFC 9112 2.2). */
                while (c->in_len >= 2 && c->in[0] == '\r' && c->in[1] == '\n') {
                        memmove(c->in, c->in + 2, c->in_len - 2);
                        c->in_len -= 2;
                }
                if (c->in_len >= 4) {
                        end = memmem(c->in + scanned, c->in_len - scanned, "\r\n\r\n", 4);
                        if (end)
                                return end + 4 - c->in;
                        scanned = c->in_len - 3;
                }
                if (c->in_len >= h->config.max_header_size) {
                        *e = (RequestError) { 431, "header-too-large" };
                        return -E2BIG;
                }

                n = conn_read(c, c->in + c->in_len, h->config.max_header_size - c->in_len);
                if (n == 0 && c->in_len == 0)
                        return 0;
                if (n == 0) {
                        /* Half a request and then EOF: nobody is left to answer. */
                        log_debug("%s: %s closed the connection inside a request header", h->name, c->peer);
                        return 0;
                }
                if (n == -ETIMEDOUT && c->in_len > 0) {
                        *e = (RequestError) { 408, "request-timeout" };
                        return -ETIMEDOUT;
                }
                if (n < 0)
                        return 0;
                if (c->in_len == 0)
                        /* The idle wait is over; now the whole request must
                         * arrive within the request timeout. */
                        c->deadline = tg_now(CLOCK_MONOTONIC) + h->config.request_timeout_usec;
                c->in_len += (size_t) n;
        }
}

/* Read the body announced by Content-Length into *ret (bytes already in
 * c->in come first). On success the consumed bytes are removed from c->in
 * by the caller through *ret_taken. */
static int read_body(SimConn *c, const ParsedRequest *p, uint8_t **ret, size_t *ret_taken) {
        size_t size = (size_t) p->content_length, have, taken;
        _cleanup_free_ uint8_t *body = NULL;

        if (size == 0) {
                *ret = NULL;
                *ret_taken = 0;
                return 0;
        }
        body = malloc(size);
        if (!body)
                return -ENOMEM;

        taken = MIN(size, c->in_len - p->header_len);
        memcpy(body, c->in + p->header_len, taken);
        have = taken;
        while (have < size) {
                ssize_t n = conn_read(c, body + have, size - have);
                if (n == 0)
                        return -ECONNRESET;
                if (n < 0)
                        return (int) n;
                have += (size_t) n;
        }
        *ret = TAKE_PTR(body);
        *ret_taken = taken;
        return 0;
}

/* Keep the connection open without ever answering, until the peer closes
 * it or the server stops. What the peer sends meanwhile is dropped. */
static void conn_hang(SimConn *c) {
        c->deadline = USEC_INFINITY;
        for (;;) {
                char sink[4096];

                if (raw_recv(c, sink, sizeof sink) <= 0)
                        break;
        }
        c->peer_closed = true;
}

static void parsed_request_done(ParsedRequest *p) {
        free(p->path);
        p->path = NULL;
}

/* Read and parse the next request, body included, into *p and *ret_body.
 * Returns false when the connection ends; refusals are answered here. */
static bool read_request(SimConn *c, ParsedRequest *p, uint8_t **ret_body, size_t *ret_taken) {
        RequestError e;
        ssize_t header_len;
        int r;

        header_len = read_header_block(c, &e);
        if (header_len == 0)
                return false;
        if (header_len < 0) {
                refuse_request(c, &e, true);
                return false;
        }

        r = parse_request(c, (size_t) header_len, p, &e);
        if (r < 0) {
                refuse_request(c, &e, true);
                return false;
        }

        if (p->expect_continue && p->content_length > c->in_len - p->header_len) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                if (conn_write_all(c, cont, sizeof cont - 1) < 0)
                        return false;
        }

        r = read_body(c, p, ret_body, ret_taken);
        if (r == -ETIMEDOUT) {
                refuse_request(c, &(RequestError) { 408, "request-timeout" }, false);
                return false;
        }
        if (r == -ENOMEM) {
                refuse_request(c, &(RequestError) { 503, "out-of-memory" }, true);
                return false;
        }
        return r >= 0;
}

/* Do what the handler asked for. Returns true if the connection stays open. */
static bool respond(SimConn *c, SimResponse *resp, bool keep_alive) {
        bool keep = keep_alive && resp->action == SIM_ACTION_REPLY;

        if (resp->delay_usec > 0 && httpd_sleep(c->httpd, resp->delay_usec) < 0)
                resp->action = SIM_ACTION_CLOSE;

        switch (resp->action) {
        case SIM_ACTION_REPLY:
        case SIM_ACTION_REPLY_CLOSE:
                if (send_response(c, resp, keep) < 0)
                        keep = false;
                break;
        case SIM_ACTION_RAW_CLOSE:
                (void) conn_write_all(c, resp->body.data, resp->body.size);
                break;
        case SIM_ACTION_HANG:
                conn_hang(c);
                break;
        case SIM_ACTION_CLOSE:
                break;
        }
        if (!keep)
                conn_shutdown(c, false);
        return keep;
}

/* Serve one request. Returns true to read the next one on this connection. */
static bool serve_request(SimConn *c) {
        SimHttpd *h = c->httpd;
        _cleanup_free_ uint8_t *body = NULL;
        _cleanup_(parsed_request_done) ParsedRequest p = {};
        SimResponse resp = { .status = 200, .action = SIM_ACTION_REPLY };
        size_t taken = 0, consumed;
        bool keep;
        int r;

        if (!read_request(c, &p, &body, &taken))
                return false;
        p.req.body = body;
        p.req.body_size = (size_t) p.content_length;
        p.req.received_usec = tg_now(CLOCK_REALTIME);
        p.req.peer_address = c->peer;
        p.req.peer_cn = c->have_cn ? c->peer_cn : NULL;
        p.req.tls_version = c->ssl ? wolfSSL_get_version(c->ssl) : NULL;
        stat_add(&h->stats.requests, 1);

        r = h->config.handler(&p.req, &resp, h->config.userdata);
        if (r < 0) {
                log_warning_errno(r, "%s: handler failed for %s %s from %s", h->name, p.req.method,
                                  p.req.path, c->peer);
                sim_response_done(&resp);
                resp = (SimResponse) { .action = SIM_ACTION_REPLY_CLOSE };
                (void) sim_response_text(&resp, 500, "internal-error");
        }

        keep = respond(c, &resp, p.keep_alive);
        sim_response_done(&resp);
        if (!keep)
                return false;

        /* Keep what the client pipelined after this request. */
        consumed = p.header_len + taken;
        memmove(c->in, c->in + consumed, c->in_len - consumed);
        c->in_len -= consumed;
        return true;
}

static void format_address(const struct sockaddr *sa, char *buf, size_t size) {
        char host[INET6_ADDRSTRLEN] = "?";

        if (sa->sa_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) sa;
                inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
                snprintf(buf, size, "[%s]:%u", host, ntohs(in6->sin6_port));
        } else if (sa->sa_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *) sa;
                inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
                snprintf(buf, size, "%s:%u", host, ntohs(in->sin_port));
        } else
                snprintf(buf, size, "?");
}

/* Claim a connection slot; false at the limit. */
static bool conn_slot_take(SimHttpd *h, const struct sockaddr *sa) {
        unsigned suppressed;
        bool full, may_log;
        char peer[ADDRESS_MAX];

        pthread_mutex_lock(&h->lock);
        full = h->n_conns >= h->config.max_connections;
        if (!full)
                h->n_conns++;
        may_log = full && tg_ratelimit_check(&h->log_limit, &suppressed);
        pthread_mutex_unlock(&h->lock);

        if (!full) {
                stat_add(&h->stats.connections_total, 1);
                stat_add(&h->stats.connections_open, 1);
                return true;
        }
        stat_add(&h->stats.connections_rejected, 1);
        if (may_log) {
                format_address(sa, peer, sizeof peer);
                log_warning("%s: connection from %s refused: %u connections open (limit)", h->name, peer,
                            h->config.max_connections);
        }
        return false;
}

static void conn_slot_give(SimHttpd *h) {
        stat_sub(&h->stats.connections_open, 1);
        pthread_mutex_lock(&h->lock);
        h->n_conns--;
        pthread_cond_broadcast(&h->conn_gone);
        pthread_mutex_unlock(&h->lock);
}

static void conn_free(SimConn *c) {
        SimHttpd *h = c->httpd;

        if (c->ssl)
                wolfSSL_free(c->ssl);
        safe_close(c->fd);
        free(c);
        conn_slot_give(h);
}

static void *conn_thread(void *userdata) {
        SimConn *c = userdata;
        bool tls = c->httpd->tls;

        if (tls && conn_handshake(c) < 0)
                goto finish;
        while (serve_request(c))
                ;
finish:
        conn_free(c);
#ifdef FP_ECC
        /* Debian's wolfSSL keeps an ECC fixed-point cache per thread (FP_ECC
         * with thread-local storage); without this every connection thread
         * would leak about 128 KiB. */
        if (tls)
                wc_ecc_fp_free();
#endif
        return NULL;
}

/* ---- listener ----------------------------------------------------------- */

static bool is_loopback(const struct sockaddr *sa) {
        if (sa->sa_family == AF_INET)
                return (ntohl(((const struct sockaddr_in *) sa)->sin_addr.s_addr) >> 24) == 127;
        if (sa->sa_family == AF_INET6) {
                const struct in6_addr *a = &((const struct sockaddr_in6 *) sa)->sin6_addr;
                return IN6_IS_ADDR_LOOPBACK(a) ||
                       (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
        }
        return false;
}

/* "ADDR:PORT" or "[ADDR]:PORT"; ADDR may be a host name. */
static int resolve(const char *spec, struct sockaddr_storage *ret, socklen_t *ret_len) {
        _cleanup_free_ char *host = NULL;
        const char *port;
        struct addrinfo hints = {
                .ai_family = AF_UNSPEC,
                .ai_socktype = SOCK_STREAM,
                .ai_flags = AI_NUMERICSERV,
        };
        struct addrinfo *ai = NULL;
        int r;

        if (spec[0] == '[') {
                const char *close = strchr(spec, ']');
                if (!close || close[1] != ':')
                        return -EINVAL;
                host = strndup(spec + 1, (size_t) (close - spec - 1));
                port = close + 2;
        } else {
                const char *colon = strrchr(spec, ':');
                if (!colon || strchr(spec, ':') != colon)
                        return -EINVAL;
                host = strndup(spec, (size_t) (colon - spec));
                port = colon + 1;
        }
        if (!host)
                return -ENOMEM;
        if (!*host || !*port)
                return -EINVAL;

        r = getaddrinfo(host, port, &hints, &ai);
        if (r != 0)
                return r == EAI_SYSTEM ? negative_errno() : -EADDRNOTAVAIL;
        memcpy(ret, ai->ai_addr, ai->ai_addrlen);
        *ret_len = ai->ai_addrlen;
        freeaddrinfo(ai);
        return 0;
}

/* Serve an accepted socket in a thread of its own. Takes fd and the slot. */
static int conn_spawn(SimHttpd *h, int fd, const struct sockaddr *sa) {
        pthread_attr_t attr;
        pthread_t thread;
        SimConn *c;
        int one = 1, r;

        c = calloc(1, sizeof *c + h->config.max_header_size);
        if (!c) {
                safe_close(fd);
                conn_slot_give(h);
                return -ENOMEM;
        }
        c->httpd = h;
        c->fd = fd;
        format_address(sa, c->peer, sizeof c->peer);
        /* Requests and answers are single writes; Nagle would only hold
         * the last segment back for a delayed ACK. */
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        r = pthread_create(&thread, &attr, conn_thread, c);
        pthread_attr_destroy(&attr);
        if (r != 0) {
                conn_free(c);
                return -r;
        }
        return 0;
}

static void *accept_thread(void *userdata) {
        SimHttpd *h = userdata;

        for (;;) {
                struct pollfd p[2] = {
                        { .fd = h->listen_fd, .events = POLLIN },
                        { .fd = h->stop_fd, .events = POLLIN },
                };
                struct sockaddr_storage sa;
                socklen_t salen = sizeof sa;
                int fd, r;

                r = poll(p, 2, -1);
                if (r < 0 && errno != EINTR)
                        break;
                if (p[1].revents)
                        break;
                if (!(p[0].revents & POLLIN))
                        continue;

                fd = accept4(h->listen_fd, (struct sockaddr *) &sa, &salen, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (fd < 0) {
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                                log_warning_errno(errno, "%s: cannot accept a connection", h->name);
                                /* Give connections a moment to end instead of spinning. */
                                (void) httpd_sleep(h, 100 * USEC_PER_MSEC);
                        }
                        continue;
                }

                /* At the limit, close at once: a quick failure the client
                 * can retry beats a connection nobody serves. */
                if (!conn_slot_take(h, (struct sockaddr *) &sa)) {
                        safe_close(fd);
                        continue;
                }
                r = conn_spawn(h, fd, (struct sockaddr *) &sa);
                if (r < 0)
                        log_warning_errno(r, "%s: cannot serve a connection", h->name);
        }
        return NULL;
}

int sim_httpd_new(const SimHttpdConfig *config, SimHttpd **ret) {
        _cleanup_(sim_httpd_freep) SimHttpd *h = NULL;
        struct sockaddr_storage sa;
        socklen_t salen;
        int one = 1, r;

        if (!config->handler || !config->listen)
                return -EINVAL;
        if (!config->tls_cert != !config->tls_key || (config->tls_ca && !config->tls_cert))
                return -EINVAL;

        h = calloc(1, sizeof *h);
        if (!h)
                return -ENOMEM;
        h->listen_fd = -EBADF;
        h->stop_fd = -EBADF;
        h->config = *config;
        h->name = strdup(config->name ?: "httpd");
        if (!h->name)
                return -ENOMEM;
        h->config.name = h->name;
        if (config->server_header) {
                h->server_header = strdup(config->server_header);
                if (!h->server_header)
                        return -ENOMEM;
        }
        h->verify_peer = config->tls_ca;
        if (h->config.max_connections == 0)
                h->config.max_connections = DEFAULT_MAX_CONNECTIONS;
        if (h->config.max_header_size == 0)
                h->config.max_header_size = DEFAULT_MAX_HEADER_SIZE;
        if (h->config.max_body_size == 0)
                h->config.max_body_size = DEFAULT_MAX_BODY_SIZE;
        if (h->config.idle_timeout_usec == 0)
                h->config.idle_timeout_usec = DEFAULT_IDLE_TIMEOUT_USEC;
        if (h->config.request_timeout_usec == 0)
                h->config.request_timeout_usec = DEFAULT_REQUEST_TIMEOUT_USEC;
        if (h->config.handshake_timeout_usec == 0)
                h->config.handshake_timeout_usec = DEFAULT_HANDSHAKE_TIMEOUT_USEC;
        h->log_limit = (TgRateLimit) TG_RATELIMIT_INIT(USEC_PER_SEC, 20);
        pthread_mutex_init(&h->lock, NULL);
        pthread_cond_init(&h->conn_gone, NULL);

        h->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (h->stop_fd < 0)
                return log_error_errno(errno, "%s: cannot create an eventfd", h->name);

        if (config->tls_cert) {
                if (wolfSSL_Init() != WOLFSSL_SUCCESS)
                        return log_error_errno(-EIO, "%s: cannot initialise wolfSSL", h->name);
                r = tls_context_new(&h->config, &h->tls);
                if (r < 0)
                        return r;
        }

        /* Only the copies above outlive this function. */
        h->config.listen = h->config.tls_cert = h->config.tls_key = h->config.tls_ca = NULL;
        h->config.server_header = NULL;

        r = resolve(config->listen, &sa, &salen);
        if (r < 0)
                return log_error_errno(r, "%s: invalid listen address '%s' (want ADDR:PORT)", h->name,
                                       config->listen);
        if (config->loopback_only && !is_loopback((struct sockaddr *) &sa))
                return log_error_errno(-EADDRNOTAVAIL, "%s: %s is not a loopback address", h->name,
                                       config->listen);

        h->listen_fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (h->listen_fd < 0)
                return log_error_errno(errno, "%s: cannot create a socket", h->name);
        (void) setsockopt(h->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(h->listen_fd, (struct sockaddr *) &sa, salen) < 0)
                return log_error_errno(errno, "%s: cannot bind %s", h->name, config->listen);
        if (listen(h->listen_fd, SOMAXCONN) < 0)
                return log_error_errno(errno, "%s: cannot listen on %s", h->name, config->listen);

        salen = sizeof sa;
        if (getsockname(h->listen_fd, (struct sockaddr *) &sa, &salen) < 0)
                return log_error_errno(errno, "%s: cannot read the bound address", h->name);
        format_address((struct sockaddr *) &sa, h->address, sizeof h->address);

        *ret = TAKE_PTR(h);
        return 0;
}

int sim_httpd_start(SimHttpd *h) {
        int r;

        r = pthread_create(&h->accept_thread, NULL, accept_thread, h);
        if (r != 0)
                return log_error_errno(r, "%s: cannot start the accept thread", h->name);
        h->accept_running = true;
        return 0;
}

SimHttpd *sim_httpd_free(SimHttpd *h) {
        uint64_t one = 1;

        if (!h)
                return NULL;

        /* An eventfd write fails only if the counter would overflow: it is then set anyway. */
        if (h->stop_fd >= 0 && write(h->stop_fd, &one, sizeof one) < 0)
                log_debug_errno(negative_errno(), "Cannot signal the server threads to stop: %m");
        if (h->accept_running)
                (void) pthread_join(h->accept_thread, NULL);

        /* Connection threads see stop_fd in every wait and finish quickly;
         * a handler that is running finishes first. */
        pthread_mutex_lock(&h->lock);
        while (h->n_conns > 0)
                pthread_cond_wait(&h->conn_gone, &h->lock);
        pthread_mutex_unlock(&h->lock);

        if (h->tls) {
                wolfSSL_CTX_free(h->tls);
                wolfSSL_Cleanup();
        }
        safe_close(h->listen_fd);
        safe_close(h->stop_fd);
        pthread_cond_destroy(&h->conn_gone);
        pthread_mutex_destroy(&h->lock);
        free(h->server_header);
        free(h->name);
        free(h);
        return NULL;
}

const char *sim_httpd_address(const SimHttpd *h) {
        return h->address;
}

void sim_httpd_get_stats(SimHttpd *h, SimHttpdStats *ret) {
        ret->connections_total = __atomic_load_n(&h->stats.connections_total, __ATOMIC_RELAXED);
        ret->connections_open = __atomic_load_n(&h->stats.connections_open, __ATOMIC_RELAXED);
        ret->connections_rejected = __atomic_load_n(&h->stats.connections_rejected, __ATOMIC_RELAXED);
        ret->tls_failures = __atomic_load_n(&h->stats.tls_failures, __ATOMIC_RELAXED);
        ret->requests = __atomic_load_n(&h->stats.requests, __ATOMIC_RELAXED);
        ret->wire_bytes_in = __atomic_load_n(&h->stats.wire_bytes_in, __ATOMIC_RELAXED);
        ret->wire_bytes_out = __atomic_load_n(&h->stats.wire_bytes_out, __ATOMIC_RELAXED);
}

void sim_httpd_reset_stats(SimHttpd *h) {
        __atomic_store_n(&h->stats.connections_total, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&h->stats.connections_rejected, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&h->stats.tls_failures, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&h->stats.requests, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&h->stats.wire_bytes_in, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&h->stats.wire_bytes_out, 0, __ATOMIC_RELAXED);
}

/* ---- request accessors ----------------------------------------------------- */

const char *sim_request_header(const SimRequest *req, const char *name) {
        for (size_t i = 0; i < req->n_headers; i++)
                if (strcasecmp(req->headers[i].name, name) == 0)
                        return req->headers[i].value;
        return NULL;
}

int sim_request_header_unique(const SimRequest *req, const char *name, const char **ret) {
        const char *found = NULL;

        for (size_t i = 0; i < req->n_headers; i++)
                if (strcasecmp(req->headers[i].name, name) == 0) {
                        if (found)
                                return -ENOTUNIQ;
                        found = req->headers[i].value;
                }
        if (!found)
                return -ENOENT;
        *ret = found;
        return 0;
}

static int unhex(char ch) {
        if (ch >= '0' && ch <= '9')
                return ch - '0';
        if (ch >= 'a' && ch <= 'f')
                return ch - 'a' + 10;
        if (ch >= 'A' && ch <= 'F')
                return ch - 'A' + 10;
        return -1;
}

int sim_request_query(const SimRequest *req, const char *name, char **ret) {
        size_t name_len = strlen(name);

        for (const char *p = req->query; *p;) {
                const char *end = p + strcspn(p, "&");

                if ((size_t) (end - p) >= name_len && strncmp(p, name, name_len) == 0 &&
                    (p[name_len] == '=' || p + name_len == end)) {
                        const char *v = p + name_len + (p + name_len < end);
                        _cleanup_free_ char *out = malloc((size_t) (end - v) + 1);
                        size_t n = 0;

                        if (!out)
                                return -ENOMEM;
                        for (; v < end; v++) {
                                if (*v == '%') {
                                        int hi, lo;

                                        if (end - v < 3 || (hi = unhex(v[1])) < 0 || (lo = unhex(v[2])) < 0)
                                                return -EINVAL;
                                        if (hi == 0 && lo == 0)
                                                return -EINVAL;
                                        out[n++] = (char) (hi << 4 | lo);
                                        v += 2;
                                } else
                                        out[n++] = *v == '+' ? ' ' : *v;
                        }
                        out[n] = '\0';
                        *ret = TAKE_PTR(out);
                        return 0;
                }
                p = *end ? end + 1 : end;
        }
        return -ENOENT;
}
