/* SPDX-License-Identifier: MIT */
/*
 * The key's side of the car link: connect whenever the car is reachable,
 * authenticate (certificates or the pre-shared key derived from the pairing
 * password), run the TKP1 session as the key: receive the car's telemetry
 * into the store, hand over what the cloud sent for the car.
 */

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "relay.h"
#include "tg-db.h"
#include "tg-event.h"
#include "tg-kplink.h"
#include "tg-log.h"
#include "tg-time.h"

static void car_disconnect(Relay *r, const char *why);
static void car_schedule(Relay *r, uint64_t delay);

/* --- sink: the car's items ------------------------------------------------------- */

static Incoming *incoming_find(Relay *r, uint64_t id) {
        for (size_t i = 0; i < r->n_incoming; i++)
                if (r->incoming[i].id == id)
                        return &r->incoming[i];
        return NULL;
}

static void incoming_drop(Relay *r, Incoming *in) {
        safe_close(in->fd);
        *in = r->incoming[--r->n_incoming];
}

static int have_car_item(Relay *r, uint64_t id) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *s = NULL;
        int k, rc;

        k = tg_db_prepare(r->db, "SELECT 1 FROM car_items WHERE gateway = ? AND item_id = ?", &s);
        if (k < 0)
                return k;
        sqlite3_bind_text(s, 1, r->o.gateway_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, (sqlite3_int64) id);
        rc = sqlite3_step(s);
        return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : (tg_db_errno(rc) ?: -EIO);
}

static int on_offered(void *userdata, const TgKpOffer *offer, uint64_t *ret_offset) {
        Relay *r = userdata;
        _cleanup_free_ char *path = NULL;
        struct stat st;
        int fd, k;

        if (offer->kind != TG_KP_KIND_TELEMETRY || offer->size > (UINT64_C(64) << 20))
                return TG_KP_ANSWER_REFUSE;
        k = have_car_item(r, offer->item_id);
        if (k != 0)
                return k < 0 ? k : TG_KP_ANSWER_HAVE;
        if (r->n_incoming >= ELEMENTSOF(r->incoming))
                return TG_KP_ANSWER_REFUSE;
        path = store_partial_path(r, "car", offer->item_id);
        if (!path)
                return -ENOMEM;
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0)
                return negative_errno();
        if (fstat(fd, &st) < 0 || (uint64_t) st.st_size > offer->size) {
                if (ftruncate(fd, 0) < 0) {
                        k = negative_errno();
                        safe_close(fd);
                        return k;
                }
                st.st_size = 0;
        }
        r->incoming[r->n_incoming++] = (Incoming) { .id = offer->item_id, .fd = fd };
        *ret_offset = (uint64_t) st.st_size;
        return TG_KP_ANSWER_PULL;
}

static int on_write(void *userdata, uint64_t item_id, uint64_t offset, const void *data, size_t len) {
        Relay *r = userdata;
        Incoming *in = incoming_find(r, item_id);
        size_t done = 0;

        if (!in)
                return -ENOENT;
        while (done < len) {
                ssize_t n = pwrite(in->fd, (const uint8_t *) data + done, len - done, (off_t) (offset + done));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                done += (size_t) n;
        }
        return 0;
}

static int on_complete(void *userdata, const TgKpOffer *offer, TgKpHashCheck check) {
        Relay *r = userdata;
        Incoming *in = incoming_find(r, offer->item_id);
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *s = NULL;
        _cleanup_free_ char *path = NULL;
        _cleanup_free_ uint8_t *data = NULL;
        uint8_t sha[TG_KP_SHA256_SIZE];
        ssize_t n;
        int k, rc;

        if (!in)
                return -ENOENT;
        path = store_partial_path(r, "car", offer->item_id);
        if (!path)
                return -ENOMEM;
        if (check == TG_KP_HASH_UNCHECKED) {
                k = tg_kp_sha256_fd(in->fd, sha);
                if (k < 0)
                        return k;
                check = memcmp(sha, offer->sha256, sizeof sha) == 0 ? TG_KP_HASH_OK : TG_KP_HASH_MISMATCH;
        }
        if (check != TG_KP_HASH_OK) {
                incoming_drop(r, in);
                (void) unlink(path);
                return TG_KP_ACK_BAD_HASH;
        }
        data = malloc(offer->size ? offer->size : 1);
        if (!data)
                return -ENOMEM;
        n = pread(in->fd, data, offer->size, 0);
        if (n < 0 || (uint64_t) n != offer->size)
                return n < 0 ? negative_errno() : -EIO;

        /* Stored durably (synchronous=FULL commit) before the ACK lets the car delete it. */
        k = tg_db_prepare(r->db, "INSERT OR IGNORE INTO car_items VALUES (?, ?, ?, ?, ?, ?, ?, ?)", &s);
        if (k < 0)
                return k;
        sqlite3_bind_text(s, 1, r->o.gateway_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, (sqlite3_int64) offer->item_id);
        sqlite3_bind_int(s, 3, offer->kind);
        sqlite3_bind_int64(s, 4, offer->records);
        sqlite3_bind_int64(s, 5, (sqlite3_int64) offer->size);
        sqlite3_bind_blob(s, 6, offer->sha256, TG_KP_SHA256_SIZE, SQLITE_STATIC);
        sqlite3_bind_blob64(s, 7, data, offer->size, SQLITE_STATIC);
        sqlite3_bind_int64(s, 8, (sqlite3_int64) tg_now(CLOCK_REALTIME));
        rc = sqlite3_step(s);
        if (rc != SQLITE_DONE)
                return tg_db_errno(rc) ?: -EIO;
        incoming_drop(r, in);
        (void) unlink(path);
        r->from_car++;
        cloud_kick(r);
        return TG_KP_ACK_STORED;
}

/* --- source: the cloud's items for the car ---------------------------------------------------- */

static bool offered_before(Relay *r, uint64_t id) {
        for (size_t i = 0; i < r->n_offered; i++)
                if (r->offered[i] == id)
                        return true;
        return false;
}

static int on_next_offer(void *userdata, TgKpOffer *ret) {
        Relay *r = userdata;
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *s = NULL;
        int k, rc;

        k = tg_db_prepare(r->db, "SELECT item_id, kind, size, sha256, name FROM cloud_items "
                                 "WHERE state = 0 AND gateway = ? ORDER BY item_id", &s);
        if (k < 0)
                return k;
        sqlite3_bind_text(s, 1, r->o.gateway_id, -1, SQLITE_STATIC);
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
                uint64_t id = (uint64_t) sqlite3_column_int64(s, 0);
                const void *sha = sqlite3_column_blob(s, 3);
                const char *name = (const char *) sqlite3_column_text(s, 4);
                uint64_t *a;

                if (offered_before(r, id) || !sha || sqlite3_column_bytes(s, 3) != TG_KP_SHA256_SIZE)
                        continue;
                if (r->n_offered == r->allocated_offered) {
                        size_t n = MAX(r->allocated_offered * 2, (size_t) 16);
                        a = realloc(r->offered, n * sizeof *a);
                        if (!a)
                                return -ENOMEM;
                        r->offered = a;
                        r->allocated_offered = n;
                }
                r->offered[r->n_offered++] = id;
                snprintf(r->offer_name, sizeof r->offer_name, "%s", name ? name : "");
                *ret = (TgKpOffer) {
                        .item_id = id,
                        .kind = (uint8_t) sqlite3_column_int(s, 1),
                        .size = (uint64_t) sqlite3_column_int64(s, 2),
                        .name = r->offer_name,
                        .name_len = (uint16_t) strlen(r->offer_name),
                };
                memcpy(ret->sha256, sha, TG_KP_SHA256_SIZE);
                return 1;
        }
        return rc == SQLITE_DONE ? 0 : (tg_db_errno(rc) ?: -EIO);
}

static char *item_path(Relay *r, uint64_t id) {
        char *p;

        if (asprintf(&p, "%s/%016" PRIx64, r->items_dir, id) < 0)
                return NULL;
        return p;
}

static int on_read(void *userdata, uint64_t item_id, uint64_t offset, void *buf, size_t len) {
        Relay *r = userdata;
        _cleanup_free_ char *path = item_path(r, item_id);
        _cleanup_close_ int fd = -EBADF;
        ssize_t n;

        if (!path)
                return -ENOMEM;
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        n = pread(fd, buf, len, (off_t) offset);
        if (n < 0)
                return negative_errno();
        return (size_t) n == len ? 0 : -EIO;
}

static int on_acked(void *userdata, uint64_t item_id, TgKpAckStatus status) {
        Relay *r = userdata;
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *s = NULL;
        _cleanup_free_ char *path = NULL;
        int k, rc;

        for (size_t i = 0; i < r->n_offered; i++)
                if (r->offered[i] == item_id) {
                        r->offered[i] = r->offered[--r->n_offered];
                        break;
                }
        if (status == TG_KP_ACK_BAD_HASH)
                return 0; /* offered again */
        if (status == TG_KP_ACK_REFUSED) {
                log_warning("The car refused item %016" PRIx64 "; keeping it.", item_id);
                return 0;
        }
        /* The car has it (SPEC C5): our copy goes; the cloud hears "delivered". */
        k = tg_db_prepare(r->db, "UPDATE cloud_items SET state = 1 WHERE item_id = ?", &s);
        if (k < 0)
                return k;
        sqlite3_bind_int64(s, 1, (sqlite3_int64) item_id);
        rc = sqlite3_step(s);
        if (rc != SQLITE_DONE)
                return tg_db_errno(rc) ?: -EIO;
        path = item_path(r, item_id);
        if (path)
                (void) unlink(path);
        if (status == TG_KP_ACK_STORED)
                r->to_car++;
        cloud_kick(r);
        return 0;
}

static int on_hello(void *userdata, const TgKpHello *peer) {
        Relay *r = userdata;

        /* The gateway we are paired with, and no other. */
        if (peer->id_len != strlen(r->o.gateway_id) || memcmp(peer->id, r->o.gateway_id, peer->id_len) != 0)
                return -EPERM;
        return 0;
}

static void on_done(void *userdata, uint64_t sent, uint64_t received) {
        log_info("Sync with the car finished: %" PRIu64 " items to the car, %" PRIu64 " from it.", sent, received);
}

static const TgKpCallbacks callbacks = {
        .next_offer = on_next_offer,
        .read = on_read,
        .acked = on_acked,
        .offered = on_offered,
        .write = on_write,
        .complete = on_complete,
        .hello = on_hello,
        .done = on_done,
};

/* --- the connection --------------------------------------------------------------------- */

static int policy(const char *peer_cn, char *reason, size_t reason_size, void *userdata) {
        Relay *r = userdata;

        if (!streq(peer_cn, r->o.gateway_id)) {
                snprintf(reason, reason_size, "not our car: CN=%s", peer_cn);
                return -EPERM;
        }
        return 0;
}

static void arm(Relay *r) {
        uint64_t next;

        (void) sd_event_source_set_io_events(r->io, EPOLLIN | tg_tls_want(r->conn) | (r->connecting ? EPOLLOUT : 0));
        if (r->session && (next = tg_kp_session_next_tick(r->session)) != USEC_INFINITY)
                car_schedule(r, next);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata);

static void car_schedule(Relay *r, uint64_t when) {
        (void) tg_event_arm(r->event, &r->timer, CLOCK_MONOTONIC, when, 10 * USEC_PER_MSEC, on_timer, r, "car");
}

static void pump(Relay *r) {
        char why[300];

        switch (tg_kp_link_pump(r->conn, r->session, r->buf, sizeof r->buf, NULL)) {
        case TG_KP_LINK_AGAIN:
                arm(r);
                return;
        case TG_KP_LINK_CLOSED:
                car_disconnect(r, "the car closed the connection");
                return;
        case TG_KP_LINK_FAILED:
                car_disconnect(r, tg_tls_error(r->conn) ?: "connection lost");
                return;
        case TG_KP_LINK_FINISHED:
                car_disconnect(r, tg_kp_link_reason(r->session, why, sizeof why));
                return;
        }
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Relay *r = userdata;
        TgKpConfig cfg = {
                .role = TG_KP_ROLE_KEY,
                .id = r->o.key_id,
                .max_chunk = r->o.chunk,
                .window = r->o.window,
                .output_target = 256 * 1024,
                .callbacks = &callbacks,
                .userdata = r,
        };
        int k;

        if (r->connecting) {
                int err = 0;
                socklen_t len = sizeof err;
                (void) getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err != 0) {
                        car_disconnect(r, strerror(err));
                        return 0;
                }
                r->connecting = false;
        }
        if (!r->handshaken) {
                k = tg_tls_handshake(r->conn);
                if (k == -EAGAIN) {
                        arm(r);
                        return 0;
                }
                if (k < 0) {
                        char why[300];
                        snprintf(why, sizeof why, "TLS: %s", tg_tls_error(r->conn) ?: "handshake failed");
                        car_disconnect(r, why);
                        return 0;
                }
                r->handshaken = true;
                r->n_offered = 0;
                k = tg_kp_session_new(&r->session, &cfg);
                if (k < 0) {
                        car_disconnect(r, "cannot start the session");
                        return 0;
                }
                tg_kp_session_tick(r->session, tg_now(CLOCK_MONOTONIC));
                log_info("With the car %s (%s, %s).", r->o.gateway_id, tg_tls_version(r->conn), tg_tls_cipher(r->conn));
        }
        pump(r);
        return 0;
}

static int car_connect(Relay *r) {
        _cleanup_free_ char *host = strdup(r->o.car);
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
        char *colon;
        int fd, one = 1, k;

        if (!host)
                return -ENOMEM;
        colon = strrchr(host, ':');
        if (!colon)
                return -EINVAL;
        *colon = '\0';
        if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || !res)
                return -EHOSTUNREACH;
        fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                freeaddrinfo(res);
                return negative_errno();
        }
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        k = connect(fd, res->ai_addr, res->ai_addrlen);
        freeaddrinfo(res);
        if (k < 0 && errno != EINPROGRESS) {
                k = negative_errno();
                safe_close(fd);
                return k;
        }
        r->fd = fd;
        r->connecting = true;
        k = tg_tls_new(r->tls, fd, &r->conn);
        if (k >= 0)
                k = sd_event_add_io(r->event, &r->io, fd, EPOLLOUT, on_io, r);
        if (k < 0) {
                car_disconnect(r, "cannot set up the connection");
                return k;
        }
        /* A handshake that does not complete in 10 s is given up. */
        car_schedule(r, tg_now(CLOCK_MONOTONIC) + 10 * USEC_PER_SEC);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Relay *r = userdata;

        if (r->session) {
                tg_kp_session_tick(r->session, usec);
                pump(r);
                return 0;
        }
        if (r->conn) {
                car_disconnect(r, "no handshake in time");
                return 0;
        }
        if (car_connect(r) < 0)
                car_schedule(r, tg_now(CLOCK_MONOTONIC) + r->o.retry_usec);
        return 0;
}

static void car_disconnect(Relay *r, const char *why) {
        if (r->handshaken)
                log_info("Away from the car: %s.", why);
        else
                log_debug("Car not reachable: %s.", why);
        while (r->n_incoming > 0)
                incoming_drop(r, &r->incoming[0]); /* partial files stay for the resume */
        r->session = tg_kp_session_free(r->session);
        r->conn = tg_tls_free(r->conn);
        r->io = sd_event_source_disable_unref(r->io);
        r->fd = safe_close(r->fd);
        r->handshaken = r->connecting = false;
        car_schedule(r, tg_now(CLOCK_MONOTONIC) + r->o.retry_usec);
}

int car_setup(Relay *r) {
        TgTlsConfig cfg = { .role = TG_TLS_CLIENT, .userdata = r };
        const char *reason = NULL;
        int k;

        if (r->o.password) {
                k = tg_tls_psk_derive(r->o.password, r->o.gateway_id, r->o.key_id, r->psk);
                if (k < 0)
                        return log_error_errno(k, "Cannot derive the pre-shared key: %m");
                cfg.psk_identity = r->o.key_id;
                cfg.psk_key = r->psk;
        } else {
                cfg.ca_file = r->o.ca;
                cfg.cert_file = r->o.cert;
                cfg.key_file = r->o.key;
                cfg.policy = policy;
        }
        k = tg_tls_context_new(&cfg, &r->tls, &reason);
        if (k < 0)
                return log_error_errno(k, "Cannot set up TLS: %s", reason ? reason : "failed");
        r->fd = -EBADF;
        car_schedule(r, tg_now(CLOCK_MONOTONIC));
        return 0;
}

void car_done(Relay *r) {
        if (r->session)
                tg_kp_session_shutdown(r->session);
        while (r->n_incoming > 0)
                incoming_drop(r, &r->incoming[0]);
        r->session = tg_kp_session_free(r->session);
        r->conn = tg_tls_free(r->conn);
        r->io = sd_event_source_disable_unref(r->io);
        r->timer = sd_event_source_disable_unref(r->timer);
        r->fd = safe_close(r->fd);
        r->tls = tg_tls_context_unref(r->tls);
        free(r->offered);
        explicit_bzero(r->psk, sizeof r->psk);
}

void car_kick(Relay *r) {
        if (!r->session)
                return;
        tg_kp_session_kick(r->session);
        pump(r);
}
