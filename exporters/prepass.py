"""Cheap passes around int8 quantization (issue 39 part 3), each usable on
its own and measured on and off (docs/benchmarks/int8_prepasses.md,
tests/bench/int8_prepasses.py):

- ``bias_correct``: empirical bias correction of a quantized .tflite (any
  source): the mean error each int8 CONV_2D / DEPTHWISE_CONV_2D /
  FULLY_CONNECTED adds to each of its output channels, measured against the
  float file on calibration inputs, taken off its int32 bias;
- ``percentile_ranges``: activation ranges from percentiles of the float
  tensors' values instead of litert-quantizer's min-max (its calibration
  results, which ``exporters.requantize._clipped`` narrows by MSE);
- ``equalize`` / ``equalize_report`` (a tf_keras model) and
  ``equalize_tflite`` (a float .tflite): cross-layer equalization (Nagel et
  al. 2019, "Data-Free Quantization") of each depthwise-separable pair, a
  depthwise convolution followed by a convolution with at most a ReLU /
  ReLU6 between (ReLU6 only for the channels that calibration inputs show
  stay below 6 after scaling).

Bias correction measures an op's mean error on its pre-activation (what it
computes before its fused RELU / RELU6 clips it), from its inputs: the mean
over output positions of a convolution is linear in the mean of each kernel
tap's window of the (zero-padded) input, so ``sum_taps W . mean(x) + b`` is
exactly the mean of the op's accumulator, for the int8 op (int8 weights, its
own dequantized int8 input) and for the float op (float weights, the float
file's input) alike (``at="output"`` measures the mean of the outputs
instead, after the activation clips them). Per channel, the correction is
the median over the calibration inputs of each input's mean error (the mean
lets a few inputs on which int8 fails outright pull every other one off).
Ops are corrected in order, level by level (an op's level: the most
corrected ops on a path into it): each measured with every op before it
corrected, since an op's input error includes what the ops before it add;
measuring all at once corrects that error twice (BlazePose: 2.9% -> 15.9%
of the crop, against 2.2% level by level)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from odml.exporters.diagnose import _dequantized, _interpreter, _run
from odml.zoo.opmap import tensor_key as _key
from odml.exporters.requantize import RequantizeError, _with_files
from odml.flatbuffer import _s, _schema
from odml.zoo.tflite_model import _const, _op_name, _pack, _read

_BIASED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
_INT8, _INT32, _FLOAT32 = 9, 2, 0  # schema TensorType
_SAME = 0  # schema Padding
_SAMPLES = 4096  # values per tensor and input the percentiles are taken on
HEADROOM = 2.0  # through ReLU6, a channel is scaled only where its calibration maximum times this stays below 6
# (1.2 was not enough: BlazePose equalized on 32 synthetic train inputs moved its keypoints by up to 11 px on val
# inputs, some channel reaching 6 after scaling; with 2.0 the function is kept on both)


# ---------------------------------------------------------------- bias correction


def bias_correct(fp32: bytes, quant: bytes, x: np.ndarray, where: str = "model", steps: int | None = None,
                 at: str = "pre", stat: str = "median", ops: str = "all") -> tuple[bytes, int]:
    """``quant`` (an int8 .tflite of the float file ``fp32``) with the mean
    error of each int8 CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED whose
    output matches a float tensor by name (``zoo.opmap.tensor_key``)
    taken off its int32 bias, per output channel, measured on the inputs
    ``x`` (a batch in the model's input layout); the new file and how many
    ops changed. ``at``: "pre" measures the pre-activation from the op's
    inputs (exact through a fused RELU / RELU6), "output" the mean of
    (quantized output - float output), which a fused activation clips.
    ``stat``: "median" or "mean" over the inputs of each input's mean
    error. ``steps``: None corrects level by level (exact); a number merges
    the levels into that many groups (fewer runs; 1: a single pass, which
    corrects an error once at its op and again at every op after it).
    ``ops``: "all", or "linear" (only ops without a fused activation)."""
    for arg, value, allowed in (("at", at, ("pre", "output")), ("stat", stat, ("median", "mean")),
                                ("ops", ops, ("all", "linear"))):
        if value not in allowed:
            raise ValueError(f"{arg}: one of {', '.join(map(repr, allowed))}, not {value!r}")
    x = np.asarray(x, np.float32)
    model = _read(quant, where)
    sg = model.subgraphs[0]
    f_model = _read(fp32, where)
    f_sg = f_model.subgraphs[0]
    f_ops = {_key(_s(f_sg.tensors[int(op.outputs[0])].name)): k for k, op in enumerate(f_sg.operators or [])
             if _op_name(f_model, op) in _BIASED}
    cands = []  # (op index in quant, op index in fp32)
    for k, op in enumerate(sg.operators or []):
        if _op_name(model, op) not in _BIASED or len(op.inputs) < 3 or int(op.inputs[2]) < 0:
            continue
        out, b = sg.tensors[int(op.outputs[0])], sg.tensors[int(op.inputs[2])]
        if int(out.type) != _INT8 or int(b.type) != _INT32 or _const(model, b) is None or b.quantization is None \
                or b.quantization.scale is None or not len(b.quantization.scale):
            continue
        if ops == "linear" and int(op.builtinOptions.fusedActivationFunction or 0) != 0:
            continue
        w, x_in = sg.tensors[int(op.inputs[1])], sg.tensors[int(op.inputs[0])]
        if _op_name(model, op) == "CONV_2D" and list(w.shape)[-1:] != list(x_in.shape)[-1:]:
            continue  # a grouped convolution (each filter sees a slice of the channels): not corrected
        j = f_ops.get(_key(_s(out.name)))
        if j is not None and list(f_sg.tensors[int(f_sg.operators[j].outputs[0])].shape) == list(out.shape):
            cands.append((k, j))
    if not cands:
        return quant, 0
    ref = _means(fp32, f_model, [j for _, j in cands], x, at)
    changed = 0
    data = quant
    for group_ops in _groups(sg, cands, steps):
        got = _means(data, model, [k for k, _ in group_ops], x, at)
        for k, j in group_ops:
            d = got[k] - ref[j]
            changed += _shift_bias(model, sg, sg.operators[k], np.median(d, 0) if stat == "median" else d.mean(0))
        data = _pack(model)
    return _with_files(data, quant), changed


def _groups(sg: Any, cands: list[tuple[int, int]], steps: int | None) -> list[list[tuple[int, int]]]:
    """``cands`` (op index, float op index) in groups to correct one after
    another: by level (an op's level is the most candidates on a path into
    it, so that no op of a group reads what another of it computes), the
    levels merged into ``steps`` groups of consecutive levels when given."""
    chosen = {k for k, _ in cands}
    depth: dict[int, int] = {}  # tensor -> most candidates on a path into it (graph order is topological)
    level: dict[int, int] = {}
    for k, op in enumerate(sg.operators or []):
        d = max((depth.get(int(i), 0) for i in op.inputs if int(i) >= 0), default=0)
        if k in chosen:
            level[k] = d
        for o in op.outputs:
            depth[int(o)] = d + (k in chosen)
    levels = sorted(set(level.values()))
    n = len(levels) if steps is None else max(1, min(int(steps), len(levels)))
    merged = {lv: g for g, part in enumerate(np.array_split(np.array(levels), n)) for lv in part.tolist()}
    out: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for c in cands:
        out[merged[level[c[0]]]].append(c)
    return [g for g in out if g]


def _shift_bias(model: Any, sg: Any, op: Any, shift: np.ndarray) -> int:
    """Take ``shift`` (real units, per output channel) off the int32 bias of
    ``op``; 1 when any channel's bias changed."""
    t = sg.tensors[int(op.inputs[2])]
    scale = np.asarray(t.quantization.scale, np.float64)
    bias = np.frombuffer(_const(model, t).tobytes(), "<i4").astype(np.int64)
    delta = np.round(shift / np.broadcast_to(scale, bias.shape)).astype(np.int64)
    if not np.any(delta):
        return 0
    new = np.clip(bias - delta, np.iinfo(np.int32).min, np.iinfo(np.int32).max).astype("<i4")
    _set_buffer(model, sg, int(op.inputs[2]), new)
    return 1


def _set_buffer(model: Any, sg: Any, tensor: int, value: np.ndarray) -> None:
    """Store ``value`` as the data of constant ``tensor``: in its own buffer
    (a new one when another tensor shares it)."""
    t = sg.tensors[tensor]
    raw = np.frombuffer(np.ascontiguousarray(value).tobytes(), np.uint8).copy()
    shared = sum(int(u.buffer) == int(t.buffer) for g in model.subgraphs for u in g.tensors or [])
    if shared > 1:
        b = _schema().BufferT()
        model.buffers.append(b)
        t.buffer = len(model.buffers) - 1
    model.buffers[t.buffer].data = raw


def _means(data: bytes, model: Any, ops: list[int], x: np.ndarray, at: str) -> dict[int, np.ndarray]:
    """Per op of ``ops`` (indices into subgraph 0 of ``model``, the parsed
    ``data``), per input of ``x`` (rows), the mean over positions of each
    output channel: of its pre-activation (``at="pre"``) or of its output."""
    sg = model.subgraphs[0]
    it = _interpreter(data)
    details = {d["index"]: d for d in it.get_tensor_details()}
    consts = {k: _op_weights(model, sg, sg.operators[k]) for k in ops}
    sums: dict[int, np.ndarray] = {}
    for i in range(len(x)):
        _run(it, x[i:i + 1])
        for k in ops:
            op = sg.operators[k]
            if at == "output":
                o = int(op.outputs[0])
                v = _dequantized(it, o, details[o])
                m = v.reshape(-1, v.shape[-1]).mean(0)
            else:
                xi = int(op.inputs[0])
                v = _dequantized(it, xi, details[xi])
                m = _pre_mean(_op_name(model, op), op, v, consts[k], sg.tensors[int(op.outputs[0])].shape)
            sums.setdefault(k, []).append(m)
    return {k: np.stack(v) for k, v in sums.items()}


def _tensor_value(model: Any, t: Any) -> np.ndarray | None:
    """A constant tensor's values, dequantized (per channel where it is)."""
    raw = _const(model, t)
    if raw is None:
        return None
    dt = {_FLOAT32: "<f4", _INT8: "i1", _INT32: "<i4"}.get(int(t.type))
    if dt is None:
        raise RequantizeError(f"tensor {_s(t.name)!r}: stored as type {int(t.type)} (not supported here)")
    v = np.frombuffer(raw.tobytes(), dt).astype(np.float64).reshape([int(d) for d in t.shape])
    q = t.quantization
    if int(t.type) != _FLOAT32 and q is not None and q.scale is not None and len(q.scale):
        shape = [1] * v.ndim
        scale, zp = np.asarray(q.scale, np.float64), np.asarray(q.zeroPoint if q.zeroPoint is not None else [0])
        if scale.size > 1:
            shape[int(q.quantizedDimension or 0)] = scale.size
        v = (v - zp.reshape(shape if zp.size > 1 else [1] * v.ndim)) * scale.reshape(shape)
    return v


def _op_weights(model: Any, sg: Any, op: Any) -> tuple[np.ndarray, np.ndarray]:
    w = _tensor_value(model, sg.tensors[int(op.inputs[1])])
    if w is None:
        raise RequantizeError(f"operator {_s(sg.tensors[int(op.outputs[0])].name)!r}: computed weights "
                              "(not supported)")
    nb = len(op.inputs) > 2 and int(op.inputs[2]) >= 0
    b = _tensor_value(model, sg.tensors[int(op.inputs[2])]) if nb else None
    n_out = w.shape[-1] if _op_name(model, op) == "DEPTHWISE_CONV_2D" else w.shape[0]
    return w, (b.ravel() if b is not None else np.zeros(n_out))


def _pre_mean(kind: str, op: Any, x: np.ndarray, wb: tuple[np.ndarray, np.ndarray], out_shape: Any) -> np.ndarray:
    """The mean over output positions of each output channel of the op's
    accumulator (weights . input + bias) for one input ``x``."""
    w, b = wb
    if kind == "FULLY_CONNECTED":
        return w @ x.reshape(-1, w.shape[1]).mean(0) + b
    o = op.builtinOptions
    oh, ow = int(out_shape[1]), int(out_shape[2])
    kh, kw = int(w.shape[1]), int(w.shape[2])
    s = _tap_means(x[0], kh, kw, oh, ow, int(o.strideH or 1), int(o.strideW or 1),
                   int(getattr(o, "dilationHFactor", 1) or 1), int(getattr(o, "dilationWFactor", 1) or 1),
                   int(o.padding) == _SAME)
    if kind == "DEPTHWISE_CONV_2D":
        mult = w.shape[3] // s.shape[2]
        return np.einsum("hwc,hwc->c", w[0], np.repeat(s, mult, axis=2)) + b
    return np.einsum("ohwi,hwi->o", w, s) + b


def _tap_means(x: np.ndarray, kh: int, kw: int, oh: int, ow: int, sh: int, sw: int, dh: int, dw: int,
               same: bool) -> np.ndarray:
    """(kh, kw, channels): for each kernel tap, the mean of the input values
    it meets over the output positions (zero padding included)."""
    h, w_, c = x.shape
    th = max((oh - 1) * sh + (kh - 1) * dh + 1 - h, 0) if same else 0
    tw = max((ow - 1) * sw + (kw - 1) * dw + 1 - w_, 0) if same else 0
    xp = np.pad(x, ((th // 2, th - th // 2), (tw // 2, tw - tw // 2), (0, 0)))
    out = np.empty((kh, kw, c))
    for i in range(kh):
        rows = xp[i * dh: i * dh + (oh - 1) * sh + 1: sh]
        for j in range(kw):
            out[i, j] = rows[:, j * dw: j * dw + (ow - 1) * sw + 1: sw].mean((0, 1))
    return out


# ---------------------------------------------------------------- percentile ranges


def percentile_ranges(fp32: bytes, model: Any, x: np.ndarray, qsvs: dict[str, Any], pct: float = 99.99,
                      where: str = "model", narrow_only: bool = False) -> dict[str, Any]:
    """``qsvs`` (litert-quantizer's calibration results for ``fp32``, parsed
    as ``model``) with each activation's range set to the ``100 - pct`` and
    ``pct`` percentiles of its values on ``x`` (0 kept inside): a few
    outliers no longer stretch it. The model's input keeps its range.
    litert-quantizer's "min-max" is itself a moving average (factor 0.95,
    in the inputs' order) of each input's min and max, so an outlier in an
    early input weighs little there and a percentile range can be wider than
    it; percentiles of all the values pooled do not depend on the order.
    (A tensor of one value per input, a presence score, gets a range of
    about zero width there: each input's min and max are the same value.)
    ``narrow_only``: each range stays within litert-quantizer's (only its
    outliers' share is cut; on BlazePose the percentiles widen the heads'
    ranges, which costs far more than the narrowing gains)."""
    if not 50.0 < pct <= 100.0:
        raise ValueError(f"pct: between 50 and 100, not {pct}")
    values = _float_values(fp32, [n for n in qsvs if n != model.inputs[0].name], x)
    out = dict(qsvs)
    for n, v in values.items():
        plo, phi = np.percentile(v, [100.0 - pct, pct])
        if narrow_only:
            plo, phi = max(float(plo), float(np.min(qsvs[n]["min"]))), min(float(phi), float(np.max(qsvs[n]["max"])))
        plo, phi = min(float(plo), 0.0), max(float(phi), 0.0)
        out[n] = {**qsvs[n], "min": np.full_like(qsvs[n]["min"], plo), "max": np.full_like(qsvs[n]["max"], phi)}
    return out


def _float_values(fp32: bytes, names: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
    """Up to _SAMPLES values per input of each tensor of ``names`` the float
    file computes (a tensor it does not keep is left out)."""
    rng = np.random.default_rng(0)
    it = _interpreter(fp32)
    index = {t["name"]: t["index"] for t in it.get_tensor_details()}
    names = [n for n in names if n in index]
    values: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for i in range(len(x)):
        _run(it, np.asarray(x[i:i + 1], np.float32))
        for n in names:
            v = it.get_tensor(index[n]).ravel()
            values[n].append(v if v.size <= _SAMPLES else rng.choice(v, _SAMPLES, replace=False))
    return {n: np.concatenate(v).astype(np.float64) for n, v in values.items() if v}


# ---------------------------------------------------------------- cross-layer equalization


@dataclass
class Equalized:
    """What cross-layer equalization did: the new model (a tf_keras model,
    or .tflite bytes), the pairs equalized (depthwise, next convolution),
    the pairs skipped with why, how many channels were scaled of how many,
    and the spread of the ranges equalized (the depthwise weights' or, by
    activations, its outputs' per-channel ranges: the mean over pairs of
    max/min of the channels' largest |value|) before and after."""

    model: Any
    pairs: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    channels: tuple[int, int] = (0, 0)
    spread: tuple[float, float] = (0.0, 0.0)


def equalize(keras_model: Any, x: np.ndarray | None = None, headroom: float = HEADROOM,
             by: str = "weights") -> tuple[Any, int]:
    """``keras_model`` (tf_keras) with each depthwise-separable pair
    equalized (``equalize_report``): a new model computing the same, and how
    many pairs were equalized."""
    r = equalize_report(keras_model, x, headroom, by)
    return r.model, len(r.pairs)


def _scales(r1: np.ndarray, r2: np.ndarray, peak: np.ndarray | None, cap: float | None,
            headroom: float) -> np.ndarray:
    """Per channel, s_i = sqrt(r1_i * r2_i) / r2_i (Nagel et al.: the
    depthwise output channel divided by s_i, the next convolution's input
    channel multiplied by it, both ranges become sqrt(r1_i * r2_i)); with an
    activation capped at ``cap`` between (ReLU6, not scale-equivariant): 1
    for a channel whose calibration ``peak`` (after the activation, times
    ``headroom``) reaches the cap, and at least peak * headroom / cap
    elsewhere, so that it stays below the cap after scaling."""
    ok = (r1 > 0) & (r2 > 0)
    s = np.where(ok, np.sqrt(np.where(ok, r1 * r2, 1.0)) / np.where(ok, r2, 1.0), 1.0)
    if cap is not None:
        if peak is None:
            return np.ones_like(s)
        top = peak * headroom
        s = np.where(top >= cap, 1.0, np.maximum(s, top / cap))
    return s


def _spread(r: np.ndarray) -> float:
    r = r[r > 0]
    return float(r.max() / r.min()) if r.size else 1.0


def _check_by(by: str, x: np.ndarray | None) -> None:
    if by not in ("weights", "activations"):
        raise ValueError(f"by: 'weights' or 'activations', not {by!r}")
    if by == "activations" and x is None:
        raise ValueError("equalizing by activations needs calibration inputs")


def equalize_report(keras_model: Any, x: np.ndarray | None = None, headroom: float = HEADROOM,
                    by: str = "weights") -> Equalized:
    """Cross-layer equalization of ``keras_model`` (tf_keras): each
    DepthwiseConv2D (linear, ReLU or ReLU6 activation) whose only reader is
    a Conv2D, directly or through one ReLU layer (or Activation), gets its
    output channel i divided by s_i (kernel and bias) and the Conv2D its
    input channel i multiplied by s_i (``_scales``). Through a plain ReLU or
    none, every channel; through ReLU6 only the channels that the
    calibration inputs ``x`` show never reach 6 (times ``headroom``) before
    or after scaling: without ``x``, no ReLU6 pair. ``by``: "weights" (r1:
    the depthwise kernel's per-channel range, Nagel et al.'s data-free
    form) or "activations" (r1: the per-channel range of what the Conv2D
    reads, on ``x``: the tensor that int8 quantizes per tensor, where the
    weights are quantized per channel). The model is cloned; ``keras_model``
    is left as it is."""
    from odml._tf import keras

    _check_by(by, x)
    km = keras()
    new = km.models.clone_model(keras_model)
    new.set_weights(keras_model.get_weights())
    found = _keras_pairs(new)
    peaks = _keras_peaks(new, [p for p in found if not p[3] and (p[4] is not None or by == "activations")], x) \
        if x is not None else {}
    res = Equalized(new)
    before, after, scaled, total = [], [], 0, 0
    for dw, node, conv, why, cap in found:
        if why:
            res.skipped.append((dw.name, conv.name if conv is not None else "", why))
            continue
        k, b = dw.get_weights() if dw.use_bias else (dw.get_weights()[0], None)
        kh, kw, c, mult = k.shape
        k1 = k.reshape(kh, kw, c * mult)
        wc = conv.get_weights()
        r2 = np.abs(wc[0]).max((0, 1, 3))
        if cap is not None and dw.name not in peaks:
            res.skipped.append((dw.name, conv.name, "ReLU6 between and no calibration inputs"))
            continue
        peak, span = peaks.get(dw.name, (None, None))
        r1 = span if by == "activations" else np.abs(k1).max((0, 1))
        s = _scales(r1, r2, peak, cap, headroom)
        total += s.size
        if np.all(s == 1.0):
            res.skipped.append((dw.name, conv.name, "ReLU6 between: every channel reaches 6 on the calibration inputs"))
            continue
        scaled += int(np.sum(s != 1.0))
        before.append(_spread(r1))
        after.append(_spread(r1 / s))
        dw.set_weights([(k1 / s).reshape(k.shape)] + ([b / s] if b is not None else []))
        conv.set_weights([wc[0] * s.reshape(1, 1, -1, 1)] + wc[1:])
        res.pairs.append((dw.name, conv.name))
    res.channels = (scaled, total)
    res.spread = (float(np.mean(before)) if before else 0.0, float(np.mean(after)) if after else 0.0)
    return res


def _readers(layer: Any) -> list[Any]:
    return [n.outbound_layer for n in layer._outbound_nodes]


def _keras_pairs(model: Any) -> list[tuple[Any, Any, Any, str, float | None]]:
    """(depthwise, the layer the conv reads (the depthwise or the activation
    after it), next conv or None, why not ('' when it can be), the cap of
    the activation between: None or 6)."""
    km_outputs = {id(t) for t in model.outputs}
    out = []
    for dw in model.layers:
        if type(dw).__name__ != "DepthwiseConv2D":
            continue
        cap, why = _cap_of_fn(dw.activation)
        node = dw
        nxt = _readers(dw)
        if not why and len(nxt) == 1 and type(nxt[0]).__name__ in ("ReLU", "Activation"):
            c2, why = _cap_of_layer(nxt[0])
            if cap is not None and c2 is not None:
                why = why or "two activations between"
            cap = cap if cap is not None else c2
            node = nxt[0]
            nxt = _readers(node)
        conv = nxt[0] if len(nxt) == 1 else None
        if why:
            pass
        elif any(id(o) in km_outputs for o in (dw.output, node.output)):
            why = "its output is a model output"
        elif len(nxt) != 1:
            why = f"{len(nxt)} layers read its output"
        elif type(conv).__name__ != "Conv2D" or int(getattr(conv, "groups", 1)) != 1:
            why = f"followed by {type(conv).__name__}, not a Conv2D"
        out.append((dw, node, conv, why, cap))
    return out


def _cap_of_fn(fn: Any) -> tuple[float | None, str]:
    name = getattr(fn, "__name__", str(fn))
    return {"linear": (None, ""), "relu": (None, ""), "relu6": (6.0, "")}.get(
        name, (None, f"activation {name} (not scale-equivariant)"))


def _cap_of_layer(layer: Any) -> tuple[float | None, str]:
    if type(layer).__name__ == "Activation":
        return _cap_of_fn(layer.activation)
    neg, thr = float(layer.negative_slope), float(layer.threshold)
    cap = None if layer.max_value is None else float(layer.max_value)
    if thr != 0.0 or (neg != 0.0 and cap is not None):
        return None, "a ReLU with a threshold, or leaky and capped"
    return cap, ""


def _keras_peaks(model: Any, pairs: list, x: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per depthwise layer, the largest value and the largest |value| of
    each channel of what its Conv2D reads (after the activation) on ``x``."""
    from odml._tf import keras

    if not pairs:
        return {}
    km = keras()
    probe = km.Model(model.inputs, [node.output for _, node, *_ in pairs])
    peaks: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for i in range(0, len(x), 16):
        ys = probe(np.asarray(x[i:i + 16], np.float32), training=False)
        ys = ys if isinstance(ys, (list, tuple)) else [ys]
        for (dw, *_), y in zip(pairs, ys):
            peaks[dw.name] = _channel_peaks(np.asarray(y), peaks.get(dw.name))
    return peaks


def _channel_peaks(y: np.ndarray, acc: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    v = y.reshape(-1, y.shape[-1]).astype(np.float64)
    top, span = v.max(0), np.abs(v).max(0)
    return (top, span) if acc is None else (np.maximum(acc[0], top), np.maximum(acc[1], span))


_ACT_CAP = {0: (None, ""), 1: (None, ""), 3: (6.0, "")}  # schema ActivationFunctionType: NONE, RELU, RELU6


def equalize_tflite(fp32: bytes, x: np.ndarray | None = None, headroom: float = HEADROOM,
                    where: str = "model", by: str = "weights") -> Equalized:
    """Cross-layer equalization of a float .tflite (``float32_flatbuffer``'s
    form: float32 constants, activations fused): each DEPTHWISE_CONV_2D
    (fused NONE, RELU or RELU6) whose output only a CONV_2D reads (as its
    input) is equalized with it as ``equalize_report`` does; through RELU6,
    the channels' peaks are read off the float file's depthwise outputs on
    ``x`` (there clipped at 6: a channel that reaches 6 / headroom is left
    alone), and so are its channels' ranges ``by`` "activations"."""
    _check_by(by, x)
    model = _read(fp32, where)
    sg = model.subgraphs[0]
    ops = list(sg.operators or [])
    readers: dict[int, list[Any]] = {}
    for op in ops:
        for i in op.inputs if op.inputs is not None else []:
            readers.setdefault(int(i), []).append(op)
    outputs = {int(i) for i in sg.outputs}
    res = Equalized(b"")
    found = []
    for op in ops:
        if _op_name(model, op) != "DEPTHWISE_CONV_2D":
            continue
        name = _s(sg.tensors[int(op.outputs[0])].name)
        cap, why = _ACT_CAP.get(int(op.builtinOptions.fusedActivationFunction or 0),
                                (None, "a fused activation that is not RELU or RELU6"))
        nxt = readers.get(int(op.outputs[0]), [])
        conv = nxt[0] if len(nxt) == 1 else None
        cname = _s(sg.tensors[int(conv.outputs[0])].name) if conv is not None else ""
        if why:
            pass
        elif int(op.outputs[0]) in outputs:
            why = "its output is a model output"
        elif len(nxt) != 1:
            why = f"{len(nxt)} ops read its output"
        elif _op_name(model, conv) != "CONV_2D" or int(conv.inputs[0]) != int(op.outputs[0]):
            why = f"followed by {_op_name(model, conv)}, not a CONV_2D"
        elif any(_const(model, sg.tensors[int(o.inputs[1])]) is None or int(sg.tensors[int(o.inputs[1])].type)
                 != _FLOAT32 for o in (op, conv)):
            why = "weights not float32 constants"
        if why:
            res.skipped.append((name, cname, why))
        else:
            found.append((op, conv, name, cname, cap))
    peaks: dict[str, np.ndarray] = {}
    probed = [f[2] for f in found if f[4] is not None or by == "activations"]
    if probed and x is not None:
        peaks = _float_peaks(fp32, probed, np.asarray(x, np.float32))
    before, after, scaled, total = [], [], 0, 0
    for op, conv, name, cname, cap in found:
        if cap is not None and name not in peaks:
            res.skipped.append((name, cname, "RELU6 fused and no calibration inputs"))
            continue
        w1 = _tensor_value(model, sg.tensors[int(op.inputs[1])])  # (1, kh, kw, c)
        w2 = _tensor_value(model, sg.tensors[int(conv.inputs[1])])  # (o, kh, kw, c)
        peak, span = peaks.get(name, (None, None))
        r1, r2 = span if by == "activations" else np.abs(w1).max((0, 1, 2)), np.abs(w2).max((0, 1, 2))
        s = _scales(r1, r2, peak, cap, headroom)
        total += s.size
        if np.all(s == 1.0):
            res.skipped.append((name, cname, "RELU6 fused: every channel reaches 6 on the calibration inputs"))
            continue
        scaled += int(np.sum(s != 1.0))
        before.append(_spread(r1))
        after.append(_spread(r1 / s))
        _set_buffer(model, sg, int(op.inputs[1]), (w1 / s).astype("<f4"))
        if len(op.inputs) > 2 and int(op.inputs[2]) >= 0:
            b = _tensor_value(model, sg.tensors[int(op.inputs[2])])
            _set_buffer(model, sg, int(op.inputs[2]), (b / s).astype("<f4"))
        _set_buffer(model, sg, int(conv.inputs[1]), (w2 * s).astype("<f4"))
        res.pairs.append((name, cname))
    res.model = _with_files(_pack(model), fp32) if res.pairs else fp32
    res.channels = (scaled, total)
    res.spread = (float(np.mean(before)) if before else 0.0, float(np.mean(after)) if after else 0.0)
    return res


def _float_peaks(fp32: bytes, names: list[str], x: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per tensor of ``names``, its channels' largest value and largest
    |value| on ``x``."""
    it = _interpreter(fp32)
    index = {t["name"]: t["index"] for t in it.get_tensor_details()}
    peaks: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for i in range(len(x)):
        _run(it, x[i:i + 1])
        for n in names:
            if n in index:
                peaks[n] = _channel_peaks(it.get_tensor(index[n]), peaks.get(n))
    return peaks
