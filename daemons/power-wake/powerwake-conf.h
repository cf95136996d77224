/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * power-wake.conf, parsed: libpowerwake_conf (meson dependency
 * libpowerwake_conf_dep). The configuration parser of tollgate-power-wake
 * and nothing else (no D-Bus, no sockets), so that other programs read the
 * same vehicle layout the daemon reads: the vehicle simulator
 * (tools/vehicle-sim) encodes its CAN frames with it.
 *
 *   PowerWakeConfig c;
 *   TgConfError err = {};
 *   r = powerwake_config_load("/etc/tollgate/power-wake.conf", &c, &err);
 *   if (r < 0)   -EBADMSG: rejected, err.text names file:line: [Section] Key=value: reason
 *                -ENOMEM
 *   for (PowerWakeSignalId i = 0; i < _PW_SIGNAL_MAX; i++) {
 *           const PowerWakeSignal *s = &c.signals[i];
 *           const PowerWakeSource *src = powerwake_signal_source(&c, s);
 *           if (!s->configured) continue;          no [Signal NAME] section
 *           src->type: PW_SOURCE_CAN (src->bus: "can0" or "unix:/path"),
 *                      PW_SOURCE_FILE (src->path), PW_SOURCE_DBUS
 *           s->can: the TgCanSignal (lib/tg-can.h): frame_id (with
 *                   CAN_EFF_FLAG for Extended=yes), start bit, length, ...
 *   }
 *   powerwake_signal_encode(&c.signals[PW_SIGNAL_IGNITION], "on", 0, &frame);
 *   powerwake_signal_encode(&c.signals[PW_SIGNAL_SPEED], NULL, 50.0, &frame);
 *   powerwake_command_decode(&c.commands[PW_COMMAND_HIGH_VOLTAGE], &rx) → "on", "off" or NULL
 *   powerwake_config_done(&c);
 *
 * Link: dependency libpowerwake_conf_dep (daemons/power-wake/meson.build;
 * it brings lib/'s core, libtollgate_can and libm).
 *
 * The file (syntax and policy of lib/tg-conf.h: main file, then
 * PATH.d/NAME.conf; anything unknown or invalid rejects the whole load):
 *
 *   [PowerWake]          GracePeriod=, PowerDownAction=, PowerDownCommand=,
 *                        WakeHoldTimeout=, WakeAlarm=, RTCWakeAlarm=,
 *                        StateDirectory=
 *   [Source NAME]        Type=can|file|dbus, Bus=, Bitrate=, RestartMs=, Path=
 *   [Signal NAME]        NAME: Ignition, Gear, Speed, BatteryVoltage, HighVoltage.
 *                        Source=, FrameId=, Extended=, StartBit=, Length=,
 *                        ByteOrder=, Signed=, Scale=, Offset=, Values=
 *   [Command NAME]       NAME: HighVoltage. Source=, FrameId=, Extended=,
 *                        StartBit=, Length=, ByteOrder=, FrameLength=,
 *                        Values=, Repeat=
 *
 * Every layout key of a signal or command defaults to the reference vehicle
 * (docs/power-wake.md), so "[Signal Speed] Source=body" alone is the
 * reference Speed signal. Only configured signals exist: a signal without a
 * section stays unknown. What a load accepted is consistent: every
 * configured signal and command names an existing source, every CAN layout
 * fits a classic 8-byte frame, every raw value of Values= fits its field,
 * and the command's source is a CAN source. Keys that do not apply to the
 * source's type (Bus= of a file source, FrameId= of a signal from a file)
 * are ignored, so a drop-in can change a source's Type= alone.
 */

#include <stdbool.h>
#include <stdint.h>

#include "tg-can.h"
#include "tg-conf.h"

typedef enum PowerWakeSourceType {
        PW_SOURCE_CAN,  /* SocketCAN interface or tollgate-canhub */
        PW_SOURCE_FILE, /* a GPIO value or any file holding a number */
        PW_SOURCE_DBUS, /* SetVehicleState() */
        _PW_SOURCE_TYPE_MAX,
        _PW_SOURCE_TYPE_INVALID = -1,
} PowerWakeSourceType;

typedef enum PowerDownAction {
        PW_POWER_DOWN_POWEROFF, /* org.freedesktop.login1.Manager.PowerOff(false) */
        PW_POWER_DOWN_EXEC,     /* PowerDownCommand= */
        PW_POWER_DOWN_NONE,     /* a journal entry only */
        _PW_POWER_DOWN_MAX,
} PowerDownAction;

typedef enum PowerWakeSignalId {
        PW_SIGNAL_IGNITION,        /* off, acc, on */
        PW_SIGNAL_GEAR,            /* P, R, N, D */
        PW_SIGNAL_SPEED,           /* km/h */
        PW_SIGNAL_BATTERY_VOLTAGE, /* V */
        PW_SIGNAL_HIGH_VOLTAGE,    /* off, precharge, on, fault */
        _PW_SIGNAL_MAX,
        _PW_SIGNAL_INVALID = -1,
} PowerWakeSignalId;

typedef enum PowerWakeCommandId {
        PW_COMMAND_HIGH_VOLTAGE, /* off, on */
        _PW_COMMAND_MAX,
        _PW_COMMAND_INVALID = -1,
} PowerWakeCommandId;

#define PW_SOURCES_MAX 16
#define PW_VALUES_MAX 16
#define PW_NAME_MAX 64      /* a [Source NAME] */
#define PW_FRAME_LEN 8      /* classic CAN: every layout must fit 8 bytes */

/* Where a key was set, for the errors of checks made after the whole load. */
typedef struct PowerWakeConfLocation {
        const char *file; /* one of PowerWakeConfig.files; NULL: not set */
        unsigned line;
} PowerWakeConfLocation;

/* One entry of Values=: a raw value of the field and the state it means.
 * state indexes powerwake_signal_states() / powerwake_command_states(). */
typedef struct PowerWakeValue {
        int64_t raw;
        unsigned state;
} PowerWakeValue;

typedef struct PowerWakeSource {
        char *name;
        PowerWakeSourceType type; /* _PW_SOURCE_TYPE_INVALID only while loading */
        char *bus;                /* can: "can0" or "unix:/path" */
        uint32_t bitrate;         /* can, SocketCAN: bit/s; 0 = leave the interface as it is */
        uint32_t restart_ms;      /* can, SocketCAN: automatic restart after bus-off */
        char *path;               /* file */
        PowerWakeConfLocation where; /* the section header */
} PowerWakeSource;

/* Keys whose location is remembered (the ones cross-checks blame). */
enum {
        PW_KEY_SOURCE,
        PW_KEY_FRAME_ID,
        PW_KEY_START_BIT,
        PW_KEY_LENGTH,
        PW_KEY_SIGNED,
        PW_KEY_VALUES,
        PW_KEY_FRAME_LENGTH,
        _PW_KEY_MAX,
};

typedef struct PowerWakeSignal {
        PowerWakeSignalId id;
        bool configured;      /* a [Signal NAME] section exists */
        char *source_name;
        int source;           /* index into PowerWakeConfig.sources; -1 until resolved */
        bool extended;        /* Extended=: can.frame_id carries CAN_EFF_FLAG */
        TgCanSignal can;      /* the CAN layout; scale and offset also apply to files */
        PowerWakeValue values[PW_VALUES_MAX]; /* enum signals only */
        size_t n_values;
        PowerWakeConfLocation where;          /* the section header */
        PowerWakeConfLocation key_where[_PW_KEY_MAX];
} PowerWakeSignal;

typedef struct PowerWakeCommand {
        PowerWakeCommandId id;
        bool configured;
        char *source_name;
        int source;
        bool extended;
        TgCanSignal can;      /* scale 1, offset 0: the frame carries the raw value */
        unsigned frame_len;   /* FrameLength=: the DLC of the frame sent, 1…8 */
        PowerWakeValue values[PW_VALUES_MAX];
        size_t n_values;
        unsigned repeat;      /* Repeat=: sent this many times, PW_COMMAND_REPEAT_USEC apart */
        PowerWakeConfLocation where;
        PowerWakeConfLocation key_where[_PW_KEY_MAX];
} PowerWakeCommand;

#define PW_COMMAND_REPEAT_USEC (20 * USEC_PER_MSEC)

typedef struct PowerWakeConfig {
        /* [PowerWake] */
        uint64_t grace_period_usec;
        PowerDownAction power_down_action;
        PowerWakeConfLocation power_down_action_where;
        char **power_down_command;   /* argv, NULL-terminated; NULL when not set */
        uint64_t wake_hold_timeout_usec;
        bool wake_alarm;
        char *rtc_wake_alarm;        /* NULL: do not program an RTC */
        char *state_dir;             /* never NULL after a load */

        PowerWakeSource *sources;
        size_t n_sources;
        PowerWakeSignal signals[_PW_SIGNAL_MAX];
        PowerWakeCommand commands[_PW_COMMAND_MAX];

        /* The names of the files read, for PowerWakeConfLocation. */
        char **files;
        size_t n_files;
        bool rtc_set;                /* RTCWakeAlarm= was assigned (even empty) */
} PowerWakeConfig;

/* Load path and path.d/ (a missing main file is fine: no sources, no
 * signals). On success *ret is filled (free with powerwake_config_done());
 * on failure nothing needs freeing: -EBADMSG with err->text
 * "FILE:LINE: [Section] Key=value: reason" (or "FILE:LINE: [Signal X]: reason"
 * for a section), or -ENOMEM. */
int powerwake_config_load(const char *path, PowerWakeConfig *ret, TgConfError *err);
void powerwake_config_done(PowerWakeConfig *c);

/* Names: "can", "file", "dbus"; "poweroff", "exec", "none"; "Ignition",
 * "Gear", "Speed", "BatteryVoltage", "HighVoltage"; "HighVoltage". The
 * from_string functions return the _INVALID value for unknown names. */
const char *powerwake_source_type_to_string(PowerWakeSourceType t);
PowerWakeSourceType powerwake_source_type_from_string(const char *s);
const char *power_down_action_to_string(PowerDownAction a);
const char *powerwake_signal_to_string(PowerWakeSignalId id);
PowerWakeSignalId powerwake_signal_from_string(const char *s);
const char *powerwake_command_to_string(PowerWakeCommandId id);

/* The states of an enum signal ("off", "acc", "on" for Ignition), NULL
 * terminated; NULL for the numeric signals (Speed, BatteryVoltage). */
const char *const *powerwake_signal_states(PowerWakeSignalId id);
const char *const *powerwake_command_states(PowerWakeCommandId id);
/* The index of the state called name in powerwake_signal_states(id); -1
 * when there is none (or id is a numeric signal). */
int powerwake_signal_state_index(PowerWakeSignalId id, const char *name);
/* The name of state index state of id; "unknown" for -1 (not known yet),
 * an index out of range, or a numeric signal. */
const char *powerwake_signal_state_name(PowerWakeSignalId id, int state);
static inline bool powerwake_signal_is_enum(PowerWakeSignalId id) {
        return powerwake_signal_states(id) != NULL;
}

/* The source a signal or command reads from or sends to (NULL if not configured). */
const PowerWakeSource *powerwake_signal_source(const PowerWakeConfig *c, const PowerWakeSignal *s);
const PowerWakeSource *powerwake_command_source(const PowerWakeConfig *c, const PowerWakeCommand *cmd);
const PowerWakeSource *powerwake_config_find_source(const PowerWakeConfig *c, const char *name);

/* Values= lookups: the state name a raw value means (NULL if it is not in
 * the map), and the raw value of a state (-ENOENT if no raw value maps to it). */
const char *powerwake_signal_state(const PowerWakeSignal *s, int64_t raw);
int powerwake_signal_raw(const PowerWakeSignal *s, const char *state, int64_t *ret);
const char *powerwake_command_state(const PowerWakeCommand *cmd, int64_t raw);
int powerwake_command_raw(const PowerWakeCommand *cmd, const char *state, int64_t *ret);

/* A signal's reading of one value: for enum signals raw and state (NULL
 * when the raw value is not in Values=), for numeric ones raw and value
 * (raw * Scale + Offset). */
typedef struct PowerWakeReading {
        int64_t raw;
        double value;
        const char *state;
} PowerWakeReading;

/* Decode s from frame f (which must carry s's frame id; the caller matches
 * ids): 0, or -EBADMSG when f is too short for the signal. */
int powerwake_signal_decode(const PowerWakeSignal *s, const TgCanFrame *f, PowerWakeReading *ret);
/* Read the text of a file source ("1\n", " 12.5 "): an integer for enum
 * signals, an integer or decimal number for numeric ones. -EINVAL for
 * anything else (empty, garbage, out of range). */
int powerwake_signal_parse_text(const PowerWakeSignal *s, const char *text, PowerWakeReading *ret);
/* Put a state (enum signals) or a physical value (numeric signals; state
 * NULL) into f's data at s's layout. f->id and f->len are not touched
 * beyond what tg_can_signal_encode() needs: set them first (len 8).
 * -ENOENT for a state without raw value, -EINVAL otherwise. */
int powerwake_signal_encode(const PowerWakeSignal *s, const char *state, double value, TgCanFrame *f);
/* The whole frame of a command for state ("on", "off"): id, len, data.
 * -ENOENT for a state without raw value in Values=. */
int powerwake_command_frame(const PowerWakeCommand *cmd, const char *state, TgCanFrame *ret);
/* The other way, for the receiver (a simulator playing the battery
 * management): the state a command frame asks for; NULL if f is not this
 * command (other id, too short) or its raw value is not in Values=. */
const char *powerwake_command_decode(const PowerWakeCommand *cmd, const TgCanFrame *f);
