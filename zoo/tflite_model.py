"""A float .tflite as a model source (what MediaPipe and model zoos ship).

``float32_flatbuffer`` makes a plain float32 file of it: the constants the
original stores as float16 or sparse and turns into float32 at load time
(DEQUANTIZE and DENSIFY ops of a constant) stored as float32 and those ops
removed; MediaPipe's custom Convolution2DTransposeBias (a transposed
convolution with a bias, run by MediaPipe's kernels and by XNNPACK, not by
LiteRT's own kernels) as the builtin TRANSPOSE_CONV with its bias input; a
separate RELU as the fused activation of the op before it; operator codes in
both the old and the new schema fields; a ``serving_default`` signature when
the file has none. The same inputs and outputs (names, order), the same
values. ``check_float`` refuses in one line what is not a float model odml
can take: a file already quantized, TensorFlow (Flex) ops, custom ops LiteRT
cannot run. ``exporters.requantize`` quantizes the float32 form.

``TfliteModel`` says what goes in and comes out, its size (parameters,
multiply-adds, ops), and runs the model with LiteRT on a batch, in eager code
and inside a ``tf.function`` (``tf.numpy_function``), so that odml's
distillation can run it as a teacher; a file LiteRT's kernels cannot run but
odml can rewrite runs in its float32 form, which computes the same.

The file is parsed and verified by odml's reader before LiteRT sees it. No
TensorFlow at import time."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from odml.errors import OdmlError
from odml.flatbuffer import (_TYPE_NAMES, ModelFormatError, _s, builtin_code, op_code_name, pack_tflite,
                             parse_tflite, sign)


class TfliteModelError(OdmlError):
    """A .tflite odml cannot take as a model: not one input, a dynamic
    shape, a file LiteRT cannot run."""


_FLOAT32, _FLOAT16, _INT32 = 0, 1, 2
_QUANTIZED_TYPES = {3: "uint8", 9: "int8", 7: "int16", 17: "int4"}
_TRANSPOSE_CONV = 67
# Custom ops odml rewrites as builtin ops computing the same (MediaPipe's kernel: a TRANSPOSE_CONV whose
# custom options are TfLiteTransposeConvParams {padding, stride_width, stride_height}, plus a bias input).
_REWRITTEN = ("Convolution2DTransposeBias",)
# TfLitePadding (the custom options' enum: 1 same, 2 valid) -> the schema's Padding (0 SAME, 1 VALID)
_TFLITE_PADDING = {1: 0, 2: 1}


class RequantizeError(OdmlError):
    """A .tflite odml cannot re-quantize: already quantized, TensorFlow (Flex)
    ops, custom ops LiteRT cannot run, or an op the quantizer or LiteRT
    refuses (exit 2)."""


# ---------------------------------------------------------------- reading


def _op_name(model: Any, op: Any) -> str:
    return op_code_name(model.operatorCodes[op.opcodeIndex])


def _read(data: bytes, where: str) -> Any:
    """The verified ModelT of ``data`` (``parse_tflite`` holds every buffer's
    bytes in the object, one stored past the flatbuffer too)."""
    return parse_tflite(bytes(data), where).raw


def _const(model: Any, t: Any) -> np.ndarray | None:
    """The stored bytes of tensor ``t`` (uint8), None for a computed tensor."""
    buffers = model.buffers or []
    if not 0 < t.buffer < len(buffers):
        return None
    d = buffers[t.buffer].data
    if d is None or not len(d):
        return None
    return np.asarray(d, dtype=np.uint8)


def _ops(model: Any) -> list[tuple[int, int, str]]:
    """(subgraph, operator, op name) of every operator."""
    return [(g, k, _op_name(model, op)) for g, sg in enumerate(model.subgraphs or [])
            for k, op in enumerate(sg.operators or [])]


# ---------------------------------------------------------------- checks


def check_float(data: bytes, where: str) -> None:
    """Refuse (RequantizeError, one line) a file odml cannot re-quantize: one
    already quantized, one with TensorFlow (Flex) ops, one with custom ops
    that LiteRT cannot run (MediaPipe's Convolution2DTransposeBias is taken:
    ``float32_file`` rewrites it as the builtin TRANSPOSE_CONV)."""
    model = _read(data, where)
    _check_model(model, where)
    fp32 = _pack(_float32_model(model, where))
    _check_runs(fp32, where)


def _check_model(model: Any, where: str) -> None:
    ops = _ops(model)
    flex = sorted({n.split(":", 1)[1] for _, _, n in ops if n.startswith("CUSTOM:Flex")})
    if flex:
        raise RequantizeError(f"{where}: uses TensorFlow ops ({', '.join(flex[:5])}: Flex, SELECT_TF_OPS), which "
                              "LiteRT's builtin runtime does not run and no quantizer takes; re-quantizing it is "
                              "refused (convert the model with builtin ops only)")
    names = [n for _, _, n in ops]
    if "QUANTIZE" in names:
        raise RequantizeError(f"{where}: already quantized (it has QUANTIZE ops: int8 activations); re-quantizing an "
                              "int8 file is refused: give odml the float .tflite")
    for sg in model.subgraphs or []:
        for t in sg.tensors or []:
            kind = _QUANTIZED_TYPES.get(int(t.type))
            q = t.quantization
            if kind is not None and q is not None and q.scale is not None and len(q.scale):
                what = "weights" if _const(model, t) is not None else "activations"
                raise RequantizeError(f"{where}: already quantized ({kind} {what}, tensor {_s(t.name)!r}); "
                                      "re-quantizing an int8 file is refused: give odml the float .tflite")
    custom = sorted({n.split(":", 1)[1] for n in names if n.startswith("CUSTOM:")} - set(_REWRITTEN))
    if custom:
        _check_custom(model, custom, where)


def _check_custom(model: Any, custom: list[str], where: str) -> None:
    """Custom ops other than those odml rewrites: taken when LiteRT's own
    kernels run them (its builtin resolver registers a few custom ops, e.g.
    TFLite_Detection_PostProcess), refused naming the op otherwise."""
    from odml.litert import load_interpreter

    try:
        load_interpreter(_pack(model), xnnpack=False, verify=False)
    except ModelFormatError as e:
        msg = str(e)
        bad = [c for c in custom if c in msg] or custom
        raise RequantizeError(f"{where}: has the custom op {bad[0]}, which LiteRT's kernels do not run (only an app "
                              "that registers it can); re-quantizing it is refused") from None


def _check_runs(fp32: bytes, where: str) -> None:
    from odml.litert import load_interpreter

    try:
        load_interpreter(fp32, xnnpack=False, verify=False)
    except ModelFormatError as e:
        raise RequantizeError(f"{where}: LiteRT cannot run its float32 form: {_why(e)}") from None


def _why(e: BaseException) -> str:
    return " ".join(str(e).split()).replace("model: LiteRT cannot load it: ", "")[:300]


# ---------------------------------------------------------------- float32


def float32_flatbuffer(data: bytes, where: str) -> bytes:
    """``data`` as a plain float32 .tflite flatbuffer (the files packed
    after the original's flatbuffer not included: ``exporters.requantize.
    float32_file`` packs them again): constants stored as float32
    (DEQUANTIZE / DENSIFY of a constant folded), MediaPipe's custom
    Convolution2DTransposeBias as the builtin TRANSPOSE_CONV, a separate
    RELU after a convolution or an ADD as its fused activation, the same inputs
    and outputs (names, order) and a ``serving_default`` signature."""
    model = _read(data, where)
    _check_model(model, where)
    out = _pack(_float32_model(model, where))
    _check_runs(out, where)
    return out


def _pack(model: Any) -> bytes:
    size = sum(len(b.data) for b in model.buffers or [] if b.data is not None)
    return pack_tflite(model, size)


def _float32_model(model: Any, where: str) -> Any:
    for oc in model.operatorCodes or []:  # files of the old schema set only the deprecated code (litert-quantizer
        code = builtin_code(oc)  # reads only the new one)
        oc.builtinCode, oc.deprecatedBuiltinCode = code, min(code, 127)
    for g, sg in enumerate(model.subgraphs or []):
        _fold(model, sg, f"{where}: subgraph {g}")
        _rewrite_custom(model, sg, where)
        _fuse_activations(model, sg)
        _drop_unused_tensors(sg)
    _drop_unused_buffers(model)
    _drop_unused_opcodes(model)
    sign(model)
    return model


def _decode(model: Any, t: Any, raw: np.ndarray, where: str) -> np.ndarray:
    from odml.zoo.tflite_graph import _DTYPES, densify

    dt = _DTYPES.get(int(t.type))
    if dt is None:
        raise RequantizeError(f"{where}: tensor {_s(t.name)!r} is stored as {_TYPE_NAMES.get(int(t.type), t.type)} "
                              "(not supported)")
    shape = [int(d) for d in (t.shape if t.shape is not None else [])]
    arr = np.frombuffer(raw.tobytes(), dtype=dt)
    if t.sparsity is not None:
        return densify(arr, shape, t.sparsity, f"{where}: tensor {_s(t.name)!r}")
    if arr.size != int(np.prod(shape)):
        raise RequantizeError(f"{where}: tensor {_s(t.name)!r} stores {arr.size} values for shape {shape}")
    return arr.reshape(shape)


def _fold(model: Any, sg: Any, where: str) -> None:
    """Every DEQUANTIZE / DENSIFY of a constant: its output becomes a float32
    (or, for DENSIFY of a non-float, its own type) constant; the op goes."""
    schema = _schema()
    tensors = sg.tensors or []
    values: dict[int, np.ndarray] = {}
    keep = []
    for op in sg.operators or []:
        name = _op_name(model, op)
        ins = [int(i) for i in (op.inputs if op.inputs is not None else [])]
        outs = [int(i) for i in (op.outputs if op.outputs is not None else [])]
        if name in ("DEQUANTIZE", "DENSIFY") and len(ins) == 1 and len(outs) == 1:
            src = tensors[ins[0]]
            if ins[0] not in values:
                raw = _const(model, src)
                if raw is not None:
                    values[ins[0]] = _decode(model, src, raw, where)
            if ins[0] in values:
                v = values[ins[0]]
                q = src.quantization
                if name == "DEQUANTIZE" and q is not None and q.scale is not None and len(q.scale):
                    raise RequantizeError(f"{where}: already quantized ({_TYPE_NAMES.get(int(src.type))} weights, "
                                          f"tensor {_s(src.name)!r}); re-quantizing an int8 file is refused")
                v = v.astype(np.float32) if name == "DEQUANTIZE" else v
                values[outs[0]] = v
                dst = tensors[outs[0]]
                dst.type = {np.dtype(np.float32): _FLOAT32, np.dtype(np.float16): _FLOAT16}.get(v.dtype, dst.type)
                dst.sparsity = None
                dst.quantization = None
                dst.buffer = _new_buffer(model, schema, v)
                continue
        keep.append(op)
    sg.operators = keep


def _new_buffer(model: Any, schema: Any, v: np.ndarray) -> int:
    b = schema.BufferT()
    b.data = np.frombuffer(np.ascontiguousarray(v).astype(v.dtype.newbyteorder("<")).tobytes(), np.uint8)
    model.buffers.append(b)
    return len(model.buffers) - 1


def _opcode(model: Any, schema: Any, builtin: int, version: int) -> int:
    for k, oc in enumerate(model.operatorCodes):
        if max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0)) == builtin:
            oc.version = max(int(oc.version or 1), version)
            return k
    oc = schema.OperatorCodeT()
    oc.builtinCode = builtin
    oc.deprecatedBuiltinCode = min(builtin, 127)
    oc.version = version
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def _rewrite_custom(model: Any, sg: Any, where: str) -> None:
    """MediaPipe's Convolution2DTransposeBias(input, weights OHWI, bias) as
    TRANSPOSE_CONV(output_shape, weights, input, bias): the output shape its
    kernel computes, the same padding and strides."""
    schema = _schema()
    tensors = sg.tensors
    for k, op in enumerate(sg.operators or []):
        if _op_name(model, op) != "CUSTOM:Convolution2DTransposeBias":
            continue
        ins = [int(i) for i in op.inputs]
        opts = bytes(np.asarray(op.customOptions if op.customOptions is not None else [], np.uint8))
        if len(ins) != 3 or len(opts) < 12:
            raise RequantizeError(f"{where}: operator {k} (Convolution2DTransposeBias) is not MediaPipe's "
                                  f"({len(ins)} inputs, {len(opts)} bytes of options)")
        padding, sw, sh = (int(x) for x in np.frombuffer(opts[:12], "<i4"))
        x, w = tensors[ins[0]], tensors[ins[1]]
        if padding not in _TFLITE_PADDING or x.shape is None or len(x.shape) != 4 or w.shape is None \
                or len(w.shape) != 4 or sw < 1 or sh < 1:
            raise RequantizeError(f"{where}: operator {k} (Convolution2DTransposeBias) has padding {padding}, strides "
                                  f"{sw}x{sh}, input {x.shape} and weights {w.shape} (not supported)")
        _, ih, iw, _ = (int(d) for d in x.shape)
        cout, kh, kw, _ = (int(d) for d in w.shape)
        ph = max(0, kh - (ih - 1) % sh - 1) if padding == 1 else 0
        pw = max(0, kw - (iw - 1) % sw - 1) if padding == 1 else 0
        shape = np.array([int(x.shape[0]), sh * (ih - 1) + kh - ph, sw * (iw - 1) + kw - pw, cout], np.int32)
        st = schema.TensorT()
        st.shape = np.array([4], np.int32)
        st.type = _INT32
        st.name = (_s(tensors[int(op.outputs[0])].name) + "/output_shape").encode()
        st.buffer = _new_buffer(model, schema, shape)
        tensors.append(st)
        o = schema.TransposeConvOptionsT()
        o.padding = _TFLITE_PADDING[padding]
        o.strideW, o.strideH = sw, sh
        o.fusedActivationFunction = 0
        op.opcodeIndex = _opcode(model, schema, _TRANSPOSE_CONV, 3)  # version 3: with a bias
        op.inputs = [len(tensors) - 1, ins[1], ins[0], ins[2]]
        op.builtinOptionsType = schema.BuiltinOptions.TransposeConvOptions
        op.builtinOptions = o
        op.customOptions = None
        op.customOptionsFormat = 0


_ACTIVATIONS = {"RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}  # schema ActivationFunctionType
_FUSES = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "ADD", "SUB", "MUL")


def _fuse_activations(model: Any, sg: Any) -> None:
    """A RELU / RELU6 / RELU_N1_TO_1 op whose input is the output of a
    convolution, fully connected or elementwise op that nothing else reads
    becomes that op's fused activation (the same values, one op less: int8
    kernels, XNNPACK's among them, take a fused activation where a separate
    int8 RELU splits the graph into many delegated parts)."""
    ops = list(sg.operators or [])
    readers: dict[int, int] = {}
    for op in ops:
        for i in op.inputs if op.inputs is not None else []:
            readers[int(i)] = readers.get(int(i), 0) + 1
    outputs = {int(i) for i in sg.outputs}
    producer = {int(o): op for op in ops for o in (op.outputs if op.outputs is not None else [])}
    drop = set()
    for op in ops:
        act = _ACTIVATIONS.get(_op_name(model, op))
        if act is None or op.inputs is None or len(op.inputs) != 1:
            continue
        src = int(op.inputs[0])
        prev = producer.get(src)
        if prev is None or readers.get(src) != 1 or src in outputs or _op_name(model, prev) not in _FUSES:
            continue
        opts = prev.builtinOptions
        if opts is None or getattr(opts, "fusedActivationFunction", None) != 0 or len(prev.outputs) != 1:
            continue
        opts.fusedActivationFunction = act
        prev.outputs = [int(op.outputs[0])]
        producer[int(op.outputs[0])] = prev
        drop.add(id(op))
    sg.operators = [op for op in ops if id(op) not in drop]


def _drop_unused_tensors(sg: Any) -> None:
    used = {int(i) for i in sg.inputs} | {int(i) for i in sg.outputs}
    for op in sg.operators or []:
        for ids in (op.inputs, op.outputs, op.intermediates):
            used |= {int(i) for i in (ids if ids is not None else []) if int(i) >= 0}
    order = sorted(used)
    remap = {old: new for new, old in enumerate(order)}

    def m(v: Any) -> Any:
        return None if v is None else [remap[int(i)] if int(i) >= 0 else -1 for i in v]

    sg.tensors = [sg.tensors[i] for i in order]
    sg.inputs, sg.outputs = m(sg.inputs), m(sg.outputs)
    for op in sg.operators or []:
        op.inputs, op.outputs = m(op.inputs), m(op.outputs)
        if op.intermediates is not None:
            op.intermediates = m(op.intermediates)


def _drop_unused_buffers(model: Any) -> None:
    used = {0}
    for sg in model.subgraphs or []:
        used |= {int(t.buffer) for t in sg.tensors or []}
    used |= {int(m.buffer) for m in model.metadata or []}
    used |= {int(b) for b in (model.metadataBuffer if model.metadataBuffer is not None else [])}
    order = sorted(used)
    remap = {old: new for new, old in enumerate(order)}
    model.buffers = [model.buffers[i] for i in order]
    for sg in model.subgraphs or []:
        for t in sg.tensors or []:
            t.buffer = remap[int(t.buffer)]
    for m in model.metadata or []:
        m.buffer = remap[int(m.buffer)]
    if model.metadataBuffer is not None:
        model.metadataBuffer = [remap[int(b)] for b in model.metadataBuffer]


def _drop_unused_opcodes(model: Any) -> None:
    used = sorted({int(op.opcodeIndex) for sg in model.subgraphs or [] for op in sg.operators or []})
    remap = {old: new for new, old in enumerate(used)}
    model.operatorCodes = [model.operatorCodes[i] for i in used]
    for sg in model.subgraphs or []:
        for op in sg.operators or []:
            op.opcodeIndex = remap[int(op.opcodeIndex)]


def _schema() -> Any:
    from odml.flatbuffer import _schema as s

    return s()


# ---------------------------------------------------------------- the model


_TRANSPOSED_BIAS = "CUSTOM:Convolution2DTransposeBias"  # MediaPipe's: (x, weights (Cout, kh, kw, Cin), bias)


def _kinds(graph: Any, names: list[str] | None) -> list[str]:
    """Each op's kind, a custom op's with its name (``names``: the file's
    op names, ``TFLiteModel.ops``)."""
    return [names[op.index] if names and op.kind == "CUSTOM" and op.index < len(names) else op.kind
            for op in graph.ops]


def tflite_macs(graph: Any, names: list[str] | None = None) -> int:
    """Multiply-adds of the CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV (and
    MediaPipe's Convolution2DTransposeBias) and FULLY_CONNECTED ops of
    ``graph`` (a ``zoo.tflite_graph.Graph``; ``names`` the file's op names,
    for custom ops) for one input, from the shapes of their weights and
    outputs (an op whose shapes are not known counts 0)."""
    total = 0
    for op, kind in zip(graph.ops, _kinds(graph, names)):
        try:
            w = graph.shapes[op.inputs[1]] if len(op.inputs) > 1 else []
            y = graph.shapes[op.outputs[0]]
            if kind == _TRANSPOSED_BIAS:
                x = graph.shapes[op.inputs[0]]
                total += int(np.prod(x[1:])) * int(np.prod(w[:3]))
            elif kind == "CONV_2D":  # weights (Cout, kh, kw, Cin/groups), output NHWC
                total += int(np.prod(y[1:])) * int(np.prod(w[1:]))
            elif kind == "DEPTHWISE_CONV_2D":  # weights (1, kh, kw, C * multiplier)
                total += int(np.prod(y[1:])) * int(w[1]) * int(w[2])
            elif kind == "TRANSPOSE_CONV":  # inputs (output_shape, weights (Cout, kh, kw, Cin), x)
                w, x = graph.shapes[op.inputs[1]], graph.shapes[op.inputs[2]]
                total += int(np.prod(x[1:])) * int(np.prod(w[:3]))
            elif kind == "FULLY_CONNECTED":  # weights (units, in)
                total += int(np.prod(y[1:] if len(y) > 1 else y)) * int(w[1])
        except (IndexError, ValueError, TypeError):
            continue
    return int(total)


def tflite_params(graph: Any, names: list[str] | None = None) -> int:
    """Values of the stored weights and biases of the weighted ops of
    ``graph`` (float or float16 constants, DEQUANTIZE / DENSIFY folded)."""
    seen: set[int] = set()
    for op, kind in zip(graph.ops, _kinds(graph, names)):
        if kind not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", _TRANSPOSED_BIAS):
            continue
        ins = op.inputs[1:] if kind != "TRANSPOSE_CONV" else op.inputs[1:2] + op.inputs[3:]
        seen |= {i for i in ins if i >= 0 and i in graph.consts and graph.consts[i].dtype.kind == "f"}
    return int(sum(graph.consts[i].size for i in seen))


class TfliteModel:
    """A float .tflite with one input, run by LiteRT.

    ``input_name``, ``input_shape`` (without the batch; NHWC for an image),
    ``input_dtype``, ``output_names``, ``output_shapes``
    (without the batch), ``params``, ``macs`` and ``ops`` (a histogram, the
    DEQUANTIZE / DENSIFY of stored weights not counted), in the file's
    order."""

    def __init__(self, path: str | Path):
        from odml.zoo.tflite_graph import read_graph

        p = Path(path)
        if not p.is_file():
            raise ModelFormatError(f"{p}: file not found")
        self.path = p
        self.data = p.read_bytes()
        m = parse_tflite(self.data, str(p))
        if len(m.inputs) != 1:
            raise TfliteModelError(f"{p}: has {len(m.inputs)} inputs; odml takes models with one input")
        inp = m.inputs[0]
        if not inp.shape or any(d < 1 for d in inp.shape[1:]) or inp.shape[0] not in (1, -1):
            raise TfliteModelError(f"{p}: its input {inp.name!r} has shape {inp.shape}; odml takes a .tflite whose "
                                   "input has a fixed shape and a batch of 1")
        self.input_name = inp.name
        self.input_shape = tuple(int(d) for d in inp.shape[1:])
        self.input_dtype = inp.dtype
        self.output_names = [t.name for t in m.outputs]
        self.output_shapes = [tuple(int(d) for d in t.shape[1:]) for t in m.outputs]
        graph = read_graph(p)
        self.params = tflite_params(graph, m.ops)
        self.macs = tflite_macs(graph, m.ops)
        self.ops = dict((Counter(m.ops) - Counter(graph.folded)).most_common())
        self.size_bytes = len(self.data)
        self._interp: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"TfliteModel({str(self.path)!r}, input {self.input_name} {self.input_shape}, "
                f"outputs {dict(zip(self.output_names, self.output_shapes))})")

    def _interpreter(self) -> Any:
        if self._interp is None:
            from odml.litert import load_interpreter

            try:
                self._interp = load_interpreter(self.data, verify=False)  # verified in __init__
            except ModelFormatError as first:
                try:  # custom ops odml rewrites as builtin ones (MediaPipe's transposed convolution)
                    self._interp = load_interpreter(float32_flatbuffer(self.data, str(self.path)), verify=False)
                except (RequantizeError, ModelFormatError):
                    raise TfliteModelError(f"{self.path}: {_tail(first)}") from None
        return self._interp

    def predict(self, x: np.ndarray) -> list[np.ndarray]:
        """Every output for the batch ``x`` (any size, run one input at a
        time), in the file's order, as float32."""
        from odml.litert import run_outputs

        x = np.asarray(x)
        if tuple(x.shape[1:]) != self.input_shape:
            raise TfliteModelError(f"{self.path}: takes inputs of shape {self.input_shape}, got {tuple(x.shape[1:])}")
        if len(x) == 0:
            return [np.zeros((0, *s), np.float32) for s in self.output_shapes]
        with self._lock:
            return run_outputs(self._interpreter(), x.astype(np.float32, copy=False))

    def __call__(self, x: Any, training: bool = False) -> Any:
        """The outputs for the batch ``x`` as tensors (one tensor for a model
        of one output, else a list), in eager code or inside a
        ``tf.function``: LiteRT runs through ``tf.numpy_function``, so no
        gradient flows through it (a teacher's)."""
        del training  # a .tflite has no training mode
        from odml._tf import tf

        T = tf()
        n = len(self.output_names)
        x = T.convert_to_tensor(x)
        if n == 1:
            outs = [T.numpy_function(lambda v: self.predict(v)[0], [T.cast(x, T.float32)], T.float32,
                                     stateful=False, name="litert")]
        else:
            outs = T.numpy_function(lambda v: self.predict(v), [T.cast(x, T.float32)], [T.float32] * n,
                                    stateful=False, name="litert")
        batch = x.shape[0] if x.shape.rank else None
        for o, s in zip(outs, self.output_shapes):
            o.set_shape([batch, *s])
        return outs[0] if n == 1 else list(outs)

    def single_output(self, k: int = 0) -> Callable[..., Any]:
        """A callable like ``self`` that returns only output ``k`` (a
        teacher for a student of one output)."""
        if not 0 <= k < len(self.output_names):
            raise TfliteModelError(f"{self.path}: has {len(self.output_names)} outputs, no output {k}")

        def call(x: Any, training: bool = False) -> Any:
            y = self(x, training)
            return y if len(self.output_names) == 1 else y[k]

        return call


def _tail(e: BaseException) -> str:
    s = " ".join(str(e).split())
    return s.split(": ", 1)[1] if s.startswith("model: ") else s
