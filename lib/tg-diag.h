/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A UDS client channel: send one UDS request to an ECU (a target address)
 * and get its final response, with the ISO 14229 client timing (P2, P2*
 * after NRC 0x78 "response pending", a cap on pending storms) handled here.
 * The transport sits behind an ops table (TgDiagOps), so the flash routine
 * does not care whether it talks DoIP or ISO-TP.
 *
 * One request at a time per channel. The request bytes are NOT copied: they
 * must stay valid until the callback runs (a multi-MiB TransferData goes to
 * the socket straight from the caller's buffer). The response handed to the
 * callback is valid during the callback only. The callback may start the
 * next request; it must not free the channel.
 *
 * A UDS negative response (7F sid nrc, other than 0x78) is a response like
 * any other (TG_DIAG_OK): the service parsers of tg-uds.h name its NRC.
 * TgDiagError names what went wrong below UDS.
 *
 * DoIP (ISO 13400-2) implementation: tg_diag_doip_new(). It connects over
 * TCP without blocking (sd-event), does the routing activation, sends each
 * request as a diagnostic message (0x8001), takes the diagnostic ACK/NACK
 * (0x8002/0x8003), answers alive check requests (0x0007 → 0x0008), and
 * reports a connection lost. The socket has TCP_NODELAY; an entity needs it
 * too (its ack and response are two small writes in a row: with Nagle the
 * second waits for the tester's delayed ACK, 40 ms a request). A TCP
 * connect has no timeout of its own yet (the kernel's applies).
 * A request on a channel that is not connected
 * (never, or lost since) connects first; so does tg_diag_connect_wait().
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "tg-macro.h"
#include "tg-isotp.h"
#include "tg-uds.h"

typedef enum TgDiagError {
        TG_DIAG_OK = 0,
        TG_DIAG_TIMEOUT,            /* no final response within P2 (or P2* after a 0x78) */
        TG_DIAG_PENDING_STORM,      /* max_pending 0x78s in a row for one request */
        TG_DIAG_NACK,               /* DoIP diagnostic NACK (0x8003); code = NACK code */
        TG_DIAG_ROUTING_DENIED,     /* routing activation refused; code = response code */
        TG_DIAG_CONNECT_FAILED,     /* TCP connect failed; errno_ says why */
        TG_DIAG_CONNECTION_LOST,    /* peer closed or socket error; errno_ says why (0: EOF) */
        TG_DIAG_GENERIC_NACK,       /* the entity sent a generic header NACK; code = NACK code */
        TG_DIAG_PROTOCOL,           /* the entity sent something a tester cannot take */
        TG_DIAG_CANCELLED,          /* tg_diag_cancel() or the channel freed */
        TG_DIAG_TRANSPORT,          /* ISO-TP: the transmission failed; code = TgIsotpError */
        _TG_DIAG_ERROR_MAX,
} TgDiagError;

/* "timeout", "pending-storm", "diagnostic-nack", … */
const char *tg_diag_error_to_string(TgDiagError e);

typedef struct TgDiagResult {
        TgDiagError error;
        uint8_t code;           /* NACK / routing activation code, where the error has one */
        int errno_;             /* positive errno for the connection errors, 0 otherwise */
        unsigned n_pending;     /* 0x78s received for this request */
        const uint8_t *data;    /* TG_DIAG_OK: the final UDS response (empty for a suppressed one) */
        size_t len;
} TgDiagResult;

/* "diagnostic-nack 0x03 (unknown-target-address)", "ok", …: for logs. */
const char *tg_diag_result_format(const TgDiagResult *r, char *buf, size_t size);

typedef struct TgDiagChannel TgDiagChannel;
typedef void (*TgDiagCallback)(TgDiagChannel *ch, const TgDiagResult *r, void *userdata);

/* The transport's side. start() takes the request (target, bytes) and
 * reports through tg_diag_channel_sent() / _response() / _fail() below. */
typedef struct TgDiagOps {
        const char *name;
        int (*start)(TgDiagChannel *ch, uint16_t target, const uint8_t *req, size_t len);
        int (*connect)(TgDiagChannel *ch); /* begin connecting; 1 if ready already */
        bool (*ready)(TgDiagChannel *ch);
        void (*abort)(TgDiagChannel *ch);  /* forget the request in flight */
        void (*free)(TgDiagChannel *ch);   /* the transport's own state */
} TgDiagOps;

struct TgDiagChannel {
        const TgDiagOps *ops;
        sd_event *event;
        TgUdsTiming timing;
        sd_event_source *timer;
        /* the request in flight */
        bool busy;
        bool sent;              /* completely written, timing running */
        bool suppress;          /* no response expected once acknowledged */
        bool started;           /* handed to ops->start() (else waiting for the connection) */
        uint16_t target;
        uint8_t sid;
        unsigned n_pending;
        const uint8_t *req;
        size_t req_len;
        TgDiagCallback callback;
        void *userdata;
        sd_event_source *defer; /* completes an acknowledged suppressed request */
        /* connect failures while nothing is in flight */
        TgDiagResult connect_result;
        bool connect_done;
};

/* Start a request. -EBUSY with one in flight, -EINVAL for an empty one.
 * The callback runs exactly once, never from within this call. */
int tg_diag_request(TgDiagChannel *ch, uint16_t target, const uint8_t *req, size_t len, TgDiagCallback callback,
                    void *userdata);
/* Give up the request in flight: its callback runs with TG_DIAG_CANCELLED. */
void tg_diag_cancel(TgDiagChannel *ch);

/* Blocking, for tools and tests: runs ch->event until the request is done.
 * *ret gets the result; on TG_DIAG_OK *ret_data and *ret_len (if not NULL) a
 * malloc'ed copy of the response. Returns 0 on TG_DIAG_OK, -EIO for other
 * TgDiagErrors, or a negative errno from the event loop / the request. */
int tg_diag_request_wait(TgDiagChannel *ch, uint16_t target, const uint8_t *req, size_t len, TgDiagResult *ret,
                         uint8_t **ret_data, size_t *ret_len);
/* Blocking: connect (and activate routing) now. 0, or -EIO with *ret saying why. */
int tg_diag_connect_wait(TgDiagChannel *ch, TgDiagResult *ret);

TgDiagChannel *tg_diag_free(TgDiagChannel *ch);
TG_DEFINE_TRIVIAL_CLEANUP_FUNC(TgDiagChannel *, tg_diag_free);

/* For transports. */
void tg_diag_channel_init(TgDiagChannel *ch, const TgDiagOps *ops, sd_event *event);
/* The request is on the wire: P2 starts now (suppressed: wait for the ack). */
void tg_diag_channel_sent(TgDiagChannel *ch);
/* The transport acknowledged the request (DoIP 0x8002). */
void tg_diag_channel_acked(TgDiagChannel *ch);
/* A UDS message from source. Drops what is not for the request in flight. */
void tg_diag_channel_response(TgDiagChannel *ch, uint16_t source, const uint8_t *data, size_t len);
/* The request in flight (if any) ends with r. */
void tg_diag_channel_fail(TgDiagChannel *ch, const TgDiagResult *r);
/* A connection attempt ended (r->error TG_DIAG_OK when ready). */
void tg_diag_channel_connected(TgDiagChannel *ch, const TgDiagResult *r);

/* ---- DoIP ----------------------------------------------------------------------------- */

#define TG_DIAG_DOIP_MAX_RESPONSE (UINT32_C(1) * 1024 * 1024)

typedef struct TgDiagDoipConfig {
        const char *address;            /* numeric IPv4 or IPv6 address of the DoIP entity */
        uint16_t port;                  /* 0: TG_DOIP_TCP_PORT */
        uint16_t tester_address;        /* our logical address, e.g. 0x0E00 */
        uint8_t activation_type;        /* TG_DOIP_ACTIVATION_DEFAULT */
        uint8_t version;                /* 0: TG_DOIP_VERSION_2012 */
        uint32_t max_response;          /* largest payload taken; 0: TG_DIAG_DOIP_MAX_RESPONSE */
        /* TesterPresent (3E 80) to keepalive_target every keepalive_usec
         * while idle and connected; its DoIP acks are consumed here. */
        bool tester_present;
        uint16_t keepalive_target;      /* e.g. 0xE400 functional */
        uint64_t keepalive_usec;        /* 0: TG_UDS_TESTER_PRESENT_INTERVAL_MS */
} TgDiagDoipConfig;

/* A DoIP channel on event (referenced). Nothing happens until the first
 * request or tg_diag_connect_wait(). ch->timing holds the defaults of
 * tg_uds_timing_init(); set its fields to change P2, P2* or max_pending. */
int tg_diag_doip_new(sd_event *event, const TgDiagDoipConfig *cfg, TgDiagChannel **ret);
/* The entity's logical address from the routing activation response (0 before). */
uint16_t tg_diag_doip_entity_address(TgDiagChannel *ch);

/* ---- ISO-TP --------------------------------------------------------------------------- */

/* One ECU: the address a request names it by (tg_diag_request()'s target;
 * by convention its DoIP logical address or its physical request id) and
 * its physical ids. */
typedef struct TgDiagIsotpEcu {
        uint16_t address;
        uint32_t tx_id;         /* requests, e.g. 0x7E0 */
        uint32_t rx_id;         /* responses, e.g. 0x7E8 */
} TgDiagIsotpEcu;

#define TG_DIAG_FUNCTIONAL_ADDRESS 0xE400 /* the target meaning "every ECU" (DoIP's functional address) */

/* Which ISO-TP implementation carries an ECU's messages on a SocketCAN
 * interface ("unix:" hub specs always use the userspace engine). */
typedef enum TgDiagIsotpKernel {
        TG_DIAG_ISOTP_KERNEL_AUTO = 0,  /* the kernel's CAN_ISOTP where it has it, else userspace */
        TG_DIAG_ISOTP_KERNEL_NEVER,     /* always tg-isotp over a raw socket */
        TG_DIAG_ISOTP_KERNEL_REQUIRED,  /* the kernel's or nothing: -EAFNOSUPPORT without it */
        _TG_DIAG_ISOTP_KERNEL_MAX,
} TgDiagIsotpKernel;

typedef struct TgDiagIsotpConfig {
        const char *bus;                /* tg_can_open() spec: "vcan0", "unix:/run/…/bus.sock" */
        /* ids, padding, BS/STmin, FD/TX_DL taken from here (ids replaced
         * per ECU); NULL: tg_isotp_config_init() defaults, classic CAN */
        const TgIsotpConfig *isotp;
        const TgDiagIsotpEcu *ecus;     /* copied */
        size_t n_ecus;
        /* Functional (broadcast) requests to TG_DIAG_FUNCTIONAL_ADDRESS go
         * out on this id (0x7DF; 0 = none): single frames only, so keep them
         * short; suppressed ones complete once sent, others take the first
         * answer of any ECU. */
        uint32_t functional_tx_id;
        /* Physical requests and responses (the functional requests stay on
         * the userspace engine: single frames on a raw socket). */
        TgDiagIsotpKernel kernel;
        /* SocketCAN only: before the bus is first opened, bring the
         * interface up at this bit rate with automatic restart restart_ms
         * after bus-off (tg_can_link_up(): libsocketcan, CAP_NET_ADMIN).
         * 0: leave the interface as it is. */
        uint32_t bitrate;
        uint32_t restart_ms;
} TgDiagIsotpConfig;

/* An ISO-TP channel: one bus member (TgCanBus + TgIsotpSocket, or a kernel
 * CAN_ISOTP socket, see kernel) per ECU and one for functional requests,
 * opened by the first request or tg_diag_connect_wait(), reopened after the
 * bus went away. A target that is not configured: -ENXIO from
 * tg_diag_request(); a bus that cannot be opened (or brought up): its
 * negative errno from there.
 *
 * Kernel sockets: the request is written whole and counts as sent when the
 * socket is writable again (kernels with isotp_poll(), Linux 6.4 and the
 * stable kernels patched since April 2023, report EPOLLOUT only once the
 * transmission ended; older ones at once, so P2 may start before the last
 * frame left). A socket error ends the request with
 * TG_DIAG_TRANSPORT, errno_ set and code the TgIsotpError it stands for
 * (ECOMM: no flow control, TIMEOUT_BS; ETIMEDOUT: TIMEOUT_CR; EILSEQ:
 * WRONG_SN; EMSGSIZE: OVERFLOW; others ABORTED). The kernel path cannot run
 * on machines without CAN_ISOTP (the build and test machines): only its
 * fallback and error paths are tested there. */
int tg_diag_isotp_new(sd_event *event, const TgDiagIsotpConfig *cfg, TgDiagChannel **ret);
