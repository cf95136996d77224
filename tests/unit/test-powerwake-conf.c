/* SPDX-License-Identifier: MIT */
#include <linux/can.h>
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>

#include "powerwake-conf.h"
#include "tg-test.h"

static int load_text(const char *text, PowerWakeConfig *c, TgConfError *err) {
        TgTestConfDir d = {};
        int r;

        tg_test_confdir_init(&d, "power-wake", text);
        *err = (TgConfError) {};
        r = powerwake_config_load(d.path, c, err);
        tg_test_confdir_done(&d);
        return r;
}

static void clear_env(void) {
        assert_se(unsetenv("STATE_DIRECTORY") == 0);
}

static void expect_layout(const PowerWakeSignal *s, uint32_t frame_id, unsigned start, unsigned length, double scale) {
        assert_se(s->configured);
        assert_eq(s->can.frame_id, frame_id);
        assert_eq(s->can.start_bit, start);
        assert_eq(s->can.length, length);
        assert_eq(s->can.byte_order, TG_CAN_LITTLE_ENDIAN);
        assert_se(!s->can.is_signed);
        assert_se(s->can.scale == scale);
        assert_se(s->can.offset == 0);
}

/* The reference vehicle (docs/power-wake.md). */
static void expect_reference(const PowerWakeConfig *c) {
        const PowerWakeSource *body = powerwake_config_find_source(c, "body");

        assert_se(body);
        assert_eq(body->type, PW_SOURCE_CAN);
        assert_streq(body->bus, "can0");
        assert_eq(body->bitrate, 0u);
        assert_eq(body->restart_ms, 100u);
        expect_layout(&c->signals[PW_SIGNAL_IGNITION], 0x3C0, 0, 2, 1);
        expect_layout(&c->signals[PW_SIGNAL_GEAR], 0x3C1, 0, 3, 1);
        expect_layout(&c->signals[PW_SIGNAL_SPEED], 0x3C1, 8, 16, 0.01);
        expect_layout(&c->signals[PW_SIGNAL_BATTERY_VOLTAGE], 0x3C2, 0, 16, 0.001);
        expect_layout(&c->signals[PW_SIGNAL_HIGH_VOLTAGE], 0x3C3, 0, 2, 1);
        for (int i = 0; i < _PW_SIGNAL_MAX; i++)
                assert_se(powerwake_signal_source(c, &c->signals[i]) == body);
        assert_streq(powerwake_signal_state(&c->signals[PW_SIGNAL_IGNITION], 2), "on");
        assert_streq(powerwake_signal_state(&c->signals[PW_SIGNAL_IGNITION], 1), "acc");
        assert_streq(powerwake_signal_state(&c->signals[PW_SIGNAL_IGNITION], 3), NULL);
        assert_streq(powerwake_signal_state(&c->signals[PW_SIGNAL_GEAR], 3), "D");
        assert_streq(powerwake_signal_state(&c->signals[PW_SIGNAL_HIGH_VOLTAGE], 1), "precharge");
        assert_streq(powerwake_signal_state(&c->signals[PW_SIGNAL_HIGH_VOLTAGE], 3), "fault");

        const PowerWakeCommand *hv = &c->commands[PW_COMMAND_HIGH_VOLTAGE];
        assert_se(hv->configured);
        assert_se(powerwake_command_source(c, hv) == body);
        assert_eq(hv->can.frame_id, 0x3D0u);
        assert_eq(hv->can.length, 1u);
        assert_eq(hv->frame_len, 8u);
        assert_eq(hv->repeat, 3u);
        assert_streq(powerwake_command_state(hv, 1), "on");

        assert_eq(c->grace_period_usec, 30 * USEC_PER_SEC);
        assert_eq(c->power_down_action, PW_POWER_DOWN_POWEROFF);
        assert_se(!c->power_down_command);
        assert_eq(c->wake_hold_timeout_usec, 300 * USEC_PER_SEC);
        assert_se(c->wake_alarm);
        assert_streq(c->rtc_wake_alarm, "/sys/class/rtc/rtc0/wakealarm");
}

static void test_shipped_default(void) {
        const char *path = getenv("TG_POWERWAKE_CONF");
        PowerWakeConfig c;
        TgConfError err = {};

        clear_env();
        if (!path) {
                fprintf(stderr, "TG_POWERWAKE_CONF not set, skipping the shipped file\n");
                return;
        }
        assert_ok(powerwake_config_load(path, &c, &err));
        expect_reference(&c);
        powerwake_config_done(&c);
}

/* Every "#Key=value" line of the shipped file is the built-in default:
 * uncommenting all of them changes nothing. */
static void test_shipped_comments_are_defaults(void) {
        const char *path = getenv("TG_POWERWAKE_CONF");
        _cleanup_free_ uint8_t *text = NULL;
        _cleanup_free_ char *out = NULL;
        PowerWakeConfig c;
        TgConfError err = {};
        size_t size, n = 0, uncommented = 0;

        clear_env();
        if (!path)
                return;
        text = tg_test_read_file(path, &size);
        assert_se(text);
        out = calloc(size + 1, 1);
        assert_se(out);
        for (size_t i = 0; i < size; i++) {
                bool line_start = i == 0 || text[i - 1] == '\n';
                if (line_start && text[i] == '#' && i + 1 < size && text[i + 1] >= 'A' && text[i + 1] <= 'Z') {
                        uncommented++;
                        continue;
                }
                out[n++] = (char) text[i];
        }
        assert_le(20u, uncommented);
        assert_ok(load_text(out, &c, &err));
        expect_reference(&c);
        assert_streq(c.state_dir, "/var/lib/tollgate");
        powerwake_config_done(&c);
}

static void test_defaults_and_environment(void) {
        PowerWakeConfig c;
        TgConfError err = {};

        clear_env();
        assert_ok(load_text("", &c, &err));
        assert_eq(c.n_sources, 0u);
        for (int i = 0; i < _PW_SIGNAL_MAX; i++)
                assert_se(!c.signals[i].configured);
        assert_se(!c.commands[PW_COMMAND_HIGH_VOLTAGE].configured);
        assert_se(c.state_dir && c.state_dir[0] == '/');
        powerwake_config_done(&c);

        assert_se(setenv("STATE_DIRECTORY", "/run/state-a:/run/state-b", 1) == 0);
        assert_ok(load_text("[PowerWake]\nRTCWakeAlarm=\n", &c, &err));
        assert_streq(c.state_dir, "/run/state-a");
        assert_streq(c.rtc_wake_alarm, NULL);
        powerwake_config_done(&c);
        clear_env();
}

static void test_every_key(void) {
        PowerWakeConfig c;
        TgConfError err = {};

        clear_env();
        assert_ok(load_text("[PowerWake]\n"
                            "GracePeriod=90s\n"
                            "PowerDownAction=exec\n"
                            "PowerDownCommand=/usr/bin/pm-ecu  sleep --now\n"
                            "WakeHoldTimeout=10min\n"
                            "WakeAlarm=no\n"
                            "RTCWakeAlarm=/sys/class/rtc/rtc1/wakealarm\n"
                            "StateDirectory=/data/tollgate\n"
                            "[Source chassis]\nType=can\nBus=can1\nBitrate=250000\nRestartMs=500\n"
                            "[Source key]\nType=file\nPath=/sys/class/gpio/gpio17/value\n"
                            "[Source sim]\nType=dbus\n"
                            "[Signal Ignition]\nSource=key\nValues=0:off 1:on\n"
                            "[Signal Speed]\nSource=chassis\nFrameId=0x18FEF100\nExtended=yes\nStartBit=7\n"
                            "Length=16\nByteOrder=big\nSigned=yes\nScale=0.5\nOffset=-10\n"
                            "[Signal Gear]\nSource=chassis\nFrameId=291\nByteOrder=motorola\nStartBit=7\nLength=5\n"
                            "Values=0x0:P 0xA:D -1:R\nSigned=yes\n"
                            "[Signal BatteryVoltage]\nSource=sim\n"
                            "[Command HighVoltage]\nSource=chassis\nFrameId=0x7FF\nStartBit=4\nLength=2\n"
                            "ByteOrder=intel\nFrameLength=1\nValues=1:off 2:on\nRepeat=5\n",
                            &c, &err));
        assert_eq(c.grace_period_usec, 90 * USEC_PER_SEC);
        assert_eq(c.power_down_action, PW_POWER_DOWN_EXEC);
        assert_streq(c.power_down_command[0], "/usr/bin/pm-ecu");
        assert_streq(c.power_down_command[1], "sleep");
        assert_streq(c.power_down_command[2], "--now");
        assert_streq(c.power_down_command[3], NULL);
        assert_eq(c.wake_hold_timeout_usec, 600 * USEC_PER_SEC);
        assert_se(!c.wake_alarm);
        assert_streq(c.rtc_wake_alarm, "/sys/class/rtc/rtc1/wakealarm");
        assert_streq(c.state_dir, "/data/tollgate");

        assert_eq(c.n_sources, 3u);
        const PowerWakeSource *chassis = powerwake_config_find_source(&c, "chassis");
        assert_se(chassis);
        assert_eq(chassis->type, PW_SOURCE_CAN);
        assert_streq(chassis->bus, "can1");
        assert_eq(chassis->bitrate, 250000u);
        assert_eq(chassis->restart_ms, 500u);
        assert_streq(powerwake_config_find_source(&c, "key")->path, "/sys/class/gpio/gpio17/value");
        assert_eq(powerwake_config_find_source(&c, "sim")->type, PW_SOURCE_DBUS);

        const PowerWakeSignal *speed = &c.signals[PW_SIGNAL_SPEED];
        assert_eq(speed->can.frame_id, 0x18FEF100u | CAN_EFF_FLAG);
        assert_eq(speed->can.start_bit, 7u);
        assert_eq(speed->can.byte_order, TG_CAN_BIG_ENDIAN);
        assert_se(speed->can.is_signed);
        assert_se(speed->can.scale == 0.5 && speed->can.offset == -10);
        assert_se(powerwake_signal_source(&c, speed) == chassis);

        const PowerWakeSignal *gear = &c.signals[PW_SIGNAL_GEAR];
        assert_eq(gear->can.frame_id, 291u);
        assert_eq(gear->can.byte_order, TG_CAN_BIG_ENDIAN);
        assert_streq(powerwake_signal_state(gear, 10), "D");
        assert_streq(powerwake_signal_state(gear, -1), "R");
        assert_streq(powerwake_signal_state(gear, 1), NULL);
        assert_streq(powerwake_signal_state(&c.signals[PW_SIGNAL_IGNITION], 1), "on");
        assert_se(!c.signals[PW_SIGNAL_HIGH_VOLTAGE].configured);

        const PowerWakeCommand *hv = &c.commands[PW_COMMAND_HIGH_VOLTAGE];
        assert_eq(hv->can.frame_id, 0x7FFu);
        assert_eq(hv->frame_len, 1u);
        assert_eq(hv->repeat, 5u);
        int64_t raw;
        assert_ok(powerwake_command_raw(hv, "on", &raw));
        assert_eq(raw, 2);
        powerwake_config_done(&c);
}

/* A drop-in changes a source's bus or type alone; keys of another type are
 * ignored, so the shipped [Source body] becomes a hub or a D-Bus source. */
static void test_dropin_changes_one_key(void) {
        const char *main_text = "[Source body]\nType=can\nBus=can0\n[Signal Ignition]\nSource=body\n";
        PowerWakeConfig c;
        TgConfError err = {};
        TgTestConfDir d = {};

        clear_env();
        tg_test_confdir_init(&d, "power-wake", main_text);
        tg_test_confdir_dropin(&d, "50-sandbox.conf", "[Source body]\nBus=unix:/run/tollgate/can0.sock\n");
        assert_ok(powerwake_config_load(d.path, &c, &err));
        assert_streq(powerwake_config_find_source(&c, "body")->bus, "unix:/run/tollgate/can0.sock");
        assert_eq(c.signals[PW_SIGNAL_IGNITION].can.frame_id, 0x3C0u);
        powerwake_config_done(&c);

        tg_test_confdir_dropin(&d, "60-sim.conf", "[Source body]\nType=dbus\n[Signal Ignition]\nFrameId=0x900\n");
        assert_ok(powerwake_config_load(d.path, &c, &err));
        assert_eq(powerwake_config_find_source(&c, "body")->type, PW_SOURCE_DBUS);
        powerwake_config_done(&c);

        /* Back on CAN, the impossible id is blamed on the drop-in's line. */
        tg_test_confdir_dropin(&d, "70-can.conf", "[Source body]\nType=can\n");
        assert_eq(powerwake_config_load(d.path, &c, &err), -EBADMSG);
        assert_contains(err.text, "60-sim.conf:4: [Signal Ignition] FrameId=0x900");
        tg_test_confdir_done(&d);
}

static void test_rejected(void) {
        static const struct {
                const char *text;
                const char *expect; /* in the error, after "power-wake.conf" */
        } cases[] = {
                { "[Source a]\nType=serial\n", ":2: [Source a] Type=serial: unknown source type" },
                { "[Battery]\n", ":1: unknown section [Battery]" },
                { "[PowerWake]\nGracePeriod=2d\n", ":2: [PowerWake] GracePeriod=2d" },
                { "[PowerWake]\nSleep=yes\n", ":2: unknown key Sleep=" },
                { "[PowerWake]\nPowerDownAction=halt\n", ":2: [PowerWake] PowerDownAction=halt" },
                { "[PowerWake]\nPowerDownAction=exec\n", ":2: [PowerWake] PowerDownAction=exec: needs PowerDownCommand=" },
                { "[PowerWake]\nPowerDownCommand=poweroff now\n", ":2: [PowerWake] PowerDownCommand=poweroff now" },
                { "[PowerWake]\nStateDirectory=var\n", ":2: [PowerWake] StateDirectory=var" },
                { "[Signal Odometer]\nSource=a\n", ":1: [Signal Odometer]: unknown signal" },
                { "[Command Horn]\n", ":1: [Command Horn]: unknown command" },
                { "[Source]\nType=can\n", ":1: section [Source] needs a name" },
                { "[Source a b]\nType=can\n", ":1: section [Source] needs a name" },
                { "[Source a]\nBus=can0\n", ":1: [Source a]: Type= is missing" },
                { "[Source a]\n\nType=can\n", ":1: [Source a]: Type=can needs Bus=" },
                { "[Source a]\nType=file\n", ":1: [Source a]: Type=file needs Path=" },
                { "[Source a]\nType=can\nBus=can/0\n", ":3: [Source a] Bus=can/0" },
                { "[Source a]\nType=can\nBus=averyveryverylongname\n", ":3: [Source a] Bus=averyveryverylongname" },
                { "[Source a]\nType=can\nBus=unix:run/can0.sock\n", ":3: [Source a] Bus=unix:run/can0.sock" },
                { "[Source a]\nType=can\nBitrate=2000000\n", ":3: [Source a] Bitrate=2000000" },
                { "[Source a]\nType=file\nPath=gpio\n", ":3: [Source a] Path=gpio" },
                { "[Signal Ignition]\nFrameId=0x3C0\n", ":1: [Signal Ignition]: Source= is missing" },
                { "[Signal Ignition]\nSource=nosuch\n", ":2: [Signal Ignition] Source=nosuch: there is no [Source nosuch]" },
                { "[Signal Ignition]\nSource=bad/name\n", ":2: [Signal Ignition] Source=bad/name" },
                { "[Source a]\nType=can\nBus=can0\n[Signal Ignition]\nSource=a\nFrameId=0x800\n",
                  ":6: [Signal Ignition] FrameId=0x800: a standard CAN id is at most 0x7FF" },
                { "[Source a]\nType=can\nBus=can0\n[Signal Ignition]\nSource=a\nFrameId=0x20000000\nExtended=yes\n",
                  ":6: [Signal Ignition] FrameId=0x20000000" },
                { "[Source a]\nType=can\nBus=can0\n[Signal Ignition]\nSource=a\nFrameId=-1\n", ":6: [Signal Ignition] FrameId=-1" },
                { "[Source a]\nType=can\nBus=can0\n[Signal Speed]\nSource=a\nStartBit=60\nLength=8\n",
                  ":7: [Signal Speed] StartBit=60 Length=8" },
                { "[Source a]\nType=can\nBus=can0\n[Signal Speed]\nSource=a\nLength=8\nStartBit=60\n",
                  ":7: [Signal Speed] StartBit=60 Length=8" },
                { "[Source a]\nType=can\nBus=can0\n[Signal Speed]\nSource=a\nStartBit=64\n", ":6: [Signal Speed] StartBit=64" },
                { "[Source a]\nType=can\nBus=can0\n[Signal Speed]\nSource=a\nLength=0\n", ":6: [Signal Speed] Length=0" },
                { "[Source a]\nType=can\nBus=can0\n[Signal Speed]\nSource=a\nLength=65\n", ":6: [Signal Speed] Length=65" },
                { "[Source a]\nType=can\nBus=can0\n[Signal Speed]\nSource=a\nScale=0\n", ":6: [Signal Speed] Scale=0" },
                { "[Source a]\nType=can\nBus=can0\n[Signal Speed]\nSource=a\nOffset=nan\n", ":6: [Signal Speed] Offset=nan" },
                { "[Source a]\nType=can\nBus=can0\n[Signal Speed]\nSource=a\nByteOrder=middle\n", ":6: [Signal Speed] ByteOrder=middle" },
                { "[Source a]\nType=can\nBus=can0\n[Signal Speed]\nSource=a\nValues=0:off\n",
                  ":6: [Signal Speed] Values=0:off: Speed is a number" },
                { "[Source a]\nType=can\nBus=can0\n[Signal Ignition]\nSource=a\nValues=0:off 1:maybe\n",
                  ":6: [Signal Ignition] Values=0:off 1:maybe: \"maybe\" is not a state of Ignition (off, acc, on)" },
                { "[Source a]\nType=can\nBus=can0\n[Signal Ignition]\nSource=a\nValues=0:off 0:on\n",
                  ":6: [Signal Ignition] Values=0:off 0:on: raw value 0 is mapped twice" },
                { "[Source a]\nType=can\nBus=can0\n[Signal Ignition]\nSource=a\nValues=off on\n",
                  ":6: [Signal Ignition] Values=off on: expected RAW:STATE pairs" },
                { "[Source a]\nType=can\nBus=can0\n[Signal Ignition]\nSource=a\nValues=0:off 4:on\n",
                  ":6: [Signal Ignition] Values=: raw value 4 does not fit the 2-bit field" },
                { "[Source a]\nType=can\nBus=can0\n[Signal Ignition]\nSource=a\nValues=-1:off 1:on\n",
                  ":6: [Signal Ignition] Values=: raw value -1 does not fit" },
                { "[Source a]\nType=can\nBus=can0\n[Signal Ignition]\nSource=a\nValues=0:off 1:on\nLength=1\nSigned=yes\n",
                  ":8: [Signal Ignition] Values=: raw value 1 does not fit the signed 1-bit field" },
                { "[Source a]\nType=dbus\n[Command HighVoltage]\nSource=a\n",
                  ":4: [Command HighVoltage] Source=a: commands are sent on a Type=can source" },
                { "[Source a]\nType=can\nBus=can0\n[Command HighVoltage]\nSource=a\nStartBit=20\nFrameLength=2\n",
                  ":7: [Command HighVoltage] StartBit=20 Length=1" },
                { "[Source a]\nType=can\nBus=can0\n[Command HighVoltage]\nSource=a\nFrameLength=9\n", ":6: [Command HighVoltage] FrameLength=9" },
                { "[Source a]\nType=can\nBus=can0\n[Command HighVoltage]\nSource=a\nRepeat=0\n", ":6: [Command HighVoltage] Repeat=0" },
                { "[Source a]\nType=can\nBus=can0\n[Command HighVoltage]\nSource=a\nValues=0:off 1:precharge\n",
                  ":6: [Command HighVoltage] Values=0:off 1:precharge: \"precharge\" is not a state of HighVoltage (off, on)" },
                { "[Source a]\nType=can\nBus=can0\n[Command HighVoltage]\nSource=a\nSigned=yes\n",
                  ":6: unknown key Signed= in [Command HighVoltage]" },
        };

        clear_env();
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                PowerWakeConfig c;
                TgConfError err = {};
                int r = load_text(cases[i].text, &c, &err);

                if (r != -EBADMSG || !strstr(err.text, cases[i].expect))
                        fprintf(stderr, "case %zu: %s\n  got %d: %s\n", i, cases[i].text, r, err.text);
                assert_eq(r, -EBADMSG);
                assert_contains(err.text, "power-wake.conf");
                assert_contains(err.text, cases[i].expect);
        }
}

static void test_state_names(void) {
        assert_eq(powerwake_signal_state_index(PW_SIGNAL_IGNITION, "off"), 0);
        assert_eq(powerwake_signal_state_index(PW_SIGNAL_IGNITION, "on"), 2);
        assert_eq(powerwake_signal_state_index(PW_SIGNAL_GEAR, "D"), 3);
        assert_eq(powerwake_signal_state_index(PW_SIGNAL_HIGH_VOLTAGE, "fault"), 3);
        assert_eq(powerwake_signal_state_index(PW_SIGNAL_IGNITION, "warp"), -1);
        assert_eq(powerwake_signal_state_index(PW_SIGNAL_IGNITION, NULL), -1);
        assert_eq(powerwake_signal_state_index(PW_SIGNAL_SPEED, "off"), -1);
        assert_streq(powerwake_signal_state_name(PW_SIGNAL_IGNITION, 1), "acc");
        assert_streq(powerwake_signal_state_name(PW_SIGNAL_GEAR, 0), "P");
        assert_streq(powerwake_signal_state_name(PW_SIGNAL_IGNITION, -1), "unknown");
        assert_streq(powerwake_signal_state_name(PW_SIGNAL_IGNITION, 3), "unknown");
        assert_streq(powerwake_signal_state_name(PW_SIGNAL_SPEED, 0), "unknown");
}

static void test_codec(void) {
        PowerWakeConfig c;
        TgConfError err = {};
        PowerWakeReading reading;
        TgCanFrame f = { .id = 0x3C1, .len = 8 };

        clear_env();
        assert_ok(load_text("[Source body]\nType=can\nBus=can0\n[Signal Gear]\nSource=body\n[Signal Speed]\nSource=body\n"
                            "[Signal Ignition]\nSource=body\n[Command HighVoltage]\nSource=body\nFrameLength=2\n",
                            &c, &err));
        /* The simulator's side: encode a state and a value, read them back. */
        assert_ok(powerwake_signal_encode(&c.signals[PW_SIGNAL_GEAR], "D", 0, &f));
        assert_ok(powerwake_signal_encode(&c.signals[PW_SIGNAL_SPEED], NULL, 50.0, &f));
        assert_eq(f.data[0], 3);
        assert_eq(f.data[1], 0x88); /* 5000 = 0x1388, little endian */
        assert_eq(f.data[2], 0x13);
        assert_ok(powerwake_signal_decode(&c.signals[PW_SIGNAL_GEAR], &f, &reading));
        assert_streq(reading.state, "D");
        assert_ok(powerwake_signal_decode(&c.signals[PW_SIGNAL_SPEED], &f, &reading));
        assert_se(fabs(reading.value - 50.0) < 1e-9);
        assert_eq(powerwake_signal_encode(&c.signals[PW_SIGNAL_GEAR], "X", 0, &f), -ENOENT);
        assert_eq(powerwake_signal_encode(&c.signals[PW_SIGNAL_SPEED], "on", 0, &f), -EINVAL);

        /* A frame too short for the signal. */
        f.len = 2;
        assert_eq(powerwake_signal_decode(&c.signals[PW_SIGNAL_SPEED], &f, &reading), -EBADMSG);

        /* File sources: the text of the file. */
        assert_ok(powerwake_signal_parse_text(&c.signals[PW_SIGNAL_IGNITION], " 2\n", &reading));
        assert_streq(reading.state, "on");
        assert_ok(powerwake_signal_parse_text(&c.signals[PW_SIGNAL_IGNITION], "3", &reading));
        assert_streq(reading.state, NULL);
        assert_eq(powerwake_signal_parse_text(&c.signals[PW_SIGNAL_IGNITION], "1.5", &reading), -EINVAL);
        assert_eq(powerwake_signal_parse_text(&c.signals[PW_SIGNAL_IGNITION], "", &reading), -EINVAL);
        assert_eq(powerwake_signal_parse_text(&c.signals[PW_SIGNAL_IGNITION], "on", &reading), -EINVAL);
        assert_ok(powerwake_signal_parse_text(&c.signals[PW_SIGNAL_SPEED], "1234.5\n", &reading));
        assert_se(fabs(reading.value - 12.345) < 1e-9);
        assert_eq(powerwake_signal_parse_text(&c.signals[PW_SIGNAL_SPEED], "12 km/h", &reading), -EINVAL);

        /* The command frame: id, DLC, raw value. */
        assert_ok(powerwake_command_frame(&c.commands[PW_COMMAND_HIGH_VOLTAGE], "on", &f));
        assert_eq(f.id, 0x3D0u);
        assert_eq(f.len, 2);
        assert_eq(f.data[0], 1);
        assert_eq(f.data[1], 0);
        assert_streq(powerwake_command_decode(&c.commands[PW_COMMAND_HIGH_VOLTAGE], &f), "on");
        f.id = 0x3D1;
        assert_streq(powerwake_command_decode(&c.commands[PW_COMMAND_HIGH_VOLTAGE], &f), NULL);
        f.id = 0x3D0;
        f.len = 0;
        assert_streq(powerwake_command_decode(&c.commands[PW_COMMAND_HIGH_VOLTAGE], &f), NULL);
        assert_eq(powerwake_command_frame(&c.commands[PW_COMMAND_HIGH_VOLTAGE], "fault", &f), -ENOENT);
        powerwake_config_done(&c);

        assert_streq(powerwake_signal_to_string(PW_SIGNAL_BATTERY_VOLTAGE), "BatteryVoltage");
        assert_eq(powerwake_signal_from_string("HighVoltage"), PW_SIGNAL_HIGH_VOLTAGE);
        assert_eq(powerwake_signal_from_string("highvoltage"), _PW_SIGNAL_INVALID);
        assert_eq(powerwake_source_type_from_string("file"), PW_SOURCE_FILE);
        assert_streq(power_down_action_to_string(PW_POWER_DOWN_NONE), "none");
        assert_se(!powerwake_signal_is_enum(PW_SIGNAL_SPEED));
}

TG_TEST_MAIN(TEST(shipped_default), TEST(state_names), TEST(shipped_comments_are_defaults), TEST(defaults_and_environment),
             TEST(every_key), TEST(dropin_changes_one_key), TEST(rejected), TEST(codec));
