"""A TFLite graph read into numpy and rebuilt as a tf_keras model, layer for
op: how odml takes released models (MediaPipe's BlazePose files) into its own
Keras models with their weights.

``read_graph`` parses the flatbuffer with odml's own reader (verified before
anything touches it), decodes every constant (float32, float16, int32 and
the sparse tensors of TFLite's sparsity format, densified here) and folds
the DEQUANTIZE and DENSIFY ops that turn stored weights into float32, so
that what is left is the computation. ``build_keras`` makes one Keras layer
per remaining op (CONV_2D, DEPTHWISE_CONV_2D, ADD, PAD, MAX_POOL_2D,
AVERAGE_POOL_2D, RESIZE_BILINEAR, RESHAPE, LOGISTIC, DEPTH_TO_SPACE,
CONCATENATION) with the file's weights, so the model computes what the file
computes; an op outside that set is refused in one line naming it.
``signature`` writes the op sequence as letters so that an importer can say
which op first differs from the graph it expects.

The TFLite conventions (tensor layouts, padding and activation enums,
sparsity format) are those of the public schema (tensorflow/compiler/mlir/
lite/schema/schema.fbs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from odml.errors import OdmlError
from odml.flatbuffer import _op_names


class GraphError(OdmlError):
    """A graph odml cannot rebuild, or not the graph an importer expects."""


_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8, 7: np.int16}
_ACTIVATIONS = {0: None, 1: "relu", 3: "relu6", 4: "tanh"}  # schema ActivationFunctionType
LETTERS = {"CONV_2D": "C", "DEPTHWISE_CONV_2D": "D", "ADD": "A", "PAD": "P", "MAX_POOL_2D": "M",
           "AVERAGE_POOL_2D": "V", "RESIZE_BILINEAR": "R", "RESHAPE": "S", "LOGISTIC": "L", "DEPTH_TO_SPACE": "T",
           "CONCATENATION": "K", "HARD_SWISH": "H", "RELU": "U", "MUL": "X",
           "Convolution2DTransposeBias": "B"}
_FOLDED = ("DEQUANTIZE", "DENSIFY")


@dataclass
class Op:
    index: int  # position in the file's operator list
    kind: str
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any]


@dataclass
class Graph:
    path: str
    names: list[str]  # tensor names
    shapes: list[list[int]]
    consts: dict[int, np.ndarray]  # decoded and folded constants, float32 for weights
    ops: list[Op]  # the computation, DEQUANTIZE / DENSIFY folded away
    inputs: list[int]
    outputs: list[int]
    folded: dict[str, int] = field(default_factory=dict)

    def signature(self) -> str:
        return "".join(LETTERS.get(o.kind, "?") for o in self.ops)

    def const(self, i: int, op: Op) -> np.ndarray:
        if i not in self.consts:
            raise GraphError(f"{self.path}: op {op.index} ({op.kind}) takes {self.names[i]!r} as a weight, but it is "
                             "computed, not stored")
        return self.consts[i]


def _buffer_bytes(model: Any, t: Any, data: bytes) -> bytes | None:
    buffers = model.buffers or []
    if not 0 < t.buffer < len(buffers):
        return None
    b = buffers[t.buffer]
    if b.data is not None and len(b.data):
        return bytes(np.asarray(b.data, dtype=np.uint8))
    if b.offset and b.size:
        return data[b.offset:b.offset + b.size]
    return None


def _vector(v: Any) -> np.ndarray:
    """Values of a schema Int32Vector / Uint16Vector / Uint8Vector."""
    return np.asarray(v.values if v is not None and v.values is not None else [], dtype=np.int64)


def densify(values: np.ndarray, shape: list[int], sparsity: Any, where: str) -> np.ndarray:
    """A tensor stored in TFLite's sparsity format (per dimension DENSE or
    SPARSE_CSR with segments and indices) as a dense array. Traversal in
    the tensor's own order without block maps: what the converter writes for
    unstructured sparsity (MediaPipe's pose detector has 38 such weights)."""
    order = [int(x) for x in (sparsity.traversalOrder if sparsity.traversalOrder is not None else [])]
    if order != list(range(len(shape))) or (sparsity.blockMap is not None and len(sparsity.blockMap)):
        raise GraphError(f"{where}: a sparse tensor with a block map or another traversal order (not supported)")
    dims = sparsity.dimMetadata or []
    if len(dims) != len(shape):
        raise GraphError(f"{where}: a sparse tensor whose metadata has {len(dims)} dimensions for shape {shape}")
    pos = np.zeros(1, np.int64)  # per partial coordinate: its position (the segments' index at the next level)
    flat = np.zeros(1, np.int64)  # and its flat index in the dense tensor
    for level, dm in enumerate(dims):
        n = int(shape[level])
        if dm.format == 0:  # DENSE
            if int(dm.denseSize) != n:
                raise GraphError(f"{where}: sparse tensor dimension {level} says {dm.denseSize}, shape says {n}")
            pos = (pos[:, None] * n + np.arange(n)).ravel()
            flat = (flat[:, None] * n + np.arange(n)).ravel()
        else:  # SPARSE_CSR
            seg, idx = _vector(dm.arraySegments), _vector(dm.arrayIndices)
            if len(seg) < pos.max(initial=0) + 2 or (len(idx) and idx.max() >= n):
                raise GraphError(f"{where}: sparse tensor dimension {level} has inconsistent segments or indices")
            starts, counts = seg[pos], seg[pos + 1] - seg[pos]
            j = np.concatenate([np.arange(s, s + c) for s, c in zip(starts, counts)]) if len(pos) else pos
            flat = np.repeat(flat, counts) * n + idx[j]
            pos = j
    if len(flat) != values.size:
        raise GraphError(f"{where}: sparse tensor has {values.size} values for {len(flat)} positions")
    out = np.zeros(int(np.prod(shape)), values.dtype)
    out[flat] = values.ravel()
    return out.reshape(shape)


def read_graph(path: str | Path, where: str | None = None) -> Graph:
    """Parse, verify and decode a .tflite (one-line errors naming ``where``,
    default the path)."""
    from odml.flatbuffer import parse_tflite

    where = where or str(path)
    if not Path(path).is_file():
        raise GraphError(f"{where}: file not found")
    data = Path(path).read_bytes()
    model = parse_tflite(data, where).raw
    sg = model.subgraphs[0]
    tensors = sg.tensors or []
    names = [t.name.decode("utf-8", "replace") if isinstance(t.name, bytes) else str(t.name or "") for t in tensors]
    shapes = [[int(x) for x in (t.shape if t.shape is not None else [])] for t in tensors]
    consts: dict[int, np.ndarray] = {}
    for i, t in enumerate(tensors):
        raw = _buffer_bytes(model, t, data)
        if raw is None:
            continue
        dt = _DTYPES.get(int(t.type))
        if dt is None:
            raise GraphError(f"{where}: tensor {names[i]!r} is stored as type {t.type} (not supported)")
        arr = np.frombuffer(raw, dtype=dt)
        if t.sparsity is not None:
            arr = densify(arr, shapes[i], t.sparsity, f"{where}: tensor {names[i]!r}")
        elif arr.size != int(np.prod(shapes[i])):
            raise GraphError(f"{where}: tensor {names[i]!r} stores {arr.size} values for shape {shapes[i]}")
        consts[i] = arr.reshape(shapes[i]).copy()
    names_of = _op_names()
    codes = [names_of.get(max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0)), "?")
             for oc in model.operatorCodes or []]
    for j, oc in enumerate(model.operatorCodes or []):  # a custom op goes by its own name (MediaPipe's)
        if codes[j] == "CUSTOM" and oc.customCode:
            code = oc.customCode
            codes[j] = code.decode("utf-8", "replace") if isinstance(code, bytes) else str(code)
    ops, folded = [], {}
    for k, op in enumerate(sg.operators or []):
        kind = codes[op.opcodeIndex]
        ins = [int(i) for i in (op.inputs if op.inputs is not None else [])]
        outs = [int(i) for i in (op.outputs if op.outputs is not None else [])]
        if kind in _FOLDED and len(ins) == 1 and ins[0] in consts:
            consts[outs[0]] = consts[ins[0]].astype(np.float32) if kind == "DEQUANTIZE" else consts[ins[0]]
            folded[kind] = folded.get(kind, 0) + 1
            continue
        opts = {}
        if op.builtinOptions is not None:
            opts = {k2: (list(v) if isinstance(v, np.ndarray) else v) for k2, v in vars(op.builtinOptions).items()}
        if op.customOptions is not None:
            opts["custom"] = bytes(np.asarray(op.customOptions, dtype=np.uint8))
        ops.append(Op(k, kind, ins, outs, opts))
    return Graph(where, names, shapes, consts, ops, [int(i) for i in sg.inputs], [int(i) for i in sg.outputs], folded)


def check_signature(graph: Graph, expected: str, what: str) -> None:
    """One line naming the first op where ``graph`` differs from the op
    sequence ``expected`` (letters of LETTERS)."""
    got = graph.signature()
    if got == expected:
        return
    kinds = {v: k for k, v in LETTERS.items()}
    n = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
    if n < len(got) and n < len(expected):
        op = graph.ops[n]
        raise GraphError(f"{graph.path}: not {what}: op {n} (operator {op.index}, output {graph.names[op.outputs[0]]!r})"
                         f" is {op.kind}, expected {kinds.get(expected[n], expected[n])}")
    if len(got) > len(expected):
        raise GraphError(f"{graph.path}: not {what}: {len(got) - len(expected)} more ops than expected, from op {n} "
                         f"({graph.ops[n].kind})")
    raise GraphError(f"{graph.path}: not {what}: the graph ends after {len(got)} ops, expected {len(expected)} "
                     f"(next: {kinds.get(expected[n], expected[n])})")


def build_keras(graph: Graph, name: str) -> Any:
    """The tf_keras model computing what ``graph`` computes, one layer per
    op, with the graph's weights; outputs in the graph's order."""
    from odml._tf import keras, quiet_stderr_fd
    from odml.zoo.blazepose import ChannelPad, DepthToSpace
    from odml.zoo.blocks import HardSwish

    K = keras()
    if len(graph.inputs) != 1:
        raise GraphError(f"{graph.path}: {len(graph.inputs)} inputs (one image input expected)")
    i0 = graph.inputs[0]
    x_in = K.Input(tuple(graph.shapes[i0][1:]), name=_clean(graph.names[i0]) or "input")
    live: dict[int, Any] = {i0: x_in}
    pending: list[tuple[Any, list[np.ndarray]]] = []

    def act(t: Any, code: int, op: Op) -> Any:
        if code not in _ACTIVATIONS:
            raise GraphError(f"{graph.path}: op {op.index} ({op.kind}) has fused activation {code} (not supported)")
        a = _ACTIVATIONS[code]
        if a is None:
            return t
        layer = K.layers.ReLU(6.0, name=f"relu6_{op.index}") if a == "relu6" else \
            K.layers.Activation(a, name=f"{a}_{op.index}")
        return layer(t)

    def tensor(i: int, op: Op) -> Any:
        if i not in live:
            raise GraphError(f"{graph.path}: op {op.index} ({op.kind}) reads {graph.names[i]!r}, which no earlier op "
                             "computes")
        return live[i]

    with quiet_stderr_fd():
        for op in graph.ops:
            o, n = op.options, op.index
            if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                x = tensor(op.inputs[0], op)
                w = graph.const(op.inputs[1], op)
                b = graph.const(op.inputs[2], op) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
                pad = "same" if o.get("padding", 0) == 0 else "valid"
                strides = (o.get("strideH", 1), o.get("strideW", 1))
                dil = (o.get("dilationHFactor", 1), o.get("dilationWFactor", 1))
                if op.kind == "CONV_2D":
                    cin = int(x.shape[-1])
                    groups = cin // w.shape[3] if w.shape[3] and cin % w.shape[3] == 0 else 0
                    if not groups:
                        raise GraphError(f"{graph.path}: op {n} (CONV_2D) has {w.shape[3]} input channels per "
                                         f"filter for a {cin}-channel input")
                    layer = K.layers.Conv2D(w.shape[0], w.shape[1:3], strides, pad, dilation_rate=dil, groups=groups,
                                            use_bias=b is not None, name=f"conv_{n}")
                    kernel = w.transpose(1, 2, 3, 0)
                else:
                    mult = int(o.get("depthMultiplier", 1) or 1)
                    cin = int(x.shape[-1])
                    layer = K.layers.DepthwiseConv2D(w.shape[1:3], strides, pad, depth_multiplier=mult,
                                                     dilation_rate=dil, use_bias=b is not None, name=f"dwconv_{n}")
                    kernel = w[0].reshape(w.shape[1], w.shape[2], cin, mult)
                y = layer(x)
                pending.append((layer, [kernel] + ([b] if b is not None else [])))
                y = act(y, o.get("fusedActivationFunction", 0), op)
            elif op.kind == "ADD":
                if any(i in graph.consts for i in op.inputs):
                    raise GraphError(f"{graph.path}: op {n} (ADD) adds a constant (not supported)")
                y = act(K.layers.Add(name=f"add_{n}")([tensor(i, op) for i in op.inputs]),
                        o.get("fusedActivationFunction", 0), op)
            elif op.kind == "PAD":
                x = tensor(op.inputs[0], op)
                p = graph.const(op.inputs[1], op).astype(int)
                if p.shape != (4, 2) or p[0].any() or p[3, 0]:
                    raise GraphError(f"{graph.path}: op {n} (PAD) pads {p.tolist()} (only spatial padding and "
                                     "channels appended are supported)")
                y = x
                if p[1:3].any():
                    y = K.layers.ZeroPadding2D(((p[1, 0], p[1, 1]), (p[2, 0], p[2, 1])), name=f"pad_{n}")(y)
                if p[3, 1]:
                    y = ChannelPad(int(p[3, 1]), name=f"chpad_{n}")(y)
            elif op.kind in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
                cls = K.layers.MaxPooling2D if op.kind == "MAX_POOL_2D" else K.layers.AveragePooling2D
                y = cls((o["filterHeight"], o["filterWidth"]), (o["strideH"], o["strideW"]),
                        "same" if o.get("padding", 0) == 0 else "valid", name=f"pool_{n}")(tensor(op.inputs[0], op))
                y = act(y, o.get("fusedActivationFunction", 0), op)
            elif op.kind == "RESIZE_BILINEAR":
                if o.get("alignCorners") or not o.get("halfPixelCenters"):
                    raise GraphError(f"{graph.path}: op {n} (RESIZE_BILINEAR) without half-pixel centres "
                                     "(not supported)")
                h, w_ = (int(v) for v in graph.const(op.inputs[1], op))
                y = K.layers.Resizing(h, w_, "bilinear", name=f"resize_{n}")(tensor(op.inputs[0], op))
            elif op.kind == "RESHAPE":
                shape = graph.shapes[op.outputs[0]]
                y = K.layers.Reshape(tuple(shape[1:]), name=f"reshape_{n}")(tensor(op.inputs[0], op))
            elif op.kind == "LOGISTIC":
                y = K.layers.Activation("sigmoid", name=f"sigmoid_{n}")(tensor(op.inputs[0], op))
            elif op.kind == "RELU":
                y = K.layers.ReLU(name=f"relu_{n}")(tensor(op.inputs[0], op))
            elif op.kind == "HARD_SWISH":
                y = HardSwish(name=f"hswish_{n}")(tensor(op.inputs[0], op))
            elif op.kind == "MUL":  # squeeze-excite's scaling: a map times per-channel weights (broadcast)
                if any(i in graph.consts for i in op.inputs):
                    raise GraphError(f"{graph.path}: op {n} (MUL) multiplies by a constant (not supported)")
                y = act(K.layers.Multiply(name=f"mul_{n}")([tensor(i, op) for i in op.inputs]),
                        o.get("fusedActivationFunction", 0), op)
            elif op.kind == "Convolution2DTransposeBias":
                y = _transpose_conv_bias(graph, op, tensor(op.inputs[0], op), pending, K)
            elif op.kind == "DEPTH_TO_SPACE":
                y = DepthToSpace(int(o["blockSize"]), name=f"d2s_{n}")(tensor(op.inputs[0], op))
            elif op.kind == "CONCATENATION":
                axis = int(o.get("axis", -1))
                y = K.layers.Concatenate(axis=axis, name=f"concat_{n}")([tensor(i, op) for i in op.inputs])
                y = act(y, o.get("fusedActivationFunction", 0), op)
            else:
                raise GraphError(f"{graph.path}: op {n} is {op.kind}, which odml cannot rebuild in Keras")
            want = graph.shapes[op.outputs[0]]
            if list(y.shape[1:]) != want[1:]:
                raise GraphError(f"{graph.path}: op {n} ({op.kind}) rebuilt gives shape {list(y.shape[1:])}, the file "
                                 f"says {want[1:]}")
            live[op.outputs[0]] = y
        outs = []
        for i in graph.outputs:
            t = tensor(i, Op(-1, "output", [], [], {}))
            outs.append(K.layers.Identity(name=_clean(graph.names[i]) or f"output_{len(outs)}")(t))
        model = K.Model(x_in, outs if len(outs) > 1 else outs[0], name=name)
        for layer, weights in pending:
            layer.set_weights([np.asarray(v, np.float32) for v in weights])
    return model


def _transpose_conv_bias(graph: Graph, op: Op, x: Any, pending: list, K: Any) -> Any:
    """MediaPipe's custom Convolution2DTransposeBias (its selfie segmentation's
    last upsampling): a transposed convolution plus a bias; the weights are
    stored (out, h, w, in), the options as three int32: padding (TfLite's
    enum: 1 same, 2 valid), stride width, stride height."""
    raw = op.options.get("custom", b"")
    if len(raw) < 12:
        raise GraphError(f"{graph.path}: op {op.index} ({op.kind}) has {len(raw)} bytes of options, 12 expected")
    padding, sw, sh = np.frombuffer(raw[:12], dtype="<i4").tolist()
    if padding not in (1, 2):
        raise GraphError(f"{graph.path}: op {op.index} ({op.kind}) has padding {padding} (1 same or 2 valid expected)")
    w = graph.const(op.inputs[1], op)
    b = graph.const(op.inputs[2], op) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    layer = K.layers.Conv2DTranspose(w.shape[0], w.shape[1:3], (sh, sw), "same" if padding == 1 else "valid",
                                     use_bias=b is not None, name=f"tconv_{op.index}")
    y = layer(x)
    pending.append((layer, [w.transpose(1, 2, 0, 3)] + ([b] if b is not None else [])))
    return y


def _clean(s: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in s).strip("_")
