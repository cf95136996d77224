/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>

#include "classifier.h"
#include "tg-frame.h"
#include "tg-log.h"
#include "tg-message-ids.h"

/* Frames taken from one producer per wake-up before others get their turn. */
#define FRAMES_PER_WAKEUP 64

static void producer_free(Producer *p) {
        Manager *m = p->manager;

        if (p->prev)
                p->prev->next = p->next;
        else
                m->producers = p->next;
        if (p->next)
                p->next->prev = p->prev;
        m->n_producers--;
        sd_event_source_disable_unref(p->io);
        safe_close(p->fd);
        free(p->rt_frames);
        free(p);
}

/* ACKs and ERRORs never block the loop: a producer that does not read its
 * socket loses them (ACKs are cumulative, the next one covers it). */
static void producer_send(Producer *p, const uint8_t *buf, size_t n) {
        if (send(p->fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && errno != EAGAIN)
                log_debug_errno(negative_errno(), "Cannot answer producer pid %d: %m", (int) p->pid);
}

static void reject_frame(Producer *p, uint32_t seq, uint16_t count, TgFrameError code, uint16_t index,
                         const char *detail) {
        Manager *m = p->manager;
        uint8_t buf[TG_FRAME_HEADER_SIZE + 4 + TG_FRAME_ERROR_TEXT_MAX];
        unsigned suppressed = 0;
        char fpid[32], fcode[64];

        m->counters.rejected += count;
        producer_send(p, buf, tg_frame_build_error(buf, seq, code, index, detail));
        if (!tg_ratelimit_check(&m->frame_ratelimit, &suppressed))
                return;
        snprintf(fpid, sizeof fpid, "PRODUCER_PID=%d", (int) p->pid);
        snprintf(fcode, sizeof fcode, "FRAME_ERROR=%s", tg_frame_error_to_string(code));
        log_event_fields(LOG_WARNING, 0, TG_MID_FRAME_REJECTED, ((const char *[]) { fpid, fcode, NULL }),
                         "Rejected frame %u from producer pid %d uid %u (%u records): %s%s%s%s",
                         seq, (int) p->pid, (unsigned) p->uid, count, tg_frame_error_to_string(code),
                         detail ? ": " : "", detail ? detail : "",
                         suppressed ? " (earlier similar messages suppressed)" : "");
}

static void handle_frame(Producer *p, const uint8_t *buf, size_t n, bool truncated) {
        Manager *m = p->manager;
        TgFrameHeader h = {};
        TgFrameError e;
        uint16_t index;
        uint64_t rt_id = 0;
        size_t offset = TG_FRAME_HEADER_SIZE;
        char detail[128] = "";

        if (truncated) {
                /* We still know the header if it arrived. */
                (void) tg_frame_parse_header(buf, TG_FRAME_HEADER_SIZE, &h);
                snprintf(detail, sizeof detail, "frame of %zu bytes, limit %d", n, TG_FRAME_MAX);
                reject_frame(p, h.seq, h.count, TG_FRAME_TOO_LARGE, UINT16_MAX, detail);
                return;
        }
        e = tg_frame_parse_header(buf, n, &h);
        if (e == TG_FRAME_OK && h.type != TG_FRAME_RECORDS)
                e = TG_FRAME_BAD_TYPE;
        if (e != TG_FRAME_OK) {
                reject_frame(p, h.seq, 0, e, UINT16_MAX, NULL);
                return;
        }
        e = tg_frame_check_records(buf, n, &h, (uint32_t) m->config.max_payload, &index);
        if (e != TG_FRAME_OK) {
                if (e == TG_FRAME_PAYLOAD_TOO_LARGE)
                        snprintf(detail, sizeof detail, "MaxPayloadSize=%" PRIu64, m->config.max_payload);
                reject_frame(p, h.seq, h.count, e, index, detail[0] ? detail : NULL);
                return;
        }

        if (p->n_rt_frames == p->allocated_rt_frames) {
                size_t k = MAX(p->allocated_rt_frames * 2, (size_t) 16);
                void *a = realloc(p->rt_frames, k * sizeof *p->rt_frames);
                if (!a) {
                        reject_frame(p, h.seq, h.count, TG_FRAME_INTERNAL, UINT16_MAX, "out of memory");
                        return;
                }
                p->rt_frames = a;
                p->allocated_rt_frames = k;
        }
        for (unsigned i = 0; i < h.count; i++) {
                TgRecord rec;
                DataClass class;
                uint64_t id;
                int r;

                (void) tg_record_decode(buf, n, &offset, TG_PAYLOAD_MAX, &rec); /* checked above */
                r = manager_accept_record(m, &rec, &class, &id);
                if (r < 0) {
                        /* Only memory can fail here; what was taken of this frame stays. */
                        reject_frame(p, h.seq, (uint16_t) (h.count - i), TG_FRAME_INTERNAL, (uint16_t) i,
                                     "out of memory");
                        return;
                }
                if (class == CLASS_REALTIME)
                        rt_id = id; /* ids grow: the last is the highest */
        }
        if (rt_id > 0)
                p->rt_frames[p->n_rt_frames++] = (typeof(*p->rt_frames)) { .seq = h.seq, .rt_id = rt_id };
        p->received_seq = h.seq;
        p->any_received = true;
        if (h.count == 0)
                store_schedule_commit(m, true); /* a flush request: commit and ACK now */
}

static int on_producer(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Producer *p = userdata;
        Manager *m = p->manager;

        for (unsigned i = 0; i < FRAMES_PER_WAKEUP && !m->paused; i++) {
                /* MSG_TRUNC: learn the real length of a packet larger than the buffer. */
                ssize_t n = recv(fd, m->frame_buf, TG_FRAME_MAX + 1, MSG_DONTWAIT | MSG_TRUNC);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return 0;
                        log_debug_errno(negative_errno(), "Producer pid %d: %m", (int) p->pid);
                        producer_free(p);
                        return 0;
                }
                if (n == 0) {
                        /* SEQPACKET allows empty packets: only a hang-up ends the connection. */
                        if (revents & (EPOLLHUP | EPOLLRDHUP)) {
                                producer_free(p);
                                return 0;
                        }
                        reject_frame(p, 0, 0, TG_FRAME_SHORT, UINT16_MAX, "empty packet");
                        continue;
                }
                handle_frame(p, m->frame_buf, (size_t) n, n > TG_FRAME_MAX);
        }
        return 0;
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Manager *m = userdata;
        struct ucred cred = {};
        socklen_t len = sizeof cred;
        Producer *p;
        int cfd, r;

        cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
                if (errno != EAGAIN && errno != EINTR)
                        log_warning_errno(negative_errno(), "accept() on telemetry socket failed: %m");
                return 0;
        }
        if (m->n_producers >= 1024) {
                log_warning("More than 1024 producers connected; refusing another.");
                safe_close(cfd);
                return 0;
        }
        (void) getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
        p = calloc(1, sizeof *p);
        if (!p) {
                safe_close(cfd);
                return 0;
        }
        *p = (Producer) { .manager = m, .fd = cfd, .pid = cred.pid, .uid = cred.uid, .next = m->producers };
        r = sd_event_add_io(m->event, &p->io, cfd, EPOLLIN | EPOLLRDHUP, on_producer, p);
        if (r < 0) {
                log_warning_errno(r, "Cannot watch producer socket: %m");
                safe_close(cfd);
                free(p);
                return 0;
        }
        (void) sd_event_source_set_description(p->io, "producer");
        if (m->paused)
                (void) sd_event_source_set_enabled(p->io, SD_EVENT_OFF);
        if (m->producers)
                m->producers->prev = p;
        m->producers = p;
        m->n_producers++;
        log_debug("Producer pid %d uid %u connected.", (int) p->pid, (unsigned) p->uid);
        return 0;
}

static int listen_socket(Manager *m) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        const char *path = m->config.socket_path;
        int fd, n;

        /* Socket activation (tollgate-classifier.socket) keeps the socket across restarts. */
        n = sd_listen_fds(true);
        if (n > 1)
                return log_error_errno(-EINVAL, "Expected at most one socket from the service manager, got %d.", n);
        if (n == 1) {
                if (sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_SEQPACKET, 1, NULL, 0) <= 0)
                        return log_error_errno(-EINVAL, "Passed socket is not a listening SOCK_SEQPACKET socket.");
                m->listen_fd = SD_LISTEN_FDS_START;
                m->listen_fd_activated = true;
                return 0;
        }

        if (strlen(path) >= sizeof sa.sun_path)
                return log_error_errno(-ENAMETOOLONG, "Socket= path too long: %s", path);
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return log_error_errno(negative_errno(), "socket(): %m");
        (void) unlink(path);
        if (bind(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                int r = negative_errno();
                safe_close(fd);
                return log_error_errno(r, "Cannot bind %s: %m", path);
        }
        (void) chmod(path, m->config.socket_mode);
        if (listen(fd, 128) < 0) {
                int r = negative_errno();
                safe_close(fd);
                return log_error_errno(r, "listen(): %m");
        }
        m->listen_fd = fd;
        return 0;
}

int ingest_setup(Manager *m) {
        int r;

        m->frame_buf = malloc(TG_FRAME_MAX + 1);
        if (!m->frame_buf)
                return log_error_errno(-ENOMEM, "Out of memory.");
        r = listen_socket(m);
        if (r < 0)
                return r;
        r = sd_event_add_io(m->event, &m->listen_io, m->listen_fd, EPOLLIN, on_accept, m);
        if (r < 0)
                return log_error_errno(r, "Cannot watch the telemetry socket: %m");
        (void) sd_event_source_set_description(m->listen_io, "telemetry-listen");
        log_info("Taking telemetry on %s.", m->config.socket_path);
        return 0;
}

void ingest_done(Manager *m) {
        while (m->producers)
                producer_free(m->producers);
        m->listen_io = sd_event_source_disable_unref(m->listen_io);
        if (m->listen_fd >= 0 && !m->listen_fd_activated)
                (void) unlink(m->config.socket_path);
        m->listen_fd = safe_close(m->listen_fd);
        free(m->frame_buf);
        m->frame_buf = NULL;
}

void ingest_pause(Manager *m, bool pause) {
        if (m->paused == pause)
                return;
        m->paused = pause;
        if (pause && !m->daemon->stopping)
                log_event(LOG_WARNING, TG_MID_OVERLOADED,
                          "%" PRIu64 " bytes accepted but not committed; not reading producers until a commit succeeds.",
                          m->pending_bytes);
        for (Producer *p = m->producers; p; p = p->next)
                (void) sd_event_source_set_enabled(p->io, pause ? SD_EVENT_OFF : SD_EVENT_ON);
        if (m->listen_io)
                (void) sd_event_source_set_enabled(m->listen_io, pause && m->daemon->stopping ? SD_EVENT_OFF : SD_EVENT_ON);
}

void ingest_commit_done(Manager *m) {
        for (Producer *p = m->producers; p; p = p->next) {
                p->committed_seq = p->received_seq;
                p->any_committed = p->any_received;
        }
}

/* ACK the highest frame whose records are all resolved: its deferred records
 * committed (frames up to committed_seq) and its real-time records below the
 * watermark. */
void ingest_ack_all(Manager *m) {
        uint64_t watermark = uplink_watermark(m);
        uint8_t buf[TG_FRAME_HEADER_SIZE];

        for (Producer *p = m->producers; p; p = p->next) {
                uint32_t ack;
                size_t done = 0;

                if (!p->any_committed)
                        continue;
                while (done < p->n_rt_frames && p->rt_frames[done].rt_id < watermark)
                        done++;
                if (done > 0) {
                        memmove(p->rt_frames, p->rt_frames + done, (p->n_rt_frames - done) * sizeof *p->rt_frames);
                        p->n_rt_frames -= done;
                }
                ack = p->committed_seq;
                /* Sequence numbers wrap: compare by difference. */
                if (p->n_rt_frames > 0 && (int32_t) (p->rt_frames[0].seq - 1 - ack) < 0)
                        ack = p->rt_frames[0].seq - 1;
                if (ack != p->acked_seq && (int32_t) (ack - p->acked_seq) > 0) {
                        producer_send(p, buf, tg_frame_build_ack(buf, ack));
                        p->acked_seq = ack;
                }
        }
}
