#!/usr/bin/python3
"""The device demo with store and forward (issue 7's "done when"): the
learning loop of graphs/demo.yaml packages its drift events and metrics
and uploads them to a local core. tools/demo-sync runs
graphs/demo-sync.yaml small and seeded against tests/server's
tlcm-test-server; then every package the server stored must be a
drift_event or metrics package of this device, stored exactly once by
id, every package request must have ended stored, the packager's
sequence numbers must run 1..N without a gap (so no package it made is
missing), and the device's outbox must be empty, with nothing dead or
evicted. Time is never asserted.

First, without the dataset too: graphs/demo-sync.yaml is graphs/demo.yaml
plus the uploader and its edges, nothing else (so the two cannot drift
apart).

usage: demo_sync_test.py TINYLCM TLCM_TEST_SERVER REPO_ROOT
Exit 77 (skip) without the dataset, unless CI=true.
"""
import json
import os
import subprocess
import sys
import tempfile

import yaml

DATASET = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"

fails = []


def check(cond, what):
    print("%-4s %s" % ("ok" if cond else "FAIL", what))
    if not cond:
        fails.append(what)


def same_graph(root):
    """demo-sync.yaml = demo.yaml + node `up` + edges into and out of it."""
    demo = yaml.safe_load(open(os.path.join(root, "graphs", "demo.yaml")))
    sync = yaml.safe_load(open(os.path.join(root, "graphs",
                                            "demo-sync.yaml")))
    ds, ss = dict(demo["settings"]), dict(sync["settings"])
    ds.pop("store"), ss.pop("store")
    check(ds == ss, "demo-sync.yaml: the settings of demo.yaml")
    nodes = dict(sync["nodes"])
    up = nodes.pop("up", {})
    check(nodes == demo["nodes"], "demo-sync.yaml: the nodes of demo.yaml")
    check(up.get("type") == "uploader" and
          up.get("params", {}).get("url") == "${CORE_URL}",
          "demo-sync.yaml: an uploader to ${CORE_URL}")
    edges = [e for e in sync["edges"] if not e["to"].startswith("up.") and
             not e["from"].startswith("up.")]
    check(edges == demo["edges"], "demo-sync.yaml: the edges of demo.yaml")
    check({"from": "pack.queued", "to": "up.queued"} in sync["edges"],
          "demo-sync.yaml: the packager's queued events to the uploader")


def main():
    tinylcm, server, root = sys.argv[1], sys.argv[2], sys.argv[3]
    same_graph(root)
    if not os.path.exists(DATASET):
        print("skip: %s missing (dataset-fashion-mnist)" % DATASET)
        if fails:
            return 1
        return 1 if os.environ.get("CI") == "true" else 77
    with tempfile.TemporaryDirectory() as tmp:
        summary = os.path.join(tmp, "summary.json")
        env = dict(os.environ, STORE=os.path.join(tmp, "store"),
                   PHASE_A="2000", PHASE_B="2000", PHASE_C="500",
                   SEED="1", METRICS_INTERVAL="100ms",
                   DEVICE_ID="demo-sync-test")
        env.pop("REPORT", None)
        p = subprocess.run([os.path.join(root, "tools", "demo-sync"),
                            "--tinylcm", tinylcm, "--server", server,
                            "--summary", summary,
                            "--work", os.path.join(tmp, "work")],
                           cwd=root, env=env, capture_output=True,
                           text=True, timeout=1200)
        print(p.stdout[-3000:])
        if p.returncode != 0:
            print(p.stderr[-4000:])
            print("FAIL: tools/demo-sync exited %d" % p.returncode)
            return 1
        s = json.load(open(summary))
    stored, pkgs = s["stored_ids"], s["packages"]
    check(s["registrations"] == 1, "registered once: %d"
          % s["registrations"])
    check(s["rejects"] == 0, "nothing refused: %d" % s["rejects"])
    check(len(stored) > 0 and len(set(stored)) == len(stored),
          "%d packages stored, each id once" % len(stored))
    check(set(s["attempted_ids"]) == set(stored),
          "every id sent was stored (%d sent, %d stored)"
          % (len(s["attempted_ids"]), len(stored)))
    check(len(pkgs) == len(stored), "every stored body is a package")
    check(all(p["device_id"] == "demo-sync-test" for p in pkgs),
          "all of this device")
    check(s["seq_complete"], "the packager's packages 1..%d all arrived"
          % len(pkgs))
    kinds = {}
    for p in pkgs:
        kinds.setdefault(p["kind"], []).append(p["id"])
    check(set(kinds) == {"drift_event", "metrics"},
          "kinds: %s" % sorted(kinds))
    for k, ident in (("drift_event", "DRFT"), ("metrics", "TMET")):
        ids = kinds.get(k, [])
        check(len(ids) >= 1 and all(stored.count(i) == 1 for i in ids),
              "%d %s packages, each stored exactly once by id"
              % (len(ids), k))
        n = sum((p["items"] or {}).get(ident, 0) for p in pkgs
                if p["kind"] == k)
        check(n >= 1, "%s items (%s) in them: %d" % (k, ident, n))
    ob = s["outbox"]
    check(ob.get("packages") == 0 and ob.get("dead") == 0 and
          ob.get("evicted") == 0, "the device's outbox: empty, nothing "
          "dead or evicted: %s" % ob)
    if fails:
        print("FAIL: %d checks" % len(fails))
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
