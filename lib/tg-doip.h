/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * DoIP (ISO 13400-2, diagnostics over IP): the message codec and an
 * incremental decoder for a TCP stream. Sans-IO: no sockets, no clock.
 *
 * Every message is a generic header and a payload, integers big-endian:
 *
 *   u8  protocol version   0x02 (ISO 13400-2:2012), 0x03 (2019); 0x01
 *                          (2010) is accepted too; 0xFF ("default") only
 *                          in vehicle identification requests
 *   u8  inverse version    ~version
 *   u16 payload type       TgDoipType
 *   u32 payload length     bytes that follow
 *   …   payload            see the structures below
 *
 * The header is checked in the order of ISO 13400-2 (generic header
 * handler), each failure a named error with the generic NACK code to send:
 *
 *   pattern (version, inverse)       TG_DOIP_INCORRECT_PATTERN   0x00  close the socket
 *   payload type known               TG_DOIP_UNKNOWN_TYPE        0x01  discard the message
 *   payload length <= max_payload    TG_DOIP_MESSAGE_TOO_LARGE   0x02  discard the message
 *   payload length valid for type    TG_DOIP_INVALID_LENGTH      0x04  close the socket
 *   memory for the payload           TG_DOIP_OUT_OF_MEMORY       0x03  discard the message
 *
 * (The stream decoder allocates only for a valid header, so out of memory
 * comes last; it is a failed allocation, never a policy.)
 *
 * Payload lengths are strict: each type has a fixed length or a fixed
 * length plus one optional field, diagnostic messages at least 5 bytes
 * (addresses and at least one byte of user data or ack code). Payload
 * values are taken as they come (a reserved field is kept, so a parsed
 * message encodes back to the same bytes); the *_to_string() helpers name
 * the values the standard defines.
 *
 * Zero-copy: the user data of a diagnostic message (and the previous
 * message in an ACK/NACK) points into the buffer it was parsed from. Fixed
 * small fields (VIN, EID, GID) are copied into the message.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tg-macro.h"

#define TG_DOIP_HEADER_SIZE 8
#define TG_DOIP_DIAG_HEADER_SIZE 12 /* generic header + source + target address */
#define TG_DOIP_VERSION_2010 0x01
#define TG_DOIP_VERSION_2012 0x02
#define TG_DOIP_VERSION_2019 0x03
#define TG_DOIP_VERSION_DEFAULT 0xFF /* vehicle identification requests only */
#define TG_DOIP_TCP_PORT 13400
#define TG_DOIP_UDP_PORT 13400
#define TG_DOIP_TLS_PORT 3496
#define TG_DOIP_VIN_SIZE 17
#define TG_DOIP_EID_SIZE 6
#define TG_DOIP_GID_SIZE 6
/* Default largest payload a decoder takes: a diagnostic message with 4 MiB
 * of user data (a TransferData block of maxNumberOfBlockLength 4 MiB). */
#define TG_DOIP_MAX_PAYLOAD_DEFAULT (UINT32_C(4) * 1024 * 1024 + 4)

typedef enum TgDoipType {
        TG_DOIP_GENERIC_NACK = 0x0000,
        TG_DOIP_VEHICLE_ID_REQUEST = 0x0001,
        TG_DOIP_VEHICLE_ID_REQUEST_EID = 0x0002,
        TG_DOIP_VEHICLE_ID_REQUEST_VIN = 0x0003,
        TG_DOIP_VEHICLE_ANNOUNCEMENT = 0x0004, /* also the identification response */
        TG_DOIP_ROUTING_ACTIVATION_REQUEST = 0x0005,
        TG_DOIP_ROUTING_ACTIVATION_RESPONSE = 0x0006,
        TG_DOIP_ALIVE_CHECK_REQUEST = 0x0007,
        TG_DOIP_ALIVE_CHECK_RESPONSE = 0x0008,
        TG_DOIP_ENTITY_STATUS_REQUEST = 0x4001,
        TG_DOIP_ENTITY_STATUS_RESPONSE = 0x4002,
        TG_DOIP_POWER_MODE_REQUEST = 0x4003,
        TG_DOIP_POWER_MODE_RESPONSE = 0x4004,
        TG_DOIP_DIAG_MESSAGE = 0x8001,
        TG_DOIP_DIAG_ACK = 0x8002,
        TG_DOIP_DIAG_NACK = 0x8003,
} TgDoipType;

/* Generic header NACK codes (payload of TG_DOIP_GENERIC_NACK). */
enum {
        TG_DOIP_NACK_INCORRECT_PATTERN = 0x00,
        TG_DOIP_NACK_UNKNOWN_TYPE = 0x01,
        TG_DOIP_NACK_MESSAGE_TOO_LARGE = 0x02,
        TG_DOIP_NACK_OUT_OF_MEMORY = 0x03,
        TG_DOIP_NACK_INVALID_LENGTH = 0x04,
};

/* Routing activation response codes. */
enum {
        TG_DOIP_RA_UNKNOWN_SOURCE = 0x00,
        TG_DOIP_RA_NO_FREE_SOCKET = 0x01,
        TG_DOIP_RA_SOURCE_MISMATCH = 0x02,      /* SA differs from the one registered on this socket */
        TG_DOIP_RA_SOURCE_ACTIVE_ELSEWHERE = 0x03,
        TG_DOIP_RA_MISSING_AUTHENTICATION = 0x04,
        TG_DOIP_RA_CONFIRMATION_REJECTED = 0x05,
        TG_DOIP_RA_UNSUPPORTED_TYPE = 0x06,
        TG_DOIP_RA_TLS_REQUIRED = 0x07,         /* 2019 */
        TG_DOIP_RA_SUCCESS = 0x10,
        TG_DOIP_RA_CONFIRMATION_REQUIRED = 0x11,
};

/* Routing activation types. */
enum {
        TG_DOIP_ACTIVATION_DEFAULT = 0x00,
        TG_DOIP_ACTIVATION_WWH_OBD = 0x01,
        TG_DOIP_ACTIVATION_CENTRAL_SECURITY = 0xE0,
};

/* Diagnostic message ACK code and NACK codes. */
enum {
        TG_DOIP_DIAG_ACK_OK = 0x00,
        TG_DOIP_DIAG_NACK_INVALID_SOURCE = 0x02,
        TG_DOIP_DIAG_NACK_UNKNOWN_TARGET = 0x03,
        TG_DOIP_DIAG_NACK_MESSAGE_TOO_LARGE = 0x04,
        TG_DOIP_DIAG_NACK_OUT_OF_MEMORY = 0x05,
        TG_DOIP_DIAG_NACK_TARGET_UNREACHABLE = 0x06,
        TG_DOIP_DIAG_NACK_UNKNOWN_NETWORK = 0x07,
        TG_DOIP_DIAG_NACK_TRANSPORT_ERROR = 0x08,
};

/* Vehicle announcement further action, sync status; entity node type; power mode. */
enum {
        TG_DOIP_FURTHER_ACTION_NONE = 0x00,
        TG_DOIP_FURTHER_ACTION_CENTRAL_SECURITY = 0x10,
        TG_DOIP_SYNC_COMPLETE = 0x00,
        TG_DOIP_SYNC_INCOMPLETE = 0x10,
        TG_DOIP_NODE_GATEWAY = 0x00,
        TG_DOIP_NODE_NODE = 0x01,
        TG_DOIP_POWER_NOT_READY = 0x00,
        TG_DOIP_POWER_READY = 0x01,
        TG_DOIP_POWER_NOT_SUPPORTED = 0x02,
};

typedef enum TgDoipError {
        TG_DOIP_OK = 0,
        /* generic header errors, in the order they are checked; see above */
        TG_DOIP_INCORRECT_PATTERN,
        TG_DOIP_UNKNOWN_TYPE,
        TG_DOIP_MESSAGE_TOO_LARGE,
        TG_DOIP_OUT_OF_MEMORY,
        TG_DOIP_INVALID_LENGTH,
        /* whole-buffer decoding */
        TG_DOIP_TRUNCATED,       /* fewer bytes than the header announces */
        TG_DOIP_TRAILING_BYTES,  /* more bytes than the header announces */
        /* encoding */
        TG_DOIP_NO_SPACE,        /* the output buffer is too small */
        TG_DOIP_INVALID_MESSAGE, /* a message the decoder would refuse (version, type, empty user data) */
        _TG_DOIP_ERROR_MAX,
} TgDoipError;

/* "incorrect-pattern", "unknown-payload-type", … ("unknown-error" out of range). */
const char *tg_doip_error_to_string(TgDoipError e);
/* The generic NACK code to send for e, or -1 if e is no header error. */
int tg_doip_error_nack_code(TgDoipError e);
/* Whether the standard closes the TCP connection after the NACK for e
 * (incorrect pattern, invalid length) rather than discarding the message. */
bool tg_doip_error_closes(TgDoipError e);

const char *tg_doip_type_to_string(uint16_t type);                    /* "diagnostic-message", … "unknown" */
const char *tg_doip_nack_code_to_string(uint8_t code);                /* generic NACK codes */
const char *tg_doip_routing_response_to_string(uint8_t code);         /* "success", … */
const char *tg_doip_activation_type_to_string(uint8_t type);
const char *tg_doip_diag_nack_to_string(uint8_t code);                /* "unknown-target-address", … */

typedef struct TgDoipHeader {
        uint8_t version;
        uint16_t type;
        uint32_t payload_length;
} TgDoipHeader;

typedef struct TgDoipVehicleAnnouncement {
        uint8_t vin[TG_DOIP_VIN_SIZE];
        uint16_t logical_address;
        uint8_t eid[TG_DOIP_EID_SIZE];
        uint8_t gid[TG_DOIP_GID_SIZE];
        uint8_t further_action;
        bool has_sync_status;
        uint8_t sync_status;
} TgDoipVehicleAnnouncement;

typedef struct TgDoipRoutingActivationRequest {
        uint16_t source_address;
        uint8_t activation_type;
        uint32_t reserved;   /* ISO reserved, 0 */
        bool has_oem;
        uint32_t oem;
} TgDoipRoutingActivationRequest;

typedef struct TgDoipRoutingActivationResponse {
        uint16_t tester_address;
        uint16_t entity_address;
        uint8_t code;        /* TG_DOIP_RA_* */
        uint32_t reserved;
        bool has_oem;
        uint32_t oem;
} TgDoipRoutingActivationResponse;

typedef struct TgDoipEntityStatus {
        uint8_t node_type;
        uint8_t max_sockets;
        uint8_t open_sockets;
        bool has_max_data_size;
        uint32_t max_data_size;
} TgDoipEntityStatus;

/* 0x8001: data is the UDS message. 0x8002/0x8003: code is the ACK/NACK
 * code, data the (optional, possibly empty) previous diagnostic message. */
typedef struct TgDoipDiag {
        uint16_t source_address;
        uint16_t target_address;
        uint8_t code;
        const uint8_t *data;
        size_t data_len;
} TgDoipDiag;

typedef struct TgDoipMessage {
        uint8_t version;
        uint16_t type; /* TgDoipType */
        union {
                uint8_t nack_code;       /* GENERIC_NACK */
                uint8_t eid[TG_DOIP_EID_SIZE]; /* VEHICLE_ID_REQUEST_EID */
                uint8_t vin[TG_DOIP_VIN_SIZE]; /* VEHICLE_ID_REQUEST_VIN */
                TgDoipVehicleAnnouncement announcement;
                TgDoipRoutingActivationRequest activation_request;
                TgDoipRoutingActivationResponse activation_response;
                uint16_t alive_source_address; /* ALIVE_CHECK_RESPONSE */
                TgDoipEntityStatus entity_status;
                uint8_t power_mode;      /* POWER_MODE_RESPONSE */
                TgDoipDiag diag;         /* DIAG_MESSAGE, DIAG_ACK, DIAG_NACK */
        };
} TgDoipMessage;

/* Check the pattern of an 8-byte header and fill *ret (always, for
 * messages): TG_DOIP_INCORRECT_PATTERN or TG_DOIP_OK. */
TgDoipError tg_doip_header_parse(const uint8_t h[TG_DOIP_HEADER_SIZE], TgDoipHeader *ret);
/* The remaining header checks on a header with a correct pattern, in the
 * standard's order: type, max_payload, length for the type. */
TgDoipError tg_doip_header_check(const TgDoipHeader *h, uint32_t max_payload);
/* Whether a payload of this length is valid for this type (false for unknown types). */
bool tg_doip_payload_length_valid(uint16_t type, uint64_t length);
/* Parse the payload of a known type. Errors: TG_DOIP_UNKNOWN_TYPE,
 * TG_DOIP_INVALID_LENGTH. ret->version is left as it is. */
TgDoipError tg_doip_payload_parse(uint16_t type, const uint8_t *p, size_t len, TgDoipMessage *ret);
/* Decode exactly one message (header and all its payload, nothing more). */
TgDoipError tg_doip_message_decode(const uint8_t *buf, size_t size, uint32_t max_payload, TgDoipMessage *ret);

/* Encode m (header and payload) into buf: *ret_size is the size it takes,
 * also when the answer is TG_DOIP_NO_SPACE (buf may be NULL with size 0 to
 * ask for the size). TG_DOIP_INVALID_MESSAGE for a
 * message the decoder would refuse (unknown version or type, diagnostic
 * message without user data). */
TgDoipError tg_doip_message_encode(const TgDoipMessage *m, uint8_t *buf, size_t size, size_t *ret_size);
/* Write a generic header. */
void tg_doip_put_header(uint8_t p[TG_DOIP_HEADER_SIZE], uint8_t version, uint16_t type, uint32_t payload_length);
/* The 12 bytes before the user data of a diagnostic message of data_len
 * bytes, for building a large one (TransferData) in place. */
void tg_doip_put_diag_header(uint8_t p[TG_DOIP_DIAG_HEADER_SIZE], uint8_t version, uint16_t source, uint16_t target,
                             uint32_t data_len);

/*
 * Incremental decoder for a TCP stream. Push bytes in pieces of any size;
 * it takes them until a message is complete. A message that lies whole in
 * the caller's piece is parsed in place; otherwise its payload is copied
 * once into the decoder's buffer. That buffer is (re)allocated when the
 * header of such a message is in, to at least its announced length,
 * doubling, never beyond max_payload, and kept until
 * tg_doip_decoder_done(): max_payload bounds the memory a peer can make a
 * decoder take. Nothing is ever moved inside a buffer, so the cost is
 * linear in the bytes pushed whatever the piece sizes.
 *
 * Header errors come as soon as the 8 header bytes are in:
 *  - TG_DOIP_UNKNOWN_TYPE, TG_DOIP_MESSAGE_TOO_LARGE, TG_DOIP_OUT_OF_MEMORY:
 *    the caller sends the generic NACK (tg_doip_error_nack_code()); the
 *    decoder skips that message's payload by itself and goes on with the
 *    next message on later calls.
 *  - TG_DOIP_INCORRECT_PATTERN, TG_DOIP_INVALID_LENGTH: the caller sends
 *    the NACK and closes the connection. The error is sticky.
 * tg_doip_error_closes() tells the two apart.
 */
typedef struct TgDoipDecoder {
        uint32_t max_payload;
        uint8_t header_bytes[TG_DOIP_HEADER_SIZE];
        uint8_t header_got;     /* 0 … 8 bytes of the current header */
        TgDoipHeader header;    /* of the current message (or of the last error), once complete */
        uint8_t *buf;           /* payload of a message that arrived in pieces */
        size_t allocated;
        size_t got;             /* bytes of it in buf */
        uint32_t discard;       /* payload bytes still to skip after a discarding NACK */
        TgDoipError error;      /* sticky (closing errors only) */
} TgDoipDecoder;

/* max_payload 0 means TG_DOIP_MAX_PAYLOAD_DEFAULT. */
void tg_doip_decoder_init(TgDoipDecoder *d, uint32_t max_payload);
void tg_doip_decoder_done(TgDoipDecoder *d);
/* Take bytes from buf until a message is complete or a header error occurs.
 *   - a message: TG_DOIP_OK, *ret_complete true, *ret the message;
 *     pointers in it point into buf or into the decoder and stay valid
 *     until the next call on the decoder (and as long as buf does);
 *   - more bytes needed: TG_DOIP_OK, *ret_complete false, all of buf taken;
 *   - a header error: its name, *ret_complete false; ret->version and
 *     ret->type (and d->header) say what the header held.
 * *ret_used says how many bytes of buf were taken; call again with the
 * rest. */
TgDoipError tg_doip_decoder_push(TgDoipDecoder *d, const uint8_t *buf, size_t size, size_t *ret_used,
                                 TgDoipMessage *ret, bool *ret_complete);
/* Bytes of an incomplete message held or skipped so far (header included);
 * 0 at a message boundary. */
size_t tg_doip_decoder_pending(const TgDoipDecoder *d);
