/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * tollgate-key-relay: the program on the car key (or a phone or PC acting as
 * one), SPEC C3–C5. It keeps its own store; whenever the car is reachable it
 * syncs with it (client side of docs/key-protocol.md), and whenever the
 * cloud is reachable it uploads the car's data and downloads what the cloud
 * prepared for the car (docs/key-protocol.md §5). Each side's copy is
 * deleted only once the other side confirmed. No user action after pairing.
 */

#include <curl/curl.h>
#include <sqlite3.h>
#include <systemd/sd-event.h>

#include "tg-http.h"
#include "tg-keyproto.h"
#include "tg-macro.h"
#include "tg-tls.h"

typedef struct Relay Relay;

typedef struct RelayOptions {
        const char *key_id;
        const char *gateway_id;
        const char *store;
        const char *car;          /* HOST:PORT */
        const char *ca, *cert, *key;
        const char *password;     /* PSK variant instead of certificates */
        const char *cloud;        /* https://HOST:PORT */
        const char *cloud_ca, *cloud_cert, *cloud_key;
        uint64_t retry_usec;      /* between attempts to reach the car */
        uint64_t cloud_interval_usec;
        uint32_t chunk;
        uint16_t window;
} RelayOptions;

typedef struct Incoming {
        uint64_t id;
        int fd;
} Incoming;

struct Relay {
        RelayOptions o;
        sd_event *event;
        sqlite3 *db;
        char *partial_dir, *items_dir;

        /* car link */
        TgTlsContext *tls;
        int fd;
        sd_event_source *io, *timer;
        TgTls *conn;
        TgKpSession *session;
        bool connecting, handshaken;
        char offer_name[256]; /* the name of the item being offered: outlives the query */
        uint64_t *offered;
        size_t n_offered, allocated_offered;
        Incoming incoming[TG_KP_WINDOW_MAX]; /* --window= is at most that */
        size_t n_incoming;
        uint8_t psk[TG_TLS_PSK_SIZE];
        uint8_t buf[64 * 1024];

        /* cloud link */
        TgHttp *http;
        sd_event_source *cloud_timer;
        CURL *easy;
        struct curl_slist *headers;
        TgBuf body, response;
        int cloud_step;
        uint64_t cloud_item;
        int cloud_fd;
        bool cloud_online;
        uint64_t held_back[64];   /* uploads the cloud refused: after the others */
        size_t n_held_back;
        uint64_t held_back_until;

        /* counters, printed on SIGUSR1 and at exit */
        uint64_t from_car, to_car, to_cloud, from_cloud;
};

/* relay-store.c */
int store_open(Relay *r);
void store_close(Relay *r);
int store_exec(Relay *r, const char *sql);
char *store_partial_path(Relay *r, const char *side, uint64_t id);

/* relay-car.c */
int car_setup(Relay *r);
void car_done(Relay *r);
/* New items for the car: offer them now if the car is there. */
void car_kick(Relay *r);

/* relay-cloud.c */
int cloud_setup(Relay *r);
void cloud_done(Relay *r);
void cloud_kick(Relay *r);
