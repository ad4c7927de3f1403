#!/usr/bin/python3
"""tlm.py — read and write TinyLCM model (.tlm) and scaler/PCA (.tspc) files.

The formats are the FlatBuffers schemas/model.fbs ("TLMD") and
schemas/scaler_pca.fbs ("TSPC"). This module uses the python3-flatbuffers
runtime directly (no generated code): field slots below follow the field
order of the schemas, so keep them in step when a schema grows.

A model is a plain dict (what read_tlm returns and write_tlm takes):

    {"name": str, "description": str,
     "tensors": [{"name": str, "shape": [int], "data": ndarray|None}],
     "ops": [{"type": "Conv2D", "inputs": [int], "outputs": [int],
              "stride_h": 2, "activation": "Relu6", ...}],
     "inputs": [int], "outputs": [int],
     "input_scale": float, "input_mean": [float]|None,
     "input_std": [float]|None}

Op attributes absent from an op dict take the schema defaults (OP_DEFAULTS).
GraphBuilder makes such dicts tensor by tensor. TorchModel(path) runs a .tlm
graph in PyTorch (NHWC input, a dict of NHWC outputs): the oracle for the C
runtime and the PyTorch baseline of the features benchmark.
"""

import math
import struct

import flatbuffers
import numpy as np
from flatbuffers import number_types as N
from flatbuffers.table import Table

# ---- schema constants (schemas/model.fbs, schemas/scaler_pca.fbs) --------

OP_TYPES = ["Conv2D", "DepthwiseConv2D", "FullyConnected", "AveragePool2D",
            "MaxPool2D", "GlobalAveragePool", "Add", "Multiply", "Relu",
            "Relu6", "Clamp", "HardSwish", "Sigmoid", "Softmax", "Reshape",
            "Pad"]
ACTIVATIONS = ["None", "Relu", "Relu6"]

# Op table fields in schema order: (name, kind, default); slot = position.
# "type" and "activation" are ubyte enums, handled by name.
OP_FIELDS = [
    ("type", "u8", 0), ("inputs", "ivec", None), ("outputs", "ivec", None),
    ("kernel_h", "i32", 0), ("kernel_w", "i32", 0),
    ("stride_h", "i32", 1), ("stride_w", "i32", 1),
    ("dilation_h", "i32", 1), ("dilation_w", "i32", 1),
    ("pad_top", "i32", 0), ("pad_bottom", "i32", 0),
    ("pad_left", "i32", 0), ("pad_right", "i32", 0),
    ("depth_multiplier", "i32", 1), ("activation", "u8", 0),
    ("clamp_min", "f32", 0.0), ("clamp_max", "f32", 0.0),
    ("pad_value", "f32", 0.0),
]
OP_DEFAULTS = {name: d for name, kind, d in OP_FIELDS if kind != "ivec"}
OP_DEFAULTS["type"] = OP_TYPES[0]
OP_DEFAULTS["activation"] = "None"

# Model table slots
M_NAME, M_DESC, M_TENSORS, M_OPS, M_INPUTS, M_OUTPUTS = range(6)
M_SCALE, M_MEAN, M_STD = 6, 7, 8
# Tensor table slots
T_NAME, T_SHAPE, T_DATA = range(3)
# ScalerPca table slots
S_DIM, S_K, S_MEAN, S_SCALE, S_PCA_MEAN, S_COMPONENTS, S_EVR = range(7)

TLM_IDENT = b"TLMD"
TSPC_IDENT = b"TSPC"


class FormatError(ValueError):
    """A .tlm/.tspc file or model dict that is not what the schema says."""


# ---- low-level FlatBuffers helpers ----------------------------------------

def _vt(slot):
    return 4 + 2 * slot


def _root(buf, ident, origin):
    if len(buf) < 8:
        raise FormatError(f"{origin}: {len(buf)} bytes is too short for a "
                          f"FlatBuffer")
    if bytes(buf[4:8]) != ident:
        raise FormatError(f"{origin}: file identifier {bytes(buf[4:8])!r}, "
                          f"expected {ident!r}")
    off = int.from_bytes(buf[0:4], "little")
    if off + 4 > len(buf):
        raise FormatError(f"{origin}: root offset {off} past the end")
    return Table(buf, off)


def _scalar(t, slot, flags, default):
    o = t.Offset(_vt(slot))
    return t.Get(flags, o + t.Pos) if o else default


def _string(t, slot):
    o = t.Offset(_vt(slot))
    return t.String(o + t.Pos).decode("utf-8") if o else None


def _vector(t, slot, flags):
    o = t.Offset(_vt(slot))
    if not o:
        return None
    return t.GetVectorAsNumpy(flags, o)


def _tables(t, slot):
    o = t.Offset(_vt(slot))
    if not o:
        return None
    start, n = t.Vector(o), t.VectorLen(o)
    out = []
    for i in range(n):
        out.append(Table(t.Bytes, t.Indirect(start + 4 * i)))
    return out


def _num_vec(b, arr, dtype):
    return b.CreateNumpyVector(np.ascontiguousarray(arr, dtype=dtype).ravel())


def _offset_vec(b, offsets):
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


# ---- .tlm ------------------------------------------------------------------

def read_tlm_bytes(buf, origin="<buffer>"):
    """Parse .tlm bytes into a model dict (see the module doc)."""
    buf = bytearray(buf)
    try:
        m = _root(buf, TLM_IDENT, origin)
        tensors = []
        for i, t in enumerate(_tables(m, M_TENSORS) or []):
            name = _string(t, T_NAME)
            shape = _vector(t, T_SHAPE, N.Int32Flags)
            if name is None or shape is None:
                raise FormatError(f"{origin}: tensor {i} lacks its required "
                                  f"name or shape")
            shape = [int(s) for s in shape]
            data = _vector(t, T_DATA, N.Float32Flags)
            if data is not None:
                if data.size != math.prod(shape):
                    raise FormatError(
                        f"{origin}: tensor '{name}' has {data.size} values, "
                        f"its shape {shape} needs {math.prod(shape)}")
                data = data.astype(np.float32).reshape(shape)
            tensors.append({"name": name, "shape": shape, "data": data})
        ops = []
        for i, o in enumerate(_tables(m, M_OPS) or []):
            op = {}
            for slot, (fname, kind, default) in enumerate(OP_FIELDS):
                if kind == "ivec":
                    v = _vector(o, slot, N.Int32Flags)
                    op[fname] = [] if v is None else [int(x) for x in v]
                elif kind == "u8":
                    op[fname] = _scalar(o, slot, N.Uint8Flags, default)
                elif kind == "i32":
                    op[fname] = _scalar(o, slot, N.Int32Flags, default)
                else:
                    op[fname] = float(_scalar(o, slot, N.Float32Flags,
                                              default))
            if op["type"] >= len(OP_TYPES):
                raise FormatError(f"{origin}: op {i} has unknown type "
                                  f"{op['type']}")
            if op["activation"] >= len(ACTIVATIONS):
                raise FormatError(f"{origin}: op {i} has unknown activation "
                                  f"{op['activation']}")
            op["type"] = OP_TYPES[op["type"]]
            op["activation"] = ACTIVATIONS[op["activation"]]
            ops.append(op)

        def ivec(slot):
            v = _vector(m, slot, N.Int32Flags)
            return [] if v is None else [int(x) for x in v]

        def fvec(slot):
            v = _vector(m, slot, N.Float32Flags)
            return None if v is None else [float(x) for x in v]

        model = {
            "name": _string(m, M_NAME) or "",
            "description": _string(m, M_DESC) or "",
            "tensors": tensors, "ops": ops,
            "inputs": ivec(M_INPUTS), "outputs": ivec(M_OUTPUTS),
            "input_scale": float(_scalar(m, M_SCALE, N.Float32Flags, 1.0)),
            "input_mean": fvec(M_MEAN), "input_std": fvec(M_STD),
        }
    except (IndexError, UnicodeDecodeError, ValueError, struct.error) as e:
        if isinstance(e, FormatError):
            raise
        raise FormatError(f"{origin}: malformed FlatBuffer ({e})") from e
    check_model(model, origin)
    return model


def read_tlm(path):
    """Read a .tlm file into a model dict."""
    with open(path, "rb") as f:
        return read_tlm_bytes(f.read(), str(path))


def check_model(model, origin="model"):
    """Structural checks: indices in range, unique names, one input."""
    nt = len(model["tensors"])
    names = set()
    for t in model["tensors"]:
        if t["name"] in names:
            raise FormatError(f"{origin}: tensor name '{t['name']}' is "
                              f"used twice")
        names.add(t["name"])
    for i, op in enumerate(model["ops"]):
        for j in op["inputs"] + op["outputs"]:
            if j < -1 or j >= nt:
                raise FormatError(f"{origin}: op {i} ({op['type']}) refers "
                                  f"to tensor {j}, the model has {nt}")
    if len(model["inputs"]) != 1:
        raise FormatError(f"{origin}: {len(model['inputs'])} inputs, "
                          f"expected exactly one")
    for j in model["inputs"] + model["outputs"]:
        if j < 0 or j >= nt:
            raise FormatError(f"{origin}: input/output tensor {j} out of "
                              f"range (the model has {nt})")


def tlm_bytes(model):
    """Serialize a model dict to .tlm bytes."""
    check_model(model)
    b = flatbuffers.Builder(1 << 16)
    toffs = []
    for t in model["tensors"]:
        name = b.CreateString(t["name"])
        shape = _num_vec(b, t["shape"], np.int32)
        data = None
        if t.get("data") is not None:
            arr = np.asarray(t["data"], dtype=np.float32)
            if arr.size != math.prod(t["shape"]):
                raise FormatError(f"tensor '{t['name']}': {arr.size} values "
                                  f"for shape {list(t['shape'])}")
            data = _num_vec(b, arr, np.float32)
        b.StartObject(3)
        b.PrependUOffsetTRelativeSlot(T_NAME, name, 0)
        b.PrependUOffsetTRelativeSlot(T_SHAPE, shape, 0)
        if data is not None:
            b.PrependUOffsetTRelativeSlot(T_DATA, data, 0)
        toffs.append(b.EndObject())
    ooffs = []
    for op in model["ops"]:
        unknown = set(op) - {f for f, _, _ in OP_FIELDS}
        if unknown:
            raise FormatError(f"op {op.get('type')}: unknown attributes "
                              f"{sorted(unknown)}")
        ins = _num_vec(b, op["inputs"], np.int32)
        outs = _num_vec(b, op["outputs"], np.int32)
        b.StartObject(len(OP_FIELDS))
        for slot, (fname, kind, default) in enumerate(OP_FIELDS):
            if kind == "ivec":
                b.PrependUOffsetTRelativeSlot(slot, ins if fname == "inputs"
                                              else outs, 0)
                continue
            v = op.get(fname, OP_DEFAULTS[fname])
            if fname == "type":
                b.PrependUint8Slot(slot, OP_TYPES.index(v), 0)
            elif fname == "activation":
                b.PrependUint8Slot(slot, ACTIVATIONS.index(v), 0)
            elif kind == "i32":
                b.PrependInt32Slot(slot, int(v), default)
            else:
                b.PrependFloat32Slot(slot, float(v), default)
        ooffs.append(b.EndObject())
    name = b.CreateString(model.get("name") or "")
    desc = b.CreateString(model.get("description") or "")
    tvec = _offset_vec(b, toffs)
    ovec = _offset_vec(b, ooffs)
    ivec = _num_vec(b, model["inputs"], np.int32)
    outvec = _num_vec(b, model["outputs"], np.int32)
    mean = std = None
    if model.get("input_mean") is not None:
        mean = _num_vec(b, model["input_mean"], np.float32)
    if model.get("input_std") is not None:
        std = _num_vec(b, model["input_std"], np.float32)
    b.StartObject(9)
    b.PrependUOffsetTRelativeSlot(M_NAME, name, 0)
    b.PrependUOffsetTRelativeSlot(M_DESC, desc, 0)
    b.PrependUOffsetTRelativeSlot(M_TENSORS, tvec, 0)
    b.PrependUOffsetTRelativeSlot(M_OPS, ovec, 0)
    b.PrependUOffsetTRelativeSlot(M_INPUTS, ivec, 0)
    b.PrependUOffsetTRelativeSlot(M_OUTPUTS, outvec, 0)
    b.PrependFloat32Slot(M_SCALE, float(model.get("input_scale", 1.0)), 1.0)
    if mean is not None:
        b.PrependUOffsetTRelativeSlot(M_MEAN, mean, 0)
    if std is not None:
        b.PrependUOffsetTRelativeSlot(M_STD, std, 0)
    b.Finish(b.EndObject(), file_identifier=TLM_IDENT)
    return bytes(b.Output())


def write_tlm(path, model):
    """Write a model dict as a .tlm file; returns its size in bytes."""
    data = tlm_bytes(model)
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


class GraphBuilder:
    """Builds a model dict op by op.

        g = GraphBuilder("net")
        x = g.input("input", [1, 28, 28, 1])
        w = g.const("conv1.w", w_ohwi)          # ndarray, shape kept
        y = g.op("Conv2D", [x, w, -1], "conv1", [1, 28, 28, 16],
                 pad_top=1, pad_bottom=1, pad_left=1, pad_right=1)
        g.output(y)
        model = g.model(input_scale=1/255)
    """

    def __init__(self, name="", description=""):
        self.name, self.description = name, description
        self.tensors, self.ops, self.inputs, self.outputs = [], [], [], []
        self._index = {}

    def tensor(self, name, shape, data=None):
        if name in self._index:
            raise FormatError(f"tensor name '{name}' is used twice")
        self._index[name] = len(self.tensors)
        self.tensors.append({"name": name, "shape": [int(s) for s in shape],
                             "data": data})
        return len(self.tensors) - 1

    def input(self, name, shape):
        i = self.tensor(name, shape)
        self.inputs.append(i)
        return i

    def const(self, name, data):
        data = np.asarray(data, dtype=np.float32)
        return self.tensor(name, data.shape, data)

    def op(self, type_, inputs, out_name, out_shape, **attrs):
        if type_ not in OP_TYPES:
            raise FormatError(f"unknown op type '{type_}'")
        out = self.tensor(out_name, out_shape)
        self.ops.append({"type": type_, "inputs": list(inputs),
                         "outputs": [out], **attrs})
        return out

    def output(self, index):
        self.outputs.append(index)

    def shape(self, index):
        return list(self.tensors[index]["shape"])

    def model(self, input_scale=1.0, input_mean=None, input_std=None):
        return {"name": self.name, "description": self.description,
                "tensors": self.tensors, "ops": self.ops,
                "inputs": self.inputs, "outputs": self.outputs,
                "input_scale": float(input_scale),
                "input_mean": None if input_mean is None else
                [float(v) for v in input_mean],
                "input_std": None if input_std is None else
                [float(v) for v in input_std]}


def same_padding(size, kernel, stride, dilation=1):
    """TensorFlow SAME padding for one dimension: (before, after, out)."""
    eff = (kernel - 1) * dilation + 1
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2, out


def conv_out(size, kernel, stride, pad_before, pad_after, dilation=1):
    """Output size of a convolution/pooling over one dimension."""
    eff = (kernel - 1) * dilation + 1
    return (size + pad_before + pad_after - eff) // stride + 1


def preprocess(model, pixels):
    """Apply the model's preprocessing to raw pixels (NHWC or NHW, any
    numeric type): x = (pixel*scale - mean[c]) / std[c], float32 NHWC.
    Computed in float32 in that order, as the C runtime does."""
    x = np.asarray(pixels, dtype=np.float32)
    if x.ndim == 3:
        x = x[..., None]
    x = x * np.float32(model["input_scale"])
    if model.get("input_mean") is not None:
        x = x - np.asarray(model["input_mean"], dtype=np.float32)
    if model.get("input_std") is not None:
        x = x / np.asarray(model["input_std"], dtype=np.float32)
    return x.astype(np.float32)


# ---- .tspc -----------------------------------------------------------------

def tspc_bytes(mean, scale, pca_mean, components, explained=None):
    """Serialize StandardScaler + PCA parameters (components: [k, dim])."""
    comps = np.asarray(components, dtype=np.float32)
    if comps.ndim != 2:
        raise FormatError("components must be a [k, dim] matrix")
    k, dim = comps.shape
    for what, v in (("mean", mean), ("scale", scale),
                    ("pca_mean", pca_mean)):
        if np.asarray(v).size != dim:
            raise FormatError(f"{what} has {np.asarray(v).size} values, "
                              f"expected dim = {dim}")
    if np.any(np.asarray(scale) <= 0):
        raise FormatError("scale values must be > 0")
    b = flatbuffers.Builder(1 << 12)
    vm = _num_vec(b, mean, np.float32)
    vs = _num_vec(b, scale, np.float32)
    vp = _num_vec(b, pca_mean, np.float32)
    vc = _num_vec(b, comps, np.float32)
    ve = None if explained is None else _num_vec(b, explained, np.float32)
    b.StartObject(7)
    b.PrependUint32Slot(S_DIM, dim, 0)
    b.PrependUint32Slot(S_K, k, 0)
    b.PrependUOffsetTRelativeSlot(S_MEAN, vm, 0)
    b.PrependUOffsetTRelativeSlot(S_SCALE, vs, 0)
    b.PrependUOffsetTRelativeSlot(S_PCA_MEAN, vp, 0)
    b.PrependUOffsetTRelativeSlot(S_COMPONENTS, vc, 0)
    if ve is not None:
        b.PrependUOffsetTRelativeSlot(S_EVR, ve, 0)
    b.Finish(b.EndObject(), file_identifier=TSPC_IDENT)
    return bytes(b.Output())


def write_tspc(path, mean, scale, pca_mean, components, explained=None):
    data = tspc_bytes(mean, scale, pca_mean, components, explained)
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


def read_tspc(path):
    """Read a .tspc file: dict dim, k, mean, scale, pca_mean, components
    ([k, dim]), explained_variance_ratio (or None)."""
    with open(path, "rb") as f:
        buf = bytearray(f.read())
    try:
        t = _root(buf, TSPC_IDENT, str(path))
        dim = _scalar(t, S_DIM, N.Uint32Flags, 0)
        k = _scalar(t, S_K, N.Uint32Flags, 0)
        out = {"dim": dim, "k": k}
        for name, slot in (("mean", S_MEAN), ("scale", S_SCALE),
                           ("pca_mean", S_PCA_MEAN),
                           ("components", S_COMPONENTS),
                           ("explained_variance_ratio", S_EVR)):
            v = _vector(t, slot, N.Float32Flags)
            out[name] = None if v is None else v.astype(np.float32)
    except (IndexError, ValueError, struct.error) as e:
        if isinstance(e, FormatError):
            raise
        raise FormatError(f"{path}: malformed FlatBuffer ({e})") from e
    if out["components"] is None or out["components"].size != k * dim:
        raise FormatError(f"{path}: components must hold k*dim = {k * dim} "
                          f"values")
    out["components"] = out["components"].reshape(k, dim)
    return out


def scaler_pca_apply(p, x):
    """z = ((x - mean) / scale - pca_mean) . components^T, as the C node."""
    x = np.asarray(x, dtype=np.float32)
    return (((x - p["mean"]) / p["scale"]) - p["pca_mean"]) @ \
        p["components"].T


# ---- PyTorch execution -----------------------------------------------------

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # reading/writing files needs no torch
    torch = None

if torch is not None:

    class TorchModel(torch.nn.Module):
        """Runs a .tlm graph with PyTorch ops.

        forward(x) takes NHWC float32 input (already preprocessed; batch N
        for the file's batch 1) and returns {output name: tensor}, 4-D
        outputs in NHWC. Internally 4-D activations are kept NCHW (torch's
        native layout, so convolutions run at full speed); they are
        permuted only where NHWC order matters: Reshape, FullyConnected on
        a 4-D input (its flatten order is H, W, C) and the outputs.

        Semantics shared with the C runtime: explicit (possibly asymmetric)
        padding; AveragePool2D divides by the number of real (non-padding)
        inputs in the window; MaxPool2D pads with -inf; Add/Multiply
        broadcast a per-channel b; every op's fused activation is applied
        last.
        """

        def __init__(self, path_or_model):
            super().__init__()
            model = (read_tlm(path_or_model)
                     if not isinstance(path_or_model, dict)
                     else path_or_model)
            check_model(model)
            model = dict(model, ops=[dict(OP_DEFAULTS, **op)
                                     for op in model["ops"]])
            self.model = model
            self.tensors = model["tensors"]
            self.input_index = model["inputs"][0]
            self.output_names = [self.tensors[i]["name"]
                                 for i in model["outputs"]]
            self._consts = {}
            for i, t in enumerate(self.tensors):
                if t["data"] is not None:
                    self._consts[i] = torch.from_numpy(
                        np.array(t["data"], dtype=np.float32))
            # converted weights per op, registered as buffers
            self._checked = set()
            self._prepared = []
            for k, op in enumerate(model["ops"]):
                self._prepared.append(self._prepare(k, op))

        def _const(self, i, what, op_index):
            if i < 0 or i not in self._consts:
                raise FormatError(f"op {op_index}: {what} tensor {i} must be "
                                  f"a constant")
            return self._consts[i]

        def _buffer(self, name, value):
            key = "%s%d" % (name, len(self._buffers))
            self.register_buffer(key, value.contiguous())
            return key

        def _prepare(self, k, op):
            t = op["type"]
            prep = {}
            if t == "Conv2D":
                w = self._const(op["inputs"][1], "filter", k)  # OHWI
                prep["w"] = self._buffer("w", w.permute(0, 3, 1, 2))
            elif t == "DepthwiseConv2D":
                w = self._const(op["inputs"][1], "filter", k)  # 1HW(C*M)
                prep["w"] = self._buffer("w", w.permute(3, 0, 1, 2))
            elif t == "FullyConnected":
                prep["w"] = self._buffer(
                    "w", self._const(op["inputs"][1], "weights", k))
            if t in ("Conv2D", "DepthwiseConv2D", "FullyConnected"):
                bi = op["inputs"][2] if len(op["inputs"]) > 2 else -1
                prep["b"] = (self._buffer("b", self._const(bi, "bias", k))
                             if bi >= 0 else None)
            return prep

        # values: (tensor, nchw) — nchw True for 4-D activations held NCHW
        def _get(self, vals, i, want_nhwc=False):
            if i in vals:
                v, nchw = vals[i]
            else:
                v = self._consts[i]
                nchw = False
                if v.dim() == 4:
                    v, nchw = v.permute(0, 3, 1, 2), True
            if want_nhwc and nchw:
                return v.permute(0, 2, 3, 1)
            if not want_nhwc and v.dim() == 4 and not nchw:
                return v.permute(0, 3, 1, 2)
            return v

        def _channelwise(self, vals, a_i, b_i):
            """a and b of an Add/Multiply; b may be per channel ([C],
            [N, C], [1, 1, 1, C]) and is then shaped to broadcast."""
            a = self._get(vals, a_i)
            b = self._get(vals, b_i)
            if a.dim() == 4 and b.dim() < 4:
                b = b.reshape(b.shape[0] if b.dim() == 2 else 1, -1, 1, 1)
            return a, b

        @staticmethod
        def _pad(x, op, value=0.0):
            p = (op["pad_left"], op["pad_right"], op["pad_top"],
                 op["pad_bottom"])
            if any(p):
                x = F.pad(x, p, value=value)
            return x

        def forward(self, x):
            """x: NHWC (or [N, D]) input; {name: output}, 4-D in NHWC."""
            if x.dim() == 4:
                x = x.permute(0, 3, 1, 2)
            return self._forward(x, nhwc_outputs=True)

        def forward_nchw(self, x):
            """The same graph on NCHW input, 4-D outputs left NCHW: what a
            native PyTorch model of this graph computes, without any
            layout permutes (the benchmark's fairest baseline)."""
            return self._forward(x, nhwc_outputs=False)

        def _forward(self, x, nhwc_outputs):
            n = x.shape[0]
            vals = {self.input_index: (x, x.dim() == 4)}
            check = n not in self._checked  # shapes: once per batch size
            for k, op in enumerate(self.model["ops"]):
                y = self._run(k, op, vals, n)
                if op["activation"] == "Relu":
                    y = F.relu(y)
                elif op["activation"] == "Relu6":
                    y = F.hardtanh(y, 0.0, 6.0)
                out_i = op["outputs"][0]
                if check:
                    self._check_shape(k, op, out_i, y, n)
                vals[out_i] = (y, y.dim() == 4)
            self._checked.add(n)
            return {self.tensors[i]["name"]: self._get(vals, i, nhwc_outputs)
                    for i in self.model["outputs"]}

        def _check_shape(self, k, op, out_i, y, n):
            want = [n] + list(self.tensors[out_i]["shape"][1:])
            got = (list(y.permute(0, 2, 3, 1).shape) if y.dim() == 4
                   else list(y.shape))
            if got != want:
                raise FormatError(
                    f"op {k} ({op['type']}): output "
                    f"'{self.tensors[out_i]['name']}' has shape {got}, "
                    f"the model declares {want}")

        def _run(self, k, op, vals, n):
            t, ins, prep = op["type"], op["inputs"], self._prepared[k]
            if t in ("Conv2D", "DepthwiseConv2D"):
                x = self._pad(self._get(vals, ins[0]), op)
                w = getattr(self, prep["w"])
                b = getattr(self, prep["b"]) if prep["b"] else None
                groups = x.shape[1] if t == "DepthwiseConv2D" else 1
                return F.conv2d(x, w, b, (op["stride_h"], op["stride_w"]), 0,
                                (op["dilation_h"], op["dilation_w"]), groups)
            if t == "FullyConnected":
                x = self._get(vals, ins[0], want_nhwc=True).reshape(n, -1)
                w = getattr(self, prep["w"])
                b = getattr(self, prep["b"]) if prep["b"] else None
                return F.linear(x, w, b)
            if t == "AveragePool2D":
                x = self._get(vals, ins[0])
                kernel = (op["kernel_h"], op["kernel_w"])
                stride = (op["stride_h"], op["stride_w"])
                if not any((op["pad_top"], op["pad_bottom"], op["pad_left"],
                            op["pad_right"])):
                    return F.avg_pool2d(x, kernel, stride)
                s = F.avg_pool2d(self._pad(x, op), kernel, stride,
                                 divisor_override=1)
                ones = self._pad(torch.ones_like(x[:1, :1]), op)
                cnt = F.avg_pool2d(ones, kernel, stride, divisor_override=1)
                return s / cnt
            if t == "MaxPool2D":
                x = self._pad(self._get(vals, ins[0]), op, float("-inf"))
                return F.max_pool2d(x, (op["kernel_h"], op["kernel_w"]),
                                    (op["stride_h"], op["stride_w"]))
            if t == "GlobalAveragePool":
                y = self._get(vals, ins[0]).mean(dim=(2, 3))
                shape = self.tensors[op["outputs"][0]]["shape"]
                return y.reshape(n, 1, 1, -1).permute(0, 3, 1, 2) \
                    if len(shape) == 4 else y
            if t == "Add":
                a, b = self._channelwise(vals, ins[0], ins[1])
                return a + b
            if t == "Multiply":
                a, b = self._channelwise(vals, ins[0], ins[1])
                return a * b
            if t in ("Relu", "Relu6", "Clamp", "HardSwish", "Sigmoid",
                     "Softmax"):
                x = self._get(vals, ins[0])
                if t == "Relu":
                    return F.relu(x)
                if t == "Relu6":
                    return F.hardtanh(x, 0.0, 6.0)
                if t == "Clamp":
                    return torch.clamp(x, op["clamp_min"], op["clamp_max"])
                if t == "HardSwish":
                    return F.hardswish(x)
                if t == "Sigmoid":
                    return torch.sigmoid(x)
                return F.softmax(x, dim=1 if x.dim() == 4 else -1)
            if t == "Reshape":
                x = self._get(vals, ins[0], want_nhwc=True)
                shape = [n] + list(self.tensors[op["outputs"][0]]["shape"][1:])
                y = x.reshape(shape)
                return y.permute(0, 3, 1, 2) if y.dim() == 4 else y
            if t == "Pad":
                return self._pad(self._get(vals, ins[0]), op,
                                 op["pad_value"])
            raise FormatError(f"op {k}: type {t} not supported")

        def run_numpy(self, x):
            """Run on an NHWC numpy array; {name: ndarray}."""
            with torch.no_grad():
                out = self.forward(torch.from_numpy(
                    np.ascontiguousarray(x, dtype=np.float32)))
            return {k: v.contiguous().numpy() for k, v in out.items()}
