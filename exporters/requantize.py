"""A float .tflite (what MediaPipe and model zoos ship) re-quantized by odml:
fp32, fp16, dynamic (int8 weights) and int8 (static, calibrated), each
computing what the original computes under LiteRT, with the original's
input and output tensors (names, order, float types), so that the file
drops in for the original in an app.

``float32_file`` first makes a plain float32 file of it
(``zoo.tflite_model.float32_flatbuffer``, where ``check_float`` lives too:
the model source reads the same float form): the constants that
the original stores as float16 or in TFLite's sparse format and turns into
float32 at load time (DEQUANTIZE and DENSIFY ops of a constant) are stored
as float32 and those ops removed; MediaPipe's custom Convolution2DTransposeBias
(a transposed convolution with a bias, run by its own kernels and by
XNNPACK, not by LiteRT's builtin kernels) becomes the builtin TRANSPOSE_CONV
with its bias input, which computes the same; a ``serving_default``
signature names the inputs and outputs (what litert-quantizer calibrates and
quantizes through); a separate RELU becomes the fused activation of the op
before it; operator codes are written in both the old and the new schema
fields (litert-quantizer reads only the new one). litert-quantizer then
quantizes that file, leaving float the ops LiteRT's XNNPACK does not take
quantized (FLOAT_OPS); int8 and dynamic compare candidates (activation
ranges, output heads left float) on held-out calibration inputs
(``requantize_report``). The files packed after the flatbuffer (labels) and
the metadata entries are kept.

``check_float`` refuses, in one line, what cannot be re-quantized: a file
already quantized, TensorFlow (Flex) ops, custom ops that LiteRT cannot run.
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from odml.flatbuffer import SIGNATURE, ModelFormatError, _s, parse_tflite
from odml.zoo.tflite_model import (  # noqa: F401  (check_float: part of this module's API)
    RequantizeError,
    _const,
    _op_name,
    _pack,
    _read,
    _why,
    check_float,
    float32_flatbuffer,
)

PRECISIONS = ("fp32", "fp16", "dynamic", "int8")
# ---------------------------------------------------------------- float32


def float32_file(data: bytes, where: str) -> bytes:
    """``data`` as a plain float32 .tflite (``zoo.tflite_model.
    float32_flatbuffer``: constants stored as float32, DEQUANTIZE / DENSIFY
    of a constant folded, MediaPipe's Convolution2DTransposeBias as the
    builtin TRANSPOSE_CONV, separate RELUs fused, the same inputs and
    outputs, a ``serving_default`` signature), the files packed after the
    original's flatbuffer (labels) packed again."""
    return _with_files(float32_flatbuffer(data, where), data)


def _with_files(out: bytes, original: bytes) -> bytes:
    """``out`` with the files packed in ``original`` (a zip after the
    flatbuffer: the metadata's associated files, labels) packed again."""
    from odml.exporters.metadata import pack_files

    files = _packed(original)
    if not files or set(_packed(out)) >= set(files):  # none, or already there (out made from a file with them)
        return out
    return pack_files(out, files)


def _packed(data: bytes) -> dict[str, bytes]:
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return {i.filename: z.read(i) for i in z.infolist() if not i.is_dir()}
    except Exception:  # noqa: BLE001 - weights can hold bytes that look like a zip's end: then there are no files
        return {}


def input_range(data: bytes) -> tuple[float, float] | None:
    """What the metadata's normalization (TFLite metadata, as MediaPipe's
    files carry it) maps pixels 0..255 onto, None without it."""
    from odml.exporters.metadata import read_metadata

    try:
        norm = (read_metadata(data, parse_tflite(data, "model").metadata) or {}).get("normalization")
        mean, std = float(norm["mean"][0]), float(norm["std"][0])
    except (TypeError, KeyError, IndexError, ValueError, AttributeError):
        return None
    if std == 0:
        return None
    return ((0.0 - mean) / std, (255.0 - mean) / std)


# ---------------------------------------------------------------- quantizing

_WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL", "CONV_3D")
# Ops each precision leaves float, for LiteRT 2.3's XNNPACK (one thread, x86):
# - dynamic: XNNPACK does not take a DEPTHWISE_CONV_2D with int8 weights and float activations; LiteRT's hybrid
#   kernel runs it, and each splits the delegated graph (MediaPipe's hand landmarks: 13.0 ms, float 3.9 ms;
#   with them float 3.7 ms). TensorFlow's converter leaves them float too.
# - int8: XNNPACK does not take litert-quantizer's int8 HARD_SWISH, and LiteRT's own int8 kernel for it is slow
#   (MediaPipe's selfie segmentation: int8 5.3 ms, float 3.7 ms; with its 11 HARD_SWISH float, int8 2.8 ms).
FLOAT_OPS = {"dynamic": ("DEPTHWISE_CONV_2D",), "int8": ("HARD_SWISH",)}
HEAD_ERROR = 0.05  # an output further than this (relative mean error) from the float file's: its head stays float
_EVAL_SAMPLES = 16  # calibration inputs the candidates are compared on
_CLIP_SAMPLES = 4096  # values per tensor and input the clipped ranges are fitted on


@dataclass
class Requantized:
    """What ``requantize_report`` made: the file, and how. ``float_ops`` are
    the ops left float (by their output's name): FLOAT_OPS, and
    the heads whose quantization cost an output its accuracy; ``ranges`` how int8's activation ranges were
    set ("min-max": litert-quantizer's, "clipped": each range narrowed where
    that lowers the error of its values); ``errors`` the relative mean error
    of each output against the float32 file on the held-out calibration
    inputs (empty without them)."""

    data: bytes
    precision: str
    float_ops: list[str] = field(default_factory=list)
    ranges: str = ""
    errors: list[float] = field(default_factory=list)


def requantize(data: bytes, precision: str, calibration: np.ndarray | None = None, where: str = "model") -> bytes:
    """``data`` (a float .tflite) in ``precision``: fp32 (``float32_file``),
    fp16 (weights stored as float16), dynamic (int8 weights, float
    activations quantized at run time) or int8 (int8 weights and activations,
    calibrated on ``calibration``, a batch of inputs in the model's input
    layout; float inputs and outputs kept). The inputs and outputs keep the
    original's names, order and float types."""
    return requantize_report(data, precision, calibration, where).data


def requantize_report(data: bytes, precision: str, calibration: np.ndarray | None = None,
                      where: str = "model") -> Requantized:
    """``requantize``, saying how (``Requantized``). int8 (and dynamic, when
    given calibration inputs) compares candidates against the float32 file
    on a quarter of the calibration inputs (from 8 on; calibrated on the
    rest) and keeps the first one, unless another is at least 10% better on
    its worst output: litert-quantizer's activation ranges or clipped ones
    (int8), then the ops that compute an output from the last weighted op
    before it (a model's head) left float for each output whose error
    exceeds HEAD_ERROR. fp16 takes no calibration inputs."""
    if precision not in PRECISIONS:
        raise RequantizeError(f"{where}: unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    fp32 = float32_flatbuffer(data, where)
    if precision == "fp32":
        return Requantized(_with_files(fp32, data), precision)
    model = parse_tflite(fp32, where)
    x = None
    if precision == "int8" or (precision == "dynamic" and calibration is not None):
        x = _check_calibration(model, calibration, where)
    if precision == "fp16" or x is None:
        out = _quantize(fp32, model, precision, x, where)
        _check_io(out, model, where)
        res = Requantized(out, precision, _outputs_of(fp32, FLOAT_OPS.get(precision, ())))
    else:
        res = _best(fp32, model, precision, x, where)
    res.data = _with_files(res.data, data)
    return res


def _best(fp32: bytes, model: Any, precision: str, x: np.ndarray, where: str) -> Requantized:
    # candidates are compared on inputs they were not calibrated on (a quarter of them, from 8 inputs on)
    hold = max(len(x) // 4, 2) if len(x) >= 8 else 0
    xc, xe = (x[:-hold], x[-hold:]) if hold else (x, x)
    xe = xe[:_EVAL_SAMPLES]
    ref = _outputs(fp32, xe, where)
    qsvs: dict[str, Any] = {"": None}
    always = _outputs_of(fp32, FLOAT_OPS.get(precision, ()))  # (the recipe leaves them float)
    if precision == "int8":
        mm = _calibrate(fp32, model, xc, where)
        qsvs = {"min-max": mm, "clipped": _clipped(fp32, model, xc, mm, where)}
    cands = []
    for ranges, qsv in qsvs.items():
        q = _quantize(fp32, model, precision, xc, where, qsv=qsv)
        c = Requantized(q, precision, list(always), ranges, _errors(ref, q, xe, where))
        cands.append(c)
        bad = [k for k, e in enumerate(c.errors) if e > HEAD_ERROR]
        if bad:
            heads = _heads(fp32)
            floats = sorted(set(always) | {n for k in bad for n in heads.get(k, [])})
            q = _quantize(fp32, model, precision, xc, where, floats, qsv)
            cands.append(Requantized(q, precision, floats, ranges, _errors(ref, q, xe, where)))
    best = cands[0]
    for c in cands[1:]:  # another candidate only when clearly better (float heads make a larger, slower file)
        if _score(c) < 0.9 * _score(best):
            best = c
    _check_io(best.data, model, where)
    return best


def _outputs_of(fp32: bytes, kinds: tuple[str, ...]) -> list[str]:
    """The names of the first outputs of the ops of ``kinds``."""
    m = _read(fp32, "model")
    sg = m.subgraphs[0]
    return [_s(sg.tensors[int(op.outputs[0])].name) for op in sg.operators or [] if _op_name(m, op) in kinds]


def _score(r: Requantized) -> float:
    return max(r.errors) if r.errors else 0.0


def _outputs(data: bytes, x: np.ndarray, where: str) -> list[np.ndarray]:
    from odml.litert import load_interpreter, run_outputs

    try:
        return run_outputs(load_interpreter(data, verify=False), x)
    except ModelFormatError as e:
        raise RequantizeError(f"{where}: {_why(e)}") from None


def _errors(ref: list[np.ndarray], q: bytes, x: np.ndarray, where: str) -> list[float]:
    return [relative_error(a, b) for a, b in zip(ref, _outputs(q, x, where))]


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """mean |b - a| / mean |a|: how far an output ``b`` is from the float
    one ``a``, relative to its size."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(b - a).mean() / max(float(np.abs(a).mean()), 1e-12))


# What each mode of an int8 recipe (exporters/int8_search.py) does to an op, in litert-quantizer's terms: int8
# activations and weights, int16 activations (int8 weights), int8 weights with float activations, float.
MODES = ("a8w8", "a16w8", "w8", "float")


def mode_entry(mode: str, regex: str = ".*", operation: str = "*") -> dict:
    """One litert-quantizer recipe entry putting the ops that ``regex`` and
    ``operation`` select in ``mode`` (MODES)."""
    from litert_quantizer import recipe

    if mode == "float":
        return {"regex": regex, "operation": operation, "algorithm_key": "no_quantize"}
    base = {"a8w8": recipe.static_wi8_ai8, "a16w8": recipe.static_wi8_ai16, "w8": recipe.weight_only_wi8_afp32}[mode]
    e = dict(base()[0])
    e.update(regex=regex, operation=operation)
    return e


def op_regex(name: str) -> str:
    """The recipe regex of the op whose (first) output tensor is ``name``:
    an op's scope is its output names, each followed by ';'."""
    return f"(^|;){re.escape(name)};"


def _recipe(precision: str, floats: list[str] = (), modes: list[tuple[str, str, str]] = ()) -> list[dict]:
    """litert-quantizer's recipe for ``precision``; ``floats``: ops (by
    output name) left float; ``modes``: (regex, operation, mode) entries
    after those (later entries win)."""
    from litert_quantizer import recipe

    if precision == "fp16":
        rp = [{"regex": ".*", "operation": "*", "algorithm_key": "float_casting",
               "op_config": {"weight_tensor_config": {"num_bits": 16, "dtype": "FLOAT"},
                             "compute_precision": "FLOAT", "explicit_dequantize": True}}]
    elif precision == "dynamic":
        rp = list(recipe.dynamic_wi8_afp32())
    else:  # int8: float inputs and outputs (an app feeds and reads floats, as with the original)
        rp = list(recipe.static_wi8_ai8()) + [{"regex": ".*", "operation": op, "algorithm_key": "no_quantize"}
                                              for op in ("INPUT", "OUTPUT")]
    rp += [{"regex": ".*", "operation": kind, "algorithm_key": "no_quantize"} for kind in FLOAT_OPS.get(precision, ())]
    # an op's scope is its output names, each followed by ';'
    rp += [mode_entry("float", op_regex(name)) for name in floats]
    rp += [mode_entry(mode, regex, operation) for regex, operation, mode in modes]
    return [dict(r) for r in rp]


@contextlib.contextmanager
def _quiet():
    """litert-quantizer's progress bars and reports (stdout, stderr) and
    LiteRT's native logs (fd 2), shown only if the block fails."""
    import warnings

    from odml._fd import quiet_stderr_fd

    out, err = io.StringIO(), io.StringIO()
    with quiet_stderr_fd(), warnings.catch_warnings(), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        warnings.simplefilter("ignore")
        yield


def _check_calibration(model: Any, x: np.ndarray | None, where: str) -> np.ndarray:
    if len(model.inputs) != 1:
        raise RequantizeError(f"{where}: has {len(model.inputs)} inputs; odml calibrates models with one input")
    want = tuple(int(d) for d in model.inputs[0].shape[1:])
    if x is None or len(x) == 0:
        raise RequantizeError(f"{where}: int8 needs calibration inputs (a batch of shape (n, "
                              f"{', '.join(map(str, want))}))")
    x = np.asarray(x)
    if tuple(x.shape[1:]) != want:
        raise RequantizeError(f"{where}: calibration inputs of shape {tuple(x.shape[1:])}, the model takes {want}")
    if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
        raise RequantizeError(f"{where}: calibration inputs hold NaN, infinite or non-numeric values")
    return x.astype(np.float32)


def _failed(e: BaseException, what: str, where: str) -> RequantizeError:
    return RequantizeError(f"{where}: litert-quantizer cannot {what}: {_culprit(e)}{type(e).__name__}: "
                           f"{' '.join(str(e).split())[:200]}")


def _signature_input(fp32: bytes, model: Any) -> tuple[str, str]:
    """The signature key and the name its input goes by (a converter's own
    signature names it as the Keras input, 'input_layer', not as the tensor,
    'serving_default_input_layer:0'); the tensor's name under odml's own."""
    from odml.flatbuffer import parse_tflite

    sigs = parse_tflite(fp32, "signature").raw.signatureDefs or []
    for sd in sigs:
        if sd.subgraphIndex == 0 and sd.inputs:
            key = sd.signatureKey.decode() if isinstance(sd.signatureKey, bytes) else str(sd.signatureKey)
            nm = sd.inputs[0].name
            return key, nm.decode() if isinstance(nm, bytes) else str(nm)
    return SIGNATURE, model.inputs[0].name


def _calibrate(fp32: bytes, model: Any, x: np.ndarray, where: str) -> dict[str, Any]:
    from litert_quantizer import Quantizer

    try:
        with _quiet():
            q = Quantizer(bytearray(fp32))
            q.load_quantization_recipe(_recipe("int8"))
            key, name = _signature_input(fp32, model)
            return q.calibrate({key: [{name: x[i:i + 1]} for i in range(len(x))]}, num_threads=1)
    except Exception as e:  # noqa: BLE001 - whatever the quantizer raises, one line naming the op if it can
        raise _failed(e, "calibrate it", where) from None


def _clipped(fp32: bytes, model: Any, x: np.ndarray, qsvs: dict[str, Any], where: str) -> dict[str, Any]:
    """``qsvs`` with each activation's range [lo, hi] narrowed to a*[lo, hi]
    (a from 1 down to 0.3) where that gives its calibration values the least
    squared int8 error: a few outliers no longer stretch a range that most
    values use a small part of. The model's input keeps its range."""
    from ai_edge_litert.interpreter import Interpreter

    rng = np.random.default_rng(0)
    with _quiet():
        it = Interpreter(model_content=fp32, experimental_preserve_all_tensors=True, num_threads=1)
        it.allocate_tensors()
    index = {t["name"]: t["index"] for t in it.get_tensor_details()}
    names = [n for n in qsvs if n in index and n != model.inputs[0].name]
    values: dict[str, list[np.ndarray]] = {n: [] for n in names}
    inp = it.get_input_details()[0]["index"]
    for i in range(len(x)):
        it.set_tensor(inp, x[i:i + 1])
        it.invoke()
        for n in names:
            v = it.get_tensor(index[n]).ravel()
            values[n].append(v if v.size <= _CLIP_SAMPLES else rng.choice(v, _CLIP_SAMPLES, replace=False))
    out = dict(qsvs)
    for n in names:
        lo, hi = float(np.min(qsvs[n]["min"])), float(np.max(qsvs[n]["max"]))
        a = _clip_factor(np.concatenate(values[n]).astype(np.float64), lo, hi)
        if a < 1.0:
            out[n] = {"min": np.full_like(qsvs[n]["min"], min(lo * a, 0.0)),
                      "max": np.full_like(qsvs[n]["max"], max(hi * a, 0.0))}
    return out


def _clip_factor(v: np.ndarray, lo: float, hi: float) -> float:
    best, factor = None, 1.0
    for a in np.linspace(1.0, 0.3, 15):
        lo_a, hi_a = min(lo * a, 0.0), max(hi * a, 0.0)
        step = (hi_a - lo_a) / 255 or 1e-12
        err = float(np.mean((np.clip(np.round((v - lo_a) / step), 0, 255) * step + lo_a - v) ** 2))
        if best is None or err < best:
            best, factor = err, float(a)
    return factor


def _quantize(fp32: bytes, model: Any, precision: str, x: np.ndarray | None, where: str,
              floats: list[str] = (), qsv: dict[str, Any] | None = None,
              modes: list[tuple[str, str, str]] = ()) -> bytes:
    from litert_quantizer import Quantizer

    try:
        with _quiet():
            q = Quantizer(bytearray(fp32))
            q.load_quantization_recipe(_recipe(precision, floats, modes))
            if q.need_calibration and qsv is None:
                key, name = _signature_input(fp32, model)
                qsv = q.calibrate({key: [{name: x[i:i + 1]} for i in range(len(x))]}, num_threads=1)
            res = q.quantize(qsv if q.need_calibration else None, enable_progress_bar=False,
                             enable_progress_report=False)
            out = bytes(res.quantized_model)
    except Exception as e:  # noqa: BLE001 - whatever the quantizer raises, one line naming the op if it can
        raise _failed(e, f"make it {precision}", where) from None
    out = _restore_names(out, model, where)
    try:
        from odml.litert import load_interpreter

        with _quiet():
            load_interpreter(out, verify=True)
    except ModelFormatError as e:
        raise RequantizeError(f"{where}: LiteRT cannot run the {precision} file litert-quantizer made: {_why(e)}"
                              ) from None
    return out


def _culprit(e: BaseException) -> str:
    """'operator N (KIND): ' when the quantizer's traceback shows which
    operator it was working on, else ''."""
    found = ""
    tb = e.__traceback__
    while tb is not None:
        info = tb.tb_frame.f_locals.get("op_info")
        if info is not None and hasattr(info, "subgraph_op_index"):
            found = f"operator {info.subgraph_op_index} ({getattr(info.op_name, 'value', info.op_name)}): "
        tb = tb.tb_next
    return found


def _restore_names(q: bytes, model: Any, where: str) -> bytes:
    """The quantizer names a float output it dequantizes '<name>_dequant' and
    gives the original name to the int8 tensor: the file's inputs and outputs
    get back the original names (the int8 tensor becomes '<name>_int8'). The
    signature's own names are left as they are."""
    m = _read(q, where)
    sg = m.subgraphs[0]
    names = [_s(t.name) for t in sg.tensors]
    changed = False
    for ids, want in ((sg.inputs, model.inputs), (sg.outputs, model.outputs)):
        for i, t in zip(ids, want):
            if names[int(i)] == t.name:
                continue
            if t.name in names:
                sg.tensors[names.index(t.name)].name = (t.name + "_int8").encode()
            sg.tensors[int(i)].name = t.name.encode()
            changed = True
    return _pack(m) if changed else q


def _check_io(q: bytes, model: Any, where: str) -> None:
    got = parse_tflite(q, where)
    if [(t.name, t.dtype) for t in got.inputs] != [(t.name, t.dtype) for t in model.inputs] or \
            [(t.name, t.dtype) for t in got.outputs] != [(t.name, t.dtype) for t in model.outputs]:
        raise RequantizeError(f"{where}: the quantized file's inputs and outputs "
                              f"({[(t.name, t.dtype) for t in got.inputs + got.outputs]}) are not the original's "
                              f"({[(t.name, t.dtype) for t in model.inputs + model.outputs]})")


def _heads(fp32: bytes) -> dict[int, list[str]]:
    """Per output (its position): the ops that compute it from the last
    weighted op(s) before it (that op included), by their first output's
    name."""
    model = _read(fp32, "model")
    sg = model.subgraphs[0]
    producer = {int(o): op for op in sg.operators or [] for o in op.outputs}
    out: dict[int, list[str]] = {}
    for k, t in enumerate(sg.outputs):
        names: list[str] = []
        todo, seen = [int(t)], set()
        while todo:
            op = producer.get(todo.pop())
            if op is None or id(op) in seen:
                continue
            seen.add(id(op))
            names.append(_s(sg.tensors[int(op.outputs[0])].name))
            if _op_name(model, op) in _WEIGHTED:
                continue
            todo += [int(j) for j in op.inputs if int(j) >= 0 and _const(model, sg.tensors[int(j)]) is None]
        out[k] = names
    return out
