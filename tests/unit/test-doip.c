/* SPDX-License-Identifier: MIT */
/*
 * The DoIP codec (lib/tg-doip.h): byte sequences hand-built from the
 * layouts of ISO 13400-2 for each payload type, every header error, the
 * stream decoder in pieces of every size, and a 100 MiB throughput run.
 */
#include <time.h>

#include "tg-doip.h"
#include "tg-test.h"

static size_t unhex(const char *s, uint8_t *out, size_t size) {
        size_t n = 0;

        for (; *s; s++) {
                unsigned v;

                if (*s == ' ')
                        continue;
                assert_se(s[1] != '\0');
                assert_se(sscanf(s, "%2x", &v) == 1);
                assert_se(n < size);
                out[n++] = (uint8_t) v;
                s++;
        }
        return n;
}

/* Decode a whole message from hex, check it re-encodes to the same bytes. */
static TgDoipMessage decode_hex(const char *hex, uint8_t *buf, size_t size) {
        uint8_t again[256];
        TgDoipMessage m;
        size_t n = unhex(hex, buf, size), k;

        memset(&m, 0xAA, sizeof m);
        assert_eq(tg_doip_message_decode(buf, n, TG_DOIP_MAX_PAYLOAD_DEFAULT, &m), TG_DOIP_OK);
        assert_eq(tg_doip_message_encode(&m, again, sizeof again, &k), TG_DOIP_OK);
        assert_eq(k, n);
        assert_memeq(again, buf, n);
        /* too small by one: no-space, the size still told */
        assert_eq(tg_doip_message_encode(&m, again, n - 1, &k), TG_DOIP_NO_SPACE);
        assert_eq(k, n);
        assert_eq(tg_doip_message_encode(&m, NULL, 0, &k), TG_DOIP_NO_SPACE);
        assert_eq(k, n);
        return m;
}

static TgDoipError decode_error(const char *hex) {
        uint8_t buf[256];
        TgDoipMessage m;
        size_t n = unhex(hex, buf, sizeof buf);

        return tg_doip_message_decode(buf, n, TG_DOIP_MAX_PAYLOAD_DEFAULT, &m);
}

#define VIN_HEX "57 56 57 5A 5A 5A 31 4A 5A 58 57 30 30 30 30 30 31" /* WVWZZZ1JZXW000001 */
#define EID_HEX "00 1A 2B 3C 4D 5E"
#define GID_HEX "00 1A 2B 3C 4D 5F"

static void test_generic_nack(void) {
        uint8_t buf[64];
        TgDoipMessage m = decode_hex("02 FD 00 00 00 00 00 01 02", buf, sizeof buf);

        assert_eq(m.version, 0x02);
        assert_eq(m.type, TG_DOIP_GENERIC_NACK);
        assert_eq(m.nack_code, TG_DOIP_NACK_MESSAGE_TOO_LARGE);
        assert_streq(tg_doip_nack_code_to_string(m.nack_code), "message-too-large");
        assert_streq(tg_doip_nack_code_to_string(0x05), "unknown");
}

static void test_vehicle_identification_requests(void) {
        uint8_t buf[64];
        TgDoipMessage m;

        m = decode_hex("02 FD 00 01 00 00 00 00", buf, sizeof buf);
        assert_eq(m.type, TG_DOIP_VEHICLE_ID_REQUEST);
        /* the default version 0xFF, for vehicle identification requests only */
        m = decode_hex("FF 00 00 01 00 00 00 00", buf, sizeof buf);
        assert_eq(m.version, 0xFF);
        m = decode_hex("FF 00 00 02 00 00 00 06 " EID_HEX, buf, sizeof buf);
        assert_eq(m.type, TG_DOIP_VEHICLE_ID_REQUEST_EID);
        assert_memeq(m.eid, "\x00\x1a\x2b\x3c\x4d\x5e", 6);
        m = decode_hex("03 FC 00 03 00 00 00 11 " VIN_HEX, buf, sizeof buf);
        assert_eq(m.version, 0x03);
        assert_eq(m.type, TG_DOIP_VEHICLE_ID_REQUEST_VIN);
        assert_memeq(m.vin, "WVWZZZ1JZXW000001", 17);
}

static void test_vehicle_announcement(void) {
        uint8_t buf[64];
        TgDoipMessage m;

        m = decode_hex("02 FD 00 04 00 00 00 21 " VIN_HEX " 10 01 " EID_HEX " " GID_HEX " 00 10", buf, sizeof buf);
        assert_eq(m.type, TG_DOIP_VEHICLE_ANNOUNCEMENT);
        assert_memeq(m.announcement.vin, "WVWZZZ1JZXW000001", 17);
        assert_eq(m.announcement.logical_address, 0x1001);
        assert_memeq(m.announcement.eid, "\x00\x1a\x2b\x3c\x4d\x5e", 6);
        assert_memeq(m.announcement.gid, "\x00\x1a\x2b\x3c\x4d\x5f", 6);
        assert_eq(m.announcement.further_action, TG_DOIP_FURTHER_ACTION_NONE);
        assert_se(m.announcement.has_sync_status);
        assert_eq(m.announcement.sync_status, TG_DOIP_SYNC_INCOMPLETE);

        m = decode_hex("02 FD 00 04 00 00 00 20 " VIN_HEX " 10 01 " EID_HEX " " GID_HEX " 10", buf, sizeof buf);
        assert_se(!m.announcement.has_sync_status);
        assert_eq(m.announcement.further_action, TG_DOIP_FURTHER_ACTION_CENTRAL_SECURITY);
}

static void test_routing_activation(void) {
        uint8_t buf[64];
        TgDoipMessage m;

        m = decode_hex("02 FD 00 05 00 00 00 07 0E 00 00 00 00 00 00", buf, sizeof buf);
        assert_eq(m.type, TG_DOIP_ROUTING_ACTIVATION_REQUEST);
        assert_eq(m.activation_request.source_address, 0x0E00);
        assert_eq(m.activation_request.activation_type, TG_DOIP_ACTIVATION_DEFAULT);
        assert_eq(m.activation_request.reserved, 0u);
        assert_se(!m.activation_request.has_oem);
        assert_streq(tg_doip_activation_type_to_string(m.activation_request.activation_type), "default");

        m = decode_hex("02 FD 00 05 00 00 00 0B 0E 80 E0 00 00 00 01 DE AD BE EF", buf, sizeof buf);
        assert_eq(m.activation_request.source_address, 0x0E80);
        assert_eq(m.activation_request.activation_type, TG_DOIP_ACTIVATION_CENTRAL_SECURITY);
        assert_eq(m.activation_request.reserved, 1u); /* kept, so it encodes back */
        assert_se(m.activation_request.has_oem);
        assert_eq(m.activation_request.oem, 0xDEADBEEFu);

        m = decode_hex("02 FD 00 06 00 00 00 09 0E 00 10 01 10 00 00 00 00", buf, sizeof buf);
        assert_eq(m.type, TG_DOIP_ROUTING_ACTIVATION_RESPONSE);
        assert_eq(m.activation_response.tester_address, 0x0E00);
        assert_eq(m.activation_response.entity_address, 0x1001);
        assert_eq(m.activation_response.code, TG_DOIP_RA_SUCCESS);
        assert_se(!m.activation_response.has_oem);
        assert_streq(tg_doip_routing_response_to_string(m.activation_response.code), "success");

        m = decode_hex("03 FC 00 06 00 00 00 0D 0E 00 10 01 06 00 00 00 00 01 02 03 04", buf, sizeof buf);
        assert_eq(m.activation_response.code, TG_DOIP_RA_UNSUPPORTED_TYPE);
        assert_se(m.activation_response.has_oem);
        assert_eq(m.activation_response.oem, 0x01020304u);

        assert_streq(tg_doip_routing_response_to_string(0x00), "unknown-source-address");
        assert_streq(tg_doip_routing_response_to_string(0x01), "no-free-socket");
        assert_streq(tg_doip_routing_response_to_string(0x02), "source-address-mismatch");
        assert_streq(tg_doip_routing_response_to_string(0x03), "source-address-active-elsewhere");
        assert_streq(tg_doip_routing_response_to_string(0x04), "missing-authentication");
        assert_streq(tg_doip_routing_response_to_string(0x05), "confirmation-rejected");
        assert_streq(tg_doip_routing_response_to_string(0x06), "unsupported-activation-type");
        assert_streq(tg_doip_routing_response_to_string(0x11), "confirmation-required");
        assert_streq(tg_doip_routing_response_to_string(0x12), "unknown");
        assert_streq(tg_doip_routing_response_to_string(0xE5), "vehicle-manufacturer-specific");
}

static void test_alive_check_entity_status_power_mode(void) {
        uint8_t buf[64];
        TgDoipMessage m;

        m = decode_hex("02 FD 00 07 00 00 00 00", buf, sizeof buf);
        assert_eq(m.type, TG_DOIP_ALIVE_CHECK_REQUEST);
        m = decode_hex("02 FD 00 08 00 00 00 02 0E 00", buf, sizeof buf);
        assert_eq(m.type, TG_DOIP_ALIVE_CHECK_RESPONSE);
        assert_eq(m.alive_source_address, 0x0E00);

        m = decode_hex("02 FD 40 01 00 00 00 00", buf, sizeof buf);
        assert_eq(m.type, TG_DOIP_ENTITY_STATUS_REQUEST);
        m = decode_hex("02 FD 40 02 00 00 00 07 00 10 01 00 40 00 04", buf, sizeof buf);
        assert_eq(m.type, TG_DOIP_ENTITY_STATUS_RESPONSE);
        assert_eq(m.entity_status.node_type, TG_DOIP_NODE_GATEWAY);
        assert_eq(m.entity_status.max_sockets, 16);
        assert_eq(m.entity_status.open_sockets, 1);
        assert_se(m.entity_status.has_max_data_size);
        assert_eq(m.entity_status.max_data_size, 0x00400004u);
        m = decode_hex("02 FD 40 02 00 00 00 03 01 01 00", buf, sizeof buf);
        assert_eq(m.entity_status.node_type, TG_DOIP_NODE_NODE);
        assert_se(!m.entity_status.has_max_data_size);

        m = decode_hex("02 FD 40 03 00 00 00 00", buf, sizeof buf);
        assert_eq(m.type, TG_DOIP_POWER_MODE_REQUEST);
        m = decode_hex("02 FD 40 04 00 00 00 01 01", buf, sizeof buf);
        assert_eq(m.type, TG_DOIP_POWER_MODE_RESPONSE);
        assert_eq(m.power_mode, TG_DOIP_POWER_READY);
}

static void test_diagnostic_messages(void) {
        uint8_t buf[64];
        TgDoipMessage m;

        /* DiagnosticSessionControl programming session, tester 0x0E00 → ECU 0x1001 */
        m = decode_hex("02 FD 80 01 00 00 00 06 0E 00 10 01 10 03", buf, sizeof buf);
        assert_eq(m.type, TG_DOIP_DIAG_MESSAGE);
        assert_eq(m.diag.source_address, 0x0E00);
        assert_eq(m.diag.target_address, 0x1001);
        assert_eq(m.diag.data_len, 2u);
        assert_se(m.diag.data == buf + 12); /* zero-copy */
        assert_memeq(m.diag.data, "\x10\x03", 2);

        m = decode_hex("02 FD 80 02 00 00 00 05 10 01 0E 00 00", buf, sizeof buf);
        assert_eq(m.type, TG_DOIP_DIAG_ACK);
        assert_eq(m.diag.source_address, 0x1001);
        assert_eq(m.diag.target_address, 0x0E00);
        assert_eq(m.diag.code, TG_DOIP_DIAG_ACK_OK);
        assert_eq(m.diag.data_len, 0u);
        m = decode_hex("02 FD 80 02 00 00 00 07 10 01 0E 00 00 10 03", buf, sizeof buf);
        assert_eq(m.diag.data_len, 2u);
        assert_memeq(m.diag.data, "\x10\x03", 2);

        m = decode_hex("02 FD 80 03 00 00 00 05 10 01 0E 00 03", buf, sizeof buf);
        assert_eq(m.type, TG_DOIP_DIAG_NACK);
        assert_eq(m.diag.code, TG_DOIP_DIAG_NACK_UNKNOWN_TARGET);
        m = decode_hex("02 FD 80 03 00 00 00 07 10 01 0E 00 08 10 03", buf, sizeof buf);
        assert_eq(m.diag.code, TG_DOIP_DIAG_NACK_TRANSPORT_ERROR);
        assert_eq(m.diag.data_len, 2u);

        assert_streq(tg_doip_diag_nack_to_string(0x02), "invalid-source-address");
        assert_streq(tg_doip_diag_nack_to_string(0x03), "unknown-target-address");
        assert_streq(tg_doip_diag_nack_to_string(0x04), "diagnostic-message-too-large");
        assert_streq(tg_doip_diag_nack_to_string(0x05), "out-of-memory");
        assert_streq(tg_doip_diag_nack_to_string(0x06), "target-unreachable");
        assert_streq(tg_doip_diag_nack_to_string(0x07), "unknown-network");
        assert_streq(tg_doip_diag_nack_to_string(0x08), "transport-protocol-error");
        assert_streq(tg_doip_diag_nack_to_string(0x00), "unknown");
        assert_streq(tg_doip_diag_nack_to_string(0x09), "unknown");
}

static void test_put_diag_header(void) {
        uint8_t buf[TG_DOIP_DIAG_HEADER_SIZE + 3] = {}, expect[32];
        TgDoipMessage m;

        tg_doip_put_diag_header(buf, TG_DOIP_VERSION_2012, 0x0E00, 0x1001, 3);
        memcpy(buf + TG_DOIP_DIAG_HEADER_SIZE, "\x36\x01\xAA", 3);
        assert_eq(unhex("02 FD 80 01 00 00 00 07 0E 00 10 01 36 01 AA", expect, sizeof expect), sizeof buf);
        assert_memeq(buf, expect, sizeof buf);
        assert_eq(tg_doip_message_decode(buf, sizeof buf, 1000, &m), TG_DOIP_OK);
        assert_eq(m.diag.data_len, 3u);
}

static void test_header_errors(void) {
        /* the pattern */
        assert_eq(decode_error("02 FC 80 01 00 00 00 06 0E 00 10 01 10 03"), TG_DOIP_INCORRECT_PATTERN);
        assert_eq(decode_error("02 02 80 01 00 00 00 06 0E 00 10 01 10 03"), TG_DOIP_INCORRECT_PATTERN);
        assert_eq(decode_error("04 FB 80 01 00 00 00 06 0E 00 10 01 10 03"), TG_DOIP_INCORRECT_PATTERN);
        assert_eq(decode_error("00 FF 00 01 00 00 00 00"), TG_DOIP_INCORRECT_PATTERN);
        assert_eq(decode_error("FF 00 80 01 00 00 00 06 0E 00 10 01 10 03"), TG_DOIP_INCORRECT_PATTERN);
        assert_eq(decode_error("FF 00 00 05 00 00 00 07 0E 00 00 00 00 00 00"), TG_DOIP_INCORRECT_PATTERN);
        assert_eq(decode_error("01 FE 00 01 00 00 00 00"), TG_DOIP_OK); /* 2010 */
        /* unknown payload types */
        assert_eq(decode_error("02 FD 00 09 00 00 00 00"), TG_DOIP_UNKNOWN_TYPE);
        assert_eq(decode_error("02 FD 40 05 00 00 00 00"), TG_DOIP_UNKNOWN_TYPE);
        assert_eq(decode_error("02 FD 80 04 00 00 00 00"), TG_DOIP_UNKNOWN_TYPE);
        assert_eq(decode_error("02 FD FF FF FF FF FF FF"), TG_DOIP_UNKNOWN_TYPE); /* type before size */
        /* too large: before the length check */
        assert_eq(decode_error("02 FD 80 01 FF FF FF FF"), TG_DOIP_MESSAGE_TOO_LARGE);
        assert_eq(decode_error("02 FD 00 05 00 50 00 00"), TG_DOIP_MESSAGE_TOO_LARGE);
        {
                uint8_t buf[16];
                TgDoipMessage m;
                size_t n = unhex("02 FD 80 01 00 00 00 06 0E 00 10 01 10 03", buf, sizeof buf);

                assert_eq(tg_doip_message_decode(buf, n, 5, &m), TG_DOIP_MESSAGE_TOO_LARGE);
                assert_eq(tg_doip_message_decode(buf, n, 6, &m), TG_DOIP_OK);
        }
        /* truncated and trailing bytes */
        assert_eq(decode_error("02 FD 80 01 00 00 00"), TG_DOIP_TRUNCATED);
        assert_eq(decode_error("02 FD 80 01 00 00 00 06 0E 00 10 01 10"), TG_DOIP_TRUNCATED);
        assert_eq(decode_error("02 FD 80 01 00 00 00 06 0E 00 10 01 10 03 00"), TG_DOIP_TRAILING_BYTES);
}

static void test_invalid_lengths(void) {
        static const struct {
                uint16_t type;
                uint32_t valid[2]; /* valid[1] 0: one length only */
                bool variable;
        } layouts[] = {
                { TG_DOIP_GENERIC_NACK, { 1, 0 }, false },
                { TG_DOIP_VEHICLE_ID_REQUEST, { 0, 0 }, false },
                { TG_DOIP_VEHICLE_ID_REQUEST_EID, { 6, 0 }, false },
                { TG_DOIP_VEHICLE_ID_REQUEST_VIN, { 17, 0 }, false },
                { TG_DOIP_VEHICLE_ANNOUNCEMENT, { 32, 33 }, false },
                { TG_DOIP_ROUTING_ACTIVATION_REQUEST, { 7, 11 }, false },
                { TG_DOIP_ROUTING_ACTIVATION_RESPONSE, { 9, 13 }, false },
                { TG_DOIP_ALIVE_CHECK_REQUEST, { 0, 0 }, false },
                { TG_DOIP_ALIVE_CHECK_RESPONSE, { 2, 0 }, false },
                { TG_DOIP_ENTITY_STATUS_REQUEST, { 0, 0 }, false },
                { TG_DOIP_ENTITY_STATUS_RESPONSE, { 3, 7 }, false },
                { TG_DOIP_POWER_MODE_REQUEST, { 0, 0 }, false },
                { TG_DOIP_POWER_MODE_RESPONSE, { 1, 0 }, false },
                { TG_DOIP_DIAG_MESSAGE, { 5, 0 }, true },
                { TG_DOIP_DIAG_ACK, { 5, 0 }, true },
                { TG_DOIP_DIAG_NACK, { 5, 0 }, true },
        };
        uint8_t buf[TG_DOIP_HEADER_SIZE + 64] = {};

        for (size_t i = 0; i < ELEMENTSOF(layouts); i++)
                for (uint32_t len = 0; len <= 40; len++) {
                        bool valid = layouts[i].variable ? len >= layouts[i].valid[0]
                                                         : len == layouts[i].valid[0] ||
                                                                   (layouts[i].valid[1] && len == layouts[i].valid[1]);
                        TgDoipMessage m;
                        TgDoipHeader h;

                        tg_doip_put_header(buf, 0x02, layouts[i].type, len);
                        assert_eq(tg_doip_header_parse(buf, &h), TG_DOIP_OK);
                        assert_eq(tg_doip_header_check(&h, 4096), valid ? TG_DOIP_OK : TG_DOIP_INVALID_LENGTH);
                        assert_eq(tg_doip_payload_length_valid(layouts[i].type, len), valid);
                        assert_eq(tg_doip_message_decode(buf, TG_DOIP_HEADER_SIZE + len, 4096, &m),
                                  valid ? TG_DOIP_OK : TG_DOIP_INVALID_LENGTH);
                        assert_eq(tg_doip_payload_parse(layouts[i].type, buf + TG_DOIP_HEADER_SIZE, len, &m),
                                  valid ? TG_DOIP_OK : TG_DOIP_INVALID_LENGTH);
                        if (valid) {
                                uint8_t again[sizeof buf];
                                size_t k;

                                m.version = 0x02;
                                assert_eq(tg_doip_message_encode(&m, again, sizeof again, &k), TG_DOIP_OK);
                                assert_eq(k, TG_DOIP_HEADER_SIZE + len);
                                assert_memeq(again, buf, k);
                        }
                }
        assert_eq(tg_doip_payload_parse(0x0009, buf, 0, &(TgDoipMessage) {}), TG_DOIP_UNKNOWN_TYPE);
}

static void test_encode_refuses(void) {
        uint8_t buf[64];
        size_t k;

        /* diagnostic message without user data, bad versions, unknown type */
        assert_eq(tg_doip_message_encode(&(TgDoipMessage) { .version = 2, .type = TG_DOIP_DIAG_MESSAGE,
                                                            .diag = { .data = buf, .data_len = 0 } },
                                         buf, sizeof buf, &k),
                  TG_DOIP_INVALID_MESSAGE);
        assert_eq(tg_doip_message_encode(&(TgDoipMessage) { .version = 2, .type = TG_DOIP_DIAG_ACK,
                                                            .diag = { .data = NULL, .data_len = 3 } },
                                         buf, sizeof buf, &k),
                  TG_DOIP_INVALID_MESSAGE);
        assert_eq(tg_doip_message_encode(&(TgDoipMessage) { .version = 4, .type = TG_DOIP_ALIVE_CHECK_REQUEST },
                                         buf, sizeof buf, &k),
                  TG_DOIP_INVALID_MESSAGE);
        assert_eq(tg_doip_message_encode(&(TgDoipMessage) { .version = 0xFF, .type = TG_DOIP_ALIVE_CHECK_REQUEST },
                                         buf, sizeof buf, &k),
                  TG_DOIP_INVALID_MESSAGE);
        assert_eq(tg_doip_message_encode(&(TgDoipMessage) { .version = 2, .type = 0x0009 }, buf, sizeof buf, &k),
                  TG_DOIP_INVALID_MESSAGE);
        assert_eq(tg_doip_message_encode(&(TgDoipMessage) { .version = 0xFF, .type = TG_DOIP_VEHICLE_ID_REQUEST },
                                         buf, sizeof buf, &k),
                  TG_DOIP_OK);
        assert_eq(k, 8u);
        assert_memeq(buf, "\xFF\x00\x00\x01\x00\x00\x00\x00", 8);
}

static void test_names(void) {
        assert_streq(tg_doip_error_to_string(TG_DOIP_OK), "ok");
        assert_streq(tg_doip_error_to_string(TG_DOIP_INCORRECT_PATTERN), "incorrect-pattern");
        assert_streq(tg_doip_error_to_string(TG_DOIP_INVALID_LENGTH), "invalid-payload-length");
        assert_streq(tg_doip_error_to_string(_TG_DOIP_ERROR_MAX), "unknown-error");
        for (TgDoipError e = 0; e < _TG_DOIP_ERROR_MAX; e++)
                assert_se(tg_doip_error_to_string(e) != NULL);

        assert_eq(tg_doip_error_nack_code(TG_DOIP_INCORRECT_PATTERN), 0x00);
        assert_eq(tg_doip_error_nack_code(TG_DOIP_UNKNOWN_TYPE), 0x01);
        assert_eq(tg_doip_error_nack_code(TG_DOIP_MESSAGE_TOO_LARGE), 0x02);
        assert_eq(tg_doip_error_nack_code(TG_DOIP_OUT_OF_MEMORY), 0x03);
        assert_eq(tg_doip_error_nack_code(TG_DOIP_INVALID_LENGTH), 0x04);
        assert_eq(tg_doip_error_nack_code(TG_DOIP_OK), -1);
        assert_eq(tg_doip_error_nack_code(TG_DOIP_TRUNCATED), -1);
        assert_se(tg_doip_error_closes(TG_DOIP_INCORRECT_PATTERN));
        assert_se(tg_doip_error_closes(TG_DOIP_INVALID_LENGTH));
        assert_se(!tg_doip_error_closes(TG_DOIP_UNKNOWN_TYPE));
        assert_se(!tg_doip_error_closes(TG_DOIP_MESSAGE_TOO_LARGE));
        assert_se(!tg_doip_error_closes(TG_DOIP_OUT_OF_MEMORY));

        assert_streq(tg_doip_type_to_string(TG_DOIP_DIAG_MESSAGE), "diagnostic-message");
        assert_streq(tg_doip_type_to_string(TG_DOIP_ROUTING_ACTIVATION_REQUEST), "routing-activation-request");
        assert_streq(tg_doip_type_to_string(0x1234), "unknown");
        assert_streq(tg_doip_activation_type_to_string(0x01), "wwh-obd");
        assert_streq(tg_doip_activation_type_to_string(0x02), "unknown");
}

/* Every sample above, one after the other, as a TCP stream would bring them. */
static const char *const stream_samples[] = {
        "02 FD 00 00 00 00 00 01 02",
        "FF 00 00 01 00 00 00 00",
        "FF 00 00 02 00 00 00 06 " EID_HEX,
        "03 FC 00 03 00 00 00 11 " VIN_HEX,
        "02 FD 00 04 00 00 00 21 " VIN_HEX " 10 01 " EID_HEX " " GID_HEX " 00 10",
        "02 FD 00 04 00 00 00 20 " VIN_HEX " 10 01 " EID_HEX " " GID_HEX " 10",
        "02 FD 00 05 00 00 00 07 0E 00 00 00 00 00 00",
        "02 FD 00 05 00 00 00 0B 0E 80 E0 00 00 00 01 DE AD BE EF",
        "02 FD 00 06 00 00 00 09 0E 00 10 01 10 00 00 00 00",
        "02 FD 00 07 00 00 00 00",
        "02 FD 00 08 00 00 00 02 0E 00",
        "02 FD 40 01 00 00 00 00",
        "02 FD 40 02 00 00 00 07 00 10 01 00 40 00 04",
        "02 FD 40 03 00 00 00 00",
        "02 FD 40 04 00 00 00 01 01",
        "02 FD 80 01 00 00 00 06 0E 00 10 01 10 03",
        "02 FD 80 02 00 00 00 07 10 01 0E 00 00 10 03",
        "02 FD 80 03 00 00 00 05 10 01 0E 00 03",
};

/* Push buf in pieces of the given sizes (cycled); re-encode each message
 * into out; return the number of messages. */
static size_t push_pieces(const uint8_t *buf, size_t size, const size_t *pieces, size_t n_pieces, uint8_t *out,
                          size_t out_size, size_t *ret_out_len) {
        TgDoipDecoder d;
        size_t pos = 0, count = 0, out_len = 0, p = 0;

        tg_doip_decoder_init(&d, 0);
        while (pos < size) {
                size_t piece = MIN(pieces[p++ % n_pieces], size - pos), off = 0;

                while (off < piece) {
                        TgDoipMessage m;
                        size_t used, k;
                        bool complete;

                        assert_eq(tg_doip_decoder_push(&d, buf + pos + off, piece - off, &used, &m, &complete),
                                  TG_DOIP_OK);
                        off += used;
                        if (!complete) {
                                assert_eq(off, piece);
                                break;
                        }
                        assert_eq(tg_doip_message_encode(&m, out + out_len, out_size - out_len, &k), TG_DOIP_OK);
                        out_len += k;
                        count++;
                        if (off == piece) /* a message boundary ends the piece? */
                                break;
                }
                pos += piece;
        }
        assert_eq(tg_doip_decoder_pending(&d), 0u);
        tg_doip_decoder_done(&d);
        *ret_out_len = out_len;
        return count;
}

static void test_stream_pieces(void) {
        uint8_t stream[1024], out[1024];
        size_t size = 0, out_len, n;

        for (size_t i = 0; i < ELEMENTSOF(stream_samples); i++)
                size += unhex(stream_samples[i], stream + size, sizeof stream - size);

        /* whole, byte by byte, every two-piece split, assorted sizes */
        n = push_pieces(stream, size, (size_t[]) { size }, 1, out, sizeof out, &out_len);
        assert_eq(n, ELEMENTSOF(stream_samples));
        assert_eq(out_len, size);
        assert_memeq(out, stream, size);
        for (size_t piece = 1; piece <= 40; piece++) {
                n = push_pieces(stream, size, &piece, 1, out, sizeof out, &out_len);
                assert_eq(n, ELEMENTSOF(stream_samples));
                assert_eq(out_len, size);
                assert_memeq(out, stream, size);
        }
        for (size_t cut = 1; cut < size; cut++) {
                n = push_pieces(stream, size, (size_t[]) { cut, size }, 2, out, sizeof out, &out_len);
                assert_eq(n, ELEMENTSOF(stream_samples));
                assert_memeq(out, stream, size);
        }
        n = push_pieces(stream, size, (size_t[]) { 3, 1, 17, 2, 64, 5, 8, 13 }, 8, out, sizeof out, &out_len);
        assert_eq(n, ELEMENTSOF(stream_samples));
        assert_memeq(out, stream, size);
}

/* Push all of a hex stream byte by byte (or whole); record what comes. */
typedef struct Event {
        TgDoipError error;
        uint16_t type;
} Event;

static size_t stream_events(const char *hex, bool bytewise, uint32_t max_payload, Event *events, size_t n_events) {
        uint8_t buf[512];
        size_t size = unhex(hex, buf, sizeof buf), pos = 0, n = 0;
        TgDoipDecoder d;

        tg_doip_decoder_init(&d, max_payload);
        while (pos < size) {
                size_t piece = bytewise ? 1 : size - pos, used;
                TgDoipMessage m;
                TgDoipError e;
                bool complete;

                e = tg_doip_decoder_push(&d, buf + pos, piece, &used, &m, &complete);
                pos += used;
                if (e != TG_DOIP_OK || complete) {
                        assert_se(n < n_events);
                        assert_se(!(e != TG_DOIP_OK && complete));
                        events[n++] = (Event) { e, m.type };
                        if (tg_doip_error_closes(e)) {
                                /* sticky, takes nothing more */
                                assert_eq(tg_doip_decoder_push(&d, buf + pos, size - pos, &used, &m, &complete), e);
                                assert_eq(used, 0u);
                                break;
                        }
                } else
                        assert_eq(used, piece);
        }
        tg_doip_decoder_done(&d);
        return n;
}

static void test_stream_nacks(void) {
        for (int bytewise = 0; bytewise <= 1; bytewise++) {
                Event ev[8];
                size_t n;

                /* unknown type with a payload: NACK 0x01, skipped, the next one comes */
                n = stream_events("02 FD 12 34 00 00 00 03 AA BB CC 02 FD 00 07 00 00 00 00", bytewise, 0, ev, 8);
                assert_eq(n, 2u);
                assert_eq(ev[0].error, TG_DOIP_UNKNOWN_TYPE);
                assert_eq(ev[0].type, 0x1234);
                assert_eq(tg_doip_error_nack_code(ev[0].error), TG_DOIP_NACK_UNKNOWN_TYPE);
                assert_eq(ev[1].error, TG_DOIP_OK);
                assert_eq(ev[1].type, TG_DOIP_ALIVE_CHECK_REQUEST);

                /* too large (max 4): NACK 0x02, payload discarded, then the alive check response */
                n = stream_events("02 FD 80 01 00 00 00 06 0E 00 10 01 10 03 02 FD 00 08 00 00 00 02 0E 00"
                                  " 02 FD 80 01 00 00 00 05 0E 00 10 01 3E", bytewise, 5, ev, 8);
                assert_eq(n, 3u);
                assert_eq(ev[0].error, TG_DOIP_MESSAGE_TOO_LARGE);
                assert_eq(ev[0].type, TG_DOIP_DIAG_MESSAGE);
                assert_eq(ev[1].type, TG_DOIP_ALIVE_CHECK_RESPONSE);
                assert_eq(ev[2].error, TG_DOIP_OK);
                assert_eq(ev[2].type, TG_DOIP_DIAG_MESSAGE);

                /* unknown type with no payload */
                n = stream_events("02 FD 00 09 00 00 00 00 02 FD 00 07 00 00 00 00", bytewise, 0, ev, 8);
                assert_eq(n, 2u);
                assert_eq(ev[0].error, TG_DOIP_UNKNOWN_TYPE);
                assert_eq(ev[1].type, TG_DOIP_ALIVE_CHECK_REQUEST);

                /* incorrect pattern: close; nothing after it */
                n = stream_events("02 FD 00 07 00 00 00 00 02 FE 00 07 00 00 00 00 02 FD 00 07 00 00 00 00",
                                  bytewise, 0, ev, 8);
                assert_eq(n, 2u);
                assert_eq(ev[0].type, TG_DOIP_ALIVE_CHECK_REQUEST);
                assert_eq(ev[1].error, TG_DOIP_INCORRECT_PATTERN);
                assert_se(tg_doip_error_closes(ev[1].error));

                /* invalid length: NACK 0x04 and close, before the payload arrives */
                n = stream_events("02 FD 00 05 00 00 00 08 0E 00 00 00 00 00 00 00", bytewise, 0, ev, 8);
                assert_eq(n, 1u);
                assert_eq(ev[0].error, TG_DOIP_INVALID_LENGTH);
                assert_eq(ev[0].type, TG_DOIP_ROUTING_ACTIVATION_REQUEST);
                n = stream_events("02 FD 80 01 00 00 00 04 0E 00 10 01", bytewise, 0, ev, 8);
                assert_eq(n, 1u);
                assert_eq(ev[0].error, TG_DOIP_INVALID_LENGTH);
        }
}

static void test_stream_errors_before_payload(void) {
        /* A huge announced length is refused from the header alone, nothing buffered. */
        TgDoipDecoder d;
        TgDoipMessage m;
        uint8_t h[TG_DOIP_HEADER_SIZE];
        size_t used;
        bool complete;

        tg_doip_decoder_init(&d, 0);
        assert_eq(d.max_payload, TG_DOIP_MAX_PAYLOAD_DEFAULT);
        tg_doip_put_header(h, 2, TG_DOIP_DIAG_MESSAGE, UINT32_MAX);
        assert_eq(tg_doip_decoder_push(&d, h, sizeof h, &used, &m, &complete), TG_DOIP_MESSAGE_TOO_LARGE);
        assert_eq(used, sizeof h);
        assert_se(d.buf == NULL);
        assert_eq(tg_doip_decoder_pending(&d), (size_t) TG_DOIP_HEADER_SIZE);
        /* it now skips 4 GiB - 1; a piece of it */
        assert_eq(tg_doip_decoder_push(&d, h, sizeof h, &used, &m, &complete), TG_DOIP_OK);
        assert_eq(used, sizeof h);
        assert_se(!complete);
        tg_doip_decoder_done(&d);

        /* the message in the caller's piece: parsed in place, no buffer */
        tg_doip_decoder_init(&d, 0);
        {
                uint8_t buf[16];
                size_t n = unhex("02 FD 80 01 00 00 00 06 0E 00 10 01 10 03", buf, sizeof buf);

                assert_eq(tg_doip_decoder_push(&d, buf, n, &used, &m, &complete), TG_DOIP_OK);
                assert_se(complete);
                assert_se(m.diag.data == buf + 12);
                assert_se(d.buf == NULL);
                /* in two pieces: copied once, into the decoder */
                assert_eq(tg_doip_decoder_push(&d, buf, 10, &used, &m, &complete), TG_DOIP_OK);
                assert_se(!complete);
                assert_eq(tg_doip_decoder_pending(&d), 10u);
                assert_eq(tg_doip_decoder_push(&d, buf + 10, n - 10, &used, &m, &complete), TG_DOIP_OK);
                assert_se(complete);
                assert_se(m.diag.data == d.buf + 4);
                assert_memeq(m.diag.data, "\x10\x03", 2);
        }
        tg_doip_decoder_done(&d);
}

/* xorshift64*: reproducible sizes */
static uint64_t rnd(uint64_t *s) {
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        return *s * UINT64_C(2685821657736338717);
}

/* The stream of diagnostic messages, produced on the fly. */
typedef struct Producer {
        uint64_t rng;
        const uint8_t *pattern;
        uint32_t seq;
        uint8_t header[TG_DOIP_DIAG_HEADER_SIZE];
        size_t msg_len, msg_pos; /* of the current message, header included */
        uint64_t produced;
} Producer;

static uint32_t message_data_len(uint64_t *rng) {
        uint64_t r = rnd(rng);

        switch (r % 4) {
        case 0:
                return 1 + (uint32_t) (r >> 8) % 64;                /* requests, responses */
        case 1:
                return 1 + (uint32_t) (r >> 8) % 4096;
        case 2:
                return TG_DOIP_MAX_PAYLOAD_DEFAULT - 4;              /* full TransferData blocks */
        default:
                return 1 + (uint32_t) ((r >> 8) % (TG_DOIP_MAX_PAYLOAD_DEFAULT - 4));
        }
}

static void produce(Producer *p, uint8_t *out, size_t n) {
        while (n > 0) {
                size_t take;

                if (p->msg_pos == p->msg_len) {
                        uint32_t len = message_data_len(&p->rng);

                        p->seq++;
                        tg_doip_put_diag_header(p->header, 2, 0x0E00, (uint16_t) p->seq, len);
                        p->msg_len = TG_DOIP_DIAG_HEADER_SIZE + len;
                        p->msg_pos = 0;
                }
                if (p->msg_pos < TG_DOIP_DIAG_HEADER_SIZE) {
                        take = MIN(n, TG_DOIP_DIAG_HEADER_SIZE - p->msg_pos);
                        memcpy(out, p->header + p->msg_pos, take);
                } else {
                        take = MIN(n, p->msg_len - p->msg_pos);
                        memcpy(out, p->pattern + p->seq % 251 + (p->msg_pos - TG_DOIP_DIAG_HEADER_SIZE), take);
                }
                p->msg_pos += take;
                p->produced += take;
                out += take;
                n -= take;
        }
}

static void test_stream_100mib(void) {
        const uint64_t total = UINT64_C(100) * 1024 * 1024;
        size_t pattern_size = TG_DOIP_MAX_PAYLOAD_DEFAULT + 256;
        _cleanup_free_ uint8_t *pattern = malloc(pattern_size), *piece = malloc(65536);
        Producer p = { .rng = 0x9E3779B97F4A7C15, .pattern = pattern };
        uint64_t piece_rng = 0xD1B54A32D192ED03, check_rng = 0x9E3779B97F4A7C15, consumed = 0, pushes = 0;
        uint32_t received = 0;
        struct timespec t0, t1, p0, p1;
        TgDoipDecoder d;
        double secs, push_secs = 0;

        assert_se(pattern && piece);
        for (size_t i = 0; i < pattern_size; i++)
                pattern[i] = (uint8_t) (i * 7 + (i >> 8));

        tg_doip_decoder_init(&d, 0);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        /* until all 100 MiB are in and the last message is complete */
        while (p.produced < total || p.msg_pos < p.msg_len) {
                /* log-uniform 1 B … 64 KiB: small pieces as common as large ones */
                uint64_t r = rnd(&piece_rng);
                unsigned bits = (unsigned) (r % 17);
                size_t n = 1 + (size_t) ((r >> 8) & ((UINT64_C(1) << bits) - 1)), off = 0;

                if (p.produced >= total)
                        n = MIN(n, p.msg_len - p.msg_pos);
                produce(&p, piece, n);
                pushes++;
                while (off < n) {
                        TgDoipMessage m;
                        size_t used;
                        bool complete;

                        TgDoipError e;

                        clock_gettime(CLOCK_MONOTONIC, &p0);
                        e = tg_doip_decoder_push(&d, piece + off, n - off, &used, &m, &complete);
                        clock_gettime(CLOCK_MONOTONIC, &p1);
                        push_secs += (double) (p1.tv_sec - p0.tv_sec) + (double) (p1.tv_nsec - p0.tv_nsec) / 1e9;
                        assert_eq(e, TG_DOIP_OK);
                        off += used;
                        if (!complete)
                                break;
                        received++;
                        assert_eq(m.type, TG_DOIP_DIAG_MESSAGE);
                        assert_eq(m.diag.source_address, 0x0E00);
                        assert_eq(m.diag.target_address, (uint16_t) received);
                        assert_eq(m.diag.data_len, message_data_len(&check_rng));
                        if (memcmp(m.diag.data, pattern + received % 251, m.diag.data_len) != 0)
                                assert_se(!"user data differs");
                        consumed += TG_DOIP_DIAG_HEADER_SIZE + m.diag.data_len;
                }
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        assert_eq(received, p.seq);
        assert_eq(consumed, p.produced);
        assert_eq(tg_doip_decoder_pending(&d), 0u);
        assert_le(d.allocated, (size_t) TG_DOIP_MAX_PAYLOAD_DEFAULT);
        secs = (double) (t1.tv_sec - t0.tv_sec) + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9;
        fprintf(stderr, "   %" PRIu32 " messages, %.1f MiB in %" PRIu64 " pieces: %.3f s in all, %.0f MB/s"
                        " (producing and checking included); in tg_doip_decoder_push() %.3f s, %.0f MB/s\n",
                received, (double) p.produced / 1048576.0, pushes, secs, (double) p.produced / 1e6 / secs,
                push_secs, (double) p.produced / 1e6 / push_secs);
        tg_doip_decoder_done(&d);
}

TG_TEST_MAIN(TEST(generic_nack),
             TEST(vehicle_identification_requests),
             TEST(vehicle_announcement),
             TEST(routing_activation),
             TEST(alive_check_entity_status_power_mode),
             TEST(diagnostic_messages),
             TEST(put_diag_header),
             TEST(header_errors),
             TEST(invalid_lengths),
             TEST(encode_refuses),
             TEST(names),
             TEST(stream_pieces),
             TEST(stream_nacks),
             TEST(stream_errors_before_payload),
             TEST(stream_100mib))
