/* SPDX-License-Identifier: MIT */
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>

#include "tg-event.h"
#include "tg-http.h"
#include "tg-log.h"

#define MAX_SOCKETS 64

typedef struct HttpSocket {
        int fd; /* -1: free slot */
        int family;
        uint64_t counted; /* wire bytes of this socket already added to the total */
} HttpSocket;

typedef struct HttpTransfer HttpTransfer;
struct HttpTransfer {
        CURL *easy;
        TgHttpDoneFn done;
        void *userdata;
        HttpTransfer *prev, *next;
};

struct TgHttp {
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer;
        uint64_t wire_bytes;
        HttpTransfer *transfers;
        HttpSocket sockets[MAX_SOCKETS];
};

static void transfer_unlink_free(TgHttp *h, HttpTransfer *t) {
        if (t->prev)
                t->prev->next = t->next;
        else
                h->transfers = t->next;
        if (t->next)
                t->next->prev = t->prev;
        curl_easy_setopt(t->easy, CURLOPT_PRIVATE, NULL);
        free(t);
}

static void sample_socket(TgHttp *h, HttpSocket *s) {
        struct tcp_info ti = {};
        socklen_t len = sizeof ti;
        uint64_t sent, total, header;

        if (getsockopt(s->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
                return;
        /* tcpi_bytes_sent (Linux ≥ 4.19) counts retransmissions; older kernels: acked bytes. */
        sent = len >= offsetof(struct tcp_info, tcpi_bytes_sent) + sizeof ti.tcpi_bytes_sent ? ti.tcpi_bytes_sent
                                                                                             : ti.tcpi_bytes_acked;
        header = (s->family == AF_INET6 ? 60 : 40) + 12;
        total = sent + ti.tcpi_bytes_received + ((uint64_t) ti.tcpi_segs_out + ti.tcpi_segs_in) * header;
        if (total > s->counted) {
                h->wire_bytes += total - s->counted;
                s->counted = total;
        }
}

static void sample_all(TgHttp *h) {
        for (size_t i = 0; i < MAX_SOCKETS; i++)
                if (h->sockets[i].fd >= 0)
                        sample_socket(h, &h->sockets[i]);
}

CURLM *tg_http_multi(TgHttp *h) {
        return h->multi;
}

sd_event *tg_http_event(TgHttp *h) {
        return h->event;
}

uint64_t tg_http_wire_bytes(TgHttp *h) {
        sample_all(h);
        return h->wire_bytes;
}

static curl_socket_t open_socket(void *userdata, curlsocktype purpose, struct curl_sockaddr *a) {
        TgHttp *h = userdata;
        HttpSocket *slot = NULL;
        int fd;

        for (size_t i = 0; i < MAX_SOCKETS && !slot; i++)
                if (h->sockets[i].fd < 0)
                        slot = &h->sockets[i];
        if (!slot)
                return CURL_SOCKET_BAD; /* more sockets than any uplink needs: refuse */
        fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
        if (fd < 0)
                return CURL_SOCKET_BAD;
        *slot = (HttpSocket) { .fd = fd, .family = a->family };
        return fd;
}

static int close_socket(void *userdata, curl_socket_t fd) {
        TgHttp *h = userdata;

        for (size_t i = 0; i < MAX_SOCKETS; i++)
                if (h->sockets[i].fd == fd) {
                        sample_socket(h, &h->sockets[i]);
                        h->sockets[i].fd = -1;
                        break;
                }
        return close(fd);
}

static void check_done(TgHttp *h) {
        CURLMsg *msg;
        int left;

        while ((msg = curl_multi_info_read(h->multi, &left))) {
                HttpTransfer *t = NULL;
                CURL *easy = msg->easy_handle;
                CURLcode result = msg->data.result;

                if (msg->msg != CURLMSG_DONE)
                        continue;
                sample_all(h);
                (void) curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &t);
                curl_multi_remove_handle(h->multi, easy);
                if (t) {
                        TgHttpDoneFn done = t->done;
                        void *userdata = t->userdata;
                        transfer_unlink_free(h, t);
                        done(easy, result, userdata);
                }
        }
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        TgHttp *h = userdata;
        int action = 0, running;

        if (revents & (EPOLLIN | EPOLLHUP))
                action |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                action |= CURL_CSELECT_OUT;
        if (revents & EPOLLERR)
                action |= CURL_CSELECT_ERR;
        curl_multi_socket_action(h->multi, fd, action, &running);
        check_done(h);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        TgHttp *h = userdata;
        int running;

        curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        check_done(h);
        return 0;
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userdata, void *socketp) {
        TgHttp *h = userdata;
        sd_event_source *io = socketp;
        uint32_t events = 0;
        int r;

        if (what == CURL_POLL_REMOVE) {
                if (io) {
                        sd_event_source_disable_unref(io);
                        curl_multi_assign(h->multi, fd, NULL);
                }
                return 0;
        }
        if (what & CURL_POLL_IN)
                events |= EPOLLIN;
        if (what & CURL_POLL_OUT)
                events |= EPOLLOUT;
        if (io) {
                r = sd_event_source_set_io_events(io, events);
                if (r >= 0)
                        r = sd_event_source_set_enabled(io, SD_EVENT_ON);
        } else {
                r = sd_event_add_io(h->event, &io, fd, events, on_io, h);
                if (r >= 0) {
                        (void) sd_event_source_set_description(io, "curl-socket");
                        curl_multi_assign(h->multi, fd, io);
                }
        }
        if (r < 0)
                log_debug_errno(r, "Cannot watch curl socket %d: %m", (int) fd);
        return r < 0 ? -1 : 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userdata) {
        TgHttp *h = userdata;
        uint64_t usec;
        int r;

        if (timeout_ms < 0) {
                if (h->timer)
                        (void) sd_event_source_set_enabled(h->timer, SD_EVENT_OFF);
                return 0;
        }
        r = sd_event_now(h->event, CLOCK_MONOTONIC, &usec);
        if (r < 0)
                return -1;
        usec += (uint64_t) timeout_ms * USEC_PER_MSEC;
        r = tg_event_arm(h->event, &h->timer, CLOCK_MONOTONIC, usec, TG_TIMER_EXACT, on_timer, h, "curl-timer");
        return r < 0 ? -1 : 0;
}

int tg_http_new(sd_event *event, TgHttp **ret) {
        TgHttp *h;

        h = calloc(1, sizeof *h);
        if (!h)
                return -ENOMEM;
        for (size_t i = 0; i < MAX_SOCKETS; i++)
                h->sockets[i].fd = -1;
        h->event = sd_event_ref(event);
        h->multi = curl_multi_init();
        if (!h->multi) {
                tg_http_free(h);
                return -ENOMEM;
        }
        curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
        curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
        curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
        curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
        *ret = h;
        return 0;
}

TgHttp *tg_http_free(TgHttp *h) {
        if (!h)
                return NULL;
        if (h->multi) {
                /* Transfers still running are abandoned without callbacks. */
                while (h->transfers) {
                        CURL *easy = h->transfers->easy;
                        transfer_unlink_free(h, h->transfers);
                        curl_multi_remove_handle(h->multi, easy);
                }
                curl_multi_cleanup(h->multi);
        }
        sd_event_source_disable_unref(h->timer);
        sd_event_unref(h->event);
        free(h);
        return NULL;
}

int tg_http_start(TgHttp *h, CURL *easy, TgHttpDoneFn done, void *userdata) {
        HttpTransfer *t;
        CURLMcode mc;

        t = malloc(sizeof *t);
        if (!t)
                return -ENOMEM;
        *t = (HttpTransfer) { .easy = easy, .done = done, .userdata = userdata, .next = h->transfers };
        curl_easy_setopt(easy, CURLOPT_PRIVATE, t);
        curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, open_socket);
        curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, h);
        curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, close_socket);
        curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, h);
        mc = curl_multi_add_handle(h->multi, easy);
        if (mc != CURLM_OK) {
                free(t);
                curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
                return mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
        }
        if (h->transfers)
                h->transfers->prev = t;
        h->transfers = t;
        return 0;
}

void tg_http_cancel(TgHttp *h, CURL *easy) {
        HttpTransfer *t = NULL;

        (void) curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &t);
        if (t)
                transfer_unlink_free(h, t);
        curl_multi_remove_handle(h->multi, easy);
}
