#!/usr/bin/python3
"""The core over HTTPS (nodes/core/http.c, graphs/core.yaml's tls_cert and
tls_key) and the device's uploader syncing to it over TLS.

A throwaway CA, a server certificate it signs (for 127.0.0.1), a second
"rogue" CA and a stray key are made with the openssl CLI in a temporary
directory at test time; nothing is committed.

1. the core serves https://127.0.0.1:PORT: with the CA a client pings,
   registers, posts a package (stored, then duplicate) and lists it back
   with exact values; plain HTTP to the TLS port gets no HTTP answer; a
   client that trusts the system's CAs or the rogue CA fails certificate
   verification; the core keeps serving after all of that.
2. a bad cert/key keeps the core from starting, exit status non-zero, no
   port file, and a message naming the parameter and the file: a missing
   cert, a missing key, a key that is not the certificate's, a CSR given
   as the certificate, a key that is not PEM, no key at all, and https
   without a certificate / a certificate with http://.
3. a device graph (metrics -> packager -> uploader) against the core: with
   the rogue CA as ca_file nothing leaves the device (its 3 packages stay
   in the outbox, the core never hears of it); then with the right CA the
   same store's packages and the next run's arrive, exactly those 6, and
   the outbox is empty; with no ca_file (the system's CAs) verification
   fails too; a ca_file that does not exist stops the graph at start,
   naming ca_file.

usage: tls_test.py TINYLCM REPO_ROOT
Skips (77) without /usr/bin/openssl, unless CI=true (then it fails).
"""
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fbwrite as fb  # noqa: E402
from api_test import check, fails, uuid7  # noqa: E402

OPENSSL = "/usr/bin/openssl"
ADMIN = "tls-test-admin"
ADMIN_H = {"Authorization": "Bearer " + ADMIN}
TIMEOUT = 30  # seconds for one request: a hang fails, never a wait


# ---- certificates -------------------------------------------------------------

def ossl(d, *args):
    r = subprocess.run([OPENSSL] + list(args), cwd=d, capture_output=True,
                       text=True)
    if r.returncode:
        raise RuntimeError("openssl %s: %s" % (" ".join(args), r.stderr))


def make_ca(d, name):
    ossl(d, "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-nodes", "-keyout", name + ".key",
         "-out", name + ".pem", "-days", "2", "-subj", "/CN=" + name,
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")


def make_certs(d):
    """ca.pem signs srv.pem (127.0.0.1, localhost) for srv.key; rogue.pem
    is another CA; other.key a key of no certificate."""
    make_ca(d, "ca")
    make_ca(d, "rogue")
    ossl(d, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", "srv.key", "-out", "srv.csr",
         "-subj", "/CN=127.0.0.1")
    with open(os.path.join(d, "srv.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectKeyIdentifier=hash\n"
                "authorityKeyIdentifier=keyid\n")
    ossl(d, "x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey",
         "ca.key", "-CAcreateserial", "-out", "srv.pem", "-days", "2",
         "-extfile", "srv.ext")
    ossl(d, "genpkey", "-algorithm", "EC", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-out", "other.key")
    with open(os.path.join(d, "junk.key"), "w") as f:
        f.write("this is no key\n")


# ---- the core -----------------------------------------------------------------

def core_env(work, name, listen, cert, key):
    return dict(os.environ, CORE_STORE=os.path.join(work, name + ".store"),
                CORE_LISTEN=listen,
                CORE_PORT_FILE=os.path.join(work, name + ".port"),
                CORE_ADMIN_TOKEN=ADMIN, CORE_API_KEY="",
                CORE_TLS_CERT=cert, CORE_TLS_KEY=key)


def start_core(tinylcm, root, work, name, cert, key):
    env = core_env(work, name, "https://127.0.0.1:0", cert, key)
    log = open(os.path.join(work, name + ".log"), "w")
    p = subprocess.Popen([tinylcm, "run",
                          os.path.join(root, "graphs", "core.yaml"),
                          "--headless"], env=env, stdout=log,
                         stderr=subprocess.STDOUT)
    pf = env["CORE_PORT_FILE"]
    deadline = time.monotonic() + 60
    while not os.path.exists(pf):
        if p.poll() is not None or time.monotonic() > deadline:
            p.kill()
            p.wait()
            raise RuntimeError("the TLS core did not start: " +
                               open(log.name).read()[-2000:])
        time.sleep(0.02)
    return p, int(open(pf).read())


def refused_start(tinylcm, root, work, name, listen, cert, key, want, what):
    """The core must not start: non-zero exit, no port file, every string
    of want in its output."""
    env = core_env(work, name, listen, cert, key)
    try:
        r = subprocess.run([tinylcm, "run",
                            os.path.join(root, "graphs", "core.yaml"),
                            "--headless"], env=env, capture_output=True,
                           text=True, timeout=60)
    except subprocess.TimeoutExpired:
        check(False, "%s: the core refuses to start (it ran on)" % what)
        return
    out = r.stdout + r.stderr
    line = next((x for x in out.splitlines() if "ERROR" in x), "")
    check(r.returncode != 0 and not os.path.exists(env["CORE_PORT_FILE"])
          and all(w in out for w in want),
          "%s: refused at start (rc %d): %s" % (what, r.returncode,
                                                 line.strip() or out[-400:]))


# ---- HTTPS ----------------------------------------------------------------------

class Resp:
    def __init__(self, status, body):
        self.status, self.body = status, body

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def __repr__(self):
        return "%s %r" % (self.status, self.body[:300])


def req(port, ctx, method, path, body=None, headers=None):
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx,
                                    timeout=TIMEOUT)
    try:
        h = dict(headers or {})
        if isinstance(body, dict):
            body = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        return Resp(r.status, r.read())
    finally:
        c.close()


def https_checks(port, ctx, d):
    r = req(port, ctx, "GET", "/api/v1/ping")
    check(r.status == 204, "HTTPS with the CA: ping 204 (%r)" % (r,))
    r = req(port, ctx, "POST", "/api/v1/devices/register",
            {"device_id": "tls-client", "platform": "linux"})
    j = r.json() or {}
    check(r.status == 201 and j.get("device_id") == "tls-client" and
          isinstance(j.get("token"), str) and len(j["token"]) >= 32,
          "HTTPS register: 201 with a token (%r)" % (r,))
    tok = j.get("token", "")
    pid = uuid7()
    body = fb.package(pid, "tls-client", "metrics",
                      [fb.metrics(1795000000000000001, "m", 1,
                                  [("node.knn.in", 42)])],
                      priority=1, created_ns=1795000000000000000, seq=1)
    h = {"Authorization": "Bearer " + tok, "X-Device-ID": "tls-client",
         "Idempotency-Key": pid,
         "Content-Type": "application/x-tinylcm-package"}
    r = req(port, ctx, "POST", "/api/v1/packages", body, h)
    check(r.status == 200 and r.json() == {"id": pid, "status": "stored"},
          "HTTPS POST /packages: 200 stored (%r)" % (r,))
    r = req(port, ctx, "POST", "/api/v1/packages", body, h)
    check(r.status == 200 and r.json() == {"id": pid,
                                           "status": "duplicate"},
          "HTTPS POST /packages again: 200 duplicate (%r)" % (r,))
    r = req(port, ctx, "GET", "/api/v1/packages?device=tls-client",
            headers=ADMIN_H)
    ps = (r.json() or {}).get("packages", [])
    got = [{k: p.get(k) for k in ("id", "device_id", "kind", "priority",
                                  "created_ns", "size", "count")}
           for p in ps]
    want = [{"id": pid, "device_id": "tls-client", "kind": "metrics",
             "priority": 1, "created_ns": 1795000000000000000,
             "size": len(body), "count": 1}]
    check(r.status == 200 and got == want,
          "HTTPS GET /packages?device: the package back, exact (%r)" %
          (got,))
    r = req(port, ctx, "GET", "/")
    check(r.status == 200 and b"TinyLCM fleet" in r.body,
          "HTTPS GET /: the fleet page")

    # plain HTTP to the TLS port: no HTTP answer at all
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        c.request("GET", "/api/v1/ping")
        rr = c.getresponse()
        got = "HTTP %d" % rr.status
    except (http.client.HTTPException, ConnectionError, OSError) as e:
        got = type(e).__name__
    finally:
        c.close()
    check(not got.startswith("HTTP"),
          "plain HTTP to the TLS port: no HTTP answer (%s)" % got)

    # clients that do not trust the core's CA
    for what, cctx in (("the system's CAs", ssl.create_default_context()),
                       ("the rogue CA", ssl.create_default_context(
                           cafile=os.path.join(d, "rogue.pem")))):
        try:
            rr = req(port, cctx, "GET", "/api/v1/ping")
            got = "HTTP %d" % rr.status
        except ssl.SSLCertVerificationError as e:
            got = "verify failed: " + str(e.verify_message)
        except (ssl.SSLError, OSError) as e:
            got = "%s: %s" % (type(e).__name__, e)
        check(got.startswith("verify failed"),
              "a client trusting %s: certificate verification fails (%s)"
              % (what, got))
    r = req(port, ctx, "GET", "/api/v1/ping")
    check(r.status == 204, "the core still serves after those (%r)" % (r,))


# ---- the device's uploader --------------------------------------------------

DEVICE = """graph: tls-device
settings: { store: "%(store)s", sync: batch }
nodes:
  telemetry:
    type: metrics
    params: { interval: 20ms, count: 6, finish: never }
  pack:
    type: packager
    params: { device_id: %(dev)s, batch: ["metrics count=2"] }
  up:
    type: uploader
    params: { url: "https://127.0.0.1:%(port)d/api/v1", device_id: %(dev)s,
              ca_file: "%(ca)s", battery: "off", backoff_base: 10ms,
              backoff_cap: 200ms, drain_timeout: %(drain)s }
edges:
  - { from: telemetry.out, to: pack.metrics, capacity: 1MiB }
  - { from: pack.queued, to: up.queued }
"""


def run_device(tinylcm, work, port, dev, store, ca, drain):
    g = os.path.join(work, "device-%s.yaml" % dev)
    with open(g, "w") as f:
        f.write(DEVICE % {"store": store, "dev": dev, "port": port,
                          "ca": ca, "drain": drain})
    try:
        return subprocess.run([tinylcm, "run", g, "--headless"],
                              capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(e.cmd, -1, "", "timed out")


def outbox_ids(tinylcm, store):
    r = subprocess.run([tinylcm, "outbox", "ls", store], capture_output=True,
                       text=True, timeout=60)
    return [ln.split()[0] for ln in r.stdout.splitlines()[1:]
            if len(ln.split()) >= 5 and ln.count("-") >= 4]


def core_packages(port, ctx, dev):
    r = req(port, ctx, "GET", "/api/v1/packages?device=" + dev,
            headers=ADMIN_H)
    return r.status, [p.get("id") for p in
                      (r.json() or {}).get("packages", [])], r


def device_checks(tinylcm, port, ctx, d, work):
    store = os.path.join(work, "device.store")
    rogue, ca = os.path.join(d, "rogue.pem"), os.path.join(d, "ca.pem")
    r = run_device(tinylcm, work, port, "tls-device", store, rogue, "2s")
    queued = outbox_ids(tinylcm, store)
    check(r.returncode == 0 and len(queued) == 3,
          "device with the rogue CA: runs out, its 3 packages stay queued "
          "(rc %d, %d queued)" % (r.returncode, len(queued)))
    check("certificate" in r.stderr and "0 packages uploaded" in r.stderr,
          "... the uploader says the certificate failed, 0 uploaded: %s" %
          next((x for x in r.stderr.splitlines() if "certif" in x),
               r.stderr[-600:]))
    st = req(port, ctx, "GET", "/api/v1/devices/tls-device",
             headers=ADMIN_H).status
    check(st == 404, "... the core never heard of it (GET /devices: %d)" %
          st)
    r = run_device(tinylcm, work, port, "tls-device", store, ca, "60s")
    left = outbox_ids(tinylcm, store)
    status, ids, resp = core_packages(port, ctx, "tls-device")
    check(r.returncode == 0 and "0 left queued" in r.stderr and
          "certificate" not in r.stderr and left == [], "device with ca_file = the CA: drains its outbox over "
          "HTTPS (rc %d, %d left): %s" % (
              r.returncode, len(left),
              next((x for x in r.stderr.splitlines() if "uploaded" in x),
                   r.stderr[-800:])))
    check(status == 200 and len(ids) == 6 and len(set(ids)) == 6 and
          set(queued) <= set(ids),
          "... the core stored exactly 6 packages, the 3 held back among "
          "them (%d: %r)" % (len(ids), resp))
    recs = (resp.json() or {}).get("packages", [])
    check(all(p.get("kind") == "metrics" and p.get("count") == 2 and
              p.get("device_id") == "tls-device" for p in recs),
          "... each a metrics package of 2 reports from tls-device")
    dv = req(port, ctx, "GET", "/api/v1/devices/tls-device",
             headers=ADMIN_H).json() or {}
    check(dv.get("packages") == 6 and dv.get("duplicates") == 0,
          "... GET /devices/tls-device: 6 packages, 0 duplicates (%r)" %
          ({k: dv.get(k) for k in ("packages", "duplicates")},))
    # the default: the system's CAs, which do not know ours
    store2 = os.path.join(work, "device2.store")
    r = run_device(tinylcm, work, port, "tls-default", store2, "", "2s")
    _, ids, _ = core_packages(port, ctx, "tls-default")
    check(r.returncode == 0 and "certificate" in r.stderr and ids == [] and
          len(outbox_ids(tinylcm, store2)) == 3,
          "device without ca_file (system CAs): verification fails, "
          "nothing sent, 3 queued")
    missing = os.path.join(d, "no-such-ca.pem")
    r = run_device(tinylcm, work, port, "tls-missing",
                   os.path.join(work, "device3.store"), missing, "2s")
    check(r.returncode != 0 and ("ca_file " + missing) in r.stderr,
          "device with a ca_file that does not exist: refused at start, "
          "naming it: %s" % next((x for x in r.stderr.splitlines()
                                  if "ca_file" in x), r.stderr[-400:]))


def main():
    tinylcm, root = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    if not os.access(OPENSSL, os.X_OK):
        print("skip: %s missing (Debian package openssl) makes the test's "
              "certificates" % OPENSSL)
        return 1 if os.environ.get("CI") == "true" else 77
    work = tempfile.mkdtemp(prefix="tlcm-core-tls-")
    d = os.path.join(work, "pki")
    os.mkdir(d)
    core = None
    try:
        make_certs(d)
        cert, key = os.path.join(d, "srv.pem"), os.path.join(d, "srv.key")
        ctx = ssl.create_default_context(cafile=os.path.join(d, "ca.pem"))
        print("== 1. HTTPS")
        core, port = start_core(tinylcm, root, work, "core", cert, key)
        https_checks(port, ctx, d)
        print("== 2. bad certificates and keys")
        nope = os.path.join(d, "nope.pem")
        cases = (
            ("https://127.0.0.1:0", nope, key, ["tls_cert " + nope,
                                                "cannot read"],
             "a missing tls_cert"),
            ("https://127.0.0.1:0", cert, nope, ["tls_key " + nope,
                                                 "cannot read"],
             "a missing tls_key"),
            ("https://127.0.0.1:0", cert, os.path.join(d, "other.key"),
             ["tls_key " + os.path.join(d, "other.key"),
              "not the private key", "tls_cert " + cert],
             "a key that is not the certificate's"),
            ("https://127.0.0.1:0", os.path.join(d, "srv.csr"), key,
             ["tls_cert " + os.path.join(d, "srv.csr"), "no PEM certificate"],
             "a CSR as tls_cert"),
            ("https://127.0.0.1:0", cert, os.path.join(d, "junk.key"),
             ["tls_key " + os.path.join(d, "junk.key"), "not a valid"],
             "a tls_key that is no PEM key"),
            ("https://127.0.0.1:0", cert, "", ["tls_key", "empty"],
             "tls_cert without tls_key"),
            ("https://127.0.0.1:0", "", "", ["tls_cert and tls_key"],
             "https:// without tls_cert"),
            ("http://127.0.0.1:0", cert, key, ["https://", "tls_cert"],
             "tls_cert with http://"))
        for i, (listen, c, k, want, what) in enumerate(cases):
            refused_start(tinylcm, root, work, "bad%d" % i, listen, c, k,
                          want, what)
        print("== 3. the device's uploader over HTTPS")
        device_checks(tinylcm, port, ctx, d, work)
        core.send_signal(signal.SIGTERM)
        rc = core.wait(timeout=60)
        check(rc == 0, "the TLS core stops cleanly on SIGTERM (rc %d)" % rc)
    finally:
        if core and core.poll() is None:
            core.kill()
            core.wait()
        if fails:
            p = os.path.join(work, "core.log")
            if os.path.exists(p):
                print("---- core.log (tail)")
                print(open(p, errors="replace").read()[-3000:])
        shutil.rmtree(work, ignore_errors=True)
    print("%d checks failed" % len(fails) if fails else "all checks passed")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
