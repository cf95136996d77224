/* SPDX-License-Identifier: MIT */
/*
 * The UDS client channel over DoIP (lib/tg-diag.h) against a minimal DoIP
 * entity in a thread, over real loopback TCP. The entity (built on
 * lib/tg-doip.h) answers the routing activation (or denies it), acks every
 * diagnostic message and answers by the request:
 *
 *   target 0x0BAD       diagnostic NACK 0x03 (unknown target address)
 *   22 …                62 F1 89 "1.2"
 *   31 01 02 03 N       N × 7F 31 78, 10 ms apart, then 71 01 02 03
 *   11 …                nothing (P2 timeout)
 *   85 …                closes the connection
 *   14 …                an alive check request first; 54 once answered
 *   36 bsc data…        76 bsc SHA-256(data)
 *   3E 00               7E 00 (3E 80: nothing)
 *
 * The ISO-TP channel runs over the userspace CAN hub (tollgate-canhub,
 * $TG_CANHUB) against an ECU in a child process that answers 22, 31 and 36
 * the same way over TgIsotpSocket.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tg-diag.h"
#include "tg-doip.h"
#include "tg-keyproto.h"
#include "tg-test-proc.h"

#define TESTER 0x0E00
#define ENTITY 0x1000
#define ECU 0x1001
#define BAD_TARGET 0x0BAD
#define ECU_NOHASH 0x1002 /* takes TransferData without hashing it: the channel's own rate */

typedef struct Server {
        int lfd;
        uint16_t port;
        bool deny;
        pthread_t thread;
        int connections;
        bool alive_answered;
        int tester_present; /* 3E 80 received */
} Server;

static int send_all(int fd, const uint8_t *p, size_t n) {
        while (n > 0) {
                ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

static int send_msg(int fd, const TgDoipMessage *m) {
        uint8_t buf[256];
        size_t n;

        assert_eq(tg_doip_message_encode(m, buf, sizeof buf, &n), TG_DOIP_OK);
        return send_all(fd, buf, n);
}

static int send_diag(int fd, uint16_t source, const uint8_t *data, size_t len) {
        TgDoipMessage m = { .version = TG_DOIP_VERSION_2012, .type = TG_DOIP_DIAG_MESSAGE,
                            .diag = { .source_address = source, .target_address = TESTER, .data = data,
                                      .data_len = len } };
        return send_msg(fd, &m);
}

static int send_ack(int fd, uint16_t type, uint16_t source, uint8_t code) {
        TgDoipMessage m = { .version = TG_DOIP_VERSION_2012, .type = type,
                            .diag = { .source_address = source, .target_address = TESTER, .code = code } };
        return send_msg(fd, &m);
}

/* One message from the tester; false to close the connection. */
static bool server_handle(Server *s, int fd, const TgDoipMessage *m) {
        switch (m->type) {
        case TG_DOIP_ROUTING_ACTIVATION_REQUEST: {
                TgDoipMessage r = { .version = TG_DOIP_VERSION_2012, .type = TG_DOIP_ROUTING_ACTIVATION_RESPONSE,
                                    .activation_response = {
                                            .tester_address = m->activation_request.source_address,
                                            .entity_address = ENTITY,
                                            .code = s->deny ? TG_DOIP_RA_UNKNOWN_SOURCE : TG_DOIP_RA_SUCCESS } };
                assert_eq(m->activation_request.activation_type, TG_DOIP_ACTIVATION_DEFAULT);
                if (m->activation_request.source_address != TESTER)
                        r.activation_response.code = TG_DOIP_RA_UNKNOWN_SOURCE;
                if (send_msg(fd, &r) < 0)
                        return false;
                return r.activation_response.code == TG_DOIP_RA_SUCCESS;
        }
        case TG_DOIP_ALIVE_CHECK_RESPONSE:
                if (m->alive_source_address == TESTER) {
                        static const uint8_t ok[] = { 0x54 };
                        s->alive_answered = true;
                        return send_diag(fd, ECU, ok, sizeof ok) >= 0;
                }
                return true;
        case TG_DOIP_DIAG_MESSAGE:
                break;
        default:
                return true;
        }

        const uint8_t *q = m->diag.data;
        size_t n = m->diag.data_len;
        uint16_t target = m->diag.target_address;

        if (target == BAD_TARGET)
                return send_ack(fd, TG_DOIP_DIAG_NACK, ENTITY, TG_DOIP_DIAG_NACK_UNKNOWN_TARGET) >= 0;
        if (send_ack(fd, TG_DOIP_DIAG_ACK, target, TG_DOIP_DIAG_ACK_OK) < 0)
                return false;

        switch (q[0]) {
        case 0x22: {
                static const uint8_t r[] = { 0x62, 0xF1, 0x89, '1', '.', '2' };
                return send_diag(fd, target, r, sizeof r) >= 0;
        }
        case 0x31: {
                static const uint8_t pending[] = { 0x7F, 0x31, 0x78 }, r[] = { 0x71, 0x01, 0x02, 0x03 };
                unsigned count = n > 4 ? q[4] : 0;
                for (unsigned i = 0; i < count; i++) {
                        if (send_diag(fd, target, pending, sizeof pending) < 0)
                                return false;
                        usleep(10000);
                }
                return send_diag(fd, target, r, sizeof r) >= 0;
        }
        case 0x11:
                return true;
        case 0x85:
                return false;
        case 0x14: {
                TgDoipMessage a = { .version = TG_DOIP_VERSION_2012, .type = TG_DOIP_ALIVE_CHECK_REQUEST };
                return send_msg(fd, &a) >= 0;
        }
        case 0x36: {
                uint8_t r[2 + TG_KP_SHA256_SIZE] = { 0x76, n > 1 ? q[1] : 0 };
                if (target == ECU_NOHASH)
                        return send_diag(fd, target, r, 2) >= 0;
                assert_ok(tg_kp_sha256(q + 2, n - 2, r + 2));
                return send_diag(fd, target, r, sizeof r) >= 0;
        }
        case 0x3E: {
                static const uint8_t r[] = { 0x7E, 0x00 };
                if (n > 1 && (q[1] & 0x80)) {
                        __atomic_add_fetch(&s->tester_present, 1, __ATOMIC_SEQ_CST);
                        return true;
                }
                return send_diag(fd, target, r, sizeof r) >= 0;
        }
        default:
                return true;
        }
}

static void server_connection(Server *s, int fd) {
        static uint8_t buf[256 * 1024];
        TgDoipDecoder d;

        tg_doip_decoder_init(&d, 8 * 1024 * 1024);
        for (bool open = true; open;) {
                ssize_t n = recv(fd, buf, sizeof buf, 0);
                size_t off = 0;

                if (n <= 0)
                        break;
                while (open && off < (size_t) n) {
                        TgDoipMessage m;
                        bool complete;
                        size_t used;

                        assert_eq(tg_doip_decoder_push(&d, buf + off, (size_t) n - off, &used, &m, &complete),
                                  TG_DOIP_OK);
                        off += used;
                        if (complete)
                                open = server_handle(s, fd, &m);
                }
        }
        tg_doip_decoder_done(&d);
}

static void *server_main(void *userdata) {
        Server *s = userdata;

        for (;;) {
                int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        break; /* shut down */
                }
                /* The ack and the response are two small writes in a row:
                 * without NODELAY, Nagle holds the second one until the
                 * tester's delayed ACK (40 ms per request). */
                (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int) { 1 }, sizeof(int));
                s->connections++;
                server_connection(s, fd);
                safe_close(fd);
        }
        return NULL;
}

static void server_start(Server *s, bool deny) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof sa;

        *s = (Server) { .deny = deny };
        s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_se(s->lfd >= 0);
        assert_ok(bind(s->lfd, (struct sockaddr *) &sa, sizeof sa));
        assert_ok(listen(s->lfd, 4));
        assert_ok(getsockname(s->lfd, (struct sockaddr *) &sa, &len));
        s->port = ntohs(sa.sin_port);
        assert_se(pthread_create(&s->thread, NULL, server_main, s) == 0);
}

static void server_stop(Server *s) {
        (void) shutdown(s->lfd, SHUT_RDWR);
        assert_se(pthread_join(s->thread, NULL) == 0);
        safe_close(s->lfd);
}

static TgDiagChannel *channel_new_keepalive(sd_event *e, uint16_t port, uint64_t keepalive_usec) {
        TgDiagDoipConfig cfg = {
                .address = "127.0.0.1",
                .port = port,
                .tester_address = TESTER,
                .activation_type = TG_DOIP_ACTIVATION_DEFAULT,
                .tester_present = keepalive_usec > 0,
                .keepalive_target = 0xE400,
                .keepalive_usec = keepalive_usec,
        };
        TgDiagChannel *ch;

        assert_ok(tg_diag_doip_new(e, &cfg, &ch));
        ch->timing.p2_usec = 100 * USEC_PER_MSEC;
        ch->timing.p2_star_usec = 300 * USEC_PER_MSEC;
        ch->timing.margin_usec = 50 * USEC_PER_MSEC;
        ch->timing.max_pending = 10;
        return ch;
}

static TgDiagChannel *channel_new(sd_event *e, uint16_t port) {
        return channel_new_keepalive(e, port, 0);
}

static sd_event *event_new(void) {
        sd_event *e;

        assert_ok(sd_event_new(&e));
        return e;
}

static uint64_t mono_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static const uint8_t rdbi[] = { 0x22, 0xF1, 0x89 };

static void check_rdbi(TgDiagChannel *ch) {
        TgDiagResult r;
        _cleanup_free_ uint8_t *data = NULL;
        size_t len = 0;

        assert_eq(tg_diag_request_wait(ch, ECU, rdbi, sizeof rdbi, &r, &data, &len), 0);
        assert_eq(r.error, TG_DIAG_OK);
        assert_eq(len, 6u);
        assert_memeq(data, "\x62\xF1\x89" "1.2", 6);
}

typedef struct Async {
        bool done;
        TgDiagResult r;
        uint8_t data[16];
} Async;

static void async_cb(TgDiagChannel *ch, const TgDiagResult *r, void *userdata) {
        Async *a = userdata;

        (void) ch;
        a->done = true;
        a->r = *r;
        if (r->error == TG_DIAG_OK)
                memcpy(a->data, r->data, MIN(r->len, sizeof a->data));
}

static void test_happy_path(void) {
        Server s;
        sd_event *e = event_new();
        TgDiagChannel *ch;
        TgDiagResult r;
        Async a = {};
        char buf[128];

        server_start(&s, false);
        ch = channel_new(e, s.port);
        assert_eq(tg_diag_doip_entity_address(ch), 0);
        assert_eq(tg_diag_connect_wait(ch, &r), 0);
        assert_eq(tg_diag_doip_entity_address(ch), ENTITY);
        check_rdbi(ch);

        /* the async API: the callback never runs from within the call */
        assert_ok(tg_diag_request(ch, ECU, rdbi, sizeof rdbi, async_cb, &a));
        assert_eq(tg_diag_request(ch, ECU, rdbi, sizeof rdbi, async_cb, &a), -EBUSY);
        assert_se(!a.done);
        while (!a.done)
                assert_ok(sd_event_run(e, UINT64_MAX));
        assert_eq(a.r.error, TG_DIAG_OK);
        assert_eq(a.r.len, 6u);
        assert_eq(a.data[0], 0x62);
        assert_streq(tg_diag_result_format(&a.r, buf, sizeof buf), "ok");

        /* a suppressed TesterPresent completes on the DoIP ack, empty */
        {
                static const uint8_t tp[] = { 0x3E, 0x80 }, tp_answer[] = { 0x3E, 0x00 };
                _cleanup_free_ uint8_t *data = NULL;
                size_t len = 99;

                assert_eq(tg_diag_request_wait(ch, ECU, tp, sizeof tp, &r, NULL, &len), 0);
                assert_eq(len, 0u);
                assert_eq(tg_diag_request_wait(ch, ECU, tp_answer, sizeof tp_answer, &r, &data, &len), 0);
                assert_eq(len, 2u);
                assert_eq(data[0], 0x7E);
        }
        assert_eq(tg_diag_request(ch, ECU, rdbi, 0, async_cb, &a), -EINVAL);
        tg_diag_free(ch);
        server_stop(&s);
        assert_eq(s.connections, 1);
        sd_event_unref(e);
}

static void test_pending_within_cap(void) {
        static const uint8_t req[] = { 0x31, 0x01, 0x02, 0x03, 5 };
        Server s;
        sd_event *e = event_new();
        TgDiagChannel *ch;
        TgDiagResult r;
        _cleanup_free_ uint8_t *data = NULL;
        size_t len;

        server_start(&s, false);
        ch = channel_new(e, s.port);
        assert_eq(tg_diag_request_wait(ch, ECU, req, sizeof req, &r, &data, &len), 0);
        assert_eq(r.n_pending, 5u);
        assert_eq(len, 4u);
        assert_memeq(data, "\x71\x01\x02\x03", 4);
        tg_diag_free(ch);
        server_stop(&s);
        sd_event_unref(e);
}

static void test_pending_storm(void) {
        static const uint8_t req[] = { 0x31, 0x01, 0x02, 0x03, 20 };
        Server s;
        sd_event *e = event_new();
        TgDiagChannel *ch;
        TgDiagResult r;
        char buf[128];

        server_start(&s, false);
        ch = channel_new(e, s.port);
        assert_eq(tg_diag_request_wait(ch, ECU, req, sizeof req, &r, NULL, NULL), -EIO);
        assert_eq(r.error, TG_DIAG_PENDING_STORM);
        assert_eq(r.n_pending, 10u);
        assert_contains(tg_diag_result_format(&r, buf, sizeof buf), "pending-storm");
        tg_diag_free(ch);
        server_stop(&s);
        sd_event_unref(e);
}

static void test_p2_timeout(void) {
        static const uint8_t req[] = { 0x11, 0x01 };
        Server s;
        sd_event *e = event_new();
        TgDiagChannel *ch;
        TgDiagResult r;
        uint64_t t0, dt;

        server_start(&s, false);
        ch = channel_new(e, s.port);
        assert_eq(tg_diag_connect_wait(ch, &r), 0);
        t0 = mono_usec();
        assert_eq(tg_diag_request_wait(ch, ECU, req, sizeof req, &r, NULL, NULL), -EIO);
        dt = mono_usec() - t0;
        assert_eq(r.error, TG_DIAG_TIMEOUT);
        /* P2 100 ms + margin 50 ms */
        assert_le(150 * USEC_PER_MSEC, dt);
        assert_le(dt, 1000 * USEC_PER_MSEC);
        /* the channel is usable afterwards */
        check_rdbi(ch);
        tg_diag_free(ch);
        server_stop(&s);
        sd_event_unref(e);
}

static void test_nack(void) {
        Server s;
        sd_event *e = event_new();
        TgDiagChannel *ch;
        TgDiagResult r;
        char buf[128];

        server_start(&s, false);
        ch = channel_new(e, s.port);
        assert_eq(tg_diag_request_wait(ch, BAD_TARGET, rdbi, sizeof rdbi, &r, NULL, NULL), -EIO);
        assert_eq(r.error, TG_DIAG_NACK);
        assert_eq(r.code, TG_DOIP_DIAG_NACK_UNKNOWN_TARGET);
        assert_contains(tg_diag_result_format(&r, buf, sizeof buf), "diagnostic-nack 0x03");
        check_rdbi(ch);
        tg_diag_free(ch);
        server_stop(&s);
        sd_event_unref(e);
}

static void test_routing_denied(void) {
        Server s;
        sd_event *e = event_new();
        TgDiagChannel *ch;
        TgDiagResult r;
        char buf[128];

        server_start(&s, true);
        ch = channel_new(e, s.port);
        assert_eq(tg_diag_connect_wait(ch, &r), -EIO);
        assert_eq(r.error, TG_DIAG_ROUTING_DENIED);
        assert_eq(r.code, TG_DOIP_RA_UNKNOWN_SOURCE);
        assert_eq(tg_diag_request_wait(ch, ECU, rdbi, sizeof rdbi, &r, NULL, NULL), -EIO);
        assert_eq(r.error, TG_DIAG_ROUTING_DENIED);
        assert_eq(r.code, 0x00);
        assert_contains(tg_diag_result_format(&r, buf, sizeof buf), "routing-activation-denied 0x00");
        tg_diag_free(ch);
        server_stop(&s);
        assert_eq(s.connections, 2);
        sd_event_unref(e);
}

static void test_connection_drop(void) {
        static const uint8_t req[] = { 0x85, 0x02 };
        Server s;
        sd_event *e = event_new();
        TgDiagChannel *ch;
        TgDiagResult r;

        server_start(&s, false);
        ch = channel_new(e, s.port);
        assert_eq(tg_diag_request_wait(ch, ECU, req, sizeof req, &r, NULL, NULL), -EIO);
        assert_eq(r.error, TG_DIAG_CONNECTION_LOST);
        /* the next request connects again */
        check_rdbi(ch);
        tg_diag_free(ch);
        server_stop(&s);
        assert_eq(s.connections, 2);
        sd_event_unref(e);
}

static void test_connect_refused(void) {
        Server s;
        sd_event *e = event_new();
        TgDiagChannel *ch;
        TgDiagResult r = {};
        uint16_t port;
        int k;

        /* a port nobody listens on: one that was just freed */
        server_start(&s, false);
        port = s.port;
        server_stop(&s);
        ch = channel_new(e, port);
        k = tg_diag_request_wait(ch, ECU, rdbi, sizeof rdbi, &r, NULL, NULL);
        if (k == -EIO) {
                assert_eq(r.error, TG_DIAG_CONNECT_FAILED);
                assert_eq(r.errno_, ECONNREFUSED);
        } else
                assert_eq(k, -ECONNREFUSED);
        tg_diag_free(ch);
        sd_event_unref(e);
}

static void test_alive_check(void) {
        static const uint8_t req[] = { 0x14, 0xFF, 0xFF, 0xFF };
        Server s;
        sd_event *e = event_new();
        TgDiagChannel *ch;
        TgDiagResult r;
        _cleanup_free_ uint8_t *data = NULL;
        size_t len;

        server_start(&s, false);
        ch = channel_new(e, s.port);
        assert_eq(tg_diag_request_wait(ch, ECU, req, sizeof req, &r, &data, &len), 0);
        assert_eq(len, 1u);
        assert_eq(data[0], 0x54);
        tg_diag_free(ch);
        server_stop(&s);
        assert_se(s.alive_answered);
        sd_event_unref(e);
}

static void test_transfer_4mib(void) {
        const size_t data_len = 4 * 1024 * 1024, rounds = 8;
        Server s;
        sd_event *e = event_new();
        TgDiagChannel *ch;
        TgDiagResult r;
        _cleanup_free_ uint8_t *req = malloc(data_len + 2);
        uint8_t sha[TG_KP_SHA256_SIZE];
        uint64_t t0, in_requests = 0, total = 0;

        assert_se(req);
        for (size_t i = 0; i < data_len; i++)
                req[2 + i] = (uint8_t) (i * 2654435761u >> 13);
        req[0] = 0x36;
        server_start(&s, false);
        ch = channel_new(e, s.port);
        ch->timing.p2_usec = 5 * USEC_PER_SEC; /* a loaded CI machine hashing 4 MiB */
        assert_eq(tg_diag_connect_wait(ch, &r), 0);
        t0 = mono_usec();
        for (size_t k = 0; k < rounds; k++) {
                _cleanup_free_ uint8_t *data = NULL;
                size_t len;

                req[1] = (uint8_t) (k + 1);
                req[2] = (uint8_t) k; /* each block differs */
                assert_ok(tg_kp_sha256(req + 2, data_len, sha));
                uint64_t t1 = mono_usec();
                assert_eq(tg_diag_request_wait(ch, ECU, req, data_len + 2, &r, &data, &len), 0);
                in_requests += mono_usec() - t1;
                assert_eq(len, 2u + TG_KP_SHA256_SIZE);
                assert_eq(data[0], 0x76);
                assert_eq(data[1], (uint8_t) (k + 1));
                assert_memeq(data + 2, sha, TG_KP_SHA256_SIZE);
                total += data_len;
        }
        {
                double secs = (double) (mono_usec() - t0) / 1e6, req_secs = (double) in_requests / 1e6;
                fprintf(stderr, "   %zu × 4 MiB TransferData over DoIP on loopback: %.0f MB/s request to"
                                " response (the entity's decoding and SHA-256 included), %.0f MB/s with the"
                                " tester's SHA-256 too (%.3f s in all)\n",
                        rounds, (double) total / 1e6 / req_secs, (double) total / 1e6 / secs, secs);
        }
        /* the same without any hashing: what the channel and the entity's decoder do */
        t0 = mono_usec();
        for (size_t k = 0; k < rounds; k++) {
                _cleanup_free_ uint8_t *data = NULL;
                size_t len;

                req[1] = (uint8_t) (k + 1);
                assert_eq(tg_diag_request_wait(ch, ECU_NOHASH, req, data_len + 2, &r, &data, &len), 0);
                assert_eq(len, 2u);
                assert_eq(data[1], (uint8_t) (k + 1));
        }
        fprintf(stderr, "   the same without hashing: %.0f MB/s\n",
                (double) total / 1e6 / ((double) (mono_usec() - t0) / 1e6));
        tg_diag_free(ch);
        server_stop(&s);
        sd_event_unref(e);
}

/* ---- ISO-TP over the hub ---- */

#define ECU_TX 0x7E0 /* tester → ECU */
#define ECU_RX 0x7E8
#define ECU_ADDR ECU /* the address requests name it by */

/* The ECU in a child: answers until killed. */
static pid_t isotp_ecu_start(const char *spec) {
        int ready[2];
        pid_t pid;
        char c;

        assert_se(pipe(ready) == 0);
        pid = fork();
        assert_se(pid >= 0);
        if (pid == 0) {
                TgIsotpConfig cfg;
                TgCanBus *bus = NULL;
                TgIsotpSocket *s = NULL;
                TgCanOptions o = { .filters = &cfg.rx_id, .n_filters = 1 };

                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                tg_isotp_config_init(&cfg, ECU_RX, ECU_TX, false);
                /* The unpaced hub drops what a reader cannot take: let flow
                 * control pace the sender, as on a real bus. */
                cfg.bs = 8;
                assert_ok(tg_can_open(spec, &o, &bus));
                assert_ok(tg_isotp_socket_new(bus, &cfg, &s));
                assert_se(write(ready[1], "r", 1) == 1);
                for (;;) {
                        _cleanup_free_ uint8_t *q = NULL;
                        size_t n = 0;
                        int r = tg_isotp_socket_recv_wait(s, &q, &n, 30 * USEC_PER_SEC);

                        if (r == -ETIMEDOUT)
                                continue;
                        assert_ok(r);
                        if (q[0] == 0x22) {
                                static const uint8_t a[] = { 0x62, 0xF1, 0x89, '1', '.', '2' };
                                assert_ok(tg_isotp_socket_send_wait(s, a, sizeof a, USEC_PER_SEC));
                        } else if (q[0] == 0x31) {
                                static const uint8_t pending[] = { 0x7F, 0x31, 0x78 }, a[] = { 0x71, 0x01, 0x02, 0x03 };
                                for (unsigned i = 0; n > 4 && i < q[4]; i++) {
                                        assert_ok(tg_isotp_socket_send_wait(s, pending, sizeof pending, USEC_PER_SEC));
                                        usleep(10000);
                                }
                                assert_ok(tg_isotp_socket_send_wait(s, a, sizeof a, USEC_PER_SEC));
                        } else if (q[0] == 0x36) {
                                uint8_t a[2 + TG_KP_SHA256_SIZE] = { 0x76, q[1] };
                                assert_ok(tg_kp_sha256(q + 2, n - 2, a + 2));
                                assert_ok(tg_isotp_socket_send_wait(s, a, sizeof a, USEC_PER_SEC));
                        }
                }
        }
        assert_se(read(ready[0], &c, 1) == 1);
        close(ready[0]);
        close(ready[1]);
        usleep(20000); /* the child's connection is accepted by the hub */
        return pid;
}

static void test_isotp_channel(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        static const TgDiagIsotpEcu ecus[] = { { .address = ECU_ADDR, .tx_id = ECU_TX, .rx_id = ECU_RX } };
        static const uint8_t pend[] = { 0x31, 0x01, 0x02, 0x03, 3 }, reset[] = { 0x11, 0x01 },
                             tp[] = { 0x3E, 0x80 };
        TgTestHub hub;
        sd_event *e;
        TgDiagChannel *ch;
        TgDiagResult r;
        uint8_t td[4095], sha[TG_KP_SHA256_SIZE];
        pid_t ecu;

        if (!tg_test_hub_start(&hub, dir, "bus", NULL))
                return;
        ecu = isotp_ecu_start(hub.spec);
        e = event_new();
        TgIsotpConfig tmpl;

        tg_isotp_config_init(&tmpl, 0, 0, false);
        tmpl.bs = 8;
        /* a bit rate for a hub is a no-op (no interface to bring up) */
        assert_ok(tg_diag_isotp_new(e, &(TgDiagIsotpConfig) { .bus = hub.spec, .isotp = &tmpl, .ecus = ecus,
                                                              .n_ecus = 1, .functional_tx_id = 0x7DF,
                                                              .bitrate = 500000, .restart_ms = 100 }, &ch));
        ch->timing.p2_usec = 100 * USEC_PER_MSEC;
        ch->timing.p2_star_usec = 300 * USEC_PER_MSEC;
        ch->timing.margin_usec = 50 * USEC_PER_MSEC;
        ch->timing.max_pending = 10;

        assert_eq(tg_diag_connect_wait(ch, &r), 0);
        check_rdbi(ch);
        {
                _cleanup_free_ uint8_t *data = NULL;
                size_t len;

                assert_eq(tg_diag_request_wait(ch, ECU_ADDR, pend, sizeof pend, &r, &data, &len), 0);
                assert_eq(r.n_pending, 3u);
                assert_memeq(data, "\x71\x01\x02\x03", 4);
        }
        /* the largest classic ISO-TP message, hashed at the ECU */
        for (size_t i = 0; i < sizeof td; i++)
                td[i] = (uint8_t) (i * 7 + 1);
        td[0] = 0x36;
        td[1] = 0x01;
        assert_ok(tg_kp_sha256(td + 2, sizeof td - 2, sha));
        {
                _cleanup_free_ uint8_t *data = NULL;
                size_t len;

                assert_eq(tg_diag_request_wait(ch, ECU_ADDR, td, sizeof td, &r, &data, &len), 0);
                assert_eq(len, 2u + TG_KP_SHA256_SIZE);
                assert_memeq(data + 2, sha, TG_KP_SHA256_SIZE);
        }
        /* functional, suppressed: done once the frame left */
        {
                size_t len = 99;

                assert_eq(tg_diag_request_wait(ch, TG_DIAG_FUNCTIONAL_ADDRESS, tp, sizeof tp, &r, NULL, &len), 0);
                assert_eq(len, 0u);
        }
        assert_eq(tg_diag_request_wait(ch, ECU_ADDR, reset, sizeof reset, &r, NULL, NULL), -EIO);
        assert_eq(r.error, TG_DIAG_TIMEOUT);
        assert_eq(tg_diag_request_wait(ch, 0x1234, rdbi, sizeof rdbi, &r, NULL, NULL), -ENXIO);
        check_rdbi(ch);

        tg_diag_free(ch);
        sd_event_unref(e);
        assert_se(kill(ecu, SIGTERM) == 0);
        assert_se(waitpid(ecu, NULL, 0) == ecu);
        tg_test_hub_stop(&hub);
}

/* A SocketCAN interface: the kernel's CAN_ISOTP is asked for first (and
 * required when so configured), the userspace engine is the fallback, and a
 * bit rate brings the interface up first. This machine has no CAN in its
 * kernel, so these are the named errors of each path. */
static void test_isotp_socketcan(void) {
        static const TgDiagIsotpEcu ecus[] = { { .address = ECU_ADDR, .tx_id = ECU_TX, .rx_id = ECU_RX } };
        static const TgDiagIsotpKernel modes[] = { TG_DIAG_ISOTP_KERNEL_AUTO, TG_DIAG_ISOTP_KERNEL_NEVER,
                                                   TG_DIAG_ISOTP_KERNEL_REQUIRED };
        sd_event *e = event_new();
        TgDiagChannel *ch;
        int r;

        for (size_t i = 0; i < ELEMENTSOF(modes); i++) {
                assert_ok(tg_diag_isotp_new(e, &(TgDiagIsotpConfig) { .bus = "tgtest0", .ecus = ecus, .n_ecus = 1,
                                                                      .kernel = modes[i] }, &ch));
                r = tg_diag_request(ch, ECU_ADDR, rdbi, sizeof rdbi, NULL, NULL);
                fprintf(stderr, "  kernel mode %zu: %s\n", i, strerror(-r));
                /* no PF_CAN / CAN_ISOTP here, or no such interface where there is */
                assert_se(r == -EAFNOSUPPORT || r == -ENODEV);
                tg_diag_free(ch);
        }
        assert_ok(tg_diag_isotp_new(e, &(TgDiagIsotpConfig) { .bus = "tgtest0", .ecus = ecus, .n_ecus = 1,
                                                              .bitrate = 500000, .restart_ms = 100 }, &ch));
        r = tg_diag_request(ch, ECU_ADDR, rdbi, sizeof rdbi, NULL, NULL);
        fprintf(stderr, "  bring-up: %s\n", strerror(-r));
        assert_se(r == -ENODEV || r == -EOPNOTSUPP || r == -EAFNOSUPPORT);
        tg_diag_free(ch);
        assert_eq(tg_diag_isotp_new(e, &(TgDiagIsotpConfig) { .bus = "tgtest0", .kernel = 7 }, &ch), -EINVAL);
        sd_event_unref(e);
}

/* TesterPresent while idle; its acks do not confuse the next request's. */
static void test_keepalive(void) {
        Server s;
        sd_event *e = event_new();
        TgDiagChannel *ch;
        TgDiagResult r;
        uint64_t until;

        server_start(&s, false);
        ch = channel_new_keepalive(e, s.port, 30 * USEC_PER_MSEC);
        check_rdbi(ch);
        until = mono_usec() + 200 * USEC_PER_MSEC;
        while (mono_usec() < until)
                assert_ok(sd_event_run(e, 10 * USEC_PER_MSEC));
        assert_le(3, __atomic_load_n(&s.tester_present, __ATOMIC_SEQ_CST));
        check_rdbi(ch);
        assert_eq(tg_diag_request_wait(ch, BAD_TARGET, rdbi, sizeof rdbi, &r, NULL, NULL), -EIO);
        assert_eq(r.error, TG_DIAG_NACK);
        check_rdbi(ch);
        tg_diag_free(ch);
        server_stop(&s);
        sd_event_unref(e);
}

TG_TEST_MAIN(TEST(happy_path), TEST(isotp_socketcan),
             TEST(pending_within_cap),
             TEST(pending_storm),
             TEST(p2_timeout),
             TEST(nack),
             TEST(routing_denied),
             TEST(connection_drop),
             TEST(connect_refused),
             TEST(alive_check),
             TEST(keepalive),
             TEST(transfer_4mib),
             TEST(isotp_channel))
