/* SPDX-License-Identifier: MIT */
/*
 * The UDS client codec (lib/tg-uds.h) against the byte sequences of
 * ISO 14229-1's examples, plus every NRC name, truncated and overlong
 * responses, too-small buffers and the P2/P2* timing state.
 */
#include <stdio.h>

#include "tg-test.h"
#include "tg-uds.h"

#define B(...) ((const uint8_t[]) { __VA_ARGS__ })
#define N(...) sizeof((const uint8_t[]) { __VA_ARGS__ })
/* A byte string and its length, for calls: R(0x50, 0x02). */
#define R(...) B(__VA_ARGS__), N(__VA_ARGS__)

/* An encoder's output equals the expected bytes, and one byte less room fails. */
#define assert_encodes(want, call_with_buf_size)                                        \
        do {                                                                            \
                uint8_t _buf_[64];                                                      \
                int _len_;                                                               \
                uint8_t *buf = _buf_;                                                   \
                size_t size = sizeof _buf_;                                             \
                _len_ = (call_with_buf_size);                                             \
                assert_eq(_len_, (int) sizeof(want));                                     \
                assert_memeq(_buf_, want, sizeof(want));                                \
                size = sizeof(want) - 1;                                                \
                assert_eq((call_with_buf_size), -ENOBUFS);                              \
        } while (0)

/* ---- names and generic responses ---- */

static void test_nrc_names(void) {
        static const struct {
                uint8_t nrc;
                const char *name;
        } table[] = {
                { 0x10, "generalReject" },
                { 0x11, "serviceNotSupported" },
                { 0x12, "subFunctionNotSupported" },
                { 0x13, "incorrectMessageLengthOrInvalidFormat" },
                { 0x14, "responseTooLong" },
                { 0x21, "busyRepeatRequest" },
                { 0x22, "conditionsNotCorrect" },
                { 0x24, "requestSequenceError" },
                { 0x25, "noResponseFromSubnetComponent" },
                { 0x26, "failurePreventsExecutionOfRequestedAction" },
                { 0x31, "requestOutOfRange" },
                { 0x33, "securityAccessDenied" },
                { 0x34, "authenticationRequired" },
                { 0x35, "invalidKey" },
                { 0x36, "exceededNumberOfAttempts" },
                { 0x37, "requiredTimeDelayNotExpired" },
                { 0x38, "secureDataTransmissionRequired" },
                { 0x39, "secureDataTransmissionNotAllowed" },
                { 0x3A, "secureDataVerificationFailed" },
                { 0x50, "certificateVerificationFailedInvalidTimePeriod" },
                { 0x51, "certificateVerificationFailedInvalidSignature" },
                { 0x52, "certificateVerificationFailedInvalidChainOfTrust" },
                { 0x53, "certificateVerificationFailedInvalidType" },
                { 0x54, "certificateVerificationFailedInvalidFormat" },
                { 0x55, "certificateVerificationFailedInvalidContent" },
                { 0x56, "certificateVerificationFailedInvalidScope" },
                { 0x57, "certificateVerificationFailedInvalidCertificate" },
                { 0x58, "ownershipVerificationFailed" },
                { 0x59, "challengeCalculationFailed" },
                { 0x5A, "settingAccessRightsFailed" },
                { 0x5B, "sessionKeyCreationDerivationFailed" },
                { 0x5C, "configurationDataUsageFailed" },
                { 0x5D, "deAuthenticationFailed" },
                { 0x70, "uploadDownloadNotAccepted" },
                { 0x71, "transferDataSuspended" },
                { 0x72, "generalProgrammingFailure" },
                { 0x73, "wrongBlockSequenceCounter" },
                { 0x78, "requestCorrectlyReceived-ResponsePending" },
                { 0x7E, "subFunctionNotSupportedInActiveSession" },
                { 0x7F, "serviceNotSupportedInActiveSession" },
                { 0x81, "rpmTooHigh" },
                { 0x82, "rpmTooLow" },
                { 0x83, "engineIsRunning" },
                { 0x84, "engineIsNotRunning" },
                { 0x85, "engineRunTimeTooLow" },
                { 0x86, "temperatureTooHigh" },
                { 0x87, "temperatureTooLow" },
                { 0x88, "vehicleSpeedTooHigh" },
                { 0x89, "vehicleSpeedTooLow" },
                { 0x8A, "throttle/PedalTooHigh" },
                { 0x8B, "throttle/PedalTooLow" },
                { 0x8C, "transmissionRangeNotInNeutral" },
                { 0x8D, "transmissionRangeNotInGear" },
                { 0x8F, "brakeSwitch(es)NotClosed" },
                { 0x90, "shifterLeverNotInPark" },
                { 0x91, "torqueConverterClutchLocked" },
                { 0x92, "voltageTooHigh" },
                { 0x93, "voltageTooLow" },
                { 0x94, "resourceTemporarilyNotAvailable" },
        };
        unsigned named = 0;

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                assert_streq(tg_uds_nrc_to_string(table[i].nrc), table[i].name);
        assert_streq(tg_uds_nrc_to_string(0x00), "positiveResponse");
        assert_streq(tg_uds_nrc_to_string(0x95), "reservedForSpecificConditionsNotCorrect");
        assert_streq(tg_uds_nrc_to_string(0xEF), "reservedForSpecificConditionsNotCorrect");
        assert_streq(tg_uds_nrc_to_string(0xF0), "vehicleManufacturerSpecificConditionsNotCorrect");
        assert_streq(tg_uds_nrc_to_string(0xFE), "vehicleManufacturerSpecificConditionsNotCorrect");
        assert_streq(tg_uds_nrc_to_string(0xFF), "ISOSAEReserved");
        assert_streq(tg_uds_nrc_to_string(0x23), "ISOSAEReserved");
        assert_streq(tg_uds_nrc_to_string(0x8E), "ISOSAEReserved");
        /* Nothing but the table (and 0x00) has a name of its own. */
        for (unsigned nrc = 0; nrc < 256; nrc++) {
                const char *s = tg_uds_nrc_to_string((uint8_t) nrc);
                assert_se(s && *s);
                if (!streq(s, "ISOSAEReserved") && !strstr(s, "SpecificConditionsNotCorrect"))
                        named++;
        }
        assert_eq(named, ELEMENTSOF(table) + 1);

        assert_streq(tg_uds_service_to_string(0x34), "RequestDownload");
        assert_streq(tg_uds_service_to_string(0x99), "unknown");
}

static void test_negative(void) {
        TgUdsError err;
        char text[256];

        /* 7F 36 73: wrongBlockSequenceCounter to TransferData */
        assert_eq(tg_uds_parse_transfer_data(R(0x7F, 0x36, 0x73), 0x01, NULL, NULL, &err), -EREMOTEIO);
        assert_eq(err.sid, 0x36);
        assert_eq(err.nrc, TG_UDS_NRC_WRONG_BLOCK_SEQUENCE_COUNTER);
        assert_streq(tg_uds_error_format(&err, text, sizeof text),
                     "TransferData (0x36): negative response 0x73 wrongBlockSequenceCounter");
        assert_se(!tg_uds_response_is_pending(R(0x7F, 0x36, 0x73), 0x36));

        /* 7F 31 78: RoutineControl still running */
        assert_se(tg_uds_response_is_pending(R(0x7F, 0x31, 0x78), 0x31));
        assert_se(!tg_uds_response_is_pending(R(0x7F, 0x31, 0x78), 0x34));
        assert_se(!tg_uds_response_is_pending(R(0x7F, 0x31, 0x78, 0x00), 0x31));
        assert_se(!tg_uds_response_is_pending(R(0x7F, 0x31), 0x31));
        assert_se(!tg_uds_response_is_pending(NULL, 0, 0x31));
        assert_eq(tg_uds_parse_routine_control(R(0x7F, 0x31, 0x78), 0x01, 0xFF00, NULL, NULL, &err), -EREMOTEIO);
        assert_eq(err.nrc, 0x78);

        /* malformed negative responses */
        assert_eq(tg_uds_parse_response(R(0x7F, 0x31), 0x31, &err), -EBADMSG);
        assert_contains(err.reason, "2 bytes");
        assert_eq(err.nrc, 0);
        assert_eq(tg_uds_parse_response(R(0x7F, 0x31, 0x22, 0x00), 0x31, &err), -EBADMSG);
        assert_eq(tg_uds_parse_response(R(0x7F, 0x22, 0x31), 0x31, &err), -EBADMSG);
        assert_contains(err.reason, "service 0x22");
        assert_eq(tg_uds_parse_response(R(0x7F, 0x31, 0x00), 0x31, &err), -EBADMSG);
        assert_contains(tg_uds_error_format(&err, text, sizeof text), "RoutineControl (0x31): malformed response");
        assert_eq(tg_uds_parse_response(NULL, 0, 0x31, &err), -EBADMSG);
        assert_contains(err.reason, "empty");
        /* another service's positive response */
        assert_eq(tg_uds_parse_response(R(0x76, 0x01), 0x31, &err), -EBADMSG);
        assert_contains(err.reason, "0x76");
        /* err may be NULL */
        assert_eq(tg_uds_parse_response(R(0x7F, 0x31, 0x22), 0x31, NULL), -EREMOTEIO);
        assert_eq(tg_uds_parse_response(R(0x71), 0x31, NULL), 0);

        assert_encodes(B(0x7F, 0x27, 0x35), tg_uds_encode_negative_response(buf, size, 0x27, 0x35));
        {
                uint8_t b[3];
                assert_eq(tg_uds_encode_negative_response(b, sizeof b, 0x27, 0x00), -EINVAL);
        }
        /* a short buffer */
        assert_streq(tg_uds_error_format(&err, text, 8), "Routine");
}

static void test_suppress(void) {
        assert_se(tg_uds_request_suppresses_response(R(0x3E, 0x80)));
        assert_se(!tg_uds_request_suppresses_response(R(0x3E, 0x00)));
        assert_se(tg_uds_request_suppresses_response(R(0x28, 0x83, 0x03)));
        assert_se(tg_uds_request_suppresses_response(R(0x85, 0x82)));
        assert_se(tg_uds_request_suppresses_response(R(0x10, 0x82)));
        /* no sub-function: bit 7 of the second byte is data */
        assert_se(!tg_uds_request_suppresses_response(R(0x36, 0x80)));
        assert_se(!tg_uds_request_suppresses_response(R(0x22, 0xF1, 0x89)));
        assert_se(!tg_uds_request_suppresses_response(R(0x3E)));
}

/* ---- services ---- */

static void test_session_control(void) {
        int r;
        TgUdsSessionTiming t;
        TgUdsError err;

        assert_encodes(B(0x10, 0x02), tg_uds_encode_session_control(buf, size, TG_UDS_SESSION_PROGRAMMING, false));
        assert_encodes(B(0x10, 0x83), tg_uds_encode_session_control(buf, size, TG_UDS_SESSION_EXTENDED, true));
        {
                uint8_t b[8];
                assert_eq(tg_uds_encode_session_control(b, sizeof b, 0x00, false), -EINVAL);
                assert_eq(tg_uds_encode_session_control(b, sizeof b, 0x7F, false), -EINVAL);
                assert_eq(tg_uds_encode_session_control(b, sizeof b, 0x81, false), -EINVAL);
        }

        /* ISO 14229-1: 50 02 00 32 01 F4: P2 = 50 ms, P2* = 500 × 10 ms */
        r = tg_uds_parse_session_control(R(0x50, 0x02, 0x00, 0x32, 0x01, 0xF4), 0x02, &t, &err);
        assert_ok(r);
        assert_eq(t.p2_ms, 50);
        assert_eq(t.p2_star_ms, 5000u);
        assert_streq(err.reason, "");
        /* the suppress bit of the request is not echoed */
        r = tg_uds_parse_session_control(R(0x50, 0x03, 0x00, 0x19, 0x00, 0x0A), 0x83, &t, NULL);
        assert_ok(r);
        assert_eq(t.p2_ms, 25);
        assert_eq(t.p2_star_ms, 100u);
        /* wrong session, truncated, overlong */
        assert_eq(tg_uds_parse_session_control(R(0x50, 0x03, 0x00, 0x32, 0x01, 0xF4), 0x02, &t, &err), -EBADMSG);
        assert_contains(err.reason, "sub-function 0x02 echoed as 0x03");
        assert_eq(tg_uds_parse_session_control(R(0x50, 0x02, 0x00, 0x32, 0x01), 0x02, &t, &err), -EBADMSG);
        assert_contains(err.reason, "5 bytes");
        assert_eq(tg_uds_parse_session_control(R(0x50, 0x02), 0x02, &t, &err), -EBADMSG);
        assert_eq(tg_uds_parse_session_control(R(0x50, 0x02, 0x00, 0x32, 0x01, 0xF4, 0x00), 0x02, &t, &err),
                  -EBADMSG);
        assert_eq(tg_uds_parse_session_control(R(0x7F, 0x10, 0x22), 0x02, &t, &err), -EREMOTEIO);
        assert_eq(err.nrc, 0x22);

        t = (TgUdsSessionTiming) { .p2_ms = 50, .p2_star_ms = 5000 };
        assert_encodes(B(0x50, 0x02, 0x00, 0x32, 0x01, 0xF4),
                       tg_uds_encode_session_control_response(buf, size, 0x02, &t));
        {
                uint8_t b[8];
                t.p2_star_ms = 5001;
                assert_eq(tg_uds_encode_session_control_response(b, sizeof b, 0x02, &t), -EINVAL);
                t.p2_star_ms = 655360;
                assert_eq(tg_uds_encode_session_control_response(b, sizeof b, 0x02, &t), -EINVAL);
        }
}

static void test_ecu_reset(void) {
        int r;
        uint8_t pdt = 0;
        TgUdsError err;

        assert_encodes(B(0x11, 0x01), tg_uds_encode_ecu_reset(buf, size, TG_UDS_RESET_HARD, false));
        assert_encodes(B(0x11, 0x81), tg_uds_encode_ecu_reset(buf, size, TG_UDS_RESET_HARD, true));
        r = tg_uds_parse_ecu_reset(R(0x51, 0x01), 0x01, &pdt, &err);
        assert_ok(r);
        assert_eq(pdt, 0xFF);
        r = tg_uds_parse_ecu_reset(R(0x51, 0x04, 0x0F), 0x04, &pdt, &err);
        assert_ok(r);
        assert_eq(pdt, 0x0F);
        assert_eq(tg_uds_parse_ecu_reset(R(0x51, 0x04), 0x04, &pdt, &err), -EBADMSG);
        assert_eq(tg_uds_parse_ecu_reset(R(0x51, 0x01, 0x0F), 0x01, &pdt, &err), -EBADMSG);
        assert_eq(tg_uds_parse_ecu_reset(R(0x51, 0x03), 0x01, &pdt, &err), -EBADMSG);
        assert_eq(tg_uds_parse_ecu_reset(R(0x51), 0x01, &pdt, &err), -EBADMSG);
}

static void test_security_access(void) {
        int r;
        const uint8_t *seed;
        size_t seed_len;
        TgUdsError err;
        uint8_t b[16], key[8];
        size_t key_len = sizeof key;

        /* ISO 14229-1 example: 27 01 → 67 01 36 57; 27 02 C9 A9 → 67 02 */
        assert_encodes(B(0x27, 0x01), tg_uds_encode_request_seed(buf, size, 0x01, false));
        r = tg_uds_parse_request_seed(R(0x67, 0x01, 0x36, 0x57), 0x01, &seed, &seed_len, &err);
        assert_ok(r);
        assert_eq(seed_len, 2u);
        assert_eq(seed[0], 0x36);
        assert_eq(seed[1], 0x57);
        assert_se(!tg_uds_seed_is_zero(seed, seed_len));
        assert_encodes(B(0x27, 0x02, 0xC9, 0xA9),
                       tg_uds_encode_send_key(buf, size, 0x01, B(0xC9, 0xA9), 2, false));
        r = tg_uds_parse_send_key(R(0x67, 0x02), 0x01, &err);
        assert_ok(r);
        assert_eq(tg_uds_parse_send_key(R(0x67, 0x02, 0x00), 0x01, &err), -EBADMSG);
        assert_eq(tg_uds_parse_send_key(R(0x67, 0x01), 0x01, &err), -EBADMSG);
        assert_eq(tg_uds_parse_send_key(R(0x7F, 0x27, 0x35), 0x01, &err), -EREMOTEIO);
        assert_eq(err.nrc, TG_UDS_NRC_INVALID_KEY);
        assert_eq(tg_uds_parse_send_key(R(0x7F, 0x27, 0x36), 0x01, &err), -EREMOTEIO);
        assert_streq(tg_uds_nrc_to_string(err.nrc), "exceededNumberOfAttempts");

        /* level 0x11 (a supplier level): seed 4 bytes */
        assert_encodes(B(0x27, 0x11), tg_uds_encode_request_seed(buf, size, 0x11, false));
        r = tg_uds_parse_request_seed(R(0x67, 0x11, 1, 2, 3, 4), 0x11, &seed, &seed_len, &err);
        assert_ok(r);
        assert_eq(seed_len, 4u);
        /* already unlocked */
        r = tg_uds_parse_request_seed(R(0x67, 0x01, 0, 0), 0x01, &seed, &seed_len, &err);
        assert_ok(r);
        assert_se(tg_uds_seed_is_zero(seed, seed_len));
        /* no seed, wrong level */
        assert_eq(tg_uds_parse_request_seed(R(0x67, 0x01), 0x01, &seed, &seed_len, &err), -EBADMSG);
        assert_contains(err.reason, "no seed");
        assert_eq(tg_uds_parse_request_seed(R(0x67, 0x03, 0x36), 0x01, &seed, &seed_len, &err), -EBADMSG);
        assert_eq(tg_uds_parse_request_seed(R(0x67), 0x01, &seed, &seed_len, &err), -EBADMSG);

        /* levels: odd 0x01…0x7D (the suppress bit aside) */
        assert_eq(tg_uds_parse_request_seed(R(0x67, 0x02, 0x36), 0x02, &seed, &seed_len, &err), -EINVAL);
        assert_eq(tg_uds_parse_send_key(R(0x67, 0x00), 0x7F, &err), -EINVAL);
        assert_eq(tg_uds_parse_send_key(R(0x67, 0x80), 0xFF, &err), -EINVAL);
        r = tg_uds_parse_request_seed(R(0x67, 0x01, 0x36), 0x81, &seed, &seed_len, &err);
        assert_ok(r);
        assert_ok(tg_uds_parse_send_key(R(0x67, 0x02), 0x81, &err));
        assert_eq(tg_uds_encode_request_seed(b, sizeof b, 0x02, false), -EINVAL);
        assert_eq(tg_uds_encode_request_seed(b, sizeof b, 0x7F, false), -EINVAL);
        assert_eq(tg_uds_encode_request_seed(b, sizeof b, 0x00, false), -EINVAL);
        assert_eq(tg_uds_encode_send_key(b, sizeof b, 0x02, B(1), 1, false), -EINVAL);
        assert_eq(tg_uds_encode_send_key(b, sizeof b, 0x01, B(1), 0, false), -EINVAL);

        /* the demo algorithm, computed straight into the request */
        assert_ok(tg_uds_key_demo(B(0x36, 0x57), 2, key, &key_len, NULL));
        assert_eq(key_len, 2u);
        assert_eq(key[0], 0xD8); /* 0x36^0x5A = 0x6C, rotl → 0xD8, ^0 */
        assert_eq(key[1], 0x1B); /* 0x57^0x5A = 0x0D, rotl → 0x1A, ^1 */
        assert_eq(tg_uds_encode_send_key_computed(b, sizeof b, 0x01, B(0x36, 0x57), 2, tg_uds_key_demo, NULL, false),
                  4);
        assert_memeq(b, B(0x27, 0x02, 0xD8, 0x1B), 4);
        assert_eq(tg_uds_encode_send_key_computed(b, 3, 0x01, B(0x36, 0x57), 2, tg_uds_key_demo, NULL, false),
                  -ENOBUFS);
        assert_eq(tg_uds_encode_send_key_computed(b, 2, 0x01, B(0x36, 0x57), 2, tg_uds_key_demo, NULL, false),
                  -ENOBUFS);
        key_len = 1;
        assert_eq(tg_uds_key_demo(B(0x36, 0x57), 2, key, &key_len, NULL), -ENOBUFS);
}

static void test_communication_control(void) {
        int r;
        TgUdsError err;
        uint8_t b[8];

        /* ISO 14229-1 example: 28 01 01 → 68 01 */
        assert_encodes(B(0x28, 0x01, 0x01),
                       tg_uds_encode_communication_control(buf, size, TG_UDS_COMM_ENABLE_RX_DISABLE_TX,
                                                           TG_UDS_COMM_TYPE_NORMAL, 0, false));
        /* before flashing, functional, no positive response */
        assert_encodes(B(0x28, 0x83, 0x03),
                       tg_uds_encode_communication_control(buf, size, TG_UDS_COMM_DISABLE_RX_TX,
                                                           TG_UDS_COMM_TYPE_NORMAL_AND_NM, 0, true));
        assert_encodes(B(0x28, 0x80, 0x03),
                       tg_uds_encode_communication_control(buf, size, TG_UDS_COMM_ENABLE_RX_TX,
                                                           TG_UDS_COMM_TYPE_NORMAL_AND_NM, 0, true));
        assert_encodes(B(0x28, 0x05, 0x01, 0x00, 0x0A),
                       tg_uds_encode_communication_control(buf, size, TG_UDS_COMM_ENABLE_RX_TX_ENHANCED,
                                                           TG_UDS_COMM_TYPE_NORMAL, 0x000A, false));
        assert_eq(tg_uds_encode_communication_control(b, sizeof b, 0x03, 0x00, 0, false), -EINVAL);
        assert_eq(tg_uds_encode_communication_control(b, sizeof b, 0x7F, 0x01, 0, false), -EINVAL);

        r = tg_uds_parse_communication_control(R(0x68, 0x01), 0x01, &err);
        assert_ok(r);
        r = tg_uds_parse_communication_control(R(0x68, 0x03), 0x83, &err);
        assert_ok(r);
        r = tg_uds_parse_communication_control(R(0x68, 0x00), 0x00, &err);
        assert_ok(r);
        assert_eq(tg_uds_parse_communication_control(R(0x68, 0x01, 0x01), 0x01, &err), -EBADMSG);
        assert_eq(tg_uds_parse_communication_control(R(0x68), 0x01, &err), -EBADMSG);
        assert_eq(tg_uds_parse_communication_control(R(0x68, 0x02), 0x01, &err), -EBADMSG);
}

static void test_read_data(void) {
        int r;
        const uint8_t *data, *datas[3];
        size_t len, lens[3];
        TgUdsError err;
        char text[64];
        uint8_t b[4];

        /* 22 F1 89 → 62 F1 89 "1.4.2" */
        assert_encodes(B(0x22, 0xF1, 0x89),
                       tg_uds_encode_read_data(buf, size, (const uint16_t[]) { TG_UDS_DID_SOFTWARE_VERSION }, 1));
        r = tg_uds_parse_read_data(R(0x62, 0xF1, 0x89, '1', '.', '4', '.', '2'), 0xF189, &data, &len, &err);
        assert_ok(r);
        assert_eq(len, 5u);
        assert_memeq(data, "1.4.2", 5);
        assert_streq(tg_uds_did_to_string(data, len, text, sizeof text), "1.4.2");

        /* ISO 14229-1 example: 22 F1 90 → 62 F1 90 + 17-byte VIN */
        r = tg_uds_parse_read_data(R(0x62, 0xF1, 0x90, 'W', '0', 'L', '0', '0', '0', '0', '4', '3', 'M', 'B',
                                           '5', '4', '1', '3', '2', '6'),
                                         TG_UDS_DID_VIN, &data, &len, &err);
        assert_ok(r);
        assert_eq(len, 17u);
        assert_streq(tg_uds_did_to_string(data, len, text, sizeof text), "W0L000043MB541326");

        /* empty record; wrong DID; truncated DID */
        r = tg_uds_parse_read_data(R(0x62, 0xF1, 0x8C), 0xF18C, &data, &len, &err);
        assert_ok(r);
        assert_eq(len, 0u);
        assert_eq(tg_uds_parse_read_data(R(0x62, 0xF1, 0x87, 'x'), 0xF189, &data, &len, &err), -EBADMSG);
        assert_contains(err.reason, "DID 0xF187 where 0xF189");
        assert_eq(tg_uds_parse_read_data(R(0x62, 0xF1), 0xF189, &data, &len, &err), -EBADMSG);
        assert_eq(tg_uds_parse_read_data(R(0x62), 0xF189, &data, &len, &err), -EBADMSG);
        assert_eq(tg_uds_parse_read_data(R(0x7F, 0x22, 0x31), 0xF189, &data, &len, &err), -EREMOTEIO);
        assert_eq(err.nrc, TG_UDS_NRC_REQUEST_OUT_OF_RANGE);

        /* several DIDs, shaped like ISO 14229-1's example: 22 01 0A 01 10 → 62 01 0A (10 bytes) 01 10 (1 byte) */
        assert_encodes(B(0x22, 0x01, 0x0A, 0x01, 0x10),
                       tg_uds_encode_read_data(buf, size, (const uint16_t[]) { 0x010A, 0x0110 }, 2));
        {
                static const uint16_t dids[] = { 0x010A, 0x0110 };
                static const size_t lengths[] = { 10, 1 }, lengths_rest[] = { 10, TG_UDS_DID_LENGTH_REST };
                static const uint8_t rsp[] = { 0x62, 0x01, 0x0A, 0xA6, 0x66, 0x07, 0x50, 0x20, 0x1A,
                                               0x00, 0x63, 0x4A, 0x82, 0x01, 0x10, 0x00 };

                r = tg_uds_parse_read_data_multi(rsp, sizeof rsp, dids, lengths, 2, datas, lens, &err);
                assert_ok(r);
                assert_eq(lens[0], 10u);
                assert_eq(lens[1], 1u);
                assert_se(datas[0] == rsp + 3);
                assert_se(datas[1] == rsp + 15);
                r = tg_uds_parse_read_data_multi(rsp, sizeof rsp, dids, lengths_rest, 2, datas, lens, &err);
                assert_ok(r);
                assert_eq(lens[1], 1u);
                /* short or long by one */
                assert_eq(tg_uds_parse_read_data_multi(rsp, sizeof rsp - 1, dids, lengths, 2, datas, lens, &err),
                          -EBADMSG);
                {
                        uint8_t longer[sizeof rsp + 1];
                        memcpy(longer, rsp, sizeof rsp);
                        longer[sizeof rsp] = 0;
                        assert_eq(tg_uds_parse_read_data_multi(longer, sizeof longer, dids, lengths, 2, datas, lens,
                                                               &err),
                                  -EBADMSG);
                        assert_contains(err.reason, "after the last DID");
                }
                /* REST only for the last record */
                assert_eq(tg_uds_parse_read_data_multi(rsp, sizeof rsp, dids,
                                                       (const size_t[]) { TG_UDS_DID_LENGTH_REST, 1 }, 2, datas, lens,
                                                       &err),
                          -EINVAL);
        }
        assert_eq(tg_uds_encode_read_data(b, sizeof b, (const uint16_t[]) { 1 }, 0), -EINVAL);

        /* padding dropped, odd bytes escaped, truncation */
        assert_streq(tg_uds_did_to_string(B('A', 'B', ' ', 0, 0xFF), 5, text, sizeof text), "AB");
        assert_streq(tg_uds_did_to_string(B('A', 0x01, '\\', 'B'), 4, text, sizeof text), "A\\x01\\x5CB");
        assert_streq(tg_uds_did_to_string(B('A', 'B', 'C'), 3, text, 3), "AB");
        assert_streq(tg_uds_did_to_string(B('A', 0x01), 2, text, 4), "A");
}

static void test_routine_control(void) {
        int r;
        const uint8_t *status;
        size_t status_len;
        TgUdsError err;
        uint8_t b[8];

        assert_encodes(B(0x31, 0x01, 0x02, 0x03),
                       tg_uds_encode_routine_control(buf, size, TG_UDS_ROUTINE_START, TG_UDS_RID_CHECK_PRECONDITIONS,
                                                     NULL, 0, false));
        assert_encodes(B(0x31, 0x01, 0xF0, 0xB1, 0x01),
                       tg_uds_encode_routine_control(buf, size, TG_UDS_ROUTINE_START, TG_UDS_RID_TOLLGATE_BANK_SWITCH,
                                                     B(0x01), 1, false));
        assert_encodes(B(0x31, 0x83, 0xFF, 0x01),
                       tg_uds_encode_routine_control(buf, size, TG_UDS_ROUTINE_RESULTS,
                                                     TG_UDS_RID_CHECK_PROGRAMMING_DEPENDENCIES, NULL, 0, true));
        assert_eq(tg_uds_encode_routine_control(b, sizeof b, 0x00, 0xFF00, NULL, 0, false), -EINVAL);
        assert_eq(tg_uds_encode_routine_control(b, sizeof b, 0x04, 0xFF00, NULL, 0, false), -EINVAL);
        assert_eq(tg_uds_encode_routine_control(b, sizeof b, 0x01, 0xFF00, NULL, 1, false), -EINVAL);

        /* erase memory: 31 01 FF 00 44 address(4) size(4) */
        assert_encodes(B(0x31, 0x01, 0xFF, 0x00, 0x44, 0x00, 0x08, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00),
                       tg_uds_encode_erase_memory(buf, size, 0x80000, 0x40000, 4, 4));
        assert_encodes(B(0x31, 0x01, 0xFF, 0x00, 0x33, 0x08, 0x00, 0x00, 0x04, 0x00, 0x00),
                       tg_uds_encode_erase_memory(buf, size, 0x80000, 0x40000, 0, 0));

        /* 71 type rid [status] */
        r = tg_uds_parse_routine_control(R(0x71, 0x01, 0xFF, 0x00), 0x01, 0xFF00, &status, &status_len, &err);
        assert_ok(r);
        assert_eq(status_len, 0u);
        r = tg_uds_parse_routine_control(R(0x71, 0x03, 0xFF, 0x01, 0x00), 0x03, 0xFF01, &status, &status_len,
                                               &err);
        assert_ok(r);
        assert_eq(status_len, 1u);
        assert_eq(status[0], 0x00);
        assert_eq(tg_uds_parse_routine_control(R(0x71, 0x01, 0xFF, 0x01), 0x01, 0xFF00, &status, &status_len, &err),
                  -EBADMSG);
        assert_contains(err.reason, "routine 0xFF01");
        assert_eq(tg_uds_parse_routine_control(R(0x71, 0x01, 0xFF), 0x01, 0xFF00, &status, &status_len, &err),
                  -EBADMSG);
        assert_eq(tg_uds_parse_routine_control(R(0x71, 0x02, 0xFF, 0x00), 0x01, 0xFF00, &status, &status_len, &err),
                  -EBADMSG);
        assert_eq(tg_uds_parse_routine_control(R(0x7F, 0x31, 0x22), 0x01, 0xFF00, &status, &status_len, &err),
                  -EREMOTEIO);
        assert_eq(err.nrc, TG_UDS_NRC_CONDITIONS_NOT_CORRECT);
}

static void test_request_download(void) {
        int r;
        uint64_t max_block;
        TgUdsError err;
        uint8_t alfid, b[32];

        /* 34 00 44 address(4) size(4) */
        assert_encodes(B(0x34, 0x00, 0x44, 0x00, 0x08, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00),
                       tg_uds_encode_request_download(buf, size, 0x00, 0x80000, 0x40000, 4, 4));
        /* ISO 14229-1:2013 Table 415: 34 11 33 60 20 00 00 FF FF (compression and encryption method 1, 3+3 bytes) */
        assert_encodes(B(0x34, 0x11, 0x33, 0x60, 0x20, 0x00, 0x00, 0xFF, 0xFF),
                       tg_uds_encode_request_download(buf, size, 0x11, 0x602000, 0xFFFF, 0, 3));
        /* as few bytes as needed */
        assert_encodes(B(0x34, 0x00, 0x21, 0x00, 0x01, 0x00),
                       tg_uds_encode_request_download(buf, size, 0x00, 0x00, 0x100, 0, 0));
        assert_encodes(B(0x34, 0x00, 0x88, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0xFF, 0xFF, 0xFF, 0xFF,
                         0xFF, 0xFF, 0xFF, 0xFF),
                       tg_uds_encode_request_download(buf, size, 0x00, UINT64_C(0x0102030405060708), UINT64_MAX, 0, 0));

        assert_ok(tg_uds_format_identifier(0x602000, 0xFFFF, 0, 0, &alfid));
        assert_eq(alfid, 0x23);
        assert_eq(tg_uds_format_identifier(0x602000, 0xFFFF, 2, 0, &alfid), -EINVAL);
        assert_eq(tg_uds_format_identifier(0x602000, 0xFFFF, 0, 9, &alfid), -EINVAL);
        assert_eq(tg_uds_format_identifier(0x602000, 0x10000, 3, 2, &alfid), -EINVAL);
        assert_eq(tg_uds_encode_request_download(b, sizeof b, 0, 0x10000, 1, 2, 1), -EINVAL);

        /* 74 20 0F FF: maxNumberOfBlockLength 0x0FFF */
        r = tg_uds_parse_request_download(R(0x74, 0x20, 0x0F, 0xFF), &max_block, &err);
        assert_ok(r);
        assert_eq(max_block, 0x0FFFu);
        assert_eq(tg_uds_transfer_data_max(max_block, 0), 0x0FFDu);
        assert_eq(tg_uds_transfer_data_max(max_block, 4095), 4093u);
        assert_eq(tg_uds_transfer_data_max(0x10002, 4095), 4093u);
        assert_eq(tg_uds_transfer_data_max(0x10002, 0), 0x10000u);
        assert_eq(tg_uds_transfer_data_max(2, 0), 0u);
        /* ISO 14229-1 example: 74 20 00 81 */
        r = tg_uds_parse_request_download(R(0x74, 0x20, 0x00, 0x81), &max_block, &err);
        assert_ok(r);
        assert_eq(max_block, 0x81u);
        /* reserved low nibble ignored; 1 and 4 bytes */
        r = tg_uds_parse_request_download(R(0x74, 0x1F, 0x82), &max_block, &err);
        assert_ok(r);
        assert_eq(max_block, 0x82u);
        r = tg_uds_parse_request_download(R(0x74, 0x40, 0x00, 0x01, 0x00, 0x02), &max_block, &err);
        assert_ok(r);
        assert_eq(max_block, 0x10002u);

        /* LFID and length disagree; width 0 or 9; too small a block */
        assert_eq(tg_uds_parse_request_download(R(0x74, 0x20, 0x0F), &max_block, &err), -EBADMSG);
        assert_contains(err.reason, "3 bytes");
        assert_eq(tg_uds_parse_request_download(R(0x74, 0x20, 0x0F, 0xFF, 0x00), &max_block, &err), -EBADMSG);
        assert_eq(tg_uds_parse_request_download(R(0x74, 0x00), &max_block, &err), -EBADMSG);
        assert_eq(tg_uds_parse_request_download(R(0x74, 0x90, 1, 1, 1, 1, 1, 1, 1, 1, 1), &max_block, &err), -EBADMSG);
        assert_eq(tg_uds_parse_request_download(R(0x74, 0x10, 0x02), &max_block, &err), -EBADMSG);
        assert_contains(err.reason, "no room");
        assert_eq(tg_uds_parse_request_download(R(0x74), &max_block, &err), -EBADMSG);
        assert_eq(tg_uds_parse_request_download(R(0x7F, 0x34, 0x70), &max_block, &err), -EREMOTEIO);
        assert_streq(tg_uds_nrc_to_string(err.nrc), "uploadDownloadNotAccepted");

        assert_encodes(B(0x74, 0x20, 0x0F, 0xFF), tg_uds_encode_request_download_response(buf, size, 0x0FFF, 0));
        assert_encodes(B(0x74, 0x40, 0x00, 0x00, 0x0F, 0xFF),
                       tg_uds_encode_request_download_response(buf, size, 0x0FFF, 4));
        assert_eq(tg_uds_encode_request_download_response(b, sizeof b, 0x0FFF, 1), -EINVAL);
        assert_eq(tg_uds_encode_request_download_response(b, sizeof b, 2, 0), -EINVAL);
}

static void test_transfer_data(void) {
        int r;
        const uint8_t *record;
        size_t record_len;
        TgUdsError err;
        uint8_t bsc = TG_UDS_BSC_FIRST, b[8];

        assert_encodes(B(0x36, 0x01, 0xDE, 0xAD, 0xBE, 0xEF),
                       tg_uds_encode_transfer_data(buf, size, 0x01, B(0xDE, 0xAD, 0xBE, 0xEF), 4));
        assert_encodes(B(0x36, 0x00), tg_uds_encode_transfer_data(buf, size, 0x00, NULL, 0));
        assert_eq(tg_uds_encode_transfer_data(b, sizeof b, 0x00, NULL, 1), -EINVAL);

        r = tg_uds_parse_transfer_data(R(0x76, 0x01), 0x01, &record, &record_len, &err);
        assert_ok(r);
        assert_eq(record_len, 0u);
        r = tg_uds_parse_transfer_data(R(0x76, 0x02, 0xAB, 0xCD), 0x02, &record, &record_len, &err);
        assert_ok(r);
        assert_eq(record_len, 2u);
        assert_eq(record[0], 0xAB);
        assert_eq(tg_uds_parse_transfer_data(R(0x76, 0x02), 0x01, &record, &record_len, &err), -EBADMSG);
        assert_contains(err.reason, "0x01 echoed as 0x02");
        assert_eq(tg_uds_parse_transfer_data(R(0x76), 0x01, &record, &record_len, &err), -EBADMSG);

        /* counter: 01 … FF 00 01 … */
        for (unsigned i = 1; i < 255; i++)
                bsc = tg_uds_bsc_next(bsc);
        assert_eq(bsc, 0xFF);
        bsc = tg_uds_bsc_next(bsc);
        assert_eq(bsc, 0x00);
        assert_eq(tg_uds_bsc_next(bsc), 0x01);

        assert_encodes(B(0x37), tg_uds_encode_request_transfer_exit(buf, size, NULL, 0));
        assert_encodes(B(0x37, 0x12, 0x34), tg_uds_encode_request_transfer_exit(buf, size, B(0x12, 0x34), 2));
        r = tg_uds_parse_request_transfer_exit(R(0x77), &record, &record_len, &err);
        assert_ok(r);
        assert_eq(record_len, 0u);
        r = tg_uds_parse_request_transfer_exit(R(0x77, 0xCA, 0xFE), &record, &record_len, &err);
        assert_ok(r);
        assert_eq(record_len, 2u);
        assert_eq(tg_uds_parse_request_transfer_exit(R(0x76, 0x01), &record, &record_len, &err), -EBADMSG);
        assert_eq(tg_uds_parse_request_transfer_exit(R(0x7F, 0x37, 0x72), &record, &record_len, &err), -EREMOTEIO);
        assert_eq(err.nrc, TG_UDS_NRC_GENERAL_PROGRAMMING_FAILURE);
}

static void test_tester_present_dtc(void) {
        int r;
        TgUdsError err;
        uint8_t b[4];

        assert_encodes(B(0x3E, 0x00), tg_uds_encode_tester_present(buf, size, false));
        assert_encodes(B(0x3E, 0x80), tg_uds_encode_tester_present(buf, size, true));
        r = tg_uds_parse_tester_present(R(0x7E, 0x00), &err);
        assert_ok(r);
        assert_eq(tg_uds_parse_tester_present(R(0x7E, 0x80), &err), -EBADMSG);
        assert_eq(tg_uds_parse_tester_present(R(0x7E, 0x00, 0x00), &err), -EBADMSG);
        assert_eq(tg_uds_parse_tester_present(R(0x7E), &err), -EBADMSG);

        assert_encodes(B(0x85, 0x02), tg_uds_encode_control_dtc_setting(buf, size, TG_UDS_DTC_SETTING_OFF, NULL, 0,
                                                                          false));
        assert_encodes(B(0x85, 0x81, 0xFF, 0xFF, 0xFF),
                       tg_uds_encode_control_dtc_setting(buf, size, TG_UDS_DTC_SETTING_ON, B(0xFF, 0xFF, 0xFF), 3,
                                                         true));
        assert_eq(tg_uds_encode_control_dtc_setting(b, sizeof b, 0x00, NULL, 0, false), -EINVAL);
        r = tg_uds_parse_control_dtc_setting(R(0xC5, 0x02), 0x02, &err);
        assert_ok(r);
        r = tg_uds_parse_control_dtc_setting(R(0xC5, 0x01), 0x81, &err);
        assert_ok(r);
        assert_eq(tg_uds_parse_control_dtc_setting(R(0xC5, 0x01), 0x02, &err), -EBADMSG);
        assert_eq(tg_uds_parse_control_dtc_setting(R(0xC5, 0x02, 0x00), 0x02, &err), -EBADMSG);
        assert_eq(tg_uds_parse_control_dtc_setting(R(0x7F, 0x85, 0x7F), 0x02, &err), -EREMOTEIO);
        assert_eq(err.nrc, TG_UDS_NRC_SERVICE_NOT_SUPPORTED_IN_ACTIVE_SESSION);
}

/* Every proper prefix of a valid response is rejected as malformed: the
 * parsers accept only complete messages. */
static void test_truncated(void) {
        static const struct {
                uint8_t rsp[8];
                size_t n;
        } cases[] = {
                { { 0x50, 0x02, 0x00, 0x32, 0x01, 0xF4 }, 6 }, { { 0x51, 0x04, 0x0F }, 3 },
                { { 0x67, 0x01, 0x36 }, 3 },                 { { 0x67, 0x02 }, 2 },
                { { 0x68, 0x01 }, 2 },                       { { 0x62, 0xF1, 0x89, 'a' }, 4 },
                { { 0x71, 0x01, 0xFF, 0x00 }, 4 },           { { 0x74, 0x20, 0x0F, 0xFF }, 4 },
                { { 0x76, 0x01 }, 2 },                       { { 0x77 }, 1 },
                { { 0x7E, 0x00 }, 2 },                       { { 0xC5, 0x02 }, 2 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                for (size_t k = 0; k <= cases[i].n; k++) {
                        /* a copy that ends exactly at k, so ASan sees a read past it */
                        uint8_t *p = malloc(k ? k : 1);
                        const uint8_t *rsp = cases[i].rsp, *ptr;
                        uint64_t u64;
                        size_t len;
                        int r;

                        assert_se(p);
                        memcpy(p, rsp, k);
                        switch (rsp[0]) {
                        case 0x50:
                                r = tg_uds_parse_session_control(p, k, 0x02, NULL, NULL);
                                break;
                        case 0x51:
                                r = tg_uds_parse_ecu_reset(p, k, 0x04, NULL, NULL);
                                break;
                        case 0x67:
                                r = rsp[1] == 0x01 ? tg_uds_parse_request_seed(p, k, 0x01, &ptr, &len, NULL)
                                                   : tg_uds_parse_send_key(p, k, 0x01, NULL);
                                break;
                        case 0x68:
                                r = tg_uds_parse_communication_control(p, k, 0x01, NULL);
                                break;
                        case 0x62:
                                /* an empty record is valid: only the DID is required */
                                r = tg_uds_parse_read_data(p, k, 0xF189, &ptr, &len, NULL);
                                if (k == 3)
                                        r = r == 0 ? -EBADMSG : 0;
                                break;
                        case 0x71:
                                r = tg_uds_parse_routine_control(p, k, 0x01, 0xFF00, &ptr, &len, NULL);
                                break;
                        case 0x74:
                                r = tg_uds_parse_request_download(p, k, &u64, NULL);
                                break;
                        case 0x76:
                                r = tg_uds_parse_transfer_data(p, k, 0x01, &ptr, &len, NULL);
                                break;
                        case 0x77:
                                r = tg_uds_parse_request_transfer_exit(p, k, &ptr, &len, NULL);
                                break;
                        case 0x7E:
                                r = tg_uds_parse_tester_present(p, k, NULL);
                                break;
                        case 0xC5:
                                r = tg_uds_parse_control_dtc_setting(p, k, 0x02, NULL);
                                break;
                        default:
                                abort();
                        }
                        if (k == cases[i].n)
                                assert_ok(r);
                        else {
                                if (r != -EBADMSG)
                                        fprintf(stderr, "case %zu (0x%02X), %zu bytes: %d\n", i, rsp[0], k, r);
                                assert_eq(r, -EBADMSG);
                        }
                        free(p);
                }
}

/* ---- timing ---- */

static void test_timing(void) {
        int r;
        TgUdsSessionTiming s;
        TgUdsTiming t;
        uint64_t now = 1000 * USEC_PER_SEC;

        tg_uds_timing_init(&t);
        assert_eq(t.p2_usec, 50 * USEC_PER_MSEC);
        assert_eq(t.p2_star_usec, 5000 * USEC_PER_MSEC);
        assert_eq(tg_uds_timing_deadline(&t), USEC_INFINITY);
        assert_se(!tg_uds_timing_expired(&t, UINT64_MAX - 1));
        /* nothing in flight: any response is dropped */
        assert_eq(tg_uds_timing_response(&t, R(0x76, 0x01), now), TG_UDS_WAIT_IGNORE);

        /* request → P2 + margin */
        tg_uds_timing_request_sent(&t, 0x31, now);
        assert_eq(tg_uds_timing_deadline(&t), now + 100 * USEC_PER_MSEC);
        assert_se(!tg_uds_timing_expired(&t, now + 99 * USEC_PER_MSEC));
        assert_se(tg_uds_timing_expired(&t, now + 100 * USEC_PER_MSEC));

        /* 7F 31 78 → P2* + margin from its arrival, as often as it comes */
        now += 40 * USEC_PER_MSEC;
        assert_eq(tg_uds_timing_response(&t, R(0x7F, 0x31, 0x78), now), TG_UDS_WAIT_PENDING);
        assert_eq(tg_uds_timing_deadline(&t), now + 5050 * USEC_PER_MSEC);
        assert_eq(t.n_pending, 1u);
        now += 5000 * USEC_PER_MSEC;
        assert_se(!tg_uds_timing_expired(&t, now));
        assert_eq(tg_uds_timing_response(&t, R(0x7F, 0x31, 0x78), now), TG_UDS_WAIT_PENDING);
        assert_eq(t.n_pending, 2u);
        /* another service's answer does not end the wait */
        assert_eq(tg_uds_timing_response(&t, R(0x7F, 0x36, 0x78), now), TG_UDS_WAIT_IGNORE);
        assert_eq(tg_uds_timing_response(&t, R(0x76, 0x01), now), TG_UDS_WAIT_IGNORE);
        assert_eq(t.n_pending, 2u);
        /* the final answer, positive or negative */
        assert_eq(tg_uds_timing_response(&t, R(0x7F, 0x31, 0x22), now), TG_UDS_WAIT_DONE);
        assert_eq(tg_uds_timing_deadline(&t), USEC_INFINITY);
        tg_uds_timing_request_sent(&t, 0x31, now);
        assert_eq(tg_uds_timing_response(&t, R(0x71, 0x01, 0xFF, 0x00), now), TG_UDS_WAIT_DONE);

        /* the session's own timing */
        r = tg_uds_parse_session_control(R(0x50, 0x02, 0x00, 0x19, 0x00, 0xC8), 0x02, &s, NULL);
        assert_ok(r);
        tg_uds_timing_set_session(&t, &s);
        assert_eq(t.p2_usec, 25 * USEC_PER_MSEC);
        assert_eq(t.p2_star_usec, 2000 * USEC_PER_MSEC);
        tg_uds_timing_request_sent(&t, 0x34, now);
        assert_eq(tg_uds_timing_deadline(&t), now + 75 * USEC_PER_MSEC);
        assert_eq(tg_uds_timing_response(&t, R(0x7F, 0x34, 0x78), now), TG_UDS_WAIT_PENDING);
        assert_eq(tg_uds_timing_deadline(&t), now + 2050 * USEC_PER_MSEC);
        tg_uds_timing_cancel(&t);
        assert_eq(tg_uds_timing_deadline(&t), USEC_INFINITY);

        /* a response-pending storm is given up */
        t.max_pending = 3;
        tg_uds_timing_request_sent(&t, 0x36, now);
        assert_eq(tg_uds_timing_response(&t, R(0x7F, 0x36, 0x78), now), TG_UDS_WAIT_PENDING);
        assert_eq(tg_uds_timing_response(&t, R(0x7F, 0x36, 0x78), now), TG_UDS_WAIT_PENDING);
        assert_eq(tg_uds_timing_response(&t, R(0x7F, 0x36, 0x78), now), -ETIMEDOUT);
        assert_eq(tg_uds_timing_deadline(&t), USEC_INFINITY);

        /* no overflow near the end of the clock */
        tg_uds_timing_request_sent(&t, 0x36, UINT64_MAX - 10);
        assert_se(tg_uds_timing_deadline(&t) != USEC_INFINITY);
        assert_se(tg_uds_timing_expired(&t, UINT64_MAX - 1));
}

TG_TEST_MAIN(TEST(nrc_names), TEST(negative), TEST(suppress), TEST(session_control), TEST(ecu_reset),
             TEST(security_access), TEST(communication_control), TEST(read_data), TEST(routine_control),
             TEST(request_download), TEST(transfer_data), TEST(tester_present_dtc), TEST(truncated), TEST(timing))
