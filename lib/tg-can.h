/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * CAN for the daemons (power-wake's vehicle signals now, ota-agent's ISO-TP
 * later): one frame type, one bus handle, two ways to reach a bus.
 *
 *   "can0"                 SocketCAN: a PF_CAN/CAN_RAW socket bound to the
 *                          interface (CAN FD frames enabled when asked), the
 *                          way a gateway reaches its buses.
 *   "unix:/path/bus.sock"  the userspace bus: a SOCK_SEQPACKET connection to
 *                          tollgate-canhub (tools/can-hub), which forwards
 *                          every frame a member sends to every other member,
 *                          as vcan would. For machines without CAN in the
 *                          kernel (tests, the sandbox, simulators).
 *
 * Both carry the same bytes: each read or write is one struct can_frame
 * (16 bytes, classic CAN) or one struct canfd_frame (72 bytes, CAN FD) in
 * the layout of <linux/can.h>, so the decoding code above is the same.
 * Filters, the error-frame switch and the FD switch of TgCanOptions are
 * done by the kernel for SocketCAN and by tg_can_recv() for the hub (which
 * forwards everything), so a daemon sees the same frames either way. As on
 * SocketCAN, a member never receives its own frames.
 *
 * Interfaces come up through libsocketcan (tg_can_link_up: bitrate,
 * automatic restart after bus-off) where the kernel has them; error frames
 * (CAN_ERR_FLAG) are delivered to the caller, which decides (a bus-off is
 * logged and the link restarted). See docs/can.md.
 *
 * Library code: nothing here logs (libsocketcan itself may print a line on
 * stderr when a netlink request fails).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tg-macro.h"

#define TG_CAN_MAX_DLEN 8
#define TG_CANFD_MAX_DLEN 64
/* The wire sizes: sizeof(struct can_frame), sizeof(struct canfd_frame). */
#define TG_CAN_MTU 16
#define TG_CANFD_MTU 72

/* One frame. id carries the <linux/can.h> flags (CAN_EFF_FLAG, CAN_RTR_FLAG,
 * CAN_ERR_FLAG) as SocketCAN does: an 11-bit id has no flag, a 29-bit id has
 * CAN_EFF_FLAG. An error frame (CAN_ERR_FLAG; the error class in the id
 * bits, details in data, <linux/can/error.h>) is always a classic frame. */
typedef struct TgCanFrame {
        uint32_t id;
        uint8_t len;   /* 0…8, or for CAN FD 0…8, 12, 16, 20, 24, 32, 48, 64 */
        bool fd;       /* a CAN FD frame */
        uint8_t flags; /* CAN FD flags (CANFD_BRS, CANFD_ESI); 0 for classic frames */
        uint8_t data[TG_CANFD_MAX_DLEN]; /* bytes past len are 0 in received frames */
} TgCanFrame;

typedef struct TgCanBus TgCanBus;

typedef struct TgCanOptions {
        bool fd;               /* take and send CAN FD frames */
        bool receive_errors;   /* deliver error frames (CAN_ERR_FLAG) */
        /* Receive only these ids (with the flags' EFF bit): n_filters 0 = all.
         * 0x3C0 matches the 11-bit id 0x3C0 only, 0x18DAF110 | CAN_EFF_FLAG
         * the 29-bit one; remote frames of a listed id pass too. At most 512
         * (CAN_RAW_FILTER_MAX); the array is copied. Error frames are not
         * filtered by id (receive_errors decides). */
        const uint32_t *filters;
        size_t n_filters;
} TgCanOptions;

/* Open a bus by spec (above). Non-blocking, close-on-exec. options may be
 * NULL (classic frames, no error frames, no filter). Errors: -EINVAL for a
 * bad spec or filter, -ENODEV for an interface that does not exist,
 * -EAFNOSUPPORT when the kernel has no PF_CAN, -ECONNREFUSED when no hub
 * listens on the socket (-ENOENT when there is no socket file), -EAGAIN
 * when the hub's backlog is full (try again later), or what
 * socket()/setsockopt()/bind()/connect() said. */
int tg_can_open(const char *spec, const TgCanOptions *options, TgCanBus **ret);
TgCanBus *tg_can_close(TgCanBus *bus); /* NULL-safe, returns NULL */
int tg_can_fd(const TgCanBus *bus);    /* for sd_event_add_io(…, EPOLLIN, …) */
const char *tg_can_name(const TgCanBus *bus); /* the spec */

TG_DEFINE_TRIVIAL_CLEANUP_FUNC(TgCanBus *, tg_can_close);

/* One frame: 0 and *ret filled; -EAGAIN when none waits; -EBADMSG for a
 * datagram that is not a frame (wrong size, len out of range: dropped, the
 * next call reads the next one); -ECONNRESET when the hub went away (the
 * bus is dead then: close it and open it again; SocketCAN has no such
 * case, an interface going down gives -ENETDOWN). Frames the options do not
 * want are skipped inside the call. Call it until -EAGAIN when the fd is
 * readable (level-triggered sources are fine, one frame per call). */
int tg_can_recv(TgCanBus *bus, TgCanFrame *ret);
/* 0 when the frame left; -EAGAIN when the socket is full (the frame was not
 * sent; SocketCAN's -ENOBUFS for a full transmit queue is reported as
 * -EAGAIN too), -EINVAL for a frame the bus cannot carry (FD frame on a bus
 * opened without .fd, len too large, flags on a classic frame, an 11-bit
 * id above 0x7FF), -ECONNRESET when the hub went away. */
int tg_can_send(TgCanBus *bus, const TgCanFrame *frame);

/* SocketCAN interfaces only (a no-op returning 0 for "unix:" specs): bring
 * the interface up at bitrate (bit/s; 0 = keep the one it has) with
 * automatic restart restart_ms after bus-off (0 = none), through
 * libsocketcan. An interface that is already up with that bitrate and
 * restart_ms is left alone (no bounce when a daemon restarts); otherwise it
 * is stopped, set and started. data_bitrate (the CAN FD data phase) must be
 * 0: libsocketcan cannot set it (-EOPNOTSUPP; configure such interfaces
 * with ip-link or systemd-networkd and pass bitrate 0). Needs
 * CAP_NET_ADMIN (-EPERM otherwise) and AF_NETLINK. -ENODEV for no such
 * interface, -EOPNOTSUPP when built without libsocketcan, -EINVAL for a bad
 * spec. */
int tg_can_link_up(const char *spec, uint32_t bitrate, uint32_t data_bitrate, uint32_t restart_ms);
/* Restart an interface after bus-off (libsocketcan can_do_restart). 0 also
 * when there is nothing to do: "unix:" specs, an interface that is not
 * bus-off (any more), or one with automatic restart (restart_ms > 0: the
 * kernel restarts it itself and refuses a manual restart). Errors as
 * tg_can_link_up(). */
int tg_can_link_restart(const char *spec);

/* The wire form of a frame, as a SocketCAN raw socket reads and writes it:
 * 16 bytes (struct can_frame) or 72 (struct canfd_frame), the id in host
 * byte order as the kernel has it. tg_can_frame_encode() returns the size
 * written into buf (size ≥ TG_CAN_MTU for a classic frame, ≥ TG_CANFD_MTU
 * for an FD frame; TG_CANFD_MTU always suffices), or -EINVAL for a frame
 * that is not valid (see tg_can_send()) or a buffer too small. Reserved
 * bytes and data past len are written as 0; FD frames carry CANFD_FDF, as
 * the kernel marks them. tg_can_frame_decode() takes such bytes (exactly 16
 * or 72) and checks len and id (-EBADMSG otherwise); reserved bytes are
 * ignored, flags other than CANFD_BRS/CANFD_ESI dropped. */
int tg_can_frame_encode(const TgCanFrame *frame, uint8_t *buf, size_t size);
int tg_can_frame_decode(const uint8_t *buf, size_t size, TgCanFrame *ret);

/* True if len is a payload length a frame can have: 0…8, and for CAN FD
 * also 12, 16, 20, 24, 32, 48, 64. */
bool tg_can_len_valid(unsigned len, bool fd);

/* candump's notation, for logs: "3C0#0102", "18DAF110#", "3C0#R",
 * "3C0##1" + data for FD (the digit is the flags), error frames with the
 * 8-digit id ("20000040#…"). Always NUL-terminated; returns buf. */
#define TG_CAN_FRAME_STRING_MAX 144
const char *tg_can_frame_format(const TgCanFrame *frame, char *buf, size_t size);

/* ---- Signals (DBC semantics) ---------------------------------------------- */

typedef enum TgCanByteOrder {
        TG_CAN_LITTLE_ENDIAN, /* Intel: start bit is the least significant bit */
        TG_CAN_BIG_ENDIAN,    /* Motorola: start bit is the most significant bit, DBC numbering */
} TgCanByteOrder;

/* Bits are numbered as in a DBC file ("SG_ Speed : 8|16@1+ (0.01,0)" is
 * start_bit 8, length 16, little endian, unsigned): bit n is bit n % 8
 * (0 = least significant) of data byte n / 8.
 *
 *   Little endian (@1): the start bit is the signal's least significant
 *   bit; the signal runs upward through start, start+1, … (into the next
 *   byte's bit 0 after a byte's bit 7).
 *   Big endian (@0): the start bit is the most significant bit; the signal
 *   runs downward inside a byte and continues at bit 7 of the NEXT byte
 *   (the "sawtooth": 7|16@0 is byte 0 (high) then byte 1 (low); 3|11@0 is
 *   bits 3…0 of byte 0 then bits 7…1 of byte 1). As cantools, Vector
 *   CANdb++ and canmatrix read DBC files.
 *
 * Signed signals are two's complement in `length` bits, sign-extended. */
typedef struct TgCanSignal {
        uint32_t frame_id;    /* with CAN_EFF_FLAG for 29-bit ids */
        unsigned start_bit;   /* 0…511 */
        unsigned length;      /* 1…64 bits */
        TgCanByteOrder byte_order;
        bool is_signed;
        double scale;         /* physical = raw * scale + offset; finite, not 0 */
        double offset;        /* finite */
} TgCanSignal;

/* Check a signal's layout against a frame length (8 or up to 64 bytes):
 * -EINVAL and a reason ("start bit 60 + length 8 runs past the 8-byte
 * frame") for impossible ones: length or start bit out of range, bits past
 * the frame, a frame id that is not a valid 11-bit (or, with CAN_EFF_FLAG,
 * 29-bit) id, scale 0 or not finite, offset not finite. reason may be NULL. */
int tg_can_signal_check(const TgCanSignal *s, unsigned frame_len, char *reason, size_t reason_size);
/* The raw value of s in f (-EBADMSG if the frame is too short for it,
 * -EINVAL for an impossible layout). Sign-extended for signed signals; for
 * an unsigned 64-bit signal it is the bit pattern (cast it to uint64_t).
 * Does not look at f->id: dispatch by id first. Reads only data[0…len). */
int tg_can_signal_raw(const TgCanSignal *s, const TgCanFrame *f, int64_t *ret);
/* raw * scale + offset. Errors as tg_can_signal_raw(). */
int tg_can_signal_decode(const TgCanSignal *s, const TgCanFrame *f, double *ret);
/* Put physical value v (rounded to the nearest raw step, half away from
 * zero, clamped to the raw range) into f's data; f->len must cover the
 * signal (-EINVAL otherwise, and for NaN, a bad layout, scale or offset).
 * Other bits of f are left as they are. For simulators and commands. */
int tg_can_signal_encode(const TgCanSignal *s, double v, TgCanFrame *f);
/* Put a raw value (an enum's number, Values= in a config) into f's data:
 * -ERANGE if it does not fit in the signal (for unsigned signals 0…2^length-1,
 * any bit pattern for length 64), otherwise as tg_can_signal_encode(). */
int tg_can_signal_put_raw(const TgCanSignal *s, int64_t raw, TgCanFrame *f);
