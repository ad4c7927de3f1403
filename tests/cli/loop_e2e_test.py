#!/usr/bin/python3
"""The whole loop across two processes (issue 8): device drifts -> its
drift events and quarantined samples reach the core over HTTP -> a person
labels them at the core -> the labels come back to the device at its next
sync -> the device's accuracy on the new classes rises.

The core is `tinylcm run graphs/core.yaml` on a free loopback port. The
device is graphs/demo-sync.yaml, small and seeded, with the scenario's own
ground truth off (GROUND_TRUTH=false): the only labels it can get are the
core's, through the uploader's `labels` output into the adapter (and,
for counting, into the scenario's `feedback` input).

Two device runs on the same frames, each with its own store and device id:
  control    nobody labels; the scenario goes straight on to phase C.
  labelled   WAIT_LABELS=0.9: before phase C the scenario waits until 90 %
             of its quarantined frames got a label back from the core.
             Meanwhile a "person" (a thread of this test) lists the
             device's unlabelled samples on the core and labels each with
             the class the device's evaluation recorded for it
             (`device_truth`, kept by the core for exactly this test) via
             POST /samples/{frame_id}/label.

Checked: the person labelled samples over HTTP; the device received them
(scenario's labels_received) and every one was right; what the device
acknowledged plus what is still queued on the core (labels given after its
last sync) is exactly what the person gave; and the labelled run's phase C
recall of the classes that appeared in phase B (Bag and Ankle boot,
classes 8 and 9) beats the control run's, as does its accuracy on all ten
classes. Time is never asserted; timeouts only turn hangs into failures.

usage: loop_e2e_test.py TINYLCM REPO_ROOT
Exit 77 (skip) without the dataset, unless CI=true.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "core"))
from api_test import Core  # noqa: E402

DATASET = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
ADMIN = "admin-token-for-the-loop"
NEW = (8, 9)  # the classes phase B brings (docs/evaluation.md)

fails = []


def check(cond, what):
    print("%-4s %s" % ("ok" if cond else "FAIL", what), flush=True)
    if not cond:
        fails.append(what)
    return cond


def prometheus(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port,
                                timeout=30) as r:
        text = r.read().decode()
    return {k: float(v) for k, v in (line.split() for line in
                                      text.splitlines()
                                      if line and not line.startswith("#"))}


def call(port, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    rq = urllib.request.Request(
        "http://127.0.0.1:%d/api/v1%s" % (port, path), data=data,
        method=method, headers={"Authorization": "Bearer " + ADMIN,
                                "Content-Type": "application/json"})
    with urllib.request.urlopen(rq, timeout=30) as r:
        return r.status, json.loads(r.read() or b"{}")


class Person(threading.Thread):
    """Labels every unlabelled sample of `device` on the core with the
    class the device's evaluation recorded, until stopped."""

    def __init__(self, port, device):
        super().__init__(daemon=True)
        self.port, self.device = port, device
        self.stop = threading.Event()
        self.labelled, self.errors, self.without_truth = 0, [], 0

    def run(self):
        seen = set()
        while not self.stop.is_set():
            try:
                _, j = call(self.port, "GET", "/samples?labelled=false"
                            "&limit=1000&device=" + self.device)
                for s in j["samples"]:
                    f = s["frame_id"]
                    if f in seen:
                        continue
                    seen.add(f)
                    if "device_truth" not in s:
                        self.without_truth += 1
                        continue
                    st, _ = call(self.port, "POST", "/samples/%d/label" % f,
                                 {"label": s["device_truth"],
                                  "device_id": self.device})
                    self.labelled += st == 200
            except (OSError, ValueError, KeyError) as e:
                self.errors.append(repr(e))
            self.stop.wait(0.2)


def run_device(tinylcm, root, work, port, name, wait_labels):
    report = os.path.join(work, name + ".jsonl")
    env = dict(os.environ, CORE_URL="http://127.0.0.1:%d/api/v1" % port,
               STORE=os.path.join(work, name + ".store"),
               PHASE_A="2000", PHASE_B="2000", PHASE_C="500", SEED="1",
               METRICS_INTERVAL="200ms", SYNC_INTERVAL="300ms",
               DEVICE_ID=name, GROUND_TRUTH="false",
               WAIT_LABELS=str(wait_labels), REPORT=report)
    log = os.path.join(work, name + ".log")
    with open(log, "w") as out:
        p = subprocess.run([tinylcm, "run", "--headless",
                            os.path.join(root, "graphs", "demo-sync.yaml")],
                           cwd=root, env=env, stdout=out,
                           stderr=subprocess.STDOUT, timeout=900)
    if not check(p.returncode == 0, "device %s exits 0 (got %d)"
                 % (name, p.returncode)):
        print(open(log).read()[-3000:])
        return None
    return {j["case"]: j for j in map(json.loads, open(report))}


def main():
    tinylcm, root = sys.argv[1], sys.argv[2]
    if not os.path.exists(DATASET):
        print("skip: %s missing (dataset-fashion-mnist)" % DATASET)
        return 1 if os.environ.get("CI") == "true" else 77
    work = tempfile.mkdtemp(prefix="tlcm-loop-e2e-")
    core = Core(tinylcm, root, work, "core", admin=ADMIN).start()
    try:
        ctl = run_device(tinylcm, root, work, core.port, "loop-control", 0)
        person = Person(core.port, "loop-labelled")
        person.start()
        lab = run_device(tinylcm, root, work, core.port, "loop-labelled",
                         0.9)
        person.stop.set()
        person.join(timeout=60)
        if ctl is None or lab is None:
            return 1
        check(not person.errors, "the person's requests all worked: %s"
              % person.errors[:3])
        check(person.without_truth == 0, "every sample on the core carries "
              "the device's truth (%d without)" % person.without_truth)
        check(person.labelled > 0, "the person labelled %d samples over "
              "HTTP" % person.labelled)
        c_ctl = ctl["phase_c_accuracy_all"]
        c_lab = lab["phase_c_accuracy_all"]
        check(c_ctl["labels_received"] == 0, "control: no labels came back")
        got, right = c_lab["labels_received"], c_lab["labels_received_right"]
        check(got > 0 and got <= person.labelled,
              "labelled: %d labels came back from the core (%d given)"
              % (got, person.labelled))
        check(right == got, "labelled: each one right (%d of %d)"
              % (right, got))
        # labels given after the device's last sync stay queued for its
        # next run; what the device acknowledged it holds in its store
        # (and the scenario may have finished before the last ones came)
        _, fb = call(core.port, "GET", "/devices/loop-labelled/feedback")
        left = len(fb.get("labels") or [])
        acked = prometheus(core.port).get("tinylcm_core_feedback_acked_total")
        check(acked is not None and acked + left == person.labelled,
              "nothing lost or doubled at the core: %s acknowledged by the "
              "device + %d still queued = %d given"
              % (acked, left, person.labelled))
        check(acked is not None and got <= acked, "the scenario counted "
              "%d of the %s the device acknowledged" % (got, acked))
        _, d = call(core.port, "GET", "/devices/loop-labelled")
        check(d.get("feedback_pending") == left, "the core's count of "
              "pending feedback agrees: %s" % d.get("feedback_pending"))
        for k in NEW:
            a = ctl["phase_c_recall_class_%d" % k]["value"]
            b = lab["phase_c_recall_class_%d" % k]["value"]
            check(b > a, "phase C recall of class %d: %.3f with the core's "
                  "labels vs %.3f without" % (k, b, a))
        check(c_lab["value"] > c_ctl["value"], "phase C accuracy (all ten "
              "classes): %.4f with labels vs %.4f without"
              % (c_lab["value"], c_ctl["value"]))
    finally:
        rc = core.stop()
        check(rc == 0, "the core stops cleanly (exit %s)" % rc)
        if fails:
            print("work dir kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if fails:
        print("FAIL: %d checks" % len(fails))
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
