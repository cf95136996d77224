/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * key-sync: the car's side of the car ↔ key link (SPEC C3–C8,
 * docs/key-protocol.md). It listens for the key; a key that completes the
 * TLS handshake and is paired is *present* (working state). Over the
 * session (lib/tg-keyproto.c) it sends the outbox the classifier fills
 * (keysync-outbox.c) and stores and routes what the key brings from the
 * cloud (keysync-inbox.c). One key at a time.
 */

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "keysync-conf.h"
#include "tg-daemon.h"
#include "tg-keyproto.h"
#include "tg-queue.h"
#include "tg-tls.h"

typedef struct Manager Manager;
typedef struct Link Link;

typedef struct Listener {
        Manager *manager;
        int fd;
        sd_event_source *io;
        TgTlsContext *tls;
        bool psk;
} Listener;

/* An item the key is sending us, while it is being received. */
typedef struct Incoming {
        uint64_t id;
        uint8_t kind;
        char name[128]; /* sanitised for a file name */
        int fd;         /* the partial file */
} Incoming;

/* Connections that may be in their TLS handshake at once: a stray client
 * cannot keep the key out (each has HandshakeTimeout=). */
#define LINK_PENDING_MAX 4

struct Link {
        Manager *manager;
        int fd;
        bool psk;
        char address[64];
        sd_event_source *io;
        sd_event_source *timer; /* handshake deadline, then the session's ticks */
        TgTls *tls;
        TgKpSession *session;
        bool handshaken;        /* TLS done: the session runs, this is m->link */
        bool present;           /* and its HELLO named the key the handshake proved */
        bool refusal_logged;    /* a KEY_REFUSED entry was written for it */
        char field_key[160], field_address[96]; /* journal fields of its events */
        const char *fields[3];
        char *peer;             /* the key id, once authenticated */
        uint64_t connected_usec;

        /* outbox source */
        TgQueueCursor cursor;
        uint64_t offered[64];   /* offered, not yet acknowledged */
        size_t n_offered;
        uint64_t *refused;      /* not to be offered again in this session */
        size_t n_refused;

        /* inbox sink */
        Incoming incoming[TG_KP_WINDOW_MAX]; /* Window= is at most that */
        size_t n_incoming;

        uint8_t buf[64 * 1024];
};

struct Manager {
        TgDaemon *daemon;
        sd_event *event;
        sd_bus *bus;
        KeySyncConfig config;
        char *pairing_path;

        Listener listeners[2]; /* certificates, PSK */
        size_t n_listeners;
        Link *link;            /* the key's session (one key at a time) */
        Link *pending[LINK_PENDING_MAX]; /* connections still in their TLS handshake */
        size_t n_pending;

        TgQueue *outbox;
        TgQueueCounts outbox_counts;
        uint64_t *deletes;     /* acknowledged items to delete at the next commit */
        size_t n_deletes, allocated_deletes;
        sd_event_source *delete_timer;

        sqlite3 *db;           /* keysync.db: items received */
        char *partial_dir;

        /* D-Bus */
        uint64_t last_sync_usec;
        uint64_t items_sent, items_received;
        uint64_t bytes_sent, bytes_received;

        /* power-wake's Hold while a key is present: the gateway stays powered
         * until the exchange is over (-1: none). */
        int power_fd;
        sd_bus_slot *power_slot;
};

/* keysync.c */
void manager_properties_changed(Manager *m, const char *property, ...);

/* keysync-power.c */
void power_hold_take(Manager *m, const char *key_id);
void power_hold_release(Manager *m);

/* keysync-link.c */
int link_setup(Manager *m);
void link_done(Manager *m);
/* New TLS contexts from c for every listener, or none changed (-EBADMSG). */
int link_reload_tls(Manager *m, const KeySyncConfig *c);

/* keysync-inbox.c */
int inbox_make_dirs(Manager *m);
void link_drop(Link *l, const char *why);
void link_kick(Manager *m);
/* SyncNow(): kick, and if both sides are already in sync say so (SyncFinished(0, 0)). */
void link_sync_now(Manager *m);

/* keysync-outbox.c */
int outbox_setup(Manager *m);
void outbox_done(Manager *m);
int outbox_refresh(Manager *m);
/* Commit the deletes of acknowledged items now rather than at the grouping timer. */
void outbox_flush_deletes(Manager *m);
void outbox_session_start(Link *l);
int outbox_next_offer(void *userdata, TgKpOffer *ret);
int outbox_read(void *userdata, uint64_t item_id, uint64_t offset, void *buf, size_t len);
int outbox_acked(void *userdata, uint64_t item_id, TgKpAckStatus status);

/* keysync-inbox.c */
int inbox_setup(Manager *m);
void inbox_done(Manager *m);
void inbox_session_end(Link *l);
int inbox_offered(void *userdata, const TgKpOffer *offer, uint64_t *ret_offset);
int inbox_write(void *userdata, uint64_t item_id, uint64_t offset, const void *data, size_t len);
int inbox_complete(void *userdata, const TgKpOffer *offer, TgKpHashCheck check);

/* keysync-bus.c */
int bus_setup(Manager *m);
