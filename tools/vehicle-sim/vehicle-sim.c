/* SPDX-License-Identifier: MIT */

/*
 * tollgate-vehicle-sim: a car for power-wake to read (docs/vehicle-sim.md).
 *
 * The signal layouts come from a power-wake.conf, read with the daemon's own
 * parser, so the simulator and the daemon cannot disagree on a bit:
 *
 *   can   every frame that carries a configured signal is sent every
 *         --period= (100 ms) while the bus is awake, and at once when the
 *         state changes. With the ignition off the bus goes to sleep after
 *         --bus-sleep= (2 s) without activity, as a parked car's network
 *         management does: no frames at all until something wakes it (a
 *         change, a frame from another node, POST /wake).
 *   file  the file of a file source holds the signal's raw value; written
 *         (temporary file + rename) when it changes.
 *   dbus  org.tollgate.Power1.SetVehicleState() with the signals of dbus
 *         sources, when they change and whenever power-wake (re)appears.
 *
 * As the battery management it answers [Command HighVoltage] frames: "on"
 * closes the precharge contactor, then the main ones after --precharge=
 * (200 ms); "off" opens them at once. The contactor state goes out in the
 * HighVoltage signal like any other.
 */

#include <fcntl.h>
#include <getopt.h>
#include <linux/can.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#if __has_include("tg-config.h")
#include "tg-config.h"
#endif
#include "tg-event.h"
#include "tg-parse.h"
#include "tg-time.h"
#include "tg-tool.h"
#include "vehicle-sim.h"

#ifndef TG_SYSCONFDIR
#define TG_SYSCONFDIR "/etc/tollgate"
#endif

#define DEFAULT_CONFIG TG_SYSCONFDIR "/power-wake.conf"
#define DEFAULT_CONTROL "127.0.0.1:8446"
#define DEFAULT_BUS_SLEEP_USEC (2 * USEC_PER_SEC)
#define DEFAULT_PERIOD_USEC (100 * USEC_PER_MSEC)
#define DEFAULT_PRECHARGE_USEC (200 * USEC_PER_MSEC)
#define RETRY_USEC USEC_PER_SEC
#define DBUS_CALL_TIMEOUT_USEC (5 * USEC_PER_SEC)

#define POWER_NAME "org.tollgate.Power1"
#define POWER_PATH "/org/tollgate/Power1"

typedef struct Options {
        const char *config;
        const char *control;
        const char *pidfile;
        const char *initial; /* --state= JSON */
        uint64_t bus_sleep_usec;
        uint64_t period_usec;
        uint64_t precharge_usec;
} Options;

static void sim_changed(Sim *s);
static void bus_open(SimBus *b);
static int on_bus_retry(sd_event_source *es, uint64_t usec, void *userdata);


/* The value of a signal in s->state: a state name for enum signals, a number for the others. */
static const char *signal_state(const Sim *s, PowerWakeSignalId id) {
        switch (id) {
        case PW_SIGNAL_IGNITION:
                return powerwake_signal_state_name(id, s->state.ignition);
        case PW_SIGNAL_GEAR:
                return powerwake_signal_state_name(id, s->state.gear);
        case PW_SIGNAL_HIGH_VOLTAGE:
                return powerwake_signal_state_name(id, s->state.hv);
        default:
                return NULL;
        }
}

static double signal_value(const Sim *s, PowerWakeSignalId id) {
        return id == PW_SIGNAL_SPEED ? s->state.speed : s->state.battery;
}

static bool ignition_off(const Sim *s) {
        return s->state.ignition == powerwake_signal_state_index(PW_SIGNAL_IGNITION, "off");
}

static void log_limited(Sim *s, int level, const char *format, ...) _printf_(3, 4);
static void log_limited(Sim *s, int level, const char *format, ...) {
        unsigned suppressed = 0;
        char msg[512];
        va_list ap;

        if (!tg_ratelimit_check(&s->log_limit, &suppressed))
                return;
        va_start(ap, format);
        vsnprintf(msg, sizeof msg, format, ap);
        va_end(ap);
        if (suppressed)
                tg_log(level, 0, NULL, NULL, "%s (%u similar messages suppressed)", msg, suppressed);
        else
                tg_log(level, 0, NULL, NULL, "%s", msg);
}

/* ---- CAN: frames out ----------------------------------------------------------- */

static void bus_lost(SimBus *b, int error) {
        Sim *s = b->sim;
        int r;

        b->io = sd_event_source_disable_unref(b->io);
        b->can = tg_can_close(b->can);
        if (!b->lost)
                log_warning_errno(error, "Bus %s lost: %m; reconnecting every second.", b->spec);
        b->lost = true;
        s->counters.bus_losses++;
        r = tg_event_arm(s->event, &b->retry, CLOCK_MONOTONIC, tg_now(CLOCK_MONOTONIC) + RETRY_USEC,
                         USEC_PER_SEC / 10, on_bus_retry, b, "bus-retry");
        if (r < 0)
                log_error_errno(r, "Cannot arm the bus retry: %m");
}

static int build_frame(const Sim *s, const SimFrame *fr, TgCanFrame *f) {
        *f = (TgCanFrame) { .id = fr->id, .len = PW_FRAME_LEN };
        for (int i = 0; i < _PW_SIGNAL_MAX; i++) {
                const PowerWakeSignal *sig = &s->config.signals[i];
                const PowerWakeSource *src = powerwake_signal_source(&s->config, sig);
                int r;

                if (!src || src->type != PW_SOURCE_CAN || sig->can.frame_id != fr->id ||
                    !streq(src->bus, s->buses[fr->bus].spec))
                        continue;
                r = powerwake_signal_encode(sig, signal_state(s, sig->id), signal_value(s, sig->id), f);
                if (r < 0)
                        return r; /* sim_update() refuses states without a raw value */
        }
        return 0;
}

static void send_frames(Sim *s) {
        for (size_t i = 0; i < s->n_frames; i++) {
                SimBus *b = &s->buses[s->frames[i].bus];
                TgCanFrame f;
                int r;

                if (!b->can) {
                        s->counters.frames_dropped++;
                        continue;
                }
                r = build_frame(s, &s->frames[i], &f);
                if (r < 0) {
                        log_limited(s, LOG_WARNING, "Cannot encode frame %03X: %s", f.id & CAN_EFF_MASK,
                                    strerror(-r));
                        continue;
                }
                r = tg_can_send(b->can, &f);
                if (r == -EAGAIN) {
                        s->counters.frames_dropped++;
                        continue;
                }
                if (r < 0) {
                        s->counters.frames_dropped++;
                        bus_lost(b, r);
                        continue;
                }
                s->counters.frames_sent++;
        }
}

static int on_cycle(sd_event_source *es, uint64_t usec, void *userdata) {
        Sim *s = userdata;
        int r;

        if (!s->awake)
                return 0;
        s->counters.cycles++;
        send_frames(s);
        /* Keep the cadence: the next period counts from this one's due time. */
        r = tg_event_arm(s->event, &s->cycle_timer, CLOCK_MONOTONIC, MAX(usec + s->period_usec, tg_now(CLOCK_MONOTONIC)),
                         USEC_PER_MSEC, on_cycle, s, "cycle");
        if (r < 0)
                log_error_errno(r, "Cannot arm the cycle timer: %m");
        return 0;
}

static int on_sleep(sd_event_source *es, uint64_t usec, void *userdata) {
        sim_sleep(userdata);
        return 0;
}

/* Activity on the bus (a change, a frame, a wake request): it is awake now
 * and, with the ignition off, sleeps after bus_sleep without another one. */
static void bus_activity(Sim *s) {
        int r;

        if (!s->awake) {
                s->awake = true;
                s->counters.wakes++;
                log_info("Bus awake.");
        }
        if (!tg_event_armed(s->cycle_timer)) {
                r = tg_event_arm(s->event, &s->cycle_timer, CLOCK_MONOTONIC,
                                 tg_now(CLOCK_MONOTONIC) + s->period_usec, USEC_PER_MSEC, on_cycle, s, "cycle");
                if (r < 0)
                        log_error_errno(r, "Cannot arm the cycle timer: %m");
        }
        if (ignition_off(s) && s->bus_sleep_usec != USEC_INFINITY) {
                r = tg_event_arm(s->event, &s->sleep_timer, CLOCK_MONOTONIC,
                                 tg_now(CLOCK_MONOTONIC) + s->bus_sleep_usec, USEC_PER_MSEC, on_sleep, s, "bus-sleep");
                if (r < 0)
                        log_error_errno(r, "Cannot arm the bus-sleep timer: %m");
        } else if (s->sleep_timer)
                (void) sd_event_source_set_enabled(s->sleep_timer, SD_EVENT_OFF);
}

void sim_sleep(Sim *s) {
        if (s->cycle_timer)
                (void) sd_event_source_set_enabled(s->cycle_timer, SD_EVENT_OFF);
        if (s->sleep_timer)
                (void) sd_event_source_set_enabled(s->sleep_timer, SD_EVENT_OFF);
        if (!s->awake)
                return;
        s->awake = false;
        s->counters.sleeps++;
        log_info("Bus asleep (ignition %s): no frames until something wakes it.",
                 powerwake_signal_state_name(PW_SIGNAL_IGNITION, s->state.ignition));
}

void sim_wake(Sim *s) {
        bool was = s->awake;

        bus_activity(s);
        if (!was)
                send_frames(s);
}

/* ---- CAN: frames in (the battery management) -------------------------------------- */

static int on_precharged(sd_event_source *es, uint64_t usec, void *userdata) {
        Sim *s = userdata;

        if (s->state.hv != powerwake_signal_state_index(PW_SIGNAL_HIGH_VOLTAGE, "precharge"))
                return 0;
        s->state.hv = powerwake_signal_state_index(PW_SIGNAL_HIGH_VOLTAGE, "on");
        log_info("BMS: precharge done, main contactors closed: high voltage on.");
        sim_changed(s);
        return 0;
}

static void hv_command(Sim *s, const TgCanFrame *f) {
        const PowerWakeCommand *cmd = &s->config.commands[PW_COMMAND_HIGH_VOLTAGE];
        int off = powerwake_signal_state_index(PW_SIGNAL_HIGH_VOLTAGE, "off"),
            precharge = powerwake_signal_state_index(PW_SIGNAL_HIGH_VOLTAGE, "precharge"),
            fault = powerwake_signal_state_index(PW_SIGNAL_HIGH_VOLTAGE, "fault");
        const char *what;
        int64_t raw;
        int r;

        r = tg_can_signal_raw(&cmd->can, f, &raw);
        what = r < 0 ? NULL : powerwake_command_state(cmd, raw);
        if (!what) {
                s->counters.hv_commands_ignored++;
                log_limited(s, LOG_NOTICE, "BMS: a HighVoltage command frame that means nothing (%s); ignored.",
                            r < 0 ? "too short" : "raw value not in Values=");
                return;
        }
        s->counters.hv_commands++;
        if (streq(what, "on")) {
                if (s->state.hv == fault) {
                        s->counters.hv_commands_ignored++;
                        log_limited(s, LOG_NOTICE, "BMS: high voltage on refused: the contactors are in fault.");
                        return;
                }
                if (s->state.hv != off)
                        return; /* precharging or on already: a repeat */
                s->state.hv = precharge;
                log_info("BMS: high voltage on requested: precharging for %" PRIu64 " ms.",
                         s->precharge_usec / USEC_PER_MSEC);
                r = tg_event_arm(s->event, &s->hv_timer, CLOCK_MONOTONIC, tg_now(CLOCK_MONOTONIC) + s->precharge_usec,
                                 USEC_PER_MSEC, on_precharged, s, "precharge");
                if (r < 0)
                        log_error_errno(r, "Cannot arm the precharge timer: %m");
        } else {
                /* Off is off; a fault stays latched (the contactors are open
                 * anyway) until the car says otherwise (POST /state). */
                if (s->state.hv == off || s->state.hv == fault)
                        return;
                if (s->hv_timer)
                        (void) sd_event_source_set_enabled(s->hv_timer, SD_EVENT_OFF);
                s->state.hv = off;
                log_info("BMS: high voltage off requested: contactors open.");
        }
        sim_changed(s);
}

static int on_can_io(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        SimBus *b = userdata;
        Sim *s = b->sim;
        const PowerWakeCommand *cmd = &s->config.commands[PW_COMMAND_HIGH_VOLTAGE];

        for (unsigned i = 0; i < 256 && b->can; i++) {
                TgCanFrame f;
                int r = tg_can_recv(b->can, &f);

                if (r == -EAGAIN)
                        break;
                if (r == -EBADMSG) {
                        s->counters.bad_frames++;
                        continue;
                }
                if (r < 0) {
                        bus_lost(b, r);
                        break;
                }
                if (f.id & CAN_ERR_FLAG)
                        continue;
                s->counters.frames_received++;
                /* Any node that transmits wakes a sleeping bus. */
                if (!s->awake || ignition_off(s))
                        sim_wake(s);
                if (cmd->configured && s->command_bus == (int) (b - s->buses) && !(f.id & CAN_RTR_FLAG) &&
                    f.id == cmd->can.frame_id)
                        hv_command(s, &f);
        }
        return 0;
}

static int on_bus_retry(sd_event_source *es, uint64_t usec, void *userdata) {
        bus_open(userdata);
        return 0;
}

static void bus_open(SimBus *b) {
        Sim *s = b->sim;
        int r;

        r = tg_can_open(b->spec, NULL, &b->can);
        if (r >= 0) {
                r = sd_event_add_io(s->event, &b->io, tg_can_fd(b->can), EPOLLIN, on_can_io, b);
                if (r < 0)
                        b->can = tg_can_close(b->can);
        }
        if (r < 0) {
                if (!b->lost)
                        log_warning_errno(r, "Cannot open bus %s: %m; trying again every second.", b->spec);
                b->lost = true;
                r = tg_event_arm(s->event, &b->retry, CLOCK_MONOTONIC, tg_now(CLOCK_MONOTONIC) + RETRY_USEC,
                                 USEC_PER_SEC / 10, on_bus_retry, b, "bus-retry");
                if (r < 0)
                        log_error_errno(r, "Cannot arm the bus retry: %m");
                return;
        }
        (void) sd_event_source_set_description(b->io, "can");
        s->counters.bus_connects++;
        log_info("Bus %s %s.", b->spec, b->lost ? "connected again" : "connected");
        b->lost = false;
        if (s->awake)
                send_frames(s);
}

/* ---- Files ------------------------------------------------------------------------- */

static int file_text(const Sim *s, const PowerWakeSignal *sig, char *buf, size_t size) {
        if (powerwake_signal_is_enum(sig->id)) {
                int64_t raw;
                int r = powerwake_signal_raw(sig, signal_state(s, sig->id), &raw);

                if (r < 0)
                        return r;
                snprintf(buf, size, "%" PRIi64 "\n", raw);
        } else {
                double d = (signal_value(s, sig->id) - sig->can.offset) / sig->can.scale;

                if (fabs(d - round(d)) < 1e-6)
                        snprintf(buf, size, "%.0f\n", round(d));
                else
                        snprintf(buf, size, "%.6f\n", d);
        }
        return 0;
}

static int write_atomic(const char *path, const char *text) {
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = -EBADF;
        size_t n = strlen(text);

        if (asprintf(&tmp, "%s.vehicle-sim.%d", path, (int) getpid()) < 0)
                return -ENOMEM;
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                return negative_errno();
        if (write(fd, text, n) != (ssize_t) n || rename(tmp, path) < 0) {
                int r = negative_errno();
                (void) unlink(tmp);
                return r;
        }
        return 0;
}

static void write_files(Sim *s) {
        for (size_t i = 0; i < s->n_files; i++) {
                SimFile *f = &s->files[i];
                char text[sizeof f->last];
                int r;

                r = file_text(s, &s->config.signals[f->signal], text, sizeof text);
                if (r < 0 || streq(text, f->last))
                        continue;
                r = write_atomic(f->path, text);
                if (r < 0) {
                        s->counters.file_errors++;
                        log_limited(s, LOG_WARNING, "Cannot write %s: %s", f->path, strerror(-r));
                        continue;
                }
                s->counters.file_writes++;
                snprintf(f->last, sizeof f->last, "%s", text);
        }
}

/* ---- D-Bus ------------------------------------------------------------------------- */

static int on_set_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Sim *s = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        if (e && (sd_bus_error_has_name(e, SD_BUS_ERROR_SERVICE_UNKNOWN) ||
                  sd_bus_error_has_name(e, SD_BUS_ERROR_NAME_HAS_NO_OWNER))) {
                /* Not running: it gets the state when its name appears. */
                log_debug("%s is not running; the state goes out when it appears.", POWER_NAME);
                return 0;
        }
        if (e) {
                s->counters.dbus_errors++;
                log_limited(s, LOG_WARNING, "SetVehicleState failed: %s: %s", e->name, strna(e->message));
        }
        return 0;
}

static void dbus_push(Sim *s) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        if (!s->bus)
                return;
        r = sd_bus_message_new_method_call(s->bus, &m, POWER_NAME, POWER_PATH, POWER_NAME, "SetVehicleState");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        for (int i = 0; r >= 0 && i < _PW_SIGNAL_MAX; i++) {
                const PowerWakeSignal *sig = &s->config.signals[i];
                const PowerWakeSource *src = powerwake_signal_source(&s->config, sig);

                if (!src || src->type != PW_SOURCE_DBUS)
                        continue;
                if (powerwake_signal_is_enum(sig->id))
                        r = sd_bus_message_append(m, "{sv}", powerwake_signal_to_string(sig->id), "s",
                                                  signal_state(s, sig->id));
                else
                        r = sd_bus_message_append(m, "{sv}", powerwake_signal_to_string(sig->id), "d",
                                                  signal_value(s, sig->id));
        }
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        /* No D-Bus activation: a simulator does not start the daemon it plays for. */
        if (r >= 0)
                r = sd_bus_message_set_auto_start(m, false);
        if (r >= 0)
                r = sd_bus_call_async(s->bus, NULL, m, on_set_reply, s, DBUS_CALL_TIMEOUT_USEC);
        if (r < 0) {
                s->counters.dbus_errors++;
                log_limited(s, LOG_WARNING, "Cannot call SetVehicleState: %s", strerror(-r));
                return;
        }
        s->counters.dbus_calls++;
}

static int on_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Sim *s = userdata;
        const char *name, *old, *new;

        if (sd_bus_message_read(m, "sss", &name, &old, &new) < 0 || !streq(name, POWER_NAME))
                return 0;
        if (*new) {
                log_info("%s appeared: sending the vehicle state.", POWER_NAME);
                dbus_push(s);
        }
        return 0;
}

static int dbus_setup(Sim *s) {
        int r;

        r = sd_bus_default_system(&s->bus);
        if (r < 0)
                return log_error_errno(r, "A Type=dbus source needs the system bus: %m");
        r = sd_bus_attach_event(s->bus, s->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return log_error_errno(r, "Cannot attach the bus to the event loop: %m");
        r = sd_bus_match_signal_async(s->bus, &s->owner_match, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                      "org.freedesktop.DBus", "NameOwnerChanged", on_owner_changed, NULL, s);
        if (r < 0)
                return log_error_errno(r, "Cannot watch %s: %m", POWER_NAME);
        return 0;
}

/* ---- The state --------------------------------------------------------------------- */

/* Everything that follows a change: frames now (and the bus awake), files, D-Bus. */
static void sim_changed(Sim *s) {
        bool was = s->awake;

        bus_activity(s);
        send_frames(s);
        if (was && s->cycle_timer) /* the next period starts now */
                (void) tg_event_arm(s->event, &s->cycle_timer, CLOCK_MONOTONIC, tg_now(CLOCK_MONOTONIC) + s->period_usec,
                                    USEC_PER_MSEC, on_cycle, s, "cycle");
        write_files(s);
        dbus_push(s);
}

/* A state some configured enum signal cannot carry (no raw value in its Values=). */
static const char *unencodable(const Sim *s, PowerWakeSignalId id, int state) {
        const PowerWakeSignal *sig = &s->config.signals[id];
        int64_t raw;

        if (!sig->configured || powerwake_signal_source(&s->config, sig)->type == PW_SOURCE_DBUS)
                return NULL;
        if (powerwake_signal_raw(sig, powerwake_signal_state_name(id, state), &raw) < 0)
                return powerwake_signal_state_name(id, state);
        return NULL;
}

int sim_update(Sim *s, const VehicleUpdate *u, char *reason, size_t reason_size) {
        static const struct {
                PowerWakeSignalId id;
                size_t has, field;
        } enums[] = {
                { PW_SIGNAL_IGNITION, offsetof(VehicleUpdate, has_ignition), offsetof(VehicleState, ignition) },
                { PW_SIGNAL_GEAR, offsetof(VehicleUpdate, has_gear), offsetof(VehicleState, gear) },
                { PW_SIGNAL_HIGH_VOLTAGE, offsetof(VehicleUpdate, has_hv), offsetof(VehicleState, hv) },
        };
        VehicleState next = s->state;
        bool changed;

        for (size_t i = 0; i < ELEMENTSOF(enums); i++) {
                int state;
                const char *bad;

                if (!*(const bool *) ((const char *) u + enums[i].has))
                        continue;
                state = *(const int *) ((const char *) &u->v + enums[i].field);
                bad = unencodable(s, enums[i].id, state);
                if (bad) {
                        snprintf(reason, reason_size, "[Signal %s] Values= of %s has no raw value for \"%s\"",
                                 powerwake_signal_to_string(enums[i].id), s->config_path, bad);
                        return -EINVAL;
                }
                *(int *) ((char *) &next + enums[i].field) = state;
        }
        if (u->has_speed)
                next.speed = u->v.speed;
        if (u->has_battery)
                next.battery = u->v.battery;

        changed = memcmp(&next, &s->state, sizeof next) != 0;
        if (u->has_hv && s->hv_timer)
                (void) sd_event_source_set_enabled(s->hv_timer, SD_EVENT_OFF); /* set by hand: no precharge ends */
        if (next.ignition != s->state.ignition)
                log_info("Ignition %s (was %s).", powerwake_signal_state_name(PW_SIGNAL_IGNITION, next.ignition),
                         powerwake_signal_state_name(PW_SIGNAL_IGNITION, s->state.ignition));
        s->state = next;
        if (changed && s->running)
                sim_changed(s);
        return 0;
}

static void json_double(FILE *f, double d) {
        fprintf(f, "%.15g", d);
}

void sim_state_json(Sim *s, FILE *f) {
        fprintf(f, "{\"ignition\":\"%s\",\"gear\":\"%s\",\"speed\":", powerwake_signal_state_name(PW_SIGNAL_IGNITION, s->state.ignition),
                powerwake_signal_state_name(PW_SIGNAL_GEAR, s->state.gear));
        json_double(f, s->state.speed);
        fputs(",\"battery\":", f);
        json_double(f, s->state.battery);
        fprintf(f, ",\"hv\":\"%s\",\"bus\":\"%s\"}", powerwake_signal_state_name(PW_SIGNAL_HIGH_VOLTAGE, s->state.hv),
                s->awake ? "awake" : "asleep");
}

void sim_stats_json(Sim *s, FILE *f) {
        const SimCounters *c = &s->counters;
        size_t connected = 0;

        for (size_t i = 0; i < s->n_buses; i++)
                connected += s->buses[i].can != NULL;
        fprintf(f,
                "{\"bus\":\"%s\",\"buses\":%zu,\"buses_connected\":%zu,\"frames_per_cycle\":%zu,\"frames_sent\":%" PRIu64
                ",\"frames_dropped\":%" PRIu64 ",\"frames_received\":%" PRIu64 ",\"bad_frames\":%" PRIu64
                ",\"hv_commands\":%" PRIu64 ",\"hv_commands_ignored\":%" PRIu64 ",\"cycles\":%" PRIu64
                ",\"sleeps\":%" PRIu64 ",\"wakes\":%" PRIu64 ",\"bus_connects\":%" PRIu64 ",\"bus_losses\":%" PRIu64
                ",\"files\":%zu,\"file_writes\":%" PRIu64 ",\"file_errors\":%" PRIu64 ",\"dbus\":%s,\"dbus_calls\":%" PRIu64
                ",\"dbus_errors\":%" PRIu64 ",\"control_requests\":%" PRIu64 "}",
                s->awake ? "awake" : "asleep", s->n_buses, connected, s->n_frames, c->frames_sent, c->frames_dropped,
                c->frames_received, c->bad_frames, c->hv_commands, c->hv_commands_ignored, c->cycles, c->sleeps,
                c->wakes, c->bus_connects, c->bus_losses, s->n_files, c->file_writes, c->file_errors,
                s->bus ? "true" : "false", c->dbus_calls, c->dbus_errors, c->control_requests);
}

/* ---- Setup from the configuration ------------------------------------------------- */

static int bus_index(Sim *s, const char *spec) {
        for (size_t i = 0; i < s->n_buses; i++)
                if (streq(s->buses[i].spec, spec))
                        return (int) i;
        if (s->n_buses == SIM_BUSES_MAX)
                return -ENOBUFS;
        s->buses[s->n_buses] = (SimBus) { .sim = s, .spec = spec };
        return (int) s->n_buses++;
}

static int sim_setup_config(Sim *s) {
        const PowerWakeCommand *cmd = &s->config.commands[PW_COMMAND_HIGH_VOLTAGE];
        size_t n_signals = 0;

        s->command_bus = -1;
        for (int i = 0; i < _PW_SIGNAL_MAX; i++) {
                const PowerWakeSignal *sig = &s->config.signals[i];
                const PowerWakeSource *src = powerwake_signal_source(&s->config, sig);
                bool known = false;
                int b;

                if (!src)
                        continue;
                n_signals++;
                switch (src->type) {
                case PW_SOURCE_CAN:
                        b = bus_index(s, src->bus);
                        if (b < 0)
                                return log_error_errno(b, "Too many buses.");
                        for (size_t k = 0; k < s->n_frames; k++)
                                known = known || (s->frames[k].bus == (unsigned) b && s->frames[k].id == sig->can.frame_id);
                        if (!known) {
                                if (s->n_frames == SIM_FRAMES_MAX)
                                        return log_error_errno(ENOBUFS, "Too many frames.");
                                s->frames[s->n_frames++] = (SimFrame) { .bus = (unsigned) b, .id = sig->can.frame_id };
                        }
                        break;
                case PW_SOURCE_FILE:
                        for (size_t k = 0; k < s->n_files; k++)
                                if (streq(s->files[k].path, src->path)) {
                                        log_warning("[Signal %s] and [Signal %s] read the same file %s; playing only "
                                                    "the first.",
                                                    powerwake_signal_to_string(s->files[k].signal),
                                                    powerwake_signal_to_string(sig->id), src->path);
                                        known = true;
                                }
                        if (!known)
                                s->files[s->n_files++] = (SimFile) { .path = src->path, .signal = sig->id };
                        break;
                case PW_SOURCE_DBUS:
                        s->dbus_wanted = true;
                        break;
                default:
                        break;
                }
        }
        if (cmd->configured) {
                const PowerWakeSource *src = powerwake_command_source(&s->config, cmd);
                int b = bus_index(s, src->bus);

                if (b < 0)
                        return log_error_errno(b, "Too many buses.");
                s->command_bus = b;
        }
        if (n_signals == 0)
                log_warning("%s configures no signal: nothing to play.", s->config_path);
        log_info("Playing %zu signal(s): %zu frame(s) on %zu bus(es), %zu file(s)%s; %s.", n_signals, s->n_frames,
                 s->n_buses, s->n_files, s->dbus_wanted ? ", SetVehicleState over D-Bus" : "",
                 cmd->configured ? "answering [Command HighVoltage] as the BMS" : "no [Command HighVoltage]");
        return 0;
}

/* ---- Command line -------------------------------------------------------------------- */

static void help(void) {
        printf("Usage: tollgate-vehicle-sim [OPTIONS]\n\n"
               "Play a car's ignition, gear, speed, battery voltage and high-voltage contactors\n"
               "over the sources a power-wake.conf names (CAN through tollgate-canhub or SocketCAN,\n"
               "files, or D-Bus), and answer [Command HighVoltage] as the battery management.\n"
               "Controlled over plain HTTP on loopback. See docs/vehicle-sim.md.\n\n"
               "  --config=PATH        power-wake.conf to read the layouts from (and PATH.d/)\n"
               "                       (default " DEFAULT_CONFIG ")\n"
               "  --control=ADDR:PORT  control API, loopback only (default " DEFAULT_CONTROL "; port 0 picks one)\n"
               "  --state=JSON         the state at start, as for POST /state\n"
               "                       (default {\"ignition\":\"off\",\"gear\":\"P\",\"speed\":0,\"battery\":12.6,\"hv\":\"off\"})\n"
               "  --bus-sleep=SPAN     with the ignition off, the bus sleeps after this long without\n"
               "                       activity (default 2s; \"infinity\": never)\n"
               "  --period=SPAN        cycle time of the frames while awake (default 100ms)\n"
               "  --precharge=SPAN     BMS precharge time before high voltage is on (default 200ms)\n"
               "  --pidfile=PATH       write the process id here once the control API listens\n"
               "  --log-level=LEVEL    debug, info (default), notice, warning, err\n"
               "  -h, --help           show this help\n"
               "      --version        show the version\n");
}

static int parse_argv(int argc, char *argv[], Options *o) {
        enum {
                ARG_CONFIG = 0x100,
                ARG_CONTROL,
                ARG_STATE,
                ARG_BUS_SLEEP,
                ARG_PERIOD,
                ARG_PRECHARGE,
                ARG_PIDFILE,
        };
        static const struct option options[] = {
                { "config", required_argument, NULL, ARG_CONFIG },
                { "control", required_argument, NULL, ARG_CONTROL },
                { "state", required_argument, NULL, ARG_STATE },
                { "bus-sleep", required_argument, NULL, ARG_BUS_SLEEP },
                { "period", required_argument, NULL, ARG_PERIOD },
                { "precharge", required_argument, NULL, ARG_PRECHARGE },
                { "pidfile", required_argument, NULL, ARG_PIDFILE },
                TG_TOOL_OPTIONS,
                {},
        };
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case ARG_CONFIG:
                        o->config = optarg;
                        break;
                case ARG_CONTROL:
                        o->control = optarg;
                        break;
                case ARG_STATE:
                        o->initial = optarg;
                        break;
                case ARG_BUS_SLEEP:
                        if (tg_parse_timespan(optarg, USEC_PER_SEC, &o->bus_sleep_usec) < 0)
                                return log_error_errno(EINVAL, "--bus-sleep= takes a time span (2s, 500ms, infinity): %s",
                                                       optarg);
                        break;
                case ARG_PERIOD:
                        if (tg_parse_timespan(optarg, USEC_PER_MSEC, &o->period_usec) < 0 ||
                            o->period_usec < USEC_PER_MSEC || o->period_usec > 10 * USEC_PER_SEC)
                                return log_error_errno(EINVAL, "--period= takes 1ms…10s: %s", optarg);
                        break;
                case ARG_PRECHARGE:
                        if (tg_parse_timespan(optarg, USEC_PER_MSEC, &o->precharge_usec) < 0 ||
                            o->precharge_usec > 60 * USEC_PER_SEC)
                                return log_error_errno(EINVAL, "--precharge= takes 0…60s: %s", optarg);
                        break;
                case ARG_PIDFILE:
                        o->pidfile = optarg;
                        break;
                default:
                        r = tg_tool_option(c, optarg, "tollgate-vehicle-sim", help);
                        if (r <= 0)
                                return r;
                }
        r = tg_tool_no_arguments(argc, argv);
        if (r < 0)
                return r;
        return 1;
}

/* Under a temporary name, then renamed: a reader never sees an empty file. */
static int write_pidfile(const char *path) {
        char buf[32];

        snprintf(buf, sizeof buf, "%d\n", (int) getpid());
        return write_atomic(path, buf);
}

static int on_signal(sd_event_source *es, const struct signalfd_siginfo *si, void *userdata) {
        Sim *s = userdata;

        if (si->ssi_signo == SIGUSR1) {
                _cleanup_free_ char *text = NULL;
                size_t size = 0;
                FILE *f = open_memstream(&text, &size);

                if (f) {
                        sim_stats_json(s, f);
                        if (fclose(f) == 0)
                                log_info("Counters: %s", text);
                }
                return 0;
        }
        log_info("Received %s, stopping.", si->ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
        return sd_event_exit(s->event, 0);
}

static void sim_done(Sim *s) {
        s->control = control_free(s->control);
        for (size_t i = 0; i < s->n_buses; i++) {
                s->buses[i].io = sd_event_source_disable_unref(s->buses[i].io);
                s->buses[i].retry = sd_event_source_disable_unref(s->buses[i].retry);
                s->buses[i].can = tg_can_close(s->buses[i].can);
        }
        s->cycle_timer = sd_event_source_disable_unref(s->cycle_timer);
        s->sleep_timer = sd_event_source_disable_unref(s->sleep_timer);
        s->hv_timer = sd_event_source_disable_unref(s->hv_timer);
        s->owner_match = sd_bus_slot_unref(s->owner_match);
        s->bus = sd_bus_flush_close_unref(s->bus);
        s->event = sd_event_unref(s->event);
        powerwake_config_done(&s->config);
}

static int run(int argc, char *argv[]) {
        Options o = {
                .config = DEFAULT_CONFIG,
                .control = DEFAULT_CONTROL,
                .bus_sleep_usec = DEFAULT_BUS_SLEEP_USEC,
                .period_usec = DEFAULT_PERIOD_USEC,
                .precharge_usec = DEFAULT_PRECHARGE_USEC,
        };
        static Sim sim = {
                .log_limit = TG_RATELIMIT_INIT(10 * USEC_PER_SEC, 5),
        };
        Sim *s = &sim;
        static const int signals[] = { SIGTERM, SIGINT, SIGUSR1 };
        TgConfError err = {};
        char reason[256];
        int r;

        r = parse_argv(argc, argv, &o);
        if (r <= 0)
                return r;
        s->config_path = o.config;
        s->bus_sleep_usec = o.bus_sleep_usec;
        s->period_usec = o.period_usec;
        s->precharge_usec = o.precharge_usec;
        s->state = (VehicleState) {
                .ignition = powerwake_signal_state_index(PW_SIGNAL_IGNITION, "off"),
                .gear = powerwake_signal_state_index(PW_SIGNAL_GEAR, "P"),
                .speed = 0,
                .battery = 12.6,
                .hv = powerwake_signal_state_index(PW_SIGNAL_HIGH_VOLTAGE, "off"),
        };

        r = powerwake_config_load(o.config, &s->config, &err);
        if (r < 0)
                return log_error_errno(r, "Cannot use %s: %s", o.config, r == -EBADMSG ? err.text : "out of memory");

        (void) signal(SIGPIPE, SIG_IGN);
        r = tg_tool_event_new(&s->event, signals, ELEMENTSOF(signals), on_signal, s);
        if (r < 0)
                goto out;

        r = sim_setup_config(s);
        if (r < 0)
                goto out;
        if (o.initial) {
                VehicleUpdate u;

                r = vehicle_update_parse(o.initial, strlen(o.initial), &u, reason, sizeof reason);
                if (r >= 0)
                        r = sim_update(s, &u, reason, sizeof reason);
                if (r < 0) {
                        log_error("--state=: %s", reason);
                        goto out;
                }
        }
        if (s->dbus_wanted) {
                r = dbus_setup(s);
                if (r < 0)
                        goto out;
        }
        r = control_new(s, o.control, &s->control);
        if (r < 0)
                goto out;
        for (size_t i = 0; i < s->n_buses; i++)
                bus_open(&s->buses[i]);
        /* Switched on: the bus is awake and every source gets the state. */
        s->running = true;
        sim_changed(s);

        if (o.pidfile) {
                r = write_pidfile(o.pidfile);
                if (r < 0) {
                        log_error_errno(r, "Cannot write the pidfile %s: %m", o.pidfile);
                        goto out;
                }
        }
        log_info("Control API on %s; bus sleep after %s with the ignition off.", control_address(s->control),
                 s->bus_sleep_usec == USEC_INFINITY ? "never" : (tg_format_timespan(reason, sizeof reason, s->bus_sleep_usec)));
        (void) sd_notifyf(0, "READY=1\nSTATUS=Control API on %s", control_address(s->control));
        printf("vehicle-sim: control on %s\n", control_address(s->control));
        fflush(stdout);

        r = sd_event_loop(s->event);
        if (r < 0)
                log_error_errno(r, "Event loop failed: %m");
        (void) sd_notify(0, "STOPPING=1");
        if (o.pidfile)
                (void) unlink(o.pidfile);
out:
        sim_done(s);
        return r;
}

int main(int argc, char *argv[]) {
        int r;

        tg_log_open("vehicle-sim", TG_LOG_TARGET_AUTO);
        r = run(argc, argv);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
