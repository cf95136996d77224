/* SPDX-License-Identifier: MIT */
/*
 * lib/tg-flash against the simulated ECU (tools/ecu-sim/ecu-model), in
 * process: a test-only TgDiagOps hands each request to ecu_model_request()
 * from an sd-event defer source and delivers the model's responses (0x78s
 * and delayed finals from ecu_model_poll() on a timer) through
 * tg_diag_channel_response(). No network.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ecu-model.h"
#include "tg-diag.h"
#include "tg-flash.h"
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
        uint8_t data[IMAGE_SIZE];
        size_t size;
        uint8_t sha[32];
        char version[16];
        unsigned reads;
} Image;

static void image_make(Image *img, const char *version, uint8_t salt) {
        int l = snprintf((char *) img->data, sizeof img->data, "TGV:%s\n", version);

        for (size_t i = (size_t) l; i < sizeof img->data; i++)
                img->data[i] = (uint8_t) (i * 31 + salt);
        img->size = sizeof img->data;
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

static void tester_init(Tester *t, bool ab) {
        EcuModelConfig c = {
                .ab_banks = ab,
                .bank_size = BANK_SIZE,
                .memory_address = MEM_ADDR,
                .part_number = "TG-TEST",
                .erase_time_ms = 20,
                .max_block_length = MAX_BLOCK,
                .pending_interval_ms = 5,
                .p2_star_ms = 500,
                .prng_seed = 42,
        };

        *t = (Tester) { .ab = ab };
        image_make(&t->old, "1.0.0", 1);
        image_make(&t->new, "2.0.0", 2);
        c.initial_image = t->old.data;
        c.initial_image_len = t->old.size;
        c.initial_version = t->old.version;
        t->m = ecu_model_new(&c);
        assert_se(t->m);
        assert_ok(sd_event_default(&t->e));
        t->sim = sim_new(t->e, t->m);
}

static void tester_done(Tester *t) {
        tg_diag_free(&t->sim->ch);
        ecu_model_free(t->m);
        sd_event_unref(t->e);
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

TG_TEST_MAIN(TEST(flash_ab), TEST(flash_single), TEST(faults), TEST(retry))
