/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * power-wake (SPEC F5, the ignition gate of U1, high voltage for F4,
 * scheduled wake for F6/P2): knows the vehicle state from its sources,
 * keeps the gateway powered while holds exist, powers it down when the
 * ignition is off and nothing holds it, and wakes it at scheduled times.
 *
 *   powerwake.c          main, setup/reload, the signal state and Parked
 *   powerwake-source.c   the sources: CAN (SocketCAN or hub), files, D-Bus
 *   powerwake-holds.c    Hold() pipes and the wakes' own holds
 *   powerwake-power.c    the grace period and the power-down action
 *   powerwake-wake.c     scheduled wakes: the file, the alarm timer, the RTC
 *   powerwake-bus.c      org.tollgate.Power1
 *
 * One thread, one sd-event loop; idle (a quiet bus) it wakes only for the
 * watchdog.
 */

#include <math.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "powerwake-conf.h"
#include "tg-daemon.h"
#include "tg-log.h"
#include "tg-parse.h"

typedef struct Manager Manager;

#define HOLDS_MAX 256
#define WAKES_MAX 64
#define HOLD_TEXT_MAX 64 /* who, why, a wake's reason: characters */

typedef struct Hold {
        Manager *manager;
        char *who, *why;
        int fd;                 /* the pipe's read end; -EBADF for a wake's own hold */
        sd_event_source *io;
        uint64_t wake_id;       /* a wake's own hold: the wake; 0 otherwise */
        sd_event_source *timer; /* a wake's own hold: WakeHoldTimeout= */
        uint64_t since_usec;    /* CLOCK_MONOTONIC */
        char field_who[288], field_why[288]; /* up to 64 UTF-8 characters */
        const char *fields[3];
} Hold;

typedef struct Wake {
        uint64_t id;
        uint64_t when_usec; /* CLOCK_REALTIME */
        char *reason;
} Wake;

typedef struct Source {
        Manager *manager;
        const PowerWakeSource *conf;
        int index;              /* in m->config.sources */
        char field[96];         /* SOURCE=name */
        const char *fields[3];

        /* can */
        TgCanBus *can;
        uint32_t *filters;
        size_t n_filters;
        TgRateLimit error_ratelimit;
        /* file */
        int fd;                 /* sysfs: kept open, re-read on EPOLLPRI */
        int inotify_fd;
        bool pollpri;
        /* can and file */
        sd_event_source *io;
        sd_event_source *retry;
        uint64_t backoff_usec;
        bool lost;              /* SOURCE_LOST logged, SOURCE_CONNECTED due */
        uint64_t garbage;
        TgRateLimit garbage_ratelimit;
} Source;

/* A signal's current value. Values hold their last value (a sleeping
 * car's bus is quiet): no timeout to unknown. */
typedef struct SignalValue {
        int state;    /* enum signals: index into powerwake_signal_states(), -1 unknown */
        double value; /* numeric signals: NaN unknown */
} SignalValue;

struct Manager {
        TgDaemon *daemon;
        sd_event *event;
        sd_bus *bus;
        PowerWakeConfig config;

        Source *sources;
        size_t n_sources;
        SignalValue signals[_PW_SIGNAL_MAX];
        bool parked;
        unsigned dirty;         /* PROP_* not yet announced */

        Hold **holds;
        size_t n_holds;

        Wake *wakes;            /* earliest first */
        size_t n_wakes;
        uint64_t next_wake_id;
        char *wakes_dir, *wakes_path;
        sd_event_source *wake_timer;
        clockid_t wake_clock;   /* CLOCK_REALTIME_ALARM, or CLOCK_REALTIME without CAP_WAKE_ALARM */
        bool wakes_active;      /* after the name is owned: wakes may fire */
        uint64_t rtc_programmed; /* seconds written to the RTC, 0 = cleared */

        /* Power-down */
        sd_event_source *grace_timer;
        uint64_t power_down_usec; /* CLOCK_REALTIME, 0 = none pending */
        bool powered_down;        /* the action ran in this off-period */
        pid_t action_pid;
        sd_event_source *action_child;
        sd_bus_slot *poweroff_slot;

        /* RequestHighVoltage: the repeats of the command frame */
        sd_event_source *command_timer;
        TgCanFrame command_frame;
        unsigned command_left;
        int command_source;
};

/* Properties, for manager_changed(). */
enum {
        PROP_IGNITION = 1 << 0,
        PROP_PARKED = 1 << 1,
        PROP_SPEED = 1 << 2,
        PROP_BATTERY_VOLTAGE = 1 << 3,
        PROP_HIGH_VOLTAGE = 1 << 4,
        PROP_HOLDS = 1 << 5,
        PROP_WAKES = 1 << 6,
        PROP_POWER_DOWN_USEC = 1 << 7,
};

/* powerwake.c */
/* Mark properties changed; manager_flush() announces them in one
 * PropertiesChanged and re-evaluates the power-down. */
void manager_changed(Manager *m, unsigned props);
void manager_flush(Manager *m);
/* Set a signal from a source: state for enum signals (-1 unknown), value for
 * numeric ones. Marks what changed; call manager_flush() after a batch. */
void manager_set_signal(Manager *m, PowerWakeSignalId id, int state, double value);
const char *manager_signal_state(const Manager *m, PowerWakeSignalId id); /* "unknown" when unknown */
bool manager_compute_parked(const Manager *m);
int manager_reload(TgDaemon *d);

/* powerwake-source.c */
int sources_start(Manager *m);
void sources_stop(Manager *m);
/* Send the [Command] frame (and its repeats). -ENOENT no command
 * configured, -ENOTCONN its source is not connected, or tg_can_send's error. */
int source_send_command(Manager *m, PowerWakeCommandId id, const char *state);
/* The index of the configured dbus source, -1 if none. */
int sources_dbus(const Manager *m);

/* powerwake-holds.c */
/* A Hold() from a client: the write end of the pipe to hand back in *ret_fd. */
int hold_new_pipe(Manager *m, const char *who, const char *why, pid_t pid, int *ret_fd);
int hold_new_wake(Manager *m, uint64_t wake_id, const char *reason);
/* AcknowledgeWake: -ENOENT if the wake holds nothing (answered or timed out). */
int hold_acknowledge_wake(Manager *m, uint64_t wake_id, bool accepted, const char *why);
void holds_free(Manager *m);
bool hold_text_valid(const char *s);

/* powerwake-power.c */
void power_update(Manager *m);
void power_done(Manager *m);

/* powerwake-wake.c */
int wakes_setup(Manager *m);
/* Arm the timer (and the RTC); from the first call on, due wakes fire. */
void wakes_activate(Manager *m);
void wakes_done(Manager *m);
int wake_schedule(Manager *m, uint64_t when_usec, const char *reason, uint64_t *ret_id);
int wake_cancel(Manager *m, uint64_t id);
int wake_request(Manager *m, const char *reason, uint64_t *ret_id);
/* WakeAlarm= changed: move the timer to the other clock. */
void wakes_reconfigure(Manager *m);

/* powerwake-bus.c */
int bus_setup(Manager *m);
void bus_emit_woken(Manager *m, uint64_t id, const char *reason);
void bus_emit_powering_down(Manager *m);
