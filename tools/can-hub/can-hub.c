/* SPDX-License-Identifier: MIT */

/*
 * tollgate-canhub: a CAN bus in userspace, for machines whose kernel has no
 * PF_CAN (no vcan). Members connect to a SOCK_SEQPACKET unix socket; every
 * datagram one of them sends is forwarded, byte for byte, to every other
 * member, as a bus (or vcan) would: no echo to the sender, no validation
 * (garbage included; tg_can_recv() reports it as -EBADMSG). The datagrams
 * are SocketCAN's struct can_frame (16 bytes) or struct canfd_frame (72),
 * see lib/tg-can.h and docs/can.md.
 *
 * The hub never blocks on a member: a member whose socket is full loses
 * that frame (counted, like a CAN controller's receive overrun). Datagrams
 * larger than a CAN FD frame and empty ones are dropped and counted (an
 * empty datagram would read as end-of-stream on the receiving side).
 *
 * With --bitrate=N the bus is paced: frames leave one after another, each
 * after its wire time at N bit/s (CAN FD frames: ISO 11898-1 FD format, the
 * data phase of a BRS frame at --data-bitrate; see can-wire.h). A full
 * transmit queue stops the hub reading from members until it drains, so
 * senders see their own socket fill (tg_can_send() → -EAGAIN), as with a
 * full qdisc on a real interface.
 *
 * One sd-event loop; no timers while no frames flow.
 */

#include <getopt.h>
#include <linux/can.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "tg-can.h"
#include "tg-event.h"
#include "tg-log.h"
#include "tg-parse.h"
#include "tg-tool.h"
#include "can-wire.h"

#define MAX_MEMBERS 64
#define READ_BATCH 16     /* datagrams taken from one member per wake-up: fairness */
#define PACE_QUEUE 256    /* frames waiting for the paced bus */
#define BITRATE_MIN 1000
#define BITRATE_MAX 10000000
#define NSEC_PER_SEC_ UINT64_C(1000000000)

typedef struct Hub Hub;

typedef struct Member {
        Hub *hub;
        int fd;
        sd_event_source *io;
        uint64_t serial; /* never reused: a queued frame names its sender by it */
        pid_t pid;
        uint64_t sent, overruns;
} Member;

typedef struct Pending {
        uint64_t due_ns;
        uint64_t from;
        uint8_t size;
        uint8_t data[TG_CANFD_MTU];
} Pending;

struct Hub {
        sd_event *event;
        const char *path;
        int listen_fd;
        sd_event_source *listen_io;
        dev_t sock_dev;
        ino_t sock_ino;

        Member *members[MAX_MEMBERS];
        unsigned n_members;
        uint64_t next_serial;

        uint64_t bitrate;          /* 0: no pacing */
        uint64_t data_bitrate;     /* CAN FD data phase (BRS frames); 0: the nominal bitrate */
        Pending queue[PACE_QUEUE]; /* ring */
        unsigned head, queued;
        uint64_t bus_free_ns;      /* when the frame on the wire has left */
        sd_event_source *timer;
        bool paused;               /* members not read: the queue is full */

        TgRateLimit log_limit;
        /* counters, logged on SIGUSR1 and at exit */
        uint64_t frames, delivered, overruns, oversize, empty, joined, refused, peak_members, busy_ns;
};

static uint64_t now_ns(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * NSEC_PER_SEC_ + (uint64_t) ts.tv_nsec;
}

static _printf_(2, 3) void log_peer(Hub *h, const char *format, ...) {
        char msg[256];
        unsigned suppressed = 0;
        va_list ap;

        if (!tg_ratelimit_check(&h->log_limit, &suppressed))
                return;
        va_start(ap, format);
        vsnprintf(msg, sizeof msg, format, ap);
        va_end(ap);
        if (suppressed > 0)
                log_warning("%s (%u similar messages suppressed)", msg, suppressed);
        else
                log_warning("%s", msg);
}

static void log_stats(Hub *h) {
        log_info("Members %u (peak %" PRIu64 ", joined %" PRIu64 ", refused %" PRIu64 "); frames %" PRIu64
                 ", delivered %" PRIu64 ", overruns %" PRIu64 ", dropped oversize %" PRIu64 ", empty %" PRIu64 ".",
                 h->n_members, h->peak_members, h->joined, h->refused, h->frames, h->delivered, h->overruns,
                 h->oversize, h->empty);
        if (h->data_bitrate)
                log_info("Paced at %" PRIu64 " bit/s (CAN FD data phase %" PRIu64 " bit/s): bus busy %" PRIu64
                         " ms in total, %u frame(s) queued.",
                         h->bitrate, h->data_bitrate, h->busy_ns / 1000000, h->queued);
        else if (h->bitrate)
                log_info("Paced at %" PRIu64 " bit/s: bus busy %" PRIu64 " ms in total, %u frame(s) queued.",
                         h->bitrate, h->busy_ns / 1000000, h->queued);
        for (unsigned i = 0; i < h->n_members; i++) {
                Member *m = h->members[i];
                log_info("Member #%" PRIu64 " (pid %d): sent %" PRIu64 ", overruns %" PRIu64 ".", m->serial,
                         (int) m->pid, m->sent, m->overruns);
        }
}

/* ---- members ---- */

static Member *member_free(Member *m) {
        if (!m)
                return NULL;
        sd_event_source_disable_unref(m->io);
        safe_close(m->fd);
        free(m);
        return NULL;
}

static void member_remove(Hub *h, Member *m, const char *why) {
        for (unsigned i = 0; i < h->n_members; i++)
                if (h->members[i] == m) {
                        h->members[i] = h->members[--h->n_members];
                        h->members[h->n_members] = NULL;
                        break;
                }
        log_info("Member #%" PRIu64 " (pid %d) left (%s): sent %" PRIu64 ", overruns %" PRIu64 ".", m->serial,
                 (int) m->pid, why, m->sent, m->overruns);
        member_free(m);
}

/* Deliver to every member but the sender; never wait for one. */
static void forward(Hub *h, uint64_t from, const uint8_t *data, size_t size) {
        for (unsigned i = 0; i < h->n_members; i++) {
                Member *m = h->members[i];
                ssize_t n;

                if (m->serial == from)
                        continue;
                do
                        n = send(m->fd, data, size, MSG_DONTWAIT | MSG_NOSIGNAL);
                while (n < 0 && errno == EINTR);
                if (n >= 0) {
                        h->delivered++;
                        continue;
                }
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
                        m->overruns++;
                        h->overruns++;
                        if (m->overruns == 1 || m->overruns % 1000 == 0)
                                log_peer(h, "Member #%" PRIu64 " (pid %d) does not keep up: %" PRIu64 " frame(s) lost.",
                                         m->serial, (int) m->pid, m->overruns);
                } else if (errno != EPIPE && errno != ECONNRESET)
                        log_debug_errno(errno, "Sending to member #%" PRIu64 ": %m", m->serial);
                /* A member that went away is removed when its socket says so. */
        }
}

/* ---- pacing ---- */

/* The wire time of a frame (can-wire.h has the bit model and its sources).
 * A 72-byte datagram is a CAN FD frame: ISO 11898-1 FD format, the data
 * phase at the data bitrate when it has CANFD_BRS (byte 5). Everything else
 * (classic frames, garbage) is timed as a classic frame of its length,
 * capped at 8. */
static uint64_t wire_ns(const Hub *h, const uint8_t *data, size_t size) {
        unsigned len = 8;
        uint32_t id = 0;

        if (size >= 5) {
                memcpy(&id, data, sizeof id);
                len = data[4];
        }
        if (size == TG_CANFD_MTU)
                return can_wire_ns(can_wire_fd_bits(id & CAN_EFF_FLAG, len, data[5] & CANFD_BRS), h->bitrate,
                                   h->data_bitrate);
        return can_wire_ns(can_wire_classic_bits(id & CAN_EFF_FLAG, len), h->bitrate, 0);
}

static void set_paused(Hub *h, bool paused) {
        if (h->paused == paused)
                return;
        h->paused = paused;
        for (unsigned i = 0; i < h->n_members; i++)
                (void) sd_event_source_set_enabled(h->members[i]->io, paused ? SD_EVENT_OFF : SD_EVENT_ON);
        log_debug("%s reading from members (%u frame(s) queued).", paused ? "Paused" : "Resumed", h->queued);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata);

static int arm_timer(Hub *h) {
        uint64_t due_usec;

        if (h->queued == 0)
                return 0; /* nothing to wait for: no timer, the loop sleeps */
        /* CLOCK_MONOTONIC in µs, rounded up so a frame never leaves early. */
        due_usec = (h->queue[h->head].due_ns + 999) / 1000;
        return tg_event_arm(h->event, &h->timer, CLOCK_MONOTONIC, due_usec, TG_TIMER_EXACT, on_timer, h, "pace");
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Hub *h = userdata;
        uint64_t now = now_ns();
        int r;

        while (h->queued > 0 && h->queue[h->head].due_ns <= now) {
                Pending *p = &h->queue[h->head];

                forward(h, p->from, p->data, p->size);
                h->head = (h->head + 1) % PACE_QUEUE;
                h->queued--;
        }
        if (h->paused && h->queued <= PACE_QUEUE / 2)
                set_paused(h, false);
        r = arm_timer(h);
        if (r < 0)
                return log_error_errno(r, "Cannot arm the pacing timer: %m");
        return 0;
}

static int enqueue(Hub *h, uint64_t from, const uint8_t *data, size_t size) {
        uint64_t now = now_ns(), wire = wire_ns(h, data, size);
        Pending *p = &h->queue[(h->head + h->queued) % PACE_QUEUE];

        /* One frame on the wire at a time: it starts when the bus is free. */
        h->bus_free_ns = MAX(h->bus_free_ns, now) + wire;
        h->busy_ns += wire;
        *p = (Pending) { .due_ns = h->bus_free_ns, .from = from, .size = (uint8_t) size };
        memcpy(p->data, data, size);
        if (++h->queued == PACE_QUEUE)
                set_paused(h, true);
        return h->queued == 1 ? arm_timer(h) : 0;
}

/* ---- reading ---- */

static void accept_pending(Hub *h, Member *current);

static int on_member(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Member *m = userdata;
        Hub *h = m->hub;
        uint8_t buf[TG_CANFD_MTU + 1];

        for (unsigned i = 0; i < READ_BATCH && !h->paused; i++) {
                ssize_t n;

                n = recv(fd, buf, sizeof buf, MSG_DONTWAIT | MSG_TRUNC);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                break;
                        /* ECONNRESET: it closed with frames unread. */
                        member_remove(h, m, errno == ECONNRESET ? "closed" : strerror(errno));
                        return 0;
                }
                if (n == 0) {
                        /* End of stream, or an empty datagram: SEQPACKET shows both as 0. */
                        if (revents & (EPOLLHUP | EPOLLRDHUP | EPOLLERR)) {
                                member_remove(h, m, "closed");
                                return 0;
                        }
                        h->empty++;
                        log_peer(h, "Member #%" PRIu64 " (pid %d) sent an empty datagram: dropped.", m->serial,
                                 (int) m->pid);
                        continue;
                }
                if ((size_t) n > TG_CANFD_MTU) {
                        h->oversize++;
                        log_peer(h, "Member #%" PRIu64 " (pid %d) sent %zd bytes, more than a CAN FD frame: dropped.",
                                 m->serial, (int) m->pid, n);
                        continue;
                }
                /* Whoever connected before this datagram was sent is on the
                 * bus when it is forwarded, as a socket bound to vcan gets
                 * every frame sent after its bind(): take waiting members
                 * first. One accept4() (EAGAIN, usually) per frame. A member
                 * that hung up was removed above, before any newcomer could
                 * be refused for want of its seat. */
                accept_pending(h, m);
                m->sent++;
                h->frames++;
                if (tg_log_get_max_level() >= LOG_DEBUG) {
                        char text[TG_CAN_FRAME_STRING_MAX];
                        TgCanFrame f;

                        if (tg_can_frame_decode(buf, (size_t) n, &f) < 0)
                                log_debug("#%" PRIu64 ": %zd bytes that are not a frame", m->serial, n);
                        else if (h->bitrate)
                                log_debug("#%" PRIu64 ": %s (%" PRIu64 " ns on the wire)", m->serial,
                                          tg_can_frame_format(&f, text, sizeof text), wire_ns(h, buf, (size_t) n));
                        else
                                log_debug("#%" PRIu64 ": %s", m->serial, tg_can_frame_format(&f, text, sizeof text));
                }
                if (h->bitrate) {
                        int r = enqueue(h, m->serial, buf, (size_t) n);
                        if (r < 0)
                                return log_error_errno(r, "Cannot arm the pacing timer: %m");
                } else
                        forward(h, m->serial, buf, (size_t) n);
        }
        if (!(revents & EPOLLIN) && (revents & (EPOLLHUP | EPOLLERR)))
                member_remove(h, m, "hung up");
        return 0;
}

/* Newcomers are taken before the hang-ups of members are handled, so a
 * seat may still be held by a member that has left (a hub that probed the
 * socket and went, a tool that ended). Before a newcomer is refused, such
 * seats are freed: hung up, with nothing left to read. current (the member
 * whose frames are being read, if any) is left alone. */
static void reap_departed(Hub *h, Member *current) {
        for (unsigned i = 0; i < h->n_members;) {
                Member *m = h->members[i];
                struct pollfd p = { .fd = m->fd, .events = POLLIN | POLLRDHUP };
                uint8_t byte;

                if (m != current && poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR)) &&
                    recv(m->fd, &byte, sizeof byte, MSG_PEEK | MSG_DONTWAIT) <= 0) {
                        member_remove(h, m, "closed"); /* the last member moved to i */
                        continue;
                }
                i++;
        }
}

static void accept_pending(Hub *h, Member *current) {
        for (;;) {
                _cleanup_close_ int cfd = accept4(h->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                struct ucred cred = {};
                socklen_t len = sizeof cred;
                Member *m;
                int r;

                if (cfd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        if (errno != EAGAIN && errno != EWOULDBLOCK)
                                log_peer(h, "accept: %s", strerror(errno));
                        return;
                }
                (void) getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
                if (h->n_members >= MAX_MEMBERS)
                        reap_departed(h, current);
                if (h->n_members >= MAX_MEMBERS) {
                        h->refused++;
                        log_peer(h, "Refused a member (pid %d): the bus has %d already.", (int) cred.pid, MAX_MEMBERS);
                        continue;
                }
                m = calloc(1, sizeof *m);
                if (!m) {
                        log_peer(h, "Out of memory for a new member.");
                        return;
                }
                *m = (Member) { .hub = h, .fd = TAKE_FD(cfd), .serial = ++h->next_serial, .pid = cred.pid };
                r = sd_event_add_io(h->event, &m->io, m->fd, EPOLLIN | EPOLLRDHUP, on_member, m);
                if (r >= 0 && h->paused)
                        r = sd_event_source_set_enabled(m->io, SD_EVENT_OFF);
                if (r < 0) {
                        member_free(m);
                        log_peer(h, "Cannot watch a new member: %s", strerror(-r));
                        continue;
                }
                (void) sd_event_source_set_description(m->io, "member");
                h->members[h->n_members++] = m;
                h->joined++;
                h->peak_members = MAX(h->peak_members, (uint64_t) h->n_members);
                log_info("Member #%" PRIu64 " (pid %d) joined; %u on the bus.", m->serial, (int) m->pid, h->n_members);
        }
}

static int on_listen(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        accept_pending(userdata, NULL);
        return 0;
}

/* ---- the socket ---- */

/* A socket file left by a hub that died is replaced; a live hub, or a file
 * that is not a socket, is not. */
static int remove_stale(const char *path, const struct sockaddr_un *sa) {
        _cleanup_close_ int probe = -EBADF;
        struct stat st;

        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : log_error_errno(errno, "Cannot stat %s: %m", path);
        if (!S_ISSOCK(st.st_mode))
                return log_error_errno(EEXIST, "%s exists and is not a socket; not replacing it.", path);
        probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (probe < 0)
                return log_error_errno(errno, "socket(): %m");
        if (connect(probe, (const struct sockaddr *) sa, sizeof *sa) == 0 || errno == EAGAIN)
                return log_error_errno(EADDRINUSE, "Another hub listens on %s.", path);
        if (errno != ECONNREFUSED)
                return log_error_errno(errno, "%s is a socket in use (%m); not replacing it.", path);
        if (unlink(path) < 0 && errno != ENOENT)
                return log_error_errno(errno, "Cannot remove the stale socket %s: %m", path);
        log_info("Removed the stale socket %s.", path);
        return 0;
}

static int listen_on(Hub *h) {
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct stat st;
        mode_t old;
        int r;

        if (strlen(h->path) >= sizeof sa.sun_path)
                return log_error_errno(ENAMETOOLONG, "Socket path too long (at most %zu bytes): %s",
                                       sizeof sa.sun_path - 1, h->path);
        memcpy(sa.sun_path, h->path, strlen(h->path));
        r = remove_stale(h->path, &sa);
        if (r < 0)
                return r;

        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return log_error_errno(errno, "socket(): %m");
        old = umask(0117); /* the file is born 0660: no window with other modes */
        r = bind(fd, (struct sockaddr *) &sa, sizeof sa);
        umask(old);
        if (r < 0)
                return log_error_errno(errno, "Cannot bind %s: %m", h->path);
        if (chmod(h->path, 0660) < 0 || stat(h->path, &st) < 0)
                return log_error_errno(errno, "Cannot set up %s: %m", h->path);
        h->sock_dev = st.st_dev;
        h->sock_ino = st.st_ino;
        if (listen(fd, MAX_MEMBERS) < 0)
                return log_error_errno(errno, "listen(): %m");
        r = sd_event_add_io(h->event, &h->listen_io, fd, EPOLLIN, on_listen, h);
        if (r < 0)
                return log_error_errno(r, "Cannot watch the socket: %m");
        /* Newcomers before frames (see on_member()). */
        (void) sd_event_source_set_priority(h->listen_io, SD_EVENT_PRIORITY_IMPORTANT);
        (void) sd_event_source_set_description(h->listen_io, "listen");
        h->listen_fd = TAKE_FD(fd);
        return 0;
}

/* Remove the socket file if it is still ours (a newer hub may have replaced it). */
static void unlink_socket(Hub *h) {
        struct stat st;

        if (h->listen_fd >= 0 && stat(h->path, &st) == 0 && st.st_dev == h->sock_dev && st.st_ino == h->sock_ino)
                (void) unlink(h->path);
}

static void hub_done(Hub *h) {
        for (unsigned i = 0; i < h->n_members; i++)
                h->members[i] = member_free(h->members[i]);
        h->n_members = 0;
        h->timer = sd_event_source_disable_unref(h->timer);
        h->listen_io = sd_event_source_disable_unref(h->listen_io);
        unlink_socket(h);
        h->listen_fd = safe_close(h->listen_fd);
        h->event = sd_event_unref(h->event);
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Hub *h = userdata;

        if (si->ssi_signo == SIGUSR1) {
                log_stats(h);
                return 0;
        }
        log_info("Received %s, stopping.", si->ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
        return sd_event_exit(h->event, 0);
}

/* ---- command line ---- */

static void help(void) {
        printf("Usage: tollgate-canhub --socket=PATH [OPTIONS]\n\n"
               "A CAN bus in userspace: every frame a member sends on the SOCK_SEQPACKET socket\n"
               "goes to every other member, as on vcan. Members are Tollgate daemons and tools\n"
               "opened with the bus spec \"unix:PATH\". See docs/can.md.\n\n"
               "  --socket=PATH        where to listen (a stale socket there is replaced; mode 0660)\n"
               "  --bitrate=BIT/S      pace the bus like a CAN bus at this (nominal) bitrate\n"
               "                       (500000, 500k, 1M; default: no pacing)\n"
               "  --data-bitrate=BIT/S CAN FD data phase bitrate of frames with BRS (2M; with\n"
               "                       --bitrate, at least as high; default: the nominal one)\n"
               "  --log-level=LEVEL    debug (every frame), info (default), notice, warning, err\n"
               "  -h, --help           show this help\n"
               "      --version        show the version\n\n"
               "SIGUSR1 logs the counters; SIGTERM or SIGINT stops it.\n");
}

/* "500000", "500k", "1M" (decimal). */
static int parse_bitrate(const char *s, uint64_t *ret) {
        _cleanup_free_ char *copy = strdup(s);
        uint64_t factor = 1, v;
        size_t n;

        if (!copy)
                return -ENOMEM;
        n = strlen(copy);
        if (n > 0 && (copy[n - 1] == 'k' || copy[n - 1] == 'K')) {
                factor = 1000;
                copy[n - 1] = '\0';
        } else if (n > 0 && copy[n - 1] == 'M') {
                factor = 1000000;
                copy[n - 1] = '\0';
        }
        if (tg_parse_uint64(copy, &v) < 0 || v > BITRATE_MAX / factor || v * factor < BITRATE_MIN)
                return -EINVAL;
        *ret = v * factor;
        return 0;
}

static int parse_argv(int argc, char *argv[], Hub *h) {
        enum { ARG_SOCKET = 0x100, ARG_BITRATE, ARG_DATA_BITRATE };
        static const struct option options[] = {
                { "socket", required_argument, NULL, ARG_SOCKET },
                { "bitrate", required_argument, NULL, ARG_BITRATE },
                { "data-bitrate", required_argument, NULL, ARG_DATA_BITRATE },
                TG_TOOL_OPTIONS,
                {},
        };
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case ARG_SOCKET:
                        h->path = optarg;
                        break;
                case ARG_BITRATE:
                        if (parse_bitrate(optarg, &h->bitrate) < 0)
                                return log_error_errno(EINVAL, "--bitrate= takes %d…%d bit/s (500000, 500k, 1M): %s",
                                                       BITRATE_MIN, BITRATE_MAX, optarg);
                        break;
                case ARG_DATA_BITRATE:
                        if (parse_bitrate(optarg, &h->data_bitrate) < 0)
                                return log_error_errno(EINVAL,
                                                       "--data-bitrate= takes %d…%d bit/s (2000000, 2000k, 2M): %s",
                                                       BITRATE_MIN, BITRATE_MAX, optarg);
                        break;
                default:
                        r = tg_tool_option(c, optarg, "tollgate-canhub", help);
                        if (r <= 0)
                                return r;
                }
        r = tg_tool_no_arguments(argc, argv);
        if (r < 0)
                return r;
        if (!h->path || !*h->path)
                return log_error_errno(EINVAL, "--socket=PATH is required (see --help).");
        if (h->data_bitrate && !h->bitrate)
                return log_error_errno(EINVAL, "--data-bitrate= needs --bitrate= (see --help).");
        if (h->data_bitrate && h->data_bitrate < h->bitrate)
                return log_error_errno(EINVAL, "--data-bitrate=%" PRIu64 " is below --bitrate=%" PRIu64 ".",
                                       h->data_bitrate, h->bitrate);
        return 1;
}

static int run(int argc, char *argv[]) {
        static Hub hub = {
                .listen_fd = -EBADF,
                .log_limit = TG_RATELIMIT_INIT(5 * USEC_PER_SEC, 10),
        };
        static const int signals[] = { SIGTERM, SIGINT, SIGUSR1 };
        Hub *h = &hub;
        int r;

        r = parse_argv(argc, argv, h);
        if (r <= 0)
                return r;

        (void) signal(SIGPIPE, SIG_IGN);
        r = tg_tool_event_new(&h->event, signals, ELEMENTSOF(signals), on_signal, h);
        if (r < 0)
                goto out;
        r = listen_on(h);
        if (r < 0)
                goto out;

        if (h->data_bitrate)
                log_info("Listening on %s, paced at %" PRIu64 " bit/s, CAN FD data phase %" PRIu64 " bit/s.",
                         h->path, h->bitrate, h->data_bitrate);
        else if (h->bitrate)
                log_info("Listening on %s, paced at %" PRIu64 " bit/s.", h->path, h->bitrate);
        else
                log_info("Listening on %s.", h->path);
        (void) sd_notifyf(0, "READY=1\nSTATUS=Listening on %s", h->path);

        r = sd_event_loop(h->event);
        if (r < 0)
                log_error_errno(r, "Event loop failed: %m");
        (void) sd_notify(0, "STOPPING=1");
        log_stats(h);
out:
        hub_done(h);
        return r;
}

int main(int argc, char *argv[]) {
        int r;

        tg_log_open("canhub", TG_LOG_TARGET_AUTO);
        r = run(argc, argv);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
