"""Quantization-aware fine-tuning toward the float model's outputs
(compress/qat_targets.py, issue 39 part 4) on MediaPipe's BlazePose landmark
model (``blazepose_full_released``, imported into odml's data folder):
keypoints of the int8 file against the float model on 100 held-out synthetic
crops (mean over the 33 body points of the (x, y) distance / 256 * 100, % of
the crop), for the plain TF-converter int8 file (PTQ), the QAT model right
after ``quantize_apply`` (Keras, tfmot's own [-6, 6] ranges), at step 0 (ranges
from the float model's tensors) and after fine-tuning; the wall time; and,
with --latency, the int8 and fp16 files timed by interleaved invokes
under one thread.

    python tests/bench/qat_blazepose.py [--steps 300] [--lr 1e-5] [--batch 8] [--checks 150,300] [--latency]

Prints one line per figure (docs/benchmarks/int8_qat.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np


def keypoints_error(ref: np.ndarray, got: np.ndarray) -> float:
    r = ref.reshape(len(ref), 39, 5)[:, :33, :2]
    g = got.reshape(len(got), 39, 5)[:, :33, :2]
    return float(np.linalg.norm(r - g, axis=-1).mean() / 256 * 100)


def interleaved_ms(files: dict[str, bytes], x: np.ndarray, rounds: int = 30) -> dict[str, float]:
    """Median ms per invoke of each file, one thread, the files invoked in turn."""
    from odml.litert import load_interpreter

    its = {k: load_interpreter(d, threads=1) for k, d in files.items()}
    for it in its.values():
        d = it.get_input_details()[0]
        it.set_tensor(d["index"], x[:1].astype(np.float32))
        for _ in range(5):
            it.invoke()
    times: dict[str, list[float]] = {k: [] for k in its}
    for _ in range(rounds):
        for k, it in its.items():
            t = time.perf_counter()
            it.invoke()
            times[k].append(time.perf_counter() - t)
    return {k: float(np.median(v)) * 1e3 for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--checks", default="", help="steps at which the int8 file is made and measured")
    ap.add_argument("--latency", action="store_true")
    a = ap.parse_args()

    from odml.compress import qat_targets as Q
    from odml.exporters.export import load_source
    from odml.exporters.tflite import convert, keep_io, representative_from
    from odml.litert import load_interpreter, run_outputs

    src = load_source("blazepose_full_released")
    model = src.keras_model
    ds = src.family.read(src.card, "synthetic", 0.2, 0, n_val=100, n_cal=200)
    xv = src.input.from_pixels(ds.sample("val", 100)[0])
    xc = src.input.from_pixels(ds.sample("train", 200, 0)[0])
    ref = Q.float_outputs(model, xv)[0]

    def file_error(data: bytes) -> float:
        data = keep_io(data, src.input.name, src.output.tensors)
        return keypoints_error(ref, run_outputs(load_interpreter(data), xv)[0])

    ptq = convert(model, "int8", representative_from(xc, 200))
    print(f"PTQ (TF converter, 200 calibration inputs): {file_error(ptq):.2f}% of the crop", flush=True)
    raw = Q.quantize_model(model)
    print(f"QAT model right after quantize_apply (Keras): "
          f"{keypoints_error(ref, Q.float_outputs(raw, xv)[0]):.2f}%", flush=True)
    del raw

    box: dict[str, object] = {}
    made = Q.quantize_model
    Q.quantize_model = lambda m: box.setdefault("qat", made(m))  # the model being trained, for --checks
    checks = {int(c) for c in a.checks.split(",") if c}
    t0 = time.time()
    spent = [0.0]

    def progress(step: int, loss: float) -> None:
        if step % 25 == 0:
            print(f"step {step} loss {loss:.4f} ({time.time() - t0 - spent[0]:.0f} s training)", flush=True)
        if step in checks:
            t = time.time()
            e = file_error(Q.qat_tflite(box["qat"], xc))
            print(f"step {step}: int8 {e:.2f}% of the crop", flush=True)
            spent[0] += time.time() - t

    qat = Q.qat_finetune(model, xc, steps=a.steps, batch=a.batch, lr=a.lr, progress=progress)
    wall = time.time() - t0 - spent[0]
    data = Q.qat_tflite(qat, xc)
    print(f"after {a.steps} steps (lr {a.lr}, batch {a.batch}): int8 {file_error(data):.2f}% of the crop, "
          f"{wall:.0f} s (quantize_apply, ranges, targets and training)", flush=True)
    if a.latency:
        fp16 = convert(model, "fp16")
        ms = interleaved_ms({"int8 (QAT)": data, "int8 (PTQ)": ptq, "fp16": fp16}, xv)
        print("latency, 1 thread, interleaved: " + ", ".join(f"{k} {v:.1f} ms" for k, v in ms.items()), flush=True)


if __name__ == "__main__":
    main()
