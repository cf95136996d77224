/* SPDX-License-Identifier: MIT */
#pragma once

/* tollgate-uds: shared between the command line (uds-main.c), the channel
 * and the simple services (uds.c) and flash and rollback (uds-flash.c). */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <systemd/sd-event.h>

#include "tg-diag.h"
#include "tg-macro.h"

/* Exit statuses (documented in tollgate-uds(1)). */
enum {
        UDS_EXIT_OK = 0,
        UDS_EXIT_REFUSED = 1,   /* the ECU answered with a negative response, or the flash failed there */
        UDS_EXIT_USAGE = 2,     /* bad arguments or input (hex, DID, ids, image file) */
        UDS_EXIT_TRANSPORT = 3, /* connection, timeout, DoIP NACK, ISO-TP failure */
        UDS_EXIT_PROTOCOL = 4,  /* the ECU's response is malformed */
        UDS_EXIT_LOCAL = 5,     /* a local failure (out of memory, reading the image mid-flash) */
};

typedef struct Uds {
        /* transport */
        const char *doip;       /* --doip=ADDR[:PORT] as given */
        char doip_address[64];
        uint16_t doip_port;
        uint16_t tester;
        const char *can;
        uint32_t tx_id, rx_id, functional_id;
        bool have_tx_id, have_rx_id;
        bool fd, brs;
        uint32_t bitrate, restart_ms;   /* SocketCAN bring-up (0: as it is) */
        int kernel;                     /* TgDiagIsotpKernel */
        unsigned dl;
        uint16_t target;
        bool have_target;
        uint64_t p2_usec;       /* 0: the library's default; else a floor */
        uint64_t timeout_usec;  /* connection */
        bool json, quiet;

        /* flash and rollback */
        const char *version;
        bool ab;
        uint64_t memory_address;
        bool no_security, extended, dtc_off, comm_off;
        uint8_t security_level;
        uint8_t sha256[32];     /* --sha256=: the image's hash, from its manifest */
        bool have_sha256;
        bool flash_options;     /* one of the above was given */

        sd_event *event;
        TgDiagChannel *ch;
} Uds;

void uds_error(const char *format, ...) _printf_(1, 2);

/* The channel is connected (or the bus opened) within --timeout: UDS_EXIT_OK
 * or UDS_EXIT_TRANSPORT (reported). */
int uds_connect(Uds *u);
/* Apply the --p2 floor to the channel's timing. */
void uds_apply_p2(Uds *u);
/* The transport's largest UDS message (0: no cap), for tg-flash. */
size_t uds_transport_max(const Uds *u);

void uds_json_string(FILE *f, const char *s);
void uds_hex(FILE *f, const uint8_t *p, size_t n, const char *sep);

/* A hex number ("0x7E0" or "7E0") of at most max. */
int uds_parse_hex_u32(const char *s, uint32_t max, uint32_t *ret);

int uds_channel_new(Uds *u);

/* The commands: an exit status, after reporting what went wrong. They
 * check their arguments before connecting. */
int uds_cmd_read(Uds *u, char **args, int n);
int uds_cmd_session(Uds *u, char **args, int n);
int uds_cmd_reset(Uds *u, char **args, int n);
int uds_cmd_tester_present(Uds *u, int n);
int uds_cmd_raw(Uds *u, char **args, int n);
int uds_cmd_flash(Uds *u, char **args, int n);
int uds_cmd_rollback(Uds *u, char **args, int n);
