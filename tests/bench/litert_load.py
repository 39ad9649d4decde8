"""What loading a .tflite costs, by step: LiteRT's own kernels alone, both
builds as ``odml.litert.load_interpreter`` does them (LiteRT's kernels first,
whose Prepare checks every operator, then XNNPACK), and the whole load with
odml's flatbuffer verification before them. Median of ``--loads`` loads.

    .venv/bin/python tests/bench/litert_load.py runs/demo/export/model_fp32.tflite [--loads 20]
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="+")
    ap.add_argument("--loads", type=int, default=20)
    a = ap.parse_args()
    from pathlib import Path

    from odml.litert import load_interpreter

    steps = {"LiteRT kernels only": dict(verify=False, xnnpack=False),
             "LiteRT kernels, then XNNPACK": dict(verify=False, xnnpack=True),
             "verified, then both builds": dict(verify=True, xnnpack=True)}
    for m in a.model:
        load_interpreter(m)  # warm: the first load imports the runtime
        times: dict[str, list[float]] = {k: [] for k in steps}
        for _ in range(a.loads):  # interleaved, so that a busy moment hits every step alike
            for k, kw in steps.items():
                t = time.perf_counter()
                load_interpreter(m, **kw)
                times[k].append((time.perf_counter() - t) * 1000)
        print(f"{m} ({Path(m).stat().st_size / 1e6:.1f} MB), median of {a.loads} loads:")
        for k, v in times.items():
            print(f"  {k:30s} {statistics.median(v):7.2f} ms")


if __name__ == "__main__":
    main()
