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
    delegate: str | None = None  # a delegate library (libedgetpu.so.1) ...
    delegate_device: str | None = None  # ... and its device option ("usb", "pci:0")


def _random_input(detail: dict, rng: np.random.Generator) -> np.ndarray:
    dtype, shape = detail["dtype"], detail["shape"]
    if np.issubdtype(dtype, np.integer) and not detail["quantization"][0]:
        return rng.integers(0, 100, size=shape).astype(dtype)  # token ids, masks: small non-negative integers
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return rng.random(shape, dtype=np.float32).astype(dtype)


def _child(path: str, opts: dict, conn: Any, task: str = "measure", extra: Any = None) -> None:
    try:
        fn = {"measure": _measure, "classify": _classify, "compare": _compare}[task]
        conn.send(("ok", fn(path, HostOptions(**opts), *(extra or ()))))
    except BaseException as e:  # report, never hang the parent
        conn.send(("error", f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"))
    finally:
        conn.close()


def _interpreter(path: str, o: HostOptions):
    from odml.litert import load_interpreter

    delegates = None
    if o.delegate:
        from ai_edge_litert.interpreter import load_delegate

        delegates = [load_delegate(o.delegate, {"device": o.delegate_device} if o.delegate_device else {})]
    return load_interpreter(path, threads=o.threads, xnnpack=o.xnnpack, verify=False, delegates=delegates)


def _measure(path: str, o: HostOptions) -> dict[str, Any]:
    from odml.devices.stats import latency_stats

    if o.cpus:
        os.sched_setaffinity(0, o.cpus)
    rss0 = _peak_rss_kb()
    t0 = time.perf_counter()
    interp = _interpreter(path, o)  # verified by the parent
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
    rss1 = _peak_rss_kb()
    return {
        **latency_stats(times),
        "samples_ms": [t * 1e3 for t in times],
        "init_ms": init_s * 1e3,
        "first_ms": first_s * 1e3,
        "peak_rss_mb": rss1 / 1024,
        "memory_delta_mb": (rss1 - rss0) / 1024,
    }


def _peak_rss_kb() -> int:
    """This process's peak resident memory (KiB): VmHWM, which starts afresh
    in the benchmark's own process; getrusage's ru_maxrss keeps the peak of the
    process it was forked from across exec (a parent that had TensorFlow
    loaded made every model look like 1 GB)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _classify(path: str, o: HostOptions, npy: str) -> dict[str, Any]:
    """Per-image invoke latency (ms) and the predicted class of every image."""
    from odml.litert import _dequantize, _quantize

    if o.cpus:
        os.sched_setaffinity(0, o.cpus)
    x = np.load(npy)
    interp = _interpreter(path, o)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    lat, pred, scores = [], [], []
    for i in range(len(x)):
        interp.set_tensor(inp["index"], _quantize(x[i:i + 1], inp))  # pre-processing: not timed
        t0 = time.perf_counter()
        interp.invoke()
        lat.append((time.perf_counter() - t0) * 1e3)
        y = _dequantize(interp.get_tensor(out["index"]), out).reshape(-1)
        pred.append(int(y.argmax()))
        scores.append([float(v) for v in y])
    return {"latencies_ms": lat, "predictions": pred, "outputs": scores}


def _compare(path: str, o: HostOptions, ref: str, rounds: int) -> dict[str, Any]:
    """A/B interleaved: ``rounds`` rounds of ``o.runs`` invokes of each model,
    alternating which goes first, in one process (same machine state)."""
    from odml.devices.stats import latency_stats

    if o.cpus:
        os.sched_setaffinity(0, o.cpus)
    rng = np.random.default_rng(o.seed)
    interps = [_interpreter(p, o) for p in (path, ref)]
    for it in interps:
        for d in it.get_input_details():
            it.set_tensor(d["index"], _random_input(d, rng))
        for _ in range(max(1, o.warmup)):
            it.invoke()
    times: list[list[float]] = [[], []]
    for r in range(rounds):
        for k in ((0, 1) if r % 2 == 0 else (1, 0)):
            for _ in range(o.runs):
                t0 = time.perf_counter()
                interps[k].invoke()
                times[k].append(time.perf_counter() - t0)
    return {"model": latency_stats(times[0]), "reference": latency_stats(times[1])}


def compare_host(path: str | Path, reference: str | Path, opts: HostOptions, rounds: int = 10,
                 timeout_s: float = 1800) -> dict[str, Any]:
    read_tflite_checked(path)
    read_tflite_checked(reference)
    check_options(opts)
    return _run_child(Path(path), opts, "compare", (str(reference), rounds), timeout_s)


def classify_host(path: str | Path, x: np.ndarray, opts: HostOptions, timeout_s: float = 1800) -> dict[str, Any]:
    """Run a classifier on every image of ``x`` (float [0, 1]) in a child
    process; per-image latency and predictions."""
    import tempfile

    read_tflite_checked(path)
    check_options(opts)
    with tempfile.TemporaryDirectory() as d:
        npy = os.path.join(d, "x.npy")
        np.save(npy, x if np.issubdtype(x.dtype, np.integer) else x.astype(np.float32))  # token ids stay ints
        return _run_child(Path(path), opts, "classify", (npy,), timeout_s)


def check_options(opts: HostOptions) -> None:
    if opts.threads < 1:
        raise BenchError(f"--threads must be at least 1, got {opts.threads}")
    if opts.runs < 1:
        raise BenchError(f"--runs must be at least 1, got {opts.runs}")
    if opts.cpus:
        avail = sorted(os.sched_getaffinity(0))
        bad = [c for c in opts.cpus if c not in avail]
        if bad:
            raise BenchError(f"--cpus {','.join(map(str, bad))}: not available here (cores {avail})")


def read_tflite_checked(path: str | Path):
    from odml.flatbuffer import read_tflite

    return read_tflite(Path(path))  # one-line error for a missing or malformed file, before native code sees it


def bench_host(path: str | Path, opts: HostOptions, timeout_s: float = 600) -> dict[str, Any]:
    """Benchmark a .tflite on the host; returns latency statistics (ms), init
    time, first inference and memory."""
    p = Path(path)
    model = read_tflite_checked(p)
    check_options(opts)
    payload = _run_child(p, opts, "measure", None, timeout_s)
    return {"model": str(p), "device": "host", "size_bytes": model.size_bytes, "threads": opts.threads,
            "xnnpack": opts.xnnpack, "cpus": opts.cpus, **payload}


def _run_child(p: Path, opts: HostOptions, task: str, extra: Any, timeout_s: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(str(p), asdict(opts), child, task, extra), daemon=True)
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
    return payload
