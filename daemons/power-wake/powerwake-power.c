/* SPDX-License-Identifier: MIT */
/*
 * The power-down: when the ignition is off (known off: not unknown) and no
 * hold is left, GracePeriod= starts; at its end, if that is still so, the
 * action runs — once per off-period: not again until the ignition was on
 * (or acc) or a hold came and went. Ignition on or a new hold cancels a
 * pending power-down.
 */
#include <spawn.h>
#include <stdio.h>
#include <sys/wait.h>

#include "powerwake.h"
#include "tg-event.h"
#include "tg-message-ids.h"
#include "tg-time.h"

extern char **environ;

static bool power_down_wanted(const Manager *m) {
        return m->signals[PW_SIGNAL_IGNITION].state == 0 /* off */ && m->n_holds == 0 && !m->powered_down;
}

static int on_poweroff_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        m->poweroff_slot = sd_bus_slot_unref(m->poweroff_slot);
        if (e)
                log_event(LOG_ERR, TG_MID_POWER_DOWN_FAILED, "logind refused PowerOff: %s (%s). Does the tollgate user "
                          "have the polkit rule (50-tollgate-power-wake.rules)?",
                          e->message ? e->message : "", e->name);
        else
                log_info("logind accepted PowerOff; the system is shutting down.");
        return 0;
}

static int on_action_exit(sd_event_source *s, const siginfo_t *si, void *userdata) {
        Manager *m = userdata;
        char field[48];
        const char *fields[] = { field, NULL };

        if (si->si_code == CLD_EXITED) {
                snprintf(field, sizeof field, "EXIT_STATUS=%d", si->si_status);
                log_event_fields(si->si_status == 0 ? LOG_INFO : LOG_ERR, 0, TG_MID_POWER_DOWN_EXITED, fields,
                                 "Power-down command %s (pid %d) exited with status %d.",
                                 m->config.power_down_command ? m->config.power_down_command[0] : "?", (int) si->si_pid,
                                 si->si_status);
        } else {
                snprintf(field, sizeof field, "EXIT_SIGNAL=%s", sigabbrev_np(si->si_status) ?: "?");
                log_event_fields(LOG_ERR, 0, TG_MID_POWER_DOWN_EXITED, fields,
                                 "Power-down command (pid %d) was killed by signal %s.", (int) si->si_pid,
                                 sigabbrev_np(si->si_status) ?: "?");
        }
        m->action_pid = 0;
        m->action_child = sd_event_source_disable_unref(m->action_child);
        return 0;
}

static int run_exec(Manager *m) {
        char **argv = m->config.power_down_command;
        posix_spawnattr_t attr;
        sigset_t none, all;
        pid_t pid;
        int r;

        if (m->action_pid > 0) {
                log_warning("The power-down command of the last off-period (pid %d) still runs; not starting another.",
                            (int) m->action_pid);
                return 0;
        }
        /* The child starts with default signal handling and nothing blocked
         * (the daemon blocks the signals its loop takes, and ignores SIGPIPE). */
        sigemptyset(&none);
        sigfillset(&all);
        r = posix_spawnattr_init(&attr);
        if (r != 0)
                return -r;
        r = posix_spawnattr_setsigmask(&attr, &none);
        if (r == 0)
                r = posix_spawnattr_setsigdefault(&attr, &all);
        if (r == 0)
                r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        if (r == 0)
                r = posix_spawn(&pid, argv[0], NULL, &attr, argv, environ);
        posix_spawnattr_destroy(&attr);
        if (r != 0)
                return log_event_errno(LOG_ERR, -r, TG_MID_POWER_DOWN_FAILED, "Cannot run the power-down command %s: %m",
                                       argv[0]);
        m->action_pid = pid;
        r = sd_event_add_child(m->event, &m->action_child, pid, WEXITED, on_action_exit, m);
        if (r < 0)
                log_warning_errno(r, "Cannot watch the power-down command (pid %d); its exit status is not logged: %m",
                                  (int) pid);
        log_info("Power-down command %s started (pid %d).", argv[0], (int) pid);
        return 0;
}

static int run_poweroff(Manager *m) {
        int r;

        if (m->poweroff_slot)
                return 0; /* asked already, no answer yet */
        r = sd_bus_call_method_async(m->bus, &m->poweroff_slot, "org.freedesktop.login1", "/org/freedesktop/login1",
                                     "org.freedesktop.login1.Manager", "PowerOff", on_poweroff_reply, m, "b", false);
        if (r < 0)
                return log_event_errno(LOG_ERR, r, TG_MID_POWER_DOWN_FAILED, "Cannot ask logind to power off: %m");
        return 0;
}

static int on_grace_over(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        char grace[32];
        const char *fields[] = { NULL, NULL };
        char field[48];

        m->power_down_usec = 0;
        manager_changed(m, PROP_POWER_DOWN_USEC);
        if (!power_down_wanted(m)) {
                manager_flush(m);
                return 0;
        }
        m->powered_down = true;
        snprintf(field, sizeof field, "POWER_DOWN_ACTION=%s", power_down_action_to_string(m->config.power_down_action));
        fields[0] = field;
        log_event_fields(LOG_NOTICE, 0, TG_MID_POWER_DOWN, fields,
                         "Ignition off and no holds for %s: powering down (%s).",
                         tg_format_timespan(grace, sizeof grace, m->config.grace_period_usec),
                         power_down_action_to_string(m->config.power_down_action));
        bus_emit_powering_down(m);
        switch (m->config.power_down_action) {
        case PW_POWER_DOWN_POWEROFF:
                (void) run_poweroff(m);
                break;
        case PW_POWER_DOWN_EXEC:
                (void) run_exec(m);
                break;
        default:
                break;
        }
        manager_flush(m);
        return 0;
}

void power_update(Manager *m) {
        bool wanted = power_down_wanted(m);
        bool armed = tg_event_armed(m->grace_timer);
        char grace[32];
        int r;

        if (wanted && !armed) {
                uint64_t now = tg_now(CLOCK_MONOTONIC);

                r = tg_event_arm(m->event, &m->grace_timer, CLOCK_MONOTONIC, now + m->config.grace_period_usec,
                                 TG_TIMER_EXACT, on_grace_over, m, "grace-period");
                if (r < 0) {
                        log_error_errno(r, "Cannot arm the grace period timer: %m");
                        return;
                }
                m->power_down_usec = tg_now(CLOCK_REALTIME) + m->config.grace_period_usec;
                manager_changed(m, PROP_POWER_DOWN_USEC);
                log_info("Ignition off and no holds: powering down in %s unless that changes.",
                         tg_format_timespan(grace, sizeof grace, m->config.grace_period_usec));
        } else if (!wanted && armed) {
                (void) sd_event_source_set_enabled(m->grace_timer, SD_EVENT_OFF);
                m->power_down_usec = 0;
                manager_changed(m, PROP_POWER_DOWN_USEC);
                log_info("Power-down cancelled: %s.", m->n_holds > 0 ? "a hold was taken" : "ignition not off");
        }
}

void power_done(Manager *m) {
        m->grace_timer = sd_event_source_disable_unref(m->grace_timer);
        m->power_down_usec = 0;
}
