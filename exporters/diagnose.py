"""Which layer loses what when a model is quantized (`odml export
--diagnose`): the error each op of the quantized .tflite adds, against the
float file of the same model, on the same inputs.

Both files run under LiteRT with every intermediate tensor kept
(``experimental_preserve_all_tensors``, LiteRT's own kernels so that no
delegate fuses them away). A tensor of the quantized file is matched to the
float file's tensor of the same name (TFLite's converter names a tensor after
the TensorFlow ops it fuses, the same in both conversions of one model; an
int8 output dequantized for a float caller takes its output's match),
dequantized and compared. Its error is, per channel (the last axis), the
mean absolute difference over the float channel's RMS (at least a
thousandth of the whole tensor's), averaged over the channels: the share of
what each channel carries that is lost (per channel, so that one channel of
huge values that stretches an int8 range cannot hide the channels it
squashes to a few levels). What an op *adds* is its output's error less the
largest error among its inputs, so that the op where a drift starts ranks
first, not every op after it.

Each op is mapped back to the layer it came from: the Keras layer whose name
its tensor holds (``model/conv2d_3/BiasAdd`` -> ``conv2d_3``; an output's
tensor, named after the output, to the layer that makes it)."""

from __future__ import annotations

from typing import Any

import numpy as np

from odml.zoo.opmap import layer_of, tensor_key


def _interpreter(data: bytes) -> Any:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from odml._tf import quiet_stderr_fd

    with quiet_stderr_fd():
        it = Interpreter(model_content=bytes(data), num_threads=1, experimental_preserve_all_tensors=True,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        it.allocate_tensors()
    return it


def _dequantized(it: Any, index: int, detail: dict) -> np.ndarray | None:
    try:
        v = it.get_tensor(index)
    except ValueError:  # a tensor LiteRT did not keep (a constant folded away, an empty optional input)
        return None
    if np.issubdtype(v.dtype, np.floating):
        return v.astype(np.float64)
    q = detail.get("quantization_parameters") or {}
    scales, zps = np.asarray(q.get("scales", [])), np.asarray(q.get("zero_points", []))
    if scales.size == 0:
        return v.astype(np.float64)
    axis = int(q.get("quantized_dimension", 0))
    shape = [1] * v.ndim
    if scales.size > 1 and v.ndim:
        shape[axis] = scales.size
    return (v.astype(np.float64) - zps.reshape(shape)) * scales.reshape(shape)


def _run(it: Any, x: np.ndarray) -> None:
    from odml.litert import _quantize

    d = it.get_input_details()[0]
    it.set_tensor(d["index"], _quantize(x, d))
    it.invoke()


def diagnose(float_data: bytes, quant_data: bytes, x: np.ndarray, layers: list[str] | None = None,
             output_layers: list[str] | None = None, top: int = 10) -> dict[str, Any]:
    """The error each op of ``quant_data`` adds against ``float_data`` on
    inputs ``x`` (a batch in the model's input layout): every op matched,
    the worst ``top`` by the error they add, and the error at the outputs.
    ``layers``: the model's layer (or node) names; ``output_layers``: the
    layer each output of the float file comes from, in order (an output's
    tensor is named after the output, not the layer)."""
    f_it, q_it = _interpreter(float_data), _interpreter(quant_data)
    out_layer = {d["index"]: n for d, n in zip(f_it.get_output_details(), output_layers or [])}
    f_index = {tensor_key(t["name"]): t for t in f_it.get_tensor_details()}
    q_details = {t["index"]: t for t in q_it.get_tensor_details()}
    ops = q_it._get_ops_details()  # LiteRT's op list (index, op_name, inputs, outputs); no public accessor
    sums: dict[int, list[Any]] = {}  # quantized tensor index -> per channel [sum |diff|, sum f^2], count
    matched: dict[int, int] = {}  # quantized tensor index -> float tensor index
    for t in q_details.values():
        f = f_index.get(tensor_key(t["name"]))
        if f is not None and list(f["shape"]) == list(t["shape"]):
            matched[t["index"]] = f["index"]
    for op in ops:  # an int8 output dequantized for a float caller: its int8 input is the float file's output
        if op["op_name"] == "DEQUANTIZE" and int(op["outputs"][0]) in matched and int(op["inputs"][0]) not in matched:
            matched[int(op["inputs"][0])] = matched[int(op["outputs"][0])]
    f_names = {t["index"]: t for t in f_index.values()}
    for i in range(len(x)):
        _run(f_it, x[i:i + 1])
        _run(q_it, x[i:i + 1])
        for qi, fi in matched.items():
            a = _dequantized(f_it, fi, f_names[fi])
            b = _dequantized(q_it, qi, q_details[qi])
            if a is None or b is None or a.shape != b.shape:
                continue
            c = a.shape[-1] if a.ndim > 1 else 1  # per channel: one channel of huge values must not hide the rest
            a2, d2 = a.reshape(-1, c), np.abs(a - b).reshape(-1, c)
            s = sums.setdefault(qi, [np.zeros(c), np.zeros(c), 0])
            s[0] += d2.sum(0)
            s[1] += (a2 * a2).sum(0)
            s[2] += len(a2)

    def error(qi: int) -> float | None:
        """Mean over channels of the channel's mean absolute error over its
        RMS (at least a thousandth of the whole tensor's): how much of what
        each channel carries is lost."""
        s = sums.get(qi)
        if not s or not s[2]:
            return None
        rms = np.sqrt(s[1] / s[2])
        floor = max(1e-3 * float(np.sqrt(s[1].sum() / (s[2] * len(s[1])))), 1e-12)
        return float((s[0] / s[2] / np.maximum(rms, floor)).mean())

    rows = []
    for op in ops:
        outs = [int(o) for o in op["outputs"] if int(o) >= 0]
        errs = [e for e in (error(o) for o in outs) if e is not None]
        if not errs or op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            continue
        ins = [e for e in (error(int(i)) for i in op["inputs"] if int(i) >= 0) if e is not None]
        name = q_details[outs[0]]["name"]
        layer = out_layer.get(matched.get(outs[0], -1)) or layer_of(name, layers)
        rows.append({"op": int(op["index"]), "kind": op["op_name"], "tensor": name, "layer": layer,
                     "error": round(float(max(errs)), 6),
                     "added": round(float(max(errs) - max(ins, default=0.0)), 6)})
    worst = sorted(rows, key=lambda r: -r["added"])[:top]
    outputs = {d["name"]: round(float(e), 6) for d in q_it.get_output_details()
               if (e := error(int(d["index"]))) is not None}
    return {"samples": int(len(x)), "ops_matched": len(rows), "ops": len(ops), "worst": worst, "outputs": outputs,
            "all": rows}
