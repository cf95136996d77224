/* SPDX-License-Identifier: MIT */
/*
 * tollgate-ecu-sim: a simulated vehicle's ECUs (tools/ecu-sim/ecu-model.h)
 * behind a DoIP entity (ISO 13400-2 over TCP) and on CAN buses through an
 * ISO-TP node (ecu-sim-isotp.c), configured on the command line (--ecu=,
 * DoIP only) or from a file (--config=, ecu-sim-conf.h) (issue 6).
 *
 * Routing activation takes tester addresses 0x0E00…0x0FFF (0x10) and
 * refuses others (0x00, then the connection closes). A diagnostic message
 * to a hosted ECU is acknowledged (0x8002) and handed to its model; the
 * model's responses (0x78 and delayed answers included, driven by one timer
 * on the models' deadlines) go back as 0x8001 from the ECU's address to the
 * connection the request came on. 0xE400 is the functional address: every
 * ECU gets the request. An unknown target gets 0x8003 0x03. When a model
 * resets (ECUReset, injected faults) the connection that talks to it is
 * dropped, as a real ECU reset drops it. SIGUSR1 prints each ECU's state
 * (active bank, versions, valid flags, SHA-256 of each bank) to stdout.
 * SIGHUP reads the configuration file again and re-arms every ECU's faults
 * and preconditions from it (nothing else changes: the flash memory stays).
 *
 * ECUs on a CAN bus answer on their response id what arrives complete on
 * their request id; functional requests (the bus's FunctionalId=) go to
 * every ECU of that bus, those to 0xE400 over DoIP to every ECU on the
 * Ethernet.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "ecu-model.h"
#include "ecu-sim-conf.h"
#include "ecu-sim-isotp.h"
#include "tg-can.h"
#include "tg-doip.h"
#include "tg-event.h"
#include "tg-log.h"
#include "tg-parse.h"
#include "tg-tool.h"

#define FUNCTIONAL_ADDRESS ECU_SIM_FUNCTIONAL_ADDRESS
#define MAX_ECUS ECU_SIM_MAX_ECUS
#define MAX_CONNS 16
#define READ_CHUNK (256 * 1024)
#define RESP_SIZE 4096

typedef struct Sim Sim;
typedef struct Conn Conn;

typedef struct Ecu {
        Sim *sim;
        const EcuSimEcu *conf;  /* in sim->config */
        uint16_t address;
        EcuModel *model;
        /* DoIP */
        Conn *owner; /* where its responses go */
        uint16_t tester;
        /* CAN (conf->bus_index ≥ 0) */
        EcuIsotp *isotp;
} Ecu;

struct Conn {
        Sim *sim;
        int fd;
        sd_event_source *io;
        TgDoipDecoder decoder;
        uint8_t version;
        bool activated;
        uint16_t tester;
        uint8_t *out;
        size_t out_len, out_allocated;
        bool close_after_flush;
        Conn *next;
};

struct Sim {
        sd_event *event;
        const char *config_path;
        EcuSimConfig config;
        EcuIsotp *functional[ECU_SIM_MAX_BUSES];
        const char *listen;
        int listen_fd, udp_fd;
        uint16_t port;          /* the TCP (and UDP) port bound: --listen=ADDR:0 picks one */
        sd_event_source *listen_io, *udp_io;
        sd_event_source *timer;
        Ecu ecus[MAX_ECUS];
        unsigned n_ecus;
        uint64_t write_speed;
        uint32_t erase_time_ms;
        uint32_t max_block;
        uint32_t max_payload;
        Conn *conns;
        unsigned n_conns;
        uint8_t *rbuf;
};

static void conn_free(Conn *c) {
        Sim *s = c->sim;

        for (Conn **p = &s->conns; *p; p = &(*p)->next)
                if (*p == c) {
                        *p = c->next;
                        break;
                }
        s->n_conns--;
        for (unsigned i = 0; i < s->n_ecus; i++)
                if (s->ecus[i].owner == c)
                        s->ecus[i].owner = NULL;
        sd_event_source_disable_unref(c->io);
        if (c->fd >= 0)
                close(c->fd);
        tg_doip_decoder_done(&c->decoder);
        free(c->out);
        free(c);
}

/* Write what is queued; 0 all written, 1 some left (EPOLLOUT armed), <0 error. */
static int conn_flush(Conn *c) {
        size_t off = 0;

        while (off < c->out_len) {
                ssize_t n = send(c->fd, c->out + off, c->out_len - off, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        return -errno;
                }
                off += (size_t) n;
        }
        if (off > 0) { /* (a connection that never queued anything has no buffer) */
                memmove(c->out, c->out + off, c->out_len - off);
                c->out_len -= off;
        }
        (void) sd_event_source_set_io_events(c->io, c->out_len ? EPOLLIN | EPOLLOUT : EPOLLIN);
        return c->out_len ? 1 : 0;
}

static int conn_queue(Conn *c, const uint8_t *a, size_t an, const uint8_t *b, size_t bn) {
        if (c->out_len + an + bn > c->out_allocated) {
                size_t want = (c->out_len + an + bn) * 2;
                uint8_t *p = realloc(c->out, want);
                if (!p)
                        return -ENOMEM;
                c->out = p;
                c->out_allocated = want;
        }
        memcpy(c->out + c->out_len, a, an);
        c->out_len += an;
        if (bn) {
                memcpy(c->out + c->out_len, b, bn);
                c->out_len += bn;
        }
        return 0;
}

static int conn_send_message(Conn *c, const TgDoipMessage *m) {
        uint8_t buf[128];
        size_t n;

        if (tg_doip_message_encode(m, buf, sizeof buf, &n) != TG_DOIP_OK)
                return -EINVAL;
        return conn_queue(c, buf, n, NULL, 0);
}

static int conn_send_diag(Conn *c, uint16_t source, uint16_t target, const uint8_t *data, size_t len) {
        uint8_t h[TG_DOIP_DIAG_HEADER_SIZE];

        tg_doip_put_diag_header(h, c->version, source, target, (uint32_t) len);
        return conn_queue(c, h, sizeof h, data, len);
}

static int conn_send_diag_ack(Conn *c, uint16_t type, uint16_t source, uint16_t target, uint8_t code,
                              const uint8_t *req, size_t req_len) {
        TgDoipMessage m = {
                .version = c->version,
                .type = type,
                .diag = { .source_address = source, .target_address = target, .code = code,
                          .data = req, .data_len = req_len > 4 ? 4 : req_len },
        };
        return conn_send_message(c, &m);
}

static void sim_arm(Sim *s);

/* After the model answered or was polled: send, check for a reset. */
static void ecu_deliver(Sim *s, Ecu *e, const uint8_t *resp, size_t len) {
        if (e->isotp) {
                int r = ecu_isotp_send(e->isotp, resp, len);
                if (r < 0)
                        log_warning("ECU %s: response not sent: %s", e->conf->name, strerror(-r));
                return;
        }
        if (!e->owner) {
                log_debug("ECU 0x%04X: response with no connection, dropped.", e->address);
                return;
        }
        if (conn_send_diag(e->owner, e->address, e->tester, resp, len) < 0)
                log_warning("ECU 0x%04X: out of memory for a response.", e->address);
        (void) s;
}

static void ecu_check_reset(Ecu *e) {
        if (!ecu_model_take_reset(e->model))
                return;
        log_info("ECU %s (0x%04X) reset (software %s).", e->conf->name, e->address, ecu_model_version(e->model));
        if (e->isotp)
                ecu_isotp_reset(e->isotp);
        if (e->owner)
                e->owner->close_after_flush = true;
        e->owner = NULL;
}

static void sim_flush_all(Sim *s) {
        Conn *next;

        for (Conn *c = s->conns; c; c = next) {
                next = c->next;
                int r = conn_flush(c);
                if (r < 0 || (r == 0 && c->close_after_flush)) {
                        if (r < 0)
                                log_info("Connection lost: %s", strerror(-r));
                        else
                                log_info("Closing the connection.");
                        conn_free(c);
                }
        }
}

static void ecu_serve(Sim *s, Conn *c, Ecu *e, const uint8_t *req, size_t n, bool functional) {
        uint8_t resp[RESP_SIZE];
        size_t len = 0;
        uint64_t now;
        int r;

        (void) sd_event_now(s->event, CLOCK_MONOTONIC, &now);
        if (c) {
                e->owner = c;
                e->tester = c->tester;
        }
        r = ecu_model_request(e->model, req, n, functional, now, resp, sizeof resp, &len);
        if (r > 0)
                ecu_deliver(s, e, resp, len);
        else if (r < 0)
                log_debug("ECU 0x%04X: request not served: %s", e->address, strerror(-r));
        ecu_check_reset(e);
}

static void sim_poll(Sim *s) {
        uint8_t resp[RESP_SIZE];
        uint64_t now;

        (void) sd_event_now(s->event, CLOCK_MONOTONIC, &now);
        for (unsigned i = 0; i < s->n_ecus; i++) {
                Ecu *e = &s->ecus[i];
                size_t len;
                while (ecu_model_poll(e->model, now, resp, sizeof resp, &len, NULL) > 0)
                        ecu_deliver(s, e, resp, len);
                ecu_check_reset(e);
        }
}

static int on_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        Sim *s = userdata;

        (void) src;
        (void) usec;
        sim_poll(s);
        sim_flush_all(s);
        sim_arm(s);
        return 0;
}

static void sim_arm(Sim *s) {
        uint64_t next = UINT64_MAX;

        for (unsigned i = 0; i < s->n_ecus; i++) {
                uint64_t d = ecu_model_next_deadline(s->ecus[i].model);
                if (d < next)
                        next = d;
        }
        if (next == UINT64_MAX) {
                if (s->timer)
                        (void) sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
                return;
        }
        if (tg_event_arm(s->event, &s->timer, CLOCK_MONOTONIC, next, TG_TIMER_EXACT, on_timer, s, "ecu-timer") < 0)
                log_warning("Cannot arm the ECU timer.");
}

static bool ecu_on_ethernet(const Ecu *e) {
        return e->conf->bus_index < 0;
}

/* An ECU the DoIP entity routes to. */
static Ecu *sim_find(Sim *s, uint16_t address) {
        for (unsigned i = 0; i < s->n_ecus; i++)
                if (s->ecus[i].address == address && ecu_on_ethernet(&s->ecus[i]))
                        return &s->ecus[i];
        return NULL;
}

/* 0: go on; <0: close the connection. */
static int conn_handle(Conn *c, const TgDoipMessage *m) {
        Sim *s = c->sim;

        c->version = m->version == TG_DOIP_VERSION_DEFAULT ? TG_DOIP_VERSION_2012 : m->version;
        switch (m->type) {
        case TG_DOIP_ROUTING_ACTIVATION_REQUEST: {
                uint16_t sa = m->activation_request.source_address;
                bool ok = sa >= 0x0E00 && sa <= 0x0FFF;
                TgDoipMessage r = {
                        .version = c->version,
                        .type = TG_DOIP_ROUTING_ACTIVATION_RESPONSE,
                        .activation_response = { .tester_address = sa,
                                                 .entity_address = (uint16_t) s->config.entity_address,
                                                 .code = ok ? TG_DOIP_RA_SUCCESS : TG_DOIP_RA_UNKNOWN_SOURCE },
                };
                if (ok && c->activated && c->tester != sa)
                        r.activation_response.code = TG_DOIP_RA_SOURCE_MISMATCH, ok = false;
                (void) conn_send_message(c, &r);
                if (!ok) {
                        log_info("Routing activation refused for 0x%04X.", sa);
                        c->close_after_flush = true;
                        return 0;
                }
                c->activated = true;
                c->tester = sa;
                log_info("Routing activated for tester 0x%04X.", sa);
                return 0;
        }
        case TG_DOIP_ALIVE_CHECK_REQUEST: {
                TgDoipMessage r = { .version = c->version, .type = TG_DOIP_ALIVE_CHECK_RESPONSE,
                                    .alive_source_address = c->tester };
                return conn_send_message(c, &r);
        }
        case TG_DOIP_ALIVE_CHECK_RESPONSE:
                return 0;
        case TG_DOIP_ENTITY_STATUS_REQUEST: {
                TgDoipMessage r = {
                        .version = c->version,
                        .type = TG_DOIP_ENTITY_STATUS_RESPONSE,
                        .entity_status = { .node_type = TG_DOIP_NODE_NODE, .max_sockets = MAX_CONNS,
                                           .open_sockets = (uint8_t) s->n_conns, .has_max_data_size = true,
                                           .max_data_size = s->max_payload + TG_DOIP_HEADER_SIZE },
                };
                return conn_send_message(c, &r);
        }
        case TG_DOIP_POWER_MODE_REQUEST: {
                TgDoipMessage r = { .version = c->version, .type = TG_DOIP_POWER_MODE_RESPONSE,
                                    .power_mode = TG_DOIP_POWER_READY };
                return conn_send_message(c, &r);
        }
        case TG_DOIP_DIAG_MESSAGE: {
                const TgDoipDiag *d = &m->diag;
                if (!c->activated || d->source_address != c->tester) {
                        (void) conn_send_diag_ack(c, TG_DOIP_DIAG_NACK, d->target_address, d->source_address,
                                                  TG_DOIP_DIAG_NACK_INVALID_SOURCE, d->data, d->data_len);
                        c->close_after_flush = true;
                        return 0;
                }
                if (d->target_address == FUNCTIONAL_ADDRESS) {
                        (void) conn_send_diag_ack(c, TG_DOIP_DIAG_ACK, d->target_address, d->source_address,
                                                  TG_DOIP_DIAG_ACK_OK, d->data, d->data_len);
                        for (unsigned i = 0; i < s->n_ecus; i++)
                                if (ecu_on_ethernet(&s->ecus[i]))
                                        ecu_serve(s, c, &s->ecus[i], d->data, d->data_len, true);
                        return 0;
                }
                Ecu *e = sim_find(s, d->target_address);
                if (!e)
                        return conn_send_diag_ack(c, TG_DOIP_DIAG_NACK, d->target_address, d->source_address,
                                                  TG_DOIP_DIAG_NACK_UNKNOWN_TARGET, d->data, d->data_len);
                (void) conn_send_diag_ack(c, TG_DOIP_DIAG_ACK, d->target_address, d->source_address,
                                          TG_DOIP_DIAG_ACK_OK, d->data, d->data_len);
                ecu_serve(s, c, e, d->data, d->data_len, false);
                return 0;
        }
        default: {
                TgDoipMessage r = { .version = c->version, .type = TG_DOIP_GENERIC_NACK,
                                    .nack_code = TG_DOIP_NACK_UNKNOWN_TYPE };
                return conn_send_message(c, &r);
        }
        }
}

static int on_conn(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        Conn *c = userdata;
        Sim *s = c->sim;
        bool lost = false;

        (void) src;
        if (revents & EPOLLIN) {
                for (int rounds = 0; rounds < 16 && !c->close_after_flush; rounds++) {
                        ssize_t n = recv(fd, s->rbuf, READ_CHUNK, 0);
                        if (n < 0) {
                                if (errno == EINTR)
                                        continue;
                                if (errno != EAGAIN)
                                        lost = true;
                                break;
                        }
                        if (n == 0) {
                                lost = true;
                                break;
                        }
                        size_t off = 0;
                        while (off < (size_t) n && !c->close_after_flush) {
                                TgDoipMessage m;
                                size_t used = 0;
                                bool complete = false;
                                TgDoipError err = tg_doip_decoder_push(&c->decoder, s->rbuf + off, (size_t) n - off,
                                                                       &used, &m, &complete);
                                off += used;
                                if (err != TG_DOIP_OK) {
                                        int code = tg_doip_error_nack_code(err);
                                        log_info("DoIP header error: %s", tg_doip_error_to_string(err));
                                        if (code >= 0) {
                                                TgDoipMessage r = { .version = c->version ? c->version
                                                                                          : TG_DOIP_VERSION_2012,
                                                                    .type = TG_DOIP_GENERIC_NACK,
                                                                    .nack_code = (uint8_t) code };
                                                (void) conn_send_message(c, &r);
                                        }
                                        if (tg_doip_error_closes(err))
                                                c->close_after_flush = true;
                                        continue;
                                }
                                if (complete && conn_handle(c, &m) < 0)
                                        lost = true;
                                if (lost)
                                        break;
                        }
                        if (lost || (size_t) n < READ_CHUNK)
                                break;
                }
        }
        if (revents & (EPOLLHUP | EPOLLERR))
                lost = true;
        if (lost) {
                log_info("Tester connection closed.");
                conn_free(c);
        }
        sim_flush_all(s);
        sim_arm(s);
        return 0;
}

static int on_listen(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        Sim *s = userdata;

        (void) src;
        (void) revents;
        for (;;) {
                int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        if (errno != EAGAIN && errno != EINTR)
                                log_warning("accept: %s", strerror(errno));
                        return 0;
                }
                if (s->n_conns >= MAX_CONNS) {
                        log_warning("Refused a connection: %u open already.", s->n_conns);
                        close(cfd);
                        continue;
                }
                (void) setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &(int) { 1 }, sizeof(int));
                Conn *c = calloc(1, sizeof *c);
                if (!c) {
                        close(cfd);
                        continue;
                }
                c->sim = s;
                c->fd = cfd;
                c->version = TG_DOIP_VERSION_2012;
                tg_doip_decoder_init(&c->decoder, s->max_payload);
                if (sd_event_add_io(s->event, &c->io, cfd, EPOLLIN, on_conn, c) < 0) {
                        tg_doip_decoder_done(&c->decoder);
                        close(cfd);
                        free(c);
                        continue;
                }
                (void) sd_event_source_set_description(c->io, "tester");
                c->next = s->conns;
                s->conns = c;
                s->n_conns++;
                log_info("Tester connected (%u open).", s->n_conns);
        }
}

/* UDP vehicle identification: 0x0001 (all), 0x0002 (EID) and 0x0003 (VIN)
 * requests get the announcement (0x0004) back; other messages are ignored. */
static int on_udp(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        Sim *s = userdata;
        uint8_t buf[512], out[128];
        struct sockaddr_storage from;
        socklen_t fl = sizeof from;
        TgDoipMessage m, a = {};
        ssize_t n;
        size_t len;

        (void) src;
        (void) revents;
        n = recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *) &from, &fl);
        if (n <= 0 || tg_doip_message_decode(buf, (size_t) n, sizeof buf, &m) != TG_DOIP_OK)
                return 0;
        a.version = m.version == TG_DOIP_VERSION_DEFAULT ? TG_DOIP_VERSION_2012 : m.version;
        a.type = TG_DOIP_VEHICLE_ANNOUNCEMENT;
        memcpy(a.announcement.vin, s->config.vin, TG_DOIP_VIN_SIZE);
        a.announcement.logical_address = (uint16_t) s->config.entity_address;
        memcpy(a.announcement.eid, "\x02\x00\x00\x00\x10\x00", TG_DOIP_EID_SIZE);
        memcpy(a.announcement.gid, a.announcement.eid, TG_DOIP_GID_SIZE);
        a.announcement.further_action = TG_DOIP_FURTHER_ACTION_NONE;
        switch (m.type) {
        case TG_DOIP_VEHICLE_ID_REQUEST:
                break;
        case TG_DOIP_VEHICLE_ID_REQUEST_EID:
                if (memcmp(m.eid, a.announcement.eid, TG_DOIP_EID_SIZE) != 0)
                        return 0;
                break;
        case TG_DOIP_VEHICLE_ID_REQUEST_VIN:
                if (memcmp(m.vin, s->config.vin, TG_DOIP_VIN_SIZE) != 0)
                        return 0;
                break;
        default:
                return 0;
        }
        if (tg_doip_message_encode(&a, out, sizeof out, &len) != TG_DOIP_OK)
                return 0;
        (void) sendto(fd, out, len, MSG_DONTWAIT, (struct sockaddr *) &from, fl);
        return 0;
}

static int listen_udp(Sim *s, const struct sockaddr *sa, socklen_t sl) {
        int fd = socket(sa->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), r;

        if (fd < 0)
                return log_error_errno(errno, "socket(): %m");
        s->udp_fd = fd;
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int) { 1 }, sizeof(int));
        if (bind(fd, sa, sl) < 0)
                return log_error_errno(errno, "Cannot bind UDP %s: %m", s->listen);
        r = sd_event_add_io(s->event, &s->udp_io, fd, EPOLLIN, on_udp, s);
        if (r < 0)
                return log_error_errno(r, "Cannot watch the UDP socket: %m");
        return 0;
}

static int listen_on(Sim *s) {
        _cleanup_free_ char *host = strdup(s->listen);
        struct sockaddr_storage ss = {};
        socklen_t sl;
        uint64_t port = TG_DOIP_TCP_PORT;
        char *colon;
        int fd, r;

        if (!host)
                return log_error_errno(ENOMEM, "Out of memory.");
        colon = strrchr(host, ':');
        if (colon && !strchr(colon, ']')) {
                *colon = '\0';
                if (tg_parse_uint64(colon + 1, &port) < 0 || port > 65535)
                        return log_error_errno(EINVAL, "Bad port in --listen=%s", s->listen);
        }
        if (host[0] == '[') {
                size_t n = strlen(host);
                if (n < 2 || host[n - 1] != ']')
                        return log_error_errno(EINVAL, "Bad address in --listen=%s", s->listen);
                host[n - 1] = '\0';
                memmove(host, host + 1, n - 1);
        }
        struct sockaddr_in *in4 = (struct sockaddr_in *) &ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &ss;
        if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
                in4->sin_family = AF_INET;
                in4->sin_port = htons((uint16_t) port);
                sl = sizeof *in4;
        } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons((uint16_t) port);
                sl = sizeof *in6;
        } else
                return log_error_errno(EINVAL, "--listen= takes a numeric address and port: %s", s->listen);

        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return log_error_errno(errno, "socket(): %m");
        s->listen_fd = fd;
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int) { 1 }, sizeof(int));
        if (bind(fd, (struct sockaddr *) &ss, sl) < 0)
                return log_error_errno(errno, "Cannot bind %s: %m", s->listen);
        if (listen(fd, 16) < 0)
                return log_error_errno(errno, "listen(): %m");
        /* Port 0: the kernel chose; UDP takes the same one, and the log says
         * which (tests start the simulator this way, free of port races). */
        if (getsockname(fd, (struct sockaddr *) &ss, &sl) < 0)
                return log_error_errno(errno, "getsockname(): %m");
        s->port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *) &ss)->sin_port
                                                : ((struct sockaddr_in6 *) &ss)->sin6_port);
        r = sd_event_add_io(s->event, &s->listen_io, fd, EPOLLIN, on_listen, s);
        if (r < 0)
                return log_error_errno(r, "Cannot watch the socket: %m");
        return listen_udp(s, (struct sockaddr *) &ss, sl);
}

static void print_state(Sim *s) {
        for (unsigned i = 0; i < s->n_ecus; i++) {
                Ecu *e = &s->ecus[i];
                unsigned nb = ecu_model_n_banks(e->model);
                printf("ecu 0x%04X banks=%u active=%c session=0x%02X name=%s bus=%s\n", e->address, nb,
                       'A' + ecu_model_active_bank(e->model), ecu_model_session(e->model), e->conf->name,
                       ecu_on_ethernet(e) ? "ethernet" : s->config.buses[e->conf->bus_index].name);
                for (unsigned b = 0; b < nb; b++) {
                        uint8_t h[32];
                        char hex[65] = "";
                        if (ecu_model_bank_sha256(e->model, b, h) >= 0)
                                for (unsigned k = 0; k < 32; k++)
                                        snprintf(hex + 2 * k, 3, "%02x", h[k]);
                        printf("ecu 0x%04X bank %c valid=%s version=%s written=%zu sha256=%s\n", e->address, 'A' + b,
                               ecu_model_bank_valid(e->model, b) ? "yes" : "no", ecu_model_bank_version(e->model, b),
                               ecu_model_bank_written(e->model, b), hex);
                }
        }
        printf("end\n");
        fflush(stdout);
}

/* SIGHUP: the faults and preconditions of the file, again (ECUs by name). */
static void sim_rearm(Sim *s) {
        EcuSimConfig c;
        TgConfError err = {};
        unsigned n = 0;

        if (!s->config_path) {
                log_notice("SIGHUP: no --config= file to read.");
                return;
        }
        ecu_sim_config_init(&c);
        if (ecu_sim_config_load(&c, s->config_path, &err) < 0) {
                log_error("SIGHUP: %s is rejected, nothing changed: %s", s->config_path, err.text);
                ecu_sim_config_done(&c);
                return;
        }
        for (unsigned i = 0; i < s->n_ecus; i++)
                for (size_t k = 0; k < c.n_ecus; k++)
                        if (streq(s->ecus[i].conf->name, c.ecus[k].name)) {
                                ecu_model_set_faults(s->ecus[i].model, &c.ecus[k].faults);
                                ecu_model_set_preconditions(s->ecus[i].model, !c.ecus[k].preconditions_fail);
                                n++;
                        }
        log_info("SIGHUP: faults and preconditions of %u ECU(s) re-armed from %s.", n, s->config_path);
        ecu_sim_config_done(&c);
}

static int on_signal(sd_event_source *src, const struct signalfd_siginfo *si, void *userdata) {
        Sim *s = userdata;

        (void) src;
        if (si->ssi_signo == SIGUSR1) {
                print_state(s);
                return 0;
        }
        if (si->ssi_signo == SIGHUP) {
                sim_rearm(s);
                return 0;
        }
        log_info("Received %s, stopping.", si->ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
        return sd_event_exit(s->event, 0);
}

/* ---- command line ---- */

static void help(void) {
        printf("Usage: tollgate-ecu-sim --config=FILE [OPTIONS]\n"
               "       tollgate-ecu-sim --listen=ADDRESS:PORT --ecu=SPEC... [OPTIONS]\n\n"
               "Simulated ECUs (UDS flash services, A/B or single bank) of a vehicle: behind a DoIP\n"
               "entity on TCP (vehicle identification on UDP at the same address) and on CAN buses\n"
               "(ISO-TP on SocketCAN or a tollgate-canhub socket). See tollgate-ecu-sim.conf(5).\n\n"
               "  --config=FILE        the vehicle: [Vehicle], [Bus NAME] and [Ecu NAME] sections\n"
               "  --listen=ADDR:PORT   TCP address of the DoIP entity (numeric; default port 13400;\n"
               "                       port 0 picks a free one); overrides [Vehicle] Listen=\n"
               "  --ecu=ADDR:single|ab:SIZE[:VERSION]\n"
               "                       one more ECU on the Ethernet at logical address ADDR (hex,\n"
               "                       e.g. 0x1001) with one bank or two of SIZE bytes (64K, 16M)\n"
               "  --entity-address=A   the entity's logical address (default 0x1000)\n"
               "  --write-speed=B/S    flash write speed of the --ecu= ECUs (0: instant, the default)\n"
               "  --erase-time=MS      erase routine duration of the --ecu= ECUs (default 0)\n"
               "  --max-block=N        maxNumberOfBlockLength of the --ecu= ECUs (default 4095)\n"
               "  --vin=VIN            the 17-character VIN of UDP vehicle identification\n"
               "  --log-level=LEVEL    debug, info (default), notice, warning, err\n"
               "  -h, --help           show this help\n"
               "      --version        show the version\n\n"
               "SIGUSR1 prints every ECU's state to stdout; SIGHUP re-arms the faults of the file;\n"
               "SIGTERM or SIGINT stops it.\n");
}

static int parse_address(const char *s, uint16_t *ret) {
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 16);
        if (errno || end == s || *end || v > 0xFFFF)
                return -EINVAL;
        *ret = (uint16_t) v;
        return 0;
}

static int parse_ecu(Sim *s, const char *spec) {
        _cleanup_free_ char *copy = strdup(spec);
        char *addr, *kind, *size, *version, name[16];
        uint64_t sz;
        uint16_t address;
        EcuSimEcu *e;

        if (!copy)
                return log_error_errno(ENOMEM, "Out of memory.");
        addr = copy;
        kind = strchr(addr, ':');
        if (!kind)
                goto bad;
        *kind++ = '\0';
        size = strchr(kind, ':');
        if (!size)
                goto bad;
        *size++ = '\0';
        version = strchr(size, ':');
        if (version)
                *version++ = '\0';
        if (parse_address(addr, &address) < 0 || address == FUNCTIONAL_ADDRESS)
                goto bad;
        if (!streq(kind, "ab") && !streq(kind, "single"))
                goto bad;
        if (tg_parse_size(size, &sz) < 0 || sz == 0 || sz > (UINT64_C(1) << 32))
                goto bad;
        if (version && (!*version || strlen(version) >= ECU_MODEL_VERSION_MAX))
                goto bad;
        snprintf(name, sizeof name, "ecu-%04X", address);
        e = ecu_sim_config_add_ecu(&s->config, name);
        if (!e)
                return log_error_errno(errno, "--ecu=%s: %s", spec,
                                       errno == EEXIST ? "that ECU is there twice" : "cannot add it");
        e->address = address;
        e->ab_banks = streq(kind, "ab");
        e->bank_size = sz;
        if (version && !(e->version = strdup(version)))
                return log_error_errno(ENOMEM, "Out of memory.");
        return 0;
bad:
        return log_error_errno(EINVAL, "--ecu= takes ADDR:single|ab:SIZE[:VERSION]: %s", spec);
}

static int parse_argv(int argc, char *argv[], Sim *s) {
        enum { ARG_LISTEN = 0x100, ARG_ECU, ARG_ENTITY, ARG_WRITE_SPEED, ARG_ERASE_TIME, ARG_MAX_BLOCK,
               ARG_VIN, ARG_CONFIG };
        static const struct option options[] = {
                { "config", required_argument, NULL, ARG_CONFIG },
                { "listen", required_argument, NULL, ARG_LISTEN },
                { "ecu", required_argument, NULL, ARG_ECU },
                { "entity-address", required_argument, NULL, ARG_ENTITY },
                { "write-speed", required_argument, NULL, ARG_WRITE_SPEED },
                { "erase-time", required_argument, NULL, ARG_ERASE_TIME },
                { "max-block", required_argument, NULL, ARG_MAX_BLOCK },
                { "vin", required_argument, NULL, ARG_VIN },
                TG_TOOL_OPTIONS,
                {},
        };
        const char *ecu_specs[MAX_ECUS];
        size_t n_specs = 0;
        const char *vin = NULL;
        uint16_t entity = 0;
        bool entity_set = false;
        uint64_t v;
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case ARG_CONFIG:
                        s->config_path = optarg;
                        break;
                case ARG_LISTEN:
                        s->listen = optarg;
                        break;
                case ARG_ECU:
                        if (n_specs >= MAX_ECUS)
                                return log_error_errno(E2BIG, "At most %d ECUs.", MAX_ECUS);
                        ecu_specs[n_specs++] = optarg;
                        break;
                case ARG_ENTITY:
                        if (parse_address(optarg, &entity) < 0)
                                return log_error_errno(EINVAL, "Bad --entity-address=%s", optarg);
                        entity_set = true;
                        break;
                case ARG_WRITE_SPEED:
                        if (tg_parse_size(optarg, &s->write_speed) < 0)
                                return log_error_errno(EINVAL, "Bad --write-speed=%s", optarg);
                        break;
                case ARG_ERASE_TIME:
                        if (tg_parse_uint64(optarg, &v) < 0 || v > 600000)
                                return log_error_errno(EINVAL, "Bad --erase-time=%s (0…600000 ms)", optarg);
                        s->erase_time_ms = (uint32_t) v;
                        break;
                case ARG_MAX_BLOCK:
                        if (tg_parse_size(optarg, &v) < 0 || v < 3 || v > 64 * 1024 * 1024)
                                return log_error_errno(EINVAL, "Bad --max-block=%s (3…64M)", optarg);
                        s->max_block = (uint32_t) v;
                        break;
                case ARG_VIN:
                        if (strlen(optarg) != TG_DOIP_VIN_SIZE)
                                return log_error_errno(EINVAL, "--vin= takes 17 characters: %s", optarg);
                        vin = optarg;
                        break;
                default:
                        r = tg_tool_option(c, optarg, "tollgate-ecu-sim", help);
                        if (r <= 0)
                                return r;
                }
        r = tg_tool_no_arguments(argc, argv);
        if (r < 0)
                return r;

        /* The file first, then what the command line says over it. */
        if (s->config_path) {
                TgConfError err = {};
                r = ecu_sim_config_load(&s->config, s->config_path, &err);
                if (r < 0)
                        return log_error_errno(r == -ENOMEM ? ENOMEM : EINVAL, "%s", err.text);
        }
        if (s->listen) {
                free(s->config.listen);
                s->config.listen = strdup(s->listen);
                if (!s->config.listen)
                        return log_error_errno(ENOMEM, "Out of memory.");
        }
        if (entity_set)
                s->config.entity_address = entity;
        if (vin)
                memcpy(s->config.vin, vin, TG_DOIP_VIN_SIZE + 1);
        for (size_t i = 0; i < n_specs; i++) {
                size_t first = s->config.n_ecus;
                r = parse_ecu(s, ecu_specs[i]);
                if (r < 0)
                        return r;
                EcuSimEcu *e = &s->config.ecus[first];
                e->write_speed = s->write_speed;
                e->erase_time_ms = s->erase_time_ms;
                e->max_block_length = s->max_block;
        }
        if (s->config.n_ecus == 0)
                return log_error_errno(EINVAL, "No ECU: give --config=FILE or --ecu= (see --help).");
        if (!s->config.listen)
                for (size_t i = 0; i < s->config.n_ecus; i++)
                        if (!s->config.ecus[i].bus || streq(s->config.ecus[i].bus, "ethernet"))
                                return log_error_errno(EINVAL,
                                                       "--listen=ADDRESS:PORT is required for ECUs on the Ethernet (see --help).");
        TgConfError err = {};
        r = ecu_sim_config_check(&s->config, &err);
        if (r < 0)
                return log_error_errno(EINVAL, "%s", err.text);
        s->listen = s->config.listen;
        return 1;
}

static void on_isotp_request(EcuIsotp *n, const uint8_t *data, size_t len, bool functional, void *userdata) {
        Ecu *e = userdata;

        (void) n;
        ecu_serve(e->sim, NULL, e, data, len, functional);
        sim_arm(e->sim);
}

/* A functional request on a bus: every ECU of that bus. */
static void on_isotp_functional(EcuIsotp *n, const uint8_t *data, size_t len, bool functional, void *userdata) {
        Sim *s = userdata;

        (void) functional;
        for (size_t b = 0; b < s->config.n_buses; b++)
                if (s->functional[b] == n)
                        for (unsigned i = 0; i < s->n_ecus; i++)
                                if (s->ecus[i].conf->bus_index == (int) b)
                                        ecu_serve(s, NULL, &s->ecus[i], data, len, true);
        sim_arm(s);
}

/* SocketCAN buses with BitRate=: up at that rate (libsocketcan). */
static int sim_setup_buses(Sim *s) {
        for (size_t b = 0; b < s->config.n_buses; b++) {
                const EcuSimBus *bus = &s->config.buses[b];
                int r;

                if (!bus->bitrate)
                        continue;
                r = tg_can_link_up(bus->spec, (uint32_t) bus->bitrate, 0, bus->restart_ms);
                if (r < 0)
                        return log_error_errno(r, "Bus %s: cannot bring %s up at %" PRIu64 " bit/s: %m", bus->name,
                                               bus->spec, bus->bitrate);
                log_info("Bus %s: %s up at %" PRIu64 " bit/s, restart after bus-off %u ms.", bus->name, bus->spec,
                         bus->bitrate, bus->restart_ms);
        }
        return 0;
}

static int sim_setup_ecus(Sim *s) {
        s->max_payload = TG_DOIP_MAX_PAYLOAD_DEFAULT + 2; /* 4 MiB + 6 */
        s->n_ecus = (unsigned) s->config.n_ecus;
        for (unsigned i = 0; i < s->n_ecus; i++) {
                Ecu *e = &s->ecus[i];
                const EcuSimEcu *c = &s->config.ecus[i];
                EcuModelConfig mc;

                *e = (Ecu) { .sim = s, .conf = c, .address = (uint16_t) c->address };
                ecu_sim_ecu_model_config(c, &mc);
                if (ecu_on_ethernet(e) && mc.max_block_length && mc.max_block_length + 4 > s->max_payload)
                        s->max_payload = mc.max_block_length + 4;
                e->model = ecu_model_new(&mc);
                if (!e->model)
                        return log_error_errno(errno, "ECU %s: cannot create the model: %m", c->name);
                ecu_model_set_faults(e->model, &c->faults);
                if (!ecu_on_ethernet(e)) {
                        const EcuSimBus *bus = &s->config.buses[c->bus_index];
                        size_t max_request = MAX((size_t) (mc.max_block_length ? mc.max_block_length : 4095), 4095);
                        int r = ecu_isotp_open(s->event, bus, c->request_id, c->response_id, max_request,
                                               on_isotp_request, e, &e->isotp);
                        if (r < 0)
                                return log_error_errno(r, "ECU %s: cannot open bus %s (%s): %m", c->name, bus->name,
                                                       bus->spec);
                        if (!s->functional[c->bus_index]) {
                                r = ecu_isotp_open(s->event, bus, bus->functional_id, UINT32_MAX, 4095,
                                                   on_isotp_functional, s, &s->functional[c->bus_index]);
                                if (r < 0)
                                        return log_error_errno(r, "Bus %s: cannot open it for functional requests: %m",
                                                               bus->name);
                        }
                }
                log_info("ECU %s 0x%04X on %s: %s bank%s of %" PRIu64 " bytes, software %s.", c->name, e->address,
                         ecu_on_ethernet(e) ? "the Ethernet" : s->config.buses[c->bus_index].name,
                         c->ab_banks ? "two" : "one", c->ab_banks ? "s" : "", c->bank_size,
                         c->version ? c->version : "(none)");
        }
        return 0;
}

static int run(int argc, char *argv[]) {
        static Sim sim = {
                .listen_fd = -EBADF,
                .udp_fd = -EBADF,
        };
        static const int signals[] = { SIGTERM, SIGINT, SIGUSR1, SIGHUP };
        Sim *s = &sim;
        int r;

        ecu_sim_config_init(&s->config);
        r = parse_argv(argc, argv, s);
        if (r <= 0)
                goto out;

        (void) signal(SIGPIPE, SIG_IGN);
        s->rbuf = malloc(READ_CHUNK);
        if (!s->rbuf) {
                r = log_error_errno(ENOMEM, "Out of memory.");
                goto out;
        }
        r = tg_tool_event_new(&s->event, signals, ELEMENTSOF(signals), on_signal, s);
        if (r < 0)
                goto out;
        r = sim_setup_buses(s);
        if (r < 0)
                goto out;
        r = sim_setup_ecus(s);
        if (r < 0)
                goto out;
        if (s->listen) {
                r = listen_on(s);
                if (r < 0)
                        goto out;
                log_info("DoIP entity 0x%04X listening on %s (port %u).", s->config.entity_address, s->listen,
                         s->port);
        }
        unsigned n_eth = 0;
        for (unsigned i = 0; i < s->n_ecus; i++)
                n_eth += ecu_on_ethernet(&s->ecus[i]);
        log_info("Simulating %u ECU(s): %u on the Ethernet, %u on %zu CAN bus(es).", s->n_ecus, n_eth,
                 s->n_ecus - n_eth, s->config.n_buses);
        (void) sd_notifyf(0, "READY=1\nSTATUS=%u ECU(s)%s%s", s->n_ecus, s->listen ? ", DoIP on " : "",
                          s->listen ? s->listen : "");

        r = sd_event_loop(s->event);
        if (r < 0)
                log_error_errno(r, "Event loop failed: %m");
        (void) sd_notify(0, "STOPPING=1");
out:
        while (s->conns)
                conn_free(s->conns);
        s->timer = sd_event_source_disable_unref(s->timer);
        s->listen_io = sd_event_source_disable_unref(s->listen_io);
        if (s->listen_fd >= 0)
                close(s->listen_fd);
        s->udp_io = sd_event_source_disable_unref(s->udp_io);
        if (s->udp_fd >= 0)
                close(s->udp_fd);
        for (unsigned i = 0; i < s->n_ecus; i++) {
                s->ecus[i].isotp = ecu_isotp_free(s->ecus[i].isotp);
                s->ecus[i].model = ecu_model_free(s->ecus[i].model);
        }
        for (size_t b = 0; b < ECU_SIM_MAX_BUSES; b++)
                s->functional[b] = ecu_isotp_free(s->functional[b]);
        s->event = sd_event_unref(s->event);
        ecu_sim_config_done(&s->config);
        free(s->rbuf);
        return r;
}

int main(int argc, char *argv[]) {
        int r;

        tg_log_open("ecu-sim", TG_LOG_TARGET_AUTO);
        r = run(argc, argv);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
