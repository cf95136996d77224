/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * One direction of an emulated link, as a pure model: no I/O, no clock of its
 * own. The caller hands it packets with their arrival time and asks which
 * packets are due at a given time; everything is in nanoseconds of
 * CLOCK_MONOTONIC (any monotonic time base works, which is what the unit test
 * relies on).
 *
 * The model is a router's output port followed by a wire:
 *
 *   arrival ─▶ [cut?] ─▶ [drop-tail queue, `queue` packets] ─▶ serialiser at
 *   `rate` bit/s ─▶ [Bernoulli loss] ─▶ propagation `delay` ± `jitter` ─▶ due
 *
 * - Serialisation: a packet starts when the previous one has finished (or at
 *   its arrival, whichever is later) and takes (len + overhead) * 8 / rate.
 *   rate 0 means "infinitely fast": no serialisation, no queue.
 * - Queue: the packets that have arrived and not finished serialising (the
 *   one being sent included). An arrival that finds `queue` of them is
 *   dropped (drop-tail), as a router's interface queue does.
 * - Loss: decided per packet with a seeded PRNG. A lost packet still takes
 *   its place in the queue and its time on the link (the radio sent it, it
 *   did not arrive); it is discarded when it would have been delivered.
 * - Delay: the packet is due `delay` after it finished serialising, plus a
 *   uniform sample in [-jitter, +jitter]. Packets never overtake each other:
 *   a packet is never due before the one ahead of it (FIFO release).
 * - Cut: while cut, arrivals are dropped; cutting also drops whatever is in
 *   the queue and on the wire (a cut link loses what is in flight). A cut can
 *   end by itself after a duration, and can be armed to start after a given
 *   number of further bytes has been delivered.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LINK_NSEC_INFINITY UINT64_MAX
/* Hard cap on packets held by one direction (queued + on the wire), whatever
 * the parameters: bounds memory if delay × rate is huge and rate is 0. */
#define LINK_MAX_HELD 65536u

typedef struct LinkPacket {
        uint64_t tx_done;  /* end of serialisation */
        uint64_t due;      /* when it leaves the wire */
        uint32_t len;
        bool lost;
        uint8_t data[];    /* LinkPool.packet_size bytes */
} LinkPacket;

/* Free list of fixed-size packet buffers, shared by both directions. */
typedef struct LinkPool {
        size_t packet_size; /* largest packet it can hold */
        LinkPacket **free;
        size_t n_free, allocated_free;
        size_t n_out; /* handed out and not returned */
} LinkPool;

void link_pool_init(LinkPool *pool, size_t packet_size);
void link_pool_done(LinkPool *pool);
LinkPacket *link_pool_get(LinkPool *pool); /* NULL on OOM */
void link_pool_put(LinkPool *pool, LinkPacket *p);

typedef struct LinkParams {
        uint64_t delay_ns;  /* one way */
        uint64_t jitter_ns; /* uniform ±jitter, packets kept in order */
        double loss;        /* probability 0 … 1 */
        uint64_t rate_bps;  /* bit/s, 0 = unlimited */
        uint32_t overhead;  /* bytes added to each packet for serialisation (L2 framing) */
        uint32_t queue;     /* packets waiting for or in serialisation, ≥ 1 */
        uint64_t queue_ns;  /* if > 0: queue = this long at the rate, in full-size
                             * (LINK_QUEUE_PACKET_SIZE) packets, at least LINK_QUEUE_MIN */
} LinkParams;

#define LINK_QUEUE_PACKET_SIZE 1500u
#define LINK_QUEUE_MIN 10u
#define LINK_QUEUE_UNLIMITED_RATE 1000u /* queue=DURATION with rate 0: nothing ever waits anyway */

typedef struct LinkCounters {
        uint64_t rx_packets, rx_bytes;     /* offered to the link */
        uint64_t tx_packets, tx_bytes;     /* delivered */
        uint64_t drop_loss, drop_queue, drop_cut, drop_other;
        uint32_t queue_max;                /* highest queue occupancy seen */
} LinkCounters;

typedef enum LinkVerdict {
        LINK_QUEUED,
        LINK_DROP_CUT,
        LINK_DROP_QUEUE,
        LINK_DROP_OTHER, /* LINK_MAX_HELD reached */
} LinkVerdict;

typedef struct LinkDir {
        LinkParams p;
        LinkCounters c;
        uint64_t rng[4];

        /* FIFO of held packets; head/tail/ser count up forever, index & (cap-1). */
        LinkPacket **ring;
        size_t cap;
        uint64_t head, tail;
        uint64_t ser;         /* first packet that has not finished serialising */
        uint64_t busy_until;  /* serialiser free from */
        uint64_t last_due;

        bool cut;
        uint64_t cut_until;   /* LINK_NSEC_INFINITY: until restored */
        /* Armed cut: once `arm_bytes` more bytes have been delivered, cut for arm_for_ns. */
        bool armed;
        uint64_t arm_bytes, arm_for_ns;
} LinkDir;

int link_dir_init(LinkDir *d, const LinkParams *p, uint64_t seed);
/* Returns every held packet to the pool. */
void link_dir_done(LinkDir *d, LinkPool *pool);
void link_dir_seed(LinkDir *d, uint64_t seed);
/* New parameters apply to packets that arrive from now on. */
void link_dir_set_params(LinkDir *d, const LinkParams *p);

/* Offer a packet (p->len set) that arrived at `now`. On LINK_QUEUED the model
 * owns it; otherwise the caller still does (and usually returns it to the pool). */
LinkVerdict link_dir_enqueue(LinkDir *d, uint64_t now, LinkPacket *p);

/* The next packet due at or before `now` that is to be delivered, removed
 * from the model and counted as delivered; lost packets that come due on the
 * way are returned to the pool. NULL if none is due. May start an armed cut. */
LinkPacket *link_dir_pop_due(LinkDir *d, uint64_t now, LinkPool *pool);
/* When the model next needs attention: the head's due time or the end of a
 * timed cut; LINK_NSEC_INFINITY if never. */
uint64_t link_dir_next_event(const LinkDir *d);
/* Ends a timed cut that is over (call with the current time before enqueueing). */
void link_dir_tick(LinkDir *d, uint64_t now);

/* Cut now, for `for_ns` (LINK_NSEC_INFINITY = until restored): drops what is held. */
void link_dir_cut(LinkDir *d, uint64_t now, uint64_t for_ns, LinkPool *pool);
/* Cut once `bytes` more bytes have been delivered, for `for_ns`. */
void link_dir_arm_cut(LinkDir *d, uint64_t bytes, uint64_t for_ns);
void link_dir_restore(LinkDir *d);

/* Packets currently waiting for or in serialisation, and all held packets. */
uint32_t link_dir_queued(LinkDir *d, uint64_t now);
size_t link_dir_held(const LinkDir *d);

/* Serialisation time of a packet of `len` bytes at the direction's rate. */
uint64_t link_dir_tx_time(const LinkDir *d, size_t len);
