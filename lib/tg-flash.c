/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg-flash.h"

#define REQ_SIZE 128
#define VERSION_MAX 64

struct TgFlash {
        TgDiagChannel *ch;
        uint16_t target;
        TgFlashPlan plan;
        char version[VERSION_MAX];
        const TgFlashCallbacks *cb;
        void *userdata;
        bool rollback;

        TgFlashStep step;
        unsigned retries;
        bool answered;          /* a response arrived in this run */
        sd_event_source *retry_timer;
        bool in_flight;

        uint8_t req[REQ_SIZE];
        size_t req_len;

        /* the download */
        uint8_t *block;                 /* 2 + block_size bytes: 36 bsc data… */
        size_t block_size;
        size_t block_len;               /* data bytes in the block in flight */
        uint64_t offset;                /* image bytes acknowledged */
        uint8_t bsc;
        uint64_t progress_done;

        /* waiting for the image source (read said -EAGAIN) */
        bool waiting;
        bool keepalive_in_flight;
        bool resume_pending;            /* tg_flash_resume() during a keepalive */
        bool dropping;                  /* the request in flight is being cancelled: ignore its result */
        sd_event_source *keepalive_timer;
        sd_event_source *source_timer;
        sd_event_source *resume_defer;
        uint8_t keepalive_req[2];
};

static const char *const step_names[_TG_FLASH_STEP_MAX] = {
        [TG_FLASH_STEP_EXTENDED_SESSION] = "extended-session",
        [TG_FLASH_STEP_DTC_OFF] = "dtc-off",
        [TG_FLASH_STEP_COMM_OFF] = "comm-off",
        [TG_FLASH_STEP_PROGRAMMING_SESSION] = "programming-session",
        [TG_FLASH_STEP_SECURITY_SEED] = "security-seed",
        [TG_FLASH_STEP_SECURITY_KEY] = "security-key",
        [TG_FLASH_STEP_PRECONDITIONS] = "check-preconditions",
        [TG_FLASH_STEP_ERASE] = "erase",
        [TG_FLASH_STEP_REQUEST_DOWNLOAD] = "request-download",
        [TG_FLASH_STEP_TRANSFER_DATA] = "transfer-data",
        [TG_FLASH_STEP_TRANSFER_EXIT] = "transfer-exit",
        [TG_FLASH_STEP_CHECK_DEPENDENCIES] = "check-dependencies",
        [TG_FLASH_STEP_BANK_SWITCH] = "bank-switch",
        [TG_FLASH_STEP_RESET] = "ecu-reset",
        [TG_FLASH_STEP_DONE] = "done",
};

const char *tg_flash_step_to_string(TgFlashStep s) {
        if ((unsigned) s >= _TG_FLASH_STEP_MAX)
                return "unknown";
        return step_names[s];
}

static void on_response(TgDiagChannel *ch, const TgDiagResult *r, void *userdata);
static void run_step(TgFlash *f);
static void stop_waiting(TgFlash *f);

static void finish(TgFlash *f, int error, uint8_t nrc, const TgDiagResult *diag, const char *what) {
        TgFlashError e = {
                .error = error,
                .step = error == 0 ? TG_FLASH_STEP_DONE : f->step,
                .nrc = nrc,
        };

        if (diag) {
                e.diag = *diag;
                e.diag.data = NULL;
                e.diag.len = 0;
        }
        if (error == 0)
                snprintf(e.message, sizeof e.message, "done");
        else
                snprintf(e.message, sizeof e.message, "%s: %s", tg_flash_step_to_string(f->step), what);
        f->step = TG_FLASH_STEP_DONE;
        stop_waiting(f);
        free(f->block);
        f->block = NULL;
        if (f->cb && f->cb->finished)
                f->cb->finished(f, &e, f->userdata); /* may free f */
}

static void progress(TgFlash *f) {
        if (f->cb && f->cb->progress)
                f->cb->progress(f, f->progress_done, f->plan.size, tg_flash_step_to_string(f->step), f->userdata);
}

static void send_req(TgFlash *f, const uint8_t *req, size_t len) {
        int r;

        f->in_flight = true;
        r = tg_diag_request(f->ch, f->target, req, len, on_response, f);
        if (r < 0) {
                char what[96];

                f->in_flight = false;
                snprintf(what, sizeof what, "request failed: %s", strerror(-r));
                finish(f, r, 0, NULL, what);
        }
}

static bool step_enabled(TgFlash *f, TgFlashStep s) {
        switch (s) {
        case TG_FLASH_STEP_EXTENDED_SESSION:
                return f->plan.extended_session;
        case TG_FLASH_STEP_DTC_OFF:
                return f->plan.extended_session && f->plan.dtc_off;
        case TG_FLASH_STEP_COMM_OFF:
                return f->plan.extended_session && f->plan.comm_off;
        case TG_FLASH_STEP_SECURITY_SEED:
        case TG_FLASH_STEP_SECURITY_KEY:
                return f->plan.key_fn != NULL;
        case TG_FLASH_STEP_PRECONDITIONS:
        case TG_FLASH_STEP_ERASE:
        case TG_FLASH_STEP_REQUEST_DOWNLOAD:
        case TG_FLASH_STEP_TRANSFER_DATA:
        case TG_FLASH_STEP_TRANSFER_EXIT:
        case TG_FLASH_STEP_CHECK_DEPENDENCIES:
                return !f->rollback;
        case TG_FLASH_STEP_BANK_SWITCH:
                return f->plan.ab_banks;
        default:
                return true;
        }
}

static void next_step(TgFlash *f, TgFlashStep from) {
        TgFlashStep s = from + 1;

        while (s < TG_FLASH_STEP_DONE && !step_enabled(f, s))
                s++;
        f->step = s;
        f->retries = 0;
        if (s == TG_FLASH_STEP_TRANSFER_DATA && f->plan.size == 0)
                s = f->step = TG_FLASH_STEP_TRANSFER_EXIT;
        if (s == TG_FLASH_STEP_DONE) {
                f->progress_done = f->plan.size;
                progress(f);
                finish(f, 0, 0, NULL, NULL);
                return;
        }
        progress(f);
        run_step(f);
}

/* ---- waiting for the image source ---- */

static void stop_waiting(TgFlash *f) {
        f->waiting = false;
        f->resume_pending = false;
        f->keepalive_timer = sd_event_source_disable_unref(f->keepalive_timer);
        f->source_timer = sd_event_source_disable_unref(f->source_timer);
        f->resume_defer = sd_event_source_disable_unref(f->resume_defer);
}

static int on_keepalive(sd_event_source *s, uint64_t usec, void *userdata) {
        TgFlash *f = userdata;
        int r;

        (void) s;
        (void) usec;
        f->keepalive_timer = sd_event_source_disable_unref(f->keepalive_timer);
        if (!f->waiting || f->resume_defer || f->in_flight)
                return 0;
        r = tg_uds_encode_tester_present(f->keepalive_req, sizeof f->keepalive_req, true);
        if (r >= 0) {
                f->keepalive_in_flight = f->in_flight = true;
                r = tg_diag_request(f->ch, f->target, f->keepalive_req, (size_t) r, on_response, f);
        }
        if (r < 0) {
                char what[96];

                f->keepalive_in_flight = f->in_flight = false;
                snprintf(what, sizeof what, "tester-present while waiting for the image failed: %s", strerror(-r));
                finish(f, r, 0, NULL, what);
        }
        return 0;
}

static int arm_keepalive(TgFlash *f) {
        return sd_event_add_time_relative(f->ch->event, &f->keepalive_timer, CLOCK_MONOTONIC, f->plan.keepalive_usec,
                                          1000, on_keepalive, f);
}

static int on_source_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        TgFlash *f = userdata;
        char what[96];

        (void) s;
        (void) usec;
        f->source_timer = sd_event_source_disable_unref(f->source_timer);
        if (f->in_flight) { /* a keepalive: nothing to wait for any more */
                f->dropping = true;
                tg_diag_cancel(f->ch);
                f->dropping = false;
        }
        snprintf(what, sizeof what, "image source stalled at %llu of %llu bytes for %.1f s",
                 (unsigned long long) f->offset, (unsigned long long) f->plan.size,
                 (double) f->plan.source_timeout_usec / 1e6);
        finish(f, -ETIMEDOUT, 0, NULL, what);
        return 0;
}

static int arm_source_timer(TgFlash *f) {
        if (f->source_timer)
                return sd_event_source_set_time_relative(f->source_timer, f->plan.source_timeout_usec);
        return sd_event_add_time_relative(f->ch->event, &f->source_timer, CLOCK_MONOTONIC,
                                          f->plan.source_timeout_usec, 1000, on_source_timeout, f);
}

static void wait_for_source(TgFlash *f) {
        int r = 0;

        if (!f->waiting) {
                f->waiting = true;
                r = arm_source_timer(f);
        }
        if (r >= 0 && !f->keepalive_timer)
                r = arm_keepalive(f);
        if (r < 0)
                finish(f, r, 0, NULL, "cannot arm the timers to wait for the image");
}

static void send_block(TgFlash *f);

static int on_resume(sd_event_source *s, void *userdata) {
        TgFlash *f = userdata;

        (void) s;
        f->resume_defer = sd_event_source_disable_unref(f->resume_defer);
        if (!f->waiting || f->in_flight)
                return 0;
        /* -EAGAIN again waits anew (keepalive and stall clock from now);
         * nothing of f is touched after send_block(): it may have finished. */
        stop_waiting(f);
        send_block(f);
        return 0;
}

static int schedule_resume(TgFlash *f) {
        if (f->resume_defer) /* scheduled already */
                return 0;
        return sd_event_add_defer(f->ch->event, &f->resume_defer, on_resume, f);
}

void tg_flash_resume(TgFlash *f) {
        if (!f || !f->waiting)
                return;
        /* Bytes came: the stall clock starts again. Out of memory here
         * leaves the wait as it was; the stall timer ends it at worst. */
        (void) arm_source_timer(f);
        if (f->keepalive_in_flight)
                f->resume_pending = true;
        else
                (void) schedule_resume(f);
}

static void keepalive_done(TgFlash *f, const TgDiagResult *res) {
        TgUdsError err = {};
        char what[160], ebuf[128];
        int r;

        f->keepalive_in_flight = false;
        if (res->error != TG_DIAG_OK) {
                snprintf(what, sizeof what, "transport: %s (tester-present while waiting for the image)",
                         tg_diag_result_format(res, ebuf, sizeof ebuf));
                finish(f, -EIO, 0, res, what);
                return;
        }
        if (res->len > 0) { /* suppressed, yet answered: a negative response, or a positive one */
                r = tg_uds_parse_tester_present(res->data, res->len, &err);
                if (r < 0) {
                        if (r == -EREMOTEIO)
                                snprintf(what, sizeof what, "tester-present: negative response 0x%02x %s", err.nrc,
                                         tg_uds_nrc_to_string(err.nrc));
                        else
                                snprintf(what, sizeof what, "tester-present: %s",
                                         tg_uds_error_format(&err, ebuf, sizeof ebuf));
                        finish(f, r, err.nrc, res, what);
                        return;
                }
        }
        if (f->resume_pending) {
                f->resume_pending = false;
                r = schedule_resume(f);
        } else
                r = arm_keepalive(f);
        if (r < 0)
                finish(f, r, 0, NULL, "cannot arm the timers to wait for the image");
}

static void send_block(TgFlash *f) {
        uint64_t left = f->plan.size - f->offset;
        size_t len = left < f->block_size ? (size_t) left : f->block_size;
        ssize_t n;
        int r;

        n = f->plan.read(f->plan.read_userdata, f->offset, f->block + 2, len);
        if (n == -EAGAIN) {
                wait_for_source(f);
                return;
        }
        if (n < 0 || (size_t) n != len) {
                char what[96];

                snprintf(what, sizeof what, "image read at %llu failed: %s", (unsigned long long) f->offset,
                         n < 0 ? strerror((int) -n) : "short read");
                finish(f, n < 0 ? (int) n : -EIO, 0, NULL, what);
                return;
        }
        f->block_len = len;
        r = tg_uds_encode_transfer_data(f->block, 2 + f->block_size, f->bsc, f->block + 2, len);
        if (r < 0) {
                finish(f, r, 0, NULL, "cannot encode TransferData");
                return;
        }
        send_req(f, f->block, (size_t) r);
}

static void run_step(TgFlash *f) {
        uint8_t *b = f->req;
        int r = -EINVAL;

        switch (f->step) {
        case TG_FLASH_STEP_EXTENDED_SESSION:
                r = tg_uds_encode_session_control(b, REQ_SIZE, 0x03, false);
                break;
        case TG_FLASH_STEP_DTC_OFF:
                r = tg_uds_encode_control_dtc_setting(b, REQ_SIZE, TG_UDS_DTC_SETTING_OFF, NULL, 0, false);
                break;
        case TG_FLASH_STEP_COMM_OFF:
                r = tg_uds_encode_communication_control(b, REQ_SIZE, TG_UDS_COMM_DISABLE_RX_TX,
                                                        TG_UDS_COMM_TYPE_NORMAL_AND_NM, 0, false);
                break;
        case TG_FLASH_STEP_PROGRAMMING_SESSION:
                r = tg_uds_encode_session_control(b, REQ_SIZE, 0x02, false);
                break;
        case TG_FLASH_STEP_SECURITY_SEED:
                r = tg_uds_encode_request_seed(b, REQ_SIZE, f->plan.security_level, false);
                break;
        case TG_FLASH_STEP_SECURITY_KEY:
                /* built from the seed in on_response() */
                send_req(f, f->req, f->req_len);
                return;
        case TG_FLASH_STEP_PRECONDITIONS:
                r = tg_uds_encode_routine_control(b, REQ_SIZE, TG_UDS_ROUTINE_START,
                                                  TG_UDS_RID_CHECK_PRECONDITIONS, NULL, 0, false);
                break;
        case TG_FLASH_STEP_ERASE:
                r = tg_uds_encode_erase_memory(b, REQ_SIZE, f->plan.memory_address, f->plan.size, 4, 4);
                break;
        case TG_FLASH_STEP_REQUEST_DOWNLOAD:
                r = tg_uds_encode_request_download(b, REQ_SIZE, 0x00, f->plan.memory_address, f->plan.size, 4, 4);
                break;
        case TG_FLASH_STEP_TRANSFER_DATA:
                send_block(f);
                return;
        case TG_FLASH_STEP_TRANSFER_EXIT:
                r = tg_uds_encode_request_transfer_exit(b, REQ_SIZE, NULL, 0);
                break;
        case TG_FLASH_STEP_CHECK_DEPENDENCIES: {
                uint8_t opt[32 + VERSION_MAX];
                size_t vl = strlen(f->version);

                memcpy(opt, f->plan.sha256, 32);
                memcpy(opt + 32, f->version, vl);
                r = tg_uds_encode_routine_control(b, REQ_SIZE, TG_UDS_ROUTINE_START,
                                                  TG_UDS_RID_CHECK_PROGRAMMING_DEPENDENCIES, opt, 32 + vl, false);
                break;
        }
        case TG_FLASH_STEP_BANK_SWITCH: {
                const uint8_t back = 0x01;

                r = tg_uds_encode_routine_control(b, REQ_SIZE, TG_UDS_ROUTINE_START, TG_UDS_RID_TOLLGATE_BANK_SWITCH,
                                                  f->rollback ? &back : NULL, f->rollback ? 1 : 0, false);
                break;
        }
        case TG_FLASH_STEP_RESET:
                r = tg_uds_encode_ecu_reset(b, REQ_SIZE, 0x01, false);
                break;
        default:
                break;
        }
        if (r < 0) {
                finish(f, r, 0, NULL, "cannot encode the request");
                return;
        }
        f->req_len = (size_t) r;
        send_req(f, f->req, f->req_len);
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        TgFlash *f = userdata;

        (void) s;
        (void) usec;
        f->retry_timer = sd_event_source_disable_unref(f->retry_timer);
        if (f->step == TG_FLASH_STEP_TRANSFER_DATA)
                send_req(f, f->block, 2 + f->block_len); /* same counter, same data */
        else
                run_step(f);
        return 0;
}

static bool retry(TgFlash *f, uint8_t nrc) {
        int r;

        if (nrc != TG_UDS_NRC_BUSY_REPEAT_REQUEST && nrc != TG_UDS_NRC_REQUIRED_TIME_DELAY_NOT_EXPIRED)
                return false;
        if (f->retries >= f->plan.max_retries)
                return false;
        f->retries++;
        if (f->step == TG_FLASH_STEP_SECURITY_KEY)
                f->step = TG_FLASH_STEP_SECURITY_SEED; /* a new seed for a new key */
        r = sd_event_add_time_relative(f->ch->event, &f->retry_timer, CLOCK_MONOTONIC, f->plan.retry_delay_usec, 1,
                                       on_retry, f);
        return r >= 0;
}

static void on_response(TgDiagChannel *ch, const TgDiagResult *res, void *userdata) {
        TgFlash *f = userdata;
        TgUdsError err = {};
        char what[160], ebuf[128];
        const uint8_t *d, *p;
        size_t n, pn;
        int r;

        (void) ch;
        f->in_flight = false;
        if (f->dropping) {
                f->keepalive_in_flight = false;
                return;
        }
        if (f->keepalive_in_flight) {
                keepalive_done(f, res);
                return;
        }
        if (res->error == TG_DIAG_CONNECTION_LOST && !f->answered && f->retries < f->plan.max_retries) {
                /* The connection died before the ECU said anything in this
                 * run: typically the reset that ended the previous flash
                 * closed it while it looked idle. The next request
                 * reconnects. */
                f->retries++;
                if (sd_event_add_time_relative(f->ch->event, &f->retry_timer, CLOCK_MONOTONIC,
                                               f->plan.retry_delay_usec, 1, on_retry, f) >= 0)
                        return;
        }
        if (res->error == TG_DIAG_OK)
                f->answered = true;
        if (res->error != TG_DIAG_OK) {
                snprintf(what, sizeof what, "transport: %s", tg_diag_result_format(res, ebuf, sizeof ebuf));
                finish(f, -EIO, 0, res, what);
                return;
        }
        d = res->data;
        n = res->len;

        switch (f->step) {
        case TG_FLASH_STEP_EXTENDED_SESSION:
        case TG_FLASH_STEP_PROGRAMMING_SESSION: {
                TgUdsSessionTiming st;

                r = tg_uds_parse_session_control(d, n, f->step == TG_FLASH_STEP_PROGRAMMING_SESSION ? 0x02 : 0x03,
                                                 &st, &err);
                if (r >= 0)
                        tg_uds_timing_set_session(&f->ch->timing, &st);
                break;
        }
        case TG_FLASH_STEP_DTC_OFF:
                r = tg_uds_parse_control_dtc_setting(d, n, TG_UDS_DTC_SETTING_OFF, &err);
                break;
        case TG_FLASH_STEP_COMM_OFF:
                r = tg_uds_parse_communication_control(d, n, TG_UDS_COMM_DISABLE_RX_TX, &err);
                break;
        case TG_FLASH_STEP_SECURITY_SEED:
                r = tg_uds_parse_request_seed(d, n, f->plan.security_level, &p, &pn, &err);
                if (r < 0)
                        break;
                if (tg_uds_seed_is_zero(p, pn)) {
                        next_step(f, TG_FLASH_STEP_SECURITY_KEY); /* unlocked already */
                        return;
                }
                r = tg_uds_encode_send_key_computed(f->req, REQ_SIZE, f->plan.security_level, p, pn, f->plan.key_fn,
                                                    f->plan.key_userdata, false);
                if (r < 0) {
                        snprintf(what, sizeof what, "key computation failed: %s", strerror(-r));
                        finish(f, r, 0, NULL, what);
                        return;
                }
                f->req_len = (size_t) r;
                break;
        case TG_FLASH_STEP_SECURITY_KEY:
                r = tg_uds_parse_send_key(d, n, f->plan.security_level, &err);
                break;
        case TG_FLASH_STEP_PRECONDITIONS:
                r = tg_uds_parse_routine_control(d, n, TG_UDS_ROUTINE_START, TG_UDS_RID_CHECK_PRECONDITIONS, &p, &pn,
                                                 &err);
                break;
        case TG_FLASH_STEP_ERASE:
                r = tg_uds_parse_routine_control(d, n, TG_UDS_ROUTINE_START, TG_UDS_RID_ERASE_MEMORY, &p, &pn, &err);
                break;
        case TG_FLASH_STEP_CHECK_DEPENDENCIES:
                r = tg_uds_parse_routine_control(d, n, TG_UDS_ROUTINE_START,
                                                 TG_UDS_RID_CHECK_PROGRAMMING_DEPENDENCIES, &p, &pn, &err);
                break;
        case TG_FLASH_STEP_BANK_SWITCH:
                r = tg_uds_parse_routine_control(d, n, TG_UDS_ROUTINE_START, TG_UDS_RID_TOLLGATE_BANK_SWITCH, &p, &pn,
                                                 &err);
                break;
        case TG_FLASH_STEP_REQUEST_DOWNLOAD: {
                uint64_t max_block;

                r = tg_uds_parse_request_download(d, n, &max_block, &err);
                if (r < 0)
                        break;
                f->block_size = tg_uds_transfer_data_max(max_block, f->plan.transport_max);
                if (f->plan.max_block_data > 0 && f->block_size > f->plan.max_block_data)
                        f->block_size = f->plan.max_block_data;
                if (f->block_size == 0) {
                        finish(f, -EBADMSG, 0, NULL, "maxNumberOfBlockLength leaves no room for data");
                        return;
                }
                free(f->block);
                f->block = malloc(2 + f->block_size);
                if (!f->block) {
                        finish(f, -ENOMEM, 0, NULL, "out of memory for the block buffer");
                        return;
                }
                f->offset = 0;
                f->bsc = TG_UDS_BSC_FIRST;
                break;
        }
        case TG_FLASH_STEP_TRANSFER_DATA:
                r = tg_uds_parse_transfer_data(d, n, f->bsc, &p, &pn, &err);
                if (r < 0)
                        break;
                f->offset += f->block_len;
                f->progress_done = f->offset;
                f->retries = 0;
                progress(f);
                if (f->offset < f->plan.size) {
                        f->bsc = tg_uds_bsc_next(f->bsc);
                        send_block(f);
                        return;
                }
                break;
        case TG_FLASH_STEP_TRANSFER_EXIT:
                r = tg_uds_parse_request_transfer_exit(d, n, &p, &pn, &err);
                break;
        case TG_FLASH_STEP_RESET:
                r = tg_uds_parse_ecu_reset(d, n, 0x01, NULL, &err);
                break;
        default:
                r = -EINVAL;
                err.reason[0] = 0;
                break;
        }

        if (r == -EREMOTEIO) {
                if (retry(f, err.nrc))
                        return;
                snprintf(what, sizeof what, "negative response 0x%02x %s", err.nrc, tg_uds_nrc_to_string(err.nrc));
                finish(f, r, err.nrc, res, what);
                return;
        }
        if (r < 0) {
                snprintf(what, sizeof what, "%s", tg_uds_error_format(&err, ebuf, sizeof ebuf));
                finish(f, r, 0, res, what);
                return;
        }
        next_step(f, f->step);
}

static int flash_new(TgDiagChannel *ch, uint16_t target, const TgFlashPlan *plan, const TgFlashCallbacks *cb,
                     void *userdata, bool rollback, TgFlash **ret) {
        TgFlash *f;

        if (!ch || !plan || !ret)
                return -EINVAL;
        if (!rollback && (!plan->read || plan->size > UINT32_MAX || plan->memory_address > UINT32_MAX))
                return -EINVAL;
        if (plan->version && strlen(plan->version) >= VERSION_MAX)
                return -EINVAL;
        if (ch->busy)
                return -EBUSY;
        f = calloc(1, sizeof *f);
        if (!f)
                return -ENOMEM;
        f->ch = ch;
        f->target = target;
        f->plan = *plan;
        if (plan->version)
                strcpy(f->version, plan->version);
        f->plan.version = f->version;
        if (f->plan.security_level == 0)
                f->plan.security_level = 0x01;
        if (f->plan.max_retries == 0)
                f->plan.max_retries = 10;
        if (f->plan.retry_delay_usec == 0)
                f->plan.retry_delay_usec = 100 * 1000;
        if (f->plan.keepalive_usec == 0)
                f->plan.keepalive_usec = 2 * 1000 * 1000;
        if (f->plan.source_timeout_usec == 0)
                f->plan.source_timeout_usec = 60 * 1000 * 1000;
        if (rollback)
                f->plan.size = 0;
        f->cb = cb;
        f->userdata = userdata;
        f->rollback = rollback;
        *ret = f;
        /* first step: the callbacks run from the event loop only (tg_diag_request never calls back) */
        f->step = (TgFlashStep) -1;
        {
                TgFlashStep s = 0;

                while (s < TG_FLASH_STEP_DONE && !step_enabled(f, s))
                        s++;
                f->step = s;
        }
        progress(f);
        run_step(f);
        return 0;
}

int tg_flash_start(TgDiagChannel *ch, uint16_t target, const TgFlashPlan *plan, const TgFlashCallbacks *cb,
                   void *userdata, TgFlash **ret) {
        return flash_new(ch, target, plan, cb, userdata, false, ret);
}

int tg_flash_rollback(TgDiagChannel *ch, uint16_t target, const TgFlashPlan *plan, const TgFlashCallbacks *cb,
                      void *userdata, TgFlash **ret) {
        if (!plan)
                return -EINVAL;
        return flash_new(ch, target, plan, cb, userdata, plan->ab_banks, ret);
}

TgFlash *tg_flash_free(TgFlash *f) {
        if (!f)
                return NULL;
        f->retry_timer = sd_event_source_disable_unref(f->retry_timer);
        stop_waiting(f);
        if (f->in_flight && f->ch->callback == on_response && f->ch->userdata == f) {
                f->cb = NULL; /* the cancel calls on_response: report nothing */
                tg_diag_cancel(f->ch);
        }
        free(f->block);
        free(f);
        return NULL;
}
