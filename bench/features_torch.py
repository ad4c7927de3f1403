#!/usr/bin/python3
"""features_torch.py — the PyTorch baseline of `tinylcm-bench features`.

Runs a .tlm model in PyTorch on random inputs of the model's input shape
with torch.set_num_threads(N): after a warm-up, every run is timed on its
own, and the fastest of three ways to run the graph becomes the baseline,
so the comparison does not flatter TinyLCM:
  tlm-nhwc     tools/tlm.py's TorchModel as the contract defines it (NHWC
               in and out, one permute at each end),
  nchw         the same graph on NCHW input, no permutes (what a native
               torch.nn model with these layers computes),
  script-nchw  nchw traced with TorchScript, frozen and optimized for
               inference (no Python between ops; conv+ReLU fused).
Prints one JSON object on stdout: frames_per_s, p50_us, p99_us (per run of
--batch frames) of the baseline, which variant it is, every variant's
numbers, threads, torch version and the BLAS library torch has loaded
(a warning on stderr when that is the slow reference BLAS).
"""

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "tools"))
import tlm  # noqa: E402


def loaded_blas():
    """The BLAS/LAPACK shared objects mapped into this process."""
    torch.mm(torch.ones(64, 64), torch.ones(64, 64))  # make sure it is loaded
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            base = os.path.basename(path)
            if any(k in base for k in ("blas", "mkl_", "blis", "atlas")):
                libs.add(os.path.realpath(path))
    return sorted(libs)


def blas_name(libs):
    joined = " ".join(libs)
    for key, name in (("openblas", "openblas"), ("mkl", "mkl"),
                      ("blis", "blis"), ("atlas", "atlas")):
        if key in joined:
            sub = [os.path.basename(os.path.dirname(p)) for p in libs
                   if key in p]
            return f"{name} ({', '.join(sorted(set(sub)))})"
    if libs:
        return "reference (netlib)"
    return "none loaded"


def percentile(sorted_ns, p):
    return sorted_ns[min(len(sorted_ns) - 1, int(len(sorted_ns) * p))]


def time_runs(fn, x, frames, warmup, batch):
    with torch.inference_mode():
        for _ in range(warmup):
            fn(x)
        runs = max(1, frames // batch)
        lat = []
        t0 = time.perf_counter_ns()
        for _ in range(runs):
            s = time.perf_counter_ns()
            fn(x)
            lat.append(time.perf_counter_ns() - s)
        total = time.perf_counter_ns() - t0
    lat.sort()
    return {"frames_per_s": round(runs * batch / (total / 1e9), 1),
            "p50_us": round(percentile(lat, 0.50) / 1e3, 1),
            "p99_us": round(percentile(lat, 0.99) / 1e3, 1),
            "runs": runs}


def main():
    ap = argparse.ArgumentParser(
        description="PyTorch baseline for the features benchmark: time a "
        ".tlm model in PyTorch and print one JSON object.")
    ap.add_argument("model", metavar="MODEL", help=".tlm file")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch.set_num_threads (default: %(default)s)")
    ap.add_argument("--frames", type=int, default=1000,
                    help="frames to time per variant (default: %(default)s)")
    ap.add_argument("--batch", type=int, default=1,
                    help="frames per run (default: %(default)s)")
    ap.add_argument("--warmup", type=int, default=20,
                    help="untimed runs first (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0,
                    help="input seed (default: %(default)s)")
    args = ap.parse_args()
    if args.threads < 1 or args.frames < 1 or args.batch < 1:
        ap.error("--threads, --frames and --batch must be >= 1")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    try:
        tm = tlm.TorchModel(args.model).eval()
    except (OSError, tlm.FormatError) as e:
        print(f"features_torch: {e}", file=sys.stderr)
        return 1
    shape = list(tm.tensors[tm.input_index]["shape"])
    shape[0] = args.batch
    x = torch.from_numpy(np.random.default_rng(args.seed).standard_normal(
        shape).astype(np.float32))

    variants = {}
    variants["tlm-nhwc"] = time_runs(tm, x, args.frames, args.warmup,
                                     args.batch)
    if x.dim() == 4:
        xn = x.permute(0, 3, 1, 2).contiguous()
        variants["nchw"] = time_runs(tm.forward_nchw, xn, args.frames,
                                     args.warmup, args.batch)
        try:
            with torch.inference_mode(False), torch.no_grad(), \
                    warnings.catch_warnings():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(_Nchw(tm), xn, strict=False)
                script = torch.jit.optimize_for_inference(
                    torch.jit.freeze(traced.eval()))
                script(xn)
            variants["script-nchw"] = time_runs(script, xn, args.frames,
                                                args.warmup, args.batch)
        except Exception as e:  # noqa: BLE001 — a missing variant is fine
            print(f"features_torch: TorchScript variant skipped: {e}",
                  file=sys.stderr)
    best = max(variants, key=lambda k: variants[k]["frames_per_s"])

    libs = loaded_blas()
    blas = blas_name(libs)
    if blas.startswith("reference"):
        print("features_torch: WARNING: torch uses the reference (netlib) "
              "BLAS, about 5x slower than OpenBLAS; install libopenblas0 "
              "(tools/install-deps) or the baseline is flattering",
              file=sys.stderr)
    out = {"model": os.path.basename(args.model), "batch": args.batch,
           "threads": args.threads, **{k: variants[best][k] for k in
                                       ("frames_per_s", "p50_us", "p99_us")},
           "baseline": best, "variants": variants,
           "torch": torch.__version__, "blas": blas,
           "onednn": torch.backends.mkldnn.is_available()}
    print(json.dumps(out))
    return 0


class _Nchw(torch.nn.Module):
    """TorchModel.forward_nchw as a module (for tracing); tuple output."""

    def __init__(self, tm):
        super().__init__()
        self.tm = tm

    def forward(self, x):
        return tuple(self.tm.forward_nchw(x).values())


if __name__ == "__main__":
    sys.exit(main())
