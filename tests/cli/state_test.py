#!/usr/bin/python3
"""state_test.py — node state across graph runs and `tinylcm state`.

A gen → sink graph with a store: the second run continues the sequence
where the first stopped (gen restores it) and the sink's counts carry on;
`state ls/show/check` work, also while the graph runs; `state rollback`
refuses while the graph holds the store and works after; bad stores give
clear errors; a graph killed with SIGKILL at random moments of its start
(so, now and then, while its store is being created) starts again on the
next run. usage: state_test.py TINYLCM   (TLCM_SEED: the kill moments)
"""
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

failures = checks = 0


def check(cond, what):
    global failures, checks
    checks += 1
    if not cond:
        failures += 1
        print("FAIL:", what)


def run(args, timeout=60):
    return subprocess.run(args, capture_output=True, text=True,
                          timeout=timeout)


def killed_while_starting(tl, d):
    """kill -9 a graph 0-40 ms after its store directory appeared (while
    the store is being created, most times), 25 times, each time on a new
    store; the next run of the graph must work every time."""
    seed = int(os.environ.get("TLCM_SEED", "0")) or random.randrange(1 << 30)
    rnd = random.Random(seed)
    graph = os.path.join(d, "k.yaml")
    with open(graph, "w") as f:
        f.write(f"""graph: k
settings: {{ store: {d}/kstore, sync: always }}
nodes:
  src: {{ type: gen, params: {{ count: 20, payload: 16 }} }}
  sink: {{ type: sink }}
edges:
  - {{ from: src.out, to: sink.in }}
""")
    bad = 0
    for i in range(25):
        subprocess.run(["rm", "-rf", f"{d}/kstore"], check=True)
        p = subprocess.Popen([tl, "run", graph, "--quiet"],
                             stderr=subprocess.DEVNULL)
        end = time.monotonic() + 30
        while not os.path.exists(f"{d}/kstore") and p.poll() is None \
                and time.monotonic() < end:
            time.sleep(0.0005)
        time.sleep(rnd.uniform(0.0, 0.04))
        p.kill()
        p.wait()
        r = run([tl, "run", graph, "--quiet"])
        if r.returncode != 0:
            bad += 1
            print(f"round {i}: {r.stderr.strip()[-300:]}")
    check(bad == 0, f"a graph killed while starting runs again (seed "
          f"{seed}, TLCM_SEED repeats it): {bad} of 25 rounds failed")


def main():
    tl = sys.argv[1]
    with tempfile.TemporaryDirectory() as d:
        store = os.path.join(d, "store")
        graph = os.path.join(d, "g.yaml")
        report = os.path.join(d, "report.json")
        with open(graph, "w") as f:
            f.write(f"""graph: persist
settings: {{ store: {store}, sync: always, keep: 3 }}
nodes:
  src: {{ type: gen, params: {{ count: 1000, payload: 16 }} }}
  sink: {{ type: sink, params: {{ report: {report} }} }}
edges:
  - {{ from: src.out, to: sink.in }}
""")
        r = run([tl, "run", graph, "--quiet"])
        check(r.returncode == 0, f"first run: {r.stderr}")
        r = run([tl, "run", graph, "--set", "src.count=1500"])
        check(r.returncode == 0, f"second run: {r.stderr}")
        check("restored state v1" in r.stderr, "second run restores v1")
        rep = json.load(open(report))
        check(rep["count"] == 1500 and rep["missing"] == 0 and
              rep["last_seq"] == 1500,
              f"sink carried on without gaps: {rep}")

        r = run([tl, "state", "ls", store])
        check(r.returncode == 0 and "src" in r.stdout and "sink" in r.stdout,
              f"state ls: {r.stdout} {r.stderr}")
        check(r.stdout.count("shutdown") == 4, f"4 snapshots: {r.stdout}")
        r = run([tl, "state", "show", store, "src"])
        check(r.returncode == 0 and "version  2" in r.stdout and
              "TSTA" in r.stdout, f"state show: {r.stdout}")
        r = run([tl, "state", "show", store, "src", "9"])
        check(r.returncode == 1 and "no such snapshot" in r.stderr,
              f"show missing version: {r.stderr}")
        r = run([tl, "state", "check", store])
        check(r.returncode == 0 and "ok" in r.stdout, f"check: {r.stdout}")

        # while a graph runs: inspection works, rollback refuses
        endless = os.path.join(d, "endless.yaml")
        with open(endless, "w") as f:
            f.write(f"""graph: endless
settings: {{ store: {store} }}
nodes:
  src: {{ type: gen, params: {{ rate_hz: 200, payload: 16 }} }}
  sink: {{ type: sink }}
edges:
  - {{ from: src.out, to: sink.in }}
""")
        p = subprocess.Popen([tl, "run", endless], stderr=subprocess.PIPE,
                             text=True)
        deadline = time.time() + 20
        line = ""
        while time.time() < deadline and "running" not in line:
            line = p.stderr.readline()
        r = run([tl, "state", "ls", store])
        check(r.returncode == 0, f"ls while running: {r.stderr}")
        r = run([tl, "state", "rollback", store, "src", "1"])
        check(r.returncode == 1 and "refusing" in r.stderr and
              "in use" in r.stderr, f"rollback while running: {r.stderr}")
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            check(False, "graph did not stop on SIGINT")
        check(p.returncode == 0, f"endless graph exit {p.returncode}")

        r = run([tl, "state", "rollback", store, "src", "2"])
        check(r.returncode == 0 and "rolled back to version 2" in r.stdout,
              f"rollback: {r.stdout} {r.stderr}")
        r = run([tl, "state", "rollback", store, "src", "abc"])
        check(r.returncode == 2, "rollback with a bad version is a usage error")

        # bad stores
        junk = os.path.join(d, "junk")
        os.mkdir(junk)
        open(os.path.join(junk, "x"), "w").write("x")
        r = run([tl, "state", "ls", junk])
        check(r.returncode == 1 and "not a TinyLCM store" in r.stderr,
              f"junk store: {r.stderr}")
        r = run([tl, "state", "check", os.path.join(d, "nothing")])
        check(r.returncode == 1 and "no store at" in r.stderr,
              f"missing store: {r.stderr}")
        afile = os.path.join(d, "afile")
        open(afile, "w").write("x")
        bad = os.path.join(d, "bad.yaml")
        with open(bad, "w") as f:
            f.write(f"""graph: bad
settings: {{ store: {afile} }}
nodes:
  src: {{ type: gen, params: {{ count: 10 }} }}
  sink: {{ type: sink }}
edges:
  - {{ from: src.out, to: sink.in }}
""")
        r = run([tl, "run", bad])
        check(r.returncode == 1 and "is not a directory" in r.stderr,
              f"run with a file as store: {r.stderr}")

        # settings.fresh_store: every run starts from an empty store, and
        # only a TinyLCM store is ever destroyed
        fresh = os.path.join(d, "fresh.yaml")
        fstore = os.path.join(d, "fstore")
        with open(fresh, "w") as f:
            f.write(f"""graph: fresh
settings: {{ store: {fstore}, fresh_store: true }}
nodes:
  src: {{ type: gen, params: {{ count: 100 }} }}
  sink: {{ type: sink, params: {{ report: {report} }} }}
edges:
  - {{ from: src.out, to: sink.in }}
""")
        for i in range(2):
            r = run([tl, "run", fresh])
            check(r.returncode == 0, f"fresh run {i}: {r.stderr}")
            check("restored state" not in r.stderr,
                  f"fresh run {i} restores nothing: {r.stderr}")
            rep = json.load(open(report))
            check(rep["count"] == 100 and rep["last_seq"] == 100,
                  f"fresh run {i} starts the sequence over: {rep}")
        r = run([tl, "state", "ls", fstore])
        check(r.returncode == 0 and r.stdout.count("shutdown") == 2,
              f"fresh store holds one run's snapshots: {r.stdout}")
        with open(fresh.replace(".yaml", "-junk.yaml"), "w") as f:
            f.write(open(fresh).read().replace(fstore, junk))
        r = run([tl, "run", fresh.replace(".yaml", "-junk.yaml")])
        check(r.returncode == 1 and "not a TinyLCM store" in r.stderr and
              os.path.exists(os.path.join(junk, "x")),
              f"fresh_store never destroys a foreign directory: {r.stderr}")
        with open(fresh.replace(".yaml", "-bad.yaml"), "w") as f:
            f.write(open(fresh).read().replace("fresh_store: true",
                                               "fresh_store: maybe"))
        r = run([tl, "check", fresh.replace(".yaml", "-bad.yaml")])
        check(r.returncode == 1 and
              "settings.fresh_store: 'maybe' is not true or false"
              in r.stderr + r.stdout, f"bad fresh_store: {r.stderr}")
        killed_while_starting(tl, d)
    print(f"{checks - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
