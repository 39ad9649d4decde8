"""odml bench --device host against LiteRT's own benchmark tool
(python -m ai_edge_litert.tools.benchmark_litert_model) on the same model, in
the same run, interleaved A/B; prints both medians, their ratio, and the spread
of odml's median over the calls.

    .venv/bin/python tests/bench/host_vs_litert.py MODEL.tflite [--calls 5] [--runs 50] [--threads 1]
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
                        "--num_runs", str(runs), "--warmup_runs", "1", "--num_threads", str(threads),
                        "--result_json", str(out)], check=True, capture_output=True)
        return float(json.loads(out.read_text())["latency"]["median_ms"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    from odml.devices.host import HostOptions, bench_host

    ours, theirs = [], []
    for i in range(a.calls):  # interleaved: A, B, A, B, ...
        r = bench_host(a.model, HostOptions(threads=a.threads, runs=a.runs, warmup=1, min_secs=0))
        ours.append(r["median_ms"])
        theirs.append(litert_tool_median(a.model, a.runs, a.threads))
        print(f"call {i + 1}: odml median {ours[-1]:.3f} ms   benchmark_litert_model median {theirs[-1]:.3f} ms")
    mo, mt = statistics.median(ours), statistics.median(theirs)
    print(f"median of medians: odml {mo:.3f} ms, LiteRT tool {mt:.3f} ms, ratio odml/tool {mo / mt:.3f}")
    print(f"odml median over {a.calls} calls: min {min(ours):.3f} max {max(ours):.3f} ms, "
          f"spread (max-min)/median {(max(ours) - min(ours)) / mo:.3%}")


if __name__ == "__main__":
    main()
