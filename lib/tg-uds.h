/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * UDS (ISO 14229-1) client codec: request encoders and response parsers for
 * the services a flash sequence needs, sans-IO. Nothing here opens a socket,
 * reads a clock or logs: the transports (DoIP, ISO-TP) carry the bytes, the
 * flash engine drives the timing state below with its own clock.
 *
 * Encoders write one request into buf[0…size) and return its length, or
 *   -ENOBUFS  buf is too small (nothing useful written),
 *   -EINVAL   a parameter the service cannot carry (level, width, …).
 *
 * Parsers take one complete response (one DoIP diagnostic message / one
 * ISO-TP message) and the parameters of the request it answers. They return
 *   0          a positive response (SID + 0x40) matching the request; the
 *              out-parameters are filled; pointers out point INTO buf,
 *   -EREMOTEIO a negative response (7F SID NRC) to this request: err->nrc
 *              holds the NRC. NRC 0x78 (responsePending) is one of them:
 *              check tg_uds_response_is_pending() first and keep waiting,
 *   -EBADMSG   anything else: empty, truncated, overlong, another service's
 *              response, a sub-function / identifier / counter that does not
 *              echo the request; err->reason says which.
 *   -EINVAL    a request parameter no encoder accepts (a SecurityAccess
 *              level that is not odd 0x01…0x7D, a bad length table): a bug
 *              of the caller, not of the response.
 * err may be NULL. Out-parameters may be NULL when the caller does not need
 * them. Lengths are checked before every read.
 *
 * Sub-function services (0x10 0x11 0x27 0x28 0x31 0x3E 0x85) take a
 * `suppress` flag: bit 7 of the sub-function (suppressPosRspMsgIndicationBit).
 * The server then sends no positive response, but it still sends negative
 * ones, and after an NRC 0x78 it sends the final response (positive too).
 * See tg_uds_request_suppresses_response().
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tg-macro.h"

/* ---- Service identifiers ------------------------------------------------- */

enum {
        TG_UDS_SID_DIAGNOSTIC_SESSION_CONTROL = 0x10,
        TG_UDS_SID_ECU_RESET = 0x11,
        TG_UDS_SID_READ_DATA_BY_IDENTIFIER = 0x22,
        TG_UDS_SID_SECURITY_ACCESS = 0x27,
        TG_UDS_SID_COMMUNICATION_CONTROL = 0x28,
        TG_UDS_SID_ROUTINE_CONTROL = 0x31,
        TG_UDS_SID_REQUEST_DOWNLOAD = 0x34,
        TG_UDS_SID_TRANSFER_DATA = 0x36,
        TG_UDS_SID_REQUEST_TRANSFER_EXIT = 0x37,
        TG_UDS_SID_TESTER_PRESENT = 0x3E,
        TG_UDS_SID_CONTROL_DTC_SETTING = 0x85,
};

#define TG_UDS_NEGATIVE_RESPONSE 0x7F
#define TG_UDS_POSITIVE_OFFSET 0x40
#define TG_UDS_SUPPRESS_POS_RSP 0x80

/* A human name ("DiagnosticSessionControl"); "unknown" for others. Never NULL. */
const char *tg_uds_service_to_string(uint8_t sid);

/* ---- Negative response codes (ISO 14229-1:2020 Annex A.1) --------------- */

typedef enum TgUdsNrc {
        TG_UDS_NRC_GENERAL_REJECT = 0x10,
        TG_UDS_NRC_SERVICE_NOT_SUPPORTED = 0x11,
        TG_UDS_NRC_SUB_FUNCTION_NOT_SUPPORTED = 0x12,
        TG_UDS_NRC_INCORRECT_MESSAGE_LENGTH_OR_INVALID_FORMAT = 0x13,
        TG_UDS_NRC_RESPONSE_TOO_LONG = 0x14,
        TG_UDS_NRC_BUSY_REPEAT_REQUEST = 0x21,
        TG_UDS_NRC_CONDITIONS_NOT_CORRECT = 0x22,
        TG_UDS_NRC_REQUEST_SEQUENCE_ERROR = 0x24,
        TG_UDS_NRC_NO_RESPONSE_FROM_SUBNET_COMPONENT = 0x25,
        TG_UDS_NRC_FAILURE_PREVENTS_EXECUTION = 0x26,
        TG_UDS_NRC_REQUEST_OUT_OF_RANGE = 0x31,
        TG_UDS_NRC_SECURITY_ACCESS_DENIED = 0x33,
        TG_UDS_NRC_AUTHENTICATION_REQUIRED = 0x34,
        TG_UDS_NRC_INVALID_KEY = 0x35,
        TG_UDS_NRC_EXCEEDED_NUMBER_OF_ATTEMPTS = 0x36,
        TG_UDS_NRC_REQUIRED_TIME_DELAY_NOT_EXPIRED = 0x37,
        TG_UDS_NRC_SECURE_DATA_TRANSMISSION_REQUIRED = 0x38,
        TG_UDS_NRC_SECURE_DATA_TRANSMISSION_NOT_ALLOWED = 0x39,
        TG_UDS_NRC_SECURE_DATA_VERIFICATION_FAILED = 0x3A,
        /* 0x50…0x5D: authentication (certificate) failures, named by tg_uds_nrc_to_string() */
        TG_UDS_NRC_UPLOAD_DOWNLOAD_NOT_ACCEPTED = 0x70,
        TG_UDS_NRC_TRANSFER_DATA_SUSPENDED = 0x71,
        TG_UDS_NRC_GENERAL_PROGRAMMING_FAILURE = 0x72,
        TG_UDS_NRC_WRONG_BLOCK_SEQUENCE_COUNTER = 0x73,
        TG_UDS_NRC_RESPONSE_PENDING = 0x78,
        TG_UDS_NRC_SUB_FUNCTION_NOT_SUPPORTED_IN_ACTIVE_SESSION = 0x7E,
        TG_UDS_NRC_SERVICE_NOT_SUPPORTED_IN_ACTIVE_SESSION = 0x7F,
        /* 0x81…0x91: vehicle conditions (rpm, engine, temperature, speed, gear, brake…) */
        TG_UDS_NRC_VOLTAGE_TOO_HIGH = 0x92,
        TG_UDS_NRC_VOLTAGE_TOO_LOW = 0x93,
        TG_UDS_NRC_RESOURCE_TEMPORARILY_NOT_AVAILABLE = 0x94,
} TgUdsNrc;

/* The ISO name of an NRC ("requestOutOfRange", "requestCorrectlyReceived-
 * ResponsePending"); ranges the standard reserves are named for the range
 * ("reservedForSpecificConditionsNotCorrect" 0x95…0xEF,
 * "vehicleManufacturerSpecificConditionsNotCorrect" 0xF0…0xFE,
 * "ISOSAEReserved" otherwise). Never NULL. */
const char *tg_uds_nrc_to_string(uint8_t nrc);

/* What a parser says besides its return value. */
#define TG_UDS_REASON_MAX 96
typedef struct TgUdsError {
        uint8_t sid;                     /* the request's service */
        uint8_t nrc;                     /* -EREMOTEIO: the NRC; 0 otherwise */
        char reason[TG_UDS_REASON_MAX];  /* -EBADMSG: why; "" otherwise */
} TgUdsError;

/* For logs: "RoutineControl (0x31): negative response 0x22 conditionsNotCorrect"
 * or "…: malformed response: <reason>". Always NUL-terminated; returns buf. */
const char *tg_uds_error_format(const TgUdsError *err, char *buf, size_t size);

/* ---- Generic response handling ------------------------------------------- */

/* True if buf is exactly 7F sid 78: the server took the request and asks
 * for up to P2* more (see TgUdsTiming). */
bool tg_uds_response_is_pending(const uint8_t *buf, size_t n, uint8_t sid);

/* Classify a response to a request for sid without looking at its
 * parameters: 0 positive (buf[0] == sid + 0x40, n ≥ 1), -EREMOTEIO negative,
 * -EBADMSG otherwise. The service parsers below start with this. */
int tg_uds_parse_response(const uint8_t *buf, size_t n, uint8_t sid, TgUdsError *err);

/* True if the request (as encoded) has a sub-function with the
 * suppressPosRsp bit set: do not wait for a positive response. A client that
 * sends such a request with FUNCTIONAL addressing (DoIP logical address
 * 0xE400, ISO-TP functional id 0x7DF) must expect no answer at all on
 * success, and on ISO 14229-1 7.5 servers also drop NRCs 0x11 0x12 0x31
 * 0x7E 0x7F to functional requests. */
bool tg_uds_request_suppresses_response(const uint8_t *req, size_t n);

/* ---- 0x10 DiagnosticSessionControl --------------------------------------- */

enum {
        TG_UDS_SESSION_DEFAULT = 0x01,
        TG_UDS_SESSION_PROGRAMMING = 0x02,
        TG_UDS_SESSION_EXTENDED = 0x03,
};

/* The server's timing from the positive response (P2server_max in ms,
 * P2*server_max sent in units of 10 ms, given here in ms). */
typedef struct TgUdsSessionTiming {
        uint16_t p2_ms;
        uint32_t p2_star_ms;
} TgUdsSessionTiming;

/* 10 session; session 0x01…0x7E (bit 7 is the suppress flag). */
int tg_uds_encode_session_control(uint8_t *buf, size_t size, uint8_t session, bool suppress);
/* 50 session P2(2) P2*(2): exactly 6 bytes, session echoed. */
int tg_uds_parse_session_control(const uint8_t *buf, size_t n, uint8_t session, TgUdsSessionTiming *ret,
                                 TgUdsError *err);
/* The positive response (for the simulator and the fuzzer's round trip):
 * p2_star_ms must be a multiple of 10 ≤ 655350. */
int tg_uds_encode_session_control_response(uint8_t *buf, size_t size, uint8_t session,
                                           const TgUdsSessionTiming *t);

/* ---- 0x11 ECUReset -------------------------------------------------------- */

enum {
        TG_UDS_RESET_HARD = 0x01,
        TG_UDS_RESET_KEY_OFF_ON = 0x02,
        TG_UDS_RESET_SOFT = 0x03,
        TG_UDS_RESET_ENABLE_RAPID_POWER_SHUTDOWN = 0x04,
        TG_UDS_RESET_DISABLE_RAPID_POWER_SHUTDOWN = 0x05,
};

/* 11 type; type 0x01…0x7E. */
int tg_uds_encode_ecu_reset(uint8_t *buf, size_t size, uint8_t type, bool suppress);
/* 51 type [powerDownTime (s), only for type 0x04]. *power_down_time is
 * 0xFF ("failure or time not available") when absent. */
int tg_uds_parse_ecu_reset(const uint8_t *buf, size_t n, uint8_t type, uint8_t *power_down_time, TgUdsError *err);

/* ---- 0x27 SecurityAccess -------------------------------------------------- */

/* A seed-to-key algorithm. *key_len is the room in key on entry and the
 * key's length on return. Returns 0 or a negative errno (-ENOBUFS when the
 * key does not fit). Tollgate ships only tg_uds_key_demo(); an OEM's
 * algorithm is plugged in by the flash engine's caller. */
typedef int (*TgUdsKeyFn)(const uint8_t *seed, size_t n, uint8_t *key, size_t *key_len, void *userdata);

/* A NON-SECRET demonstration algorithm shared by the ECU simulator and the
 * tests: key[i] = rotl8(seed[i] ^ 0x5A, 1) ^ (uint8_t) i, as long as the
 * seed. userdata is ignored. */
int tg_uds_key_demo(const uint8_t *seed, size_t n, uint8_t *key, size_t *key_len, void *userdata);

/* level is the requestSeed sub-function: odd, 0x01…0x7D; the sendKey
 * sub-function is level + 1. */
int tg_uds_encode_request_seed(uint8_t *buf, size_t size, uint8_t level, bool suppress);
/* 27 level+1 key… (key_len ≥ 1). */
int tg_uds_encode_send_key(uint8_t *buf, size_t size, uint8_t level, const uint8_t *key, size_t key_len,
                           bool suppress);
/* The same, the key computed by fn from seed straight into buf. Errors of fn
 * are returned as they are (-ENOBUFS from fn: buf too small). */
int tg_uds_encode_send_key_computed(uint8_t *buf, size_t size, uint8_t level, const uint8_t *seed,
                                    size_t seed_len, TgUdsKeyFn fn, void *userdata, bool suppress);
/* 67 level seed… (seed ≥ 1 byte); level as for the request (the
 * suppress bit is ignored). A seed of all zeros means the level is
 * already unlocked (tg_uds_seed_is_zero()): send no key then. */
int tg_uds_parse_request_seed(const uint8_t *buf, size_t n, uint8_t level, const uint8_t **seed,
                              size_t *seed_len, TgUdsError *err);
bool tg_uds_seed_is_zero(const uint8_t *seed, size_t n);
/* 67 level+1: exactly 2 bytes. NRC 0x35 invalidKey, 0x36
 * exceededNumberOfAttempts, 0x37 requiredTimeDelayNotExpired come as
 * -EREMOTEIO. */
int tg_uds_parse_send_key(const uint8_t *buf, size_t n, uint8_t level, TgUdsError *err);

/* ---- 0x28 CommunicationControl -------------------------------------------- */

enum {
        TG_UDS_COMM_ENABLE_RX_TX = 0x00,
        TG_UDS_COMM_ENABLE_RX_DISABLE_TX = 0x01,
        TG_UDS_COMM_DISABLE_RX_ENABLE_TX = 0x02,
        TG_UDS_COMM_DISABLE_RX_TX = 0x03,
        TG_UDS_COMM_ENABLE_RX_DISABLE_TX_ENHANCED = 0x04, /* + nodeIdentificationNumber */
        TG_UDS_COMM_ENABLE_RX_TX_ENHANCED = 0x05,         /* + nodeIdentificationNumber */
};
/* communicationType: bits 0-1 which messages, bits 4-7 the subnet (0 all). */
enum {
        TG_UDS_COMM_TYPE_NORMAL = 0x01,
        TG_UDS_COMM_TYPE_NETWORK_MANAGEMENT = 0x02,
        TG_UDS_COMM_TYPE_NORMAL_AND_NM = 0x03,
};

/* 28 control comm_type [node_id(2) for control 0x04/0x05; ignored otherwise].
 * Before flashing a flash engine typically sends 28 83 03 (disableRxAndTx,
 * normal+NM, suppress) FUNCTIONALLY, to every ECU on the network, and
 * 28 80 03 afterwards; see tg_uds_request_suppresses_response(). */
int tg_uds_encode_communication_control(uint8_t *buf, size_t size, uint8_t control, uint8_t comm_type,
                                        uint16_t node_id, bool suppress);
/* 68 control: exactly 2 bytes. */
int tg_uds_parse_communication_control(const uint8_t *buf, size_t n, uint8_t control, TgUdsError *err);

/* ---- 0x22 ReadDataByIdentifier -------------------------------------------- */

enum {
        TG_UDS_DID_SPARE_PART_NUMBER = 0xF187,           /* vehicleManufacturerSparePartNumber */
        TG_UDS_DID_SOFTWARE_VERSION = 0xF189,            /* vehicleManufacturerECUSoftwareVersionNumber */
        TG_UDS_DID_SERIAL_NUMBER = 0xF18C,               /* ECUSerialNumber */
        TG_UDS_DID_VIN = 0xF190,
};

#define TG_UDS_READ_DATA_MAX_DIDS 64
/* 22 did… : 1…TG_UDS_READ_DATA_MAX_DIDS identifiers. */
int tg_uds_encode_read_data(uint8_t *buf, size_t size, const uint16_t *dids, size_t n_dids);
/* One DID: 62 did data… (data may be empty). */
int tg_uds_parse_read_data(const uint8_t *buf, size_t n, uint16_t did, const uint8_t **data, size_t *data_len,
                           TgUdsError *err);
/* Several DIDs, in the order asked: the response does not say where one
 * record ends, so the caller gives each record's length; the last one may be
 * TG_UDS_DID_LENGTH_REST (everything that is left). data[i], data_len[i]
 * are filled for each. A server may leave out DIDs it does not support
 * when it supports at least one of those asked; such a response is
 * -EBADMSG here: read one DID per request when that matters. */
#define TG_UDS_DID_LENGTH_REST SIZE_MAX
int tg_uds_parse_read_data_multi(const uint8_t *buf, size_t n, const uint16_t *dids, const size_t *lengths,
                                 size_t n_dids, const uint8_t **data, size_t *data_len, TgUdsError *err);
/* A DID record as text for logs and version comparisons: printable ASCII
 * copied, trailing NUL/space/0xFF padding dropped, other bytes as "\xHH".
 * Always NUL-terminated; returns buf. */
const char *tg_uds_did_to_string(const uint8_t *data, size_t n, char *buf, size_t size);

/* ---- 0x31 RoutineControl -------------------------------------------------- */

enum {
        TG_UDS_ROUTINE_START = 0x01,
        TG_UDS_ROUTINE_STOP = 0x02,
        TG_UDS_ROUTINE_RESULTS = 0x03,
};
/* Routine identifiers (ISO 14229-1 Annex F ranges: 0x0200…0xDFFF vehicle
 * manufacturer, 0xF000…0xFEFF system supplier, 0xFF00/0xFF01 ISO). */
enum {
        /* Not ISO-defined: the usual OEM id for "may I program now?"
         * (vehicle manufacturer range). */
        TG_UDS_RID_CHECK_PRECONDITIONS = 0x0203,
        TG_UDS_RID_ERASE_MEMORY = 0xFF00,                 /* ISO: option = ALFID address size */
        TG_UDS_RID_CHECK_PROGRAMMING_DEPENDENCIES = 0xFF01, /* ISO */
        /* Tollgate's own, OEM/SUPPLIER-SPECIFIC (system supplier range):
         * switch an A/B ECU to the bank just written (start, no option), or
         * back to the previous one (start, option 0x01); the results give
         * 1 byte, the active bank (0 = A, 1 = B). The ECU simulator
         * implements it; real ECUs use their OEM's routine instead. */
        TG_UDS_RID_TOLLGATE_BANK_SWITCH = 0xF0B1,
};

/* 31 type rid option… (option may be NULL with option_len 0). */
int tg_uds_encode_routine_control(uint8_t *buf, size_t size, uint8_t type, uint16_t rid, const uint8_t *option,
                                  size_t option_len, bool suppress);
/* Erase memory: 31 01 FF 00 ALFID address size, the widths as in
 * tg_uds_encode_request_download() (0 = as few bytes as needed). */
int tg_uds_encode_erase_memory(uint8_t *buf, size_t size, uint64_t address, uint64_t length,
                               unsigned address_bytes, unsigned length_bytes);
/* 71 type rid [routineInfo / statusRecord…]: *status points to what follows
 * the id (may be empty). */
int tg_uds_parse_routine_control(const uint8_t *buf, size_t n, uint8_t type, uint16_t rid,
                                 const uint8_t **status, size_t *status_len, TgUdsError *err);

/* ---- 0x34 RequestDownload, 0x36 TransferData, 0x37 RequestTransferExit ---- */

/* addressAndLengthFormatIdentifier: high nibble the size's width, low
 * nibble the address's width, each 1…8 bytes here; 0 asks for as few bytes
 * as the value needs. -EINVAL for a value that does not fit the width asked. */
int tg_uds_format_identifier(uint64_t address, uint64_t length, unsigned address_bytes, unsigned length_bytes,
                             uint8_t *ret);

/* 34 data_format ALFID address size. data_format: high nibble compression,
 * low nibble encryption method, 0x00 = neither. */
int tg_uds_encode_request_download(uint8_t *buf, size_t size, uint8_t data_format, uint64_t address,
                                   uint64_t length, unsigned address_bytes, unsigned length_bytes);
/* 74 LFID maxNumberOfBlockLength: LFID's high nibble is the width (1…8) of
 * what follows, exactly; the low nibble is reserved and ignored. The value
 * counts the whole TransferData request (36, counter and data), so it must
 * be ≥ 3; *max_block_length is it as sent. */
int tg_uds_parse_request_download(const uint8_t *buf, size_t n, uint64_t *max_block_length, TgUdsError *err);
/* The response (simulator, fuzzer round trip): width 0 = as few as needed. */
int tg_uds_encode_request_download_response(uint8_t *buf, size_t size, uint64_t max_block_length, unsigned width);
/* How many data bytes one TransferData may carry: max_block_length - 2,
 * further capped at transport_max - 2 (the transport's largest message,
 * e.g. 4095 for classic ISO-TP; 0 = no cap). */
size_t tg_uds_transfer_data_max(uint64_t max_block_length, size_t transport_max);

/* blockSequenceCounter: the first TransferData after RequestDownload
 * carries 0x01; after 0xFF comes 0x00 (not 0x01). */
#define TG_UDS_BSC_FIRST 0x01
static inline uint8_t tg_uds_bsc_next(uint8_t bsc) {
        return (uint8_t) (bsc + 1);
}

/* 36 bsc data… (data may be empty only with len 0). */
int tg_uds_encode_transfer_data(uint8_t *buf, size_t size, uint8_t bsc, const uint8_t *data, size_t len);
/* 76 bsc [transferResponseParameterRecord…]: the counter must echo. */
int tg_uds_parse_transfer_data(const uint8_t *buf, size_t n, uint8_t bsc, const uint8_t **record,
                               size_t *record_len, TgUdsError *err);
/* 37 [transferRequestParameterRecord…] */
int tg_uds_encode_request_transfer_exit(uint8_t *buf, size_t size, const uint8_t *record, size_t len);
/* 77 [transferResponseParameterRecord…] */
int tg_uds_parse_request_transfer_exit(const uint8_t *buf, size_t n, const uint8_t **record, size_t *record_len,
                                       TgUdsError *err);

/* ---- 0x3E TesterPresent, 0x85 ControlDTCSetting -------------------------- */

/* 3E 00, or 3E 80 with suppress (the usual keep-alive, often functional). */
int tg_uds_encode_tester_present(uint8_t *buf, size_t size, bool suppress);
/* 7E 00: exactly 2 bytes. */
int tg_uds_parse_tester_present(const uint8_t *buf, size_t n, TgUdsError *err);

enum {
        TG_UDS_DTC_SETTING_ON = 0x01,
        TG_UDS_DTC_SETTING_OFF = 0x02,
};
/* 85 type [DTCSettingControlOptionRecord…] */
int tg_uds_encode_control_dtc_setting(uint8_t *buf, size_t size, uint8_t type, const uint8_t *record,
                                      size_t len, bool suppress);
/* C5 type: exactly 2 bytes. */
int tg_uds_parse_control_dtc_setting(const uint8_t *buf, size_t n, uint8_t type, TgUdsError *err);

/* 7F sid nrc (simulator, tests). nrc must not be 0. */
int tg_uds_encode_negative_response(uint8_t *buf, size_t size, uint8_t sid, uint8_t nrc);

/* ---- Client timing (P2 / P2*) -------------------------------------------- */

/* ISO 14229-2 defaults until a DiagnosticSessionControl response says
 * otherwise; the client adds a margin for the transport (ΔP2). */
#define TG_UDS_P2_DEFAULT_MS 50
#define TG_UDS_P2_STAR_DEFAULT_MS 5000
#define TG_UDS_P2_MARGIN_DEFAULT_MS 50
/* A non-default session times out after S3server (5 s) without a request:
 * send TesterPresent at most every 2 s while idle in one. */
#define TG_UDS_S3_SERVER_MS 5000
#define TG_UDS_TESTER_PRESENT_INTERVAL_MS 2000
/* A server that answers 0x78 this many times in a row for one request is
 * given up on (-ETIMEDOUT): a "response pending storm". */
#define TG_UDS_MAX_PENDING_DEFAULT 100

/* Times in µs on the caller's monotonic clock. */
typedef struct TgUdsTiming {
        uint64_t p2_usec;       /* P2server_max */
        uint64_t p2_star_usec;  /* P2*server_max */
        uint64_t margin_usec;   /* added to both for the transport */
        unsigned max_pending;   /* 0 = no limit */
        /* the request in flight */
        uint64_t deadline;      /* USEC_INFINITY when none */
        unsigned n_pending;     /* 0x78s received for it */
        uint8_t sid;
} TgUdsTiming;

typedef enum TgUdsWait {
        TG_UDS_WAIT_DONE,     /* the final response: hand it to the service's parser */
        TG_UDS_WAIT_PENDING,  /* NRC 0x78: deadline moved to now + P2* */
        TG_UDS_WAIT_IGNORE,   /* not for the request in flight (other SID, none in flight): drop it */
} TgUdsWait;

void tg_uds_timing_init(TgUdsTiming *t);
/* Take P2/P2* from a DiagnosticSessionControl response (valid for that
 * session on). p2_star_ms 0 keeps the old value. */
void tg_uds_timing_set_session(TgUdsTiming *t, const TgUdsSessionTiming *s);
/* A request for sid left at now: wait up to P2 + margin. */
void tg_uds_timing_request_sent(TgUdsTiming *t, uint8_t sid, uint64_t now);
/* A response arrived at now. PENDING (deadline extended to P2* + margin),
 * DONE (nothing in flight any more) or IGNORE; -ETIMEDOUT when max_pending
 * 0x78s came (the request is given up, nothing in flight). */
int tg_uds_timing_response(TgUdsTiming *t, const uint8_t *buf, size_t n, uint64_t now);
/* The deadline of the request in flight, USEC_INFINITY for none; expired
 * when now ≥ deadline (the caller then reports -ETIMEDOUT and calls
 * tg_uds_timing_cancel()). */
static inline uint64_t tg_uds_timing_deadline(const TgUdsTiming *t) {
        return t->deadline;
}
bool tg_uds_timing_expired(const TgUdsTiming *t, uint64_t now);
void tg_uds_timing_cancel(TgUdsTiming *t);
