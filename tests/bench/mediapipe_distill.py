"""MediaPipe's released full landmark model compressed into odml's lite
landmark model: `odml compress blazepose_full_released --students
blazepose_lite` on synthetic people (resumable: a finished run is read
back), then the student against the teacher on real photographs too (the
jittered crops of scikit-image's astronaut and cameraman that
mediapipe_dropin.py uses), and the latency of the teacher (the released file
and odml's fp16 and int8 exports of it) and the student (fp16, int8) in one
run on the host.

    odml zoo import-mediapipe
    python tests/bench/mediapipe_distill.py --out runs/pose_distill [--steps 700,2000] [--dropin runs/dropin]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", default="700,2000")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dropin", type=Path, default=None, help="mediapipe_dropin.py's --out: its exports are timed too")
    a = ap.parse_args()

    from mediapipe_dropin import real_inputs

    from odml.compress.run import CompressOptions, prepare, run
    from odml.data.pose import LEFT_SHOULDER, NUM_KEYPOINTS, RIGHT_HIP
    from odml.data.pose_geometry import pck
    from odml.devices.device import BenchOptions, parse_device
    from odml.litert import load_interpreter, run_outputs
    from odml.zoo.mediapipe import imported, landmarks_as_odml

    folder = imported()
    if folder is None:
        raise SystemExit("run 'odml zoo import-mediapipe' first")
    rep = run(prepare(CompressOptions(teacher="blazepose_full_released", students=["blazepose_lite"], out=str(a.out),
                                      steps=a.steps, threads=a.threads)), on_stage=print)
    s = rep["students"][0]
    x, _ = real_inputs(folder, 24)
    teacher = run_outputs(load_interpreter(str(folder / "landmarks.tflite")), x)
    t = np.stack([landmarks_as_odml([o[i] for o in teacher], 35) for i in range(len(x))])
    tk = t[:, :175].reshape(len(x), 35, 5)[:, :NUM_KEYPOINTS]
    t_xy = tk[..., :2] * 256
    torso = np.hypot(*(t_xy[:, LEFT_SHOULDER] - t_xy[:, RIGHT_HIP]).T)
    mask = (tk[..., 4] > 0.5).astype(np.float32)
    real = {}
    for prec in ("fp16", "int8"):
        y = run_outputs(load_interpreter(str(a.out / s[f"{prec}_tflite"])), x)[0]
        s_xy = y[:, :175].reshape(len(x), 35, 5)[:, :NUM_KEYPOINTS, :2] * 256
        real[prec] = round(pck(s_xy, t_xy, mask, torso), 4)
    print("student PCK@0.2 vs teacher on real-photo crops:", real, f"({len(x)} crops)")
    files = {"released landmarks.tflite": folder / "landmarks.tflite"}
    if a.dropin:
        for prec in ("fp16", "int8"):
            files[f"odml {prec} of the released model"] = a.dropin / "landmarks" / f"blazepose_full_released_{prec}.tflite"
    for prec in ("fp16", "int8"):
        files[f"student {prec}"] = a.out / s[f"{prec}_tflite"]
    lat = parse_device("host").bench_many(list(files.values()), BenchOptions(threads=a.threads))
    timing = {}
    for (label, f), r in zip(files.items(), lat):
        timing[label] = {"file": str(f), "size_bytes": f.stat().st_size, "median_ms": r.get("median_ms"),
                         "spread": r.get("spread"), "stable": r.get("stable")}
        print(f"{label:36s} {f.stat().st_size / 1024:9,.0f} KiB {r.get('median_ms', float('nan')):8.3f} ms "
              f"spread {r.get('spread', float('nan')):.3f}")
    summary = {"synthetic": {k: s.get(k) for k in ("pck@0.2_vs_teacher", "fp16_pck@0.2_vs_teacher",
                                                   "int8_pck@0.2_vs_teacher", "pck@0.2_vs_truth",
                                                   "teacher_pck@0.2_vs_truth", "people", "params", "train_s",
                                                   "steps")},
               "real_photo_crops": {"pck@0.2_vs_teacher": real, "crops": len(x)}, "latency": timing}
    (a.out / "bench.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary["synthetic"]))


if __name__ == "__main__":
    main()
