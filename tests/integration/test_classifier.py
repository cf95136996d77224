#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Integration tests of the classifier: the real daemon on a private bus in
the sandbox, with the TSP simulator over mutual TLS on loopback."""

import json
import os
import random
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tglib import (REPO, Sandbox, decode_records, describe_interface, encode_frame, encode_record,  # noqa: E402
                   wait_until)

MID_FRAME_REJECTED = "2f6eb89d71a74423ae933f6dc28536ab"
MID_CONFIG_REJECTED = "30db2047a352408ca3e5067fea27bf9d"
MID_UPLINK_OFFLINE = "8dff6a72d6514589a09b37d13716bc7b"
MID_UPLINK_ONLINE = "267faa85af1648889c58852f5a72cf29"
MID_BATCH_REJECTED = "b805634a41de4a2eaf4d79dcabb3a57c"
MID_STORAGE_RECOVERED = "bb1b83d6cdee4bdfa66667be78083d79"
MID_OUTBOX_EVICTED = "7c3fef343d974782a4baa84f89e12b59"
MID_DOWNLINK_RECEIVED = "9e0bccb697b3436ea346af48eda57353"

REALTIME_TOPICS = ["vehicle.speed", "vehicle.position", "battery.realtime", "fault.alarm", "voice.query"]
DEFERRED_TOPICS = ["analytics.driving.behaviour", "analytics.component.life", "ops.user.profile",
                   "ops.preferences", "ops.hmi.interaction", "some.unknown.topic"]


def mixed_records(n, tag, rng):
    """(topic, payload) pairs with unique payloads, about 1 in 5 real-time."""
    out = []
    for i in range(n):
        rt = rng.random() < 0.2
        topic = rng.choice(REALTIME_TOPICS if rt else DEFERRED_TOPICS)
        body = ("%s-%d:" % (tag, i)).encode() + bytes(rng.randrange(256) for _ in range(rng.randrange(10, 200)))
        out.append((topic, body))
    return out


def send_all(producer, records, per_frame=50):
    ts = int(time.time() * 1e6)
    for i in range(0, len(records), per_frame):
        producer.send_frame([encode_record(t, p, ts) for t, p in records[i:i + per_frame]])
    producer.flush()


class ClassifierTest(unittest.TestCase):
    dropin = None

    def setUp(self):
        self.sb = Sandbox(self.dropin).up()

    def tearDown(self):
        failed = any(e for _, e in (self._outcome.result.errors + self._outcome.result.failures)
                     if _ is self) if hasattr(self._outcome, "result") else False
        if failed:
            print(self.sb.logs(), file=sys.stderr)
        reports = self.sb.down()
        self.assertEqual(reports, [], "sanitizer reports in the daemons' logs (kept in %s)" % self.sb.dir)

    def assert_serving(self):
        self.assertEqual(self.sb.submit("vehicle.speed", b"still-alive"), "realtime")


class ContractTest(ClassifierTest):
    def test_introspection_matches_shipped_xml(self):
        live = self.sb.busctl("introspect", "--xml-interface", "org.tollgate.Classifier1",
                              "/org/tollgate/Classifier1").stdout

        with open(os.path.join(REPO, "conf", "dbus", "org.tollgate.Classifier1.xml")) as f:
            shipped = f.read()
        self.assertEqual(describe_interface(live, "org.tollgate.Classifier1"),
                         describe_interface(shipped, "org.tollgate.Classifier1"))

    def test_contract_properties(self):
        props = self.sb.props()
        for name in ("RealtimeSent", "RealtimeBacklog", "CellularBytes", "DeferredQueued", "DeferredBytes"):
            self.assertIsInstance(props[name], int, name)
        self.assertIn(props["Uplink"], ("online", "offline"))

    def test_classify_follows_spec_c1(self):
        for topic in REALTIME_TOPICS:
            out = self.sb.call("Classify", "s", topic).stdout
            self.assertIn('"realtime"', out, topic)
        for topic in DEFERRED_TOPICS:
            out = self.sb.call("Classify", "s", topic).stdout
            self.assertIn('"deferred"', out, topic)

    @unittest.skipUnless(os.geteuid() == 0, "needs root to act as another user")
    def test_policy_denies_unprivileged_submit(self):
        # Like /run/dbus/system_bus_socket: anyone may connect; the policy decides.
        for d in (self.sb.dir, self.sb.path("run")):
            os.chmod(d, 0o755)
        p = self.sb.call("Submit", "stay", "vehicle.speed", 1, 1, 65, user=65534, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("denied", p.stderr.lower())
        # Reading and Classify are for everyone.
        self.assertEqual(self.sb.call("Classify", "s", "vehicle.speed", user=65534).returncode, 0)
        p = self.sb.busctl("get-property", "org.tollgate.Classifier1", "/org/tollgate/Classifier1",
                           "org.tollgate.Classifier1", "Uplink", user=65534)
        self.assertEqual(p.returncode, 0)


class WorkloadTest(ClassifierTest):
    def test_mixed_workload_lands_where_it_should(self):
        rng = random.Random(1)
        records = mixed_records(3000, "mix", rng)
        prod = self.sb.producer()
        send_all(prod, records)
        self.assertEqual(prod.errors, {})

        rt = sorted((t, p) for t, p in records if t in REALTIME_TOPICS)
        de = sorted((t, p) for t, p in records if t not in REALTIME_TOPICS)
        wait_until("all real-time records at the TSP", lambda: len(self.sb.tsp_records()) >= len(rt))
        at_tsp = sorted((r[2], r[3]) for r in self.sb.tsp_records())
        self.assertEqual(at_tsp, rt)
        in_outbox = self.sb.outbox_records()
        self.assertEqual(sorted((r[2], r[3]) for r in in_outbox), de)

        # Priorities from the shipped rules.
        prio = {r[2]: r[4] for r in in_outbox}
        self.assertEqual(prio.get("analytics.component.life"), 3)
        self.assertEqual(prio.get("ops.hmi.interaction"), 6)
        self.assertEqual(prio.get("some.unknown.topic"), 5)

        # Ids are unique across both paths.
        ids = [r[0] for r in self.sb.tsp_records()] + [r[0] for r in in_outbox]
        self.assertEqual(len(ids), len(set(ids)))

        # Counters agree with both ends.
        def counters_settled():
            p = self.sb.props()
            return p if p["RealtimeSent"] == len(rt) and p["RealtimeBacklog"] == 0 else None
        p = wait_until("counters", counters_settled)
        self.assertEqual(p["DeferredQueued"], len(de))
        self.assertEqual(p["DeferredBytes"], sum(len(r[5]) for r in self.sb.queue_rows("outbox.db")))
        self.assertEqual(p["RecordsAccepted"], len(records))
        self.assertEqual(p["RecordsRejected"], 0)
        stats = self.sb.tsp("/stats")
        self.assertEqual(stats["records"], len(rt))
        self.assertEqual(stats["duplicate_records"], 0)
        # What the classifier counts on the wire is at least what the TSP saw
        # (it adds IP/TCP headers) and not wildly more.
        wire_tsp = stats["wire_bytes_in"] + stats["wire_bytes_out"]
        self.assertGreaterEqual(p["CellularBytes"], wire_tsp)
        self.assertLess(p["CellularBytes"], wire_tsp * 3)
        self.assertEqual(p["Uplink"], "online")

    def test_dbus_submit(self):
        self.assertEqual(self.sb.submit("fault.alarm", b"P0A80 battery"), "realtime")
        self.assertEqual(self.sb.submit("ops.hmi.interaction", b"touch"), "deferred")
        wait_until("alarm at TSP", lambda: any(r[2] == "fault.alarm" for r in self.sb.tsp_records()))
        # The reply came after the commit: the deferred record is in the file now.
        self.assertEqual([r[3] for r in self.sb.outbox_records()], [b"touch"])

    def test_properties_changed_is_emitted(self):
        mon = subprocess.Popen(["busctl", "--address=" + self.sb.bus, "monitor", "--match",
                                "type='signal',interface='org.freedesktop.DBus.Properties',"
                                "path='/org/tollgate/Classifier1'"],
                               stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(0.5)
            self.sb.submit("ops.preferences", b"x")
            time.sleep(0.6)
        finally:
            mon.terminate()
            out = mon.communicate(timeout=5)[0]
        self.assertIn("PropertiesChanged", out)
        self.assertIn("DeferredQueued", out)


class BadInputTest(ClassifierTest):
    def test_malformed_frames_get_named_errors(self):
        prod = self.sb.producer()
        prod.send_raw(b"")  # SEQPACKET allows empty packets; one must not look like a hang-up
        self.assertEqual(prod.error_for(0)[0], "short-frame")
        del prod.errors[0]
        ok = encode_record("vehicle.speed", b"ok")
        cases = [
            (encode_frame(1, [ok], magic=0xDEADBEEF), "bad-magic"),
            (encode_frame(2, [ok], ftype=2), "bad-type"),
            (encode_frame(3, [ok], flags=1), "bad-flags"),
            (b"TGP", "short-frame"),
            (encode_frame(5, [ok], count=2), "truncated-record"),
            (encode_frame(6, [ok, b"junk"], count=1), "trailing-bytes"),
            (encode_frame(7, [encode_record("", b"x")]), "empty-topic"),
            (encode_frame(8, [encode_record("a" * 256, b"x")]), "topic-too-long"),
            (encode_frame(9, [encode_record("bad topic!", b"x")]), "invalid-topic"),
            (encode_frame(10, [encode_record("a..b", b"x")]), "invalid-topic"),
            (encode_frame(11, [encode_record("ops.x", b"x" * 20000)]), "payload-too-large"),
            (encode_frame(12, [ok] * 5 + [encode_record("ops.x", b"y" * 131000)]), "frame-too-large"),
        ]
        for i, (data, expected) in enumerate(cases):
            prod.send_raw(data)
            seq = 0 if expected == "short-frame" else i + 1
            self.assertEqual(prod.error_for(seq)[0], expected, "case %d" % i)
        # A frame with one bad record stores none of its good ones.
        prod.seq = 100
        s = prod.send_frame([encode_record("ops.good", b"1"), encode_record("bad topic", b"2")])
        self.assertEqual(prod.error_for(s)[:2], ("invalid-topic", 1))
        prod.flush()
        self.assertEqual(self.sb.outbox_records(), [])
        # The same connection still works.
        prod.send_frame([encode_record("ops.good", b"after")])
        prod.flush()
        self.assertEqual([r[3] for r in self.sb.outbox_records()], [b"after"])
        self.assertGreater(self.sb.prop("RecordsRejected"), 0)
        log = self.sb.log_text("classifier")
        self.assertIn(MID_FRAME_REJECTED, log)
        self.assertIn("FRAME_ERROR=invalid-topic", log)
        self.assert_serving()

    def test_garbage_producer_cannot_hurt_others(self):
        rng = random.Random(7)
        bad = self.sb.producer()
        good = self.sb.producer()
        for i in range(300):
            bad.send_raw(bytes(rng.randrange(256) for _ in range(rng.randrange(0, 400))))
        good.send_frame([encode_record("ops.hmi.interaction", b"fine")])
        good.flush()
        self.assertEqual([r[3] for r in self.sb.outbox_records()], [b"fine"])
        bad.close()
        self.assert_serving()

    def test_dbus_submit_bad_arguments(self):
        for topic, payload, err in [("", b"x", "InvalidTopic"), ("a" * 300, b"x", "InvalidTopic"),
                                    ("has space", b"x", "InvalidTopic"),
                                    ("ops.x", b"z" * 20000, "PayloadTooLarge")]:
            p = self.sb.dbus_send("Submit", "string:" + topic, "uint64:1",
                                  "array:byte:" + ",".join(str(b) for b in payload))
            self.assertNotEqual(p.returncode, 0, topic)
            self.assertIn("org.tollgate.Error." + err, p.stderr, topic)
        self.assert_serving()


class ConfigTest(ClassifierTest):
    def test_reload_applies_new_rules_without_losing_data(self):
        prod = self.sb.producer()
        prod.send_frame([encode_record("ops.hmi.interaction", b"before")])
        prod.flush()  # classified (and acknowledged) under the old rules
        self.sb.write_dropin("[Rule hmi]\nClass=realtime\n", name="70-reload.conf")
        self.sb.call("Reload")
        self.assertIn('"realtime"', self.sb.call("Classify", "s", "ops.hmi.interaction").stdout)
        prod.send_frame([encode_record("ops.hmi.interaction", b"after")])
        prod.flush()
        self.assertEqual([r[3] for r in self.sb.outbox_records()], [b"before"])
        wait_until("reclassified record at TSP", lambda: [r[3] for r in self.sb.tsp_records()] == [b"after"])

    def test_bad_config_on_reload_keeps_running_config(self):
        self.sb.write_dropin("[Uplink]\nBatchWindow=soon\n", name="70-bad.conf")
        p = self.sb.dbus_send("Reload")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("org.tollgate.Error.InvalidConfig", p.stderr)
        os.kill(self.sb.pid("classifier"), signal.SIGHUP)
        wait_until("rejection logged twice",
                   lambda: self.sb.log_text("classifier").count(MID_CONFIG_REJECTED) >= 2)
        self.assertIn("70-bad.conf:2: [Uplink] BatchWindow=soon", self.sb.log_text("classifier"))
        self.assert_serving()

    def test_bad_config_at_start_exits_with_ex_config(self):
        self.sb.stop("classifier")
        for text, needle in [("[Nonsense]\nA=b\n", "unknown section [Nonsense]"),
                             ("[Storage]\nCommitInterval=5h\n", "must be between"),
                             ("[Rule x]\nClass=realtime\n", "Match= is required"),
                             ("[Uplink]\nGarbage\n", "expected Key=Value")]:
            self.sb.write_dropin(text, name="70-bad.conf")
            p = subprocess.run([os.path.join(self.sb.env["TOLLGATE_BUILD_DIR"], "daemons", "classifier",
                                             "tollgate-classifier"),
                                "--config=" + self.sb.path("etc", "tollgate", "classifier.conf"),
                                "--log-target=console"],
                               capture_output=True, text=True, timeout=20,
                               env=dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.sb.bus))
            self.assertEqual(p.returncode, 78, p.stderr)
            self.assertIn(needle, p.stderr)
            self.assertIn(MID_CONFIG_REJECTED, p.stderr)
        self.sb.remove_dropin("70-bad.conf")
        self.sb.start("classifier")
        self.assert_serving()


class UplinkTest(ClassifierTest):
    dropin = "[Uplink]\nRequestTimeout=1s\nConnectTimeout=1s\nBackoffMin=100ms\nBackoffMax=1s\n"

    def _send_rt(self, prod, tag, n):
        recs = [("vehicle.speed", ("%s-%d" % (tag, i)).encode()) for i in range(n)]
        send_all(prod, recs, per_frame=10)
        return [p for _, p in recs]

    def _assert_all_once(self, expected):
        def arrived():
            got = [r[3] for r in self.sb.tsp_records()]
            return got if len(got) >= len(expected) else None
        got = wait_until("%d records at the TSP" % len(expected), arrived, timeout=30)
        self.assertEqual(sorted(got), sorted(expected))  # once each: the table is keyed by record id
        wait_until("backlog drained", lambda: self.sb.prop("RealtimeBacklog") == 0)
        self.assertEqual(self.sb.backlog_records(), [])

    def test_simulator_stopped_then_back(self):
        prod = self.sb.producer()
        first = self._send_rt(prod, "up", 20)
        self.sb.stop("tsp-sim")
        during = self._send_rt(prod, "down", 200)
        wait_until("uplink offline", lambda: self.sb.prop("Uplink") == "offline")
        wait_until("records in backlog", lambda: self.sb.prop("RealtimeBacklog") > 0)
        self.assertIn(MID_UPLINK_OFFLINE, self.sb.log_text("classifier"))
        # Kept on disk, not only in memory.
        self.assertGreater(len(self.sb.backlog_records()), 0)
        self.sb.start("tsp-sim")
        after = self._send_rt(prod, "back", 20)
        self._assert_all_once(first + during + after)
        self.assertEqual(self.sb.prop("Uplink"), "online")
        self.assertIn(MID_UPLINK_ONLINE, self.sb.log_text("classifier"))

    def test_faults_then_recovery(self):
        prod = self.sb.producer()
        expected = []
        for mode in ("hang", "garbage", "error", "close", "lose-reply"):
            self.sb.tsp_mode(mode)
            expected += self._send_rt(prod, mode, 30)
            wait_until("uplink offline under %s" % mode, lambda: self.sb.prop("Uplink") == "offline", timeout=10)
            self.sb.tsp_mode("normal")
            self._assert_all_once(expected)
        stats = self.sb.tsp("/stats")
        self.assertEqual(stats["records"], len(expected))
        self.assert_serving()

    def test_rejected_batch_is_kept_and_does_not_block(self):
        prod = self.sb.producer()
        self.sb.tsp_mode("reject")
        self._send_rt(prod, "refused", 5)
        wait_until("batch rejected", lambda: self.sb.prop("RealtimeRejected") >= 5)
        self.assertIn(MID_BATCH_REJECTED, self.sb.log_text("classifier"))
        self.assertEqual(len(self.sb.backlog_records("rejected")), 5)
        self.sb.tsp_mode("normal")
        ok = self._send_rt(prod, "accepted", 5)
        self._assert_all_once(ok)
        self.assertEqual(self.sb.prop("Uplink"), "online")


class CrashTest(ClassifierTest):
    def test_kill9_under_load_loses_nothing_acknowledged(self):
        rng = random.Random(3)
        prod = self.sb.producer()
        acked_payloads = []
        sent = {}  # seq -> payloads
        deadline = time.monotonic() + 1.5
        i = 0
        killed = False
        # Stream frames; kill the classifier mid-stream.
        while True:
            batch = [(rng.choice(REALTIME_TOPICS + DEFERRED_TOPICS), ("k-%d" % (i + j)).encode())
                     for j in range(100)]
            i += 100
            try:
                seq = prod.send_frame([encode_record(t, p) for t, p in batch])
                sent[seq] = [p for _, p in batch]
                prod.poll(0)
            except (BrokenPipeError, ConnectionError, OSError):
                break
            if not killed and time.monotonic() > deadline:
                os.kill(self.sb.pid("classifier"), signal.SIGKILL)
                killed = True
            if killed and time.monotonic() > deadline + 2:
                break
        try:
            prod.poll(0.2)
        except (ConnectionError, OSError):
            pass
        acked_payloads = [p for s, ps in sent.items() if s <= prod.acked for p in ps]
        self.assertGreater(len(acked_payloads), 1000, "the kill came too early to test anything")
        self.sb.run("kill", self.sb.dir, "classifier")  # reap the pid file
        self.sb.start("classifier")

        # Everything acknowledged is in the outbox or reaches the TSP, exactly once.
        wait_until("backlog drained after restart", lambda: self.sb.prop("RealtimeBacklog") == 0, timeout=30)
        at_tsp = [r[3] for r in self.sb.tsp_records()]
        in_outbox = [r[3] for r in self.sb.outbox_records()]
        everywhere = at_tsp + in_outbox
        self.assertEqual(len(everywhere), len(set(everywhere)), "a record was stored twice")
        missing = set(acked_payloads) - set(everywhere)
        self.assertEqual(missing, set(), "%d acknowledged records lost" % len(missing))
        self.assertEqual(self.sb.tsp("/stats")["records"], len(at_tsp))

    def test_corrupt_outbox_is_moved_aside(self):
        self.sb.submit("ops.preferences", b"before")
        self.sb.stop("classifier")
        for suffix in ("-wal", "-shm"):
            try:
                os.unlink(self.sb.path("state", "outbox.db" + suffix))
            except FileNotFoundError:
                pass
        with open(self.sb.path("state", "outbox.db"), "wb") as f:
            f.write(os.urandom(8192))
        self.sb.start("classifier")
        self.assertIn(MID_STORAGE_RECOVERED, self.sb.log_text("classifier"))
        aside = [n for n in os.listdir(self.sb.path("state")) if n.startswith("outbox.db.corrupt-")]
        self.assertEqual(len(aside), 1)
        self.assertEqual(self.sb.submit("ops.preferences", b"after"), "deferred")
        self.assertEqual([r[3] for r in self.sb.outbox_records()], [b"after"])


class DownlinkTest(ClassifierTest):
    def fetch(self, pattern=""):
        out = json.loads(self.sb.call("FetchDownlink", "stu", pattern, 0, 100).stdout)["data"][0]
        return [(i, topic, bytes(payload)) for i, topic, ts, payload in out]

    def test_cloud_to_car_data_is_stored_acknowledged_and_handed_over(self):
        client = "TG-SANDBOX-0001"
        q = self.sb.tsp("/downlink?client=%s&topic=cloud/voice.answer" % client, b"answer: 42")
        self.sb.tsp("/downlink?client=%s&topic=cloud/poi.update" % client, b"poi")
        # Real-time traffic carries it home.
        self.sb.submit("voice.query", b"what is the answer?")
        wait_until("downlink stored", lambda: self.sb.prop("DownlinkQueued") == 2)
        self.assertIn(MID_DOWNLINK_RECEIVED, self.sb.log_text("classifier"))
        self.assertEqual(self.fetch("cloud/voice.*"), [(q["id"], "cloud/voice.answer", b"answer: 42")])
        self.assertEqual(len(self.fetch()), 2)

        # The next request tells the TSP it is stored; the TSP stops re-sending.
        self.sb.submit("vehicle.speed", b"1")
        wait_until("TSP saw the ack", lambda: self.sb.tsp("/stats")["downlink_acked"] == 2)
        sent = self.sb.tsp("/stats")["downlink_sent"]
        # A restart (kill -9) keeps the inbox and the acknowledged id.
        self.sb.kill("classifier")
        self.sb.start("classifier")
        self.assertEqual(self.sb.prop("DownlinkQueued"), 2)
        self.sb.submit("vehicle.speed", b"2")
        self.assertEqual(self.sb.tsp("/stats")["downlink_sent"], sent)

        # The consumer takes one over; only then is it deleted.
        p = self.sb.call("AckDownlink", "at", 1, q["id"])
        self.assertEqual(json.loads(p.stdout)["data"][0], 1)
        self.assertEqual([t for _, t, _ in self.fetch()], ["cloud/poi.update"])
        self.assertEqual(self.sb.prop("DownlinkQueued"), 1)


class QuotaTest(ClassifierTest):
    dropin = ("[Storage]\nOutboxMaxSize=40K\nSegmentMaxSize=4K\n"
              "[Rule short]\nMatch=ops.short\nClass=deferred\nPriority=2\nTimeToLive=1s\n")

    def test_quota_evicts_least_important_oldest_first(self):
        prod = self.sb.producer()
        # 30 KB of important (priority 3) then 30 KB of unimportant (priority 6).
        for topic, tag in (("analytics.component.life", "imp"), ("ops.hmi.interaction", "hmi")):
            for i in range(30):
                prod.send_frame([encode_record(topic, ("%s-%03d:" % (tag, i)).encode() + b"x" * 980)])
                prod.flush()
        recs = self.sb.outbox_records()
        total = sum(len(r[5]) for r in self.sb.queue_rows("outbox.db"))
        self.assertLessEqual(total, 40 * 1024)
        imp = [r[3][:7] for r in recs if r[2] == "analytics.component.life"]
        hmi = sorted(r[3][:7] for r in recs if r[2] == "ops.hmi.interaction")
        self.assertEqual(len(imp), 30, "important records must survive")
        self.assertTrue(hmi and hmi[-1] == b"hmi-029", "the newest unimportant ones stay")
        self.assertNotIn(b"hmi-000", hmi, "the oldest unimportant ones go first")
        self.assertGreater(self.sb.prop("DeferredEvicted"), 0)
        self.assertIn(MID_OUTBOX_EVICTED, self.sb.log_text("classifier"))

    def test_time_to_live_expires_records(self):
        self.sb.submit("ops.short", b"short-lived")
        self.sb.submit("ops.preferences", b"long-lived")
        wait_until("expiry", lambda: [r[3] for r in self.sb.outbox_records()] == [b"long-lived"], timeout=10)
        self.assertEqual(self.sb.prop("DeferredEvicted"), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
