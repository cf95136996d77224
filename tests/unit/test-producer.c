/* SPDX-License-Identifier: MIT */
#include <dlfcn.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "tg-frame.h"
#include "tg-test.h"
#include "tg-time.h"
#include "tollgate-producer.h"

/*
 * A fake classifier: a SOCK_SEQPACKET listener in a private directory and a
 * thread that accepts one producer, keeps a copy of every frame, and answers
 * the way the daemon does (ERROR for an invalid frame, ACK for a flush
 * request) unless the case scripts otherwise.
 */

typedef enum ServerMode {
        SERVER_ACK,    /* ACK every flush request */
        SERVER_SILENT, /* never answer */
} ServerMode;

typedef struct Frame {
        uint8_t *data;
        size_t size;
} Frame;

typedef struct FakeClassifier {
        char *dir;
        char *path;
        int listen_fd;
        pthread_t thread;
        ServerMode mode;
        uint32_t reject_seq; /* answer this frame with an ERROR (0: none) */
        pthread_mutex_t lock; /* frames and counters, read by the case while the thread runs */
        Frame frames[64];
        size_t n_frames;
        unsigned errors_sent;
} FakeClassifier;

static void server_send(int fd, const uint8_t *buf, size_t n) {
        assert_eq(send(fd, buf, n, MSG_NOSIGNAL), (ssize_t) n);
}

static void *server_thread(void *userdata) {
        FakeClassifier *s = userdata;
        uint8_t *buf = malloc(TG_FRAME_MAX + 1);
        int fd;

        assert_se(buf);
        fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        assert_se(fd >= 0);
        for (;;) {
                uint8_t answer[TG_FRAME_HEADER_SIZE + 4 + TG_FRAME_ERROR_TEXT_MAX];
                TgFrameHeader h = {};
                TgFrameError e;
                uint16_t index = UINT16_MAX;
                ssize_t n;

                n = recv(fd, buf, TG_FRAME_MAX + 1, MSG_TRUNC);
                assert_se(n >= 0);
                if (n == 0)
                        break;
                assert_se(s->n_frames < ELEMENTSOF(s->frames));
                /* Keep what arrived; a frame larger than the buffer is kept truncated.
                 * Stored before answering, so after an ACK the case sees the frame. */
                assert_se(pthread_mutex_lock(&s->lock) == 0);
                s->frames[s->n_frames].size = (size_t) n;
                s->frames[s->n_frames].data = malloc(MIN((size_t) n, (size_t) TG_FRAME_MAX + 1));
                assert_se(s->frames[s->n_frames].data);
                memcpy(s->frames[s->n_frames].data, buf, MIN((size_t) n, (size_t) TG_FRAME_MAX + 1));
                s->n_frames++;
                assert_se(pthread_mutex_unlock(&s->lock) == 0);

                e = tg_frame_parse_header(buf, (size_t) n, &h);
                if (e == TG_FRAME_OK)
                        e = tg_frame_check_records(buf, (size_t) n, &h, TG_PAYLOAD_MAX, &index);
                if (e == TG_FRAME_OK && s->reject_seq != 0 && h.seq == s->reject_seq) {
                        e = TG_FRAME_INVALID_TOPIC;
                        index = 1;
                }
                if (e != TG_FRAME_OK) {
                        s->errors_sent++;
                        server_send(fd, answer,
                                    tg_frame_build_error(answer, h.seq, e, index, "topic rejected by the test"));
                        continue;
                }
                if (h.count == 0 && s->mode == SERVER_ACK)
                        server_send(fd, answer, tg_frame_build_ack(answer, h.seq));
        }
        safe_close(fd);
        free(buf);
        return NULL;
}

static void server_start(FakeClassifier *s, ServerMode mode) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        *s = (FakeClassifier) { .mode = mode };
        assert_se(pthread_mutex_init(&s->lock, NULL) == 0);
        s->dir = tg_test_mkdtemp();
        s->path = tg_test_path(s->dir, "telemetry.sock");
        assert_se(strlen(s->path) < sizeof sa.sun_path);
        strcpy(sa.sun_path, s->path);
        s->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        assert_se(s->listen_fd >= 0);
        assert_se(bind(s->listen_fd, (struct sockaddr *) &sa, sizeof sa) == 0);
        assert_se(listen(s->listen_fd, 4) == 0);
        assert_se(pthread_create(&s->thread, NULL, server_thread, s) == 0);
}

/* After the producer has closed its end: wait for the thread, keep the frames. */
static void server_join(FakeClassifier *s) {
        assert_se(pthread_join(s->thread, NULL) == 0);
        s->listen_fd = safe_close(s->listen_fd);
}

static void server_done(FakeClassifier *s) {
        for (size_t i = 0; i < s->n_frames; i++)
                free(s->frames[i].data);
        free(s->path);
        tg_test_rmdtemp(s->dir);
        assert_se(pthread_mutex_destroy(&s->lock) == 0);
        *s = (FakeClassifier) {};
}

/* Check a received frame and return its header. */
static TgFrameHeader frame_header(const Frame *f) {
        TgFrameHeader h;
        uint16_t index;

        assert_le(f->size, (size_t) TG_PRODUCER_FRAME_SIZE);
        assert_eq(tg_frame_parse_header(f->data, f->size, &h), TG_FRAME_OK);
        assert_eq(h.type, TG_FRAME_RECORDS);
        assert_eq(tg_frame_check_records(f->data, f->size, &h, TG_PAYLOAD_MAX, &index), TG_FRAME_OK);
        return h;
}

static void fill(uint8_t *buf, size_t n, unsigned seed) {
        for (size_t i = 0; i < n; i++)
                buf[i] = (uint8_t) (seed * 131 + i);
}

static void test_connect(void) {
        FakeClassifier s;
        TgProducer *p = NULL;
        char long_path[200];

        memset(long_path, 'x', sizeof long_path - 1);
        long_path[0] = '/';
        long_path[sizeof long_path - 1] = '\0';
        assert_eq(tg_producer_connect(long_path, &p), -ENAMETOOLONG);
        assert_eq(tg_producer_connect("/nonexistent/telemetry.sock", &p), -ENOENT);
        assert_se(p == NULL);

        /* NULL: the socket named by $TOLLGATE_TELEMETRY_SOCKET. */
        server_start(&s, SERVER_ACK);
        assert_se(setenv("TOLLGATE_TELEMETRY_SOCKET", s.path, 1) == 0);
        assert_ok(tg_producer_connect(NULL, &p));
        assert_se(unsetenv("TOLLGATE_TELEMETRY_SOCKET") == 0);
        assert_se(tg_producer_fd(p) >= 0);
        assert_eq(tg_producer_sent_seq(p), 0u);
        assert_eq(tg_producer_acked_seq(p), 0u);
        assert_eq(tg_producer_rejected_records(p), UINT64_C(0));
        assert_streq(tg_producer_last_error(p), "");
        /* Nothing to send, nothing to read. */
        assert_ok(tg_producer_send(p));
        assert_ok(tg_producer_process(p));
        assert_eq(tg_producer_sent_seq(p), 0u);
        tg_producer_free(p);
        tg_producer_free(NULL);
        server_join(&s);
        assert_eq(s.n_frames, (size_t) 0);
        server_done(&s);
}

static void test_packing(void) {
        enum { N = 100, PAYLOAD = 1000 };
        static const char topic[] = "vehicle.speed";
        const size_t rec_size = TG_RECORD_HEADER_SIZE + strlen(topic) + PAYLOAD;
        const size_t per_frame = (TG_PRODUCER_FRAME_SIZE - TG_FRAME_HEADER_SIZE) / rec_size;
        uint8_t payload[PAYLOAD];
        FakeClassifier s;
        TgProducer *p;
        size_t seen = 0;

        server_start(&s, SERVER_ACK);
        assert_ok(tg_producer_connect(s.path, &p));
        for (unsigned i = 0; i < N; i++) {
                fill(payload, sizeof payload, i);
                assert_ok(tg_producer_add(p, topic, 1000000 + i, payload, sizeof payload));
        }
        /* Records are held until a frame is full: one full frame went out so far. */
        assert_eq(per_frame, (size_t) 63);
        assert_eq(tg_producer_sent_seq(p), 1u);
        assert_ok(tg_producer_flush(p, 5 * USEC_PER_SEC));
        /* Two frames of records and the flush request, all acknowledged. */
        assert_eq(tg_producer_sent_seq(p), 3u);
        assert_eq(tg_producer_acked_seq(p), 3u);
        assert_eq(tg_producer_rejected_records(p), UINT64_C(0));
        tg_producer_free(p);
        server_join(&s);

        assert_eq(s.errors_sent, 0u);
        assert_eq(s.n_frames, (size_t) 3);
        for (size_t f = 0; f < s.n_frames; f++) {
                TgFrameHeader h = frame_header(&s.frames[f]);
                size_t offset = TG_FRAME_HEADER_SIZE;

                assert_eq(h.seq, (uint32_t) f + 1);
                assert_eq(h.count, f == 0 ? per_frame : f == 1 ? N - per_frame : 0);
                /* Full: the next record would not have fitted. */
                if (f == 0)
                        assert_se(s.frames[f].size + rec_size > TG_PRODUCER_FRAME_SIZE);
                for (unsigned i = 0; i < h.count; i++, seen++) {
                        TgRecord r;
                        assert_eq(tg_record_decode(s.frames[f].data, s.frames[f].size, &offset, TG_PAYLOAD_MAX, &r),
                                  TG_RECORD_OK);
                        assert_eq(r.id, UINT64_C(0)); /* the classifier assigns ids */
                        assert_eq(r.timestamp_usec, 1000000 + seen);
                        assert_eq(r.topic_len, strlen(topic));
                        assert_memeq(r.topic, topic, r.topic_len);
                        assert_eq(r.payload_len, (uint32_t) PAYLOAD);
                        fill(payload, sizeof payload, (unsigned) seen);
                        assert_memeq(r.payload, payload, PAYLOAD);
                }
        }
        assert_eq(seen, (size_t) N);
        server_done(&s);
}

/* A record that fills a frame to the last byte goes in that frame. */
static void test_exact_fill(void) {
        const size_t payload_size = TG_PRODUCER_FRAME_SIZE - TG_FRAME_HEADER_SIZE - TG_RECORD_HEADER_SIZE - 1;
        uint8_t *payload = malloc(payload_size);
        FakeClassifier s;
        TgProducer *p;

        assert_se(payload);
        fill(payload, payload_size, 9);
        server_start(&s, SERVER_ACK);
        assert_ok(tg_producer_connect(s.path, &p));
        assert_ok(tg_producer_add(p, "t", 1, payload, payload_size));
        assert_eq(tg_producer_sent_seq(p), 0u);
        assert_ok(tg_producer_add(p, "u", 2, NULL, 0));
        assert_eq(tg_producer_sent_seq(p), 1u);
        assert_ok(tg_producer_flush(p, 5 * USEC_PER_SEC));
        tg_producer_free(p);
        server_join(&s);

        assert_eq(s.n_frames, (size_t) 3);
        assert_eq(s.frames[0].size, (size_t) TG_PRODUCER_FRAME_SIZE);
        assert_eq(frame_header(&s.frames[0]).count, 1);
        assert_memeq(s.frames[0].data + TG_FRAME_HEADER_SIZE + TG_RECORD_HEADER_SIZE + 1, payload, payload_size);
        assert_eq(s.frames[1].size, (size_t) TG_FRAME_HEADER_SIZE + TG_RECORD_HEADER_SIZE + 1);
        assert_eq(frame_header(&s.frames[1]).count, 1);
        assert_eq(frame_header(&s.frames[2]).count, 0);
        server_done(&s);
        free(payload);
}

static void test_invalid_input(void) {
        static const char *const bad_topics[] = { "", ".a", "a.", "a..b", "a b", "a*", "ä" };
        char long_topic[TG_TOPIC_MAX + 2];
        uint8_t *big = calloc(1, TG_PAYLOAD_MAX + 1);
        FakeClassifier s;
        TgProducer *p;

        assert_se(big);
        memset(long_topic, 'a', sizeof long_topic - 1);
        long_topic[sizeof long_topic - 1] = '\0';
        server_start(&s, SERVER_ACK);
        assert_ok(tg_producer_connect(s.path, &p));

        for (size_t i = 0; i < ELEMENTSOF(bad_topics); i++)
                assert_eq(tg_producer_add(p, bad_topics[i], 1, "x", 1), -EINVAL);
        assert_eq(tg_producer_add(p, NULL, 1, "x", 1), -EINVAL);
        assert_eq(tg_producer_add(p, long_topic, 1, "x", 1), -EINVAL); /* 256 characters */
        assert_eq(tg_producer_add(p, "ok", 1, big, TG_PAYLOAD_MAX + 1), -EMSGSIZE);
        assert_eq(tg_producer_add(p, "ok", 1, big, SIZE_MAX), -EMSGSIZE);
        assert_eq(tg_producer_add(p, "ok", 1, NULL, 1), -EMSGSIZE);
        long_topic[TG_TOPIC_MAX] = '\0';
        assert_ok(tg_producer_add(p, long_topic, 1, NULL, 0)); /* 255: the longest topic */

        /* Nothing was sent for the refused records; the valid one goes with the flush. */
        assert_eq(tg_producer_sent_seq(p), 0u);
        assert_ok(tg_producer_flush(p, 5 * USEC_PER_SEC));
        tg_producer_free(p);
        server_join(&s);
        assert_eq(s.n_frames, (size_t) 2);
        assert_eq(frame_header(&s.frames[0]).count, 1);
        assert_eq(s.frames[0].size, (size_t) TG_FRAME_HEADER_SIZE + TG_RECORD_HEADER_SIZE + TG_TOPIC_MAX);
        assert_eq(frame_header(&s.frames[1]).count, 0);
        server_done(&s);
        free(big);
}

static void test_flush_timeout(void) {
        FakeClassifier s;
        TgProducer *p;
        uint64_t t0, elapsed;

        server_start(&s, SERVER_SILENT);
        assert_ok(tg_producer_connect(s.path, &p));
        assert_ok(tg_producer_add(p, "vehicle.speed", 1, "abc", 3));
        t0 = tg_now(CLOCK_MONOTONIC);
        assert_eq(tg_producer_flush(p, 300 * USEC_PER_MSEC), -ETIMEDOUT);
        elapsed = tg_now(CLOCK_MONOTONIC) - t0;
        assert_se(elapsed >= 300 * USEC_PER_MSEC);
        assert_se(elapsed < 3 * USEC_PER_SEC);
        assert_eq(tg_producer_sent_seq(p), 2u);
        assert_eq(tg_producer_acked_seq(p), 0u);
        /* A zero timeout gives up at once. */
        assert_eq(tg_producer_flush(p, 0), -ETIMEDOUT);
        tg_producer_free(p);
        server_join(&s);
        assert_eq(s.n_frames, (size_t) 3);
        server_done(&s);
}

static void wait_readable(TgProducer *p) {
        struct pollfd pfd = { .fd = tg_producer_fd(p), .events = POLLIN };
        assert_eq(poll(&pfd, 1, 5000), 1);
}

/* An ERROR frame surfaces once through tg_producer_process(). */
static void test_error_process(void) {
        FakeClassifier s;
        TgProducer *p;

        server_start(&s, SERVER_ACK);
        s.reject_seq = 1;
        assert_ok(tg_producer_connect(s.path, &p));
        assert_ok(tg_producer_add(p, "a", 1, NULL, 0));
        assert_ok(tg_producer_add(p, "b", 1, NULL, 0));
        assert_ok(tg_producer_add(p, "c", 1, NULL, 0));
        assert_ok(tg_producer_send(p));
        assert_eq(tg_producer_sent_seq(p), 1u);

        wait_readable(p);
        assert_eq(tg_producer_process(p), -EBADMSG);
        assert_contains(tg_producer_last_error(p), "frame 1");
        assert_contains(tg_producer_last_error(p), "invalid-topic");
        assert_contains(tg_producer_last_error(p), "record 1");
        assert_contains(tg_producer_last_error(p), "topic rejected by the test");
        assert_eq(tg_producer_rejected_records(p), UINT64_C(3));
        /* Reported once; the explanation stays readable. */
        assert_ok(tg_producer_process(p));
        assert_contains(tg_producer_last_error(p), "invalid-topic");

        /* The connection goes on. */
        assert_ok(tg_producer_add(p, "d", 1, NULL, 0));
        assert_ok(tg_producer_flush(p, 5 * USEC_PER_SEC));
        assert_eq(tg_producer_acked_seq(p), 3u);
        tg_producer_free(p);
        server_join(&s);
        assert_eq(s.errors_sent, 1u);
        server_done(&s);
}

/* An ERROR for a frame before the flush request makes the flush fail. */
static void test_error_flush(void) {
        FakeClassifier s;
        TgProducer *p;

        server_start(&s, SERVER_ACK);
        s.reject_seq = 2;
        assert_ok(tg_producer_connect(s.path, &p));
        assert_ok(tg_producer_add(p, "a", 1, NULL, 0));
        assert_ok(tg_producer_send(p));
        assert_ok(tg_producer_add(p, "b", 1, "xy", 2));
        assert_ok(tg_producer_add(p, "c", 1, "xy", 2));
        assert_eq(tg_producer_flush(p, 5 * USEC_PER_SEC), -EBADMSG);
        assert_contains(tg_producer_last_error(p), "frame 2: invalid-topic: record 1");
        assert_eq(tg_producer_rejected_records(p), UINT64_C(2));
        assert_eq(tg_producer_acked_seq(p), 3u);
        /* The next flush, with nothing rejected, succeeds. */
        assert_ok(tg_producer_flush(p, 5 * USEC_PER_SEC));
        tg_producer_free(p);
        server_join(&s);
        server_done(&s);
}

/* A frame of garbage from the classifier is a protocol error, not a crash. */
static void test_garbage_answer(void) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        _cleanup_free_ char *path = tg_test_path(dir, "s");
        _cleanup_close_ int lfd = -EBADF, cfd = -EBADF;
        TgProducer *p;

        strcpy(sa.sun_path, path);
        lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        assert_se(lfd >= 0);
        assert_se(bind(lfd, (struct sockaddr *) &sa, sizeof sa) == 0);
        assert_se(listen(lfd, 1) == 0);
        assert_ok(tg_producer_connect(path, &p));
        cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        assert_se(cfd >= 0);

        assert_eq(send(cfd, "not a frame at all", 18, 0), 18);
        wait_readable(p);
        assert_eq(tg_producer_process(p), -EPROTO);

        /* A RECORDS frame is not something the classifier sends. */
        {
                uint8_t f[TG_FRAME_HEADER_SIZE];
                tg_frame_write_header(f, &(TgFrameHeader) { .type = TG_FRAME_RECORDS, .seq = 1 });
                assert_eq(send(cfd, f, sizeof f, 0), (ssize_t) sizeof f);
                wait_readable(p);
                assert_eq(tg_producer_process(p), -EPROTO);
        }
        /* An ERROR frame without its code and index. */
        {
                uint8_t f[TG_FRAME_HEADER_SIZE + 2] = {};
                tg_frame_write_header(f, &(TgFrameHeader) { .type = TG_FRAME_ERROR, .seq = 1 });
                assert_eq(send(cfd, f, sizeof f, 0), (ssize_t) sizeof f);
                wait_readable(p);
                assert_eq(tg_producer_process(p), -EPROTO);
        }
        /* The classifier going away. */
        cfd = safe_close(cfd);
        wait_readable(p);
        assert_eq(tg_producer_process(p), -ECONNRESET);
        tg_producer_free(p);
}

/*
 * The largest record (64 KiB payload, a 255-byte topic) does not fit in a
 * TG_PRODUCER_FRAME_SIZE frame: it travels alone, in a frame the classifier
 * still accepts (≤ TG_FRAME_MAX); the records around it are packed as usual.
 * Regression test: this used to be encoded past the end of the producer's
 * 64 KiB frame buffer (heap overflow, lib/tg-producer.c tg_producer_add()).
 */
static void test_max_payload(void) {
        uint8_t *payload = malloc(TG_PAYLOAD_MAX);
        char topic[TG_TOPIC_MAX + 1];
        FakeClassifier s;
        TgProducer *p;

        assert_se(payload);
        fill(payload, TG_PAYLOAD_MAX, 3);
        memset(topic, 'c', TG_TOPIC_MAX);
        topic[TG_TOPIC_MAX] = '\0';
        server_start(&s, SERVER_ACK);
        assert_ok(tg_producer_connect(s.path, &p));
        /* The connection is made: remove the directory now, since after a heap
         * overrun neither the failure handler nor ASan's abort would get to it. */
        assert_se(unlink(s.path) == 0);
        assert_se(rmdir(s.dir) == 0);

        assert_ok(tg_producer_add(p, "before", 1, "b", 1));
        assert_ok(tg_producer_add(p, topic, 2, payload, TG_PAYLOAD_MAX));
        assert_ok(tg_producer_add(p, "after", 3, "a", 1));
        assert_ok(tg_producer_add(p, "vehicle.camera", 4, payload, TG_PAYLOAD_MAX - 1));
        assert_ok(tg_producer_flush(p, 5 * USEC_PER_SEC));
        assert_eq(tg_producer_rejected_records(p), UINT64_C(0));
        tg_producer_free(p);
        server_join(&s);

        assert_eq(s.errors_sent, 0u);
        assert_eq(s.n_frames, (size_t) 5);
        for (size_t f = 0; f < s.n_frames; f++) {
                const Frame *fr = &s.frames[f];
                TgFrameHeader h;
                uint16_t index;
                size_t offset = TG_FRAME_HEADER_SIZE;

                assert_le(fr->size, (size_t) TG_FRAME_MAX);
                assert_eq(tg_frame_parse_header(fr->data, fr->size, &h), TG_FRAME_OK);
                assert_eq(tg_frame_check_records(fr->data, fr->size, &h, TG_PAYLOAD_MAX, &index), TG_FRAME_OK);
                /* Over the packing size only as a record of its own. */
                if (fr->size > TG_PRODUCER_FRAME_SIZE)
                        assert_eq(h.count, 1);
                for (unsigned i = 0; i < h.count; i++) {
                        TgRecord r;
                        assert_eq(tg_record_decode(fr->data, fr->size, &offset, TG_PAYLOAD_MAX, &r), TG_RECORD_OK);
                        if (r.payload_len >= TG_PAYLOAD_MAX - 1) {
                                assert_eq(h.count, 1);
                                assert_memeq(r.payload, payload, r.payload_len);
                        }
                }
        }
        /* before | the 64 KiB record | after | the other big record | flush request */
        assert_eq(s.frames[0].size, (size_t) TG_FRAME_HEADER_SIZE + TG_RECORD_HEADER_SIZE + 6 + 1);
        assert_eq(s.frames[1].size,
                  (size_t) TG_FRAME_HEADER_SIZE + TG_RECORD_HEADER_SIZE + TG_TOPIC_MAX + TG_PAYLOAD_MAX);
        assert_eq(s.frames[2].size, (size_t) TG_FRAME_HEADER_SIZE + TG_RECORD_HEADER_SIZE + 5 + 1);
        assert_eq(s.frames[4].size, (size_t) TG_FRAME_HEADER_SIZE);
        server_done(&s);
        free(payload);
}

/*
 * The shared library is built with -fvisibility=hidden: only functions marked
 * TG_PRODUCER_API are exported. Every function of tollgate-producer.h must be.
 * Regression test: tg_producer_last_error() once lacked the mark. Checked
 * with dlopen() so that a missing symbol fails this case, not the build.
 */
static void test_shared_library_exports(void) {
        static const char *const api[] = {
                "tg_producer_connect", "tg_producer_free", "tg_producer_add", "tg_producer_send",
                "tg_producer_flush", "tg_producer_process", "tg_producer_fd", "tg_producer_sent_seq",
                "tg_producer_acked_seq", "tg_producer_rejected_records", "tg_producer_last_error",
        };
        const char *path = getenv("TG_PRODUCER_LIBRARY");
        void *h;
        unsigned missing = 0;

        assert_se(path);
        h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h)
                fprintf(stderr, "dlopen(%s): %s\n", path, dlerror());
        assert_se(h);
        for (size_t i = 0; i < ELEMENTSOF(api); i++)
                if (!dlsym(h, api[i])) {
                        fprintf(stderr, "%s does not export %s()\n", path, api[i]);
                        missing++;
                }
        dlclose(h);
        assert_eq(missing, 0u);
}

TG_TEST_MAIN(TEST(connect), TEST(packing), TEST(exact_fill), TEST(invalid_input), TEST(flush_timeout),
             TEST(error_process), TEST(error_flush), TEST(garbage_answer), TEST(max_payload),
             TEST(shared_library_exports));
