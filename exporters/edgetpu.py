"""Edge TPU: lower a model so that it maps (grouped convolutions become
split/conv/concat), the per-op compatibility report (the rules of Coral's
"TensorFlow models on the Edge TPU": fully int8, static shapes, supported
ops; from the first unsupported op on, everything runs on the CPU), and
edgetpu_compiler when it is installed."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from odml.files import write_file
from odml.zoo.opmap import compiler_delegation, parse_compiler_log  # noqa: F401 (parse_compiler_log: re-exported)

# Operations the Edge TPU compiler maps (Coral's list; each has further limits)
SUPPORTED = {
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS", "FULLY_CONNECTED",
    "GATHER", "HARD_SWISH", "L2_NORMALIZATION", "LOGISTIC", "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL",
    "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE",
    "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SPLIT_V",
    "SQUARED_DIFFERENCE", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
}
INT_TYPES = {"int8", "uint8", "int32"}  # int32: biases
MAPPED = "Mapped to Edge TPU"


def lower_for_edgetpu(km: Any) -> tuple[Any, int]:
    """A copy of Keras model ``km`` with every grouped Conv2D replaced by
    split/conv/concat and the same weights; (model, number replaced)."""
    from odml._tf import keras
    from odml.zoo.blocks import SplitGroupConv2D

    K = keras()
    grouped = {l.name for l in km.layers if isinstance(l, K.layers.Conv2D)
               and not isinstance(l, K.layers.DepthwiseConv2D) and l.groups > 1}
    if not grouped:
        return km, 0

    def clone(layer):
        if layer.name in grouped:
            return SplitGroupConv2D(layer.filters, layer.kernel_size, layer.strides, layer.groups,
                                    layer.padding, layer.use_bias, name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    new = K.models.clone_model(km, clone_function=clone)
    for layer in km.layers:
        target = new.get_layer(layer.name)
        if layer.name in grouped:
            w = layer.get_weights()
            target.set_from_grouped(w[0], w[1] if len(w) > 1 else None)
        elif layer.weights:
            target.set_weights(layer.get_weights())
    return new, len(grouped)


def compatibility(model: Any) -> dict[str, Any]:
    """Per-op Edge TPU compatibility of a parsed TFLiteModel."""
    raw = model.raw
    sg = raw.subgraphs[0]
    tensors = sg.tensors or []
    from odml.flatbuffer import _TYPE_NAMES

    buffers = raw.buffers or []

    def is_const(i: int) -> bool:
        b = buffers[tensors[i].buffer] if tensors[i].buffer < len(buffers) else None
        return b is not None and ((b.data is not None and len(b.data) > 0) or bool(b.offset))

    def dtype(i: int) -> str:
        return _TYPE_NAMES.get(tensors[i].type, "?") if i >= 0 else "none"

    graph_inputs = set(int(i) for i in (sg.inputs if sg.inputs is not None else []))
    graph_outputs = set(int(i) for i in (sg.outputs if sg.outputs is not None else []))
    rows: list[dict[str, Any]] = []
    first_bad = None
    multi = len(raw.subgraphs) > 1
    for k, (op, name) in enumerate(zip(sg.operators or [], model.ops)):
        ins = [int(i) for i in (op.inputs if op.inputs is not None else []) if i >= 0]
        outs = [int(i) for i in (op.outputs if op.outputs is not None else []) if i >= 0]
        reason = None
        io_conversion = (name == "QUANTIZE" and set(ins) <= graph_inputs) or (
            name == "DEQUANTIZE" and set(outs) <= graph_outputs)
        if io_conversion:
            rows.append({"index": k, "op": name, "status": "Runs on CPU (input/output conversion)"})
            continue
        if multi:
            reason = "More than one subgraph is not supported"
        elif name not in SUPPORTED:
            reason = "Operation not supported"
        elif any(dtype(i) not in INT_TYPES for i in ins + outs):
            reason = "Operation is working on an unsupported data type"
        elif any(-1 in (tensors[i].shapeSignature if tensors[i].shapeSignature is not None else []) for i in ins + outs):
            reason = "Dynamic-sized tensors are not supported"
        elif any(sum(1 for d in (tensors[i].shape if tensors[i].shape is not None else []) if d != 1) > 3
                 for i in ins + outs if not is_const(i)):
            reason = "Tensor has more than 3 non-unit dimensions"
        elif name == "CONV_2D" and len(ins) >= 2:
            cin = tensors[ins[0]].shape[-1]
            fin = tensors[ins[1]].shape[-1]
            if cin != fin:
                reason = f"Grouped convolution ({cin // max(1, fin)} groups) is not supported"
        if reason and first_bad is None:
            first_bad = {"index": k, "op": name, "reason": reason}
        if reason:
            status = reason
        elif first_bad is not None:
            status = "Runs on CPU: after the first unsupported operation"
        else:
            status = MAPPED
        rows.append({"index": k, "op": name, "status": status})
    table = Counter((r["op"], r["status"]) for r in rows)
    on_tpu = sum(1 for r in rows if r["status"] == MAPPED)
    return {
        "on_edgetpu": on_tpu,
        "on_cpu": len(rows) - on_tpu,
        "first_unsupported": first_bad,
        "fully_mapped": first_bad is None,
        "table": [{"operator": op, "count": n, "status": st} for (op, st), n in sorted(table.items())],
        "ops": rows,
    }


def try_compile(tflite: Path, out_dir: Path, warn: Callable[[str], None]) -> dict[str, Any]:
    exe = shutil.which("edgetpu_compiler")
    if exe is None:
        warn("edgetpu_compiler is not on the PATH (it ships only from Coral's apt repository): "
             "wrote the Edge TPU-compatible int8 model uncompiled")
        return {"available": False}
    p = subprocess.run([exe, "-s", "-o", str(out_dir), str(tflite)], capture_output=True, text=True, timeout=600)
    log = p.stdout + p.stderr
    write_file(out_dir / (tflite.stem + "_compiler.log"), log)
    parsed = parse_compiler_log(log)
    return {"available": True, "returncode": p.returncode, **parsed, "delegation": compiler_delegation(parsed)}
