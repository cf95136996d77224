/* SPDX-License-Identifier: MIT */
#include <linux/can.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include "powerwake-conf.h"
#include "tg-config.h"
#include "tg-parse.h"

/* ---- Names ---------------------------------------------------------------- */

static const char *const source_type_names[_PW_SOURCE_TYPE_MAX] = {
        [PW_SOURCE_CAN] = "can",
        [PW_SOURCE_FILE] = "file",
        [PW_SOURCE_DBUS] = "dbus",
};

static const char *const action_names[_PW_POWER_DOWN_MAX] = {
        [PW_POWER_DOWN_POWEROFF] = "poweroff",
        [PW_POWER_DOWN_EXEC] = "exec",
        [PW_POWER_DOWN_NONE] = "none",
};

static const char *const signal_names[_PW_SIGNAL_MAX] = {
        [PW_SIGNAL_IGNITION] = "Ignition",
        [PW_SIGNAL_GEAR] = "Gear",
        [PW_SIGNAL_SPEED] = "Speed",
        [PW_SIGNAL_BATTERY_VOLTAGE] = "BatteryVoltage",
        [PW_SIGNAL_HIGH_VOLTAGE] = "HighVoltage",
};

static const char *const command_names[_PW_COMMAND_MAX] = {
        [PW_COMMAND_HIGH_VOLTAGE] = "HighVoltage",
};

static const char *const ignition_states[] = { "off", "acc", "on", NULL };
static const char *const gear_states[] = { "P", "R", "N", "D", NULL };
static const char *const hv_states[] = { "off", "precharge", "on", "fault", NULL };
static const char *const hv_command_states[] = { "off", "on", NULL };

const char *powerwake_source_type_to_string(PowerWakeSourceType t) {
        return t >= 0 && t < _PW_SOURCE_TYPE_MAX ? source_type_names[t] : NULL;
}

PowerWakeSourceType powerwake_source_type_from_string(const char *s) {
        for (int i = 0; i < _PW_SOURCE_TYPE_MAX; i++)
                if (streq(s, source_type_names[i]))
                        return (PowerWakeSourceType) i;
        return _PW_SOURCE_TYPE_INVALID;
}

const char *power_down_action_to_string(PowerDownAction a) {
        return a >= 0 && a < _PW_POWER_DOWN_MAX ? action_names[a] : NULL;
}

const char *powerwake_signal_to_string(PowerWakeSignalId id) {
        return id >= 0 && id < _PW_SIGNAL_MAX ? signal_names[id] : NULL;
}

PowerWakeSignalId powerwake_signal_from_string(const char *s) {
        for (int i = 0; i < _PW_SIGNAL_MAX; i++)
                if (streq(s, signal_names[i]))
                        return (PowerWakeSignalId) i;
        return _PW_SIGNAL_INVALID;
}

const char *powerwake_command_to_string(PowerWakeCommandId id) {
        return id >= 0 && id < _PW_COMMAND_MAX ? command_names[id] : NULL;
}

static PowerWakeCommandId powerwake_command_from_string(const char *s) {
        for (int i = 0; i < _PW_COMMAND_MAX; i++)
                if (streq(s, command_names[i]))
                        return (PowerWakeCommandId) i;
        return _PW_COMMAND_INVALID;
}

int powerwake_signal_state_index(PowerWakeSignalId id, const char *name) {
        const char *const *states = powerwake_signal_states(id);

        for (int i = 0; name && states && states[i]; i++)
                if (streq(states[i], name))
                        return i;
        return -1;
}

const char *powerwake_signal_state_name(PowerWakeSignalId id, int state) {
        const char *const *states = powerwake_signal_states(id);

        for (int i = 0; state >= 0 && states && states[i]; i++)
                if (i == state)
                        return states[i];
        return "unknown";
}

const char *const *powerwake_signal_states(PowerWakeSignalId id) {
        switch (id) {
        case PW_SIGNAL_IGNITION:
                return ignition_states;
        case PW_SIGNAL_GEAR:
                return gear_states;
        case PW_SIGNAL_HIGH_VOLTAGE:
                return hv_states;
        default:
                return NULL;
        }
}

const char *const *powerwake_command_states(PowerWakeCommandId id) {
        return id == PW_COMMAND_HIGH_VOLTAGE ? hv_command_states : NULL;
}

/* ---- The reference vehicle (docs/power-wake.md) ---------------------------- */

typedef struct SignalDefault {
        uint32_t frame_id;
        unsigned start_bit, length;
        double scale;
        const char *values; /* in the syntax of Values= */
} SignalDefault;

static const SignalDefault signal_defaults[_PW_SIGNAL_MAX] = {
        [PW_SIGNAL_IGNITION] = { 0x3C0, 0, 2, 1, "0:off 1:acc 2:on" },
        [PW_SIGNAL_GEAR] = { 0x3C1, 0, 3, 1, "0:P 1:R 2:N 3:D" },
        [PW_SIGNAL_SPEED] = { 0x3C1, 8, 16, 0.01, NULL },
        [PW_SIGNAL_BATTERY_VOLTAGE] = { 0x3C2, 0, 16, 0.001, NULL },
        [PW_SIGNAL_HIGH_VOLTAGE] = { 0x3C3, 0, 2, 1, "0:off 1:precharge 2:on 3:fault" },
};

static const SignalDefault command_defaults[_PW_COMMAND_MAX] = {
        [PW_COMMAND_HIGH_VOLTAGE] = { 0x3D0, 0, 1, 1, "0:off 1:on" },
};

/* ---- Loading state ----------------------------------------------------------- */

/* The configuration being loaded, for the value parsers that remember where
 * a key was set (tg_conf gives them only the field). Loads are not nested. */
static __thread PowerWakeConfig *loading;

static int intern_location(PowerWakeConfLocation *ret) {
        const char *file;
        unsigned line;
        char **files;

        tg_conf_location(&file, &line);
        if (!file || !loading) {
                *ret = (PowerWakeConfLocation) {};
                return 0;
        }
        if (loading->n_files == 0 || !streq(loading->files[loading->n_files - 1], file)) {
                files = realloc(loading->files, (loading->n_files + 1) * sizeof *files);
                if (!files)
                        return -ENOMEM;
                loading->files = files;
                files[loading->n_files] = strdup(file);
                if (!files[loading->n_files])
                        return -ENOMEM;
                loading->n_files++;
        }
        *ret = (PowerWakeConfLocation) { .file = loading->files[loading->n_files - 1], .line = line };
        return 0;
}

/* A parser that also remembers where its key was set: extra is a KeyInfo. */
typedef struct KeyInfo {
        TgConfParser parse;
        const void *extra;
        ptrdiff_t where_delta; /* from the field to its PowerWakeConfLocation */
} KeyInfo;

static int parse_located(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        const KeyInfo *k = extra;
        int r;

        r = k->parse(value, field, k->extra, reason, reason_size);
        if (r < 0)
                return r;
        return intern_location((PowerWakeConfLocation *) ((uint8_t *) field + k->where_delta));
}

/* ---- Value parsers --------------------------------------------------------- */

static int parse_path(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        if (*value && *value != '/') {
                snprintf(reason, reason_size, "expected an absolute path");
                return -EINVAL;
        }
        return tg_conf_parse_string(value, field, extra, reason, reason_size);
}

static int parse_rtc(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        PowerWakeConfig *c = (PowerWakeConfig *) ((uint8_t *) field - offsetof(PowerWakeConfig, rtc_wake_alarm));
        int r;

        r = parse_path(value, field, extra, reason, reason_size);
        if (r < 0)
                return r;
        c->rtc_set = true; /* empty: no RTC (not the default) */
        return 0;
}

static int parse_action(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        for (int i = 0; i < _PW_POWER_DOWN_MAX; i++)
                if (streq(value, action_names[i])) {
                        *(PowerDownAction *) field = (PowerDownAction) i;
                        return 0;
                }
        snprintf(reason, reason_size, "expected poweroff, exec or none");
        return -EINVAL;
}

static void strv_free(char **l) {
        for (char **p = l; p && *p; p++)
                free(*p);
        free(l);
}

#define PW_COMMAND_ARGS_MAX 32

/* An absolute path and arguments separated by spaces; no shell, no quoting. */
static int parse_command(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        char ***argv = field, **l;
        size_t n = 0;

        if (*value == '\0') {
                strv_free(*argv);
                *argv = NULL;
                return 0;
        }
        if (*value != '/') {
                snprintf(reason, reason_size, "expected an absolute path and arguments (no shell)");
                return -EINVAL;
        }
        l = calloc(PW_COMMAND_ARGS_MAX + 1, sizeof *l);
        if (!l)
                return -ENOMEM;
        for (const char *p = value; *p;) {
                size_t len;

                p += strspn(p, " \t");
                if (*p == '\0')
                        break;
                if (n >= PW_COMMAND_ARGS_MAX) {
                        strv_free(l);
                        snprintf(reason, reason_size, "at most %d arguments", PW_COMMAND_ARGS_MAX);
                        return -EINVAL;
                }
                len = strcspn(p, " \t");
                l[n] = strndup(p, len);
                if (!l[n]) {
                        strv_free(l);
                        return -ENOMEM;
                }
                n++;
                p += len;
        }
        strv_free(*argv);
        *argv = l;
        return 0;
}

static int parse_source_type(const char *value, void *field, const void *extra, char *reason,
                             size_t reason_size) {
        PowerWakeSourceType t = powerwake_source_type_from_string(value);

        if (t < 0) {
                snprintf(reason, reason_size, "unknown source type, expected can, file or dbus");
                return -EINVAL;
        }
        *(PowerWakeSourceType *) field = t;
        return 0;
}

/* "can0" (a SocketCAN interface name) or "unix:/path" (tollgate-canhub). */
static int parse_bus(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        if (startswith(value, "unix:")) {
                if (value[5] != '/') {
                        snprintf(reason, reason_size, "expected unix: and an absolute socket path");
                        return -EINVAL;
                }
        } else if (*value) {
                size_t n = strlen(value);

                if (n >= 16 || streq(value, ".") || streq(value, "..") || strpbrk(value, "/: \t")) {
                        snprintf(reason, reason_size,
                                 "expected a CAN interface name (1-15 characters, e.g. can0) or unix:/path of a hub");
                        return -EINVAL;
                }
        }
        return tg_conf_parse_string(value, field, extra, reason, reason_size);
}

static int parse_source_name(const char *value, void *field, const void *extra, char *reason,
                             size_t reason_size) {
        size_t n = strlen(value);

        if (n > PW_NAME_MAX) {
                snprintf(reason, reason_size, "a source name has at most %d characters", PW_NAME_MAX);
                return -EINVAL;
        }
        for (const char *p = value; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      strchr("_-.:", *p))) {
                        snprintf(reason, reason_size, "expected the NAME of a [Source NAME] section");
                        return -EINVAL;
                }
        return tg_conf_parse_string(value, field, extra, reason, reason_size);
}

/* A 64-bit integer, decimal or 0x hexadecimal, with an optional '-'. */
static int parse_int64(const char *s, int64_t *ret) {
        bool negative = false;
        uint64_t v = 0;
        int base = 10;

        if (*s == '-') {
                negative = true;
                s++;
        }
        if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
                base = 16;
                s += 2;
        }
        if (*s == '\0')
                return -EINVAL;
        for (; *s; s++) {
                unsigned d;

                if (*s >= '0' && *s <= '9')
                        d = (unsigned) (*s - '0');
                else if (base == 16 && *s >= 'a' && *s <= 'f')
                        d = (unsigned) (*s - 'a' + 10);
                else if (base == 16 && *s >= 'A' && *s <= 'F')
                        d = (unsigned) (*s - 'A' + 10);
                else
                        return -EINVAL;
                if (v > (UINT64_MAX - d) / (unsigned) base)
                        return -ERANGE;
                v = v * (unsigned) base + d;
        }
        if (negative) {
                if (v > (uint64_t) INT64_MAX + 1)
                        return -ERANGE;
                *ret = (int64_t) (0 - v);
        } else {
                if (v > INT64_MAX)
                        return -ERANGE;
                *ret = (int64_t) v;
        }
        return 0;
}

static int parse_frame_id(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        int64_t v;

        if (parse_int64(value, &v) < 0 || v < 0 || v > CAN_EFF_MASK) {
                snprintf(reason, reason_size,
                         "expected a CAN id, 0x000-0x7FF (or up to 0x1FFFFFFF with Extended=yes)");
                return -EINVAL;
        }
        *(uint32_t *) field = (uint32_t) v;
        return 0;
}

static int parse_byte_order(const char *value, void *field, const void *extra, char *reason,
                            size_t reason_size) {
        if (streq(value, "little") || streq(value, "intel"))
                *(TgCanByteOrder *) field = TG_CAN_LITTLE_ENDIAN;
        else if (streq(value, "big") || streq(value, "motorola"))
                *(TgCanByteOrder *) field = TG_CAN_BIG_ENDIAN;
        else {
                snprintf(reason, reason_size, "expected little (Intel) or big (Motorola)");
                return -EINVAL;
        }
        return 0;
}

static int parse_double(const char *value, double *ret) {
        char *end;
        double d;

        if (*value == '\0')
                return -EINVAL;
        errno = 0;
        d = strtod(value, &end);
        if (*end != '\0' || errno != 0 || !isfinite(d))
                return -EINVAL;
        *ret = d;
        return 0;
}

static int parse_scale(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        double d;

        if (parse_double(value, &d) < 0 || d == 0) {
                snprintf(reason, reason_size, "expected a non-zero number such as 0.01");
                return -EINVAL;
        }
        *(double *) field = d;
        return 0;
}

static int parse_offset(const char *value, void *field, const void *extra, char *reason, size_t reason_size) {
        if (parse_double(value, field) < 0) {
                snprintf(reason, reason_size, "expected a number such as -40 or 0.5");
                return -EINVAL;
        }
        return 0;
}

/* "0:off 1:acc 2:on": raw values and the states they mean. */
static int parse_value_map(const char *value, const char *const *states, const char *what, PowerWakeValue *values,
                           size_t *n_values, char *reason, size_t reason_size) {
        PowerWakeValue map[PW_VALUES_MAX];
        _cleanup_free_ char *copy = NULL;
        size_t n = 0;
        char *save = NULL;

        if (!states) {
                snprintf(reason, reason_size, "%s is a number; Values= is for Ignition, Gear and HighVoltage", what);
                return -EINVAL;
        }
        copy = strdup(value);
        if (!copy)
                return -ENOMEM;
        for (char *tok = strtok_r(copy, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
                char *colon = strchr(tok, ':');
                int64_t raw;
                int state = -1;

                if (!colon) {
                        snprintf(reason, reason_size, "expected RAW:STATE pairs such as \"0:off 1:on\", got \"%.32s\"",
                                 tok);
                        return -EINVAL;
                }
                *colon = '\0';
                if (parse_int64(tok, &raw) < 0) {
                        snprintf(reason, reason_size, "\"%.32s\" is not an integer raw value", tok);
                        return -EINVAL;
                }
                for (int i = 0; states[i]; i++)
                        if (streq(states[i], colon + 1))
                                state = i;
                if (state < 0) {
                        char list[128] = "";
                        for (int i = 0; states[i]; i++)
                                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                                         states[i]);
                        snprintf(reason, reason_size, "\"%.32s\" is not a state of %s (%s)", colon + 1, what, list);
                        return -EINVAL;
                }
                for (size_t i = 0; i < n; i++)
                        if (map[i].raw == raw) {
                                snprintf(reason, reason_size, "raw value %" PRIi64 " is mapped twice", raw);
                                return -EINVAL;
                        }
                if (n >= PW_VALUES_MAX) {
                        snprintf(reason, reason_size, "at most %d values", PW_VALUES_MAX);
                        return -EINVAL;
                }
                map[n++] = (PowerWakeValue) { .raw = raw, .state = (unsigned) state };
        }
        if (n == 0) {
                snprintf(reason, reason_size, "expected RAW:STATE pairs such as \"0:off 1:on\"");
                return -EINVAL;
        }
        memcpy(values, map, n * sizeof *map);
        *n_values = n;
        return 0;
}

static int signal_reset_values(PowerWakeSignal *s) {
        char reason[8];

        s->n_values = 0;
        if (!signal_defaults[s->id].values)
                return 0;
        return parse_value_map(signal_defaults[s->id].values, powerwake_signal_states(s->id), "", s->values,
                               &s->n_values, reason, sizeof reason);
}

static int command_reset_values(PowerWakeCommand *cmd) {
        char reason[8];

        return parse_value_map(command_defaults[cmd->id].values, powerwake_command_states(cmd->id), "",
                               cmd->values, &cmd->n_values, reason, sizeof reason);
}

static int parse_signal_values(const char *value, void *field, const void *extra, char *reason,
                               size_t reason_size) {
        PowerWakeSignal *s = (PowerWakeSignal *) ((uint8_t *) field - offsetof(PowerWakeSignal, values));

        if (*value == '\0')
                return signal_reset_values(s);
        return parse_value_map(value, powerwake_signal_states(s->id), signal_names[s->id], s->values, &s->n_values,
                               reason, reason_size);
}

static int parse_command_values(const char *value, void *field, const void *extra, char *reason,
                                size_t reason_size) {
        PowerWakeCommand *cmd = (PowerWakeCommand *) ((uint8_t *) field - offsetof(PowerWakeCommand, values));

        if (*value == '\0')
                return command_reset_values(cmd);
        return parse_value_map(value, powerwake_command_states(cmd->id), command_names[cmd->id], cmd->values,
                               &cmd->n_values, reason, reason_size);
}

/* ---- The table ---------------------------------------------------------------- */

static const TgConfRange range_grace = { .min = 0, .max = 86400 * USEC_PER_SEC };
static const TgConfRange range_wake_hold = { .min = USEC_PER_SEC, .max = 86400 * USEC_PER_SEC };
static const TgConfRange range_bitrate = { .min = 0, .max = 1000000 };
static const TgConfRange range_restart = { .min = 0, .max = 60000 };
static const TgConfRange range_start_bit = { .min = 0, .max = 8 * PW_FRAME_LEN - 1 };
static const TgConfRange range_length = { .min = 1, .max = 64 };
static const TgConfRange range_frame_len = { .min = 1, .max = PW_FRAME_LEN };
static const TgConfRange range_repeat = { .min = 1, .max = 20 };

#define DELTA(type, k, member) ((ptrdiff_t) offsetof(type, k) - (ptrdiff_t) offsetof(type, member))

#define P(key, fn, member, extra) { "PowerWake", key, fn, offsetof(PowerWakeConfig, member), extra }
#define P_AT(key, fn, member, extra, k)                                                                       \
        { "PowerWake", key, parse_located, offsetof(PowerWakeConfig, member),                                 \
          &(const KeyInfo) { fn, extra, DELTA(PowerWakeConfig, k, member) } }
#define SRC(key, fn, member, extra) { "Source", key, fn, offsetof(PowerWakeSource, member), extra }
#define SIG(key, fn, member, extra) { "Signal", key, fn, offsetof(PowerWakeSignal, member), extra }
#define SIG_AT(key, fn, member, extra, k)                                                                     \
        { "Signal", key, parse_located, offsetof(PowerWakeSignal, member),                                    \
          &(const KeyInfo) { fn, extra, DELTA(PowerWakeSignal, key_where[k], member) } }
#define CMD(key, fn, member, extra) { "Command", key, fn, offsetof(PowerWakeCommand, member), extra }
#define CMD_AT(key, fn, member, extra, k)                                                                     \
        { "Command", key, parse_located, offsetof(PowerWakeCommand, member),                                  \
          &(const KeyInfo) { fn, extra, DELTA(PowerWakeCommand, key_where[k], member) } }

static const TgConfItem config_items[] = {
        P("GracePeriod", tg_conf_parse_timespan, grace_period_usec, &range_grace),
        P_AT("PowerDownAction", parse_action, power_down_action, NULL, power_down_action_where),
        P("PowerDownCommand", parse_command, power_down_command, NULL),
        P("WakeHoldTimeout", tg_conf_parse_timespan, wake_hold_timeout_usec, &range_wake_hold),
        P("WakeAlarm", tg_conf_parse_bool, wake_alarm, NULL),
        P("RTCWakeAlarm", parse_rtc, rtc_wake_alarm, NULL),
        P("StateDirectory", parse_path, state_dir, NULL),

        SRC("Type", parse_source_type, type, NULL),
        SRC("Bus", parse_bus, bus, NULL),
        SRC("Bitrate", tg_conf_parse_unsigned, bitrate, &range_bitrate),
        SRC("RestartMs", tg_conf_parse_unsigned, restart_ms, &range_restart),
        SRC("Path", parse_path, path, NULL),

        SIG_AT("Source", parse_source_name, source_name, NULL, PW_KEY_SOURCE),
        SIG_AT("FrameId", parse_frame_id, can.frame_id, NULL, PW_KEY_FRAME_ID),
        SIG("Extended", tg_conf_parse_bool, extended, NULL),
        SIG_AT("StartBit", tg_conf_parse_unsigned, can.start_bit, &range_start_bit, PW_KEY_START_BIT),
        SIG_AT("Length", tg_conf_parse_unsigned, can.length, &range_length, PW_KEY_LENGTH),
        SIG("ByteOrder", parse_byte_order, can.byte_order, NULL),
        SIG_AT("Signed", tg_conf_parse_bool, can.is_signed, NULL, PW_KEY_SIGNED),
        SIG("Scale", parse_scale, can.scale, NULL),
        SIG("Offset", parse_offset, can.offset, NULL),
        SIG_AT("Values", parse_signal_values, values, NULL, PW_KEY_VALUES),

        CMD_AT("Source", parse_source_name, source_name, NULL, PW_KEY_SOURCE),
        CMD_AT("FrameId", parse_frame_id, can.frame_id, NULL, PW_KEY_FRAME_ID),
        CMD("Extended", tg_conf_parse_bool, extended, NULL),
        CMD_AT("StartBit", tg_conf_parse_unsigned, can.start_bit, &range_start_bit, PW_KEY_START_BIT),
        CMD_AT("Length", tg_conf_parse_unsigned, can.length, &range_length, PW_KEY_LENGTH),
        CMD("ByteOrder", parse_byte_order, can.byte_order, NULL),
        CMD_AT("FrameLength", tg_conf_parse_unsigned, frame_len, &range_frame_len, PW_KEY_FRAME_LENGTH),
        CMD_AT("Values", parse_command_values, values, NULL, PW_KEY_VALUES),
        CMD("Repeat", tg_conf_parse_unsigned, repeat, &range_repeat),
};

static void *lookup_section(void *userdata, const char *section, const char *arg, char *reason,
                            size_t reason_size) {
        PowerWakeConfig *c = userdata;
        PowerWakeSource *sources;

        if (streq(section, "Signal")) {
                PowerWakeSignalId id = powerwake_signal_from_string(arg);
                PowerWakeSignal *s;

                if (id < 0) {
                        snprintf(reason, reason_size,
                                 "unknown signal, expected Ignition, Gear, Speed, BatteryVoltage or HighVoltage");
                        return NULL;
                }
                s = &c->signals[id];
                if (!s->configured && intern_location(&s->where) < 0)
                        return NULL;
                s->configured = true;
                return s;
        }
        if (streq(section, "Command")) {
                PowerWakeCommandId id = powerwake_command_from_string(arg);
                PowerWakeCommand *cmd;

                if (id < 0) {
                        snprintf(reason, reason_size, "unknown command, expected HighVoltage");
                        return NULL;
                }
                cmd = &c->commands[id];
                if (!cmd->configured && intern_location(&cmd->where) < 0)
                        return NULL;
                cmd->configured = true;
                return cmd;
        }

        /* [Source NAME] */
        if (strlen(arg) > PW_NAME_MAX) {
                snprintf(reason, reason_size, "a source name has at most %d characters", PW_NAME_MAX);
                return NULL;
        }
        for (size_t i = 0; i < c->n_sources; i++)
                if (streq(c->sources[i].name, arg))
                        return &c->sources[i];
        if (c->n_sources >= PW_SOURCES_MAX) {
                snprintf(reason, reason_size, "too many sources (at most %d)", PW_SOURCES_MAX);
                return NULL;
        }
        sources = realloc(c->sources, (c->n_sources + 1) * sizeof *sources);
        if (!sources)
                return NULL;
        c->sources = sources;
        sources[c->n_sources] = (PowerWakeSource) {
                .name = strdup(arg),
                .type = _PW_SOURCE_TYPE_INVALID,
                .restart_ms = 100,
        };
        if (!sources[c->n_sources].name || intern_location(&sources[c->n_sources].where) < 0) {
                free(sources[c->n_sources].name);
                return NULL;
        }
        return &c->sources[c->n_sources++];
}

static const char *const arg_sections[] = { "Source", "Signal", "Command", NULL };

static const TgConfTable config_table = {
        .items = config_items,
        .n_items = ELEMENTSOF(config_items),
        .arg_sections = arg_sections,
        .lookup = lookup_section,
};

/* ---- Checks after the load ------------------------------------------------------ */

static int check_error(TgConfError *err, PowerWakeConfLocation where, PowerWakeConfLocation fallback,
                       const char *format, ...) _printf_(4, 5);
static int check_error(TgConfError *err, PowerWakeConfLocation where, PowerWakeConfLocation fallback,
                       const char *format, ...) {
        char text[400];
        va_list ap;

        if (!where.file)
                where = fallback;
        va_start(ap, format);
        vsnprintf(text, sizeof text, format, ap);
        va_end(ap);
        if (where.file)
                snprintf(err->text, sizeof err->text, "%s:%u: %s", where.file, where.line, text);
        else
                snprintf(err->text, sizeof err->text, "%s", text);
        return -EBADMSG;
}

static size_t file_index(const PowerWakeConfig *c, const char *file) {
        for (size_t i = 0; i < c->n_files; i++)
                if (c->files[i] == file)
                        return i;
        return 0;
}

/* The key set last is the one that made a combination impossible. Files are
 * interned in reading order. */
static PowerWakeConfLocation later(const PowerWakeConfig *c, PowerWakeConfLocation a, PowerWakeConfLocation b) {
        if (!a.file)
                return b;
        if (!b.file)
                return a;
        if (a.file != b.file)
                return file_index(c, a.file) > file_index(c, b.file) ? a : b;
        return a.line >= b.line ? a : b;
}

static bool raw_fits(int64_t raw, unsigned length, bool is_signed) {
        if (length >= 64)
                return is_signed || raw >= 0;
        if (is_signed)
                return raw >= -(INT64_C(1) << (length - 1)) && raw < (INT64_C(1) << (length - 1));
        return raw >= 0 && raw < (INT64_C(1) << length);
}

/* The layout of a signal or command on a CAN source. */
static int check_layout(const PowerWakeConfig *c, const char *section, const char *name, TgCanSignal *can, bool extended, unsigned frame_len,
                        const PowerWakeValue *values, size_t n_values, const PowerWakeConfLocation *key_where,
                        PowerWakeConfLocation where, TgConfError *err) {
        char reason[256] = "";

        if (!extended && can->frame_id > CAN_SFF_MASK)
                return check_error(err, key_where[PW_KEY_FRAME_ID], where,
                                   "[%s %s] FrameId=0x%X: a standard CAN id is at most 0x7FF (set Extended=yes for 29-bit ids)",
                                   section, name, can->frame_id);
        if (extended)
                can->frame_id |= CAN_EFF_FLAG;
        if (tg_can_signal_check(can, frame_len, reason, sizeof reason) < 0)
                return check_error(err, later(c, key_where[PW_KEY_START_BIT],
                                                 later(c, key_where[PW_KEY_LENGTH], key_where[PW_KEY_FRAME_LENGTH])),
                                   where, "[%s %s] StartBit=%u Length=%u: %s", section, name, can->start_bit,
                                   can->length, reason[0] ? reason : "impossible bit range");
        for (size_t i = 0; i < n_values; i++)
                if (!raw_fits(values[i].raw, can->length, can->is_signed))
                        return check_error(err, later(c, key_where[PW_KEY_VALUES],
                                                         later(c, key_where[PW_KEY_LENGTH], key_where[PW_KEY_SIGNED])),
                                           where, "[%s %s] Values=: raw value %" PRIi64 " does not fit the %s%u-bit field",
                                           section, name, values[i].raw, can->is_signed ? "signed " : "", can->length);
        return 0;
}

static int resolve_source(const PowerWakeConfig *c, const char *section, const char *name, const char *source_name,
                          const PowerWakeConfLocation *key_where, PowerWakeConfLocation where, int *ret,
                          TgConfError *err) {
        if (!source_name)
                return check_error(err, where, where, "[%s %s]: Source= is missing (the NAME of a [Source NAME])",
                                   section, name);
        for (size_t i = 0; i < c->n_sources; i++)
                if (streq(c->sources[i].name, source_name)) {
                        *ret = (int) i;
                        return 0;
                }
        return check_error(err, key_where[PW_KEY_SOURCE], where, "[%s %s] Source=%s: there is no [Source %s]",
                           section, name, source_name, source_name);
}

static int config_check(PowerWakeConfig *c, TgConfError *err) {
        int r;

        for (size_t i = 0; i < c->n_sources; i++) {
                PowerWakeSource *s = &c->sources[i];

                if (s->type < 0)
                        return check_error(err, s->where, s->where, "[Source %s]: Type= is missing (can, file or dbus)",
                                           s->name);
                if (s->type == PW_SOURCE_CAN && !s->bus)
                        return check_error(err, s->where, s->where,
                                           "[Source %s]: Type=can needs Bus= (an interface such as can0, or unix:/path)",
                                           s->name);
                if (s->type == PW_SOURCE_FILE && !s->path)
                        return check_error(err, s->where, s->where, "[Source %s]: Type=file needs Path=", s->name);
        }

        if (c->power_down_action == PW_POWER_DOWN_EXEC && !c->power_down_command)
                return check_error(err, c->power_down_action_where, c->power_down_action_where,
                                   "[PowerWake] PowerDownAction=exec: needs PowerDownCommand=");

        for (int id = 0; id < _PW_SIGNAL_MAX; id++) {
                PowerWakeSignal *s = &c->signals[id];

                if (!s->configured)
                        continue;
                r = resolve_source(c, "Signal", signal_names[id], s->source_name, s->key_where, s->where, &s->source,
                                   err);
                if (r < 0)
                        return r;
                if (c->sources[s->source].type != PW_SOURCE_CAN)
                        continue;
                r = check_layout(c, "Signal", signal_names[id], &s->can, s->extended, PW_FRAME_LEN, s->values,
                                 s->n_values, s->key_where, s->where, err);
                if (r < 0)
                        return r;
        }

        for (int id = 0; id < _PW_COMMAND_MAX; id++) {
                PowerWakeCommand *cmd = &c->commands[id];

                if (!cmd->configured)
                        continue;
                r = resolve_source(c, "Command", command_names[id], cmd->source_name, cmd->key_where, cmd->where,
                                   &cmd->source, err);
                if (r < 0)
                        return r;
                if (c->sources[cmd->source].type != PW_SOURCE_CAN)
                        return check_error(err, cmd->key_where[PW_KEY_SOURCE], cmd->where,
                                           "[Command %s] Source=%s: commands are sent on a Type=can source, not %s",
                                           command_names[id], cmd->source_name,
                                           source_type_names[c->sources[cmd->source].type]);
                r = check_layout(c, "Command", command_names[id], &cmd->can, cmd->extended, cmd->frame_len, cmd->values,
                                 cmd->n_values, cmd->key_where, cmd->where, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- Load ------------------------------------------------------------------------ */

static int config_init(PowerWakeConfig *c) {
        int r;

        *c = (PowerWakeConfig) {
                .grace_period_usec = 30 * USEC_PER_SEC,
                .power_down_action = PW_POWER_DOWN_POWEROFF,
                .wake_hold_timeout_usec = 5 * 60 * USEC_PER_SEC,
                .wake_alarm = true,
        };
        for (int id = 0; id < _PW_SIGNAL_MAX; id++) {
                PowerWakeSignal *s = &c->signals[id];
                const SignalDefault *d = &signal_defaults[id];

                *s = (PowerWakeSignal) {
                        .id = (PowerWakeSignalId) id,
                        .source = -1,
                        .can = {
                                .frame_id = d->frame_id,
                                .start_bit = d->start_bit,
                                .length = d->length,
                                .byte_order = TG_CAN_LITTLE_ENDIAN,
                                .scale = d->scale,
                        },
                };
                r = signal_reset_values(s);
                if (r < 0)
                        return r;
        }
        for (int id = 0; id < _PW_COMMAND_MAX; id++) {
                PowerWakeCommand *cmd = &c->commands[id];
                const SignalDefault *d = &command_defaults[id];

                *cmd = (PowerWakeCommand) {
                        .id = (PowerWakeCommandId) id,
                        .source = -1,
                        .can = {
                                .frame_id = d->frame_id,
                                .start_bit = d->start_bit,
                                .length = d->length,
                                .byte_order = TG_CAN_LITTLE_ENDIAN,
                                .scale = 1,
                        },
                        .frame_len = PW_FRAME_LEN,
                        .repeat = 3,
                };
                r = command_reset_values(cmd);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int set_default_string(char **field, const char *value) {
        if (*field)
                return 0;
        *field = strdup(value);
        return *field ? 0 : -ENOMEM;
}

int powerwake_config_load(const char *path, PowerWakeConfig *ret, TgConfError *err) {
        const char *statedir = getenv("STATE_DIRECTORY");
        _cleanup_free_ char *first = NULL;
        PowerWakeConfig c;
        int r;

        r = config_init(&c);
        if (r < 0)
                goto fail;
        loading = &c;
        r = tg_conf_load(path, false, &config_table, &c, err);
        loading = NULL;
        if (r < 0)
                goto fail;

        /* systemd passes several directories separated by ':'; ours is the first. */
        if (statedir && *statedir) {
                first = strndup(statedir, strcspn(statedir, ":"));
                if (!first) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        r = set_default_string(&c.state_dir, first ? first : TG_STATEDIR);
        if (r >= 0 && !c.rtc_set)
                r = set_default_string(&c.rtc_wake_alarm, "/sys/class/rtc/rtc0/wakealarm");
        if (r < 0)
                goto fail;
        r = config_check(&c, err);
        if (r < 0)
                goto fail;
        *ret = c;
        return 0;
fail:
        loading = NULL;
        powerwake_config_done(&c);
        return r == -ENOMEM ? r : -EBADMSG;
}

void powerwake_config_done(PowerWakeConfig *c) {
        strv_free(c->power_down_command);
        free(c->rtc_wake_alarm);
        free(c->state_dir);
        for (size_t i = 0; i < c->n_sources; i++) {
                free(c->sources[i].name);
                free(c->sources[i].bus);
                free(c->sources[i].path);
        }
        free(c->sources);
        for (int i = 0; i < _PW_SIGNAL_MAX; i++)
                free(c->signals[i].source_name);
        for (int i = 0; i < _PW_COMMAND_MAX; i++)
                free(c->commands[i].source_name);
        for (size_t i = 0; i < c->n_files; i++)
                free(c->files[i]);
        free(c->files);
        *c = (PowerWakeConfig) {};
}

/* ---- Lookups and codecs ----------------------------------------------------------- */

const PowerWakeSource *powerwake_config_find_source(const PowerWakeConfig *c, const char *name) {
        for (size_t i = 0; i < c->n_sources; i++)
                if (streq(c->sources[i].name, name))
                        return &c->sources[i];
        return NULL;
}

const PowerWakeSource *powerwake_signal_source(const PowerWakeConfig *c, const PowerWakeSignal *s) {
        return s->configured && s->source >= 0 && (size_t) s->source < c->n_sources ? &c->sources[s->source] : NULL;
}

const PowerWakeSource *powerwake_command_source(const PowerWakeConfig *c, const PowerWakeCommand *cmd) {
        return cmd->configured && cmd->source >= 0 && (size_t) cmd->source < c->n_sources ? &c->sources[cmd->source]
                                                                                            : NULL;
}

static const char *map_state(const PowerWakeValue *values, size_t n, const char *const *states, int64_t raw) {
        for (size_t i = 0; i < n; i++)
                if (values[i].raw == raw)
                        return states[values[i].state];
        return NULL;
}

static int map_raw(const PowerWakeValue *values, size_t n, const char *const *states, const char *state,
                   int64_t *ret) {
        for (size_t i = 0; states && i < n; i++)
                if (streq(states[values[i].state], state)) {
                        *ret = values[i].raw;
                        return 0;
                }
        return -ENOENT;
}

const char *powerwake_signal_state(const PowerWakeSignal *s, int64_t raw) {
        const char *const *states = powerwake_signal_states(s->id);
        return states ? map_state(s->values, s->n_values, states, raw) : NULL;
}

int powerwake_signal_raw(const PowerWakeSignal *s, const char *state, int64_t *ret) {
        return map_raw(s->values, s->n_values, powerwake_signal_states(s->id), state, ret);
}

const char *powerwake_command_state(const PowerWakeCommand *cmd, int64_t raw) {
        return map_state(cmd->values, cmd->n_values, powerwake_command_states(cmd->id), raw);
}

int powerwake_command_raw(const PowerWakeCommand *cmd, const char *state, int64_t *ret) {
        return map_raw(cmd->values, cmd->n_values, powerwake_command_states(cmd->id), state, ret);
}

int powerwake_signal_decode(const PowerWakeSignal *s, const TgCanFrame *f, PowerWakeReading *ret) {
        int64_t raw;
        int r;

        r = tg_can_signal_raw(&s->can, f, &raw);
        if (r < 0)
                return r;
        *ret = (PowerWakeReading) {
                .raw = raw,
                .value = (double) raw * s->can.scale + s->can.offset,
                .state = powerwake_signal_state(s, raw),
        };
        return 0;
}

int powerwake_signal_parse_text(const PowerWakeSignal *s, const char *text, PowerWakeReading *ret) {
        char buf[64];
        size_t n;
        const char *p = text;

        p += strspn(p, " \t\r\n");
        n = strlen(p);
        while (n > 0 && strchr(" \t\r\n", p[n - 1]))
                n--;
        if (n == 0 || n >= sizeof buf)
                return -EINVAL;
        memcpy(buf, p, n);
        buf[n] = '\0';

        if (powerwake_signal_is_enum(s->id)) {
                int64_t raw;

                if (parse_int64(buf, &raw) < 0)
                        return -EINVAL;
                *ret = (PowerWakeReading) {
                        .raw = raw,
                        .value = (double) raw * s->can.scale + s->can.offset,
                        .state = powerwake_signal_state(s, raw),
                };
        } else {
                double d;

                if (parse_double(buf, &d) < 0 || fabs(d) > 9e15)
                        return -EINVAL;
                *ret = (PowerWakeReading) {
                        .raw = (int64_t) llround(d),
                        .value = d * s->can.scale + s->can.offset,
                };
                if (!isfinite(ret->value))
                        return -EINVAL;
        }
        return 0;
}

int powerwake_signal_encode(const PowerWakeSignal *s, const char *state, double value, TgCanFrame *f) {
        if (powerwake_signal_is_enum(s->id)) {
                int64_t raw;
                int r;

                if (!state)
                        return -EINVAL;
                r = powerwake_signal_raw(s, state, &raw);
                if (r < 0)
                        return r;
                return tg_can_signal_put_raw(&s->can, raw, f);
        }
        if (state || !isfinite(value))
                return -EINVAL;
        return tg_can_signal_encode(&s->can, value, f);
}

int powerwake_command_frame(const PowerWakeCommand *cmd, const char *state, TgCanFrame *ret) {
        int64_t raw;
        int r;

        r = powerwake_command_raw(cmd, state, &raw);
        if (r < 0)
                return r;
        *ret = (TgCanFrame) { .id = cmd->can.frame_id, .len = (uint8_t) cmd->frame_len };
        return tg_can_signal_put_raw(&cmd->can, raw, ret);
}

const char *powerwake_command_decode(const PowerWakeCommand *cmd, const TgCanFrame *f) {
        uint32_t id = f->id & CAN_EFF_FLAG ? f->id & (CAN_EFF_FLAG | CAN_EFF_MASK) : f->id & CAN_SFF_MASK;
        int64_t raw;

        if (f->id & (CAN_ERR_FLAG | CAN_RTR_FLAG) || id != cmd->can.frame_id ||
            tg_can_signal_raw(&cmd->can, f, &raw) < 0)
                return NULL;
        return powerwake_command_state(cmd, raw);
}
