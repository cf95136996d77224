/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * tollgate-vehicle-sim: plays a car's ignition, gear, speed, 12 V battery
 * and high-voltage contactors over the sources a power-wake.conf names,
 * read with power-wake's own parser (libpowerwake_conf), and acts as the
 * battery management that answers [Command HighVoltage]. See
 * docs/vehicle-sim.md.
 *
 *   vehicle-sim.c       options, the state, bus sleep, CAN/file/D-Bus playback, the BMS
 *   vehicle-control.c   the control API: plain HTTP on loopback, in the same sd-event loop
 *
 * One thread: the control API changes the state and the frames leave from
 * the handler, so that a POST /state that returned has put its frames on
 * the bus.
 */

#include <stdio.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "powerwake-conf.h"
#include "tg-can.h"
#include "tg-log.h"

#define SIM_FRAMES_MAX 64
#define SIM_FILES_MAX PW_SOURCES_MAX
#define SIM_BUSES_MAX PW_SOURCES_MAX
#define SIM_VALUE_MAX 1000.0 /* speed (km/h) and battery (V) are 0…1000 */

typedef struct Sim Sim;
typedef struct Control Control;

/* The car as the simulator plays it. Enum fields index powerwake_signal_states(). */
typedef struct VehicleState {
        int ignition; /* off, acc, on */
        int gear;     /* P, R, N, D */
        double speed; /* km/h */
        double battery; /* V */
        int hv;       /* off, precharge, on, fault */
} VehicleState;

/* A partial update (POST /state, --state=). */
typedef struct VehicleUpdate {
        bool has_ignition, has_gear, has_speed, has_battery, has_hv;
        VehicleState v;
} VehicleUpdate;

typedef struct SimBus {
        Sim *sim;
        const char *spec; /* the config's Bus= */
        TgCanBus *can;
        sd_event_source *io;
        sd_event_source *retry;
        bool lost;
} SimBus;

typedef struct SimFrame {
        unsigned bus;  /* index into Sim.buses */
        uint32_t id;   /* with CAN_EFF_FLAG for 29-bit ids */
} SimFrame;

typedef struct SimFile {
        const char *path;
        PowerWakeSignalId signal;
        char last[64]; /* what was written last ("" = nothing yet) */
} SimFile;

typedef struct SimCounters {
        uint64_t frames_sent;
        uint64_t frames_dropped;  /* the bus was full (-EAGAIN) or gone */
        uint64_t frames_received; /* valid frames from other members */
        uint64_t bad_frames;      /* datagrams that are not frames */
        uint64_t hv_commands;     /* [Command HighVoltage] frames understood */
        uint64_t hv_commands_ignored; /* unknown raw value, or the contactors are in fault */
        uint64_t cycles;          /* 10 Hz periods played */
        uint64_t sleeps, wakes;   /* bus sleep transitions */
        uint64_t bus_connects, bus_losses;
        uint64_t file_writes, file_errors;
        uint64_t dbus_calls, dbus_errors;
        uint64_t control_requests;
} SimCounters;

struct Sim {
        sd_event *event;
        const char *config_path;
        PowerWakeConfig config;
        uint64_t bus_sleep_usec; /* USEC_INFINITY: never sleeps */
        uint64_t period_usec;
        uint64_t precharge_usec;

        VehicleState state;
        bool awake;
        bool running; /* set up: changes go out */

        SimBus buses[SIM_BUSES_MAX];
        size_t n_buses;
        SimFrame frames[SIM_FRAMES_MAX];
        size_t n_frames;
        SimFile files[SIM_FILES_MAX];
        size_t n_files;
        int command_bus; /* the bus of [Command HighVoltage], -1 none */

        sd_event_source *cycle_timer;
        sd_event_source *sleep_timer;
        sd_event_source *hv_timer;

        sd_bus *bus; /* only with a Type=dbus source */
        bool dbus_wanted;
        sd_bus_slot *owner_match;

        Control *control;
        SimCounters counters;
        TgRateLimit log_limit;
};

/* vehicle-sim.c: what the control API calls. */
/* Validate and apply an update (a change wakes the bus). Returns 0, or
 * -EINVAL with a reason in reason[] (nothing applied). */
int sim_update(Sim *s, const VehicleUpdate *u, char *reason, size_t reason_size);
/* Force bus sleep now (the car goes quiet until a change, a frame or /wake). */
void sim_sleep(Sim *s);
/* Wake the bus (network management): it sleeps again after --bus-sleep= if the ignition is off. */
void sim_wake(Sim *s);
void sim_state_json(Sim *s, FILE *f);
void sim_stats_json(Sim *s, FILE *f);

/* Parse a flat JSON object of the POST /state form into *u. -EINVAL with a
 * reason for anything else. */
int vehicle_update_parse(const char *json, size_t size, VehicleUpdate *u, char *reason, size_t reason_size);

/* vehicle-control.c */
/* Listen on "ADDR:PORT" (IPv4 or [IPv6], loopback only; port 0 picks one). */
int control_new(Sim *s, const char *listen, Control **ret);
Control *control_free(Control *c);
const char *control_address(const Control *c);
