/* SPDX-License-Identifier: MIT */

/*
 * The link model's promises, on a virtual clock: delay and FIFO release,
 * serialisation at the rate, drop-tail queue, Bernoulli loss at the
 * configured rate and reproducible from the seed, jitter never reorders,
 * cut (now, timed, armed after bytes) drops what is in flight, counters add up.
 */

#include "link-model.h"
#include "tg-test.h"

#define MS UINT64_C(1000000)

static LinkPool pool;

static LinkPacket *pkt(size_t len) {
        LinkPacket *p = link_pool_get(&pool);

        assert_se(p);
        assert_le(len, pool.packet_size);
        p->len = (uint32_t) len;
        memset(p->data, 0xab, len);
        return p;
}

static LinkVerdict offer(LinkDir *d, uint64_t now, size_t len) {
        LinkPacket *p = pkt(len);
        LinkVerdict v = link_dir_enqueue(d, now, p);

        if (v != LINK_QUEUED)
                link_pool_put(&pool, p);
        return v;
}

/* Pop everything due at `now`; returns how many packets came out. */
static unsigned drain(LinkDir *d, uint64_t now) {
        LinkPacket *p;
        unsigned n = 0;

        while ((p = link_dir_pop_due(d, now, &pool))) {
                link_pool_put(&pool, p);
                n++;
        }
        return n;
}

/* Every packet offered is delivered, dropped, or still held (lost ones held are counted as loss already). */
static void assert_conserved(LinkDir *d) {
        const LinkCounters *c = &d->c;
        uint64_t held_lost = 0;

        for (uint64_t i = d->head; i < d->tail; i++)
                held_lost += d->ring[i & (d->cap - 1)]->lost;
        assert_eq(c->rx_packets,
                  c->tx_packets + c->drop_loss + c->drop_queue + c->drop_cut + c->drop_other + link_dir_held(d) - held_lost);
}

static void setup(void) {
        link_pool_init(&pool, 1500);
}

static void teardown(LinkDir *d) {
        link_dir_done(d, &pool);
        assert_eq(pool.n_out, (size_t) 0);
        link_pool_done(&pool);
}

static void test_delay_fifo(void) {
        LinkDir d;
        LinkParams p = { .delay_ns = 15 * MS, .queue = 100 };

        setup();
        assert_ok(link_dir_init(&d, &p, 1));
        assert_eq(link_dir_next_event(&d), LINK_NSEC_INFINITY);
        assert_eq(offer(&d, 0, 100), LINK_QUEUED);
        assert_eq(offer(&d, 1 * MS, 1500), LINK_QUEUED);
        assert_eq(link_dir_next_event(&d), 15 * MS);
        assert_eq(drain(&d, 15 * MS - 1), 0u);
        assert_eq(drain(&d, 15 * MS), 1u);
        assert_eq(link_dir_next_event(&d), 16 * MS);
        assert_eq(drain(&d, 100 * MS), 1u);
        assert_eq(d.c.tx_packets, UINT64_C(2));
        assert_eq(d.c.tx_bytes, UINT64_C(1600));
        assert_conserved(&d);

        /* A lower delay set later never lets a packet overtake one sent before. */
        assert_eq(offer(&d, 200 * MS, 100), LINK_QUEUED);
        p.delay_ns = 1 * MS;
        link_dir_set_params(&d, &p);
        assert_eq(offer(&d, 201 * MS, 100), LINK_QUEUED);
        assert_eq(drain(&d, 214 * MS), 0u); /* the second is held behind the first */
        assert_eq(drain(&d, 215 * MS), 2u);
        teardown(&d);
}

static void test_rate_queue(void) {
        LinkDir d;
        /* 1250 bytes at 1 Mbit/s = 10 ms each. */
        LinkParams p = { .delay_ns = 5 * MS, .rate_bps = 1000000, .queue = 4 };

        setup();
        assert_ok(link_dir_init(&d, &p, 1));
        assert_eq(link_dir_tx_time(&d, 1250), 10 * MS);
        for (unsigned i = 0; i < 10; i++)
                assert_eq(offer(&d, 0, 1250), i < 4 ? LINK_QUEUED : LINK_DROP_QUEUE);
        assert_eq(d.c.drop_queue, UINT64_C(6));
        assert_eq(d.c.queue_max, 4u);
        assert_eq(link_dir_queued(&d, 0), 4u);
        /* At 10 ms the first has left the queue (it is on the wire): room for one. */
        assert_eq(link_dir_queued(&d, 10 * MS), 3u);
        assert_eq(offer(&d, 10 * MS, 1250), LINK_QUEUED);
        assert_eq(offer(&d, 10 * MS, 1250), LINK_DROP_QUEUE);
        /* Due: serialised back to back, then the propagation delay. */
        assert_eq(link_dir_next_event(&d), 15 * MS);
        assert_eq(drain(&d, 15 * MS), 1u);
        assert_eq(drain(&d, 25 * MS - 1), 0u);
        assert_eq(drain(&d, 25 * MS), 1u);
        assert_eq(drain(&d, 45 * MS), 2u);
        assert_eq(link_dir_next_event(&d), 55 * MS);
        /* The late one started after the 4th finished (40 ms), done at 50, due at 55. */
        assert_eq(drain(&d, 55 * MS), 1u);
        assert_conserved(&d);

        /* A queue given as time at the rate, in full-size packets, with a floor. */
        p.queue_ns = 100 * MS;
        p.rate_bps = 20000000;
        link_dir_set_params(&d, &p);
        assert_eq(d.p.queue, 167u);
        p.rate_bps = 1000000;
        link_dir_set_params(&d, &p);
        assert_eq(d.p.queue, LINK_QUEUE_MIN);
        p.queue_ns = 0;

        /* Overhead counts for serialisation. */
        p.overhead = 250;
        link_dir_set_params(&d, &p);
        assert_eq(link_dir_tx_time(&d, 1000), 10 * MS);
        /* Rate 0: no serialisation, no queue limit reached. */
        p.rate_bps = 0;
        p.queue = 1;
        link_dir_set_params(&d, &p);
        for (unsigned i = 0; i < 50; i++)
                assert_eq(offer(&d, 2000 * MS, 1500), LINK_QUEUED);
        assert_eq(drain(&d, 2005 * MS), 50u);
        teardown(&d);
}

static void test_loss(void) {
        LinkDir d, d2;
        LinkParams p = { .loss = 0.005, .queue = 100 };
        const unsigned n = 200000;
        uint64_t pattern1 = 0, pattern2 = 0;

        setup();
        assert_ok(link_dir_init(&d, &p, 42));
        assert_ok(link_dir_init(&d2, &p, 42));
        for (unsigned i = 0; i < n; i++) {
                uint64_t t = (uint64_t) i * 1000;
                assert_eq(offer(&d, t, 100), LINK_QUEUED);
                assert_eq(offer(&d2, t, 100), LINK_QUEUED);
                unsigned a = drain(&d, t), b = drain(&d2, t);
                assert_eq(a, b); /* same seed, same losses */
                pattern1 = pattern1 * 31 + a;
                pattern2 = pattern2 * 31 + b;
        }
        assert_eq(pattern1, pattern2);
        /* 0.5 % of 200 000 = 1000, σ ≈ 31.5: allow ±5σ. */
        assert_le(d.c.drop_loss, UINT64_C(1158));
        assert_le(UINT64_C(842), d.c.drop_loss);
        assert_eq(d.c.tx_packets + d.c.drop_loss, (uint64_t) n);
        assert_conserved(&d);
        link_dir_done(&d2, &pool);

        /* Another seed, another pattern. */
        assert_ok(link_dir_init(&d2, &p, 43));
        uint64_t lost_differently = 0;
        d.c = (LinkCounters) {};
        link_dir_seed(&d, 42);
        for (unsigned i = 0; i < 10000; i++) {
                uint64_t t = 1000 * MS + i;
                unsigned a, b;
                assert_eq(offer(&d, t, 100), LINK_QUEUED);
                assert_eq(offer(&d2, t, 100), LINK_QUEUED);
                a = drain(&d, t);
                b = drain(&d2, t);
                lost_differently += a != b;
        }
        assert_se(lost_differently > 0);
        link_dir_done(&d2, &pool);

        /* 100 % loss: nothing comes out, everything is counted. */
        p.loss = 1.0;
        link_dir_set_params(&d, &p);
        d.c = (LinkCounters) {};
        for (unsigned i = 0; i < 100; i++)
                assert_eq(offer(&d, 2000 * MS, 100), LINK_QUEUED);
        assert_eq(drain(&d, 2000 * MS), 0u);
        assert_eq(d.c.drop_loss, UINT64_C(100));
        teardown(&d);
}

static void test_jitter_order(void) {
        LinkDir d;
        LinkParams p = { .delay_ns = 10 * MS, .jitter_ns = 5 * MS, .queue = 100 };
        uint64_t last = 0, lo = UINT64_MAX, hi = 0;

        setup();
        assert_ok(link_dir_init(&d, &p, 7));
        for (unsigned i = 0; i < 5000; i++) {
                uint64_t t = (uint64_t) i * 10 * MS; /* far apart: each packet's own jitter shows */
                LinkPacket *q;
                assert_eq(offer(&d, t, 100), LINK_QUEUED);
                q = d.ring[(d.tail - 1) & (d.cap - 1)];
                assert_le(last, q->due);
                last = q->due;
                lo = MIN(lo, q->due - t);
                hi = MAX(hi, q->due - t);
        }
        assert_le(5 * MS, lo);
        assert_le(hi, 15 * MS);
        assert_le(lo, 6 * MS);  /* the whole range is used */
        assert_le(14 * MS, hi);
        drain(&d, UINT64_MAX - 1);

        /* Back to back, jitter must not reorder: due times never decrease. */
        last = 0;
        for (unsigned i = 0; i < 1000; i++) {
                assert_eq(offer(&d, 1000000 * MS + i, 100), LINK_QUEUED);
                LinkPacket *q = d.ring[(d.tail - 1) & (d.cap - 1)];
                assert_le(last, q->due);
                last = q->due;
        }
        assert_conserved(&d);
        teardown(&d);
}

static void test_cut(void) {
        LinkDir d;
        LinkParams p = { .delay_ns = 10 * MS, .queue = 100 };

        setup();
        assert_ok(link_dir_init(&d, &p, 1));
        for (unsigned i = 0; i < 5; i++)
                assert_eq(offer(&d, 0, 1000), LINK_QUEUED);
        link_dir_cut(&d, 1 * MS, LINK_NSEC_INFINITY, &pool);
        assert_eq(d.c.drop_cut, UINT64_C(5)); /* in flight: lost */
        assert_eq(link_dir_held(&d), (size_t) 0);
        assert_eq(offer(&d, 2 * MS, 1000), LINK_DROP_CUT);
        assert_eq(link_dir_next_event(&d), LINK_NSEC_INFINITY);
        link_dir_restore(&d);
        assert_eq(offer(&d, 3 * MS, 1000), LINK_QUEUED);
        assert_eq(drain(&d, 13 * MS), 1u);
        assert_conserved(&d);

        /* Timed cut: next_event wakes the caller when it ends. */
        link_dir_cut(&d, 100 * MS, 50 * MS, &pool);
        assert_eq(link_dir_next_event(&d), 150 * MS);
        assert_eq(offer(&d, 149 * MS, 1000), LINK_DROP_CUT);
        assert_eq(offer(&d, 150 * MS, 1000), LINK_QUEUED);
        assert_se(!d.cut);

        /* Armed cut: passes 3000 bytes, then cuts (the rest in flight is lost). */
        drain(&d, 1000 * MS);
        d.c = (LinkCounters) {};
        link_dir_arm_cut(&d, 3000, LINK_NSEC_INFINITY);
        for (unsigned i = 0; i < 10; i++)
                assert_eq(offer(&d, 1000 * MS, 1000), LINK_QUEUED);
        assert_eq(drain(&d, 2000 * MS), 3u);
        assert_se(d.cut);
        assert_eq(d.c.tx_bytes, UINT64_C(3000));
        assert_eq(d.c.drop_cut, UINT64_C(7));
        assert_conserved(&d);

        /* restore disarms a pending cut. */
        link_dir_restore(&d);
        link_dir_arm_cut(&d, 1, LINK_NSEC_INFINITY);
        link_dir_restore(&d);
        assert_eq(offer(&d, 3000 * MS, 1000), LINK_QUEUED);
        assert_eq(offer(&d, 3000 * MS, 1000), LINK_QUEUED);
        assert_eq(drain(&d, 4000 * MS), 2u);
        assert_se(!d.cut);

        /* A cut armed during a timed cut survives the end of that cut. */
        link_dir_restore(&d);
        drain(&d, 5000 * MS);
        link_dir_cut(&d, 5000 * MS, 10 * MS, &pool);
        link_dir_arm_cut(&d, 1000, LINK_NSEC_INFINITY);
        assert_eq(offer(&d, 5010 * MS, 1000), LINK_QUEUED); /* the timed cut is over */
        assert_se(!d.cut);
        assert_se(d.armed);
        assert_eq(offer(&d, 5010 * MS, 1000), LINK_QUEUED);
        assert_eq(drain(&d, 6000 * MS), 1u); /* the first passes, then the armed cut drops the second */
        assert_se(d.cut);
        teardown(&d);
}

static void test_many_held(void) {
        LinkDir d;
        LinkParams p = { .delay_ns = 1000 * MS, .queue = 10 };
        unsigned accepted = 0;

        setup();
        assert_ok(link_dir_init(&d, &p, 1));
        /* Rate 0, long delay: far more than the initial ring, up to the hard cap. */
        for (unsigned i = 0; i < LINK_MAX_HELD + 100; i++)
                accepted += offer(&d, i, 64) == LINK_QUEUED;
        assert_eq(accepted, LINK_MAX_HELD);
        assert_eq(d.c.drop_other, UINT64_C(100));
        assert_conserved(&d);
        assert_eq(drain(&d, 2000 * MS), LINK_MAX_HELD);
        teardown(&d);
}

TG_TEST_MAIN(TEST(delay_fifo), TEST(rate_queue), TEST(loss), TEST(jitter_order), TEST(cut), TEST(many_held));
