/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "link-model.h"

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* ---- packet pool ---- */

void link_pool_init(LinkPool *pool, size_t packet_size) {
        *pool = (LinkPool) { .packet_size = packet_size };
}

void link_pool_done(LinkPool *pool) {
        for (size_t i = 0; i < pool->n_free; i++)
                free(pool->free[i]);
        free(pool->free);
        *pool = (LinkPool) {};
}

LinkPacket *link_pool_get(LinkPool *pool) {
        LinkPacket *p;

        if (pool->n_free > 0)
                p = pool->free[--pool->n_free];
        else {
                p = malloc(sizeof(LinkPacket) + pool->packet_size);
                if (!p)
                        return NULL;
        }
        pool->n_out++;
        *p = (LinkPacket) {};
        return p;
}

void link_pool_put(LinkPool *pool, LinkPacket *p) {
        if (!p)
                return;
        pool->n_out--;
        if (pool->n_free == pool->allocated_free) {
                size_t n = MAX(pool->allocated_free * 2, (size_t) 64);
                LinkPacket **f = realloc(pool->free, n * sizeof *f);
                if (!f) {
                        free(p);
                        return;
                }
                pool->free = f;
                pool->allocated_free = n;
        }
        pool->free[pool->n_free++] = p;
}

/* ---- PRNG: xoshiro256**, seeded through splitmix64 ---- */

static uint64_t splitmix64(uint64_t *x) {
        uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) {
        return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(uint64_t s[4]) {
        uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = rotl(s[3], 45);
        return result;
}

/* Uniform in [0, 1). */
static double rng_double(uint64_t s[4]) {
        return (double) (rng_next(s) >> 11) * 0x1.0p-53;
}

/* Uniform in [0, n], n < 2^63. */
static uint64_t rng_upto(uint64_t s[4], uint64_t n) {
        /* Modulo bias is below 2^-40 for the jitters we see (< 2^24 ns); fine here. */
        return rng_next(s) % (n + 1);
}

void link_dir_seed(LinkDir *d, uint64_t seed) {
        uint64_t x = seed;

        for (size_t i = 0; i < 4; i++)
                d->rng[i] = splitmix64(&x);
}

/* ---- one direction ---- */

static void sanitize_params(LinkParams *p) {
        if (p->queue_ns > 0) {
                if (p->rate_bps == 0)
                        p->queue = LINK_QUEUE_UNLIMITED_RATE;
                else {
                        double n = ceil((double) p->rate_bps * (double) p->queue_ns / 8e9 / LINK_QUEUE_PACKET_SIZE);
                        p->queue = n > LINK_MAX_HELD ? LINK_MAX_HELD : MAX((uint32_t) n, LINK_QUEUE_MIN);
                }
        }
        if (p->queue == 0)
                p->queue = 1;
        if (!(p->loss >= 0.0)) /* NaN too */
                p->loss = 0.0;
        if (p->loss > 1.0)
                p->loss = 1.0;
}

int link_dir_init(LinkDir *d, const LinkParams *p, uint64_t seed) {
        *d = (LinkDir) { .p = *p, .cut_until = LINK_NSEC_INFINITY };
        sanitize_params(&d->p);
        d->cap = 256;
        d->ring = calloc(d->cap, sizeof *d->ring);
        if (!d->ring)
                return -ENOMEM;
        link_dir_seed(d, seed);
        return 0;
}

static void drop_held(LinkDir *d, LinkPool *pool, uint64_t *counter) {
        for (; d->head < d->tail; d->head++) {
                LinkPacket **slot = &d->ring[d->head & (d->cap - 1)];
                if (counter && !(*slot)->lost) /* a lost one is counted already */
                        (*counter)++;
                link_pool_put(pool, *slot);
                *slot = NULL;
        }
        d->ser = d->head;
}

void link_dir_done(LinkDir *d, LinkPool *pool) {
        if (d->ring)
                drop_held(d, pool, NULL);
        free(d->ring);
        d->ring = NULL;
}

void link_dir_set_params(LinkDir *d, const LinkParams *p) {
        d->p = *p;
        sanitize_params(&d->p);
}

uint64_t link_dir_tx_time(const LinkDir *d, size_t len) {
        if (d->p.rate_bps == 0)
                return 0;
        /* (len + overhead) * 8e9 fits in 64 bits for any len < 2^31. */
        return (((uint64_t) len + d->p.overhead) * UINT64_C(8000000000) + d->p.rate_bps - 1) / d->p.rate_bps;
}

size_t link_dir_held(const LinkDir *d) {
        return (size_t) (d->tail - d->head);
}

uint32_t link_dir_queued(LinkDir *d, uint64_t now) {
        d->ser = MAX(d->ser, d->head);
        while (d->ser < d->tail && d->ring[d->ser & (d->cap - 1)]->tx_done <= now)
                d->ser++;
        return (uint32_t) (d->tail - d->ser);
}

static int ring_grow(LinkDir *d) {
        size_t ncap = d->cap * 2;
        LinkPacket **n;

        if (ncap > LINK_MAX_HELD)
                return -ENOBUFS;
        n = calloc(ncap, sizeof *n);
        if (!n)
                return -ENOMEM;
        for (uint64_t i = d->head; i < d->tail; i++)
                n[i & (ncap - 1)] = d->ring[i & (d->cap - 1)];
        free(d->ring);
        d->ring = n;
        d->cap = ncap;
        return 0;
}

void link_dir_tick(LinkDir *d, uint64_t now) {
        /* A timed cut that is over ends by itself; unlike link_dir_restore() this
         * keeps a cut armed meanwhile ("cut after=…" given during the cut). */
        if (d->cut && d->cut_until != LINK_NSEC_INFINITY && d->cut_until <= now) {
                d->cut = false;
                d->cut_until = LINK_NSEC_INFINITY;
        }
}

LinkVerdict link_dir_enqueue(LinkDir *d, uint64_t now, LinkPacket *p) {
        uint32_t queued;
        uint64_t start, due;

        link_dir_tick(d, now);
        d->c.rx_packets++;
        d->c.rx_bytes += p->len;

        if (d->cut) {
                d->c.drop_cut++;
                return LINK_DROP_CUT;
        }
        queued = link_dir_queued(d, now);
        if (queued >= d->p.queue) {
                d->c.drop_queue++;
                return LINK_DROP_QUEUE;
        }
        if (link_dir_held(d) >= d->cap && ring_grow(d) < 0) {
                d->c.drop_other++;
                return LINK_DROP_OTHER;
        }

        start = MAX(now, d->busy_until);
        p->tx_done = start + link_dir_tx_time(d, p->len);
        d->busy_until = p->tx_done;

        p->lost = d->p.loss > 0.0 && rng_double(d->rng) < d->p.loss;
        if (p->lost)
                d->c.drop_loss++;

        due = p->tx_done + d->p.delay_ns;
        if (d->p.jitter_ns > 0) {
                uint64_t j = rng_upto(d->rng, 2 * d->p.jitter_ns);
                if (j >= d->p.jitter_ns)
                        due += j - d->p.jitter_ns;
                else
                        due -= MIN(d->p.jitter_ns - j, d->p.delay_ns); /* never before tx_done */
        }
        p->due = MAX(due, d->last_due); /* FIFO: never overtakes the one ahead */
        d->last_due = p->due;

        d->ring[d->tail & (d->cap - 1)] = p;
        d->tail++;
        if (p->tx_done > now)
                queued++;
        d->c.queue_max = MAX(d->c.queue_max, queued);
        return LINK_QUEUED;
}

LinkPacket *link_dir_pop_due(LinkDir *d, uint64_t now, LinkPool *pool) {
        link_dir_tick(d, now);

        while (d->head < d->tail) {
                LinkPacket **slot = &d->ring[d->head & (d->cap - 1)], *p = *slot;

                if (p->due > now)
                        return NULL;
                *slot = NULL;
                d->head++;
                if (p->lost) {
                        link_pool_put(pool, p);
                        continue;
                }
                d->c.tx_packets++;
                d->c.tx_bytes += p->len;
                if (d->armed) {
                        if (d->arm_bytes <= p->len) {
                                d->armed = false;
                                link_dir_cut(d, now, d->arm_for_ns, pool);
                        } else
                                d->arm_bytes -= p->len;
                }
                return p;
        }
        return NULL;
}

uint64_t link_dir_next_event(const LinkDir *d) {
        uint64_t t = LINK_NSEC_INFINITY;

        if (d->head < d->tail)
                t = d->ring[d->head & (d->cap - 1)]->due;
        if (d->cut && d->cut_until < t)
                t = d->cut_until;
        return t;
}

void link_dir_cut(LinkDir *d, uint64_t now, uint64_t for_ns, LinkPool *pool) {
        d->cut = true;
        d->cut_until = for_ns == LINK_NSEC_INFINITY || now > LINK_NSEC_INFINITY - for_ns ? LINK_NSEC_INFINITY
                                                                                          : now + for_ns;
        /* What is queued or on the wire never arrives. */
        drop_held(d, pool, &d->c.drop_cut);
        d->busy_until = now;
        d->last_due = 0;
}

void link_dir_arm_cut(LinkDir *d, uint64_t bytes, uint64_t for_ns) {
        d->armed = true;
        d->arm_bytes = bytes > 0 ? bytes : 1;
        d->arm_for_ns = for_ns;
}

void link_dir_restore(LinkDir *d) {
        d->cut = false;
        d->cut_until = LINK_NSEC_INFINITY;
        d->armed = false;
}
