#!/usr/bin/python3
"""Run the curl examples of docs/api.md against a real core, in order, and
check that each answers what the document says.

Marker convention (in docs/api.md):

    <!-- doc-example -->
    ```sh
    curl -s -H "Authorization: Bearer $ADMIN_TOKEN" "$CORE/api/v1/devices"
    # → 200 device_id=pi-kitchen-01 Content-Type=application/json
    ```

Only a ```sh block right after a `<!-- doc-example -->` line is run (the
other examples of the file are not: they name core.example). Its last
line must be `# → STATUS [CHECK]...`: the HTTP status of the last curl
the block ran, then optional checks, each NAME=VALUE: a NAME that starts
with a capital letter is a response header of that curl (VALUE `*`: only
present), any other NAME a field of the last JSON object the block
printed, as a dotted path (`events.0.status`: field, array index, field;
a string compares as it is, other values as JSON text, VALUE `absent`:
not there).

The blocks run one after the other in one bash, in a scratch directory,
so what a block sets (TOKEN, SECRET, files) is there for the next. The
test sets only:

    CORE         http://127.0.0.1:PORT of the core it started
    ADMIN_TOKEN  the core's admin_token
    KEY          the fleet's API key (the core's api_key)
    ID LOGS_ID DRIFT_ID HALL_ID   the ids of the package files below

and writes four packages as a device's packager makes them (schemas/
package.fbs, tests/core/fbwrite.py): metrics.pkg (pi-kitchen-01, kind
metrics, 2 metrics records), logs.pkg (pi-kitchen-01, 2 log lines),
drift.pkg (pi-kitchen-01: a drift start with 2 quarantined samples,
frames 4711 and 4712 with 8x8 thumbnails, a drift end, and the image
frame-4710.png) and hall.pkg (of device pi-hall-02). The core is
graphs/core.yaml with device_burst 8 and device_rate 0.001, as
docs/api.md says, so that the 429 example is reached. `curl` is a shell
function that adds -D (the response head, for the checks) to each call.

usage: doc_examples_test.py TINYLCM REPO_ROOT
"""
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fbwrite as fb  # noqa: E402

MARK = "<!-- doc-example -->"
ADMIN = "admin-token-of-the-doc-examples"
KEY = "fleet-key-of-the-doc-examples"
SETS = ("core.device_burst=8", "core.device_rate=0.001")
T0 = 1795000000000000000  # the records' device times (ns)


def uuid7():
    """A UUIDv7 text: 48 bits of Unix milliseconds, version 7, variant
    10, the rest random."""
    ms = time.time_ns() // 1000000
    r = int.from_bytes(os.urandom(10), "big")
    v = (ms << 80 | 7 << 76 | (r >> 64 & 0xfff) << 64 | 2 << 62 |
         r & (1 << 62) - 1)
    return str(uuid.UUID(int=v))


def png_gray(w, h, px):
    """An 8-bit gray PNG of w x h pixels."""
    def chunk(typ, data):
        return (struct.pack(">I", len(data)) + typ + data +
                struct.pack(">I", zlib.crc32(typ + data)))
    rows = b"".join(b"\0" + px[y * w:(y + 1) * w] for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" +
            chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def write_packages(work):
    """The four package files; their ids by variable name."""
    ids = {"ID": uuid7(), "LOGS_ID": uuid7(), "DRIFT_ID": uuid7(),
           "HALL_ID": uuid7()}
    dev = "pi-kitchen-01"
    met = [fb.metrics(T0, "metrics", 1, [("node.knn.in", 42),
                                         ("process.state", "running")]),
           fb.metrics(T0 + 60 * 10 ** 9, "metrics", 2,
                      [("node.knn.in", 97)], full=False)]
    logs = [fb.log_line(T0 + 10 ** 9, 1, "tinylcm", "store: 91% full", 7),
            fb.log_line(T0 + 2 * 10 ** 9, 0, "knn", "index full: evicted "
                        "12 entries", 8)]
    thumb = [(8, 8, bytes((x * 8 + y * 24) & 255 for y in range(8)
                          for x in range(8))),
             (8, 8, bytes((255 - x * 16) & 255 for y in range(8)
                          for x in range(8)))]
    drift = [fb.drift_event(0, "drift.page_hinkley", "ph", "mean_distance",
                            3.25, 1.5, 118, T0 + 3 * 10 ** 9, 4710),
             fb.quarantine_batch([
                 fb.sample(4711, T0 + 4 * 10 ** 9, T0 + 5 * 10 ** 9,
                           "Shirt", 0.41, 2.5, 3, [0.5, -1.25], thumb[0]),
                 fb.sample(4712, T0 + 6 * 10 ** 9, T0 + 7 * 10 ** 9,
                           "Shirt", 0.38, 2.25, 3, [0.75, 0.5], thumb[1])],
                 seq=1),
             fb.drift_event(1, "drift.page_hinkley", "ph", "mean_distance",
                            0.5, 1.5, 180, T0 + 9 * 10 ** 9, 4790)]
    frame = png_gray(8, 8, bytes(range(0, 256, 4)))
    files = {
        "metrics.pkg": fb.package(
            ids["ID"], dev, "metrics", met, priority=1, created_ns=T0 + 1,
            schemas=[("tlcm.Metrics", "TMET", 1)]),
        "logs.pkg": fb.package(
            ids["LOGS_ID"], dev, "operational_logs", logs, priority=3,
            created_ns=T0 + 2, schemas=[("tlcm.LogLine", "TLOG", 1)]),
        "drift.pkg": fb.package(
            ids["DRIFT_ID"], dev, "drift_event", drift, priority=2,
            created_ns=T0 + 3,
            attachments=[("frame-4710.png", "image/png", frame)],
            schemas=[("tlcm.DriftEvent", "DRFT", 1),
                     ("tlcm.QuarantineBatch", "QBAT", 1)]),
        "hall.pkg": fb.package(
            ids["HALL_ID"], "pi-hall-02", "metrics", met[:1], priority=1,
            created_ns=T0 + 4, schemas=[("tlcm.Metrics", "TMET", 1)]),
    }
    for name, data in files.items():
        with open(os.path.join(work, name), "wb") as f:
            f.write(data)
    return ids


def examples(path):
    """[(line, code, status, checks)] of the marked blocks; raises
    ValueError naming the line of a malformed one."""
    lines = open(path, encoding="utf-8").read().split("\n")
    out = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != MARK:
            i += 1
            continue
        at = i + 1
        if at >= len(lines) or lines[at].strip() != "```sh":
            raise ValueError("%s:%d: %s is not followed by a ```sh block" %
                             (path, i + 1, MARK))
        end = at + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError("%s:%d: the block never ends" %
                             (path, at + 1))
        body = lines[at + 1:end]
        m = re.match(r"#\s*→\s*(\d{3})((?:\s+\S+=\S+)*)\s*$",
                     body[-1].strip() if body else "")
        if not m:
            raise ValueError("%s:%d: the block's last line is not "
                             "'# → STATUS [NAME=VALUE]...'" %
                             (path, end))
        checks = [c.split("=", 1) for c in m.group(2).split()]
        out.append((at + 1, "\n".join(body[:-1]) + "\n", int(m.group(1)),
                    checks))
        i = end + 1
    return out


def last_json_object(text):
    """The last JSON object of the values printed one after the other."""
    dec, at, last = json.JSONDecoder(), 0, None
    while True:
        at = text.find("{", at)
        if at < 0:
            return last
        try:
            v, end = dec.raw_decode(text, at)
        except ValueError:
            at += 1
            continue
        if isinstance(v, dict):
            last = v
        at = end


def field(obj, path):
    """The value at a dotted path of obj, as the checks compare it
    (text as it is, anything else as JSON), or "absent"."""
    v = obj
    for part in path.split("."):
        if isinstance(v, dict) and part in v:
            v = v[part]
        elif (isinstance(v, list) and part.isdigit() and
              int(part) < len(v)):
            v = v[int(part)]
        else:
            return "absent"
    return v if isinstance(v, str) else json.dumps(v)


def head(path):
    """Status and headers (lower-case names) of the last response in a
    curl -D file, or (None, {})."""
    if not os.path.exists(path):
        return None, {}
    blocks = [b for b in open(path, "rb").read().decode(
        "latin-1").replace("\r\n", "\n").split("\n\n") if b.strip()]
    if not blocks:
        return None, {}
    lines = blocks[-1].split("\n")
    hdr = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdr[k.strip().lower()] = v.strip()
    try:
        return int(lines[0].split()[1]), hdr
    except (IndexError, ValueError):
        return None, {}


def start_core(tinylcm, root, work):
    portfile = os.path.join(work, "core.port")
    env = dict(os.environ, CORE_STORE=os.path.join(work, "core.store"),
               CORE_LISTEN="http://127.0.0.1:0", CORE_PORT_FILE=portfile,
               CORE_ADMIN_TOKEN=ADMIN, CORE_API_KEY=KEY)
    cmd = [tinylcm, "run", os.path.join(root, "graphs", "core.yaml"),
           "--headless"]
    for s in SETS:
        cmd += ["--set", s]
    log = open(os.path.join(work, "core.log"), "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not os.path.exists(portfile):
        if proc.poll() is not None:
            raise RuntimeError("the core exited with %d at start" %
                               proc.returncode)
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the core wrote no port file in 60 s")
        time.sleep(0.02)
    return proc, int(open(portfile).read())


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().split("\n")[-1], file=sys.stderr)
        return 2
    tinylcm, root = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    doc = os.path.join(root, "docs", "api.md")
    try:
        blocks = examples(doc)
    except ValueError as e:
        print("FAIL %s" % e)
        return 1
    if not blocks:
        print("FAIL %s: no block is marked %s" % (doc, MARK))
        return 1
    for tool in ("bash", "curl"):
        if not shutil.which(tool):
            print("FAIL the examples need %s on PATH" % tool)
            return 1
    work = tempfile.mkdtemp(prefix="tlcm-doc-examples-")
    run = os.path.join(work, "run")
    os.mkdir(run)
    fails = []
    proc = None
    try:
        ids = write_packages(run)
        proc, port = start_core(tinylcm, root, work)
        # one script: each block sourced from its own file (a syntax
        # error stays in its block), its output and response head kept
        script = ["curl() { command curl -D \"$DOC_HEAD\" \"$@\"; }"]
        for n, (_, code, _, _) in enumerate(blocks):
            with open(os.path.join(work, "ex%d.sh" % n), "w") as f:
                f.write(code)
            script.append(
                "DOC_HEAD=%s/head%d; rm -f \"$DOC_HEAD\"\n"
                ". %s/ex%d.sh >%s/out%d 2>%s/err%d </dev/null"
                % (work, n, work, n, work, n, work, n))
        env = dict(os.environ, CORE="http://127.0.0.1:%d" % port,
                   ADMIN_TOKEN=ADMIN, KEY=KEY, **ids)
        p = subprocess.run(["bash", "-c", "\n".join(script)], cwd=run,
                           env=env, timeout=300)
        if p.returncode:
            print("note: the last block ended with status %d" %
                  p.returncode)
        for n, (line, code, want, checks) in enumerate(blocks):
            status, hdr = head(os.path.join(work, "head%d" % n))
            out = open(os.path.join(work, "out%d" % n),
                       errors="replace").read()
            err = open(os.path.join(work, "err%d" % n),
                       errors="replace").read()
            obj = last_json_object(out)
            bad = []
            if status != want:
                bad.append("status %s, the document says %d" %
                           (status, want))
            for name, val in checks:
                if name[:1].isupper():
                    got = hdr.get(name.lower())
                    if got is None or (val != "*" and got != val):
                        bad.append("header %s: %r, want %r" %
                                   (name, got, val))
                else:
                    got = None if obj is None else field(obj, name)
                    if got != val:
                        bad.append("%s: %r, want %r" % (name, got, val))
            first = code.strip().split("\n")[0][:70]
            print("%-4s docs/api.md:%d %s" % ("FAIL" if bad else "ok",
                                               line, first), flush=True)
            if bad:
                fails.append(line)
                for b in bad:
                    print("     " + b)
                print("     output: %r" % out[-400:])
                if err.strip():
                    print("     stderr: %r" % err[-400:])
        proc.terminate()
        rc = proc.wait(timeout=60)
        if rc:
            print("FAIL the core exited with %d after SIGTERM" % rc)
            fails.append("exit")
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        if fails:
            print("---- core log (tail)")
            print(open(os.path.join(work, "core.log"),
                       errors="replace").read()[-3000:])
        shutil.rmtree(work, ignore_errors=True)
    print("%d examples, %d failed" % (len(blocks), len(fails) -
                                      (1 if "exit" in fails else 0)))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
