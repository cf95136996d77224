/* SPDX-License-Identifier: MIT */
/*
 * The simulated ECU's UDS server core; see ecu-model.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ecu-model.h"
#include "tg-keyproto.h"
#include "tg-macro.h"
#include "tg-uds.h"

#define RESP_MAX 512
#define zero(x) memset(&(x), 0, sizeof(x))
#define SEED_MAX 16

typedef struct Bank {
        uint8_t *data;
        size_t img_start, img_end;  /* the image's bytes: [img_start, img_end) */
        bool valid;
        bool erased;                /* erased since the last valid image: may be written */
        bool started;               /* a download after the erase set img_start */
        char version[ECU_MODEL_VERSION_MAX + 1];
} Bank;

typedef struct Pending {
        bool active;
        uint8_t sid;
        uint64_t ready_at;          /* the final response is due (and storm_left == 0) */
        uint64_t next_pending_at;   /* the next 0x78; USEC_INFINITY: none */
        unsigned storm_left;        /* 0x78s still owed before the final one */
        bool sent_pending;          /* a 0x78 went out: the final one is never suppressed */
        bool suppress;              /* positive final response suppressed (no 0x78 sent) */
        uint8_t final[RESP_MAX];
        size_t final_len;
} Pending;

struct EcuModel {
        EcuModelConfig c;
        char part_number[64], serial[64], vin[64];
        bool has_vin;
        uint64_t prng;

        Bank bank[2];
        unsigned n_banks;
        unsigned active;
        bool switch_pending;
        unsigned switch_target;

        /* volatile state */
        uint8_t session;
        uint64_t last_activity;
        bool unlocked;
        bool seed_valid;
        uint8_t seed[SEED_MAX];
        uint8_t comm_control;
        bool dtc_on;

        /* kept over resets (anti brute force) */
        unsigned attempts;
        uint64_t lockout_until;

        /* download */
        bool transfer;
        unsigned target;            /* the bank written */
        size_t xfer_pos, xfer_end;  /* offsets in the bank */
        uint8_t bsc_last;
        size_t last_block_len;
        unsigned blocks;            /* accepted since RequestDownload */

        Pending pending;
        /* A 0xFF01 that passed but whose answer is still owed (check_speed):
         * the bank becomes valid when the final response goes out, not
         * before: a power loss during the check leaves it invalid. */
        struct {
                bool due;
                unsigned bank;
                char version[ECU_MODEL_VERSION_MAX + 1];
        } check;
        EcuModelFaults faults;
        bool precond_ok;
        bool reset_flag;
};

/* ---- helpers ---- */

static uint64_t prng_next(EcuModel *m) {
        /* xorshift64*: deterministic for a given prng_seed */
        uint64_t x = m->prng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        m->prng = x;
        return x * UINT64_C(2685821657736338717);
}

static uint64_t add_sat(uint64_t a, uint64_t b) {
        return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static unsigned target_bank(const EcuModel *m) {
        return m->n_banks == 2 ? 1 - m->active : 0;
}

static void copy_str(char *dst, size_t size, const char *src) {
        snprintf(dst, size, "%s", src ? src : "");
}

static void bank_invalidate(Bank *b) {
        b->valid = false;
        b->version[0] = 0;
}

static void reset_volatile(EcuModel *m, uint64_t now) {
        m->session = TG_UDS_SESSION_DEFAULT;
        m->last_activity = now;
        m->unlocked = false;
        m->seed_valid = false;
        m->comm_control = TG_UDS_COMM_ENABLE_RX_TX;
        m->dtc_on = true;
        m->transfer = false;
        zero(m->pending);
        zero(m->check);
}

static void do_reset(EcuModel *m, uint64_t now) {
        if (m->switch_pending && m->bank[m->switch_target].valid)
                m->active = m->switch_target;
        m->switch_pending = false;
        reset_volatile(m, now);
        m->reset_flag = true;
}

static int nrc(uint8_t *resp, size_t size, size_t *len, uint8_t sid, uint8_t code) {
        int r = tg_uds_encode_negative_response(resp, size, sid, code);
        if (r < 0)
                return r;
        *len = (size_t) r;
        return 1;
}

/* Outcome of one service handler: 1 respond (resp filled), 0 no response,
 * 2 respond later with resp as the final response after delay_usec. */
#define LATER 2

static int put(uint8_t *resp, size_t size, size_t *len, const uint8_t *b, size_t n) {
        if (n > size)
                return -ENOBUFS;
        memcpy(resp, b, n);
        *len = n;
        return 1;
}

/* ---- services ---- */

static int svc_session(EcuModel *m, const uint8_t *req, size_t n, uint8_t *resp, size_t size, size_t *len) {
        if (n != 2)
                return nrc(resp, size, len, req[0], 0x13);
        uint8_t s = req[1] & 0x7F;
        if (s != TG_UDS_SESSION_DEFAULT && s != TG_UDS_SESSION_PROGRAMMING && s != TG_UDS_SESSION_EXTENDED)
                return nrc(resp, size, len, req[0], TG_UDS_NRC_SUB_FUNCTION_NOT_SUPPORTED);
        if (s == TG_UDS_SESSION_PROGRAMMING && m->session == TG_UDS_SESSION_DEFAULT)
                return nrc(resp, size, len, req[0], TG_UDS_NRC_CONDITIONS_NOT_CORRECT);

        /* ISO 14229-1 9.2: every change of session locks the server again,
         * except a change to the same non-default session */
        if (s != m->session || s == TG_UDS_SESSION_DEFAULT) {
                m->unlocked = false;
                m->seed_valid = false;
                m->transfer = false; /* an open download ends with the session */
        }
        if (s == TG_UDS_SESSION_DEFAULT) {
                m->comm_control = TG_UDS_COMM_ENABLE_RX_TX;
                m->dtc_on = true;
                m->transfer = false;
        }
        m->session = s;

        TgUdsSessionTiming t = { .p2_ms = m->c.p2_ms, .p2_star_ms = m->c.p2_star_ms };
        int r = tg_uds_encode_session_control_response(resp, size, s, &t);
        if (r < 0)
                return r;
        *len = (size_t) r;
        return 1;
}

static int svc_reset(EcuModel *m, const uint8_t *req, size_t n, uint64_t now, uint8_t *resp, size_t size,
                     size_t *len) {
        if (n != 2)
                return nrc(resp, size, len, req[0], 0x13);
        uint8_t t = req[1] & 0x7F;
        if (t != TG_UDS_RESET_HARD && t != TG_UDS_RESET_KEY_OFF_ON && t != TG_UDS_RESET_SOFT)
                return nrc(resp, size, len, req[0], TG_UDS_NRC_SUB_FUNCTION_NOT_SUPPORTED);
        int r = put(resp, size, len, (const uint8_t[]) { 0x51, t }, 2);
        if (r < 0)
                return r;
        do_reset(m, now);
        return 1;
}

static int append_did(uint8_t *resp, size_t size, size_t *len, uint16_t did, const char *s) {
        size_t l = strlen(s);
        if (*len + 2 + l > size)
                return -ENOBUFS;
        resp[(*len)++] = (uint8_t) (did >> 8);
        resp[(*len)++] = (uint8_t) did;
        memcpy(resp + *len, s, l);
        *len += l;
        return 0;
}

static int svc_read_data(EcuModel *m, const uint8_t *req, size_t n, uint8_t *resp, size_t size, size_t *len) {
        if (n < 3 || (n - 1) % 2 != 0)
                return nrc(resp, size, len, req[0], 0x13);
        if (size < 1)
                return -ENOBUFS;
        resp[0] = 0x62;
        *len = 1;
        unsigned found = 0;
        for (size_t i = 1; i + 1 < n; i += 2) {
                uint16_t did = (uint16_t) (req[i] << 8 | req[i + 1]);
                const char *s = NULL;
                switch (did) {
                case TG_UDS_DID_SPARE_PART_NUMBER:
                        s = m->part_number;
                        break;
                case TG_UDS_DID_SOFTWARE_VERSION:
                        s = m->bank[m->active].version;
                        break;
                case TG_UDS_DID_SERIAL_NUMBER:
                        s = m->serial;
                        break;
                case TG_UDS_DID_VIN:
                        if (m->has_vin)
                                s = m->vin;
                        break;
                }
                if (!s)
                        continue;
                int r = append_did(resp, size, len, did, s);
                if (r < 0)
                        return r;
                found++;
        }
        if (found == 0)
                return nrc(resp, size, len, req[0], TG_UDS_NRC_REQUEST_OUT_OF_RANGE);
        return 1;
}

static int svc_security(EcuModel *m, const uint8_t *req, size_t n, uint64_t now, uint8_t *resp, size_t size,
                        size_t *len) {
        if (n < 2)
                return nrc(resp, size, len, req[0], 0x13);
        uint8_t sub = req[1] & 0x7F;
        uint8_t level = m->c.security_level;
        if (sub != level && sub != level + 1)
                return nrc(resp, size, len, req[0], TG_UDS_NRC_SUB_FUNCTION_NOT_SUPPORTED);
        if (m->session == TG_UDS_SESSION_DEFAULT)
                return nrc(resp, size, len, req[0], TG_UDS_NRC_SERVICE_NOT_SUPPORTED_IN_ACTIVE_SESSION);
        if (now < m->lockout_until)
                return nrc(resp, size, len, req[0], TG_UDS_NRC_REQUIRED_TIME_DELAY_NOT_EXPIRED);

        if (sub == level) {
                if (n != 2)
                        return nrc(resp, size, len, req[0], 0x13);
                size_t sl = m->c.seed_len;
                if (2 + sl > size)
                        return -ENOBUFS;
                resp[0] = 0x67;
                resp[1] = sub;
                if (m->unlocked)
                        memset(resp + 2, 0, sl);
                else {
                        do {
                                for (size_t i = 0; i < sl; i++)
                                        m->seed[i] = (uint8_t) (prng_next(m) >> 56);
                        } while (tg_uds_seed_is_zero(m->seed, sl));
                        memcpy(resp + 2, m->seed, sl);
                        m->seed_valid = true;
                }
                *len = 2 + sl;
                return 1;
        }

        /* sendKey */
        if (!m->seed_valid)
                return nrc(resp, size, len, req[0], TG_UDS_NRC_REQUEST_SEQUENCE_ERROR);
        m->seed_valid = false; /* one key per seed */
        uint8_t key[SEED_MAX];
        size_t key_len = sizeof key;
        if (tg_uds_key_demo(m->seed, m->c.seed_len, key, &key_len, NULL) < 0)
                return nrc(resp, size, len, req[0], TG_UDS_NRC_GENERAL_REJECT);
        if (n - 2 != key_len || memcmp(req + 2, key, key_len) != 0) {
                m->attempts++;
                if (m->attempts >= m->c.max_attempts) {
                        m->attempts = 0;
                        m->lockout_until = add_sat(now, (uint64_t) m->c.lockout_ms * USEC_PER_MSEC);
                        return nrc(resp, size, len, req[0], TG_UDS_NRC_EXCEEDED_NUMBER_OF_ATTEMPTS);
                }
                return nrc(resp, size, len, req[0], TG_UDS_NRC_INVALID_KEY);
        }
        m->attempts = 0;
        m->unlocked = true;
        return put(resp, size, len, (const uint8_t[]) { 0x67, sub }, 2);
}

static int svc_comm_control(EcuModel *m, const uint8_t *req, size_t n, uint8_t *resp, size_t size,
                            size_t *len) {
        if (n < 2)
                return nrc(resp, size, len, req[0], 0x13);
        uint8_t c = req[1] & 0x7F;
        if (c > TG_UDS_COMM_DISABLE_RX_TX)
                return nrc(resp, size, len, req[0], TG_UDS_NRC_SUB_FUNCTION_NOT_SUPPORTED);
        if (n != 3)
                return nrc(resp, size, len, req[0], 0x13);
        if ((req[2] & 0x03) == 0)
                return nrc(resp, size, len, req[0], TG_UDS_NRC_REQUEST_OUT_OF_RANGE);
        if (m->session == TG_UDS_SESSION_DEFAULT)
                return nrc(resp, size, len, req[0], TG_UDS_NRC_SERVICE_NOT_SUPPORTED_IN_ACTIVE_SESSION);
        m->comm_control = c;
        return put(resp, size, len, (const uint8_t[]) { 0x68, c }, 2);
}

static int svc_dtc_setting(EcuModel *m, const uint8_t *req, size_t n, uint8_t *resp, size_t size, size_t *len) {
        if (n < 2)
                return nrc(resp, size, len, req[0], 0x13);
        uint8_t t = req[1] & 0x7F;
        if (t != TG_UDS_DTC_SETTING_ON && t != TG_UDS_DTC_SETTING_OFF)
                return nrc(resp, size, len, req[0], TG_UDS_NRC_SUB_FUNCTION_NOT_SUPPORTED);
        if (m->session == TG_UDS_SESSION_DEFAULT)
                return nrc(resp, size, len, req[0], TG_UDS_NRC_SERVICE_NOT_SUPPORTED_IN_ACTIVE_SESSION);
        m->dtc_on = t == TG_UDS_DTC_SETTING_ON;
        return put(resp, size, len, (const uint8_t[]) { 0xC5, t }, 2);
}

static int svc_tester_present(const uint8_t *req, size_t n, uint8_t *resp, size_t size, size_t *len) {
        if (n != 2)
                return nrc(resp, size, len, req[0], 0x13);
        if ((req[1] & 0x7F) != 0)
                return nrc(resp, size, len, req[0], TG_UDS_NRC_SUB_FUNCTION_NOT_SUPPORTED);
        return put(resp, size, len, (const uint8_t[]) { 0x7E, 0x00 }, 2);
}

/* ALFID address size at p[0…n): exactly. */
static int parse_alfid(const uint8_t *p, size_t n, uint64_t *addr, uint64_t *sz) {
        if (n < 1)
                return -EBADMSG;
        unsigned al = p[0] & 0x0F, ll = p[0] >> 4;
        if (al < 1 || al > 8 || ll < 1 || ll > 8 || n != 1 + al + ll)
                return -EBADMSG;
        uint64_t a = 0, s = 0;
        for (unsigned i = 0; i < al; i++)
                a = a << 8 | p[1 + i];
        for (unsigned i = 0; i < ll; i++)
                s = s << 8 | p[1 + al + i];
        *addr = a;
        *sz = s;
        return 0;
}

/* [addr, addr + sz) inside the bank window: the offset, or -ERANGE. */
static int64_t window_offset(const EcuModel *m, uint64_t addr, uint64_t sz) {
        if (addr < m->c.memory_address || sz == 0)
                return -ERANGE;
        uint64_t off = addr - m->c.memory_address;
        if (off >= m->c.bank_size || sz > m->c.bank_size - off)
                return -ERANGE;
        return (int64_t) off;
}

static bool programming_ok(const EcuModel *m) {
        return m->session == TG_UDS_SESSION_PROGRAMMING;
}

/* ret: ECU_MODEL_VERSION_MAX + 1 bytes */
static void version_from_image(const Bank *b, char *ret) {
        const uint8_t *p = b->data + b->img_start;
        size_t n = b->img_end - b->img_start;
        if (n > 4 && memcmp(p, "TGV:", 4) == 0) {
                size_t i = 4;
                while (i < n && i - 4 < ECU_MODEL_VERSION_MAX && p[i] != '\n' && p[i] != 0)
                        i++;
                memcpy(ret, p + 4, i - 4);
                ret[i - 4] = 0;
        } else
                copy_str(ret, ECU_MODEL_VERSION_MAX + 1, "unknown");
}

/* How long 0xFF01 hashes n bytes at check_speed (µs; 0: instant). */
static uint64_t check_time(const EcuModel *m, size_t n) {
        uint64_t s = m->c.check_speed;
        if (s == 0)
                return 0;
        if (n > UINT64_MAX / USEC_PER_SEC)
                return (uint64_t) n / s * USEC_PER_SEC;
        return (uint64_t) n * USEC_PER_SEC / s;
}

/* The dependency check passed: the bank holds a valid image now. */
static void check_commit(EcuModel *m) {
        Bank *b = &m->bank[m->check.bank];
        memcpy(b->version, m->check.version, sizeof b->version);
        b->valid = true;
        b->erased = false; /* a new download needs a new erase */
        zero(m->check);
}

static int svc_routine(EcuModel *m, const uint8_t *req, size_t n, uint64_t *delay, uint8_t *resp, size_t size,
                       size_t *len) {
        if (n < 4)
                return nrc(resp, size, len, req[0], 0x13);
        uint8_t type = req[1] & 0x7F;
        uint16_t rid = (uint16_t) (req[2] << 8 | req[3]);
        const uint8_t *opt = req + 4;
        size_t opt_len = n - 4;
        uint8_t ok[6] = { 0x71, type, req[2], req[3] };

        if (rid != TG_UDS_RID_CHECK_PRECONDITIONS && rid != TG_UDS_RID_ERASE_MEMORY &&
            rid != TG_UDS_RID_CHECK_PROGRAMMING_DEPENDENCIES &&
            (rid != TG_UDS_RID_TOLLGATE_BANK_SWITCH || m->n_banks != 2))
                return nrc(resp, size, len, req[0], TG_UDS_NRC_REQUEST_OUT_OF_RANGE);
        if (m->session == TG_UDS_SESSION_DEFAULT)
                return nrc(resp, size, len, req[0], TG_UDS_NRC_SERVICE_NOT_SUPPORTED_IN_ACTIVE_SESSION);

        if (rid == TG_UDS_RID_TOLLGATE_BANK_SWITCH && type == TG_UDS_ROUTINE_RESULTS) {
                ok[4] = (uint8_t) m->active;
                return put(resp, size, len, ok, 5);
        }
        if (type != TG_UDS_ROUTINE_START)
                return nrc(resp, size, len, req[0], TG_UDS_NRC_SUB_FUNCTION_NOT_SUPPORTED);

        if (rid == TG_UDS_RID_CHECK_PRECONDITIONS) {
                if (opt_len != 0)
                        return nrc(resp, size, len, req[0], 0x13);
                if (!m->precond_ok)
                        return nrc(resp, size, len, req[0], TG_UDS_NRC_CONDITIONS_NOT_CORRECT);
                ok[4] = 0x00;
                return put(resp, size, len, ok, 5);
        }

        /* the flash routines: programming session, unlocked, no download open */
        if (!programming_ok(m))
                return nrc(resp, size, len, req[0], TG_UDS_NRC_CONDITIONS_NOT_CORRECT);
        if (!m->unlocked)
                return nrc(resp, size, len, req[0], TG_UDS_NRC_SECURITY_ACCESS_DENIED);
        if (m->transfer)
                return nrc(resp, size, len, req[0], TG_UDS_NRC_REQUEST_SEQUENCE_ERROR);

        unsigned t = target_bank(m);
        Bank *b = &m->bank[t];

        if (rid == TG_UDS_RID_ERASE_MEMORY) {
                if (opt_len > 0) {
                        uint64_t a, s;
                        if (parse_alfid(opt, opt_len, &a, &s) < 0)
                                return nrc(resp, size, len, req[0], 0x13);
                        if (window_offset(m, a, s) < 0)
                                return nrc(resp, size, len, req[0], TG_UDS_NRC_REQUEST_OUT_OF_RANGE);
                }
                /* Every byte written since the last erase lies in [img_start,
                 * img_end) (downloads are contiguous and extend img_end), and
                 * no service reads outside it: erasing that range is erasing
                 * the bank, and no old byte can end up inside a new image.
                 * (A whole-bank memset would make every bank resident.) */
                bank_invalidate(b);
                memset(b->data + b->img_start, 0xFF, b->img_end - b->img_start);
                b->img_start = b->img_end = 0;
                b->erased = true;
                b->started = false;
                if (m->switch_pending && m->switch_target == t)
                        m->switch_pending = false;
                *delay = (uint64_t) m->c.erase_time_ms * USEC_PER_MSEC;
                ok[4] = 0x00;
                return put(resp, size, len, ok, 5);
        }

        if (rid == TG_UDS_RID_CHECK_PROGRAMMING_DEPENDENCIES) {
                if (opt_len < 32 || opt_len > 32 + ECU_MODEL_VERSION_MAX)
                        return nrc(resp, size, len, req[0], 0x13);
                if (!b->erased || !b->started || b->img_end == b->img_start)
                        return nrc(resp, size, len, req[0], TG_UDS_NRC_REQUEST_SEQUENCE_ERROR);
                /* Hashing takes time on a real ECU: either answer comes after
                 * it (a 0x78 first when that is longer than P2). */
                *delay = check_time(m, b->img_end - b->img_start);
                uint8_t h[32];
                if (tg_kp_sha256(b->data + b->img_start, b->img_end - b->img_start, h) < 0 ||
                    memcmp(h, opt, 32) != 0)
                        return nrc(resp, size, len, req[0], TG_UDS_NRC_GENERAL_PROGRAMMING_FAILURE);
                zero(m->check);
                m->check.bank = t;
                if (opt_len > 32) {
                        memcpy(m->check.version, opt + 32, opt_len - 32);
                        m->check.version[opt_len - 32] = 0;
                } else
                        version_from_image(b, m->check.version);
                ok[4] = 0x00;
                int r = put(resp, size, len, ok, 5);
                if (r < 0)
                        return r;
                /* at once, or with the final response (ecu_model_poll()) */
                if (*delay == 0)
                        check_commit(m);
                else
                        m->check.due = true;
                return r;
        }

        /* bank switch (A/B only, checked above) */
        if (opt_len > 1 || (opt_len == 1 && opt[0] != 0x01))
                return nrc(resp, size, len, req[0], TG_UDS_NRC_REQUEST_OUT_OF_RANGE);
        unsigned other = 1 - m->active;
        if (!m->bank[other].valid)
                return nrc(resp, size, len, req[0], TG_UDS_NRC_CONDITIONS_NOT_CORRECT);
        m->switch_pending = true;
        m->switch_target = other;
        ok[4] = (uint8_t) other;
        return put(resp, size, len, ok, 5);
}

static int svc_request_download(EcuModel *m, const uint8_t *req, size_t n, uint8_t *resp, size_t size,
                                size_t *len) {
        if (n < 3)
                return nrc(resp, size, len, req[0], 0x13);
        if (!programming_ok(m))
                return nrc(resp, size, len, req[0], TG_UDS_NRC_SERVICE_NOT_SUPPORTED_IN_ACTIVE_SESSION);
        if (!m->unlocked)
                return nrc(resp, size, len, req[0], TG_UDS_NRC_SECURITY_ACCESS_DENIED);
        uint64_t a, s;
        if (parse_alfid(req + 2, n - 2, &a, &s) < 0)
                return nrc(resp, size, len, req[0], 0x13);
        if (req[1] != 0x00)
                return nrc(resp, size, len, req[0], TG_UDS_NRC_REQUEST_OUT_OF_RANGE);
        int64_t off = window_offset(m, a, s);
        if (off < 0)
                return nrc(resp, size, len, req[0], TG_UDS_NRC_REQUEST_OUT_OF_RANGE);
        if (m->transfer)
                return nrc(resp, size, len, req[0], TG_UDS_NRC_CONDITIONS_NOT_CORRECT);
        unsigned t = target_bank(m);
        Bank *b = &m->bank[t];
        /* only into an erased bank, and contiguous with what was written since */
        if (!b->erased || (b->started && (size_t) off != b->img_end))
                return nrc(resp, size, len, req[0], TG_UDS_NRC_UPLOAD_DOWNLOAD_NOT_ACCEPTED);
        int r = tg_uds_encode_request_download_response(resp, size, m->c.max_block_length, 0);
        if (r < 0)
                return r;
        if (!b->started) {
                b->started = true;
                b->img_start = b->img_end = (size_t) off;
        }
        m->transfer = true;
        m->target = t;
        m->xfer_pos = (size_t) off;
        m->xfer_end = (size_t) off + (size_t) s;
        m->bsc_last = 0x00; /* the first block carries 0x01 */
        m->blocks = 0;
        m->last_block_len = 0;
        *len = (size_t) r;
        return 1;
}

static void write_flash(EcuModel *m, const uint8_t *data, size_t l) {
        Bank *b = &m->bank[m->target];
        bank_invalidate(b);
        memcpy(b->data + m->xfer_pos, data, l);
        m->xfer_pos += l;
        if (m->xfer_pos > b->img_end)
                b->img_end = m->xfer_pos;
}

static int svc_transfer_data(EcuModel *m, const uint8_t *req, size_t n, uint64_t now, uint64_t *delay,
                             uint8_t *resp, size_t size, size_t *len) {
        if (n < 2)
                return nrc(resp, size, len, req[0], 0x13);
        if (!programming_ok(m))
                return nrc(resp, size, len, req[0], TG_UDS_NRC_SERVICE_NOT_SUPPORTED_IN_ACTIVE_SESSION);
        if (!m->transfer)
                return nrc(resp, size, len, req[0], TG_UDS_NRC_REQUEST_SEQUENCE_ERROR);
        uint8_t bsc = req[1];
        size_t l = n - 2;

        if (m->blocks > 0 && bsc == m->bsc_last && l == m->last_block_len)
                /* the tester repeated the last block (lost response): ISO 14229-1
                 * 14.5: answer positively, do not write again */
                return put(resp, size, len, (const uint8_t[]) { 0x76, bsc }, 2);
        if (bsc != tg_uds_bsc_next(m->bsc_last))
                return nrc(resp, size, len, req[0], TG_UDS_NRC_WRONG_BLOCK_SEQUENCE_COUNTER);
        if (l == 0 || n > m->c.max_block_length)
                return nrc(resp, size, len, req[0], 0x13);
        if (l > m->xfer_end - m->xfer_pos)
                return nrc(resp, size, len, req[0], TG_UDS_NRC_TRANSFER_DATA_SUSPENDED);
        if (size < 2)
                return -ENOBUFS;

        EcuModelFaults *f = &m->faults;
        if (f->reset_after_blocks > 0 && m->blocks == f->reset_after_blocks) {
                f->reset_after_blocks = 0;
                ecu_model_power_cycle(m, now);
                return 0;
        }
        if (f->power_loss_after_blocks > 0 && m->blocks == f->power_loss_after_blocks) {
                f->power_loss_after_blocks = 0;
                write_flash(m, req + 2, l / 2);
                ecu_model_power_cycle(m, now);
                return 0;
        }

        write_flash(m, req + 2, l);
        m->bsc_last = bsc;
        m->last_block_len = l;
        m->blocks++;
        if (f->corrupt_after_blocks > 0 && m->blocks == f->corrupt_after_blocks) {
                f->corrupt_after_blocks = 0;
                m->bank[m->target].data[m->xfer_pos - 1 - l / 2] ^= 0x5A;
        }
        if (m->c.write_speed > 0)
                *delay = (uint64_t) l * USEC_PER_SEC / m->c.write_speed;
        return put(resp, size, len, (const uint8_t[]) { 0x76, bsc }, 2);
}

static int svc_transfer_exit(EcuModel *m, const uint8_t *req, size_t n, uint8_t *resp, size_t size,
                             size_t *len) {
        (void) n;
        if (!programming_ok(m))
                return nrc(resp, size, len, req[0], TG_UDS_NRC_SERVICE_NOT_SUPPORTED_IN_ACTIVE_SESSION);
        if (!m->transfer || m->xfer_pos != m->xfer_end)
                return nrc(resp, size, len, req[0], TG_UDS_NRC_REQUEST_SEQUENCE_ERROR);
        m->transfer = false;
        return put(resp, size, len, (const uint8_t[]) { 0x77 }, 1);
}

/* ---- the entry points ---- */

static void check_s3(EcuModel *m, uint64_t now) {
        if (m->session != TG_UDS_SESSION_DEFAULT && !m->pending.active &&
            now >= add_sat(m->last_activity, (uint64_t) m->c.s3_ms * USEC_PER_MSEC)) {
                m->session = TG_UDS_SESSION_DEFAULT;
                m->unlocked = false;
                m->seed_valid = false;
                m->comm_control = TG_UDS_COMM_ENABLE_RX_TX;
                m->dtc_on = true;
                m->transfer = false;
        }
}

static bool sid_has_sub(uint8_t sid) {
        return sid == 0x10 || sid == 0x11 || sid == 0x27 || sid == 0x28 || sid == 0x31 || sid == 0x3E ||
               sid == 0x85;
}

int ecu_model_request(EcuModel *m, const uint8_t *req, size_t n, bool functional, uint64_t now, uint8_t *resp,
                      size_t resp_size, size_t *resp_len) {
        if (!m || (!req && n > 0) || !resp || !resp_len)
                return -EINVAL;
        if (resp_size < ECU_MODEL_RESP_MIN)
                return -ENOBUFS;
        *resp_len = 0;
        if (n == 0)
                return 0;

        check_s3(m, now);
        uint8_t sid = req[0];
        if (functional && sid != 0x10 && sid != 0x28 && sid != 0x3E && sid != 0x85)
                return 0;
        m->last_activity = now;

        if (m->pending.active) {
                /* busy with a long operation; functional keep-alives are fine */
                if (functional)
                        return 0;
                return nrc(resp, resp_size, resp_len, sid, TG_UDS_NRC_BUSY_REPEAT_REQUEST);
        }

        bool suppress = sid_has_sub(sid) && n >= 2 && (req[1] & TG_UDS_SUPPRESS_POS_RSP);
        uint64_t delay = 0;
        int r;

        if (m->faults.nrc_sid != 0 && m->faults.nrc_sid == sid) {
                uint8_t code = m->faults.nrc ? m->faults.nrc : TG_UDS_NRC_GENERAL_REJECT;
                m->faults.nrc_sid = 0;
                r = nrc(resp, resp_size, resp_len, sid, code);
        } else
                switch (sid) {
                case 0x10:
                        r = svc_session(m, req, n, resp, resp_size, resp_len);
                        break;
                case 0x11:
                        r = svc_reset(m, req, n, now, resp, resp_size, resp_len);
                        break;
                case 0x22:
                        r = svc_read_data(m, req, n, resp, resp_size, resp_len);
                        break;
                case 0x27:
                        r = svc_security(m, req, n, now, resp, resp_size, resp_len);
                        break;
                case 0x28:
                        r = svc_comm_control(m, req, n, resp, resp_size, resp_len);
                        break;
                case 0x31:
                        r = svc_routine(m, req, n, &delay, resp, resp_size, resp_len);
                        break;
                case 0x34:
                        r = svc_request_download(m, req, n, resp, resp_size, resp_len);
                        break;
                case 0x36:
                        r = svc_transfer_data(m, req, n, now, &delay, resp, resp_size, resp_len);
                        break;
                case 0x37:
                        r = svc_transfer_exit(m, req, n, resp, resp_size, resp_len);
                        break;
                case 0x3E:
                        r = svc_tester_present(req, n, resp, resp_size, resp_len);
                        break;
                case 0x85:
                        r = svc_dtc_setting(m, req, n, resp, resp_size, resp_len);
                        break;
                default:
                        r = nrc(resp, resp_size, resp_len, sid, TG_UDS_NRC_SERVICE_NOT_SUPPORTED);
                }
        if (r <= 0)
                return r;

        bool negative = *resp_len >= 1 && resp[0] == TG_UDS_NEGATIVE_RESPONSE;
        unsigned storm = 0;
        if (m->faults.pending_storm_sid != 0 && m->faults.pending_storm_sid == sid) {
                storm = m->faults.pending_storm_count;
                m->faults.pending_storm_sid = 0;
        }

        if (storm == 0 && delay == 0) {
                if (negative) {
                        if (functional && (resp[2] == 0x11 || resp[2] == 0x12 || resp[2] == 0x31 ||
                                           resp[2] == 0x7E || resp[2] == 0x7F))
                                return 0;
                        return 1;
                }
                return suppress ? 0 : 1;
        }

        /* the answer comes later */
        Pending *p = &m->pending;
        if (*resp_len > sizeof p->final)
                return -ENOBUFS;
        zero(*p);
        p->active = true;
        p->sid = sid;
        memcpy(p->final, resp, *resp_len);
        p->final_len = *resp_len;
        p->suppress = suppress && !negative;
        p->ready_at = add_sat(now, delay);
        p->next_pending_at = USEC_INFINITY;
        uint64_t p2 = (uint64_t) m->c.p2_ms * USEC_PER_MSEC;
        if (storm > 0 || delay > p2) {
                p->storm_left = storm > 0 ? storm - 1 : 0;
                p->sent_pending = true;
                p->next_pending_at = add_sat(now, (uint64_t) m->c.pending_interval_ms * USEC_PER_MSEC);
                return nrc(resp, resp_size, resp_len, sid, TG_UDS_NRC_RESPONSE_PENDING);
        }
        *resp_len = 0;
        return 0;
}

uint64_t ecu_model_next_deadline(const EcuModel *m) {
        const Pending *p = &m->pending;
        if (p->active) {
                if (p->storm_left > 0)
                        return p->next_pending_at;
                return MIN(p->ready_at, p->next_pending_at);
        }
        if (m->session != TG_UDS_SESSION_DEFAULT)
                return add_sat(m->last_activity, (uint64_t) m->c.s3_ms * USEC_PER_MSEC);
        return USEC_INFINITY;
}

int ecu_model_poll(EcuModel *m, uint64_t now, uint8_t *resp, size_t resp_size, size_t *resp_len,
                   uint64_t *next_deadline) {
        if (!m || !resp || !resp_len)
                return -EINVAL;
        if (resp_size < ECU_MODEL_RESP_MIN)
                return -ENOBUFS;
        *resp_len = 0;
        int r = 0;
        Pending *p = &m->pending;
        if (p->active) {
                if (p->storm_left == 0 && now >= p->ready_at) {
                        if (p->final_len > resp_size)
                                return -ENOBUFS;
                        bool send = p->sent_pending || !p->suppress;
                        if (send) {
                                memcpy(resp, p->final, p->final_len);
                                *resp_len = p->final_len;
                                r = 1;
                        }
                        p->active = false;
                        if (m->check.due)
                                check_commit(m);
                        m->last_activity = now; /* S3 runs again from the final response */
                } else if (now >= p->next_pending_at) {
                        r = nrc(resp, resp_size, resp_len, p->sid, TG_UDS_NRC_RESPONSE_PENDING);
                        if (r < 0)
                                return r;
                        if (p->storm_left > 0)
                                p->storm_left--;
                        p->next_pending_at = add_sat(now, (uint64_t) m->c.pending_interval_ms * USEC_PER_MSEC);
                }
        }
        check_s3(m, now);
        if (next_deadline)
                *next_deadline = ecu_model_next_deadline(m);
        return r;
}

/* ---- lifetime, faults, queries ---- */

EcuModel *ecu_model_new(const EcuModelConfig *c) {
        if (!c || c->bank_size == 0 || c->initial_image_len > c->bank_size || c->seed_len > SEED_MAX ||
            (c->p2_star_ms % 10) != 0) {
                errno = EINVAL;
                return NULL;
        }
        EcuModel *m = calloc(1, sizeof *m);
        if (!m)
                return NULL;
        m->c = *c;
        if (!m->c.max_block_length)
                m->c.max_block_length = 4095;
        if (m->c.max_block_length < 3)
                m->c.max_block_length = 3;
        if (!m->c.p2_ms)
                m->c.p2_ms = TG_UDS_P2_DEFAULT_MS;
        if (!m->c.p2_star_ms)
                m->c.p2_star_ms = TG_UDS_P2_STAR_DEFAULT_MS;
        if (!m->c.s3_ms)
                m->c.s3_ms = TG_UDS_S3_SERVER_MS;
        if (!m->c.pending_interval_ms)
                m->c.pending_interval_ms = 2000;
        if (!m->c.security_level)
                m->c.security_level = 0x01;
        if (!m->c.seed_len)
                m->c.seed_len = 4;
        if (!m->c.lockout_ms)
                m->c.lockout_ms = 10000;
        if (!m->c.max_attempts)
                m->c.max_attempts = 3;
        if (m->c.security_level % 2 == 0 || m->c.security_level > 0x7D) {
                free(m);
                errno = EINVAL;
                return NULL;
        }
        /* only copies of the strings are kept */
        copy_str(m->part_number, sizeof m->part_number, c->part_number);
        copy_str(m->serial, sizeof m->serial, c->serial);
        copy_str(m->vin, sizeof m->vin, c->vin);
        m->has_vin = c->vin != NULL;
        m->c.initial_image = NULL;
        m->c.initial_version = NULL;
        m->c.part_number = m->c.serial = m->c.vin = NULL;
        m->prng = c->prng_seed ? c->prng_seed : UINT64_C(0x9E3779B97F4A7C15);
        m->precond_ok = !c->preconditions_fail;

        m->n_banks = c->ab_banks ? 2 : 1;
        for (unsigned i = 0; i < m->n_banks; i++) {
                /* calloc: large banks are mapped lazily, so a 20-ECU vehicle
                 * costs the memory of what is written, not of its banks. The
                 * value of bytes never written is not modelled (no service
                 * reads outside the image). */
                m->bank[i].data = calloc(1, c->bank_size);
                if (!m->bank[i].data) {
                        ecu_model_free(m);
                        errno = ENOMEM;
                        return NULL;
                }
                m->bank[i].erased = true;
        }
        Bank *a = &m->bank[0];
        if (c->initial_image_len > 0)
                memcpy(a->data, c->initial_image, c->initial_image_len);
        a->img_end = c->initial_image_len;
        if (c->initial_version) {
                copy_str(a->version, sizeof a->version, c->initial_version);
                a->valid = true;
                a->erased = false;
                a->started = true;
        }
        reset_volatile(m, 0);
        return m;
}

EcuModel *ecu_model_free(EcuModel *m) {
        if (!m)
                return NULL;
        for (unsigned i = 0; i < 2; i++)
                free(m->bank[i].data);
        free(m);
        return NULL;
}

void ecu_model_set_faults(EcuModel *m, const EcuModelFaults *f) {
        if (f)
                m->faults = *f;
        else
                zero(m->faults);
}

void ecu_model_set_preconditions(EcuModel *m, bool ok) {
        m->precond_ok = ok;
}

bool ecu_model_take_reset(EcuModel *m) {
        bool r = m->reset_flag;
        m->reset_flag = false;
        return r;
}

void ecu_model_power_cycle(EcuModel *m, uint64_t now) {
        do_reset(m, now);
}

unsigned ecu_model_n_banks(const EcuModel *m) {
        return m->n_banks;
}

unsigned ecu_model_active_bank(const EcuModel *m) {
        return m->active;
}

bool ecu_model_bank_valid(const EcuModel *m, unsigned bank) {
        return bank < m->n_banks && m->bank[bank].valid;
}

const char *ecu_model_bank_version(const EcuModel *m, unsigned bank) {
        return bank < m->n_banks ? m->bank[bank].version : "";
}

const char *ecu_model_version(const EcuModel *m) {
        return m->bank[m->active].version;
}

size_t ecu_model_bank_written(const EcuModel *m, unsigned bank) {
        return bank < m->n_banks ? m->bank[bank].img_end - m->bank[bank].img_start : 0;
}

const uint8_t *ecu_model_bank_data(const EcuModel *m, unsigned bank, size_t *len) {
        if (bank >= m->n_banks)
                return NULL;
        if (len)
                *len = m->bank[bank].img_end - m->bank[bank].img_start;
        return m->bank[bank].data + m->bank[bank].img_start;
}

int ecu_model_bank_sha256(const EcuModel *m, unsigned bank, uint8_t ret[32]) {
        if (bank >= m->n_banks)
                return -EINVAL;
        const Bank *b = &m->bank[bank];
        return tg_kp_sha256(b->data + b->img_start, b->img_end - b->img_start, ret);
}

uint8_t ecu_model_session(const EcuModel *m) {
        return m->session;
}

bool ecu_model_unlocked(const EcuModel *m) {
        return m->unlocked;
}

uint8_t ecu_model_comm_control(const EcuModel *m) {
        return m->comm_control;
}

bool ecu_model_dtc_setting_on(const EcuModel *m) {
        return m->dtc_on;
}

bool ecu_model_transfer_active(const EcuModel *m) {
        return m->transfer;
}

bool ecu_model_switch_pending(const EcuModel *m) {
        return m->switch_pending;
}

bool ecu_model_busy(const EcuModel *m) {
        return m->pending.active;
}
