#!/usr/bin/python3
"""test_tlm_py.py — tools/tlm.py against independent oracles.

1. Files: a model using every op type and attribute is written with
   write_tlm, decoded by flatc (--json, the schema's own reader) and read
   back with read_tlm; both must give exactly what was written. The same
   for .tspc. Bad files must raise FormatError naming the problem.
2. TorchModel: every op on random inputs and weights equals a plain numpy
   implementation written directly from schemas/model.fbs in NHWC
   (relative tolerance 1e-5), at batch 1 and batch 3.
3. tools/make-mobilenet-v2 writes MobileNetV2's op counts, parameter count
   (3 487 816) and outputs, and the file runs in TorchModel.
Usage: test_tlm_py.py [FLATC]   (exit 77: torch missing)
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import tlm  # noqa: E402

failures = 0


def fail(msg):
    global failures
    failures += 1
    print(f"FAIL: {msg}", file=sys.stderr)


# ---- numpy reference, NHWC, straight from the schema comments -------------

def ref_act(y, act):
    if act == "Relu":
        return np.maximum(y, 0)
    if act == "Relu6":
        return np.clip(y, 0, 6)
    return y


def ref_conv(x, w, b, op, depthwise):
    n, h, wd, c = x.shape
    x = np.pad(x, ((0, 0), (op["pad_top"], op["pad_bottom"]),
                   (op["pad_left"], op["pad_right"]), (0, 0)))
    kh, kw = w.shape[1], w.shape[2]
    sh, sw, dh, dw = (op["stride_h"], op["stride_w"], op["dilation_h"],
                      op["dilation_w"])
    oh = (x.shape[1] - (kh - 1) * dh - 1) // sh + 1
    ow = (x.shape[2] - (kw - 1) * dw - 1) // sw + 1
    oc = w.shape[3] if depthwise else w.shape[0]
    y = np.zeros((n, oh, ow, oc), np.float64)
    for i in range(oh):
        for j in range(ow):
            for u in range(kh):
                for v in range(kw):
                    px = x[:, i * sh + u * dh, j * sw + v * dw, :]
                    if depthwise:
                        m = oc // c
                        y[:, i, j, :] += np.repeat(px, m, axis=1) * w[0, u, v]
                    else:
                        y[:, i, j, :] += px @ w[:, u, v, :].T
    if b is not None:
        y += b
    return y


def ref_pool(x, op, kind):
    n, h, w, c = x.shape
    kh, kw, sh, sw = op["kernel_h"], op["kernel_w"], op["stride_h"], \
        op["stride_w"]
    pt, pb, pl, pr = op["pad_top"], op["pad_bottom"], op["pad_left"], \
        op["pad_right"]
    oh = (h + pt + pb - kh) // sh + 1
    ow = (w + pl + pr - kw) // sw + 1
    y = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * sh - pt, j * sw - pl
            win = x[:, max(r0, 0):min(r0 + kh, h), max(c0, 0):min(c0 + kw, w)]
            win = win.reshape(n, -1, c)
            if kind == "max":
                y[:, i, j] = win.max(1)
            else:  # padding does not count
                y[:, i, j] = win.mean(1)
    return y


def ref_run(model, x):
    t = model["tensors"]
    vals = {model["inputs"][0]: x.astype(np.float64)}
    n = x.shape[0]

    def get(i):
        return vals[i] if i in vals else t[i]["data"].astype(np.float64)

    for op in model["ops"]:
        op = dict(tlm.OP_DEFAULTS, **op)
        ins, ty = op["inputs"], op["type"]
        a = get(ins[0])
        if ty in ("Conv2D", "DepthwiseConv2D"):
            b = get(ins[2]) if len(ins) > 2 and ins[2] >= 0 else None
            y = ref_conv(a, get(ins[1]), b, op, ty == "DepthwiseConv2D")
        elif ty == "FullyConnected":
            b = get(ins[2]) if len(ins) > 2 and ins[2] >= 0 else 0
            y = a.reshape(n, -1) @ get(ins[1]).T + b
        elif ty == "AveragePool2D":
            y = ref_pool(a, op, "avg")
        elif ty == "MaxPool2D":
            y = ref_pool(a, op, "max")
        elif ty == "GlobalAveragePool":
            y = a.mean((1, 2))
        elif ty in ("Add", "Multiply"):
            b = get(ins[1])
            if b.ndim < a.ndim:  # per channel
                b = b.reshape((b.shape[0] if b.ndim == 2 else 1,) +
                              (1,) * (a.ndim - 2) + (-1,))
            y = a + b if ty == "Add" else a * b
        elif ty == "Relu":
            y = np.maximum(a, 0)
        elif ty == "Relu6":
            y = np.clip(a, 0, 6)
        elif ty == "Clamp":
            y = np.clip(a, op["clamp_min"], op["clamp_max"])
        elif ty == "HardSwish":
            y = a * np.clip(a + 3, 0, 6) / 6
        elif ty == "Sigmoid":
            y = 1 / (1 + np.exp(-a))
        elif ty == "Softmax":
            e = np.exp(a - a.max(-1, keepdims=True))
            y = e / e.sum(-1, keepdims=True)
        elif ty == "Reshape":
            y = a.reshape([n] + t[op["outputs"][0]]["shape"][1:])
        elif ty == "Pad":
            y = np.pad(a, ((0, 0), (op["pad_top"], op["pad_bottom"]),
                           (op["pad_left"], op["pad_right"]), (0, 0)),
                       constant_values=op["pad_value"])
        else:
            raise AssertionError(ty)
        shape = t[op["outputs"][0]]["shape"]
        y = y.reshape([n] + shape[1:])
        vals[op["outputs"][0]] = ref_act(y, op.get("activation", "None"))
    return {t[i]["name"]: vals[i] for i in model["outputs"]}


# ---- the models ------------------------------------------------------------

def every_op_model(rng):
    """One graph using every OpType, asymmetric padding, dilation,
    depth multiplier, fused activations, per-channel broadcast."""
    g = tlm.GraphBuilder("every-op", "tlm.py test")
    r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    x = g.input("input", [1, 9, 8, 3])
    y = g.op("Pad", [x], "pad", [1, 10, 10, 3], pad_top=1, pad_bottom=0,
             pad_left=0, pad_right=2, pad_value=0.5)
    y = g.op("Conv2D", [y, g.const("c1.w", r(6, 3, 3, 3)),
                        g.const("c1.b", r(6))], "conv1", [1, 5, 5, 6],
             stride_h=2, stride_w=2, pad_top=0, pad_bottom=1, pad_left=1,
             pad_right=0, activation="Relu6")
    y = g.op("DepthwiseConv2D", [y, g.const("dw.w", r(1, 3, 3, 12)),
                                 g.const("dw.b", r(12))], "dw", [1, 5, 5, 12],
             pad_top=2, pad_bottom=2, pad_left=2, pad_right=2, dilation_h=2,
             dilation_w=2, depth_multiplier=2, activation="Relu")
    y = g.op("Conv2D", [y, g.const("c2.w", r(8, 1, 1, 12)), -1], "conv2",
             [1, 5, 5, 8])
    y = g.op("HardSwish", [y], "hswish", [1, 5, 5, 8])
    z = g.op("AveragePool2D", [y], "avg", [1, 3, 3, 8], kernel_h=3,
             kernel_w=3, stride_h=2, stride_w=2, pad_top=1, pad_bottom=1,
             pad_left=1, pad_right=1)
    m = g.op("MaxPool2D", [y], "max", [1, 3, 3, 8], kernel_h=2, kernel_w=3,
             stride_h=2, stride_w=2, pad_top=0, pad_bottom=1, pad_left=1,
             pad_right=1)
    s = g.op("Add", [z, m], "add", [1, 3, 3, 8])
    s = g.op("Multiply", [s, g.const("scale", r(8))], "mul", [1, 3, 3, 8])
    s = g.op("Add", [s, g.const("shift", r(1, 1, 1, 8))], "add2",
             [1, 3, 3, 8], activation="Relu")
    gate = g.op("GlobalAveragePool", [s], "gap", [1, 8])
    gate = g.op("Sigmoid", [gate], "gate", [1, 8])
    s = g.op("Multiply", [s, gate], "se", [1, 3, 3, 8])
    s = g.op("Clamp", [s], "clamp", [1, 3, 3, 8], clamp_min=-0.5,
             clamp_max=1.5)
    s = g.op("Relu", [s], "relu", [1, 3, 3, 8])
    s = g.op("Relu6", [s], "relu6", [1, 3, 3, 8])
    gap4 = g.op("GlobalAveragePool", [s], "gap4", [1, 1, 1, 8])
    f = g.op("Reshape", [s], "flat", [1, 72])
    e = g.op("FullyConnected", [f, g.const("fc.w", r(16, 72)),
                                g.const("fc.b", r(16))], "embedding", [1, 16])
    e2 = g.op("FullyConnected", [s, g.const("fc4.w", r(5, 72)), -1],
              "fc4", [1, 5])  # a 4-D input, flattened H, W, C
    p4 = g.op("Softmax", [s], "probs4", [1, 3, 3, 8])  # over channels
    p = g.op("Softmax", [e], "probs", [1, 16])
    for o in (e, p, e2, gap4, p4):
        g.output(o)
    return g.model(input_scale=0.5, input_mean=[0.1, 0.2, 0.3],
                   input_std=[0.9, 1.1, 1.3])


def check_same_model(a, b, what):
    for key in ("name", "description", "inputs", "outputs"):
        if a[key] != b[key]:
            fail(f"{what}: {key} {a[key]!r} != {b[key]!r}")
    for key in ("input_scale",):
        if np.float32(a[key]) != np.float32(b[key]):
            fail(f"{what}: {key}")
    for key in ("input_mean", "input_std"):
        if not np.array_equal(np.float32(a[key]), np.float32(b[key])):
            fail(f"{what}: {key}")
    if len(a["tensors"]) != len(b["tensors"]):
        fail(f"{what}: tensor count")
    for ta, tb in zip(a["tensors"], b["tensors"]):
        if ta["name"] != tb["name"] or list(ta["shape"]) != list(tb["shape"]):
            fail(f"{what}: tensor {ta['name']}")
        if (ta["data"] is None) != (tb["data"] is None) or (
                ta["data"] is not None and not np.array_equal(
                    np.float32(ta["data"]), np.float32(tb["data"]))):
            fail(f"{what}: data of {ta['name']}")
    for i, (oa, ob) in enumerate(zip(a["ops"], b["ops"])):
        full = dict(tlm.OP_DEFAULTS, **oa)
        for k, v in full.items():
            if isinstance(v, float):
                same = np.float32(v) == np.float32(ob[k])
            else:
                same = v == ob[k]
            if not same:
                fail(f"{what}: op {i} {k}: {v!r} != {ob[k]!r}")


def flatc_json(flatc, schema, path, tmp):
    subprocess.run([flatc, "--json", "--strict-json", "--raw-binary",
                    "--defaults-json", "-o", tmp, schema, "--", path],
                   check=True, capture_output=True)
    with open(os.path.join(tmp, os.path.basename(path).rsplit(".", 1)[0] +
                           ".json")) as f:
        return json.load(f)


def test_files(flatc, tmp, rng):
    model = every_op_model(rng)
    path = os.path.join(tmp, "every.tlm")
    tlm.write_tlm(path, model)
    back = tlm.read_tlm(path)
    check_same_model(model, back, "read_tlm(write_tlm(m))")

    if flatc:
        j = flatc_json(flatc, os.path.join(ROOT, "schemas", "model.fbs"),
                       path, tmp)
        fake = {"name": j["name"], "description": j["description"],
                "inputs": j["inputs"], "outputs": j["outputs"],
                "input_scale": j["input_scale"],
                "input_mean": j.get("input_mean"),
                "input_std": j.get("input_std"),
                "tensors": [{"name": t["name"], "shape": t["shape"],
                             "data": None if "data" not in t else
                             np.float32(t["data"]).reshape(t["shape"])}
                            for t in j["tensors"]],
                "ops": [dict(o) for o in j["ops"]]}
        for o in fake["ops"]:
            for k, v in tlm.OP_DEFAULTS.items():
                o.setdefault(k, v)
        # flatc prints floats with 6-9 digits: compare data approximately
        for ta, tb in zip(model["tensors"], fake["tensors"]):
            if ta["data"] is not None and tb["data"] is not None and \
                    np.allclose(ta["data"], tb["data"], rtol=1e-5, atol=1e-6):
                tb["data"] = ta["data"]
        check_same_model(model, fake, "flatc --json of write_tlm(m)")

    p = os.path.join(tmp, "p.tspc")
    comps = rng.standard_normal((3, 5)).astype(np.float32)
    tlm.write_tspc(p, np.arange(5), np.ones(5) * 2, np.zeros(5) + 0.25,
                   comps, [0.5, 0.3, 0.1])
    q = tlm.read_tspc(p)
    if q["dim"] != 5 or q["k"] != 3 or not np.array_equal(q["components"],
                                                          comps):
        fail("read_tspc(write_tspc()) differs")
    if flatc:
        j = flatc_json(flatc, os.path.join(ROOT, "schemas", "scaler_pca.fbs"),
                       p, tmp)
        if j["dim"] != 5 or j["k"] != 3 or j["scale"] != [2.0] * 5:
            fail(f"flatc --json of write_tspc: {j}")

    # bad files: a clear FormatError, never another exception
    good = open(path, "rb").read()
    bad = {"empty": b"", "short": good[:6],
           "wrong-identifier": good[:4] + b"XXXX" + good[8:],
           "root-past-end": b"\xff\xff\x00\x00TLMD" + good[8:],
           "truncated": good[:len(good) // 2]}
    for name, data in bad.items():
        try:
            tlm.read_tlm_bytes(data, name)
            fail(f"bad file '{name}' was accepted")
        except tlm.FormatError as e:
            if name not in str(e):
                fail(f"bad file '{name}': message does not name it: {e}")
        except Exception as e:  # noqa: BLE001
            fail(f"bad file '{name}': {type(e).__name__}: {e}")


def test_torch(tmp, rng):
    import torch
    torch.manual_seed(0)
    model = every_op_model(rng)
    path = os.path.join(tmp, "every.tlm")
    tlm.write_tlm(path, model)
    tm = tlm.TorchModel(path)
    for n in (1, 3):
        x = rng.standard_normal((n, 9, 8, 3)).astype(np.float32)
        got = tm.run_numpy(x)
        want = ref_run(model, x)
        for name, w in want.items():
            g = got[name]
            if g.shape != w.shape:
                fail(f"batch {n}: {name}: shape {g.shape} != {w.shape}")
                continue
            err = np.abs(g - w).max() / max(1.0, np.abs(w).max())
            print(f"batch {n}: {name}: max relative error {err:.2e}")
            if not err <= 1e-5:
                fail(f"batch {n}: {name}: TorchModel differs from the "
                     f"numpy reference by {err:.3g}")
    # A declared shape that the op does not produce is an error naming it.
    model["tensors"][-1]["shape"] = [1, 17]
    try:
        tlm.TorchModel(model).run_numpy(np.zeros((1, 9, 8, 3), np.float32))
        fail("a wrong output shape was accepted")
    except tlm.FormatError as e:
        if "probs" not in str(e):
            fail(f"shape error does not name the tensor: {e}")


def test_mobilenet(tmp):
    """tools/make-mobilenet-v2 writes the MobileNetV2 1.0 224 shape."""
    path = os.path.join(tmp, "mnv2.tlm")
    subprocess.run([sys.executable, os.path.join(ROOT, "tools",
                                                 "make-mobilenet-v2"), path],
                   check=True, capture_output=True)
    m = tlm.read_tlm(path)
    count = {}
    for op in m["ops"]:
        count[op["type"]] = count.get(op["type"], 0) + 1
    params = sum(t["data"].size for t in m["tensors"]
                 if t["data"] is not None)
    want = {"Conv2D": 35, "DepthwiseConv2D": 17, "Add": 10,
            "GlobalAveragePool": 1, "FullyConnected": 1}
    if count != want or params != 3487816:
        fail(f"make-mobilenet-v2: ops {count}, {params} parameters; "
             f"expected {want}, 3487816")
    if [m["tensors"][i]["shape"] for i in m["outputs"]] != [[1, 1280],
                                                             [1, 1000]]:
        fail("make-mobilenet-v2: outputs are not [1,1280], [1,1000]")
    return path


def main():
    flatc = sys.argv[1] if len(sys.argv) > 1 else None
    rng = np.random.default_rng(5)
    with tempfile.TemporaryDirectory() as tmp:
        test_files(flatc, tmp, rng)
        try:
            import torch  # noqa: F401
        except ImportError:
            print("SKIP: python3-torch is not installed; the file tests "
                  "passed" if not failures else "", file=sys.stderr)
            return 1 if failures else 77
        test_torch(tmp, rng)
        mn = test_mobilenet(tmp)
        out = tlm.TorchModel(mn).run_numpy(
            rng.uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32))
        if out["embedding"].shape != (1, 1280) or \
                not np.all(np.isfinite(out["logits"])):
            fail("MobileNetV2 in TorchModel: bad output")
    print("ok" if not failures else f"{failures} failures", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
