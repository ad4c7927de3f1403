#!/usr/bin/python3
"""Retention and export of the core (nodes/core/retention.c, export.c;
docs/api.md, Retention and Export). One store, three runs of
`tinylcm run graphs/core.yaml` with different retentions:

0. keep everything (every retain_* 0, a sweep a second): five packages of
   two devices (metrics and logs 3 days old and 1 hour old, drift events
   with samples, thumbnails and images), telemetry 20, 15 and 0 days old;
   two sweeps remove nothing. `tinylcm core export` while the core runs:
   every line parses, exact counts per kind, records equal to what the
   API answers, blobs that decode to the bytes sent, --kind, --device,
   --since, --no-blobs, --out. A person validates one event, rejects
   another; the third stays pending. Image content types by magic/name.
1. short retentions (1 s for packages, drift, samples, images; 1 day for
   metrics and logs; 10 days for telemetry): the sweeps' counters reach
   exactly what must go (polled, never slept on), a further sweep removes
   nothing more, and the API shows exactly what must stay: the pending
   event with its samples and image, the new metrics and logs, today's
   telemetry, the unacknowledged label; swept packages are still
   `duplicate`; the device figures keep counting them. Export agrees.
2. every package-derived retention 1 s: the ids of swept packages are
   forgotten (a re-sent one is `stored` again), except the one whose
   pending drift event remains (still `duplicate`).
Plus: export's bad arguments (unknown kind, missing store, the store of
another graph, bad --since, bad device) and a core refusing a telemetry
retention below community_min_days.

Time is never asserted: waits poll the core's counters, with deadlines
that only turn a hang into a failure.

usage: retention_test.py TINYLCM REPO_ROOT
"""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import api_test as A  # noqa: E402  (the Core runner, HTTP helpers)
import fbwrite as fb  # noqa: E402

check = A.check
D1, D2 = "ret-dev.1", "ret-dev.2"
NOW = time.time_ns()
OLD = NOW - 3 * 86400 * 10 ** 9   # past a 1-day retention
NEW = NOW - 3600 * 10 ** 9        # within it
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(50))
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(60))
THUMB = (2, 2, bytes([1, 2, 3, 4]))
KINDS = ["devices", "packages", "drift", "samples", "images", "metrics",
         "logs", "feedback", "models", "telemetry"]
DEADLINE = 120  # seconds: a sweep that never comes fails, never hangs

KEEP_ALL = ["core.retain_%s=0" % k for k in
            ("packages", "drift", "samples", "images", "metrics", "logs",
             "telemetry")]
COMMON = ["core.retention_interval=1s", "core.community_min_days=1",
          "core.telemetry_max_age=30d"]


def drift_start(frame):
    return fb.drift_event(0, "drift.page_hinkley", "ph", "mean_distance",
                          3.0, 1.5, 7, NEW, frame)


def build_packages():
    """name -> (device, id, bytes)."""
    p = {}

    def add(name, dev, kind, items, attachments=()):
        pid = A.uuid7()
        p[name] = (dev, pid, fb.package(pid, dev, kind, items,
                                        created_ns=NEW,
                                        attachments=attachments))
    add("A", D1, "metrics", [
        fb.metrics(OLD, "metrics", 1, [("x", 1)]),
        fb.metrics(NEW, "metrics", 2, [("x", 2)]),
        fb.log_line(OLD, 2, "ph", "old line", 1),
        fb.log_line(NEW, 2, "ph", "new line", 2)])
    add("B", D2, "metrics", [
        fb.metrics(OLD, "metrics", 1, [("y", 1)]),
        fb.metrics(NEW, "metrics", 2, [("y", 2)]),
        fb.log_line(OLD, 1, "ph", "old warning", 1)])
    add("C", D1, "drift_event", [
        drift_start(101),
        fb.quarantine_batch([fb.sample(101, NEW, NEW, "Bag", 0.5, 1.0, 1,
                                       None, THUMB),
                             fb.sample(102, NEW, NEW, "Coat", 0.5, 1.0, 1,
                                       None, THUMB)]),
        fb.drift_event(1, "drift.page_hinkley", "ph", "mean_distance", 0.5,
                       1.5, 9, NEW, 103)],
        attachments=[("frame-3.jpeg", "image/jpeg", JPEG)])
    add("D", D1, "drift_event", [
        drift_start(201),
        fb.quarantine_batch([fb.sample(201, NEW, NEW, "Bag", 0.5, 1.0, 1,
                                       None, THUMB)])],
        attachments=[("shot.png", "image/png", PNG)])
    add("E", D2, "drift_event", [
        drift_start(301),
        fb.quarantine_batch([fb.sample(301, NEW, NEW, "Dress", 0.5, 1.0, 1,
                                       None, THUMB)])],
        attachments=[("cam.png", "image/png", JPEG),  # named wrong
                     ("notes.txt", "text/plain", b"hello")])
    return p


def prom(port):
    return A.prometheus(port)[1]


def swept_of(m):
    return {k: m.get('tinylcm_core_retention_swept_total{kind="%s"}' % k)
            for k in ("packages", "drift", "samples", "images", "metrics",
                      "logs", "telemetry")}


def swept(port):
    m = prom(port)
    return swept_of(m), m


def wait_for(port, what, cond):
    """Poll the core's counters until cond(metrics) holds."""
    deadline = time.monotonic() + DEADLINE
    while True:
        m = prom(port)
        if cond(m):
            return m
        if time.monotonic() > deadline:
            check(False, "%s within %d s (counters: %r)" %
                  (what, DEADLINE, {k: v for k, v in m.items()
                                    if "retention" in k}))
            return m
        time.sleep(0.05)


def sweeps_after(port, n):
    """Wait for n more whole sweeps (one in progress may predate now)."""
    s0 = prom(port).get("tinylcm_core_retention_sweeps_total", 0)
    return wait_for(port, "%d more sweeps" % n, lambda m: m.get(
        "tinylcm_core_retention_sweeps_total", 0) >= s0 + n)


def get(port, path, admin=True):
    r = A.req(port, "GET", path, headers=A.ADMIN_H if admin else None)
    return r, r.json()


def export(tl, store, *args):
    p = subprocess.run([tl, "core", "export", "--store", store] + list(args),
                       capture_output=True, timeout=120)
    lines = []
    bad = 0
    for line in p.stdout.decode().splitlines():
        try:
            o = json.loads(line)
            if set(o) != {"kind", "record"} or o["kind"] not in KINDS:
                bad += 1
            lines.append(o)
        except ValueError:
            bad += 1
    return p, lines, bad


def counts(lines):
    c = {k: 0 for k in KINDS}
    for o in lines:
        c[o["kind"]] = c.get(o["kind"], 0) + 1
    return c


def of(lines, kind):
    return [o["record"] for o in lines if o["kind"] == kind]


def telemetry(port, dev, tok, days_ago):
    t = int(time.time()) - days_ago * 86400
    return A.req(port, "POST", "/api/v1/telemetry/submit",
                 {"model": "m1", "points": [{"metric": "latency_ms",
                                             "value": 10 + days_ago,
                                             "time_s": t}]},
                 A.dev_auth(dev, tok))


def strip(o, *keys):
    return {k: v for k, v in o.items() if k not in keys}


# ---- run 0: keep everything -------------------------------------------------

def run0(tl, c, pk, st):
    port = c.port
    tok = {}
    for d in (D1, D2):
        r = A.register(port, d)
        check(r.status == 201, "register %s: %r" % (d, r))
        tok[d] = (r.json() or {}).get("token", "")
    st["tok"] = tok
    for name, (dev, pid, body) in sorted(pk.items()):
        r = A.post_pkg(port, dev, tok[dev], body, pid=pid)
        check(r.status == 200 and (r.json() or {}).get("status") ==
              "stored", "package %s stored (%r)" % (name, r))
    for dev, ago in ((D1, 20), (D1, 0), (D2, 15)):
        r = telemetry(port, dev, tok[dev], ago)
        check(r.status == 200, "telemetry of %s, %d days ago: %r" %
              (dev, ago, r))
    m = sweeps_after(port, 2)
    got, _ = swept(port)
    check(got == {k: 0 for k in got},
          "retain_* 0: two sweeps remove nothing (%r)" % (got,))

    # image content types: by magic first, then the name
    ev = {n: pk[n][1] + ".0" for n in "CDE"}
    for n, want in (("C", "image/jpeg"), ("D", "image/png"),
                    ("E", "image/jpeg")):
        r = A.req(port, "GET", "/api/v1/drift/events/%s/image" % ev[n],
                  headers=A.ADMIN_H)
        check(r.status == 200 and r.headers.get("content-type") == want,
              "image of event %s: %s (got %s %s)" % (
                  n, want, r.status, r.headers.get("content-type")))

    # export while the core runs
    store = c.store
    p, lines, bad = export(tl, store)
    check(p.returncode == 0 and bad == 0,
          "export while the core runs: exit 0, every line JSON "
          "{kind, record} (%d bad; %s)" % (
              bad, p.stderr.decode().strip()[-300:]))
    want = {"devices": 2, "packages": 5, "drift": 4, "samples": 4,
            "images": 4, "metrics": 4, "logs": 3, "feedback": 0,
            "models": 0, "telemetry": 3}
    check(counts(lines) == want, "export counts per kind: %r" %
          (counts(lines),))
    check(("exported devices 2, packages 5, drift 4") in p.stderr.decode(),
          "export's summary on stderr: %r" % p.stderr.decode()[-200:])
    # the records are what the API answers
    _, api = get(port, "/api/v1/drift/events?limit=100")
    check(sorted(of(lines, "drift"), key=lambda e: e["id"]) ==
          sorted(api["events"], key=lambda e: e["id"]),
          "export drift records = GET /drift/events")
    _, api = get(port, "/api/v1/samples?limit=100")
    exp = [strip(s, "thumbnail_png_base64") for s in of(lines, "samples")]
    check(exp == api["samples"], "export samples = GET /samples")
    thumbs = [base64.b64decode(s["thumbnail_png_base64"])
              for s in of(lines, "samples")]
    check(all(A.png_gray(t) == THUMB for t in thumbs) and len(thumbs) == 4,
          "export thumbnails: PNGs of the pixels sent")
    _, api = get(port, "/api/v1/packages?limit=100")
    exp = {o["id"]: o for o in of(lines, "packages")}
    check({i: strip(o, "data_base64") for i, o in exp.items()} ==
          {o["id"]: o for o in api["packages"]},
          "export packages = GET /packages")
    check(all(base64.b64decode(exp.get(pid, {}).get("data_base64", "")) ==
              body for _, pid, body in pk.values()),
          "export package bodies: the bytes sent")
    imgs = {(o["package_id"], o["name"]): o for o in of(lines, "images")}
    want_img = {(pk["C"][1], "frame-3.jpeg"): ("image/jpeg", JPEG, D1),
                (pk["D"][1], "shot.png"): ("image/png", PNG, D1),
                (pk["E"][1], "cam.png"): ("image/jpeg", JPEG, D2),
                (pk["E"][1], "notes.txt"): ("application/octet-stream",
                                            b"hello", D2)}
    check({k: (o["media_type"], base64.b64decode(o["data_base64"]),
               o["device_id"]) for k, o in imgs.items()} == want_img,
          "export images: media type, bytes, device")
    for d in (D1, D2):
        _, api = get(port, "/api/v1/devices/%s/metrics?limit=100" % d)
        exp = [strip(o, "device_id") for o in of(lines, "metrics")
               if o["device_id"] == d]
        check(sorted(exp, key=lambda o: o["time_ns"]) ==
              sorted(api["metrics"], key=lambda o: o["time_ns"]),
              "export metrics of %s = GET /devices/%s/metrics" % (d, d))
    devs = of(lines, "devices")
    check(sorted(o["device_id"] for o in devs) == [D1, D2] and
          not any("token_sha256" in o or "secret_sha256" in o for o in devs),
          "export devices: both, without the token and secret hashes")
    tel = sorted((o["device_id"], o["count"], o["sum"])
                 for o in of(lines, "telemetry"))
    check(tel == [(D1, 1, 10.0), (D1, 1, 30.0), (D2, 1, 25.0)],
          "export telemetry aggregates: %r" % (tel,))

    # filters
    p, lines, bad = export(tl, store, "--kind", "drift,samples",
                           "--no-blobs")
    check(p.returncode == 0 and bad == 0 and counts(lines) == dict(
        {k: 0 for k in KINDS}, drift=4, samples=4) and
          not any("thumbnail_png_base64" in s for s in of(lines, "samples")),
          "export --kind drift,samples --no-blobs: %r" % (counts(lines),))
    p, lines, bad = export(tl, store, "--device", D2, "--no-blobs")
    check(p.returncode == 0 and counts(lines) == {
        "devices": 1, "packages": 2, "drift": 1, "samples": 1, "images": 2,
        "metrics": 2, "logs": 1, "feedback": 0, "models": 0,
        "telemetry": 1} and all(
            o["record"].get("device_id") == D2 for o in lines) and
          not any("data_base64" in o["record"] for o in lines),
          "export --device %s: only its records (%r)" % (D2,
                                                        counts(lines)))
    p, lines, bad = export(tl, store, "--kind", "metrics,logs", "--since",
                           str(NEW - 1))
    check(p.returncode == 0 and counts(lines) == dict(
        {k: 0 for k in KINDS}, metrics=2, logs=1) and
          all(o["record"]["time_ns"] == NEW for o in lines),
          "export --since: only the newer metrics and logs (%r)" %
          (counts(lines),))
    p, lines, bad = export(tl, store, "--kind", "metrics", "--since", "2d",
                           "--device", D1)
    check(p.returncode == 0 and [o["record"]["time_ns"] for o in lines] ==
          [NEW], "export --since 2d --device: one metrics record")
    out = os.path.join(os.path.dirname(store), "export.jsonl")
    p = subprocess.run([tl, "core", "export", "--store", store, "--out",
                        out], capture_output=True, timeout=120)
    rows = [json.loads(x) for x in open(out).read().splitlines()] \
        if os.path.exists(out) else []
    check(p.returncode == 0 and p.stdout == b"" and len(rows) == 29 and
          not [f for f in os.listdir(os.path.dirname(store))
               if f.endswith(".tmp")],
          "export --out: the file has all 29 records, no temporary left")

    # a person's verdicts: D's event validated, E's rejected, C's pending
    r = A.req(port, "POST", "/api/v1/drift/events/%s/validate" % ev["D"],
              {"label": "Bag"}, A.ADMIN_H)
    check(r.status == 200 and (r.json() or {}).get("feedback") == 1,
          "validate D's event: 1 label queued (%r)" % (r,))
    r = A.req(port, "POST", "/api/v1/drift/events/%s/validate" % ev["E"],
              {"reject": True}, A.ADMIN_H)
    check(r.status == 200, "reject E's event (%r)" % (r,))
    st["ev"] = ev


# ---- run 1: short retentions ---------------------------------------------------

def run1(tl, c, pk, st):
    port = c.port
    ev, tok = st["ev"], st["tok"]
    want = {"packages": 5, "drift": 3, "samples": 2, "images": 3,
            "metrics": 2, "logs": 2, "telemetry": 2}
    wait_for(port, "the sweeps remove exactly what is due",
             lambda m: swept_of(m) == want)
    sweeps_after(port, 2)
    got, m = swept(port)
    check(got == want, "after two more sweeps nothing more is removed: "
          "%r" % (got,))
    check(m.get("tinylcm_core_retention_held") == 4,
          "held: the pending event, its 2 samples and its images (%r)" %
          m.get("tinylcm_core_retention_held"))
    check(m.get("tinylcm_core_retention_failed_total") == 0 and
          m.get("tinylcm_core_retention_last_sweep_timestamp_seconds",
                0) >= NOW // 10 ** 9, "no failed sweep; last sweep time")

    _, j = get(port, "/api/v1/packages?limit=100")
    check(j == {"packages": []}, "GET /packages: every package swept")
    _, j = get(port, "/api/v1/drift/events?limit=100")
    check([(e["id"], e["status"]) for e in j["events"]] ==
          [(ev["C"], "pending")], "drift events: only the pending one (%r)"
          % ([e["id"] for e in j["events"]],))
    r = A.req(port, "GET", "/api/v1/drift/events/%s/image" % ev["C"],
              headers=A.ADMIN_H)
    check(r.status == 200 and r.body == JPEG and
          r.headers.get("content-type") == "image/jpeg",
          "the pending event keeps its image (a .jpeg as image/jpeg)")
    _, j = get(port, "/api/v1/samples?limit=100")
    check(sorted(s["frame_id"] for s in j["samples"]) == [101, 102],
          "samples: those of the pending event (%r)" % (j,))
    r = A.req(port, "GET", "/api/v1/samples/101/thumbnail",
              headers=A.ADMIN_H)
    check(r.status == 200 and A.png_gray(r.body) == THUMB,
          "a kept sample keeps its thumbnail")
    r = A.req(port, "GET", "/api/v1/samples/201/thumbnail?device=" + D1,
              headers=A.ADMIN_H)
    check(r.status == 404, "a swept sample's thumbnail is gone (%r)" % (r,))
    for d, kind, want_t in ((D1, "metrics", [NEW]), (D2, "metrics", [NEW]),
                            (D1, "logs", [NEW]), (D2, "logs", [])):
        _, j = get(port, "/api/v1/devices/%s/%s?limit=100" % (d, kind))
        check([o["time_ns"] for o in j[kind]] == want_t,
              "%s of %s: only the ones within a day (%r)" % (kind, d, j))
    r = A.req(port, "GET", "/api/v1/devices/%s/feedback" % D1,
              headers=A.dev_auth(D1, tok[D1]))
    labels = (r.json() or {}).get("labels", [])
    check([(x["frame_id"], x["label"]) for x in labels] == [(201, "Bag")],
          "the unacknowledged label stays, though its sample was swept")
    _, j = get(port, "/api/v1/pool/status")
    check(j.get("devices") == 1 and j.get("device_days") == 1,
          "telemetry: only today's day is left (%r)" % (j,))
    for name in "AD":
        dev, pid, body = pk[name]
        r = A.post_pkg(port, dev, tok[dev], body, pid=pid)
        check(r.status == 200 and (r.json() or {}).get("status") ==
              "duplicate", "swept package %s sent again: duplicate (%r)" %
              (name, r))
    _, j = get(port, "/api/v1/devices/" + D1)
    check(j.get("packages") == 3, "D1's figure counts its 3 swept packages "
          "(%r)" % (j.get("packages"),))
    p, lines, bad = export(tl, c.store)
    check(p.returncode == 0 and bad == 0 and counts(lines) == {
        "devices": 2, "packages": 0, "drift": 1, "samples": 2, "images": 1,
        "metrics": 2, "logs": 1, "feedback": 1, "models": 0,
        "telemetry": 1}, "export after the sweeps: %r" % (counts(lines),))


# ---- run 2: ids forgotten ---------------------------------------------------------

def run2(tl, c, pk, st):
    port = c.port
    tok = st["tok"]
    _, j = get(port, "/api/v1/devices/" + D1)
    check(j.get("packages") == 3, "after a restart D1 still counts 3 "
          "packages (%r)" % (j.get("packages"),))
    wait_for(port, "4 swept package ids forgotten", lambda m: m.get(
        "tinylcm_core_retention_ids_forgotten_total") == 4 and
        swept_of(m)["metrics"] == 2)
    sweeps_after(port, 2)
    m = prom(port)
    check(m.get("tinylcm_core_retention_ids_forgotten_total") == 4,
          "exactly 4 ids forgotten; C's is kept for its pending event")
    for name, status in (("A", "stored"), ("C", "duplicate")):
        dev, pid, body = pk[name]
        r = A.post_pkg(port, dev, tok[dev], body, pid=pid)
        check(r.status == 200 and (r.json() or {}).get("status") == status,
              "package %s sent once more: %s (%r)" % (name, status, r))


# ---- bad arguments -----------------------------------------------------------------

def bad_args(tl, root, work, store):
    def run(*a):
        return subprocess.run([tl, "core"] + list(a), capture_output=True,
                              timeout=120)

    p = run("export", "--help")
    check(p.returncode == 0 and b"--no-blobs" in p.stdout,
          "core export --help")
    for args, rc, says in (
            (["export", "--store", store, "--kind", "drift,bogus"], 2,
             "unknown kind 'bogus'"),
            (["export", "--store", os.path.join(work, "nope")], 1,
             "no store at"),
            (["export"], 2, "which store?"),
            (["export", "--store", store, "--since", "yesterday"], 2,
             "--since 'yesterday'"),
            (["export", "--store", store, "--device", "../x"], 2,
             "not a device id"),
            (["export", "--store", store, "--frob"], 2,
             "unknown argument --frob"),
            (["export", "--store", store, "--out",
              os.path.join(work, "no", "such", "dir", "x.jsonl")], 1,
             "--out"),
            (["import"], 2, "no subcommand 'import'")):
        p = run(*args)
        check(p.returncode == rc and says in p.stderr.decode() and
              p.stdout == b"", "core %s: exit %d, says %r (got %d: %s)" % (
                  " ".join(args[:1] + args[-2:]), rc, says, p.returncode,
                  p.stderr.decode().strip()[-200:]))
    # the store of another graph
    other = os.path.join(work, "other.store")
    g = os.path.join(work, "other.yaml")
    with open(g, "w") as f:
        f.write("graph: other\nsettings: { store: %s }\nnodes:\n"
                "  src: { type: gen, params: { count: 10 } }\n"
                "  sink: { type: sink }\n"
                "edges:\n  - { from: src.out, to: sink.in }\n" % other)
    p = subprocess.run([tl, "run", g, "--quiet", "--headless"],
                       capture_output=True, timeout=120)
    check(p.returncode == 0, "a gen -> sink graph with a store runs (%s)" %
          p.stderr.decode()[-200:])
    p = run("export", "--store", other)
    check(p.returncode == 1 and b"holds no records of a core" in p.stderr
          and p.stdout == b"", "export of another graph's store: exit 1, "
          "says so (%s)" % p.stderr.decode().strip()[-200:])


def main():
    tl, root = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    work = tempfile.mkdtemp(prefix="tlcm-core-ret-")
    cores = []
    ok = False
    try:
        pk, st = build_packages(), {}
        print("== 0. keep everything, export")
        c = A.Core(tl, root, work, "r0", sets=KEEP_ALL + COMMON).start()
        cores.append(c)
        run0(tl, c, pk, st)
        check(c.stop() == 0, "run 0 stops cleanly")
        print("== 1. short retentions")
        short = ["core.retain_packages=1s", "core.retain_drift=1s",
                 "core.retain_samples=1s", "core.retain_images=1s",
                 "core.retain_metrics=1d", "core.retain_logs=1d",
                 "core.retain_telemetry=10d"]
        c1 = A.Core(tl, root, work, "r0", sets=short + COMMON)
        cores.append(c1.start())
        run1(tl, c1, pk, st)
        check(c1.stop() == 0, "run 1 stops cleanly")
        print("== 2. swept package ids forgotten")
        c2 = A.Core(tl, root, work, "r0", sets=[
            s.replace("=1d", "=1s") for s in short] + COMMON)
        cores.append(c2.start())
        run2(tl, c2, pk, st)
        check(c2.stop() == 0, "run 2 stops cleanly")
        print("== bad arguments")
        bad_args(tl, root, work, c.store)
        c3 = A.Core(tl, root, work, "r3", sets=[
            "core.retain_telemetry=5d", "core.community_min_days=30"])
        try:
            c3.start()
            cores.append(c3)
            check(False, "a core with retain_telemetry 5d < "
                  "community_min_days 30 refuses to start")
        except RuntimeError as e:
            check("retain_telemetry" in str(e) and
                  "community_min_days" in str(e),
                  "retain_telemetry below community_min_days: the core "
                  "says why it does not start")
        ok = True
    finally:
        for c in cores:
            c.stop()
        if A.fails or not ok:
            for name in ("r0", "r3"):
                p = os.path.join(work, name + ".log")
                if os.path.exists(p):
                    print("---- %s log (tail)" % name)
                    print(open(p, errors="replace").read()[-3000:])
        shutil.rmtree(work, ignore_errors=True)
    print("%d failed" % len(A.fails))
    return 1 if A.fails or not ok else 0


if __name__ == "__main__":
    sys.exit(main())
