#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Integration tests of tollgatectl: the real CLI against the real classifier
in the sandbox (private dbus-daemon, TSP simulator over mutual TLS). Every
command's human and --json output is checked against what the daemon itself
says (busctl, the outbox file), and so are the exit statuses: 1 for a D-Bus
error (its name printed), 2 for a usage error, 3 when the daemon is not running.

One sandbox per class; tests compare before/after figures, so their order
does not matter."""

import base64
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tglib import BUILD, KEYSYNC, Sandbox, wait_until  # noqa: E402

POWER = ("org.tollgate.Power1", "/org/tollgate/Power1", "org.tollgate.Power1")

TOLLGATECTL = os.environ.get("TOLLGATECTL", os.path.join(BUILD, "tools", "tollgatectl", "tollgatectl"))
CLIENT = "TG-SANDBOX-0001"  # the sandbox gateway's certificate CN (tools/tollgate-pki)
STABLE_KEYS = ["Uplink", "RealtimeSent", "RealtimeBacklog", "CellularBytes", "DeferredQueued", "DeferredBytes",
               "RecordsAccepted", "RecordsRejected", "AcceptedBytes", "RealtimeRejected", "DeferredEvicted",
               "BacklogEvicted", "DownlinkQueued"]
SERVICES = [("classifier", "org.tollgate.Classifier1"), ("key-sync", "org.tollgate.KeySync1"),
            ("ota-agent", "org.tollgate.Ota1"), ("power-wake", "org.tollgate.Power1")]


def record_size(topic, payload):
    return 22 + len(topic) + len(payload)  # TGR1, what AcceptedBytes counts


class LineReader:
    """Lines of a running process's stdout, with a timeout (watch never ends by itself)."""

    def __init__(self, proc):
        self.proc = proc
        self.buf = b""

    def line(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no line from %s within %.0fs (have %r)" % (self.proc.args, timeout, self.buf))
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise AssertionError("%s ended: %r, stderr %r" % (self.proc.args, self.buf,
                                                                       self.proc.stderr.read()))
                self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def until(self, what, predicate, timeout=10.0):
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s in %r" % (what, seen))
            line = self.line(left)
            seen.append(line)
            if predicate(line):
                return line

    def until_event(self, event, timeout=10.0):
        return json.loads(self.until(event, lambda l: json.loads(l)["event"] == event, timeout))

    def until_state(self, state, what, predicate, timeout=10.0):
        """Merge the properties of --json events into `state` until predicate(state)."""
        def merge(line):
            state.update(json.loads(line).get("properties") or {})
            return predicate(state)
        self.until(what, merge, timeout)


class CtlTest(unittest.TestCase):
    dropin = None

    @classmethod
    def setUpClass(cls):
        cls.sb = Sandbox(cls.dropin).up()

    @classmethod
    def tearDownClass(cls):
        reports = cls.sb.down()
        if reports:
            raise AssertionError("sanitizer reports in the daemons' logs (kept in %s): %s" % (cls.sb.dir, reports))

    def env(self):
        return dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.sb.bus, LC_ALL="C.UTF-8")

    def ctl(self, *args, rc=0, input=None):
        p = subprocess.run([TOLLGATECTL] + list(args), capture_output=True, input=input, env=self.env(),
                           timeout=60)
        out, err = p.stdout.decode(), p.stderr.decode()
        if rc is not None:
            self.assertEqual(p.returncode, rc, "tollgatectl %s: exit %d, stdout %r, stderr %r\n%s" %
                             (" ".join(args), p.returncode, out, err, self.sb.logs("classifier")))
        return out, err

    def ctl_json(self, *args, rc=0):
        out, _ = self.ctl("--json", *args, rc=rc)
        self.assertEqual(out.count("\n"), 1, "--json prints one line: %r" % out)
        return json.loads(out)

    def status_props(self):
        st = self.ctl_json("status")
        return st["services"][0]["properties"]

    def assert_bus_error(self, err, name):
        self.assertRegex(err, r"^tollgatectl: %s: \S" % name.replace(".", r"\."), err)
        self.assertEqual(err.count("\n"), 1, err)

    def submit(self, topic, payload=b""):
        out, _ = self.ctl("submit", topic, "-", input=payload)
        return out.strip()

    def start_watch(self, *args):
        proc = subprocess.Popen([TOLLGATECTL, "watch"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=self.env())
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        self.addCleanup(proc.stderr.close)
        self.addCleanup(proc.stdout.close)
        return proc, LineReader(proc)

    def stop_watch(self, proc):
        proc.send_signal(signal.SIGINT)
        self.assertEqual(proc.wait(timeout=10), 0, proc.stderr.read())


class CtlReadTest(CtlTest):
    def test_help_version_and_usage_errors(self):
        out, _ = self.ctl("--help")
        for cmd in ("status", "classify", "submit", "reload", "outbox", "downlink", "downlink-ack", "watch",
                    "sync", "keys", "pair", "pair-password", "unpair", "holds", "hold", "wakes", "wake-at",
                    "wake-cancel", "wake-now", "hv", "--json", "--no-legend", "--address"):
            self.assertIn(cmd, out)
        out, _ = self.ctl("--version")
        self.assertRegex(out, r"^tollgatectl \d+\.\d+\.\d+\n$")
        for args in (["frobnicate"], ["classify"], ["classify", "a", "b"], ["status", "extra"], ["--bogus"],
                     ["--json=yaml", "status"], ["downlink", "--max=0"], ["downlink", "--max=1001"],
                     ["downlink-ack"], ["downlink-ack", "12x"], ["submit", "--timestamp=soon", "a.b"],
                     ["reload", "nosuchdaemon"], ["reload", "ota-agent"], ["watch", "nosuchdaemon"],
                     ["pair"], ["unpair", "a", "b"], ["keys", "x"], ["sync", "now"], ["pair-password"],
                     ["holds", "x"], ["hold", "who", "why"], ["wakes", "x"], ["wake-at", "+1h"],
                     ["wake-at", "soon", "reason"], ["wake-at", "+forever", "r"], ["wake-at", "2030-02-30T00:00", "r"],
                     ["wake-at", "@x", "r"], ["wake-cancel"], ["wake-cancel", "first"], ["wake-cancel", "0"],
                     ["wake-now"], ["hv"], ["hv", "maybe"], ["hv", "on", "off"]):
            out, err = self.ctl(*args, rc=2)
            self.assertEqual(out, "", args)
            self.assertTrue(err.startswith("tollgatectl: ") or "tollgatectl" in err, (args, err))

    def test_status_matches_the_daemon(self):
        props = self.sb.props()
        st = self.ctl_json("status")
        self.assertEqual([(s["service"], s["bus_name"]) for s in st["services"]], SERVICES)
        cl = st["services"][0]
        self.assertTrue(cl["running"])
        self.assertEqual(cl["object"], "/org/tollgate/Classifier1")
        self.assertEqual(cl["pid"], self.sb.pid("classifier"))
        self.assertEqual({k: cl["properties"][k] for k in STABLE_KEYS}, {k: props[k] for k in STABLE_KEYS})
        ks = st["services"][1]
        self.assertEqual((ks["running"], ks["pid"]), (True, self.sb.pid("key-sync")))
        self.assertEqual(ks["properties"], self.sb.props(KEYSYNC))
        for s in st["services"][2:3]:  # not built yet: absent from the bus
            self.assertEqual((s["running"], s["activatable"], s["pid"], s["properties"]),
                             (False, False, None, None))
        pw = st["services"][3]
        self.assertEqual((pw["running"], pw["pid"]), (True, self.sb.pid("power-wake")))
        self.assertEqual(sorted(pw["properties"]), sorted(self.sb.props(POWER)))

        out, _ = self.ctl("status")
        self.assertRegex(out, r"(?m)^SERVICE +BUS NAME +STATE$")
        self.assertRegex(out, r"(?m)^classifier +org\.tollgate\.Classifier1 +running \(pid %d\)$" %
                         self.sb.pid("classifier"))
        self.assertRegex(out, r"(?m)^key-sync +org\.tollgate\.KeySync1 +running \(pid %d\)$" % self.sb.pid("key-sync"))
        for name, bus in SERVICES[2:3]:
            self.assertRegex(out, r"(?m)^%s +%s +not installed/not running$" % (name, bus.replace(".", r"\.")))
        self.assertRegex(out, r"(?m)^power-wake +org\.tollgate\.Power1 +running \(pid %d\)$" % self.sb.pid("power-wake"))
        self.assertRegex(out, r"(?m)^ +Uplink: online$")
        self.assertRegex(out, r"(?m)^ +Real-time: %d sent, %d in backlog" %
                         (props["RealtimeSent"], props["RealtimeBacklog"]))
        self.assertRegex(out, r"(?m)^ +Outbox: %d records, " % props["DeferredQueued"])
        self.assertRegex(out, r"(?m)^ +Records: %d accepted \(.*\), %d rejected$" %
                         (props["RecordsAccepted"], props["RecordsRejected"]))
        self.assertRegex(out, r"(?m)^ +Downlink: %d queued$" % props["DownlinkQueued"])
        self.assertRegex(out, r"(?m)^ +Cellular: \d+(\.\d[KMG]|B)$")
        # No verb is status; --no-legend drops the header; pretty JSON is the same object.
        self.assertEqual(self.ctl()[0].splitlines()[0], out.splitlines()[0])
        self.assertNotIn("BUS NAME", self.ctl("status", "--no-legend")[0])
        pretty, _ = self.ctl("status", "--json=pretty")
        self.assertGreater(pretty.count("\n"), 10)
        self.assertEqual([s["service"] for s in json.loads(pretty)["services"]], [s for s, _ in SERVICES])

    def test_classify_matches_the_daemon(self):
        for topic in ("vehicle.speed", "fault.alarm.brake", "analytics.driving.behaviour", "some.unknown.topic"):
            live = json.loads(self.sb.call("Classify", "s", topic).stdout)["data"]
            got = self.ctl_json("classify", topic)
            self.assertEqual(got, {"topic": topic, "class": live[0], "priority": live[1], "ttl_usec": live[2],
                                   "rule": live[3] or None})
        out, _ = self.ctl("classify", "vehicle.speed")
        self.assertRegex(out, r"(?m)^ *Class: realtime$")
        self.assertRegex(out, r"(?m)^ *Priority: 1$")
        self.assertRegex(out, r"(?m)^ *Time to live: 1h$")
        self.assertRegex(out, r"(?m)^ *Rule: speed$")
        out, _ = self.ctl("classify", "some.unknown.topic")
        self.assertRegex(out, r"(?m)^ *Time to live: 30d$")
        self.assertRegex(out, r"(?m)^ *Rule: \(none")

    def test_bad_topic_is_a_dbus_error(self):
        _, err = self.ctl("classify", "bad topic", rc=1)
        self.assert_bus_error(err, "org.tollgate.Error.InvalidTopic")
        out, err = self.ctl("--json", "classify", "..", rc=1)
        self.assertEqual(out, "")
        self.assert_bus_error(err, "org.tollgate.Error.InvalidTopic")

    def test_outbox_matches_the_daemon(self):
        self.submit("ops.preferences", b"outbox-check")
        props = self.sb.props()
        got = self.ctl_json("outbox")
        self.assertEqual(got, [{"service": "classifier", "running": True, "records": props["DeferredQueued"],
                                "bytes": props["DeferredBytes"]}])
        out, _ = self.ctl("outbox")
        self.assertRegex(out, r"^SERVICE +RECORDS +BYTES\nclassifier +%d +\S+\n$" % props["DeferredQueued"])
        out, _ = self.ctl("outbox", "--no-legend")
        self.assertRegex(out, r"^classifier +%d +\S+\n$" % props["DeferredQueued"])


class CtlWriteTest(CtlTest):
    def test_submit_shows_in_status_and_in_the_outbox(self):
        before = self.status_props()
        records = [("ops.preferences.tollgatectl", b"from an argument", "deferred"),
                   ("vehicle.speed", b"speed via tollgatectl", "realtime"),
                   ("ops.hmi.tollgatectl", bytes(range(256)) + b"\x00binary from stdin", "deferred")]
        out, _ = self.ctl("submit", records[0][0], records[0][1].decode())
        self.assertEqual(out, "deferred\n")
        out, _ = self.ctl("submit", records[1][0], records[1][1].decode())
        self.assertEqual(out, "realtime\n")
        got = json.loads(self.ctl("--json", "submit", records[2][0], "-", input=records[2][1])[0])
        self.assertEqual((got["topic"], got["size"], got["class"]), (records[2][0], len(records[2][1]), "deferred"))
        self.assertAlmostEqual(got["timestamp_usec"] / 1e6, time.time(), delta=60)
        self.assertEqual(self.ctl("submit", "ops.empty.tollgatectl")[0], "deferred\n")  # no payload: empty
        records.append(("ops.empty.tollgatectl", b"", "deferred"))

        # Submit answers after the commit: the figures are already there.
        after = self.status_props()
        self.assertEqual(after["RecordsAccepted"], before["RecordsAccepted"] + 4)
        self.assertEqual(after["AcceptedBytes"],
                         before["AcceptedBytes"] + sum(record_size(t, p) for t, p, _ in records))
        self.assertEqual(after["DeferredQueued"], before["DeferredQueued"] + 3)
        self.assertGreater(after["DeferredBytes"], before["DeferredBytes"])
        stored = {(topic, payload) for _, _, topic, payload, _ in self.sb.outbox_records()}
        for topic, payload, cls in records:
            if cls == "deferred":
                self.assertIn((topic, payload), stored)
        wait_until("the real-time record at the TSP",
                   lambda: any(r[2] == "vehicle.speed" and r[3] == records[1][1] for r in self.sb.tsp_records()))

        out, _ = self.ctl("status")
        self.assertRegex(out, r"(?m)^ +Records: %d accepted" % after["RecordsAccepted"])
        self.assertRegex(out, r"(?m)^ +Outbox: %d records" % after["DeferredQueued"])

    def test_submit_timestamp_option(self):
        self.ctl("submit", "--timestamp=1714550400000000", "ops.stamped.tollgatectl", "x")
        rows = [r for r in self.sb.outbox_records() if r[2] == "ops.stamped.tollgatectl"]
        self.assertEqual([r[1] for r in rows], [1714550400000000])

    def test_refused_submits_are_dbus_errors(self):
        before = self.sb.prop("RecordsRejected")
        _, err = self.ctl("submit", "no spaces allowed", "x", rc=1)
        self.assert_bus_error(err, "org.tollgate.Error.InvalidTopic")
        _, err = self.ctl("submit", "ops.too.large", "-", input=b"x" * (17 * 1024), rc=1)  # MaxPayloadSize=16K
        self.assert_bus_error(err, "org.tollgate.Error.PayloadTooLarge")
        self.assertEqual(self.sb.prop("RecordsRejected"), before + 2)
        self.assertEqual(self.status_props()["RecordsRejected"], before + 2)

    def test_reload(self):
        self.assertEqual(self.ctl("reload"), ("", ""))
        self.assertEqual(self.ctl("reload", "classifier"), ("", ""))
        self.assertEqual(self.ctl_json("reload"),
                         {"reloaded": True, "services": ["classifier", "key-sync", "power-wake"]})
        # A new rule takes effect; a bad file is refused and the running rules stay.
        self.sb.write_dropin("[Rule ctl]\nMatch=ctl.test.*\nClass=realtime\nPriority=2\n", "70-ctl.conf")
        try:
            self.ctl("reload")
            self.assertEqual(self.ctl_json("classify", "ctl.test.a")["rule"], "ctl")
            self.sb.write_dropin("[Rule ctl]\nClass=sometimes\n", "71-bad.conf")
            _, err = self.ctl("reload", rc=1)
            self.assert_bus_error(err, "org.tollgate.Error.InvalidConfig")
            out, err = self.ctl("--json", "reload", rc=1)
            self.assertEqual(json.loads(out),
                             {"reloaded": False, "services": ["classifier", "key-sync", "power-wake"]})
            self.assertEqual(self.ctl_json("classify", "ctl.test.a")["class"], "realtime")
        finally:
            self.sb.remove_dropin("71-bad.conf")
            self.sb.remove_dropin("70-ctl.conf")
            self.ctl("reload")
        self.assertIsNone(self.ctl_json("classify", "ctl.test.a")["rule"])

    def test_downlink_list_filter_and_acknowledge(self):
        waiting = [str(r["id"]) for r in self.ctl_json("downlink")]
        if waiting:  # a clean inbox
            self.ctl("downlink-ack", *waiting)
        q = [self.sb.tsp("/downlink?client=%s&topic=%s" % (CLIENT, topic), body)["id"]
             for topic, body in (("cloud/voice.answer", b"answer: 42"), ("cloud/poi.update", b"\x00\x01\xfe\xff"),
                                 ("cloud/voice.answer", "导航到充电站".encode()))]
        self.submit("voice.query", b"what is the answer?")  # real-time traffic carries it home
        wait_until("downlink stored", lambda: self.status_props()["DownlinkQueued"] == 3)

        got = self.ctl_json("downlink")
        self.assertEqual([(r["id"], r["topic"]) for r in got],
                         [(q[0], "cloud/voice.answer"), (q[1], "cloud/poi.update"), (q[2], "cloud/voice.answer")])
        self.assertEqual([base64.b64decode(r["payload_base64"]) for r in got],
                         [b"answer: 42", b"\x00\x01\xfe\xff", "导航到充电站".encode()])
        self.assertEqual([r["payload_text"] for r in got], ["answer: 42", None, "导航到充电站"])
        self.assertEqual([r["size"] for r in got], [10, 4, len("导航到充电站".encode())])
        live = json.loads(self.sb.call("FetchDownlink", "stu", "", 0, 100).stdout)["data"][0]
        self.assertEqual([r["timestamp_usec"] for r in got], [r[2] for r in live])

        out, _ = self.ctl("downlink")
        lines = out.splitlines()
        self.assertRegex(lines[0], r"^ID +TIME +TOPIC +SIZE +PAYLOAD$")
        self.assertRegex(lines[1], r"^%d +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} +cloud/voice\.answer +10 +answer: 42$"
                         % q[0])
        self.assertRegex(lines[2], r"cloud/poi\.update +4 +\\x00\\x01\\xfe\\xff$")
        self.assertTrue(lines[3].endswith("导航到充电站"), lines[3])
        self.assertEqual(lines[-1], "3 downlink records.")

        self.assertEqual([r["id"] for r in self.ctl_json("downlink", "cloud/voice.*")], [q[0], q[2]])
        out, _ = self.ctl("downlink", "cloud/voice.*", "--no-legend")
        self.assertEqual(len(out.splitlines()), 2)
        self.assertEqual(self.ctl_json("downlink", "nothing/*"), [])
        self.assertEqual(self.ctl("downlink", "nothing/*")[0], "0 downlink records matching nothing/*.\n")
        out, _ = self.ctl("downlink", "--max=1")
        self.assertIn("At most 1 are listed", out)
        self.assertEqual([r["id"] for r in self.ctl_json("downlink", "--max=1")], [q[0]])

        out, _ = self.ctl("downlink-ack", str(q[0]), str(q[1]), "999999")
        self.assertEqual(out, "Deleted 2 of 3 downlink records.\n")
        self.assertEqual(self.ctl_json("downlink-ack", str(q[0]), str(q[2])), {"requested": 2, "deleted": 1})
        self.assertEqual(self.ctl_json("downlink"), [])
        self.assertEqual(self.sb.prop("DownlinkQueued"), 0)


class CtlWatchTest(CtlTest):
    def test_watch_prints_changes(self):
        proc, lines = self.start_watch("--json")
        first = json.loads(lines.line())
        self.assertEqual((first["service"], first["event"]), ("classifier", "state"))
        accepted = first["properties"]["RecordsAccepted"]
        self.assertEqual(first["properties"]["Uplink"], "online")

        self.submit("ops.preferences", b"watch me")
        line = lines.until("RecordsAccepted=%d" % (accepted + 1),
                           lambda l: json.loads(l).get("properties", {}).get("RecordsAccepted") == accepted + 1)
        ev = json.loads(line)
        self.assertEqual((ev["service"], ev["event"], ev["invalidated"]), ("classifier", "changed", []))
        self.assertAlmostEqual(ev["time_usec"] / 1e6, time.time(), delta=60)
        state = dict(first["properties"], **ev["properties"])
        if state["DeferredQueued"] != first["properties"]["DeferredQueued"] + 1:
            lines.until_state(state, "the record in the outbox",
                              lambda st: st["DeferredQueued"] == first["properties"]["DeferredQueued"] + 1)
        # What watch has shown adds up to what the daemon has (CellularBytes is
        # sampled when a signal goes out, so it may lead the last one).
        live = self.sb.props()
        self.assertEqual({k: state[k] for k in STABLE_KEYS if k != "CellularBytes"},
                         {k: live[k] for k in STABLE_KEYS if k != "CellularBytes"})

        # The cloud → car signal is followed too.
        self.sb.tsp("/downlink?client=%s&topic=cloud/watch" % CLIENT, b"hello car")
        self.submit("vehicle.speed", b"1")
        ev = lines.until_event("downlink-received")
        self.assertGreaterEqual(ev["count"], 1)
        self.stop_watch(proc)

        proc, lines = self.start_watch()
        self.assertRegex(lines.line(), r"^\d\d:\d\d:\d\d\.\d{3} classifier +RealtimeSent=\d+ .*Uplink=online")
        self.submit("ops.preferences", b"watch me too")
        line = lines.until("a change", lambda l: "RecordsAccepted=" in l)
        self.assertRegex(line, r"^\d\d:\d\d:\d\d\.\d{3} classifier +\S+=")
        self.stop_watch(proc)

    def test_daemon_not_running(self):
        proc, lines = self.start_watch("--json", "classifier")
        self.assertEqual(json.loads(lines.line())["event"], "state")
        self.sb.stop("classifier")
        try:
            lines.until_event("stopped")  # after the last PropertiesChanged of the stopping daemon
            for args in (["classify", "vehicle.speed"], ["submit", "vehicle.speed", "x"], ["reload"],
                         ["reload", "classifier"], ["outbox"], ["downlink"], ["downlink-ack", "1"]):
                out, err = self.ctl(*args, rc=3)
                self.assertRegex(err, r"^tollgatectl: org\.freedesktop\.DBus\.Error\.(ServiceUnknown|NameHasNoOwner): ",
                                 args)
            self.assertEqual(self.ctl_json("outbox", rc=3),
                             [{"service": "classifier", "running": False, "records": None, "bytes": None}])
            # status reports; it does not fail.
            st = self.ctl_json("status")
            self.assertEqual([s["running"] for s in st["services"]], [False, True, False, True])
            self.assertIsNone(st["services"][0]["properties"])
            out, _ = self.ctl("status")
            self.assertRegex(out, r"(?m)^classifier +org\.tollgate\.Classifier1 +not installed/not running$")
            self.assertNotIn("Uplink", out)
            # A fresh watch says so, and waits.
            proc2, lines2 = self.start_watch()
            self.assertRegex(lines2.line(), r"^\d\d:\d\d:\d\d\.\d{3} classifier +not running$")
        finally:
            self.sb.start("classifier")
        ev = lines.until_event("started")
        self.assertEqual(ev["owner"][:1], ":")
        ev = json.loads(lines.line())
        self.assertEqual((ev["event"], ev["properties"]["RecordsAccepted"]), ("state", 0))
        lines2.until("classifier started", lambda l: re.search(r"classifier +started \(:", l))
        self.stop_watch(proc)
        self.stop_watch(proc2)
        self.assertEqual(self.ctl("classify", "vehicle.speed", "--json", rc=0)[1], "")


class CtlKeySyncTest(CtlTest):
    """The key-sync commands against the daemon's own PairedKeys and the
    sandbox's key relay (tollgate-sandbox key DIR car)."""

    def paired(self):
        return self.sb.prop("PairedKeys", obj=KEYSYNC)

    def test_pair_password_list_and_unpair(self):
        self.assertEqual(self.ctl_json("keys"), [{"key_id": k, "present": False} for k in self.paired()])
        _, err = self.ctl("pair-password", "phone-7", input=b"short\n", rc=2)
        self.assertIn("at least 8", err)
        self.assertEqual(self.ctl("pair-password", "phone-7", input=b"correct horse\n")[1], "")
        self.assertIn("phone-7", self.paired())
        out, _ = self.ctl("keys")
        self.assertRegex(out, r"(?m)^phone-7 +-$")
        self.assertRegex(out, r"(?m)^%d paired keys\.$" % len(self.paired()))
        # The pairing is in the daemon's state, readable by root only.
        pairing = self.sb.path("state", "key-sync", "pairing.conf")
        self.assertEqual(os.stat(pairing).st_mode & 0o077, 0)
        with open(pairing) as f:
            self.assertIn("phone-7", f.read())

        self.assertEqual(self.ctl_json("unpair", "phone-7"), {"key_id": "phone-7", "unpaired": True})
        self.assertNotIn("phone-7", self.paired())
        _, err = self.ctl("unpair", "phone-7", rc=1)
        self.assert_bus_error(err, "org.tollgate.Error.NotFound")
        _, err = self.ctl("pair", "no spaces please", rc=1)
        self.assert_bus_error(err, "org.tollgate.Error.InvalidArgument")

    def test_sync_with_the_key_present(self):
        _, err = self.ctl("sync", rc=1)  # the key is away
        self.assert_bus_error(err, "org.tollgate.Error.NotFound")
        for i in range(5):
            self.submit("ops.preferences.ctl-sync", b"for the key %d" % i)
        proc, lines = self.start_watch("--json", "key-sync")
        self.assertEqual(json.loads(lines.line())["event"], "state")
        self.sb.run("key", self.sb.dir, "car")
        try:
            ev = lines.until_event("sync-finished", timeout=30)
            self.assertGreaterEqual(ev["sent"], 1)
            wait_until("the key shown present", lambda: self.ctl_json("keys")[0]["present"])
            # The acknowledged items leave the outbox in the next grouped delete.
            wait_until("the outbox emptied", lambda: re.search(r"(?m)^ +Outbox: 0 items, 0B$", self.ctl("status")[0]))
            self.assertRegex(self.ctl("status")[0], r"(?m)^ +Key: present \(TG-KEY-0001\)$")
            self.assertEqual(self.ctl_json("sync"), {"started": True})
            self.assertEqual(lines.until_event("sync-finished", timeout=30)["sent"], 0)
        finally:
            self.sb.run("key", self.sb.dir, "away")
        self.stop_watch(proc)


class CtlPowerTest(CtlTest):
    """The power-wake commands against the daemon's own properties, with the
    sandbox's car (tollgate-vehicle-sim on the userspace CAN bus)."""

    def pw(self, name):
        return self.sb.prop(name, obj=POWER)

    def car(self, **state):
        req = urllib.request.Request(self.sb.env["VEHICLE_CONTROL"] + "/state", data=json.dumps(state).encode(),
                                     method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def power_status(self):
        """The power-wake section of the human status."""
        out, _ = self.ctl("status")
        return out[out.index("Power and wake:"):]

    def test_status_matches_the_daemon(self):
        # Past the sandbox's first power-down (ignition off at start), nothing pending.
        wait_until("a quiet power-wake", lambda: self.pw("Ignition") == "off" and self.pw("PowerDownUsec") == 0
                   and self.pw("Holds") == [])
        props = self.sb.props(POWER)
        st = self.ctl_json("status")["services"][3]
        self.assertEqual(st["service"], "power-wake")
        self.assertEqual(st["properties"], props)
        out = self.power_status()
        self.assertRegex(out, r"(?m)^ +Ignition: off$")
        self.assertRegex(out, r"(?m)^ +Parked: yes \(speed 0\.0 km/h\)$")
        self.assertRegex(out, r"(?m)^ +Battery: 12\.60 V$")
        self.assertRegex(out, r"(?m)^High voltage: off$")
        self.assertRegex(out, r"(?m)^ +Holds: none$")
        self.assertRegex(out, r"(?m)^ +Next wakes: none$")
        self.assertRegex(out, r"(?m)^ +Power-down: not pending$")

        # Driving, a hold, a wake and a pending power-down show.
        self.car(ignition="on", gear="D", speed=42, battery=13.8)
        wait_until("driving", lambda: self.pw("Speed") == 42 and self.pw("BatteryVoltage") == 13.8)
        out = self.power_status()
        self.assertRegex(out, r"(?m)^ +Ignition: on$")
        self.assertRegex(out, r"(?m)^ +Parked: no \(speed 42\.0 km/h\)$")
        self.assertRegex(out, r"(?m)^ +Battery: 13\.80 V$")
        wake = self.ctl_json("wake-at", "+2h", "ctl: status")
        holder = subprocess.Popen([TOLLGATECTL, "hold", "ctl-test", "status check", "--", "sleep", "60"],
                                  env=self.env(), start_new_session=True)
        self.addCleanup(lambda: holder.poll() is None and os.killpg(holder.pid, signal.SIGKILL))
        wait_until("the hold", lambda: ["ctl-test", "status check"] in self.pw("Holds"))
        out = self.power_status()
        self.assertRegex(out, r"(?m)^ +Holds: ctl-test \(status check\)$")
        self.assertRegex(out, r"(?m)^ +Next wakes: #%d at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \(in (1h 59min \d+s|2h)\): "
                         r"ctl: status$" % wake["id"])
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        self.car(ignition="off", gear="P", speed=0)
        due = wait_until("a pending power-down", lambda: self.pw("PowerDownUsec"))
        self.assertRegex(self.power_status(), r"(?m)^ +Power-down: pending at \d{4}-\d\d-\d\d [0-9:.]+ \((in \ds|now)\)$")
        self.assertEqual(self.ctl_json("status")["services"][3]["properties"]["PowerDownUsec"], due)
        self.ctl("wake-cancel", str(wake["id"]))

    def test_hold_holds_and_exit_status(self):
        self.assertEqual(self.ctl_json("holds"), [{"who": w, "why": y} for w, y in self.pw("Holds")])
        proc = subprocess.Popen([TOLLGATECTL, "hold", "ctl", "held by tollgatectl", "--", "sh", "-c",
                                 "%s --json holds; sleep 60" % TOLLGATECTL],
                                env=self.env(), start_new_session=True, stdout=subprocess.PIPE)
        self.addCleanup(lambda: proc.poll() is None and os.killpg(proc.pid, signal.SIGKILL))
        self.addCleanup(proc.stdout.close)
        # The command runs while the hold is held (it sees itself).
        line = proc.stdout.readline()
        self.assertIn({"who": "ctl", "why": "held by tollgatectl"}, json.loads(line))
        out, _ = self.ctl("holds")
        self.assertRegex(out, r"(?m)^WHO +WHY$")
        self.assertRegex(out, r"(?m)^ctl +held by tollgatectl$")
        self.assertRegex(out, r"(?m)^\d+ holds?\.$")
        # kill -9 of tollgatectl: the hold goes at once, whatever its command does.
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        wait_until("the hold released", lambda: ["ctl", "held by tollgatectl"] not in self.pw("Holds"), timeout=5)
        self.assertLess(time.monotonic() - t0, 1.0)
        os.killpg(proc.pid, signal.SIGKILL)
        # Exit statuses of the command, --json summary after it.
        self.assertEqual(self.ctl("hold", "ctl", "exit", "--", "sh", "-c", "exit 5", rc=5), ("", ""))
        out, _ = self.ctl("--json", "hold", "ctl", "json", "--", "true")
        got = json.loads(out)
        self.assertEqual((got["who"], got["why"], got["exit_status"]), ("ctl", "json", 0))
        self.assertGreater(got["held_usec"], 0)
        _, err = self.ctl("hold", "ctl", "missing", "--", "/nonexistent/cmd", rc=127)
        self.assertIn("/nonexistent/cmd", err)
        _, err = self.ctl("hold", "", "empty who", "--", "true", rc=1)
        self.assert_bus_error(err, "org.tollgate.Error.InvalidArgument")
        self.assertNotIn("ctl", [w for w, _ in self.pw("Holds")])

    def test_wakes_schedule_list_cancel_and_fire(self):
        got = self.ctl_json("wake-at", "+1h", "ctl: in an hour")
        self.assertAlmostEqual(got["when_usec"] / 1e6, time.time() + 3600, delta=30)
        hour = got["id"]
        out, _ = self.ctl("wake-at", "2030-01-31T06:00:00Z", "ctl: iso")
        iso = int(re.search(r"^Wake #(\d+) scheduled at ", out).group(1))
        epoch = self.ctl_json("wake-at", "@1900000000.5", "ctl: epoch")
        self.assertEqual(epoch["when_usec"], 1900000000500000)
        offset = self.ctl_json("wake-at", "2030-01-31T07:00:00+01:00", "ctl: offset")
        self.assertEqual(offset["when_usec"], 1896069600 * 10 ** 6)
        live = {w[0]: (w[1], w[2]) for w in self.pw("Wakes")}
        self.assertEqual(live[iso], (1896069600 * 10 ** 6, "ctl: iso"))
        listed = self.ctl_json("wakes")
        self.assertEqual(listed, [{"id": w[0], "when_usec": w[1], "reason": w[2]} for w in self.pw("Wakes")])
        out, _ = self.ctl("wakes")
        self.assertRegex(out, r"(?m)^ *ID +WHEN +LEFT +REASON$")
        self.assertRegex(out, r"(?m)^ *%d +\d{4}-\d\d-\d\d [0-9:.]+ +in (59min \d+s|1h) +ctl: in an hour$" % hour)
        for wake_id in (hour, iso, epoch["id"], offset["id"]):
            self.assertEqual(self.ctl_json("wake-cancel", str(wake_id)), {"id": wake_id, "cancelled": True})
        _, err = self.ctl("wake-cancel", str(hour), rc=1)
        self.assert_bus_error(err, "org.tollgate.Error.NotFound")
        self.assertEqual([w for w in self.pw("Wakes") if w[2].startswith("ctl: ")], [])

        # A wake a moment ahead fires (watch shows it), and so does wake-now.
        proc, lines = self.start_watch("--json", "power-wake")
        self.assertEqual(json.loads(lines.line())["event"], "state")
        soon = self.ctl_json("wake-at", "+2s", "ctl: soon")
        ev = lines.until_event("woken", timeout=15)
        self.assertEqual((ev["service"], ev["id"], ev["reason"]), ("power-wake", soon["id"], "ctl: soon"))
        self.assertEqual(self.ctl_json("wake-now", "ctl: now"), {"reason": "ctl: now", "requested": True})
        ev = lines.until_event("woken", timeout=15)
        self.assertEqual(ev["reason"], "ctl: now")
        self.assertIn(["power-wake", "wake: ctl: now"], self.pw("Holds"))
        for wake_id in (soon["id"], ev["id"]):
            self.sb.call("AcknowledgeWake", "tbs", wake_id, "true", "ctl test done", obj=POWER)
        self.stop_watch(proc)
        proc, lines = self.start_watch("power-wake")
        self.assertRegex(lines.line(), r"^\d\d:\d\d:\d\d\.\d{3} power-wake +Ignition=")
        self.ctl("wake-now", "ctl: human")
        lines.until("a woken line", lambda l: re.search(r"power-wake +woken: wake #\d+ \(ctl: human\)$", l))
        self.stop_watch(proc)

    def test_hv_refused_while_driving(self):
        self.car(ignition="on", gear="D", speed=20)
        wait_until("driving", lambda: self.pw("Parked") is False)
        _, err = self.ctl("hv", "on", rc=1)
        self.assert_bus_error(err, "org.tollgate.Error.NotAllowed")
        self.car(gear="P", speed=0)
        wait_until("parked", lambda: self.pw("Parked") is True)
        got = self.ctl_json("hv", "on")
        self.assertEqual(got["requested"], "on")
        self.assertIn(got["high_voltage"], ("off", "precharge", "on"))
        wait_until("HighVoltage=on", lambda: self.pw("HighVoltage") == "on")
        self.assertRegex(self.ctl("status")[0], r"(?m)^High voltage: on$")
        out, _ = self.ctl("hv", "off")
        self.assertRegex(out, r"^High voltage off requested; the contactors report \"\w+\"")
        wait_until("HighVoltage=off", lambda: self.pw("HighVoltage") == "off")
        self.car(ignition="off")
        self.assertEqual(self.ctl("reload", "power-wake"), ("", ""))


if __name__ == "__main__":
    unittest.main(verbosity=2)
