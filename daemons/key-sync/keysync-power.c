/* SPDX-License-Identifier: MIT */
/*
 * While a key is present, key-sync holds the gateway's power through
 * power-wake (org.tollgate.Power1.Hold): a car switched off while its key
 * is syncing stays up until the exchange is over. Best effort: without
 * power-wake (not installed, not running) nothing happens, and power-wake is
 * not started for it. The hold is the fd Hold() returns; closing it (or our
 * exit) releases it.
 */

#include <fcntl.h>

#include "keysync.h"
#include "tg-log.h"

static int on_hold_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        int fd, r;

        m->power_slot = sd_bus_slot_unref(m->power_slot);
        if (e) {
                log_debug("No power hold from power-wake: %s", e->message ?: e->name);
                return 0;
        }
        r = sd_bus_message_read(reply, "h", &fd);
        if (r < 0) {
                log_debug_errno(r, "Cannot read power-wake's Hold() reply: %m");
                return 0;
        }
        /* The key may have left while the call was under way. */
        if (!m->link || !m->link->present || m->power_fd >= 0)
                return 0;
        m->power_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (m->power_fd < 0)
                log_debug_errno(-errno, "Cannot keep power-wake's hold: %m");
        else
                log_debug("Holding power while key %s is present.", m->link->peer);
        return 0;
}

void power_hold_take(Manager *m, const char *key_id) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        char why[160];
        int r;

        if (m->power_fd >= 0 || m->power_slot)
                return;
        snprintf(why, sizeof why, "key %.64s present", key_id);
        r = sd_bus_message_new_method_call(m->bus, &call, "org.tollgate.Power1", "/org/tollgate/Power1",
                                           "org.tollgate.Power1", "Hold");
        if (r >= 0)
                r = sd_bus_message_append(call, "ss", "key-sync", why);
        if (r >= 0)
                r = sd_bus_message_set_auto_start(call, false);
        if (r >= 0)
                r = sd_bus_call_async(m->bus, &m->power_slot, call, on_hold_reply, m, 0);
        if (r < 0)
                log_debug_errno(r, "Cannot ask power-wake for a hold: %m");
}

void power_hold_release(Manager *m) {
        m->power_slot = sd_bus_slot_unref(m->power_slot); /* a late reply is dropped */
        m->power_fd = safe_close(m->power_fd);
}
