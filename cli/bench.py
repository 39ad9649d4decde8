"""odml bench: latency of .tflite models where they will run. Never imports
TensorFlow."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from odml.cli.common import err, handle_errors, out, print_json


@handle_errors
def bench_cmd(
    models: List[Path] = typer.Argument(..., help="One or more .tflite files."),
    device: str = typer.Option("host", "--device", help="Where to run: 'host' (LiteRT on this CPU)."),
    threads: int = typer.Option(1, "--threads", help="Interpreter threads."),
    xnnpack: bool = typer.Option(True, "--xnnpack/--no-xnnpack", help="Use the XNNPACK delegate."),
    warmup: int = typer.Option(1, "--warmup", min=0, help="Warm-up runs (not timed)."),
    runs: int = typer.Option(50, "--runs", help="Timed runs (at least)."),
    min_secs: float = typer.Option(1.0, "--min-secs", min=0.0, help="Keep running until this much time has passed."),
    cpus: Optional[str] = typer.Option(None, "--cpus", help="Pin to these cores, e.g. '0' or '0,1'."),
    data: Optional[str] = typer.Option(None, "--data", help="Classify the validation split of this dataset ('digits', a folder, an .npz): accuracy and per-image latency."),
    ovic: bool = typer.Option(False, "--ovic", help="Score by the OVIC 2018 rule (needs --data; one thread)."),
    ovic_limit_ms: float = typer.Option(33.0, "--ovic-limit-ms", help="OVIC per-image time limit."),
    frontier_k: Optional[float] = typer.Option(None, "--frontier-k", help="OVIC frontier a(t) = k ln t + a0: k."),
    frontier_a0: Optional[float] = typer.Option(None, "--frontier-a0", help="OVIC frontier: a0 (percent)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the validation split."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Measure latency: count, mean, median, p90, p99, std, CV, min, max, init
    time, first inference and peak memory, for every MODEL."""
    from odml.devices.host import BenchError, HostOptions, bench_host

    if device != "host":
        raise BenchError(f"--device {device!r}: unknown device; available here: host")
    cpu_list: list[int] = []
    if cpus:
        try:
            cpu_list = [int(c) for c in cpus.split(",") if c.strip()]
        except ValueError:
            raise BenchError(f"--cpus {cpus!r}: expected core numbers such as 0 or 0,1") from None
    if ovic and data is None:
        raise BenchError("--ovic needs --data (the images to classify)")
    if (frontier_k is None) != (frontier_a0 is None):
        raise BenchError("the OVIC frontier needs both --frontier-k and --frontier-a0")
    if ovic and threads != 1:
        err.print("warning: OVIC runs on one thread; --threads ignored for the score", markup=False)
    opts = HostOptions(threads=threads, xnnpack=xnnpack, warmup=warmup, runs=runs, min_secs=min_secs, cpus=cpu_list)
    results = []
    with err.status("benchmarking") as status:
        for m in models:
            status.update(f"benchmarking {m}")
            res = bench_host(m, opts)
            if data is not None:
                status.update(f"classifying {data} with {m}")
                res["classification"] = _classify(m, data, opts, ovic, ovic_limit_ms, frontier_k, frontier_a0, seed)
            results.append(res)
    if json_out:
        print_json({"bench": results})
        return
    t = Table(title=f"odml bench on {device} ({threads} thread(s), XNNPACK {'on' if xnnpack else 'off'})")
    for col in ("model", "runs", "median ms", "mean ms", "p90 ms", "p99 ms", "std ms", "CV", "min ms", "max ms",
                "init ms", "first ms", "peak MB"):
        t.add_column(col, justify="left" if col == "model" else "right")
    for r in results:
        t.add_row(Path(r["model"]).name, str(r["count"]), *(f"{r[k]:.3f}" for k in (
            "median_ms", "mean_ms", "p90_ms", "p99_ms", "std_ms")), f"{r['cv']:.3f}", f"{r['min_ms']:.3f}",
            f"{r['max_ms']:.3f}", f"{r['init_ms']:.1f}", f"{r['first_ms']:.2f}", f"{r['peak_rss_mb']:.0f}")
    out.print(t)
    for r in results:
        c = r.get("classification")
        if not c:
            continue
        line = (f"{Path(r['model']).name} on {c['data']}: accuracy {c['accuracy']:.4f} ({c['images']} images), "
                f"mean per-image latency {c['mean_latency_ms']:.3f} ms")
        if "ovic" in c:
            o = c["ovic"]
            line += (f"; OVIC 2018: {o['within_budget']}/{o['images']} images within the "
                     f"{o['limit_ms']:g} ms x {o['images']} budget, score {o['score']:.4f}")
        if "frontier" in c:
            line += f"; frontier score {c['frontier']['score']:+.2f} points"
        out.print(line, markup=False)


def _classify(model, data, opts, ovic, limit_ms, k, a0, seed):
    from dataclasses import replace

    import numpy as np

    from odml.data.images import load_images, to_float
    from odml.devices.host import classify_host, read_tflite_checked
    from odml.devices.ovic import ovic_2018, ovic_frontier
    from odml.devices.stats import latency_stats
    from odml.errors import DataError

    info = read_tflite_checked(model)
    shape = info.inputs[0].shape
    if len(shape) != 4:
        raise DataError(f"{model}: --data needs an image classifier with input [1, H, W, C], got {shape}")
    ds = load_images(data, (shape[1], shape[2]), shape[3], 0.2, seed)
    n_out = int(np.prod(info.outputs[0].shape[1:]))
    if ds.num_classes != n_out:
        raise DataError(f"{data}: {ds.num_classes} classes in the data but {model} has {n_out} outputs")
    run = classify_host(model, to_float(ds.x_val), replace(opts, threads=1) if ovic else opts)
    correct = [p == y for p, y in zip(run["predictions"], ds.y_val.tolist())]
    res = {"data": data, "images": len(correct), "accuracy": sum(correct) / len(correct),
           "mean_latency_ms": float(np.mean(run["latencies_ms"])),
           "per_image": latency_stats(np.asarray(run["latencies_ms"]) / 1e3)}
    if ovic:
        res["ovic"] = ovic_2018(run["latencies_ms"], correct, limit_ms)
        if k is not None:
            o = res["ovic"]
            res["frontier"] = ovic_frontier(o["accuracy"], o["mean_latency_ms"], k, a0)
    elif k is not None:
        res["frontier"] = ovic_frontier(res["accuracy"], res["mean_latency_ms"], k, a0)
    return res
