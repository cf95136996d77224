/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "powerwake.h"
#include "tg-bus.h"
#include "tg-message-ids.h"

#define OBJECT_PATH "/org/tollgate/Power1"
#define INTERFACE "org.tollgate.Power1"

static int property_get_state(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        PowerWakeSignalId id = streq(property, "Ignition") ? PW_SIGNAL_IGNITION : PW_SIGNAL_HIGH_VOLTAGE;

        return sd_bus_message_append(reply, "s", manager_signal_state(m, id));
}

static int property_get_value(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        PowerWakeSignalId id = streq(property, "Speed") ? PW_SIGNAL_SPEED : PW_SIGNAL_BATTERY_VOLTAGE;

        return sd_bus_message_append(reply, "d", m->signals[id].value);
}

static int property_get_parked(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        return sd_bus_message_append(reply, "b", manager_compute_parked(m));
}

static int property_get_holds(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int r;

        r = sd_bus_message_open_container(reply, 'a', "(ss)");
        for (size_t i = 0; r >= 0 && i < m->n_holds; i++)
                r = sd_bus_message_append(reply, "(ss)", m->holds[i]->who, m->holds[i]->why);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        return r;
}

static int property_get_wakes(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int r;

        r = sd_bus_message_open_container(reply, 'a', "(tts)");
        for (size_t i = 0; r >= 0 && i < m->n_wakes; i++)
                r = sd_bus_message_append(reply, "(tts)", m->wakes[i].id, m->wakes[i].when_usec, m->wakes[i].reason);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        return r;
}

static pid_t sender_pid(sd_bus_message *msg) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        pid_t pid = 0;

        if (sd_bus_query_sender_creds(msg, SD_BUS_CREDS_PID, &creds) >= 0)
                (void) sd_bus_creds_get_pid(creds, &pid);
        return pid;
}

static int method_hold(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *who, *why;
        int r, fd = -EBADF;

        r = sd_bus_message_read(msg, "ss", &who, &why);
        if (r < 0)
                return r;
        if (!hold_text_valid(who) || !hold_text_valid(why))
                return sd_bus_error_setf(error, TG_ERROR_INVALID_ARGUMENT,
                                         "who and why are 1-%d printable characters.", HOLD_TEXT_MAX);
        r = hold_new_pipe(m, who, why, sender_pid(msg), &fd);
        if (r == -ENOBUFS)
                return sd_bus_error_setf(error, TG_ERROR_OVERLOADED, "Too many holds (at most %d).", HOLDS_MAX);
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Cannot take the hold: %m");
        /* sd-bus sends a duplicate: ours goes now, so that the holder's copy is the last. */
        r = sd_bus_reply_method_return(msg, "h", fd);
        safe_close(fd);
        manager_flush(m);
        return r;
}

static int method_schedule_wake(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *reason;
        uint64_t when, id;
        int r;

        r = sd_bus_message_read(msg, "ts", &when, &reason);
        if (r < 0)
                return r;
        if (!hold_text_valid(reason))
                return sd_bus_error_setf(error, TG_ERROR_INVALID_ARGUMENT, "reason is 1-%d printable characters.",
                                         HOLD_TEXT_MAX);
        r = wake_schedule(m, when, reason, &id);
        if (r == -ENOBUFS)
                return sd_bus_error_setf(error, TG_ERROR_OVERLOADED, "Too many scheduled wakes (at most %d).", WAKES_MAX);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return sd_bus_error_set(error, TG_ERROR_STORAGE, "Cannot save the wake; it is not scheduled.");
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_cancel_wake(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        uint64_t id;
        int r;

        r = sd_bus_message_read(msg, "t", &id);
        if (r < 0)
                return r;
        r = wake_cancel(m, id);
        if (r == -ENOENT)
                return sd_bus_error_setf(error, TG_ERROR_NOT_FOUND, "No scheduled wake %" PRIu64 ".", id);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return sd_bus_error_set(error, TG_ERROR_STORAGE, "Cannot save the change; the wake stays scheduled.");
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_request_wake(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *reason;
        uint64_t id;
        int r;

        r = sd_bus_message_read(msg, "s", &reason);
        if (r < 0)
                return r;
        if (!hold_text_valid(reason))
                return sd_bus_error_setf(error, TG_ERROR_INVALID_ARGUMENT, "reason is 1-%d printable characters.",
                                         HOLD_TEXT_MAX);
        r = wake_request(m, reason, &id);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_acknowledge_wake(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *why;
        uint64_t id;
        int accepted, r;

        r = sd_bus_message_read(msg, "tbs", &id, &accepted, &why);
        if (r < 0)
                return r;
        if (*why && !hold_text_valid(why))
                return sd_bus_error_setf(error, TG_ERROR_INVALID_ARGUMENT, "why is 0-%d printable characters.",
                                         HOLD_TEXT_MAX);
        r = hold_acknowledge_wake(m, id, accepted, *why ? why : "no reason given");
        if (r == -ENOENT)
                return sd_bus_error_setf(error, TG_ERROR_NOT_FOUND,
                                         "Wake %" PRIu64 " holds nothing (unknown, answered, or timed out).", id);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_request_high_voltage(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *state;
        char field[48];
        const char *fields[] = { field, NULL };
        int on, r;

        r = sd_bus_message_read(msg, "b", &on);
        if (r < 0)
                return r;
        state = on ? "on" : "off";
        snprintf(field, sizeof field, "HV_REQUEST=%s", state);
        if (!manager_compute_parked(m)) {
                log_event_fields(LOG_WARNING, 0, TG_MID_POWER_HV_REFUSED, fields,
                                 "High voltage %s refused: the car is not parked (gear %s, speed %.1f km/h).", state,
                                 manager_signal_state(m, PW_SIGNAL_GEAR), m->signals[PW_SIGNAL_SPEED].value);
                return sd_bus_error_setf(error, TG_ERROR_NOT_ALLOWED,
                                         "High voltage cannot be switched while the car is not parked.");
        }
        r = source_send_command(m, PW_COMMAND_HIGH_VOLTAGE, state);
        if (r == -ENOENT)
                return sd_bus_error_set(error, TG_ERROR_NOT_FOUND, "No [Command HighVoltage] is configured.");
        if (r == -EINVAL)
                return sd_bus_error_setf(error, TG_ERROR_INVALID_CONFIG,
                                         "[Command HighVoltage] Values= has no raw value for \"%s\".", state);
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Cannot send the high-voltage command: %m");
        log_event_fields(LOG_NOTICE, 0, TG_MID_POWER_HV_REQUESTED, fields, "High voltage %s requested (contactors: %s).",
                         state, manager_signal_state(m, PW_SIGNAL_HIGH_VOLTAGE));
        return sd_bus_reply_method_return(msg, NULL);
}

static int set_enum(PowerWakeSignalId id, const char *name, int *ret) {
        int i = powerwake_signal_state_index(id, name);

        if (i < 0)
                return -EINVAL;
        *ret = i;
        return 0;
}

static int method_set_vehicle_state(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        struct {
                bool set;
                int state;
                double value;
        } next[_PW_SIGNAL_MAX] = {};
        int dbus_source = sources_dbus(m), r;

        if (dbus_source < 0)
                return sd_bus_error_set(error, TG_ERROR_NOT_FOUND, "No [Source] of Type=dbus is configured.");

        /* All or nothing: check every entry, then apply. */
        r = sd_bus_message_enter_container(msg, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(msg, 'e', "sv")) > 0) {
                const char *name, *contents;
                PowerWakeSignalId id;
                const PowerWakeSignal *sig;
                char type;

                r = sd_bus_message_read(msg, "s", &name);
                if (r < 0)
                        return r;
                id = powerwake_signal_from_string(name);
                if (id < 0)
                        return sd_bus_error_setf(error, TG_ERROR_INVALID_ARGUMENT,
                                                 "Unknown signal \"%.64s\" (Ignition, Gear, Speed, BatteryVoltage, "
                                                 "HighVoltage).", name);
                sig = &m->config.signals[id];
                if (!sig->configured || m->config.sources[sig->source].type != PW_SOURCE_DBUS)
                        return sd_bus_error_setf(error, TG_ERROR_INVALID_ARGUMENT,
                                                 "%s does not come from D-Bus: %s.", name,
                                                 sig->configured ? "its [Signal] names another source"
                                                                 : "there is no [Signal] section for it");
                r = sd_bus_message_peek_type(msg, &type, &contents);
                if (r < 0)
                        return r;
                if (powerwake_signal_is_enum(id)) {
                        const char *v;

                        if (!streq(contents, "s"))
                                return sd_bus_error_setf(error, TG_ERROR_INVALID_ARGUMENT,
                                                         "%s is a string, not \"%s\".", name, contents);
                        r = sd_bus_message_read(msg, "v", "s", &v);
                        if (r < 0)
                                return r;
                        if (set_enum(id, v, &next[id].state) < 0)
                                return sd_bus_error_setf(error, TG_ERROR_INVALID_ARGUMENT,
                                                         "\"%.32s\" is not a state of %s.", v, name);
                } else {
                        double v;

                        if (!streq(contents, "d"))
                                return sd_bus_error_setf(error, TG_ERROR_INVALID_ARGUMENT,
                                                         "%s is a double, not \"%s\".", name, contents);
                        r = sd_bus_message_read(msg, "v", "d", &v);
                        if (r < 0)
                                return r;
                        if (!isfinite(v) || v < 0 || v > 1000)
                                return sd_bus_error_setf(error, TG_ERROR_INVALID_ARGUMENT,
                                                         "%s must be a number from 0 to 1000.", name);
                        next[id].value = v;
                        next[id].state = -1;
                }
                next[id].set = true;
                r = sd_bus_message_exit_container(msg);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(msg);
        if (r < 0)
                return r;

        for (int i = 0; i < _PW_SIGNAL_MAX; i++)
                if (next[i].set)
                        manager_set_signal(m, (PowerWakeSignalId) i, next[i].state, next[i].value);
        manager_flush(m);
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_reload(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int r;

        r = manager_reload(m->daemon);
        if (r == -EBADMSG)
                return sd_bus_error_set(error, TG_ERROR_INVALID_CONFIG,
                                        "Configuration rejected, the running one is kept (see the journal).");
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(msg, NULL);
}

static const sd_bus_vtable power_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD_WITH_ARGS("Hold", SD_BUS_ARGS("s", who, "s", why), SD_BUS_RESULT("h", fd), method_hold,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ScheduleWake", SD_BUS_ARGS("t", when_usec, "s", reason), SD_BUS_NO_RESULT,
                                method_schedule_wake, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("CancelWake", SD_BUS_ARGS("t", id), SD_BUS_NO_RESULT, method_cancel_wake,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("RequestWake", SD_BUS_ARGS("s", reason), SD_BUS_NO_RESULT, method_request_wake,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("AcknowledgeWake", SD_BUS_ARGS("t", id, "b", accepted, "s", why), SD_BUS_NO_RESULT,
                                method_acknowledge_wake, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("RequestHighVoltage", SD_BUS_ARGS("b", on), SD_BUS_NO_RESULT,
                                method_request_high_voltage, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("SetVehicleState", SD_BUS_ARGS("a{sv}", signals), SD_BUS_NO_RESULT,
                                method_set_vehicle_state, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Reload", NULL, NULL, method_reload, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("Woken", SD_BUS_ARGS("t", id, "s", reason), 0),
        SD_BUS_SIGNAL("PoweringDown", NULL, 0),
        SD_BUS_PROPERTY("Ignition", "s", property_get_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Parked", "b", property_get_parked, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Speed", "d", property_get_value, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("BatteryVoltage", "d", property_get_value, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("HighVoltage", "s", property_get_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Holds", "a(ss)", property_get_holds, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Wakes", "a(tts)", property_get_wakes, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("PowerDownUsec", "t", NULL, offsetof(Manager, power_down_usec),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_VTABLE_END,
};

void bus_emit_woken(Manager *m, uint64_t id, const char *reason) {
        int r = sd_bus_emit_signal(m->bus, OBJECT_PATH, INTERFACE, "Woken", "ts", id, reason);
        if (r < 0)
                log_warning_errno(r, "Cannot emit Woken(%" PRIu64 "): %m", id);
}

void bus_emit_powering_down(Manager *m) {
        int r = sd_bus_emit_signal(m->bus, OBJECT_PATH, INTERFACE, "PoweringDown", NULL);
        if (r < 0)
                log_warning_errno(r, "Cannot emit PoweringDown: %m");
}

int bus_setup(Manager *m) {
        int r;

        r = sd_bus_add_object_vtable(m->bus, NULL, OBJECT_PATH, INTERFACE, power_vtable, m);
        if (r < 0)
                return log_error_errno(r, "Cannot register %s: %m", OBJECT_PATH);
        return 0;
}
