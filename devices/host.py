"""The host device: LiteRT on this machine's CPU, through either of its two
runtimes (the Interpreter, or CompiledModel, the API LiteRT recommends for
apps), XNNPACK on or off, a thread count, optional CPU pinning. Each
benchmark runs in a child process, so that a model that makes the native
runtime crash cannot take the CLI down, and so that the peak memory belongs
to that model alone.

What is timed is one inference as an app runs it in a loop: the input
already in the runtime's buffer, the call, nothing else (what LiteRT's own
benchmark tools time); ``app_ms`` adds writing the input and reading every
output, which an app pays once per frame. Warm-up runs until the median of
successive windows settles (XNNPACK packs weights and the caches fill on the
first calls); the timed runs are cut into segments, and the spread of the
segment medians says whether the machine was quiet enough to trust the
figure (``stable``)."""

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
    runtime: str = "interpreter"  # or "compiled" (LiteRT's CompiledModel)
    max_warmup_secs: float = 3.0  # warm-up until the median settles, at most this long
    instances: int = 3  # the runs shared among this many runtime instances; the median of their medians
    segments: int = 5  # one instance: the runs cut into this many segments for the spread
    max_spread: float = 0.10  # medians further apart than this share of the median: not stable


RUNTIMES = ("interpreter", "compiled")


def _random_input(detail: dict, rng: np.random.Generator) -> np.ndarray:
    dtype, shape = detail["dtype"], detail["shape"]
    if np.issubdtype(dtype, np.integer) and not detail["quantization"][0]:
        return rng.integers(0, 100, size=shape).astype(dtype)  # token ids, masks: small non-negative integers
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return rng.random(shape, dtype=np.float32).astype(dtype)


def _child(path: str, opts: dict, conn: Any, task: str = "measure", extra: Any = None) -> None:
    from odml._fd import quiet_stderr_fd

    try:
        fn = {"measure": _measure, "classify": _classify, "compare": _compare, "many": _measure_many,
              "ops": _ops}[task]
        with quiet_stderr_fd():  # LiteRT logs on fd 2 from C++ (CompiledModel's environment, delegates)
            res = fn(path, HostOptions(**opts), *(extra or ()))
        conn.send(("ok", res))
        res = None
        _silence_fd2()  # what the runtime logs while it tears down (CompiledModel's environment) is not ours
    except BaseException as e:  # report, never hang the parent
        conn.send(("error", f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"))
    finally:
        conn.close()


def _silence_fd2() -> None:
    import os as _os

    try:
        devnull = _os.open(_os.devnull, _os.O_WRONLY)
        _os.dup2(devnull, 2)
    except OSError:
        pass


def _interpreter(path: str, o: HostOptions):
    from odml.litert import load_interpreter

    delegates = None
    if o.delegate:
        from ai_edge_litert.interpreter import load_delegate

        delegates = [load_delegate(o.delegate, {"device": o.delegate_device} if o.delegate_device else {})]
    return load_interpreter(path, threads=o.threads, xnnpack=o.xnnpack, verify=False, delegates=delegates)


class _Runner:
    """One model loaded in one runtime, its inputs filled with random data:
    ``run()`` is one inference, ``app_run()`` adds writing the inputs and
    reading the outputs."""

    def __init__(self, path: str, o: HostOptions, rng: np.random.Generator):
        if o.runtime == "compiled":
            self._compiled(path, o, rng)
        else:
            self._interpreter(path, o, rng)

    def _interpreter(self, path: str, o: HostOptions, rng: np.random.Generator) -> None:
        it = _interpreter(path, o)  # verified by the parent
        ins = it.get_input_details()
        self.inputs = [(d["index"], _random_input(d, rng)) for d in ins]
        for idx, x in self.inputs:
            it.set_tensor(idx, x)
        outs = [d["index"] for d in it.get_output_details()]
        self.run = it.invoke

        def app_run() -> None:
            for idx, x in self.inputs:
                it.set_tensor(idx, x)
            it.invoke()
            for idx in outs:
                it.get_tensor(idx)

        self.app_run = app_run

    def _compiled(self, path: str, o: HostOptions, rng: np.random.Generator) -> None:
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator
        from ai_edge_litert.options import CpuOptions, Options

        from odml._fd import quiet_stderr_fd

        with quiet_stderr_fd():  # the NPU and vendor plugins it probes for announce their absence on fd 2
            m = CompiledModel.from_file(path, options=Options(hardware_accelerators=HardwareAccelerator.CPU,
                                                              cpu_options=CpuOptions(num_threads=o.threads)))
        ins, outs = m.create_input_buffers(0), m.create_output_buffers(0)
        key = list(m.get_signature_list())[0] if m.get_signature_list() else None
        idet = list(m.get_input_tensor_details(key).values()) if key else []
        odet = list(m.get_output_tensor_details(key).values()) if key else []
        self.inputs = []
        for b, d in zip(ins, idet):
            dt = np.dtype(d["dtype"])  # no quantization here: 8/16-bit integers are activations, wider ones ids
            x = _random_input({"dtype": dt, "shape": tuple(d["shape"]),
                               "quantization": (1.0 if dt.itemsize <= 2 else 0.0, 0)}, rng)
            b.write(x)
            self.inputs.append((b, x))
        self._model = m  # keep the model alive as long as its buffers
        self.run = lambda: m.run_by_index(0, ins, outs)
        sizes = [(b, int(np.prod(d["shape"])), np.dtype(d["dtype"])) for b, d in zip(outs, odet)]

        def app_run() -> None:
            for b, x in self.inputs:
                b.write(x)
            m.run_by_index(0, ins, outs)
            for b, n, dt in sizes:
                b.read(n, dt)

        self.app_run = app_run


def _time(fn: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _warm_up(run: Any, first_s: float, o: HostOptions) -> tuple[int, bool]:
    """At least ``o.warmup`` runs, then windows of runs (about 0.05 s each)
    until two successive window medians agree within 3%; at most
    ``o.max_warmup_secs``. Returns (warm-up runs, whether it settled)."""
    n = 0
    if o.warmup:
        n += len(_time(run, o.warmup))
    window = max(3, min(50, int(0.05 / max(first_s, 1e-5))))
    start, prev = time.perf_counter(), None
    while True:
        med = float(np.median(_time(run, window)))
        n += window
        if prev is not None and abs(med - prev) <= 0.03 * prev:
            return n, True
        if time.perf_counter() - start > o.max_warmup_secs:
            return n, False
        prev = med


def _measure(path: str, o: HostOptions) -> dict[str, Any]:
    """Load the model in ``o.instances`` runtime instances one after the
    other, warm each up, and time its share of the runs. The figure is the
    median of the instances' medians: the same file can run 20% slower in one
    instance than in the next (where its buffers land in memory), and an app
    gets one of them; a single instance measured long cannot show that.
    When the instances disagree by more than ``o.max_spread``, two more are
    measured and the figure is the median of five (the spread: of the middle
    three)."""
    from odml.devices.stats import latency_stats, segment_spread

    if o.cpus:
        os.sched_setaffinity(0, o.cpus)
    rss0 = _peak_rss_kb()
    rng = np.random.default_rng(o.seed)
    n = max(1, o.instances)
    per_runs, per_secs = max(1, -(-o.runs // n)), o.min_secs / n
    times: list[float] = []
    meds: list[float] = []
    app: list[float] = []
    warm, settled = 0, True
    start = time.perf_counter()
    i = 0
    while i < n:
        t0 = time.perf_counter()
        r = _Runner(path, o, rng)
        if i == 0:
            init_s = time.perf_counter() - t0
            first_s = _time(r.run, 1)[0]
        w, ok = _warm_up(r.run, first_s, o)
        warm, settled = warm + w, settled and ok
        mine: list[float] = []
        t1 = time.perf_counter()
        while len(mine) < per_runs or time.perf_counter() - t1 < per_secs:
            mine.extend(_time(r.run, max(1, min(per_runs, 10))))
            if time.perf_counter() - start > o.max_secs:
                break
        if segment_spread(mine, 3) > o.max_spread and time.perf_counter() - start < o.max_secs / 2:
            mine.extend(_time(r.run, len(mine)))  # a disturbed stretch: as long again
        times.extend(mine)
        meds.append(float(np.median(mine)))
        app.extend(_time(r.app_run, max(3, min(len(mine) // 2, 100))))
        del r
        i += 1
        if i == n == o.instances > 1 and _spread(meds) > o.max_spread and time.perf_counter() - start < o.max_secs / 2:
            n += 2  # the instances disagree: two more, and the median of five
    med = float(np.median(meds))
    spread = _spread(meds) if n > 1 else segment_spread(times, o.segments)
    rss1 = _peak_rss_kb()
    return {
        **latency_stats(times),
        "median_ms": med * 1e3,
        "instance_medians_ms": [m * 1e3 for m in meds],
        "runtime": o.runtime,
        "app_ms": float(np.median(app)) * 1e3,
        "spread": spread,
        "stable": spread <= o.max_spread,
        "warmup_runs": warm,
        "warmup_settled": settled,
        "samples_ms": [t * 1e3 for t in times],
        "init_ms": init_s * 1e3,
        "first_ms": first_s * 1e3,
        "peak_rss_mb": rss1 / 1024,
        "memory_delta_mb": (rss1 - rss0) / 1024,
    }


def _spread(meds: list[float]) -> float:
    """(max - min) / median of the three instance medians nearest the median
    (all of them for three): one wild instance of five is outvoted."""
    m = sorted(meds)
    k = (len(m) - 3) // 2 if len(m) > 3 else 0
    mid = m[k:k + 3]
    return (max(mid) - min(mid)) / float(np.median(m))


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
        y = _dequantize(interp.get_tensor(out["index"]), out)
        if y.ndim >= 3 and int(np.prod(y.shape[1:3])) > 1:  # a map (segmentation scores or labels): whole
            pred.append(None)
            scores.append(y[0].astype(np.float32))
            continue
        y = y.reshape(-1)
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
    if opts.runtime not in RUNTIMES:
        raise BenchError(f"--runtime {opts.runtime!r}: choose interpreter or compiled")
    if opts.runtime == "compiled" and (not opts.xnnpack or opts.delegate):
        raise BenchError("--runtime compiled runs LiteRT's CPU accelerator (XNNPACK); --no-xnnpack and delegates "
                         "(the Edge TPU) need --runtime interpreter")
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


def _ops(path: str, o: HostOptions) -> dict[str, Any]:
    from odml.devices.op_profile import profile

    if o.cpus:
        os.sched_setaffinity(0, set(o.cpus))
    return profile(path, threads=o.threads, xnnpack=o.xnnpack, seed=o.seed)


def profile_host(path: str | Path, opts: HostOptions, timeout_s: float = 600) -> dict[str, Any]:
    """Where one inference's time goes on this host, op by op
    (``devices/op_profile.py``), in a child process."""
    p = Path(path)
    read_tflite_checked(p)
    check_options(opts)
    return _run_child(p, opts, "ops", None, timeout_s)


def _measure_many(path: str, o: HostOptions, paths: list[str]) -> list[dict[str, Any]]:
    """Several files measured one after the other in one child process (the
    calibration's blocks: one process start for all of them)."""
    out = []
    for p in paths:
        try:
            res = _measure(p, o)
            res.pop("samples_ms", None)
            out.append(res)
        except Exception as e:  # noqa: BLE001 - one file that does not run is reported, the others measured
            out.append({"error": f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"})
    return out


def bench_host_many(paths: list[Path], opts: HostOptions, timeout_s: float = 1800) -> list[dict[str, Any]]:
    """Measure each of ``paths`` (verified first) in one child process."""
    for p in paths:
        read_tflite_checked(p)
    check_options(opts)
    return _run_child(Path(paths[0]), opts, "many", ([str(p) for p in paths],), timeout_s)


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
