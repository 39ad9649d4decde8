"""Latency in the search loop: every candidate is exported (int8 by default)
and measured through the bench code on the chosen device; measurements are
cached per (architecture, device, precision, threads) in a JSONL file, so a
repeated candidate costs nothing, and a cheap MAC bound rejects candidates
that cannot come near the target before anything is measured."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from odml.errors import OdmlError
from odml.zoo.spec import ModelSpec

PRECISIONS = ("int8", "fp32", "fp16", "dynamic")


class DeviceError(OdmlError):
    """An unknown or unusable --device."""


@dataclass
class Device:
    kind: str  # host | adb | edgetpu
    serial: str = ""
    library: str | None = None  # Edge TPU delegate
    edgetpu_device: str = "usb"
    benchmark_binary: str | None = None

    @property
    def label(self) -> str:
        return {"host": "host", "adb": f"adb:{self.serial}", "edgetpu": f"edgetpu:{self.edgetpu_device}"}[self.kind]


def parse_device(text: str, benchmark_binary: str | None = None) -> Device:
    """Check ``--device`` before any work: unknown names, phones that are not
    attached and Edge TPUs that are not usable are refused here."""
    text = (text or "").strip()
    if text == "host":
        return Device("host")
    if text.startswith("adb:") and len(text) > 4:
        from odml.devices.adb import AdbError, find_binary, list_devices

        serial = text[4:]
        try:
            attached = {d["serial"]: d for d in list_devices()}
            exe = find_binary(benchmark_binary)
        except AdbError as e:
            raise DeviceError(f"--device {text}: {e}") from None
        if serial not in attached:
            raise DeviceError(f"--device {text}: no such phone (attached: {', '.join(attached) or 'none'})")
        if attached[serial]["state"] != "device":
            raise DeviceError(f"--device {text}: phone is {attached[serial]['state']}")
        return Device("adb", serial=serial, benchmark_binary=str(exe))
    if text == "edgetpu" or text.startswith("edgetpu:"):
        import shutil

        from odml.devices.edgetpu import status

        st = status()
        if not st["available"]:
            raise DeviceError(f"--device {text}: unavailable: {st['reason']}")
        if shutil.which("edgetpu_compiler") is None:
            raise DeviceError(f"--device {text}: candidates must be compiled, and edgetpu_compiler is not on the PATH")
        return Device("edgetpu", library=st["library"], edgetpu_device=text.partition(":")[2] or "usb")
    raise DeviceError(f"--device {text!r}: unknown device; use host, adb:SERIAL or edgetpu (see 'odml devices')")


def arch_key(spec: ModelSpec, device: Device, precision: str, threads: int) -> str:
    """A key that ignores the name and the training-only fields of a spec."""
    d = spec.to_dict()
    for k in ("name", "drop_connect_rate"):
        d.pop(k, None)
    d.get("head", {}).pop("dropout", None)
    blob = json.dumps({"spec": d, "device": device.label, "precision": precision, "threads": threads}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The complete records of a JSONL file; a torn last line (a kill during a
    write) is ignored."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one record durably (flushed and fsynced before returning). A
    torn line left by an earlier kill is ended first, so it cannot swallow
    this record."""
    with open(path, "a+b") as f:
        f.seek(0, os.SEEK_END)
        if f.tell():
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
        f.write((json.dumps(record, sort_keys=True) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())


@dataclass
class LatencyMeter:
    device: Device
    precision: str = "int8"
    threads: int = 1
    runs: int = 30
    min_secs: float = 0.3
    cache_path: Path | None = None
    calibration: np.ndarray | None = None  # images for int8 calibration (random data when None)
    _cache: dict[str, dict[str, Any]] = field(default_factory=dict)
    _ratios: list[float] = field(default_factory=list)  # measured ms per MAC, for the bound

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise DeviceError(f"--precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.cache_path is not None:
            for rec in read_jsonl(self.cache_path):
                if "key" in rec and "latency" in rec:
                    self._remember(rec["key"], rec["latency"], rec.get("macs"))

    def _remember(self, key: str, lat: dict[str, Any], macs: int | None) -> None:
        self._cache[key] = lat
        if macs:
            self._ratios.append(lat["median_ms"] / macs)

    def lower_bound_ms(self, spec: ModelSpec) -> float | None:
        """A cheap optimistic latency: the candidate's MACs at the fastest rate
        (ms per MAC) seen so far. None until something has been measured."""
        if len(self._ratios) < 3:
            return None
        return min(self._ratios) * spec.macs

    def cached(self, spec: ModelSpec) -> dict[str, Any] | None:
        return self._cache.get(arch_key(spec, self.device, self.precision, self.threads))

    def measure(self, spec: ModelSpec) -> tuple[dict[str, Any], bool]:
        """(latency statistics in ms, whether they came from the cache)."""
        key = arch_key(spec, self.device, self.precision, self.threads)
        if key in self._cache:
            return self._cache[key], True
        with tempfile.TemporaryDirectory(prefix="odml-nas-") as tmp:
            path = Path(tmp) / "candidate.tflite"
            path.write_bytes(self._export(spec))
            stats = self._bench(path)
        lat = {k: stats[k] for k in ("median_ms", "mean_ms", "p90_ms", "p99_ms", "std_ms", "min_ms", "count")
               if k in stats}
        lat["size_bytes"] = int(stats["size_bytes"]) if stats.get("size_bytes") is not None else None
        self._remember(key, lat, spec.macs)
        if self.cache_path is not None:
            append_jsonl(self.cache_path, {"key": key, "line": spec.to_line(), "device": self.device.label,
                                           "precision": self.precision, "threads": self.threads, "macs": spec.macs,
                                           "latency": lat})
        return lat, False

    def _export(self, spec: ModelSpec) -> bytes:
        from odml.exporters.tflite import convert, representative_from
        from odml.zoo.builder import build_model

        model = build_model(spec)
        if self.device.kind == "edgetpu":
            from types import SimpleNamespace

            from odml.exporters.edgetpu import lower_for_edgetpu

            model, _ = lower_for_edgetpu(SimpleNamespace(keras_model=model, convertible=model))
        rep = None
        if self.precision == "int8":
            x = self.calibration
            if x is None:
                x = np.random.default_rng(0).uniform(0, 1, (16, *spec.input_shape)).astype(np.float32)  # inputs are [0, 1]
            rep = representative_from(x, n=16)
        return convert(model, self.precision, rep)

    def _bench(self, path: Path) -> dict[str, Any]:
        return bench_on(self.device, path, self.threads, self.runs, self.min_secs)


def bench_on(device: Device, path: Path, threads: int = 1, runs: int = 50, min_secs: float = 0.5) -> dict[str, Any]:
    """Latency statistics of one .tflite on ``device`` through the bench code
    (an Edge TPU model is compiled first when it is not already)."""
    if device.kind == "adb":
        from odml.devices.adb import bench_adb

        return bench_adb(device.serial, path, device.benchmark_binary, threads=threads, runs=runs, min_secs=min_secs)
    from odml.devices.host import HostOptions, bench_host

    opts = HostOptions(threads=threads, runs=runs, min_secs=min_secs, warmup=2)
    if device.kind == "edgetpu":
        import shutil
        import subprocess

        if not path.stem.endswith("_edgetpu"):
            subprocess.run([shutil.which("edgetpu_compiler") or "edgetpu_compiler", "-s", "-o", str(path.parent),
                            str(path)], capture_output=True, timeout=600, check=False)
            compiled = path.with_name(path.stem + "_edgetpu.tflite")
            path = compiled if compiled.is_file() else path
        opts.delegate, opts.delegate_device = device.library, device.edgetpu_device
    return bench_host(path, opts)
