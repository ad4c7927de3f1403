#!/usr/bin/python3
"""The README's main job (`make demo` = tools/demo), small and seeded: a
local core starts, the device graph runs next to it, and the demo shows
the device registering, its packages and drift events arriving at the
core, labels given at the core coming back to the device, and the core's
final figures; it exits 0 and stops the core. The figures printed are
checked against each other (packages printed = packages the core counts),
never against time.

usage: demo_main_test.py TINYLCM REPO_ROOT
Exit 77 (skip) without the dataset, unless CI=true.
"""
import os
import re
import subprocess
import sys

DATASET = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
fails = []


def check(cond, what):
    print("%-4s %s" % ("ok" if cond else "FAIL", what), flush=True)
    if not cond:
        fails.append(what)


def main():
    tinylcm, root = sys.argv[1], sys.argv[2]
    if not os.path.exists(DATASET):
        print("skip: %s missing (dataset-fashion-mnist)" % DATASET)
        return 1 if os.environ.get("CI") == "true" else 77
    build = os.path.dirname(os.path.dirname(os.path.abspath(tinylcm)))
    env = dict(os.environ, PHASE_A="2000", PHASE_B="2000", PHASE_C="500",
               SEED="1", METRICS_INTERVAL="200ms")
    env.pop("STORE", None)
    p = subprocess.run([os.path.join(root, "tools", "demo"), "--build",
                        build], cwd=root, env=env, capture_output=True,
                       text=True, timeout=900)
    out = p.stdout
    print(out[-2500:])
    check(p.returncode == 0, "tools/demo exits 0 (got %d): %s"
          % (p.returncode, p.stderr[-1500:]))
    check("core: device demo-device registered" in out,
          "the core saw the device register")
    pk = re.findall(r"^core: package (\d+) \((\w+),", out, re.M)
    check(len(pk) >= 1 and any(k == "drift_event" for _, k in pk),
          "packages arrived, drift events among them: %s" % pk)
    check(sorted(int(s) for s, _ in pk) == list(range(1, len(pk) + 1)),
          "the packager's packages 1..%d each printed once" % len(pk))
    check(re.search(r"^core: drift start from distance", out, re.M),
          "a drift start of the device's signal arrived")
    lab = re.findall(r"labelled \d+ quarantined samples \((\d+) so far",
                     out)
    m = re.search(r"labels received \(feedback\), all\s+(\d+)", out)
    got = int(m.group(1)) if m else -1
    check(lab and got > 0 and got <= int(lab[-1]),
          "labels given at the core came back to the device: %d of %s"
          % (got, lab[-1] if lab else None))
    m = re.search(r"device demo-device: (\d+) packages", out)
    check(m and int(m.group(1)) == len(pk),
          "the core's package count agrees with what was printed: %s"
          % (m.group(1) if m else None))
    m = re.search(r"labels acknowledged by the device: (\d+), still queued "
                  r"for it: (\d+)", out)
    given = int(lab[-1]) if lab else -1
    check(m is not None and int(m.group(1)) + int(m.group(2)) == given and
          got <= int(m.group(1)),
          "labels given (%d) = acknowledged + still queued (%s), and the "
          "device's scenario counted no more than were acknowledged (%d)"
          % (given, m.groups() if m else None, got))
    if fails:
        print("FAIL: %d checks" % len(fails))
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
