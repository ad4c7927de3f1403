#!/usr/bin/python3
"""The core's HTTP API from the outside (docs/api.md, nodes/core/): the
fleet server runs as `tinylcm run graphs/core.yaml` on a free loopback
port with a temporary store, and this test talks to it over HTTP the way
curl would.

1. every route's happy path, with exact values: registration (secret,
   token and API-key rules), devices, packages (stored, then duplicate),
   the package list and its filters, drift events (list, get, image,
   validate, reject), sample labels and thumbnails (decoded PNG pixels),
   feedback (pull, ack, re-offer), per-device metrics and logs, the
   Prometheus text (promtool when installed), the fleet page. 64-bit
   values (frame ids above 2^53, nanosecond times) come back digit-exact.
2. every error status of the contract, each a JSON {"error", "detail"}:
   400, 401, 403, 404, 405 (Allow), 411, 413, 414, 429 (Retry-After).
3. a corpus of ~270 bad requests (truncated and bit-flipped packages,
   forged offsets, huge counts, path traversal, overlong URIs, NULs,
   non-UTF-8): each gets a 4xx (a few malformed HTTP heads are dropped by
   NNG's parser without an answer: allowed for those only), never a 5xx,
   never a hang; after it the core answers and has every package.
4. kill -9 mid-ingest: 4 threads upload 300 packages with retries, the
   core is killed and restarted on the same store; every package ends
   acknowledged and listed once, what was answered `stored` before the
   kill is `duplicate` after it, and the counters agree.

Time is never asserted (timeouts only turn a hang into a failure).

usage: api_test.py TINYLCM REPO_ROOT
"""
import http.client
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fbwrite as fb  # noqa: E402

ADMIN = "admin-token-for-the-test"
FLEET_KEY = "fleet-key-for-the-test"
PKG_TYPE = "application/x-tinylcm-package"
BIG = 2 ** 62  # frame ids above 2^53: exact only as integers
TIMEOUT = 30   # seconds for one request: a hang fails, never a wait

fails = []


def check(cond, what):
    print("%-4s %s" % ("ok" if cond else "FAIL", what), flush=True)
    if not cond:
        fails.append(what)
    return cond


def uuid7():
    """A UUIDv7: 48 bits of milliseconds, version 7, variant 10, random."""
    ms = time.time_ns() // 1000000
    r = int.from_bytes(os.urandom(10), "big")
    v = (ms << 80 | 7 << 76 | (r >> 62 & 0xfff) << 64 | 2 << 62 |
         r & (1 << 62) - 1)
    return str(uuid.UUID(int=v))


# ---- the core as a subprocess ------------------------------------------------

class Core:
    """One `tinylcm run graphs/core.yaml` on port 0 with its own store."""

    def __init__(self, tinylcm, root, work, name, admin=ADMIN, key="",
                 sets=()):
        self.tinylcm, self.root, self.name = tinylcm, root, name
        self.store = os.path.join(work, name + ".store")
        self.portfile = os.path.join(work, name + ".port")
        self.logpath = os.path.join(work, name + ".log")
        self.admin, self.key, self.sets = admin, key, sets
        self.proc, self.port, self.runs = None, None, 0

    def start(self):
        if os.path.exists(self.portfile):
            os.unlink(self.portfile)
        env = dict(os.environ, CORE_STORE=self.store,
                   CORE_LISTEN="http://127.0.0.1:0",
                   CORE_PORT_FILE=self.portfile,
                   CORE_ADMIN_TOKEN=self.admin, CORE_API_KEY=self.key)
        cmd = [self.tinylcm, "run",
               os.path.join(self.root, "graphs", "core.yaml"), "--headless"]
        for s in self.sets:
            cmd += ["--set", s]
        self.runs += 1
        self.log = open(self.logpath, "a")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not os.path.exists(self.portfile):
            if self.proc.poll() is not None:
                raise RuntimeError("core %s exited with %d at start: %s" %
                                   (self.name, self.proc.returncode,
                                    self.tail()))
            if time.monotonic() > deadline:
                raise RuntimeError("core %s: no port file in 60 s" %
                                   self.name)
            time.sleep(0.02)
        self.port = int(open(self.portfile).read())
        return self

    def tail(self):
        self.log.flush()
        return open(self.logpath, errors="replace").read()[-2000:]

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)
        self.log.close()

    def stop(self):
        """SIGTERM: the core answers what is queued, flushes, exits 0."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            check(False, "%s: stops within 60 s of SIGTERM" % self.name)
        self.log.close()
        return rc


# ---- HTTP ------------------------------------------------------------------

class Resp:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def __repr__(self):
        return "%s %r" % (self.status, self.body[:300])


def req(port, method, path, body=None, headers=None, timeout=TIMEOUT):
    """One request on a new connection (http.client: well-formed HTTP)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = dict(headers or {})
            headers.setdefault("Content-Type", "application/json")
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()},
                    data)
    finally:
        c.close()


def raw(port, data, timeout=TIMEOUT):
    """Send bytes as they are; the answer (status None when the server
    closed without one). Raises socket.timeout on a hang."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    out = b""
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it refused early: read what it said
        while True:
            head, sep, rest = out.partition(b"\r\n\r\n")
            if sep:
                n = 0
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        n = int(v)
                if len(rest) >= n:
                    break
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                break
            out += chunk
    finally:
        s.close()
    head, sep, body = out.partition(b"\r\n\r\n")
    if not sep:
        return Resp(None, {}, out)
    lines = head.split(b"\r\n")
    hdr = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        hdr[k.strip().lower().decode()] = v.strip().decode()
    return Resp(int(lines[0].split()[1]), hdr, body)


def dev_auth(dev, token):
    return {"Authorization": "Bearer " + token, "X-Device-ID": dev}


ADMIN_H = {"Authorization": "Bearer " + ADMIN}


def post_pkg(port, dev, token, body, key=None, ctype=PKG_TYPE, pid=None,
             extra=None):
    h = dev_auth(dev, token) if token else {"X-Device-ID": dev}
    if key is not None:
        h["Idempotency-Key"] = key
    elif pid is not None:
        h["Idempotency-Key"] = pid
    if ctype is not None:
        h["Content-Type"] = ctype
    h.update(extra or {})
    return req(port, "POST", "/api/v1/packages", body, h)


def is_error(r, status, code=None, detail_has=None):
    j = r.json()
    return (r.status == status and isinstance(j, dict) and
            isinstance(j.get("error"), str) and
            isinstance(j.get("detail"), str) and j["detail"] != "" and
            (code is None or j["error"] == code) and
            (detail_has is None or detail_has in j["detail"]) and
            r.headers.get("content-type") == "application/json")


def expect_error(r, status, code, what, detail_has=None):
    return check(is_error(r, status, code, detail_has),
                 "%s: %d %s%s" % (what, status, code,
                                  "" if is_error(r, status, code, detail_has)
                                  else " (got %r)" % (r,)))


def prometheus(port):
    r = req(port, "GET", "/metrics")
    vals = {}
    for line in r.body.decode().splitlines():
        if line and not line.startswith("#"):
            k, v = line.split()
            vals[k] = float(v) if k.endswith("_seconds_total") else int(v)
    return r, vals


def png_gray(data):
    """Width, height and pixels of an 8-bit gray PNG (any row filter)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    at, idat, w = 8, b"", None
    while at < len(data):
        n, typ = struct.unpack_from(">I4s", data, at)
        chunk = data[at + 8:at + 8 + n]
        if zlib.crc32(typ + chunk) != struct.unpack_from(">I", data,
                                                         at + 8 + n)[0]:
            return None
        if typ == b"IHDR":
            w, h, depth, color = struct.unpack_from(">IIBB", chunk)
            if depth != 8 or color != 0:
                return None
        elif typ == b"IDAT":
            idat += chunk
        at += 12 + n
    raw_rows, px, prev = zlib.decompress(idat), bytearray(), bytes(w)
    for y in range(h):
        f, row = raw_rows[y * (w + 1)], bytearray(
            raw_rows[y * (w + 1) + 1:(y + 1) * (w + 1)])
        for x in range(w):
            a = row[x - 1] if x else 0
            b, c = prev[x], prev[x - 1] if x else 0
            if f == 1:
                row[x] = (row[x] + a) & 255
            elif f == 2:
                row[x] = (row[x] + b) & 255
            elif f == 3:
                row[x] = (row[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pr = a if pa <= pb and pa <= pc else b if pb <= pc else c
                row[x] = (row[x] + pr) & 255
        px += row
        prev = bytes(row)
    return w, h, bytes(px)


def zstd(data, size=True):
    """One zstd frame by the CLI (python3-zstandard is not required), with
    the content size in its header (package.fbs: "raw_size inside") unless
    size is False."""
    zs = shutil.which("zstd")
    if not zs:
        return None
    cmd = [zs, "-q", "-c", "-3"]
    if size:
        cmd.append("--stream-size=%d" % len(data))
    return subprocess.run(cmd, input=data, capture_output=True,
                          check=True).stdout


# ---- 1. happy paths -----------------------------------------------------------

D1, D2 = "pi-kitchen-01", "pi_hall.02"
THUMB1 = (4, 3, bytes(range(10, 130, 10)))
THUMB2 = (3, 2, bytes([0, 255, 17, 34, 51, 68]))
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(200))
CREATED = 1795000000987654321


def register(port, dev, secret=None, token=None, key=None, extra=None,
             hdev=None):
    body = {"device_id": dev}
    if secret is not None:
        body["secret"] = secret
    body.update(extra or {})
    h = {}
    if token:
        h["Authorization"] = "Bearer " + token
    if key:
        h["X-API-Key"] = key
    if hdev:
        h["X-Device-ID"] = hdev
    return req(port, "POST", "/api/v1/devices/register", body, h)


def registration(port, st):
    r = req(port, "GET", "/api/v1/ping")
    check(r.status == 204 and r.body == b"", "ping: 204, no body")
    r = req(port, "HEAD", "/api/v1/ping")
    check(r.status == 204, "HEAD ping: 204")
    s1, s2 = os.urandom(32).hex(), os.urandom(32).hex()
    info = {"platform": "linux", "arch": "aarch64",
            "versions": {"tinylcm": "0.6.0",
                         "models": {"features": "fmnist-cnn@3"}},
            "profile": "satellite-small",
            "location": {"lat": 52.52, "lon": 13.4, "source": "config"}}
    r = register(port, D1, s1, extra=info)
    j = r.json() or {}
    check(r.status == 201 and j.get("device_id") == D1 and
          str(j.get("token", "")).startswith("tlcd_") and
          len(j["token"]) == 69 and isinstance(j.get("registered_ns"), int)
          and j["registered_ns"] > 1.7e18,
          "register a new device: 201 with a token (%r)" % (r,))
    t1, reg_ns = j.get("token", "x"), j.get("registered_ns")
    r = register(port, D1, s1)
    j = r.json() or {}
    check(r.status == 200 and j.get("token") not in (None, t1) and
          j.get("registered_ns") == reg_ns,
          "the same registration again (the answer was lost): 200, a new "
          "token, the same registered_ns")
    t2 = j.get("token", "x")
    r = req(port, "GET", "/api/v1/devices/" + D1, headers=dev_auth(D1, t1))
    expect_error(r, 401, "unauthorized", "the previous token stops working")
    r = req(port, "GET", "/api/v1/devices/" + D1, headers=dev_auth(D1, t2))
    j = r.json() or {}
    check(r.status == 200 and j.get("device_id") == D1 and
          j.get("platform") == "linux" and j.get("arch") == "aarch64" and
          j.get("versions") == info["versions"] and
          j.get("location") == info["location"] and
          j.get("profile") == "satellite-small" and
          "token_sha256" not in j and "secret_sha256" not in j,
          "GET /devices/{id} by the device itself: its info, no hashes")
    r = register(port, D1, token=t2)
    t3 = (r.json() or {}).get("token", "x")
    check(r.status == 200, "re-register proven by the token: 200")
    r = req(port, "GET", "/api/v1/devices/" + D1, headers=dev_auth(D1, t3))
    check(r.status == 200 and (r.json() or {}).get("platform") == "linux",
          "a bare re-registration keeps what the device said before")
    expect_error(register(port, D1, s2), 409, "device_exists",
                 "another secret, no token")
    expect_error(register(port, D1), 409, "device_exists",
                 "no secret, no token")
    expect_error(register(port, D1, "abc"), 400, "bad_request",
                 "a secret that is not 64 hex characters", "secret")
    expect_error(register(port, D1, "g" * 64), 400, "bad_request",
                 "a secret with a non-hex character", "secret")
    # proven by the token, another secret replaces the stored one
    r = register(port, D1, s2, token=t3)
    t4 = (r.json() or {}).get("token", "x")
    check(r.status == 200, "token + a new secret: 200")
    expect_error(register(port, D1, s1), 409, "device_exists",
                 "the replaced secret no longer proves the device")
    r = register(port, D1, s2)
    check(r.status == 200, "the new secret proves it: 200")
    st["t1"] = (r.json() or {}).get("token", "x")
    r = req(port, "GET", "/api/v1/devices/" + D1,
            headers=dev_auth(D1, t4))
    expect_error(r, 401, "unauthorized", "t4 replaced by the secret's token")
    # a device without a secret: once, then only by token
    r = register(port, D2, extra={"platform": "linux", "arch": "x86_64"})
    check(r.status == 201, "register without a secret: 201")
    t = (r.json() or {}).get("token", "x")
    expect_error(register(port, D2), 409, "device_exists",
                 "no secret registered: a bare retry is refused")
    expect_error(register(port, D2, token=st["t1"]), 409, "device_exists",
                 "another device's token does not prove it")
    expect_error(register(port, D2, token=t, hdev=D1), 409,
                 "device_exists", "its token with another X-Device-ID")
    r = register(port, D2, token=t)
    check(r.status == 200, "its own token proves it: 200")
    st["t2"] = (r.json() or {}).get("token", "x")
    # bad registrations
    for body, what in ((b"{not json", "malformed JSON"),
                       (b"[1,2]", "a JSON array"),
                       (b"", "an empty body"),
                       (b'{"device_id": "a b"}', "a device id with a space"),
                       (b'{"device_id": "' + b"x" * 65 + b'"}',
                        "a 65-character device id"),
                       (b'{"device_id": ".."}', "device id '..'"),
                       (b'{"device_id": 7}', "a number as device id"),
                       (b'{"device_id": "ok1", "platform": ""}',
                        "an empty platform"),
                       (b'{"device_id": "ok1", "location": {"lat": 91, '
                        b'"lon": 0}}', "latitude 91"),
                       (b'{"device_id": "ok1", "versions": "1.0"}',
                        "versions not an object")):
        r = req(port, "POST", "/api/v1/devices/register", body,
                {"Content-Type": "application/json"})
        expect_error(r, 400, "bad_request", "register: " + what)
    # JSON that is valid must be read as JSON: 17 significant digits
    r = register(port, "float-dev", extra={
        "location": {"lat": 0.30000000000000004, "lon": -1e-7}})
    check(r.status == 201, "register: location 0.30000000000000004 and "
          "-1e-7 are numbers (%r)" % (r,))
    r = req(port, "GET", "/api/v1/devices/float-dev", headers=ADMIN_H)
    loc = (r.json() or {}).get("location", {})
    # (cJSON prints doubles with 15 digits when they compare equal within
    # an epsilon: the last unit may go)
    check(abs(loc.get("lat", 9) - 0.30000000000000004) < 1e-15 and
          loc.get("lon") == -1e-7, "the location comes back: %r" % (loc,))
    st["registrations"] = 8


def devices_routes(port, st):
    r = req(port, "GET", "/api/v1/devices", headers=ADMIN_H)
    ds = (r.json() or {}).get("devices", [])
    check(r.status == 200 and [d.get("device_id") for d in ds] ==
          sorted([D1, D2, "float-dev"]) and
          all("token_sha256" not in d and "secret_sha256" not in d
              for d in ds),
          "GET /devices (admin): every device by id, no hashes")
    expect_error(req(port, "GET", "/api/v1/devices"), 401, "unauthorized",
                 "GET /devices without a token")
    expect_error(req(port, "GET", "/api/v1/devices",
                     headers={"Authorization": "Bearer wrong"}), 401,
                 "unauthorized", "GET /devices with a wrong token")
    expect_error(req(port, "GET", "/api/v1/devices",
                     headers=dev_auth(D1, st["t1"])), 401, "unauthorized",
                 "GET /devices with a device token")
    r = req(port, "GET", "/api/v1/devices/" + D2, headers=ADMIN_H)
    check(r.status == 200 and (r.json() or {}).get("device_id") == D2,
          "GET /devices/{id} (admin)")
    expect_error(req(port, "GET", "/api/v1/devices/" + D2,
                     headers=dev_auth(D1, st["t1"])), 403, "forbidden",
                 "GET /devices/{other id} by a device")
    expect_error(req(port, "GET", "/api/v1/devices/ghost", headers=ADMIN_H),
                 404, "not_found", "GET /devices/{unknown} (admin)")
    expect_error(req(port, "GET", "/api/v1/devices/" + D1,
                     headers=dev_auth("ghost", st["t1"])), 401,
                 "unauthorized", "an unknown device", "not registered")


def drift_items():
    return [fb.drift_event(0, "drift.page_hinkley", "ph", "mean_distance",
                            3.25, 1.5, 2 ** 40 + 3, 1795000000123456789,
                            BIG + 5),
             fb.quarantine_batch([
                 fb.sample(BIG + 7, 1795000000000000007,
                           1795000000000000017, "Bag", 0.375, 2.5, 3,
                           [0.5, -1.25], THUMB1),
                 fb.sample(BIG + 9, 1795000000000000009,
                           1795000000000000019, "Coat", 0.25, 1.25, 5,
                           [2.0], THUMB2)], seq=4),
             fb.drift_event(1, "drift.page_hinkley", "ph", "mean_distance",
                            0.5, 1.5, 2 ** 40 + 90, 1795000000223456789,
                            BIG + 11)]


def drift_package(pid, dev):
    return fb.package(pid, dev, "drift_event", drift_items(), priority=2,
                      created_ns=CREATED, opened_ns=CREATED - 10, seq=3,
                      attachments=[("frame-5.png", "image/png", IMAGE),
                                   ("notes.txt", "text/plain", b"hello")],
                      schemas=[("tlcm.DriftEvent", "DRFT", 1),
                               ("tlcm.QuarantineBatch", "QBAT", 1)])


METRICS1 = [("node.knn.in", 42), ("process.state", "running"),
            ("gone.key", None)]


def metrics_items():
    return [fb.metrics(1795000000000000001, "metrics", 1, METRICS1),
            fb.metrics(1795000000000000002, "metrics", 2,
                       [("node.knn.in", 43.5)], full=False)]


def packages_routes(port, st):
    t1, t2 = st["t1"], st["t2"]
    pd, pm, pl, p2, pr = uuid7(), uuid7(), uuid7(), uuid7(), uuid7()
    st.update(pd=pd, pm=pm, pl=pl, p2=p2, pr=pr)
    bd = drift_package(pd, D1)
    raw_m = fb.payload(metrics_items())
    zm = zstd(raw_m)
    if zm:
        bm = fb.package(pm, D1, "metrics", metrics_items(), priority=1,
                        compression=1, body=zm, raw_size=len(raw_m),
                        created_ns=CREATED + 1)
    else:
        print("note: no zstd CLI: the metrics package goes uncompressed")
        bm = fb.package(pm, D1, "metrics", metrics_items(), priority=1,
                        created_ns=CREATED + 1)
    bl = fb.package(pl, D1, "operational_logs", [
        fb.log_line(1795000000000000100, 1, "tinylcm", "disk almost full",
                    7),
        fb.log_line(1795000000000000200, 0, "knn", "boom \u00e9", 8, 2)],
        priority=3, created_ns=CREATED + 2)
    b2 = fb.package(p2, D2, "metrics", [
        fb.metrics(1795000000000000003, "metrics", 1, [("x", 1)])],
        priority=1, created_ns=CREATED + 3)
    brj = fb.package(pr, D1, "drift_event", [
        fb.drift_event(0, "drift.adwin", "ad", "confidence", 0.125, 0.25, 9,
                       1795000000000000300, BIG + 12),
        fb.quarantine_batch([fb.sample(BIG + 13, 5, 6, "Shirt", 0.5, 0.75,
                                       2, None, None)])],
        created_ns=CREATED + 4)
    st["sizes"] = {pd: len(bd), pm: len(bm), pl: len(bl), p2: len(b2),
                   pr: len(brj)}
    st["bodies"] = {pd: bd, pm: bm, pl: bl, p2: b2, pr: brj}
    for pid, dev, tok, body, what in ((pd, D1, t1, bd, "drift"),
                                      (pm, D1, t1, bm, "metrics"),
                                      (pl, D1, t1, bl, "logs"),
                                      (p2, D2, t2, b2, "metrics of D2"),
                                      (pr, D1, t1, brj, "second drift")):
        r = post_pkg(port, dev, tok, body, pid=pid)
        check(r.status == 200 and r.json() == {"id": pid,
                                               "status": "stored"},
              "POST /packages (%s): 200 stored (%r)" % (what, r))
    r = post_pkg(port, D1, t1, bd, pid=pd)
    check(r.status == 200 and r.json() == {"id": pd, "status": "duplicate"},
          "the same package again: 200 duplicate")
    # the package records
    r = req(port, "GET", "/api/v1/packages", headers=ADMIN_H)
    ps = (r.json() or {}).get("packages", [])
    check(r.status == 200 and sorted(p["id"] for p in ps) ==
          sorted([pd, pm, pl, p2, pr]),
          "GET /packages (admin): the 5 packages, once each")
    rec = next((p for p in ps if p["id"] == pd), {})
    want = {"id": pd, "device_id": D1, "kind": "drift_event", "priority": 2,
            "created_ns": CREATED, "size": len(bd),
            "raw_size": len(fb.payload(drift_items())), "count": 3, "seq": 3, "packager": "pack",
            "decoded": {"drift_events": 2, "samples": 2, "metrics": 0,
                        "logs": 0, "other": 0, "attachments": 2},
            "drift_events": [pd + ".0", pd + ".2"]}
    got = {k: rec.get(k) for k in want}
    check(got == want and isinstance(rec.get("received_ns"), int),
          "the drift package's record: %s" %
          ("exact" if got == want else "%r != %r" % (got, want)))
    check(b'"created_ns":1795000000987654321' in r.body,
          "created_ns above 2^53 printed digit for digit")
    recm = next((p for p in ps if p["id"] == pm), {})
    check(recm.get("raw_size") == len(raw_m) and recm.get("count") == 2 and
          recm.get("decoded", {}).get("metrics") == 2 and
          recm.get("priority") == 1 and recm.get("size") == len(bm),
          "the metrics package's record (raw_size %d, %s)" %
          (len(raw_m), "zstd" if zm else "none"))
    # filters
    for q, want_ids, what in (
            ("?device=" + D1, {pd, pm, pl, pr}, "device"),
            ("?kind=metrics", {pm, p2}, "kind"),
            ("?device=%s&kind=metrics" % D1, {pm}, "device and kind"),
            ("?kind=nothing", set(), "a kind nobody sent"),
            ("?device=" + D2, {p2}, "the other device")):
        r = req(port, "GET", "/api/v1/packages" + q, headers=ADMIN_H)
        ids = [p["id"] for p in (r.json() or {}).get("packages", [])]
        check(r.status == 200 and sorted(ids) == sorted(want_ids),
              "GET /packages%s: by %s" % (q, what))
    r = req(port, "GET", "/api/v1/packages?limit=2", headers=ADMIN_H)
    check(len((r.json() or {}).get("packages", [])) == 2,
          "GET /packages?limit=2: 2 packages")
    r = req(port, "GET", "/api/v1/packages?device=%s&limit=1" % D1,
            headers=ADMIN_H)
    ids = [p["id"] for p in (r.json() or {}).get("packages", [])]
    check(ids == [pr], "GET /packages?device&limit=1: the newest (%r)" %
          (ids,))
    r = req(port, "GET", "/api/v1/packages?device=" + D1,
            headers=dev_auth(D1, t1))
    check(r.status == 200 and len(r.json()["packages"]) == 4,
          "GET /packages?device=own id by the device itself")
    expect_error(req(port, "GET", "/api/v1/packages?device=" + D1,
                     headers=dev_auth(D2, t2)), 403, "forbidden",
                 "GET /packages?device=another device")
    expect_error(req(port, "GET", "/api/v1/packages",
                     headers=dev_auth(D1, t1)), 401, "unauthorized",
                 "GET /packages (all) by a device")
    for q in ("limit=0", "limit=1001", "limit=x", "since=-1",
              "device=a%2Fb"):
        expect_error(req(port, "GET", "/api/v1/packages?" + q,
                         headers=ADMIN_H), 400, "bad_request",
                     "GET /packages?" + q)


def drift_routes(port, st):
    pd, pr = st["pd"], st["pr"]
    ev0, ev2, evr = pd + ".0", pd + ".2", pr + ".0"
    r = req(port, "GET", "/api/v1/drift/events", headers=ADMIN_H)
    evs = (r.json() or {}).get("events", [])
    # (the two events of one package share their received_ns)
    check(r.status == 200 and [e["id"] for e in evs] in ([evr, ev2, ev0],
                                                         [evr, ev0, ev2]),
          "GET /drift/events: the 3 events, newest package first (%r)" %
          ([e.get("id") for e in evs],))
    for q, want, what in (("?status=pending", {ev0, evr}, "pending"),
                          ("?status=info", {ev2}, "info (ends)"),
                          ("?device=" + D2, set(), "another device"),
                          ("?device=%s&limit=1" % D1, {evr}, "limit 1")):
        r = req(port, "GET", "/api/v1/drift/events" + q, headers=ADMIN_H)
        ids = {e["id"] for e in (r.json() or {}).get("events", [])}
        check(r.status == 200 and ids == want,
              "GET /drift/events%s: %s" % (q, what))
    for q in ("?status=bogus", "?limit=0", "?since=x", "?device=..%2F"):
        expect_error(req(port, "GET", "/api/v1/drift/events" + q,
                         headers=ADMIN_H), 400, "bad_request",
                     "GET /drift/events" + q)
    r = req(port, "GET", "/api/v1/drift/events/" + ev0, headers=ADMIN_H)
    e = r.json() or {}
    want = {"id": ev0, "device_id": D1, "package_id": pd, "kind": "start",
            "detector": "drift.page_hinkley", "node": "ph",
            "metric": "mean_distance", "value": 3.25, "threshold": 1.5,
            "index": 2 ** 40 + 3, "time_ns": 1795000000123456789,
            "frame_id": BIG + 5, "status": "pending",
            "samples": [BIG + 7, BIG + 9], "image": "frame-5.png"}
    got = {k: e.get(k) for k in want}
    check(r.status == 200 and got == want,
          "GET /drift/events/{id}: the fields of the package (%s)" %
          ("exact" if got == want else "%r" % got))
    check(b'"frame_id":4611686018427387909' in r.body and
          b'"samples":[4611686018427387911,4611686018427387913]' in r.body,
          "frame ids above 2^53 printed digit for digit")
    det = e.get("sample_details", [])
    wd = [{"frame_id": BIG + 7, "device_id": D1, "package_id": pd,
           "event": ev0, "predicted": "Bag", "confidence": 0.375,
           "mean_distance": 2.5, "reasons": 3,
           "time_ns": 1795000000000000007,
           "admitted_ns": 1795000000000000017, "thumbnail": True},
          {"frame_id": BIG + 9, "device_id": D1, "package_id": pd,
           "event": ev0, "predicted": "Coat", "confidence": 0.25,
           "mean_distance": 1.25, "reasons": 5,
           "time_ns": 1795000000000000009,
           "admitted_ns": 1795000000000000019, "thumbnail": True}]
    gd = [{k: d.get(k) for k in wd[0]} for d in det]
    check(gd == wd, "the event's sample details: exact (%r)" % (gd,))
    r = req(port, "GET", "/api/v1/drift/events/" + ev2, headers=ADMIN_H)
    e2 = r.json() or {}
    check(e2.get("kind") == "end" and e2.get("status") == "info" and
          e2.get("frame_id") == BIG + 11 and "samples" not in e2,
          "the end event: status info, its frame, no samples")
    r = req(port, "GET", "/api/v1/drift/events/%s/image" % ev0,
            headers=ADMIN_H)
    check(r.status == 200 and r.body == IMAGE and
          r.headers.get("content-type") == "image/png",
          "GET /drift/events/{id}/image: the attachment, image/png")
    expect_error(req(port, "GET", "/api/v1/drift/events/%s/image" % ev2,
                     headers=ADMIN_H), 404, "not_found",
                 "the image of an event without one")
    expect_error(req(port, "GET", "/api/v1/drift/events/%s.7" % pd,
                     headers=ADMIN_H), 404, "not_found",
                 "an event that does not exist")
    expect_error(req(port, "GET", "/api/v1/drift/events/" + ev0,
                     headers=dev_auth(D1, st["t1"])), 401, "unauthorized",
                 "a drift event with a device token")
    # verdicts
    url = "/api/v1/drift/events/%s/validate"
    expect_error(req(port, "POST", url % ev0, {"label": "Bag",
                                               "frames": [BIG + 8]},
                     ADMIN_H), 400, "bad_request",
                 "validate with a frame that is not the event's")
    expect_error(req(port, "POST", url % ev0, {"label": ""}, ADMIN_H), 400,
                 "bad_request", "validate with an empty label")
    expect_error(req(port, "POST", url % ev0, b"\xff\xfe{",
                     {"Authorization": "Bearer " + ADMIN}), 400,
                 "bad_request", "validate with a body that is no JSON")
    r = req(port, "POST", url % ev0, {"label": "Bag"}, ADMIN_H)
    check(r.status == 200 and r.json() == {"id": ev0, "status": "validated",
                                           "feedback": 2},
          "validate with a label: 2 labels queued (%r)" % (r,))
    r = req(port, "POST", url % evr, {"reject": True}, ADMIN_H)
    check(r.status == 200 and r.json() == {"id": evr, "status": "rejected",
                                           "feedback": 0},
          "reject: no labels (%r)" % (r,))
    # one verdict per event: a second one would queue the labels again
    expect_error(req(port, "POST", url % ev0, {"label": "Coat"}, ADMIN_H),
                 409, "conflict", "validate an event already validated")
    expect_error(req(port, "POST", url % evr, {"label": "Coat"}, ADMIN_H),
                 409, "conflict", "validate an event already rejected")
    expect_error(req(port, "POST", url % ev2, {"label": "Coat"}, ADMIN_H),
                 409, "conflict", "validate a drift end (status info)")
    r = req(port, "GET", "/api/v1/drift/events/" + ev0, headers=ADMIN_H)
    e = r.json() or {}
    check(e.get("status") == "validated" and e.get("label") == "Bag" and
          isinstance(e.get("validated_ns"), int) and
          [d.get("truth") for d in e.get("sample_details", [])] ==
          ["Bag", "Bag"], "the validated event and its samples' truth")
    r = req(port, "GET", "/api/v1/drift/events/" + evr, headers=ADMIN_H)
    check((r.json() or {}).get("status") == "rejected",
          "the rejected event says so")
    r = req(port, "GET", "/api/v1/drift/events?status=pending",
            headers=ADMIN_H)
    check(r.json() == {"events": []}, "nothing pending any more")
    # single samples
    r = req(port, "POST", "/api/v1/samples/%d/label" % (BIG + 13),
            {"label": "Shirt \u00fc"}, ADMIN_H)
    check(r.status == 200 and r.json() == {"frame_id": BIG + 13,
                                           "device_id": D1, "feedback": 1},
          "POST /samples/{frame}/label: 1 label queued (%r)" % (r,))
    expect_error(req(port, "POST", "/api/v1/samples/%d/label" % (BIG + 99),
                     {"label": "x"}, ADMIN_H), 404, "not_found",
                 "label a frame nobody quarantined")
    expect_error(req(port, "POST", "/api/v1/samples/12x/label",
                     {"label": "x"}, ADMIN_H), 400, "bad_request",
                 "label a frame id that is no number")
    expect_error(req(port, "POST", "/api/v1/samples/%d/label" % (BIG + 13),
                     b'{"label": "\xff\xfe"}',
                     {"Authorization": "Bearer " + ADMIN}), 400,
                 "bad_request", "a label that is not UTF-8")
    expect_error(req(port, "POST", "/api/v1/samples/%d/label" % (BIG + 13),
                     {"label": "a\tb"}, ADMIN_H), 400, "bad_request",
                 "a label with a control character")
    expect_error(req(port, "POST", "/api/v1/samples/%d/label" % (BIG + 13),
                     {"label": "x" * 256}, ADMIN_H), 400, "bad_request",
                 "a label of 256 bytes")
    for frame, th in ((BIG + 7, THUMB1), (BIG + 9, THUMB2)):
        r = req(port, "GET", "/api/v1/samples/%d/thumbnail" % frame,
                headers=ADMIN_H)
        check(r.status == 200 and r.headers.get("content-type") ==
              "image/png" and r.body[:8] == b"\x89PNG\r\n\x1a\n" and
              png_gray(r.body) == th,
              "GET /samples/%d/thumbnail: a PNG of the sample's %dx%d "
              "pixels" % (frame, th[0], th[1]))
    r = req(port, "GET", "/api/v1/samples/%d/thumbnail?device=%s" %
            (BIG + 7, D1), headers=ADMIN_H)
    check(png_gray(r.body) == THUMB1, "the thumbnail with ?device=")
    expect_error(req(port, "GET", "/api/v1/samples/%d/thumbnail" % (BIG + 13),
                     headers=ADMIN_H), 404, "not_found",
                 "the thumbnail of a sample without one")
    expect_error(req(port, "GET", "/api/v1/samples/%d/thumbnail?device=%s" %
                     (BIG + 7, D2), headers=ADMIN_H), 404, "not_found",
                 "a thumbnail of another device's frame")


def feedback_routes(port, st):
    t1, t2 = st["t1"], st["t2"]
    url = "/api/v1/devices/%s/feedback" % D1
    r = req(port, "GET", url + "?limit=256", headers=dev_auth(D1, t1))
    j = r.json() or {}
    labels = j.get("labels", [])
    got = [(x.get("frame_id"), x.get("label"), x.get("source"))
           for x in labels]
    want = [(BIG + 7, "Bag", "drift_validation"),
            (BIG + 9, "Bag", "drift_validation"),
            (BIG + 13, "Shirt \u00fc", "sample_label")]
    check(r.status == 200 and got == want and j.get("more") is False,
          "GET feedback: the 3 labels in order (%r)" % (got,))
    ids = [x.get("id", "") for x in labels]
    check(all(len(i) == 19 and i.startswith("fb-") and
              int(i[3:], 16) > 0 for i in ids) and len(set(ids)) == 3 and
          all(isinstance(x.get("created_ns"), int) for x in labels),
          "feedback ids fb-<16 hex>, distinct; created_ns")
    check(b'"frame_id":4611686018427387911' in r.body,
          "the feedback's frame_id printed digit for digit")
    r = req(port, "GET", url + "?limit=2", headers=dev_auth(D1, t1))
    j = r.json() or {}
    check([x["id"] for x in j.get("labels", [])] == ids[:2] and
          j.get("more") is True, "GET feedback?limit=2: 2 and more")
    r = req(port, "GET", url, headers=ADMIN_H)
    check(r.status == 200 and len(r.json()["labels"]) == 3,
          "GET feedback as admin")
    expect_error(req(port, "GET", url, headers=dev_auth(D2, t2)), 403,
                 "forbidden", "another device's feedback")
    expect_error(req(port, "POST", url + "/ack", {"ids": ids},
                     dev_auth(D2, t2)), 403, "forbidden",
                 "ack another device's feedback")
    expect_error(req(port, "GET", url), 401, "unauthorized",
                 "feedback without a token")
    r = req(port, "GET", "/api/v1/devices/" + D1, headers=ADMIN_H)
    check((r.json() or {}).get("feedback_pending") == 3,
          "device: 3 labels waiting")
    r = req(port, "POST", url + "/ack", {"ids": [ids[0]]}, dev_auth(D1, t1))
    check(r.status == 200 and r.json() == {"acked": 1}, "ack 1: acked 1")
    r = req(port, "GET", url, headers=dev_auth(D1, t1))
    check([x["id"] for x in r.json()["labels"]] == ids[1:],
          "after the ack: the acked one is gone, the others offered again")
    r = req(port, "POST", url + "/ack", {"ids": [ids[0]]}, dev_auth(D1, t1))
    check(r.json() == {"acked": 0}, "ack the same id again: acked 0")
    r = req(port, "POST", "/api/v1/devices/%s/feedback/ack" % D2,
            {"ids": ids[1:]}, dev_auth(D2, t2))
    check(r.json() == {"acked": 0}, "ids of D1 acked by D2 for D2: acked 0")
    r = req(port, "GET", url, headers=dev_auth(D1, t1))
    check([x["id"] for x in r.json()["labels"]] == ids[1:],
          "still offered until D1 acks them")
    for body, what in (({"ids": "fb-1"}, "ids not an array"),
                       ({"ids": ["nope"]}, "an id that is no feedback id"),
                       ({"ids": ["fb-" + "0" * 16]}, "fb-0000000000000000"),
                       ({"ids": ["fb-%016x" % 1] * 1001}, "1001 ids"),
                       ({"ids": [7]}, "a number as id"),
                       (b"{", "malformed JSON")):
        expect_error(req(port, "POST", url + "/ack", body,
                         dev_auth(D1, t1) if isinstance(body, dict) else
                         dict(dev_auth(D1, t1),
                              **{"Content-Type": "application/json"})),
                     400, "bad_request", "ack: " + what)
    r = req(port, "POST", url + "/ack", {"ids": ids}, dev_auth(D1, t1))
    check(r.json() == {"acked": 2}, "ack all three: acked 2 (one was gone)")
    r = req(port, "GET", url, headers=dev_auth(D1, t1))
    check(r.json() == {"labels": [], "more": False}, "nothing left to pull")
    r = req(port, "GET", "/api/v1/devices/" + D1, headers=ADMIN_H)
    d = r.json() or {}
    want = {"packages": 4, "duplicates": 1, "drift_events": 3,
            "feedback_pending": 0,
            "bytes": sum(st["sizes"][p] for p in
                         (st["pd"], st["pm"], st["pl"], st["pr"]))}
    got = {k: d.get(k) for k in want}
    check(got == want, "device D1's figures: %r" % (got,))


def series_routes(port, st):
    t1 = st["t1"]
    r = req(port, "GET", "/api/v1/devices/%s/metrics" % D1,
            headers=dev_auth(D1, t1))
    ms = (r.json() or {}).get("metrics", [])
    want = [{"time_ns": 1795000000000000002, "source": "metrics", "seq": 2,
             "full": False, "entries": {"node.knn.in": 43.5}},
            {"time_ns": 1795000000000000001, "source": "metrics", "seq": 1,
             "full": True, "entries": {"node.knn.in": 42,
                                       "process.state": "running",
                                       "gone.key": None}}]
    check(r.status == 200 and ms == want,
          "GET /devices/{id}/metrics: the 2 records, newest first (%r)" %
          (ms,))
    r = req(port, "GET", "/api/v1/devices/%s/metrics?limit=1" % D1,
            headers=ADMIN_H)
    check(r.json() == {"metrics": want[:1]}, "metrics?limit=1 (admin)")
    r = req(port, "GET", "/api/v1/devices/%s/metrics?since=%d" %
            (D1, 1795000000000000002), headers=ADMIN_H)
    check(r.json() == {"metrics": want[:1]}, "metrics?since=")
    r = req(port, "GET", "/api/v1/devices/%s/logs" % D1,
            headers=dev_auth(D1, t1))
    want = [{"time_ns": 1795000000000000200, "level": "error",
             "source": "knn", "text": "boom \u00e9", "seq": 8},
            {"time_ns": 1795000000000000100, "level": "warn",
             "source": "tinylcm", "text": "disk almost full", "seq": 7}]
    check(r.status == 200 and r.json() == {"logs": want},
          "GET /devices/{id}/logs: the 2 lines, newest first (%r)" %
          (r.json(),))
    expect_error(req(port, "GET", "/api/v1/devices/%s/logs" % D1,
                     headers=dev_auth(D2, st["t2"])), 403, "forbidden",
                 "another device's logs")
    expect_error(req(port, "GET", "/api/v1/devices/%s/metrics?limit=10001"
                     % D1, headers=ADMIN_H), 400, "bad_request",
                 "metrics?limit=10001")


def samples_list(port, st):
    """GET /samples (when the core has it)."""
    r = req(port, "GET", "/api/v1/samples", headers=ADMIN_H)
    if r.status == 404:
        print("note: no GET /api/v1/samples in this core")
        return
    ss = (r.json() or {}).get("samples", [])
    check(r.status == 200 and sorted(s.get("frame_id") for s in ss) ==
          [BIG + 7, BIG + 9, BIG + 13],
          "GET /samples: the 3 quarantined samples")
    r = req(port, "GET", "/api/v1/samples?labelled=false", headers=ADMIN_H)
    check(r.json() == {"samples": []}, "GET /samples?labelled=false: none")


def page_and_metrics(port, st):
    r = req(port, "GET", "/")
    check(r.status == 200 and r.headers.get("content-type", "").startswith(
        "text/html") and r.body.lower().startswith(b"<!doctype html>") and
          b"</html>" in r.body, "GET /: the fleet page (HTML)")
    r, m = prometheus(port)
    check(r.status == 200 and r.headers.get("content-type", "").startswith(
        "text/plain"), "GET /metrics: text/plain")
    want = {"tinylcm_core_packages_stored_total": 5,
            "tinylcm_core_packages_duplicate_total": 1,
            "tinylcm_core_drift_events_total": 3,
            "tinylcm_core_samples_total": 3,
            "tinylcm_core_metrics_records_total": 3,
            "tinylcm_core_log_lines_total": 2,
            "tinylcm_core_feedback_queued_total": 3,
            "tinylcm_core_feedback_acked_total": 3,
            "tinylcm_core_registrations_total": st["registrations"],
            "tinylcm_core_devices": 3,
            "tinylcm_core_server_errors_total": 0,
            "tinylcm_core_package_bytes_total": sum(st["sizes"].values())}
    got = {k: m.get(k) for k in want}
    check(got == want, "the Prometheus counters: %s" %
          ("exact" if got == want else "%r != %r" % (got, want)))
    check(m.get("tinylcm_core_requests_total", 0) > 100 and
          m.get("tinylcm_core_client_errors_total", 0) > 20,
          "requests and client errors counted")
    pt = shutil.which("promtool")
    if pt:
        p = subprocess.run([pt, "check", "metrics"], input=r.body,
                           capture_output=True)
        check(p.returncode == 0, "promtool check metrics: %s" %
              (p.stdout + p.stderr).decode().strip()[:400])
    else:
        print("note: no promtool: the text format is only parsed here")


# ---- 2. error statuses -----------------------------------------------------------

def package_errors(port, st):
    t1 = st["t1"]
    pid = uuid7()
    good = fb.package(pid, D1, "metrics", [fb.metrics(1, "m", 1, [("a", 1)])])
    # authentication
    expect_error(post_pkg(port, D1, None, good, pid=pid), 401,
                 "unauthorized", "POST /packages without a token")
    expect_error(post_pkg(port, D1, "tlcd_" + "0" * 64, good, pid=pid), 401,
                 "unauthorized", "POST /packages with a wrong token")
    expect_error(post_pkg(port, "nobody", t1, good, pid=pid), 401,
                 "unauthorized", "POST /packages of an unknown device",
                 "not registered")
    expect_error(req(port, "POST", "/api/v1/packages", good,
                     {"Authorization": "Bearer " + t1, "Content-Type":
                      PKG_TYPE, "Idempotency-Key": pid}), 401,
                 "unauthorized", "POST /packages without X-Device-ID")
    expect_error(post_pkg(port, D1, ADMIN, good, pid=pid), 401,
                 "unauthorized", "the admin token is no device token")
    # headers
    for key, what in (("not-a-uuid", "not a UUID"),
                      (pid.upper(), "upper case"),
                      (pid + "0", "37 characters"), ("", "empty")):
        expect_error(post_pkg(port, D1, t1, good, key=key), 400,
                     "bad_request", "Idempotency-Key " + what,
                     "Idempotency-Key")
    expect_error(post_pkg(port, D1, t1, good), 400, "bad_request",
                 "no Idempotency-Key", "Idempotency-Key")
    for ct in ("application/octet-stream", "application/json",
               PKG_TYPE + "; charset=utf-8", None):
        expect_error(post_pkg(port, D1, t1, good, pid=pid, ctype=ct), 400,
                     "bad_request", "Content-Type %r" % (ct,),
                     "Content-Type")
    other = uuid7()
    expect_error(post_pkg(port, D1, t1, good, key=other), 400, "bad_request",
                 "package id != Idempotency-Key", "Idempotency-Key")
    v4 = str(uuid.uuid4())
    b4 = fb.package(v4, D1, "metrics", [fb.metrics(1, "m", 1, [("a", 1)])])
    expect_error(post_pkg(port, D1, t1, b4, pid=v4), 400, "bad_request",
                 "a UUIDv4 package id", "UUIDv7")
    # the body
    expect_error(post_pkg(port, D1, t1, b"not a package at all", pid=pid),
                 400, "bad_request", "a body that is no FlatBuffer",
                 "not a package")
    expect_error(post_pkg(port, D1, t1, b"", pid=pid), 400, "bad_request",
                 "an empty body", "not a package")
    bad_item = struct.pack("<I", 16) + b"\x08\0\0\0DRFT" + b"\xff" * 8
    b = fb.package(pid, D1, "drift_event", body=bad_item,
                   raw_size=len(bad_item), count=1)
    expect_error(post_pkg(port, D1, t1, b, pid=pid), 400, "bad_request",
                 "an item that fails its verifier", "item 0 (DRFT)")
    items = [fb.metrics(1, "m", 1, [("a", 1)])]
    rawp = fb.payload(items)
    for kw, detail, what in (
            (dict(raw_size=len(rawp) + 1), "raw_size", "raw_size off by 1"),
            (dict(count=2), "count says", "count 2 for 1 item"),
            (dict(count=0), "more items than count", "count 0 for 1 item"),
            (dict(count=2 ** 32 - 1), "cannot fit", "count 2^32-1"),
            (dict(compression=5), "unknown compression", "compression 5"),
            (dict(compression=1), "decompress", "zstd flag, raw payload"),
            (dict(body=rawp[:-3], raw_size=len(rawp) - 3), "runs past",
             "an item cut short")):
        b = fb.package(pid, D1, "metrics", items, **kw)
        expect_error(post_pkg(port, D1, t1, b, pid=pid), 400, "bad_request",
                     "POST /packages: " + what, detail)
    z = zstd(rawp)
    if z:
        b = fb.package(pid, D1, "metrics", items, compression=1, body=z,
                       raw_size=len(rawp) + 1)
        expect_error(post_pkg(port, D1, t1, b, pid=pid), 400, "bad_request",
                     "zstd payload that does not decompress to raw_size",
                     "does not decompress to raw_size")
        b = fb.package(pid, D1, "metrics", items, compression=1,
                       body=zstd(rawp, size=False), raw_size=len(rawp))
        expect_error(post_pkg(port, D1, t1, b, pid=pid), 400, "bad_request",
                     "a zstd frame without its content size",
                     "does not decompress to raw_size")
        b = fb.package(pid, D1, "metrics", items, compression=1,
                       body=z[:-4], raw_size=len(rawp))
        expect_error(post_pkg(port, D1, t1, b, pid=pid), 400, "bad_request",
                     "a truncated zstd frame", "decompress")
    b = fb.package(pid, D1, "metrics", items, raw_size=2 ** 63)
    expect_error(post_pkg(port, D1, t1, b, pid=pid), 413, "too_large",
                 "raw_size above max_raw", "raw_size")
    for kind in ("Metrics", "", "k" * 33, "drift-event", "metrics\n"):
        b = fb.package(pid, D1, kind, items)
        expect_error(post_pkg(port, D1, t1, b, pid=pid), 400, "bad_request",
                     "kind %r (not [a-z_]{1,32})" % kind, "kind")
    b = fb.package(pid, D1, "metrics", items,
                   attachments=[("../../etc/passwd", "image/png", b"x")])
    expect_error(post_pkg(port, D1, t1, b, pid=pid), 400, "bad_request",
                 "an attachment named ../../etc/passwd", "attachment 0")
    b = fb.package(pid, D2, "metrics", items)
    expect_error(post_pkg(port, D1, t1, b, pid=pid), 403, "forbidden",
                 "a package of another device", D2)
    r = req(port, "GET", "/api/v1/packages?limit=1000", headers=ADMIN_H)
    check(pid not in [p["id"] for p in r.json()["packages"]],
          "no refused package was stored")
    r = post_pkg(port, D1, t1, good, pid=pid)
    check(r.json() == {"id": pid, "status": "stored"},
          "the good one after all that: stored")
    st["sizes"][pid] = len(good)
    st["extra_stored"] = [pid]


def http_errors(port, st):
    expect_error(req(port, "GET", "/api/v1/nope"), 404, "not_found",
                 "an unknown route")
    expect_error(req(port, "GET", "/api/v2/ping"), 404, "not_found",
                 "another API version")
    for method, path, allow in (("DELETE", "/api/v1/packages", "POST, GET"),
                                ("PUT", "/api/v1/ping", "GET"),
                                ("POST", "/api/v1/devices", "GET"),
                                ("GET", "/api/v1/devices/register", None),
                                ("DELETE", "/metrics", "GET"),
                                ("GET", "/api/v1/devices/x/feedback/ack",
                                 "POST")):
        r = req(port, method, path, headers=ADMIN_H)
        if allow is None:  # GET /devices/{id} with id "register"
            expect_error(r, 404, "not_found", "GET /devices/register")
            continue
        expect_error(r, 405, "method_not_allowed",
                     "%s %s" % (method, path))
        check(r.headers.get("allow") == allow,
              "%s %s: Allow: %s (got %r)" % (method, path, allow,
                                              r.headers.get("allow")))
    r = raw(port, b"POST /api/v1/packages HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    expect_error(r, 411, "length_required", "Transfer-Encoding: chunked")
    r = raw(port, b"POST /api/v1/devices/register HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 12abc\r\n\r\n")
    expect_error(r, 400, "bad_request", "Content-Length: 12abc")
    r = raw(port, b"POST /api/v1/devices/register HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: -1\r\n\r\n")
    check(r.status is None or is_error(r, 400, "bad_request"),
          "Content-Length: -1: 400 or dropped (%r)" % (r,))
    # NNG's parser answers an HTTP version it does not speak itself, with
    # the status RFC 9110 names for it (its HTML, not the core's JSON)
    r = raw(port, b"GET /api/v1/ping HTTP/9.9\r\nHost: x\r\n\r\n")
    check(r.status == 505, "HTTP/9.9: 505 by NNG (%r)" % (r,))
    r = raw(port, b"GET /api/v1/" + b"a" * 2000 + b" HTTP/1.1\r\n"
            b"Host: x\r\n\r\n")
    expect_error(r, 414, "uri_too_long", "a 2000-character path")
    r = raw(port, b"GET /api/v1/ping?" + b"q=1&" * 200 + b" HTTP/1.1\r\n"
            b"Host: x\r\n\r\n")
    expect_error(r, 414, "uri_too_long", "an 800-character query")


def no_admin_core(c, st):
    """Core B: no admin token, a fleet API key, small limits."""
    port = c.port
    for path in ("/api/v1/devices", "/api/v1/packages",
                 "/api/v1/drift/events", "/api/v1/samples/1/thumbnail"):
        expect_error(req(port, "GET", path, headers=ADMIN_H), 403,
                     "forbidden", "no admin_token: GET %s" % path,
                     "admin_token")
    expect_error(req(port, "POST", "/api/v1/drift/events/%s.0/validate" %
                     uuid7(), {"reject": True}, ADMIN_H), 403, "forbidden",
                 "no admin_token: validate")
    expect_error(register(port, "b1"), 401, "unauthorized",
                 "API key set: a new device without it")
    expect_error(register(port, "b1", key="wrong"), 401, "unauthorized",
                 "API key set: a wrong key")
    s = os.urandom(32).hex()
    r = register(port, "b1", s, key=FLEET_KEY)
    check(r.status == 201, "API key set: a new device with it: 201")
    r = register(port, "b1", key=FLEET_KEY)
    check(r.status == 200, "the API key proves a known device: 200")
    r = register(port, "b1", s)
    check(r.status == 200, "the secret proves it without the key: 200")
    tok = (r.json() or {}).get("token", "x")
    expect_error(register(port, "b1"), 409, "device_exists",
                 "neither key nor secret nor token: 409")
    r = req(port, "GET", "/api/v1/devices/b1", headers=dev_auth("b1", tok))
    check(r.status == 200, "a device reads itself without an admin token")
    # X-API-Key as device auth
    pid = uuid7()
    body = fb.package(pid, "b1", "metrics", [fb.metrics(1, "m", 1,
                                                       [("a", 1)])])
    r = post_pkg(port, "b1", None, body, pid=pid,
                 extra={"X-API-Key": FLEET_KEY})
    check(r.json() == {"id": pid, "status": "stored"},
          "upload with X-API-Key: stored")
    # 413: the head says too much; nothing of the body is read
    r = raw(port, b"POST /api/v1/packages HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 70000\r\n\r\n")
    expect_error(r, 413, "too_large", "Content-Length 70000 over max_body "
                 "64KiB", "65536")
    r = post_pkg(port, "b1", tok, b"\0" * 65537, pid=uuid7())
    check(r.status == 413 or r.status is None,
          "a 65537-byte body: 413 (%r)" % (r,))
    # 413 for raw_size over max_raw (1 KiB here)
    big = [fb.log_line(1, 2, "s", "x" * 1500, 1)]
    p2 = uuid7()
    r = post_pkg(port, "b1", tok, fb.package(p2, "b1", "operational_logs",
                                             big), pid=p2)
    expect_error(r, 413, "too_large", "raw_size over max_raw 1KiB",
                 "raw_size")
    # 429: burst 3 at 0.001/s: the first 3 uploads got tokens
    p3 = uuid7()
    r = post_pkg(port, "b1", tok, fb.package(p3, "b1", "metrics", [
        fb.metrics(1, "m", 1, [("a", 1)])]), pid=p3)
    check(r.json() == {"id": p3, "status": "stored"},
          "the third upload of the burst: stored")
    r = post_pkg(port, "b1", tok, body, pid=pid)
    expect_error(r, 429, "rate_limited", "the fourth: over the rate")
    ra = r.headers.get("retry-after", "")
    check(ra.isdigit() and int(ra) >= 1, "429 with Retry-After seconds "
          "(%r)" % ra)
    r, m = prometheus(port)
    check(m.get("tinylcm_core_packages_rate_limited_total") == 1 and
          m.get("tinylcm_core_packages_stored_total") == 2 and
          m.get("tinylcm_core_server_errors_total") == 0,
          "core B's counters: 2 stored, 1 rate-limited, no 5xx")


# ---- 3. the bad-request corpus ---------------------------------------------------

def corpus(port, st):
    """Generated bad requests: (what, send(), allowed)."""
    t1 = st["t1"]
    rnd = random.Random(20261127)
    base_items = [
        fb.drift_event(0, "drift.ph", "ph", "mean_distance", 1.0, 0.5, 3, 4,
                       BIG + 50),
        fb.quarantine_batch([fb.sample(BIG + 51, 1, 2, "Bag", 0.5, 0.5, 1,
                                       [1.0, 2.0], (2, 2, b"\1\2\3\4"))]),
        fb.log_line(5, 2, "src", "text", 1)]

    def base(pid):
        return fb.package(pid, D1, "drift_event", base_items,
                          created_ns=CREATED,
                          attachments=[("f.png", "image/png", b"\x89PNG")])

    cases = []

    def pkg_case(what, make, kind="package"):
        def send():
            pid = uuid7()
            body = make(pid)
            return post_pkg(port, D1, t1, body, pid=pid), pid
        cases.append((what, send, kind))

    probe = base(uuid7())
    n = len(probe)
    for k in range(20):  # truncated at every 1/20th
        cut = n * k // 20
        pkg_case("truncated to %d/%d bytes" % (cut, n),
                 lambda pid, cut=cut: base(pid)[:cut])
    for k in range(100):  # random bit flips (1 to 4 bits)
        flips = [(rnd.randrange(n), rnd.randrange(8))
                 for _ in range(rnd.randint(1, 4))]

        def flip(pid, flips=flips):
            b = bytearray(base(pid))
            for at, bit in flips:
                b[at] ^= 1 << bit
            return bytes(b)
        pkg_case("bit flips %r" % (flips,), flip, "flip")
    for at in range(0, min(n, 240), 8):  # forged offsets and lengths
        for v in (0xFFFFFFF0, n - at + 4):
            def forge(pid, at=at, v=v):
                b = bytearray(base(pid))
                struct.pack_into("<I", b, at, v)
                return bytes(b)
            pkg_case("u32 at %d forged to %#x" % (at, v), forge, "flip")
    for cnt in (2 ** 32 - 1, 2 ** 31, 10 ** 6):
        pkg_case("count %d" % cnt, lambda pid, cnt=cnt: fb.package(
            pid, D1, "drift_event", base_items, count=cnt))
    pkg_case("raw_size 2^64-1", lambda pid: fb.package(
        pid, D1, "drift_event", base_items, raw_size=2 ** 64 - 1))
    pkg_case("zstd claiming 60 MiB", lambda pid: fb.package(
        pid, D1, "drift_event", base_items, compression=1,
        body=b"\x28\xb5\x2f\xfd" + bytes(12), raw_size=60 << 20,
        count=100))
    pkg_case("an item of length 2^32-1", lambda pid: fb.package(
        pid, D1, "drift_event", body=b"\xff\xff\xff\xffDRFT", raw_size=8,
        count=1))
    pkg_case("an item of 4 bytes", lambda pid: fb.package(
        pid, D1, "drift_event", body=b"\4\0\0\0DRFT", raw_size=8, count=1))
    pkg_case("a non-UTF-8 kind", lambda pid: fb.package(
        pid, D1, b"\xff\xfe", base_items))
    pkg_case("a kind with a NUL", lambda pid: fb.package(
        pid, D1, b"drift\0event", base_items))
    pkg_case("a NUL in the device id", lambda pid: fb.package(
        pid, (D1 + "\0x").encode(), "drift_event", base_items))
    pkg_case("an attachment named ..", lambda pid: fb.package(
        pid, D1, "drift_event", base_items,
        attachments=[("..", "image/png", b"x")]))
    pkg_case("an attachment name with a NUL", lambda pid: fb.package(
        pid, D1, "drift_event", base_items,
        attachments=[(b"f.png\0/../../x", "image/png", b"x")]))
    pkg_case("a NUL in the package id", lambda pid: fb.package(
        pid + "\0" + "x", D1, "drift_event", base_items))
    pkg_case("an attachment named a/b", lambda pid: fb.package(
        pid, D1, "drift_event", base_items,
        attachments=[("a/b", "image/png", b"x")]))
    pkg_case("a nested root offset", lambda pid: struct.pack(
        "<I", 8) + b"TPKG" + struct.pack("<I", 8) * 8)

    def path_case(method, path, body=None, headers=ADMIN_H):
        def send():
            return raw(port, b"%s %s HTTP/1.1\r\nHost: x\r\n%s"
                       b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                       % (method.encode(), path,
                          b"".join(b"%s: %s\r\n" % (k.encode(), v.encode())
                                   for k, v in headers.items()),
                          len(body or b""), body or b"")), None
        cases.append(("%s %s" % (method, path[:80].decode("latin-1")),
                      send, "path"))

    for p in (b"/api/v1/devices/..%2F..%2Fetc/feedback",
              b"/api/v1/devices/..%2f..%2fetc%2fpasswd",
              b"/api/v1/devices/%2e%2e/metrics",
              b"/api/v1/devices/%2e%2e",
              b"/api/v1/devices/./logs",
              b"/api/v1/devices/../../etc/passwd",
              b"/api/v1/drift/events/%2e%2e",
              b"/api/v1/drift/events/..%2F..%2Fetc%2Fpasswd/image",
              b"/api/v1/drift/events/" + uuid7().encode() + b".0%2F..",
              b"/api/v1/drift/events/" + uuid7().encode() +
              b".99999999999999999999",
              b"/api/v1/samples/..%2F1/thumbnail",
              b"/api/v1/samples/-1/thumbnail",
              b"/api/v1/samples/18446744073709551616/thumbnail",
              b"/api/v1/samples/1/thumbnail?device=..%2F..",
              b"/api/v1/devices/a%00b",
              b"/api/v1/devices/a%00b/feedback",
              b"/api/v1/devices/%zz/feedback",
              b"/api/v1/devices/%/logs",
              b"/api/v1/devices/" + b"x" * 65,
              b"/api/v1/devices//feedback",
              b"/api/v1/packages?device=a%00b",
              b"/api/v1/packages?limit=%00",
              b"/api/v1/packages?limit=99999999999999999999999",
              b"/api/v1/drift/events?since=1e9",
              b"/api/v1" + b"/a" * 20,
              b"/api/v1/" + b"b" * 390,
              b"/api/v1/ping?" + b"x" * 600,
              b"/%2e%2e/%2e%2e/etc/passwd",
              b"/api/v1/devices/%ff%fe/logs"):
        path_case("GET", p)
    lab = "/api/v1/samples/%d/label" % (BIG + 7)
    for body in (b'{"label": "\xff\xfe\xfd"}', b'{"label": "\xc0\xaf"}',
                 b'{"label": "\xed\xa0\x80"}', b'{"label": "a\\u0000b"}',
                 b'{"label": "a\0b"}', b'{"label": "\\ud800"}',
                 b'{"label": ""}', b'{"label": null}', b'{"label": 7}',
                 b'{"label": "x", "device_id": "a\\u0000"}',
                 b'[' * 5000 + b']' * 5000, b'{"label":' * 3000,
                 b'{"label": "' + b'x' * 100000 + b'"}', b"\0" * 64,
                 b'{"label": "x"}garbage'):
        path_case("POST", lab.encode(), body, dict(ADMIN_H))
    for dev, body in (("a\\u0000b", None), ("ab\\u0000", None),
                      ("\\u00e9t\\u00e9", None), ("x" * 65, None),
                      ("..", None), ("a/b", None), ("a%2Fb", None),
                      ("ok-dev", '"secret": "' + "z" * 64 + '"'),
                      ("ok-dev", '"secret": 5'),
                      ("ok-dev", '"location": {"lat": "x", "lon": 0}'),
                      ("ok-dev", '"platform": "' + "p" * 65 + '"'),
                      ("ok-dev", '"versions": {"a": "' + "v" * 3000 + '"}')):
        b = '{"device_id": "%s"%s}' % (dev, ", " + body if body else "")
        path_case("POST", b"/api/v1/devices/register", b.encode(), {})
    path_case("POST", b"/api/v1/devices/register",
              b'{"device_id": "nul\0dev"}', {})
    ack = ("/api/v1/devices/%s/feedback/ack" % D1).encode()
    for body in (b'{"ids": ["fb-00000000000000zz"]}',
                 b'{"ids": ["fb--000000000000001"]}',
                 b'{"ids": ["fb- 000000000000001"]}',
                 b'{"ids": ["fb-0000000000000001\\u0000"]}',
                 b'{"ids": {"a": 1}}', b'{"ids": [null]}'):
        path_case("POST", ack, body, dev_auth(D1, t1))

    def head_case(what, data, may_drop=True):
        def send():
            return raw(port, data), None
        cases.append((what, send, "drop" if may_drop else "path"))

    head_case("a request line of garbage", b"GARBAGE\r\n\r\n")
    head_case("raw bytes 0xff 0xfe in the path", b"GET /api/v1/devices/"
              b"\xff\xfe/logs HTTP/1.1\r\nHost: x\r\n\r\n")
    head_case("a header without a colon",
              b"GET /api/v1/ping HTTP/1.1\r\nHost x\r\n\r\n")
    head_case("a NUL in X-Device-ID", b"GET /api/v1/devices/a HTTP/1.1\r\n"
              b"Host: x\r\nX-Device-ID: a\0b\r\n\r\n")
    head_case("a 20000-character URI", b"GET /api/v1/" + b"a" * 20000 +
              b" HTTP/1.1\r\nHost: x\r\n\r\n")
    head_case("a 100000-character header", b"GET /api/v1/ping HTTP/1.1\r\n"
              b"Host: x\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n")
    head_case("X-Device-ID with a NUL escape", b"GET /api/v1/devices/a "
              b"HTTP/1.1\r\nHost: x\r\nX-Device-ID: a%00b\r\n"
              b"Authorization: Bearer x\r\nConnection: close\r\n\r\n",
              may_drop=False)
    head_case("a 5000-character device header",
              b"GET /api/v1/devices/a HTTP/1.1\r\nHost: x\r\nX-Device-ID: "
              + b"d" * 5000 + b"\r\nConnection: close\r\n\r\n",
              may_drop=False)
    head_case("Content-Length 2^64", b"POST /api/v1/packages HTTP/1.1\r\n"
              b"Host: x\r\nContent-Length: 18446744073709551616\r\n"
              b"Connection: close\r\n\r\n", may_drop=False)
    head_case("Content-Length 2^63", b"POST /api/v1/packages HTTP/1.1\r\n"
              b"Host: x\r\nContent-Length: 9223372036854775808\r\n"
              b"Connection: close\r\n\r\n", may_drop=False)
    return cases


def run_corpus(port, st):
    r = req(port, "GET", "/api/v1/packages?limit=1000", headers=ADMIN_H)
    before = {p["id"] for p in r.json()["packages"]}
    _, m0 = prometheus(port)
    cases = corpus(port, st)
    stored, bad, dropped = [], [], []
    for what, send, kind in cases:
        try:
            r, pid = send()
        except (socket.timeout, TimeoutError):
            bad.append("%s: no answer in %d s (a hang)" % (what, TIMEOUT))
            continue
        except (ConnectionError, http.client.HTTPException) as e:
            r, pid = Resp(None, {}, str(e).encode()), None
        if r.status is None and kind == "drop":
            dropped.append(what)  # NNG's parser refused the head: closed
        elif (kind == "flip" and r.status == 200 and
              r.json() == {"id": pid, "status": "stored"}):
            stored.append(pid)  # the damage left a valid package
        elif r.status is None or not is_error(r, r.status) or \
                not 400 <= r.status < 500:
            bad.append("%s: %r" % (what, r))
    for b in bad[:20]:
        print("     ", b)
    check(not bad, "corpus: %d bad requests, each a JSON 4xx (%d dropped "
          "by the HTTP parser: %s; %d damaged packages still valid: "
          "stored)" % (len(cases), len(dropped), ", ".join(dropped),
                       len(stored)))
    check(len(cases) >= 200, "the corpus has %d cases" % len(cases))
    r = req(port, "GET", "/api/v1/ping")
    check(r.status == 204, "after the corpus: ping 204")
    r = req(port, "GET", "/api/v1/packages?limit=1000", headers=ADMIN_H)
    after = [p["id"] for p in r.json()["packages"]]
    check(sorted(after) == sorted(before | set(stored)),
          "after the corpus: every package still there, nothing else "
          "(%d before, %d stored by the corpus, %d now)" %
          (len(before), len(stored), len(after)))
    _, m = prometheus(port)
    check(m.get("tinylcm_core_server_errors_total") == 0,
          "after the corpus: no 5xx ever (%r)" %
          (m.get("tinylcm_core_server_errors_total"),))
    check(m["tinylcm_core_packages_stored_total"] -
          m0["tinylcm_core_packages_stored_total"] == len(stored),
          "the stored counter grew by the corpus's valid packages only")
    r = req(port, "GET", "/api/v1/devices", headers=ADMIN_H)
    check(sorted(d["device_id"] for d in r.json()["devices"]) ==
          sorted([D1, D2, "float-dev"]),
          "no device was registered by the corpus")


# ---- 4. kill -9 mid-ingest ---------------------------------------------------------

def restart_test(tinylcm, root, work):
    c = Core(tinylcm, root, work, "crash").start()
    devs = ["crash-a", "crash-b"]
    tokens = {}
    for d in devs:
        r = register(c.port, d, os.urandom(32).hex())
        tokens[d] = (r.json() or {}).get("token", "x")
    nthreads, per = 4, 75
    plan = []  # (thread, device, id, body)
    for t in range(nthreads):
        d = devs[t % 2]
        for k in range(per):
            pid = uuid7()
            items = [fb.metrics(1795000000000000000 + k, "m%d" % t, k + 1,
                                [("k", k), ("t", t)]),
                     fb.log_line(1795000000000000000 + k, 2, "t%d" % t,
                                 "line %d" % k, k + 1)]
            plan.append((t, d, pid, fb.package(pid, d, "metrics", items,
                                               seq=k + 1)))
    shared = {"port": c.port, "gen": 1, "acked": 0, "stop": False}
    lock = threading.Lock()
    answers = {}   # id -> [(gen, status)]
    errors = []

    def worker(t):
        for tt, d, pid, body in plan:
            if tt != t:
                continue
            tries = 0
            while not shared["stop"]:
                with lock:
                    port, gen = shared["port"], shared["gen"]
                tries += 1
                try:
                    r = post_pkg(port, d, tokens[d], body, pid=pid)
                except (OSError, http.client.HTTPException):
                    time.sleep(0.02)
                    continue
                j = r.json() or {}
                if r.status == 200 and j.get("id") == pid and \
                        j.get("status") in ("stored", "duplicate"):
                    with lock:
                        answers.setdefault(pid, []).append(
                            (gen, j["status"]))
                        shared["acked"] += 1
                    break
                if r.status in (503, 429):
                    time.sleep(0.05)
                    continue
                with lock:
                    errors.append("%s: %r" % (pid, r))
                break
            else:
                return

    threads = [threading.Thread(target=worker, args=(t,))
               for t in range(nthreads)]
    for th in threads:
        th.start()
    deadline = time.monotonic() + 300
    while shared["acked"] < 100 and time.monotonic() < deadline and \
            not errors:
        time.sleep(0.005)
    at_kill = shared["acked"]
    c.kill9()
    with lock:
        shared["gen"] = 2
    c.start()
    with lock:
        shared["port"] = c.port
    for th in threads:
        th.join(timeout=max(1, deadline - time.monotonic()))
    shared["stop"] = True
    hung = any(th.is_alive() for th in threads)
    check(not hung, "the 4 upload threads finished")
    check(not errors, "no upload was refused: %r" % (errors[:3],))
    ids = [pid for _, _, pid, _ in plan]
    check(0 < at_kill < 300 and len(answers) == 300,
          "all 300 packages acknowledged (killed after %d)" % at_kill)
    before = {p for p, a in answers.items() if a[0][0] == 1}
    st2 = [p for p, a in answers.items() if any(g == 2 and s == "stored"
                                               for g, s in a)]
    check(not any(p in before and answers[p][0][1] == "stored"
                  for p in st2),
          "nothing answered stored before the kill is stored again after")
    r = req(c.port, "GET", "/api/v1/packages?limit=1000", headers=ADMIN_H)
    listed = [p["id"] for p in (r.json() or {}).get("packages", [])]
    check(sorted(listed) == sorted(ids),
          "GET /packages lists each of the 300 ids exactly once (%d listed, "
          "%d distinct)" % (len(listed), len(set(listed))))
    for d in devs:
        r = req(c.port, "GET", "/api/v1/packages?limit=1000&device=" + d,
                headers=ADMIN_H)
        n = len((r.json() or {}).get("packages", []))
        check(n == 150, "GET /packages?device=%s: 150 (%d)" % (d, n))
    _, m = prometheus(c.port)
    g2 = [s for a in answers.values() for g, s in a if g == 2]
    check(m.get("tinylcm_core_packages_stored_total") == g2.count("stored")
          and m.get("tinylcm_core_packages_duplicate_total") ==
          g2.count("duplicate") and
          m.get("tinylcm_core_server_errors_total") == 0,
          "after the restart the counters agree with the answers: %d "
          "stored, %d duplicate" % (g2.count("stored"),
                                    g2.count("duplicate")))
    r = req(c.port, "GET", "/api/v1/devices", headers=ADMIN_H)
    got = {d["device_id"]: d.get("packages") for d in
           (r.json() or {}).get("devices", [])}
    check(got == {d: 150 for d in devs},
          "device figures after kill -9: packages = distinct ids (%r)" %
          (got,))
    rc = c.stop()
    check(rc == 0, "the restarted core stops cleanly (%d)" % rc)
    c.start()
    r = req(c.port, "GET", "/api/v1/devices", headers=ADMIN_H)
    got = {d["device_id"]: d.get("packages") for d in
           (r.json() or {}).get("devices", [])}
    check(got == {d: 150 for d in devs},
          "device figures after a clean restart (%r)" % (got,))
    c.stop()


# ---- main ------------------------------------------------------------------------

def main():
    tinylcm, root = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    work = tempfile.mkdtemp(prefix="tlcm-core-api-")
    cores = []
    ok = False
    try:
        a = Core(tinylcm, root, work, "a").start()
        cores.append(a)
        st = {}
        print("== 1. routes (core at port %d)" % a.port)
        registration(a.port, st)
        devices_routes(a.port, st)
        packages_routes(a.port, st)
        drift_routes(a.port, st)
        feedback_routes(a.port, st)
        series_routes(a.port, st)
        samples_list(a.port, st)
        page_and_metrics(a.port, st)
        print("== 2. errors")
        package_errors(a.port, st)
        http_errors(a.port, st)
        b = Core(tinylcm, root, work, "b", admin="", key=FLEET_KEY,
                 sets=("core.max_body=64KiB", "core.max_raw=1KiB",
                       "core.device_rate=0.001", "core.device_burst=3")
                 ).start()
        cores.append(b)
        no_admin_core(b, st)
        check(b.stop() == 0, "core B stops cleanly")
        print("== 3. the bad-request corpus")
        run_corpus(a.port, st)
        check(a.stop() == 0, "core A stops cleanly")
        print("== 4. kill -9 mid-ingest")
        restart_test(tinylcm, root, work)
        ok = True
    finally:
        for c in cores:
            c.stop()
        if fails or not ok:
            for name in ("a", "b", "crash"):
                p = os.path.join(work, name + ".log")
                if os.path.exists(p):
                    print("---- %s log (tail)" % name)
                    print(open(p, errors="replace").read()[-3000:])
        shutil.rmtree(work, ignore_errors=True)
    print("%d failed" % len(fails))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
