#!/usr/bin/python3
"""profile_test.py — hardware profiles through the tinylcm CLI.

usage: profile_test.py TINYLCM

Pins the precedence of issue 9 §3 with `tinylcm check --effective`, which
prints every effective value with where it came from: a --set value wins
over the graph file, the graph file over the profile's default, and the
profile scales only defaults (docs/profiles.md: workers <= 2/4/8, edge
capacity x0.5/1/2, intervals x2/1/0.5, batch sizes x0.5/1/2 for
LOW_POWER/BALANCED/HIGH_PERFORMANCE). Also: --profile over
$TINYLCM_PROFILE, unknown names refused with exit 2, and the profile in
`tinylcm run`'s start log.

Prints one line per failure, then `N passed, M failed`.
"""
import os
import subprocess
import sys
import tempfile

GRAPH = """graph: prof
settings: { introspect: 'off' }
nodes:
  a: { type: sensor.sysfs, params: { interval: 3s, count: 1 } }
  b: { type: sensor.sysfs, params: { count: 1 } }
  m: { type: metrics, params: { count: 1, finish: never } }
  out: { type: sink }
  out2: { type: sink }
edges:
  - { from: a.out, to: out.in, capacity: 16KiB }
  - { from: b.out, to: out2.in }
"""

PACK = """graph: pack
settings: { workers: 3 }
nodes:
  m: { type: metrics, params: { count: 1 } }
  p: { type: packager }
edges:
  - { from: m.out, to: p.metrics }
"""

PROFILES = {  # max workers, ring, period, batch
    "LOW_POWER": (2, 0.5, 2.0, 0.5),
    "BALANCED": (4, 1.0, 1.0, 1.0),
    "HIGH_PERFORMANCE": (8, 2.0, 0.5, 2.0),
}


class T:
    def __init__(self, binary):
        self.binary = binary
        self.passed = self.failed = 0

    def ok(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL:", what)

    def run(self, args, env=None):
        e = dict(os.environ)
        e.pop("TINYLCM_PROFILE", None)
        e.update(env or {})
        return subprocess.run([self.binary] + args, capture_output=True,
                              text=True, timeout=60, env=e)

    def effective(self, path, args=(), env=None):
        r = self.run(["check", path, "--effective"] + list(args), env)
        self.ok(r.returncode == 0, f"check {args} {env}: {r.stderr}")
        vals = {}
        for line in r.stdout.splitlines()[1:]:
            k, _, v = line.partition(" = ")
            if not v:
                k, _, v = line.partition(" ")
            vals[k] = v
        return vals


def main():
    t = T(sys.argv[1])
    ncpu = os.cpu_count()
    with tempfile.TemporaryDirectory() as d:
        g = os.path.join(d, "prof.yaml")
        with open(g, "w") as f:
            f.write(GRAPH)
        p = os.path.join(d, "pack.yaml")
        with open(p, "w") as f:
            f.write(PACK)
        for name, (mw, ring, period, batch) in PROFILES.items():
            v = t.effective(g, ["--profile", name])
            t.ok(v.get("profile") == name, f"{name}: {v.get('profile')}")
            want = f"{min(ncpu, mw)} (profile)"
            t.ok(v.get("settings.workers") == want,
                 f"{name}: workers {v.get('settings.workers')} != {want}")
            t.ok(v.get("edge a.out -> out.in capacity") == "16384 (file)",
                 f"{name}: file capacity {v}")
            want = f"{int(65536 * ring)} (profile)"
            t.ok(v.get("edge b.out -> out2.in capacity") == want,
                 f"{name}: default capacity "
                 f"{v.get('edge b.out -> out2.in capacity')} != {want}")
            t.ok(v.get("a.interval") == "3s (file)",
                 f"{name}: a.interval {v.get('a.interval')}")
            # a multiplier of 1 leaves the default as it is
            src = "profile" if period != 1 else "default"
            want = f"{10 * period:g}s ({src})"
            t.ok(v.get("b.interval") == want,
                 f"{name}: b.interval {v.get('b.interval')} != {want}")
            t.ok(v.get("m.interval") == want,
                 f"{name}: m.interval {v.get('m.interval')} != {want}")
            # --set beats the file and the profile
            v = t.effective(g, ["--profile", name, "--set", "a.interval=1s",
                                "--set", "b.interval=7s"])
            t.ok(v.get("a.interval") == "1s (--set)",
                 f"{name}: --set over file: {v.get('a.interval')}")
            t.ok(v.get("b.interval") == "7s (--set)",
                 f"{name}: --set over profile: {v.get('b.interval')}")
            # batch sizes; settings.workers given in the file wins
            v = t.effective(p, ["--profile", name])
            src = "profile" if batch != 1 else "default"
            want = f"{int(100 * batch)} ({src})"
            t.ok(v.get("p.batch_count") == want,
                 f"{name}: batch_count {v.get('p.batch_count')} != {want}")
            t.ok(v.get("settings.workers") == "3 (file)",
                 f"{name}: file workers {v.get('settings.workers')}")
            t.ok(v.get("p.batch_bytes") == "256KiB (default)",
                 f"{name}: unflagged {v.get('p.batch_bytes')}")

        # the environment, and --profile over it
        v = t.effective(g, env={"TINYLCM_PROFILE": "low_power"})
        t.ok(v.get("profile") == "LOW_POWER", f"env: {v.get('profile')}")
        v = t.effective(g, ["--profile", "BALANCED"],
                        env={"TINYLCM_PROFILE": "LOW_POWER"})
        t.ok(v.get("profile") == "BALANCED", f"flag>env: {v.get('profile')}")
        # detected: one of the three, never "none"
        v = t.effective(g)
        t.ok(v.get("profile") in PROFILES, f"detected: {v.get('profile')}")

        # unknown names: exit 2, naming the source and the valid ones
        r = t.run(["check", g, "--profile", "TURBO"])
        t.ok(r.returncode == 2 and "--profile: unknown profile 'TURBO' "
             "(expected LOW_POWER, BALANCED or HIGH_PERFORMANCE)" in r.stderr,
             f"bad --profile: {r.returncode} {r.stderr}")
        r = t.run(["run", g, "--headless"], env={"TINYLCM_PROFILE": "fast"})
        t.ok(r.returncode == 2 and "TINYLCM_PROFILE: unknown profile 'fast'"
             in r.stderr, f"bad env: {r.returncode} {r.stderr}")
        r = t.run(["run", g, "--profile"])
        t.ok(r.returncode == 2, f"--profile without a value: {r.returncode}")

        # the start log names the profile and where it came from
        r = t.run(["run", g, "--headless", "--profile", "LOW_POWER",
                   "--duration", "5"])
        t.ok(r.returncode == 0, f"run: {r.returncode} {r.stderr}")
        t.ok("headless; profile LOW_POWER (--profile; workers <= 2, rings "
             "x0.5, periods x2, batches x0.5)" in r.stderr,
             f"start log: {r.stderr}")
    print(f"{t.passed} passed, {t.failed} failed")
    return 1 if t.failed else 0


if __name__ == "__main__":
    sys.exit(main())
