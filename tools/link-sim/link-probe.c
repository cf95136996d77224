/* SPDX-License-Identifier: MIT */

/*
 * tollgate-link-probe: measure a link the way the daemons will see it.
 *
 *   tollgate-link-probe sink [--listen=ADDR:PORT] [--count=N] [--timeout=DUR]
 *       accept TCP connections, read and discard; per connection one JSON
 *       line: bytes, seconds (accept → EOF), goodput. --timeout drops a
 *       connection silent that long (its sender gave up during a cut).
 *   tollgate-link-probe send ADDR:PORT [--seconds=S | --bytes=N] [--progress] [--timeout=DUR]
 *       write as fast as TCP lets us, then shut down the write side and wait
 *       for the sink to close: every byte counted was delivered. One JSON
 *       line: goodput, the RTT TCP saw under load (srtt samples), retransmits.
 *       --progress prints a line per interval (goodput of that interval) so a
 *       stall during a cut and the resume are visible.
 *   tollgate-link-probe ping ADDR [--count=N] [--interval=DUR] [--size=BYTES]
 *       ICMP echo (raw socket: root), per-reply RTT and a JSON summary.
 *   tollgate-link-probe flood ADDR:PORT [--seconds=S] [--size=BYTES] [--count=PPS]
 *       UDP datagrams as fast as possible (or PPS a second): what the
 *       emulator forwards is in its stats; for its packet-rate limit.
 *
 * Not a benchmark of Tollgate: a check of the emulated link (docs/link-sim.md).
 */

#include <arpa/inet.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/tcp.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

#include "tg-macro.h"
#include "tg-parse.h"

#define DEFAULT_PORT 5201

static uint64_t now_us(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static int parse_addr(const char *s, uint16_t default_port, struct sockaddr_in *ret) {
        char host[64];
        const char *colon = strrchr(s, ':');
        unsigned port = default_port;

        *ret = (struct sockaddr_in) { .sin_family = AF_INET };
        if (colon) {
                if ((size_t) (colon - s) >= sizeof host || tg_parse_unsigned(colon + 1, &port) < 0 || port == 0 ||
                    port > 65535)
                        return -EINVAL;
                memcpy(host, s, (size_t) (colon - s));
                host[colon - s] = '\0';
        } else
                snprintf(host, sizeof host, "%s", s);
        if (host[0] == '\0')
                snprintf(host, sizeof host, "0.0.0.0");
        if (inet_pton(AF_INET, host, &ret->sin_addr) != 1)
                return -EINVAL;
        ret->sin_port = htons((uint16_t) port);
        return 0;
}

static char *fmt_addr(const struct sockaddr_in *a, char *buf, size_t size) {
        char ip[INET_ADDRSTRLEN];

        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        snprintf(buf, size, "%s:%u", ip, ntohs(a->sin_port));
        return buf;
}

/* ---- sink ---- */

static int cmd_sink(const char *listen_addr, unsigned count, uint64_t timeout_us) {
        struct sockaddr_in sa;
        _cleanup_close_ int lfd = -EBADF;
        static uint8_t buf[1 << 18];
        int one = 1;

        if (parse_addr(listen_addr, DEFAULT_PORT, &sa) < 0) {
                fprintf(stderr, "Bad address: %s\n", listen_addr);
                return 2;
        }
        lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
            bind(lfd, (struct sockaddr *) &sa, sizeof sa) < 0 || listen(lfd, 8) < 0) {
                fprintf(stderr, "Cannot listen on %s: %m\n", listen_addr);
                return 1;
        }
        fprintf(stderr, "listening on %s\n", listen_addr);
        for (unsigned k = 0; count == 0 || k < count; k++) {
                struct sockaddr_in peer;
                socklen_t plen = sizeof peer;
                _cleanup_close_ int fd = accept4(lfd, (struct sockaddr *) &peer, &plen, SOCK_CLOEXEC);
                uint64_t bytes = 0, t0, t_first = 0, t1;
                char pbuf[64];
                ssize_t n;

                if (fd < 0) {
                        fprintf(stderr, "accept: %m\n");
                        return 1;
                }
                if (timeout_us > 0) {
                        /* A sender that went away during a cut never sends its FIN: give up on silence. */
                        struct timeval tv = { .tv_sec = (time_t) (timeout_us / USEC_PER_SEC),
                                              .tv_usec = (suseconds_t) (timeout_us % USEC_PER_SEC) };
                        (void) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
                }
                t0 = now_us();
                while ((n = read(fd, buf, sizeof buf)) > 0) {
                        if (bytes == 0)
                                t_first = now_us();
                        bytes += (uint64_t) n;
                }
                t1 = now_us();
                printf("{\"peer\":\"%s\",\"bytes\":%" PRIu64 ",\"seconds\":%.3f,\"goodput_bps\":%.0f%s}\n",
                       fmt_addr(&peer, pbuf, sizeof pbuf), bytes, (double) (t1 - t0) / 1e6,
                       t1 > t_first && bytes > 0 ? (double) bytes * 8e6 / (double) (t1 - t_first) : 0.0,
                       n < 0 ? (errno == EAGAIN ? ",\"error\":\"idle longer than --timeout\"" : ",\"error\":\"read failed\"") : "");
                fflush(stdout);
        }
        return 0;
}

/* ---- send ---- */

typedef struct RttStats {
        unsigned n;
        double sum, min, max;
} RttStats;

static void rtt_add(RttStats *r, double v) {
        if (r->n == 0 || v < r->min)
                r->min = v;
        if (r->n == 0 || v > r->max)
                r->max = v;
        r->sum += v;
        r->n++;
}

static int get_info(int fd, struct tcp_info *ti) {
        socklen_t len = sizeof *ti;

        *ti = (struct tcp_info) {};
        return getsockopt(fd, IPPROTO_TCP, TCP_INFO, ti, &len);
}

static int cmd_send(const char *addr, uint64_t seconds_us, uint64_t max_bytes, uint64_t interval_us,
                    uint64_t timeout_us, bool progress, const char *cc) {
        static uint8_t buf[1 << 16];
        struct sockaddr_in sa;
        _cleanup_close_ int fd = -EBADF;
        struct tcp_info ti;
        char cc_used[33];
        RttStats rtt = {};
        uint64_t t0, t_conn, t_end_send = 0, t1, t_last_progress, next_sample, bytes = 0, bytes_at_sample = 0,
                                                                                acked_at_last = 0;
        bool sending = true, eof = false, stalled = false;
        const char *error = NULL;

        if (parse_addr(addr, DEFAULT_PORT, &sa) < 0) {
                fprintf(stderr, "Bad address: %s\n", addr);
                return 2;
        }
        for (size_t i = 0; i < sizeof buf; i++)
                buf[i] = (uint8_t) (i * 131 + 7);

        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                fprintf(stderr, "socket: %m\n");
                return 1;
        }
        if (cc && setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, cc, (socklen_t) strlen(cc)) < 0) {
                fprintf(stderr, "Cannot use congestion control %s: %m\n", cc);
                return 1;
        }
        {
                char used[32] = "";
                socklen_t len = sizeof used - 1;
                (void) getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, used, &len);
                snprintf(cc_used, sizeof cc_used, "%s", used);
        }
        t0 = now_us();
        if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
                return 1;
        /* Non-blocking connect, so --timeout covers a link that is cut from the start. */
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                struct pollfd pfd = { fd, POLLOUT, 0 };
                int err = errno, r;
                socklen_t len = sizeof err;

                if (err == EINPROGRESS) {
                        do
                                r = poll(&pfd, 1, timeout_us > 0 ? (int) (timeout_us / 1000) : -1);
                        while (r < 0 && errno == EINTR);
                        if (r == 0) {
                                fprintf(stderr, "Cannot connect to %s: no answer within --timeout\n", addr);
                                printf("{\"peer\":\"%s\",\"bytes\":0,\"ok\":false,\"error\":\"connect timed out\"}\n", addr);
                                return 3;
                        }
                        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                                err = errno;
                }
                if (err != 0) {
                        fprintf(stderr, "Cannot connect to %s: %s\n", addr, strerror(err));
                        return 1;
                }
        }
        t_conn = now_us();
        next_sample = t_conn + interval_us;
        t_last_progress = t_conn;

        while (!eof) {
                struct pollfd pfd = { fd, sending ? POLLOUT : POLLIN, 0 };
                uint64_t now = now_us();
                int wait_ms = (int) ((next_sample > now ? next_sample - now : 0) / 1000) + 1;

                if (poll(&pfd, 1, wait_ms) < 0 && errno != EINTR) {
                        error = "poll failed";
                        break;
                }
                now = now_us();
                if (sending && (pfd.revents & (POLLOUT | POLLERR | POLLHUP))) {
                        for (;;) {
                                size_t want = sizeof buf;
                                ssize_t n;
                                if (max_bytes > 0 && max_bytes - bytes < want)
                                        want = (size_t) (max_bytes - bytes);
                                n = send(fd, buf, want, MSG_NOSIGNAL);
                                if (n < 0) {
                                        if (errno != EAGAIN && errno != EINTR) {
                                                error = strerror(errno);
                                                eof = true;
                                        }
                                        break;
                                }
                                bytes += (uint64_t) n;
                                if (max_bytes > 0 && bytes >= max_bytes)
                                        break;
                        }
                } else if (!sending && (pfd.revents & (POLLIN | POLLERR | POLLHUP))) {
                        ssize_t n = read(fd, buf, sizeof buf);
                        if (n == 0)
                                eof = true;
                        else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                                error = strerror(errno);
                                eof = true;
                        }
                }
                if (sending && !eof &&
                    ((max_bytes > 0 && bytes >= max_bytes) || (seconds_us > 0 && now - t_conn >= seconds_us))) {
                        sending = false;
                        t_end_send = now;
                        (void) shutdown(fd, SHUT_WR);
                }
                if (now >= next_sample) {
                        if (get_info(fd, &ti) == 0) {
                                uint64_t acked = ti.tcpi_bytes_acked;
                                if (ti.tcpi_rtt > 0 && acked > bytes_at_sample)
                                        rtt_add(&rtt, ti.tcpi_rtt / 1000.0); /* only while data moves */
                                if (progress)
                                        fprintf(stderr, "%8.3f s  %9.3f Mbit/s  acked %" PRIu64 "  srtt %.1f ms  cwnd %u  retrans %u  state %u\n",
                                                (double) (now - t_conn) / 1e6,
                                                (double) (acked - acked_at_last) * 8 / (double) interval_us,
                                                (uint64_t) acked, ti.tcpi_rtt / 1000.0, ti.tcpi_snd_cwnd,
                                                ti.tcpi_total_retrans, ti.tcpi_ca_state);
                                if (acked > acked_at_last)
                                        t_last_progress = now;
                                acked_at_last = acked;
                                bytes_at_sample = acked;
                        }
                        next_sample += interval_us;
                        if (next_sample < now)
                                next_sample = now + interval_us;
                }
                if (timeout_us > 0 && now - t_last_progress > timeout_us) {
                        stalled = true;
                        error = "no progress within --timeout";
                        break;
                }
        }
        t1 = now_us();
        (void) get_info(fd, &ti);

        {
                uint64_t delivered = error ? (uint64_t) ti.tcpi_bytes_acked : bytes;
                double secs = (double) (t1 - t_conn) / 1e6;

                printf("{\"peer\":\"%s\",\"cc\":\"%s\",\"bytes\":%" PRIu64 ",\"seconds\":%.3f,\"send_seconds\":%.3f,"
                       "\"goodput_bps\":%.0f,\"connect_ms\":%.2f,"
                       "\"srtt_ms\":{\"samples\":%u,\"mean\":%.2f,\"min\":%.2f,\"max\":%.2f},\"min_rtt_ms\":%.2f,"
                       "\"segs_out\":%u,\"total_retrans\":%u,\"retrans_pct\":%.3f,\"final_cwnd\":%u,\"mss\":%u,"
                       "\"ok\":%s%s%s%s}\n",
                       addr, cc_used, delivered, secs, (double) ((t_end_send ? t_end_send : t1) - t_conn) / 1e6,
                       secs > 0 ? (double) delivered * 8 / secs : 0.0, (double) (t_conn - t0) / 1e3, rtt.n,
                       rtt.n ? rtt.sum / rtt.n : 0.0, rtt.min, rtt.max, ti.tcpi_min_rtt / 1000.0, ti.tcpi_segs_out,
                       ti.tcpi_total_retrans,
                       ti.tcpi_segs_out ? 100.0 * ti.tcpi_total_retrans / ti.tcpi_segs_out : 0.0, ti.tcpi_snd_cwnd,
                       ti.tcpi_snd_mss, error ? "false" : "true", error ? ",\"error\":\"" : "", error ? error : "",
                       error ? "\"" : "");
        }
        return error ? (stalled ? 3 : 1) : 0;
}

/* ---- flood: UDP as fast as possible (or at --rate packets/s), for the emulator's packet rate ---- */

static int cmd_flood(const char *addr, uint64_t seconds_us, unsigned size, unsigned pps) {
        static uint8_t buf[65507];
        struct sockaddr_in sa;
        _cleanup_close_ int fd = -EBADF;
        uint64_t t0, now, sent = 0, errors = 0;

        if (parse_addr(addr, DEFAULT_PORT, &sa) < 0) {
                fprintf(stderr, "Bad address: %s\n", addr);
                return 2;
        }
        if (size > sizeof buf)
                size = sizeof buf;
        fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                fprintf(stderr, "Cannot reach %s: %m\n", addr);
                return 1;
        }
        t0 = now = now_us();
        while (now - t0 < seconds_us) {
                if (pps > 0 && sent * USEC_PER_SEC > (now - t0) * pps) {
                        uint64_t ahead = sent * USEC_PER_SEC / pps - (now - t0);
                        if (ahead > 200)
                                (void) usleep((useconds_t) ahead);
                        now = now_us();
                        continue;
                }
                if (send(fd, buf, size, 0) < 0)
                        errors++; /* ECONNREFUSED from an ICMP port unreachable, ENOBUFS: keep going */
                else
                        sent++;
                if ((sent & 63) == 0)
                        now = now_us();
        }
        now = now_us();
        printf("{\"target\":\"%s\",\"size\":%u,\"sent\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"seconds\":%.3f,\"pps\":%.0f}\n",
               addr, size, sent, errors, (double) (now - t0) / 1e6, (double) sent * 1e6 / (double) (now - t0));
        return 0;
}

/* ---- ping ---- */

static uint16_t icmp_checksum(const void *data, size_t len) {
        const uint8_t *p = data;
        uint32_t sum = 0;

        for (size_t i = 0; i + 1 < len; i += 2)
                sum += (uint32_t) (p[i] << 8 | p[i + 1]);
        if (len & 1)
                sum += (uint32_t) p[len - 1] << 8;
        while (sum >> 16)
                sum = (sum & 0xffff) + (sum >> 16);
        return htons((uint16_t) ~sum);
}

static int cmd_ping(const char *addr, unsigned count, uint64_t interval_us, unsigned size, uint64_t wait_us,
                    bool quiet) {
        struct sockaddr_in sa = { .sin_family = AF_INET };
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ uint64_t *sent_at = calloc(count, sizeof(uint64_t));
        _cleanup_free_ bool *got = calloc(count, sizeof(bool));
        uint8_t pkt[sizeof(struct icmphdr) + 1472], in[2048];
        uint16_t id = (uint16_t) getpid();
        unsigned sent = 0, received = 0, dup = 0;
        double sum = 0, sum2 = 0, min = 0, max = 0;
        uint64_t next = now_us(), deadline = 0;

        if (count == 0 || !sent_at || !got)
                return 2;
        if (size > sizeof pkt - sizeof(struct icmphdr))
                size = sizeof pkt - sizeof(struct icmphdr);
        if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
                fprintf(stderr, "Bad address: %s\n", addr);
                return 2;
        }
        fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
        if (fd < 0) {
                fprintf(stderr, "Cannot open a raw ICMP socket (root needed): %m\n");
                return 1;
        }
        for (;;) {
                uint64_t now = now_us();
                struct pollfd pfd = { fd, POLLIN, 0 };
                uint64_t until;

                if (sent < count && now >= next) {
                        struct icmphdr *h = (struct icmphdr *) pkt;
                        memset(pkt, 0, sizeof pkt);
                        h->type = ICMP_ECHO;
                        h->un.echo.id = htons(id);
                        h->un.echo.sequence = htons((uint16_t) sent);
                        for (unsigned i = 0; i < size; i++)
                                pkt[sizeof *h + i] = (uint8_t) i;
                        h->checksum = icmp_checksum(pkt, sizeof *h + size);
                        sent_at[sent] = now_us();
                        if (sendto(fd, pkt, sizeof *h + size, 0, (struct sockaddr *) &sa, sizeof sa) < 0)
                                fprintf(stderr, "sendto: %m\n");
                        sent++;
                        next += interval_us;
                        if (sent == count)
                                deadline = now + wait_us;
                }
                if (sent == count && (received == count || now >= deadline))
                        break;
                until = sent < count ? next : deadline;
                if (poll(&pfd, 1, until > now ? (int) ((until - now + 999) / 1000) : 0) <= 0)
                        continue;
                ssize_t n = recv(fd, in, sizeof in, 0);
                uint64_t t = now_us();
                if (n < (ssize_t) sizeof(struct iphdr))
                        continue;
                size_t ihl = (size_t) (in[0] & 0x0f) * 4;
                if ((size_t) n < ihl + sizeof(struct icmphdr))
                        continue;
                const struct icmphdr *r = (const struct icmphdr *) (in + ihl);
                if (r->type != ICMP_ECHOREPLY || ntohs(r->un.echo.id) != id)
                        continue;
                unsigned seq = ntohs(r->un.echo.sequence);
                if (seq >= sent)
                        continue;
                if (got[seq]) {
                        dup++;
                        continue;
                }
                got[seq] = true;
                double ms = (double) (t - sent_at[seq]) / 1e3;
                if (received == 0 || ms < min)
                        min = ms;
                if (received == 0 || ms > max)
                        max = ms;
                sum += ms;
                sum2 += ms * ms;
                received++;
                if (!quiet)
                        fprintf(stderr, "seq=%u time=%.3f ms\n", seq, ms);
        }
        double avg = received ? sum / received : 0, mdev = received ? sqrt(fmax(sum2 / received - avg * avg, 0)) : 0;
        printf("{\"target\":\"%s\",\"sent\":%u,\"received\":%u,\"duplicates\":%u,\"loss_pct\":%.3f,"
               "\"rtt_ms\":{\"min\":%.3f,\"avg\":%.3f,\"max\":%.3f,\"mdev\":%.3f}}\n",
               addr, sent, received, dup, sent ? 100.0 * (sent - received) / sent : 0.0, min, avg, max, mdev);
        return received > 0 ? 0 : 1;
}

/* ---- main ---- */

static void help(void) {
        printf("%s sink [--listen=ADDR:PORT] [--count=N] [--timeout=DUR]\n"
               "%s send ADDR:PORT [--seconds=S | --bytes=N] [--interval=DUR] [--progress] [--timeout=DUR] [--cc=NAME]\n"
               "%s ping ADDR [--count=N] [--interval=DUR] [--size=BYTES] [--wait=DUR] [--quiet]\n"
               "%s flood ADDR:PORT [--seconds=S] [--size=BYTES] [--count=PACKETS_PER_SECOND]\n\n"
               "TCP goodput, ICMP RTT and a UDP packet flood across an emulated link\n"
               "(docs/link-sim.md). Default port %d.\n",
               program_invocation_short_name, program_invocation_short_name, program_invocation_short_name,
               program_invocation_short_name, DEFAULT_PORT);
}

int main(int argc, char **argv) {
        enum { ARG_LISTEN = 0x100, ARG_COUNT, ARG_SECONDS, ARG_BYTES, ARG_INTERVAL, ARG_PROGRESS, ARG_TIMEOUT,
               ARG_SIZE, ARG_WAIT, ARG_QUIET, ARG_CC };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "listen", required_argument, NULL, ARG_LISTEN },
                { "count", required_argument, NULL, ARG_COUNT },
                { "seconds", required_argument, NULL, ARG_SECONDS },
                { "bytes", required_argument, NULL, ARG_BYTES },
                { "interval", required_argument, NULL, ARG_INTERVAL },
                { "progress", no_argument, NULL, ARG_PROGRESS },
                { "timeout", required_argument, NULL, ARG_TIMEOUT },
                { "size", required_argument, NULL, ARG_SIZE },
                { "wait", required_argument, NULL, ARG_WAIT },
                { "quiet", no_argument, NULL, ARG_QUIET },
                { "cc", required_argument, NULL, ARG_CC },
                {}
        };
        const char *listen_addr = "0.0.0.0:5201", *cmd, *cc = NULL;
        unsigned count = 0, size = 56;
        bool have_count = false, have_size = false, progress = false, quiet = false;
        uint64_t seconds_us = 0, bytes = 0, interval_us = 0, timeout_us = 0, wait_us = 2 * USEC_PER_SEC;
        int c;

        if (argc < 2 || streq(argv[1], "--help") || streq(argv[1], "-h")) {
                help();
                return argc < 2 ? 2 : 0;
        }
        cmd = argv[1];
        optind = 2;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                int r = 0;
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_LISTEN:
                        listen_addr = optarg;
                        break;
                case ARG_COUNT:
                        r = tg_parse_unsigned(optarg, &count);
                        have_count = true;
                        break;
                case ARG_SECONDS:
                        r = tg_parse_timespan(optarg, USEC_PER_SEC, &seconds_us);
                        break;
                case ARG_BYTES:
                        r = tg_parse_size(optarg, &bytes);
                        break;
                case ARG_INTERVAL:
                        r = tg_parse_timespan(optarg, USEC_PER_MSEC, &interval_us);
                        if (r >= 0 && interval_us == 0)
                                r = -EINVAL;
                        break;
                case ARG_PROGRESS:
                        progress = true;
                        break;
                case ARG_TIMEOUT:
                        r = tg_parse_timespan(optarg, USEC_PER_SEC, &timeout_us);
                        break;
                case ARG_SIZE:
                        r = tg_parse_unsigned(optarg, &size);
                        have_size = true;
                        break;
                case ARG_WAIT:
                        r = tg_parse_timespan(optarg, USEC_PER_SEC, &wait_us);
                        break;
                case ARG_QUIET:
                        quiet = true;
                        break;
                case ARG_CC:
                        cc = optarg;
                        break;
                default:
                        return 2;
                }
                if (r < 0) {
                        fprintf(stderr, "Bad value for an option: %s\n", optarg);
                        return 2;
                }
        }

        if (streq(cmd, "sink")) {
                if (optind != argc)
                        goto usage;
                return cmd_sink(listen_addr, count, timeout_us);
        }
        if (streq(cmd, "send")) {
                if (optind + 1 != argc)
                        goto usage;
                if (seconds_us == 0 && bytes == 0)
                        seconds_us = 10 * USEC_PER_SEC;
                return cmd_send(argv[optind], seconds_us, bytes, interval_us ? interval_us : 100 * USEC_PER_MSEC,
                                timeout_us, progress, cc);
        }
        if (streq(cmd, "flood")) {
                if (optind + 1 != argc)
                        goto usage;
                return cmd_flood(argv[optind], seconds_us ? seconds_us : 5 * USEC_PER_SEC, have_size ? size : 64,
                                 count);
        }
        if (streq(cmd, "ping")) {
                if (optind + 1 != argc)
                        goto usage;
                return cmd_ping(argv[optind], have_count ? count : 10, interval_us ? interval_us : 200 * USEC_PER_MSEC,
                                size, wait_us, quiet);
        }
usage:
        help();
        return 2;
}
