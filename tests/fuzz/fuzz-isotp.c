/* SPDX-License-Identifier: MIT */
/*
 * The ISO-TP engine (lib/tg-isotp.h), fed arbitrary frames.
 *
 * Engine A has a configuration from the input's header; its peer B the
 * mirrored one. Frames A sends go to B and B's go to A, over a perfect
 * simulated bus; the input adds frames of its own to A (as a bus with
 * other talkers and broken peers would), lets time pass, and makes A send
 * messages to B.
 *
 *   0      bit 0 FD, bit 1 extended addressing, bit 2 padding, bits 3-5 TX_DL
 *          (8, 12, …, 64; classic: 8), bit 6 A's FC answers reserved STmin
 *   1      B's BS           2  B's STmin (raw; reserved values → 0)
 *   3      A's BS           4  A's STmin
 *   5-6    A's max_rx - 1 (little endian; FFs over it are refused)
 *   7      max_wft (A)
 *   then records: op, then per op
 *     op & 3 == 0  a frame for A: len index (& 15), data bytes (zeros past
 *                  the input); op bit 2 FD, bit 3 another id, bit 4 no
 *                  extended address byte override
 *     op & 3 == 1  time passes: 1 byte × 977 µs … (and bit 2: × 100)
 *     op & 3 == 2  A sends a message to B: 2 bytes length (& 0x1FFF) + 1
 *     op & 3 == 3  A sends B a message B must refuse (over B's max_rx)
 *
 * Invariants: feed returns 1, 0 or -EBADMSG; every frame out is valid for
 * the bus (a valid length, ≤ TX_DL, the right id, FD flag, address byte);
 * a running reception has done < total ≤ max_rx; a message A completes from
 * a CF has the length its FF announced, from an SF at most the frame's
 * payload; whatever B completes is exactly the message A last sent; the
 * engines settle (poll returns 0) within a bounded number of frames.
 */
#include <linux/can.h>
#include <string.h>

#include "fuzz.h"
#include "tg-isotp.h"

static const uint8_t dls[] = { 8, 12, 16, 20, 24, 32, 48, 64 };
static const uint8_t frame_lens[] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64 };

typedef struct State {
        TgIsotp *a, *b;
        uint8_t *sent;
        size_t sent_len;
        /* A's events */
        unsigned a_rx_done;
        size_t a_rx_len;
        /* B's */
        unsigned b_rx_done;
} State;

static void on_a(TgIsotp *e, const TgIsotpEvent *ev, void *userdata) {
        State *s = userdata;

        (void) e;
        FUZZ_ASSERT((unsigned) ev->error < _TG_ISOTP_ERR_MAX);
        if (ev->type == TG_ISOTP_RX_DONE) {
                s->a_rx_done++;
                s->a_rx_len = ev->len;
                FUZZ_ASSERT(ev->len > 0);
                /* touch every byte: ASan sees a short buffer */
                volatile uint8_t x = 0;
                for (size_t i = 0; i < ev->len; i++)
                        x ^= ev->data[i];
                (void) x;
        } else if (ev->type == TG_ISOTP_TX_DONE)
                FUZZ_ASSERT(ev->error == TG_ISOTP_OK);
        else
                FUZZ_ASSERT(ev->error != TG_ISOTP_OK);
}

static void on_b(TgIsotp *e, const TgIsotpEvent *ev, void *userdata) {
        State *s = userdata;

        (void) e;
        if (ev->type == TG_ISOTP_RX_DONE) {
                s->b_rx_done++;
                FUZZ_ASSERT(s->sent);
                FUZZ_ASSERT(ev->len == s->sent_len);
                FUZZ_ASSERT(memcmp(ev->data, s->sent, ev->len) == 0);
        }
}

static void check_out(const TgIsotpConfig *c, const TgCanFrame *f) {
        FUZZ_ASSERT(tg_can_len_valid(f->len, c->fd));
        FUZZ_ASSERT(f->len <= c->tx_dl);
        FUZZ_ASSERT(f->id == c->tx_id);
        FUZZ_ASSERT(f->fd == c->fd);
        FUZZ_ASSERT(f->len >= 1 + c->ext_addr);
        if (c->ext_addr)
                FUZZ_ASSERT(f->data[0] == c->tx_ext);
}

static void check_rx(const TgIsotp *e) {
        uint32_t done, total;

        if (tg_isotp_rx_progress(e, &done, &total)) {
                FUZZ_ASSERT(done < total);
                FUZZ_ASSERT(total <= tg_isotp_config(e)->max_rx);
        }
}

/* Exchange frames between A and B until both are quiet now. */
static void settle(State *s, uint64_t now) {
        const TgIsotpConfig *ca = tg_isotp_config(s->a), *cb = tg_isotp_config(s->b);

        for (unsigned n = 0; n < 100000; n++) {
                TgCanFrame f;
                bool any = false;
                int r;

                if (tg_isotp_poll(s->a, now, &f, NULL) == 1) {
                        check_out(ca, &f);
                        r = tg_isotp_feed(s->b, &f, now);
                        FUZZ_ASSERT(r == 1 || r == 0); /* A's frames are never malformed */
                        any = true;
                }
                if (tg_isotp_poll(s->b, now, &f, NULL) == 1) {
                        check_out(cb, &f);
                        r = tg_isotp_feed(s->a, &f, now);
                        FUZZ_ASSERT(r == 1 || r == 0 || r == -EBADMSG);
                        any = true;
                }
                check_rx(s->a);
                check_rx(s->b);
                if (!any)
                        return;
        }
        /* without time passing, only a message's worth of CFs can flow */
        FUZZ_ASSERT(!"engines did not settle");
}

static void send_message(State *s, size_t len) {
        uint8_t *m = malloc(len);

        if (!m)
                abort();
        for (size_t i = 0; i < len; i++)
                m[i] = (uint8_t) (i * 31 + len);
        if (tg_isotp_send(s->a, m, len) < 0) {
                free(m); /* busy: B may still complete the running one */
                return;
        }
        free(s->sent);
        s->sent = m;
        s->sent_len = len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        TgIsotpConfig ca, cb;
        State s = {};
        uint64_t now = 0;
        size_t i;

        if (size < 8)
                return 0;
        tg_isotp_config_init(&ca, 0x7E0, 0x7E8, data[0] & 1);
        tg_isotp_config_init(&cb, 0x7E8, 0x7E0, data[0] & 1);
        ca.ext_addr = cb.ext_addr = data[0] & 2;
        ca.tx_ext = cb.rx_ext = 0x55;
        ca.rx_ext = cb.tx_ext = 0xF1;
        ca.pad = cb.pad = data[0] & 4;
        ca.tx_dl = cb.tx_dl = ca.fd ? dls[(data[0] >> 3) & 7] : 8;
        cb.bs = data[1];
        cb.stmin = (data[2] <= 0x7F || (data[2] >= 0xF1 && data[2] <= 0xF9)) ? data[2] : 0;
        ca.bs = data[3];
        ca.stmin = (data[4] <= 0x7F || (data[4] >= 0xF1 && data[4] <= 0xF9)) ? data[4] : 0;
        ca.max_rx = (uint32_t) (data[5] | data[6] << 8) + 1;
        ca.max_wft = data[7];
        cb.max_rx = 1u << 13;
        FUZZ_ASSERT(tg_isotp_new(&ca, &s.a) == 0);
        FUZZ_ASSERT(tg_isotp_new(&cb, &s.b) == 0);
        tg_isotp_set_callback(s.a, on_a, &s);
        tg_isotp_set_callback(s.b, on_b, &s);

        for (i = 8; i < size;) {
                uint8_t op = data[i++];

                switch (op & 3) {
                case 0: {
                        TgCanFrame f = { .id = (op & 8) ? 0x7E1 : 0x7E8, .fd = op & 4 };
                        bool was_active, was_cf;
                        uint32_t done, total;
                        unsigned before = s.a_rx_done;
                        int r;

                        if (i < size)
                                f.len = frame_lens[data[i++] & 15];
                        if (!f.fd && f.len > 8)
                                f.len = 8;
                        for (unsigned k = 0; k < f.len && i < size; k++)
                                f.data[k] = data[i++];
                        if (ca.ext_addr && !(op & 16) && f.len > 0)
                                f.data[0] = ca.rx_ext;
                        was_active = tg_isotp_rx_progress(s.a, &done, &total);
                        {
                                unsigned off = ca.ext_addr ? 1 : 0;
                                was_cf = f.len > off && (f.data[off] >> 4) == 2;
                        }
                        r = tg_isotp_feed(s.a, &f, now);
                        FUZZ_ASSERT(r == 1 || r == 0 || r == -EBADMSG);
                        if (s.a_rx_done != before) {
                                FUZZ_ASSERT(r == 1);
                                FUZZ_ASSERT(s.a_rx_done == before + 1);
                                if (was_cf) {
                                        FUZZ_ASSERT(was_active);
                                        FUZZ_ASSERT(s.a_rx_len == total);
                                } else
                                        FUZZ_ASSERT(s.a_rx_len <= f.len);
                        }
                        check_rx(s.a);
                        break;
                }
                case 1: {
                        uint64_t step = i < size ? data[i++] : 1;
                        now += step * 977 * ((op & 4) ? 100 : 1);
                        break;
                }
                case 2: {
                        size_t len = 1;
                        if (i + 1 < size)
                                len = (size_t) ((data[i] | data[i + 1] << 8) & 0x1FFF) + 1;
                        i += 2;
                        send_message(&s, len);
                        break;
                }
                case 3:
                        send_message(&s, cb.max_rx + 1 + (i < size ? data[i++] : 0));
                        break;
                }
                settle(&s, now);
        }
        /* let every timer run out: both engines end idle (a transmission
         * paced by STmin still running then is aborted) */
        now += 200 * 1000000ULL;
        settle(&s, now);
        tg_isotp_abort_tx(s.a, TG_ISOTP_ERR_ABORTED);
        FUZZ_ASSERT(!tg_isotp_tx_busy(s.a));
        now += 200 * 1000000ULL;
        settle(&s, now);
        FUZZ_ASSERT(!tg_isotp_rx_progress(s.a, NULL, NULL));
        FUZZ_ASSERT(!tg_isotp_rx_progress(s.b, NULL, NULL));
        FUZZ_ASSERT(!tg_isotp_tx_busy(s.a));

        free(s.sent);
        tg_isotp_free(s.a);
        tg_isotp_free(s.b);
        return 0;
}
