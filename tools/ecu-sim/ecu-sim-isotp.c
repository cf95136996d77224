/* SPDX-License-Identifier: MIT */
/*
 * The simulator's ISO-TP node: see ecu-sim-isotp.h.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ecu-sim-isotp.h"
#include "tg-isotp.h"
#include "tg-log.h"

typedef struct Response {
        struct Response *next;
        size_t len;
        uint8_t data[];
} Response;

struct EcuIsotp {
        TgCanBus *bus;
        TgIsotpSocket *socket;
        bool functional;
        EcuIsotpRequestFn fn;
        void *userdata;
        Response *head, *tail;  /* queued responses; head is being sent when sending */
        bool sending;
        char name[48];
};

static void drop_head(EcuIsotp *n) {
        Response *p = n->head;

        if (!p)
                return;
        n->head = p->next;
        if (!n->head)
                n->tail = NULL;
        free(p);
}

static void send_next(EcuIsotp *n) {
        int r;

        while (!n->sending && n->head) {
                /* sending first: a single frame may be done (TX_DONE, which
                 * sends the next) within the call */
                n->sending = true;
                r = tg_isotp_socket_send(n->socket, n->head->data, n->head->len);
                if (r >= 0)
                        return;
                n->sending = false;
                log_warning("%s: a response could not be sent: %s", n->name, strerror(-r));
                drop_head(n);
        }
}

static void on_event(TgIsotp *e, const TgIsotpEvent *ev, void *userdata) {
        EcuIsotp *n = userdata;

        (void) e;
        switch (ev->type) {
        case TG_ISOTP_RX_DONE:
                n->fn(n, ev->data, ev->len, n->functional, n->userdata);
                break;
        case TG_ISOTP_RX_ERROR:
                log_info("%s: a request was dropped: %s", n->name, tg_isotp_error_to_string(ev->error));
                break;
        case TG_ISOTP_TX_DONE:
        case TG_ISOTP_TX_ERROR:
                if (ev->type == TG_ISOTP_TX_ERROR)
                        log_info("%s: a response was not delivered: %s", n->name,
                                 tg_isotp_error_to_string(ev->error));
                n->sending = false;
                drop_head(n);
                if (tg_isotp_socket_error(n->socket) < 0) {
                        log_warning("%s: the bus went away: %s", n->name, strerror(-tg_isotp_socket_error(n->socket)));
                        while (n->head)
                                drop_head(n);
                        return;
                }
                send_next(n);
                break;
        }
}

int ecu_isotp_open(sd_event *event, const EcuSimBus *bus, uint32_t request_id, uint32_t response_id,
                   size_t max_request, EcuIsotpRequestFn fn, void *userdata, EcuIsotp **ret) {
        EcuIsotp *n;
        TgIsotpConfig c;
        int r;

        n = calloc(1, sizeof *n);
        if (!n)
                return -ENOMEM;
        n->functional = response_id == UINT32_MAX;
        n->fn = fn;
        n->userdata = userdata;
        snprintf(n->name, sizeof n->name, "%s 0x%X", bus->name, request_id & 0x1FFFFFFFu);

        /* A functional listener never sends: its tx id is never used. */
        tg_isotp_config_init(&c, n->functional ? request_id : response_id, request_id, bus->fd);
        c.brs = bus->brs;
        c.tx_dl = (uint8_t) bus->data_length;
        c.pad = bus->padding;
        c.bs = (uint8_t) bus->block_size;
        c.stmin = (uint8_t) bus->stmin;
        c.max_rx = (uint32_t) max_request;
        TgCanOptions o = { .fd = bus->fd, .filters = &c.rx_id, .n_filters = 1 };
        r = tg_can_open(bus->spec, &o, &n->bus);
        if (r >= 0)
                r = tg_isotp_socket_new(n->bus, &c, &n->socket);
        if (r >= 0) {
                tg_isotp_set_callback(tg_isotp_socket_engine(n->socket), on_event, n);
                r = tg_isotp_socket_attach_event(n->socket, event, 0);
        }
        if (r < 0) {
                ecu_isotp_free(n);
                return r;
        }
        *ret = n;
        return 0;
}

EcuIsotp *ecu_isotp_free(EcuIsotp *n) {
        if (!n)
                return NULL;
        while (n->head)
                drop_head(n);
        n->socket = tg_isotp_socket_free(n->socket);
        n->bus = tg_can_close(n->bus);
        free(n);
        return NULL;
}

int ecu_isotp_send(EcuIsotp *n, const uint8_t *data, size_t len) {
        Response *p;
        int r = tg_isotp_socket_error(n->socket);

        if (r < 0)
                return r;
        p = malloc(sizeof *p + len);
        if (!p)
                return -ENOMEM;
        p->next = NULL;
        p->len = len;
        memcpy(p->data, data, len);
        if (n->tail)
                n->tail->next = p;
        else
                n->head = p;
        n->tail = p;
        send_next(n);
        return 0;
}

void ecu_isotp_reset(EcuIsotp *n) {
        /* Keep the one on the wire (its TX_DONE drops it), forget the rest. */
        Response *keep = n->sending ? n->head : NULL, *p = keep ? keep->next : n->head;

        while (p) {
                Response *next = p->next;
                free(p);
                p = next;
        }
        if (keep) {
                keep->next = NULL;
                n->tail = keep;
        } else
                n->head = n->tail = NULL;
}
