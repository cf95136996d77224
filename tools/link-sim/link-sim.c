/* SPDX-License-Identifier: MIT */

/*
 * tollgate-link-sim: a packet-level link emulator between two TUN devices.
 *
 * It reads IP packets from TUN device A, passes them through the model of
 * one direction (link-model.h: drop-tail queue, rate, loss, delay ± jitter,
 * cut) and writes them to TUN device B when they are due; B → A likewise.
 * The TUN devices normally live in two network namespaces (tests/netlab/netlab
 * sets them up), so real TCP stacks talk across the emulated link. This is
 * what netem would do if the kernel had it; see docs/link-sim.md.
 *
 * One thread, one epoll loop, one timerfd armed at the next due packet,
 * control over a unix SOCK_SEQPACKET socket (one command per message, one
 * reply per command). The same binary is the control client:
 *
 *   tollgate-link-sim --tun-a=lab-car:tgl0 --tun-b=lab-key:tgl0 --rtt=30ms --rate=20mbit \
 *                     --loss=0.5% --control=/run/lab.sock
 *   tollgate-link-sim --ctl=/run/lab.sock cut a2b for=2s
 */

#include <fcntl.h>
#include <getopt.h>
#include <linux/if_tun.h>
#include <math.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#if __has_include("tg-config.h")
#include "tg-config.h"
#endif
#include "link-model.h"
#include "tg-log.h"
#include "tg-macro.h"
#include "tg-parse.h"
#include "tg-tool.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

#define READ_BATCH 64              /* packets read from one TUN per wake-up */
#define CTL_MAX_CLIENTS 16
#define CTL_MAX_MESSAGE 8192
#define CTL_MAX_TOKENS 16
#define DEFAULT_QUEUE 100
#define NSEC_PER_SEC_ UINT64_C(1000000000)
#define log_oom_error() log_error_errno(ENOMEM, "Out of memory.")

enum { DIR_A2B, DIR_B2A, _DIR_MAX };
enum { END_A, END_B, _END_MAX };

typedef struct End {
        const char *spec;  /* [NETNS:]DEV as given */
        const char *label; /* "car", "key" … */
        int fd;
        unsigned mtu;
} End;

typedef struct Dir {
        LinkDir model;
        uint64_t write_errors;
        /* How late packets left compared with their due time: our own error. */
        uint64_t late_sum_ns, late_max_ns, late_over_1ms;
} Dir;

typedef struct Sim {
        End end[_END_MAX];
        Dir dir[_DIR_MAX];
        LinkPool pool;
        uint64_t seed;
        uint64_t start_ns;
        uint64_t counters_since_ns;

        int epoll_fd, timer_fd, signal_fd, ctl_fd;
        int clients[CTL_MAX_CLIENTS];
        const char *ctl_path;
        uint64_t timer_armed; /* LINK_NSEC_INFINITY: disarmed */
        bool quit;
        uint8_t scratch[65536]; /* tail of an oversized read */
} Sim;

/* epoll tags */
enum {
        TAG_TUN_A = 1,
        TAG_TUN_B,
        TAG_TIMER,
        TAG_SIGNAL,
        TAG_CTL,
        TAG_CLIENT_BASE = 100,
};

static uint64_t now_ns(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * NSEC_PER_SEC_ + (uint64_t) ts.tv_nsec;
}

/* ---- value parsers (command line and the "set" command share them) ---- */

/* "20mbit", "500kbit", "1.5mbit", "2gbit", "64000bit"; tc's byte units too
 * ("100kbps" = 100 kB/s); "0", "none", "unlimited" = no limit. A bare number
 * is refused: tc reads it as bytes/s, most people mean bit/s. */
static int parse_rate(const char *s, uint64_t *ret) {
        static const struct {
                const char *unit;
                double factor;
        } units[] = {
                { "bit", 1 },    { "kbit", 1e3 },     { "mbit", 1e6 },     { "gbit", 1e9 },
                { "bps", 8 },    { "kbps", 8e3 },     { "mbps", 8e6 },     { "gbps", 8e9 },
        };
        char *end;
        double v;

        if (streq(s, "0") || streq(s, "none") || streq(s, "unlimited")) {
                *ret = 0;
                return 0;
        }
        errno = 0;
        v = strtod(s, &end);
        if (errno != 0 || end == s || !(v > 0) || !isfinite(v))
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (strcasecmp(end, units[i].unit) == 0) {
                        double bps = v * units[i].factor;
                        if (bps < 1 || bps > 1e12)
                                return -ERANGE;
                        *ret = (uint64_t) llround(bps);
                        return 0;
                }
        return -EINVAL;
}

/* "0.5%", "0.5" (percent either way), "0". */
static int parse_loss(const char *s, double *ret) {
        char *end;
        double v;

        errno = 0;
        v = strtod(s, &end);
        if (errno != 0 || end == s || !isfinite(v))
                return -EINVAL;
        if (*end == '%')
                end++;
        if (*end != '\0' || v < 0 || v > 100)
                return -EINVAL;
        *ret = v / 100.0;
        return 0;
}

static int parse_duration_ns(const char *s, uint64_t *ret) {
        uint64_t usec;
        int r;

        /* A bare number is milliseconds, as people write delays. */
        r = tg_parse_timespan(s, USEC_PER_MSEC, &usec);
        if (r < 0)
                return r;
        if (usec == USEC_INFINITY) {
                *ret = LINK_NSEC_INFINITY;
                return 0;
        }
        if (usec > UINT64_MAX / NSEC_PER_USEC / 4)
                return -ERANGE;
        *ret = usec * NSEC_PER_USEC;
        return 0;
}

/* Apply one key=value to a direction's parameters; on error *ret_error says why. */
static int params_apply(LinkParams *p, const char *key, const char *value, const char **ret_error) {
        uint64_t u;
        int r;

        if (streq(key, "delay") || streq(key, "rtt")) {
                r = parse_duration_ns(value, &u);
                if (r < 0 || u == LINK_NSEC_INFINITY || u > 3600 * NSEC_PER_SEC_)
                        goto bad;
                p->delay_ns = streq(key, "rtt") ? u / 2 : u;
        } else if (streq(key, "jitter")) {
                r = parse_duration_ns(value, &u);
                if (r < 0 || u == LINK_NSEC_INFINITY || u > 3600 * NSEC_PER_SEC_)
                        goto bad;
                p->jitter_ns = u;
        } else if (streq(key, "loss")) {
                if (parse_loss(value, &p->loss) < 0)
                        goto bad;
        } else if (streq(key, "rate")) {
                if (parse_rate(value, &p->rate_bps) < 0)
                        goto bad;
        } else if (streq(key, "overhead")) {
                if (tg_parse_uint64(value, &u) < 0 || u > 1024)
                        goto bad;
                p->overhead = (uint32_t) u;
        } else if (streq(key, "queue")) {
                /* PACKETS, or a DURATION at the rate ("100ms"). */
                if (tg_parse_uint64(value, &u) == 0) {
                        if (u < 1 || u > LINK_MAX_HELD)
                                goto bad;
                        p->queue = (uint32_t) u;
                        p->queue_ns = 0;
                } else {
                        r = parse_duration_ns(value, &u);
                        if (r < 0 || u == 0 || u > 3600 * NSEC_PER_SEC_)
                                goto bad;
                        p->queue_ns = u;
                }
        } else {
                *ret_error = "unknown parameter (delay, rtt, jitter, loss, rate, overhead, queue)";
                return -EINVAL;
        }
        return 0;
bad:
        *ret_error = "bad value";
        return -EINVAL;
}

/* ---- TUN devices ---- */

static int netns_open(const char *name) {
        _cleanup_free_ char *path = NULL;

        if (strchr(name, '/'))
                return open(name, O_RDONLY | O_CLOEXEC);
        if (asprintf(&path, "/run/netns/%s", name) < 0) {
                errno = ENOMEM;
                return -1;
        }
        return open(path, O_RDONLY | O_CLOEXEC);
}

/* Attach to an existing TUN device (ip tuntap add mode tun), in a network
 * namespace if the spec names one. The fd stays bound to that device
 * whatever namespace we are in afterwards. */
static int tun_open(End *e) {
        _cleanup_close_ int orig_ns = -EBADF, ns = -EBADF, fd = -EBADF, sock = -EBADF;
        _cleanup_free_ char *copy = strdup(e->spec);
        const char *dev, *nsname = NULL;
        struct ifreq ifr = {};
        char *colon;
        int r = 0;

        if (!copy)
                return log_oom_error();
        colon = strrchr(copy, ':');
        if (colon) {
                *colon = '\0';
                nsname = copy;
                dev = colon + 1;
        } else
                dev = copy;
        if (strlen(dev) == 0 || strlen(dev) >= IFNAMSIZ)
                return log_error_errno(EINVAL, "Bad device name in \"%s\".", e->spec);

        if (nsname) {
                ns = netns_open(nsname);
                if (ns < 0)
                        return log_error_errno(errno, "Cannot open network namespace %s: %m", nsname);
                orig_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
                if (orig_ns < 0)
                        return log_error_errno(errno, "Cannot open /proc/self/ns/net: %m");
                if (setns(ns, CLONE_NEWNET) < 0)
                        return log_error_errno(errno, "Cannot enter network namespace %s: %m", nsname);
        }

        /* Refuse to create a device by accident: TUNSETIFF would make a fresh
         * unconfigured one if the name is wrong. */
        if (if_nametoindex(dev) == 0) {
                r = log_error_errno(ENODEV, "No device %s in %s (create it with \"ip tuntap add dev %s mode tun\").",
                                    dev, nsname ? nsname : "this namespace", dev);
                goto back;
        }
        fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
                r = log_error_errno(errno, "Cannot open /dev/net/tun: %m");
                goto back;
        }
        ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
        snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", dev);
        if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
                r = log_error_errno(errno, "Cannot attach to %s (%s): %m%s", dev, e->spec,
                                    errno == EBUSY ? " (another process holds it)"
                                    : errno == EINVAL ? " (not a single-queue \"mode tun\" device without pi?)"
                                                      : "");
                goto back;
        }
        sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (sock >= 0 && ioctl(sock, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu > 0)
                e->mtu = (unsigned) ifr.ifr_mtu;
        else
                e->mtu = 1500;
        e->fd = TAKE_FD(fd);

back:
        if (orig_ns >= 0 && setns(orig_ns, CLONE_NEWNET) < 0) {
                log_error_errno(errno, "Cannot return to the original network namespace: %m");
                e->fd = safe_close(e->fd);
                return -errno;
        }
        return r;
}

/* ---- moving packets ---- */

static void read_tun(Sim *s, int end) {
        Dir *d = &s->dir[end == END_A ? DIR_A2B : DIR_B2A];

        for (unsigned i = 0; i < READ_BATCH; i++) {
                LinkPacket *p = link_pool_get(&s->pool);
                struct iovec iov[2];
                ssize_t n;

                if (!p) {
                        log_oom_error();
                        return;
                }
                iov[0] = (struct iovec) { p->data, s->pool.packet_size };
                iov[1] = (struct iovec) { s->scratch, sizeof s->scratch };
                n = readv(s->end[end].fd, iov, 2);
                if (n <= 0) {
                        link_pool_put(&s->pool, p);
                        if (n < 0 && errno != EAGAIN && errno != EINTR)
                                log_warning_errno(errno, "Reading %s: %m", s->end[end].spec);
                        return;
                }
                if ((size_t) n > s->pool.packet_size) {
                        /* MTU raised after we started: count it, do not truncate it. */
                        d->model.c.rx_packets++;
                        d->model.c.rx_bytes += (uint64_t) n;
                        d->model.c.drop_other++;
                        link_pool_put(&s->pool, p);
                        continue;
                }
                p->len = (uint32_t) n;
                if (link_dir_enqueue(&d->model, now_ns(), p) != LINK_QUEUED)
                        link_pool_put(&s->pool, p);
        }
}

static void deliver_due(Sim *s) {
        uint64_t now = now_ns();

        for (int i = 0; i < _DIR_MAX; i++) {
                Dir *d = &s->dir[i];
                int out = s->end[i == DIR_A2B ? END_B : END_A].fd;
                LinkPacket *p;

                while ((p = link_dir_pop_due(&d->model, now, &s->pool))) {
                        uint64_t late = now - p->due;

                        d->late_sum_ns += late;
                        d->late_max_ns = MAX(d->late_max_ns, late);
                        d->late_over_1ms += late > 1000000;
                        if (write(out, p->data, p->len) != (ssize_t) p->len) {
                                static TgRateLimit rl = TG_RATELIMIT_INIT(5 * USEC_PER_SEC, 5);
                                unsigned suppressed;

                                d->write_errors++;
                                if (tg_ratelimit_check(&rl, &suppressed))
                                        log_warning_errno(errno, "Writing to %s: %m", s->end[i == DIR_A2B ? END_B : END_A].spec);
                        }
                        link_pool_put(&s->pool, p);
                }
        }
}

static int rearm_timer(Sim *s) {
        uint64_t next = MIN(link_dir_next_event(&s->dir[DIR_A2B].model), link_dir_next_event(&s->dir[DIR_B2A].model));
        struct itimerspec its = {};

        if (next == s->timer_armed)
                return 0;
        if (next != LINK_NSEC_INFINITY) {
                next = MAX(next, UINT64_C(1)); /* 0 would disarm */
                its.it_value.tv_sec = (time_t) (next / NSEC_PER_SEC_);
                its.it_value.tv_nsec = (long) (next % NSEC_PER_SEC_);
        }
        if (timerfd_settime(s->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
                return log_error_errno(errno, "timerfd_settime: %m");
        s->timer_armed = next;
        return 0;
}

/* ---- control ---- */

typedef struct Buf {
        char *p;
        size_t size, len;
        bool overflow;
} Buf;

static void _printf_(2, 3) buf_printf(Buf *b, const char *fmt, ...) {
        va_list ap;
        int n;

        if (b->overflow)
                return;
        va_start(ap, fmt);
        n = vsnprintf(b->p + b->len, b->size - b->len, fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t) n >= b->size - b->len) {
                b->overflow = true;
                return;
        }
        b->len += (size_t) n;
}

static const char *dir_name(int i) {
        return i == DIR_A2B ? "a2b" : "b2a";
}

/* Labels are checked at start to be [A-Za-z0-9_-], so they need no JSON escaping. */
static void stats_json(Sim *s, Buf *b) {
        uint64_t now = now_ns();

        buf_printf(b, "{\"version\":\"%s\",\"seed\":%" PRIu64 ",\"uptime_ms\":%" PRIu64 ",\"counters_ms\":%" PRIu64,
                   PACKAGE_VERSION, s->seed, (now - s->start_ns) / 1000000, (now - s->counters_since_ns) / 1000000);
        for (int e = 0; e < _END_MAX; e++)
                buf_printf(b, ",\"%s\":{\"label\":\"%s\",\"mtu\":%u}", e == END_A ? "a" : "b", s->end[e].label,
                           s->end[e].mtu);
        for (int i = 0; i < _DIR_MAX; i++) {
                LinkDir *m = &s->dir[i].model;
                const LinkCounters *c = &m->c;
                uint32_t queued = link_dir_queued(m, now);

                buf_printf(b,
                           ",\"%s\":{\"from\":\"%s\",\"to\":\"%s\",\"delay_us\":%" PRIu64 ",\"jitter_us\":%" PRIu64
                           ",\"loss\":%.6g,\"rate_bps\":%" PRIu64 ",\"overhead\":%u,\"queue_limit\":%u,\"cut\":%s",
                           dir_name(i), s->end[i == DIR_A2B ? END_A : END_B].label,
                           s->end[i == DIR_A2B ? END_B : END_A].label, m->p.delay_ns / 1000, m->p.jitter_ns / 1000,
                           m->p.loss, m->p.rate_bps, m->p.overhead, m->p.queue, m->cut ? "true" : "false");
                if (m->p.queue_ns > 0)
                        buf_printf(b, ",\"queue_us\":%" PRIu64, m->p.queue_ns / 1000);
                if (m->cut && m->cut_until != LINK_NSEC_INFINITY)
                        buf_printf(b, ",\"cut_remaining_ms\":%" PRIu64,
                                   m->cut_until > now ? (m->cut_until - now) / 1000000 : 0);
                if (m->armed)
                        buf_printf(b, ",\"cut_armed_bytes\":%" PRIu64, m->arm_bytes);
                buf_printf(b,
                           ",\"rx_packets\":%" PRIu64 ",\"rx_bytes\":%" PRIu64 ",\"tx_packets\":%" PRIu64
                           ",\"tx_bytes\":%" PRIu64 ",\"drop_loss\":%" PRIu64 ",\"drop_queue\":%" PRIu64
                           ",\"drop_cut\":%" PRIu64 ",\"drop_other\":%" PRIu64 ",\"write_errors\":%" PRIu64
                           ",\"queued\":%u,\"queue_max\":%u,\"held\":%zu,"
                           "\"late_us\":{\"mean\":%.1f,\"max\":%.1f,\"over_1ms\":%" PRIu64 "}}",
                           c->rx_packets, c->rx_bytes, c->tx_packets, c->tx_bytes, c->drop_loss, c->drop_queue,
                           c->drop_cut, c->drop_other, s->dir[i].write_errors, queued, c->queue_max,
                           link_dir_held(m),
                           c->tx_packets ? (double) s->dir[i].late_sum_ns / 1e3 / (double) c->tx_packets : 0.0,
                           (double) s->dir[i].late_max_ns / 1e3, s->dir[i].late_over_1ms);
        }
        buf_printf(b, "}");
}

static void stats_text(Sim *s, Buf *b) {
        uint64_t now = now_ns();

        buf_printf(b, "link %s <-> %s  seed %" PRIu64 "  counters over %.1f s\n", s->end[END_A].label,
                   s->end[END_B].label, s->seed, (double) (now - s->counters_since_ns) / 1e9);
        for (int i = 0; i < _DIR_MAX; i++) {
                LinkDir *m = &s->dir[i].model;
                const LinkCounters *c = &m->c;
                uint64_t dropped = c->drop_loss + c->drop_queue + c->drop_cut + c->drop_other;
                char rate[32];

                if (m->p.rate_bps == 0)
                        snprintf(rate, sizeof rate, "unlimited");
                else
                        snprintf(rate, sizeof rate, "%g Mbit/s", (double) m->p.rate_bps / 1e6);
                buf_printf(b, "%s -> %s: delay %.3f ms +-%.3f ms, loss %.3f %%, rate %s, queue %u packets%s\n",
                           s->end[i == DIR_A2B ? END_A : END_B].label, s->end[i == DIR_A2B ? END_B : END_A].label,
                           (double) m->p.delay_ns / 1e6, (double) m->p.jitter_ns / 1e6, m->p.loss * 100, rate,
                           m->p.queue, m->cut ? "  [CUT]" : m->armed ? "  [cut armed]" : "");
                buf_printf(b,
                           "  in %" PRIu64 " pkt %" PRIu64 " B, forwarded %" PRIu64 " pkt %" PRIu64 " B, dropped %" PRIu64
                           " (loss %" PRIu64 ", queue %" PRIu64 ", cut %" PRIu64 ", other %" PRIu64
                           "), loss rate %.3f %%, queue now %u max %u\n"
                           "  released late by %.3f ms on average, %.3f ms at most, %" PRIu64 " packets > 1 ms\n",
                           c->rx_packets, c->rx_bytes, c->tx_packets, c->tx_bytes, dropped, c->drop_loss,
                           c->drop_queue, c->drop_cut, c->drop_other,
                           c->rx_packets > 0 ? 100.0 * (double) c->drop_loss / (double) c->rx_packets : 0.0,
                           link_dir_queued(m, now), c->queue_max,
                           c->tx_packets ? (double) s->dir[i].late_sum_ns / 1e6 / (double) c->tx_packets : 0.0,
                           (double) s->dir[i].late_max_ns / 1e6, s->dir[i].late_over_1ms);
        }
}

/* "a2b", "b2a", "both", "car-to-key" …; returns a bit mask of directions, 0 if not a direction. */
static unsigned parse_dir(Sim *s, const char *t) {
        char x[128];

        if (streq(t, "a2b"))
                return 1u << DIR_A2B;
        if (streq(t, "b2a"))
                return 1u << DIR_B2A;
        if (streq(t, "both"))
                return (1u << DIR_A2B) | (1u << DIR_B2A);
        snprintf(x, sizeof x, "%s-to-%s", s->end[END_A].label, s->end[END_B].label);
        if (streq(t, x))
                return 1u << DIR_A2B;
        snprintf(x, sizeof x, "%s-to-%s", s->end[END_B].label, s->end[END_A].label);
        if (streq(t, x))
                return 1u << DIR_B2A;
        return 0;
}

static const char ctl_help[] =
        "commands:\n"
        "  ping                                   answers ok\n"
        "  stats [json|text]                      counters and parameters (JSON by default)\n"
        "  reset                                  zero the counters\n"
        "  cut [DIR] [for=DURATION] [after=BYTES] drop everything (now, or once BYTES more are delivered)\n"
        "  restore [DIR]                          pass packets again (disarms a pending cut)\n"
        "  set [DIR] KEY=VALUE...                 delay rtt jitter loss rate overhead queue\n"
        "  seed N                                 restart the loss/jitter generators\n"
        "  quit                                   exit\n"
        "DIR: a2b, b2a, both (default), A-to-B with the labels (e.g. car-to-key)\n";

static void ctl_execute(Sim *s, char *msg, Buf *out) {
        char *tok[CTL_MAX_TOKENS], *save = NULL;
        size_t n = 0, i = 1;
        unsigned dirs = (1u << DIR_A2B) | (1u << DIR_B2A);
        uint64_t now = now_ns();

        for (char *t = strtok_r(msg, " \t\r\n", &save); t; t = strtok_r(NULL, " \t\r\n", &save)) {
                if (n == CTL_MAX_TOKENS) {
                        buf_printf(out, "error: too many words");
                        return;
                }
                tok[n++] = t;
        }
        if (n == 0) {
                buf_printf(out, "error: empty command");
                return;
        }
        if (n > 1 && parse_dir(s, tok[1]) != 0)
                dirs = parse_dir(s, tok[i++]);

        if (streq(tok[0], "ping"))
                buf_printf(out, "ok");
        else if (streq(tok[0], "help"))
                buf_printf(out, "%s", ctl_help);
        else if (streq(tok[0], "stats")) {
                if (n == 1 || streq(tok[1], "json"))
                        stats_json(s, out);
                else if (streq(tok[1], "text"))
                        stats_text(s, out);
                else
                        buf_printf(out, "error: stats [json|text]");
        } else if (streq(tok[0], "reset")) {
                for (int d = 0; d < _DIR_MAX; d++) {
                        s->dir[d].model.c = (LinkCounters) {};
                        s->dir[d].write_errors = s->dir[d].late_sum_ns = s->dir[d].late_max_ns = 0;
                        s->dir[d].late_over_1ms = 0;
                }
                s->counters_since_ns = now;
                buf_printf(out, "ok");
        } else if (streq(tok[0], "cut")) {
                uint64_t for_ns = LINK_NSEC_INFINITY, after = 0;
                bool have_after = false;

                for (; i < n; i++) {
                        if (startswith(tok[i], "for=")) {
                                if (parse_duration_ns(tok[i] + 4, &for_ns) < 0) {
                                        buf_printf(out, "error: bad duration: %s", tok[i] + 4);
                                        return;
                                }
                        } else if (startswith(tok[i], "after=")) {
                                if (tg_parse_size(tok[i] + 6, &after) < 0) {
                                        buf_printf(out, "error: bad byte count: %s", tok[i] + 6);
                                        return;
                                }
                                have_after = true;
                        } else {
                                buf_printf(out, "error: cut [DIR] [for=DURATION] [after=BYTES]");
                                return;
                        }
                }
                for (int d = 0; d < _DIR_MAX; d++)
                        if (dirs & (1u << d)) {
                                if (have_after)
                                        link_dir_arm_cut(&s->dir[d].model, after, for_ns);
                                else
                                        link_dir_cut(&s->dir[d].model, now, for_ns, &s->pool);
                        }
                log_info("%s (%s).", have_after ? "Cut armed" : "Cut",
                         dirs == (1u << DIR_A2B) ? dir_name(DIR_A2B) : dirs == (1u << DIR_B2A) ? dir_name(DIR_B2A) : "both");
                buf_printf(out, "ok");
        } else if (streq(tok[0], "restore")) {
                if (i < n) {
                        buf_printf(out, "error: restore [DIR]");
                        return;
                }
                for (int d = 0; d < _DIR_MAX; d++)
                        if (dirs & (1u << d))
                                link_dir_restore(&s->dir[d].model);
                log_info("Restored.");
                buf_printf(out, "ok");
        } else if (streq(tok[0], "set")) {
                LinkParams p[_DIR_MAX] = { s->dir[DIR_A2B].model.p, s->dir[DIR_B2A].model.p };

                if (i == n) {
                        buf_printf(out, "error: set [DIR] KEY=VALUE...");
                        return;
                }
                for (; i < n; i++) {
                        char *eq = strchr(tok[i], '=');
                        const char *err = NULL;

                        if (!eq) {
                                buf_printf(out, "error: expected KEY=VALUE: %s", tok[i]);
                                return;
                        }
                        *eq = '\0';
                        for (int d = 0; d < _DIR_MAX; d++)
                                if ((dirs & (1u << d)) && params_apply(&p[d], tok[i], eq + 1, &err) < 0) {
                                        buf_printf(out, "error: %s: %s", tok[i], err);
                                        return;
                                }
                }
                for (int d = 0; d < _DIR_MAX; d++)
                        link_dir_set_params(&s->dir[d].model, &p[d]);
                buf_printf(out, "ok");
        } else if (streq(tok[0], "seed")) {
                uint64_t seed;

                if (n != 2 || tg_parse_uint64(tok[1], &seed) < 0) {
                        buf_printf(out, "error: seed N");
                        return;
                }
                s->seed = seed;
                for (int d = 0; d < _DIR_MAX; d++)
                        link_dir_seed(&s->dir[d].model, seed * 2 + (uint64_t) d);
                buf_printf(out, "ok");
        } else if (streq(tok[0], "quit")) {
                s->quit = true;
                buf_printf(out, "ok");
        } else
                buf_printf(out, "error: unknown command \"%s\" (try help)", tok[0]);
}

static void ctl_client_close(Sim *s, size_t k) {
        (void) epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, s->clients[k], NULL);
        s->clients[k] = safe_close(s->clients[k]);
}

static void ctl_client_io(Sim *s, size_t k) {
        char msg[CTL_MAX_MESSAGE + 1], reply[CTL_MAX_MESSAGE];
        Buf out = { reply, sizeof reply, 0, false };
        ssize_t n;

        n = recv(s->clients[k], msg, CTL_MAX_MESSAGE, MSG_DONTWAIT | MSG_TRUNC);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n <= 0) {
                ctl_client_close(s, k);
                return;
        }
        if (n > CTL_MAX_MESSAGE)
                buf_printf(&out, "error: command too long");
        else {
                msg[n] = '\0';
                ctl_execute(s, msg, &out);
        }
        if (out.overflow) {
                out = (Buf) { reply, sizeof reply, 0, false };
                buf_printf(&out, "error: reply too long");
        }
        if (send(s->clients[k], reply, out.len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
                ctl_client_close(s, k);
}

static void ctl_accept(Sim *s) {
        for (;;) {
                _cleanup_close_ int fd = accept4(s->ctl_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                size_t k;

                if (fd < 0) {
                        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                                log_warning_errno(errno, "accept: %m");
                        return;
                }
                for (k = 0; k < CTL_MAX_CLIENTS && s->clients[k] >= 0; k++)
                        ;
                if (k == CTL_MAX_CLIENTS) {
                        log_warning("Too many control clients; refusing one.");
                        continue;
                }
                struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG_CLIENT_BASE + k };
                if (epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                        log_warning_errno(errno, "epoll_ctl: %m");
                        continue;
                }
                s->clients[k] = TAKE_FD(fd);
        }
}

static int ctl_listen(Sim *s) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -EBADF;

        if (strlen(s->ctl_path) >= sizeof sa.sun_path)
                return log_error_errno(ENAMETOOLONG, "Control socket path too long: %s", s->ctl_path);
        strcpy(sa.sun_path, s->ctl_path);
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return log_error_errno(errno, "socket: %m");
        (void) unlink(s->ctl_path);
        if (bind(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                return log_error_errno(errno, "Cannot bind %s: %m", s->ctl_path);
        if (listen(fd, 8) < 0)
                return log_error_errno(errno, "listen: %m");
        s->ctl_fd = TAKE_FD(fd);
        return 0;
}

/* ---- client mode: tollgate-link-sim --ctl=PATH COMMAND... ---- */

static int ctl_client(const char *path, int argc, char **argv) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct timeval tv = { .tv_sec = 10 };
        char msg[CTL_MAX_MESSAGE], reply[65536];
        Buf b = { msg, sizeof msg, 0, false };
        _cleanup_close_ int fd = -EBADF;
        ssize_t n;

        if (argc == 0) {
                fprintf(stderr, "--ctl needs a command (try: help)\n");
                return 2;
        }
        for (int i = 0; i < argc; i++)
                buf_printf(&b, "%s%s", i > 0 ? " " : "", argv[i]);
        if (b.overflow) {
                fprintf(stderr, "Command too long.\n");
                return 2;
        }
        if (strlen(path) >= sizeof sa.sun_path) {
                fprintf(stderr, "Socket path too long: %s\n", path);
                return 2;
        }
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
            connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                fprintf(stderr, "Cannot connect to %s: %m\n", path);
                return 1;
        }
        if (send(fd, msg, b.len, MSG_NOSIGNAL) < 0) {
                fprintf(stderr, "send: %m\n");
                return 1;
        }
        n = recv(fd, reply, sizeof reply - 1, 0);
        if (n < 0) {
                fprintf(stderr, "No reply from %s: %m\n", path);
                return 1;
        }
        reply[n] = '\0';
        if (startswith(reply, "error")) {
                fprintf(stderr, "%s\n", reply);
                return 1;
        }
        fputs(reply, stdout);
        if (n > 0 && reply[n - 1] != '\n')
                fputc('\n', stdout);
        return 0;
}

/* ---- main ---- */

static void help(void) {
        printf("%s --tun-a=[NETNS:]DEV --tun-b=[NETNS:]DEV [OPTIONS]\n"
               "%s --ctl=SOCKET COMMAND...\n\n"
               "Emulate a link between two TUN devices: per-direction delay, jitter,\n"
               "Bernoulli loss, rate and a drop-tail queue; cut and restore at run time.\n\n"
               "  --tun-a=[NETNS:]DEV  --tun-b=[NETNS:]DEV   existing TUN devices (ip tuntap add mode tun)\n"
               "  --label-a=NAME --label-b=NAME             names of the ends (stats, \"car-to-key\")\n"
               "  --control=PATH        unix socket for commands (see --ctl … help)\n"
               "  --rtt=DURATION        delay = RTT/2 in each direction\n"
               "  --delay=DURATION      one-way delay, each direction\n"
               "  --jitter=DURATION     uniform ±jitter on the delay (order is kept)\n"
               "  --loss=PERCENT        Bernoulli loss, e.g. 0.5%%\n"
               "  --rate=RATE           e.g. 20mbit, 1mbit, 500kbit (0 = unlimited)\n"
               "  --overhead=BYTES      bytes added to each packet's size for the rate (L2 framing)\n"
               "  --queue=PACKETS|DURATION  drop-tail queue in front of the rate limiter, in packets\n"
               "                        or as time at the rate (\"100ms\"; at least %u packets) (default %d)\n"
               "  --a2b-KEY=VALUE --b2a-KEY=VALUE           one direction only (KEY: delay jitter loss rate overhead queue)\n"
               "  --seed=N              seed for loss and jitter (default 1)\n"
               "  --realtime[=PRIO]     SCHED_FIFO (default priority 10): on time on a busy machine\n"
               "  --ctl=SOCKET COMMAND  send a command to a running emulator and print the reply\n"
               "  --log-level=LEVEL     debug, info, notice, warning, err\n"
               "  --version             show version\n",
               program_invocation_short_name, program_invocation_short_name, LINK_QUEUE_MIN, DEFAULT_QUEUE);
}

typedef struct Assignment {
        unsigned dirs;
        char *key;
        const char *value;
} Assignment;

static bool label_ok(const char *l) {
        if (!*l || strlen(l) > 32)
                return false;
        for (; *l; l++)
                if (!((*l >= 'a' && *l <= 'z') || (*l >= 'A' && *l <= 'Z') || (*l >= '0' && *l <= '9') || *l == '_' ||
                      *l == '-'))
                        return false;
        return true;
}

static void sim_done(Sim *s) {
        for (size_t k = 0; k < CTL_MAX_CLIENTS; k++)
                s->clients[k] = safe_close(s->clients[k]);
        if (s->ctl_fd >= 0) {
                s->ctl_fd = safe_close(s->ctl_fd);
                (void) unlink(s->ctl_path);
        }
        for (int d = 0; d < _DIR_MAX; d++)
                link_dir_done(&s->dir[d].model, &s->pool);
        link_pool_done(&s->pool);
        for (int e = 0; e < _END_MAX; e++)
                s->end[e].fd = safe_close(s->end[e].fd);
        s->epoll_fd = safe_close(s->epoll_fd);
        s->timer_fd = safe_close(s->timer_fd);
        s->signal_fd = safe_close(s->signal_fd);
}

static int run(Sim *s) {
        struct epoll_event events[16];

        while (!s->quit) {
                int n = epoll_wait(s->epoll_fd, events, ELEMENTSOF(events), -1);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return log_error_errno(errno, "epoll_wait: %m");
                }
                for (int i = 0; i < n; i++) {
                        uint64_t tag = events[i].data.u64;

                        switch (tag) {
                        case TAG_TUN_A:
                                read_tun(s, END_A);
                                break;
                        case TAG_TUN_B:
                                read_tun(s, END_B);
                                break;
                        case TAG_TIMER: {
                                uint64_t expirations;
                                /* drain the expiry count; EAGAIN (a spurious wake-up) changes nothing */
                                if (read(s->timer_fd, &expirations, sizeof expirations) < 0) {
                                }
                                s->timer_armed = LINK_NSEC_INFINITY;
                                break;
                        }
                        case TAG_SIGNAL: {
                                struct signalfd_siginfo si;
                                if (read(s->signal_fd, &si, sizeof si) != sizeof si)
                                        break;
                                if (si.ssi_signo == SIGUSR1) {
                                        log_info("SIGUSR1: cut both directions.");
                                        for (int d = 0; d < _DIR_MAX; d++)
                                                link_dir_cut(&s->dir[d].model, now_ns(), LINK_NSEC_INFINITY, &s->pool);
                                } else if (si.ssi_signo == SIGUSR2) {
                                        log_info("SIGUSR2: restore both directions.");
                                        for (int d = 0; d < _DIR_MAX; d++)
                                                link_dir_restore(&s->dir[d].model);
                                } else
                                        s->quit = true;
                                break;
                        }
                        case TAG_CTL:
                                ctl_accept(s);
                                break;
                        default:
                                if (tag >= TAG_CLIENT_BASE && tag < TAG_CLIENT_BASE + CTL_MAX_CLIENTS &&
                                    s->clients[tag - TAG_CLIENT_BASE] >= 0)
                                        ctl_client_io(s, tag - TAG_CLIENT_BASE);
                        }
                }
                deliver_due(s);
                if (rearm_timer(s) < 0)
                        return -EIO;
        }
        return 0;
}

int main(int argc, char **argv) {
        enum {
                ARG_TUN_A = 0x100,
                ARG_TUN_B,
                ARG_LABEL_A,
                ARG_LABEL_B,
                ARG_CONTROL,
                ARG_SEED,
                ARG_CTL,
                ARG_REALTIME,
                ARG_PARAM, /* ARG_PARAM + index into param_options */
        };
        static const char *const keys[] = { "rtt", "delay", "jitter", "loss", "rate", "overhead", "queue" };
        static const char *const prefixes[] = { "", "a2b-", "b2a-" };
        static const unsigned prefix_dirs[] = { 3, 1u << DIR_A2B, 1u << DIR_B2A };
        struct option options[64] = {
                TG_TOOL_OPTIONS,
                { "tun-a", required_argument, NULL, ARG_TUN_A },
                { "tun-b", required_argument, NULL, ARG_TUN_B },
                { "label-a", required_argument, NULL, ARG_LABEL_A },
                { "label-b", required_argument, NULL, ARG_LABEL_B },
                { "control", required_argument, NULL, ARG_CONTROL },
                { "seed", required_argument, NULL, ARG_SEED },
                { "ctl", required_argument, NULL, ARG_CTL },
                { "realtime", optional_argument, NULL, ARG_REALTIME },
        };
        char *param_names[ELEMENTSOF(prefixes) * ELEMENTSOF(keys)] = {};
        Assignment assignments[64];
        size_t n_options = 11, n_assignments = 0;
        unsigned rt_prio = 0;
        const char *ctl = NULL;
        _cleanup_(sim_done) Sim s = {
                .end = { { .fd = -EBADF, .label = "a" }, { .fd = -EBADF, .label = "b" } },
                .seed = 1,
                .epoll_fd = -EBADF,
                .timer_fd = -EBADF,
                .signal_fd = -EBADF,
                .ctl_fd = -EBADF,
                .timer_armed = LINK_NSEC_INFINITY,
        };
        LinkParams params[_DIR_MAX];
        sigset_t mask;
        int c, r, ret = EXIT_FAILURE;

        for (size_t k = 0; k < CTL_MAX_CLIENTS; k++)
                s.clients[k] = -EBADF;

        /* --KEY, --a2b-KEY, --b2a-KEY for every parameter (rtt only for both). */
        for (size_t p = 0; p < ELEMENTSOF(prefixes); p++)
                for (size_t k = 0; k < ELEMENTSOF(keys); k++) {
                        size_t idx = p * ELEMENTSOF(keys) + k;
                        if (p > 0 && k == 0)
                                continue;
                        if (asprintf(&param_names[idx], "%s%s", prefixes[p], keys[k]) < 0)
                                goto out;
                        options[n_options++] = (struct option) { param_names[idx], required_argument, NULL,
                                                                 ARG_PARAM + (int) idx };
                }

        tg_log_open("tollgate-link-sim", TG_LOG_TARGET_AUTO);

        while ((c = getopt_long(argc, argv, "+h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_TUN_A:
                        s.end[END_A].spec = optarg;
                        break;
                case ARG_TUN_B:
                        s.end[END_B].spec = optarg;
                        break;
                case ARG_LABEL_A:
                case ARG_LABEL_B:
                        if (!label_ok(optarg)) {
                                log_error("Labels are 1-32 characters of A-Z a-z 0-9 _ -: %s", optarg);
                                goto out;
                        }
                        s.end[c == ARG_LABEL_A ? END_A : END_B].label = optarg;
                        break;
                case ARG_CONTROL:
                        s.ctl_path = optarg;
                        break;
                case ARG_SEED:
                        if (tg_parse_uint64(optarg, &s.seed) < 0) {
                                log_error("Bad --seed: %s", optarg);
                                goto out;
                        }
                        break;
                case ARG_CTL:
                        ctl = optarg;
                        break;
                case ARG_REALTIME:
                        rt_prio = 10;
                        if (optarg && (tg_parse_unsigned(optarg, &rt_prio) < 0 || rt_prio < 1 || rt_prio > 99)) {
                                log_error("Bad --realtime priority (1-99): %s", optarg);
                                goto out;
                        }
                        break;
                default:
                        if (c >= ARG_PARAM && c < ARG_PARAM + (int) ELEMENTSOF(param_names)) {
                                size_t idx = (size_t) (c - ARG_PARAM);
                                if (n_assignments == ELEMENTSOF(assignments)) {
                                        log_error("Too many parameters.");
                                        goto out;
                                }
                                assignments[n_assignments++] = (Assignment) {
                                        prefix_dirs[idx / ELEMENTSOF(keys)], (char *) keys[idx % ELEMENTSOF(keys)],
                                        optarg
                                };
                        } else {
                                r = tg_tool_option(c, optarg, "tollgate-link-sim", help);
                                if (r <= 0) {
                                        if (r == 0)
                                                ret = EXIT_SUCCESS;
                                        goto out;
                                }
                        }
                }
        }

        if (ctl) {
                ret = ctl_client(ctl, argc - optind, argv + optind);
                goto out;
        }
        if (tg_tool_no_arguments(argc, argv) < 0)
                goto out;
        if (!s.end[END_A].spec || !s.end[END_B].spec) {
                log_error("--tun-a and --tun-b are needed (--help).");
                goto out;
        }
        if (streq(s.end[END_A].label, s.end[END_B].label)) {
                log_error("The two labels must differ.");
                goto out;
        }

        /* Both-direction settings first, then the one-direction ones, whatever their order. */
        for (int d = 0; d < _DIR_MAX; d++)
                params[d] = (LinkParams) { .queue = DEFAULT_QUEUE };
        for (int pass = 0; pass < 2; pass++)
                for (size_t k = 0; k < n_assignments; k++) {
                        const char *err = NULL;
                        if ((assignments[k].dirs == 3) != (pass == 0))
                                continue;
                        for (int d = 0; d < _DIR_MAX; d++)
                                if ((assignments[k].dirs & (1u << d)) &&
                                    params_apply(&params[d], assignments[k].key, assignments[k].value, &err) < 0) {
                                        log_error("--%s%s=%s: %s", pass == 0 ? "" : prefixes[d + 1],
                                                  assignments[k].key, assignments[k].value, err);
                                        goto out;
                                }
                }

        for (int e = 0; e < _END_MAX; e++)
                if (tun_open(&s.end[e]) < 0)
                        goto out;
        link_pool_init(&s.pool, MAX(s.end[END_A].mtu, s.end[END_B].mtu));
        for (int d = 0; d < _DIR_MAX; d++)
                if (link_dir_init(&s.dir[d].model, &params[d], s.seed * 2 + (uint64_t) d) < 0) {
                        log_oom_error();
                        goto out;
                }

        /* Releases are timed to the microsecond; do not let the kernel batch our wake-ups. */
        (void) prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
        /* On a busy machine an ordinary thread is woken late; SCHED_FIFO keeps the
         * release times (the loop only ever blocks in epoll_wait, and the kernel's
         * RT throttling bounds it anyway). */
        if (rt_prio > 0) {
                struct sched_param sp = { .sched_priority = (int) rt_prio };
                if (sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp) < 0)
                        log_warning_errno(errno, "Cannot run at real-time priority %u, continuing without: %m", rt_prio);
        }

        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGUSR1);
        sigaddset(&mask, SIGUSR2);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) {
                log_error_errno(errno, "sigprocmask: %m");
                goto out;
        }
        (void) signal(SIGPIPE, SIG_IGN);

        s.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        s.timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        s.signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
        if (s.epoll_fd < 0 || s.timer_fd < 0 || s.signal_fd < 0) {
                log_error_errno(errno, "Cannot set up the event loop: %m");
                goto out;
        }
        if (s.ctl_path && ctl_listen(&s) < 0)
                goto out;

        struct {
                int fd;
                uint64_t tag;
        } watch[] = {
                { s.end[END_A].fd, TAG_TUN_A }, { s.end[END_B].fd, TAG_TUN_B }, { s.timer_fd, TAG_TIMER },
                { s.signal_fd, TAG_SIGNAL },    { s.ctl_fd, TAG_CTL },
        };
        for (size_t k = 0; k < ELEMENTSOF(watch); k++) {
                struct epoll_event ev = { .events = EPOLLIN, .data.u64 = watch[k].tag };
                if (watch[k].fd >= 0 && epoll_ctl(s.epoll_fd, EPOLL_CTL_ADD, watch[k].fd, &ev) < 0) {
                        log_error_errno(errno, "epoll_ctl: %m");
                        goto out;
                }
        }

        s.start_ns = s.counters_since_ns = now_ns();
        for (int d = 0; d < _DIR_MAX; d++) {
                const LinkParams *p = &s.dir[d].model.p;
                log_info("%s -> %s: delay %" PRIu64 " us, jitter %" PRIu64 " us, loss %g %%, rate %" PRIu64
                         " bit/s, queue %u.",
                         s.end[d == DIR_A2B ? END_A : END_B].label, s.end[d == DIR_A2B ? END_B : END_A].label,
                         p->delay_ns / 1000, p->jitter_ns / 1000, p->loss * 100, p->rate_bps, p->queue);
        }
        (void) sd_notify(false, "READY=1");

        r = run(&s);
        ret = r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
out:
        for (size_t k = 0; k < ELEMENTSOF(param_names); k++)
                free(param_names[k]);
        return ret;
}
