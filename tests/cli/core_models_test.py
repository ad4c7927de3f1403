#!/usr/bin/python3
"""core_models_test.py — the core's model registry and community telemetry
(nodes/core/models.c, telemetry.c; docs/api.md) against a real core:
`tinylcm run graphs/core.yaml` on a free loopback port with a key made by
`tinylcm model keygen`.

Models: upload (admin) → 201 with a signed offer, 409 for the same
version, 400s for bad metadata; /models/available offers exactly the
newer versions; the offer verifies with `tinylcm model verify` (and a
tampered file does not); download with ETag/If-None-Match (304), Range
resume (206 + Content-Range, the pieces make the file), If-Range, 416 for
bad and unsatisfiable ranges, 404. A community model is 403 and not
offered until the device submitted telemetry on 30 distinct days, then
offered and served. Telemetry: bad inputs answered 400 naming the point;
a retry with the same Idempotency-Key counts once; averages, rank and
pool status with exact values for a small known dataset. Last, the
device's `updater` node (a graph of its own) installs the model the core
signed, and does not take the community version it is not eligible for.
usage: core_models_test.py TINYLCM REPO
"""
import base64
import hashlib
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

failures = checks = 0
DAY = 86400
NOW = int(time.time())  # every point is dated from it: days do not move


def check(cond, what):
    global failures, checks
    checks += 1
    if not cond:
        failures += 1
        print("FAIL:", what)
    return cond


class Core:
    def __init__(self, port):
        self.port = port

    def req(self, method, path, body=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        c.request(method, "/api/v1" + path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        hd = {k.lower(): v for k, v in r.getheaders()}
        c.close()
        return r.status, hd, data

    def json(self, method, path, body=None, headers=None):
        st, hd, data = self.req(method, path, body, headers)
        try:
            j = json.loads(data) if data else None
        except ValueError:
            j = None
        return st, j


def start_core(tl, repo, d):
    env = dict(os.environ, CORE_LISTEN="http://127.0.0.1:0",
               CORE_PORT_FILE=os.path.join(d, "port"),
               CORE_STORE=os.path.join(d, "store"),
               CORE_ADMIN_TOKEN="ADMIN", CORE_API_KEY="")
    sets = ["signing_key=" + os.path.join(d, "core-test.key"),
            "key_id=core-test", "community_min_days=30",
            "community_min_devices=3", "telemetry_max_age=60d"]
    args = [tl, "run", os.path.join(repo, "graphs", "core.yaml"),
            "--headless"]
    for s in sets:
        args += ["--set", "core." + s]
    if os.path.exists(os.path.join(d, "port")):
        os.unlink(os.path.join(d, "port"))
    log = open(os.path.join(d, "core.log"), "a")
    p = subprocess.Popen(args, env=env, stdout=log, stderr=log)
    pf = os.path.join(d, "port")
    deadline = time.time() + 30
    while time.time() < deadline and p.poll() is None:
        if os.path.exists(pf):
            with open(pf) as f:
                return p, int(f.read())
        time.sleep(0.05)
    p.kill()
    with open(os.path.join(d, "core.log")) as f:
        print(f.read())
    sys.exit("FAIL: the core did not start")


def stop(p):
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        check(False, "the core did not stop on SIGINT")
    check(p.returncode == 0, f"the core exits 0, got {p.returncode}")


def register(core, dev):
    st, j = core.json("POST", "/devices/register", {"device_id": dev})
    check(st == 201, f"register {dev}: {st} {j}")
    return {"Authorization": "Bearer " + j["token"], "X-Device-ID": dev}


ADMIN = {"Authorization": "Bearer ADMIN"}


def upload(core, name, version, data, extra="", headers=None):
    h = dict(ADMIN, **(headers or {}))
    q = f"?name={name}&version={version}{extra}" if name is not None else ""
    return core.json("POST", "/models" + q, data, h)


def test_models(core, d, tl, blob, dev):
    sha = hashlib.sha256(blob).hexdigest()
    st, _ = core.json("POST", "/models?name=fm&version=4", blob)
    check(st == 401, f"upload without the admin token: {st}")
    st, _ = core.json("POST", "/models?name=fm&version=4", blob, dev)
    check(st == 401, f"upload with a device token: {st}")
    t0 = int(time.time())
    st, offer = upload(core, "fm", 4, blob)
    t1 = int(time.time())
    check(st == 201, f"upload: {st} {offer}")
    check(offer["name"] == "fm" and offer["version"] == 4 and
          offer["sha256"] == sha and offer["size"] == len(blob) and
          offer["key_id"] == "core-test" and
          offer["url"] == "/api/v1/models/fm/4" and
          offer["community"] is False, f"the offer: {offer}")
    check(t0 <= offer["created_s"] <= t1 and
          offer["expires_s"] == offer["created_s"] + 30 * DAY,
          f"times: created now, expires after model_ttl 30d: {offer}")
    check(len(base64.b64decode(offer["signature"])) == 64, "64-byte signature")
    st, j = upload(core, "fm", 4, blob[:10])
    check(st == 409 and j["error"] == "model_exists", f"same version: {st} {j}")
    for q, what in [("FM", 4), ("fm/x", 4), ("", 4), ("fm", 0),
                    ("fm", "x"), ("fm", "-1"), ("a" * 65, 4)]:
        st, j = upload(core, q, what, blob)
        check(st == 400 and j["error"] == "bad_request",
              f"bad name/version {q!r} {what!r}: {st} {j}")
    st, j = upload(core, "fm", 6, blob, "&community=maybe")
    check(st == 400 and "community" in j["detail"], f"community=maybe: {j}")
    st, j = upload(core, "fm", 6, blob, "&expires_s=1000")
    check(st == 400 and "expires_s" in j["detail"], f"expires in the past: {j}")
    st, j = upload(core, "fm", 6, b"")
    check(st == 400 and "empty" in j["detail"], f"empty body: {st} {j}")
    # metadata in headers; an older version, an explicit expiry
    exp = t0 + 10 * DAY
    st, o2 = upload(core, None, None, blob[:1000],
                    headers={"X-Model-Name": "fm", "X-Model-Version": "2",
                             "X-Model-Expires-S": str(exp)})
    check(st == 201 and o2["version"] == 2 and o2["expires_s"] == exp and
          o2["size"] == 1000, f"upload with headers: {st} {o2}")

    # available: only what is newer than the running version
    st, j = core.json("POST", "/models/available",
                      {"device_id": dev["X-Device-ID"],
                       "models": [{"name": "fm", "version": 3}]}, dev)
    check(st == 200 and [u["version"] for u in j["updates"]] == [4],
          f"available above v3: {st} {j}")
    served = j["updates"][0] if j and j["updates"] else {}
    check(served == offer, f"the served offer is the upload's: {served}")
    st, j = core.json("POST", "/models/available",
                      {"models": [{"name": "fm", "version": 0},
                                  {"name": "other", "version": 1},
                                  {"name": "Wide.Name", "version": 1}]}, dev)
    check(st == 200 and [(u["name"], u["version"]) for u in j["updates"]] ==
          [("fm", 4), ("fm", 2)], f"available above v0, newest first: {j}")
    st, j = core.json("POST", "/models/available",
                      {"models": [{"name": "fm", "version": 4}]}, dev)
    check(st == 200 and j["updates"] == [], f"nothing above v4: {j}")
    st, j = core.json("POST", "/models/available",
                      {"device_id": "someone-else", "models": []}, dev)
    check(st == 403, f"available for another device: {st} {j}")
    st, j = core.json("POST", "/models/available", {"models": []})
    check(st == 401, f"available without auth: {st}")
    for body in [b"{", {"models": "fm"}, {"models": [{"name": "fm"}]},
                 {"models": [{"name": "fm", "version": -1}]}]:
        st, j = core.json("POST", "/models/available", body, dev)
        check(st == 400, f"bad available body {body!r}: {st} {j}")

    # the device's own verifier takes the offer (and refuses other bytes)
    mf = os.path.join(d, "fm-4.tlm")
    with open(mf, "wb") as f:
        f.write(blob)
    of = os.path.join(d, "offer.json")
    with open(of, "w") as f:
        json.dump(served, f)
    pub = os.path.join(d, "core-test.pub")
    r = subprocess.run([tl, "model", "verify", mf, "--offer", of, "--keys",
                        pub, "--running", "3"], capture_output=True, text=True)
    check(r.returncode == 0 and "ok: fm@4 signed by core-test" in r.stdout,
          f"tinylcm model verify: {r.returncode} {r.stdout} {r.stderr}")
    bad = os.path.join(d, "fm-4-bad.tlm")
    with open(bad, "wb") as f:
        f.write(blob[:-1] + bytes([blob[-1] ^ 1]))
    r = subprocess.run([tl, "model", "verify", bad, "--offer", of, "--keys",
                        pub], capture_output=True, text=True)
    check(r.returncode == 1 and "sha256_mismatch" in r.stderr,
          f"verify a tampered file: {r.returncode} {r.stderr}")
    r = subprocess.run([tl, "model", "verify", mf, "--offer", of, "--keys",
                        pub, "--running", "4"], capture_output=True, text=True)
    check(r.returncode == 1 and "rollback" in r.stderr,
          f"verify at running v4: {r.stderr}")

    # download: whole, ETag, 304
    etag = '"' + sha + '"'
    st, h, data = core.req("GET", "/models/fm/4", headers=dev)
    check(st == 200 and data == blob and h.get("etag") == etag and
          h.get("accept-ranges") == "bytes" and
          h.get("content-type") == "application/octet-stream",
          f"download: {st} {h} {len(data)}")
    st, h, data = core.req("GET", "/models/fm/4",
                           headers=dict(dev, **{"If-None-Match": etag}))
    check(st == 304 and data == b"" and h.get("etag") == etag,
          f"If-None-Match: {st} {h}")
    st, h, data = core.req("GET", "/models/fm/4",
                           headers=dict(dev, **{"If-None-Match":
                                                '"abc", W/' + etag}))
    check(st == 304, f"If-None-Match in a list: {st}")
    st, h, data = core.req("GET", "/models/fm/4",
                           headers=dict(dev, **{"If-None-Match": '"abc"'}))
    check(st == 200 and data == blob, f"If-None-Match of another: {st}")
    st, h, data = core.req("GET", "/models/fm/4", headers=ADMIN)
    check(st == 200 and data == blob, f"the admin downloads: {st}")
    st, h, data = core.req("GET", "/models/fm/4")
    check(st == 401, f"download without auth: {st}")

    # resume: the first part, then the rest from where it stopped
    n = len(blob)
    half = 70001
    st, h, p1 = core.req("GET", "/models/fm/4",
                         headers=dict(dev, Range=f"bytes=0-{half - 1}"))
    check(st == 206 and p1 == blob[:half] and
          h.get("content-range") == f"bytes 0-{half - 1}/{n}" and
          h.get("etag") == etag, f"first range: {st} {h}")
    st, h, p2 = core.req("GET", "/models/fm/4",
                         headers=dict(dev, Range=f"bytes={half}-",
                                      **{"If-Range": etag}))
    check(st == 206 and h.get("content-range") ==
          f"bytes {half}-{n - 1}/{n}", f"the rest: {st} {h}")
    check(p1 + p2 == blob, "the two ranges make the file")
    st, h, p = core.req("GET", "/models/fm/4",
                        headers=dict(dev, Range="bytes=-10"))
    check(st == 206 and p == blob[-10:] and
          h.get("content-range") == f"bytes {n - 10}-{n - 1}/{n}",
          f"suffix range: {st} {h}")
    st, h, p = core.req("GET", "/models/fm/4",
                        headers=dict(dev, Range=f"bytes=5-{n + 100}"))
    check(st == 206 and p == blob[5:], f"a last byte past the end: {st} {h}")
    st, h, p = core.req("GET", "/models/fm/4",
                        headers=dict(dev, Range="bytes=10-",
                                     **{"If-Range": '"other"'}))
    check(st == 200 and p == blob, f"If-Range of another entity: {st}")
    for rg in [f"bytes={n}-", f"bytes={n + 5}-{n + 9}", "bytes=9-3",
               "items=0-1", "bytes=0-1,5-6", "bytes=x-", "bytes=-",
               "bytes=-0"]:
        st, h, p = core.req("GET", "/models/fm/4", headers=dict(dev, Range=rg))
        j = json.loads(p) if p else {}
        check(st == 416 and h.get("content-range") == f"bytes */{n}" and
              j.get("error") == "range_not_satisfiable",
              f"Range {rg}: {st} {h} {p[:120]}")
    for path, code in [("/models/fm/99", 404), ("/models/nope/1", 404),
                       ("/models/fm/0", 400), ("/models/FM/4", 400),
                       ("/models/fm/x", 400)]:
        st, h, p = core.req("GET", path, headers=dev)
        check(st == code, f"GET {path}: {st}, want {code}")
    return sha


def points(metric, values_days):
    return [{"metric": metric, "value": v, "time_s": NOW - k * DAY}
            for v, k in values_days]


def test_telemetry_input(core, dev):
    now = int(time.time())
    ok = {"metric": "latency_ms", "value": 1.0, "time_s": now}
    bad = [
        ({"model": "fm", "points": [ok, dict(ok, value=150, metric="acc_pct")]},
         "points[1].value: 150 is outside [0, 100] for metrics ending in _pct"),
        ({"model": "fm", "points": [dict(ok, metric="Latency")]},
         "points[0].metric"),
        ({"model": "fm", "points": [dict(ok, metric="a" * 65)]},
         "points[0].metric"),
        ({"model": "fm", "points": [ok, ok, dict(ok, value="1")]},
         "points[2].value (latency_ms): want a finite number"),
        ({"model": "fm", "points": [dict(ok, value=-1)]},
         "points[0].value: -1 is outside"),
        ({"model": "fm", "points": [dict(ok, metric="x", value=2e12)]},
         "points[0].value: 2000000000000 is outside [-1e+12, 1e+12] "
         "for metric x"),
        ({"model": "fm", "points": [dict(ok, time_s=now + 0.5)]},
         "points[0].time_s (latency_ms): want whole seconds"),
        ({"model": "fm", "points": [dict(ok, time_s=now - 61 * DAY)]},
         "too old"),
        ({"model": "fm", "points": [dict(ok, time_s=now + 2 * DAY)]},
         "more than a day ahead"),
        ({"model": "fm", "points": [ok, 5]}, "points[1]: want"),
        ({"model": "fm", "points": [ok] * 1001}, "points: want an array"),
        ({"model": "fm", "points": []}, "points: want an array"),
        ({"model": "F M", "points": [ok]}, "model: want"),
        ({"points": [ok]}, "model: want"),
        ([ok], "not a JSON object"),
    ]
    for body, want in bad:
        st, j = core.json("POST", "/telemetry/submit", body, dev)
        check(st == 400 and want in (j or {}).get("detail", ""),
              f"bad telemetry ({want}): {st} {j}")
    st, j = core.json("POST", "/telemetry/submit", b"1e999", dev)
    check(st == 400, f"not JSON: {st}")
    st, j = core.json("POST", "/telemetry/submit",
                      {"model": "fm", "points": [ok]})
    check(st == 401, f"telemetry without auth: {st}")
    st, j = core.json("POST", "/telemetry/submit",
                      {"model": "fm", "points": [ok]},
                      dict(dev, **{"Idempotency-Key": "a/b"}))
    check(st == 400 and "Idempotency-Key" in j["detail"], f"bad key: {j}")


def test_community_model(core, blob, d1):
    st, o5 = upload(core, "fm", 5, blob[::-1], "&community=true")
    check(st == 201 and o5["community"] is True, f"community upload: {o5}")
    ask = {"models": [{"name": "fm", "version": 3}]}

    def offered():
        st, j = core.json("POST", "/models/available", ask, d1)
        check(st == 200, f"available: {st}")
        return [u["version"] for u in j["updates"]]

    check(offered() == [4], "a community model is not offered to d1 yet")
    st, h, p = core.req("GET", "/models/fm/5", headers=d1)
    j = json.loads(p)
    check(st == 403 and j["error"] == "not_eligible" and
          "on 0 days, it needs 30" in j["detail"], f"403 at 0 days: {st} {j}")
    # days 1..29 ago, twice on one of them, with an idempotent retry
    pts = points("uptime_total", [(1, k) for k in range(1, 30)] + [(3, 5)])
    key = {"Idempotency-Key": "batch-1"}
    st, j = core.json("POST", "/telemetry/submit",
                      {"model": "fm", "points": pts}, dict(d1, **key))
    check(st == 200 and j == {"status": "stored", "points": 30, "days": 29,
                              "eligible": False, "community_min_days": 30},
          f"29 days: {st} {j}")
    st, j = core.json("POST", "/telemetry/submit",
                      {"model": "fm", "points": pts}, dict(d1, **key))
    check(st == 200 and j["status"] == "duplicate" and j["days"] == 29,
          f"the same Idempotency-Key again: {st} {j}")
    check(offered() == [4], "not offered at 29 days")
    st, h, p = core.req("GET", "/models/fm/5", headers=d1)
    check(st == 403 and b"on 29 days" in p,
          f"403 at 29 days: {st} {p[:200]}")
    st, j = core.json("GET", "/pool/status", None, d1)
    check(st == 200 and j["device"] == {"device_id": "d1", "days": 29,
                                        "eligible": False,
                                        "days_missing": 1},
          f"pool status of d1 at 29 days: {j}")
    st, j = core.json("POST", "/telemetry/submit",
                      {"model": "fm", "points": points("uptime_total",
                                                        [(2, 0)])}, d1)
    check(st == 200 and j["days"] == 30 and j["eligible"] is True,
          f"the 30th day: {st} {j}")
    check(offered() == [5, 4], "offered once eligible")
    st, h, p = core.req("GET", "/models/fm/5", headers=d1)
    check(st == 200 and p == blob[::-1], f"download once eligible: {st}")
    return o5


def test_community(core, devs, admin_dev):
    """A small known dataset for model cm: a, b, c (d1 has only fm)."""
    a, b, c = devs
    data = [
        (a, points("latency_ms", [(10, 0), (20, 1)]) +
         points("acc_pct", [(80, 2)]) + points("temp_c", [(40, 0)])),
        (b, points("latency_ms", [(33, 3)]) +
         points("acc_pct", [(90, 0)]) + points("temp_c", [(50, 1)])),
        (c, points("latency_ms", [(5, 4), (7, 20), (1014, 40)]) +
         points("acc_pct", [(70, 6)])),
    ]
    for h, pts in data:
        st, j = core.json("POST", "/telemetry/submit",
                          {"model": "cm", "points": pts}, h)
        check(st == 200 and j["status"] == "stored", f"submit: {st} {j}")
    st, j = core.json("GET", "/community/averages?metrics=latency_ms,acc_pct,"
                      "temp_c,nothing&model=cm", None, a)
    check(st == 200, f"averages: {st} {j}")
    m = j["metrics"]
    check(m["latency_ms"] == {"avg": 18, "min": 5, "max": 33, "devices": 3,
                              "points": 5, "suppressed": False},
          f"latency_ms over 30 days: {m['latency_ms']}")
    check(m["acc_pct"] == {"avg": 80, "min": 70, "max": 90, "devices": 3,
                           "points": 3, "suppressed": False},
          f"acc_pct: {m['acc_pct']}")
    check(m["temp_c"] == {"avg": None, "min": None, "max": None,
                          "devices": 2, "points": 0, "suppressed": True},
          f"two devices are not shown: {m['temp_c']}")
    check(m["nothing"]["devices"] == 0 and m["nothing"]["avg"] is None,
          f"no data: {m['nothing']}")
    check(j["model"] == "cm" and j["window_days"] == 30 and
          "d1" not in json.dumps(j) and "a-dev" not in json.dumps(j),
          f"no device ids: {j}")
    st, j = core.json("GET", "/community/averages?metrics=latency_ms&"
                      "model=cm&window_days=60", None, ADMIN)
    check(st == 200 and j["metrics"]["latency_ms"] ==
          {"avg": 130, "min": 5, "max": 1014, "devices": 3, "points": 6,
           "suppressed": False}, f"60 days (admin): {j}")
    # without a model: d1's uptime_total (fm) counts, cm has none
    st, j = core.json("GET", "/community/averages?metrics=uptime_total",
                      None, b)
    check(st == 200 and j["metrics"]["uptime_total"]["devices"] == 1,
          f"all models: {j}")
    for q in ["", "?metrics=", "?metrics=A", "?metrics=x&window_days=0",
              "?metrics=x&window_days=3651", "?metrics=x&model=B",
              "?metrics=" + ",".join("m%d" % i for i in range(17))]:
        st, j = core.json("GET", "/community/averages" + q, None, a)
        check(st == 400, f"averages{q}: {st} {j}")
    st, j = core.json("GET", "/community/averages?metrics=x")
    check(st == 401, f"averages without auth: {st}")

    def rank(h, q):
        return core.json("GET", "/community/rank?" + q, None, h)

    # latency: less is better. means a 15, b 33, c 6
    for h, want_pct, want_n in [(a, 50, 1), (b, 0, 0), (c, 100, 2)]:
        st, j = rank(h, "metric=latency_ms&model=cm")
        check(st == 200 and j["better_than_pct"] == want_pct and
              j["better_than"] == want_n and j["devices"] == 3 and
              j["higher_is_better"] is False,
              f"rank latency of {h['X-Device-ID']}: {j}")
    st, j = rank(a, "metric=latency_ms&model=cm")
    check(j["value"] == 15 and j["device"] == "a-dev", f"own value: {j}")
    st, j = rank(b, "metric=acc_pct&model=cm")
    check(st == 200 and j["better_than_pct"] == 100 and
          j["higher_is_better"] is True, f"acc: more is better: {j}")
    st, j = rank(b, "metric=acc_pct&model=cm&higher_is_better=false")
    check(st == 200 and j["better_than_pct"] == 0, f"reversed: {j}")
    st, j = rank(a, "metric=latency_ms&model=cm&window_days=60")
    check(st == 200 and j["better_than_pct"] == 100, f"c is 340 over 60 "
          f"days: a is better than both: {j}")
    st, j = rank(a, "metric=temp_c&model=cm")
    check(st == 200 and j["suppressed"] is True and
          j["better_than_pct"] is None and j["devices"] == 2,
          f"rank among two is not shown: {j}")
    st, j = rank(ADMIN, "metric=acc_pct&model=cm&device=c-dev")
    check(st == 200 and j["better_than_pct"] == 0, f"admin asks for c: {j}")
    for h, q, code in [(a, "metric=latency_ms&device=b-dev", 403),
                       (ADMIN, "metric=latency_ms", 400),
                       (a, "metric=Lat", 400), (a, "", 400),
                       (a, "metric=latency_ms&higher_is_better=yes", 400),
                       (a, "metric=acc_pct&model=fm", 404),
                       (admin_dev, "metric=latency_ms&model=cm", 404),
                       ({}, "metric=latency_ms", 401)]:
        st, j = rank(h, q)
        check(st == code, f"rank {q}: {st} {j}, want {code}")

    # the pool: d1 30 days (31 points), a 3 days (4 points), b 3 days
    # (3 points), c 4 days (4 points); days 0..29 and 40 ago
    st, j = core.json("GET", "/pool/status", None, ADMIN)
    want = {"devices": 4, "eligible_devices": 1, "points": 31 + 4 + 3 + 4,
            "device_days": 30 + 3 + 3 + 4, "community_min_days": 30,
            "community_min_devices": 3}
    check(st == 200 and all(j.get(k) == v for k, v in want.items()) and
          "device" not in j, f"pool status: {j}")
    today = NOW // DAY
    check(j["last_day"] == today and j["first_day"] == today - 40 and
          j["days"] == 31, f"pool days: {j}")
    st, j = core.json("GET", "/pool/status")
    check(st == 401, f"pool status without auth: {st}")


def test_updater(core, tl, d, blob, sha):
    """The device's updater takes what the core signed: v4 (v5 is a
    community model this device may not have)."""
    h = register(core, "e2e")
    md = os.path.join(d, "dev")
    os.mkdir(md)
    mf = os.path.join(md, "m.tlm")
    old = b"the running v3 model"
    with open(mf, "wb") as f:
        f.write(old)
    g = os.path.join(d, "device.yaml")
    tok = h["Authorization"][7:]
    with open(g, "w") as f:
        f.write(f"""graph: dev
settings: {{ store: "{os.path.join(d, 'devstore')}", sync: batch }}
nodes:
  upd:
    type: updater
    params: {{ url: "http://127.0.0.1:{core.port}/api/v1", device_id: e2e,
              token: "{tok}", model: fm, version: 3, file: "{mf}",
              keys_file: "{os.path.join(d, 'core-test.pub')}",
              confirm: false, exit_after: check, timeout: 20s,
              backoff_base: 5ms, backoff_cap: 50ms }}
""")
    r = subprocess.run([tl, "run", g, "--headless"], capture_output=True,
                       text=True, timeout=120)
    with open(mf, "rb") as f:
        now = f.read()
    prev = open(mf + ".prev", "rb").read() if os.path.exists(mf + ".prev") \
        else None
    check(r.returncode == 0 and hashlib.sha256(now).hexdigest() == sha and
          prev == old and not os.path.exists(mf + ".part"),
          f"the updater installed v4: rc {r.returncode}, "
          f"{len(now)} bytes, prev {prev!r}\n{r.stderr[-2000:]}")
    check("refused" not in r.stderr, f"nothing refused: {r.stderr[-1500:]}")


def main():
    tl, repo = sys.argv[1], sys.argv[2]
    rnd = random.Random(7)
    blob = bytes(rnd.getrandbits(8) for _ in range(200000))
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run([tl, "model", "keygen", "--key-id", "core-test",
                            "-o", os.path.join(d, "core-test")],
                           capture_output=True, text=True)
        if r.returncode:
            sys.exit("FAIL: keygen: " + r.stderr)
        p, port = start_core(tl, repo, d)
        core = Core(port)
        try:
            d1 = register(core, "d1")
            sha = test_models(core, d, tl, blob, d1)
            test_telemetry_input(core, d1)
            test_community_model(core, blob, d1)
            devs = [register(core, x) for x in ("a-dev", "b-dev", "c-dev")]
            test_community(core, devs, register(core, "quiet"))
            test_updater(core, tl, d, blob, sha)
        finally:
            stop(p)
        # the registry survives a restart
        p, port = start_core(tl, repo, d)
        core = Core(port)
        try:
            st, j = core.json("POST", "/models/available",
                              {"models": [{"name": "fm", "version": 0}]}, d1)
            check(st == 200 and [u["version"] for u in j["updates"]] ==
                  [5, 4, 2], f"after a restart d1 is still eligible: {j}")
            st, _, data = core.req("GET", "/models/fm/4", headers=ADMIN)
            check(st == 200 and data == blob, f"after a restart: {st}")
            st, j = upload(core, "fm", 4, blob)
            check(st == 409, f"409 after a restart: {st}")
        finally:
            stop(p)
        if failures:
            with open(os.path.join(d, "core.log")) as f:
                print(f.read()[-4000:])
    print(f"{checks - failures}/{checks} checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
