/* SPDX-License-Identifier: MIT */

/*
 * tollgate-uds: a command-line UDS client (ISO 14229) over DoIP or ISO-TP,
 * on the library's own stack (lib/tg-diag for the channel and the P2/P2*
 * timing, lib/tg-uds for the services, lib/tg-flash for flashing): read
 * DIDs, switch sessions, reset, send raw requests, flash and roll back.
 * One command per run; errors go to stderr, results to stdout (or as JSON).
 * This file: the command line.
 */

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if __has_include("tg-config.h")
#include "tg-config.h"
#endif
#include "tg-diag.h"
#include "tg-log.h"
#include "tg-parse.h"
#include "uds.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

#define CAN_EFF_FLAG_ 0x80000000u
#define CAN_SFF_MAX 0x7FFu
#define CAN_EFF_MAX 0x1FFFFFFFu
#define CONNECT_TIMEOUT_DEFAULT (10 * USEC_PER_SEC)

/* "0x7E0" (11-bit) or "0x18DA10F1" (29-bit: anything over 0x7FF). */
static int parse_can_id(const char *opt, const char *s, uint32_t *ret) {
        uint32_t v;

        if (uds_parse_hex_u32(s, CAN_EFF_MAX, &v) < 0) {
                uds_error("Bad CAN id --%s=%s: takes hex, 0x000…0x7FF (11 bit) or up to 0x1FFFFFFF (29 bit).", opt,
                          s);
                return -EINVAL;
        }
        *ret = v > CAN_SFF_MAX ? v | CAN_EFF_FLAG_ : v;
        return 0;
}

static int parse_address(const char *opt, const char *s, uint16_t *ret) {
        uint32_t v;

        if (streq(opt, "target") && (streq(s, "functional") || streq(s, "all"))) {
                *ret = TG_DIAG_FUNCTIONAL_ADDRESS;
                return 0;
        }
        if (uds_parse_hex_u32(s, 0xFFFF, &v) < 0) {
                uds_error("Bad address --%s=%s: takes a 16-bit hex logical address (0x1001).", opt, s);
                return -EINVAL;
        }
        *ret = (uint16_t) v;
        return 0;
}

/* ADDR, ADDR:PORT, [IPv6]:PORT, IPv6 (two or more colons, no port). */
static int parse_doip(Uds *u, const char *s) {
        const char *host = s, *port = NULL;
        size_t hn;
        uint64_t p;

        if (s[0] == '[') {
                const char *close = strchr(s, ']');
                if (!close || (close[1] && close[1] != ':'))
                        goto bad;
                host = s + 1;
                hn = (size_t) (close - host);
                if (close[1] == ':')
                        port = close + 2;
        } else {
                const char *colon = strchr(s, ':');
                if (colon && !strchr(colon + 1, ':')) {
                        hn = (size_t) (colon - s);
                        port = colon + 1;
                } else
                        hn = strlen(s);
        }
        if (hn == 0 || hn >= sizeof u->doip_address)
                goto bad;
        memcpy(u->doip_address, host, hn);
        u->doip_address[hn] = '\0';
        {
                struct in6_addr a6;
                struct in_addr a4;

                if (inet_pton(AF_INET, u->doip_address, &a4) != 1 && inet_pton(AF_INET6, u->doip_address, &a6) != 1)
                        goto bad;
        }
        u->doip_port = 0;
        if (port) {
                if (tg_parse_uint64(port, &p) < 0 || p == 0 || p > 65535)
                        goto bad;
                u->doip_port = (uint16_t) p;
        }
        u->doip = s;
        return 0;
bad:
        uds_error("Bad --doip=%s: takes ADDR, ADDR:PORT or [IPv6]:PORT (numeric).", s);
        return -EINVAL;
}

/* ---- command line ---- */

static int parse_sha256(const char *s, uint8_t out[32]) {
        if (strlen(s) != 64)
                return -EINVAL;
        for (unsigned i = 0; i < 32; i++) {
                unsigned v;
                char c[3] = { s[2 * i], s[2 * i + 1], 0 };

                if (!isxdigit((unsigned char) c[0]) || !isxdigit((unsigned char) c[1]) || sscanf(c, "%2x", &v) != 1)
                        return -EINVAL;
                out[i] = (uint8_t) v;
        }
        return 0;
}

static void help(void) {
        printf("Usage: tollgate-uds [--doip=ADDR[:PORT]] [--tester=ADDR] --target=ADDR COMMAND [ARG...]\n"
               "       tollgate-uds --can=SPEC --tx-id=ID --rx-id=ID [--fd [--dl=N] [--brs]]\n"
               "                    [--functional-id=ID] [--target=ADDR] COMMAND [ARG...]\n\n"
               "A UDS (ISO 14229) client over DoIP or ISO-TP.\n\n"
               "Commands:\n"
               "  read DID...             ReadDataByIdentifier (F187 part-number, F189 software-version,\n"
               "                          F18C serial-number, F190 vin, or any 4 hex digits)\n"
               "  session SESSION         DiagnosticSessionControl: default, programming, extended, 0x01…0x7E\n"
               "  reset [hard|soft|key]   ECUReset (hard by default)\n"
               "  tester-present          TesterPresent\n"
               "  raw HEX...              send any request, print the response (raw 22 F1 90)\n"
               "  flash IMAGE|URL         program IMAGE, or stream it from an http(s) URL (with --sha256=)\n"
               "  rollback --ab | IMAGE   back to the previous bank, or re-flash the previous IMAGE\n\n"
               "Transport:\n"
               "  --doip=ADDR[:PORT]      DoIP entity (numeric IPv4/IPv6; port 13400 by default)\n"
               "  --tester=ADDR           our DoIP logical address (default 0x0E00)\n"
               "  --can=SPEC              CAN bus: an interface (can0) or a hub (unix:/path/hub.sock)\n"
               "  --tx-id=ID --rx-id=ID   ISO-TP request and response ids (0x7E0, 0x7E8)\n"
               "  --fd, --dl=N, --brs     CAN FD frames, their size (8…64), bit-rate switch\n"
               "  --functional-id=ID      ISO-TP functional request id (0x7DF) for --target=functional\n"
               "  --bitrate=N             bring the SocketCAN interface up at N bit/s (--restart-ms=MS\n"
               "                          after bus-off); needs CAP_NET_ADMIN\n"
               "  --kernel-isotp=auto|yes|no  the kernel's CAN_ISOTP on an interface (auto: where it exists)\n"
               "  --target=ADDR           the ECU's logical address (DoIP: required; ISO-TP: default the tx id)\n"
               "  --p2=TIME               wait at least TIME for each response (default: the ECU's P2 + 50ms)\n"
               "  --timeout=TIME          connection timeout (default 10s)\n\n"
               "Flash and rollback:\n"
               "  --version=V             the image's software version (sent with the dependency check)\n"
               "  --ab                    A/B ECU: switch banks after programming (rollback: switch back)\n"
               "  --memory-address=A      erase and download address (default 0)\n"
               "  --no-security           skip SecurityAccess\n"
               "  --security-level=N      SecurityAccess requestSeed level (default 0x01)\n"
               "  --no-extended           straight to the programming session (by default the extended\n"
               "                          session comes first; --extended says so)\n"
               "  --dtc-off, --comm-off   ControlDTCSetting off, CommunicationControl off (extended session)\n"
               "  --sha256=HEX            the image's SHA-256 (needed for a URL; a file must match it)\n\n"
               "Output:\n"
               "  --json                  results as one JSON object\n"
               "  -q, --quiet             no progress\n"
               "  --log-level=LEVEL       debug (every request), info, warning (default), err\n"
               "  -h, --help              show this help\n"
               "      --version           show the version (without a command)\n\n"
               "Exit status: 0 done, 1 negative response / flash failed at the ECU, 2 usage,\n"
               "3 transport or connection, 4 malformed response, 5 local failure.\n");
}

static int parse_timespan_opt(const char *opt, const char *s, uint64_t *ret) {
        if (tg_parse_timespan(s, USEC_PER_MSEC, ret) < 0 || *ret == 0) {
                uds_error("Bad --%s=%s: takes a time (500ms, 2s; a number is milliseconds).", opt, s);
                return -EINVAL;
        }
        return 0;
}

/* 1: go on with the command at argv[optind]; 0: done (help); <0: usage error. */
static int parse_argv(int argc, char *argv[], Uds *u, bool *ret_version) {
        enum {
                ARG_DOIP = 0x100, ARG_TESTER, ARG_CAN, ARG_TX_ID, ARG_RX_ID, ARG_FD, ARG_DL, ARG_BRS, ARG_FUNCTIONAL,
                ARG_TARGET, ARG_P2, ARG_TIMEOUT, ARG_JSON, ARG_LOG_LEVEL, ARG_VERSION, ARG_AB, ARG_MEMORY_ADDRESS,
                ARG_NO_SECURITY, ARG_SECURITY_LEVEL, ARG_EXTENDED, ARG_DTC_OFF, ARG_COMM_OFF, ARG_BITRATE,
                ARG_RESTART_MS, ARG_KERNEL_ISOTP, ARG_SHA256, ARG_NO_EXTENDED,
        };
        static const struct option options[] = {
                { "doip", required_argument, NULL, ARG_DOIP },
                { "tester", required_argument, NULL, ARG_TESTER },
                { "can", required_argument, NULL, ARG_CAN },
                { "tx-id", required_argument, NULL, ARG_TX_ID },
                { "rx-id", required_argument, NULL, ARG_RX_ID },
                { "fd", no_argument, NULL, ARG_FD },
                { "dl", required_argument, NULL, ARG_DL },
                { "brs", no_argument, NULL, ARG_BRS },
                { "functional-id", required_argument, NULL, ARG_FUNCTIONAL },
                { "bitrate", required_argument, NULL, ARG_BITRATE },
                { "restart-ms", required_argument, NULL, ARG_RESTART_MS },
                { "kernel-isotp", required_argument, NULL, ARG_KERNEL_ISOTP },
                { "target", required_argument, NULL, ARG_TARGET },
                { "p2", required_argument, NULL, ARG_P2 },
                { "timeout", required_argument, NULL, ARG_TIMEOUT },
                { "json", no_argument, NULL, ARG_JSON },
                { "quiet", no_argument, NULL, 'q' },
                { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
                { "help", no_argument, NULL, 'h' },
                { "version", optional_argument, NULL, ARG_VERSION },
                { "ab", no_argument, NULL, ARG_AB },
                { "memory-address", required_argument, NULL, ARG_MEMORY_ADDRESS },
                { "no-security", no_argument, NULL, ARG_NO_SECURITY },
                { "security-level", required_argument, NULL, ARG_SECURITY_LEVEL },
                { "extended", no_argument, NULL, ARG_EXTENDED },
                { "no-extended", no_argument, NULL, ARG_NO_EXTENDED },
                { "dtc-off", no_argument, NULL, ARG_DTC_OFF },
                { "comm-off", no_argument, NULL, ARG_COMM_OFF },
                { "sha256", required_argument, NULL, ARG_SHA256 },
                {},
        };
        uint32_t v;
        uint64_t w;
        int c, level;

        *ret_version = false;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "hq", options, NULL)) >= 0)
                switch (c) {
                case ARG_DOIP:
                        if (parse_doip(u, optarg) < 0)
                                return -EINVAL;
                        break;
                case ARG_TESTER:
                        if (parse_address("tester", optarg, &u->tester) < 0)
                                return -EINVAL;
                        break;
                case ARG_CAN:
                        if (!*optarg) {
                                uds_error("--can= takes a bus: can0, vcan0 or unix:/path/hub.sock.");
                                return -EINVAL;
                        }
                        u->can = optarg;
                        break;
                case ARG_TX_ID:
                        if (parse_can_id("tx-id", optarg, &u->tx_id) < 0)
                                return -EINVAL;
                        u->have_tx_id = true;
                        break;
                case ARG_RX_ID:
                        if (parse_can_id("rx-id", optarg, &u->rx_id) < 0)
                                return -EINVAL;
                        u->have_rx_id = true;
                        break;
                case ARG_FUNCTIONAL:
                        if (parse_can_id("functional-id", optarg, &u->functional_id) < 0)
                                return -EINVAL;
                        break;
                case ARG_FD:
                        u->fd = true;
                        break;
                case ARG_BITRATE:
                        if (tg_parse_uint64(optarg, &w) < 0 || w < 10000 || w > 8000000) {
                                uds_error("Bad --bitrate=%s: takes 10000…8000000 bit/s.", optarg);
                                return -EINVAL;
                        }
                        u->bitrate = (uint32_t) w;
                        break;
                case ARG_RESTART_MS:
                        if (tg_parse_uint64(optarg, &w) < 0 || w > 60000) {
                                uds_error("Bad --restart-ms=%s: takes 0…60000.", optarg);
                                return -EINVAL;
                        }
                        u->restart_ms = (uint32_t) w;
                        break;
                case ARG_KERNEL_ISOTP:
                        if (streq(optarg, "auto"))
                                u->kernel = TG_DIAG_ISOTP_KERNEL_AUTO;
                        else if (streq(optarg, "no"))
                                u->kernel = TG_DIAG_ISOTP_KERNEL_NEVER;
                        else if (streq(optarg, "yes"))
                                u->kernel = TG_DIAG_ISOTP_KERNEL_REQUIRED;
                        else {
                                uds_error("Bad --kernel-isotp=%s: takes auto, yes or no.", optarg);
                                return -EINVAL;
                        }
                        break;
                case ARG_BRS:
                        u->brs = true;
                        break;
                case ARG_DL:
                        if (tg_parse_unsigned(optarg, &u->dl) < 0 || u->dl < 8 || u->dl > 64 ||
                            tg_isotp_round_dl(u->dl) != u->dl) {
                                uds_error("Bad --dl=%s: takes a CAN FD frame size: 8, 12, 16, 20, 24, 32, 48 or 64.",
                                          optarg);
                                return -EINVAL;
                        }
                        break;
                case ARG_TARGET:
                        if (parse_address("target", optarg, &u->target) < 0)
                                return -EINVAL;
                        u->have_target = true;
                        break;
                case ARG_P2:
                        if (parse_timespan_opt("p2", optarg, &u->p2_usec) < 0)
                                return -EINVAL;
                        if (u->p2_usec > 3600 * USEC_PER_SEC) {
                                uds_error("Bad --p2=%s: at most 1h.", optarg);
                                return -EINVAL;
                        }
                        break;
                case ARG_TIMEOUT:
                        if (parse_timespan_opt("timeout", optarg, &u->timeout_usec) < 0)
                                return -EINVAL;
                        break;
                case ARG_JSON:
                        u->json = true;
                        break;
                case 'q':
                        u->quiet = true;
                        break;
                case ARG_LOG_LEVEL:
                        if (tg_log_level_from_string(optarg, &level) < 0) {
                                uds_error("Unknown log level: %s (debug, info, notice, warning, err).", optarg);
                                return -EINVAL;
                        }
                        tg_log_set_max_level(level);
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        /* --version alone: ours; --version=V: the image's. */
                        if (optarg) {
                                u->version = optarg;
                                u->flash_options = true;
                        } else
                                *ret_version = true;
                        break;
                case ARG_AB:
                        u->ab = true;
                        u->flash_options = true;
                        break;
                case ARG_MEMORY_ADDRESS: {
                        char *end;

                        errno = 0;
                        w = strtoull(optarg, &end, 0);
                        if (errno || end == optarg || *end || !isdigit((unsigned char) optarg[0])) {
                                uds_error("Bad --memory-address=%s: takes a number (0x08000000, 4096).", optarg);
                                return -EINVAL;
                        }
                        u->memory_address = w;
                        u->flash_options = true;
                        break;
                }
                case ARG_NO_SECURITY:
                        u->no_security = true;
                        u->flash_options = true;
                        break;
                case ARG_SECURITY_LEVEL:
                        if (uds_parse_hex_u32(optarg, 0x7D, &v) < 0 || v % 2 == 0) {
                                uds_error("Bad --security-level=%s: takes an odd hex level 0x01…0x7D.", optarg);
                                return -EINVAL;
                        }
                        u->security_level = (uint8_t) v;
                        u->flash_options = true;
                        break;
                case ARG_EXTENDED:
                        u->extended = true;
                        u->flash_options = true;
                        break;
                case ARG_NO_EXTENDED:
                        u->extended = false;
                        u->flash_options = true;
                        break;
                case ARG_DTC_OFF:
                        u->dtc_off = true;
                        u->flash_options = true;
                        break;
                case ARG_COMM_OFF:
                        u->comm_off = true;
                        u->flash_options = true;
                        break;
                case ARG_SHA256:
                        if (parse_sha256(optarg, u->sha256) < 0) {
                                uds_error("Bad --sha256=%s: takes the image's SHA-256 as 64 hex digits.", optarg);
                                return -EINVAL;
                        }
                        u->have_sha256 = true;
                        u->flash_options = true;
                        break;
                case '?':
                        if (optopt)
                                uds_error("Option -%c unknown or missing its argument (see --help).", optopt);
                        else
                                uds_error("Unknown option or missing argument: %s (see --help).", argv[optind - 1]);
                        return -EINVAL;
                default:
                        return -EINVAL;
                }
        return 1;
}

/* The transport options make sense together. */
static int check_transport(Uds *u) {
        if (u->doip && u->can) {
                uds_error("--doip= and --can= exclude each other.");
                return -EINVAL;
        }
        if (!u->doip && !u->can) {
                uds_error("Which ECU? --doip=ADDR[:PORT] or --can=SPEC with --tx-id= and --rx-id= (see --help).");
                return -EINVAL;
        }
        if (u->doip) {
                if (u->have_tx_id || u->have_rx_id || u->fd || u->brs || u->dl || u->functional_id || u->bitrate ||
                    u->restart_ms || u->kernel) {
                        uds_error("--tx-id=, --rx-id=, --fd, --dl=, --brs, --functional-id=, --bitrate=, --restart-ms= "
                                  "and --kernel-isotp= are for --can=.");
                        return -EINVAL;
                }
                if (!u->have_target) {
                        uds_error("--target=ADDR is required with --doip= (the ECU's logical address).");
                        return -EINVAL;
                }
                return 0;
        }
        if (!u->have_tx_id || !u->have_rx_id) {
                uds_error("--can= needs --tx-id= and --rx-id= (e.g. 0x7E0 and 0x7E8).");
                return -EINVAL;
        }
        if (u->tx_id == u->rx_id) {
                uds_error("--tx-id= and --rx-id= must differ.");
                return -EINVAL;
        }
        if ((u->dl && u->dl != 8 && !u->fd) || (u->brs && !u->fd)) {
                uds_error("--dl= over 8 and --brs need --fd.");
                return -EINVAL;
        }
        if (!u->have_target)
                u->target = (uint16_t) (u->tx_id & 0xFFFF);
        if (u->target == TG_DIAG_FUNCTIONAL_ADDRESS && !u->functional_id) {
                uds_error("--target=functional over ISO-TP needs --functional-id= (e.g. 0x7DF).");
                return -EINVAL;
        }
        return 0;
}

static int run(int argc, char *argv[]) {
        static Uds uds = {
                .tester = 0x0E00,
                .timeout_usec = CONNECT_TIMEOUT_DEFAULT,
                .extended = true, /* the usual programming sequence starts there */
        };
        Uds *u = &uds;
        const char *cmd;
        char **args;
        int n, r;
        bool version;

        r = parse_argv(argc, argv, u, &version);
        if (r < 0)
                return UDS_EXIT_USAGE;
        if (r == 0)
                return UDS_EXIT_OK;
        if (optind >= argc) {
                if (version) {
                        printf("tollgate-uds %s\n", PACKAGE_VERSION);
                        return UDS_EXIT_OK;
                }
                uds_error("No command: read, session, reset, tester-present, raw, flash, rollback (see --help).");
                return UDS_EXIT_USAGE;
        }
        cmd = argv[optind];
        args = argv + optind + 1;
        n = argc - optind - 1;
        if (version) {
                uds_error("--version takes =V with %s (the image's version).", cmd);
                return UDS_EXIT_USAGE;
        }
        if (!streq(cmd, "read") && !streq(cmd, "session") && !streq(cmd, "reset") &&
            !streq(cmd, "tester-present") && !streq(cmd, "raw") && !streq(cmd, "flash") &&
            !streq(cmd, "rollback")) {
                uds_error("Unknown command '%s': read, session, reset, tester-present, raw, flash, rollback.", cmd);
                return UDS_EXIT_USAGE;
        }
        if (u->flash_options && !streq(cmd, "flash") && !streq(cmd, "rollback")) {
                uds_error("--version=, --ab, --memory-address=, --no-security, --security-level=, --extended, "
                          "--no-extended, --dtc-off, --comm-off and --sha256= are for flash and rollback.");
                return UDS_EXIT_USAGE;
        }
        if (check_transport(u) < 0)
                return UDS_EXIT_USAGE;
        /* Bad input is found before anything is sent: the commands check
         * their arguments first and connect after. */
        r = uds_channel_new(u);
        if (r != UDS_EXIT_OK)
                return r;
        if (streq(cmd, "read"))
                r = uds_cmd_read(u, args, n);
        else if (streq(cmd, "session"))
                r = uds_cmd_session(u, args, n);
        else if (streq(cmd, "reset"))
                r = uds_cmd_reset(u, args, n);
        else if (streq(cmd, "tester-present"))
                r = uds_cmd_tester_present(u, n);
        else if (streq(cmd, "raw"))
                r = uds_cmd_raw(u, args, n);
        else if (streq(cmd, "flash"))
                r = uds_cmd_flash(u, args, n);
        else
                r = uds_cmd_rollback(u, args, n);
        fflush(stdout);
        u->ch = tg_diag_free(u->ch);
        u->event = sd_event_unref(u->event);
        return r;
}

int main(int argc, char *argv[]) {
        tg_log_open("tollgate-uds", TG_LOG_TARGET_CONSOLE);
        tg_log_set_max_level(LOG_WARNING);
        return run(argc, argv);
}
