"""Segmentation on shapes-seg at 128 px (issue 41): DeepLabv3+ on
MobileNetEdgeTPUV2-XS against Autoseg-EdgeTPU-XS against a model found by
`odml search --task segment` (the autoseg64 space at 128 px, the target the
Autoseg file's int8 host latency), each trained for the same wall time (one
pilot epoch measures an epoch's training time, then as many epochs as fit
the budget; the schedule ends with them), exported int8 with parity, and
measured on this host: mIoU and pixel accuracy of the int8 file on the
validation split, host latency (odml bench: LiteRT, XNNPACK, one thread),
parameters. The search's own time is reported beside. Then each finalize
method of export (`--finalize`) on the Autoseg file: its latency and mIoU
against the plain logits file.

    python tests/bench/segmentation.py [--minutes 8] [--search-minutes 12] [--images 2000] [--width 1.0]

Prints Markdown tables (docs/benchmarks/segmentation.md)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ODML = str(Path(sys.executable).with_name("odml"))
MODELS = ("deeplabv3plus_edgetpu_xs", "autoseg_edgetpu_xs")
FINALIZE = ("resize128,argmax", "resize64,argmax,resize128,squeeze", "resize32,argmax,resize128,squeeze")


def run(*args: str) -> dict:
    p = subprocess.run([ODML, *args, "--json"], capture_output=True, text=True)
    if p.returncode not in (0, 1):
        raise SystemExit(f"odml {' '.join(args)}: {p.stderr.strip()[-400:]}")
    return json.loads(p.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--search-minutes", type=float, default=12.0)
    a = ap.parse_args()
    data = f"shapes-seg:{a.images}"
    rows, finals, search = [], [], {}
    with tempfile.TemporaryDirectory() as t:
        d = Path(t)

        def trained(label: str, model: str, extra: list[str]) -> None:
            common = [model, "--data", data, *extra]
            pilot = run("train", *common, "--epochs", "1", "--out", str(d / f"{label}_pilot.keras"),
                        "--no-tensorboard")["train"]
            per_epoch = pilot["train_wall_s"]  # the epoch alone (its trace included), not the process's start
            epochs = max(1, int(a.minutes * 60 / per_epoch))
            res = run("train", *common, "--epochs", str(epochs), "--out", str(d / f"{label}.keras"),
                      "--no-tensorboard")["train"]
            exp = run("export", str(d / f"{label}.keras"), "--data", data, "--quantize", "int8", "--out",
                      str(d / label))["export"]
            art = next(x for x in exp["artifacts"] if x["precision"] == "int8")
            b = run("bench", str(d / label / art["file"]), "--data", data)["bench"][0]
            c = b["classification"]
            rows.append((label, res["params"], epochs, res["train_wall_s"], res["val_miou"], c["miou"], c["accuracy"],
                         b["median_ms"], art["parity"].get("agreement")))
            print(rows[-1], file=sys.stderr)

        for name in MODELS:
            trained(name, name, ["--input-size", "128", "--width", str(a.width)])
        target = rows[1][7]  # the Autoseg file's int8 host latency
        t0 = time.perf_counter()
        s = run("search", "--space", "autoseg64", "--task", "segment", "--input-size", "128", "--data", data,
                "--target-ms", f"{target:.3f}", "--trials", "200", "--epochs", "3", "--batch-size", "16", "--lr",
                "0.005", "--max-minutes", str(a.search_minutes), "--out", str(d / "search"))["search"]
        search = {"wall_s": time.perf_counter() - t0, "trials": s["trials"], "target_ms": target,
                  "best": s["best"]}
        print(search, file=sys.stderr)
        trained("searched", str(d / "search" / "best_spec.json"), [])
        auto = MODELS[1]
        plain = run("bench", str(d / auto / f"{auto}_int8.tflite"), "--data", data)["bench"][0]
        for method in FINALIZE:
            out = d / f"final_{method.replace(',', '_')}"
            exp = run("export", str(d / f"{auto}.keras"), "--data", data, "--quantize", "int8", "--finalize", method,
                      "--out", str(out))["export"]
            art = next(x for x in exp["artifacts"] if x["precision"] == "int8")
            b = run("bench", str(out / art["file"]), "--data", data)["bench"][0]
            finals.append((method, b["median_ms"], b["median_ms"] / plain["median_ms"], b["classification"]["miou"],
                           plain["classification"]["miou"]))
            print(finals[-1], file=sys.stderr)
    print(f"Data: {data} at 128x128 (11 classes), {a.minutes:g} minutes of training each, width {a.width:g}.\n")
    b = search["best"]
    print(f"Search: autoseg64 at 128 px, evolution, target {search['target_ms']:.3f} ms (the Autoseg file's), "
          f"{search['trials']} trials of 3 proxy epochs in {search['wall_s'] / 60:.1f} min; best: {b['line']} "
          f"(proxy mIoU {b['accuracy']:.4f}, {b['latency_ms']:.3f} ms).\n")
    print("| model | params | epochs | train wall s | val mIoU (Keras) | int8 mIoU | int8 pixel acc | int8 host ms "
          "| int8 label agreement |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, params, epochs, wall, miou, miou8, acc8, ms, agree in rows:
        print(f"| {name} | {params:,} | {epochs} | {wall:.0f} | {miou:.4f} | {miou8:.4f} | {acc8:.4f} | {ms:.3f} | "
              f"{agree if agree is None else f'{agree:.3f}'} |")
    print("\nFinalize methods on the Autoseg int8 file (host latency against the logits file, mIoU of the label map):\n")
    print("| --finalize | host ms | vs logits file | mIoU | logits file mIoU |")
    print("|---|---:|---:|---:|---:|")
    for method, ms, ratio, miou, base in finals:
        print(f"| {method} | {ms:.3f} | {ratio:.2f}x | {miou:.4f} | {base:.4f} |")


if __name__ == "__main__":
    main()
