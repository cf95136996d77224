/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The simulator's ISO-TP node (ISO 15765-2 over lib/tg-isotp on a tg-can bus:
 * a SocketCAN interface or a tollgate-canhub socket): one bus member per
 * simulated ECU, taking its physical request id and answering on its
 * response id, and one per bus taking the functional id (0x7DF). Responses
 * are queued while the previous one is still being sent (a 0x78 and the
 * final answer can follow each other within one frame time).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "ecu-sim-conf.h"

typedef struct EcuIsotp EcuIsotp;

/* A complete request arrived (functional: on the bus's functional id). */
typedef void (*EcuIsotpRequestFn)(EcuIsotp *n, const uint8_t *data, size_t len, bool functional, void *userdata);

/* Open a member of bus. response_id UINT32_MAX: a functional listener
 * (request_id is the functional id; it never sends). max_request: the
 * longest request taken (an FF announcing more gets FC overflow). */
int ecu_isotp_open(sd_event *event, const EcuSimBus *bus, uint32_t request_id, uint32_t response_id,
                   size_t max_request, EcuIsotpRequestFn fn, void *userdata, EcuIsotp **ret);
EcuIsotp *ecu_isotp_free(EcuIsotp *n);

/* Queue a response (copied). -ENOMEM, or the socket's fatal error. */
int ecu_isotp_send(EcuIsotp *n, const uint8_t *data, size_t len);
/* The ECU reset: forget what is queued (what is on the wire finishes). */
void ecu_isotp_reset(EcuIsotp *n);
