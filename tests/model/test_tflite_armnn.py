#!/usr/bin/python3
"""test_tflite_armnn.py — the .tflite importer against ArmNN's TfLite parser.

The oracle is an independent TFLite implementation: Debian's ArmNN 20.08
(python3-pyarmnn, CpuRef backend, plain reference kernels). For every
good case of tests/unit/test_tflite.c (written by our own .tflite writer,
`test_tflite --write-cases DIR`, with two random float32 inputs each):

- ArmNN parses the file, optimises it for CpuRef and runs both inputs;
- `tinylcm model run FILE.tflite --input FILE.f32` imports the same file
  (nodes/features/tflite.c), runs it on XNNPACK and prints JSON lines;
- every output (matched by its TFLite tensor name) must agree within
  |ours - armnn| <= 1e-5 + 1e-4 * |armnn|.

Cases flagged with an ArmNN refusal use a form ArmNN 20.08 has no parser
for (RELU_N1_TO_1, PADV2, -1 optional inputs, negative MEAN axes, a conv
filter computed by DEQUANTIZE): ArmNN must refuse them with that message
(so a newer ArmNN that accepts them makes us look again), and our importer
must still run them. Every other file must be accepted by ArmNN.

Usage: test_tflite_armnn.py TEST_TFLITE TINYLCM
(exit 77 without pyarmnn; with CI=true that is a failure)
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

RTOL = 1e-4
ATOL = 1e-5

failures = 0


def fail(msg):
    global failures
    failures += 1
    print(f"FAIL: {msg}", file=sys.stderr)


def armnn_run(ann, runtime, path, frames):
    """Outputs of the model at path for each frame: {name: [array, ...]}."""
    parser = ann.ITfLiteParser()
    network = parser.CreateNetworkFromBinaryFile(path)
    in_names = parser.GetSubgraphInputTensorNames(0)
    out_names = parser.GetSubgraphOutputTensorNames(0)
    opt, _ = ann.Optimize(network, [ann.BackendId("CpuRef")],
                          runtime.GetDeviceSpec(), ann.OptimizerOptions())
    net_id, _ = runtime.LoadNetwork(opt)
    try:
        in_info = parser.GetNetworkInputBindingInfo(0, in_names[0])
        out_info = [parser.GetNetworkOutputBindingInfo(0, n)
                    for n in out_names]
        results = {n: [] for n in out_names}
        for frame in frames:
            inputs = ann.make_input_tensors([in_info], [frame])
            outputs = ann.make_output_tensors(out_info)
            runtime.EnqueueWorkload(net_id, inputs, outputs)
            arrays = ann.workload_tensors_to_ndarray(outputs)
            for name, a in zip(out_names, arrays):
                results[name].append(np.array(a, dtype=np.float32).ravel())
        return results
    finally:
        runtime.UnloadNetwork(net_id)


def tinylcm_run(tinylcm, path, raw):
    """Our outputs: {name: [array per input]}, or None (failure logged)."""
    p = subprocess.run([tinylcm, "model", "run", path, "--input", raw],
                       capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        fail(f"{os.path.basename(path)}: tinylcm model run exit "
             f"{p.returncode}: {p.stderr.strip()}")
        return None
    results = {}
    for line in p.stdout.splitlines():
        rec = json.loads(line)
        for name, values in rec.items():
            if name != "index":
                results.setdefault(name, []).append(
                    np.array(values, dtype=np.float32))
    return results


def compare(case, ours, theirs):
    """Worst absolute error over all outputs (failures logged)."""
    worst = 0.0
    for name, frames in theirs.items():
        if name not in ours:
            fail(f"{case}: output '{name}' missing from tinylcm's "
                 f"{sorted(ours)}")
            continue
        if len(ours[name]) != len(frames):
            fail(f"{case}: '{name}': {len(ours[name])} frames, ArmNN "
                 f"{len(frames)}")
            continue
        for k, (a, b) in enumerate(zip(ours[name], frames)):
            if a.shape != b.shape:
                fail(f"{case}: '{name}' frame {k}: {a.size} values, "
                     f"ArmNN {b.size}")
                continue
            err = np.abs(a.astype(np.float64) - b.astype(np.float64))
            worst = max(worst, float(err.max(initial=0.0)))
            bad = err > ATOL + RTOL * np.abs(b)
            if bad.any():
                i = int(np.argmax(err))
                fail(f"{case}: '{name}' frame {k}: {int(bad.sum())} of "
                     f"{b.size} values differ; worst at {i}: ours "
                     f"{a[i]!r}, ArmNN {b[i]!r}")
    return worst


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[-2], file=sys.stderr)
        return 2
    test_tflite, tinylcm = sys.argv[1:]
    try:
        import pyarmnn as ann
    except ImportError as e:
        print(f"SKIP: pyarmnn not importable ({e}); install "
              f"python3-pyarmnn (tools/install-deps)", file=sys.stderr)
        # as tests/tlcm_test.h: CI installs everything, a skip is a failure
        return 1 if os.environ.get("CI") == "true" else 77
    runtime = ann.IRuntime(ann.CreationOptions())  # one per process

    with tempfile.TemporaryDirectory(prefix="tlcm-tflite-") as tmp:
        p = subprocess.run([test_tflite, "--write-cases", tmp],
                           capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            print(f"FAIL: {test_tflite} --write-cases: {p.stderr}",
                  file=sys.stderr)
            return 1
        cases = [line.split("\t") for line in p.stdout.splitlines()]
        if len(cases) < 10:
            fail(f"only {len(cases)} cases written")
        agreed = 0
        print(f"{'case':22} {'ArmNN':30} max |ours - ArmNN|")
        for name, refusal in cases:
            path = os.path.join(tmp, name + ".tflite")
            raw = os.path.join(tmp, name + ".f32")
            ours = tinylcm_run(tinylcm, path, raw)
            x = np.fromfile(raw, dtype=np.float32)
            try:
                parser = ann.ITfLiteParser()
                net = parser.CreateNetworkFromBinaryFile(path)
                size = parser.GetNetworkInputBindingInfo(
                    0, parser.GetSubgraphInputTensorNames(0)[0])[1] \
                    .GetNumElements()
                del net
                frames = [x[i:i + size] for i in range(0, x.size, size)]
                theirs = armnn_run(ann, runtime, path, frames)
            except RuntimeError as e:
                msg = str(e).splitlines()[0]
                if not refusal:
                    fail(f"{name}: ArmNN refused a file our writer made: "
                         f"{msg}")
                elif refusal not in msg:
                    fail(f"{name}: ArmNN refused with '{msg}', expected "
                         f"'{refusal}'")
                print(f"{name:22} {'refuses (' + refusal[:20] + ')':30} -")
                continue
            if refusal:
                fail(f"{name}: ArmNN now accepts it (expected refusal "
                     f"'{refusal}'): compare it and drop the flag")
            if ours is None:
                continue
            worst = compare(name, ours, theirs)
            agreed += 1
            print(f"{name:22} {'runs':30} {worst:.3g}")
        print(f"{agreed} of {len(cases)} cases compared with ArmNN; "
              f"tolerance {ATOL} + {RTOL} * |ArmNN|")
    if failures:
        print(f"{failures} failures", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
