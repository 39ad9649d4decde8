"""Devices as objects: where a .tflite runs and its latency is measured.
``parse_device("host" | "adb:SERIAL" | "edgetpu[:usb|pci:N]")`` is the one
place that reads ``--device``; each device says whether it is usable and
why not, and benchmarks a file. bench, search and compress take these."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from odml.errors import OdmlError


class DeviceError(OdmlError):
    """An unknown or unusable --device."""


KNOWN_ACCELERATORS = ("cpu", "gpu", "npu", "edgetpu")


def parse_accelerators(text: str | None) -> list[str] | None:
    """``--accelerator cpu,gpu``: the names, each one odml knows."""
    if text is None:
        return None
    names = [a.strip().lower() for a in text.split(",") if a.strip()]
    if not names:
        raise DeviceError("--accelerator: give cpu, gpu or npu (comma-separated)")
    for a in names:
        if a not in KNOWN_ACCELERATORS:
            raise DeviceError(f"--accelerator {a!r}: unknown accelerator; known: {', '.join(KNOWN_ACCELERATORS)}")
    return list(dict.fromkeys(names))


@dataclass
class BenchOptions:
    threads: int = 1
    runs: int = 50
    warmup: int = 1
    min_secs: float = 1.0
    xnnpack: bool = True
    cpus: list[int] = field(default_factory=list)  # host: pin to these cores
    timeout_s: float = 600.0
    core_mask: str | None = None  # adb: taskset mask of the big cores
    op_profile: bool = False  # per-op profile (adb: benchmark_model's; host: each op timed alone)
    runtime: str = "interpreter"  # host: "interpreter" or "compiled" (LiteRT's CompiledModel)
    accelerator: str | None = None  # where on the device: cpu, gpu, npu (phones); None: the device's first
    npu_libraries: str | None = None  # adb: a folder of NPU dispatch libraries pushed beside the binary


class Device:
    kind = ""
    classifies = False  # runs a dataset through the model here (per-input latency and outputs)
    lowers_grouped = False  # grouped convolutions must be exported as split/conv/concat to run here
    runtimes: tuple[str, ...] = ("interpreter",)  # the LiteRT runtimes --runtime may choose here
    accelerators: tuple[str, ...] = ("cpu",)  # what --accelerator may name here; the first is the default
    accelerator: str | None = None  # the one named in --device (adb:SERIAL:gpu)
    say: Callable[[str], None] | None = None  # where a device announces slow set-up (a phone's binary fetched)

    @property
    def label(self) -> str:
        return self.kind

    def accelerators_for(self, names: list[str] | None) -> list[str]:
        """The accelerators to measure on: ``names`` (--accelerator), else the
        one the --device value named, else the device's default; one it does
        not have is refused."""
        chosen = list(names or ([self.accelerator] if self.accelerator else [self.accelerators[0]]))
        for a in chosen:
            if a not in KNOWN_ACCELERATORS:
                raise DeviceError(f"--accelerator {a!r}: unknown accelerator; known: {', '.join(KNOWN_ACCELERATORS)}")
            if a not in self.accelerators:
                raise DeviceError(f"--device {self.label}: has no {a} accelerator here (it runs "
                                  f"{', '.join(self.accelerators)})")
        return chosen

    def check(self) -> "Device":
        """Raise DeviceError when the device cannot be used now; self otherwise."""
        return self

    def bench(self, path: str | Path, o: BenchOptions) -> dict[str, Any]:
        raise NotImplementedError

    def bench_many(self, paths: list[Path], o: BenchOptions,
                   on_result: Callable[[int, dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        """Each of ``paths`` benchmarked (a calibration's units): a list of
        results, or ``{"error": ...}`` for a file that does not run; a device
        that cannot be reached raises. ``on_result(i, result)`` as each one
        is done, so that what was measured before a failure is kept."""
        out = []
        for i, p in enumerate(paths):
            out.append(self.bench(p, o))
            if on_result:
                on_result(i, out[-1])
        return out

    def op_profile(self, path: str | Path, o: BenchOptions, result: dict[str, Any]) -> dict[str, Any] | None:
        """Where one inference's time went, op by op: ``ops`` rows (``op``,
        ``name``: its output tensors, ``ms``) and how they were measured;
        ``result`` is this file's benchmark. None where the device gives none."""
        return None

    def classify(self, path: str | Path, x: Any, o: BenchOptions) -> dict[str, Any]:
        """Per-input latency and outputs of every input of ``x`` (host-side runtimes only)."""
        raise DeviceError(f"--device {self.label}: classifying a dataset runs on the host or an Edge TPU attached to "
                          "it; use --device host for --data")

    def __repr__(self) -> str:
        return f"<device {self.label}>"


class Host(Device):
    """The LiteRT interpreter on this machine's CPU."""

    kind = "host"
    classifies = True
    runtimes = ("interpreter", "compiled")  # devices.host.RUNTIMES

    def host_options(self, o: BenchOptions) -> Any:
        from odml.devices.host import HostOptions

        return HostOptions(threads=o.threads, xnnpack=o.xnnpack, warmup=o.warmup, runs=o.runs, min_secs=o.min_secs,
                           cpus=list(o.cpus), runtime=o.runtime)

    def bench(self, path: str | Path, o: BenchOptions) -> dict[str, Any]:
        from odml.devices.host import bench_host

        res = bench_host(path, self.host_options(o), timeout_s=o.timeout_s)
        res["device"] = self.label
        return res

    def bench_many(self, paths: list[Path], o: BenchOptions,
                   on_result: Callable[[int, dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        from odml.devices.host import bench_host_many

        out = bench_host_many(paths, self.host_options(o), timeout_s=o.timeout_s * max(1, len(paths)))  # one child
        for i, r in enumerate(out if on_result else []):
            on_result(i, r)
        return out

    def op_profile(self, path: str | Path, o: BenchOptions, result: dict[str, Any]) -> dict[str, Any] | None:
        from odml.devices.host import profile_host

        if o.runtime != "interpreter":
            return None  # each op is timed by the Interpreter
        return profile_host(path, self.host_options(o), timeout_s=o.timeout_s)

    def classify(self, path: str | Path, x: Any, o: BenchOptions) -> dict[str, Any]:
        from odml.devices.host import classify_host

        return classify_host(path, x, self.host_options(o))


@dataclass(repr=False)
class EdgeTpu(Host):
    """A Coral Edge TPU through libedgetpu's delegate (usb or pci:N)."""

    library: str = ""
    device: str = "usb"
    compile: bool = False  # compile files not yet compiled (search and compress export plain int8 files)
    kind = "edgetpu"
    lowers_grouped = True
    runtimes = ("interpreter",)  # through libedgetpu's delegate
    accelerators = ("edgetpu",)

    @property
    def label(self) -> str:
        return f"edgetpu:{self.device}"

    def check(self) -> "EdgeTpu":
        from odml.devices.edgetpu import status

        st = status()
        if not st["available"]:
            raise DeviceError(f"--device {self.label}: unavailable: {st['reason']}")
        self.library = st["library"]
        if self.compile and shutil.which("edgetpu_compiler") is None:
            raise DeviceError(f"--device {self.label}: candidates must be compiled, and edgetpu_compiler is not on "
                              "the PATH")
        return self

    def host_options(self, o: BenchOptions) -> Any:
        opts = super().host_options(o)
        opts.delegate, opts.delegate_device = self.library, self.device
        return opts

    def op_profile(self, path: str | Path, o: BenchOptions, result: dict[str, Any]) -> dict[str, Any] | None:
        return None  # the Edge TPU runs its part of the graph as one op; the compiler's log says which ops

    def bench_many(self, paths: list[Path], o: BenchOptions,
                   on_result: Callable[[int, dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        return Device.bench_many(self, paths, o, on_result)  # one by one, each compiled first

    def bench(self, path: str | Path, o: BenchOptions) -> dict[str, Any]:
        """``path`` on the Edge TPU; a file not compiled yet is compiled
        first when edgetpu_compiler is on the PATH (required with
        ``compile``), and the compiler's log says what runs where."""
        import tempfile

        from odml.zoo.opmap import compiler_delegation, parse_compiler_log

        path = Path(path)
        exe = shutil.which("edgetpu_compiler")
        if exe is None or path.stem.endswith("_edgetpu"):
            return super().bench(path, o)
        with tempfile.TemporaryDirectory(prefix="odml-edgetpu-") as d:
            try:
                p = subprocess.run([exe, "-s", "-o", d, str(path)], capture_output=True, text=True, timeout=600,
                                   check=False)
            except subprocess.TimeoutExpired:
                raise DeviceError(f"{path}: edgetpu_compiler did not finish in 600 s") from None
            compiled = Path(d) / (path.stem + "_edgetpu.tflite")
            if not compiled.is_file() and self.compile:
                last = (p.stdout + p.stderr).strip().splitlines()[-1:] or ["no output"]
                raise DeviceError(f"{path}: edgetpu_compiler made no Edge TPU file: {last[0][:160]}")
            res = super().bench(compiled if compiled.is_file() else path, o)
        res.update(model=str(path), delegation=compiler_delegation(parse_compiler_log(p.stdout + p.stderr)))
        return res


@dataclass(repr=False)
class Adb(Device):
    """An Android phone over adb, timed by benchmark_model on it (LiteRT's
    prebuilt one for the phone's ABI, fetched once, unless one is given)."""

    serial: str = ""
    benchmark_binary: str | None = None
    accelerator: str | None = None
    say: Callable[[str], None] | None = None  # where the binary's fetch is announced
    kind = "adb"
    accelerators = ("cpu", "gpu", "npu")

    @property
    def label(self) -> str:
        return f"adb:{self.serial}" if self.serial else "adb"

    def _resolve(self) -> None:
        from odml.devices.adb import AdbError, list_devices

        if not self.serial:
            ready = [d["serial"] for d in list_devices() if d["state"] == "device"]
            if len(ready) != 1:
                raise AdbError(f"--device adb needs a serial (adb:SERIAL) when {len(ready)} phones are attached")
            self.serial = ready[0]

    def check(self) -> "Adb":
        from odml.devices.adb import AdbError, binary_for, list_devices

        try:
            self._resolve()
            attached = {d["serial"]: d for d in list_devices()}
        except AdbError as e:
            raise DeviceError(f"--device {self.label}: {e}") from None
        if self.serial not in attached:
            raise DeviceError(f"--device {self.label}: no such phone (attached: {', '.join(attached) or 'none'})")
        if attached[self.serial]["state"] != "device":
            raise DeviceError(f"--device {self.label}: phone is {attached[self.serial]['state']}")
        try:
            self.benchmark_binary = str(binary_for(self.serial, self.benchmark_binary, self.say))
        except AdbError as e:
            raise DeviceError(f"--device {self.label}: {e}") from None
        return self

    def bench(self, path: str | Path, o: BenchOptions) -> dict[str, Any]:
        from odml.devices.adb import bench_adb

        if o.runtime != "interpreter":
            raise DeviceError(f"--device {self.label}: phones run TFLite's benchmark_model (the Interpreter); "
                              "--runtime compiled is for the host")
        self._resolve()
        acc = (self.accelerators_for([o.accelerator] if o.accelerator else None))[0]
        res = bench_adb(self.serial, Path(path), self.benchmark_binary, o.threads, o.core_mask, o.runs, o.warmup,
                        o.min_secs, o.op_profile, o.xnnpack, o.timeout_s, accelerator=acc,
                        libraries=Path(o.npu_libraries) if o.npu_libraries else None, say=self.say)
        return res

    def op_profile(self, path: str | Path, o: BenchOptions, result: dict[str, Any]) -> dict[str, Any] | None:
        rows = result.get("op_rows")
        if not rows:
            return None
        return {"method": "benchmark_model's op profile (Run Order)", "whole_ms": result.get("mean_ms"),
                "ops": [{"node": r["node"], "op": r["op"], "name": r["name"], "ms": r["avg_ms"]} for r in rows]}


def parse_device(text: str, benchmark_binary: str | None = None, check: bool = True, compile: bool = False) -> Device:
    """One ``--device`` value. ``check``: refuse, before any work, a device
    that cannot be used now (a phone that is not attached, an Edge TPU whose
    runtime is missing); ``compile``: the Edge TPU must compile what it runs."""
    t = (text or "").strip()
    dev: Device
    if t == "host":
        dev = Host()
    elif t == "adb" or (t.startswith("adb:") and len(t) > 4):
        serial, accel = t[4:], None
        head, _, tail = serial.rpartition(":")
        if serial in KNOWN_ACCELERATORS:  # adb:gpu: the one attached phone, on its GPU
            serial, accel = "", serial
        elif head and tail.isalpha():  # adb:SERIAL:gpu (a network serial ends in its port)
            serial, accel = head, tail.lower()
            if accel not in KNOWN_ACCELERATORS:
                raise DeviceError(f"--device {t!r}: unknown accelerator {tail!r}; known: "
                                  f"{', '.join(KNOWN_ACCELERATORS)}")
        dev = Adb(serial=serial, benchmark_binary=str(benchmark_binary) if benchmark_binary else None,
                  accelerator=accel)
        dev.accelerators_for(None)
    elif t == "edgetpu" or t.startswith("edgetpu:"):
        dev = EdgeTpu(device=t.partition(":")[2] or "usb", compile=compile)
    else:
        raise DeviceError(f"--device {t!r}: unknown device; use host, adb:SERIAL or edgetpu (see 'odml devices')")
    return dev.check() if check or isinstance(dev, EdgeTpu) else dev


def parse_devices(text: str, benchmark_binary: str | None = None) -> list[Device]:
    """A comma-separated ``--device`` list (bench): each parsed; a phone is
    looked up when it is benchmarked."""
    items = [d.strip() for d in (text or "").split(",") if d.strip()]
    if not items:
        raise DeviceError("--device: give host, adb:SERIAL or edgetpu")
    return [parse_device(d, benchmark_binary, check=False) for d in items]


def host_status() -> dict[str, Any]:
    import os
    import platform

    try:
        import ai_edge_litert  # noqa: F401

        ok, reason = True, None
    except ImportError as e:  # pragma: no cover
        ok, reason = False, f"ai-edge-litert not importable: {e}"
    return {"device": "host", "available": ok, "reason": reason, "cpu": platform.processor() or platform.machine(),
            "cores": len(os.sched_getaffinity(0))}


def list_devices() -> list[dict[str, Any]]:
    """What is attached and usable here, and why not for the rest."""
    from odml.devices import edgetpu

    rows = [host_status()]
    try:
        from odml.devices import adb

        rows.extend(adb.status())
    except ImportError:  # pragma: no cover
        pass
    rows.append(edgetpu.status())
    return rows
