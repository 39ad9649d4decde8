"""The corpus of real pretrained graphs (tests/pretrained.py) through odml as a
user runs it, with the figures issue 38 asks for, per graph: exporter, op
count, conversion wall time, fp32 and fp16 parity per output, and host
latency of odml's fp32 and fp16 files against the source's own runtime on the
same input (onnxruntime for an .onnx, LiteRT on the original file for a
.tflite), one thread each.

    .venv/bin/python tests/bench/corpus.py [--only ocr_det,mp_hand] [--json out.json]

Each export runs in its own process (`odml export ... --json`), as a user's
would; latency: odml's host bench (`odml bench --json`, XNNPACK, one thread,
median of three instances' medians) for .tflite files, and for onnxruntime a
session with one intra-op thread timed the same way (median of 3 x 50 runs
after 10 warm-up runs), on the same random input.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pretrained import MODELS, fetch  # noqa: E402
from test_corpus import ONNX, TFLITE, text_lines  # noqa: E402


def odml(*args: str, timeout: int = 1800) -> dict:
    cmd = [sys.executable, "-c", "from odml.cli.app import main; main()", *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["?"])[-1], "exit": r.returncode}
    return json.loads(r.stdout)


def ort_latency(path: Path, shape: list[int]) -> float:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    meds = []
    for _ in range(3):
        for _ in range(10):
            sess.run(None, {name: x})
        ts = []
        for _ in range(50):
            t = time.perf_counter()
            sess.run(None, {name: x})
            ts.append((time.perf_counter() - t) * 1e3)
        meds.append(statistics.median(ts))
    return statistics.median(meds)


def one(key: str, work: Path) -> dict:
    opts, task, _ = {**ONNX, **TFLITE}[key]
    src = fetch(key)
    m = MODELS[key]
    row: dict = {"key": key, "package": f"{m.package} {m.version}", "file": src.name, "exporter": m.exporter,
                 "task": task}
    out = work / key
    opts = [str(text_lines(work / "text_lines")) if o == "TEXT_LINES" else o for o in opts]  # printed text lines
    t0 = time.perf_counter()
    rep = odml("export", src, *opts, "--task", task, "--quantize", "fp32,fp16", "--parity-samples", "8", "--out", out,
               "--json")
    row["export_wall_s"] = round(time.perf_counter() - t0, 1)
    if "error" in rep:
        row["error"] = rep["error"]
        return row
    rep = rep["export"]
    info = rep.get("source_info") or {}
    row.update(ops=info.get("ops"), ops_prepared=info.get("ops_prepared"), convert_s=info.get("convert_s"),
               settings=info.get("settings"), steps=info.get("steps"), producer=info.get("exporter"))
    if src.suffix == ".tflite":
        row["ops"] = sum(info.get("ops", {}).values()) if isinstance(info.get("ops"), dict) else info.get("ops")
    row["input"] = rep["input_shape"]
    row["parity"] = {a["precision"]: {n: {k: q[k] for k in ("measure", "rel_mean_err", "max_abs_err", "agreement",
                                                            "top1_agreement") if k in q}
                                      for n, q in a["parity"]["outputs"].items()} for a in rep["artifacts"]}
    row["parity_failed"] = {a["precision"]: a["parity_failed"] for a in rep["artifacts"] if a["parity_failed"]}
    files = {a["precision"]: out / a["file"] for a in rep["artifacts"]}
    benched = [files["fp32"], files["fp16"]] + ([src] if src.suffix == ".tflite" else [])
    b = odml("bench", *benched, "--runs", "50", "--json")
    if "error" in b:
        row["bench_error"] = b["error"]
        return row
    ms = [r["median_ms"] for r in b["bench"]]
    row["odml_fp32_ms"], row["odml_fp16_ms"] = ms[0], ms[1]
    if src.suffix == ".tflite":
        row["source_ms"], row["source_runtime"] = ms[2], "LiteRT (the original file)"
    else:
        h, w, c = rep["input_shape"]
        import onnx

        g = onnx.load(str(src))
        dims = [d.dim_value for d in g.graph.input[0].type.tensor_type.shape.dim]
        nchw = not (dims[3:4] == [c] and dims[1:2] != [c])
        row["source_ms"] = ort_latency(src, [1, c, h, w] if nchw else [1, h, w, c])  # dynamic sizes: this one
        row["source_runtime"] = "onnxruntime (the original graph)"
    return row


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    keys = [k for k in (a.only.split(",") if a.only else [*ONNX, *TFLITE]) if k]
    rows = []
    with tempfile.TemporaryDirectory(prefix="odml-corpus-") as d:
        for k in keys:
            r = one(k, Path(d))
            rows.append(r)
            print(json.dumps(r), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    print(f"\n| graph | exporter | ops | convert s | fp32 parity | fp16 parity | odml fp32 ms | odml fp16 ms | "
          "source ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['key']} | {r['exporter']} | - | - | failed: {r['error']} | | | | |")
            continue

        def par(p: str) -> str:
            def agree(q: dict) -> str:
                v = q.get("agreement", q.get("top1_agreement"))
                return "" if v is None else f"{v:.3f} {q['measure']}, "

            return "; ".join(f"{n}: {agree(q)}rel err {q['rel_mean_err']:.1e}" for n, q in r["parity"][p].items())

        print(f"| {r['key']} | {r['exporter']} | {r['ops']} | {r.get('convert_s') or r['export_wall_s']} | "
              f"{par('fp32')} | {par('fp16')} | {_ms(r.get('odml_fp32_ms'))} | {_ms(r.get('odml_fp16_ms'))} | "
              f"{_ms(r.get('source_ms'))} ({r.get('source_runtime', '')}) |")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
