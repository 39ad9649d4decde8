"""odml's exports of MediaPipe's released pose models as drop-in files: fp16,
dynamic-range and int8 exports of the imported detector and full landmark
model (``odml export blazepose_*_released``), checked to keep the released
files' input and output tensors (names, shapes, order, dtypes), their drift
from the released files on real photographs and synthetic people, and their
host latency measured in the same run as the released files.

    odml zoo import-mediapipe
    python tests/bench/mediapipe_dropin.py --out runs/dropin [--threads 1]

Real inputs: crops of scikit-image's astronaut and cameraman around the ROI
the released pipeline finds, jittered (shift 5%, scale 10%, angle 0.15 rad:
what tracking feeds the landmark model), and the two photos letterboxed for
the detector. Calibration (int8) uses synthetic people only, never these.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

PRECISIONS = ["fp16", "dynamic", "int8"]
BODY = 33


def real_inputs(folder: Path, per_photo: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(landmark crops in [0, 1], detector inputs in [-1, 1]) of the two photos."""
    import skimage.data

    from odml.data.pose_geometry import Roi, crop_roi, letterbox
    from odml.pose.pipeline import PoseTracker

    rng = np.random.default_rng(seed)
    photos = [skimage.data.astronaut()[..., :3], np.stack([skimage.data.camera()] * 3, -1)]
    tracker = PoseTracker.released(folder, min_detection=0.4)
    crops = []
    for img in photos:
        tracker.reset()
        r = tracker.process(img)
        roi = r.roi
        for _ in range(per_photo):
            j = Roi(roi.cx + rng.normal(0, 0.05) * roi.size, roi.cy + rng.normal(0, 0.05) * roi.size,
                    roi.size * float(np.exp(rng.normal(0, 0.1))), roi.angle + rng.normal(0, 0.15))
            crops.append(crop_roi(img, j, 256) / 255.0)
    det = [letterbox(im, 224)[0] / 127.5 - 1.0 for im in photos]
    return np.stack(crops).astype(np.float32), np.stack(det).astype(np.float32)


def landmark_drift(ref: list[np.ndarray], got: list[np.ndarray]) -> dict[str, float]:
    """The 33 body keypoints' (x, y) distance in % of the 256 crop; the pose flag."""
    n = len(ref[0])
    a, b = ref[0].reshape(n, -1, 5)[:, :BODY], got[0].reshape(n, -1, 5)[:, :BODY]
    e = np.hypot(a[..., 0] - b[..., 0], a[..., 1] - b[..., 1]) / 256 * 100
    return {"xy_mean_pct": round(float(e.mean()), 4), "xy_median_pct": round(float(np.median(e)), 4),
            "xy_p95_pct": round(float(np.percentile(e, 95)), 4), "xy_max_pct": round(float(e.max()), 4),
            "flag_max": round(float(np.abs(ref[1] - got[1]).max()), 4), "inputs": n}


def detector_drift(ref: list[np.ndarray], got: list[np.ndarray]) -> dict[str, float]:
    """Boxes (px at 224) of the anchors the released file scores above 0.5; scores."""
    from odml.zoo.mediapipe import _sigmoid

    s = _sigmoid(ref[1][..., 0]) > 0.5
    box = np.abs(ref[0][..., :4] - got[0][..., :4])[s]
    return {"box_max_px": round(float(box.max()), 4) if box.size else None,
            "box_mean_px": round(float(box.mean()), 4) if box.size else None, "anchors": int(s.sum()),
            "score_max": round(float(np.abs(_sigmoid(ref[1]) - _sigmoid(got[1])).max()), 4)}


def io_of(path: Path) -> dict[str, list]:
    from odml.litert import load_interpreter

    it = load_interpreter(str(path))
    d = lambda ts: [(t["name"], t["shape"].tolist(), np.dtype(t["dtype"]).name) for t in ts]  # noqa: E731
    return {"inputs": d(it.get_input_details()), "outputs": d(it.get_output_details())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--folder", default=None, help="the import folder (default: odml's data home)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--calibration-samples", type=int, default=200)
    ap.add_argument("--per-photo", type=int, default=24)
    a = ap.parse_args()

    from odml.devices.device import BenchOptions, parse_device
    from odml.exporters.export import ExportOptions, load_source, run_export
    from odml.exporters.tflite import DEFAULT_THRESHOLDS, ParityThreshold, judge_outputs
    from odml.litert import load_interpreter, run_outputs
    from odml.zoo.mediapipe import FAMILIES, imported, not_imported_message

    folder = imported(a.folder)
    if folder is None:
        raise SystemExit(not_imported_message(a.folder))
    a.out.mkdir(parents=True, exist_ok=True)
    x_real_lm, x_real_det = real_inputs(folder, a.per_photo)
    report: dict = {"folder": str(folder), "threads": a.threads, "parts": {}}
    loose = ParityThreshold(0.0, 1e9)  # files written whatever their drift: the drift is what is measured here
    for part in ("detector", "landmarks"):
        src = load_source(FAMILIES[part])
        data = src.family.read(src.card, "synthetic", n_val=32, n_cal=a.calibration_samples)
        x_val, _ = data.sample("val")
        x_cal, _ = data.sample("train")
        out = a.out / part
        rep = run_export(src, ExportOptions(PRECISIONS, out, thresholds={p: loose for p in DEFAULT_THRESHOLDS}),
                         x_val, None, x_cal, warn=lambda s: None)
        released = folder / f"{part}.tflite"
        want = io_of(released)
        x_real = x_real_lm if part == "landmarks" else x_real_det
        drift = landmark_drift if part == "landmarks" else detector_drift
        ref_real = run_outputs(load_interpreter(str(released)), x_real)
        ref_syn = run_outputs(load_interpreter(str(released)), x_val)
        rows = {}
        for art in rep["artifacts"]:
            f = out / art["file"]
            got = io_of(f)
            it = load_interpreter(str(f))
            rows[art["precision"]] = {
                "file": str(f), "size_bytes": art["size_bytes"], "same_io_as_released": got == want,
                **({} if got == want else {"io": got}),
                "parity_failed_default_thresholds": judge_outputs(art["parity"], DEFAULT_THRESHOLDS[art["precision"]]),
                "drift_real": drift(ref_real, run_outputs(it, x_real)),
                "drift_synthetic": drift(ref_syn, run_outputs(it, x_val))}
            print(part, art["precision"], json.dumps(rows[art["precision"]]), flush=True)
        paths = [released] + [Path(r["file"]) for r in rows.values()]
        lat = parse_device("host").bench_many(paths, BenchOptions(threads=a.threads))
        report["parts"][part] = {"released_io": want, "released_size_bytes": released.stat().st_size,
                                 "exports": rows, "latency_ms": {}}
        for label, r in zip(["released"] + list(rows), lat):
            report["parts"][part]["latency_ms"][label] = {k: r.get(k) for k in ("median_ms", "mean_ms", "spread",
                                                                                  "stable", "error") if k in r}
            print(part, label, "latency", report["parts"][part]["latency_ms"][label], flush=True)
    (a.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print("wrote", a.out / "report.json")


if __name__ == "__main__":
    main()
