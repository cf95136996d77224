/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The key protocol (TKP1, docs/key-protocol.md): the frame codec and a
 * transport-agnostic session engine. The gateway (key-sync) and a key run
 * the same engine; only the role, the id and the callbacks differ.
 *
 * Frames, all integers big-endian:
 *
 *   u32 length   bytes that follow (type + payload), 1 … TG_KP_LENGTH_MAX
 *   u8  type     TgKpType
 *   …   payload  see the structures below
 *
 * Codec. tg_kp_frame_decode() checks one whole frame; TgKpDecoder cuts a
 * byte stream (split or coalesced anyhow) into frames: a frame that lies
 * whole in the caller's chunk is decoded in place, otherwise its bytes are
 * copied once into the decoder's buffer. A length or type that cannot be
 * valid is an error as soon as its header bytes arrive, before anything is
 * buffered. Decoded frames point into the input: no field is copied.
 *
 * Session. The caller moves bytes: tg_kp_session_feed() what arrived,
 * tg_kp_session_output() + tg_kp_session_consumed() what to send, and
 * tg_kp_session_tick() at tg_kp_session_next_tick() for PING/PONG. The
 * engine calls back into a source (items this side sends) and a sink (items
 * it receives). Memory is bounded by the configuration (window, max_chunk,
 * output_target), never by item sizes: DATA is read from the source chunk by
 * chunk straight into the output buffer.
 */

#include <stddef.h>
#include <stdint.h>

#include "tg-macro.h"
#include "tg-record.h"

#define TG_KP_VERSION 1
#define TG_KP_DEFAULT_PORT 47410
#define TG_KP_LENGTH_MAX UINT32_C(1048640)   /* largest `length` field: type + payload */
#define TG_KP_CHUNK_MIN UINT32_C(16384)      /* bounds of HELLO max_chunk */
#define TG_KP_CHUNK_MAX UINT32_C(1048576)
#define TG_KP_SHA256_SIZE 32
#define TG_KP_LENGTH_SIZE 4                  /* the length prefix */
#define TG_KP_DATA_HEADER_SIZE 21            /* length, type, item_id, offset */
#define TG_KP_ERROR_TEXT_MAX 200             /* text we send or keep of the peer's */

typedef enum TgKpType {
        TG_KP_NONE = 0, /* no frame (TgKpDecoder: more bytes needed) */
        TG_KP_HELLO = 1,
        TG_KP_OFFER = 2,
        TG_KP_PULL = 3,
        TG_KP_DATA = 4,
        TG_KP_ACK = 5,
        TG_KP_DONE = 6,
        TG_KP_ERROR = 7,
        TG_KP_PING = 8,
        TG_KP_PONG = 9,
} TgKpType;

typedef enum TgKpRole {
        TG_KP_ROLE_GATEWAY = 0,
        TG_KP_ROLE_KEY = 1,
} TgKpRole;

typedef enum TgKpKind {
        TG_KP_KIND_TELEMETRY = 1,
        TG_KP_KIND_UPGRADE_PACKAGE = 2,
        TG_KP_KIND_KB_UPDATE = 3,
        TG_KP_KIND_FILE = 4,
} TgKpKind;

typedef enum TgKpAckStatus {
        TG_KP_ACK_STORED = 0,
        TG_KP_ACK_HAVE = 1,
        TG_KP_ACK_BAD_HASH = 2,
        TG_KP_ACK_REFUSED = 3,
} TgKpAckStatus;

/* ERROR frame codes on the wire. */
enum {
        TG_KP_CODE_BAD_FRAME = 1,
        TG_KP_CODE_BAD_VERSION = 2,
        TG_KP_CODE_UNEXPECTED = 3,
        TG_KP_CODE_NOT_PAIRED = 4,
        TG_KP_CODE_INTERNAL = 5,
        TG_KP_CODE_SHUTTING_DOWN = 6,
};

/* Named errors of the codec and of the session. tg_kp_error_code() maps each
 * to the ERROR code the session sends for it. */
typedef enum TgKpError {
        TG_KP_OK = 0,
        /* frame errors (wire code bad-frame, except bad-version) */
        TG_KP_BAD_LENGTH,       /* length field 0 */
        TG_KP_FRAME_TOO_LARGE,  /* length field over TG_KP_LENGTH_MAX */
        TG_KP_UNKNOWN_TYPE,
        TG_KP_TRUNCATED,        /* a field overruns the frame */
        TG_KP_TRAILING_BYTES,   /* bytes after the last field */
        TG_KP_BAD_VERSION,      /* HELLO version other than 1 */
        TG_KP_BAD_ROLE,
        TG_KP_BAD_MAX_CHUNK,    /* HELLO max_chunk outside 16384 … 1048576 */
        TG_KP_BAD_WINDOW,       /* HELLO window 0 */
        TG_KP_BAD_ID,           /* HELLO id empty, not UTF-8, or with control characters */
        TG_KP_BAD_KIND,         /* OFFER kind other than 1 … 4 */
        TG_KP_BAD_STATUS,       /* ACK status other than 0 … 3 */
        TG_KP_CHUNK_TOO_LARGE,  /* DATA payload over the negotiated max_chunk */
        /* session errors */
        TG_KP_UNEXPECTED,       /* a frame out of order (before HELLO, a second HELLO, …) */
        TG_KP_SAME_ROLE,        /* the peer's HELLO has our role */
        TG_KP_NOT_PAIRED,       /* the hello callback rejected the peer */
        TG_KP_WINDOW_EXCEEDED,  /* more unacknowledged offers than our window */
        TG_KP_DUPLICATE_OFFER,  /* an offer for an item already in flight */
        TG_KP_UNKNOWN_ITEM,     /* PULL or ACK for an item we have not offered */
        TG_KP_NOT_PULLED,       /* DATA for an item we have not pulled (or not this one now) */
        TG_KP_BAD_OFFSET,       /* PULL beyond the size; DATA not where the item stands */
        TG_KP_PING_TIMEOUT,     /* no PONG in time */
        TG_KP_PEER_ERROR,       /* the peer sent ERROR */
        TG_KP_INTERNAL,         /* a callback failed, or out of memory */
        TG_KP_SHUTTING_DOWN,    /* tg_kp_session_shutdown() */
        _TG_KP_ERROR_MAX,
} TgKpError;

const char *tg_kp_error_to_string(TgKpError e);
/* The ERROR code sent for a session ending with e. */
uint16_t tg_kp_error_code(TgKpError e);
/* Name of a wire ERROR code ("bad-frame" … "shutting-down", else "unknown"). */
const char *tg_kp_code_to_string(uint16_t code);
const char *tg_kp_type_to_string(uint8_t type);
const char *tg_kp_ack_status_to_string(uint8_t status);
const char *tg_kp_kind_to_string(uint8_t kind);

/* Strings in decoded frames point into the frame and are not NUL-terminated. */
typedef struct TgKpHello {
        uint16_t version;
        uint8_t role;
        uint32_t max_chunk;
        uint16_t window;
        uint16_t id_len;
        const char *id;
} TgKpHello;

typedef struct TgKpOffer {
        uint64_t item_id;
        uint8_t kind;
        uint8_t priority;
        uint64_t size;
        uint8_t sha256[TG_KP_SHA256_SIZE];
        uint32_t records;
        uint16_t name_len;
        const char *name; /* any bytes; a sink that makes a file name of it checks it */
} TgKpOffer;

typedef struct TgKpPull {
        uint64_t item_id;
        uint64_t offset;
} TgKpPull;

typedef struct TgKpData {
        uint64_t item_id;
        uint64_t offset;
        const uint8_t *data;
        size_t len; /* length - 17 */
} TgKpData;

typedef struct TgKpAck {
        uint64_t item_id;
        uint8_t status; /* TgKpAckStatus */
} TgKpAck;

/* Taken as it comes: any code, any bytes (the peer closes after it anyway;
 * what it says matters more than how). */
typedef struct TgKpErrorFrame {
        uint16_t code;
        size_t text_len;
        const char *text;
} TgKpErrorFrame;

typedef struct TgKpFrame {
        uint8_t type; /* TgKpType */
        union {
                TgKpHello hello;
                TgKpOffer offer;
                TgKpPull pull;
                TgKpData data;
                TgKpAck ack;
                TgKpErrorFrame error;
                uint64_t nonce; /* PING, PONG */
        };
} TgKpFrame;

/* The header of a frame, alone: `length` is the length field, `type` the
 * byte after it. DATA frames longer than 17 + max_data are
 * TG_KP_CHUNK_TOO_LARGE. Fixed-size frames of another length are
 * TG_KP_TRUNCATED or TG_KP_TRAILING_BYTES. */
TgKpError tg_kp_check_header(uint32_t length, uint8_t type, uint32_t max_data);

/* Decode exactly one frame: buf holds the length prefix and exactly the
 * bytes it announces. *ret points into buf. */
TgKpError tg_kp_frame_decode(const uint8_t *buf, size_t size, uint32_t max_data, TgKpFrame *ret);
/* The same, on type + payload (what follows the length prefix). */
TgKpError tg_kp_frame_parse(const uint8_t *body, size_t length, uint32_t max_data, TgKpFrame *ret);

/* Whole encoded size of a valid frame, length prefix included. */
size_t tg_kp_frame_size(const TgKpFrame *f);
/* Check f as the decoder would and append its encoding to b; nothing is
 * appended for a refused frame. A DATA frame is checked against
 * TG_KP_CHUNK_MAX; an ERROR frame's text is sent as it is (the session sends
 * printable ASCII of at most TG_KP_ERROR_TEXT_MAX bytes). Out of memory is
 * TG_KP_INTERNAL. */
TgKpError tg_kp_frame_encode(const TgKpFrame *f, TgBuf *b);
/* The 21 bytes before a DATA payload of len bytes, for writing a payload in place. */
void tg_kp_put_data_header(uint8_t *p, uint64_t item_id, uint64_t offset, size_t len);

/* Incremental decoder. */
typedef struct TgKpDecoder {
        uint32_t max_data;   /* largest DATA payload accepted */
        uint8_t header[TG_KP_LENGTH_SIZE + 1];
        uint8_t header_got;  /* 0 … 5 bytes of the current frame's header */
        uint32_t length;     /* of the current frame, once known */
        uint8_t *buf;        /* type + payload of a frame that arrived in pieces */
        size_t allocated;
        size_t got;          /* bytes of it in buf */
        TgKpError error;     /* sticky */
} TgKpDecoder;

void tg_kp_decoder_init(TgKpDecoder *d, uint32_t max_data);
void tg_kp_decoder_done(TgKpDecoder *d);
/* Lower or raise the DATA limit (the session does so after HELLO). */
void tg_kp_decoder_set_max_data(TgKpDecoder *d, uint32_t max_data);
/* Take bytes from buf until a frame is complete: then ret->type is its type
 * and *ret points into buf or into the decoder (valid until the next call);
 * otherwise ret->type is TG_KP_NONE and all of buf was taken. *ret_used says
 * how many bytes were taken. An error is sticky. */
TgKpError tg_kp_decoder_push(TgKpDecoder *d, const uint8_t *buf, size_t size, size_t *ret_used, TgKpFrame *ret);
/* Bytes of an incomplete frame held so far (header included). */
size_t tg_kp_decoder_pending(const TgKpDecoder *d);

/* SHA-256 of a buffer (wolfCrypt), for sinks that check an item they resumed. */
int tg_kp_sha256(const void *data, size_t size, uint8_t ret[TG_KP_SHA256_SIZE]);

/*
 * The session.
 *
 * Where docs/key-protocol.md leaves room, the engine does this:
 *   - An item pulled at its end (empty, or all of it already held) gets no
 *     DATA frame: the receiver completes it right after its PULL, the sender
 *     waits for the ACK.
 *   - PULLs are served strictly in the order they came, each to its end in
 *     DATA frames of min(max_chunk), back to back; offers go out as soon as
 *     the peer's window has room, so later items are pulled while earlier
 *     ones stream. The receiver pulls the moment an offer arrives.
 *   - Our offers stay within min(peer window, max_offers). The peer's count
 *     against our window until our ACK for them is composed.
 *   - ACK stored and bad-hash are taken only once every byte was sent; have
 *     and refused at any time (the rest of a transfer is then dropped).
 *   - PING after ping_interval without a frame from the peer; the session
 *     dies if its PONG has not come ping_timeout after it. A PONG for no
 *     PING is unexpected.
 *   - A batch holds the control frames first (PONG, PING, PULL, ACK, OFFER,
 *     DONE), then DATA up to output_target.
 *   - Our ERROR text starts with the TgKpError name ("data-not-pulled: …").
 *
 * Source (the items this side sends):
 *   next_offer  the next item to offer, in send order: fill *ret, return 1;
 *               0 when there is none for now; or -errno. Asked only while
 *               fewer than min(peer window, max_offers) offers are
 *               unacknowledged; ret->name stays valid until the call returns.
 *               The source must not return an item it handed out before in
 *               this session unless that item was acknowledged bad-hash.
 *               After it said 0 it is asked again only after
 *               tg_kp_session_kick() or a bad-hash ACK.
 *   read        exactly len bytes of the item at offset into buf; 0 or -errno.
 *   acked       the peer answered: STORED or HAVE → delete the item; BAD_HASH
 *               → keep it, offer it again (the engine asks next_offer()
 *               again at once; a source counts retries); REFUSED → keep it,
 *               do not offer it again in this session. 0 or -errno.
 *
 * Sink (the items this side receives):
 *   offered     the peer offers an item: return TG_KP_ANSWER_PULL with
 *               *ret_offset = bytes of it already held (0 … size; it resumes
 *               there), TG_KP_ANSWER_HAVE, TG_KP_ANSWER_REFUSE, or -errno.
 *   write       bytes of the item at offset (always the next ones after what
 *               was written or held); 0 or -errno. A failure (e.g. ENOSPC)
 *               does not end the session: the rest of the item is swallowed
 *               and it is acknowledged REFUSED.
 *   complete    all `size` bytes are there. `check` is TG_KP_HASH_OK or
 *               TG_KP_HASH_MISMATCH when the engine saw every byte (the
 *               transfer started at offset 0 in this session): it hashed them
 *               on the way. It is TG_KP_HASH_UNCHECKED after a resume: the
 *               sink hashes what it holds (tg_kp_sha256()) and compares with
 *               offer->sha256. Then store durably and return
 *               TG_KP_ACK_STORED, TG_KP_ACK_BAD_HASH (having dropped the
 *               bytes, so the next offer is pulled from 0), TG_KP_ACK_REFUSED,
 *               TG_KP_COMPLETE_LATER (answer with tg_kp_session_complete()),
 *               or -errno; anything else is an internal error. On
 *               TG_KP_HASH_MISMATCH the sink drops the bytes; the ACK is
 *               bad-hash whatever it returns. offer->name is NULL.
 *
 * Session:
 *   hello       the peer's HELLO, checked for version and role: return 0, or
 *               -errno to refuse it as not-paired (id not the certificate's).
 *   done        both sides sent DONE, every offer in both directions is
 *               acknowledged and the output is written: a sync is finished.
 *               `sent`: our items the peer stored, `received`: items we
 *               stored, both since the previous done() (→ SyncFinished). Fires
 *               again after new offers (tg_kp_session_kick()) settle.
 *
 * Callbacks may call tg_kp_session_kick() and the getters, nothing else of
 * this session.
 */

typedef enum TgKpAnswer {
        TG_KP_ANSWER_PULL = 0,
        TG_KP_ANSWER_HAVE = 1,
        TG_KP_ANSWER_REFUSE = 2,
} TgKpAnswer;

typedef enum TgKpHashCheck {
        TG_KP_HASH_OK,
        TG_KP_HASH_MISMATCH,
        TG_KP_HASH_UNCHECKED,
} TgKpHashCheck;

#define TG_KP_COMPLETE_LATER 0x100

typedef struct TgKpCallbacks {
        int (*next_offer)(void *userdata, TgKpOffer *ret);
        int (*read)(void *userdata, uint64_t item_id, uint64_t offset, void *buf, size_t len);
        int (*acked)(void *userdata, uint64_t item_id, TgKpAckStatus status);

        int (*offered)(void *userdata, const TgKpOffer *offer, uint64_t *ret_offset);
        int (*write)(void *userdata, uint64_t item_id, uint64_t offset, const void *data, size_t len);
        int (*complete)(void *userdata, const TgKpOffer *offer, TgKpHashCheck check);

        int (*hello)(void *userdata, const TgKpHello *peer);
        void (*done)(void *userdata, uint64_t sent, uint64_t received);
} TgKpCallbacks;

typedef struct TgKpConfig {
        TgKpRole role;
        const char *id;               /* our gateway id or key id */
        uint32_t max_chunk;           /* largest DATA we accept; 0: TG_KP_DEFAULT_CHUNK */
        uint16_t window;              /* offers we take unacknowledged; 0: TG_KP_DEFAULT_WINDOW */
        uint16_t max_offers;          /* our own cap below the peer's window; 0: TG_KP_DEFAULT_MAX_OFFERS */
        size_t output_target;         /* bytes composed per output batch; 0: TG_KP_DEFAULT_OUTPUT_TARGET */
        uint64_t ping_interval_usec;  /* PING after this long without a frame; 0: 15 s, USEC_INFINITY: never */
        uint64_t ping_timeout_usec;   /* dead when its PONG is this late; 0: 30 s */
        const TgKpCallbacks *callbacks;
        void *userdata;
} TgKpConfig;

#define TG_KP_DEFAULT_CHUNK (64 * 1024)
#define TG_KP_DEFAULT_WINDOW 16
/* Largest window our programs take (Window=, --window=): their receive slots. */
#define TG_KP_WINDOW_MAX 64
#define TG_KP_DEFAULT_MAX_OFFERS 64
#define TG_KP_DEFAULT_OUTPUT_TARGET (64 * 1024)
#define TG_KP_DEFAULT_PING_INTERVAL_USEC (15 * USEC_PER_SEC)
#define TG_KP_DEFAULT_PING_TIMEOUT_USEC (30 * USEC_PER_SEC)

typedef struct TgKpStats {
        /* our items */
        uint64_t offers_sent;
        uint64_t acked_stored, acked_have, acked_bad_hash, acked_refused;
        uint64_t data_bytes_sent;     /* DATA payload composed */
        /* the peer's items */
        uint64_t offers_received;
        uint64_t stored, have, bad_hash, refused;
        uint64_t data_bytes_received;
        uint64_t resumed;             /* pulled from an offset > 0 */
        /* the stream */
        uint64_t bytes_in, bytes_out, frames_in, frames_out;
} TgKpStats;

typedef struct TgKpSession TgKpSession;

/* Queues our HELLO. -EINVAL for a bad configuration. */
int tg_kp_session_new(TgKpSession **ret, const TgKpConfig *config);
TgKpSession *tg_kp_session_free(TgKpSession *s);
TG_DEFINE_TRIVIAL_CLEANUP_FUNC(TgKpSession *, tg_kp_session_free);

/* Bytes from the peer, any amount. Returns TG_KP_OK, or the error that ended
 * the session (then the output holds our ERROR frame, unless the peer's
 * ERROR ended it). */
TgKpError tg_kp_session_feed(TgKpSession *s, const void *buf, size_t size);
/* Bytes to send: the same bytes until tg_kp_session_consumed() (a retried
 * TLS write sees them again), at the pointer returned by the latest call; a
 * batch of whole frames of about output_target bytes when DATA flows. A new
 * batch is composed only when the previous one is consumed; an ERROR frame
 * is appended to an unfinished one. *ret_len is 0 when there is nothing.
 * Call it after every feed(), tick(), kick() and complete(). Returns the
 * session's error, if any. */
TgKpError tg_kp_session_output(TgKpSession *s, const uint8_t **ret, size_t *ret_len);
void tg_kp_session_consumed(TgKpSession *s, size_t n);
/* The clock, CLOCK_MONOTONIC or any: PING, PONG deadline. */
void tg_kp_session_tick(TgKpSession *s, uint64_t now_usec);
/* When tick() is next needed: absolute, 0 = now, USEC_INFINITY = never. */
uint64_t tg_kp_session_next_tick(const TgKpSession *s);
/* The source has items again: ask next_offer() at the next output. */
void tg_kp_session_kick(TgKpSession *s);
/* The answer to a complete() that returned TG_KP_COMPLETE_LATER:
 * TG_KP_ACK_STORED, _BAD_HASH or _REFUSED. -ENOENT if no such item waits. */
int tg_kp_session_complete(TgKpSession *s, uint64_t item_id, TgKpAckStatus status);
/* End it: ERROR shutting-down. */
void tg_kp_session_shutdown(TgKpSession *s);

/* TG_KP_OK while alive. *ret_code: the ERROR code sent or received;
 * *ret_text: what it said (printable ASCII, NUL-terminated). */
TgKpError tg_kp_session_error(const TgKpSession *s, uint16_t *ret_code, const char **ret_text);
/* Dead and its last byte (the ERROR frame) handed out: close the connection. */
bool tg_kp_session_finished(const TgKpSession *s);
/* Alive, and done() fired with nothing offered or pulled since: both sides
 * are in sync. */
bool tg_kp_session_idle(const TgKpSession *s);
/* The peer's HELLO (id NUL-terminated here), NULL before it arrived. */
const TgKpHello *tg_kp_session_peer(const TgKpSession *s);
/* min(max_chunk) once both HELLOs are known, else ours. */
uint32_t tg_kp_session_chunk(const TgKpSession *s);
void tg_kp_session_stats(const TgKpSession *s, TgKpStats *ret);
