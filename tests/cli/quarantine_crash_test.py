#!/usr/bin/python3
"""quarantine_crash_test.py — the quarantine survives kill -9.

graphs/demo.yaml runs into phase B (new classes: the quarantine fills);
once it holds samples the process is killed with SIGKILL, at a different
moment each round. Every sample record in the store after the kill must
come back: the restarted graph (FRESH_STORE=false) logs that it restored
exactly that many samples, and the store opens cleanly. Rounds: 3, or
TLCM_LONG_ROUNDS.

usage: quarantine_crash_test.py TINYLCM REPO_ROOT
Exit 77 (skip) without the dataset, unless CI=true.
"""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

DATASET = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
failures = checks = 0


def check(cond, what):
    global failures, checks
    checks += 1
    print("%-4s %s" % ("ok" if cond else "FAIL", what))
    if not cond:
        failures += 1


def sample_records(tinylcm, store):
    """Keys of the quarantine's sample records (s/...), or None."""
    p = subprocess.run([tinylcm, "state", "records", store, "q"],
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        return None
    return [l.split()[0] for l in p.stdout.splitlines()
            if l.startswith("s/")]


def one_round(tinylcm, root, tmp, rnd):
    store = os.path.join(tmp, "store%d" % rnd)
    env = dict(os.environ, STORE=store, WARM_UP="100", PHASE_A="1000",
               PHASE_B="20000", PHASE_C="10", SEED=str(rnd + 1),
               REPORT="")
    p = subprocess.Popen([tinylcm, "run", "graphs/demo.yaml", "--headless",
                          "--log-level", "warn"], cwd=root, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    want = 10 + 15 * rnd  # a different moment each round
    seen = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and p.poll() is None:
        seen = sample_records(tinylcm, store) or []
        if len(seen) >= want:
            break
        time.sleep(0.1)
    alive = p.poll() is None
    p.send_signal(signal.SIGKILL)
    err = p.communicate(timeout=60)[1]
    check(alive and len(seen) >= want,
          "round %d: %d samples quarantined before kill -9 (want %d)%s"
          % (rnd, len(seen), want, "" if alive else ": exited early\n"
             + err[-2000:]))
    after = sample_records(tinylcm, store)
    check(after is not None and len(after) >= 1,
          "round %d: the store opens after kill -9, %s sample records"
          % (rnd, None if after is None else len(after)))
    if not after:
        return
    env.update(FRESH_STORE="false", PHASE_A="50", PHASE_B="50")
    r = subprocess.run([tinylcm, "run", "graphs/demo.yaml", "--headless",
                        "--duration", "2"], cwd=root, env=env,
                       capture_output=True, text=True, timeout=300)
    m = re.search(r"\[q\] restored (\d+) quarantined samples \(records\)",
                  r.stderr)
    check(r.returncode == 0, "round %d: restart exits 0 (%d)%s"
          % (rnd, r.returncode, "" if r.returncode == 0
             else "\n" + r.stderr[-2000:]))
    check(m is not None and int(m.group(1)) == len(after),
          "round %d: restart restored %s of the %d samples on disk"
          % (rnd, m.group(1) if m else "none", len(after)))


def main():
    tinylcm, root = sys.argv[1], sys.argv[2]
    if not os.path.exists(DATASET):
        print("skip: %s missing (dataset-fashion-mnist)" % DATASET)
        return 1 if os.environ.get("CI") == "true" else 77
    rounds = int(os.environ.get("TLCM_LONG_ROUNDS", "3"))
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(rounds):
            one_round(tinylcm, root, tmp, rnd)
    print("%d checks, %d failed" % (checks, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
