#!/usr/bin/python3
"""knn_baseline.py — the FAISS and numpy baselines of `tinylcm-bench knn`.

Reads the data the bench wrote (raw little-endian float32: n base vectors
of dim d, then nq query vectors) and answers queries one at a time, k
nearest by Euclidean distance, as the bench does with TinyLCM's index:
  faiss   IndexFlatL2 (Debian's python3-faiss), omp_set_num_threads(1),
          index.search(q[None, :], k) per query;
  numpy   brute force, the faster of two ways a user would write it
          (picked on a first timed pass):
          "diff"  ((X - q) ** 2).sum(1), then argpartition + argsort of k;
          "norms" |x|^2 - 2 X q (one BLAS matrix-vector product) with
                  precomputed |x|^2, then the same selection.
Both run on one thread, like the index (BLAS threads limited through the
environment before numpy loads). A run answers `iters` queries, cycling
through the nq queries.

With --serve the script prints one JSON line (versions, the numpy variant,
FAISS's neighbours of the first `check` queries so the bench can compare
them with its own) and then answers commands on stdin, one per line:
"faiss" or "numpy" times one run and prints its queries/s; "quit" ends.
The bench alternates these runs with its own, so load on a shared machine
hits both sides alike. Without --serve it prints one JSON object with the
median of --runs runs of each.
"""

import argparse
import json
import os
import statistics
import sys
import time

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # before numpy loads its BLAS

import numpy as np  # noqa: E402


def one_run(fn, queries, iters):
    """Queries/s of one run of `iters` calls fn(q)."""
    nq = len(queries)
    t0 = time.perf_counter()
    for i in range(iters):
        fn(queries[i % nq])
    return iters / (time.perf_counter() - t0)


def setup(a):
    raw = np.fromfile(a.data, dtype="<f4")
    if raw.size != (a.n + a.nq) * a.d:
        sys.exit(f"knn_baseline: {a.data}: {raw.size} floats, expected "
                 f"({a.n} + {a.nq}) * {a.d}")
    x = raw[:a.n * a.d].reshape(a.n, a.d)
    qs = raw[a.n * a.d:].reshape(a.nq, a.d)
    k = a.k
    info = {"n": a.n, "d": a.d, "k": k, "numpy_version": np.__version__}

    def select(dist):
        idx = np.argpartition(dist, k - 1)[:k]
        return idx[np.argsort(dist[idx])]

    def np_diff(q):
        return select(((x - q) ** 2).sum(1))

    xx = (x * x).sum(1)

    def np_norms(q):
        return select(xx - 2.0 * (x @ q))

    variants = {"diff": np_diff, "norms": np_norms}
    for fn in variants.values():  # warm-up
        one_run(fn, qs, min(a.iters, 50))
    rates = {name: one_run(fn, qs, a.iters) for name, fn in variants.items()}
    best = max(rates, key=rates.get)
    info.update(numpy_variant=best, numpy_first_pass=rates)
    runs = {"numpy": variants[best]}

    try:
        import faiss
    except ImportError as e:
        info["faiss_error"] = f"cannot import faiss: {e}"
    else:
        faiss.omp_set_num_threads(1)
        index = faiss.IndexFlatL2(a.d)
        index.add(x)
        runs["faiss"] = lambda q: index.search(q[None, :], k)
        one_run(runs["faiss"], qs, min(a.iters, 50))  # warm-up
        info["faiss_version"] = faiss.__version__
        m = min(a.check, a.nq)
        _, ids = index.search(qs[:m], k)
        info["faiss_ids"] = ids.tolist()
    return info, runs, qs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data")
    ap.add_argument("n", type=int)
    ap.add_argument("d", type=int)
    ap.add_argument("nq", type=int)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--check", type=int, default=20)
    ap.add_argument("--serve", action="store_true")
    a = ap.parse_args()
    info, runs, qs = setup(a)
    if not a.serve:
        for name, fn in runs.items():
            info[name + "_qps"] = statistics.median(
                one_run(fn, qs, a.iters) for _ in range(a.runs))
        print(json.dumps(info))
        return
    print(json.dumps(info), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "quit":
            break
        rate = one_run(runs[cmd], qs, a.iters) if cmd in runs else -1
        print(f"{rate:.6g}", flush=True)


if __name__ == "__main__":
    main()
