# SPDX-License-Identifier: MIT
"""Helpers for Tollgate's integration tests.

Everything here talks to the real thing: the sandbox (tools/tollgate-sandbox)
with a private dbus-daemon, the TSP simulator over HTTPS with client
certificates, the classifier's SEQPACKET socket, busctl, and the SQLite files
the daemons write. Python's standard library only (Debian's python3).
"""

import gzip
import json
import os
import shutil
import socket
import sqlite3
import struct
import subprocess
import tempfile
import time
import urllib.request
import xml.etree.ElementTree as ET

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("TOLLGATE_BUILD_DIR", os.path.join(REPO, "build"))
SANDBOX = os.path.join(REPO, "tools", "tollgate-sandbox")

CLASSIFIER = ("org.tollgate.Classifier1", "/org/tollgate/Classifier1", "org.tollgate.Classifier1")
KEYSYNC = ("org.tollgate.KeySync1", "/org/tollgate/KeySync1", "org.tollgate.KeySync1")

FRAME_MAGIC = 0x54475031
RECORDS, ACK, ERROR = 1, 2, 3
FRAME_ERRORS = {
    1: "short-frame", 2: "bad-magic", 3: "bad-type", 4: "bad-flags", 5: "frame-too-large",
    6: "trailing-bytes", 7: "truncated-record", 8: "empty-topic", 9: "topic-too-long",
    10: "invalid-topic", 11: "payload-too-large", 12: "overloaded", 13: "internal-error",
}


def describe_interface(xml_text, name):
    """Interface name of introspection XML as a sorted list of its members with
    their signatures: live introspection and the shipped XML compare equal."""
    root = ET.fromstring(xml_text)
    iface = [i for i in root.iter("interface") if i.get("name") == name][0]
    out = []
    for el in iface:
        if el.tag in ("method", "signal"):
            out.append((el.tag, el.get("name"),
                        tuple((a.get("type"), a.get("name"), a.get("direction", "out" if el.tag == "signal" else "in"))
                              for a in el.iter("arg"))))
        elif el.tag == "property":
            out.append(("property", el.get("name"), el.get("type"), el.get("access")))
    return sorted(out)


def wait_until(what, predicate, timeout=20.0, interval=0.05):
    """Poll predicate() until it returns a true value; fail with `what` otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out after %.1fs waiting for %s (last: %r)" % (timeout, what, last))


# --- TGR1 records and producer frames (docs/wire-formats.md) ---------------

def encode_record(topic, payload, ts=0, rid=0):
    if isinstance(topic, str):
        topic = topic.encode()
    return struct.pack(">QQHI", rid, ts, len(topic), len(payload)) + topic + payload


def decode_records(buf):
    out, off = [], 0
    while off < len(buf):
        rid, ts, tl, pl = struct.unpack_from(">QQHI", buf, off)
        off += 22
        topic = buf[off:off + tl].decode()
        off += tl
        out.append((rid, ts, topic, bytes(buf[off:off + pl])))
        off += pl
    if off != len(buf):
        raise ValueError("trailing bytes")
    return out


def encode_frame(seq, records, ftype=RECORDS, flags=0, magic=FRAME_MAGIC, count=None):
    if count is None:
        count = len(records)
    return struct.pack(">IBBHI", magic, ftype, flags, count, seq) + b"".join(records)


class Producer:
    """A producer speaking the frame protocol directly (to send bad frames too)."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        self.sock.connect(path)
        self.seq = 0
        self.acked = 0
        self.errors = {}  # seq -> (code name, index, text)

    def close(self):
        self.sock.close()

    def send_frame(self, records, **kw):
        self.seq += 1
        self.sock.send(encode_frame(self.seq, records, **kw))
        return self.seq

    def send_raw(self, data):
        self.sock.send(data)

    def _handle(self, pkt):
        magic, ftype, flags, count, seq = struct.unpack_from(">IBBHI", pkt)
        assert magic == FRAME_MAGIC, pkt
        if ftype == ACK:
            if (seq - self.acked) & 0xFFFFFFFF < 0x80000000:
                self.acked = seq
        elif ftype == ERROR:
            code, index = struct.unpack_from(">HH", pkt, 12)
            self.errors[seq] = (FRAME_ERRORS.get(code, code), index, pkt[16:].decode())
        else:
            raise AssertionError("unexpected frame type %d" % ftype)

    def poll(self, timeout=0.0):
        self.sock.settimeout(timeout if timeout > 0 else None)
        if timeout <= 0:
            self.sock.setblocking(False)
        try:
            while True:
                pkt = self.sock.recv(4096)
                if not pkt:
                    raise ConnectionError("classifier closed the connection")
                self._handle(pkt)
                self.sock.setblocking(False)
        except (BlockingIOError, socket.timeout):
            pass
        finally:
            self.sock.setblocking(True)

    def flush(self, timeout=10.0):
        """Ask for an ACK of everything sent; return once it arrives."""
        seq = self.send_frame([])
        deadline = time.monotonic() + timeout
        while (seq - self.acked) & 0xFFFFFFFF and (seq - self.acked) & 0xFFFFFFFF < 0x80000000:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no ACK for frame %d (acked %d)" % (seq, self.acked))
            self.poll(min(left, 0.5))
        return seq

    def error_for(self, seq, timeout=5.0):
        wait_until("ERROR frame for %d" % seq, lambda: self.poll(0.05) or seq in self.errors, timeout)
        return self.errors[seq]


# --- The sandbox --------------------------------------------------------------

class Sandbox:
    """tools/tollgate-sandbox in a fresh folder; `dropins` are written to
    etc/tollgate/classifier.conf.d/60-test.conf before `up`."""

    def __init__(self, dropin=None):
        # Unix socket paths are short: keep the folder near /tmp.
        self.dir = tempfile.mkdtemp(prefix="tg-", dir="/tmp")
        self.env = {}
        self.producers = []
        if dropin:
            self.write_dropin(dropin)

    def write_dropin(self, text, name="60-test.conf"):
        d = os.path.join(self.dir, "etc", "tollgate", "classifier.conf.d")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, name), "w") as f:
            f.write(text)

    def remove_dropin(self, name="60-test.conf"):
        os.unlink(os.path.join(self.dir, "etc", "tollgate", "classifier.conf.d", name))

    def run(self, *args, check=True):
        return subprocess.run([SANDBOX] + list(args), capture_output=True, text=True, check=check,
                              env=dict(os.environ, TOLLGATE_BUILD_DIR=BUILD))

    def up(self):
        p = self.run("up", self.dir, check=False)
        if p.returncode != 0:
            raise AssertionError("sandbox up failed:\n%s\n%s\n%s" % (p.stdout, p.stderr, self.logs()))
        lines = p.stdout.strip().splitlines()
        assert lines[-1].startswith("DBUS_SYSTEM_BUS_ADDRESS="), lines
        for line in lines:
            k, _, v = line.partition("=")
            self.env[k] = v
        self.bus = self.env["DBUS_SYSTEM_BUS_ADDRESS"]
        return self

    SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

    def down(self, keep=False):
        """Stop everything; returns sanitizer reports found in the logs (a build
        with -Db_sanitize makes the daemons write them at the error or at exit)."""
        for p in self.producers:
            p.close()
        self.run("down", self.dir, check=False)
        reports = [line for line in self.logs().splitlines() if any(m in line for m in self.SANITIZER_MARKS)]
        if reports:
            keep = True  # keep the evidence
        if not keep and not os.environ.get("TOLLGATE_KEEP_SANDBOX"):
            shutil.rmtree(self.dir, ignore_errors=True)
        return reports

    def start(self, svc):
        p = self.run("start", self.dir, svc, check=False)
        if p.returncode != 0:
            raise AssertionError("start %s failed: %s\n%s" % (svc, p.stderr, self.logs()))

    def stop(self, svc):
        self.run("stop", self.dir, svc)

    def kill(self, svc):
        self.run("kill", self.dir, svc)

    def pid(self, svc):
        with open(os.path.join(self.dir, "run", svc + ".pid")) as f:
            return int(f.read())

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def logs(self, svc=None):
        out = []
        for name in sorted(os.listdir(self.path("log"))) if os.path.isdir(self.path("log")) else []:
            if svc and not name.startswith(svc):
                continue
            with open(self.path("log", name), errors="replace") as f:
                out.append("--- %s ---\n%s" % (name, f.read()[-6000:]))
        return "\n".join(out)

    def log_text(self, svc):
        with open(self.path("log", svc + ".log"), errors="replace") as f:
            return f.read()

    # busctl -------------------------------------------------------------
    def busctl(self, *args, check=True, user=None):
        cmd = ["busctl", "--address=" + self.bus] + list(args)
        if user:
            cmd = ["setpriv", "--reuid=" + str(user), "--regid=" + str(user), "--clear-groups"] + cmd
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=30)

    def prop(self, name, obj=CLASSIFIER):
        out = self.busctl("--json=short", "get-property", *obj, name).stdout
        return json.loads(out)["data"]

    def props(self, obj=CLASSIFIER):
        out = self.busctl("--json=short", "call", obj[0], obj[1], "org.freedesktop.DBus.Properties",
                          "GetAll", "s", obj[2]).stdout
        return {k: v["data"] for k, v in json.loads(out)["data"][0].items()}

    def call(self, method, signature="", *args, obj=CLASSIFIER, check=True, user=None):
        a = ["--json=short", "call", obj[0], obj[1], obj[2], method]
        if signature:
            a += [signature] + [str(x) for x in args]
        p = self.busctl(*a, check=False, user=user)
        if check and p.returncode != 0:
            raise AssertionError("%s failed: %s" % (method, p.stderr))
        return p

    def dbus_send(self, method, *args, obj=CLASSIFIER):
        """dbus-send prints the error *name*, which busctl does not."""
        return subprocess.run(["dbus-send", "--bus=" + self.bus, "--print-reply", "--dest=" + obj[0], obj[1],
                               obj[2] + "." + method] + list(args), capture_output=True, text=True, timeout=30)

    def submit(self, topic, payload, ts=None):
        ts = ts if ts is not None else int(time.time() * 1e6)
        p = self.call("Submit", "stay", topic, ts, len(payload), *payload)
        return json.loads(p.stdout)["data"][0]

    # TSP simulator ------------------------------------------------------
    def tsp(self, path, body=None):
        req = urllib.request.Request(self.env["TSP_CONTROL"] + path, data=body,
                                     method="POST" if body is not None else "GET")
        with urllib.request.urlopen(req, timeout=10) as r:
            data = r.read()
        return json.loads(data) if data.startswith(b"{") else data

    def tsp_mode(self, mode):
        self.tsp("/mode", mode.encode())

    def tsp_records(self):
        db = sqlite3.connect(self.path("state", "tsp.db"), timeout=10)
        try:
            return db.execute("SELECT id, timestamp_usec, topic, payload, received_usec FROM records").fetchall()
        finally:
            db.close()

    # classifier storage ---------------------------------------------------
    def queue_rows(self, name, kind=None):
        db = sqlite3.connect(self.path("state", name), timeout=10)
        try:
            q = "SELECT id, priority, kind, encoding, records, data FROM items"
            if kind:
                return db.execute(q + " WHERE kind = ?", (kind,)).fetchall()
            return db.execute(q).fetchall()
        finally:
            db.close()

    def outbox_records(self):
        """Every record in the outbox, decoded from its segments."""
        out = []
        for rid, prio, kind, enc, n, data in self.queue_rows("outbox.db"):
            assert enc == "tgr1", enc
            recs = decode_records(data)
            assert len(recs) == n, (len(recs), n)
            assert recs[0][0] == rid
            out += [(r[0], r[1], r[2], r[3], prio) for r in recs]
        return out

    def backlog_records(self, kind="batch"):
        out = []
        for rid, prio, k, enc, n, data in self.queue_rows("backlog.db", kind):
            raw = gzip.decompress(data) if enc == "tgr1+gzip" else data
            recs = decode_records(raw)
            assert len(recs) == n
            out += recs
        return out

    def producer(self):
        p = Producer(self.env["TOLLGATE_TELEMETRY_SOCKET"])
        self.producers.append(p)
        return p
