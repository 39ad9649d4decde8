"""int8 on real weights (issue 39): per model, the converter's plain int8
file, the recipe odml's search chooses (exporters/int8_search.py:
litert-quantizer a8w8, a16w8 for the most sensitive ops, float for the
worst, the first stage in budget), and quantization-aware fine-tuning toward
the float outputs (compress/qat_targets.py; models that are tf_keras) —
each judged in its outputs' own measures against the float model (the
default int8 budget: keypoints 2% of the crop, boxes 2 px where the source
detects, probabilities 0.05, maps 0.90 pixel agreement, class scores 0.85
top-1, other outputs 0.25 relative error), with its size and host latency
against the fp16 file (odml's host bench: LiteRT, XNNPACK, one thread, all
files of a model measured in one child process).

Models: MediaPipe's BlazePose detector and full landmark model (odml's
rebuilds with the released weights, `odml zoo import-mediapipe`; synthetic
people), its selfie segmentation and hand landmark .tflite (crops of
scikit-image's photographs, tests/test_requantize.py), and the ONNX corpus
(tests/test_corpus.py: PP-OCR's text-line classifier on generated text
lines, the others on random inputs in range).

    python tests/bench/int8_budget.py [--keys bp_landmarks,mp_hand,...] [--qat-steps 300] [--json out.json]

Prints a Markdown table (docs/benchmarks/int8_budget.md)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODELS = ("bp_detector", "bp_landmarks", "mp_selfie", "mp_hand", "ocr_cls", "ocr_det", "ocr_rec", "orientation",
          "captcha_det", "nudenet")
N_CAL, N_VAL = 64, 32


def _load(key: str, work: Path):
    """(source, calibration inputs, parity inputs, what the inputs are)."""
    import numpy as np

    from odml.exporters.export import load_source

    if key.startswith("bp_"):
        src = load_source({"bp_detector": "blazepose_detector_released", "bp_landmarks": "blazepose_full_released"}[key])
        ds = src.family.read(src.card, "synthetic", 0.2, 0, n_val=N_VAL, n_cal=N_CAL)
        xv, xc = ds.sample("val", N_VAL)[0], ds.sample("train", N_CAL, 0)[0]
        return src, src.input.from_pixels(xc), src.input.from_pixels(xv), "synthetic people"
    from pretrained import fetch

    if key.startswith("mp_"):
        from test_corpus import TFLITE
        from test_requantize import photos

        opts, task, _ = TFLITE[key]
        rng = opts[opts.index("--input-range") + 1] if "--input-range" in opts else None
        src = load_source(str(fetch(key)), input_range=tuple(map(float, rng.split(","))) if rng else None, task=task)
        shape = src.input_shape
        return src, photos(key, N_CAL, 1, shape).astype(np.float32), photos(key, N_VAL, 2, shape).astype(np.float32), \
            "photo crops"
    from test_corpus import ONNX, text_lines

    opts, task, _ = ONNX[key]
    size = opts[opts.index("--input-size") + 1] if "--input-size" in opts else None
    rng = opts[opts.index("--input-range") + 1] if "--input-range" in opts else None
    src = load_source(str(fetch(key)), input_size=size, input_range=tuple(map(float, rng.split(","))) if rng else None,
                      task=task)
    if "--data" in opts:
        ds = src.family.read(src.card, str(text_lines(work / "text_lines", 120)), 0.2, 0, n_val=N_VAL, n_cal=N_CAL)
        xv, xc = ds.sample("val", N_VAL)[0], ds.sample("train", N_CAL, 0)[0]
        return src, src.input.from_pixels(xc), src.input.from_pixels(xv), "text lines"
    r = np.random.default_rng(0)
    return src, src.random_inputs(r, N_CAL), src.random_inputs(r, N_VAL), "random"


def measure(key: str, work: Path, qat_steps: int) -> dict:

    from odml.devices.host import HostOptions, bench_host_many
    from odml.exporters import int8_search as s8
    from odml.exporters.tflite import (DEFAULT_THRESHOLDS, budget_ratios, budget_text, judge, judge_outputs,
                                       keep_io, parity, parity_outputs)
    from odml.litert import load_interpreter, run_batch, run_outputs

    src, xc, xv, what = _load(key, work)
    th = DEFAULT_THRESHOLDS["int8"]
    ref = src.predict(xv)
    tensors = list(src.output.tensors)
    if tensors and not isinstance(ref, (list, tuple)):
        ref = [ref]

    def judge8(data):
        it = load_interpreter(data)
        if tensors:
            p = parity_outputs(ref, run_outputs(it, xv), [t.name for t in tensors], tensors)
            failed = judge_outputs(p, th)
        else:
            p = parity(ref, run_batch(it, xv), None, src.output.measure)
            failed = judge(p, th)
        return p, failed, budget_ratios(p, th), budget_text(p, th)

    row: dict = {"model": key, "inputs": what}
    t0 = time.perf_counter()
    fp16, fp32 = src.tflite("fp16"), src.tflite("fp32")
    plain = src.tflite("int8", None, xc, "float", N_CAL)
    files = {"fp16": fp16, "plain": plain}
    layers = [lay.name for lay in getattr(src.keras_model, "layers", [])] or None
    outputs = list(getattr(src.keras_model, "output_names", None) or [])
    res = s8.search(fp32, xc, judge8, layers, None, None, None, key, None, outputs)
    files["chosen"] = res.best.data
    row["recipe"] = res.best.recipe.describe() + ("" if res.chosen else " (the best; none in budget)")
    row["search_s"] = round(time.perf_counter() - t0, 1)
    row["steps"] = [[st.name, round(st.worst, 3), st.met, st.budget[:300]] for st in res.steps]
    km = src.keras_model
    if km is not None and qat_steps > 0 and type(km).__module__.startswith("tf_keras"):
        from odml.compress.qat_targets import qat_finetune, qat_tflite

        t1 = time.perf_counter()
        q = qat_tflite(qat_finetune(km, xc, steps=qat_steps), xc)
        files["qat"] = keep_io(q, src.input.name, tensors, "QAT file") if tensors else q
        row["qat_s"] = round(time.perf_counter() - t1, 1)
    else:
        row["qat"] = "not tf_keras" if km is None or not type(km).__module__.startswith("tf_keras") else "skipped"
    for name, data in files.items():
        p, failed, ratios, text = judge8(data)
        row[name] = {"budget": text, "met": not failed, "worst": round(max(ratios.values()), 3),
                     "size_kib": round(len(data) / 1024)}
    with tempfile.TemporaryDirectory() as d:
        paths = []
        for name, data in files.items():
            paths.append(Path(d) / f"{name}.tflite")
            paths[-1].write_bytes(data)
        ms = bench_host_many(paths, HostOptions(threads=1, runs=50))
    for (name, _), m in zip(files.items(), ms):
        row[name]["ms"] = round(float(m["median_ms"]), 2)
    for name in files:
        row[name]["vs_fp16"] = round(row[name]["ms"] / row["fp16"]["ms"], 2)
    return row


def _cell(r: dict) -> str:
    return f"{r['budget']} ({'in budget' if r['met'] else 'over'}); {r['size_kib']:,} KiB; {r['vs_fp16']:.2f}x fp16"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", default=",".join(MODELS))
    ap.add_argument("--qat-steps", type=int, default=300)
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for key in a.keys.split(","):
            try:
                rows.append(measure(key, Path(work), a.qat_steps))
            except Exception as e:  # noqa: BLE001 - a model that fails gets its line in the table
                rows.append({"model": key, "error": f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    print("| model | inputs | fp16 ms | int8 plain (converter) | chosen recipe | recipe's file | QAT |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | | | {r['error']} | | | |")
            continue
        qat = _cell(r["qat"]) if isinstance(r.get("qat"), dict) else r.get("qat", "-")
        print(f"| {r['model']} | {r['inputs']} | {r['fp16']['ms']:.2f} | {_cell(r['plain'])} | {r['recipe']} | "
              f"{_cell(r['chosen'])} | {qat} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
