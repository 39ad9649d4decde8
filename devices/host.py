"""The host device: the LiteRT interpreter on this machine's CPU, XNNPACK on or
off, a thread count, optional CPU pinning, warm-up runs, a run count and a
minimum time. Each benchmark runs in a child process, so that a model that
makes the native runtime crash cannot take the CLI down, and so that the peak
memory belongs to that model alone."""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from odml.errors import OdmlError


class BenchError(OdmlError):
    pass


@dataclass
class HostOptions:
    threads: int = 1
    xnnpack: bool = True
    warmup: int = 1
    runs: int = 50
    min_secs: float = 1.0
    max_secs: float = 150.0
    cpus: list[int] = field(default_factory=list)  # pin to these cores; empty: no pinning
    seed: int = 0


def _random_input(detail: dict, rng: np.random.Generator) -> np.ndarray:
    dtype, shape = detail["dtype"], detail["shape"]
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return rng.random(shape, dtype=np.float32).astype(dtype)


def _child(path: str, opts: dict, conn: Any) -> None:
    try:
        conn.send(("ok", _measure(path, HostOptions(**opts))))
    except BaseException as e:  # report, never hang the parent
        conn.send(("error", f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"))
    finally:
        conn.close()


def _measure(path: str, o: HostOptions) -> dict[str, Any]:
    from odml.devices.litert import load_interpreter
    from odml.devices.stats import latency_stats

    if o.cpus:
        os.sched_setaffinity(0, o.cpus)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    interp = load_interpreter(path, threads=o.threads, xnnpack=o.xnnpack, verify=False)  # verified by the parent
    init_s = time.perf_counter() - t0
    rng = np.random.default_rng(o.seed)
    for d in interp.get_input_details():
        interp.set_tensor(d["index"], _random_input(d, rng))
    t0 = time.perf_counter()
    interp.invoke()
    first_s = time.perf_counter() - t0
    for _ in range(o.warmup):
        interp.invoke()
    times = []
    start = time.perf_counter()
    while len(times) < o.runs or time.perf_counter() - start < o.min_secs:
        t0 = time.perf_counter()
        interp.invoke()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > o.max_secs:
            break
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        **latency_stats(times),
        "init_ms": init_s * 1e3,
        "first_ms": first_s * 1e3,
        "peak_rss_mb": rss1 / 1024,
        "memory_delta_mb": (rss1 - rss0) / 1024,
    }


def bench_host(path: str | Path, opts: HostOptions, timeout_s: float = 600) -> dict[str, Any]:
    """Benchmark a .tflite on the host; returns latency statistics (ms), init
    time, first inference and memory."""
    from odml.exporters.flatbuffer import read_tflite

    p = Path(path)
    model = read_tflite(p)  # one-line error for a missing or malformed file, before native code sees it
    if opts.threads < 1:
        raise BenchError(f"--threads must be at least 1, got {opts.threads}")
    if opts.runs < 1:
        raise BenchError(f"--runs must be at least 1, got {opts.runs}")
    if opts.cpus:
        avail = sorted(os.sched_getaffinity(0))
        bad = [c for c in opts.cpus if c not in avail]
        if bad:
            raise BenchError(f"--cpus {','.join(map(str, bad))}: not available here (cores {avail})")
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(str(p), asdict(opts), child), daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout_s):
            proc.kill()
            raise BenchError(f"{p}: benchmark timed out after {timeout_s:.0f} s")
        status, payload = parent.recv()
    except EOFError:
        proc.join(5)
        raise BenchError(f"{p}: the LiteRT runtime crashed on this model (exit {proc.exitcode})") from None
    finally:
        proc.join(5)
    if status != "ok":
        raise BenchError(f"{p}: benchmark failed: {payload}")
    return {"model": str(p), "device": "host", "size_bytes": model.size_bytes, "threads": opts.threads,
            "xnnpack": opts.xnnpack, "cpus": opts.cpus, **payload}
