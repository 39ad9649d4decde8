"""ONNX through tf2onnx, from the fp32 .tflite (the direct Keras path fails on
grouped convolutions), checked with onnx.checker and run with onnxruntime for
parity against the source model."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from odml.exporters.tflite import ExportError, ParityThreshold, judge, judge_outputs, parity, parity_outputs

OPSET = 15


def export_onnx(fp32_tflite: bytes, out: Path, x: np.ndarray, ref: Any, labels: np.ndarray | None,
                threshold: ParityThreshold, names: list[str] | None = None, measures: list[str] | None = None,
                measure: str = "top1") -> dict[str, Any]:
    """``names``: the outputs by name (``ref`` a list in that order, each
    judged by its measure: ``measures``): the ONNX graph keeps the .tflite's
    outputs, each checked; without names one output judged by ``measure``."""
    import onnx
    import onnxruntime as ort
    from tf2onnx import convert as t2o

    from odml._tf import quiet_stderr_fd

    t0 = time.perf_counter()
    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(fp32_tflite)
        f.flush()
        try:
            with quiet_stderr_fd():
                t2o.from_tflite(f.name, opset=OPSET, output_path=str(out))
        except Exception as e:
            raise ExportError(f"ONNX conversion failed: {type(e).__name__}: {' '.join(str(e).split())[:200]}") from None
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    runs = [sess.run(None, {name: x[i:i + 1].astype(np.float32)}) for i in range(len(x))]
    if names:
        onnx_names = [o.name for o in sess.get_outputs()]
        if [n.split(":")[0] for n in onnx_names] != names:
            raise ExportError(f"ONNX conversion changed the outputs: {', '.join(onnx_names)} where "
                              f"{', '.join(names)} are expected")
        ys = [np.concatenate([r[k] for r in runs]) for k in range(len(names))]
        p = parity_outputs(ref, ys, names, measures, labels)
        failed = judge_outputs(p, threshold)
    else:
        p = parity(ref, np.concatenate([r[0] for r in runs]), labels, measure)
        failed = judge(p, threshold)
    return {"file": out.name, "format": "onnx", "precision": "fp32", "io": "float", "size_bytes": out.stat().st_size,
            "convert_s": round(time.perf_counter() - t0, 2), "opset": OPSET,
            "ops": dict(sorted({n.op_type: sum(1 for m in model.graph.node if m.op_type == n.op_type)
                                for n in model.graph.node}.items())),
            "checker": "passed", "parity": p, "parity_threshold": vars(threshold),
            "parity_failed": failed}
