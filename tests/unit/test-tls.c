/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <fcntl.h>
#include <libgen.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>

#include "tg-test.h"
#include "tg-time.h"
#include "tg-tls.h"

/* The raw wolfSSL clients below play peers our API will not build (TLS 1.2
 * only, no certificate). */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

/*
 * Everything runs over real loopback TCP (127.0.0.1, ephemeral port) on
 * non-blocking sockets driven by poll(), the way a daemon's loop drives
 * them. The PKI comes from tools/tollgate-pki (CA, server "tsp" with CN
 * localhost, client "gateway" with CN TG-SANDBOX-0001, a client from a
 * rogue CA, an expired client) plus, made here with the openssl CLI, a
 * client certificate that the CA revoked and the CA's CRL listing it.
 */

#define CLIENT_CN "TG-SANDBOX-0001"
#define SERVER_CN "localhost"
#define REVOKED_CN "TG-REVOKED-0001"
#define DEADLINE_USEC (10 * USEC_PER_SEC)

static const char *strna_test(const char *s) {
        return s ? s : "(null)";
}

/* ---- test PKI --------------------------------------------------------------- */

static char *pki_dir;

static char *pki(const char *name) {
        return tg_test_path(pki_dir, name);
}

static char *find_pki_tool(void) {
        const char *env = getenv("TG_TOLLGATE_PKI");
        char *from_source, *dir;

        if (env && *env)
                return strdup(env);
        /* Built outside meson: next to this file's tree, or from the top. */
        dir = strdup(__FILE__);
        assert_se(dir);
        assert_se(asprintf(&from_source, "%s/../../tools/tollgate-pki", dirname(dir)) >= 0);
        free(dir);
        if (access(from_source, X_OK) == 0)
                return from_source;
        free(from_source);
        return strdup("tools/tollgate-pki");
}

/* A client certificate revoked by the CA, and the CA's CRL (openssl ca
 * needs a small database for both). */
static const char revoke_script[] =
        "set -e\n"
        "cd \"$1\"\n"
        "cat > crl.cnf <<EOF\n"
        "[ req ]\n"
        "distinguished_name = req_dn\n"
        "prompt = no\n"
        "[ req_dn ]\n"
        "[ ca ]\n"
        "default_ca = crl_ca\n"
        "[ crl_ca ]\n"
        "dir = $PWD/crl-db\n"
        "database = \\$dir/index.txt\n"
        "new_certs_dir = \\$dir\n"
        "serial = \\$dir/serial\n"
        "crlnumber = \\$dir/crlnumber\n"
        "default_md = sha256\n"
        "default_crl_days = 30\n"
        "policy = policy_any\n"
        "unique_subject = no\n"
        "[ policy_any ]\n"
        "commonName = supplied\n"
        "[ v3_client ]\n"
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature\n"
        "extendedKeyUsage = clientAuth\n"
        "EOF\n"
        "mkdir -p crl-db\n"
        ": > crl-db/index.txt\n"
        "echo 01 > crl-db/crlnumber\n"
        "echo 1001 > crl-db/serial\n"
        "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out revoked.key\n"
        "openssl req -new -config crl.cnf -key revoked.key -subj /CN=" REVOKED_CN " -out revoked.csr\n"
        "openssl x509 -req -in revoked.csr -CA ca.pem -CAkey ca.key -set_serial 0x51e55ed -days 30 -sha256 "
        "-extfile crl.cnf -extensions v3_client -out revoked.pem\n"
        "openssl ca -batch -config crl.cnf -keyfile ca.key -cert ca.pem -revoke revoked.pem\n"
        "openssl ca -batch -config crl.cnf -keyfile ca.key -cert ca.pem -gencrl -out crl.pem\n";

static void pki_setup(void) {
        _cleanup_free_ char *tool = NULL, *cmd = NULL, *script = NULL;

        if (pki_dir)
                return;
        pki_dir = tg_test_mkdtemp(); /* removed at the end, or on failure */
        tool = find_pki_tool();
        assert_se(asprintf(&cmd, "'%s' '%s'", tool, pki_dir) >= 0);
        if (system(cmd) != 0) {
                fprintf(stderr, "%s failed (set TG_TOLLGATE_PKI to tools/tollgate-pki)\n", cmd);
                assert_se(false);
        }
        script = pki("revoke.sh");
        tg_test_write_file(script, revoke_script, strlen(revoke_script));
        free(cmd);
        assert_se(asprintf(&cmd, "bash '%s' '%s' >'%s/revoke.log' 2>&1 || { cat '%s/revoke.log' >&2; exit 1; }",
                           script, pki_dir, pki_dir, pki_dir) >= 0);
        assert_se(system(cmd) == 0);
}

/* ---- policies and PSK lookups ------------------------------------------------ */

/* The accepted CN, as key-sync's paired-key list or the key's gateway id. */
static int policy_expect(const char *cn, char *reason, size_t size, void *userdata) {
        const char *expected = userdata;

        if (expected && streq(cn, expected))
                return 0;
        snprintf(reason, size, "peer not paired: CN=%s", cn);
        return -EPERM;
}

static const uint8_t psk_good[TG_TLS_PSK_SIZE] = { 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9 };

static int psk_lookup(const char *identity, uint8_t key[TG_TLS_PSK_SIZE], _unused_ void *userdata) {
        if (!streq(identity, "KEY-0001"))
                return -ENOENT;
        memcpy(key, psk_good, TG_TLS_PSK_SIZE);
        return 0;
}

/* ---- contexts ---------------------------------------------------------------- */

typedef struct CertSpec {
        const char *cert, *key; /* names in the PKI directory */
        const char *expect_peer;
        const char *ciphers;
        bool crl;
} CertSpec;

static TgTlsContext *cert_context(TgTlsRole role, CertSpec spec) {
        _cleanup_free_ char *ca = pki("ca.pem"), *cert = pki(spec.cert), *key = pki(spec.key), *crl = pki("crl.pem");
        TgTlsConfig cfg = {
                .role = role,
                .ciphers = spec.ciphers,
                .ca_file = ca,
                .cert_file = cert,
                .key_file = key,
                .crl_file = spec.crl ? crl : NULL,
                .policy = policy_expect,
                .userdata = (void *) spec.expect_peer,
        };
        TgTlsContext *c = NULL;
        const char *reason = NULL;
        int r;

        r = tg_tls_context_new(&cfg, &c, &reason);
        if (r < 0)
                fprintf(stderr, "context: %s\n", reason);
        assert_ok(r);
        return c;
}

static TgTlsContext *server_context(const char *accept_cn) {
        return cert_context(TG_TLS_SERVER, (CertSpec) { "tsp.pem", "tsp.key", accept_cn, NULL, true });
}

static TgTlsContext *client_context(const char *cert, const char *key) {
        return cert_context(TG_TLS_CLIENT, (CertSpec) { cert, key, SERVER_CN, NULL, false });
}

static TgTlsContext *psk_server_context(void) {
        TgTlsConfig cfg = { .role = TG_TLS_SERVER, .psk_lookup = psk_lookup };
        TgTlsContext *c = NULL;

        assert_ok(tg_tls_context_new(&cfg, &c, NULL));
        return c;
}

static TgTlsContext *psk_client_context(const char *identity, const uint8_t *key, const char *ciphers) {
        TgTlsConfig cfg = { .role = TG_TLS_CLIENT, .psk_identity = identity, .psk_key = key, .ciphers = ciphers };
        TgTlsContext *c = NULL;

        assert_ok(tg_tls_context_new(&cfg, &c, NULL));
        return c;
}

/* ---- sockets ----------------------------------------------------------------- */

static void set_nonblock(int fd) {
        int flags = fcntl(fd, F_GETFL);

        assert_se(flags >= 0);
        assert_se(fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0);
}

/* A connected loopback TCP pair, both ends non-blocking. With small
 * buffers, a 16 KiB record never fits at once: partial writes everywhere. */
static void tcp_pair(int *ret_client, int *ret_server, bool small_buffers) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof a;
        int l, c, s, one = 1;

        l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_se(l >= 0);
        assert_se(bind(l, (struct sockaddr *) &a, sizeof a) == 0);
        assert_se(listen(l, 4) == 0);
        assert_se(getsockname(l, (struct sockaddr *) &a, &len) == 0);
        c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_se(c >= 0);
        if (small_buffers) {
                int size = 4096;
                assert_se(setsockopt(c, SOL_SOCKET, SO_SNDBUF, &size, sizeof size) == 0);
                assert_se(setsockopt(c, SOL_SOCKET, SO_RCVBUF, &size, sizeof size) == 0);
                assert_se(setsockopt(l, SOL_SOCKET, SO_SNDBUF, &size, sizeof size) == 0);
                assert_se(setsockopt(l, SOL_SOCKET, SO_RCVBUF, &size, sizeof size) == 0);
        }
        assert_se(connect(c, (struct sockaddr *) &a, sizeof a) == 0);
        s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        assert_se(s >= 0);
        close(l);
        (void) setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        (void) setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        set_nonblock(c);
        set_nonblock(s);
        *ret_client = c;
        *ret_server = s;
}

/* ---- driving handshakes --------------------------------------------------------- */

/* One end: our TgTls, or a raw wolfSSL client for peers our API refuses to be. */
typedef struct Side {
        const char *name;
        int fd;
        TgTls *tls;
        WOLFSSL *raw;
        int result; /* 1 while pending, then 0 or a negative errno */
} Side;

static int raw_step(Side *s, short *events) {
        int r = wolfSSL_connect(s->raw), err;

        if (r == WOLFSSL_SUCCESS)
                return 0;
        err = wolfSSL_get_error(s->raw, r);
        if (err == WOLFSSL_ERROR_WANT_READ || err == WOLFSSL_ERROR_WANT_WRITE) {
                *events = err == WOLFSSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
                return -EAGAIN;
        }
        return -EPROTO;
}

static void side_step(Side *s, short *events) {
        int r;

        *events = 0;
        if (s->result != 1)
                return;
        if (s->raw)
                r = raw_step(s, events);
        else {
                r = tg_tls_handshake(s->tls);
                *events = (short) tg_tls_want(s->tls);
        }
        if (r == -EAGAIN)
                return;
        s->result = r;
        *events = 0;
        if (r < 0) /* as a daemon would close: the peer sees the alert, then EOF */
                (void) shutdown(s->fd, SHUT_WR);
}

/* Run both handshakes until neither waits any more. */
static void drive(Side *a, Side *b) {
        uint64_t deadline = tg_now(CLOCK_MONOTONIC) + DEADLINE_USEC;

        a->result = b->result = 1;
        for (;;) {
                struct pollfd p[2] = {};
                nfds_t n = 0;
                short ea, eb;

                side_step(a, &ea);
                side_step(b, &eb);
                if (ea)
                        p[n++] = (struct pollfd) { .fd = a->fd, .events = ea };
                if (eb)
                        p[n++] = (struct pollfd) { .fd = b->fd, .events = eb };
                if (n == 0)
                        return;
                assert_se(tg_now(CLOCK_MONOTONIC) < deadline);
                assert_se(poll(p, n, 1000) >= 0);
        }
}

static void wait_fd(int fd, short events) {
        struct pollfd p = { .fd = fd, .events = events };

        assert_eq(poll(&p, 1, (int) (DEADLINE_USEC / USEC_PER_MSEC)), 1);
}

/* After the client finished its side (TLS 1.3: before the server checked
 * the client's certificate), the refusal arrives as an alert on the first
 * read. Returns the client's final error. */
static int client_outcome(Side *c) {
        char buf[64];
        ssize_t n;

        if (c->result < 0)
                return c->result;
        for (;;) {
                n = tg_tls_read(c->tls, buf, sizeof buf);
                if (n != -EAGAIN)
                        break;
                wait_fd(c->fd, (short) tg_tls_want(c->tls));
        }
        assert_se(n < 0); /* no data may come from a server that refused us */
        return (int) n;
}

typedef struct Pair {
        int cfd, sfd;
        TgTls *client, *server;
        Side c, s;
} Pair;

static void pair_open(Pair *p, TgTlsContext *client, TgTlsContext *server, bool small_buffers) {
        *p = (Pair) {};
        tcp_pair(&p->cfd, &p->sfd, small_buffers);
        if (client)
                assert_ok(tg_tls_new(client, p->cfd, &p->client));
        assert_ok(tg_tls_new(server, p->sfd, &p->server));
        p->c = (Side) { "client", p->cfd, p->client, NULL, 1 };
        p->s = (Side) { "server", p->sfd, p->server, NULL, 1 };
}

static void pair_close(Pair *p) {
        tg_tls_free(p->client);
        tg_tls_free(p->server);
        safe_close(p->cfd);
        safe_close(p->sfd);
}

/* A handshake that the server refuses: its reason must contain `server_says`;
 * the client must fail too, with `client_says` in its reason if given. */
static void expect_refused(TgTlsContext *client, TgTlsContext *server, int server_error, const char *server_says,
                           const char *client_says) {
        Pair p;
        int r;

        pair_open(&p, client, server, false);
        drive(&p.c, &p.s);
        fprintf(stderr, "   server: %d %s\n", p.s.result, strna_test(tg_tls_error(p.server)));
        assert_eq(p.s.result, server_error);
        assert_contains(tg_tls_error(p.server), server_says);
        assert_se(tg_tls_peer(p.server) == NULL);
        r = client_outcome(&p.c);
        fprintf(stderr, "   client: %d %s\n", r, strna_test(tg_tls_error(p.client)));
        assert_se(r < 0);
        if (client_says)
                assert_contains(tg_tls_error(p.client), client_says);
        pair_close(&p);
}

/* ---- data ---------------------------------------------------------------------- */

/* A reproducible byte stream per direction, checked byte for byte. */
static uint8_t pattern(uint64_t i, unsigned seed) {
        uint64_t x = (i / 8 + 1) * 0x9E3779B97F4A7C15ULL ^ seed;

        x ^= x >> 29;
        x *= 0xBF58476D1CE4E5B9ULL;
        x ^= x >> 32;
        return (uint8_t) (x >> ((i % 8) * 8));
}

typedef struct Flow {
        TgTls *tls;
        int fd;
        unsigned seed_out, seed_in;
        uint64_t sent, received, total;
        unsigned rand_state;
        unsigned short_writes, queued_waits;
        bool update_keys; /* send a KeyUpdate after every 256 KiB */
        unsigned key_updates;
} Flow;

static void flow_write(Flow *f, uint8_t *buf, size_t buf_size) {
        while (f->sent < f->total) {
                size_t k = (size_t) (rand_r(&f->rand_state) % buf_size) + 1; /* not inside MIN(): evaluated twice */
                ssize_t n;

                k = MIN(k, (size_t) (f->total - f->sent));
                for (size_t j = 0; j < k; j++)
                        buf[j] = pattern(f->sent + j, f->seed_out);
                n = tg_tls_write(f->tls, buf, k);
                if (n == -EAGAIN)
                        return;
                assert_se(n > 0 && (size_t) n <= k);
                if ((size_t) n < k)
                        f->short_writes++;
                f->sent += (uint64_t) n;
                /* TLS 1.3 post-handshake messages in the middle of the
                 * stream: the peer must answer a KeyUpdate from inside its
                 * read, with its socket possibly full. */
                if (f->update_keys && f->sent >= (f->key_updates + 1) * (uint64_t) 256 * 1024) {
                        assert_ok(tg_tls_update_keys(f->tls));
                        f->key_updates++;
                }
        }
}

static void flow_read(Flow *f, uint8_t *buf, size_t buf_size) {
        for (;;) {
                size_t k = (size_t) (rand_r(&f->rand_state) % buf_size) + 1;
                ssize_t n = tg_tls_read(f->tls, buf, k);

                if (n == -EAGAIN)
                        return;
                if (n <= 0)
                        fprintf(stderr, "read: %zd %s\n", n, strna_test(tg_tls_error(f->tls)));
                assert_se(n > 0);
                for (ssize_t j = 0; j < n; j++)
                        if (buf[j] != pattern(f->received + (uint64_t) j, f->seed_in)) {
                                fprintf(stderr, "byte %" PRIu64 " differs\n", f->received + (uint64_t) j);
                                assert_se(false);
                        }
                f->received += (uint64_t) n;
                assert_le(f->received, f->total);
        }
}

/* Both directions at once in one poll loop, with writes of 1 … 70 000
 * bytes and reads of 1 … 20 000. */
static void exchange(Flow *a, Flow *b) {
        uint64_t deadline = tg_now(CLOCK_MONOTONIC) + 4 * DEADLINE_USEC;
        _cleanup_free_ uint8_t *wbuf = malloc(70000), *rbuf = malloc(20000);
        Flow *flows[2] = { a, b };

        assert_se(wbuf && rbuf);
        for (;;) {
                struct pollfd p[2];

                for (size_t i = 0; i < 2; i++) {
                        Flow *f = flows[i];
                        int r;

                        if (f->sent == f->total && (tg_tls_want(f->tls) & EPOLLOUT)) {
                                /* Our last record is queued: only flushing sends it. */
                                f->queued_waits++;
                                r = tg_tls_flush(f->tls);
                                assert_se(r == 0 || r == -EAGAIN);
                        }
                        flow_write(f, wbuf, 70000);
                        flow_read(f, rbuf, 20000);
                        p[i] = (struct pollfd) {
                                .fd = f->fd,
                                .events = (short) (POLLIN | tg_tls_want(f->tls) | (f->sent < f->total ? POLLOUT : 0)),
                        };
                }
                /* Done when all arrived and nothing is queued (a KeyUpdate
                 * answer may still be, after the last data). */
                if (a->received == a->total && b->received == b->total && !(tg_tls_want(a->tls) & EPOLLOUT) &&
                    !(tg_tls_want(b->tls) & EPOLLOUT))
                        break;
                assert_se(tg_now(CLOCK_MONOTONIC) < deadline);
                assert_se(poll(p, 2, 1000) >= 0);
        }
}

/* close_notify both ways; each side then reads the clean end (0). */
static void clean_close(TgTls *first, int first_fd, TgTls *second, int second_fd) {
        char buf[16];
        ssize_t n;
        int r;

        while ((r = tg_tls_shutdown(first)) == -EAGAIN)
                wait_fd(first_fd, POLLOUT);
        assert_ok(r);
        assert_eq(tg_tls_write(first, "x", 1), -EPIPE);
        while ((n = tg_tls_read(second, buf, sizeof buf)) == -EAGAIN)
                wait_fd(second_fd, POLLIN);
        assert_eq(n, 0);
        assert_eq(tg_tls_read(second, buf, sizeof buf), 0); /* stays at the end */
        while ((r = tg_tls_shutdown(second)) == -EAGAIN)
                wait_fd(second_fd, POLLOUT);
        assert_ok(r);
        while ((n = tg_tls_read(first, buf, sizeof buf)) == -EAGAIN)
                wait_fd(first_fd, POLLIN);
        assert_eq(n, 0);
        assert_se(tg_tls_error(first) == NULL);
        assert_se(tg_tls_error(second) == NULL);
}

/* ---- cases ---------------------------------------------------------------------- */

static void test_psk_derive(void) {
        /* Reference: openssl kdf -keylen 32 -kdfopt digest:SHA256
         *   -kdfopt "pass:correct horse battery staple"
         *   -kdfopt salt:tollgate-psk/TG-SANDBOX-0001/KEY-0001 -kdfopt iter:100000 PBKDF2 */
        static const uint8_t expected[TG_TLS_PSK_SIZE] = {
                0xcc, 0xb5, 0xa2, 0x8f, 0x58, 0xc9, 0x86, 0x66, 0xf8, 0xc6, 0x59, 0x5c, 0x9c, 0x64, 0x85, 0x6a,
                0x48, 0x0d, 0x95, 0xbb, 0xa4, 0xd3, 0x47, 0xe4, 0xb6, 0xc1, 0xf0, 0x98, 0xa8, 0x9e, 0x13, 0xcd,
        };
        uint8_t key[TG_TLS_PSK_SIZE], other[TG_TLS_PSK_SIZE];

        assert_ok(tg_tls_psk_derive("correct horse battery staple", "TG-SANDBOX-0001", "KEY-0001", key));
        assert_memeq(key, expected, sizeof key);
        /* The salt binds gateway and key: another key id, another PSK. */
        assert_ok(tg_tls_psk_derive("correct horse battery staple", "TG-SANDBOX-0001", "KEY-0002", other));
        assert_se(memcmp(key, other, sizeof key) != 0);
        assert_eq(tg_tls_psk_derive("", "TG-SANDBOX-0001", "KEY-0001", key), -EINVAL);
        assert_eq(tg_tls_psk_derive("pw", "", "KEY-0001", key), -EINVAL);
        assert_eq(tg_tls_psk_derive("pw", "TG-SANDBOX-0001", NULL, key), -EINVAL);
}

static void test_context_errors(void) {
        _cleanup_free_ char *ca = NULL, *cert = NULL, *key = NULL, *other_key = NULL, *missing = NULL;
        TgTlsContext *c = NULL;
        const char *reason = NULL;
        TgTlsConfig cfg;

        pki_setup();
        ca = pki("ca.pem");
        cert = pki("tsp.pem");
        key = pki("tsp.key");
        other_key = pki("gateway.key");
        missing = pki("missing.pem");

        cfg = (TgTlsConfig) { .role = TG_TLS_SERVER, .ca_file = ca, .cert_file = cert, .key_file = key };
        assert_eq(tg_tls_context_new(&cfg, &c, &reason), -EINVAL); /* no policy */
        assert_contains(reason, "policy");
        cfg = (TgTlsConfig) { .role = TG_TLS_SERVER, .ca_file = missing, .cert_file = cert, .key_file = key,
                              .policy = policy_expect };
        assert_eq(tg_tls_context_new(&cfg, &c, &reason), -ENOENT);
        assert_contains(reason, "ca_file");
        cfg.ca_file = ca;
        cfg.key_file = other_key;
        assert_eq(tg_tls_context_new(&cfg, &c, &reason), -EINVAL);
        assert_contains(reason, "does not match");
        cfg.key_file = key;
        cfg.crl_file = cert; /* not a CRL */
        assert_eq(tg_tls_context_new(&cfg, &c, &reason), -EINVAL);
        assert_contains(reason, "CRL");
        cfg.crl_file = NULL;
        cfg.ciphers = "TLS13-NO-SUCH-CIPHER";
        assert_eq(tg_tls_context_new(&cfg, &c, &reason), -EINVAL);
        assert_contains(reason, "cipher");
        cfg.ciphers = NULL;
        cfg.psk_lookup = psk_lookup; /* both modes at once */
        assert_eq(tg_tls_context_new(&cfg, &c, &reason), -EINVAL);
        cfg = (TgTlsConfig) { .role = TG_TLS_SERVER, .psk_lookup = psk_lookup, .policy = policy_expect };
        assert_eq(tg_tls_context_new(&cfg, &c, &reason), -EINVAL);
        cfg = (TgTlsConfig) { .role = TG_TLS_CLIENT, .psk_identity = "KEY 0001\n", .psk_key = psk_good };
        assert_eq(tg_tls_context_new(&cfg, &c, &reason), -EINVAL);
        cfg = (TgTlsConfig) { .role = TG_TLS_CLIENT, .ca_file = ca };
        assert_eq(tg_tls_context_new(&cfg, &c, &reason), -EINVAL);
        assert_se(c == NULL);
}

static void test_good_certificate(void) {
        _cleanup_tls_context_ TgTlsContext *server = NULL, *client = NULL;
        const uint64_t total = 1024 * 1024;
        uint64_t rx, tx;
        Pair p;

        pki_setup();
        server = server_context(CLIENT_CN);
        client = client_context("gateway.pem", "gateway.key");
        pair_open(&p, client, server, true);
        assert_eq(tg_tls_write(p.client, "x", 1), -ENOTCONN);
        drive(&p.c, &p.s);
        assert_eq(p.c.result, 0);
        assert_eq(p.s.result, 0);
        assert_streq(tg_tls_peer(p.server), CLIENT_CN);
        assert_streq(tg_tls_peer(p.client), SERVER_CN);
        assert_streq(tg_tls_version(p.server), "TLSv1.3");
        assert_streq(tg_tls_cipher(p.server), "TLS_CHACHA20_POLY1305_SHA256");
        assert_streq(tg_tls_cipher(p.client), "TLS_CHACHA20_POLY1305_SHA256");
        assert_se(!tg_tls_is_psk(p.server));
        assert_eq(tg_tls_handshake(p.server), 0); /* done stays done */

        Flow a = { .tls = p.client, .fd = p.cfd, .seed_out = 1, .seed_in = 2, .total = total, .rand_state = 7,
                   .update_keys = true };
        Flow b = { .tls = p.server, .fd = p.sfd, .seed_out = 2, .seed_in = 1, .total = total, .rand_state = 8,
                   .update_keys = true };
        exchange(&a, &b);
        fprintf(stderr,
                "   1 MiB each way: %u + %u short writes, %u + %u flushes of a queued record, %u + %u key updates\n",
                a.short_writes, b.short_writes, a.queued_waits, b.queued_waits, a.key_updates, b.key_updates);
        assert_eq(a.key_updates, 4U);
        assert_se(a.short_writes + b.short_writes > 0);
        assert_eq(a.received, total);
        assert_eq(b.received, total);

        /* Full records: 1 MiB costs 64 records of 22 bytes overhead plus the handshake. */
        tg_tls_wire_bytes(p.client, &rx, &tx);
        fprintf(stderr, "   client wire bytes: %" PRIu64 " sent, %" PRIu64 " received\n", tx, rx);
        assert_le(tx, total + total / 16384 * 22 * 2 + 4096);

        clean_close(p.client, p.cfd, p.server, p.sfd);
        pair_close(&p);
}

static void test_server_preference(void) {
        _cleanup_tls_context_ TgTlsContext *server = NULL, *client = NULL, *aes_only = NULL;
        Pair p;

        pki_setup();
        server = server_context(CLIENT_CN);
        client = cert_context(TG_TLS_CLIENT, (CertSpec) { "gateway.pem", "gateway.key", SERVER_CN,
                                                          "TLS13-AES128-GCM-SHA256:TLS13-CHACHA20-POLY1305-SHA256",
                                                          false });
        pair_open(&p, client, server, false);
        drive(&p.c, &p.s);
        assert_eq(p.s.result, 0);
        assert_streq(tg_tls_cipher(p.client), "TLS_CHACHA20_POLY1305_SHA256");
        pair_close(&p);

        aes_only = cert_context(TG_TLS_CLIENT,
                                (CertSpec) { "gateway.pem", "gateway.key", SERVER_CN, "TLS13-AES128-GCM-SHA256", false });
        pair_open(&p, aes_only, server, false);
        drive(&p.c, &p.s);
        assert_eq(p.s.result, 0);
        assert_streq(tg_tls_cipher(p.server), "TLS_AES_128_GCM_SHA256");
        pair_close(&p);
}

static void test_unknown_ca(void) {
        _cleanup_tls_context_ TgTlsContext *server = NULL, *client = NULL;

        pki_setup();
        server = server_context(CLIENT_CN);
        client = client_context("rogue-gateway.pem", "rogue-gateway.key");
        expect_refused(client, server, -EACCES, "unknown CA: CN=" CLIENT_CN, "unknown CA");
}

static void test_expired(void) {
        _cleanup_tls_context_ TgTlsContext *server = NULL, *client = NULL;

        pki_setup();
        server = server_context(CLIENT_CN);
        client = client_context("expired-gateway.pem", "expired-gateway.key");
        expect_refused(client, server, -EACCES, "certificate expired: CN=" CLIENT_CN, "expired");
}

static void test_policy_refuses(void) {
        _cleanup_tls_context_ TgTlsContext *server = NULL, *client = NULL;

        pki_setup();
        server = server_context("KEY-0042"); /* the only paired key */
        client = client_context("gateway.pem", "gateway.key");
        expect_refused(client, server, -EPERM, "peer not paired: CN=" CLIENT_CN, "our certificate refused");
}

static void test_revoked(void) {
        _cleanup_tls_context_ TgTlsContext *server = NULL, *client = NULL;

        pki_setup();
        server = server_context(REVOKED_CN); /* paired, but revoked */
        client = client_context("revoked.pem", "revoked.key");
        expect_refused(client, server, -EACCES, "certificate revoked: CN=" REVOKED_CN, "revoked");
}

static void test_client_refuses_server(void) {
        _cleanup_tls_context_ TgTlsContext *server = NULL, *client = NULL;
        Pair p;

        pki_setup();
        server = server_context(CLIENT_CN);
        /* The key expects another car. */
        client = cert_context(TG_TLS_CLIENT, (CertSpec) { "gateway.pem", "gateway.key", "VIN-OTHER", NULL, false });
        pair_open(&p, client, server, false);
        drive(&p.c, &p.s);
        fprintf(stderr, "   client: %d %s\n   server: %d %s\n", p.c.result, strna_test(tg_tls_error(p.client)),
                p.s.result, strna_test(tg_tls_error(p.server)));
        assert_eq(p.c.result, -EPERM);
        assert_contains(tg_tls_error(p.client), "peer not paired: CN=" SERVER_CN);
        assert_eq(p.s.result, -EACCES);
        assert_contains(tg_tls_error(p.server), "refused by peer: our certificate refused");
        pair_close(&p);
}

static WOLFSSL *raw_client(WOLFSSL_CTX **ctx, WOLFSSL_METHOD *method, int fd, bool with_cert) {
        _cleanup_free_ char *ca = pki("ca.pem");
        WOLFSSL *ssl;

        *ctx = wolfSSL_CTX_new(method);
        assert_se(*ctx);
        assert_eq(wolfSSL_CTX_load_verify_locations(*ctx, ca, NULL), WOLFSSL_SUCCESS);
        if (with_cert) {
                _cleanup_free_ char *cert = pki("gateway.pem"), *key = pki("gateway.key");
                assert_eq(wolfSSL_CTX_use_certificate_file(*ctx, cert, WOLFSSL_FILETYPE_PEM), WOLFSSL_SUCCESS);
                assert_eq(wolfSSL_CTX_use_PrivateKey_file(*ctx, key, WOLFSSL_FILETYPE_PEM), WOLFSSL_SUCCESS);
        }
        ssl = wolfSSL_new(*ctx);
        assert_se(ssl);
        assert_eq(wolfSSL_set_fd(ssl, fd), WOLFSSL_SUCCESS);
        return ssl;
}

static void expect_raw_refused(WOLFSSL_METHOD *method, bool with_cert, const char *server_says) {
        _cleanup_tls_context_ TgTlsContext *server = NULL;
        WOLFSSL_CTX *ctx;
        Pair p;

        pki_setup();
        server = server_context(CLIENT_CN);
        pair_open(&p, NULL, server, false);
        p.c.raw = raw_client(&ctx, method, p.cfd, with_cert);
        drive(&p.c, &p.s);
        fprintf(stderr, "   server: %d %s\n", p.s.result, strna_test(tg_tls_error(p.server)));
        assert_se(p.s.result < 0);
        assert_contains(tg_tls_error(p.server), server_says);
        wolfSSL_free(p.c.raw);
        wolfSSL_CTX_free(ctx);
        pair_close(&p);
}

static void test_tls12_client(void) {
        expect_raw_refused(wolfTLSv1_2_client_method(), true, "protocol version");
}

static void test_no_client_certificate(void) {
        expect_raw_refused(wolfTLSv1_3_client_method(), false, "no certificate");
}

static void test_plain_tcp(void) {
        static const char request[] = "GET / HTTP/1.0\r\n\r\n";
        _cleanup_tls_context_ TgTlsContext *server = NULL;
        uint64_t start;
        Pair p;

        pki_setup();
        server = server_context(CLIENT_CN);
        pair_open(&p, NULL, server, false);
        assert_eq(send(p.cfd, request, strlen(request), MSG_NOSIGNAL), (ssize_t) strlen(request));
        start = tg_now(CLOCK_MONOTONIC);
        p.c.result = 0; /* a plain client: nothing to drive */
        for (;;) {
                short events;

                side_step(&p.s, &events);
                if (p.s.result != 1)
                        break;
                wait_fd(p.sfd, events);
        }
        fprintf(stderr, "   server: %d %s (after %" PRIu64 " µs)\n", p.s.result, strna_test(tg_tls_error(p.server)),
                tg_now(CLOCK_MONOTONIC) - start);
        assert_eq(p.s.result, -EPROTO);
        assert_contains(tg_tls_error(p.server), "not TLS");
        assert_contains(tg_tls_error(p.server), "GET / HTTP/1.0");
        assert_le(tg_now(CLOCK_MONOTONIC) - start, USEC_PER_SEC);
        /* Failed stays failed. */
        assert_eq(tg_tls_handshake(p.server), -EPROTO);
        assert_eq(tg_tls_want(p.server), 0U);
        pair_close(&p);
}

static void test_peer_gone(void) {
        _cleanup_tls_context_ TgTlsContext *server = NULL;
        Pair p;

        pki_setup();
        server = server_context(CLIENT_CN);
        pair_open(&p, NULL, server, false);
        p.cfd = safe_close(p.cfd); /* connects, then leaves without a word */
        p.c.result = 0;
        for (;;) {
                short events;

                side_step(&p.s, &events);
                if (p.s.result != 1)
                        break;
                wait_fd(p.sfd, events);
        }
        assert_eq(p.s.result, -ECONNRESET);
        assert_contains(tg_tls_error(p.server), "closed the connection");
        pair_close(&p);
}

static void test_truncated(void) {
        _cleanup_tls_context_ TgTlsContext *server = NULL, *client = NULL;
        char buf[64];
        ssize_t n;
        Pair p;

        pki_setup();
        server = server_context(CLIENT_CN);
        client = client_context("gateway.pem", "gateway.key");
        pair_open(&p, client, server, false);
        drive(&p.c, &p.s);
        assert_eq(p.s.result, 0);
        while ((n = tg_tls_write(p.client, "hello", 5)) == -EAGAIN)
                wait_fd(p.cfd, POLLOUT);
        assert_eq(n, 5);
        assert_se(shutdown(p.cfd, SHUT_WR) == 0); /* FIN without close_notify */
        while ((n = tg_tls_read(p.server, buf, sizeof buf)) == -EAGAIN)
                wait_fd(p.sfd, POLLIN);
        assert_eq(n, 5);
        assert_se(memcmp(buf, "hello", 5) == 0);
        while ((n = tg_tls_read(p.server, buf, sizeof buf)) == -EAGAIN)
                wait_fd(p.sfd, POLLIN);
        assert_eq(n, -ECONNRESET);
        assert_contains(tg_tls_error(p.server), "without close_notify");
        pair_close(&p);
}

static void test_blocking_fd_refused(void) {
        _cleanup_tls_context_ TgTlsContext *server = NULL;
        TgTls *t = NULL;
        int fds[2];

        server = psk_server_context();
        assert_se(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
        assert_eq(tg_tls_new(server, fds[0], &t), -EINVAL);
        assert_se(t == NULL);
        close(fds[0]);
        close(fds[1]);
}

static void test_psk_good(void) {
        _cleanup_tls_context_ TgTlsContext *server = NULL, *client = NULL, *aes = NULL;
        Pair p;

        server = psk_server_context();
        client = psk_client_context("KEY-0001", psk_good, NULL);
        pair_open(&p, client, server, true);
        drive(&p.c, &p.s);
        assert_eq(p.c.result, 0);
        assert_eq(p.s.result, 0);
        assert_se(tg_tls_is_psk(p.server));
        assert_streq(tg_tls_peer(p.server), "KEY-0001");
        assert_se(tg_tls_peer(p.client) == NULL);
        assert_streq(tg_tls_cipher(p.server), "TLS_CHACHA20_POLY1305_SHA256");
        Flow a = { .tls = p.client, .fd = p.cfd, .seed_out = 3, .seed_in = 4, .total = 100000, .rand_state = 9 };
        Flow b = { .tls = p.server, .fd = p.sfd, .seed_out = 4, .seed_in = 3, .total = 100000, .rand_state = 10 };
        exchange(&a, &b);
        clean_close(p.server, p.sfd, p.client, p.cfd);
        pair_close(&p);

        /* A key that offers only AES-GCM still gets a PSK handshake. */
        aes = psk_client_context("KEY-0001", psk_good, "TLS13-AES128-GCM-SHA256");
        pair_open(&p, aes, server, false);
        drive(&p.c, &p.s);
        assert_eq(p.s.result, 0);
        assert_streq(tg_tls_cipher(p.server), "TLS_AES_128_GCM_SHA256");
        pair_close(&p);
}

static void test_psk_wrong_key(void) {
        _cleanup_tls_context_ TgTlsContext *server = NULL, *client = NULL;
        uint8_t wrong[TG_TLS_PSK_SIZE];

        memcpy(wrong, psk_good, sizeof wrong);
        wrong[31] ^= 1;
        server = psk_server_context();
        client = psk_client_context("KEY-0001", wrong, NULL);
        expect_refused(client, server, -EACCES, "PSK does not match for identity \"KEY-0001\"", "PSK refused");
}

static void test_psk_unknown_identity(void) {
        _cleanup_tls_context_ TgTlsContext *server = NULL, *client = NULL;

        server = psk_server_context();
        client = psk_client_context("KEY-9999", psk_good, NULL);
        expect_refused(client, server, -EACCES, "PSK identity unknown: KEY-9999", "PSK refused");
}

static void test_certificate_client_on_psk_server(void) {
        _cleanup_tls_context_ TgTlsContext *server = NULL, *client = NULL;

        pki_setup();
        server = psk_server_context();
        client = client_context("gateway.pem", "gateway.key");
        expect_refused(client, server, -EACCES, "peer offered no PSK identity", NULL);
}

/* ---- throughput ------------------------------------------------------------------ */

typedef struct Bench {
        TgTlsContext *server_ctx, *client_ctx;
        int sfd, cfd;
        uint64_t total;
        uint64_t start_usec, end_usec;
        uint64_t received;
        uint64_t server_cpu_usec, client_cpu_usec;
        char cipher[64];
} Bench;

static void bench_handshake(TgTls *t, int fd) {
        int r;

        while ((r = tg_tls_handshake(t)) == -EAGAIN)
                wait_fd(fd, (short) tg_tls_want(t));
        if (r < 0)
                fprintf(stderr, "bench handshake: %s\n", strna_test(tg_tls_error(t)));
        assert_ok(r);
}

static void *bench_server(void *userdata) {
        Bench *b = userdata;
        _cleanup_free_ uint8_t *buf = malloc(65536);
        TgTls *t = NULL;

        assert_se(buf);
        assert_ok(tg_tls_new(b->server_ctx, b->sfd, &t));
        bench_handshake(t, b->sfd);
        snprintf(b->cipher, sizeof b->cipher, "%s", tg_tls_cipher(t));
        for (;;) {
                ssize_t n = tg_tls_read(t, buf, 65536);
                if (n == -EAGAIN) {
                        wait_fd(b->sfd, (short) (POLLIN | tg_tls_want(t)));
                        continue;
                }
                assert_se(n >= 0);
                if (n == 0)
                        break;
                b->received += (uint64_t) n;
        }
        b->end_usec = tg_now(CLOCK_MONOTONIC);
        b->server_cpu_usec = tg_now(CLOCK_THREAD_CPUTIME_ID);
        tg_tls_free(t);
        tg_tls_thread_cleanup();
        return NULL;
}

static void *bench_client(void *userdata) {
        Bench *b = userdata;
        _cleanup_free_ uint8_t *buf = malloc(65536);
        TgTls *t = NULL;
        uint64_t sent = 0;
        int r;

        assert_se(buf);
        memset(buf, 0x5a, 65536);
        assert_ok(tg_tls_new(b->client_ctx, b->cfd, &t));
        bench_handshake(t, b->cfd);
        b->start_usec = tg_now(CLOCK_MONOTONIC);
        while (sent < b->total) {
                size_t off = (size_t) (sent % 65536);
                ssize_t n = tg_tls_write(t, buf + off, 65536 - off);
                if (n == -EAGAIN) {
                        wait_fd(b->cfd, POLLOUT);
                        continue;
                }
                assert_se(n > 0);
                sent += (uint64_t) n;
        }
        while ((r = tg_tls_shutdown(t)) == -EAGAIN)
                wait_fd(b->cfd, POLLOUT);
        assert_ok(r);
        b->client_cpu_usec = tg_now(CLOCK_THREAD_CPUTIME_ID);
        tg_tls_free(t);
        tg_tls_thread_cleanup();
        return NULL;
}

static double bench_one(const char *ciphers, uint64_t total, char *ret_cipher, size_t size) {
        _cleanup_tls_context_ TgTlsContext *server = NULL, *client = NULL;
        pthread_t ts, tc;
        Bench b = { .total = total };

        server = server_context(CLIENT_CN);
        client = cert_context(TG_TLS_CLIENT, (CertSpec) { "gateway.pem", "gateway.key", SERVER_CN, ciphers, false });
        b.server_ctx = server;
        b.client_ctx = client;
        tcp_pair(&b.cfd, &b.sfd, false);
        assert_eq(pthread_create(&ts, NULL, bench_server, &b), 0);
        assert_eq(pthread_create(&tc, NULL, bench_client, &b), 0);
        assert_eq(pthread_join(tc, NULL), 0);
        assert_eq(pthread_join(ts, NULL), 0);
        safe_close(b.cfd);
        safe_close(b.sfd);
        assert_eq(b.received, total);
        snprintf(ret_cipher, size, "%s", b.cipher);
        fprintf(stderr, "   %s: %.2f s, CPU: writer %.2f s, reader %.2f s\n", b.cipher,
                (double) (b.end_usec - b.start_usec) / 1e6, (double) b.client_cpu_usec / 1e6,
                (double) b.server_cpu_usec / 1e6);
        return (double) total / (double) (b.end_usec - b.start_usec); /* bytes per µs = MB/s */
}

/* 64 KiB writes from one thread, 64 KiB reads in another, over loopback.
 * TG_TLS_BENCH_MB sets the amount (default 32 MiB per suite). */
static void test_throughput(void) {
        const char *env = getenv("TG_TLS_BENCH_MB");
        uint64_t total = (env ? strtoull(env, NULL, 10) : 32) * 1024 * 1024;
        static const char *const suites[] = { "TLS13-CHACHA20-POLY1305-SHA256", "TLS13-AES128-GCM-SHA256" };

        pki_setup();
        for (size_t i = 0; i < ELEMENTSOF(suites); i++) {
                char cipher[64];
                double mbs = bench_one(suites[i], total, cipher, sizeof cipher);

                fprintf(stderr, "   %s: %.0f MB/s (%" PRIu64 " MiB in 64 KiB writes)\n", cipher, mbs,
                        total / 1024 / 1024);
        }
}

TG_TEST_MAIN(TEST(psk_derive), TEST(context_errors), TEST(good_certificate), TEST(server_preference),
             TEST(unknown_ca), TEST(expired), TEST(policy_refuses), TEST(revoked), TEST(client_refuses_server),
             TEST(tls12_client), TEST(no_client_certificate), TEST(plain_tcp), TEST(peer_gone), TEST(truncated),
             TEST(blocking_fd_refused), TEST(psk_good),
             TEST(psk_wrong_key), TEST(psk_unknown_identity), TEST(certificate_client_on_psk_server),
             TEST(throughput));
