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
    opts = HostOptions(threads=threads, xnnpack=xnnpack, warmup=warmup, runs=runs, min_secs=min_secs, cpus=cpu_list)
    results = []
    with err.status("benchmarking") as status:
        for m in models:
            status.update(f"benchmarking {m}")
            results.append(bench_host(m, opts))
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
