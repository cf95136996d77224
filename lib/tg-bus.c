/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>

#include "tg-bus.h"

/* errno → name. The first entry for an errno wins when replying with
 * sd_bus_error_set_errno; every name maps back to its errno for clients. */
const sd_bus_error_map tg_bus_error_map[] = {
        SD_BUS_ERROR_MAP(TG_ERROR_INVALID_ARGUMENT, EINVAL),
        SD_BUS_ERROR_MAP(TG_ERROR_INVALID_TOPIC, EDOM),
        SD_BUS_ERROR_MAP(TG_ERROR_PAYLOAD_TOO_LARGE, EMSGSIZE),
        SD_BUS_ERROR_MAP(TG_ERROR_INVALID_CONFIG, EBADMSG),
        SD_BUS_ERROR_MAP(TG_ERROR_OVERLOADED, ENOBUFS),
        SD_BUS_ERROR_MAP(TG_ERROR_STORAGE_FULL, ENOSPC),
        SD_BUS_ERROR_MAP(TG_ERROR_STORAGE, EIO),
        SD_BUS_ERROR_MAP(TG_ERROR_SHUTTING_DOWN, ESHUTDOWN),
        SD_BUS_ERROR_MAP(TG_ERROR_NOT_FOUND, ENOENT),
        SD_BUS_ERROR_MAP(TG_ERROR_ACCESS_DENIED, EPERM),
        SD_BUS_ERROR_MAP(TG_ERROR_NOT_ALLOWED, EBUSY),
        SD_BUS_ERROR_MAP_END,
};

int tg_bus_error_map_register(void) {
        int r = sd_bus_error_add_map(tg_bus_error_map);
        return r < 0 ? r : 0;
}

int tg_bus_reply_errno(sd_bus_message *m, int error, const char *format, ...) {
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        va_list ap;

        va_start(ap, format);
        sd_bus_error_set_errnofv(&e, error, format, ap);
        va_end(ap);
        return sd_bus_reply_method_error(m, &e);
}
