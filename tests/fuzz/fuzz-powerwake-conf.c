/* SPDX-License-Identifier: MIT */
/*
 * power-wake.conf through the real loader (powerwake_config_load() with its
 * table, value parsers, section lookup and the checks after the load), from
 * a memfd opened by its /proc path: nothing on disk, no drop-in folder. A
 * configuration that is accepted is then used the way the daemon and the
 * vehicle simulator use it: every CAN signal decodes a frame made of the
 * input's first bytes, every command builds its frames.
 */
#include <linux/can.h>
#include <math.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "powerwake-conf.h"

static int conf_fd = -1;
static char conf_path[64];

static void check_values(const PowerWakeValue *values, size_t n, const char *const *states, const TgCanSignal *can,
                         bool on_can) {
        size_t n_states = 0;

        while (states && states[n_states])
                n_states++;
        FUZZ_ASSERT(n <= PW_VALUES_MAX);
        for (size_t i = 0; i < n; i++) {
                FUZZ_ASSERT(values[i].state < n_states);
                for (size_t j = 0; j < i; j++)
                        FUZZ_ASSERT(values[j].raw != values[i].raw);
                if (on_can && can->length < 64) {
                        if (can->is_signed)
                                FUZZ_ASSERT(values[i].raw >= -(INT64_C(1) << (can->length - 1)) &&
                                            values[i].raw < (INT64_C(1) << (can->length - 1)));
                        else
                                FUZZ_ASSERT(values[i].raw >= 0 && values[i].raw < (INT64_C(1) << can->length));
                }
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        PowerWakeConfig c;
        TgConfError err = {};
        TgCanFrame f = { .len = 8 };
        int r;

        if (size > 64 * 1024)
                return 0;
        if (conf_fd < 0) {
                conf_fd = memfd_create("fuzz-power-wake.conf", MFD_CLOEXEC);
                FUZZ_ASSERT(conf_fd >= 0);
                snprintf(conf_path, sizeof conf_path, "/proc/self/fd/%d", conf_fd);
        }
        FUZZ_ASSERT(ftruncate(conf_fd, 0) == 0);
        FUZZ_ASSERT(pwrite(conf_fd, data, size, 0) == (ssize_t) size);

        r = powerwake_config_load(conf_path, &c, &err);
        if (r < 0) {
                /* Rejected: always with a reason naming the file, never half-loaded. */
                FUZZ_ASSERT(r == -EBADMSG || r == -ENOMEM);
                FUZZ_ASSERT(memchr(err.text, '\0', sizeof err.text) != NULL);
                if (r == -EBADMSG)
                        FUZZ_ASSERT(strncmp(err.text, conf_path, strlen(conf_path)) == 0);
                return 0;
        }

        /* Accepted: what the daemon relies on without checking again. */
        FUZZ_ASSERT(c.state_dir && c.state_dir[0] == '/');
        FUZZ_ASSERT(!c.rtc_wake_alarm || c.rtc_wake_alarm[0] == '/');
        FUZZ_ASSERT(c.wake_hold_timeout_usec >= USEC_PER_SEC);
        FUZZ_ASSERT((unsigned) c.power_down_action < _PW_POWER_DOWN_MAX);
        if (c.power_down_action == PW_POWER_DOWN_EXEC)
                FUZZ_ASSERT(c.power_down_command && c.power_down_command[0] && c.power_down_command[0][0] == '/');
        FUZZ_ASSERT(c.n_sources <= PW_SOURCES_MAX);
        for (size_t i = 0; i < c.n_sources; i++) {
                const PowerWakeSource *s = &c.sources[i];

                FUZZ_ASSERT(s->name && s->name[0]);
                FUZZ_ASSERT((unsigned) s->type < _PW_SOURCE_TYPE_MAX);
                if (s->type == PW_SOURCE_CAN)
                        FUZZ_ASSERT(s->bus && s->bus[0]);
                if (s->type == PW_SOURCE_FILE)
                        FUZZ_ASSERT(s->path && s->path[0] == '/');
                for (size_t j = 0; j < i; j++)
                        FUZZ_ASSERT(strcmp(c.sources[j].name, s->name) != 0);
        }

        memcpy(f.data, data, MIN(size, (size_t) 8));
        for (int i = 0; i < _PW_SIGNAL_MAX; i++) {
                const PowerWakeSignal *s = &c.signals[i];
                const PowerWakeSource *src = powerwake_signal_source(&c, s);
                PowerWakeReading reading;
                bool on_can;

                if (!s->configured)
                        continue;
                FUZZ_ASSERT(src);
                on_can = src->type == PW_SOURCE_CAN;
                check_values(s->values, s->n_values, powerwake_signal_states(s->id), &s->can, on_can);
                if (!on_can)
                        continue;
                FUZZ_ASSERT(tg_can_signal_check(&s->can, PW_FRAME_LEN, NULL, 0) == 0);
                f.id = s->can.frame_id;
                FUZZ_ASSERT(powerwake_signal_decode(s, &f, &reading) == 0);
                if (powerwake_signal_is_enum(s->id))
                        FUZZ_ASSERT(!reading.state || powerwake_signal_raw(s, reading.state, &reading.raw) == 0);
                else
                        FUZZ_ASSERT(!isnan(reading.value));
        }
        for (int i = 0; i < _PW_COMMAND_MAX; i++) {
                const PowerWakeCommand *cmd = &c.commands[i];
                const PowerWakeSource *src = powerwake_command_source(&c, cmd);

                if (!cmd->configured)
                        continue;
                FUZZ_ASSERT(src && src->type == PW_SOURCE_CAN);
                FUZZ_ASSERT(cmd->frame_len >= 1 && cmd->frame_len <= PW_FRAME_LEN);
                FUZZ_ASSERT(cmd->repeat >= 1);
                check_values(cmd->values, cmd->n_values, powerwake_command_states(cmd->id), &cmd->can, true);
                for (const char *const *state = powerwake_command_states(cmd->id); *state; state++) {
                        r = powerwake_command_frame(cmd, *state, &f);
                        FUZZ_ASSERT(r == 0 || r == -ENOENT);
                        if (r == 0)
                                FUZZ_ASSERT(f.len == cmd->frame_len && f.id == cmd->can.frame_id);
                }
        }
        powerwake_config_done(&c);
        return 0;
}
