/* SPDX-License-Identifier: MIT */
/*
 * UDS (ISO 14229-1) client codec: see tg-uds.h. Every read of a response is
 * preceded by a length check; parsers never write outside their
 * out-parameters.
 */
#include <stdarg.h>
#include <stdio.h>

#include "tg-uds.h"

/* ---- names ---------------------------------------------------------------- */

const char *tg_uds_service_to_string(uint8_t sid) {
        switch (sid) {
        case TG_UDS_SID_DIAGNOSTIC_SESSION_CONTROL:
                return "DiagnosticSessionControl";
        case TG_UDS_SID_ECU_RESET:
                return "ECUReset";
        case TG_UDS_SID_READ_DATA_BY_IDENTIFIER:
                return "ReadDataByIdentifier";
        case TG_UDS_SID_SECURITY_ACCESS:
                return "SecurityAccess";
        case TG_UDS_SID_COMMUNICATION_CONTROL:
                return "CommunicationControl";
        case TG_UDS_SID_ROUTINE_CONTROL:
                return "RoutineControl";
        case TG_UDS_SID_REQUEST_DOWNLOAD:
                return "RequestDownload";
        case TG_UDS_SID_TRANSFER_DATA:
                return "TransferData";
        case TG_UDS_SID_REQUEST_TRANSFER_EXIT:
                return "RequestTransferExit";
        case TG_UDS_SID_TESTER_PRESENT:
                return "TesterPresent";
        case TG_UDS_SID_CONTROL_DTC_SETTING:
                return "ControlDTCSetting";
        default:
                return "unknown";
        }
}

static const char *const nrc_names[256] = {
        [0x00] = "positiveResponse",
        [0x10] = "generalReject",
        [0x11] = "serviceNotSupported",
        [0x12] = "subFunctionNotSupported",
        [0x13] = "incorrectMessageLengthOrInvalidFormat",
        [0x14] = "responseTooLong",
        [0x21] = "busyRepeatRequest",
        [0x22] = "conditionsNotCorrect",
        [0x24] = "requestSequenceError",
        [0x25] = "noResponseFromSubnetComponent",
        [0x26] = "failurePreventsExecutionOfRequestedAction",
        [0x31] = "requestOutOfRange",
        [0x33] = "securityAccessDenied",
        [0x34] = "authenticationRequired",
        [0x35] = "invalidKey",
        [0x36] = "exceededNumberOfAttempts",
        [0x37] = "requiredTimeDelayNotExpired",
        [0x38] = "secureDataTransmissionRequired",
        [0x39] = "secureDataTransmissionNotAllowed",
        [0x3A] = "secureDataVerificationFailed",
        [0x50] = "certificateVerificationFailedInvalidTimePeriod",
        [0x51] = "certificateVerificationFailedInvalidSignature",
        [0x52] = "certificateVerificationFailedInvalidChainOfTrust",
        [0x53] = "certificateVerificationFailedInvalidType",
        [0x54] = "certificateVerificationFailedInvalidFormat",
        [0x55] = "certificateVerificationFailedInvalidContent",
        [0x56] = "certificateVerificationFailedInvalidScope",
        [0x57] = "certificateVerificationFailedInvalidCertificate",
        [0x58] = "ownershipVerificationFailed",
        [0x59] = "challengeCalculationFailed",
        [0x5A] = "settingAccessRightsFailed",
        [0x5B] = "sessionKeyCreationDerivationFailed",
        [0x5C] = "configurationDataUsageFailed",
        [0x5D] = "deAuthenticationFailed",
        [0x70] = "uploadDownloadNotAccepted",
        [0x71] = "transferDataSuspended",
        [0x72] = "generalProgrammingFailure",
        [0x73] = "wrongBlockSequenceCounter",
        [0x78] = "requestCorrectlyReceived-ResponsePending",
        [0x7E] = "subFunctionNotSupportedInActiveSession",
        [0x7F] = "serviceNotSupportedInActiveSession",
        [0x81] = "rpmTooHigh",
        [0x82] = "rpmTooLow",
        [0x83] = "engineIsRunning",
        [0x84] = "engineIsNotRunning",
        [0x85] = "engineRunTimeTooLow",
        [0x86] = "temperatureTooHigh",
        [0x87] = "temperatureTooLow",
        [0x88] = "vehicleSpeedTooHigh",
        [0x89] = "vehicleSpeedTooLow",
        [0x8A] = "throttle/PedalTooHigh",
        [0x8B] = "throttle/PedalTooLow",
        [0x8C] = "transmissionRangeNotInNeutral",
        [0x8D] = "transmissionRangeNotInGear",
        [0x8F] = "brakeSwitch(es)NotClosed",
        [0x90] = "shifterLeverNotInPark",
        [0x91] = "torqueConverterClutchLocked",
        [0x92] = "voltageTooHigh",
        [0x93] = "voltageTooLow",
        [0x94] = "resourceTemporarilyNotAvailable",
};

const char *tg_uds_nrc_to_string(uint8_t nrc) {
        if (nrc_names[nrc])
                return nrc_names[nrc];
        if (nrc >= 0x95 && nrc <= 0xEF)
                return "reservedForSpecificConditionsNotCorrect";
        if (nrc >= 0xF0 && nrc <= 0xFE)
                return "vehicleManufacturerSpecificConditionsNotCorrect";
        return "ISOSAEReserved";
}

/* ---- errors ---------------------------------------------------------------- */

static void error_init(TgUdsError *err, uint8_t sid) {
        if (err)
                *err = (TgUdsError) { .sid = sid };
}

_printf_(2, 3) static int bad(TgUdsError *err, const char *fmt, ...) {
        if (err) {
                va_list ap;

                va_start(ap, fmt);
                (void) vsnprintf(err->reason, sizeof err->reason, fmt, ap);
                va_end(ap);
                err->nrc = 0;
        }
        return -EBADMSG;
}

const char *tg_uds_error_format(const TgUdsError *err, char *buf, size_t size) {
        if (size == 0)
                return buf;
        if (!err) {
                snprintf(buf, size, "no error");
                return buf;
        }
        if (err->nrc != 0)
                snprintf(buf, size, "%s (0x%02X): negative response 0x%02X %s", tg_uds_service_to_string(err->sid),
                         err->sid, err->nrc, tg_uds_nrc_to_string(err->nrc));
        else if (err->reason[0])
                snprintf(buf, size, "%s (0x%02X): malformed response: %s", tg_uds_service_to_string(err->sid),
                         err->sid, err->reason);
        else
                snprintf(buf, size, "%s (0x%02X): no error", tg_uds_service_to_string(err->sid), err->sid);
        return buf;
}

/* ---- generic responses ------------------------------------------------------ */

bool tg_uds_response_is_pending(const uint8_t *buf, size_t n, uint8_t sid) {
        return buf && n == 3 && buf[0] == TG_UDS_NEGATIVE_RESPONSE && buf[1] == sid &&
               buf[2] == TG_UDS_NRC_RESPONSE_PENDING;
}

int tg_uds_parse_response(const uint8_t *buf, size_t n, uint8_t sid, TgUdsError *err) {
        error_init(err, sid);
        if (!buf || n == 0)
                return bad(err, "empty response");
        if (buf[0] == TG_UDS_NEGATIVE_RESPONSE) {
                if (n != 3)
                        return bad(err, "negative response of %zu bytes, not 3", n);
                if (buf[1] != sid)
                        return bad(err, "negative response for service 0x%02X", buf[1]);
                if (buf[2] == 0x00)
                        return bad(err, "negative response with NRC 0x00");
                if (err)
                        err->nrc = buf[2];
                return -EREMOTEIO;
        }
        if (buf[0] != (uint8_t) (sid + TG_UDS_POSITIVE_OFFSET))
                return bad(err, "response SID 0x%02X, expected 0x%02X", buf[0],
                           (uint8_t) (sid + TG_UDS_POSITIVE_OFFSET));
        return 0;
}

bool tg_uds_request_suppresses_response(const uint8_t *req, size_t n) {
        if (!req || n < 2)
                return false;
        switch (req[0]) {
        case TG_UDS_SID_DIAGNOSTIC_SESSION_CONTROL:
        case TG_UDS_SID_ECU_RESET:
        case TG_UDS_SID_SECURITY_ACCESS:
        case TG_UDS_SID_COMMUNICATION_CONTROL:
        case TG_UDS_SID_ROUTINE_CONTROL:
        case TG_UDS_SID_TESTER_PRESENT:
        case TG_UDS_SID_CONTROL_DTC_SETTING:
                return req[1] & TG_UDS_SUPPRESS_POS_RSP;
        default:
                return false;
        }
}

/* A positive response of a sub-function service: n within [min, max]
 * (max 0 = no limit) and the sub-function echoed without the suppress bit. */
static int parse_sub(const uint8_t *buf, size_t n, uint8_t sid, uint8_t sub, size_t min, size_t max,
                     TgUdsError *err) {
        int r = tg_uds_parse_response(buf, n, sid, err);

        if (r < 0)
                return r;
        if (n < min)
                return bad(err, "response of %zu bytes, expected at least %zu", n, min);
        if (max > 0 && n > max)
                return bad(err, "response of %zu bytes, expected at most %zu", n, max);
        if (buf[1] != (sub & 0x7F))
                return bad(err, "sub-function 0x%02X echoed as 0x%02X", (unsigned) (sub & 0x7F), buf[1]);
        return 0;
}

/* ---- encoding helpers -------------------------------------------------------- */

static int need(uint8_t *buf, size_t size, size_t n) {
        if (!buf || size < n)
                return -ENOBUFS;
        if (n > INT32_MAX)
                return -EINVAL;
        return 0;
}

/* head (a few bytes), then len bytes of data: the request's length,
 * -ENOBUFS, or -EINVAL for data missing. data may lie in buf already (a
 * block read in place at buf + head_len): it is moved before the head is
 * written. */
static int encode_with_data(uint8_t *buf, size_t size, const uint8_t *head, size_t head_len, const uint8_t *data,
                            size_t len) {
        int r;

        if (len > 0 && !data)
                return -EINVAL;
        if (len > SIZE_MAX - head_len)
                return -ENOBUFS;
        r = need(buf, size, head_len + len);
        if (r < 0)
                return r;
        if (len > 0)
                memmove(buf + head_len, data, len);
        memcpy(buf, head, head_len);
        return (int) (head_len + len);
}

static bool sub_ok(uint8_t sub) {
        return sub >= 0x01 && sub <= 0x7E;
}

static uint8_t sub_with(uint8_t sub, bool suppress) {
        return (uint8_t) (sub | (suppress ? TG_UDS_SUPPRESS_POS_RSP : 0));
}

/* A two-byte request: SID sub-function. */
static int encode_sub(uint8_t *buf, size_t size, uint8_t sid, uint8_t sub, bool suppress) {
        int r;

        if (!sub_ok(sub))
                return -EINVAL;
        r = need(buf, size, 2);
        if (r < 0)
                return r;
        buf[0] = sid;
        buf[1] = sub_with(sub, suppress);
        return 2;
}

static unsigned bytes_needed(uint64_t v) {
        unsigned k = 1;

        while (k < 8 && (v >> (8 * k)) != 0)
                k++;
        return k;
}

static void put_be(uint8_t *p, uint64_t v, unsigned width) {
        for (unsigned i = 0; i < width; i++)
                p[i] = (uint8_t) (v >> (8 * (width - 1 - i)));
}

static uint64_t get_be(const uint8_t *p, unsigned width) {
        uint64_t v = 0;

        for (unsigned i = 0; i < width; i++)
                v = v << 8 | p[i];
        return v;
}

/* ---- 0x10 ---------------------------------------------------------------------- */

int tg_uds_encode_session_control(uint8_t *buf, size_t size, uint8_t session, bool suppress) {
        return encode_sub(buf, size, TG_UDS_SID_DIAGNOSTIC_SESSION_CONTROL, session, suppress);
}

int tg_uds_parse_session_control(const uint8_t *buf, size_t n, uint8_t session, TgUdsSessionTiming *ret,
                                 TgUdsError *err) {
        int r = parse_sub(buf, n, TG_UDS_SID_DIAGNOSTIC_SESSION_CONTROL, session, 6, 6, err);

        if (r < 0)
                return r;
        if (ret)
                *ret = (TgUdsSessionTiming) {
                        .p2_ms = tg_get_be16(buf + 2),
                        .p2_star_ms = (uint32_t) tg_get_be16(buf + 4) * 10,
                };
        return 0;
}

int tg_uds_encode_session_control_response(uint8_t *buf, size_t size, uint8_t session,
                                           const TgUdsSessionTiming *t) {
        int r;

        if (!t || !sub_ok(session) || t->p2_star_ms % 10 != 0 || t->p2_star_ms / 10 > UINT16_MAX)
                return -EINVAL;
        r = need(buf, size, 6);
        if (r < 0)
                return r;
        buf[0] = TG_UDS_SID_DIAGNOSTIC_SESSION_CONTROL + TG_UDS_POSITIVE_OFFSET;
        buf[1] = session;
        tg_put_be16(buf + 2, t->p2_ms);
        tg_put_be16(buf + 4, (uint16_t) (t->p2_star_ms / 10));
        return 6;
}

/* ---- 0x11 ---------------------------------------------------------------------- */

int tg_uds_encode_ecu_reset(uint8_t *buf, size_t size, uint8_t type, bool suppress) {
        return encode_sub(buf, size, TG_UDS_SID_ECU_RESET, type, suppress);
}

int tg_uds_parse_ecu_reset(const uint8_t *buf, size_t n, uint8_t type, uint8_t *power_down_time, TgUdsError *err) {
        bool rapid = (type & 0x7F) == TG_UDS_RESET_ENABLE_RAPID_POWER_SHUTDOWN;
        int r = parse_sub(buf, n, TG_UDS_SID_ECU_RESET, type, rapid ? 3 : 2, rapid ? 3 : 2, err);

        if (r < 0)
                return r;
        if (power_down_time)
                *power_down_time = rapid ? buf[2] : 0xFF;
        return 0;
}

/* ---- 0x27 ---------------------------------------------------------------------- */

int tg_uds_key_demo(const uint8_t *seed, size_t n, uint8_t *key, size_t *key_len, void *userdata) {
        (void) userdata;
        if (!seed || !key || !key_len || n == 0)
                return -EINVAL;
        if (*key_len < n)
                return -ENOBUFS;
        for (size_t i = 0; i < n; i++) {
                uint8_t x = seed[i] ^ 0x5A;
                key[i] = (uint8_t) ((uint8_t) (x << 1 | x >> 7) ^ (uint8_t) i);
        }
        *key_len = n;
        return 0;
}

static bool seed_level_ok(uint8_t level) {
        return level >= 0x01 && level <= 0x7D && (level & 1);
}

int tg_uds_encode_request_seed(uint8_t *buf, size_t size, uint8_t level, bool suppress) {
        if (!seed_level_ok(level))
                return -EINVAL;
        return encode_sub(buf, size, TG_UDS_SID_SECURITY_ACCESS, level, suppress);
}

int tg_uds_encode_send_key(uint8_t *buf, size_t size, uint8_t level, const uint8_t *key, size_t key_len,
                           bool suppress) {
        if (!seed_level_ok(level) || !key || key_len == 0)
                return -EINVAL;
        const uint8_t head[] = { TG_UDS_SID_SECURITY_ACCESS, sub_with((uint8_t) (level + 1), suppress) };
        return encode_with_data(buf, size, head, sizeof head, key, key_len);
}

int tg_uds_encode_send_key_computed(uint8_t *buf, size_t size, uint8_t level, const uint8_t *seed,
                                    size_t seed_len, TgUdsKeyFn fn, void *userdata, bool suppress) {
        size_t key_len;
        int r;

        if (!seed_level_ok(level) || !fn || !seed || seed_len == 0)
                return -EINVAL;
        r = need(buf, size, 3);
        if (r < 0)
                return r;
        key_len = size - 2;
        r = fn(seed, seed_len, buf + 2, &key_len, userdata);
        if (r < 0)
                return r;
        if (key_len == 0 || key_len > size - 2 || key_len > INT32_MAX - 2)
                return -EINVAL; /* the algorithm broke its contract */
        buf[0] = TG_UDS_SID_SECURITY_ACCESS;
        buf[1] = sub_with((uint8_t) (level + 1), suppress);
        return (int) (2 + key_len);
}

int tg_uds_parse_request_seed(const uint8_t *buf, size_t n, uint8_t level, const uint8_t **seed,
                              size_t *seed_len, TgUdsError *err) {
        int r;

        error_init(err, TG_UDS_SID_SECURITY_ACCESS);
        if (!seed_level_ok(level & 0x7F))
                return -EINVAL;
        r = parse_sub(buf, n, TG_UDS_SID_SECURITY_ACCESS, level, 2, 0, err);
        if (r < 0)
                return r;
        if (n < 3)
                return bad(err, "no seed");
        if (seed)
                *seed = buf + 2;
        if (seed_len)
                *seed_len = n - 2;
        return 0;
}

bool tg_uds_seed_is_zero(const uint8_t *seed, size_t n) {
        if (!seed || n == 0)
                return false;
        for (size_t i = 0; i < n; i++)
                if (seed[i] != 0)
                        return false;
        return true;
}

int tg_uds_parse_send_key(const uint8_t *buf, size_t n, uint8_t level, TgUdsError *err) {
        error_init(err, TG_UDS_SID_SECURITY_ACCESS);
        if (!seed_level_ok(level & 0x7F))
                return -EINVAL;
        return parse_sub(buf, n, TG_UDS_SID_SECURITY_ACCESS, (uint8_t) ((level & 0x7F) + 1), 2, 2, err);
}

/* ---- 0x28 ---------------------------------------------------------------------- */

int tg_uds_encode_communication_control(uint8_t *buf, size_t size, uint8_t control, uint8_t comm_type,
                                        uint16_t node_id, bool suppress) {
        bool enhanced = control == TG_UDS_COMM_ENABLE_RX_DISABLE_TX_ENHANCED ||
                        control == TG_UDS_COMM_ENABLE_RX_TX_ENHANCED;
        size_t len = enhanced ? 5 : 3;
        int r;

        /* 0x00 is a valid control type here (enableRxAndTx), unlike other sub-functions. */
        if (control > 0x7E || (comm_type & 0x03) == 0)
                return -EINVAL;
        r = need(buf, size, len);
        if (r < 0)
                return r;
        buf[0] = TG_UDS_SID_COMMUNICATION_CONTROL;
        buf[1] = sub_with(control, suppress);
        buf[2] = comm_type;
        if (enhanced)
                tg_put_be16(buf + 3, node_id);
        return (int) len;
}

int tg_uds_parse_communication_control(const uint8_t *buf, size_t n, uint8_t control, TgUdsError *err) {
        return parse_sub(buf, n, TG_UDS_SID_COMMUNICATION_CONTROL, control, 2, 2, err);
}

/* ---- 0x22 ---------------------------------------------------------------------- */

int tg_uds_encode_read_data(uint8_t *buf, size_t size, const uint16_t *dids, size_t n_dids) {
        int r;

        if (!dids || n_dids == 0 || n_dids > TG_UDS_READ_DATA_MAX_DIDS)
                return -EINVAL;
        r = need(buf, size, 1 + 2 * n_dids);
        if (r < 0)
                return r;
        buf[0] = TG_UDS_SID_READ_DATA_BY_IDENTIFIER;
        for (size_t i = 0; i < n_dids; i++)
                tg_put_be16(buf + 1 + 2 * i, dids[i]);
        return (int) (1 + 2 * n_dids);
}

int tg_uds_parse_read_data(const uint8_t *buf, size_t n, uint16_t did, const uint8_t **data, size_t *data_len,
                           TgUdsError *err) {
        size_t rest = TG_UDS_DID_LENGTH_REST;

        return tg_uds_parse_read_data_multi(buf, n, &did, &rest, 1, data, data_len, err);
}

int tg_uds_parse_read_data_multi(const uint8_t *buf, size_t n, const uint16_t *dids, const size_t *lengths,
                                 size_t n_dids, const uint8_t **data, size_t *data_len, TgUdsError *err) {
        size_t off = 1;
        int r;

        r = tg_uds_parse_response(buf, n, TG_UDS_SID_READ_DATA_BY_IDENTIFIER, err);
        if (r < 0)
                return r;
        if (!dids || !lengths || n_dids == 0)
                return -EINVAL;
        for (size_t i = 0; i < n_dids; i++) {
                size_t len;

                if (n - off < 2)
                        return bad(err, "response ends before DID 0x%04X", dids[i]);
                if (tg_get_be16(buf + off) != dids[i])
                        return bad(err, "DID 0x%04X where 0x%04X was expected", tg_get_be16(buf + off), dids[i]);
                off += 2;
                if (lengths[i] == TG_UDS_DID_LENGTH_REST) {
                        if (i != n_dids - 1)
                                return -EINVAL; /* only the last record can run to the end */
                        len = n - off;
                } else {
                        len = lengths[i];
                        if (n - off < len)
                                return bad(err, "DID 0x%04X has %zu bytes, expected %zu", dids[i], n - off, len);
                }
                if (data)
                        data[i] = buf + off;
                if (data_len)
                        data_len[i] = len;
                off += len;
        }
        if (off != n)
                return bad(err, "%zu bytes after the last DID", n - off);
        return 0;
}

const char *tg_uds_did_to_string(const uint8_t *data, size_t n, char *buf, size_t size) {
        size_t o = 0;

        if (size == 0)
                return buf;
        if (!data)
                n = 0;
        while (n > 0 && (data[n - 1] == 0x00 || data[n - 1] == ' ' || data[n - 1] == 0xFF))
                n--;
        for (size_t i = 0; i < n; i++) {
                if (data[i] >= 0x20 && data[i] < 0x7F && data[i] != '\\') {
                        if (size - o < 2)
                                break;
                        buf[o++] = (char) data[i];
                } else {
                        if (size - o < 5)
                                break;
                        snprintf(buf + o, 5, "\\x%02X", data[i]);
                        o += 4;
                }
        }
        buf[o] = '\0';
        return buf;
}

/* ---- 0x31 ---------------------------------------------------------------------- */

int tg_uds_encode_routine_control(uint8_t *buf, size_t size, uint8_t type, uint16_t rid, const uint8_t *option,
                                  size_t option_len, bool suppress) {
        if (type < TG_UDS_ROUTINE_START || type > TG_UDS_ROUTINE_RESULTS)
                return -EINVAL;
        const uint8_t head[] = { TG_UDS_SID_ROUTINE_CONTROL, sub_with(type, suppress), rid >> 8, rid & 0xFF };
        return encode_with_data(buf, size, head, sizeof head, option, option_len);
}

int tg_uds_format_identifier(uint64_t address, uint64_t length, unsigned address_bytes, unsigned length_bytes,
                             uint8_t *ret) {
        unsigned a = address_bytes ?: bytes_needed(address), l = length_bytes ?: bytes_needed(length);

        if (a > 8 || l > 8)
                return -EINVAL;
        if ((a < 8 && (address >> (8 * a)) != 0) || (l < 8 && (length >> (8 * l)) != 0))
                return -EINVAL;
        if (ret)
                *ret = (uint8_t) (l << 4 | a);
        return 0;
}

/* ALFID address size at p (room checked by the caller): returns the bytes written. */
static size_t put_address_and_length(uint8_t *p, uint8_t alfid, uint64_t address, uint64_t length) {
        unsigned a = alfid & 0x0F, l = alfid >> 4;

        p[0] = alfid;
        put_be(p + 1, address, a);
        put_be(p + 1 + a, length, l);
        return 1 + a + l;
}

/* head, then an addressAndLengthFormatIdentifier and the address and size
 * it describes (0x31 FF00 erase, 0x34): the request's length or -ENOBUFS,
 * -EINVAL. */
static int encode_addressed(uint8_t *buf, size_t size, const uint8_t *head, size_t head_len, uint64_t address,
                            uint64_t length, unsigned address_bytes, unsigned length_bytes) {
        uint8_t alfid;
        size_t len;
        int r;

        r = tg_uds_format_identifier(address, length, address_bytes, length_bytes, &alfid);
        if (r < 0)
                return r;
        len = head_len + 1 + (alfid & 0x0F) + (alfid >> 4);
        r = need(buf, size, len);
        if (r < 0)
                return r;
        memcpy(buf, head, head_len);
        (void) put_address_and_length(buf + head_len, alfid, address, length);
        return (int) len;
}

int tg_uds_encode_erase_memory(uint8_t *buf, size_t size, uint64_t address, uint64_t length,
                               unsigned address_bytes, unsigned length_bytes) {
        const uint8_t head[] = { TG_UDS_SID_ROUTINE_CONTROL, TG_UDS_ROUTINE_START, TG_UDS_RID_ERASE_MEMORY >> 8,
                                 TG_UDS_RID_ERASE_MEMORY & 0xFF };

        return encode_addressed(buf, size, head, sizeof head, address, length, address_bytes, length_bytes);
}

int tg_uds_parse_routine_control(const uint8_t *buf, size_t n, uint8_t type, uint16_t rid,
                                 const uint8_t **status, size_t *status_len, TgUdsError *err) {
        int r = parse_sub(buf, n, TG_UDS_SID_ROUTINE_CONTROL, type, 4, 0, err);

        if (r < 0)
                return r;
        if (tg_get_be16(buf + 2) != rid)
                return bad(err, "routine 0x%04X where 0x%04X was expected", tg_get_be16(buf + 2), rid);
        if (status)
                *status = buf + 4;
        if (status_len)
                *status_len = n - 4;
        return 0;
}

/* ---- 0x34 0x36 0x37 ------------------------------------------------------------- */

int tg_uds_encode_request_download(uint8_t *buf, size_t size, uint8_t data_format, uint64_t address,
                                   uint64_t length, unsigned address_bytes, unsigned length_bytes) {
        const uint8_t head[] = { TG_UDS_SID_REQUEST_DOWNLOAD, data_format };

        return encode_addressed(buf, size, head, sizeof head, address, length, address_bytes, length_bytes);
}

int tg_uds_parse_request_download(const uint8_t *buf, size_t n, uint64_t *max_block_length, TgUdsError *err) {
        unsigned width;
        uint64_t v;
        int r;

        r = tg_uds_parse_response(buf, n, TG_UDS_SID_REQUEST_DOWNLOAD, err);
        if (r < 0)
                return r;
        if (n < 2)
                return bad(err, "no lengthFormatIdentifier");
        width = buf[1] >> 4;
        if (width < 1 || width > 8)
                return bad(err, "maxNumberOfBlockLength of %u bytes", width);
        if (n != 2 + (size_t) width)
                return bad(err, "response of %zu bytes, lengthFormatIdentifier 0x%02X says %u", n, buf[1],
                           2 + width);
        v = get_be(buf + 2, width);
        if (v < 3)
                return bad(err, "maxNumberOfBlockLength %" PRIu64 " leaves no room for data", v);
        if (max_block_length)
                *max_block_length = v;
        return 0;
}

int tg_uds_encode_request_download_response(uint8_t *buf, size_t size, uint64_t max_block_length,
                                            unsigned width) {
        int r;

        if (width == 0)
                width = bytes_needed(max_block_length);
        if (width > 8 || (width < 8 && (max_block_length >> (8 * width)) != 0) || max_block_length < 3)
                return -EINVAL;
        r = need(buf, size, 2 + width);
        if (r < 0)
                return r;
        buf[0] = TG_UDS_SID_REQUEST_DOWNLOAD + TG_UDS_POSITIVE_OFFSET;
        buf[1] = (uint8_t) (width << 4);
        put_be(buf + 2, max_block_length, width);
        return (int) (2 + width);
}

size_t tg_uds_transfer_data_max(uint64_t max_block_length, size_t transport_max) {
        uint64_t m = max_block_length;

        if (transport_max > 0)
                m = MIN(m, (uint64_t) transport_max);
        if (m < 3)
                return 0;
        m -= 2;
        return m > SIZE_MAX ? SIZE_MAX : (size_t) m;
}

int tg_uds_encode_transfer_data(uint8_t *buf, size_t size, uint8_t bsc, const uint8_t *data, size_t len) {
        const uint8_t head[] = { TG_UDS_SID_TRANSFER_DATA, bsc };

        return encode_with_data(buf, size, head, sizeof head, data, len);
}

int tg_uds_parse_transfer_data(const uint8_t *buf, size_t n, uint8_t bsc, const uint8_t **record,
                               size_t *record_len, TgUdsError *err) {
        int r = tg_uds_parse_response(buf, n, TG_UDS_SID_TRANSFER_DATA, err);

        if (r < 0)
                return r;
        if (n < 2)
                return bad(err, "no blockSequenceCounter");
        if (buf[1] != bsc)
                return bad(err, "blockSequenceCounter 0x%02X echoed as 0x%02X", bsc, buf[1]);
        if (record)
                *record = buf + 2;
        if (record_len)
                *record_len = n - 2;
        return 0;
}

int tg_uds_encode_request_transfer_exit(uint8_t *buf, size_t size, const uint8_t *record, size_t len) {
        const uint8_t head[] = { TG_UDS_SID_REQUEST_TRANSFER_EXIT };

        return encode_with_data(buf, size, head, sizeof head, record, len);
}

int tg_uds_parse_request_transfer_exit(const uint8_t *buf, size_t n, const uint8_t **record, size_t *record_len,
                                       TgUdsError *err) {
        int r = tg_uds_parse_response(buf, n, TG_UDS_SID_REQUEST_TRANSFER_EXIT, err);

        if (r < 0)
                return r;
        if (record)
                *record = buf + 1;
        if (record_len)
                *record_len = n - 1;
        return 0;
}

/* ---- 0x3E 0x85 ---------------------------------------------------------------------- */

int tg_uds_encode_tester_present(uint8_t *buf, size_t size, bool suppress) {
        int r = need(buf, size, 2);

        if (r < 0)
                return r;
        buf[0] = TG_UDS_SID_TESTER_PRESENT;
        buf[1] = sub_with(0x00, suppress);
        return 2;
}

int tg_uds_parse_tester_present(const uint8_t *buf, size_t n, TgUdsError *err) {
        return parse_sub(buf, n, TG_UDS_SID_TESTER_PRESENT, 0x00, 2, 2, err);
}

int tg_uds_encode_control_dtc_setting(uint8_t *buf, size_t size, uint8_t type, const uint8_t *record,
                                      size_t len, bool suppress) {
        if (!sub_ok(type))
                return -EINVAL;
        const uint8_t head[] = { TG_UDS_SID_CONTROL_DTC_SETTING, sub_with(type, suppress) };
        return encode_with_data(buf, size, head, sizeof head, record, len);
}

int tg_uds_parse_control_dtc_setting(const uint8_t *buf, size_t n, uint8_t type, TgUdsError *err) {
        return parse_sub(buf, n, TG_UDS_SID_CONTROL_DTC_SETTING, type, 2, 2, err);
}

int tg_uds_encode_negative_response(uint8_t *buf, size_t size, uint8_t sid, uint8_t nrc) {
        int r;

        if (nrc == 0)
                return -EINVAL;
        r = need(buf, size, 3);
        if (r < 0)
                return r;
        buf[0] = TG_UDS_NEGATIVE_RESPONSE;
        buf[1] = sid;
        buf[2] = nrc;
        return 3;
}

/* ---- timing ---------------------------------------------------------------------------- */

void tg_uds_timing_init(TgUdsTiming *t) {
        *t = (TgUdsTiming) {
                .p2_usec = TG_UDS_P2_DEFAULT_MS * USEC_PER_MSEC,
                .p2_star_usec = TG_UDS_P2_STAR_DEFAULT_MS * USEC_PER_MSEC,
                .margin_usec = TG_UDS_P2_MARGIN_DEFAULT_MS * USEC_PER_MSEC,
                .max_pending = TG_UDS_MAX_PENDING_DEFAULT,
                .deadline = USEC_INFINITY,
        };
}

void tg_uds_timing_set_session(TgUdsTiming *t, const TgUdsSessionTiming *s) {
        if (!s)
                return;
        t->p2_usec = s->p2_ms * USEC_PER_MSEC;
        if (s->p2_star_ms > 0)
                t->p2_star_usec = s->p2_star_ms * USEC_PER_MSEC;
}

static uint64_t add_sat(uint64_t a, uint64_t b) {
        return a > USEC_INFINITY - 1 - b ? USEC_INFINITY - 1 : a + b;
}

void tg_uds_timing_request_sent(TgUdsTiming *t, uint8_t sid, uint64_t now) {
        t->sid = sid;
        t->n_pending = 0;
        t->deadline = add_sat(now, add_sat(t->p2_usec, t->margin_usec));
}

int tg_uds_timing_response(TgUdsTiming *t, const uint8_t *buf, size_t n, uint64_t now) {
        if (t->deadline == USEC_INFINITY || !buf || n == 0)
                return TG_UDS_WAIT_IGNORE;
        /* Only a response to the service in flight counts: positive, or 7F sid …. */
        if (buf[0] == TG_UDS_NEGATIVE_RESPONSE) {
                if (n < 2 || buf[1] != t->sid)
                        return TG_UDS_WAIT_IGNORE;
        } else if (buf[0] != (uint8_t) (t->sid + TG_UDS_POSITIVE_OFFSET))
                return TG_UDS_WAIT_IGNORE;

        if (tg_uds_response_is_pending(buf, n, t->sid)) {
                t->n_pending++;
                if (t->max_pending > 0 && t->n_pending >= t->max_pending) {
                        tg_uds_timing_cancel(t);
                        return -ETIMEDOUT;
                }
                t->deadline = add_sat(now, add_sat(t->p2_star_usec, t->margin_usec));
                return TG_UDS_WAIT_PENDING;
        }
        tg_uds_timing_cancel(t);
        return TG_UDS_WAIT_DONE;
}

bool tg_uds_timing_expired(const TgUdsTiming *t, uint64_t now) {
        return t->deadline != USEC_INFINITY && now >= t->deadline;
}

void tg_uds_timing_cancel(TgUdsTiming *t) {
        t->deadline = USEC_INFINITY;
        t->n_pending = 0;
}
