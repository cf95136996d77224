/* SPDX-License-Identifier: MIT */
#include <linux/can.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <systemd/sd-event.h>
#include <time.h>

#include "can-wire.h"
#include "tg-isotp.h"
#include "tg-test-proc.h"

#define MS 1000ULL
#define S_ 1000000ULL

/* ---- helpers ---- */

static uint64_t rng = UINT64_C(0x2545F4914F6CDD1D);

static uint64_t rnd(void) {
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        return rng * UINT64_C(2685821657736338717);
}

static uint8_t *pattern(size_t len, uint8_t seed) {
        uint8_t *p = malloc(len ? len : 1);

        assert_se(p);
        for (size_t i = 0; i < len; i++)
                p[i] = (uint8_t) (i * 7 + seed + (i >> 8));
        return p;
}

/* What the callback saw. */
typedef struct Seen {
        unsigned rx_done, tx_done, rx_errors, tx_errors;
        TgIsotpError last_rx_error, last_tx_error;
        uint8_t *data;
        size_t len;
} Seen;

static void on_event(TgIsotp *e, const TgIsotpEvent *ev, void *userdata) {
        Seen *s = userdata;

        (void) e;
        switch (ev->type) {
        case TG_ISOTP_RX_DONE:
                s->rx_done++;
                free(s->data);
                s->data = malloc(ev->len);
                assert_se(s->data);
                memcpy(s->data, ev->data, ev->len);
                s->len = ev->len;
                break;
        case TG_ISOTP_TX_DONE:
                s->tx_done++;
                break;
        case TG_ISOTP_RX_ERROR:
                s->rx_errors++;
                s->last_rx_error = ev->error;
                break;
        case TG_ISOTP_TX_ERROR:
                s->tx_errors++;
                s->last_tx_error = ev->error;
                break;
        }
}

static TgIsotp *engine(const TgIsotpConfig *c, Seen *seen) {
        TgIsotp *e = NULL;

        assert_ok(tg_isotp_new(c, &e));
        if (seen)
                tg_isotp_set_callback(e, on_event, seen);
        return e;
}

static TgCanFrame frame(uint32_t id, bool fd, unsigned len, const uint8_t *data) {
        TgCanFrame f = { .id = id, .len = (uint8_t) len, .fd = fd };

        memcpy(f.data, data, len);
        return f;
}

/* A classic frame as an lvalue: &F(0x7E8, 0x30, 0, 0). */
#define F(id, ...)                                                                                      \
        (*(TgCanFrame[]) { frame(id, false, sizeof((const uint8_t[]) { __VA_ARGS__ }),                  \
                                 (const uint8_t[]) { __VA_ARGS__ }) })

static TgCanFrame poll_one(TgIsotp *e, uint64_t now) {
        TgCanFrame f;

        assert_eq(tg_isotp_poll(e, now, &f, NULL), 1);
        assert_se(tg_can_len_valid(f.len, f.fd));
        return f;
}

static uint64_t poll_none(TgIsotp *e, uint64_t now) {
        TgCanFrame f;
        uint64_t deadline = 0;

        assert_eq(tg_isotp_poll(e, now, &f, &deadline), 0);
        return deadline;
}

static void expect_bytes(const TgCanFrame *f, uint32_t id, unsigned len, const uint8_t *want) {
        assert_eq(f->id, id);
        assert_eq(f->len, len);
        assert_memeq(f->data, want, len);
}

#define EXPECT(f, id, ...)                                                                              \
        expect_bytes(f, id, sizeof((const uint8_t[]) { __VA_ARGS__ }), (const uint8_t[]) { __VA_ARGS__ })

/* Two engines on one simulated bus with a fake clock: every frame one side
 * polls goes to the other (and to a log). Returns the final clock. */
typedef struct Pump {
        uint64_t now;
        size_t frames;
        uint64_t cf_times[1024];
        size_t cf_seq[1024], n_cf;
        uint64_t fc_times[256];
        size_t fc_seq[256], n_fc;
} Pump;

static void pump(Pump *p, TgIsotp *a, TgIsotp *b) {
        for (unsigned rounds = 0; rounds < 10000000; rounds++) {
                uint64_t da = TG_ISOTP_NO_DEADLINE, db = TG_ISOTP_NO_DEADLINE;
                TgCanFrame f;
                bool any = false;

                while (tg_isotp_poll(a, p->now, &f, &da) == 1) {
                        assert_se(tg_can_len_valid(f.len, f.fd));
                        if (p->n_cf < ELEMENTSOF(p->cf_times) && (f.data[0] >> 4) == 2) {
                                p->cf_seq[p->n_cf] = p->frames;
                                p->cf_times[p->n_cf++] = p->now;
                        }
                        (void) tg_isotp_feed(b, &f, p->now);
                        p->frames++;
                        any = true;
                }
                while (tg_isotp_poll(b, p->now, &f, &db) == 1) {
                        assert_se(tg_can_len_valid(f.len, f.fd));
                        if (p->n_fc < ELEMENTSOF(p->fc_times) && (f.data[0] >> 4) == 3) {
                                p->fc_seq[p->n_fc] = p->frames;
                                p->fc_times[p->n_fc++] = p->now;
                        }
                        (void) tg_isotp_feed(a, &f, p->now);
                        p->frames++;
                        any = true;
                }
                if (any)
                        continue;
                if (!tg_isotp_tx_busy(a) && !tg_isotp_rx_progress(b, NULL, NULL))
                        return;
                assert_se(MIN(da, db) != TG_ISOTP_NO_DEADLINE);
                p->now = MAX(p->now, MIN(da, db));
        }
        assert_se(!"pump did not settle");
}

static void pair_configs(TgIsotpConfig *ca, TgIsotpConfig *cb, bool fd) {
        tg_isotp_config_init(ca, 0x7E0, 0x7E8, fd);
        tg_isotp_config_init(cb, 0x7E8, 0x7E0, fd);
}

static void round_trip(const TgIsotpConfig *ca, const TgIsotpConfig *cb, size_t len) {
        _cleanup_(tg_isotp_freep) TgIsotp *a = NULL, *b = NULL;
        _cleanup_free_ uint8_t *msg = pattern(len, (uint8_t) len);
        Seen sa = {}, sb = {};
        Pump p = {};

        a = engine(ca, &sa);
        b = engine(cb, &sb);
        assert_ok(tg_isotp_send(a, msg, len));
        pump(&p, a, b);
        assert_eq(sa.tx_done, 1u);
        assert_eq(sa.tx_errors, 0u);
        assert_eq(sb.rx_errors, 0u);
        assert_eq(sb.rx_done, 1u);
        assert_eq(sb.len, len);
        assert_memeq(sb.data, msg, len);
        free(sb.data);
}

/* ---- byte sequences ---- */

static void test_config(void) {
        TgIsotpConfig c;
        TgIsotp *e = NULL;

        tg_isotp_config_init(&c, 0x7E0, 0x7E8, false);
        assert_eq(c.pad_byte, 0xCC);
        assert_ok(tg_isotp_new(&c, &e));
        assert_eq(tg_isotp_config(e)->tx_dl, 8);
        assert_eq(tg_isotp_config(e)->max_rx, 1u << 20);
        assert_eq(tg_isotp_config(e)->n_bs_usec, 1000000u);
        e = tg_isotp_free(e);
        c.tx_dl = 12; /* classic */
        assert_eq(tg_isotp_new(&c, &e), -EINVAL);
        c.fd = true;
        assert_ok(tg_isotp_new(&c, &e));
        e = tg_isotp_free(e);
        c.tx_dl = 13;
        assert_eq(tg_isotp_new(&c, &e), -EINVAL);
        c.tx_dl = 0;
        c.stmin = 0x80;
        assert_eq(tg_isotp_new(&c, &e), -EINVAL);
        c.stmin = 0xF5;
        c.tx_id = 0x800; /* 11-bit id out of range */
        assert_eq(tg_isotp_new(&c, &e), -EINVAL);
        c.tx_id = 0x18DA10F1 | CAN_EFF_FLAG;
        assert_ok(tg_isotp_new(&c, &e));
        assert_eq(tg_isotp_config(e)->tx_dl, 64);
        e = tg_isotp_free(e);

        assert_eq(tg_isotp_stmin_usec(0), 0u);
        assert_eq(tg_isotp_stmin_usec(0x7F), 127000u);
        assert_eq(tg_isotp_stmin_usec(0xF1), 100u);
        assert_eq(tg_isotp_stmin_usec(0xF9), 900u);
        assert_eq(tg_isotp_stmin_usec(0x80), 127000u);
        assert_eq(tg_isotp_stmin_usec(0xFA), 127000u);
        assert_eq(tg_isotp_round_dl(9), 12u);
        assert_eq(tg_isotp_round_dl(25), 32u);
        assert_eq(tg_isotp_round_dl(33), 48u);
        assert_eq(tg_isotp_round_dl(7), 7u);
        assert_streq(tg_isotp_error_to_string(TG_ISOTP_ERR_WRONG_SN), "wrong sequence number");
        assert_streq(tg_isotp_error_to_string(TG_ISOTP_ERR_TIMEOUT_CR), "timeout N_Cr");
}

static void test_sf_bytes(void) {
        TgIsotpConfig c;
        _cleanup_(tg_isotp_freep) TgIsotp *e = NULL, *p = NULL;
        uint8_t *data;
        size_t len;
        TgCanFrame f;

        tg_isotp_config_init(&c, 0x7E0, 0x7E8, false);
        e = engine(&c, NULL);
        assert_eq(tg_isotp_send(e, "", 0), -EINVAL);
        assert_ok(tg_isotp_send(e, (const uint8_t[]) { 0x22, 0xF1, 0x90 }, 3));
        assert_eq(tg_isotp_send(e, "x", 1), -EBUSY);
        f = poll_one(e, 0);
        EXPECT(&f, 0x7E0, 0x03, 0x22, 0xF1, 0x90); /* ReadDataByIdentifier VIN, unpadded */
        assert_se(!f.fd);
        assert_se(!tg_isotp_tx_busy(e));
        assert_eq(tg_isotp_tx_result(e), TG_ISOTP_OK);
        assert_eq(poll_none(e, 0), TG_ISOTP_NO_DEADLINE);

        /* padded with 0xCC */
        c.pad = true;
        p = engine(&c, NULL);
        assert_ok(tg_isotp_send(p, (const uint8_t[]) { 0x3E, 0x00 }, 2));
        f = poll_one(p, 0);
        EXPECT(&f, 0x7E0, 0x02, 0x3E, 0x00, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC);

        /* reception: the positive response 0x62 F1 90 … as an SF; other ids ignored */
        assert_eq(tg_isotp_feed(e, &F(0x7E9, 0x02, 0x50, 0x01), 0), 0);
        assert_eq(tg_isotp_feed(e, &F(0x7E8, 0x02, 0x50, 0x01, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC), 0), 1);
        assert_ok(tg_isotp_recv(e, &data, &len));
        assert_eq(len, 2u);
        assert_eq(data[0], 0x50);
        assert_eq(data[1], 0x01);
        free(data);
        assert_eq(tg_isotp_recv(e, &data, &len), -EAGAIN);

        /* malformed SFs: length 0, length past the frame, 7 bytes in a classic SF is the limit */
        assert_eq(tg_isotp_feed(e, &F(0x7E8, 0x00, 0x50), 0), -EBADMSG);
        assert_eq(tg_isotp_feed(e, &F(0x7E8, 0x05, 0x50, 0x01), 0), -EBADMSG);
        assert_eq(tg_isotp_feed(e, &F(0x7E8, 0x07, 1, 2, 3, 4, 5, 6, 7), 0), 1);
        assert_ok(tg_isotp_recv(e, &data, &len));
        assert_eq(len, 7u);
        free(data);
        /* remote frames and 29-bit frames with the same number are not ours */
        assert_eq(tg_isotp_feed(e, &F(0x7E8 | CAN_RTR_FLAG, 0x01, 0x00), 0), 0);
        assert_eq(tg_isotp_feed(e, &F(0x7E8 | CAN_EFF_FLAG, 0x01, 0x00), 0), 0);
}

/* ISO 15765-2 segmented transfer: FF 0x10 0x14 (20 bytes), FC 0x30 BS STmin, CF 0x21 0x22. */
static void test_ff_cf_bytes(void) {
        TgIsotpConfig c, cr;
        _cleanup_(tg_isotp_freep) TgIsotp *e = NULL, *r = NULL;
        uint8_t msg[20];
        TgCanFrame f;
        Seen seen = {};

        for (unsigned i = 0; i < sizeof msg; i++)
                msg[i] = (uint8_t) (0xA0 + i);
        tg_isotp_config_init(&c, 0x7E0, 0x7E8, false);
        e = engine(&c, NULL);
        assert_ok(tg_isotp_send(e, msg, sizeof msg));
        f = poll_one(e, 0);
        EXPECT(&f, 0x7E0, 0x10, 0x14, 0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5);
        assert_eq(poll_none(e, 0), 1000 * MS); /* N_Bs */
        /* an FC with another id, and a CF, are not the FC */
        assert_eq(tg_isotp_feed(e, &F(0x7E9, 0x30, 0x00, 0x00), 10), 0);
        assert_eq(tg_isotp_feed(e, &F(0x7E8, 0x21, 0x00), 10), 0);
        assert_eq(tg_isotp_feed(e, &F(0x7E8, 0x30, 0x00, 0x00, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC), 10), 1);
        f = poll_one(e, 10);
        EXPECT(&f, 0x7E0, 0x21, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xAB, 0xAC);
        f = poll_one(e, 10);
        EXPECT(&f, 0x7E0, 0x22, 0xAD, 0xAE, 0xAF, 0xB0, 0xB1, 0xB2, 0xB3);
        assert_se(!tg_isotp_tx_busy(e));
        assert_eq(tg_isotp_tx_result(e), TG_ISOTP_OK);

        /* the receiving side answers the FF with its BS and STmin, padded */
        tg_isotp_config_init(&cr, 0x7E8, 0x7E0, false);
        cr.bs = 8;
        cr.stmin = 0x14;
        cr.pad = true;
        r = engine(&cr, &seen);
        assert_eq(tg_isotp_feed(r, &F(0x7E0, 0x10, 0x14, 0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5), 0), 1);
        f = poll_one(r, 0);
        EXPECT(&f, 0x7E8, 0x30, 0x08, 0x14, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC);
        assert_eq(poll_none(r, 0), 1000 * MS); /* N_Cr */
        assert_eq(tg_isotp_feed(r, &F(0x7E0, 0x21, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xAB, 0xAC), 5), 1);
        {
                uint32_t done, total;
                assert_se(tg_isotp_rx_progress(r, &done, &total));
                assert_eq(done, 13u);
                assert_eq(total, 20u);
        }
        assert_eq(tg_isotp_feed(r, &F(0x7E0, 0x22, 0xAD, 0xAE, 0xAF, 0xB0, 0xB1, 0xB2, 0xB3), 6), 1);
        assert_eq(seen.rx_done, 1u);
        assert_eq(seen.len, 20u);
        assert_memeq(seen.data, msg, 20);
        free(seen.data);
        /* a CF with nothing running is ignored */
        assert_eq(tg_isotp_feed(r, &F(0x7E0, 0x23, 0x00), 7), 0);
        /* FF announcing what an SF carries is invalid */
        assert_eq(tg_isotp_feed(r, &F(0x7E0, 0x10, 0x07, 1, 2, 3, 4, 5, 6), 8), -EBADMSG);
        /* FF must fill a classic frame */
        assert_eq(tg_isotp_feed(r, &F(0x7E0, 0x10, 0x14, 1, 2, 3), 8), -EBADMSG);
}

static void test_extended_addressing(void) {
        TgIsotpConfig ca, cb;
        _cleanup_(tg_isotp_freep) TgIsotp *e = NULL;
        uint8_t msg[10] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
        TgCanFrame f;

        pair_configs(&ca, &cb, false);
        ca.ext_addr = cb.ext_addr = true;
        ca.tx_ext = 0x55; /* target address */
        ca.rx_ext = 0xF1;
        cb.tx_ext = 0xF1;
        cb.rx_ext = 0x55;
        e = engine(&ca, NULL);
        assert_ok(tg_isotp_send(e, msg, 6));
        f = poll_one(e, 0);
        EXPECT(&f, 0x7E0, 0x55, 0x06, 1, 2, 3, 4, 5, 6);
        assert_ok(tg_isotp_send(e, msg, 10));
        f = poll_one(e, 0);
        EXPECT(&f, 0x7E0, 0x55, 0x10, 0x0A, 1, 2, 3, 4, 5);
        assert_eq(tg_isotp_feed(e, &F(0x7E8, 0x56, 0x30, 0, 0), 0), 0); /* other address */
        assert_eq(tg_isotp_feed(e, &F(0x7E8, 0xF1, 0x30, 0, 0), 0), 1);
        f = poll_one(e, 0);
        EXPECT(&f, 0x7E0, 0x55, 0x21, 6, 7, 8, 9, 10);
        for (size_t len = 1; len < 300; len++)
                round_trip(&ca, &cb, len);
}

static void test_fd_sf_escape(void) {
        TgIsotpConfig c;
        _cleanup_(tg_isotp_freep) TgIsotp *e = NULL;
        _cleanup_free_ uint8_t *msg = pattern(62, 1);
        uint8_t want[64], *data;
        size_t len;
        TgCanFrame f;

        tg_isotp_config_init(&c, 0x18DA10F1 | CAN_EFF_FLAG, 0x18DAF110 | CAN_EFF_FLAG, true);
        c.brs = true;
        e = engine(&c, NULL);
        /* 7 bytes: the short form still, in an FD frame */
        assert_ok(tg_isotp_send(e, msg, 7));
        f = poll_one(e, 0);
        assert_se(f.fd);
        assert_eq(f.flags, CANFD_BRS);
        assert_eq(f.len, 8);
        assert_eq(f.data[0], 0x07);
        /* 20 bytes: 0x00 0x14 + data, 22 bytes padded to 24 with 0xCC */
        assert_ok(tg_isotp_send(e, msg, 20));
        f = poll_one(e, 0);
        want[0] = 0x00;
        want[1] = 20;
        memcpy(want + 2, msg, 20);
        want[22] = want[23] = 0xCC;
        expect_bytes(&f, 0x18DA10F1 | CAN_EFF_FLAG, 24, want);
        /* 62 bytes: the largest SF of a 64-byte frame */
        assert_ok(tg_isotp_send(e, msg, 62));
        f = poll_one(e, 0);
        assert_eq(f.len, 64);
        assert_eq(f.data[0], 0x00);
        assert_eq(f.data[1], 62);
        assert_se(!tg_isotp_tx_busy(e));
        /* 63: an FF */
        assert_ok(tg_isotp_send(e, msg, 62));
        (void) poll_one(e, 0);

        /* reception of an escaped SF */
        f = (TgCanFrame) { .id = 0x18DAF110 | CAN_EFF_FLAG, .fd = true, .len = 12 };
        f.data[0] = 0x00;
        f.data[1] = 9;
        memcpy(f.data + 2, msg, 9);
        f.data[11] = 0xCC;
        assert_eq(tg_isotp_feed(e, &f, 0), 1);
        assert_ok(tg_isotp_recv(e, &data, &len));
        assert_eq(len, 9u);
        assert_memeq(data, msg, 9);
        free(data);
        /* escape with a length the short form carries, or past the frame: invalid */
        f.data[1] = 7;
        assert_eq(tg_isotp_feed(e, &f, 0), -EBADMSG);
        f.data[1] = 11;
        assert_eq(tg_isotp_feed(e, &f, 0), -EBADMSG);
        /* an FD frame for a classic engine */
        {
                TgIsotpConfig cc;
                _cleanup_(tg_isotp_freep) TgIsotp *classic = NULL;

                tg_isotp_config_init(&cc, 0x7E0, 0x18DAF110 | CAN_EFF_FLAG, false);
                classic = engine(&cc, NULL);
                f.data[1] = 9;
                assert_eq(tg_isotp_feed(classic, &f, 0), -EBADMSG);
        }
}

static void test_fd_ff_escape(void) {
        TgIsotpConfig ca, cb;
        _cleanup_(tg_isotp_freep) TgIsotp *e = NULL, *r = NULL;
        _cleanup_free_ uint8_t *msg = pattern(70000, 3);
        TgCanFrame f;
        Seen seen = {};

        pair_configs(&ca, &cb, true);
        e = engine(&ca, NULL);
        /* 4095: the 12-bit FF */
        assert_ok(tg_isotp_send(e, msg, 4095));
        f = poll_one(e, 0);
        assert_eq(f.len, 64);
        assert_eq(f.data[0], 0x1F);
        assert_eq(f.data[1], 0xFF);
        assert_memeq(f.data + 2, msg, 62);
        tg_isotp_abort_tx(e, TG_ISOTP_OK);
        assert_eq(tg_isotp_tx_result(e), TG_ISOTP_ERR_ABORTED);
        /* 70000 = 0x00011170: the escape */
        assert_ok(tg_isotp_send(e, msg, 70000));
        f = poll_one(e, 0);
        assert_eq(f.len, 64);
        assert_memeq(f.data, ((const uint8_t[]) { 0x10, 0x00, 0x00, 0x01, 0x11, 0x70 }), 6);
        assert_memeq(f.data + 6, msg, 58);
        /* fed to a receiver: FC, then CFs of 63 bytes */
        r = engine(&cb, &seen);
        assert_eq(tg_isotp_feed(r, &f, 0), 1);
        f = poll_one(r, 0);
        EXPECT(&f, 0x7E8, 0x30, 0x00, 0x00);
        assert_se(f.fd);
        assert_eq(tg_isotp_feed(e, &f, 0), 1);
        f = poll_one(e, 0);
        assert_eq(f.len, 64);
        assert_eq(f.data[0], 0x21);
        assert_memeq(f.data + 1, msg + 58, 63);
        /* an escaped FF for a length the 12 bits carry is invalid */
        {
                TgCanFrame bad = { .id = 0x7E0, .fd = true, .len = 64, .data = { 0x10, 0x00, 0, 0, 0x0F, 0xFF } };
                _cleanup_(tg_isotp_freep) TgIsotp *r2 = engine(&cb, NULL);
                assert_eq(tg_isotp_feed(r2, &bad, 0), -EBADMSG);
        }
}

static void test_round_trip_classic(void) {
        TgIsotpConfig ca, cb;

        pair_configs(&ca, &cb, false);
        for (size_t len = 1; len <= 5000; len++) {
                cb.bs = (uint8_t) (len % 5 == 0 ? 0 : len % 17);
                ca.pad = len % 2;
                cb.pad = len % 3 == 0;
                round_trip(&ca, &cb, len);
        }
        /* 29-bit ids, STmin in µs */
        ca.tx_id = cb.rx_id = 0x18DA10F1 | CAN_EFF_FLAG;
        ca.rx_id = cb.tx_id = 0x18DAF110 | CAN_EFF_FLAG;
        cb.stmin = 0xF3;
        round_trip(&ca, &cb, 4095);
        round_trip(&ca, &cb, 4096); /* classic with the 32-bit escape */
}

static void test_round_trip_fd(void) {
        TgIsotpConfig ca, cb;
        static const uint8_t dls[] = { 8, 12, 16, 20, 24, 32, 48, 64 };

        pair_configs(&ca, &cb, true);
        for (size_t len = 1; len <= 1000; len++) {
                ca.tx_dl = dls[len % ELEMENTSOF(dls)];
                cb.tx_dl = dls[(len / 8) % ELEMENTSOF(dls)];
                cb.bs = (uint8_t) (len % 7);
                ca.pad = len & 1;
                round_trip(&ca, &cb, len);
        }
        ca.tx_dl = 64;
        cb.bs = 16;
        for (size_t len = 1001; len <= 70000; len += 1 + (size_t) (rnd() % 997))
                round_trip(&ca, &cb, len);
        round_trip(&ca, &cb, 4095);
        round_trip(&ca, &cb, 4096);
        round_trip(&ca, &cb, 70000);
}

/* BS and STmin honoured, on the engine's clock. */
static void test_bs_stmin(void) {
        static const struct {
                uint8_t bs, stmin;
                uint64_t gap;
        } cases[] = {
                { 4, 10, 10 * MS },
                { 0, 0xF5, 500 },
                { 1, 0x7F, 127 * MS },
                { 3, 0, 0 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                TgIsotpConfig ca, cb;
                _cleanup_(tg_isotp_freep) TgIsotp *a = NULL, *b = NULL;
                _cleanup_free_ uint8_t *msg = pattern(100, 9);
                Seen sb = {};
                Pump p = {};

                pair_configs(&ca, &cb, false);
                cb.bs = cases[i].bs;
                cb.stmin = cases[i].stmin;
                a = engine(&ca, NULL);
                b = engine(&cb, &sb);
                assert_ok(tg_isotp_send(a, msg, 100));
                pump(&p, a, b);
                assert_eq(sb.rx_done, 1u);
                assert_memeq(sb.data, msg, 100);
                free(sb.data);
                /* 100 bytes: FF 6 + 14 CFs of 7 */
                assert_eq(p.n_cf, 14u);
                assert_eq(p.n_fc, cases[i].bs ? 1u + 13u / cases[i].bs : 1u);
                for (size_t k = 1; k < p.n_cf; k++) {
                        bool after_fc = false;
                        /* the first CF after an FC goes at once; the others wait STmin */
                        for (size_t j = 0; j < p.n_fc; j++)
                                if (p.fc_seq[j] > p.cf_seq[k - 1] && p.fc_seq[j] < p.cf_seq[k])
                                        after_fc = true;
                        if (cases[i].bs && k % cases[i].bs == 0)
                                assert_se(after_fc);
                        if (!after_fc)
                                assert_eq(p.cf_times[k] - p.cf_times[k - 1], cases[i].gap);
                }
                assert_eq(p.now, (14 - 1 - (cases[i].bs ? (14 - 1) / cases[i].bs : 0)) * cases[i].gap);
        }
}

static void test_sn_wrap_and_wrong_sn(void) {
        TgIsotpConfig c;
        _cleanup_(tg_isotp_freep) TgIsotp *e = NULL, *r = NULL;
        _cleanup_free_ uint8_t *msg = pattern(200, 4);
        TgCanFrame f;
        Seen seen = {};

        /* the sender's SNs: 1…F, 0, 1, … */
        tg_isotp_config_init(&c, 0x7E0, 0x7E8, false);
        e = engine(&c, NULL);
        assert_ok(tg_isotp_send(e, msg, 200));
        (void) poll_one(e, 0);
        assert_eq(tg_isotp_feed(e, &F(0x7E8, 0x30, 0, 0), 0), 1);
        for (unsigned k = 1; k <= 28; k++) {
                f = poll_one(e, 0);
                assert_eq(f.data[0], 0x20 | (k & 0xF));
        }
        assert_se(!tg_isotp_tx_busy(e));

        /* the receiver: SN 2 after the FF is wrong */
        tg_isotp_config_init(&c, 0x7E8, 0x7E0, false);
        r = engine(&c, &seen);
        assert_eq(tg_isotp_feed(r, &F(0x7E0, 0x10, 0x20, 1, 2, 3, 4, 5, 6), 0), 1);
        (void) poll_one(r, 0);
        assert_eq(tg_isotp_feed(r, &F(0x7E0, 0x22, 1, 2, 3, 4, 5, 6, 7), 0), 1);
        assert_eq(seen.rx_errors, 1u);
        assert_eq(seen.last_rx_error, TG_ISOTP_ERR_WRONG_SN);
        assert_se(!tg_isotp_rx_progress(r, NULL, NULL));
        /* a repeated SN (0x21 twice) too */
        assert_eq(tg_isotp_feed(r, &F(0x7E0, 0x10, 0x20, 1, 2, 3, 4, 5, 6), 0), 1);
        (void) poll_one(r, 0);
        assert_eq(tg_isotp_feed(r, &F(0x7E0, 0x21, 1, 2, 3, 4, 5, 6, 7), 0), 1);
        assert_eq(tg_isotp_feed(r, &F(0x7E0, 0x21, 1, 2, 3, 4, 5, 6, 7), 0), 1);
        assert_eq(seen.rx_errors, 2u);
        assert_eq(seen.last_rx_error, TG_ISOTP_ERR_WRONG_SN);
        /* a short CF that is not the last one is ignored, not taken */
        assert_eq(tg_isotp_feed(r, &F(0x7E0, 0x10, 0x20, 1, 2, 3, 4, 5, 6), 0), 1);
        assert_eq(tg_isotp_feed(r, &F(0x7E0, 0x21, 1, 2, 3), 0), -EBADMSG);
        /* an SF in the middle: the reception is dropped, the SF delivered */
        assert_eq(tg_isotp_feed(r, &F(0x7E0, 0x01, 0x3E), 0), 1);
        assert_eq(seen.rx_errors, 3u);
        assert_eq(seen.last_rx_error, TG_ISOTP_ERR_UNEXPECTED);
        assert_eq(seen.rx_done, 1u);
        assert_eq(seen.len, 1u);
        free(seen.data);
        seen.data = NULL;
        /* an FF in the middle: dropped, the new one runs */
        assert_eq(tg_isotp_feed(r, &F(0x7E0, 0x10, 0x20, 1, 2, 3, 4, 5, 6), 0), 1);
        assert_eq(tg_isotp_feed(r, &F(0x7E0, 0x10, 0x09, 1, 2, 3, 4, 5, 6), 0), 1);
        assert_eq(seen.rx_errors, 4u);
        assert_eq(seen.last_rx_error, TG_ISOTP_ERR_UNEXPECTED);
        assert_eq(tg_isotp_feed(r, &F(0x7E0, 0x21, 7, 8, 9), 0), 1);
        assert_eq(seen.rx_done, 2u);
        assert_eq(seen.len, 9u);
        free(seen.data);
}

static void test_timeouts(void) {
        TgIsotpConfig c;
        _cleanup_(tg_isotp_freep) TgIsotp *e = NULL, *r = NULL;
        _cleanup_free_ uint8_t *msg = pattern(100, 5);
        Seen se = {}, sr = {};
        TgCanFrame f;

        /* N_Bs: no FC after the FF */
        tg_isotp_config_init(&c, 0x7E0, 0x7E8, false);
        c.n_bs_usec = 250 * MS;
        e = engine(&c, &se);
        assert_ok(tg_isotp_send(e, msg, 100));
        (void) poll_one(e, 1000);
        assert_eq(poll_none(e, 1000 + 249 * MS), 1000 + 250 * MS);
        assert_eq(se.tx_errors, 0u);
        assert_eq(poll_none(e, 1000 + 250 * MS), TG_ISOTP_NO_DEADLINE);
        assert_eq(se.tx_errors, 1u);
        assert_eq(se.last_tx_error, TG_ISOTP_ERR_TIMEOUT_BS);
        assert_eq(tg_isotp_tx_result(e), TG_ISOTP_ERR_TIMEOUT_BS);
        assert_se(!tg_isotp_tx_busy(e));
        /* N_Bs after a block too: BS 2, no second FC */
        assert_ok(tg_isotp_send(e, msg, 100));
        (void) poll_one(e, 0);
        assert_eq(tg_isotp_feed(e, &F(0x7E8, 0x30, 2, 0), 0), 1);
        (void) poll_one(e, 0);
        (void) poll_one(e, 0);
        assert_eq(poll_none(e, 0), 250 * MS);
        assert_eq(poll_none(e, 250 * MS), TG_ISOTP_NO_DEADLINE);
        assert_eq(se.last_tx_error, TG_ISOTP_ERR_TIMEOUT_BS);

        /* N_Cr: the CFs stop coming (default 1 s) */
        tg_isotp_config_init(&c, 0x7E8, 0x7E0, false);
        r = engine(&c, &sr);
        assert_eq(tg_isotp_feed(r, &F(0x7E0, 0x10, 0x20, 1, 2, 3, 4, 5, 6), 0), 1);
        f = poll_one(r, 5 * MS);
        EXPECT(&f, 0x7E8, 0x30, 0, 0);
        assert_eq(poll_none(r, 5 * MS), 1005 * MS);
        assert_eq(tg_isotp_feed(r, &F(0x7E0, 0x21, 1, 2, 3, 4, 5, 6, 7), 500 * MS), 1);
        assert_eq(poll_none(r, 600 * MS), 1500 * MS);
        assert_eq(poll_none(r, 1500 * MS), TG_ISOTP_NO_DEADLINE);
        assert_eq(sr.rx_errors, 1u);
        assert_eq(sr.last_rx_error, TG_ISOTP_ERR_TIMEOUT_CR);
        assert_se(!tg_isotp_rx_progress(r, NULL, NULL));
        /* a late CF is ignored */
        assert_eq(tg_isotp_feed(r, &F(0x7E0, 0x22, 1, 2, 3, 4, 5, 6, 7), 1600 * MS), 0);
        assert_eq(tg_isotp_take_rx_error(r), TG_ISOTP_ERR_TIMEOUT_CR);
        assert_eq(tg_isotp_take_rx_error(r), TG_ISOTP_OK);
}

static void test_wait_frames(void) {
        TgIsotpConfig c;
        _cleanup_(tg_isotp_freep) TgIsotp *e = NULL;
        _cleanup_free_ uint8_t *msg = pattern(30, 6);
        Seen se = {};
        TgCanFrame f;

        tg_isotp_config_init(&c, 0x7E0, 0x7E8, false);
        c.max_wft = 3;
        e = engine(&c, &se);
        assert_ok(tg_isotp_send(e, msg, 30));
        (void) poll_one(e, 0);
        /* each WAIT restarts N_Bs */
        for (unsigned k = 1; k <= 3; k++) {
                assert_eq(tg_isotp_feed(e, &F(0x7E8, 0x31, 0, 0), k * 900 * MS), 1);
                assert_eq(poll_none(e, k * 900 * MS), k * 900 * MS + 1000 * MS);
        }
        assert_eq(tg_isotp_feed(e, &F(0x7E8, 0x30, 0, 0), 3000 * MS), 1);
        for (unsigned k = 0; k < 4; k++)
                f = poll_one(e, 3000 * MS);
        assert_eq(f.data[0], 0x24);
        assert_eq(se.tx_done, 1u);

        /* one WAIT too many */
        assert_ok(tg_isotp_send(e, msg, 30));
        (void) poll_one(e, 0);
        for (unsigned k = 1; k <= 4; k++)
                assert_eq(tg_isotp_feed(e, &F(0x7E8, 0x31, 0, 0), k), 1);
        assert_eq(se.tx_errors, 1u);
        assert_eq(se.last_tx_error, TG_ISOTP_ERR_WFT_OVRN);

        /* a reserved flow status */
        assert_ok(tg_isotp_send(e, msg, 30));
        (void) poll_one(e, 0);
        assert_eq(tg_isotp_feed(e, &F(0x7E8, 0x33, 0, 0), 0), 1);
        assert_eq(se.last_tx_error, TG_ISOTP_ERR_INVALID_FS);
        /* an FC when nothing waits for one: ignored */
        assert_eq(tg_isotp_feed(e, &F(0x7E8, 0x30, 0, 0), 0), 0);
        /* an FC too short */
        assert_ok(tg_isotp_send(e, msg, 30));
        (void) poll_one(e, 0);
        assert_eq(tg_isotp_feed(e, &F(0x7E8, 0x30, 0), 0), -EBADMSG);
        assert_se(tg_isotp_tx_busy(e));
}

static void test_overflow(void) {
        TgIsotpConfig ca, cb;
        _cleanup_(tg_isotp_freep) TgIsotp *a = NULL, *b = NULL;
        _cleanup_free_ uint8_t *msg = pattern(5000, 7);
        Seen sa = {}, sb = {};
        TgCanFrame f;

        pair_configs(&ca, &cb, false);
        cb.max_rx = 4095;
        a = engine(&ca, &sa);
        b = engine(&cb, &sb);
        assert_ok(tg_isotp_send(a, msg, 4096));
        f = poll_one(a, 0);
        assert_eq(f.len, 8);
        assert_memeq(f.data, ((const uint8_t[]) { 0x10, 0x00, 0x00, 0x00, 0x10, 0x00 }), 6);
        assert_eq(tg_isotp_feed(b, &f, 0), 1);
        assert_eq(sb.rx_errors, 1u);
        assert_eq(sb.last_rx_error, TG_ISOTP_ERR_TOO_LARGE);
        f = poll_one(b, 0);
        EXPECT(&f, 0x7E8, 0x32, 0x00, 0x00);
        assert_eq(tg_isotp_feed(a, &f, 0), 1);
        assert_eq(sa.tx_errors, 1u);
        assert_eq(sa.last_tx_error, TG_ISOTP_ERR_OVERFLOW);
        assert_se(!tg_isotp_tx_busy(a));
        /* 4095 fits */
        round_trip(&ca, &cb, 4095);

        /* the default limit: 1 MiB; an FF announcing 4 GiB - 1 is refused */
        {
                _cleanup_(tg_isotp_freep) TgIsotp *r = NULL;
                TgCanFrame ff = F(0x7E0, 0x10, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0);
                TgIsotpCounters n;

                pair_configs(&ca, &cb, false);
                r = engine(&cb, &sb);
                assert_eq(tg_isotp_feed(r, &ff, 0), 1);
                assert_eq(sb.last_rx_error, TG_ISOTP_ERR_TOO_LARGE);
                f = poll_one(r, 0);
                EXPECT(&f, 0x7E8, 0x32, 0x00, 0x00);
                tg_isotp_counters(r, &n);
                assert_eq(n.rx_errors, 1u);
        }
}

/* Callback-less mode: one slot. */
static void test_recv_slot(void) {
        TgIsotpConfig c;
        _cleanup_(tg_isotp_freep) TgIsotp *e = NULL;
        TgIsotpCounters n;
        uint8_t *data;
        size_t len;

        tg_isotp_config_init(&c, 0x7E0, 0x7E8, false);
        e = engine(&c, NULL);
        assert_eq(tg_isotp_feed(e, &F(0x7E8, 0x01, 0xAA), 0), 1);
        assert_eq(tg_isotp_feed(e, &F(0x7E8, 0x01, 0xBB), 0), 1);
        assert_ok(tg_isotp_recv(e, &data, &len));
        assert_eq(data[0], 0xBB);
        free(data);
        tg_isotp_counters(e, &n);
        assert_eq(n.rx_messages, 2u);
        assert_eq(n.dropped, 1u);
}

/* ---- over the hub ---- */

static uint64_t mono_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static TgIsotpSocket *hub_socket(const char *spec, const TgIsotpConfig *c, TgCanBus **ret_bus) {
        TgIsotpSocket *s = NULL;
        TgCanOptions o = { .fd = c->fd, .filters = &c->rx_id, .n_filters = 1 };

        assert_ok(tg_can_open(spec, &o, ret_bus));
        assert_ok(tg_isotp_socket_new(*ret_bus, c, &s));
        return s;
}

/* The receiver in a child process (its own bus member); the parent sends.
 * Returns the µs from the start of sending until the receiver's one-byte
 * acknowledgement is back. */
static uint64_t hub_transfer(const char *spec, const TgIsotpConfig *ca, const TgIsotpConfig *cb, size_t len) {
        _cleanup_free_ uint8_t *msg = pattern(len, 11);
        int ready[2], status;
        uint64_t t0, t1;
        char c;
        pid_t pid;

        assert_se(pipe(ready) == 0);
        pid = fork();
        assert_se(pid >= 0);
        if (pid == 0) {
                TgCanBus *bus = NULL;
                TgIsotpSocket *s = hub_socket(spec, cb, &bus);
                uint8_t *data = NULL, ok = 1;
                size_t got = 0;

                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                assert_se(write(ready[1], "r", 1) == 1);
                assert_ok(tg_isotp_socket_recv_wait(s, &data, &got, 30 * S_));
                if (got != len || memcmp(data, msg, len) != 0)
                        ok = 0;
                /* answer with a short acknowledgement, as a UDS server would */
                assert_ok(tg_isotp_socket_send_wait(s, &ok, 1, 5 * S_));
                free(data);
                tg_isotp_socket_free(s);
                tg_can_close(bus);
                _exit(ok ? 0 : 3);
        }
        assert_se(read(ready[0], &c, 1) == 1);
        close(ready[0]);
        close(ready[1]);
        usleep(20000); /* the child's connection is accepted by the hub */
        {
                TgCanBus *bus = NULL;
                TgIsotpSocket *s = hub_socket(spec, ca, &bus);
                uint8_t *ack = NULL;
                size_t ack_len = 0;

                t0 = mono_usec();
                assert_ok(tg_isotp_socket_send_wait(s, msg, len, 60 * S_));
                /* the time until the receiver has it all: its acknowledgement (one SF) is back */
                assert_ok(tg_isotp_socket_recv_wait(s, &ack, &ack_len, 10 * S_));
                t1 = mono_usec();
                assert_eq(ack_len, 1u);
                assert_eq(ack[0], 1);
                free(ack);
                tg_isotp_socket_free(s);
                tg_can_close(bus);
        }
        assert_se(waitpid(pid, &status, 0) == pid);
        assert_se(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        return t1 - t0;
}

static void test_hub_end_to_end(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        TgIsotpConfig ca, cb;
        TgTestHub hub;

        if (!tg_test_hub_start(&hub, dir, "bus", NULL))
                return;
        /* The unpaced hub delivers as fast as the sender writes and drops
         * what a member's socket cannot hold (a receive overrun): the
         * receiver's BS keeps the bursts short, as flow control is for. */
        pair_configs(&ca, &cb, false);
        cb.bs = 8;
        hub_transfer(hub.spec, &ca, &cb, 4095);
        ca.pad = cb.pad = true;
        cb.bs = 2;
        cb.stmin = 0xF1;
        hub_transfer(hub.spec, &ca, &cb, 4095);
        pair_configs(&ca, &cb, true);
        cb.bs = 8;
        hub_transfer(hub.spec, &ca, &cb, 100000);
        tg_test_hub_stop(&hub);
}

/* Transfers over the paced hub: they complete, and never faster than the
 * bus model (tools/can-hub/can-wire.h) allows for their consecutive frames
 * alone. Load on the machine can only slow them, so the check holds on any
 * machine; the goodput figures themselves are tests/bench/diag-bench's. */
static void hub_paced_case(const char *dir, const char *hub_arg, bool fd, uint8_t bs, size_t len) {
        TgIsotpConfig ca, cb;
        TgTestHub hub;
        double rate, theory;
        CanWireBits cf = fd ? can_wire_fd_bits(false, 64, true) : can_wire_classic_bits(false, 8);
        uint64_t bitrate = fd ? 2000000 : 500000;

        if (!tg_test_hub_start(&hub, dir, "bus", hub_arg))
                return;
        pair_configs(&ca, &cb, fd);
        ca.pad = cb.pad = true;
        cb.bs = bs;
        rate = (double) len / ((double) hub_transfer(hub.spec, &ca, &cb, len) / 1e6);
        theory = (fd ? 63.0 : 7.0) * 1e9 / (double) can_wire_ns(cf, bitrate, bitrate);
        fprintf(stderr, "  %s, %zu bytes, BS %u: %.0f B/s, the consecutive frames alone allow %.0f B/s\n",
                hub_arg, len, bs, rate, theory);
        assert_se(rate <= theory);
        tg_test_hub_stop(&hub);
}

static void test_hub_paced(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();

        hub_paced_case(dir, "--bitrate=500000", false, 0, 4095);
        hub_paced_case(dir, "--bitrate=500000", false, 8, 4095);
        hub_paced_case(dir, "--bitrate=2000000", true, 0, 100000);
}

/* Both engines on one sd-event loop, each on its own bus member. */
typedef struct Loop {
        sd_event *event;
        Seen a, b;
        size_t want;
} Loop;

static void on_loop_event(TgIsotp *e, const TgIsotpEvent *ev, void *userdata) {
        Loop *l = userdata;
        Seen *seen = ev->type == TG_ISOTP_RX_DONE || ev->type == TG_ISOTP_RX_ERROR ? &l->b : &l->a;

        on_event(e, ev, seen);
        if (ev->type != TG_ISOTP_TX_DONE)
                (void) sd_event_exit(l->event, 0);
}

static void loop_transfer(const char *spec, bool fd, size_t len) {
        TgIsotpConfig ca, cb;
        TgCanBus *bus_a = NULL, *bus_b = NULL;
        TgIsotpSocket *a, *b;
        _cleanup_free_ uint8_t *msg = pattern(len, 13);
        Loop l = { .want = len };

        pair_configs(&ca, &cb, fd);
        cb.bs = 8;
        a = hub_socket(spec, &ca, &bus_a);
        b = hub_socket(spec, &cb, &bus_b);
        assert_ok(sd_event_new(&l.event));
        tg_isotp_set_callback(tg_isotp_socket_engine(a), on_loop_event, &l);
        tg_isotp_set_callback(tg_isotp_socket_engine(b), on_loop_event, &l);
        assert_ok(tg_isotp_socket_attach_event(a, l.event, 0));
        assert_ok(tg_isotp_socket_attach_event(b, l.event, 0));
        assert_eq(tg_isotp_socket_attach_event(b, l.event, 0), -EBUSY);
        usleep(20000); /* both members accepted by the hub */
        assert_ok(tg_isotp_socket_send(a, msg, len));
        assert_ok(sd_event_loop(l.event));
        assert_eq(l.a.tx_errors, 0u);
        assert_eq(l.b.rx_errors, 0u);
        assert_eq(l.a.tx_done, 1u);
        assert_eq(l.b.rx_done, 1u);
        assert_eq(l.b.len, len);
        assert_memeq(l.b.data, msg, len);
        assert_eq(tg_isotp_socket_error(a), 0);
        free(l.b.data);
        tg_isotp_socket_free(a);
        tg_isotp_socket_free(b);
        tg_can_close(bus_a);
        tg_can_close(bus_b);
        sd_event_unref(l.event);
}

static void test_hub_sd_event(void) {
        _cleanup_tmpdir_ char *dir = tg_test_mkdtemp();
        TgTestHub hub;

        if (!tg_test_hub_start(&hub, dir, "bus", NULL))
                return;
        loop_transfer(hub.spec, false, 4095);
        loop_transfer(hub.spec, true, 100000);
        tg_test_hub_stop(&hub);
        /* paced: the sender meets a full socket (EAGAIN, then EPOLLOUT) */
        if (!tg_test_hub_start(&hub, dir, "bus", "--bitrate=1000000"))
                return;
        loop_transfer(hub.spec, false, 2000);
        tg_test_hub_stop(&hub);
}

static void test_kernel_open(void) {
        TgIsotpConfig c;
        int fd;

        tg_isotp_config_init(&c, 0x7E0, 0x7E8, false);
        fd = tg_isotp_kernel_open("can0", &c);
        /* no CAN_ISOTP (or no can0) here; where there is, it is an fd */
        if (fd >= 0)
                close(fd);
        else
                assert_se(fd == -EAFNOSUPPORT || fd == -ENODEV);
}

TG_TEST_MAIN(TEST(config), TEST(sf_bytes), TEST(ff_cf_bytes), TEST(extended_addressing), TEST(fd_sf_escape),
             TEST(fd_ff_escape), TEST(round_trip_classic), TEST(round_trip_fd), TEST(bs_stmin),
             TEST(sn_wrap_and_wrong_sn), TEST(timeouts), TEST(wait_frames), TEST(overflow), TEST(recv_slot),
             TEST(hub_end_to_end), TEST(hub_paced), TEST(hub_sd_event), TEST(kernel_open))
