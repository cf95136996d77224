/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * D-Bus plumbing shared by the daemons: the org.tollgate.Error.* names and
 * their errno mapping (one place, registered with sd_bus_error_add_map), and
 * a couple of helpers for vtables.
 */

#include <systemd/sd-bus.h>

#include "tg-macro.h"

#define TG_ERROR_INVALID_ARGUMENT "org.tollgate.Error.InvalidArgument"
#define TG_ERROR_INVALID_TOPIC "org.tollgate.Error.InvalidTopic"
#define TG_ERROR_PAYLOAD_TOO_LARGE "org.tollgate.Error.PayloadTooLarge"
#define TG_ERROR_INVALID_CONFIG "org.tollgate.Error.InvalidConfig"
#define TG_ERROR_OVERLOADED "org.tollgate.Error.Overloaded"
#define TG_ERROR_STORAGE_FULL "org.tollgate.Error.StorageFull"
#define TG_ERROR_STORAGE "org.tollgate.Error.StorageFailure"
#define TG_ERROR_SHUTTING_DOWN "org.tollgate.Error.ShuttingDown"
#define TG_ERROR_NOT_FOUND "org.tollgate.Error.NotFound"
#define TG_ERROR_ACCESS_DENIED "org.tollgate.Error.AccessDenied"
/* The call is valid but the vehicle's state forbids it now (power-wake:
 * high voltage while not parked). */
#define TG_ERROR_NOT_ALLOWED "org.tollgate.Error.NotAllowed"

extern const sd_bus_error_map tg_bus_error_map[];

/* Register the shared map (idempotent). */
int tg_bus_error_map_register(void);

/* Reply to `m` with the error that `error` (negative errno) maps to, with a message. */
int tg_bus_reply_errno(sd_bus_message *m, int error, const char *format, ...) _printf_(3, 4);

