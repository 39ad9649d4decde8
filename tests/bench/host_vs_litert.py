"""odml bench --device host against LiteRT's own benchmark tool
(python -m ai_edge_litert.tools.benchmark_litert_model, which runs
CompiledModel) on the same files, interleaved call by call: for every model
and precision, ``--calls`` rounds of (odml --runtime interpreter, odml
--runtime compiled, the LiteRT tool), each a fresh process as a user runs
them. Prints per file the median of each one's medians, the ratios odml/tool
(same runtime: compiled; and the Interpreter beside it), and the spread of
odml's median over the calls.

    .venv/bin/python tests/bench/host_vs_litert.py [--calls 5] [--runs 50] [--out runs/bench_host_vs_litert]
    .venv/bin/python tests/bench/host_vs_litert.py --model FILE.tflite [...]

Without --model it builds its own set: MobileNetEdgeTPUV2-S at 224 (1001
classes), MobileNetEdgeTPUV2-tiny at 128 (10 classes) and the largest point
of the small32 space (fused IBN everywhere, 32x32, 10 classes; LiteRT's tool
reports medians in steps of 0.01 ms, so a file much under 1 ms cannot be
compared to 5%), each at fp32, fp16 and int8 (int8
calibrated on random images: latency does not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def litert_tool_median(model: str, runs: int, threads: int) -> float:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "r.json"
        subprocess.run([sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model", "--model", model,
                        "--num_runs", str(runs), "--num_threads", str(threads), "--result_json", str(out)],
                       check=True, capture_output=True)
        return float(json.loads(out.read_text())["latency"]["median_ms"])


def build_models(out: Path) -> list[Path]:
    import numpy as np

    from odml.exporters.tflite import convert, representative_from
    from odml.nas.space import load_space
    from odml.zoo.builder import build_model
    from odml.zoo.registry import create_spec

    sp = load_space("small32")
    big = {k: v[-1] for k, v in sp.dimensions().items()}  # the largest point: the tool reports 0.01 ms steps
    big.update({k: max((t for t in v if t.startswith("fused_")), key=lambda t: [int(x[1:]) for x in t.split("_")[1:]])
                for k, v in sp.dimensions().items() if k.endswith("_block")})
    small = sp.decode(big, 10, "small32_point")
    specs = [("v2s_224", create_spec("mobilenet_edgetpu_v2_s")),
             ("v2tiny_128", create_spec("mobilenet_edgetpu_v2_tiny", num_classes=10, input_size=128)),
             ("small32_32", small)]
    files = []
    for name, spec in specs:
        model = build_model(spec)
        x = np.random.default_rng(0).uniform(0, 1, (16, *spec.input_shape)).astype(np.float32)
        for prec in ("fp32", "fp16", "int8"):
            p = out / f"{name}_{prec}.tflite"
            if not p.is_file():
                p.write_bytes(convert(model, prec, representative_from(x, 16) if prec == "int8" else None,
                                      input_name="image"))
            files.append(p)
    return files


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", default=[])
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/bench_host_vs_litert")
    a = ap.parse_args()
    from odml.devices.host import HostOptions, bench_host

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    files = [Path(m) for m in a.model] or build_models(out)
    rows = []
    for f in files:
        calls: dict[str, list[float]] = {"interpreter": [], "compiled": [], "tool": []}
        unstable = 0
        for _ in range(a.calls):  # interleaved: the three, round after round
            for rt in ("interpreter", "compiled"):
                r = bench_host(f, HostOptions(threads=a.threads, runs=a.runs, runtime=rt))
                calls[rt].append(r["median_ms"])
                unstable += not r["stable"]
            calls["tool"].append(litert_tool_median(str(f), a.runs, a.threads))
        med = {k: statistics.median(v) for k, v in calls.items()}
        spread = {k: (max(v) - min(v)) / statistics.median(v) for k, v in calls.items()}
        row = {"model": f.name, **{f"{k}_ms": round(v, 3) for k, v in med.items()},
               "compiled_over_tool": round(med["compiled"] / med["tool"], 3),
               "interpreter_over_tool": round(med["interpreter"] / med["tool"], 3),
               **{f"{k}_spread": round(v, 3) for k, v in spread.items()}, "unstable_calls": unstable,
               "calls": {k: [round(x, 3) for x in v] for k, v in calls.items()}}
        rows.append(row)
        print(f"{f.name:24s} interpreter {med['interpreter']:8.3f}  compiled {med['compiled']:8.3f}  "
              f"tool {med['tool']:8.3f} ms   compiled/tool {row['compiled_over_tool']:.3f}  "
              f"interpreter/tool {row['interpreter_over_tool']:.3f}   spread over {a.calls} calls: "
              f"odml {spread['compiled']:.1%} / {spread['interpreter']:.1%}, tool {spread['tool']:.1%}"
              f"{f'   ({unstable} calls flagged unstable)' if unstable else ''}", flush=True)
    inside = sum(0.95 <= r["compiled_over_tool"] <= 1.05 for r in rows)
    print(f"compiled/tool within 0.95-1.05: {inside} of {len(rows)} files")
    (out / "host_vs_litert.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
