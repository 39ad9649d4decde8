"""Export MobileNetEdgeTPUV2-S at 224x224 to every precision and print the
figures: export wall time, file size per precision (and against fp32), and
parity with the Keras model.

No ImageNet weights can be downloaded here, so the model is first trained
briefly on the embedded digits upscaled to 224 (so that its logits mean
something when parity is judged on top-1 agreement).

    .venv/bin/python tests/bench/export_s224.py [--epochs 1] [--out runs/bench_s224]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--out", default="runs/bench_s224")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from odml.data.images import load_images
    from odml.train.trainer import TrainConfig, train_classifier
    from odml.zoo import create_spec

    spec = create_spec("mobilenet_edgetpu_v2_s", num_classes=10, input_size=224)
    t0 = time.perf_counter()
    res = train_classifier(spec, load_images("digits", (224, 224), 3, 0.2, 0),
                           TrainConfig(epochs=args.epochs, batch_size=32), out / "s224.keras")
    print(f"trained {spec.name} at 224 for {args.epochs} epoch(s) in {time.perf_counter() - t0:.0f} s: "
          f"val accuracy {res['val_accuracy']:.4f}, {res['params']:,} params, {res['macs'] / 1e6:.0f}M MACs")
    cmd = [sys.executable, "-c", "from odml.cli.app import main; main()", "export", str(out / "s224.keras"),
           "--data", "digits", "--quantize", "fp32,fp16,dynamic,int8", "--format", "tflite,onnx",
           "--out", str(out / "export"), "--json"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if not p.stdout.strip():
        print(p.stderr)
        raise SystemExit(p.returncode)
    rep = json.loads(p.stdout)["export"]
    print(f"odml export (4 TFLite precisions + ONNX, with parity): {wall:.1f} s wall, exit {p.returncode}")
    print(f"{'file':28} {'size MiB':>9} {'vs fp32':>8} {'convert s':>9} {'max err':>9} {'mean err':>9} "
          f"{'top-1 agree':>11} {'acc tflite/keras':>17}")
    for a in rep["artifacts"]:
        q = a["parity"]
        print(f"{a['file']:28} {a['size_bytes'] / 2**20:9.2f} {a.get('size_vs_fp32', 0):8.3f} {a['convert_s']:9.1f} "
              f"{q['max_abs_err']:9.2e} {q['mean_abs_err']:9.2e} {q.get('top1_agreement', 0):11.3f} "
              f"{q.get('tflite_accuracy', 0):8.4f}/{q.get('keras_accuracy', 0):.4f}")


if __name__ == "__main__":
    main()
