/* SPDX-License-Identifier: MIT */
/*
 * lib/tg-flash against the simulated ECU (tools/ecu-sim/ecu-model), in
 * process: a test-only TgDiagOps hands each request to ecu_model_request()
 * from an sd-event defer source and delivers the model's responses (0x78s
 * and delayed finals from ecu_model_poll() on a timer) through
 * tg_diag_channel_response(). No network, except for the streamed
 * downloads: a small HTTP server on this loop, on loopback, and lib/tg-download
 * (libcurl) reading from it into a bounded window.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ecu-model.h"
#include "tg-diag.h"
#include "tg-download.h"
#include "tg-flash.h"
#include "tg-http.h"
#include "tg-keyproto.h"
#include "tg-test.h"
#include "tg-uds.h"

#define TARGET 0x0010
#define BANK_SIZE (64 * 1024)
#define MAX_BLOCK 1026 /* 0x34 answer: 1024 data bytes a TransferData */
#define BLOCK_DATA (MAX_BLOCK - 2)
#define IMAGE_SIZE 20000
#define MEM_ADDR 0x08000000u

/* ---- the in-process transport ---- */

typedef struct Sim {
        TgDiagChannel ch;
        EcuModel *m;
        const uint8_t *req;
        size_t req_len;
        uint16_t target;
        bool pending;
        sd_event_source *defer;
        sd_event_source *timer;
} Sim;

static uint64_t mono_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static int on_sim_timer(sd_event_source *s, uint64_t usec, void *userdata);

static void sim_arm(Sim *s) {
        uint64_t d = ecu_model_next_deadline(s->m);

        s->timer = sd_event_source_disable_unref(s->timer);
        if (d == UINT64_MAX)
                return;
        assert_ok(sd_event_add_time(s->ch.event, &s->timer, CLOCK_MONOTONIC, d, 1, on_sim_timer, s));
}

static int on_sim_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        Sim *s = userdata;
        uint8_t resp[256];
        size_t rl;

        (void) src;
        (void) usec;
        while (ecu_model_poll(s->m, mono_usec(), resp, sizeof resp, &rl, NULL) == 1)
                tg_diag_channel_response(&s->ch, s->target, resp, rl);
        (void) ecu_model_take_reset(s->m);
        sim_arm(s);
        return 0;
}

static int on_sim_defer(sd_event_source *src, void *userdata) {
        Sim *s = userdata;
        uint8_t resp[256];
        size_t rl = 0;
        int r;

        (void) src;
        if (!s->pending)
                return 0;
        s->pending = false;
        tg_diag_channel_sent(&s->ch);
        tg_diag_channel_acked(&s->ch); /* a suppressed request is done once it is in (ISO-TP: once sent) */
        r = ecu_model_request(s->m, s->req, s->req_len, s->target == TG_DIAG_FUNCTIONAL_ADDRESS, mono_usec(), resp,
                              sizeof resp, &rl);
        assert_se(r >= 0);
        (void) ecu_model_take_reset(s->m); /* a real front end drops the connection; nothing to drop here */
        sim_arm(s);
        if (r == 1)
                tg_diag_channel_response(&s->ch, s->target, resp, rl);
        return 0;
}

static int sim_start(TgDiagChannel *ch, uint16_t target, const uint8_t *req, size_t len) {
        Sim *s = (Sim *) ch;

        s->req = req;
        s->req_len = len;
        s->target = target;
        s->pending = true;
        return sd_event_source_set_enabled(s->defer, SD_EVENT_ONESHOT);
}

static int sim_connect(TgDiagChannel *ch) {
        (void) ch;
        return 1;
}

static bool sim_ready(TgDiagChannel *ch) {
        (void) ch;
        return true;
}

static void sim_abort(TgDiagChannel *ch) {
        ((Sim *) ch)->pending = false;
}

static void sim_free(TgDiagChannel *ch) {
        Sim *s = (Sim *) ch;

        s->defer = sd_event_source_disable_unref(s->defer);
        s->timer = sd_event_source_disable_unref(s->timer);
        sd_event_unref(s->ch.event);
        free(s);
}

static const TgDiagOps sim_ops = {
        .name = "ecu-model",
        .start = sim_start,
        .connect = sim_connect,
        .ready = sim_ready,
        .abort = sim_abort,
        .free = sim_free,
};

static Sim *sim_new(sd_event *e, EcuModel *m) {
        Sim *s = calloc(1, sizeof *s);

        assert_se(s);
        tg_diag_channel_init(&s->ch, &sim_ops, e);
        s->m = m;
        s->ch.timing.max_pending = 10;
        assert_ok(sd_event_add_defer(e, &s->defer, on_sim_defer, s));
        assert_ok(sd_event_source_set_enabled(s->defer, SD_EVENT_OFF));
        return s;
}

/* ---- images, streamed ---- */

typedef struct Image {
        uint8_t *data;
        size_t size;
        uint8_t sha[32];
        char version[16];
        unsigned reads;
} Image;

static void image_make(Image *img, const char *version, uint8_t salt, size_t size) {
        int l;

        img->data = malloc(size);
        assert_se(img->data);
        l = snprintf((char *) img->data, size, "TGV:%s\n", version);
        for (size_t i = (size_t) l; i < size; i++)
                img->data[i] = (uint8_t) (i * 31 + salt + (i >> 16));
        img->size = size;
        snprintf(img->version, sizeof img->version, "%s", version);
        assert_ok(tg_kp_sha256(img->data, img->size, img->sha));
        img->reads = 0;
}

static ssize_t image_read(void *userdata, uint64_t offset, uint8_t *buf, size_t len) {
        Image *img = userdata;

        /* bounded memory: never more than one TransferData block at a time */
        assert_le(len, (size_t) BLOCK_DATA);
        assert_le(offset + len, img->size);
        memcpy(buf, img->data + offset, len);
        img->reads++;
        return (ssize_t) len;
}

static TgFlashPlan plan_for(Image *img, bool ab) {
        TgFlashPlan p = {
                .read = image_read,
                .read_userdata = img,
                .size = img->size,
                .version = img->version,
                .memory_address = MEM_ADDR,
                .key_fn = tg_uds_key_demo,
                .ab_banks = ab,
                .extended_session = true,
                .dtc_off = true,
                .comm_off = true,
                .retry_delay_usec = 20 * 1000,
                .max_retries = 20,
        };

        memcpy(p.sha256, img->sha, 32);
        return p;
}

/* ---- running a flash ---- */

typedef struct Run {
        bool done;
        TgFlashError err;
        uint64_t last_done;
        unsigned n_progress;
        char last_step[32];
} Run;

static void on_progress(TgFlash *f, uint64_t done, uint64_t total, const char *step, void *userdata) {
        Run *run = userdata;

        (void) f;
        assert_le(done, total);
        assert_le(run->last_done, done); /* monotonic */
        run->last_done = done;
        run->n_progress++;
        snprintf(run->last_step, sizeof run->last_step, "%s", step);
}

static void on_finished(TgFlash *f, const TgFlashError *err, void *userdata) {
        Run *run = userdata;

        (void) f;
        assert_se(!run->done);
        run->done = true;
        run->err = *err;
}

static const TgFlashCallbacks callbacks = {
        .progress = on_progress,
        .finished = on_finished,
};

typedef struct Tester {
        sd_event *e;
        EcuModel *m;
        Sim *sim;
        Image old, new;
        bool ab;
} Tester;

static void tester_init_sized(Tester *t, bool ab, size_t image_size, uint32_t bank_size, uint32_t s3_ms,
                              uint64_t write_speed) {
        EcuModelConfig c = {
                .ab_banks = ab,
                .bank_size = bank_size,
                .s3_ms = s3_ms,
                .write_speed = write_speed,
                .memory_address = MEM_ADDR,
                .part_number = "TG-TEST",
                .erase_time_ms = 20,
                .max_block_length = MAX_BLOCK,
                .pending_interval_ms = 5,
                .p2_star_ms = 500,
                .prng_seed = 42,
        };

        *t = (Tester) { .ab = ab };
        image_make(&t->old, "1.0.0", 1, image_size);
        image_make(&t->new, "2.0.0", 2, image_size);
        c.initial_image = t->old.data;
        c.initial_image_len = t->old.size;
        c.initial_version = t->old.version;
        t->m = ecu_model_new(&c);
        assert_se(t->m);
        assert_ok(sd_event_default(&t->e));
        t->sim = sim_new(t->e, t->m);
}

static void tester_init(Tester *t, bool ab) {
        tester_init_sized(t, ab, IMAGE_SIZE, BANK_SIZE, 0, 0);
}

static void tester_done(Tester *t) {
        tg_diag_free(&t->sim->ch);
        ecu_model_free(t->m);
        sd_event_unref(t->e);
        free(t->old.data);
        free(t->new.data);
}

static TgFlashError run_plan(Tester *t, const TgFlashPlan *p, bool rollback) {
        Run run = {};
        TgFlash *f = NULL;

        if (rollback)
                assert_ok(tg_flash_rollback(&t->sim->ch, TARGET, p, &callbacks, &run, &f));
        else
                assert_ok(tg_flash_start(&t->sim->ch, TARGET, p, &callbacks, &run, &f));
        while (!run.done)
                assert_se(sd_event_run(t->e, UINT64_MAX) >= 0);
        assert_se(run.n_progress > 0);
        if (run.err.error == 0)
                assert_eq(run.last_done, rollback && p->ab_banks ? 0 : p->size);
        tg_flash_free(f);
        return run.err;
}

static TgFlashError flash(Tester *t, Image *img) {
        TgFlashPlan p = plan_for(img, t->ab);

        img->reads = 0;
        return run_plan(t, &p, false);
}

static void read_version(Tester *t, char *buf, size_t size) {
        uint8_t req[8];
        const uint16_t did = TG_UDS_DID_SOFTWARE_VERSION;
        TgDiagResult r;
        _cleanup_free_ uint8_t *resp = NULL;
        size_t rl, dl;
        const uint8_t *d;
        TgUdsError err;
        int n = tg_uds_encode_read_data(req, sizeof req, &did, 1);

        assert_se(n > 0);
        assert_ok(tg_diag_request_wait(&t->sim->ch, TARGET, req, (size_t) n, &r, &resp, &rl));
        assert_ok(tg_uds_parse_read_data(resp, rl, did, &d, &dl, &err));
        tg_uds_did_to_string(d, dl, buf, size);
}

/* No bank is ever valid with anything but one whole image. */
static void assert_no_mixed(Tester *t) {
        for (unsigned b = 0; b < ecu_model_n_banks(t->m); b++) {
                uint8_t sha[32];

                if (!ecu_model_bank_valid(t->m, b))
                        continue;
                assert_ok(ecu_model_bank_sha256(t->m, b, sha));
                assert_se(memcmp(sha, t->old.sha, 32) == 0 || memcmp(sha, t->new.sha, 32) == 0);
        }
}

static void assert_flashed(Tester *t, Image *img) {
        char v[64];
        uint8_t sha[32];
        unsigned active = ecu_model_active_bank(t->m);

        read_version(t, v, sizeof v);
        assert_streq(v, img->version);
        assert_se(ecu_model_bank_valid(t->m, active));
        assert_ok(ecu_model_bank_sha256(t->m, active, sha));
        assert_memeq(sha, img->sha, 32);
        /* the reset restored what the flash turned off */
        assert_se(ecu_model_dtc_setting_on(t->m));
        assert_eq(ecu_model_comm_control(t->m), 0);
        assert_no_mixed(t);
}

static void test_flash_ab(void) {
        Tester t;
        TgFlashError e;
        char v[64];

        tester_init(&t, true);
        read_version(&t, v, sizeof v);
        assert_streq(v, "1.0.0");
        e = flash(&t, &t.new);
        assert_eq(e.error, 0);
        assert_eq(e.step, TG_FLASH_STEP_DONE);
        assert_eq(t.new.reads, (IMAGE_SIZE + BLOCK_DATA - 1) / BLOCK_DATA); /* each block read once */
        assert_eq(ecu_model_active_bank(t.m), 1);
        assert_flashed(&t, &t.new);

        /* rollback: back to bank A by a bank switch, no download */
        TgFlashPlan p = plan_for(&t.old, true);
        t.old.reads = 0;
        e = run_plan(&t, &p, true);
        assert_eq(e.error, 0);
        assert_eq(t.old.reads, 0);
        assert_eq(ecu_model_active_bank(t.m), 0);
        assert_flashed(&t, &t.old);
        tester_done(&t);
}

static void test_flash_single(void) {
        Tester t;
        TgFlashError e;

        tester_init(&t, false);
        e = flash(&t, &t.new);
        assert_eq(e.error, 0);
        assert_flashed(&t, &t.new);

        /* rollback of a single bank ECU: a re-flash of the previous image */
        TgFlashPlan p = plan_for(&t.old, false);
        e = run_plan(&t, &p, true);
        assert_eq(e.error, 0);
        assert_flashed(&t, &t.old);
        tester_done(&t);
}

/* A fault, the named error it ends in, then a retry that works. */
static void fault_case(bool ab, const EcuModelFaults *fault, TgFlashStep step, int error, uint8_t nrc,
                       TgDiagError diag) {
        Tester t;
        TgFlashError e;

        tester_init(&t, ab);
        ecu_model_set_faults(t.m, fault);
        e = flash(&t, &t.new);
        fprintf(stderr, "  %s: %s\n", ab ? "A/B" : "single", e.message);
        assert_eq(e.step, step);
        assert_eq(e.error, error);
        assert_eq(e.nrc, nrc);
        assert_eq(e.diag.error, diag);
        assert_no_mixed(&t);
        if (ab) {
                /* the old image still runs */
                char v[64];

                while (ecu_model_busy(t.m)) /* a response still owed (the storm) */
                        assert_se(sd_event_run(t.e, UINT64_MAX) >= 0);
                read_version(&t, v, sizeof v);
                assert_streq(v, "1.0.0");
        }
        e = flash(&t, &t.new);
        if (e.error != 0)
                fprintf(stderr, "  retry: %s\n", e.message);
        assert_eq(e.error, 0);
        assert_flashed(&t, &t.new);
        if (ab) {
                TgFlashPlan p = plan_for(&t.old, true);

                e = run_plan(&t, &p, true);
                assert_eq(e.error, 0);
                assert_flashed(&t, &t.old);
        }
        tester_done(&t);
}

static void test_faults(void) {
        for (int ab = 0; ab <= 1; ab++) {
                fault_case(ab, &(EcuModelFaults) { .nrc_sid = 0x36, .nrc = TG_UDS_NRC_GENERAL_PROGRAMMING_FAILURE },
                           TG_FLASH_STEP_TRANSFER_DATA, -EREMOTEIO, TG_UDS_NRC_GENERAL_PROGRAMMING_FAILURE,
                           TG_DIAG_OK);
                fault_case(ab, &(EcuModelFaults) { .pending_storm_sid = 0x31, .pending_storm_count = 50 },
                           TG_FLASH_STEP_PRECONDITIONS, -EIO, 0, TG_DIAG_PENDING_STORM);
                fault_case(ab, &(EcuModelFaults) { .reset_after_blocks = 5 }, TG_FLASH_STEP_TRANSFER_DATA, -EIO, 0,
                           TG_DIAG_TIMEOUT);
                fault_case(ab, &(EcuModelFaults) { .power_loss_after_blocks = 7 }, TG_FLASH_STEP_TRANSFER_DATA, -EIO,
                           0, TG_DIAG_TIMEOUT);
                fault_case(ab, &(EcuModelFaults) { .corrupt_after_blocks = 3 }, TG_FLASH_STEP_CHECK_DEPENDENCIES,
                           -EREMOTEIO, TG_UDS_NRC_GENERAL_PROGRAMMING_FAILURE, TG_DIAG_OK);
        }
}

/* NRC 0x21 and a short pending storm are ridden out by the retry policy. */
static void test_retry(void) {
        Tester t;
        TgFlashError e;

        tester_init(&t, true);
        ecu_model_set_faults(t.m, &(EcuModelFaults) { .nrc_sid = 0x34, .nrc = TG_UDS_NRC_BUSY_REPEAT_REQUEST });
        e = flash(&t, &t.new);
        assert_eq(e.error, 0);
        assert_flashed(&t, &t.new);

        ecu_model_set_faults(t.m, &(EcuModelFaults) { .pending_storm_sid = 0x31, .pending_storm_count = 3 });
        e = flash(&t, &t.old);
        assert_eq(e.error, 0);
        assert_flashed(&t, &t.old);
        tester_done(&t);
}

/* ---- an image source that is not there yet ---- */

#define STREAM_IMAGE (1024 * 1024)
#define STREAM_BANK (STREAM_IMAGE + 64 * 1024)
#define STREAM_S3_MS 300

typedef struct Stuck {
        Image *img;
        uint64_t stuck_at; /* bytes before it come, the rest never */
        unsigned eagain;
} Stuck;

static ssize_t stuck_read(void *userdata, uint64_t offset, uint8_t *buf, size_t len) {
        Stuck *st = userdata;

        if (offset + len > st->stuck_at) {
                st->eagain++;
                return -EAGAIN;
        }
        memcpy(buf, st->img->data + offset, len);
        return (ssize_t) len;
}

/* A source that stops: TesterPresent keeps the programming session past
 * the ECU's S3 while it waits, and the stall timer ends the flash with a
 * named error; nothing half-written is valid, the old image still runs,
 * and a retry works. */
static void test_source_stall(void) {
        Tester t;
        TgFlashError e;
        char v[64];

        tester_init_sized(&t, true, IMAGE_SIZE, BANK_SIZE, STREAM_S3_MS, 0);
        Stuck st = { .img = &t.new, .stuck_at = IMAGE_SIZE / 2 };
        TgFlashPlan p = plan_for(&t.new, true);
        p.read = stuck_read;
        p.read_userdata = &st;
        p.keepalive_usec = 100 * 1000;
        p.source_timeout_usec = 3 * STREAM_S3_MS * 1000; /* three S3 periods */
        e = run_plan(&t, &p, false);
        fprintf(stderr, "  %s\n", e.message);
        assert_eq(e.error, -ETIMEDOUT);
        assert_eq(e.step, TG_FLASH_STEP_TRANSFER_DATA);
        assert_se(strstr(e.message, "image source stalled at 9216 of 20000 bytes for 0.9 s"));
        assert_eq(st.eagain, 1); /* no resume: read once, then waited */
        {
                /* The session outlived three S3 periods: RequestTransferExit
                 * now is out of sequence (the transfer is unfinished), not
                 * out of session. */
                const uint8_t req[] = { 0x37 };
                _cleanup_free_ uint8_t *resp = NULL;
                TgDiagResult r;
                size_t rl;

                assert_ok(tg_diag_request_wait(&t.sim->ch, TARGET, req, sizeof req, &r, &resp, &rl));
                assert_eq(rl, 3);
                assert_eq(resp[0], 0x7F);
                assert_eq(resp[2], TG_UDS_NRC_REQUEST_SEQUENCE_ERROR);
        }
        assert_no_mixed(&t);
        read_version(&t, v, sizeof v);
        assert_streq(v, "1.0.0");
        e = flash(&t, &t.new);
        assert_eq(e.error, 0);
        assert_flashed(&t, &t.new);
        tester_done(&t);
}

/* ---- an HTTP server on the test's loop, over loopback ---- */

typedef struct Server {
        sd_event *e;
        int listen_fd;
        uint16_t port;
        sd_event_source *accept_src, *conn_src, *tick;
        int fd;
        const uint8_t *body;
        size_t size;
        int status;             /* 200 or an error status */
        size_t chunk;           /* body bytes a tick */
        uint64_t tick_usec;
        size_t stall_at;        /* pause once after this many body bytes … */
        uint64_t stall_usec;    /* … for this long */
        size_t cut_at;          /* close after this many body bytes; 0 = never */
        /* the connection */
        char req[2048];
        size_t req_len;
        char head[256];
        size_t head_len, head_sent, sent;
        bool stalled;
        unsigned requests;
} Server;

static void server_close_conn(Server *sv) {
        sv->conn_src = sd_event_source_disable_unref(sv->conn_src);
        sv->tick = sd_event_source_disable_unref(sv->tick);
        if (sv->fd >= 0)
                close(sv->fd);
        sv->fd = -1;
}

static int on_server_tick(sd_event_source *src, uint64_t usec, void *userdata) {
        Server *sv = userdata;
        uint64_t next = sv->tick_usec;
        ssize_t n;

        (void) src;
        (void) usec;
        while (sv->head_sent < sv->head_len) {
                n = send(sv->fd, sv->head + sv->head_sent, sv->head_len - sv->head_sent, MSG_NOSIGNAL);
                if (n <= 0)
                        goto rearm;
                sv->head_sent += (size_t) n;
        }
        if (sv->status == 200) {
                size_t end = sv->sent + sv->chunk;

                if (end > sv->size)
                        end = sv->size;
                if (sv->stall_at && !sv->stalled && end > sv->stall_at)
                        end = sv->stall_at;
                if (sv->cut_at && end > sv->cut_at)
                        end = sv->cut_at;
                if (end > sv->sent) {
                        n = send(sv->fd, sv->body + sv->sent, end - sv->sent, MSG_NOSIGNAL);
                        if (n > 0)
                                sv->sent += (size_t) n;
                }
                if (sv->stall_at && !sv->stalled && sv->sent == sv->stall_at) {
                        sv->stalled = true;
                        next = sv->stall_usec;
                }
        }
        if ((sv->status != 200 || sv->sent == sv->size || (sv->cut_at && sv->sent >= sv->cut_at))) {
                server_close_conn(sv);
                return 0;
        }
rearm:
        assert_ok(sd_event_source_set_time_relative(sv->tick, next));
        assert_ok(sd_event_source_set_enabled(sv->tick, SD_EVENT_ONESHOT));
        return 0;
}

static int on_server_conn(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        Server *sv = userdata;
        ssize_t n;

        (void) src;
        (void) revents;
        n = recv(fd, sv->req + sv->req_len, sizeof sv->req - 1 - sv->req_len, 0);
        if (n <= 0) {
                if (n == 0 || errno != EAGAIN)
                        server_close_conn(sv);
                return 0;
        }
        sv->req_len += (size_t) n;
        sv->req[sv->req_len] = 0;
        if (!strstr(sv->req, "\r\n\r\n") || sv->tick)
                return 0;
        assert_se(strncmp(sv->req, "GET /image.bin HTTP/1.1\r\n", 25) == 0);
        sv->requests++;
        if (sv->status == 200)
                sv->head_len = (size_t) snprintf(sv->head, sizeof sv->head,
                                                 "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n"
                                                 "Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                                                 sv->size);
        else
                sv->head_len = (size_t) snprintf(sv->head, sizeof sv->head,
                                                 "HTTP/1.1 %d Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                                                 sv->status);
        assert_ok(sd_event_add_time_relative(sv->e, &sv->tick, CLOCK_MONOTONIC, 0, 1, on_server_tick, sv));
        return 0;
}

static int on_server_accept(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        Server *sv = userdata;
        int c;

        (void) src;
        (void) revents;
        c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0)
                return 0;
        server_close_conn(sv);
        *sv = (Server) { .e = sv->e, .listen_fd = sv->listen_fd, .port = sv->port, .accept_src = sv->accept_src,
                         .fd = c, .body = sv->body, .size = sv->size, .status = sv->status, .chunk = sv->chunk,
                         .tick_usec = sv->tick_usec, .stall_at = sv->stall_at, .stall_usec = sv->stall_usec,
                         .cut_at = sv->cut_at, .requests = sv->requests };
        assert_ok(sd_event_add_io(sv->e, &sv->conn_src, c, EPOLLIN, on_server_conn, sv));
        return 0;
}

static void server_start(Server *sv, sd_event *e, const Image *img) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t al = sizeof a;

        *sv = (Server) { .e = e, .fd = -1, .body = img->data, .size = img->size, .status = 200,
                         .chunk = 64 * 1024, .tick_usec = 1000 };
        sv->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        assert_se(sv->listen_fd >= 0);
        assert_ok(bind(sv->listen_fd, (struct sockaddr *) &a, sizeof a));
        assert_ok(listen(sv->listen_fd, 4));
        assert_ok(getsockname(sv->listen_fd, (struct sockaddr *) &a, &al));
        sv->port = ntohs(a.sin_port);
        assert_ok(sd_event_add_io(e, &sv->accept_src, sv->listen_fd, EPOLLIN, on_server_accept, sv));
}

static void server_stop(Server *sv) {
        server_close_conn(sv);
        sv->accept_src = sd_event_source_disable_unref(sv->accept_src);
        close(sv->listen_fd);
}

/* ---- flashing from a download ---- */

#define WINDOW TG_DOWNLOAD_WINDOW_MIN

typedef struct DlRun {
        Run run;
        TgFlash *f;
} DlRun;

static void on_download_wake(TgDownload *d, void *userdata) {
        DlRun *x = userdata;

        (void) d;
        if (x->f)
                tg_flash_resume(x->f);
}

static TgFlashError flash_download(Tester *t, TgHttp *http, const Server *sv, Image *img, uint64_t keepalive_usec,
                                   TgDownload **ret_dl) {
        DlRun x = {};
        TgDownload *d = NULL;
        CURL *easy = curl_easy_init();
        char url[64];

        assert_se(easy);
        snprintf(url, sizeof url, "http://127.0.0.1:%u/image.bin", (unsigned) sv->port);
        curl_easy_setopt(easy, CURLOPT_URL, url);
        assert_ok(tg_download_start(http, easy, WINDOW, on_download_wake, &x, &d));

        TgFlashPlan p = plan_for(img, t->ab);
        p.read = tg_download_read;
        p.read_userdata = d;
        p.keepalive_usec = keepalive_usec;
        p.source_timeout_usec = 5 * 1000 * 1000;
        assert_ok(tg_flash_start(&t->sim->ch, TARGET, &p, &callbacks, &x.run, &x.f));
        while (!x.run.done)
                assert_se(sd_event_run(t->e, UINT64_MAX) >= 0);
        x.f = tg_flash_free(x.f);
        /* bounded memory: the window never held more than its size */
        assert_le(tg_download_peak(d), (size_t) WINDOW);
        *ret_dl = d;
        return x.run.err;
}

/* 1 MiB from HTTP through a 64 KiB window into the ECU, with the server
 * stopping for longer than the ECU's S3 halfway: TesterPresent holds the
 * session. Without it (keepalive longer than S3) the ECU drops back to the
 * default session and TransferData is refused: the keepalive is what
 * carries the flash over the pause. */
static void test_download(void) {
        _cleanup_(tg_http_freep) TgHttp *http = NULL;
        TgDownload *d = NULL;
        Server sv;
        Tester t;
        TgFlashError e;

        /* the ECU writes 4 MB/s, the server sends faster: the window fills */
        tester_init_sized(&t, true, STREAM_IMAGE, STREAM_BANK, STREAM_S3_MS, 4 * 1000 * 1000);
        assert_ok(tg_http_new(t.e, &http));
        server_start(&sv, t.e, &t.new);
        sv.stall_at = STREAM_IMAGE / 2;
        sv.stall_usec = 3 * STREAM_S3_MS * 1000;

        e = flash_download(&t, http, &sv, &t.new, 100 * 1000, &d);
        if (e.error)
                fprintf(stderr, "  %s (download: %s)\n", e.message, tg_download_message(d));
        assert_eq(e.error, 0);
        assert_se(sv.stalled);
        assert_eq(tg_download_received(d), (uint64_t) STREAM_IMAGE);
        assert_eq(tg_download_size(d), (int64_t) STREAM_IMAGE);
        fprintf(stderr, "  %u KiB through a window of %u KiB (peak %zu KiB)\n", STREAM_IMAGE / 1024, WINDOW / 1024,
                tg_download_peak(d) / 1024);
        /* the window filled up: the transfer paused and went on */
        assert_se(tg_download_peak(d) > WINDOW - CURL_MAX_WRITE_SIZE);
        d = tg_download_free(d);
        assert_flashed(&t, &t.new);

        /* the same pause without the keepalive: the ECU's S3 ends the session */
        sv.stalled = false;
        e = flash_download(&t, http, &sv, &t.old, 10 * 1000 * 1000, &d);
        fprintf(stderr, "  without keepalive: %s\n", e.message);
        assert_eq(e.error, -EREMOTEIO);
        assert_eq(e.step, TG_FLASH_STEP_TRANSFER_DATA);
        assert_eq(e.nrc, TG_UDS_NRC_SERVICE_NOT_SUPPORTED_IN_ACTIVE_SESSION);
        d = tg_download_free(d);
        assert_no_mixed(&t);
        assert_flashed(&t, &t.new); /* still the image of the first flash */
        server_stop(&sv);
        tester_done(&t);
}

/* A download that breaks (the server closes mid-body) or never starts
 * (404): a named error at transfer-data, no bank valid with half an image,
 * the old image runs on, and a retry with a good download works. */
static void test_download_broken(void) {
        _cleanup_(tg_http_freep) TgHttp *http = NULL;
        TgDownload *d = NULL;
        Server sv;
        Tester t;
        TgFlashError e;
        char v[64];

        tester_init_sized(&t, true, STREAM_IMAGE, STREAM_BANK, 0, 0);
        assert_ok(tg_http_new(t.e, &http));
        server_start(&sv, t.e, &t.new);

        sv.cut_at = STREAM_IMAGE * 2 / 5;
        e = flash_download(&t, http, &sv, &t.new, 0, &d);
        fprintf(stderr, "  cut: %s (download: %s)\n", e.message, tg_download_message(d));
        assert_eq(e.step, TG_FLASH_STEP_TRANSFER_DATA);
        assert_eq(e.error, -EIO);
        assert_eq(tg_download_error(d), -EIO);
        assert_se(tg_download_message(d)[0]);
        assert_le(tg_download_received(d), (uint64_t) sv.cut_at);
        d = tg_download_free(d);
        assert_no_mixed(&t);
        read_version(&t, v, sizeof v);
        assert_streq(v, "1.0.0");

        sv.cut_at = 0;
        sv.status = 404;
        e = flash_download(&t, http, &sv, &t.new, 0, &d);
        fprintf(stderr, "  404: %s (download: %s)\n", e.message, tg_download_message(d));
        assert_eq(e.step, TG_FLASH_STEP_TRANSFER_DATA);
        assert_eq(e.error, -EPROTO);
        assert_streq(tg_download_message(d), "HTTP 404");
        d = tg_download_free(d);
        assert_no_mixed(&t);

        sv.status = 200;
        e = flash_download(&t, http, &sv, &t.new, 0, &d);
        assert_eq(e.error, 0);
        d = tg_download_free(d);
        assert_flashed(&t, &t.new);
        assert_eq(sv.requests, 3);
        server_stop(&sv);
        tester_done(&t);
}

/* tg_download_read()'s contract, on a small image that has come whole:
 * reads in order, the same offset again, and the named errors for the rest. */
static void test_download_read(void) {
        _cleanup_(tg_http_freep) TgHttp *http = NULL;
        _cleanup_(tg_download_freep) TgDownload *d = NULL;
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        uint8_t buf[WINDOW];
        Server sv;
        Image img;
        CURL *easy = curl_easy_init();
        char url[64];

        assert_se(easy);
        image_make(&img, "3.0.0", 3, 40000);
        assert_ok(sd_event_new(&e));
        assert_ok(tg_http_new(e, &http));
        server_start(&sv, e, &img);
        snprintf(url, sizeof url, "http://127.0.0.1:%u/image.bin", (unsigned) sv.port);
        curl_easy_setopt(easy, CURLOPT_URL, url);
        assert_se(tg_download_start(http, NULL, WINDOW, NULL, NULL, &d) == -EINVAL);
        assert_ok(tg_download_start(http, easy, WINDOW, NULL, NULL, &d));
        assert_eq(tg_download_size(d), -1);
        assert_se(tg_download_read(d, 0, buf, 1000) == -EAGAIN);
        while (!tg_download_finished(d))
                assert_se(sd_event_run(e, UINT64_MAX) >= 0);
        assert_eq(tg_download_error(d), 0);
        assert_eq(tg_download_size(d), 40000);

        assert_eq(tg_download_read(d, 0, buf, 1000), 1000);
        assert_memeq(buf, img.data, 1000);
        assert_eq(tg_download_read(d, 1000, buf, 1000), 1000);
        assert_eq(tg_download_read(d, 1000, buf, 1000), 1000); /* again: a retried block */
        assert_memeq(buf, img.data + 1000, 1000);
        assert_se(tg_download_read(d, 500, buf, 10) == -ESPIPE);     /* released already */
        assert_se(tg_download_read(d, 40001, buf, 10) == -ESPIPE);   /* beyond what came */
        assert_eq(tg_download_read(d, 39000, buf, 1000), 1000);
        assert_memeq(buf, img.data + 39000, 1000);
        assert_se(tg_download_read(d, 39500, buf, 1000) == -ENODATA); /* past the end */
        server_stop(&sv);
        free(img.data);
}

TG_TEST_MAIN(TEST(flash_ab), TEST(flash_single), TEST(faults), TEST(retry), TEST(source_stall),
             TEST(download), TEST(download_broken), TEST(download_read))
