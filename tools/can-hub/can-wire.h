/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The bit model of tollgate-canhub's paced bus (docs/can.md, "The wire
 * time"): how long a frame occupies the wire. Header-only so that a
 * benchmark computes its theoretical rate from the very model the hub
 * paces by (tests/bench/diag-bench.c).
 *
 * Classic frames (unchanged since the hub had pacing): (47 + 8·len) bits
 * with an 11-bit id, 20 more with a 29-bit id, plus 20 % (rounded down) for
 * stuff bits, all at the nominal bitrate. 47 = SOF 1 + id 11 + RTR 1 + IDE 1
 * + r0 1 + DLC 4 + CRC 15 + CRC delimiter 1 + ACK slot 1 + ACK delimiter 1
 * + EOF 7 + IFS 3; the 29-bit format adds SRR 1 + id extension 18 + r1 1
 * = 20.
 *
 * CAN FD frames (ISO 11898-1:2015 FD frame format):
 *   arbitration phase, nominal bitrate:
 *     11-bit id: SOF 1 + id 11 + RRS 1 + IDE 1 + FDF 1 + res 1 + BRS 1 = 17
 *     29-bit id: SOF 1 + base id 11 + SRR 1 + IDE 1 + id extension 18
 *                + RRS 1 + FDF 1 + res 1 + BRS 1 = 36
 *   data phase, data bitrate when the frame has BRS (else nominal):
 *     ESI 1 + DLC 4 + data 8·len
 *     + stuff count 4 + CRC 17 (len ≤ 16) or 21 (len > 16)
 *     + fixed stuff bits, one per 4 bits of stuff count and CRC:
 *       ceil((4 + 17) / 4) = 6, ceil((4 + 21) / 4) = 7
 *   end of frame, nominal bitrate:
 *     CRC delimiter 1 + ACK slot 1 + ACK delimiter 1 + EOF 7 + IFS 3 = 13
 *   dynamic stuff bits: 20 % of the bits before the CRC field (SOF up to
 *   the last data bit), each phase's share at that phase's bitrate; the
 *   CRC field has fixed stuff bits only and the end of frame none.
 * len is rounded up to a length a CAN FD DLC can carry (0…8, 12, 16, 20,
 * 24, 32, 48, 64), capped at 64. The phase switch is taken at bit
 * boundaries (the real one is at the sample points of BRS and of the CRC
 * delimiter): a fraction of a bit per frame.
 *
 * Times are in nanoseconds, rounded down, computed in tenths of bits so
 * that the 20 % adds no rounding of its own for FD frames.
 */

#include <stdbool.h>
#include <stdint.h>

#define CAN_WIRE_NSEC_PER_SEC UINT64_C(1000000000)

typedef struct CanWireBits {
        /* tenths of a bit, stuff bits included */
        uint64_t nominal_x10; /* at the nominal bitrate */
        uint64_t data_x10;    /* at the data bitrate (0 for classic frames and FD without BRS) */
} CanWireBits;

static inline unsigned can_wire_fd_len(unsigned len) {
        static const unsigned lengths[] = { 12, 16, 20, 24, 32, 48, 64 };

        if (len <= 8)
                return len;
        for (unsigned i = 0; i < sizeof lengths / sizeof lengths[0]; i++)
                if (len <= lengths[i])
                        return lengths[i];
        return 64;
}

/* Classic frame: len capped at 8. */
static inline CanWireBits can_wire_classic_bits(bool extended_id, unsigned len) {
        unsigned bits;

        if (len > 8)
                len = 8;
        bits = 47 + 8 * len + (extended_id ? 20 : 0);
        bits += bits / 5;
        return (CanWireBits) { .nominal_x10 = (uint64_t) bits * 10 };
}

static inline CanWireBits can_wire_fd_bits(bool extended_id, unsigned len, bool brs) {
        unsigned arbitration, data, crc_field, end = 13;
        uint64_t arb_x10, data_x10;

        len = can_wire_fd_len(len);
        arbitration = extended_id ? 36 : 17;
        data = 1 + 4 + 8 * len;
        crc_field = 4 + (len <= 16 ? 17 : 21);
        crc_field += (crc_field + 3) / 4;
        arb_x10 = (uint64_t) arbitration * 12;             /* + 20 % dynamic stuff bits */
        data_x10 = (uint64_t) data * 12 + crc_field * 10;   /* + 20 % on ESI/DLC/data; fixed stuff in the CRC field */
        if (brs)
                return (CanWireBits) { .nominal_x10 = arb_x10 + end * 10, .data_x10 = data_x10 };
        return (CanWireBits) { .nominal_x10 = arb_x10 + data_x10 + end * 10 };
}

static inline uint64_t can_wire_ns(CanWireBits b, uint64_t bitrate, uint64_t data_bitrate) {
        if (data_bitrate == 0)
                data_bitrate = bitrate;
        return b.nominal_x10 * CAN_WIRE_NSEC_PER_SEC / (bitrate * 10) +
               b.data_x10 * CAN_WIRE_NSEC_PER_SEC / (data_bitrate * 10);
}
