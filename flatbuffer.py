"""Read a .tflite without TensorFlow and without the native interpreter: verify
that it is a well-formed TFLite flatbuffer (so a malformed file never reaches
native code), and describe it: tensors, operators, parameters, metadata.

Uses the schema module that ships with ai-edge-litert."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from odml.errors import OdmlError

_TYPE_NAMES = {
    0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool", 7: "int16",
    8: "complex64", 9: "int8", 10: "float64", 11: "complex128", 12: "uint64", 13: "resource", 14: "variant",
    15: "uint32", 16: "uint16", 17: "int4",
}
_TYPE_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8, 15: 4, 16: 2}


MAX_TENSOR_BYTES = 2 ** 31  # an activation larger than 2 GiB: a malformed shape, not a model for a device


class ModelFormatError(OdmlError):
    """A model file that is not a well-formed model of the expected format."""


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def builtin_code(oc: Any) -> int:
    """An operator code's builtin operator (files of the old schema set only
    the deprecated field, new ones may set only the new one)."""
    return max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0))


def op_code_name(oc: Any) -> str:
    """An operator code's name: ``CONV_2D``, ``CUSTOM:<its custom code>``."""
    code = builtin_code(oc)
    return f"CUSTOM:{_s(oc.customCode)}" if code == 32 else _op_names().get(code, f"BUILTIN_{code}")


def _op_names() -> dict[int, str]:
    schema = _schema()
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def sniff_format(data: bytes) -> str:
    """Best guess of what a file holds, for error messages."""
    if len(data) >= 8 and data[4:8] == b"TFL3":
        return "tflite"
    if data[:2] == b"PK":
        return "zip (a .keras file?)"
    if data[:8] == b"\x89HDF\r\n\x1a\n":
        return "HDF5 (a .h5 Keras file?)"
    if data[:1] == b"\x08" and len(data) > 2 and data[1] < 32:
        return "onnx"  # field 1 (ir_version) as a small varint: how ONNX protobufs start
    return "unknown"


@dataclass
class TensorInfo:
    index: int
    name: str
    shape: list[int]
    dtype: str
    scale: list[float] = field(default_factory=list)
    zero_point: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = {"index": self.index, "name": self.name, "shape": self.shape, "dtype": self.dtype}
        if self.scale:
            d["quantization"] = {"scale": self.scale[:8], "zero_point": self.zero_point[:8],
                                 "channels": len(self.scale)}
        return d


@dataclass
class TFLiteModel:
    path: str
    size_bytes: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    ops: list[str]  # in execution order (subgraph 0)
    subgraphs: int
    params: int  # elements of constant (buffer-backed) tensors
    weight_bytes: int
    weight_dtypes: dict[str, int]
    metadata: dict[str, bytes]
    description: str
    raw: Any  # the ModelT object

    @property
    def op_histogram(self) -> dict[str, int]:
        return dict(Counter(self.ops).most_common())


def read_tflite(path: str | Path) -> TFLiteModel:
    """Parse and verify ``path``; raise ModelFormatError (one line) if it is
    not a well-formed TFLite model."""
    p = Path(path)
    if not p.is_file():
        raise ModelFormatError(f"{p}: file not found")
    data = p.read_bytes()
    return parse_tflite(data, str(p))


def pack_tflite(model: Any, size_hint: int = 0) -> bytes:
    """A schema ``ModelT`` (``TFLiteModel.raw``, edited) as .tflite bytes."""
    import flatbuffers

    b = flatbuffers.Builder(size_hint + 1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


SIGNATURE = "serving_default"  # the signature key TFLite's converter, LiteRT's CompiledModel and Android's runSignature use


def sign(model: Any, input_names: list[str] | None = None, output_names: list[str] | None = None,
         replace: bool = False) -> None:
    """Give a schema ``ModelT`` a ``serving_default`` signature of subgraph 0:
    its inputs and outputs under ``input_names`` / ``output_names`` (default:
    the tensors' own names). A model that has one keeps it unless
    ``replace``."""
    if model.signatureDefs and not replace:
        return
    schema = _schema()
    sg = model.subgraphs[0]

    def maps(ids: Any, names: list[str] | None) -> list:
        out = []
        for k, i in enumerate(ids):
            tm = schema.TensorMapT()
            tm.name = (names[k] if names and k < len(names) else _s(sg.tensors[int(i)].name)).encode()
            tm.tensorIndex = int(i)
            out.append(tm)
        return out

    sd = schema.SignatureDefT()
    sd.signatureKey = SIGNATURE.encode()
    sd.subgraphIndex = 0
    sd.inputs, sd.outputs = maps(sg.inputs, input_names), maps(sg.outputs, output_names)
    model.signatureDefs = [sd]


def with_signature(data: bytes, input_names: list[str] | None = None, output_names: list[str] | None = None,
                   where: str = "model") -> bytes:
    """``data`` with a ``serving_default`` signature naming its inputs and
    outputs (``sign``; any other signature replaced)."""
    model = parse_tflite(data, where).raw
    sign(model, input_names, output_names, replace=True)
    return pack_tflite(model, len(data))


def parse_tflite(data: bytes, where: str = "model") -> TFLiteModel:
    if len(data) == 0:
        raise ModelFormatError(f"{where}: empty file")
    kind = sniff_format(data)
    if kind != "tflite":
        what = f"it looks like {kind}" if kind != "unknown" else "no TFL3 identifier"
        raise ModelFormatError(f"{where}: not a TFLite flatbuffer ({what})")
    schema = _schema()
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception:  # struct.error, IndexError, ...: a truncated or corrupt buffer
        raise ModelFormatError(f"{where}: corrupt or truncated TFLite flatbuffer "
                               f"(its offsets point past the end of the data)") from None
    try:
        described = _describe(model, data, where)
    except ModelFormatError:
        raise
    except Exception as e:
        raise ModelFormatError(f"{where}: malformed TFLite model ({type(e).__name__}: {e})") from None
    for b in model.buffers or []:  # data stored after the flatbuffer (offset, size): held in the object, so that
        if b.offset and b.offset > 1 and b.size:  # pack_tflite writes a whole file (the offsets would not survive)
            b.data = np.frombuffer(data, np.uint8, int(b.size), int(b.offset))
            b.offset, b.size = 0, 0
    return described


# Operators with optional inputs (-1, "no tensor", where the schema allows it): how many of the first inputs
# they cannot do without. Every other builtin operator needs all of its inputs: LiteRT's kernels read them
# unchecked (a RESHAPE whose shape input was -1 crashed, found by fuzzing). The recurrent operators have many
# optional inputs in many places; custom operators say nothing: only their first input is required.
_REQUIRED_INPUTS = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "CONV_3D": 2, "TRANSPOSE_CONV": 3,
                    "CONV_3D_TRANSPOSE": 3}
_MANY_OPTIONAL = ("LSTM", "UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM", "RNN",
                  "UNIDIRECTIONAL_SEQUENCE_RNN", "BIDIRECTIONAL_SEQUENCE_RNN", "SVDF")


def _required_inputs(name: str, n: int) -> int:
    if name.startswith("CUSTOM:") or name in _MANY_OPTIONAL:
        return 1
    return _REQUIRED_INPUTS.get(name, n)


def _describe(model: Any, data: bytes, where: str) -> TFLiteModel:
    if not model.subgraphs:
        raise ModelFormatError(f"{where}: malformed TFLite model (no subgraphs)")
    buffers = model.buffers or []
    codes = [op_code_name(oc) for oc in model.operatorCodes or []]
    sg = model.subgraphs[0]
    tensors = sg.tensors or []
    nt = len(tensors)

    def check_index(i: int, what: str) -> None:
        if not -1 <= i < nt:
            raise ModelFormatError(f"{where}: malformed TFLite model ({what} refers to tensor {i} of {nt})")

    ops = []
    for k, op in enumerate(sg.operators or []):
        if not 0 <= op.opcodeIndex < len(codes):
            raise ModelFormatError(f"{where}: malformed TFLite model (operator {k} has opcode {op.opcodeIndex})")
        ins = [int(i) for i in (op.inputs if op.inputs is not None else [])]
        outs = [int(i) for i in (op.outputs if op.outputs is not None else [])]
        for i in ins + outs:
            check_index(i, f"operator {k}")
        name = codes[op.opcodeIndex]
        required = ins[:_required_inputs(name, len(ins))]  # -1 ("no tensor") only where an input is optional:
        if -1 in required or -1 in outs:  # LiteRT dereferences these unchecked (a crash, found by fuzzing)
            raise ModelFormatError(f"{where}: malformed TFLite model (operator {k} ({name}) lacks a required "
                                   "input or output tensor)")
        ops.append(name)
    for s in model.subgraphs:
        for j, t in enumerate(s.tensors or []):
            if not 0 <= t.buffer < max(1, len(buffers)):
                raise ModelFormatError(f"{where}: malformed TFLite model (tensor buffer {t.buffer} of {len(buffers)})")
            try:  # the interpreter hands names to Python as UTF-8
                (t.name or b"").decode("utf-8") if isinstance(t.name, (bytes, bytearray)) else None
            except UnicodeDecodeError:
                raise ModelFormatError(f"{where}: malformed TFLite model (tensor {j}'s name is not UTF-8)") from None
    for b in buffers:
        if b.offset and (b.offset + b.size > len(data)):
            raise ModelFormatError(f"{where}: truncated TFLite model (a buffer ends past the file)")

    def info(i: int) -> TensorInfo:
        if not 0 <= int(i) < nt:  # (-1, "no tensor", is for an operator's optional inputs only)
            raise ModelFormatError(f"{where}: malformed TFLite model (a subgraph input or output refers to tensor "
                                   f"{int(i)} of {nt})")
        t = tensors[i]
        q = t.quantization
        scale = [float(x) for x in (q.scale if q is not None and q.scale is not None else [])]
        zp = [int(x) for x in (q.zeroPoint if q is not None and q.zeroPoint is not None else [])]
        shape = [int(x) for x in (t.shapeSignature if t.shapeSignature is not None else t.shape if t.shape is not None else [])]
        return TensorInfo(int(i), _s(t.name), shape, _TYPE_NAMES.get(t.type, str(t.type)), scale, zp)

    params = wbytes = 0
    wtypes: Counter = Counter()
    for j, t in enumerate(tensors):
        buf = buffers[t.buffer] if t.buffer < len(buffers) else None
        has = buf is not None and ((buf.data is not None and len(buf.data) > 0) or (buf.offset and buf.size))
        dims = [int(d) for d in t.shape] if t.shape is not None else []
        if any(d < -1 for d in dims):
            raise ModelFormatError(f"{where}: malformed TFLite model (tensor {j} has shape {dims})")
        size = float(np.prod([max(d, 1) for d in dims], dtype=np.float64)) * _TYPE_BYTES.get(t.type, 1)
        if not has and size > MAX_TENSOR_BYTES:  # the interpreter would allocate it (a constant's bytes are in the file)
            raise ModelFormatError(f"{where}: malformed TFLite model (tensor {j} of shape {dims} would take "
                                   f"{size / 2 ** 30:,.1f} GiB; odml runs models whose tensors take at most "
                                   f"{MAX_TENSOR_BYTES / 2 ** 30:g} GiB)")
        if has and t.shape is not None:
            n = int(np.prod(t.shape)) if len(t.shape) else 1
            params += n
            wbytes += n * _TYPE_BYTES.get(t.type, 1)
            wtypes[_TYPE_NAMES.get(t.type, str(t.type))] += n
    metadata = {}
    for m in model.metadata or []:
        if 0 <= m.buffer < len(buffers):
            b = buffers[m.buffer]
            if b.data is not None:
                metadata[_s(m.name)] = bytes(np.asarray(b.data, dtype=np.uint8))
            elif b.offset:
                metadata[_s(m.name)] = data[b.offset:b.offset + b.size]
    if sg.inputs is None or not len(sg.inputs) or sg.outputs is None or not len(sg.outputs):
        raise ModelFormatError(f"{where}: malformed TFLite model (its graph has no inputs or no outputs)")
    inputs = [info(i) for i in (sg.inputs if sg.inputs is not None else [])]
    outputs = [info(i) for i in (sg.outputs if sg.outputs is not None else [])]
    return TFLiteModel(where, len(data), inputs, outputs, ops, len(model.subgraphs), params, wbytes, dict(wtypes),
                       metadata, _s(model.description), model)


def _s(b: Any) -> str:
    if b is None:
        return ""
    return b.decode("utf-8", "replace") if isinstance(b, (bytes, bytearray)) else str(b)


def precision_of(m: TFLiteModel) -> str:
    """The precision a .tflite was exported in, read off its tensors: int8
    (integer activations: QUANTIZE ops or int8 inputs), dynamic (int8
    weights, float activations), fp16 (float16 weights) or fp32."""
    w = m.weight_dtypes
    if "QUANTIZE" in m.ops or any(t.dtype in ("int8", "uint8") for t in m.inputs):
        return "int8"
    if w.get("int8", 0) > w.get("float32", 0):
        return "dynamic"
    if w.get("float16", 0):
        return "fp16"
    return "fp32"
