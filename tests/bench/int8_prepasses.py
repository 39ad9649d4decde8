"""Cheap int8 pre-passes (issue 39 part 3, ``exporters/prepass.py``), each
on and off, on real weights: how far each int8 file's output is from the
float32 file's, in the output's own measure, on held-out inputs.

Models and measures:
- ``blazepose``: MediaPipe's BlazePose full landmark model as odml imports
  it (``blazepose_full_released``, a tf_keras model converted to fp32),
  on the synthetic pose data (``--data synthetic``: calibration from the
  train split, evaluation on the val split); keypoints (output 0, 39 x (x,
  y, z, visibility, presence) in pixels of the 256 crop): the mean over the
  33 body points of the (x, y) distance, in % of the crop;
- ``mp_hand`` (hand_landmark_lite.tflite): its 21 keypoints (output 0, 21 x
  (x, y, z) in pixels of the 224 input), the (x, y) distance in % of 224;
- ``mp_selfie`` (selfie_segmentation.tflite): the mask (> 0.5), the % of
  pixels whose side differs.
The two .tflite files are fed crops of scikit-image's photographs that each
was made for (tests/test_requantize.py's ``photos``: the cameraman's hand;
the astronaut and the cameraman), calibration and evaluation from different
seeds.

Each int8 file is litert-quantizer's (a8w8, per-channel weights, float IO,
exporters/requantize.py's recipe and calibration); the pre-passes:
- off: litert-quantizer's own ranges ("min-max": a moving average of each
  calibration input's min and max);
- bias correction: ``bias_correct`` on the min-max file (sequential by
  level, median over inputs of the pre-activation mean error);
- percentile 99.9 / 99.99: ``percentile_ranges`` (and, with --variants,
  only where they narrow litert-quantizer's range: ``narrow_only``);
- MSE clipped: ``exporters.requantize._clipped`` (what requantize_report
  tries);
- CLE: cross-layer equalization of the depthwise-separable pairs
  (``equalize`` on the Keras model for BlazePose, ``equalize_tflite`` on the
  float file for the others; ReLU6 channels only where the calibration
  inputs stay below 6 / 2), then min-max: by the weights' per-channel ranges
  (Nagel et al.), and by the activations' (what the pointwise convolution
  reads, per channel, on the calibration inputs);
- combined: the pre-passes that helped on their own, stacked (CLE, then the
  best ranges, then bias correction), chosen on the evaluation figures
  themselves (a best case).

"vs off": the mean over the evaluation inputs of each input's drift less
off's, relative to off's mean drift, with two standard errors of that
paired difference (what 50 inputs can tell apart).

    python tests/bench/int8_prepasses.py [--models blazepose,mp_hand,mp_selfie] [--cal 64] [--val 50]
        [--bc-inputs 32] [--variants] [--json report.json]

Prints the markdown table of docs/benchmarks/int8_prepasses.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _blazepose(n_cal: int, n_val: int) -> dict:
    from odml.exporters.export import load_source
    from odml.exporters.requantize import float32_flatbuffer

    src = load_source("blazepose_full_released")
    ds = src.family.read(src.card, "synthetic", 0.2, 0, n_val=100, n_cal=200)
    xv = src.input.from_pixels(ds.sample("val", 100)[0])[:n_val]
    xc = src.input.from_pixels(ds.sample("train", 200, 0)[0])[:n_cal]

    def measure(ref: list, got: list) -> np.ndarray:
        a, b = ref[0].reshape(len(ref[0]), 39, 5), got[0].reshape(len(got[0]), 39, 5)
        return np.sqrt(((a[:, :33, :2] - b[:, :33, :2]) ** 2).sum(-1)).mean(1) / 256 * 100

    def cle(x: np.ndarray, by: str) -> tuple[bytes, dict]:
        from odml.exporters.prepass import equalize_report

        r = equalize_report(src.keras_model, x, by=by)
        return float32_flatbuffer(src.tflite("fp32", convertible=r.model), "blazepose CLE"), _cle_info(r)

    return {"fp32": float32_flatbuffer(src.tflite("fp32"), "blazepose"), "xc": xc, "xv": xv, "measure": measure,
            "unit": "% of the 256 crop (33 points, x y)", "cle": cle,
            "inputs": "synthetic pose data (odml's generator): calibration from train, evaluation from val"}


def _tflite(key: str, n_cal: int, n_val: int) -> dict:
    from pretrained import fetch
    from test_requantize import photos

    from odml.exporters.prepass import equalize_tflite
    from odml.exporters.requantize import float32_flatbuffer
    from odml.flatbuffer import parse_tflite

    f = float32_flatbuffer(fetch(key).read_bytes(), key)
    shape = tuple(parse_tflite(f, key).inputs[0].shape[1:])
    if key == "mp_hand":
        def measure(ref: list, got: list) -> np.ndarray:
            a, b = ref[0].reshape(len(ref[0]), 21, 3), got[0].reshape(len(got[0]), 21, 3)
            return np.sqrt(((a[..., :2] - b[..., :2]) ** 2).sum(-1)).mean(1) / 224 * 100
        unit, what = "% of the 224 input (21 points, x y)", "crops of the cameraman's hand (scikit-image)"
    else:
        def measure(ref: list, got: list) -> np.ndarray:
            return ((ref[0] > 0.5) != (got[0] > 0.5)).reshape(len(ref[0]), -1).mean(1) * 100
        unit, what = "% of mask pixels on the other side of 0.5", "crops of the astronaut and the cameraman"

    def cle(x: np.ndarray, by: str) -> tuple[bytes, dict]:
        r = equalize_tflite(f, x, where=key, by=by)
        return r.model, _cle_info(r)

    return {"fp32": f, "xc": photos(key, n_cal, 1, shape), "xv": photos(key, n_val, 2, shape), "measure": measure,
            "unit": unit, "cle": cle, "inputs": what}


def _cle_info(r) -> dict:
    return {"pairs": len(r.pairs), "skipped": len(r.skipped), "channels_scaled": list(r.channels),
            "spread": [round(s, 1) for s in r.spread],
            "why_skipped": sorted({why for *_, why in r.skipped})}


def measure_model(name: str, n_cal: int, n_val: int, bc_inputs: int, variants: bool) -> dict:
    from odml.exporters.prepass import bias_correct, percentile_ranges
    from odml.exporters.requantize import _calibrate, _clipped, _outputs, _quantize
    from odml.flatbuffer import parse_tflite

    m = _blazepose(n_cal, n_val) if name == "blazepose" else _tflite(name, n_cal, n_val)
    f, xc, xv, measure = m["fp32"], m["xc"], m["xv"], m["measure"]
    model = parse_tflite(f, name)
    ref = _outputs(f, xv, name)
    xb = xc[:bc_inputs]
    rows: dict[str, dict] = {}

    per_input: dict[str, np.ndarray] = {}

    def add(label: str, data: bytes, t0: float, **info) -> None:
        v = per_input[label] = measure(ref, _outputs(data, xv, name))
        rows[label] = {"drift": round(float(v.mean()), 3), "seconds": round(time.perf_counter() - t0, 1), **info}
        if label != "off":  # the paired difference against off, per evaluation input: its mean and 2 standard errors
            d = v - per_input["off"]
            rows[label]["vs_off"] = [round(float(d.mean()), 3), round(float(2 * d.std(ddof=1) / np.sqrt(len(d))), 3)]
        print(f"  {name}: {label}: {rows[label]}", file=sys.stderr, flush=True)

    t = time.perf_counter()
    mm = _calibrate(f, model, xc, name)
    off = _quantize(f, model, "int8", xc, name, qsv=mm)
    add("off", off, t)
    files = {"off": off}
    t = time.perf_counter()
    bc, n = bias_correct(f, off, xb, name)
    add("bias correction", bc, t, ops=n)
    if variants:
        for label, kw in (("bias correction, single pass", {"steps": 1}),
                          ("bias correction, output mean (after the fused activation)", {"at": "output"}),
                          ("bias correction, mean over inputs (not median)", {"stat": "mean"}),
                          ("bias correction, ops without a fused activation only", {"ops": "linear"})):
            t = time.perf_counter()
            d, n = bias_correct(f, off, xb, name, **kw)
            add(label, d, t, ops=n)
    qsvs = {}
    for pct in (99.9, 99.99):
        t = time.perf_counter()
        qsvs[f"percentile {pct}"] = percentile_ranges(f, model, xc, mm, pct, name)
        files[f"percentile {pct}"] = _quantize(f, model, "int8", xc, name, qsv=qsvs[f"percentile {pct}"])
        add(f"percentile {pct}", files[f"percentile {pct}"], t)
    if variants:
        for pct in (99.9, 99.99):
            t = time.perf_counter()
            q = percentile_ranges(f, model, xc, mm, pct, name, narrow_only=True)
            add(f"percentile {pct}, narrowing only", _quantize(f, model, "int8", xc, name, qsv=q), t)
    t = time.perf_counter()
    qsvs["MSE clipped"] = _clipped(f, model, xc, mm, name)
    files["MSE clipped"] = _quantize(f, model, "int8", xc, name, qsv=qsvs["MSE clipped"])
    add("MSE clipped", files["MSE clipped"], t)
    eq = {}
    for label, by in (("CLE", "weights"), ("CLE by activations", "activations")):
        t = time.perf_counter()
        fe, info = m["cle"](xc, by)
        me = parse_tflite(fe, name)
        mm_e = _calibrate(fe, me, xc, name)
        eq[label] = (fe, me, mm_e)
        add(label, _quantize(fe, me, "int8", xc, name, qsv=mm_e), t, **info)
    # combined: what helped on its own, stacked (chosen on the evaluation figures themselves: a best case)
    base = rows["off"]["drift"]
    cle_best = min(eq, key=lambda k: rows[k]["drift"])
    use_cle = rows[cle_best]["drift"] < base
    ranges = min(("min-max", *qsvs), key=lambda k: rows["off" if k == "min-max" else k]["drift"])
    use_bc = rows["bias correction"]["drift"] < base
    t = time.perf_counter()
    cf, cm, cmm = eq[cle_best] if use_cle else (f, model, mm)
    if ranges == "min-max":
        cq = cmm
    elif ranges == "MSE clipped":
        cq = _clipped(cf, cm, xc, cmm, name)
    else:
        cq = percentile_ranges(cf, cm, xc, cmm, float(ranges.split()[1]), name)
    comb = _quantize(cf, cm, "int8", xc, name, qsv=cq)
    if use_bc:
        comb, _ = bias_correct(cf, comb, xb, name)
    parts = [p for p, on in ((cle_best, use_cle), (ranges, ranges != "min-max"), ("bias correction", use_bc)) if on]
    add("combined", comb, t, of=parts or ["nothing helped: off"])
    return {"model": name, "unit": m["unit"], "inputs": m["inputs"], "calibration": len(xc),
            "bias_correction_inputs": len(xb), "evaluation": len(xv), "rows": rows}


def table(results: list[dict]) -> str:
    out = ["| model | pre-pass | drift | vs off (± 2 SE, paired) | seconds | notes |", "|---|---|---|---|---|---|"]
    for r in results:
        off = r["rows"]["off"]["drift"]
        for k, (label, row) in enumerate(r["rows"].items()):
            notes = []
            if "ops" in row:
                notes.append(f"{row['ops']} ops corrected")
            if "pairs" in row:
                notes.append(f"{row['pairs']} pairs equalized, {row['skipped']} skipped "
                             f"({'; '.join(row['why_skipped'])}); channels scaled {row['channels_scaled'][0]} of "
                             f"{row['channels_scaled'][1]}; spread of the ranges equalized {row['spread'][0]} -> "
                             f"{row['spread'][1]}")
            if "of" in row:
                notes.append(" + ".join(row["of"]))
            name = f"{r['model']} ({r['unit']})" if k == 0 else ""
            rel = "" if label == "off" else \
                f"{row['vs_off'][0] / off * 100:+.0f}% ± {row['vs_off'][1] / off * 100:.0f}%"
            out.append(f"| {name} | {label} | {row['drift']:.3f} | {rel} | {row['seconds']:.0f} | {'; '.join(notes)} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="blazepose,mp_hand,mp_selfie")
    ap.add_argument("--cal", type=int, default=64)
    ap.add_argument("--val", type=int, default=50)
    ap.add_argument("--bc-inputs", type=int, default=32)
    ap.add_argument("--variants", action="store_true", help="also bias correction's variants")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    results = []
    for name in a.models.split(","):
        results.append(measure_model(name, a.cal, a.val, a.bc_inputs, a.variants))
        if a.json:
            Path(a.json).write_text(json.dumps(results, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
