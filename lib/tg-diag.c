/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "tg-diag.h"
#include "tg-doip.h"
#include "tg-event.h"

static const char *const error_names[_TG_DIAG_ERROR_MAX] = {
        [TG_DIAG_OK] = "ok",
        [TG_DIAG_TIMEOUT] = "timeout",
        [TG_DIAG_PENDING_STORM] = "pending-storm",
        [TG_DIAG_NACK] = "diagnostic-nack",
        [TG_DIAG_ROUTING_DENIED] = "routing-activation-denied",
        [TG_DIAG_CONNECT_FAILED] = "connect-failed",
        [TG_DIAG_CONNECTION_LOST] = "connection-lost",
        [TG_DIAG_GENERIC_NACK] = "generic-nack",
        [TG_DIAG_PROTOCOL] = "protocol-error",
        [TG_DIAG_CANCELLED] = "cancelled",
        [TG_DIAG_TRANSPORT] = "transport-error",
};

const char *tg_diag_error_to_string(TgDiagError e) {
        if ((unsigned) e >= _TG_DIAG_ERROR_MAX)
                return "unknown-error";
        return error_names[e];
}

const char *tg_diag_result_format(const TgDiagResult *r, char *buf, size_t size) {
        const char *name = tg_diag_error_to_string(r->error);

        switch (r->error) {
        case TG_DIAG_NACK:
                snprintf(buf, size, "%s 0x%02x (%s)", name, r->code, tg_doip_diag_nack_to_string(r->code));
                break;
        case TG_DIAG_ROUTING_DENIED:
                snprintf(buf, size, "%s 0x%02x (%s)", name, r->code, tg_doip_routing_response_to_string(r->code));
                break;
        case TG_DIAG_GENERIC_NACK:
                snprintf(buf, size, "%s 0x%02x (%s)", name, r->code, tg_doip_nack_code_to_string(r->code));
                break;
        case TG_DIAG_CONNECT_FAILED:
        case TG_DIAG_CONNECTION_LOST:
                snprintf(buf, size, "%s: %s", name, r->errno_ ? strerror(r->errno_) : "closed by peer");
                break;
        case TG_DIAG_TRANSPORT:
                snprintf(buf, size, "%s: %s", name, tg_isotp_error_to_string((TgIsotpError) r->code));
                break;
        case TG_DIAG_PENDING_STORM:
        case TG_DIAG_TIMEOUT:
                snprintf(buf, size, "%s (after %u response-pending)", name, r->n_pending);
                break;
        default:
                snprintf(buf, size, "%s", name);
        }
        return buf;
}

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / NSEC_PER_USEC;
}

/* ---- the channel, whatever the transport ------------------------------------------------ */

void tg_diag_channel_init(TgDiagChannel *ch, const TgDiagOps *ops, sd_event *event) {
        *ch = (TgDiagChannel) {
                .ops = ops,
                .event = sd_event_ref(event),
        };
        tg_uds_timing_init(&ch->timing);
}

static void complete(TgDiagChannel *ch, const TgDiagResult *r) {
        TgDiagCallback cb = ch->callback;
        void *userdata = ch->userdata;
        TgDiagResult res = *r;

        if (!ch->busy)
                return;
        res.n_pending = ch->n_pending;
        ch->busy = ch->sent = ch->started = false;
        ch->callback = NULL;
        ch->userdata = NULL;
        ch->req = NULL;
        tg_uds_timing_cancel(&ch->timing);
        if (ch->timer)
                (void) sd_event_source_set_enabled(ch->timer, SD_EVENT_OFF);
        if (cb)
                cb(ch, &res, userdata);
}

static void fail_and_abort(TgDiagChannel *ch, TgDiagError e) {
        if (ch->ops->abort)
                ch->ops->abort(ch);
        complete(ch, &(TgDiagResult) { .error = e });
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        TgDiagChannel *ch = userdata;

        (void) s, (void) usec;
        if (ch->busy && ch->sent && tg_uds_timing_expired(&ch->timing, now_usec()))
                fail_and_abort(ch, TG_DIAG_TIMEOUT);
        return 0;
}

static void arm_timer(TgDiagChannel *ch) {
        uint64_t deadline = tg_uds_timing_deadline(&ch->timing);

        if (deadline == USEC_INFINITY)
                return;
        (void) tg_event_arm(ch->event, &ch->timer, CLOCK_MONOTONIC, deadline, TG_TIMER_EXACT, on_timer, ch,
                            "diag-p2");
}

void tg_diag_channel_sent(TgDiagChannel *ch) {
        if (!ch->busy || ch->sent)
                return;
        ch->sent = true;
        tg_uds_timing_request_sent(&ch->timing, ch->sid, now_usec());
        arm_timer(ch);
}

static int on_defer(sd_event_source *s, void *userdata) {
        TgDiagChannel *ch = userdata;

        (void) s;
        if (ch->busy && ch->suppress && ch->sent)
                complete(ch, &(TgDiagResult) { .error = TG_DIAG_OK, .data = (const uint8_t *) "", .len = 0 });
        return 0;
}

/* Completed from the loop, not from here: the transport may call this from
 * within tg_diag_request() (an ISO-TP single frame leaves at once). */
void tg_diag_channel_acked(TgDiagChannel *ch) {
        if (!ch->busy || !ch->suppress)
                return;
        if (!ch->defer) {
                if (sd_event_add_defer(ch->event, &ch->defer, on_defer, ch) < 0) {
                        /* no source: the P2 timer ends it (as a timeout) */
                        return;
                }
                (void) sd_event_source_set_description(ch->defer, "diag-acked");
        }
        (void) sd_event_source_set_enabled(ch->defer, SD_EVENT_ONESHOT);
}

static bool is_functional(uint16_t a) {
        return a >= 0xE400 && a <= 0xEFFF;
}

void tg_diag_channel_response(TgDiagChannel *ch, uint16_t source, const uint8_t *data, size_t len) {
        int r;

        if (!ch->busy || !ch->sent || (source != ch->target && !is_functional(ch->target)))
                return;
        r = tg_uds_timing_response(&ch->timing, data, len, now_usec());
        if (r == -ETIMEDOUT) {
                ch->n_pending++;
                fail_and_abort(ch, TG_DIAG_PENDING_STORM);
        } else if (r == TG_UDS_WAIT_PENDING) {
                ch->n_pending++;
                arm_timer(ch);
        } else if (r == TG_UDS_WAIT_DONE)
                complete(ch, &(TgDiagResult) { .error = TG_DIAG_OK, .data = data, .len = len });
}

void tg_diag_channel_fail(TgDiagChannel *ch, const TgDiagResult *r) {
        complete(ch, r);
}

void tg_diag_channel_connected(TgDiagChannel *ch, const TgDiagResult *r) {
        int k;

        ch->connect_done = true;
        ch->connect_result = *r;
        if (!ch->busy || ch->started)
                return;
        if (r->error != TG_DIAG_OK) {
                complete(ch, r);
                return;
        }
        ch->started = true;
        k = ch->ops->start(ch, ch->target, ch->req, ch->req_len);
        if (k < 0)
                complete(ch, &(TgDiagResult) { .error = TG_DIAG_CONNECTION_LOST, .errno_ = -k });
}

int tg_diag_request(TgDiagChannel *ch, uint16_t target, const uint8_t *req, size_t len, TgDiagCallback callback,
                    void *userdata) {
        int r;

        if (!ch || !req || len == 0)
                return -EINVAL;
        if (ch->busy)
                return -EBUSY;
        ch->busy = true;
        ch->sent = ch->started = false;
        ch->suppress = tg_uds_request_suppresses_response(req, len);
        ch->target = target;
        ch->sid = req[0];
        ch->n_pending = 0;
        ch->req = req;
        ch->req_len = len;
        ch->callback = callback;
        ch->userdata = userdata;

        r = ch->ops->ready(ch) ? 1 : ch->ops->connect(ch);
        if (r > 0) {
                ch->started = true;
                r = ch->ops->start(ch, target, req, len);
        }
        if (r < 0) {
                ch->busy = ch->started = ch->sent = false;
                ch->callback = NULL;
                tg_uds_timing_cancel(&ch->timing);
                return r;
        }
        return 0;
}

void tg_diag_cancel(TgDiagChannel *ch) {
        if (ch && ch->busy)
                fail_and_abort(ch, TG_DIAG_CANCELLED);
}

typedef struct Wait {
        bool done;
        TgDiagResult result;
        uint8_t *data;
        int r;
} Wait;

static void wait_cb(TgDiagChannel *ch, const TgDiagResult *r, void *userdata) {
        Wait *w = userdata;

        (void) ch;
        w->done = true;
        w->result = *r;
        w->result.data = NULL;
        if (r->error == TG_DIAG_OK) {
                w->data = malloc(MAX(r->len, (size_t) 1));
                if (!w->data)
                        w->r = -ENOMEM;
                else {
                        if (r->len > 0)
                                memcpy(w->data, r->data, r->len);
                        w->result.data = w->data;
                }
        }
}

int tg_diag_request_wait(TgDiagChannel *ch, uint16_t target, const uint8_t *req, size_t len, TgDiagResult *ret,
                         uint8_t **ret_data, size_t *ret_len) {
        Wait w = {};
        int r;

        r = tg_diag_request(ch, target, req, len, wait_cb, &w);
        if (r < 0)
                return r;
        while (!w.done) {
                r = sd_event_run(ch->event, UINT64_MAX);
                if (r < 0) {
                        tg_diag_cancel(ch);
                        free(w.data);
                        return r;
                }
        }
        if (ret)
                *ret = w.result;
        if (w.r < 0) {
                free(w.data);
                return w.r;
        }
        if (w.result.error != TG_DIAG_OK) {
                free(w.data);
                return -EIO;
        }
        if (ret_len)
                *ret_len = w.result.len;
        if (ret_data)
                *ret_data = w.data;
        else
                free(w.data);
        if (ret && !ret_data)
                ret->data = NULL;
        return 0;
}

int tg_diag_connect_wait(TgDiagChannel *ch, TgDiagResult *ret) {
        int r;

        if (ch->ops->ready(ch))
                return 0;
        ch->connect_done = false;
        r = ch->ops->connect(ch);
        if (r < 0)
                return r;
        if (r > 0)
                return 0;
        while (!ch->connect_done) {
                r = sd_event_run(ch->event, UINT64_MAX);
                if (r < 0)
                        return r;
        }
        if (ret)
                *ret = ch->connect_result;
        return ch->connect_result.error == TG_DIAG_OK ? 0 : -EIO;
}

TgDiagChannel *tg_diag_free(TgDiagChannel *ch) {
        if (!ch)
                return NULL;
        tg_diag_cancel(ch);
        ch->timer = sd_event_source_disable_unref(ch->timer);
        ch->defer = sd_event_source_disable_unref(ch->defer);
        if (ch->ops->free)
                ch->ops->free(ch); /* frees ch */
        return NULL;
}

/* ---- DoIP ------------------------------------------------------------------------------- */

#define DOIP_READ_SIZE (256 * 1024)
#define DOIP_CTRL_SIZE 512

typedef enum DoipState {
        DOIP_DISCONNECTED,
        DOIP_CONNECTING,
        DOIP_ACTIVATING,
        DOIP_ACTIVE,
} DoipState;

typedef struct Doip {
        TgDiagChannel ch; /* first */
        TgDiagDoipConfig cfg;
        char *address;
        DoipState state;
        int fd;
        sd_event_source *io;
        sd_event_source *keepalive;
        TgDoipDecoder decoder;
        uint8_t *rbuf;
        uint16_t entity;
        /* small messages (routing activation, alive check response, TesterPresent) */
        uint8_t ctrl[DOIP_CTRL_SIZE];
        size_t ctrl_len, ctrl_off;
        /* the request: header here, user data where the caller has it */
        uint8_t diag_hdr[TG_DOIP_DIAG_HEADER_SIZE];
        const uint8_t *diag_data;
        size_t diag_len;
        size_t diag_off; /* over header and data */
        bool diag_queued;
        unsigned skip_acks; /* acks still to come for TesterPresent messages */
} Doip;

static Doip *doip_of(TgDiagChannel *ch) {
        return (Doip *) ch;
}

static void doip_close(Doip *d) {
        d->io = sd_event_source_disable_unref(d->io);
        d->fd = safe_close(d->fd);
        tg_doip_decoder_done(&d->decoder);
        tg_doip_decoder_init(&d->decoder, d->cfg.max_response);
        d->ctrl_len = d->ctrl_off = 0;
        d->diag_queued = false;
        d->diag_off = 0;
        d->skip_acks = 0;
        d->entity = 0;
        d->state = DOIP_DISCONNECTED;
        if (d->keepalive)
                (void) sd_event_source_set_enabled(d->keepalive, SD_EVENT_OFF);
}

/* The connection ends with r: a connect in progress fails, or the request in flight. */
static void doip_lost(Doip *d, const TgDiagResult *r) {
        DoipState was = d->state;

        doip_close(d);
        if (was != DOIP_ACTIVE)
                tg_diag_channel_connected(&d->ch, r);
        else
                tg_diag_channel_fail(&d->ch, r);
}

static void doip_update_events(Doip *d) {
        uint32_t ev = EPOLLIN;

        if (!d->io)
                return;
        if (d->state == DOIP_CONNECTING || d->ctrl_off < d->ctrl_len || d->diag_queued)
                ev |= EPOLLOUT;
        (void) sd_event_source_set_io_events(d->io, ev);
}

static int doip_queue_ctrl(Doip *d, const TgDoipMessage *m) {
        size_t n;

        if (d->ctrl_off == d->ctrl_len)
                d->ctrl_off = d->ctrl_len = 0;
        if (tg_doip_message_encode(m, d->ctrl + d->ctrl_len, sizeof d->ctrl - d->ctrl_len, &n) != TG_DOIP_OK)
                return -ENOBUFS;
        d->ctrl_len += n;
        return 0;
}

/* Write what can be written. 0 (done or would block) or a negative errno. */
static int doip_flush(Doip *d) {
        for (;;) {
                struct iovec iov[2];
                struct msghdr mh = { .msg_iov = iov };
                bool diag;
                ssize_t k;

                if (d->diag_queued && d->diag_off > 0)
                        diag = true; /* finish a message begun before anything else */
                else if (d->ctrl_off < d->ctrl_len)
                        diag = false;
                else if (d->diag_queued)
                        diag = true;
                else
                        break;

                if (diag) {
                        size_t off = d->diag_off;

                        if (off < TG_DOIP_DIAG_HEADER_SIZE) {
                                iov[mh.msg_iovlen++] = (struct iovec) { d->diag_hdr + off, TG_DOIP_DIAG_HEADER_SIZE - off };
                                off = 0;
                        } else
                                off -= TG_DOIP_DIAG_HEADER_SIZE;
                        iov[mh.msg_iovlen++] = (struct iovec) { (void *) (d->diag_data + off), d->diag_len - off };
                } else
                        iov[mh.msg_iovlen++] = (struct iovec) { d->ctrl + d->ctrl_off, d->ctrl_len - d->ctrl_off };

                k = sendmsg(d->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        return -errno;
                }
                if (diag) {
                        d->diag_off += (size_t) k;
                        if (d->diag_off == TG_DOIP_DIAG_HEADER_SIZE + d->diag_len) {
                                d->diag_queued = false;
                                d->diag_off = 0;
                                d->diag_data = NULL;
                                tg_diag_channel_sent(&d->ch);
                        }
                } else
                        d->ctrl_off += (size_t) k;
        }
        doip_update_events(d);
        return 0;
}

static void doip_flush_or_lose(Doip *d) {
        int r = doip_flush(d);

        if (r < 0)
                doip_lost(d, &(TgDiagResult) { .error = TG_DIAG_CONNECTION_LOST, .errno_ = -r });
}

static int on_keepalive(sd_event_source *s, uint64_t usec, void *userdata);

static void doip_arm_keepalive(Doip *d) {
        if (!d->cfg.tester_present || d->state != DOIP_ACTIVE)
                return;
        (void) tg_event_arm(d->ch.event, &d->keepalive, CLOCK_MONOTONIC,
                            now_usec() + d->cfg.keepalive_usec, TG_TIMER_EXACT,
                            on_keepalive, d, "diag-tester-present");
}

static int on_keepalive(sd_event_source *s, uint64_t usec, void *userdata) {
        Doip *d = userdata;
        static const uint8_t tp[2] = { 0x3E, 0x80 };

        (void) s, (void) usec;
        if (d->state != DOIP_ACTIVE)
                return 0;
        if (!d->ch.busy) {
                TgDoipMessage m = {
                        .version = d->cfg.version,
                        .type = TG_DOIP_DIAG_MESSAGE,
                        .diag = { .source_address = d->cfg.tester_address, .target_address = d->cfg.keepalive_target,
                                  .data = tp, .data_len = sizeof tp },
                };
                if (doip_queue_ctrl(d, &m) >= 0) {
                        d->skip_acks++;
                        doip_flush_or_lose(d);
                        if (d->state != DOIP_ACTIVE)
                                return 0;
                }
        }
        doip_arm_keepalive(d);
        return 0;
}

/* Handle one message; false if the connection ended. */
static bool doip_handle(Doip *d, const TgDoipMessage *m) {
        switch (m->type) {
        case TG_DOIP_GENERIC_NACK:
                doip_lost(d, &(TgDiagResult) { .error = TG_DIAG_GENERIC_NACK, .code = m->nack_code });
                return false;

        case TG_DOIP_ROUTING_ACTIVATION_RESPONSE:
                if (d->state != DOIP_ACTIVATING)
                        return true;
                if (m->activation_response.code != TG_DOIP_RA_SUCCESS) {
                        doip_lost(d, &(TgDiagResult) { .error = TG_DIAG_ROUTING_DENIED,
                                                       .code = m->activation_response.code });
                        return false;
                }
                d->state = DOIP_ACTIVE;
                d->entity = m->activation_response.entity_address;
                doip_arm_keepalive(d);
                tg_diag_channel_connected(&d->ch, &(TgDiagResult) { .error = TG_DIAG_OK });
                return d->state == DOIP_ACTIVE;

        case TG_DOIP_ALIVE_CHECK_REQUEST: {
                TgDoipMessage a = { .version = d->cfg.version, .type = TG_DOIP_ALIVE_CHECK_RESPONSE,
                                    .alive_source_address = d->cfg.tester_address };
                if (doip_queue_ctrl(d, &a) >= 0)
                        doip_flush_or_lose(d);
                return d->state != DOIP_DISCONNECTED;
        }

        case TG_DOIP_DIAG_ACK:
                if (m->diag.target_address != d->cfg.tester_address)
                        return true;
                if (d->skip_acks > 0)
                        d->skip_acks--;
                else
                        tg_diag_channel_acked(&d->ch);
                return d->state != DOIP_DISCONNECTED;

        case TG_DOIP_DIAG_NACK:
                if (m->diag.target_address != d->cfg.tester_address)
                        return true;
                if (d->skip_acks > 0)
                        d->skip_acks--;
                else if (d->ch.busy)
                        tg_diag_channel_fail(&d->ch, &(TgDiagResult) { .error = TG_DIAG_NACK, .code = m->diag.code });
                return d->state != DOIP_DISCONNECTED;

        case TG_DOIP_DIAG_MESSAGE:
                if (m->diag.target_address == d->cfg.tester_address)
                        tg_diag_channel_response(&d->ch, m->diag.source_address, m->diag.data, m->diag.data_len);
                return d->state != DOIP_DISCONNECTED;

        default:
                return true;
        }
}

static void doip_read(Doip *d) {
        for (;;) {
                ssize_t n = recv(d->fd, d->rbuf, DOIP_READ_SIZE, MSG_DONTWAIT);
                size_t off = 0;

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                doip_lost(d, &(TgDiagResult) { .error = TG_DIAG_CONNECTION_LOST, .errno_ = errno });
                        return;
                }
                if (n == 0) {
                        doip_lost(d, &(TgDiagResult) { .error = TG_DIAG_CONNECTION_LOST });
                        return;
                }
                while (off < (size_t) n) {
                        TgDoipMessage m;
                        bool complete_msg;
                        size_t used;
                        TgDoipError e;

                        e = tg_doip_decoder_push(&d->decoder, d->rbuf + off, (size_t) n - off, &used, &m,
                                                 &complete_msg);
                        off += used;
                        if (e != TG_DOIP_OK) {
                                if (tg_doip_error_closes(e)) {
                                        doip_lost(d, &(TgDiagResult) { .error = TG_DIAG_PROTOCOL });
                                        return;
                                }
                                TgDoipMessage nack = { .version = d->cfg.version, .type = TG_DOIP_GENERIC_NACK,
                                                       .nack_code = (uint8_t) tg_doip_error_nack_code(e) };
                                if (doip_queue_ctrl(d, &nack) >= 0)
                                        doip_flush_or_lose(d);
                                if (d->state == DOIP_DISCONNECTED)
                                        return;
                                continue;
                        }
                        if (complete_msg && !doip_handle(d, &m))
                                return;
                }
        }
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Doip *d = userdata;

        (void) s, (void) fd;
        if (d->state == DOIP_CONNECTING) {
                int err = 0;
                socklen_t len = sizeof err;

                if (!(revents & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                        return 0;
                if (getsockopt(d->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                        err = errno;
                if (err != 0) {
                        doip_lost(d, &(TgDiagResult) { .error = TG_DIAG_CONNECT_FAILED, .errno_ = err });
                        return 0;
                }
                d->state = DOIP_ACTIVATING;
                TgDoipMessage ra = {
                        .version = d->cfg.version,
                        .type = TG_DOIP_ROUTING_ACTIVATION_REQUEST,
                        .activation_request = { .source_address = d->cfg.tester_address,
                                                .activation_type = d->cfg.activation_type },
                };
                (void) doip_queue_ctrl(d, &ra);
                doip_flush_or_lose(d);
                return 0;
        }
        if (revents & EPOLLOUT) {
                doip_flush_or_lose(d);
                if (d->state == DOIP_DISCONNECTED)
                        return 0;
        }
        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))
                doip_read(d);
        return 0;
}

static bool doip_ready(TgDiagChannel *ch) {
        return doip_of(ch)->state == DOIP_ACTIVE;
}

static int doip_connect(TgDiagChannel *ch) {
        Doip *d = doip_of(ch);
        union {
                struct sockaddr sa;
                struct sockaddr_in in;
                struct sockaddr_in6 in6;
        } sa = {};
        socklen_t salen;
        int r, one = 1;

        if (d->state == DOIP_ACTIVE)
                return 1;
        if (d->state != DOIP_DISCONNECTED)
                return 0;
        if (inet_pton(AF_INET, d->address, &sa.in.sin_addr) == 1) {
                sa.in.sin_family = AF_INET;
                sa.in.sin_port = htons(d->cfg.port);
                salen = sizeof sa.in;
        } else if (inet_pton(AF_INET6, d->address, &sa.in6.sin6_addr) == 1) {
                sa.in6.sin6_family = AF_INET6;
                sa.in6.sin6_port = htons(d->cfg.port);
                salen = sizeof sa.in6;
        } else
                return -EINVAL;

        d->fd = socket(sa.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (d->fd < 0)
                return -errno;
        (void) setsockopt(d->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(d->fd, &sa.sa, salen) < 0 && errno != EINPROGRESS) {
                r = -errno;
                d->fd = safe_close(d->fd);
                return r;
        }
        r = sd_event_add_io(ch->event, &d->io, d->fd, EPOLLIN | EPOLLOUT, on_io, d);
        if (r < 0) {
                d->fd = safe_close(d->fd);
                return r;
        }
        (void) sd_event_source_set_description(d->io, "diag-doip");
        d->state = DOIP_CONNECTING;
        return 0;
}

static int doip_start(TgDiagChannel *ch, uint16_t target, const uint8_t *req, size_t len) {
        Doip *d = doip_of(ch);
        int r;

        if (d->state != DOIP_ACTIVE)
                return -ENOTCONN;
        if (len > UINT32_MAX - 4)
                return -EMSGSIZE;
        tg_doip_put_diag_header(d->diag_hdr, d->cfg.version, d->cfg.tester_address, target, (uint32_t) len);
        d->diag_data = req;
        d->diag_len = len;
        d->diag_off = 0;
        d->diag_queued = true;
        r = doip_flush(d);
        if (r < 0) {
                doip_close(d);
                return r;
        }
        doip_arm_keepalive(d); /* idle time counts from the last request */
        return 0;
}

static void doip_abort(TgDiagChannel *ch) {
        Doip *d = doip_of(ch);

        /* A request half written cannot be taken back: the stream is out of
         * step, so drop the connection. One not begun is simply forgotten. */
        if (d->diag_queued && d->diag_off > 0)
                doip_close(d);
        d->diag_queued = false;
        d->diag_off = 0;
        d->diag_data = NULL;
}

static void doip_free(TgDiagChannel *ch) {
        Doip *d = doip_of(ch);

        doip_close(d);
        tg_doip_decoder_done(&d->decoder);
        d->keepalive = sd_event_source_disable_unref(d->keepalive);
        sd_event_unref(ch->event);
        free(d->rbuf);
        free(d->address);
        free(d);
}

static const TgDiagOps doip_ops = {
        .name = "doip",
        .start = doip_start,
        .connect = doip_connect,
        .ready = doip_ready,
        .abort = doip_abort,
        .free = doip_free,
};

int tg_diag_doip_new(sd_event *event, const TgDiagDoipConfig *cfg, TgDiagChannel **ret) {
        Doip *d;

        if (!event || !cfg || !cfg->address || !ret)
                return -EINVAL;
        d = calloc(1, sizeof *d);
        if (!d)
                return -ENOMEM;
        tg_diag_channel_init(&d->ch, &doip_ops, event);
        d->fd = -EBADF;
        d->cfg = *cfg;
        if (d->cfg.port == 0)
                d->cfg.port = TG_DOIP_TCP_PORT;
        if (d->cfg.version == 0)
                d->cfg.version = TG_DOIP_VERSION_2012;
        if (d->cfg.keepalive_usec == 0)
                d->cfg.keepalive_usec = TG_UDS_TESTER_PRESENT_INTERVAL_MS * USEC_PER_MSEC;
        if (d->cfg.max_response == 0)
                d->cfg.max_response = TG_DIAG_DOIP_MAX_RESPONSE;
        d->address = strdup(cfg->address);
        d->cfg.address = d->address;
        d->rbuf = malloc(DOIP_READ_SIZE);
        if (!d->address || !d->rbuf) {
                free(d->address);
                free(d->rbuf);
                sd_event_unref(d->ch.event);
                free(d);
                return -ENOMEM;
        }
        tg_doip_decoder_init(&d->decoder, d->cfg.max_response);
        *ret = &d->ch;
        return 0;
}

uint16_t tg_diag_doip_entity_address(TgDiagChannel *ch) {
        return ch && ch->ops == &doip_ops ? doip_of(ch)->entity : 0;
}

/* ---- ISO-TP ----------------------------------------------------------------------------- */

typedef struct IsotpNode {
        struct Isotp *owner;
        uint16_t address;
        bool functional;
        TgIsotpConfig config;
        TgCanBus *bus;
        TgIsotpSocket *socket;
        /* or a kernel CAN_ISOTP socket */
        int kfd;
        sd_event_source *kio;
        bool ksending;          /* written, waiting for EPOLLOUT (the transmission ended) */
        const uint8_t *kreq;    /* not written yet (EAGAIN) */
        size_t kreq_len;
} IsotpNode;

typedef struct Isotp {
        TgDiagChannel ch; /* first */
        char *bus_spec;
        IsotpNode *nodes; /* the ECUs, then the functional one if any */
        size_t n_nodes;
        bool open;
        IsotpNode *inflight;
        bool starting;
        TgIsotpError start_error;
        TgDiagIsotpKernel kernel;
        uint32_t bitrate, restart_ms;
        bool link_up;           /* the interface was brought up (bitrate) */
        uint8_t *kbuf;          /* a kernel socket's message, max_rx bytes */
        size_t kbuf_size;
} Isotp;

static Isotp *isotp_of(TgDiagChannel *ch) {
        return (Isotp *) ch;
}

static void isotp_close(Isotp *t) {
        for (size_t i = 0; i < t->n_nodes; i++) {
                IsotpNode *n = &t->nodes[i];
                n->socket = tg_isotp_socket_free(n->socket);
                n->bus = tg_can_close(n->bus);
                n->kio = sd_event_source_disable_unref(n->kio);
                if (n->kfd >= 0)
                        (void) close(n->kfd);
                n->kfd = -EBADF;
                n->ksending = false;
                n->kreq = NULL;
        }
        t->open = false;
        t->inflight = NULL;
}

static void isotp_event(TgIsotp *e, const TgIsotpEvent *ev, void *userdata) {
        IsotpNode *n = userdata;
        Isotp *t = n->owner;
        int err;

        (void) e;
        switch (ev->type) {
        case TG_ISOTP_RX_DONE:
                if (!n->functional)
                        tg_diag_channel_response(&t->ch, n->address, ev->data, ev->len);
                break;
        case TG_ISOTP_TX_DONE:
                if (n != t->inflight)
                        break;
                t->inflight = NULL;
                tg_diag_channel_sent(&t->ch);
                tg_diag_channel_acked(&t->ch); /* no transport ack: sent is as far as it goes */
                break;
        case TG_ISOTP_TX_ERROR:
                if (n != t->inflight)
                        break;
                t->inflight = NULL;
                if (t->starting) {
                        t->start_error = ev->error;
                        break;
                }
                err = tg_isotp_socket_error(n->socket);
                if (err < 0) {
                        /* the bus went away: reopen on the next request; the
                         * sockets are freed then, not from their own callback */
                        t->open = false;
                        tg_diag_channel_fail(&t->ch, &(TgDiagResult) { .error = TG_DIAG_CONNECTION_LOST,
                                                                        .errno_ = -err });
                } else
                        tg_diag_channel_fail(&t->ch, &(TgDiagResult) { .error = TG_DIAG_TRANSPORT,
                                                                        .code = (uint8_t) ev->error });
                break;
        case TG_ISOTP_RX_ERROR:
                break; /* the P2 timer tells */
        }
}

/* ---- kernel CAN_ISOTP sockets ---- */

static void kernel_fail(Isotp *t, IsotpNode *n, int err) {
        if (t->inflight != n)
                return;
        t->inflight = NULL;
        n->ksending = false;
        n->kreq = NULL;
        if (err == ENETDOWN || err == ENODEV || err == ENXIO) {
                t->open = false; /* reopened by the next request */
                tg_diag_channel_fail(&t->ch, &(TgDiagResult) { .error = TG_DIAG_CONNECTION_LOST, .errno_ = err });
        } else {
                /* the kernel's ISO-TP errors (net/can/isotp.c) */
                TgIsotpError e = err == ECOMM       ? TG_ISOTP_ERR_TIMEOUT_BS
                                 : err == ETIMEDOUT ? TG_ISOTP_ERR_TIMEOUT_CR
                                 : err == EILSEQ    ? TG_ISOTP_ERR_WRONG_SN
                                 : err == EMSGSIZE  ? TG_ISOTP_ERR_OVERFLOW
                                                    : TG_ISOTP_ERR_ABORTED;
                tg_diag_channel_fail(&t->ch, &(TgDiagResult) { .error = TG_DIAG_TRANSPORT, .code = (uint8_t) e,
                                                                .errno_ = err });
        }
}

/* Write the pending request. 0 written or waiting (EAGAIN), <0 an error. */
static int kernel_write(IsotpNode *n) {
        ssize_t k = write(n->kfd, n->kreq, n->kreq_len);

        if (k < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        if ((size_t) k != n->kreq_len)
                return -EIO; /* a datagram socket writes all or nothing */
        n->kreq = NULL;
        n->ksending = true;
        return 0;
}

static int on_kernel_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        IsotpNode *n = userdata;
        Isotp *t = n->owner;
        int r;

        (void) s, (void) fd;
        if (revents & EPOLLERR) {
                int err = 0;
                socklen_t len = sizeof err;
                if (getsockopt(n->kfd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                        err = errno;
                kernel_fail(t, n, err ? err : EIO);
                if (!t->open)
                        return 0;
        }
        if (revents & EPOLLOUT) {
                if (n->kreq) {
                        r = kernel_write(n);
                        if (r < 0)
                                kernel_fail(t, n, -r);
                } else if (n->ksending) {
                        n->ksending = false;
                        if (t->inflight == n) {
                                t->inflight = NULL;
                                tg_diag_channel_sent(&t->ch);
                                tg_diag_channel_acked(&t->ch);
                        }
                }
        }
        if (revents & EPOLLIN)
                for (;;) {
                        ssize_t k = read(n->kfd, t->kbuf, t->kbuf_size);
                        if (k < 0) {
                                if (errno != EAGAIN && errno != EINTR)
                                        kernel_fail(t, n, errno);
                                break;
                        }
                        if (k > 0 && !n->functional)
                                tg_diag_channel_response(&t->ch, n->address, t->kbuf, (size_t) k);
                        if (!t->open || !n->kio)
                                return 0;
                }
        if (n->kio)
                (void) sd_event_source_set_io_events(n->kio, n->kreq || n->ksending ? EPOLLIN | EPOLLOUT : EPOLLIN);
        return 0;
}

/* 1: a kernel socket is open; 0: use the userspace engine; <0 an error. */
static int kernel_open_node(Isotp *t, IsotpNode *n) {
        int fd;

        if (t->kernel == TG_DIAG_ISOTP_KERNEL_NEVER || n->functional || startswith(t->bus_spec, "unix:"))
                return 0;
        fd = tg_isotp_kernel_open(t->bus_spec, &n->config);
        if (fd == -EAFNOSUPPORT && t->kernel == TG_DIAG_ISOTP_KERNEL_AUTO)
                return 0;
        if (fd < 0)
                return fd;
        n->kfd = fd;
        if (!t->kbuf) {
                t->kbuf_size = n->config.max_rx ? n->config.max_rx : TG_ISOTP_DEFAULT_MAX_RX;
                t->kbuf = malloc(t->kbuf_size);
                if (!t->kbuf)
                        return -ENOMEM;
        }
        return sd_event_add_io(t->ch.event, &n->kio, fd, EPOLLIN, on_kernel_io, n) < 0 ? -ENOMEM : 1;
}

static int isotp_open_node(Isotp *t, IsotpNode *n) {
        TgCanOptions o = { .fd = n->config.fd, .filters = &n->config.rx_id, .n_filters = 1 };
        int r;

        r = kernel_open_node(t, n);
        if (r != 0)
                return r < 0 ? r : 0;
        r = tg_can_open(t->bus_spec, &o, &n->bus);
        if (r < 0)
                return r;
        r = tg_isotp_socket_new(n->bus, &n->config, &n->socket);
        if (r < 0)
                return r;
        tg_isotp_set_callback(tg_isotp_socket_engine(n->socket), isotp_event, n);
        return tg_isotp_socket_attach_event(n->socket, t->ch.event, 0);
}

static bool isotp_ready(TgDiagChannel *ch) {
        return isotp_of(ch)->open;
}

static int isotp_connect(TgDiagChannel *ch) {
        Isotp *t = isotp_of(ch);
        int r;

        if (t->open)
                return 1;
        isotp_close(t); /* what is left of a bus that went away */
        if (t->bitrate > 0 && !t->link_up) {
                r = tg_can_link_up(t->bus_spec, t->bitrate, 0, t->restart_ms);
                if (r < 0)
                        return r;
                t->link_up = true;
        }
        for (size_t i = 0; i < t->n_nodes; i++) {
                r = isotp_open_node(t, &t->nodes[i]);
                if (r < 0) {
                        isotp_close(t);
                        return r;
                }
        }
        t->open = true;
        return 1;
}

static int isotp_start(TgDiagChannel *ch, uint16_t target, const uint8_t *req, size_t len) {
        Isotp *t = isotp_of(ch);
        IsotpNode *n = NULL;
        int r;

        for (size_t i = 0; i < t->n_nodes && !n; i++)
                if (t->nodes[i].functional ? target == TG_DIAG_FUNCTIONAL_ADDRESS : t->nodes[i].address == target)
                        n = &t->nodes[i];
        if (!n)
                return -ENXIO;
        t->inflight = n;
        if (n->kio) {
                n->kreq = req;
                n->kreq_len = len;
                r = kernel_write(n);
                if (r < 0) {
                        n->kreq = NULL;
                        t->inflight = NULL;
                        return r;
                }
                /* sent once writable again: the transmission ended */
                return sd_event_source_set_io_events(n->kio, EPOLLIN | EPOLLOUT) < 0 ? -EIO : 0;
        }
        t->starting = true;
        t->start_error = TG_ISOTP_OK;
        r = tg_isotp_socket_send(n->socket, req, len);
        t->starting = false;
        if (r < 0) {
                t->inflight = NULL;
                return r;
        }
        if (t->start_error != TG_ISOTP_OK)
                return -EIO;
        return 0;
}

static void isotp_abort(TgDiagChannel *ch) {
        Isotp *t = isotp_of(ch);

        if (t->inflight) {
                IsotpNode *n = t->inflight;
                t->inflight = NULL;
                n->kreq = NULL; /* a kernel transmission runs to its end */
                if (n->socket && tg_isotp_tx_busy(tg_isotp_socket_engine(n->socket)))
                        tg_isotp_abort_tx(tg_isotp_socket_engine(n->socket), TG_ISOTP_ERR_ABORTED);
        }
}

static void isotp_free(TgDiagChannel *ch) {
        Isotp *t = isotp_of(ch);

        isotp_close(t);
        sd_event_unref(ch->event);
        free(t->kbuf);
        free(t->nodes);
        free(t->bus_spec);
        free(t);
}

static const TgDiagOps isotp_ops = {
        .name = "isotp",
        .start = isotp_start,
        .connect = isotp_connect,
        .ready = isotp_ready,
        .abort = isotp_abort,
        .free = isotp_free,
};

int tg_diag_isotp_new(sd_event *event, const TgDiagIsotpConfig *cfg, TgDiagChannel **ret) {
        TgIsotpConfig base;
        Isotp *t;

        if (!event || !cfg || !cfg->bus || !ret || (cfg->n_ecus > 0 && !cfg->ecus) ||
            (unsigned) cfg->kernel >= _TG_DIAG_ISOTP_KERNEL_MAX)
                return -EINVAL;
        if (cfg->isotp)
                base = *cfg->isotp;
        else
                tg_isotp_config_init(&base, 0, 0, false);
        t = calloc(1, sizeof *t);
        if (!t)
                return -ENOMEM;
        tg_diag_channel_init(&t->ch, &isotp_ops, event);
        t->kernel = cfg->kernel;
        t->bitrate = cfg->bitrate;
        t->restart_ms = cfg->restart_ms;
        t->bus_spec = strdup(cfg->bus);
        t->nodes = calloc(cfg->n_ecus + 1, sizeof *t->nodes);
        if (!t->bus_spec || !t->nodes) {
                isotp_free(&t->ch);
                return -ENOMEM;
        }
        for (size_t i = 0; i < cfg->n_ecus; i++) {
                IsotpNode *n = &t->nodes[t->n_nodes++];
                *n = (IsotpNode) { .owner = t, .address = cfg->ecus[i].address, .config = base, .kfd = -EBADF };
                n->config.tx_id = cfg->ecus[i].tx_id;
                n->config.rx_id = cfg->ecus[i].rx_id;
        }
        if (cfg->functional_tx_id != 0) {
                IsotpNode *n = &t->nodes[t->n_nodes++];
                *n = (IsotpNode) { .owner = t, .address = TG_DIAG_FUNCTIONAL_ADDRESS, .functional = true,
                                   .config = base, .kfd = -EBADF };
                /* sends only; it listens to its own id, which no ECU sends on */
                n->config.tx_id = n->config.rx_id = cfg->functional_tx_id;
        }
        *ret = &t->ch;
        return 0;
}
