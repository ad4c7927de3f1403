#!/usr/bin/python3
"""Graph deployment end to end (issue 8; docs/graphs.md, "Deployment"): a
real core (`tinylcm run graphs/core.yaml`) and a real device (`tinylcm
run DEVICE.yaml --deploy-dir DIR --grace 2`, whose uploader pulls its
graph at every sync), each its own process.

1. The core's graph API: PUT for a device and for a group (the admin
   token only), the checker's problems with file:line:col for invalid
   YAML, an unknown node type, a variable without a default; 413 above
   256 KiB; bytes that are not UTF-8 text; traversal-looking ids; GET
   with ETag, If-None-Match (304, W/, *, a list), the group's graph for
   a device of that group, 403 for another device, 404 JSON; status
   reports (bad bodies, wrong device); DELETE; 405 with Allow.
2. The device: a good graph is applied (current.yaml is it, the core
   shows "applied" with its ETag), node state carries over (the gen
   node restores the snapshot the old graph wrote at its stop, the
   uploader keeps its token: it registers once in the whole test, the
   sink sees no gap or reordering of the gen's sequence); graphs that
   pass the core's check but whose node fails at start, or fails once
   running, are rolled back (the previous graph runs again,
   "rolled_back" on the core, current.yaml unchanged); one that the
   device's own check
   refuses (its environment differs) is "invalid" and the running graph
   never stops; every new graph is fetched once (the rest are 304s).
3. kill -9 during a grace period: current.yaml is still the last good
   graph; the restarted runner runs it and reports the cut trial
   rolled_back.

Time is never asserted: waits poll with generous timeouts that only turn
a hang into a failure.

usage: deploy_test.py TINYLCM REPO_ROOT
"""
import hashlib
import http.client
import json
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time

ADMIN = "admin-token-for-the-deploy-test"
TIMEOUT = 60

fails = []


def check(cond, what):
    print("%-4s %s" % ("ok" if cond else "FAIL", what), flush=True)
    if not cond:
        fails.append(what)
    return cond


def sha(b):
    return hashlib.sha256(b).hexdigest()


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


def req(port, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = dict(headers or {})
            headers.setdefault("Content-Type", "application/json")
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()},
                    r.read())
    finally:
        c.close()


def is_error(r, status, code=None, has=None):
    j = r.json()
    return (r.status == status and isinstance(j, dict) and
            isinstance(j.get("error"), str) and
            isinstance(j.get("detail"), str) and
            (code is None or j["error"] == code) and
            (has is None or has in j["detail"]))


def expect(r, status, code, what, has=None):
    ok = is_error(r, status, code, has)
    return check(ok, "%s: %d %s%s" % (what, status, code,
                                      "" if ok else " (got %r)" % (r,)))


def wait_for(what, fn, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    check(False, "%s (waited %d s)" % (what, timeout))
    return None


ADM = {"Authorization": "Bearer " + ADMIN}


def dev_h(dev, token):
    return {"Authorization": "Bearer " + token, "X-Device-ID": dev}


def device_graph(name, rate, extra_nodes="", extra_edges="", rate_text=None):
    """A device graph: gen -> sink and the uploader, deployable (every
    variable has a default; the device's environment sets them)."""
    return ("""graph: %s
settings: { store: "${STORE:-/tmp/deploy-test.store}", workers: 2 }
nodes:
  src: { type: gen, params: { rate_hz: %s } }
  sink: { type: sink }
  up:
    type: uploader
    thread: own
    params: { url: "${CORE_URL:-http://127.0.0.1:9/api/v1}",
              device_id: dev-e2e, interval: 300ms, battery: "off",
              backoff_cap: 1s,
              deploy_dir: "${DEPLOY_DIR:-/tmp/deploy-test.dir}" }
%sedges:
  - { from: src.out, to: sink.in }
%s""" % (name, rate_text or rate, extra_nodes, extra_edges)).encode()


# ---- processes -----------------------------------------------------------------

class Proc:
    def __init__(self, cmd, env, log):
        self.logpath = log
        self.log = open(log, "a")
        self.p = subprocess.Popen(cmd, env=env, stdout=self.log,
                                  stderr=subprocess.STDOUT)

    def text(self):
        if not self.log.closed:
            self.log.flush()
        return open(self.logpath, errors="replace").read()

    def stop(self, sig=signal.SIGTERM):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                check(False, "%s stops within 60 s" % self.logpath)
        self.log.close()
        return self.p.returncode


def start_core(tinylcm, root, work):
    portfile = os.path.join(work, "core.port")
    env = dict(os.environ, CORE_STORE=os.path.join(work, "core.store"),
               CORE_LISTEN="http://127.0.0.1:0", CORE_PORT_FILE=portfile,
               CORE_ADMIN_TOKEN=ADMIN, CORE_API_KEY="")
    core = Proc([tinylcm, "run", os.path.join(root, "graphs", "core.yaml"),
                 "--headless"], env, os.path.join(work, "core.log"))
    deadline = time.monotonic() + 60
    while not os.path.exists(portfile):
        if core.p.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("core did not start: " + core.text()[-2000:])
        time.sleep(0.02)
    return core, int(open(portfile).read())


# ---- 1. the core's graph API -----------------------------------------------------

def register(port, dev, group=None):
    body = {"device_id": dev, "secret": os.urandom(32).hex()}
    if group is not None:
        body["group"] = group
    return req(port, "POST", "/api/v1/devices/register", body)


def api(port):
    ra = register(port, "dev-a", "lab")
    rb = register(port, "dev-b", "lab")
    rc = register(port, "dev-c")
    check(ra.status == 201 and rb.status == 201 and rc.status == 201,
          "three devices registered (dev-a, dev-b in group lab)")
    ta, tb, tc = (r.json()["token"] for r in (ra, rb, rc))
    expect(register(port, "dev-x", "../etc"), 400, "bad_request",
           "register with group ../etc", "group")
    expect(register(port, "dev-x", ""), 400, "bad_request",
           "register with an empty group", "group")
    a = req(port, "GET", "/api/v1/devices/dev-a", headers=ADM).json()
    check(a.get("group") == "lab", "the device record keeps its group: %r"
          % a.get("group"))

    good = device_graph("lab-v1", 10)
    p = "/api/v1/groups/lab/graph"
    expect(req(port, "GET", "/api/v1/devices/dev-a/graph",
               headers=dev_h("dev-a", ta)), 404, "not_found",
           "no graph yet", "group lab")
    expect(req(port, "GET", "/api/v1/devices/dev-c/graph",
               headers=dev_h("dev-c", tc)), 404, "not_found",
           "no graph, no group", "no group")
    expect(req(port, "PUT", p, good), 401, "unauthorized",
           "PUT without a token")
    expect(req(port, "PUT", p, good, dev_h("dev-a", ta)), 401,
           "unauthorized", "PUT with a device's token")
    expect(req(port, "PUT", "/api/v1/devices/dev-a/graph", good,
               {"Authorization": "Bearer wrong"}), 401, "unauthorized",
           "PUT with a wrong admin token")

    # the checker's problems, with file:line:col
    r = req(port, "PUT", p, b"graph: x\nnodes: [a, {b\n", ADM)
    expect(r, 400, "invalid_graph", "invalid YAML", "graph.yaml:")
    unknown = good.replace(b"{ type: sink }", b"{ type: snik }")
    line = unknown.split(b"\n").index(b"  sink: { type: snik }") + 1
    r = req(port, "PUT", p, unknown, ADM)
    expect(r, 400, "invalid_graph", "an unknown node type",
           "graph.yaml:%d:17: unknown node type 'snik' (did you mean "
           "'sink'?)" % line)
    check(isinstance((r.json() or {}).get("problems"), list) and
          any("edge refers to unknown node 'sink'" in m
              for m in r.json()["problems"]),
          "every problem listed: %r" % (r.json() or {}).get("problems"))
    nodef = good.replace(b"rate_hz: 10", b"rate_hz: \"${RATE}\"")
    expect(req(port, "PUT", p, nodef, ADM), 400, "invalid_graph",
           "a variable without a default", "variable RATE has no default")
    badparam = good.replace(b"rate_hz: 10", b"rate_hz: fast")
    expect(req(port, "PUT", p, badparam, ADM), 400, "invalid_graph",
           "a bad parameter value", "rate_hz")
    big = good + b"#" * (256 * 1024 + 1 - len(good)) + b"\n"
    expect(req(port, "PUT", p, big, ADM), 413, "too_large",
           "a graph file over 256 KiB", "262144")
    expect(req(port, "PUT", p, b"", ADM), 400, "bad_request",
           "an empty body", "empty")
    expect(req(port, "PUT", p, good + b"\x00", ADM), 400, "bad_request",
           "a NUL byte", "offset %d" % len(good))
    expect(req(port, "PUT", p, b"graph: \xff\xfe\n", ADM), 400,
           "bad_request", "bytes that are not UTF-8", "offset 7")
    for path in ("/api/v1/devices/..%2Fetc/graph",
                 "/api/v1/devices/%2e%2e/graph",
                 "/api/v1/groups/..%2F..%2Ftmp/graph",
                 "/api/v1/groups/a%20b/graph",
                 "/api/v1/groups/" + "g" * 65 + "/graph"):
        expect(req(port, "PUT", path, good, ADM), 400, "bad_request",
               "PUT " + path)
    r = req(port, "POST", p, good, ADM)
    check(r.status == 405 and r.headers.get("allow") == "PUT, GET, DELETE",
          "POST on a graph: 405, Allow: PUT, GET, DELETE (%r %r)"
          % (r, r.headers.get("allow")))

    # a group's graph, and what a device of that group gets
    r = req(port, "PUT", p, good, ADM)
    j = r.json() or {}
    check(r.status == 201 and j.get("status") == "created" and
          j.get("etag") == sha(good) and j.get("graph") == "lab-v1" and
          j.get("nodes") == 3 and j.get("edges") == 1 and
          r.headers.get("etag") == '"%s"' % sha(good),
          "PUT the group's graph: 201 with its SHA-256 as ETag (%r)" % r)
    r = req(port, "PUT", p, good, ADM)
    check(r.status == 200 and (r.json() or {}).get("status") == "unchanged",
          "the same again: 200 unchanged (%r)" % r)
    etag = '"%s"' % sha(good)
    r = req(port, "GET", "/api/v1/devices/dev-b/graph",
            headers=dev_h("dev-b", tb))
    check(r.status == 200 and r.body == good and
          r.headers.get("etag") == etag and
          r.headers.get("x-graph-source") == "group:lab" and
          r.headers.get("content-type") == "application/yaml",
          "dev-b gets its group's graph, byte for byte (%r %r)"
          % (r.status, r.headers))
    for inm, want in ((etag, 304), ("W/" + etag, 304), ("*", 304),
                      ('"00", ' + etag, 304), ('"%s"' % ("0" * 64), 200)):
        h = dev_h("dev-b", tb)
        h["If-None-Match"] = inm
        r = req(port, "GET", "/api/v1/devices/dev-b/graph", headers=h)
        check(r.status == want and (want == 200 or r.body == b"") and
              r.headers.get("etag") == etag,
              "If-None-Match %s: %d (%r)" % (inm[:20], want, r))
    r = req(port, "GET", "/api/v1/devices/dev-a/graph", headers=ADM)
    check(r.status == 200 and r.body == good, "the admin reads dev-a's")
    expect(req(port, "GET", "/api/v1/devices/dev-a/graph",
               headers=dev_h("dev-b", tb)), 403, "forbidden",
           "dev-b reads dev-a's graph")
    expect(req(port, "GET", p, headers=dev_h("dev-a", ta)), 401,
           "unauthorized", "a device reads the group's graph directly")
    r = req(port, "GET", p, headers=ADM)
    check(r.status == 200 and r.body == good, "the admin reads the group's")

    # the device's own graph wins over its group's
    own = device_graph("dev-a-own", 20)
    r = req(port, "PUT", "/api/v1/devices/dev-a/graph", own, ADM)
    check(r.status == 201, "PUT dev-a's own graph: 201 (%r)" % r)
    r = req(port, "GET", "/api/v1/devices/dev-a/graph",
            headers=dev_h("dev-a", ta))
    check(r.status == 200 and r.body == own and
          r.headers.get("x-graph-source") == "device",
          "dev-a gets its own graph, not the group's")
    d = req(port, "GET", "/api/v1/devices/dev-a", headers=ADM).json()
    g = d.get("graph", {})
    check(g.get("desired_etag") == sha(own) and
          g.get("desired_source") == "device" and g.get("group") == "lab"
          and g.get("last_outcome") is None,
          "GET /devices/dev-a shows the desired graph: %r" % g)

    # status reports
    sp = "/api/v1/devices/dev-a/graph/status"
    ok = {"etag": sha(own), "outcome": "applied", "detail": "fine",
          "time_ns": 1795000000000000001}
    for body, has in (({"etag": "x", "outcome": "applied"}, "etag"),
                      ({"etag": sha(own).upper(), "outcome": "applied"},
                       "etag"),
                      ({"etag": sha(own), "outcome": "done"}, "outcome"),
                      ({"etag": sha(own), "outcome": "applied",
                        "detail": "x" * 1025}, "detail"),
                      ({"etag": sha(own), "outcome": "applied",
                        "time_ns": -1}, "time_ns"),
                      ([1, 2], "JSON object")):
        expect(req(port, "POST", sp, body, dev_h("dev-a", ta)), 400,
               "bad_request", "status %s" % json.dumps(body)[:50], has)
    expect(req(port, "POST", sp, b"{", dev_h("dev-a", ta)), 400,
           "bad_request", "status: malformed JSON")
    expect(req(port, "POST", sp, ok, dev_h("dev-b", tb)), 403, "forbidden",
           "dev-b reports for dev-a")
    expect(req(port, "POST", sp, ok, ADM), 401, "unauthorized",
           "the admin reports (devices only)")
    r = req(port, "POST", sp, ok, dev_h("dev-a", ta))
    check(r.status == 200 and r.json() == {"status": "recorded"},
          "dev-a reports applied: 200 (%r)" % r)
    bad = {"etag": "1" * 64, "outcome": "rolled_back",
           "detail": "node 'f' failed"}
    check(req(port, "POST", sp, bad, dev_h("dev-a", ta)).status == 200,
          "dev-a reports a rollback of another graph")
    g = req(port, "GET", "/api/v1/devices/dev-a", headers=ADM).json()["graph"]
    check(g.get("deployed_etag") == sha(own) and
          g.get("deployed_ns") == 1795000000000000001 and
          g.get("last_etag") == "1" * 64 and
          g.get("last_outcome") == "rolled_back" and
          g.get("last_detail") == "node 'f' failed" and
          isinstance(g.get("reported_ns"), int),
          "GET /devices/dev-a: deployed = the applied one, last = the "
          "rollback: %r" % g)

    # DELETE
    check(req(port, "DELETE", "/api/v1/devices/dev-a/graph",
              headers=ADM).status == 204, "DELETE dev-a's graph: 204")
    r = req(port, "GET", "/api/v1/devices/dev-a/graph",
            headers=dev_h("dev-a", ta))
    check(r.status == 200 and r.body == good,
          "then dev-a gets the group's graph again")
    expect(req(port, "DELETE", "/api/v1/devices/dev-a/graph", headers=ADM),
           404, "not_found", "DELETE it again")
    expect(req(port, "DELETE", p, headers=dev_h("dev-a", ta)), 401,
           "unauthorized", "a device deletes the group's graph")
    check(req(port, "DELETE", p, headers=ADM).status == 204,
          "DELETE the group's graph: 204")
    expect(req(port, "GET", "/api/v1/devices/dev-b/graph",
               headers=dev_h("dev-b", tb)), 404, "not_found",
           "no graph for dev-b any more")


# ---- 2. and 3. the device ---------------------------------------------------------

def core_graph(port):
    r = req(port, "GET", "/api/v1/devices/dev-e2e", headers=ADM)
    return (r.json() or {}).get("graph", {}) if r.status == 200 else {}


def outcome_is(port, etag, outcome):
    g = core_graph(port)
    return g if (g.get("last_etag") == etag and
                 g.get("last_outcome") == outcome) else None


def test_state_seq(tinylcm, store, node):
    """seq of node's newest snapshot (a TestState FlatBuffer), from the
    hex dump of `tinylcm state show`."""
    out = subprocess.run([tinylcm, "state", "show", store, node],
                         capture_output=True, text=True, timeout=60).stdout
    raw = b""
    for line in out.splitlines():
        parts = line.split()
        if parts and len(parts[0]) == 4 and all(
                len(x) == 2 for x in parts[1:]) and len(parts) > 1:
            try:
                raw += bytes(int(x, 16) for x in parts[1:])
            except ValueError:
                pass
    version = None
    for line in out.splitlines():
        if line.startswith("version"):
            version = int(line.split()[1])
    if len(raw) < 8 or raw[4:8] != b"TSTA":
        return version, None
    table = struct.unpack_from("<I", raw, 0)[0]
    vt = table - struct.unpack_from("<i", raw, table)[0]
    vlen = struct.unpack_from("<H", raw, vt)[0]
    off = struct.unpack_from("<H", raw, vt + 4)[0] if vlen > 4 else 0
    return version, (struct.unpack_from("<Q", raw, table + off)[0]
                     if off else 0)


def device(tinylcm, port, work):
    ddir = os.path.join(work, "deploy")
    store = os.path.join(work, "device.store")
    v1 = device_graph("device-v1", 50)
    f1 = os.path.join(work, "device-v1.yaml")
    open(f1, "wb").write(v1)
    env = dict(os.environ, STORE=store, DEPLOY_DIR=ddir,
               CORE_URL="http://127.0.0.1:%d/api/v1" % port,
               RATE_HZ="fast")
    cmd = [tinylcm, "run", f1, "--deploy-dir", ddir, "--grace", "2",
           "--headless"]
    dev = Proc(cmd, env, os.path.join(work, "device.log"))
    wait_for("the device registers with the core",
             lambda: req(port, "GET", "/api/v1/devices/dev-e2e",
                         headers=ADM).status == 200)
    check(core_graph(port).get("desired_etag") is None,
          "no graph for dev-e2e yet")

    # a good graph: applied, with node state carried over
    v2 = device_graph("device-v2", 40)
    r = req(port, "PUT", "/api/v1/devices/dev-e2e/graph", v2, ADM)
    check(r.status == 201, "PUT device-v2: 201 (%r)" % r)
    g = wait_for("device-v2 applied on the device",
                 lambda: outcome_is(port, sha(v2), "applied"))
    check(bool(g) and g.get("deployed_etag") == sha(v2) and
          g.get("last_detail") == "healthy for its grace period of 2 s",
          "the core: deployed %s, %r" % (sha(v2)[:12], g))
    cur = os.path.join(ddir, "current.yaml")
    check(open(cur, "rb").read() == v2, "DIR/current.yaml is device-v2")
    log = dev.text()
    at = log.find("[device-v2] running %s/trying.yaml" % ddir)
    check(at > 0, "the runner swapped in device-v2 on trial")
    before, after = log[:at], log[at:]
    check("[device-v1] stopped; swapping in graph %s" % sha(v2)[:12]
          in before, "device-v1 stopped cleanly for the swap")
    check("[src] restored state v1 (shutdown)" in after,
          "device-v2's gen restored the state device-v1 wrote at its stop")
    check("[up] to http://127.0.0.1:%d/api/v1 as dev-e2e (token)" % port
          in after, "device-v2's uploader kept the token (its records)")

    # a graph whose node fails at start: rolled back
    v3 = device_graph("device-v3", 40,
                      "  f: { type: file, params: { path: "
                      "/nonexistent/deploy-test } }\n"
                      "  sink2: { type: sink }\n",
                      "  - { from: f.out, to: sink2.in }\n")
    r = req(port, "PUT", "/api/v1/devices/dev-e2e/graph", v3, ADM)
    check(r.status == 200 and (r.json() or {}).get("status") == "replaced",
          "PUT device-v3 (passes the check; node f cannot start): 200")
    g = wait_for("device-v3 rolled back",
                 lambda: outcome_is(port, sha(v3), "rolled_back"))
    check(bool(g) and g.get("deployed_etag") == sha(v2) and
          "node 'f' (type file) failed to start" in g.get("last_detail", ""),
          "the core: rolled_back naming node f, deployed still device-v2: "
          "%r" % g)
    check(open(cur, "rb").read() == v2, "DIR/current.yaml still device-v2")
    log = dev.text()
    at = log.find("[device-v3] running")
    check(at > 0 and ("[device-v2] running %s" % cur) in log[at:],
          "device-v2 runs again after the rollback")
    check(dev.p.poll() is None, "the runner is still running")

    # a graph that starts and then fails (reading a directory): rolled
    # back too, the state its nodes wrote at the end carried back
    v3b = device_graph("device-v3b", 40,
                       "  d: { type: file, params: { path: /tmp } }\n"
                       "  sink2: { type: sink }\n",
                       "  - { from: d.out, to: sink2.in }\n")
    check(req(port, "PUT", "/api/v1/devices/dev-e2e/graph", v3b,
              ADM).status == 200, "PUT device-v3b (node d fails once "
          "running): 200")
    g = wait_for("device-v3b rolled back",
                 lambda: outcome_is(port, sha(v3b), "rolled_back"))
    det = (g or {}).get("last_detail", "")
    check("grace period" in det and "node 'd' (type file)" in det and
          "tick failed" in det and "failed to start" not in det,
          "the core: rolled_back, node d failed while running: %r" % det)
    check(open(cur, "rb").read() == v2, "DIR/current.yaml still device-v2")
    log = dev.text()
    at = log.find("[device-v3b] running")
    check(at > 0 and ("[device-v2] running %s" % cur) in log[at:],
          "device-v2 runs again after the second rollback")

    # a graph the device's own check refuses (RATE_HZ=fast here)
    v4 = device_graph("device-v4", 0, rate_text='"${RATE_HZ:-30}"')
    r = req(port, "PUT", "/api/v1/devices/dev-e2e/graph", v4, ADM)
    check(r.status == 200, "PUT device-v4 (rate_hz from the environment, "
          "30 at the core): 200 (%r)" % r)
    g = wait_for("device-v4 invalid on the device",
                 lambda: outcome_is(port, sha(v4), "invalid"))
    check(bool(g) and "trying.yaml:" in g.get("last_detail", "") and
          "rate_hz" in g.get("last_detail", "") and
          g.get("deployed_etag") == sha(v2),
          "the core: invalid with the device checker's words: %r" % g)
    log = dev.text()
    at = log.find("[deploy] pending graph %s" % sha(v4)[:12])
    check(at > 0 and "[device-v4] running" not in log and
          "stopping the running graph" not in log[at:],
          "an invalid graph never stops the running one")

    # and a good one again
    v5 = device_graph("device-v5", 30)
    check(req(port, "PUT", "/api/v1/devices/dev-e2e/graph", v5,
              ADM).status == 200, "PUT device-v5: 200")
    wait_for("device-v5 applied", lambda: outcome_is(port, sha(v5),
                                                     "applied"))
    check(open(cur, "rb").read() == v5, "DIR/current.yaml is device-v5")
    rc = dev.stop()
    check(rc == 0, "the runner stops on SIGTERM with 0: %r" % rc)
    log = dev.text()
    n = log.count("[up] deploy: new graph ")
    check(n == 5, "5 graphs fetched, once each (else 304): %d" % n)
    n = log.count("[up] registered as dev-e2e")
    check(n == 1, "the device registered once across 5 swaps and 2 "
          "rollbacks (its records survive): %d" % n)
    check(os.listdir(os.path.join(ddir, "outcomes")) == [],
          "every outcome was reported")
    # the sink keeps the last sequence number it saw, the gen the last it
    # sent: a state lost on either side shows as a gap or a reordering
    counts = re.findall(r"\[sink\] received (\d+) messages \(\d+ bytes\), "
                        r"bad (\d+), missing (\d+) in (\d+) gaps, "
                        r"reordered (\d+)", log)
    check(len(counts) >= 4 and
          all(c[1:] == ("0", "0", "0", "0") for c in counts) and
          all(int(b[0]) > int(a[0]) for a, b in zip(counts, counts[1:])
              if int(b[0]) != int(a[0])) and
          [int(c[0]) for c in counts] == sorted(int(c[0]) for c in counts),
          "the sink's count grows across every swap, no gap, no "
          "reordering: %r" % (counts,))
    ver, seq = test_state_seq(tinylcm, store, "src")
    check(seq is not None and seq > 0 and ver == 6,
          "src's state: version 6 (one snapshot per graph that ran and "
          "stopped: v1, v2, v2, v3b, v2, v5), seq %r: %r" % (seq, ver))

    # 3. kill -9 in a grace period
    v6 = device_graph("device-v6", 25)
    dev = Proc([tinylcm, "run", f1, "--deploy-dir", ddir, "--grace", "600",
                "--headless"], env, os.path.join(work, "device2.log"))
    check(req(port, "PUT", "/api/v1/devices/dev-e2e/graph", v6,
              ADM).status == 200, "PUT device-v6: 200")
    trying = os.path.join(ddir, "trying.yaml")
    wait_for("device-v6 on trial",
             lambda: "[device-v6] running %s" % trying in dev.text())
    dev.stop(signal.SIGKILL)
    check(os.path.exists(trying) and open(cur, "rb").read() == v5,
          "after kill -9 in the grace period: current.yaml is still "
          "device-v5, device-v6 in trying.yaml")
    dev = Proc(cmd, env, os.path.join(work, "device3.log"))
    g = wait_for("the cut trial reported rolled_back",
                 lambda: outcome_is(port, sha(v6), "rolled_back"))
    check(bool(g) and "crash" in g.get("last_detail", "") and
          g.get("deployed_etag") == sha(v5),
          "the core: device-v6 rolled_back (a crash), deployed device-v5: "
          "%r" % g)
    log = dev.text()
    check("[deploy] running the deployed graph %s instead of %s"
          % (cur, f1) in log and "[device-v5] running %s" % cur in log,
          "the restarted runner runs current.yaml (device-v5)")
    check(not os.path.exists(trying), "trying.yaml is gone")
    check(dev.stop() == 0, "the runner stops with 0")


def main():
    tinylcm, root = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as work:
        core, port = start_core(tinylcm, root, work)
        try:
            api(port)
            device(tinylcm, port, work)
        finally:
            rc = core.stop()
            check(rc == 0, "the core stops with 0: %r" % rc)
            if fails:
                for name in ("core.log", "device.log", "device2.log",
                             "device3.log"):
                    p = os.path.join(work, name)
                    if os.path.exists(p):
                        print("---- %s (end)" % name)
                        print(open(p, errors="replace").read()[-6000:])
    if fails:
        print("FAIL: %d checks" % len(fails))
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
