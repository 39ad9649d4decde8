"""Acceptance benchmark of BlazePose (issue 8), on synthetic people:

1. train the detector and the landmark model (--variant, default lite) for a
   few minutes through `odml train blazepose`'s code; PCK@0.2 (torso) of the
   landmark model on held-out synthetic images (ground-truth ROI), of its
   heatmap, and of the whole pipeline (detector -> ROI -> landmarks);
2. export the trained landmark model and detector to fp16 and int8 TFLite
   (calibrated on synthetic crops) with `odml export`'s code: op sets, sizes,
   PCK of the int8 landmark model through LiteRT;
3. the full landmark model (3.26M parameters; latency does not depend on its
   weights) to fp16 and int8: op set and host latency (1 thread, XNNPACK);
4. parameter counts and MACs of every model.

    python tests/bench/pose_synthetic.py --steps 300,700,2000

Prints the figures and writes runs/bench_pose/report.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    from odml.devices.host import HostOptions, bench_host
    from odml.exporters.export import ExportOptions, load_source, run_export
    from odml.pose.pipeline import PoseTracker
    from odml.data.pose_items import Samples
    from odml.train.pose import PoseTrainConfig, evaluate_pipeline, train_pose
    from odml.zoo.poseconfig import count, pose_config

    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", default="300,700,2000", help="detector, heatmap and regression steps (batch 8)")
    ap.add_argument("--variant", default="lite")
    ap.add_argument("--out", default="runs/bench_pose")
    ap.add_argument("--val-images", type=int, default=200)
    a = ap.parse_args()
    root = Path(a.out)
    root.mkdir(parents=True, exist_ok=True)
    d, h, r = (int(v) for v in a.steps.split(","))
    cfg = PoseTrainConfig(landmark=f"blazepose_{a.variant}", detector_steps=d, heatmap_steps=h, regression_steps=r,
                          val_images=a.val_images)
    t0 = time.perf_counter()
    res = train_pose("synthetic", root / "model", cfg, log=lambda m: print(f"{time.perf_counter() - t0:7.1f}s {m}",
                                                                            flush=True))
    report: dict = {"train": res}
    lm = res["landmarks"]
    print(f"trained in {res['wall_s']:.0f} s ({res['stages']}): landmark PCK@0.2 {lm['pck@0.2']:.4f} "
          f"(COCO-17 {lm['pck@0.2_coco17']:.4f}, heatmap {lm['pck@0.2_heatmap']:.4f}); pipeline PCK@0.2 "
          f"{res['pipeline']['pck@0.2']:.4f}; detector ROI recall {res['detector']['roi_recall']:.4f}", flush=True)

    def export(model: str, out: str) -> dict:
        src = load_source(model)
        ds = src.family.read(src.card, "synthetic", seed=1, n_val=50, n_cal=200)  # the family's export inputs
        x_val, x_cal = ds.x_val, ds.x_train
        rep = run_export(src, ExportOptions(precisions=["fp16", "int8"], out_dir=root / out, metadata=None),
                         x_val, None, x_cal, warn=lambda m: None)
        return {x["precision"]: {"file": str(root / out / x["file"]), "bytes": x["size_bytes"], "ops": x["ops"],
                                 "parity": x["parity"], "ok": not x["parity_failed"]} for x in rep["artifacts"]}

    exports = {"landmarks": export(str(root / "model" / "landmarks.keras"), "landmarks_export"),
               "detector": export(str(root / "model" / "detector.keras"), "detector_export"),
               "blazepose_full": export("blazepose_full", "full_export")}
    # the pipeline again with the int8 files
    val = Samples("synthetic", 0, a.val_images).val
    tr = PoseTracker(exports["detector"]["int8"]["file"], exports["landmarks"]["int8"]["file"])
    report["pipeline_int8"] = evaluate_pipeline(tr, val)
    print(f"pipeline PCK@0.2 with both models int8 (LiteRT): {report['pipeline_int8']['pck@0.2']:.4f}", flush=True)
    for prec in ("fp16", "int8"):
        report[f"landmarks_{prec}_pck@0.2"] = landmark_pck(exports["landmarks"][prec]["file"], val)
        print(f"landmark PCK@0.2 of the {prec} TFLite (LiteRT, ground-truth ROI): "
              f"{report[f'landmarks_{prec}_pck@0.2']:.4f}", flush=True)
    for model, precs in exports.items():
        for prec, e in precs.items():
            lat = bench_host(Path(e["file"]), HostOptions(threads=1, runs=50, min_secs=3.0))
            e["latency_ms"] = {"median": round(lat["median_ms"], 3), "p90": round(lat["p90_ms"], 3),
                               "runs": lat["count"]}
            print(f"{model} {prec}: {e['bytes']:,} bytes, ops {sorted(e['ops'])}, host median "
                  f"{lat['median_ms']:.2f} ms (1 thread), parity ok {e['ok']}", flush=True)
    report["exports"] = exports
    report["params"] = {n: {"params": count(pose_config(n))["params"], "macs": count(pose_config(n))["macs"]}
                        for n in ("blazepose_detector", "blazepose_lite", "blazepose_full")}
    released = {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "PAD", "RESHAPE", "RESIZE_BILINEAR", "MAX_POOL_2D", "LOGISTIC",
                "CONCATENATION", "QUANTIZE", "DEQUANTIZE"}  # the released models' ops (MediaPipe)
    report["builtin_only"] = not any(op.startswith(("CUSTOM", "Flex", "FLEX")) for p in exports.values()
                                     for e in p.values() for op in e["ops"])
    report["ops_beyond_the_released_models"] = {m: sorted({op for e in p.values() for op in e["ops"]} - released)
                                                for m, p in exports.items()}
    report["meets_pck_0.8"] = bool(lm["pck@0.2"] >= 0.8)
    (root / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "train"}, indent=1)[:4000])


def landmark_pck(tflite: str, val: list) -> float:
    """PCK@0.2 of a landmark .tflite on the held-out people's true ROIs (the
    crops evaluate_landmarks uses), through LiteRT."""
    import numpy as np

    from odml.litert import load_interpreter
    from odml.data.pose_geometry import pck
    from odml.train.pose import true_roi_crops
    from odml.zoo.poseconfig import LANDMARKS, NUM_KEYPOINTS

    it = load_interpreter(tflite)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    size = int(i["shape"][1])
    x, truth, mask, torso = true_roi_crops(val, size)
    preds = []
    for crop in x:
        it.set_tensor(i["index"], crop[None].astype(np.float32))
        it.invoke()
        preds.append(it.get_tensor(o["index"])[0][: 5 * LANDMARKS].reshape(LANDMARKS, 5)[:NUM_KEYPOINTS, :2] * size)
    return round(float(pck(np.stack(preds), truth, mask, torso)), 4)


if __name__ == "__main__":
    main()
