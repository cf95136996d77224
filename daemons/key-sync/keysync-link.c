/* SPDX-License-Identifier: MIT */
/*
 * The key's connection: listeners (certificates; pre-shared keys), the TLS
 * handshake with wolfSSL, and the TKP1 session on top, all driven by the
 * loop. One key at a time: a second connection while one is present is
 * refused.
 */

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "keysync.h"
#include "tg-event.h"
#include "tg-kplink.h"
#include "tg-log.h"
#include "tg-message-ids.h"
#include "tg-time.h"

static void link_pump(Link *l);

static int policy(const char *peer_cn, char *reason, size_t reason_size, void *userdata) {
        Manager *m = userdata;
        const PairedKey *k = keysync_config_find_key(&m->config, peer_cn);

        if (!k || !k->certificate) {
                snprintf(reason, reason_size, "peer not paired: CN=%s", peer_cn);
                return -EPERM;
        }
        return 0;
}

static int psk_lookup(const char *identity, uint8_t key[TG_TLS_PSK_SIZE], void *userdata) {
        Manager *m = userdata;
        const PairedKey *k = keysync_config_find_key(&m->config, identity);

        if (!k || !k->has_psk)
                return -ENOENT;
        memcpy(key, k->psk, TG_TLS_PSK_SIZE);
        return 0;
}

static void refused(Manager *m, const char *address, const char *why) {
        char faddr[96], fwhy[300];

        snprintf(faddr, sizeof faddr, "PEER_ADDRESS=%s", address);
        snprintf(fwhy, sizeof fwhy, "REFUSAL_REASON=%s", why);
        log_event_fields(LOG_WARNING, 0, TG_MID_KEY_REFUSED, ((const char *[]) { faddr, fwhy, NULL }),
                         "Refused a key connection from %s: %s", address, why);
}

/* Journal fields of a key's events, so that `journalctl KEY_ID=…` finds them. */
static const char *const *key_fields(Link *l) {
        snprintf(l->field_key, sizeof l->field_key, "KEY_ID=%s", strna(l->peer));
        snprintf(l->field_address, sizeof l->field_address, "PEER_ADDRESS=%s", l->address);
        l->fields[0] = l->field_key;
        l->fields[1] = l->field_address;
        l->fields[2] = NULL;
        return (const char *const *) l->fields;
}

static void link_free(Link *l) {
        Manager *m = l->manager;

        inbox_session_end(l);
        tg_kp_session_free(l->session);
        tg_tls_free(l->tls);
        sd_event_source_disable_unref(l->io);
        sd_event_source_disable_unref(l->timer);
        safe_close(l->fd);
        free(l->refused);
        free(l->peer);
        if (m->link == l)
                m->link = NULL;
        for (size_t i = 0; i < m->n_pending; i++)
                if (m->pending[i] == l) {
                        m->pending[i] = m->pending[--m->n_pending];
                        break;
                }
        free(l);
}

void link_drop(Link *l, const char *why) {
        Manager *m = l->manager;
        bool was_present = l->present;

        if (was_present) {
                TgKpStats st = {};
                if (l->session)
                        tg_kp_session_stats(l->session, &st);
                log_event_fields(LOG_INFO, 0, TG_MID_KEY_LEFT, key_fields(l),
                          "Key %s left (%s) after %.1f s: %" PRIu64 " items sent, %" PRIu64 " received, %" PRIu64
                          " bytes out, %" PRIu64 " in.",
                          l->peer, why, (double) (tg_now(CLOCK_MONOTONIC) - l->connected_usec) / USEC_PER_SEC,
                          st.acked_stored, st.stored, st.bytes_out, st.bytes_in);
        }
        link_free(l);
        if (was_present && !m->link)
                power_hold_release(m);
        if (was_present)
                manager_properties_changed(m, "KeyConnected", "KeyId", NULL);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Link *l = userdata;

        if (!l->handshaken) {
                refused(l->manager, l->address, "no TLS handshake in time");
                link_drop(l, "handshake timeout");
                return 0;
        }
        tg_kp_session_tick(l->session, usec);
        link_pump(l);
        return 0;
}

static void arm_events(Link *l, uint32_t extra) {
        uint32_t events = EPOLLIN | tg_tls_want(l->tls) | extra;

        (void) sd_event_source_set_io_events(l->io, events);
        if (l->session) {
                uint64_t next = tg_kp_session_next_tick(l->session);
                if (next == USEC_INFINITY)
                        (void) sd_event_source_set_enabled(l->timer, SD_EVENT_OFF);
                else
                        (void) tg_event_arm(l->manager->event, &l->timer, CLOCK_MONOTONIC, next, 10 * USEC_PER_MSEC,
                                            on_timer, l, "key-session");
        }
}

/* The session's callbacks. */
static int on_hello(void *userdata, const TgKpHello *peer) {
        Link *l = userdata;

        /* The id in HELLO must be the identity the handshake proved. */
        if (peer->id_len != strlen(l->peer) || memcmp(peer->id, l->peer, peer->id_len) != 0) {
                refused(l->manager, l->address, "HELLO names another key than its certificate or pre-shared key");
                l->refusal_logged = true;
                return -EPERM;
        }
        /* Now it is the key: the working state (SPEC C3). */
        l->present = true;
        log_event_fields(LOG_INFO, 0, TG_MID_KEY_CONNECTED, key_fields(l), "Key %s is present (%s, %s, %s from %s).",
                  l->peer,
                  l->psk ? "pre-shared key" : "certificate", tg_tls_version(l->tls), tg_tls_cipher(l->tls),
                  l->address);
        manager_properties_changed(l->manager, "KeyConnected", "KeyId", NULL);
        power_hold_take(l->manager, l->peer);
        return 0;
}

static void sync_finished(Link *l, uint64_t sent, uint64_t received) {
        Manager *m = l->manager;

        /* What the key acknowledged leaves the outbox before anyone hears the
         * sync is over. */
        outbox_flush_deletes(m);
        m->last_sync_usec = tg_now(CLOCK_REALTIME);
        log_event_fields(LOG_INFO, 0, TG_MID_KEY_SYNC_FINISHED, key_fields(l), "Sync with key %s finished: %" PRIu64 " items to the key, %" PRIu64
                  " from it.", l->peer, sent, received);
        (void) sd_bus_emit_signal(m->bus, "/org/tollgate/KeySync1", "org.tollgate.KeySync1", "SyncFinished", "tt", sent,
                                  received);
        manager_properties_changed(m, "LastSyncUsec", "ItemsSent", "ItemsReceived", NULL);
}

static void on_done(void *userdata, uint64_t sent, uint64_t received) {
        sync_finished(userdata, sent, received);
}

static const TgKpCallbacks callbacks = {
        .next_offer = outbox_next_offer,
        .read = outbox_read,
        .acked = outbox_acked,
        .offered = inbox_offered,
        .write = inbox_write,
        .complete = inbox_complete,
        .hello = on_hello,
        .done = on_done,
};

static int start_session(Link *l) {
        Manager *m = l->manager;
        TgKpConfig cfg = {
                .role = TG_KP_ROLE_GATEWAY,
                .id = m->config.gateway_id,
                .max_chunk = (uint32_t) m->config.chunk_size,
                .window = (uint16_t) m->config.window,
                .max_offers = (uint16_t) ELEMENTSOF(l->offered),
                .output_target = 256 * 1024,
                .ping_interval_usec = m->config.ping_interval_usec,
                .ping_timeout_usec = 2 * m->config.ping_interval_usec,
                .callbacks = &callbacks,
                .userdata = l,
        };
        int r;

        outbox_session_start(l);
        r = tg_kp_session_new(&l->session, &cfg);
        if (r < 0)
                return r;
        tg_kp_session_tick(l->session, tg_now(CLOCK_MONOTONIC));
        l->connected_usec = tg_now(CLOCK_MONOTONIC);
        return 0;
}

/* Move bytes both ways until the socket says wait. */
static void link_pump(Link *l) {
        char why[300];
        TgKpLinkState res = tg_kp_link_pump(l->tls, l->session, l->buf, sizeof l->buf, &l->manager->bytes_sent);

        /* Until the socket takes more, hold no read transaction on the outbox. */
        tg_queue_read_end(l->manager->outbox);
        switch (res) {
        case TG_KP_LINK_AGAIN:
                arm_events(l, 0);
                return;
        case TG_KP_LINK_CLOSED:
                link_drop(l, "the key closed the connection");
                return;
        case TG_KP_LINK_FAILED:
                link_drop(l, tg_tls_error(l->tls) ?: "connection lost");
                return;
        case TG_KP_LINK_FINISHED:
                tg_kp_link_reason(l->session, why, sizeof why);
                if (!l->present && !l->refusal_logged) {
                        /* TLS let it in, but it never became the key: a refusal. */
                        char reason[360];
                        snprintf(reason, sizeof reason, "protocol error before a valid HELLO: %s", why);
                        refused(l->manager, l->address, reason);
                } else if (tg_kp_session_error(l->session, NULL, NULL) != TG_KP_SHUTTING_DOWN &&
                           tg_kp_session_error(l->session, NULL, NULL) != TG_KP_PEER_ERROR)
                        log_warning("Key %s broke the protocol: %s", l->peer, why);
                link_drop(l, why);
                return;
        }
}

/* The handshake proved who this is: make it the key's session. One key at a
 * time; a new connection of the key that holds the session replaces it (the
 * key lost Wi-Fi and came back before the old connection timed out).
 * Returns 1 if l is now m->link, 0 if it was refused (and freed), or -errno. */
static int promote(Link *l) {
        Manager *m = l->manager;
        const char *peer = tg_tls_peer(l->tls);
        char why[200];

        l->peer = strdup(peer ? peer : "?");
        if (!l->peer) {
                link_drop(l, "out of memory");
                return -ENOMEM;
        }
        if (m->link && streq(m->link->peer, l->peer))
                link_drop(m->link, "replaced by a new connection of the same key");
        else if (m->link) {
                snprintf(why, sizeof why, "another key (%s) is connected", m->link->peer);
                refused(m, l->address, why);
                link_drop(l, "refused");
                return 0;
        }
        for (size_t i = 0; i < m->n_pending; i++)
                if (m->pending[i] == l) {
                        m->pending[i] = m->pending[--m->n_pending];
                        break;
                }
        m->link = l;
        l->handshaken = true;
        return 1;
}

static int on_link_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Link *l = userdata;
        int r;

        if (!l->handshaken) {
                r = tg_tls_handshake(l->tls);
                if (r == -EAGAIN) {
                        arm_events(l, 0);
                        return 0;
                }
                if (r < 0) {
                        refused(l->manager, l->address, tg_tls_error(l->tls) ?: "TLS handshake failed");
                        link_drop(l, "refused");
                        return 0;
                }
                r = promote(l);
                if (r <= 0)
                        return 0;
                r = start_session(l);
                if (r < 0) {
                        log_error_errno(r, "Cannot start the key session: %m");
                        link_drop(l, "internal error");
                        return 0;
                }
        }
        link_pump(l);
        return 0;
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Listener *ls = userdata;
        Manager *m = ls->manager;
        struct sockaddr_storage sa;
        socklen_t salen = sizeof sa;
        char host[NI_MAXHOST] = "?", serv[NI_MAXSERV] = "?", address[64];
        Link *l;
        int cfd, one = 1, r;

        cfd = accept4(fd, (struct sockaddr *) &sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0)
                return 0;
        (void) getnameinfo((struct sockaddr *) &sa, salen, host, sizeof host, serv, sizeof serv,
                           NI_NUMERICHOST | NI_NUMERICSERV);
        snprintf(address, sizeof address, "%s:%s", host, serv);
        if (m->n_pending >= LINK_PENDING_MAX) {
                /* Make room: the one waiting longest goes (silent clients cannot
                 * keep the key out by holding every slot). */
                Link *oldest = m->pending[0];

                for (size_t i = 1; i < m->n_pending; i++)
                        if (m->pending[i]->connected_usec < oldest->connected_usec)
                                oldest = m->pending[i];
                refused(m, oldest->address, "dropped for a newer connection (too many in their TLS handshake)");
                link_drop(oldest, "refused");
        }
        (void) setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

        l = calloc(1, sizeof *l);
        if (!l) {
                safe_close(cfd);
                return 0;
        }
        *l = (Link) { .manager = m, .fd = cfd, .psk = ls->psk };
        snprintf(l->address, sizeof l->address, "%s", address);
        l->connected_usec = tg_now(CLOCK_MONOTONIC); /* accepted; the session's start later */
        m->pending[m->n_pending++] = l;
        r = tg_tls_new(ls->tls, cfd, &l->tls);
        if (r >= 0)
                r = sd_event_add_io(m->event, &l->io, cfd, EPOLLIN | EPOLLOUT, on_link_io, l);
        if (r >= 0)
                r = tg_event_arm(m->event, &l->timer, CLOCK_MONOTONIC,
                                 tg_now(CLOCK_MONOTONIC) + m->config.handshake_timeout_usec, TG_TIMER_EXACT, on_timer,
                                 l, "key-handshake");
        if (r < 0) {
                log_error_errno(r, "Cannot take the key's connection: %m");
                link_free(l);
        }
        return 0;
}

static int parse_address(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len) {
        _cleanup_free_ char *host = strdup(s);
        struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE, .ai_socktype = SOCK_STREAM };
        struct addrinfo *res = NULL;
        char *colon;

        if (!host)
                return -ENOMEM;
        colon = strrchr(host, ':');
        if (!colon)
                return -EINVAL;
        *colon = '\0';
        if (host[0] == '[' && colon > host + 1 && colon[-1] == ']') {
                memmove(host, host + 1, strlen(host));
                host[strlen(host) - 1] = '\0';
        }
        if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || !res)
                return -EINVAL;
        memcpy(ret, res->ai_addr, res->ai_addrlen);
        *ret_len = res->ai_addrlen;
        freeaddrinfo(res);
        return 0;
}

static int listener_open(Manager *m, const char *address, bool psk) {
        Listener *ls = &m->listeners[m->n_listeners];
        struct sockaddr_storage sa;
        socklen_t salen;
        int fd, one = 1, r;

        r = parse_address(address, &sa, &salen);
        if (r < 0)
                return log_error_errno(r, "Cannot parse listen address %s.", address);
        fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return log_error_errno(negative_errno(), "socket(): %m");
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        /* The address of the access point or USB interface the key joins may
         * not be up yet when we start (or may go away with the interface). */
        (void) setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof one);
        if (bind(fd, (struct sockaddr *) &sa, salen) < 0 || listen(fd, 8) < 0) {
                r = negative_errno();
                safe_close(fd);
                return log_error_errno(r, "Cannot listen on %s: %m", address);
        }
        *ls = (Listener) { .manager = m, .fd = fd, .psk = psk };
        r = sd_event_add_io(m->event, &ls->io, fd, EPOLLIN, on_accept, ls);
        if (r < 0) {
                safe_close(fd);
                return log_error_errno(r, "Cannot watch %s: %m", address);
        }
        m->n_listeners++;
        log_info("Waiting for the key on %s (%s).", address, psk ? "pre-shared keys" : "certificates");
        return 0;
}

/* A TLS context for one listener from configuration c; nothing installed.
 * A file that does not load is the configuration's fault: -EBADMSG, logged
 * with the configuration-rejected MESSAGE_ID. */
static int make_tls(Manager *m, const KeySyncConfig *c, bool psk, TgTlsContext **ret) {
        TgTlsConfig cfg = { .role = TG_TLS_SERVER, .userdata = m };
        const char *reason = NULL;
        int r;

        if (psk)
                cfg.psk_lookup = psk_lookup;
        else {
                struct stat st;

                cfg.ca_file = c->ca_file;
                cfg.cert_file = c->cert_file;
                cfg.key_file = c->key_file;
                cfg.crl_file = c->crl_file;
                cfg.policy = policy;
                /* The gateway's identity: readable by others means anyone on
                 * the gateway can impersonate the car to its keys. */
                if (stat(c->key_file, &st) == 0 && (st.st_mode & 0007))
                        log_warning("%s is accessible to all users (mode %04o); make it 0640 root:tollgate.",
                                    c->key_file, (unsigned) (st.st_mode & 07777));
        }
        r = tg_tls_context_new(&cfg, ret, &reason);
        if (r < 0) {
                log_event_errno(LOG_ERR, r, TG_MID_CONFIG_REJECTED,
                                "Configuration rejected: cannot set up TLS for %s keys (CAFile=%s, CertificateFile=%s, "
                                "KeyFile=%s, RevocationList=%s): %s",
                                psk ? "pre-shared" : "certificate", strna(c->ca_file), strna(c->cert_file),
                                strna(c->key_file), strna(c->crl_file), reason ? reason : "failed");
                return -EBADMSG;
        }
        return 0;
}

int link_reload_tls(Manager *m, const KeySyncConfig *c) {
        TgTlsContext *ctx[ELEMENTSOF(m->listeners)] = {};
        int r = 0;

        /* All or nothing: a file that does not load leaves every listener as it was. */
        for (size_t i = 0; i < m->n_listeners && r >= 0; i++)
                r = make_tls(m, c, m->listeners[i].psk, &ctx[i]);
        for (size_t i = 0; i < m->n_listeners; i++) {
                if (r < 0) {
                        tg_tls_context_unref(ctx[i]);
                        continue;
                }
                tg_tls_context_unref(m->listeners[i].tls);
                m->listeners[i].tls = ctx[i];
        }
        return r;
}

int link_setup(Manager *m) {
        int r;

        if (m->config.cert_file) {
                r = listener_open(m, m->config.listen, false);
                if (r < 0)
                        return r;
        }
        r = listener_open(m, m->config.listen_psk, true);
        if (r < 0)
                return r;
        return link_reload_tls(m, &m->config);
}

void link_done(Manager *m) {
        if (m->link) {
                Link *l = m->link;

                if (l->session) {
                        /* Tell the key why (ERROR shutting-down), as far as the
                         * socket takes it now; it resumes next time anyway. */
                        tg_kp_session_shutdown(l->session);
                        (void) tg_kp_link_pump(l->tls, l->session, l->buf, sizeof l->buf, &m->bytes_sent);
                }
                link_drop(l, "key-sync stopping");
        }
        while (m->n_pending > 0)
                link_drop(m->pending[0], "key-sync stopping");
        for (size_t i = 0; i < m->n_listeners; i++) {
                m->listeners[i].io = sd_event_source_disable_unref(m->listeners[i].io);
                m->listeners[i].fd = safe_close(m->listeners[i].fd);
                m->listeners[i].tls = tg_tls_context_unref(m->listeners[i].tls);
        }
        m->n_listeners = 0;
}

void link_kick(Manager *m) {
        if (!m->link || !m->link->session)
                return;
        /* New outbox items may sort before the cursor (a more important priority):
         * start the scan again; it skips what is in flight. */
        m->link->cursor = (TgQueueCursor) { .id = 0 };
        tg_kp_session_kick(m->link->session);
        link_pump(m->link);
}

void link_sync_now(Manager *m) {
        Link *l = m->link;

        link_kick(m);
        /* Nothing new on our side and the key is in sync with us: that exchange
         * is over at once (the key offers on its own when it gets something). */
        if (m->link == l && l->session && tg_kp_session_idle(l->session))
                sync_finished(l, 0, 0);
}
