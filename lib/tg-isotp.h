/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * ISO-TP (ISO 15765-2) in userspace, over raw CAN frames.
 *
 * Two layers:
 *
 *   TgIsotp        the protocol engine, sans-IO: it never reads a clock or a
 *                  socket. The caller feeds it the frames that arrived
 *                  (tg_isotp_feed), asks it for frames to send
 *                  (tg_isotp_poll, which also says when to ask next: STmin
 *                  gaps and the N_Bs/N_Cr timeouts), and hands it messages
 *                  (tg_isotp_send). Time is a monotonic microsecond count the
 *                  caller chooses (tests use a fake clock).
 *   TgIsotpSocket  the engine driven over a TgCanBus (lib/tg-can.h), so the
 *                  same code runs over SocketCAN raw sockets and over the
 *                  userspace hub tollgate-canhub. Blocking helpers for tools
 *                  and tests; tg_isotp_socket_process() plus tg_can_fd() and
 *                  the returned deadline fit an sd-event io source + timer.
 *
 * What the engine does: normal addressing with 11- or 29-bit ids (tx_id for
 * what we send, FC included; rx_id for what we take) and optional extended
 * addressing (an address byte in front of every frame); SF/FF/CF/FC for
 * classic CAN (8 bytes) and CAN FD (TX_DL up to 64: SF escape 0x00 <len>
 * for frames over 8 bytes, FF escape 0x10 0x00 <32-bit length> for messages
 * over 4095 bytes, the last frame padded to the next valid CAN FD length);
 * flow control CTS/WAIT/OVFLW, block size, STmin (0…127 ms, 0xF1…0xF9 =
 * 100…900 µs, reserved values read as 127 ms), sequence numbers wrapping
 * 0xF → 0x0, timeouts N_Bs and N_Cr (and N_As in the socket binding).
 * Full duplex: one transmission and one reception may run at once.
 *
 * Kernel sockets: where the kernel has CAN_ISOTP (Linux ≥ 5.10 with
 * CONFIG_CAN_ISOTP), a caller on a real interface may use
 * socket(PF_CAN, SOCK_DGRAM, CAN_ISOTP) instead; tg_isotp_kernel_open()
 * tries that and returns -EAFNOSUPPORT where the kernel has no PF_CAN or no
 * CAN_ISOTP (as on the build machines), in which case TgIsotpSocket over a
 * raw bus is the way.
 *
 * Library code: nothing here logs.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tg-can.h"
#include "tg-macro.h"

#define TG_ISOTP_DEFAULT_MAX_RX (UINT32_C(1) << 20) /* 1 MiB */
#define TG_ISOTP_DEFAULT_TIMEOUT_USEC ((uint64_t) 1000000)
#define TG_ISOTP_DEFAULT_PAD_BYTE 0xCC
#define TG_ISOTP_NO_DEADLINE UINT64_MAX

typedef struct TgIsotpConfig {
        uint32_t tx_id;          /* with CAN_EFF_FLAG for a 29-bit id */
        uint32_t rx_id;
        bool ext_addr;           /* extended addressing: an address byte first */
        uint8_t tx_ext;          /* the address byte we send */
        uint8_t rx_ext;          /* the address byte we take (others ignored) */
        bool fd;                 /* CAN FD frames (all frames sent are FD frames) */
        bool brs;                /* FD: set the bit-rate switch flag */
        uint8_t tx_dl;           /* frame size: 8 classic; FD 8, 12, …, 64; 0 = 8 / 64 */
        bool pad;                /* pad frames to 8 bytes (FD over 8: always to a valid length) */
        uint8_t pad_byte;        /* used when padding; see tg_isotp_config_init() (0xCC) */
        uint8_t bs;              /* block size we ask of senders (0 = no limit) */
        uint8_t stmin;           /* STmin we ask of senders, raw byte (0…0x7F ms, 0xF1…0xF9) */
        uint32_t max_rx;         /* longest message taken; 0 = 1 MiB; FF over it → FC OVFLW */
        unsigned max_wft;        /* FC WAIT frames tolerated in a row; 0 = no limit */
        uint64_t n_as_usec;      /* 0 = 1 s: the socket binding's bound for a frame to leave */
        uint64_t n_bs_usec;      /* 0 = 1 s: FF/last CF of a block until the FC */
        uint64_t n_cr_usec;      /* 0 = 1 s: FC/CF until the next CF */
} TgIsotpConfig;

/* Zero-initialized config with the defaults that are not 0 (pad byte 0xCC). */
void tg_isotp_config_init(TgIsotpConfig *c, uint32_t tx_id, uint32_t rx_id, bool fd);

typedef enum TgIsotpError {
        TG_ISOTP_OK = 0,
        TG_ISOTP_ERR_WRONG_SN,       /* a CF with the wrong sequence number (N_WRONG_SN) */
        TG_ISOTP_ERR_UNEXPECTED,     /* an SF/FF arrived while a reception ran (N_UNEXP_PDU) */
        TG_ISOTP_ERR_TIMEOUT_A,      /* a frame did not leave within N_As (socket binding) */
        TG_ISOTP_ERR_TIMEOUT_BS,     /* no FC within N_Bs */
        TG_ISOTP_ERR_TIMEOUT_CR,     /* no CF within N_Cr */
        TG_ISOTP_ERR_OVERFLOW,       /* the receiver answered FC OVFLW (N_BUFFER_OVFLW) */
        TG_ISOTP_ERR_TOO_LARGE,      /* an FF announced more than max_rx (we sent FC OVFLW) */
        TG_ISOTP_ERR_WFT_OVRN,       /* more FC WAIT than max_wft */
        TG_ISOTP_ERR_INVALID_FS,     /* an FC with a reserved flow status */
        TG_ISOTP_ERR_NO_MEMORY,      /* no buffer for the announced length (we sent FC OVFLW) */
        TG_ISOTP_ERR_ABORTED,        /* tg_isotp_abort() */
        _TG_ISOTP_ERR_MAX,
} TgIsotpError;

const char *tg_isotp_error_to_string(TgIsotpError e); /* "wrong sequence number", … */

typedef enum TgIsotpEventType {
        TG_ISOTP_RX_DONE,  /* data/len: a complete message (valid during the call) */
        TG_ISOTP_TX_DONE,  /* the last frame of the message was handed out by poll */
        TG_ISOTP_RX_ERROR, /* error: the reception was dropped */
        TG_ISOTP_TX_ERROR, /* error: the transmission was dropped */
} TgIsotpEventType;

typedef struct TgIsotpEvent {
        TgIsotpEventType type;
        TgIsotpError error;
        const uint8_t *data;
        size_t len;
} TgIsotpEvent;

typedef struct TgIsotp TgIsotp;
typedef void (*TgIsotpCallback)(TgIsotp *e, const TgIsotpEvent *ev, void *userdata);

/* -EINVAL for a bad config (tx_dl not a valid length, over 8 for classic,
 * ids out of range, stmin reserved), -ENOMEM. */
int tg_isotp_new(const TgIsotpConfig *c, TgIsotp **ret);
TgIsotp *tg_isotp_free(TgIsotp *e); /* NULL-safe, returns NULL */
TG_DEFINE_TRIVIAL_CLEANUP_FUNC(TgIsotp *, tg_isotp_free);
const TgIsotpConfig *tg_isotp_config(const TgIsotp *e); /* with defaults filled in */

/* Events go to the callback. Without one, complete messages wait for
 * tg_isotp_recv() (one slot: a newer message replaces an unread one, counted
 * in dropped) and the outcome of a transmission is tg_isotp_tx_result(). */
void tg_isotp_set_callback(TgIsotp *e, TgIsotpCallback cb, void *userdata);

/* Start sending a message (copied): 1…UINT32_MAX bytes. -EBUSY while a
 * transmission runs, -EMSGSIZE over 4 GiB - 1, -EINVAL for 0 bytes. */
int tg_isotp_send(TgIsotp *e, const void *data, size_t len);

/* A frame from the bus. 1: ours and taken; 0: not ours (other id, other
 * extended address, remote or error frame) or not expected now (an FC
 * when no transmission waits, a CF when no reception runs; ignored as the
 * standard says); -EBADMSG: ours but malformed (ignored). */
int tg_isotp_feed(TgIsotp *e, const TgCanFrame *f, uint64_t now);

/* The next frame to send now: 1 and *ret filled (the caller sends it now;
 * the engine counts STmin from now). 0: nothing to send now; *ret_deadline
 * (may be NULL) is when to call again (TG_ISOTP_NO_DEADLINE: only after a
 * feed or send). Timeouts fire inside this call (events). Call it until it
 * returns 0 after every feed/send and when the deadline passes. */
int tg_isotp_poll(TgIsotp *e, uint64_t now, TgCanFrame *ret, uint64_t *ret_deadline);

/* Take the oldest complete message (callback-less mode): 0 with a malloc'ed
 * buffer the caller frees; -EAGAIN when none waits. */
int tg_isotp_recv(TgIsotp *e, uint8_t **ret_data, size_t *ret_len);

bool tg_isotp_tx_busy(const TgIsotp *e);
/* The error of the last finished transmission (TG_ISOTP_OK if it went). */
TgIsotpError tg_isotp_tx_result(const TgIsotp *e);
/* The error of the last dropped reception since the last call (then reset). */
TgIsotpError tg_isotp_take_rx_error(TgIsotp *e);
/* Drop the transmission with error (TX_ERROR event), e.g. N_As in a binding. */
void tg_isotp_abort_tx(TgIsotp *e, TgIsotpError error);

/* Progress of the running reception: false if none; total is the length
 * the FF announced. For tools and invariant checks. */
bool tg_isotp_rx_progress(const TgIsotp *e, uint32_t *ret_done, uint32_t *ret_total);

typedef struct TgIsotpCounters {
        uint64_t rx_messages, tx_messages, rx_errors, tx_errors, ignored, malformed, dropped;
} TgIsotpCounters;
void tg_isotp_counters(const TgIsotp *e, TgIsotpCounters *ret);

/* Helpers: the raw STmin byte as microseconds (reserved values: 127 ms);
 * the smallest valid CAN (FD) payload length ≥ n (n ≤ 64). */
uint64_t tg_isotp_stmin_usec(uint8_t stmin);
unsigned tg_isotp_round_dl(unsigned n);

/* ---- Binding to a TgCanBus ------------------------------------------------ */

typedef struct TgIsotpSocket TgIsotpSocket;

/* The bus is borrowed (must outlive the socket) and should carry only what
 * this engine wants (filters on rx_id are a good idea: one TgCanBus per
 * engine). The bus must be opened with .fd for an FD engine. */
int tg_isotp_socket_new(TgCanBus *bus, const TgIsotpConfig *c, TgIsotpSocket **ret);
TgIsotpSocket *tg_isotp_socket_free(TgIsotpSocket *s);
TG_DEFINE_TRIVIAL_CLEANUP_FUNC(TgIsotpSocket *, tg_isotp_socket_free);
TgIsotp *tg_isotp_socket_engine(TgIsotpSocket *s);

/* One round, non-blocking: read every waiting frame into the engine, then
 * send what it has (a frame the bus refuses with -EAGAIN waits for the next
 * round; after N_As the transmission fails with TIMEOUT_A). Returns the
 * next deadline (CLOCK_MONOTONIC µs; TG_ISOTP_NO_DEADLINE for none) in
 * *ret_deadline and *ret_want_write = true while a frame waits for the
 * socket (poll for POLLOUT). Errors: what tg_can_recv()/tg_can_send() said
 * that is fatal (-ECONNRESET, -ENETDOWN, …). */
int tg_isotp_socket_process(TgIsotpSocket *s, uint64_t *ret_deadline, bool *ret_want_write);

/* Blocking helpers (poll() on the bus fd, CLOCK_MONOTONIC):
 * send: until the message left; -ETIMEDOUT after timeout_usec; -EIO when the
 * transmission failed (the reason in tg_isotp_tx_result()).
 * recv: until a complete message arrives (malloc'ed, caller frees);
 * -ETIMEDOUT. Both keep serving the other direction meanwhile. */
int tg_isotp_socket_send_wait(TgIsotpSocket *s, const void *data, size_t len, uint64_t timeout_usec);
int tg_isotp_socket_recv_wait(TgIsotpSocket *s, uint8_t **ret_data, size_t *ret_len, uint64_t timeout_usec);

/* Drive the socket from an sd-event loop: an io source on the bus fd and a
 * CLOCK_MONOTONIC timer for STmin and the timeouts; events go to the
 * engine's callback (tg_isotp_set_callback on tg_isotp_socket_engine()).
 * Send with tg_isotp_socket_send() (tg_isotp_send() plus a first round).
 * A fatal bus error (the hub went away) stops the sources, aborts a running
 * transmission (TX_ERROR) and is kept for tg_isotp_socket_error(). */
typedef struct sd_event sd_event;
int tg_isotp_socket_attach_event(TgIsotpSocket *s, sd_event *event, int64_t priority);
void tg_isotp_socket_detach_event(TgIsotpSocket *s);
int tg_isotp_socket_send(TgIsotpSocket *s, const void *data, size_t len);
int tg_isotp_socket_error(const TgIsotpSocket *s); /* 0, or the fatal error */

/* A kernel CAN_ISOTP socket on a SocketCAN interface with c's ids,
 * extended addresses, padding, BS/STmin/max_wft, FD, TX_DL and BRS (the
 * kernel applies its own timeouts; max_rx does not apply). The fd is a
 * non-blocking SOCK_DGRAM socket: one write()/read() is one message.
 * -EAFNOSUPPORT where the kernel has no PF_CAN or CAN_ISOTP (the case on
 * the build and test machines: only this error path is tested), -ENODEV,
 * -EINVAL, or what setsockopt()/bind() said. */
int tg_isotp_kernel_open(const char *ifname, const TgIsotpConfig *c);
