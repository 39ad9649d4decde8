"""A float .tflite re-quantized by odml (issue 38): MediaPipe's released
files (tests/pretrained.py) as fp32, fp16, dynamic and int8
(``exporters.requantize``), calibrated on 32 crops of scikit-image's
photographs that each model was made for and compared on 16 others
(tests/test_requantize.py's ``photos``): file size, seconds to make it,
relative mean error of each output against the float32 file, and LiteRT
latency of the original and of each file (odml's host bench: XNNPACK, one
thread, the median of three instances' medians, in one child process).

    python tests/bench/tflite_requantize.py [--keys mp_hand,...] [--json report.json]

Prints a markdown table (docs/benchmarks/tflite_requantize.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PRECISIONS = ("fp32", "fp16", "dynamic", "int8")


def _own_timing(data: bytes, runs: int = 50) -> float:
    """Median ms of ``runs`` invokes after 10 warm-up ones, LiteRT's
    default op resolver (XNNPACK), one thread: for a file odml's host bench
    does not load (LiteRT's kernels alone cannot run it)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from odml._fd import quiet_stderr_fd

    with quiet_stderr_fd():
        it = Interpreter(model_content=data, num_threads=1, experimental_op_resolver_type=OpResolverType.AUTO)
        it.allocate_tensors()
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], np.random.default_rng(0).random(d["shape"], np.float32))
    for _ in range(10):
        it.invoke()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        it.invoke()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def measure(key: str, folder: Path) -> dict:
    from pretrained import fetch
    from test_requantize import outputs, photos

    from odml.devices.host import HostOptions, bench_host_many
    from odml.exporters.requantize import relative_error, requantize_report
    from odml.flatbuffer import parse_tflite

    data = fetch(key).read_bytes()
    m = parse_tflite(data, key)
    shape = tuple(m.inputs[0].shape[1:])
    cal, test = photos(key, 32, 1, shape), photos(key, 16, 2, shape)
    row: dict = {"model": key, "file": fetch(key).name, "outputs": [t.name for t in m.outputs],
                 "original_bytes": len(data), "precisions": {}}
    paths = [folder / f"{key}.original.tflite"]
    paths[0].write_bytes(data)
    ref = None
    for p in PRECISIONS:
        t = time.perf_counter()
        r = requantize_report(data, p, cal if p in ("dynamic", "int8") else None, key)
        secs = time.perf_counter() - t
        y = outputs(r.data, test)
        if p == "fp32":
            ref = y
        path = folder / f"{key}.{p}.tflite"
        path.write_bytes(r.data)
        paths.append(path)
        row["precisions"][p] = {"bytes": len(r.data), "seconds": round(secs, 2),
                                "errors": [round(relative_error(a, b), 4) for a, b in zip(ref, y)],
                                "float_ops": r.float_ops, "ranges": r.ranges}
    bench = bench_host_many(paths, HostOptions(threads=1, runs=50))
    row["latency_ms"], row["stable"] = {}, {}
    for name, b in zip(["original", *PRECISIONS], bench):
        if "error" in b:  # the original with a custom op only XNNPACK runs: timed here instead
            row["latency_ms"][name] = round(_own_timing(paths[0].read_bytes()), 2)
            row["stable"][name] = "own timing (50 invokes)"
        else:
            row["latency_ms"][name] = round(b["median_ms"], 2)
            row["stable"][name] = b["stable"]
    return row


def table(rows: list[dict]) -> str:
    out = ["| model | file | original | fp32 | fp16 | dynamic | int8 |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        kb = lambda n: f"{n / 1024:,.0f} KiB"
        pr = r["precisions"]
        out.append(f"| {r['model']} | size | {kb(r['original_bytes'])} | "
                   + " | ".join(kb(pr[p]["bytes"]) for p in PRECISIONS) + " |")
        out.append("| | seconds to make | | " + " | ".join(f"{pr[p]['seconds']:.1f}" for p in PRECISIONS) + " |")
        for k, name in enumerate(r["outputs"]):
            out.append(f"| | error `{name}` | | " + " | ".join(f"{pr[p]['errors'][k]:.4f}" for p in PRECISIONS) + " |")
        lat = r["latency_ms"]
        mark = {n: "" if r["stable"][n] is True else (" (own)" if isinstance(r["stable"][n], str) else " (unstable)")
                for n in lat}
        out.append(f"| | latency ms | {lat['original']:.2f}{mark['original']} | "
                   + " | ".join(f"{lat[p]:.2f}{mark[p]}" for p in PRECISIONS) + " |")
        floats = {p: pr[p]["float_ops"] for p in PRECISIONS if pr[p]["float_ops"]}
        if floats or pr["int8"]["ranges"]:
            out.append(f"| | int8 ranges; ops left float | | | | {len(floats.get('dynamic', []))} ops | "
                       f"{pr['int8']['ranges']}; {len(floats.get('int8', []))} ops |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", default="mp_hand,mp_palm,mp_face_det,mp_face_mesh,mp_selfie")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        rows = [measure(k, Path(d)) for k in a.keys.split(",")]
    print(table(rows))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
