"""Latency in the search loop: every candidate is exported (int8 by default)
and measured through the bench code on the chosen device; measurements are
cached per (architecture, device, precision, threads) in a JSONL file, so a
repeated candidate costs nothing, and a cheap MAC bound rejects candidates
that cannot come near the target before anything is measured."""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from odml.devices.device import BenchOptions, Device, DeviceError
from odml.files import append_jsonl, read_jsonl, write_file
from odml.zoo.spec import ModelSpec

PRECISIONS = ("int8", "fp32", "fp16", "dynamic")


def latency_figure(stats: dict[str, Any], statistic: str) -> float:
    """A measurement's latency in ``statistic`` (min or median), the median
    where a device did not report it."""
    return float(stats.get(f"{statistic}_ms") or stats["median_ms"])


def arch_key(spec: ModelSpec, device: Device, precision: str, threads: int) -> str:
    """A key that ignores the name and the training-only fields of a spec."""
    d = spec.to_dict()
    for k in ("name", "drop_connect_rate"):
        d.pop(k, None)
    d.get("head", {}).pop("dropout", None)
    blob = json.dumps({"spec": d, "device": device.label, "precision": precision, "threads": threads}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


@dataclass
class LatencyMeter:
    device: Device
    precision: str = "int8"
    threads: int = 1
    runs: int = 30
    min_secs: float = 0.3
    cache_path: Path | None = None
    calibration: np.ndarray | None = None  # images for int8 calibration (random data when None)
    statistic: str = "min"  # the figure a candidate's latency is: its fastest timed run, or the median
    _cache: dict[str, dict[str, Any]] = field(default_factory=dict)
    _ratios: list[float] = field(default_factory=list)  # measured ms per MAC, for the bound
    probed: bool = False  # a probe model was measured: the bound holds from the first candidate

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise DeviceError(f"--precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.cache_path is not None:
            for rec in read_jsonl(self.cache_path):
                if "key" in rec and "latency" in rec:
                    self._remember(rec["key"], rec["latency"], rec.get("macs"))

    def figure(self, lat: dict[str, Any]) -> float:
        """A measurement's latency in the statistic the search ranks by."""
        return latency_figure(lat, self.statistic)

    def _remember(self, key: str, lat: dict[str, Any], macs: int | None) -> None:
        self._cache[key] = lat
        if macs:
            self._ratios.append(self.figure(lat) / macs)

    @property
    def rates_known(self) -> int:
        """How many measurements (ms per MAC) the bound has to go on."""
        return len(self._ratios)

    @property
    def fastest_rate(self) -> float | None:
        """The fewest ms per MAC measured so far."""
        return min(self._ratios) if self._ratios else None

    def lower_bound_ms(self, spec: ModelSpec) -> float | None:
        """A cheap optimistic latency: the candidate's MACs at the fastest rate
        (ms per MAC) seen so far. None until three models have been measured,
        or a probe (``probe``) was."""
        if len(self._ratios) < 3 and not self.probed:
            return None
        return min(self._ratios) * spec.macs

    def cached(self, spec: ModelSpec) -> dict[str, Any] | None:
        return self._cache.get(arch_key(spec, self.device, self.precision, self.threads))

    def probe(self, spec: ModelSpec) -> dict[str, Any]:
        """Measure ``spec`` (an efficient model of the space's kind) so that
        the MAC bound is known before the first candidate is measured."""
        lat, _ = self.measure(spec)
        self.probed = True
        return lat

    def measure(self, spec: ModelSpec) -> tuple[dict[str, Any], bool]:
        """(latency statistics in ms, whether they came from the cache)."""
        key = arch_key(spec, self.device, self.precision, self.threads)
        if key in self._cache:
            return self._cache[key], True
        with tempfile.TemporaryDirectory(prefix="odml-nas-") as tmp:
            path = Path(tmp) / "candidate.tflite"
            write_file(path, self.export(spec))
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

    def export(self, spec: ModelSpec) -> bytes:
        """``spec`` as the .tflite its latency is measured on (lowered for a device that needs it)."""
        from odml.exporters.edgetpu import lower_for_edgetpu
        from odml.exporters.tflite import convert, representative_from
        from odml.zoo.registry import create_model

        model = create_model(spec)
        if self.device.lowers_grouped:  # grouped convolutions as split/conv/concat, which the Edge TPU maps
            model, _ = lower_for_edgetpu(model)
        rep = None
        if self.precision == "int8":
            x = self.calibration
            if x is None:
                x = np.random.default_rng(0).uniform(0, 1, (16, *spec.input_shape)).astype(np.float32)  # inputs are [0, 1]
            rep = representative_from(x, n=16)
        return convert(model, self.precision, rep, input_name="image")

    def _bench(self, path: Path) -> dict[str, Any]:
        return self.device.bench(path, BenchOptions(threads=self.threads, runs=self.runs, min_secs=self.min_secs,
                                                    warmup=2))
