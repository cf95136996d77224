#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Integration tests of tollgate-cloud-sim (docs/cloud-simulator.md).

Each test class starts its own simulator on loopback (ephemeral ports, a
private temporary directory with a test PKI made by tools/tollgate-pki and
key certificates made with openssl) and talks to it the way the car key's
relay does: HTTPS with a client certificate, through urllib and ssl. The
SQLite file is read directly. Python's standard library only.

    TOLLGATE_BUILD_DIR=build python3 tests/integration/test_cloud_sim.py -v [Class[.test]]

CLOUD_SIM=/path/to/tollgate-cloud-sim overrides the binary (e.g. one built
with -Db_sanitize=address,undefined: the simulator's standard error is
checked for sanitizer reports when it stops).
"""

import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("TOLLGATE_BUILD_DIR", os.path.join(REPO, "build"))
CLOUD_SIM = os.environ.get("CLOUD_SIM", os.path.join(BUILD, "tools", "cloud-sim", "tollgate-cloud-sim"))
PKI_TOOL = os.path.join(REPO, "tools", "tollgate-pki")

GW = "TG-SANDBOX-0001"   # the gateway id (tollgate-pki's default)
GW2 = "TG-OTHER-0002"
KEY = "TG-KEY-0001"      # the car key (tollgate-pki's key.pem); paired with GW and GW2 at start
STRANGER = "TG-KEY-0002" # a valid certificate of the same CA (made here), paired with nothing

MIB = 1024 * 1024


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def record(rid, topic, payload, ts=None):
    """One TGR1 record (docs/wire-formats.md §1)."""
    topic = topic.encode()
    if ts is None:
        ts = 1_700_000_000_000_000 + rid
    return struct.pack(">QQHI", rid, ts, len(topic), len(payload)) + topic + payload


def segment(first_id, n, topic="car/speed"):
    """A telemetry item: n records with ids first_id.. first_id+n-1."""
    return b"".join(record(first_id + i, topic, b"v=%d" % i) for i in range(n))


def streams_from_disk():
    """Does the sim-httpd this tree builds send bodies from files?"""
    with open(os.path.join(REPO, "tools", "tsp-sim", "sim-httpd.h")) as f:
        return "SIM_HTTPD_HAVE_BODY_FD" in f.read()


def sanitized():
    """Built with AddressSanitizer? (Its quarantine makes RSS meaningless.)"""
    with open(CLOUD_SIM, "rb") as f:
        return b"libasan.so" in f.read()


# --- PKI ----------------------------------------------------------------------

def make_client_cert(pki, name, cn):
    """Another key's client certificate for `cn`, from the test CA."""
    key, csr, pem = (os.path.join(pki, name + ext) for ext in (".key", ".csr", ".pem"))
    ext = os.path.join(pki, "client-ext.cnf")
    with open(ext, "w") as f:
        f.write("basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n"
                "extendedKeyUsage = clientAuth\n")
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)
    run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
    run("req", "-new", "-key", key, "-subj", "/CN=" + cn, "-out", csr)
    run("x509", "-req", "-in", csr, "-CA", os.path.join(pki, "ca.pem"), "-CAkey", os.path.join(pki, "ca.key"),
        "-set_serial", "0x" + os.urandom(15).hex(), "-days", "30", "-sha256", "-extfile", ext, "-out", pem)
    return pem, key


def make_pki(directory):
    """tollgate-pki's files (key.pem is the car key; rogue-key.pem, expired-key.pem
    the negative cases) plus stranger.pem."""
    pki = os.path.join(directory, "pki")
    subprocess.run([PKI_TOOL, "--key-id", KEY, pki], check=True)
    make_client_cert(pki, "stranger", STRANGER)
    return pki


# --- the simulator -----------------------------------------------------------------

class Simulator:
    """One tollgate-cloud-sim process on ephemeral loopback ports."""

    def __init__(self, directory, pki, extra=()):
        self.dir = directory
        self.pki = pki
        self.db = os.path.join(directory, "cloud.db")
        self.pidfile = os.path.join(directory, "cloud-sim.pid")
        self.stderr_path = os.path.join(directory, "cloud-sim.log")
        self.extra = list(extra)
        self.proc = None

    def start(self):
        args = [CLOUD_SIM, "--pki=" + self.pki, "--db=" + self.db, "--listen=127.0.0.1:0",
                "--control=127.0.0.1:0", "--pidfile=" + self.pidfile,
                "--pair=%s:%s" % (KEY, GW), "--pair=%s:%s" % (KEY, GW2), *self.extra]
        self.stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.stderr)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("cloud-sim: listening on "):
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("no ready line (got %r); log:\n%s" % (line, self.log()))
        self.ready_line = line
        api, control = line[len("cloud-sim: listening on "):].strip().split(", control on ")
        self.port = int(api.rsplit(":", 1)[1])
        self.control_address = control
        return self

    def log(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, check=True):
        """SIGTERM; the process must exit 0, remove its pidfile, print nothing
        more on stdout and (under sanitizers) report nothing."""
        if not self.proc:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            rest = self.proc.stdout.read()
            code = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            self.proc.stdout.close()
            self.stderr.close()
            self.proc = None
        if check:
            log = self.log()
            assert code == 0, "exit status %d; log:\n%s" % (code, log)
            assert rest == b"", "unexpected output on stdout: %r" % rest
            assert not os.path.exists(self.pidfile), "pidfile left behind"
            for marker in ("Sanitizer", "runtime error:", "LeakSanitizer"):
                assert marker not in log, "sanitizer report:\n" + log

    # control API (plain HTTP on loopback)
    def control(self, path, body=None, method=None):
        method = method or ("POST" if body is not None else "GET")
        req = urllib.request.Request("http://%s%s" % (self.control_address, path), data=body, method=method)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                data = r.read()
                return json.loads(data) if r.headers.get_content_type() == "application/json" else data
        except urllib.error.HTTPError as e:
            raise AssertionError("control %s %s: %d %s" % (method, path, e.code, e.read().decode()))

    def control_status(self, path, body=None, method="POST"):
        req = urllib.request.Request("http://%s%s" % (self.control_address, path), data=body, method=method)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def stats(self):
        return self.control("/stats")

    def set_mode(self, mode):
        return self.control("/mode", mode.encode())

    def queue(self, data=None, gateway=GW, kind="upgrade-package", name="pkg.raucb", source=None):
        q = "gateway=%s&kind=%s&name=%s" % (gateway, kind, urllib.parse.quote(name))
        if source:
            q += "&source=" + urllib.parse.quote(source)
        return self.control("/downloads?" + q, data if data is not None else b"")

    def sql(self, query, *args):
        db = sqlite3.connect(self.db, timeout=10)
        try:
            return db.execute(query, args).fetchall()
        finally:
            db.close()

    def rss_peak_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return 0


class Key:
    """The key's side: HTTPS with a client certificate, through urllib."""

    def __init__(self, sim, cert=None, key=None, tls_max=None):
        ctx = ssl.create_default_context(cafile=os.path.join(sim.pki, "ca.pem"))
        if cert:
            ctx.load_cert_chain(cert, key)
        if tls_max:
            ctx.maximum_version = tls_max
        self.ctx = ctx
        self.base = "https://127.0.0.1:%d" % sim.port
        self.opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx))

    def request(self, method, path, body=None, headers=None, timeout=30):
        """(status, headers, body) of one request; HTTP errors are answers too."""
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})
        try:
            with self.opener.open(req, timeout=timeout) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def put_item(self, item_id, data, kind="telemetry", records=None, sha=None, gateway=GW, extra=None):
        if records is None:
            records = len(decode_ids(data)) if kind == "telemetry" else 0
        headers = {"Tollgate-Kind": kind, "Tollgate-Records": str(records),
                   "Tollgate-SHA256": sha or sha256(data), "Content-Type": "application/octet-stream"}
        headers.update(extra or {})
        return self.request("PUT", "/v1/gateways/%s/items/%d" % (gateway, item_id), data, headers)

    def listing(self, gateway=GW):
        status, _, body = self.request("GET", "/v1/gateways/%s/downloads" % gateway)
        assert status == 200, (status, body)
        return json.loads(body)

    def fetch(self, download_id, start=None, gateway=GW, headers=None):
        h = dict(headers or {})
        if start is not None:
            h["Range"] = "bytes=%d-" % start
        return self.request("GET", "/v1/gateways/%s/downloads/%d" % (gateway, download_id), headers=h)

    def post(self, download_id, what, gateway=GW):
        return self.request("POST", "/v1/gateways/%s/downloads/%d/%s" % (gateway, download_id, what), b"")


def decode_ids(buf):
    ids, off = [], 0
    while off < len(buf):
        rid, _, tl, pl = struct.unpack_from(">QQHI", buf, off)
        ids.append(rid)
        off += 22 + tl + pl
    return ids


class SimTestCase(unittest.TestCase):
    """One simulator per class; every test starts from /reset and mode normal."""

    extra_args = ()

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cloud-sim-test.")
        cls.pki = make_pki(cls.tmp)
        cls.sim = Simulator(cls.tmp, cls.pki, cls.extra_args).start()
        cls.key = Key(cls.sim, *cls.cert("key"))

    @classmethod
    def tearDownClass(cls):
        try:
            cls.sim.stop()
        finally:
            if os.environ.get("KEEP_TMP"):
                print("kept", cls.tmp, file=sys.stderr)
            else:
                shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def cert(cls, name):
        return os.path.join(cls.pki, name + ".pem"), os.path.join(cls.pki, name + ".key")

    def setUp(self):
        self.sim.set_mode("normal")
        self.assertEqual(self.sim.control("/reset", b""), {"reset": True})


# --- the API --------------------------------------------------------------------------

class CloudApiTest(SimTestCase):

    def test_upload_new_then_duplicate(self):
        data = segment(1000, 50)
        status, headers, _ = self.key.put_item(1000, data)
        self.assertEqual(status, 201)
        self.assertEqual(headers["Tollgate-Sim-Records"], "stored=50 duplicate=0")
        status, headers, _ = self.key.put_item(1000, data)
        self.assertEqual(status, 200)
        self.assertEqual(headers["Tollgate-Duplicate"], "item")

        rows = self.sim.sql("SELECT gateway, item_id, kind, records, size, sha256, key_id, duplicates, data "
                            "FROM uploads")
        self.assertEqual(rows, [(GW, 1000, "telemetry", 50, len(data), sha256(data), KEY, 1, data)])
        recs = self.sim.sql("SELECT id, topic, item_id FROM records WHERE gateway = ? ORDER BY id", GW)
        self.assertEqual(recs, [(1000 + i, "car/speed", 1000) for i in range(50)])
        payload, ts = self.sim.sql("SELECT payload, timestamp_usec FROM records WHERE id = 1007")[0]
        self.assertEqual((payload, ts), (b"v=7", 1_700_000_000_000_000 + 1007))
        s = self.sim.stats()
        self.assertEqual((s["uploads"], s["duplicate_uploads"], s["records"], s["bytes_in"]),
                         (1, 1, 50, 2 * len(data)))

    def test_every_record_exactly_once(self):
        # 30 segments, every third one sent twice (a key retrying after a lost answer).
        sent = []
        for n in range(30):
            first = (7 << 40) + n * 100
            data = segment(first, 1 + n % 7)
            sent += decode_ids(data)
            for _ in range(2 if n % 3 == 0 else 1):
                self.assertIn(self.key.put_item(first, data)[0], (200, 201))
        (count, distinct), = self.sim.sql("SELECT count(*), count(DISTINCT id) FROM records WHERE gateway = ?", GW)
        self.assertEqual((count, distinct), (len(sent), len(sent)))
        self.assertEqual(sorted(r for r, in self.sim.sql("SELECT id FROM records")), sorted(sent))
        s = self.sim.stats()
        self.assertEqual((s["uploads"], s["duplicate_uploads"], s["records"], s["duplicate_records"]),
                         (30, 10, len(sent), 0))

    def test_same_record_in_two_items_counts_once(self):
        self.assertEqual(self.key.put_item(1, segment(1, 3))[0], 201)
        status, headers, _ = self.key.put_item(3, segment(3, 3))   # ids 3, 4, 5: 3 is not new
        self.assertEqual((status, headers["Tollgate-Sim-Records"]), (201, "stored=2 duplicate=1"))
        self.assertEqual(self.sim.sql("SELECT count(*) FROM records"), [(5,)])
        self.assertEqual(self.sim.sql("SELECT item_id FROM records WHERE id = 3"), [(1,)])

    def test_gateways_are_separate(self):
        data = segment(500, 2)
        self.assertEqual(self.key.put_item(500, data)[0], 201)
        self.assertEqual(self.key.put_item(500, data, gateway=GW2)[0], 201)
        self.assertEqual(self.sim.sql("SELECT gateway, count(*) FROM records GROUP BY gateway ORDER BY gateway"),
                         [(GW2, 2), (GW, 2)])

    def test_hash_mismatch_stores_nothing(self):
        data = segment(10, 5)
        status, _, body = self.key.put_item(10, data, sha=sha256(data + b"x"))
        self.assertEqual(status, 400)
        self.assertTrue(body.startswith(b"sha256-mismatch (the body's is " + sha256(data).encode()), body)
        status, _, _ = self.key.put_item(10, data, sha=sha256(data).upper())   # hex in either case
        self.assertEqual(status, 201)
        self.assertEqual(self.sim.sql("SELECT count(*) FROM uploads"), [(1,)])
        self.assertEqual(self.sim.stats()["bad_requests"], 1)

    def test_conflict(self):
        self.assertEqual(self.key.put_item(20, segment(20, 2))[0], 201)
        status, _, body = self.key.put_item(20, segment(20, 3))
        self.assertEqual(status, 409, body)
        self.assertTrue(body.startswith(b"item-conflict"), body)
        self.assertEqual(self.sim.sql("SELECT records FROM uploads"), [(2,)])
        self.assertEqual(self.sim.stats()["upload_conflicts"], 1)

    def test_bad_uploads(self):
        data = segment(30, 3)
        cases = [
            ({"Tollgate-Kind": None}, 400, b"missing-header Tollgate-Kind"),
            ({"Tollgate-Kind": "upgrade"}, 400, b"invalid-kind"),
            ({"Tollgate-Records": "3x"}, 400, b"invalid-records"),
            ({"Tollgate-Records": "4"}, 400, b"records-mismatch"),
            ({"Tollgate-SHA256": "abc"}, 400, b"invalid-sha256"),
            ({"Tollgate-SHA256": None}, 400, b"missing-header Tollgate-SHA256"),
            ({"Content-Encoding": "gzip"}, 415, b"unsupported-content-encoding"),
        ]
        for change, status, reason in cases:
            with self.subTest(change=change):
                headers = {"Tollgate-Kind": "telemetry", "Tollgate-Records": "3", "Tollgate-SHA256": sha256(data)}
                for k, v in change.items():
                    if v is None:
                        del headers[k]
                    else:
                        headers[k] = v
                got, _, body = self.key.request("PUT", "/v1/gateways/%s/items/30" % GW, data, headers)
                self.assertEqual(got, status, body)
                self.assertTrue(body.startswith(reason), body)
        bad = data[:-1]
        got, _, body = self.key.put_item(30, bad, records=3)
        self.assertEqual((got, body), (400, b"truncated-record at record 3\n"))
        bad = record(1, "car/..speed", b"")
        got, _, body = self.key.put_item(1, bad, records=1)
        self.assertEqual((got, body), (400, b"invalid-topic at record 1\n"))
        self.assertEqual(self.sim.sql("SELECT count(*) FROM uploads"), [(0,)])

    def test_other_kinds_are_stored_as_they_are(self):
        blob = os.urandom(100_000)
        self.assertEqual(self.key.put_item(77, blob, kind="file")[0], 201)
        self.assertEqual(self.key.put_item(78, b"", kind="kb-update")[0], 201)
        self.assertEqual(self.sim.sql("SELECT item_id, kind, size, data = ? FROM uploads ORDER BY item_id", blob),
                         [(77, "file", len(blob), 1), (78, "kb-update", 0, 0)])
        self.assertEqual(self.sim.sql("SELECT count(*) FROM records"), [(0,)])

    def test_item_ids_up_to_2_64(self):
        data = segment(5, 1)
        self.assertEqual(self.key.put_item(2**64 - 1, data)[0], 201)
        self.assertEqual(self.sim.sql("SELECT item_id FROM uploads"), [(-1,)])   # SQLite's signed 64-bit
        status, _, body = self.key.request("PUT", "/v1/gateways/%s/items/18446744073709551616" % GW, data)
        self.assertEqual(status, 400)
        self.assertTrue(body.startswith(b"invalid-item-id"))

    def test_largest_upload(self):
        blob = os.urandom(64 * MIB)
        t = time.monotonic()
        status, _, _ = self.key.put_item(64, blob, kind="file")
        elapsed = time.monotonic() - t
        self.assertEqual(status, 201)
        print("\n  upload 64 MiB: %.2f s, %.0f MB/s" % (elapsed, len(blob) / elapsed / 1e6), file=sys.stderr)
        self.assertEqual(self.sim.sql("SELECT size, sha256 FROM uploads"), [(len(blob), sha256(blob))])

    def test_too_large_upload_is_refused_before_its_body(self):
        with socket.create_connection(("127.0.0.1", self.sim.port)) as raw:
            with self.key.ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"PUT /v1/gateways/%s/items/1 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                          b"Tollgate-Kind: file\r\nTollgate-Records: 0\r\n\r\n" % (GW.encode(), 64 * MIB + 1))
                answer = s.recv(4096)
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer)

    def test_upload_needs_content_length(self):
        with socket.create_connection(("127.0.0.1", self.sim.port)) as raw:
            with self.key.ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"PUT /v1/gateways/%s/items/1 HTTP/1.1\r\nHost: x\r\nTollgate-Kind: file\r\n"
                          b"Tollgate-Records: 0\r\nTollgate-SHA256: %s\r\n\r\n" % (GW.encode(), sha256(b"").encode()))
                answer = s.recv(4096)
        self.assertTrue(answer.startswith(b"HTTP/1.1 411 "), answer)

    def test_pairing(self):
        stranger = Key(self.sim, *self.cert("stranger"))
        gateway_cert = Key(self.sim, *self.cert("gateway"))   # CN = the gateway id, but not a paired key
        qid = self.sim.queue(b"abc")["id"]
        requests = [("PUT", "/items/1"), ("GET", "/downloads"), ("GET", "/downloads/%d" % qid),
                    ("POST", "/downloads/%d/ack" % qid), ("POST", "/downloads/%d/delivered" % qid)]
        for who in (stranger, gateway_cert):
            for method, path in requests:
                with self.subTest(method=method, path=path):
                    status, _, body = who.request(method, "/v1/gateways/%s%s" % (GW, path), b"x" if method == "PUT"
                                                  else None)
                    self.assertEqual(status, 403)
                    self.assertTrue(body.startswith(b"not-paired"), body)
        self.assertEqual(self.sim.stats()["forbidden"], 10)
        self.assertEqual(self.key.request("GET", "/v1/gateways/TG-UNKNOWN/downloads")[0], 403)

        self.assertEqual(self.sim.control("/pair?key=%s&gateway=%s" % (STRANGER, GW), b""),
                         {"key": STRANGER, "gateway": GW, "paired": True, "changed": True})
        self.assertEqual(stranger.listing(), [{"id": qid, "kind": "upgrade-package", "size": 3,
                                               "sha256": sha256(b"abc"), "name": "pkg.raucb"}])
        self.assertIn({"key": STRANGER, "gateway": GW}, self.sim.control("/pairs"))
        self.assertEqual(self.sim.control("/unpair?key=%s&gateway=%s" % (STRANGER, GW), b"")["changed"], True)
        self.assertEqual(stranger.request("GET", "/v1/gateways/%s/downloads" % GW)[0], 403)

    def test_routing(self):
        cases = [("GET", "/", 404), ("GET", "/v1/gateways/%s" % GW, 404), ("GET", "/v1/gateways/%s/items" % GW, 404),
                 ("GET", "/v1/gateways/%s/downloads/1/nack" % GW, 404),
                 ("GET", "/v1/gateways/%s/downloads/1/ack/x" % GW, 404),
                 ("GET", "/v1/gateways/bad%20id/downloads", 400), ("GET", "/v1/gateways/%s/downloads/x" % GW, 400),
                 ("GET", "/v1/gateways/%s/downloads/-1" % GW, 400),
                 ("POST", "/v1/gateways/%s/downloads" % GW, 405), ("GET", "/v1/gateways/%s/items/1" % GW, 405),
                 ("GET", "/v1/gateways/%s/downloads/1/ack" % GW, 405), ("GET", "/v1/gateways/%s/downloads/1" % GW, 404)]
        for method, path, want in cases:
            with self.subTest(method=method, path=path):
                status, headers, _ = self.key.request(method, path, b"" if method == "POST" else None)
                self.assertEqual(status, want)
                if want == 405:
                    self.assertIn(headers["Allow"], ("GET", "PUT", "POST"))

    def test_control_api(self):
        s = self.sim.stats()
        for field in ("requests", "uploads", "duplicate_uploads", "bytes_in", "downloads_served", "bytes_out", "acks",
                      "delivered", "records", "duplicate_records", "tls_failures", "bad_requests", "forbidden",
                      "faults_injected", "downloads_queued", "connections_open", "wire_bytes_in", "mode"):
            self.assertIn(field, s)
        self.assertEqual(self.sim.control("/mode"), b"normal\n")
        self.assertEqual(self.sim.set_mode("slow:250\n"), {"mode": "slow:250"})
        self.assertEqual(self.sim.control("/mode"), b"slow:250\n")
        for bad in (b"", b"slow", b"slow:x", b"truncate:", b"fast"):
            self.assertEqual(self.sim.control_status("/mode", bad)[0], 400)
        bad_queues = ["/downloads?kind=file&name=x", "/downloads?gateway=G&kind=telemetry&name=x",
                      "/downloads?gateway=G&kind=file", "/downloads?gateway=G&kind=file&name=%01",
                      "/downloads?gateway=G&kind=file&name=%ff", "/downloads?gateway=a/b&kind=file&name=x",
                      "/downloads?gateway=G&kind=file&name=x&source=/nonexistent",
                      "/downloads?gateway=G&kind=file&name=x&source=/tmp"]
        for q in bad_queues:
            with self.subTest(q=q):
                self.assertEqual(self.sim.control_status(q, b"")[0], 400)
        self.assertEqual(self.sim.control_status("/downloads?gateway=G&kind=file&name=x&source=/etc/hostname",
                                                 b"body")[0], 400)
        self.assertEqual(self.sim.control_status("/pair?key=K", b"")[0], 400)
        self.assertEqual(self.sim.control_status("/stats", b"")[0], 405)
        self.assertEqual(self.sim.control_status("/nothing", None, "GET")[0], 404)

    def test_reset(self):
        self.key.put_item(1, segment(1, 2))
        first = self.sim.queue(b"one")
        path, = self.sim.sql("SELECT path FROM downloads")[0]
        self.assertTrue(os.path.exists(path))
        self.sim.control("/reset", b"")
        for table in ("uploads", "records", "downloads"):
            self.assertEqual(self.sim.sql("SELECT count(*) FROM " + table), [(0,)])
        self.assertFalse(os.path.exists(path))
        s = self.sim.stats()
        self.assertEqual((s["uploads"], s["records"], s["downloads_queued"], s["requests"]), (0, 0, 0, 0))
        # Ids keep counting up: a gateway that stored id N answers "have" to any later N.
        self.assertGreater(self.sim.queue(b"two")["id"], first["id"])
        self.assertEqual(self.key.put_item(1, segment(1, 2))[0], 201)


# --- downloads -------------------------------------------------------------------------------

class CloudDownloadTest(SimTestCase):

    def test_listing(self):
        a = self.sim.queue(b"A" * 10, name="ota-1.0.raucb")
        b = self.sim.queue(b"B" * 20, kind="kb-update", name='kb "2026" \\ ✓')
        self.sim.queue(b"C", gateway=GW2, kind="file", name="other")
        self.assertEqual(self.key.listing(), [
            {"id": a["id"], "kind": "upgrade-package", "size": 10, "sha256": sha256(b"A" * 10),
             "name": "ota-1.0.raucb"},
            {"id": b["id"], "kind": "kb-update", "size": 20, "sha256": sha256(b"B" * 20), "name": 'kb "2026" \\ ✓'},
        ])
        self.assertEqual([d["name"] for d in self.key.listing(GW2)], ["other"])
        self.assertEqual(a["sha256"], sha256(b"A" * 10))
        self.assertGreater(b["id"], a["id"])
        self.assertEqual(self.sim.stats()["listings"], 2)

    def test_full_download(self):
        data = os.urandom(3 * MIB + 17)
        d = self.sim.queue(data)
        status, headers, body = self.key.fetch(d["id"])
        self.assertEqual(status, 200)
        self.assertEqual(body, data)
        self.assertEqual(headers["Content-Length"], str(len(data)))
        self.assertEqual(headers["ETag"], '"%s"' % sha256(data))
        self.assertEqual(headers["Tollgate-SHA256"], sha256(data))
        self.assertEqual(headers["Accept-Ranges"], "bytes")
        self.assertEqual(headers["Tollgate-Kind"], "upgrade-package")
        self.assertIsNone(headers["Content-Range"])
        s = self.sim.stats()
        self.assertEqual((s["downloads_served"], s["bytes_out"]), (1, len(data)))
        self.assertEqual(self.sim.sql("SELECT fetches FROM downloads"), [(1,)])

    def test_resume_from_offset(self):
        data = os.urandom(1 * MIB + 3)
        d = self.sim.queue(data)
        for start in (0, 1, 4096, len(data) // 2, len(data) - 1):
            with self.subTest(start=start):
                status, headers, body = self.key.fetch(d["id"], start)
                self.assertEqual(status, 206)
                self.assertEqual(headers["Content-Range"], "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
                self.assertEqual(sha256(data[:start] + body), sha256(data))
        status, headers, body = self.key.fetch(d["id"], headers={"Range": "bytes=10-19"})
        self.assertEqual((status, headers["Content-Range"], body), (206, "bytes 10-19/%d" % len(data), data[10:20]))
        status, headers, body = self.key.fetch(d["id"], headers={"Range": "bytes=-5"})
        self.assertEqual((status, body), (206, data[-5:]))
        status, headers, body = self.key.fetch(d["id"], headers={"Range": "bytes=5-99999999"})
        self.assertEqual((status, body), (206, data[5:]))

    def test_bad_ranges(self):
        data = b"0123456789"
        d = self.sim.queue(data)
        for rng in ("bytes=10-", "bytes=99-", "bytes=-0", "bytes=5-4", "bytes=0-1,3-4", "items=0-", "bytes=x-",
                    "bytes=", "bytes=--1"):
            with self.subTest(range=rng):
                status, headers, body = self.key.fetch(d["id"], headers={"Range": rng})
                self.assertEqual(status, 416, body)
                self.assertEqual(headers["Content-Range"], "bytes */10")
        empty = self.sim.queue(b"", name="empty")
        self.assertEqual(self.key.fetch(empty["id"])[0:3:2], (200, b""))
        self.assertEqual(self.key.fetch(empty["id"], 0)[0], 416)
        # A Range for another version of the item is ignored (If-Range): the whole item.
        status, _, body = self.key.fetch(d["id"], 5, headers={"If-Range": '"%s"' % sha256(b"other")})
        self.assertEqual((status, body), (200, data))
        status, _, body = self.key.fetch(d["id"], 5, headers={"If-Range": '"%s"' % sha256(data)})
        self.assertEqual((status, body), (206, data[5:]))

    def test_ack_and_delivered(self):
        data = os.urandom(1000)
        d = self.sim.queue(data)
        other = self.sim.queue(b"x", gateway=GW2)
        path, = self.sim.sql("SELECT path FROM downloads WHERE id = ?", d["id"])[0]
        self.assertEqual(self.key.post(d["id"], "ack")[0], 204)
        self.assertEqual(self.key.listing(), [])
        self.assertFalse(os.path.exists(path), "the cloud keeps its copy after the ack")
        status, _, body = self.key.fetch(d["id"])
        self.assertEqual(status, 404)
        self.assertTrue(body.startswith(b"download-acknowledged"), body)
        self.assertEqual(self.key.post(d["id"], "ack")[0], 204)          # a retried ack
        self.assertEqual(self.key.post(d["id"], "delivered")[0], 204)
        self.assertEqual(self.key.post(d["id"], "delivered")[0], 204)
        self.assertEqual(self.key.post(999999, "ack")[0], 404)
        self.assertEqual(self.key.post(other["id"], "ack")[0], 404)      # another gateway's
        acked, delivered = self.sim.sql("SELECT acked_usec, delivered_usec FROM downloads WHERE id = ?", d["id"])[0]
        self.assertGreater(acked, 0)
        self.assertGreaterEqual(delivered, acked)
        s = self.sim.stats()
        self.assertEqual((s["acks"], s["duplicate_acks"], s["delivered"]), (1, 1, 1))
        self.assertEqual([x["id"] for x in self.key.listing(GW2)], [other["id"]])

    def test_delivered_before_ack_keeps_it_listed(self):
        d = self.sim.queue(b"abc")
        self.assertEqual(self.key.post(d["id"], "delivered")[0], 204)
        self.assertEqual([x["id"] for x in self.key.listing()], [d["id"]])

    def test_large_download_from_a_file(self):
        size = 200 * MIB
        src = os.path.join(self.tmp, "big.bin")
        h = hashlib.sha256()
        with open(src, "wb") as f:
            block = os.urandom(MIB)
            for i in range(size // MIB):
                chunk = block[i:] + block[:i]
                h.update(chunk)
                f.write(chunk)
        d = self.sim.queue(source=src, name="big")
        os.unlink(src)   # the simulator copied it
        self.assertEqual((d["size"], d["sha256"]), (size, h.hexdigest()))
        rss_before = self.sim.rss_peak_kib()

        # The whole, read as a key would (in pieces), then the second half again.
        req = urllib.request.Request("%s/v1/gateways/%s/downloads/%d" % (self.key.base, GW, d["id"]))
        t = time.monotonic()
        got = hashlib.sha256()
        n = 0
        with self.key.opener.open(req, timeout=120) as r:
            while True:
                chunk = r.read(MIB)
                if not chunk:
                    break
                got.update(chunk)
                n += len(chunk)
        elapsed = time.monotonic() - t
        self.assertEqual((n, got.hexdigest()), (size, d["sha256"]))
        print("\n  download 200 MiB: %.2f s, %.0f MB/s" % (elapsed, size / elapsed / 1e6), file=sys.stderr)

        status, _, body = self.key.fetch(d["id"], size - 10 * MIB)
        self.assertEqual((status, len(body)), (206, 10 * MIB))
        growth = (self.sim.rss_peak_kib() - rss_before) * 1024
        print("  peak RSS growth while serving: %.1f MiB" % (growth / MIB), file=sys.stderr)
        if streams_from_disk() and not sanitized():
            self.assertLess(growth, 32 * MIB, "downloads are not streamed from disk")


# --- fault injection --------------------------------------------------------------------------

class CloudFaultTest(SimTestCase):

    def faults(self):
        return self.sim.stats()["faults_injected"]

    def test_hang(self):
        self.sim.set_mode("hang")
        data = segment(1, 1)
        t = time.monotonic()
        headers = {"Tollgate-Kind": "telemetry", "Tollgate-Records": "1", "Tollgate-SHA256": sha256(data)}
        with self.assertRaises((TimeoutError, urllib.error.URLError)):
            self.key.request("PUT", "/v1/gateways/%s/items/1" % GW, data, headers, timeout=1)
        self.assertGreaterEqual(time.monotonic() - t, 0.9)
        self.assertEqual(self.sim.sql("SELECT count(*) FROM uploads"), [(0,)])
        self.assertEqual(self.faults(), 1)
        self.sim.set_mode("normal")
        self.assertEqual(self.key.put_item(1, data)[0], 201)

    def test_error(self):
        self.sim.set_mode("error")
        status, headers, body = self.key.put_item(1, segment(1, 1))
        self.assertEqual((status, headers["Retry-After"], body), (503, "1", b"simulated-outage\n"))
        self.assertEqual(self.key.request("GET", "/v1/gateways/%s/downloads" % GW)[0], 503)
        self.assertEqual(self.sim.sql("SELECT count(*) FROM uploads"), [(0,)])
        self.assertEqual(self.faults(), 2)

    def test_reject(self):
        self.sim.set_mode("reject")
        status, _, body = self.key.put_item(1, segment(1, 1))
        self.assertEqual((status, body), (400, b"simulated-rejection\n"))
        self.assertEqual(self.sim.stats()["bad_requests"], 0)

    def test_close_and_garbage(self):
        for mode in ("close", "garbage"):
            with self.subTest(mode=mode):
                self.sim.set_mode(mode)
                with self.assertRaises((http.client.HTTPException, ConnectionError, urllib.error.URLError)):
                    self.key.put_item(1, segment(1, 1))
        self.assertEqual(self.sim.sql("SELECT count(*) FROM uploads"), [(0,)])
        self.assertEqual(self.faults(), 2)

    def test_lose_reply_then_retry_is_a_duplicate(self):
        data = segment(40, 4)
        d = self.sim.queue(b"pkg")
        self.sim.set_mode("lose-reply")
        with self.assertRaises((http.client.HTTPException, ConnectionError, urllib.error.URLError)):
            self.key.put_item(40, data)
        with self.assertRaises((http.client.HTTPException, ConnectionError, urllib.error.URLError)):
            self.key.post(d["id"], "ack")
        self.sim.set_mode("normal")
        self.assertEqual(self.sim.sql("SELECT count(*) FROM records"), [(4,)])   # stored although unanswered
        self.assertEqual(self.key.put_item(40, data)[0], 200)
        self.assertEqual(self.key.post(d["id"], "ack")[0], 204)
        s = self.sim.stats()
        self.assertEqual((s["uploads"], s["duplicate_uploads"], s["acks"], s["duplicate_acks"], s["faults_injected"]),
                         (1, 1, 1, 1, 2))

    def test_slow(self):
        self.sim.set_mode("slow:400")
        t = time.monotonic()
        self.assertEqual(self.key.put_item(1, segment(1, 1))[0], 201)
        self.assertGreaterEqual(time.monotonic() - t, 0.4)

    def test_truncated_download_resumes(self):
        data = os.urandom(2 * MIB + 5)
        d = self.sim.queue(data)
        self.sim.set_mode("truncate:%d" % (MIB // 2))
        req = urllib.request.Request("%s/v1/gateways/%s/downloads/%d" % (self.key.base, GW, d["id"]))
        with self.assertRaises(http.client.IncompleteRead) as cm:
            with self.key.opener.open(req, timeout=30) as r:
                self.assertEqual(r.status, 200)
                self.assertEqual(r.headers["Content-Length"], str(len(data)))
                r.read()
        got = cm.exception.partial
        self.assertEqual(len(got), MIB // 2)
        # The next piece is cut as well, from where the key resumes.
        with self.assertRaises(http.client.IncompleteRead) as cm:
            self.key.fetch(d["id"], len(got))
        got += cm.exception.partial
        self.assertEqual(len(got), MIB)
        self.sim.set_mode("normal")
        status, _, body = self.key.fetch(d["id"], len(got))
        self.assertEqual(status, 206)
        self.assertEqual(sha256(got + body), d["sha256"])
        s = self.sim.stats()
        self.assertEqual((s["faults_injected"], s["downloads_served"], s["bytes_out"]), (2, 1, len(data)))

    def test_mode_survives_reset_and_leaves_control_alone(self):
        self.sim.set_mode("error")
        self.sim.control("/reset", b"")
        self.assertEqual(self.sim.control("/mode"), b"error\n")
        self.assertEqual(self.sim.stats()["mode"], "error")
        self.assertEqual(self.sim.queue(b"q")["size"], 1)   # the control API is not affected


# --- TLS ---------------------------------------------------------------------------------------

class CloudTlsTest(SimTestCase):

    def refused(self, key):
        with self.assertRaises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
            status, _, _ = key.request("GET", "/v1/gateways/%s/downloads" % GW)
            # TLS 1.3: the client learns of the refusal only when it reads.
            self.fail("answered %d" % status)

    def test_rogue_expired_and_missing_certificates_are_refused(self):
        before = self.sim.stats()["tls_failures"]
        self.refused(Key(self.sim, *self.cert("rogue-key")))
        self.refused(Key(self.sim, *self.cert("expired-key")))
        self.refused(Key(self.sim, *self.cert("rogue-gateway")))
        self.refused(Key(self.sim))
        deadline = time.monotonic() + 5
        while self.sim.stats()["tls_failures"] < before + 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.sim.stats()["tls_failures"], before + 4)
        log = self.sim.log()
        self.assertIn("certificate expired", log)
        self.assertIn("TLS handshake with 127.0.0.1", log)

    def test_tls_1_2(self):
        key12 = Key(self.sim, *self.cert("key"), tls_max=ssl.TLSVersion.TLSv1_2)
        self.assertEqual(key12.put_item(1, segment(1, 1))[0], 201)

    def test_plain_http_is_not_answered(self):
        with socket.create_connection(("127.0.0.1", self.sim.port), timeout=5) as s:
            s.sendall(b"GET /v1/gateways/%s/downloads HTTP/1.1\r\nHost: x\r\n\r\n" % GW.encode())
            try:
                answer = s.recv(100)
            except ConnectionResetError:
                answer = b""
        self.assertFalse(answer.startswith(b"HTTP/"), answer)

    def test_keep_alive(self):
        conn = http.client.HTTPSConnection("127.0.0.1", self.sim.port, context=self.key.ctx, timeout=10)
        before = self.sim.stats()["connections_total"]
        d = self.sim.queue(b"0123456789")
        for i in range(5):
            conn.request("GET", "/v1/gateways/%s/downloads/%d" % (GW, d["id"]), headers={"Range": "bytes=%d-" % i})
            r = conn.getresponse()
            self.assertEqual((r.status, r.read()), (206, b"0123456789"[i:]))
        conn.close()
        self.assertEqual(self.sim.stats()["connections_total"], before + 1)


# --- the process ---------------------------------------------------------------------------------

class CloudProcessTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cloud-sim-test.")
        cls.pki = make_pki(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_ready_line_pidfile_and_clean_exit(self):
        sim = Simulator(self.tmp, self.pki).start()
        try:
            self.assertRegex(sim.ready_line,
                             r"^cloud-sim: listening on 127\.0\.0\.1:\d+, control on 127\.0\.0\.1:\d+\n$")
            with open(sim.pidfile) as f:
                self.assertEqual(int(f.read()), sim.proc.pid)
            self.assertTrue(os.path.isdir(sim.db + ".downloads"))
        finally:
            sim.stop()

    def test_state_survives_a_restart(self):
        directory = tempfile.mkdtemp(dir=self.tmp)
        sim = Simulator(directory, self.pki).start()
        key = Key(sim, os.path.join(self.pki, "key.pem"), os.path.join(self.pki, "key.key"))
        data = segment(1, 3)
        self.assertEqual(key.put_item(1, data)[0], 201)
        first = sim.queue(b"abc")["id"]
        sim.stop()
        sim.start()
        key = Key(sim, os.path.join(self.pki, "key.pem"), os.path.join(self.pki, "key.key"))
        try:
            self.assertEqual(key.put_item(1, data)[0], 200)
            self.assertEqual(key.fetch(first)[2], b"abc")
            self.assertGreater(sim.queue(b"def")["id"], first)
        finally:
            sim.stop()

    def test_bad_command_lines(self):
        db = os.path.join(self.tmp, "x.db")
        base = ["--pki=" + self.pki, "--db=" + db]
        cases = [[], ["--db=" + db], ["--pki=" + self.pki], base + ["--pair=K"], base + ["--pair=K:bad/gw"],
                 base + ["--mode=x"], base + ["--mode=slow:3600001"],
                 base + ["--control=0.0.0.0:0", "--listen=127.0.0.1:0"],
                 ["--pki=/nonexistent", "--db=" + db], base + ["extra"]]
        for args in cases:
            with self.subTest(args=args):
                r = subprocess.run([CLOUD_SIM, *args], capture_output=True, timeout=20)
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertEqual(r.stdout, b"")
                self.assertNotEqual(r.stderr, b"")
                self.assertNotIn(b"Sanitizer", r.stderr)

    def test_help_and_version(self):
        r = subprocess.run([CLOUD_SIM, "--help"], capture_output=True, check=True)
        self.assertIn(b"--pair=KEYID:GWID", r.stdout)
        r = subprocess.run([CLOUD_SIM, "--version"], capture_output=True, check=True)
        self.assertTrue(r.stdout.startswith(b"tollgate-cloud-sim "))


if __name__ == "__main__":
    unittest.main()
