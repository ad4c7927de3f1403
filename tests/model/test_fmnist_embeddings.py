#!/usr/bin/python3
"""test_fmnist_embeddings.py — the C pipeline equals PyTorch on the trained
Fashion-MNIST extractor.

Runs `tinylcm model run models/fmnist-cnn.tlm --idx t10k-images... --count
100` (the C IDX reader, the model's preprocessing, XNNPACK) and compares
every embedding and logit with tools/tlm.py's TorchModel on the same 100
images, preprocessed in numpy with the formula of schemas/model.fbs:
max |difference| must be <= 1e-4. Once at batch 1 with 1 thread, once at
--batch 8 --threads 2 (the batched path). Also checks that the committed
models/fmnist-scaler-pca.tspc fits the model's embedding.
Usage: test_fmnist_embeddings.py TINYLCM SOURCE_DIR
Exit 77 (skip) only when python3-torch is missing (a failure when CI=true).
"""

import gzip
import json
import os
import subprocess
import sys

import numpy as np

TOL = 1e-4
COUNT = 100
DATA = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"


def skip_or_fail(why):
    if os.environ.get("CI") == "true":
        print(f"FAIL: would skip ({why}), but CI=true requires every test "
              f"to run", file=sys.stderr)
        return 1
    print(f"SKIP: {why}", file=sys.stderr)
    return 77


def read_idx_images(path, count):
    with gzip.open(path, "rb") as f:
        data = f.read()
    n, h, w = (int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big")
               for i in range(3))
    count = min(count, n)
    return np.frombuffer(data, np.uint8, count=count * h * w,
                         offset=16).reshape(count, h, w)


def run_c(tinylcm, model, extra):
    cmd = [tinylcm, "model", "run", model, "--idx", DATA, "--count",
           str(COUNT), "--output", "embedding", "--output", "logits"] + extra
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: "
                           f"{p.stderr.strip()}")
    rows = [json.loads(line) for line in p.stdout.splitlines()
            if line.strip()]
    if [r.get("index") for r in rows] != list(range(COUNT)):
        raise RuntimeError(f"{' '.join(cmd)}: expected {COUNT} lines with "
                           f"index 0..{COUNT - 1}, got "
                           f"{[r.get('index') for r in rows][:5]}...")
    return {name: np.array([r[name] for r in rows], dtype=np.float64)
            for name in ("embedding", "logits")}


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    tinylcm, root = sys.argv[1], sys.argv[2]
    try:
        import torch  # noqa: F401
    except ImportError:
        return skip_or_fail("python3-torch is not installed; install it "
                            "(tools/install-deps) to compare the C "
                            "pipeline with PyTorch")
    sys.path.insert(0, os.path.join(root, "tools"))
    import tlm

    model_path = os.path.join(root, "models", "fmnist-cnn.tlm")
    tspc_path = os.path.join(root, "models", "fmnist-scaler-pca.tspc")
    for p in (model_path, tspc_path, DATA):
        if not os.path.exists(p):
            print(f"FAIL: {p} is missing (models/: run tools/train-fmnist; "
                  f"the dataset: tools/install-deps)", file=sys.stderr)
            return 1

    torch.set_num_threads(1)
    tm = tlm.TorchModel(model_path).eval()
    x = tlm.preprocess(tm.model, read_idx_images(DATA, COUNT))
    ref = {k: v.astype(np.float64) for k, v in tm.run_numpy(x).items()}

    failures = 0
    emb_len = ref["embedding"].shape[1]
    p = tlm.read_tspc(tspc_path)
    if p["dim"] != emb_len:
        print(f"FAIL: {tspc_path}: dim {p['dim']}, the model's embedding "
              f"has {emb_len} values", file=sys.stderr)
        failures += 1

    for extra in ([], ["--batch", "8", "--threads", "2"]):
        label = " ".join(extra) or "batch 1, 1 thread"
        try:
            got = run_c(tinylcm, model_path, extra)
        except (RuntimeError, subprocess.TimeoutExpired,
                json.JSONDecodeError, KeyError) as e:
            print(f"FAIL: {label}: {e}", file=sys.stderr)
            failures += 1
            continue
        for name in ("embedding", "logits"):
            if got[name].shape != ref[name].shape:
                print(f"FAIL: {label}: {name}: C gives shape "
                      f"{got[name].shape}, PyTorch {ref[name].shape}",
                      file=sys.stderr)
                failures += 1
                continue
            diff = np.abs(got[name] - ref[name])
            worst = np.unravel_index(diff.argmax(), diff.shape)
            print(f"{label}: {name}: max |C - PyTorch| {diff.max():.3g} "
                  f"(image {worst[0]}, value {worst[1]}; values up to "
                  f"{np.abs(ref[name]).max():.3g})")
            if not diff.max() <= TOL:
                print(f"FAIL: {label}: {name} differs by more than {TOL}",
                      file=sys.stderr)
                failures += 1
        same = (got["logits"].argmax(1) == ref["logits"].argmax(1)).mean()
        print(f"{label}: same predicted class for {same * 100:.0f} % of "
              f"the images")
    print("ok" if not failures else f"{failures} failures", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
