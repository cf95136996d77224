/* SPDX-License-Identifier: MIT */

/*
 * tollgate-uds: the channel (DoIP or ISO-TP, connected within --timeout)
 * and the simple services: read, session, reset, tester-present, raw.
 * The command line is in uds-main.c, flash and rollback in uds-flash.c.
 */

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tg-diag.h"
#include "tg-doip.h"
#include "tg-log.h"
#include "tg-parse.h"
#include "tg-uds.h"
#include "uds.h"

#define REQUEST_MAX 4095

void uds_error(const char *format, ...) {
        va_list ap;

        fflush(stdout);
        fputs("tollgate-uds: ", stderr);
        va_start(ap, format);
        vfprintf(stderr, format, ap);
        va_end(ap);
        fputc('\n', stderr);
}

void uds_json_string(FILE *f, const char *s) {
        fputc('"', f);
        for (; *s; s++) {
                unsigned char c = (unsigned char) *s;

                if (c == '"' || c == '\\')
                        fprintf(f, "\\%c", c);
                else if (c < 0x20 || c >= 0x7F)
                        fprintf(f, "\\u%04x", c);
                else
                        fputc(c, f);
        }
        fputc('"', f);
}

void uds_hex(FILE *f, const uint8_t *p, size_t n, const char *sep) {
        for (size_t i = 0; i < n; i++)
                fprintf(f, "%s%02X", i > 0 ? sep : "", p[i]);
}

static uint64_t now_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* ---- parsing ---- */

int uds_parse_hex_u32(const char *s, uint32_t max, uint32_t *ret) {
        char *end;
        unsigned long long v;

        if (!s || !*s || *s == '-' || *s == '+' || isspace((unsigned char) *s))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 16); /* "0x" prefix optional */
        if (errno || end == s || *end || v > max)
                return -EINVAL;
        *ret = (uint32_t) v;
        return 0;
}

/* raw's arguments: "22 F1 90", "22F190", "0x22:F1:90". */
static int parse_hex_bytes(char **args, int n, uint8_t *buf, size_t size, size_t *ret_len) {
        size_t len = 0;

        for (int i = 0; i < n; i++) {
                const char *p = args[i];

                if (startswith(p, "0x") || startswith(p, "0X"))
                        p += 2;
                if (!*p)
                        goto bad;
                while (*p) {
                        if (*p == ':' || *p == ' ' || *p == '-' || *p == '.') {
                                p++;
                                continue;
                        }
                        if (!isxdigit((unsigned char) p[0]) || !isxdigit((unsigned char) p[1]))
                                goto bad;
                        if (len >= size) {
                                uds_error("Request too long: at most %zu bytes.", size);
                                return -E2BIG;
                        }
                        char pair[3] = { p[0], p[1], '\0' };
                        buf[len++] = (uint8_t) strtoul(pair, NULL, 16);
                        p += 2;
                }
                continue;
        bad:
                uds_error("Bad hex '%s': takes pairs of hex digits (22 F1 90, 22F190, 0x22).", args[i]);
                return -EINVAL;
        }
        if (len == 0) {
                uds_error("raw takes the request as hex bytes (raw 22 F1 90).");
                return -EINVAL;
        }
        *ret_len = len;
        return 0;
}

typedef struct DidName {
        uint16_t did;
        const char *name;
} DidName;

static const DidName did_names[] = {
        { TG_UDS_DID_SPARE_PART_NUMBER, "part-number" },
        { TG_UDS_DID_SOFTWARE_VERSION, "software-version" },
        { TG_UDS_DID_SERIAL_NUMBER, "serial-number" },
        { TG_UDS_DID_VIN, "vin" },
};

static const char *did_name(uint16_t did) {
        for (size_t i = 0; i < ELEMENTSOF(did_names); i++)
                if (did_names[i].did == did)
                        return did_names[i].name;
        return NULL;
}

static int parse_did(const char *s, uint16_t *ret) {
        uint32_t v;

        for (size_t i = 0; i < ELEMENTSOF(did_names); i++)
                if (strcasecmp(s, did_names[i].name) == 0) {
                        *ret = did_names[i].did;
                        return 0;
                }
        if (strlen(s) != 4 + ((startswith(s, "0x") || startswith(s, "0X")) ? 2 : 0) ||
            uds_parse_hex_u32(s, 0xFFFF, &v) < 0) {
                uds_error("Bad DID '%s': takes 4 hex digits (F189) or a name (part-number, software-version, "
                          "serial-number, vin).",
                          s);
                return -EINVAL;
        }
        *ret = (uint16_t) v;
        return 0;
}

/* ---- the channel ---- */

size_t uds_transport_max(const Uds *u) {
        /* DoIP carries megabytes; ISO-TP's classic first frame 4095 bytes. */
        return u->can ? 4095 : 0;
}

void uds_apply_p2(Uds *u) {
        if (u->ch && u->p2_usec > u->ch->timing.p2_usec)
                u->ch->timing.p2_usec = u->p2_usec;
}

int uds_channel_new(Uds *u) {
        int r;

        r = sd_event_new(&u->event);
        if (r < 0) {
                uds_error("Cannot create the event loop: %s", strerror(-r));
                return UDS_EXIT_LOCAL;
        }
        if (u->doip) {
                TgDiagDoipConfig cfg = {
                        .address = u->doip_address,
                        .port = u->doip_port,
                        .tester_address = u->tester,
                        .activation_type = TG_DOIP_ACTIVATION_DEFAULT,
                };
                r = tg_diag_doip_new(u->event, &cfg, &u->ch);
        } else {
                TgIsotpConfig base;
                /* Functional requests take the answer on the ECU's rx id: the
                 * node is there whatever the target. */
                uint16_t addr = u->target != TG_DIAG_FUNCTIONAL_ADDRESS ? u->target
                              : (u->tx_id & 0xFFFF) != TG_DIAG_FUNCTIONAL_ADDRESS ? (uint16_t) (u->tx_id & 0xFFFF)
                                                                                : 0xE401;
                TgDiagIsotpEcu ecu = { .address = addr, .tx_id = u->tx_id, .rx_id = u->rx_id };
                TgDiagIsotpConfig cfg = {
                        .bus = u->can,
                        .isotp = &base,
                        .ecus = &ecu,
                        .n_ecus = 1,
                        .functional_tx_id = u->functional_id,
                        .kernel = (TgDiagIsotpKernel) u->kernel,
                        .bitrate = u->bitrate,
                        .restart_ms = u->restart_ms,
                };

                tg_isotp_config_init(&base, u->tx_id, u->rx_id, u->fd);
                base.brs = u->brs;
                base.tx_dl = (uint8_t) u->dl;
                base.pad = true;
                r = tg_diag_isotp_new(u->event, &cfg, &u->ch);
        }
        if (r < 0) {
                uds_error("Cannot set up the %s channel: %s", u->doip ? "DoIP" : "ISO-TP", strerror(-r));
                return r == -EINVAL ? UDS_EXIT_USAGE : UDS_EXIT_LOCAL;
        }
        uds_apply_p2(u);
        return UDS_EXIT_OK;
}

static const char *where(const Uds *u, char *buf, size_t size) {
        if (u->doip)
                snprintf(buf, size, "DoIP entity %s port %u", u->doip_address,
                         u->doip_port ? u->doip_port : TG_DOIP_TCP_PORT);
        else
                snprintf(buf, size, "CAN bus %s", u->can);
        return buf;
}

int uds_connect(Uds *u) {
        TgDiagChannel *ch = u->ch;
        uint64_t start = now_usec(),
                 deadline = u->timeout_usec >= UINT64_MAX - start ? UINT64_MAX : start + u->timeout_usec;
        char b1[128], b2[128];
        int r;

        if (ch->ops->ready(ch))
                return UDS_EXIT_OK;
        ch->connect_done = false;
        r = ch->ops->connect(ch);
        if (r < 0) {
                uds_error("Cannot connect to %s: %s", where(u, b1, sizeof b1), strerror(-r));
                return UDS_EXIT_TRANSPORT;
        }
        if (r > 0)
                return UDS_EXIT_OK;
        while (!ch->connect_done) {
                uint64_t now = now_usec();

                if (now >= deadline) {
                        uds_error("Cannot connect to %s: no connection within %s.", where(u, b1, sizeof b1),
                                  tg_format_timespan(b2, sizeof b2, u->timeout_usec));
                        return UDS_EXIT_TRANSPORT;
                }
                r = sd_event_run(u->event, deadline - now);
                if (r < 0) {
                        uds_error("Event loop failed: %s", strerror(-r));
                        return UDS_EXIT_LOCAL;
                }
        }
        if (ch->connect_result.error != TG_DIAG_OK) {
                uds_error("Cannot connect to %s: %s", where(u, b1, sizeof b1),
                          tg_diag_result_format(&ch->connect_result, b2, sizeof b2));
                return UDS_EXIT_TRANSPORT;
        }
        return UDS_EXIT_OK;
}

/* One request: UDS_EXIT_OK with the response (malloc'ed), or an exit
 * status after reporting the transport failure. */
#define UDS_BUSY_RETRIES 30

static int request(Uds *u, const uint8_t *req, size_t len, uint8_t **ret, size_t *ret_len) {
        TgDiagResult res = {};
        char buf[160];
        int r;

        if (tg_log_get_max_level() >= LOG_DEBUG) {
                char hex[3 * 64 + 8] = "";
                for (size_t i = 0; i < len && i < 64; i++)
                        snprintf(hex + 3 * i, 4, "%02X ", req[i]);
                log_debug("→ 0x%04X: %s%s", u->target, hex, len > 64 ? "…" : "");
        }
        /* An ECU still busy (with what a killed or timed-out client left it
         * doing, say) answers 0x21 busyRepeatRequest: repeat, as ISO 14229-1
         * asks of clients, every 100 ms for up to 3 s. */
        for (unsigned attempt = 0;; attempt++) {
                uds_apply_p2(u);
                r = tg_diag_request_wait(u->ch, u->target, req, len, &res, ret, ret_len);
                if (r < 0 || attempt >= UDS_BUSY_RETRIES || *ret_len < 3 || (*ret)[0] != TG_UDS_NEGATIVE_RESPONSE ||
                    (*ret)[1] != req[0] || (*ret)[2] != TG_UDS_NRC_BUSY_REPEAT_REQUEST)
                        break;
                log_debug("0x%04X is busy (0x21): repeating in 100 ms.", u->target);
                free(*ret);
                *ret = NULL;
                (void) usleep(100 * 1000);
        }
        if (r == -EIO) {
                uds_error("%s (0x%02X) to 0x%04X: %s", tg_uds_service_to_string(req[0]), req[0], u->target,
                          tg_diag_result_format(&res, buf, sizeof buf));
                return UDS_EXIT_TRANSPORT;
        }
        if (r == -ENXIO) {
                uds_error("Target 0x%04X has no ISO-TP ids here (--functional-id= for 0xE400).", u->target);
                return UDS_EXIT_USAGE;
        }
        if (r < 0) {
                uds_error("%s (0x%02X) to 0x%04X failed: %s", tg_uds_service_to_string(req[0]), req[0], u->target,
                          strerror(-r));
                return UDS_EXIT_TRANSPORT;
        }
        log_debug("← %zu byte(s)%s", *ret_len, res.n_pending ? " after response pending" : "");
        return UDS_EXIT_OK;
}

/* After a parser said r < 0: report, and the exit status. */
static int service_failed(const Uds *u, int r, const TgUdsError *err, const char *what) {
        char buf[192];

        if (r == -EREMOTEIO) {
                uds_error("%s: 0x%04X answered %s", what, u->target, tg_uds_error_format(err, buf, sizeof buf));
                return UDS_EXIT_REFUSED;
        }
        uds_error("%s: 0x%04X: %s", what, u->target, tg_uds_error_format(err, buf, sizeof buf));
        return UDS_EXIT_PROTOCOL;
}

/* ---- commands ---- */

static void print_ascii(FILE *f, const uint8_t *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                fputc(p[i] >= 0x20 && p[i] < 0x7F ? p[i] : '.', f);
}

int uds_cmd_read(Uds *u, char **args, int n) {
        uint16_t dids[TG_UDS_READ_DATA_MAX_DIDS];
        int ret = UDS_EXIT_OK, r;

        if (n < 1) {
                uds_error("read takes one or more DIDs (read F189 F190).");
                return UDS_EXIT_USAGE;
        }
        if (n > TG_UDS_READ_DATA_MAX_DIDS) {
                uds_error("read takes at most %d DIDs.", TG_UDS_READ_DATA_MAX_DIDS);
                return UDS_EXIT_USAGE;
        }
        for (int i = 0; i < n; i++)
                if (parse_did(args[i], &dids[i]) < 0)
                        return UDS_EXIT_USAGE;
        r = uds_connect(u);
        if (r != UDS_EXIT_OK)
                return r;
        if (u->json)
                printf("{\"target\":\"0x%04X\",\"dids\":[", u->target);
        /* One DID per request: a server may leave out DIDs it does not
         * support, and the response does not say where a record ends. */
        for (int i = 0; i < n; i++) {
                _cleanup_free_ uint8_t *resp = NULL;
                uint8_t req[8];
                const uint8_t *data;
                size_t len = 0, dlen = 0;
                TgUdsError err = {};
                const char *name = did_name(dids[i]);
                int k;

                k = tg_uds_encode_read_data(req, sizeof req, &dids[i], 1);
                r = request(u, req, (size_t) k, &resp, &len);
                if (r != UDS_EXIT_OK) {
                        ret = r;
                        break;
                }
                k = tg_uds_parse_read_data(resp, len, dids[i], &data, &dlen, &err);
                if (u->json) {
                        printf("%s{\"did\":\"%04X\"", i > 0 ? "," : "", dids[i]);
                        if (name)
                                printf(",\"name\":\"%s\"", name);
                }
                if (k < 0) {
                        char buf[192], what[32];

                        if (u->json) {
                                if (k == -EREMOTEIO)
                                        printf(",\"nrc\":%u,\"nrc_name\":\"%s\"}", err.nrc,
                                               tg_uds_nrc_to_string(err.nrc));
                                else {
                                        printf(",\"error\":");
                                        uds_json_string(stdout, tg_uds_error_format(&err, buf, sizeof buf));
                                        printf("}");
                                }
                        }
                        snprintf(what, sizeof what, "read %04X", dids[i]);
                        r = service_failed(u, k, &err, what);
                        if (ret == UDS_EXIT_OK || r == UDS_EXIT_PROTOCOL)
                                ret = r;
                        continue;
                }
                if (u->json) {
                        _cleanup_free_ char *text = malloc(dlen + 1);

                        if (!text)
                                return UDS_EXIT_LOCAL;
                        printf(",\"hex\":\"");
                        for (size_t j = 0; j < dlen; j++)
                                printf("%02x", data[j]);
                        printf("\",\"ascii\":");
                        for (size_t j = 0; j < dlen; j++)
                                text[j] = data[j] >= 0x20 && data[j] < 0x7F ? (char) data[j] : '.';
                        text[dlen] = '\0';
                        uds_json_string(stdout, text);
                        printf("}");
                } else {
                        printf("%04X", dids[i]);
                        if (name)
                                printf(" %s", name);
                        printf(": ");
                        uds_hex(stdout, data, dlen, " ");
                        printf("%s\"", dlen ? "  " : "");
                        print_ascii(stdout, data, dlen);
                        printf("\"\n");
                }
        }
        if (u->json)
                printf("]}\n");
        return ret;
}

static int parse_session(const char *s, uint8_t *ret) {
        static const struct {
                const char *name;
                uint8_t id;
        } names[] = {
                { "default", TG_UDS_SESSION_DEFAULT },
                { "programming", TG_UDS_SESSION_PROGRAMMING },
                { "extended", TG_UDS_SESSION_EXTENDED },
        };
        uint32_t v;

        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (streq(s, names[i].name)) {
                        *ret = names[i].id;
                        return 0;
                }
        if (uds_parse_hex_u32(s, 0x7E, &v) < 0 || v == 0) {
                uds_error("Bad session '%s': takes default, programming, extended or a hex id 0x01…0x7E.", s);
                return -EINVAL;
        }
        *ret = (uint8_t) v;
        return 0;
}

int uds_cmd_session(Uds *u, char **args, int n) {
        _cleanup_free_ uint8_t *resp = NULL;
        uint8_t req[4], session;
        size_t len = 0;
        TgUdsSessionTiming t = {};
        TgUdsError err = {};
        int r, k;

        if (n != 1) {
                uds_error("session takes one session (default, programming, extended or 0x01…0x7E).");
                return UDS_EXIT_USAGE;
        }
        if (parse_session(args[0], &session) < 0)
                return UDS_EXIT_USAGE;
        r = uds_connect(u);
        if (r != UDS_EXIT_OK)
                return r;
        k = tg_uds_encode_session_control(req, sizeof req, session, false);
        r = request(u, req, (size_t) k, &resp, &len);
        if (r != UDS_EXIT_OK)
                return r;
        k = tg_uds_parse_session_control(resp, len, session, &t, &err);
        if (k < 0)
                return service_failed(u, k, &err, "session");
        if (u->json)
                printf("{\"target\":\"0x%04X\",\"session\":%u,\"p2_ms\":%u,\"p2_star_ms\":%" PRIu32 "}\n", u->target,
                       session, t.p2_ms, t.p2_star_ms);
        else
                printf("session 0x%02X: P2 %u ms, P2* %" PRIu32 " ms\n", session, t.p2_ms, t.p2_star_ms);
        return UDS_EXIT_OK;
}

int uds_cmd_reset(Uds *u, char **args, int n) {
        _cleanup_free_ uint8_t *resp = NULL;
        uint8_t req[4], type = TG_UDS_RESET_HARD;
        const char *name = "hard";
        size_t len = 0;
        TgUdsError err = {};
        int r, k;

        if (n > 1) {
                uds_error("reset takes one type: hard (the default), soft or key.");
                return UDS_EXIT_USAGE;
        }
        if (n == 1) {
                name = args[0];
                if (streq(name, "hard"))
                        type = TG_UDS_RESET_HARD;
                else if (streq(name, "soft"))
                        type = TG_UDS_RESET_SOFT;
                else if (streq(name, "key") || streq(name, "key-off-on"))
                        type = TG_UDS_RESET_KEY_OFF_ON;
                else {
                        uds_error("Bad reset type '%s': takes hard, soft or key.", name);
                        return UDS_EXIT_USAGE;
                }
        }
        r = uds_connect(u);
        if (r != UDS_EXIT_OK)
                return r;
        k = tg_uds_encode_ecu_reset(req, sizeof req, type, false);
        r = request(u, req, (size_t) k, &resp, &len);
        if (r != UDS_EXIT_OK)
                return r;
        k = tg_uds_parse_ecu_reset(resp, len, type, NULL, &err);
        if (k < 0)
                return service_failed(u, k, &err, "reset");
        if (u->json)
                printf("{\"target\":\"0x%04X\",\"reset\":\"%s\"}\n", u->target, name);
        else
                printf("reset %s: done\n", name);
        return UDS_EXIT_OK;
}

int uds_cmd_tester_present(Uds *u, int n) {
        _cleanup_free_ uint8_t *resp = NULL;
        uint8_t req[4];
        size_t len = 0;
        TgUdsError err = {};
        int r, k;

        if (n != 0) {
                uds_error("tester-present takes no arguments.");
                return UDS_EXIT_USAGE;
        }
        r = uds_connect(u);
        if (r != UDS_EXIT_OK)
                return r;
        k = tg_uds_encode_tester_present(req, sizeof req, false);
        r = request(u, req, (size_t) k, &resp, &len);
        if (r != UDS_EXIT_OK)
                return r;
        k = tg_uds_parse_tester_present(resp, len, &err);
        if (k < 0)
                return service_failed(u, k, &err, "tester-present");
        if (u->json)
                printf("{\"target\":\"0x%04X\",\"tester_present\":true}\n", u->target);
        else
                printf("tester-present: ok\n");
        return UDS_EXIT_OK;
}

int uds_cmd_raw(Uds *u, char **args, int n) {
        _cleanup_free_ uint8_t *resp = NULL;
        uint8_t req[REQUEST_MAX];
        size_t len = 0, rlen = 0;
        int r;

        if (parse_hex_bytes(args, n, req, sizeof req, &len) < 0)
                return UDS_EXIT_USAGE;
        r = uds_connect(u);
        if (r != UDS_EXIT_OK)
                return r;
        r = request(u, req, len, &resp, &rlen);
        if (r != UDS_EXIT_OK)
                return r;
        if (u->json) {
                printf("{\"target\":\"0x%04X\",\"request\":\"", u->target);
                for (size_t i = 0; i < len; i++)
                        printf("%02x", req[i]);
                printf("\",\"response\":\"");
                for (size_t i = 0; i < rlen; i++)
                        printf("%02x", resp[i]);
                printf("\"");
                if (rlen >= 3 && resp[0] == TG_UDS_NEGATIVE_RESPONSE)
                        printf(",\"nrc\":%u,\"nrc_name\":\"%s\"", resp[2], tg_uds_nrc_to_string(resp[2]));
                printf("}\n");
        } else if (rlen > 0) {
                uds_hex(stdout, resp, rlen, " ");
                printf("\n");
        } else
                printf("(no response: suppressed)\n");
        if (rlen >= 3 && resp[0] == TG_UDS_NEGATIVE_RESPONSE && resp[1] == req[0]) {
                uds_error("negative response to %s (0x%02X): 0x%02X %s", tg_uds_service_to_string(req[0]), req[0],
                          resp[2], tg_uds_nrc_to_string(resp[2]));
                return UDS_EXIT_REFUSED;
        }
        return UDS_EXIT_OK;
}

