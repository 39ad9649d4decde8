"""Describe a .tflite or .onnx file: size, inputs and outputs (shape, dtype,
quantization), op histogram, parameters, metadata and Edge TPU compatibility.
No TensorFlow, and no native interpreter: a malformed file cannot crash it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from odml.flatbuffer import ModelFormatError, parse_tflite, sniff_format


def inspect_model(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ModelFormatError(f"{p}: file not found")
    data = p.read_bytes()
    if p.suffix.lower() == ".onnx":
        return _inspect_onnx(p, data)
    if p.suffix.lower() != ".tflite" and sniff_format(data) == "onnx":
        return _inspect_onnx(p, data)
    m = parse_tflite(data, str(p))
    from odml.exporters.edgetpu import compatibility
    from odml.exporters.metadata import MetadataError, read_metadata

    try:
        meta = read_metadata(data, m.metadata)
    except MetadataError as e:
        meta = {"error": str(e)}
    return {
        "file": str(p), "format": "tflite", "size_bytes": m.size_bytes, "subgraphs": m.subgraphs,
        "description": m.description,
        "inputs": [t.to_dict() for t in m.inputs], "outputs": [t.to_dict() for t in m.outputs],
        "ops": m.op_histogram, "op_count": len(m.ops), "params": m.params, "weight_bytes": m.weight_bytes,
        "weight_dtypes": m.weight_dtypes, "metadata": meta, "edgetpu": _edgetpu_summary(m, compatibility),
    }


def _edgetpu_summary(m: Any, compatibility: Any) -> dict[str, Any]:
    c = compatibility(m)
    return {k: c[k] for k in ("fully_mapped", "on_edgetpu", "on_cpu", "first_unsupported", "table")}


def _inspect_onnx(p: Path, data: bytes) -> dict[str, Any]:
    import onnx

    from odml.zoo.load import onnx_tensors

    try:
        model = onnx.load_from_string(data)
        onnx.checker.check_model(model)
    except Exception as e:
        raise ModelFormatError(f"{p}: not a valid ONNX model ({type(e).__name__}: {' '.join(str(e).split())[:150]})") from None

    inputs, outputs, params = onnx_tensors(model, p)
    return {
        "file": str(p), "format": "onnx", "size_bytes": len(data), "ir_version": model.ir_version,
        "producer": " ".join(x for x in (model.producer_name, model.producer_version) if x) or "unknown",
        "opsets": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "inputs": inputs, "outputs": outputs,
        "ops": dict(Counter(n.op_type for n in model.graph.node).most_common()),
        "op_count": len(model.graph.node), "params": params,
        "metadata": {e.key: e.value for e in model.metadata_props} or None,
    }
