/* SPDX-License-Identifier: MIT */

/*
 * The control API of tollgate-vehicle-sim: plain HTTP/1.1 on a loopback
 * port, served by the simulator's own sd-event loop (no threads: a request
 * changes the state and the frames leave before the answer does).
 *
 *   GET  /state    the car: {"ignition":"off","gear":"P","speed":0,"battery":12.6,"hv":"off","bus":"awake"}
 *   POST /state    body: a JSON object with any of ignition, gear, speed, battery, hv
 *   GET  /stats    counters, as one JSON object
 *   POST /sleep    the bus goes quiet now
 *   POST /wake     the bus wakes (and sleeps again after --bus-sleep= with the ignition off)
 *
 * One request per connection (the answer says "Connection: close"); bodies
 * need Content-Length; at most 16 connections, 64 KiB per request, 10 s
 * per connection. A test tool, not a web server.
 */

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <sys/socket.h>

#if __has_include("tg-config.h")
#include "tg-config.h"
#endif
#include "tg-event.h"
#include "tg-time.h"
#include "vehicle-sim.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

#define CONN_MAX 16
#define REQUEST_MAX (64 * 1024)
#define HEADER_MAX (16 * 1024)
#define CONN_TIMEOUT_USEC (10 * USEC_PER_SEC)

typedef struct Conn {
        Control *control;
        int fd;
        sd_event_source *io;
        sd_event_source *timeout;
        char *in;
        size_t in_size;
        char *out;
        size_t out_size, out_done;
} Conn;

struct Control {
        Sim *sim;
        int fd;
        sd_event_source *io;
        char address[64];
        Conn *conns[CONN_MAX];
        TgRateLimit log_limit;
};

/* ---- JSON (the flat objects of POST /state) ------------------------------------ */

typedef struct JsonIn {
        const char *p, *end;
} JsonIn;

static void json_ws(JsonIn *j) {
        while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
                j->p++;
}

/* A string without escapes other than \" \\ \/ and no control characters: the
 * values here are short names. */
static int json_string(JsonIn *j, char *buf, size_t size) {
        size_t n = 0;

        if (j->p >= j->end || *j->p != '"')
                return -EINVAL;
        j->p++;
        while (j->p < j->end && *j->p != '"') {
                char c = *j->p++;

                if ((unsigned char) c < 0x20)
                        return -EINVAL;
                if (c == '\\') {
                        if (j->p >= j->end || !strchr("\"\\/", *j->p))
                                return -EINVAL;
                        c = *j->p++;
                }
                if (n + 1 >= size)
                        return -E2BIG;
                buf[n++] = c;
        }
        if (j->p >= j->end)
                return -EINVAL;
        j->p++;
        buf[n] = '\0';
        return 0;
}

static int json_number(JsonIn *j, double *ret) {
        char buf[64], *e;
        size_t n = 0;

        while (j->p + n < j->end && n < sizeof buf - 1 && strchr("+-.0123456789eE", j->p[n]))
                n++;
        if (n == 0 || n == sizeof buf - 1)
                return -EINVAL;
        memcpy(buf, j->p, n);
        buf[n] = '\0';
        /* JSON numbers: no leading '+', no bare '.', no hex (strtod would take those). */
        if (buf[0] == '+' || buf[0] == '.' || (buf[0] == '-' && buf[1] == '.'))
                return -EINVAL;
        errno = 0;
        *ret = strtod(buf, &e);
        if (*e || errno != 0 || !isfinite(*ret))
                return -EINVAL;
        j->p += n;
        return 0;
}

static const struct {
        const char *key;
        PowerWakeSignalId signal;
} update_keys[] = {
        { "ignition", PW_SIGNAL_IGNITION },     { "gear", PW_SIGNAL_GEAR },
        { "speed", PW_SIGNAL_SPEED },           { "battery", PW_SIGNAL_BATTERY_VOLTAGE },
        { "hv", PW_SIGNAL_HIGH_VOLTAGE },
};

int vehicle_update_parse(const char *json, size_t size, VehicleUpdate *u, char *reason, size_t reason_size) {
        JsonIn j = { json, json + size };
        bool first = true;

        *u = (VehicleUpdate) {};
        json_ws(&j);
        if (j.p >= j.end || *j.p != '{') {
                snprintf(reason, reason_size, "a JSON object is expected");
                return -EINVAL;
        }
        j.p++;
        for (;;) {
                char key[32], text[32];
                PowerWakeSignalId id = _PW_SIGNAL_INVALID;
                double d = 0;
                bool *has = NULL;
                size_t k;

                json_ws(&j);
                if (j.p < j.end && *j.p == '}' && first) {
                        j.p++;
                        break;
                }
                if (json_string(&j, key, sizeof key) < 0) {
                        snprintf(reason, reason_size, "a member name is expected at byte %zu", (size_t) (j.p - json));
                        return -EINVAL;
                }
                for (k = 0; k < ELEMENTSOF(update_keys); k++)
                        if (streq(key, update_keys[k].key))
                                id = update_keys[k].signal;
                if (id < 0) {
                        snprintf(reason, reason_size, "unknown member \"%s\" (ignition, gear, speed, battery, hv)", key);
                        return -EINVAL;
                }
                json_ws(&j);
                if (j.p >= j.end || *j.p != ':') {
                        snprintf(reason, reason_size, "':' is expected after \"%s\"", key);
                        return -EINVAL;
                }
                j.p++;
                json_ws(&j);
                if (powerwake_signal_is_enum(id)) {
                        int state;

                        if (json_string(&j, text, sizeof text) < 0 ||
                            (state = powerwake_signal_state_index(id, text)) < 0) {
                                const char *const *states = powerwake_signal_states(id);
                                char list[64] = "";

                                for (int i = 0; states[i]; i++)
                                        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
                                                 i ? "|" : "", states[i]);
                                snprintf(reason, reason_size, "%s is one of the strings %s", key, list);
                                return -EINVAL;
                        }
                        switch (id) {
                        case PW_SIGNAL_IGNITION:
                                u->v.ignition = state, has = &u->has_ignition;
                                break;
                        case PW_SIGNAL_GEAR:
                                u->v.gear = state, has = &u->has_gear;
                                break;
                        default:
                                u->v.hv = state, has = &u->has_hv;
                                break;
                        }
                } else {
                        if (json_number(&j, &d) < 0 || d < 0 || d > SIM_VALUE_MAX) {
                                snprintf(reason, reason_size, "%s is a number from 0 to %g", key, SIM_VALUE_MAX);
                                return -EINVAL;
                        }
                        if (id == PW_SIGNAL_SPEED)
                                u->v.speed = d, has = &u->has_speed;
                        else
                                u->v.battery = d, has = &u->has_battery;
                }
                if (*has) {
                        snprintf(reason, reason_size, "\"%s\" is given twice", key);
                        return -EINVAL;
                }
                *has = true;
                first = false;
                json_ws(&j);
                if (j.p < j.end && *j.p == ',') {
                        j.p++;
                        continue;
                }
                if (j.p < j.end && *j.p == '}') {
                        j.p++;
                        break;
                }
                snprintf(reason, reason_size, "',' or '}' is expected at byte %zu", (size_t) (j.p - json));
                return -EINVAL;
        }
        json_ws(&j);
        if (j.p != j.end) {
                snprintf(reason, reason_size, "trailing bytes after the object");
                return -EINVAL;
        }
        return 0;
}

/* ---- Connections ------------------------------------------------------------------ */

static Conn *conn_free(Conn *c) {
        if (!c)
                return NULL;
        if (c->control)
                for (size_t i = 0; i < CONN_MAX; i++)
                        if (c->control->conns[i] == c)
                                c->control->conns[i] = NULL;
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->timeout);
        safe_close(c->fd);
        free(c->in);
        free(c->out);
        free(c);
        return NULL;
}

static const char *status_reason(int status) {
        switch (status) {
        case 200:
                return "OK";
        case 400:
                return "Bad Request";
        case 404:
                return "Not Found";
        case 405:
                return "Method Not Allowed";
        case 411:
                return "Length Required";
        case 413:
                return "Content Too Large";
        case 431:
                return "Request Header Fields Too Large";
        case 500:
                return "Internal Server Error";
        case 501:
                return "Not Implemented";
        default:
                return "Unknown";
        }
}

static int conn_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);

/* Queue the answer and switch the connection to writing. */
static void conn_reply(Conn *c, int status, const char *content_type, const char *body, size_t body_size,
                       const char *extra_headers) {
        FILE *f;

        free(c->out);
        c->out = NULL;
        c->out_size = c->out_done = 0;
        f = open_memstream(&c->out, &c->out_size);
        if (!f) {
                conn_free(c);
                return;
        }
        fprintf(f,
                "HTTP/1.1 %d %s\r\nServer: tollgate-vehicle-sim/" PACKAGE_VERSION
                "\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\nConnection: close\r\n%s\r\n",
                status, status_reason(status), content_type, body_size, extra_headers ? extra_headers : "");
        fwrite(body, 1, body_size, f);
        if (fclose(f) != 0) {
                conn_free(c);
                return;
        }
        if (sd_event_source_set_io_events(c->io, EPOLLOUT) < 0) {
                conn_free(c);
                return;
        }
        (void) conn_on_io(c->io, c->fd, EPOLLOUT, c);
}

static void conn_reply_text(Conn *c, int status, const char *format, ...) _printf_(3, 4);
static void conn_reply_text(Conn *c, int status, const char *format, ...) {
        char body[512];
        va_list ap;
        int n;

        va_start(ap, format);
        n = vsnprintf(body, sizeof body - 1, format, ap);
        va_end(ap);
        if (n < 0)
                n = 0;
        if ((size_t) n > sizeof body - 2)
                n = sizeof body - 2;
        body[n++] = '\n';
        conn_reply(c, status, "text/plain; charset=utf-8", body, (size_t) n,
                   status == 405 ? "Allow: GET, POST\r\n" : NULL);
}

typedef void (*JsonWriter)(Sim *s, FILE *f);

static void conn_reply_json(Conn *c, JsonWriter w) {
        _cleanup_free_ char *body = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&body, &size);

        if (!f) {
                conn_free(c);
                return;
        }
        w(c->control->sim, f);
        fputc('\n', f);
        if (fclose(f) != 0) {
                conn_free(c);
                return;
        }
        conn_reply(c, 200, "application/json", body, size, NULL);
}

static void handle(Conn *c, const char *method, const char *path, const char *body, size_t body_size) {
        Sim *s = c->control->sim;
        bool get = streq(method, "GET"), post = streq(method, "POST");

        s->counters.control_requests++;
        log_debug("control: %s %s (%zu bytes)", method, path, body_size);
        if (streq(path, "/state")) {
                VehicleUpdate u;
                char reason[256];

                if (get)
                        return conn_reply_json(c, sim_state_json);
                if (!post)
                        return conn_reply_text(c, 405, "method-not-allowed");
                if (vehicle_update_parse(body, body_size, &u, reason, sizeof reason) < 0 ||
                    sim_update(s, &u, reason, sizeof reason) < 0)
                        return conn_reply_text(c, 400, "invalid-state: %s", reason);
                return conn_reply_json(c, sim_state_json);
        }
        if (streq(path, "/stats")) {
                if (!get)
                        return conn_reply_text(c, 405, "method-not-allowed");
                return conn_reply_json(c, sim_stats_json);
        }
        if (streq(path, "/sleep") || streq(path, "/wake")) {
                if (!post)
                        return conn_reply_text(c, 405, "method-not-allowed");
                if (streq(path, "/sleep"))
                        sim_sleep(s);
                else
                        sim_wake(s);
                return conn_reply_json(c, sim_state_json);
        }
        conn_reply_text(c, 404, "not-found (GET /state, POST /state, GET /stats, POST /sleep, POST /wake)");
}

/* 1 when a whole request was read and answered, 0 when more bytes are needed. */
static int conn_parse(Conn *c) {
        _cleanup_free_ char *head = NULL;
        char *end, *line, *next, *method, *target, *version, *q;
        size_t header_size, content_length = 0;
        bool has_length = false;

        end = memmem(c->in, c->in_size, "\r\n\r\n", 4);
        if (!end) {
                if (c->in_size > HEADER_MAX) {
                        conn_reply_text(c, 431, "header-too-large");
                        return 1;
                }
                return 0;
        }
        header_size = (size_t) (end - c->in) + 4;
        /* Parse a copy: the request is read again when its body is not all here. */
        head = strndup(c->in, header_size - 4);
        if (!head) {
                conn_reply_text(c, 500, "out-of-memory");
                return 1;
        }
        if (strlen(head) != header_size - 4) {
                conn_reply_text(c, 400, "nul-in-header");
                return 1;
        }

        /* Request line. */
        line = head;
        next = strstr(line, "\r\n");
        if (next) {
                *next = '\0';
                next += 2;
        }
        method = line;
        target = strchr(method, ' ');
        version = target ? strchr(target + 1, ' ') : NULL;
        if (!target || !version) {
                conn_reply_text(c, 400, "bad-request-line");
                return 1;
        }
        *target++ = '\0';
        *version++ = '\0';
        if (!streq(version, "HTTP/1.1") && !streq(version, "HTTP/1.0")) {
                conn_reply_text(c, 400, "bad-version");
                return 1;
        }
        if (*method == '\0' || *target != '/') {
                conn_reply_text(c, 400, "bad-request-line");
                return 1;
        }

        /* Headers: only the body's framing matters. */
        for (line = next; line && *line; line = next) {
                char *colon, *value;

                next = strstr(line, "\r\n");
                if (next) {
                        *next = '\0';
                        next += 2;
                }
                colon = strchr(line, ':');
                if (!colon || colon == line) {
                        conn_reply_text(c, 400, "bad-header");
                        return 1;
                }
                *colon = '\0';
                value = colon + 1;
                value += strspn(value, " \t");
                if (strcasecmp(line, "Content-Length") == 0) {
                        char *e;
                        unsigned long long v;

                        errno = 0;
                        v = strtoull(value, &e, 10);
                        if (has_length || !*value || *value == '-' || errno != 0 || (*e && !strchr(" \t", *e))) {
                                conn_reply_text(c, 400, "bad-content-length");
                                return 1;
                        }
                        if (v > REQUEST_MAX - header_size) {
                                conn_reply_text(c, 413, "body-too-large");
                                return 1;
                        }
                        content_length = (size_t) v;
                        has_length = true;
                } else if (strcasecmp(line, "Transfer-Encoding") == 0) {
                        conn_reply_text(c, 501, "chunked-not-supported (send Content-Length)");
                        return 1;
                }
        }
        if (c->in_size < header_size + content_length)
                return 0; /* the body is not all here */

        q = strchr(target, '?');
        if (q)
                *q = '\0';
        handle(c, method, target, c->in + header_size, content_length);
        return 1;
}

static int conn_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Conn *c = userdata;

        if (c->out) {
                while (c->out_done < c->out_size) {
                        ssize_t n = send(c->fd, c->out + c->out_done, c->out_size - c->out_done,
                                         MSG_DONTWAIT | MSG_NOSIGNAL);
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                                return 0;
                        if (n < 0) {
                                conn_free(c);
                                return 0;
                        }
                        c->out_done += (size_t) n;
                }
                /* All sent: end our side, let the client close first. */
                (void) shutdown(c->fd, SHUT_WR);
                conn_free(c);
                return 0;
        }

        for (;;) {
                char *p;
                ssize_t n;

                if (c->in_size >= REQUEST_MAX) {
                        conn_reply_text(c, 413, "request-too-large");
                        return 0;
                }
                p = realloc(c->in, REQUEST_MAX + 1);
                if (!p) {
                        conn_free(c);
                        return 0;
                }
                c->in = p;
                n = recv(c->fd, c->in + c->in_size, REQUEST_MAX - c->in_size, MSG_DONTWAIT);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                        return 0;
                if (n <= 0) {
                        conn_free(c); /* closed before a whole request */
                        return 0;
                }
                c->in_size += (size_t) n;
                c->in[c->in_size] = '\0';
                if (conn_parse(c))
                        return 0;
        }
}

static int conn_on_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        conn_free(userdata);
        return 0;
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Control *ctl = userdata;

        for (;;) {
                _cleanup_close_ int cfd = accept4(ctl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                unsigned suppressed;
                size_t slot;
                Conn *c;
                int r;

                if (cfd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        if (errno != EAGAIN && errno != EWOULDBLOCK && tg_ratelimit_check(&ctl->log_limit, &suppressed))
                                log_warning_errno(errno, "control: accept: %m");
                        return 0;
                }
                for (slot = 0; slot < CONN_MAX && ctl->conns[slot]; slot++)
                        ;
                if (slot == CONN_MAX) {
                        if (tg_ratelimit_check(&ctl->log_limit, &suppressed))
                                log_warning("control: %d connections open; refusing another.", CONN_MAX);
                        continue;
                }
                c = calloc(1, sizeof *c);
                if (!c)
                        return 0;
                *c = (Conn) { .control = ctl, .fd = TAKE_FD(cfd) };
                ctl->conns[slot] = c;
                r = sd_event_add_io(ctl->sim->event, &c->io, c->fd, EPOLLIN, conn_on_io, c);
                if (r >= 0)
                        r = tg_event_arm(ctl->sim->event, &c->timeout, CLOCK_MONOTONIC,
                                         tg_now(CLOCK_MONOTONIC) + CONN_TIMEOUT_USEC, USEC_PER_SEC / 10,
                                         conn_on_timeout, c, "control-timeout");
                if (r < 0) {
                        conn_free(c);
                        continue;
                }
                (void) sd_event_source_set_description(c->io, "control-conn");
        }
}

/* ---- The listener --------------------------------------------------------------- */

static int parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *len) {
        char host[64];
        const char *colon, *h;
        size_t hlen;
        unsigned long port;
        char *e;

        colon = strrchr(listen, ':');
        if (!colon)
                return -EINVAL;
        errno = 0;
        port = strtoul(colon + 1, &e, 10);
        if (!colon[1] || *e || errno != 0 || port > 65535)
                return -EINVAL;
        h = listen;
        hlen = (size_t) (colon - listen);
        if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
                h++;
                hlen -= 2;
        }
        if (hlen == 0 || hlen >= sizeof host)
                return -EINVAL;
        memcpy(host, h, hlen);
        host[hlen] = '\0';

        memset(ss, 0, sizeof *ss);
        if (strchr(host, ':')) {
                struct sockaddr_in6 *a = (struct sockaddr_in6 *) ss;

                a->sin6_family = AF_INET6;
                a->sin6_port = htons((uint16_t) port);
                if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
                        return -EINVAL;
                if (!IN6_IS_ADDR_LOOPBACK(&a->sin6_addr))
                        return -EPERM;
                *len = sizeof *a;
        } else {
                struct sockaddr_in *a = (struct sockaddr_in *) ss;

                a->sin_family = AF_INET;
                a->sin_port = htons((uint16_t) port);
                if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
                        return -EINVAL;
                if ((ntohl(a->sin_addr.s_addr) >> 24) != 127)
                        return -EPERM;
                *len = sizeof *a;
        }
        return 0;
}

int control_new(Sim *s, const char *listen_address, Control **ret) {
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_storage ss;
        socklen_t len;
        char host[INET6_ADDRSTRLEN];
        Control *c;
        int r, one = 1;

        r = parse_listen(listen_address, &ss, &len);
        if (r == -EPERM)
                return log_error_errno(r, "--control=%s: the control API listens on loopback only.", listen_address);
        if (r < 0)
                return log_error_errno(r, "--control=%s: want ADDR:PORT or [ADDR]:PORT.", listen_address);
        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return log_error_errno(errno, "socket(): %m");
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr *) &ss, len) < 0)
                return log_error_errno(errno, "Cannot bind the control API to %s: %m", listen_address);
        if (listen(fd, CONN_MAX) < 0)
                return log_error_errno(errno, "listen(): %m");
        len = sizeof ss;
        if (getsockname(fd, (struct sockaddr *) &ss, &len) < 0)
                return log_error_errno(errno, "getsockname(): %m");

        c = calloc(1, sizeof *c);
        if (!c)
                return log_error_errno(ENOMEM, "Out of memory.");
        *c = (Control) { .sim = s, .fd = -EBADF, .log_limit = TG_RATELIMIT_INIT(5 * USEC_PER_SEC, 10) };
        if (ss.ss_family == AF_INET6) {
                const struct sockaddr_in6 *a = (const struct sockaddr_in6 *) &ss;
                inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
                snprintf(c->address, sizeof c->address, "[%s]:%u", host, ntohs(a->sin6_port));
        } else {
                const struct sockaddr_in *a = (const struct sockaddr_in *) &ss;
                inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
                snprintf(c->address, sizeof c->address, "%s:%u", host, ntohs(a->sin_port));
        }
        r = sd_event_add_io(s->event, &c->io, fd, EPOLLIN, on_accept, c);
        if (r < 0) {
                free(c);
                return log_error_errno(r, "Cannot watch the control socket: %m");
        }
        (void) sd_event_source_set_description(c->io, "control-listen");
        c->fd = TAKE_FD(fd);
        *ret = c;
        return 0;
}

Control *control_free(Control *c) {
        if (!c)
                return NULL;
        for (size_t i = 0; i < CONN_MAX; i++)
                conn_free(c->conns[i]);
        sd_event_source_disable_unref(c->io);
        safe_close(c->fd);
        free(c);
        return NULL;
}

const char *control_address(const Control *c) {
        return c->address;
}
