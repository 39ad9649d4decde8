"""The host's per-op profile against the whole model (issue 40): for each
model, `odml bench --op-profile` (each op cut out and timed alone by
LiteRT with XNNPACK, one thread, less one empty invoke; devices/op_profile.py)
repeated ``--repeats`` times; the sum of the ops (and so of the blocks of an
odml spec) as a share of the benchmark's median of the whole model measured
in the same command. The figure that matters: how far the cut-up view is
from what an app sees (the issue's target: the blocks sum to within 15%).

Models: the demo's trained MobileNetEdgeTPUV2 (`make demo`:
runs/demo/export/model_{int8,fp32}.tflite), the zoo's MobileNetEdgeTPUV2-S
at 224 (random weights: timing does not depend on them) exported by odml,
and MediaPipe's released BlazePose detector and full landmark model when
imported (`odml zoo import-mediapipe`): real graphs whose layers are not
odml blocks.

    python tests/bench/op_profile.py [--repeats 3] [--models demo_int8,demo_fp32,...]

Prints a Markdown table (docs/benchmarks/op_profile.md)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ODML = str(Path(sys.executable).with_name("odml"))


def models(tmp: Path) -> dict[str, Path]:
    out = {"demo_int8": ROOT / "runs/demo/export/model_int8.tflite",
           "demo_fp32": ROOT / "runs/demo/export/model_fp32.tflite"}
    exp = tmp / "s224"
    subprocess.run([ODML, "export", "mobilenet_edgetpu_v2_s", "--quantize", "fp32,int8", "--calibration", "random",
                    "--out", str(exp)], check=True, capture_output=True)
    out["mnv2_s224_int8"] = exp / "mobilenet_edgetpu_v2_s_int8.tflite"
    out["mnv2_s224_fp32"] = exp / "mobilenet_edgetpu_v2_s_fp32.tflite"
    home = Path(os.environ.get("ODML_HOME", Path.home() / ".local/share/odml")) / "mediapipe_pose"
    out["blazepose_detector"] = home / "detector.tflite"
    out["blazepose_landmarks"] = home / "landmarks.tflite"
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", default=None)
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as t:
        found = models(Path(t))
        keys = a.models.split(",") if a.models else list(found)
        for k in keys:
            p = found[k]
            if not p.is_file():
                print(f"skip {k}: {p} not found", file=sys.stderr)
                continue
            ratios, whole, units, ops = [], [], 0, 0
            for _ in range(a.repeats):
                r = subprocess.run([ODML, "bench", str(p), "--op-profile", "--json"], capture_output=True, text=True,
                                   check=True)
                res = json.loads(r.stdout)["bench"][0]
                ob = res["op_breakdown"]
                ratios.append(ob["sum_ms"] / ob["bench_ms"])
                whole.append(ob["bench_ms"])
                units, ops = len(ob["units"]), len(ob["ops"])
            rows.append((k, ops, units, statistics.median(whole), min(ratios), statistics.median(ratios),
                         max(ratios)))
            print(f"{k}: {rows[-1]}", file=sys.stderr)
    print("| model | ops | blocks | whole model ms (median) | sum of ops / whole: min | median | max |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for k, ops, units, w, lo, med, hi in rows:
        print(f"| {k} | {ops} | {units or '-'} | {w:.4f} | {lo:.0%} | {med:.0%} | {hi:.0%} |")


if __name__ == "__main__":
    main()
