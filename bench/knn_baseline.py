#!/usr/bin/python3
"""knn_baseline.py — the FAISS and numpy baselines of `tinylcm-bench knn`.

Reads the data the bench wrote (raw little-endian float32: n base vectors
of dim d, then nq query vectors) and answers the queries one at a time,
k nearest by Euclidean distance, as the bench does with TinyLCM's index:
  faiss   IndexFlatL2 (Debian's python3-faiss), omp_set_num_threads(1),
          index.search(q[None, :], k) per query;
  numpy   brute force, the faster of two ways a user would write it:
          "diff"  ((X - q) ** 2).sum(1), then argpartition + argsort of k;
          "norms" |x|^2 - 2 X q (one BLAS matrix-vector product) with
                  precomputed |x|^2, then the same selection.
Both run on one thread, like the index (BLAS threads limited through the
environment before numpy loads). Each timed run answers `iters` queries (cycling through the nq queries)
after a warm-up; the median of `runs` runs is reported as queries/s, with
FAISS's neighbours of the first `check` queries so the bench can compare
them with its own. Prints one JSON object on stdout.
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


def timed(fn, queries, iters, runs):
    """Median queries/s of `runs` runs of `iters` calls fn(q)."""
    nq = len(queries)
    for i in range(min(iters, 50)):  # warm-up
        fn(queries[i % nq])
    rates = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for i in range(iters):
            fn(queries[i % nq])
        rates.append(iters / (time.perf_counter() - t0))
    return statistics.median(rates)


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
    a = ap.parse_args()

    raw = np.fromfile(a.data, dtype="<f4")
    if raw.size != (a.n + a.nq) * a.d:
        sys.exit(f"knn_baseline: {a.data}: {raw.size} floats, expected "
                 f"({a.n} + {a.nq}) * {a.d}")
    x = raw[:a.n * a.d].reshape(a.n, a.d)
    qs = raw[a.n * a.d:].reshape(a.nq, a.d)
    k = a.k
    out = {"n": a.n, "d": a.d, "k": k, "numpy_version": np.__version__}

    def select(dist):
        idx = np.argpartition(dist, k - 1)[:k]
        return idx[np.argsort(dist[idx])]

    def np_diff(q):
        return select(((x - q) ** 2).sum(1))

    xx = (x * x).sum(1)

    def np_norms(q):
        return select(xx - 2.0 * (x @ q))

    variants = {"diff": timed(np_diff, qs, a.iters, a.runs),
                "norms": timed(np_norms, qs, a.iters, a.runs)}
    best = max(variants, key=variants.get)
    out.update(numpy_qps=variants[best], numpy_variant=best,
               numpy_variants=variants)

    try:
        import faiss
    except ImportError as e:
        out["faiss_error"] = f"cannot import faiss: {e}"
    else:
        faiss.omp_set_num_threads(1)
        index = faiss.IndexFlatL2(a.d)
        index.add(x)
        out["faiss_qps"] = timed(lambda q: index.search(q[None, :], k),
                                 qs, a.iters, a.runs)
        out["faiss_version"] = faiss.__version__
        m = min(a.check, a.nq)
        _, ids = index.search(qs[:m], k)
        out["faiss_ids"] = ids.tolist()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
