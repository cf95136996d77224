/* SPDX-License-Identifier: MIT */
#include <signal.h>
#include <stdio.h>

#include "powerwake.h"
#include "tg-message-ids.h"

#define OBJECT_PATH "/org/tollgate/Power1"
#define INTERFACE "org.tollgate.Power1"

/* Below this a speed signal is standstill (its resolution is 0.01 km/h or coarser). */
#define STANDSTILL_KMH 0.1

void manager_changed(Manager *m, unsigned props) {
        m->dirty |= props;
}

void manager_flush(Manager *m) {
        static const struct {
                unsigned flag;
                const char *name;
        } names[] = {
                { PROP_IGNITION, "Ignition" },     { PROP_PARKED, "Parked" },
                { PROP_SPEED, "Speed" },           { PROP_BATTERY_VOLTAGE, "BatteryVoltage" },
                { PROP_HIGH_VOLTAGE, "HighVoltage" }, { PROP_HOLDS, "Holds" },
                { PROP_WAKES, "Wakes" },           { PROP_POWER_DOWN_USEC, "PowerDownUsec" },
        };
        char *list[ELEMENTSOF(names) + 1];
        size_t n = 0;
        bool parked;

        parked = manager_compute_parked(m);
        if (parked != m->parked) {
                m->parked = parked;
                m->dirty |= PROP_PARKED;
        }
        /* The power-down depends on ignition and holds; it may change PowerDownUsec. */
        power_update(m);

        if (m->dirty == 0)
                return;
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (m->dirty & names[i].flag)
                        list[n++] = (char *) names[i].name;
        list[n] = NULL;
        m->dirty = 0;
        if (m->bus && m->daemon->ready)
                (void) sd_bus_emit_properties_changed_strv(m->bus, OBJECT_PATH, INTERFACE, list);
}

const char *manager_signal_state(const Manager *m, PowerWakeSignalId id) {
        return powerwake_signal_state_name(id, m->signals[id].state);
}

/* Gear P (or no Gear signal configured) and standstill (or speed unknown
 * with Gear P). Unknown is never parked: high voltage is refused then. */
bool manager_compute_parked(const Manager *m) {
        bool gear_configured = m->config.signals[PW_SIGNAL_GEAR].configured;
        bool gear_p = m->signals[PW_SIGNAL_GEAR].state == powerwake_signal_state_index(PW_SIGNAL_GEAR, "P");
        double speed = m->signals[PW_SIGNAL_SPEED].value;

        if (gear_configured && !gear_p)
                return false;
        if (!isnan(speed))
                return fabs(speed) < STANDSTILL_KMH;
        return gear_configured && gear_p;
}

static unsigned signal_prop(PowerWakeSignalId id) {
        switch (id) {
        case PW_SIGNAL_IGNITION:
                return PROP_IGNITION;
        case PW_SIGNAL_SPEED:
                return PROP_SPEED;
        case PW_SIGNAL_BATTERY_VOLTAGE:
                return PROP_BATTERY_VOLTAGE;
        case PW_SIGNAL_HIGH_VOLTAGE:
                return PROP_HIGH_VOLTAGE;
        default:
                return 0; /* Gear shows in Parked only */
        }
}

void manager_set_signal(Manager *m, PowerWakeSignalId id, int state, double value) {
        SignalValue *v = &m->signals[id];

        if (powerwake_signal_is_enum(id)) {
                if (v->state == state)
                        return;
                if (id == PW_SIGNAL_IGNITION) {
                        const char *from = manager_signal_state(m, id);
                        char field[64];
                        const char *fields[] = { field, NULL };

                        v->state = state;
                        snprintf(field, sizeof field, "IGNITION=%s", manager_signal_state(m, id));
                        log_event_fields(LOG_INFO, 0, TG_MID_POWER_IGNITION, fields, "Ignition %s (was %s).",
                                         manager_signal_state(m, id), from);
                        /* Ignition on (or acc) ends the off-period: the next one may power down again. */
                        if (state >= 0 && state != powerwake_signal_state_index(id, "off"))
                                m->powered_down = false;
                } else {
                        log_debug("%s %s.", powerwake_signal_to_string(id),
                                  powerwake_signal_state_name(id, state));
                        v->state = state;
                }
        } else {
                if (v->value == value || (isnan(v->value) && isnan(value)))
                        return;
                v->value = value;
        }
        manager_changed(m, signal_prop(id));
}

static void signals_reset(Manager *m) {
        for (int i = 0; i < _PW_SIGNAL_MAX; i++)
                m->signals[i] = (SignalValue) { .state = -1, .value = NAN };
}

static int load_config(Manager *m, PowerWakeConfig *ret) {
        TgConfError err = {};
        int r;

        r = powerwake_config_load(m->daemon->config_path, ret, &err);
        if (r < 0)
                log_event_errno(LOG_ERR, r, TG_MID_CONFIG_REJECTED, "Configuration rejected: %s",
                                r == -EBADMSG ? err.text : "out of memory");
        return r;
}

static void log_config(Manager *m) {
        char grace[32];
        size_t n = 0;

        for (int i = 0; i < _PW_SIGNAL_MAX; i++)
                n += m->config.signals[i].configured;
        log_info("%zu sources, %zu signals; power-down: %s%s%s after %s.", m->config.n_sources, n,
                 power_down_action_to_string(m->config.power_down_action),
                 m->config.power_down_action == PW_POWER_DOWN_EXEC ? " " : "",
                 m->config.power_down_action == PW_POWER_DOWN_EXEC ? m->config.power_down_command[0] : "",
                 tg_format_timespan(grace, sizeof grace, m->config.grace_period_usec));
        if (!m->config.signals[PW_SIGNAL_IGNITION].configured)
                log_notice("No [Signal Ignition] configured: the ignition stays unknown and the gateway is never "
                           "powered down by power-wake.");
}

static int manager_setup(TgDaemon *d) {
        Manager *m = d->userdata;
        sigset_t mask;
        int r;

        m->daemon = d;
        m->event = d->event;
        m->bus = d->bus;
        m->action_pid = 0;
        m->command_source = -1;
        signals_reset(m);

        /* sd_event_add_child() wants SIGCHLD blocked (the exec action). */
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_error_errno(negative_errno(), "Failed to block SIGCHLD: %m");

        r = load_config(m, &m->config);
        if (r < 0)
                return r;
        log_config(m);
        m->parked = manager_compute_parked(m);

        r = wakes_setup(m);
        if (r < 0)
                return r;
        r = bus_setup(m);
        if (r < 0)
                return r;
        r = sources_start(m);
        if (r < 0)
                return r;
        m->dirty = 0;
        power_update(m);
        return 0;
}

static void manager_on_ready(TgDaemon *d) {
        Manager *m = d->userdata;

        /* Woken signals only once clients can match on our name. */
        wakes_activate(m);
        manager_flush(m);
}

int manager_reload(TgDaemon *d) {
        Manager *m = d->userdata;
        PowerWakeConfig c;
        bool alarm_changed;
        int r;

        r = load_config(m, &c);
        if (r < 0)
                return r;
        if (!streq(c.state_dir, m->config.state_dir))
                log_notice("StateDirectory= takes effect at the next start.");
        alarm_changed = c.wake_alarm != m->config.wake_alarm || !streq_ptr(c.rtc_wake_alarm, m->config.rtc_wake_alarm);

        /* Sources are opened again from the new configuration; signal values
         * stay for the signals that are still configured. */
        sources_stop(m);
        powerwake_config_done(&m->config);
        m->config = c;
        for (int i = 0; i < _PW_SIGNAL_MAX; i++)
                if (!m->config.signals[i].configured) {
                        if (i == PW_SIGNAL_IGNITION && m->signals[i].state >= 0)
                                manager_set_signal(m, PW_SIGNAL_IGNITION, -1, NAN);
                        else if (m->signals[i].state >= 0 || !isnan(m->signals[i].value)) {
                                m->signals[i] = (SignalValue) { .state = -1, .value = NAN };
                                manager_changed(m, signal_prop((PowerWakeSignalId) i));
                        }
                }
        r = sources_start(m);
        if (r < 0)
                log_error_errno(r, "Cannot start the sources: %m");
        if (alarm_changed)
                wakes_reconfigure(m);
        /* GracePeriod= may have changed: a pending power-down starts its period again. */
        power_done(m);
        manager_changed(m, PROP_POWER_DOWN_USEC);
        log_event(LOG_INFO, TG_MID_CONFIG_RELOADED, "Configuration reloaded from %s.", d->config_path);
        log_config(m);
        manager_flush(m);
        return 0;
}

static void manager_free(TgDaemon *d) {
        Manager *m = d->userdata;

        sources_stop(m);
        power_done(m);
        m->action_child = sd_event_source_disable_unref(m->action_child);
        m->poweroff_slot = sd_bus_slot_unref(m->poweroff_slot);
        holds_free(m);
        wakes_done(m);
        powerwake_config_done(&m->config);
}

int main(int argc, char *argv[]) {
        static Manager manager;
        TgDaemon d = {
                .name = "power-wake",
                .bus_name = "org.tollgate.Power1",
                .description = "Tollgate power-wake: vehicle state, power holds, power-down and scheduled wakes.",
                .userdata = &manager,
                .setup = manager_setup,
                .reload = manager_reload,
                .free = manager_free,
                .on_ready = manager_on_ready,
        };

        return tg_daemon_main(&d, argc, argv);
}
