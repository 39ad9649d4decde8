"""Your own model through odml, the way a user brings it: Keras Applications'
MobileNetV2 built and trained with Keras 3 (96x96, 10 classes, the digits),
then through the CLI: export in every precision and ONNX (wall time, sizes,
parity), host latency, and compression with it as the teacher; and the same
for the ONNX route (the model as an NCHW ONNX graph, as PyTorch exports it,
converted back by onnx2tf).

    python tests/bench/own_model_mnv2.py --epochs 5 --compress-epochs 4 --out runs/bench_own

Prints the figures and writes report.json in --out."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def odml(*args: str) -> tuple[dict, float]:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", "from odml.cli.app import main; main()", *args, "--json"],
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"odml {' '.join(args)} failed: {p.stderr.strip()[-500:]}")
    return json.loads(p.stdout), wall


def route(name: str, model: Path, root: Path, extra: list[str], compress_epochs: int) -> dict:
    out = root / f"{name}_export"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    exp, wall = odml("export", str(model), "--data", "digits", "--quantize", "fp32,fp16,dynamic,int8", "--format",
                     "tflite,onnx", "--out", str(out), *extra)
    rep = exp["export"]
    res: dict = {"export_wall_s": round(wall, 1), "files": {}}
    for a in rep["artifacts"]:
        key = a["file"]
        p = a["parity"]
        res["files"][key] = {"precision": a["precision"], "bytes": a["size_bytes"], "max_abs_err": p["max_abs_err"],
                             "rel_mean_err": round(p["rel_mean_err"], 5), "top1": p.get("top1_agreement"),
                             "accuracy": p.get("tflite_accuracy"), "source_accuracy": p.get("keras_accuracy")}
    tfl = [str(out / a["file"]) for a in rep["artifacts"] if a["format"] == "tflite"]
    bench, _ = odml("bench", *tfl, "--threads", "1", "--runs", "50", "--min-secs", "1")
    for b in bench["bench"]:
        res["files"][Path(b["model"]).name]["median_ms"] = round(b["median_ms"], 3)
    cdir = root / f"{name}_compress"
    comp, wall = odml("compress", str(model), "--data", "digits", "--sizes", "0.5,0.25", "--epochs",
                      str(compress_epochs), "--runs", "30", "--out", str(cdir), *extra)
    c = comp["compress"]
    res["compress"] = {"wall_s": round(wall, 1), "teacher_accuracy": c["teacher"]["accuracy"],
                       "teacher_ms": c["teacher"]["latency_ms"],
                       "students": [{k: s[k] for k in ("label", "params", "accuracy", "int8_accuracy", "latency_ms",
                                                        "size_bytes", "speedup")} for s in c["students"]]}
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--compress-epochs", type=int, default=4)
    ap.add_argument("--out", default="runs/bench_own")
    a = ap.parse_args()
    root = Path(a.out)
    root.mkdir(parents=True, exist_ok=True)
    from odml._tf import tf

    tf()
    import keras

    from odml.data.images import load_images

    model = root / "mnv2_k3.keras"
    report: dict = {}
    if not model.is_file():
        keras.utils.set_random_seed(0)
        ds = load_images("digits", (96, 96), 3, 0.2, 0)
        net = keras.applications.MobileNetV2(input_shape=(96, 96, 3), weights=None, classes=10,
                                             classifier_activation=None)
        for layer in net.layers:  # 225 steps: at Keras' BN momentum 0.999 the moving statistics would lag far behind
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 0.9
        net.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["accuracy"])
        t0 = time.perf_counter()
        x, xv = ds.x_train / 127.5 - 1.0, ds.x_val / 127.5 - 1.0  # what Keras Applications' MobileNetV2 reads
        net.fit(x, ds.y_train, epochs=a.epochs, batch_size=32, verbose=2)
        report["keras_train_s"] = round(time.perf_counter() - t0, 1)
        report["keras_val_accuracy"] = float(net.evaluate(xv, ds.y_val, verbose=0)[1])
        net.save(model)
        (root / "keras.json").write_text(json.dumps(report))
    report.update(json.loads((root / "keras.json").read_text()))
    print(f"Keras 3 MobileNetV2 96x96: val accuracy {report['keras_val_accuracy']:.4f}", flush=True)
    report["keras3"] = route("keras3", model, root, ["--input-range", "-1,1"], a.compress_epochs)
    print(json.dumps(report["keras3"], indent=1), flush=True)
    # the ONNX route: the model as an NCHW graph (PyTorch's layout), from its fp32 TFLite through tf2onnx
    onnx_file = root / "mnv2_nchw.onnx"
    if not onnx_file.is_file():
        import tf2onnx

        fp32 = root / "keras3_export" / "mnv2_k3_fp32.tflite"
        tf2onnx.convert.from_tflite(str(fp32), input_names=None, output_names=None, opset=15,
                                    inputs_as_nchw=["image"], output_path=str(onnx_file))
    report["onnx"] = route("onnx", onnx_file, root, ["--input-range", "-1,1"], a.compress_epochs)
    print(json.dumps(report["onnx"], indent=1), flush=True)
    (root / "report.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
