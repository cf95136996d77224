/* SPDX-License-Identifier: MIT */
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "tg-frame.h"
#include "tg-time.h"
#include "tollgate-producer.h"

struct TgProducer {
        int fd;
        uint32_t seq;       /* last frame sent */
        uint32_t acked;     /* highest seq acknowledged */
        uint32_t rejected_seq_pending; /* set when an ERROR arrives, cleared by process() */
        bool error_pending;
        uint64_t rejected_records;
        uint16_t count;     /* records in the frame being built */
        size_t size;        /* bytes in the frame being built */
        uint16_t frame_counts[1024]; /* records per in-flight frame, by seq % 1024 */
        char last_error[TG_FRAME_ERROR_TEXT_MAX + 64];
        /* Records are packed up to TG_PRODUCER_FRAME_SIZE; one record bigger than
         * that (up to a 64 KiB payload) travels alone, which TG_FRAME_MAX allows. */
        uint8_t frame[TG_FRAME_MAX];
};

int tg_producer_connect(const char *path, TgProducer **ret) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        TgProducer *p;
        int sndbuf = 4 * TG_PRODUCER_FRAME_SIZE;

        if (!path)
                path = getenv("TOLLGATE_TELEMETRY_SOCKET");
        if (!path)
                path = TG_PRODUCER_DEFAULT_SOCKET;
        if (strlen(path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);

        p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        p->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (p->fd < 0) {
                int r = negative_errno();
                free(p);
                return r;
        }
        (void) setsockopt(p->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
        if (connect(p->fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                int r = negative_errno();
                tg_producer_free(p);
                return r;
        }
        p->size = TG_FRAME_HEADER_SIZE;
        *ret = p;
        return 0;
}

void tg_producer_free(TgProducer *p) {
        if (!p)
                return;
        safe_close(p->fd);
        free(p);
}

int tg_producer_fd(const TgProducer *p) {
        return p->fd;
}

uint32_t tg_producer_sent_seq(const TgProducer *p) {
        return p->seq;
}

uint32_t tg_producer_acked_seq(const TgProducer *p) {
        return p->acked;
}

uint64_t tg_producer_rejected_records(const TgProducer *p) {
        return p->rejected_records;
}

const char *tg_producer_last_error(const TgProducer *p) {
        return p->last_error;
}

static int handle_packet(TgProducer *p, const uint8_t *buf, size_t n) {
        TgFrameHeader h;
        TgFrameErrorInfo info;

        if (tg_frame_parse_header(buf, n, &h) != TG_FRAME_OK)
                return -EPROTO;
        switch (h.type) {
        case TG_FRAME_ACK:
                /* Sequence numbers wrap; an ACK moves forward by less than 2^31. */
                if ((int32_t) (h.seq - p->acked) > 0)
                        p->acked = h.seq;
                return 0;
        case TG_FRAME_ERROR:
                if (tg_frame_parse_error(buf + TG_FRAME_HEADER_SIZE, n - TG_FRAME_HEADER_SIZE, &info) < 0)
                        return -EPROTO;
                p->rejected_records += p->frame_counts[h.seq % ELEMENTSOF(p->frame_counts)];
                p->error_pending = true;
                if (info.index != UINT16_MAX)
                        snprintf(p->last_error, sizeof p->last_error, "frame %u: %s: record %u: %s", h.seq,
                                 tg_frame_error_to_string(info.code), info.index, info.text);
                else
                        snprintf(p->last_error, sizeof p->last_error, "frame %u: %s: %s", h.seq,
                                 tg_frame_error_to_string(info.code), info.text);
                return 0;
        default:
                return -EPROTO;
        }
}

static int read_packets(TgProducer *p, int timeout_ms) {
        uint8_t buf[TG_FRAME_HEADER_SIZE + 4 + TG_FRAME_ERROR_TEXT_MAX];
        struct pollfd pfd = { .fd = p->fd, .events = POLLIN };
        int r;

        r = poll(&pfd, 1, timeout_ms);
        if (r < 0)
                return errno == EINTR ? 0 : negative_errno();
        if (r == 0)
                return 0;
        for (;;) {
                ssize_t n = recv(p->fd, buf, sizeof buf, MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return 0;
                        return negative_errno();
                }
                if (n == 0)
                        return -ECONNRESET;
                r = handle_packet(p, buf, (size_t) n);
                if (r < 0)
                        return r;
        }
}

int tg_producer_process(TgProducer *p) {
        int r;

        r = read_packets(p, 0);
        if (r < 0)
                return r;
        if (p->error_pending) {
                p->error_pending = false;
                return -EBADMSG;
        }
        return 0;
}

int tg_producer_send(TgProducer *p) {
        TgFrameHeader h;

        if (p->count == 0)
                return 0;
        h = (TgFrameHeader) { .type = TG_FRAME_RECORDS, .count = p->count, .seq = p->seq + 1 };
        tg_frame_write_header(p->frame, &h);
        for (;;) {
                if (send(p->fd, p->frame, p->size, MSG_NOSIGNAL) >= 0)
                        break;
                if (errno != EINTR)
                        return negative_errno();
        }
        p->seq++;
        p->frame_counts[p->seq % ELEMENTSOF(p->frame_counts)] = p->count;
        p->count = 0;
        p->size = TG_FRAME_HEADER_SIZE;
        return 0;
}

int tg_producer_add(TgProducer *p, const char *topic, uint64_t timestamp_usec, const void *payload,
                    size_t size) {
        size_t tlen = topic ? strlen(topic) : 0;
        TgRecord rec;
        int r;

        if (!topic || tg_topic_validate(topic, tlen) != TG_RECORD_OK)
                return -EINVAL;
        if (size > TG_PAYLOAD_MAX || (size > 0 && !payload))
                return -EMSGSIZE;
        rec = (TgRecord) {
                .timestamp_usec = timestamp_usec,
                .topic = topic,
                .topic_len = (uint16_t) tlen,
                .payload = payload,
                .payload_len = (uint32_t) size,
        };
        if (p->count > 0 &&
            (p->size + tg_record_size(&rec) > TG_PRODUCER_FRAME_SIZE || p->count == UINT16_MAX)) {
                r = tg_producer_send(p);
                if (r < 0)
                        return r;
        }
        p->size += tg_record_encode(p->frame + p->size, &rec);
        p->count++;
        return 0;
}

int tg_producer_flush(TgProducer *p, uint64_t timeout_usec) {
        uint64_t deadline;
        int r;

        r = tg_producer_send(p);
        if (r < 0)
                return r;
        /* An empty RECORDS frame asks the classifier to acknowledge all before it. */
        tg_frame_write_header(p->frame, &(TgFrameHeader) { .type = TG_FRAME_RECORDS, .seq = p->seq + 1 });
        if (send(p->fd, p->frame, TG_FRAME_HEADER_SIZE, MSG_NOSIGNAL) < 0)
                return negative_errno();
        p->seq++;
        p->frame_counts[p->seq % ELEMENTSOF(p->frame_counts)] = 0;

        deadline = tg_now(CLOCK_MONOTONIC) + timeout_usec;
        while ((int32_t) (p->seq - p->acked) > 0) {
                uint64_t now = tg_now(CLOCK_MONOTONIC);
                if (now >= deadline)
                        return -ETIMEDOUT;
                r = read_packets(p, (int) MIN((deadline - now) / USEC_PER_MSEC + 1, (uint64_t) 1000));
                if (r < 0)
                        return r;
        }
        if (p->error_pending) {
                p->error_pending = false;
                return -EBADMSG;
        }
        return 0;
}
