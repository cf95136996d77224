#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Integration tests of power-wake (issue 5): the real daemon in the sandbox
(tools/tollgate-sandbox) on a private dbus-daemon with the real policy files,
reading the car from the userspace CAN bus (tollgate-canhub) that the vehicle
simulator (tollgate-vehicle-sim) plays, with the reference vehicle's layout of
conf/power-wake.conf. Python's standard library only (Debian's python3).

What the daemon says is checked on the bus (busctl monitor for
PropertiesChanged, Woken and PoweringDown with their receive times), in its
log lines (MESSAGE_IDs of lib/tg-message-ids.h), in the marks its power-down
command leaves (the sandbox's PowerDownCommand= appends the time to
run/powered-down), and at the simulator's control API.

Timing: waits poll (wait_until); the only sleep-and-assert is the "not
before" check of the grace period, which asserts that no power-down happened
one second before it was due."""

import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tglib import BUILD, REPO, Sandbox, describe_interface, wait_until  # noqa: E402

POWER = ("org.tollgate.Power1", "/org/tollgate/Power1", "org.tollgate.Power1")
DAEMON = os.path.join(BUILD, "daemons", "power-wake", "tollgate-power-wake")
TOLLGATECTL = os.path.join(BUILD, "tools", "tollgatectl", "tollgatectl")
GRACE = 3.0  # tools/tollgate-sandbox: GracePeriod=3s
NOBODY = 65534

# lib/tg-message-ids.h
MID_CONFIG_REJECTED = "30db2047a352408ca3e5067fea27bf9d"
MID_CONFIG_RELOADED = "99791f40ab2d45cb8423131152c963cb"
MID_POWER_DOWN = "f3376a582eff433483c1b27d6dfac4e7"
MID_HOLD_RELEASED = "8ea7d683af6044c0a90568e907dff7aa"
MID_WAKE_FIRED = "384aaeab1e0442c6aa47fba10f528cf5"
MID_WAKE_TIMED_OUT = "2a4b56d9163347aeb8e2b3a88930dbf9"
MID_HV_REFUSED = "484705df5d8d4373b3f4cfb6b8be20a1"
MID_SOURCE_GARBAGE = "a102a4135039493e925e6b1a4b350e2a"

CAN_EFF_FLAG = 0x80000000


def can_frame(can_id, data=b"", length=None):
    """struct can_frame, as tg_can_frame_encode() writes it (docs/can.md)."""
    return struct.pack("<IB3x8s", can_id, len(data) if length is None else length, data.ljust(8, b"\0"))


class Monitor:
    """busctl monitor on power-wake's object: every signal it sends, with the
    time busctl received it (timestamp-realtime, seconds)."""

    def __init__(self, bus):
        self.proc = subprocess.Popen(["busctl", "--address=" + bus, "--json=short", "monitor",
                                      "--match=type='signal',path='%s'" % POWER[1]],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.msgs = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        if not self.ready.wait(20):
            raise AssertionError("busctl monitor did not start")

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("Monitoring"):
                self.ready.set()
            if not line.startswith("{"):
                continue
            m = json.loads(line)
            with self.lock:
                self.msgs.append(m)

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()

    def mark(self):
        with self.lock:
            return len(self.msgs)

    def signals(self, member, since=0):
        """[(time, data)] of `member` (Woken, PoweringDown) since mark `since`."""
        with self.lock:
            msgs = self.msgs[since:]
        return [(m["timestamp-realtime"] / 1e6, m["payload"]["data"] if "payload" in m else [])
                for m in msgs if m["member"] == member and m["interface"] == POWER[2]]

    def changes(self, prop, since=0):
        """[(time, value)] of `prop` in every PropertiesChanged since mark `since`."""
        out = []
        with self.lock:
            msgs = self.msgs[since:]
        for m in msgs:
            if m["member"] != "PropertiesChanged":
                continue
            iface, changed, _ = m["payload"]["data"]
            if iface == POWER[2] and prop in changed:
                out.append((m["timestamp-realtime"] / 1e6, changed[prop]["data"]))
        return out

    def wait_change(self, prop, value, since=0, timeout=10.0):
        """The first (time, value) of prop == value since `since`."""
        def find():
            for t, v in self.changes(prop, since):
                if v == value:
                    return (t, v)
            return None
        return wait_until("PropertiesChanged %s=%r" % (prop, value), find, timeout)


class PowerTest(unittest.TestCase):
    dropin = None  # written to power-wake.conf.d/60-test.conf before `up`

    @classmethod
    def setUpClass(cls):
        cls.sb = Sandbox()
        if cls.dropin:
            cls.write_power_dropin(cls.dropin)
        cls.sb.up()
        cls.vehicle = cls.sb.env["VEHICLE_CONTROL"]
        # The car as the sandbox starts it: parked, ignition off, learnt by power-wake.
        wait_until("power-wake to know the ignition", lambda: cls.prop("Ignition") == "off")

    @classmethod
    def tearDownClass(cls):
        reports = cls.sb.down()
        if reports:
            raise AssertionError("sanitizer reports in the daemons' logs (kept in %s): %s" % (cls.sb.dir, reports))

    def setUp(self):
        self.monitors = []
        self.children = []

    def tearDown(self):
        for p in self.children:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=10)
        for m in self.monitors:
            m.close()

    # helpers ----------------------------------------------------------------
    @classmethod
    def write_power_dropin(cls, text, name="60-test.conf"):
        d = cls.sb.path("etc", "tollgate", "power-wake.conf.d")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, name), "w") as f:
            f.write(text)

    def remove_power_dropin(self, name):
        os.unlink(self.sb.path("etc", "tollgate", "power-wake.conf.d", name))

    @classmethod
    def prop(cls, name):
        return cls.sb.prop(name, obj=POWER)

    def props(self):
        return self.sb.props(obj=POWER)

    def pw_error(self, method, *args):
        """Call a Power1 method with dbus-send: the D-Bus error name, or None on success."""
        p = self.sb.dbus_send(method, *args, obj=POWER)
        if p.returncode == 0:
            return None
        m = re.search(r"Error (\S+):", p.stderr)
        return m.group(1) if m else p.stderr

    def call(self, method, sig="", *args):
        return self.sb.call(method, sig, *args, obj=POWER)

    def set_state_error(self, *entries):
        """SetVehicleState({name: (type, value)...}) with busctl (dbus-send has no
        variants in dicts): None on success, else busctl's message (it does not
        print error names; the daemon's messages are distinct)."""
        args = [len(entries)]
        for name, t, v in entries:
            args += [name, t, v]
        p = self.sb.busctl("call", "--", *POWER, "SetVehicleState", "a{sv}", *[str(a) for a in args], check=False)
        return None if p.returncode == 0 else p.stderr.strip()

    def sim(self, path, body=None):
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        req = urllib.request.Request(self.vehicle + path, data=data, method="POST" if data is not None else "GET")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def car(self, **state):
        return self.sim("/state", state)

    def monitor(self):
        m = Monitor(self.sb.bus)
        self.monitors.append(m)
        return m

    def log_lines(self, *needles):
        return [line for line in self.sb.log_text("power-wake").splitlines() if all(n in line for n in needles)]

    def env(self):
        return dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.sb.bus, LC_ALL="C.UTF-8")

    def start_holder(self, who, why, *cmd):
        """tollgatectl hold WHO WHY -- CMD in a process group of its own."""
        p = subprocess.Popen([TOLLGATECTL, "hold", who, why, "--"] + list(cmd or ("sleep", "60")),
                             env=self.env(), start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        self.children.append(p)
        wait_until("the hold of %s" % who, lambda: [who, why] in self.prop("Holds"))
        return p

    def holds(self):
        return [tuple(h) for h in self.prop("Holds")]

    def wakes(self):
        return [tuple(w) for w in self.prop("Wakes")]

    def marks(self):
        """Times (epoch seconds) at which the power-down command ran."""
        try:
            with open(self.sb.path("run", "powered-down")) as f:
                return [float(line.split()[0]) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def park(self):
        self.car(ignition="on", gear="P", speed=0)
        wait_until("parked with the ignition on", lambda: self.prop("Parked") and self.prop("Ignition") == "on")

    def assert_serving(self):
        """The daemon still follows the car and answers."""
        for state in ("on", "off"):
            self.car(ignition=state)
            wait_until("Ignition=%s" % state, lambda: self.prop("Ignition") == state)


class PowerStateTest(PowerTest):
    """The vehicle state from the simulator over CAN, high voltage, the D-Bus contract."""

    def test_ignition_changes_are_properties_changed(self):
        mon = self.monitor()
        mark = mon.mark()
        for state in ("on", "acc", "on", "off"):
            m = mon.mark()
            self.car(ignition=state)
            mon.wait_change("Ignition", state, since=m)
        wait_until("four ignition changes", lambda: len(mon.changes("Ignition", mark)) >= 4)
        # Each change once, in order, although the car repeats its frames at 10 Hz.
        time.sleep(0.3)
        self.assertEqual([v for _, v in mon.changes("Ignition", mark)], ["on", "acc", "on", "off"])
        self.assertEqual(self.prop("Ignition"), "off")

        # Driving: Parked and Speed follow.
        mark = mon.mark()
        self.car(ignition="on", gear="D", speed=50.5)
        mon.wait_change("Parked", False, since=mark)
        mon.wait_change("Speed", 50.5, since=mark)
        self.car(speed=0, gear="P", battery=12.25)
        mon.wait_change("Parked", True, since=mark)
        mon.wait_change("BatteryVoltage", 12.25, since=mark)
        self.car(ignition="off")
        mon.wait_change("Ignition", "off", since=mark)

    def test_high_voltage_refused_while_driving_and_mirrored_when_parked(self):
        mon = self.monitor()
        before = self.sim("/stats")["hv_commands"]
        self.car(ignition="on", gear="D", speed=30)
        wait_until("driving", lambda: self.prop("Parked") is False)
        self.assertEqual(self.pw_error("RequestHighVoltage", "boolean:true"), "org.tollgate.Error.NotAllowed")
        self.assertEqual(self.pw_error("RequestHighVoltage", "boolean:false"), "org.tollgate.Error.NotAllowed")
        self.assertTrue(self.log_lines(MID_HV_REFUSED))
        # Nothing reached the battery management.
        time.sleep(0.2)
        self.assertEqual(self.sim("/stats")["hv_commands"], before)
        self.assertEqual(self.prop("HighVoltage"), "off")

        self.park()
        mark = mon.mark()
        self.assertIsNone(self.pw_error("RequestHighVoltage", "boolean:true"))
        t_pre, _ = mon.wait_change("HighVoltage", "precharge", since=mark)
        t_on, _ = mon.wait_change("HighVoltage", "on", since=mark)
        # The BMS closes the main contactors after its 200 ms precharge.
        self.assertGreaterEqual(t_on - t_pre, 0.15)
        self.assertEqual([v for _, v in mon.changes("HighVoltage", mark)], ["precharge", "on"])
        self.assertEqual(self.sim("/state")["hv"], "on")
        self.assertGreater(self.sim("/stats")["hv_commands"], before)

        mark = mon.mark()
        self.assertIsNone(self.pw_error("RequestHighVoltage", "boolean:false"))
        mon.wait_change("HighVoltage", "off", since=mark)
        self.assertEqual(self.sim("/state")["hv"], "off")
        # A contactor fault the car reports is mirrored too.
        mark = mon.mark()
        self.car(hv="fault")
        mon.wait_change("HighVoltage", "fault", since=mark)
        mark = mon.mark()
        self.car(hv="off", ignition="off")
        mon.wait_change("HighVoltage", "off", since=mark)

    def test_introspection_matches_shipped_xml(self):
        with open(os.path.join(REPO, "conf", "dbus", "org.tollgate.Power1.xml")) as f:
            shipped = f.read()
        live = self.sb.busctl("introspect", "--xml-interface", *POWER[:2]).stdout
        self.assertEqual(describe_interface(live, POWER[2]), describe_interface(shipped, POWER[2]))
        out = self.sb.busctl("--json=short", "call", POWER[0], POWER[1], "org.freedesktop.DBus.Properties",
                             "GetAll", "s", POWER[2]).stdout
        types = {k: v["type"] for k, v in json.loads(out)["data"][0].items()}
        self.assertEqual(types, {p[1]: p[2] for p in describe_interface(shipped, POWER[2]) if p[0] == "property"})

    def test_set_vehicle_state_needs_a_dbus_source(self):
        # The sandbox's car is on CAN: SetVehicleState has nothing to set (NotFound).
        self.assertIn("No [Source] of Type=dbus is configured", self.set_state_error(("Ignition", "s", "on")))
        self.assertEqual(self.prop("Ignition"), "off")


class PowerHoldTest(PowerTest):
    """Holds, and the power-down after the grace period."""

    def test_killed_holder_disappears_at_once(self):
        mon = self.monitor()
        keeper = self.start_holder("keeper", "stays")
        victim = self.start_holder("victim", "killed with -9")
        self.assertEqual(sorted(self.holds()), [("keeper", "stays"), ("victim", "killed with -9")])
        mark = mon.mark()
        t_kill = time.time()
        os.kill(victim.pid, signal.SIGKILL)  # tollgatectl itself; its sleep lives on
        t_gone, _ = mon.wait_change("Holds", [["keeper", "stays"]], since=mark, timeout=5)
        self.assertLess(t_gone - t_kill, 1.0, "the hold outlived its holder by %.3fs" % (t_gone - t_kill))
        self.assertEqual(self.holds(), [("keeper", "stays")])
        self.assertTrue(self.log_lines(MID_HOLD_RELEASED, "HOLD_WHO=victim"))
        # A holder that ends normally releases too.
        keeper.send_signal(signal.SIGTERM)  # passed on to its command, then the hold ends
        self.assertEqual(keeper.wait(timeout=10), 128 + signal.SIGTERM)
        wait_until("no holds", lambda: self.holds() == [])
        p = subprocess.run([TOLLGATECTL, "hold", "quick", "job", "--", "sh", "-c", "exit 7"], env=self.env(),
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 7, p.stderr)
        self.assertEqual(self.holds(), [])
        # Who and why are checked.
        self.assertEqual(self.pw_error("Hold", "string:", "string:x"), "org.tollgate.Error.InvalidArgument")
        self.assertEqual(self.pw_error("Hold", "string:x", "string:" + "y" * 65),
                         "org.tollgate.Error.InvalidArgument")
        self.assertEqual(self.pw_error("Hold", "string:x", "string:bad\ttab"), "org.tollgate.Error.InvalidArgument")

    def ignition_on_settled(self):
        self.car(ignition="on")
        wait_until("ignition on, nothing pending",
                   lambda: self.prop("Ignition") == "on" and self.prop("PowerDownUsec") == 0)
        time.sleep(0.3)  # a power-down command started before may still be writing its mark

    def test_power_down_after_the_grace_period_and_not_before(self):
        self.assertEqual(self.holds(), [])
        mon = self.monitor()
        self.ignition_on_settled()
        n0 = len(self.marks())
        mark = mon.mark()
        t_off = time.time()
        self.car(ignition="off")
        mon.wait_change("Ignition", "off", since=mark)
        due = wait_until("PowerDownUsec", lambda: self.prop("PowerDownUsec")) / 1e6
        self.assertAlmostEqual(due - t_off, GRACE, delta=0.5)

        # Not before: one second before it is due, nothing has run.
        time.sleep(max(0.0, t_off + GRACE - 1.0 - time.time()))
        self.assertEqual(len(self.marks()), n0, "powered down before the grace period ended")
        self.assertEqual(mon.signals("PoweringDown", mark), [])

        wait_until("the power-down command's mark", lambda: len(self.marks()) == n0 + 1, timeout=GRACE + 5)
        ran = self.marks()[-1]
        self.assertGreaterEqual(ran, due - 0.01)
        self.assertGreaterEqual(ran - t_off, GRACE - 0.05)
        self.assertLess(ran - t_off, GRACE + 2.0)
        # busctl monitor hands the signal over asynchronously: it may come after the mark.
        signals = wait_until("the PoweringDown signal", lambda: mon.signals("PoweringDown", mark))
        self.assertEqual(len(signals), 1)
        self.assertGreaterEqual(signals[0][0], due - 0.01)
        wait_until("PowerDownUsec back to 0", lambda: self.prop("PowerDownUsec") == 0)
        self.assertEqual(len(self.log_lines(MID_POWER_DOWN)), len(self.marks()))

        # Once per off-period: not again while nothing changes...
        time.sleep(GRACE + 1.0)
        self.assertEqual(len(self.marks()), n0 + 1)
        self.assertEqual(len(mon.signals("PoweringDown", mark)), 1)
        # ...and again after a new on/off cycle.
        self.ignition_on_settled()
        t_off = time.time()
        self.car(ignition="off")
        wait_until("the second mark", lambda: len(self.marks()) == n0 + 2, timeout=GRACE + 5)
        self.assertGreaterEqual(self.marks()[-1] - t_off, GRACE - 0.05)

    def test_a_hold_postpones_the_power_down(self):
        self.ignition_on_settled()
        holder = self.start_holder("ota-agent", "flashing task 12")
        n0 = len(self.marks())
        self.car(ignition="off")
        wait_until("Ignition=off", lambda: self.prop("Ignition") == "off")
        self.assertEqual(self.prop("PowerDownUsec"), 0)
        time.sleep(GRACE + 0.5)
        self.assertEqual(len(self.marks()), n0, "powered down while a hold was held")
        t_release = time.time()
        holder.send_signal(signal.SIGTERM)
        holder.wait(timeout=10)
        due = wait_until("PowerDownUsec after the release", lambda: self.prop("PowerDownUsec")) / 1e6
        self.assertAlmostEqual(due - t_release, GRACE, delta=0.5)
        wait_until("the mark", lambda: len(self.marks()) == n0 + 1, timeout=GRACE + 5)
        self.assertGreaterEqual(self.marks()[-1] - t_release, GRACE - 0.05)


class PowerWakeTest(PowerTest):
    """Scheduled and remote wakes: once, across restarts, handed over, timed out."""
    dropin = "[PowerWake]\nWakeHoldTimeout=3s\n"

    def schedule(self, seconds, reason):
        when = int((time.time() + seconds) * 1e6)
        self.call("ScheduleWake", "ts", when, reason)
        ids = [w[0] for w in self.wakes() if w[1] == when and w[2] == reason]
        self.assertEqual(len(ids), 1, self.wakes())
        return ids[0], when / 1e6

    def woken(self, mon, wake_id, since=0):
        return [t for t, (i, _) in mon.signals("Woken", since) if i == wake_id]

    def wakes_file(self):
        with open(self.sb.path("state", "power-wake", "wakes")) as f:
            return f.read()

    def test_scheduled_wake_fires_once_and_is_handed_over(self):
        mon = self.monitor()
        wake_id, when = self.schedule(2.5, "test: fire once")
        self.assertIn("wake %d " % wake_id, self.wakes_file())
        t = wait_until("Woken(%d)" % wake_id, lambda: self.woken(mon, wake_id), timeout=15)[0]
        self.assertGreaterEqual(t, when - 0.01)
        self.assertLess(t - when, 2.0)
        self.assertIn(("power-wake", "wake: test: fire once"), self.holds())
        self.assertNotIn(wake_id, [w[0] for w in self.wakes()])
        self.assertNotIn("wake %d " % wake_id, self.wakes_file())
        self.assertTrue(self.log_lines(MID_WAKE_FIRED))
        # The job takes over: the wake's hold ends; a second answer finds nothing.
        self.call("AcknowledgeWake", "tbs", wake_id, "true", "the job holds power now")
        self.assertNotIn(("power-wake", "wake: test: fire once"), self.holds())
        self.assertEqual(self.pw_error("AcknowledgeWake", "uint64:%d" % wake_id, "boolean:true", "string:again"),
                         "org.tollgate.Error.NotFound")
        time.sleep(0.5)
        self.assertEqual(len(self.woken(mon, wake_id)), 1)

        # Cancelled wakes never fire; unknown ids are NotFound.
        wake_id, when = self.schedule(1.0, "test: cancelled")
        self.call("CancelWake", "t", wake_id)
        self.assertNotIn(wake_id, [w[0] for w in self.wakes()])
        self.assertEqual(self.pw_error("CancelWake", "uint64:%d" % wake_id), "org.tollgate.Error.NotFound")
        time.sleep(max(0.0, when + 1.0 - time.time()))
        self.assertEqual(self.woken(mon, wake_id), [])

    def test_wake_fires_once_across_a_restart_before_it_is_due(self):
        mon = self.monitor()
        wake_id, when = self.schedule(6.0, "test: restart before")
        self.sb.stop("power-wake")
        self.sb.start("power-wake")
        self.assertGreater(when, time.time(), "the restart took too long for this test")
        self.assertIn(wake_id, [w[0] for w in self.wakes()])
        wait_until("Woken(%d)" % wake_id, lambda: self.woken(mon, wake_id), timeout=15)
        self.assertGreaterEqual(self.woken(mon, wake_id)[0], when - 0.01)
        self.call("AcknowledgeWake", "tbs", wake_id, "false", "conditions do not hold")
        # Restarted after it fired: it does not fire again.
        self.sb.kill("power-wake")
        self.sb.start("power-wake")
        time.sleep(1.0)
        self.assertEqual(len(self.woken(mon, wake_id)), 1)
        self.assertNotIn(wake_id, [w[0] for w in self.wakes()])

    def test_overdue_wake_fires_once_at_start(self):
        mon = self.monitor()
        wake_id, when = self.schedule(1.5, "test: overdue")
        self.sb.kill("power-wake")  # -9: no goodbye
        time.sleep(max(0.0, when + 0.5 - time.time()))
        self.assertEqual(self.woken(mon, wake_id), [])
        self.sb.start("power-wake")
        wait_until("Woken(%d) at start" % wake_id, lambda: self.woken(mon, wake_id), timeout=15)
        self.assertIn(("power-wake", "wake: test: overdue"), self.holds())
        self.call("AcknowledgeWake", "tbs", wake_id, "true", "taken over")
        self.sb.stop("power-wake")
        self.sb.start("power-wake")
        time.sleep(1.0)
        self.assertEqual(len(self.woken(mon, wake_id)), 1)

    def test_unanswered_wake_hold_times_out(self):
        mon = self.monitor()
        mark = mon.mark()
        t0 = time.time()
        self.call("RequestWake", "s", "modem: remote unlock")
        (t, (wake_id, reason)), = wait_until("Woken", lambda: mon.signals("Woken", mark))
        self.assertEqual(reason, "modem: remote unlock")
        self.assertIn(("power-wake", "wake: modem: remote unlock"), self.holds())
        wait_until("the wake's hold to time out",
                   lambda: ("power-wake", "wake: modem: remote unlock") not in self.holds(), timeout=10)
        self.assertGreaterEqual(time.time() - t0, 3.0 - 0.1)  # WakeHoldTimeout=3s
        self.assertTrue(self.log_lines(MID_WAKE_TIMED_OUT, "WAKE_ID=%d" % wake_id))
        self.assertEqual(self.pw_error("AcknowledgeWake", "uint64:%d" % wake_id, "boolean:true", "string:late"),
                         "org.tollgate.Error.NotFound")


class PowerBadInputTest(PowerTest):
    """Bad configurations, garbage on the bus, unprivileged callers."""

    BAD = [
        # (what, file text, line, text in the message)
        ("unknown source type", "[Source body]\nType=serial\nBus=can0\n", 2, "Type=serial"),
        ("impossible CAN id", "[Source body]\nType=can\nBus=can0\n\n[Signal Ignition]\nSource=body\nFrameId=0x800\n",
         7, "FrameId=0x800"),
        ("impossible extended CAN id",
         "[Source body]\nType=can\nBus=can0\n\n[Signal Gear]\nSource=body\nExtended=yes\nFrameId=0x20000000\n",
         8, "FrameId=0x20000000"),
        ("bit range past the frame",
         "[Source body]\nType=can\nBus=can0\n\n[Signal Speed]\nSource=body\nStartBit=60\nLength=8\n", None,
         "runs past the 8-byte frame"),
        ("source that does not exist", "[Source body]\nType=can\nBus=can0\n\n[Signal Ignition]\nSource=engine\n",
         6, "Source=engine"),
        ("signal without a source", "[Signal Ignition]\nFrameId=0x3C0\n", 1, "Source="),
    ]

    def run_daemon(self, path):
        return subprocess.run([DAEMON, "--config=" + path, "--log-target=console"], capture_output=True, text=True,
                              env=dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.sb.bus), timeout=30)

    def test_bad_configurations_exit_78_naming_the_line(self):
        with tempfile.TemporaryDirectory(prefix="tg-pwconf-") as d:
            for what, text, line, needle in self.BAD:
                path = os.path.join(d, "power-wake.conf")
                with open(path, "w") as f:
                    f.write(text)
                p = self.run_daemon(path)
                self.assertEqual(p.returncode, 78, "%s: %s" % (what, p.stderr))
                err = [l for l in p.stderr.splitlines() if MID_CONFIG_REJECTED in l]
                self.assertEqual(len(err), 1, "%s: %s" % (what, p.stderr))
                self.assertRegex(err[0], r"%s:%s: " % (re.escape(path), line or r"\d+"), what)
                self.assertIn(needle, err[0], what)
        # The daemon in the sandbox was not disturbed (they could not take its name anyway).
        self.assertEqual(self.prop("Ignition"), "off")

    def test_reload_keeps_the_running_configuration(self):
        n_rejected = len(self.log_lines(MID_CONFIG_REJECTED))
        self.write_power_dropin("[Signal Ignition]\nSource=body\nFrameId=0x800\n", "70-bad.conf")
        try:
            self.assertEqual(self.pw_error("Reload"), "org.tollgate.Error.InvalidConfig")
            os.kill(self.sb.pid("power-wake"), signal.SIGHUP)  # the same path, by signal
            wait_until("two rejections", lambda: len(self.log_lines(MID_CONFIG_REJECTED)) == n_rejected + 2)
        finally:
            self.remove_power_dropin("70-bad.conf")
        for line in self.log_lines(MID_CONFIG_REJECTED)[n_rejected:]:
            self.assertIn("70-bad.conf:3", line)
            self.assertIn("FrameId=0x800", line)
        # Still the old configuration (Ignition on 0x3C0) and still serving.
        self.assert_serving()
        # A good configuration is taken.
        n_reloaded = len(self.log_lines(MID_CONFIG_RELOADED))
        self.write_power_dropin("[PowerWake]\nGracePeriod=4s\n", "70-good.conf")
        try:
            self.assertIsNone(self.pw_error("Reload"))
        finally:
            self.remove_power_dropin("70-good.conf")
        self.assertEqual(len(self.log_lines(MID_CONFIG_RELOADED)), n_reloaded + 1)
        self.assertIsNone(self.pw_error("Reload"))
        self.assert_serving()

    def test_garbage_frames_are_logged_and_the_daemon_keeps_serving(self):
        pid = self.sb.pid("power-wake")
        n0 = len(self.log_lines(MID_SOURCE_GARBAGE))
        bus = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.addCleanup(bus.close)
        bus.connect(self.sb.path("run", "can0.sock"))
        garbage = [
            b"\x01\x02\x03\x04\x05",                              # not a frame at all
            can_frame(0x3C0, b"\x02") + b"\x00",                  # 17 bytes
            can_frame(0x3C0, b"\x02", length=9),                  # len past a classic frame
            can_frame(0x900, b"\x02"),                            # an 11-bit id above 0x7FF
            struct.pack("<IBB2x64s", 0x3C0, 13, 0x04, b"\x02"),   # CAN FD with a len FD cannot have
            can_frame(0x3C0, b""),                                # Ignition's frame, too short for it
            b"\xff" * 72,
        ]
        for _ in range(50):
            for g in garbage:
                bus.send(g)
        wait_until("a garbage warning", lambda: len(self.log_lines(MID_SOURCE_GARBAGE)) > n0)
        time.sleep(0.5)
        # Rate-limited: a flood is one line (or two), not 350.
        self.assertLessEqual(len(self.log_lines(MID_SOURCE_GARBAGE)) - n0, 2)
        self.assertEqual(self.sb.pid("power-wake"), pid)
        os.kill(pid, 0)
        self.assertEqual(self.prop("Ignition"), "off")
        # A valid frame among them still counts (the car repeats its own
        # state right after: the change shows on the bus).
        mon = self.monitor()
        mark = mon.mark()
        bus.send(can_frame(0x3C0, b"\x01"))
        mon.wait_change("Ignition", "acc", since=mark)
        self.assert_serving()

    @unittest.skipUnless(os.geteuid() == 0, "needs root to act as another user")
    def test_unprivileged_callers_are_denied_by_the_policy(self):
        # Like /run/dbus/system_bus_socket: anyone may connect; the policy decides.
        for d in (self.sb.dir, self.sb.path("run")):
            os.chmod(d, 0o755)
        holds, wakes = self.holds(), self.wakes()
        calls = [("Hold", "ss", ["nobody", "sneaky"]),
                 ("ScheduleWake", "ts", [int(time.time() * 1e6) + 10 ** 7, "sneaky"]),
                 ("CancelWake", "t", [1]),
                 ("RequestWake", "s", ["sneaky"]),
                 ("AcknowledgeWake", "tbs", [1, "true", "sneaky"]),
                 ("RequestHighVoltage", "b", ["true"]),
                 ("SetVehicleState", "a{sv}", [1, "Ignition", "s", "on"]),
                 ("Reload", "", [])]
        for method, sig, args in calls:
            p = self.sb.call(method, sig, *args, obj=POWER, user=NOBODY, check=False)
            self.assertNotEqual(p.returncode, 0, method)
            self.assertIn("denied", p.stderr.lower(), "%s: %s" % (method, p.stderr))
        self.assertEqual((self.holds(), self.wakes()), (holds, wakes))
        self.assertEqual(self.log_lines("sneaky"), [])
        # Reading is for everyone: Get, GetAll, Introspect.
        p = self.sb.busctl("get-property", *POWER, "Ignition", user=NOBODY)
        self.assertEqual(p.stdout.strip(), 's "%s"' % self.prop("Ignition"))
        p = self.sb.busctl("--json=short", "call", POWER[0], POWER[1], "org.freedesktop.DBus.Properties",
                           "GetAll", "s", POWER[2], user=NOBODY)
        self.assertIn("Holds", json.loads(p.stdout)["data"][0])
        p = self.sb.busctl("introspect", *POWER[:2], user=NOBODY)
        self.assertIn(".Hold", p.stdout)
        # root may.
        self.assertIsNone(self.pw_error("RequestWake", "string:root may"))


class PowerDbusSourceTest(PowerTest):
    """The other source types: a Type=dbus source (the simulator calls
    SetVehicleState()) for most signals, a Type=file source for the battery
    voltage (the simulator writes the file), and the HighVoltage command
    still over CAN (a source of its own)."""

    @classmethod
    def setUpClass(cls):
        cls.dropin = ("[Source body]\nType=dbus\n\n[Source hv]\nType=can\nBus=unix:%s\n\n"
                      "[Command HighVoltage]\nSource=hv\n\n"
                      "[Source battery]\nType=file\nPath=%s\n\n[Signal BatteryVoltage]\nSource=battery\n")
        # The folder is known only once the sandbox exists.
        cls.sb = Sandbox()
        cls.dropin %= (cls.sb.path("run", "can0.sock"), cls.sb.path("run", "battery"))
        cls.write_power_dropin(cls.dropin)
        cls.sb.up()
        cls.vehicle = cls.sb.env["VEHICLE_CONTROL"]
        wait_until("power-wake to know the ignition", lambda: cls.prop("Ignition") == "off")

    def test_the_simulator_sets_the_state_over_dbus(self):
        stats = self.sim("/stats")
        self.assertTrue(stats["dbus"])
        self.assertEqual((stats["frames_per_cycle"], stats["files"]), (0, 1))
        self.car(ignition="on", gear="D", speed=12.5, battery=13.1)
        wait_until("the state over D-Bus and from the file",
                   lambda: (self.prop("Ignition"), self.prop("Parked"), self.prop("Speed"),
                            self.prop("BatteryVoltage")) == ("on", False, 12.5, 13.1))
        # The file holds the raw value (Scale=0.001 of the reference vehicle).
        with open(self.sb.path("run", "battery")) as f:
            self.assertEqual(f.read(), "13100\n")
        self.assertEqual(self.sim("/stats")["dbus_errors"], 0)
        # The daemon restarts: the simulator tells it the state again.
        self.sb.stop("power-wake")
        self.sb.start("power-wake")
        wait_until("the state again", lambda: self.prop("Ignition") == "on" and self.prop("Speed") == 12.5)
        # Its input is checked.
        for entry, message in ((("Ignition", "s", "maybe"), '"maybe" is not a state of Ignition'),
                               (("Speed", "s", "fast"), 'Speed is a double, not "s"'),
                               (("Warp", "s", "9"), 'Unknown signal "Warp"'),
                               (("Speed", "d", "-1"), "Speed must be a number from 0 to 1000")):
            self.assertIn(message, self.set_state_error(entry))
        # All or nothing: a bad entry sets none of the others.
        self.assertIn("not a state", self.set_state_error(("Speed", "d", "99"), ("Gear", "s", "X")))
        self.assertEqual((self.prop("Ignition"), self.prop("Speed")), ("on", 12.5))
        # High voltage: the command goes over CAN, the contactors come back over D-Bus.
        self.car(gear="P", speed=0)
        wait_until("parked", lambda: self.prop("Parked"))
        self.assertIsNone(self.pw_error("RequestHighVoltage", "boolean:true"))
        wait_until("HighVoltage=on", lambda: self.prop("HighVoltage") == "on")
        self.assertEqual(self.sim("/state")["hv"], "on")
        self.car(ignition="off")
        wait_until("Ignition=off", lambda: self.prop("Ignition") == "off")


if __name__ == "__main__":
    unittest.main(verbosity=2)
