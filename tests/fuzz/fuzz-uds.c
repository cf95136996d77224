/* SPDX-License-Identifier: MIT */
/*
 * The UDS response parsers (lib/tg-uds.h), driven by what an ECU (or
 * something pretending to be one) sends back.
 *
 * Input: a 5-byte header that says which request the response answers,
 * then the response as the transport delivered it.
 *
 *   0      the parser (modulo the number of parsers, see `enum`)
 *   1      the request's sub-function / level / block sequence counter
 *   2-3    the request's DID or routine id (big endian)
 *   4      for ReadDataByIdentifier with two DIDs: the first record's length
 *
 * Invariants: the parsers read only buf[0…n) (the response is copied into
 * an allocation of exactly n bytes); they return 0, -EREMOTEIO or -EBADMSG
 * and nothing else (-EINVAL only for a SecurityAccess level no encoder
 * takes); -EREMOTEIO exactly for 7F SID NRC (NRC ≠ 0), with the
 * NRC reported, tg_uds_response_is_pending() exactly for NRC 0x78; -EBADMSG
 * always with a reason; an accepted response starts with SID + 0x40, its
 * pointers stay inside it and its lengths add up to n; responses with an
 * encoder (0x50, 0x74, 7F) re-encode to the same bytes (but 0x74's reserved
 * nibble); the timing state agrees with the parser on what is final.
 */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "tg-uds.h"

#define HEADER 5

enum {
        P_SESSION,
        P_RESET,
        P_SEED,
        P_KEY,
        P_COMM,
        P_READ,
        P_READ_MULTI,
        P_ROUTINE,
        P_DOWNLOAD,
        P_TRANSFER,
        P_EXIT,
        P_TESTER,
        P_DTC,
        _P_MAX,
};

static const uint8_t sids[_P_MAX] = {
        [P_SESSION] = TG_UDS_SID_DIAGNOSTIC_SESSION_CONTROL,
        [P_RESET] = TG_UDS_SID_ECU_RESET,
        [P_SEED] = TG_UDS_SID_SECURITY_ACCESS,
        [P_KEY] = TG_UDS_SID_SECURITY_ACCESS,
        [P_COMM] = TG_UDS_SID_COMMUNICATION_CONTROL,
        [P_READ] = TG_UDS_SID_READ_DATA_BY_IDENTIFIER,
        [P_READ_MULTI] = TG_UDS_SID_READ_DATA_BY_IDENTIFIER,
        [P_ROUTINE] = TG_UDS_SID_ROUTINE_CONTROL,
        [P_DOWNLOAD] = TG_UDS_SID_REQUEST_DOWNLOAD,
        [P_TRANSFER] = TG_UDS_SID_TRANSFER_DATA,
        [P_EXIT] = TG_UDS_SID_REQUEST_TRANSFER_EXIT,
        [P_TESTER] = TG_UDS_SID_TESTER_PRESENT,
        [P_DTC] = TG_UDS_SID_CONTROL_DTC_SETTING,
};

static void check_inside(const uint8_t *buf, size_t n, const uint8_t *p, size_t len, size_t offset) {
        FUZZ_ASSERT(p == buf + offset);
        FUZZ_ASSERT(offset <= n && len == n - offset);
}

static int parse(unsigned which, const uint8_t *buf, size_t n, uint8_t param, uint16_t id, uint8_t first_len,
                 TgUdsError *err) {
        const uint8_t *p = NULL;
        size_t len = SIZE_MAX;
        int r = -1;

        switch (which) {
        case P_SESSION: {
                TgUdsSessionTiming t;
                uint8_t re[8];

                r = tg_uds_parse_session_control(buf, n, param, &t, err);
                if (r == 0) {
                        FUZZ_ASSERT(n == 6 && buf[1] == (param & 0x7F));
                        FUZZ_ASSERT(t.p2_star_ms % 10 == 0);
                        if (buf[1] >= 0x01 && buf[1] <= 0x7E) {
                                FUZZ_ASSERT(tg_uds_encode_session_control_response(re, sizeof re, buf[1], &t) == 6);
                                FUZZ_ASSERT(memcmp(re, buf, 6) == 0);
                        }
                }
                break;
        }
        case P_RESET: {
                uint8_t pdt;

                r = tg_uds_parse_ecu_reset(buf, n, param, &pdt, err);
                if (r == 0)
                        FUZZ_ASSERT(n == 2 || (n == 3 && (param & 0x7F) == 0x04 && pdt == buf[2]));
                break;
        }
        case P_SEED:
                r = tg_uds_parse_request_seed(buf, n, param, &p, &len, err);
                if (r == 0) {
                        check_inside(buf, n, p, len, 2);
                        FUZZ_ASSERT(len >= 1);
                        (void) tg_uds_seed_is_zero(p, len);
                        /* the demo algorithm takes any seed that fits */
                        if ((param & 1) && param <= 0x7D) {
                                uint8_t req[64];
                                int k = tg_uds_encode_send_key_computed(req, sizeof req, param, p, len,
                                                                        tg_uds_key_demo, NULL, false);
                                FUZZ_ASSERT(len + 2 <= sizeof req ? k == (int) (len + 2) : k == -ENOBUFS);
                        }
                }
                break;
        case P_KEY:
                r = tg_uds_parse_send_key(buf, n, param, err);
                if (r == 0)
                        FUZZ_ASSERT(n == 2 && buf[1] == (uint8_t) ((param & 0x7F) + 1));
                break;
        case P_COMM:
                r = tg_uds_parse_communication_control(buf, n, param, err);
                if (r == 0)
                        FUZZ_ASSERT(n == 2);
                break;
        case P_READ:
                r = tg_uds_parse_read_data(buf, n, id, &p, &len, err);
                if (r == 0) {
                        check_inside(buf, n, p, len, 3);
                        FUZZ_ASSERT(tg_get_be16(buf + 1) == id);
                }
                break;
        case P_READ_MULTI: {
                const uint16_t dids[2] = { id, (uint16_t) (id ^ 0x0101) };
                const size_t lengths[2] = { first_len, TG_UDS_DID_LENGTH_REST };
                const uint8_t *data[2];
                size_t data_len[2];

                r = tg_uds_parse_read_data_multi(buf, n, dids, lengths, 2, data, data_len, err);
                if (r == 0) {
                        FUZZ_ASSERT(data_len[0] == first_len);
                        FUZZ_ASSERT(data[0] == buf + 3);
                        FUZZ_ASSERT(data[1] == buf + 3 + first_len + 2);
                        FUZZ_ASSERT(1 + 2 + data_len[0] + 2 + data_len[1] == n);
                        FUZZ_ASSERT(tg_get_be16(data[1] - 2) == dids[1]);
                }
                break;
        }
        case P_ROUTINE:
                r = tg_uds_parse_routine_control(buf, n, param, id, &p, &len, err);
                if (r == 0) {
                        check_inside(buf, n, p, len, 4);
                        FUZZ_ASSERT(tg_get_be16(buf + 2) == id && buf[1] == (param & 0x7F));
                }
                break;
        case P_DOWNLOAD: {
                uint64_t max;
                uint8_t re[16];

                r = tg_uds_parse_request_download(buf, n, &max, err);
                if (r == 0) {
                        unsigned width = buf[1] >> 4;

                        FUZZ_ASSERT(width >= 1 && width <= 8 && n == 2 + width && max >= 3);
                        FUZZ_ASSERT(tg_uds_encode_request_download_response(re, sizeof re, max, width) == (int) n);
                        FUZZ_ASSERT(re[1] == (buf[1] & 0xF0));
                        FUZZ_ASSERT(memcmp(re + 2, buf + 2, width) == 0);
                        FUZZ_ASSERT(tg_uds_transfer_data_max(max, 0) >= 1);
                        FUZZ_ASSERT(tg_uds_transfer_data_max(max, 4095) <= 4093);
                }
                break;
        }
        case P_TRANSFER:
                r = tg_uds_parse_transfer_data(buf, n, param, &p, &len, err);
                if (r == 0) {
                        check_inside(buf, n, p, len, 2);
                        FUZZ_ASSERT(buf[1] == param);
                }
                break;
        case P_EXIT:
                r = tg_uds_parse_request_transfer_exit(buf, n, &p, &len, err);
                if (r == 0)
                        check_inside(buf, n, p, len, 1);
                break;
        case P_TESTER:
                r = tg_uds_parse_tester_present(buf, n, err);
                if (r == 0)
                        FUZZ_ASSERT(n == 2 && buf[1] == 0x00);
                break;
        case P_DTC:
                r = tg_uds_parse_control_dtc_setting(buf, n, param, err);
                if (r == 0)
                        FUZZ_ASSERT(n == 2);
                break;
        default:
                abort();
        }
        return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        unsigned which;
        uint8_t *buf, param, sid;
        uint16_t id;
        size_t n;
        TgUdsError err;
        TgUdsTiming t;
        char text[TG_UDS_REASON_MAX + 128], did_text[64];
        int r, w;

        if (size < HEADER)
                return 0;
        which = data[0] % _P_MAX;
        param = data[1];
        id = tg_get_be16(data + 2);
        sid = sids[which];
        n = size - HEADER;
        /* exactly n bytes, so that ASan sees a read past the response */
        buf = malloc(n ? n : 1);
        if (!buf)
                abort();
        memcpy(buf, data + HEADER, n);

        memset(&err, 0xAA, sizeof err);
        r = parse(which, n ? buf : NULL, n, param, id, data[4], &err);
        if (r == -EINVAL) {
                /* only for a level no encoder takes */
                FUZZ_ASSERT(which == P_SEED || which == P_KEY);
                FUZZ_ASSERT(!((param & 0x7F) & 1) || (param & 0x7F) > 0x7D);
                FUZZ_ASSERT(tg_uds_encode_request_seed(buf, n, param & 0x7F, false) == -EINVAL);
                free(buf);
                return 0;
        }
        FUZZ_ASSERT(r == 0 || r == -EREMOTEIO || r == -EBADMSG);
        FUZZ_ASSERT(err.sid == sid);
        FUZZ_ASSERT(memchr(err.reason, '\0', sizeof err.reason));
        if (r == 0) {
                FUZZ_ASSERT(n >= 1 && buf[0] == (uint8_t) (sid + 0x40));
                FUZZ_ASSERT(err.nrc == 0 && err.reason[0] == '\0');
        } else if (r == -EREMOTEIO) {
                uint8_t re[3];

                FUZZ_ASSERT(n == 3 && buf[0] == 0x7F && buf[1] == sid && buf[2] != 0);
                FUZZ_ASSERT(err.nrc == buf[2] && err.reason[0] == '\0');
                FUZZ_ASSERT(*tg_uds_nrc_to_string(err.nrc));
                FUZZ_ASSERT(tg_uds_encode_negative_response(re, sizeof re, sid, err.nrc) == 3);
                FUZZ_ASSERT(memcmp(re, buf, 3) == 0);
        } else {
                FUZZ_ASSERT(err.nrc == 0 && err.reason[0] != '\0');
                /* a well-formed negative response to this service is never called malformed */
                FUZZ_ASSERT(!(n == 3 && buf[0] == 0x7F && buf[1] == sid && buf[2] != 0));
        }
        FUZZ_ASSERT(tg_uds_response_is_pending(buf, n, sid) == (r == -EREMOTEIO && err.nrc == 0x78));
        FUZZ_ASSERT(strlen(tg_uds_error_format(&err, text, sizeof text)) < sizeof text);
        /* the generic classification agrees with the service's parser where that accepted */
        if (r == 0 || r == -EREMOTEIO)
                FUZZ_ASSERT(tg_uds_parse_response(buf, n, sid, NULL) == r);
        FUZZ_ASSERT(strlen(tg_uds_did_to_string(buf, n, did_text, sizeof did_text)) < sizeof did_text);

        /* the timing state: final unless pending; a response of another service is dropped */
        tg_uds_timing_init(&t);
        tg_uds_timing_request_sent(&t, sid, 1000);
        w = tg_uds_timing_response(&t, buf, n, 2000);
        if (r == 0 || r == -EREMOTEIO) {
                FUZZ_ASSERT(w == (tg_uds_response_is_pending(buf, n, sid) ? TG_UDS_WAIT_PENDING : TG_UDS_WAIT_DONE));
                FUZZ_ASSERT((w == TG_UDS_WAIT_PENDING) == (tg_uds_timing_deadline(&t) != USEC_INFINITY));
        } else
                FUZZ_ASSERT(w == TG_UDS_WAIT_IGNORE || w == TG_UDS_WAIT_DONE);

        free(buf);
        return 0;
}
