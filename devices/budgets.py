"""Latency budgets for CI.

A budget file (TOML; or the ``[tool.odml.budgets]`` table of a pyproject.toml)
lists models and what each may cost::

    [defaults]                 # optional: how to measure
    threads = 1
    runs = 50
    data = "digits"            # for min_accuracy / min_ovic_score

    [[model]]
    path = "runs/demo/export/model_int8.tflite"   # relative to the budget file
    statistic = "p90"          # p50, p90 or mean (default p50)
    max_latency = "5 ms"       # units: us, ms, s
    max_size = "2 MB"          # units: B, KB, KiB, MB, MiB, GB, GiB
    max_peak_memory = "300 MB" # the benchmark process's peak RSS
    min_accuracy = 0.9
    min_ovic_score = 0.9       # OVIC 2018, ovic_limit_ms (default 33)
    reference = "runs/demo/export/model_fp32.tflite"
    max_ratio = 1.05           # statistic / the reference's, interleaved runs in one process

Every check becomes one row of the verdict (and one JUnit test case)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from odml.errors import OdmlError


class BudgetFileError(OdmlError):
    pass


TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
SIZE_UNITS = {"b": 1, "kb": 1e3, "kib": 1024, "mb": 1e6, "mib": 2**20, "gb": 1e9, "gib": 2**30}
STATISTICS = {"p50": "median_ms", "median": "median_ms", "p90": "p90_ms", "mean": "mean_ms"}
DEFAULT_KEYS = {"device", "threads", "runs", "warmup", "min_secs", "xnnpack", "data", "ovic_limit_ms", "rounds"}
MODEL_KEYS = {"path", "name", "statistic", "max_latency", "max_size", "max_peak_memory", "min_accuracy",
              "min_ovic_score", "ovic_limit_ms", "reference", "max_ratio"}


@dataclass
class ModelBudget:
    path: Path
    name: str
    statistic: str = "p50"
    max_latency_ms: float | None = None
    max_size_bytes: float | None = None
    max_peak_memory_bytes: float | None = None
    min_accuracy: float | None = None
    min_ovic_score: float | None = None
    ovic_limit_ms: float = 33.0
    reference: Path | None = None
    max_ratio: float | None = None


@dataclass
class BudgetFile:
    source: str
    defaults: dict[str, Any] = field(default_factory=dict)
    models: list[ModelBudget] = field(default_factory=list)


def _quantity(value: Any, units: dict[str, float], kind: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, str):
        example = "'5 ms'" if kind == "time" else "'2 MB'"
        raise BudgetFileError(f"{where}: give the value with a unit, e.g. {example}; got {value!r}")
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)\s*([A-Za-z]+)\s*", value)
    if not m:
        raise BudgetFileError(f"{where}: cannot read {value!r} as a number with a unit")
    unit = m[2].lower()
    if unit not in units:
        raise BudgetFileError(f"{where}: {m[2]!r} is not a {kind} unit (use {', '.join(units)})")
    out = float(m[1]) * units[unit]
    if not out < float("inf"):
        raise BudgetFileError(f"{where}: {value!r} is too large")
    return out


def _fraction(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise BudgetFileError(f"{where}: must be a number in [0, 1], got {value!r}")
    return float(value)


DEFAULT_TYPES = {"device": "text", "threads": "count", "runs": "count", "warmup": "whole", "min_secs": "whole+",
                 "xnnpack": "flag", "data": "text", "ovic_limit_ms": "positive", "rounds": "count"}


def _typed(v: Any, kind: str, where: str) -> Any:
    """``v`` if it is of ``kind`` (text, flag, count >= 1, whole >= 0, positive or whole+ >= 0 finite numbers)."""
    import math

    number = isinstance(v, (int, float)) and not isinstance(v, bool)
    ok = {"text": isinstance(v, str) and bool(v.strip()), "flag": isinstance(v, bool),
          "count": number and isinstance(v, int) and 1 <= v <= 10 ** 6,
          "whole": number and isinstance(v, int) and 0 <= v <= 10 ** 6,
          "positive": number and math.isfinite(v) and v > 0,
          "whole+": number and math.isfinite(v) and v >= 0}[kind]
    if not ok:
        want = {"text": "a non-empty string", "flag": "true or false", "count": "a whole number from 1",
                "whole": "a whole number from 0", "positive": "a positive number",
                "whole+": "a number from 0"}[kind]
        raise BudgetFileError(f"{where}: expected {want}, got {v!r}")
    return v


def load_budgets(path: str | Path) -> BudgetFile:
    p = Path(path)
    if not p.is_file():
        raise BudgetFileError(f"{p}: budget file not found")
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BudgetFileError(f"{p}: not valid TOML: {e}") from None
    where = str(p)
    if p.name == "pyproject.toml":
        doc = doc.get("tool", {}).get("odml", {}).get("budgets")
        where = f"{p} [tool.odml.budgets]"
        if doc is None:
            raise BudgetFileError(f"{p}: no [tool.odml.budgets] table")
    unknown = sorted(set(doc) - {"defaults", "model"})
    if unknown:
        raise BudgetFileError(f"{where}: unknown key(s) {', '.join(unknown)} (expected [defaults] and [[model]])")
    defaults = doc.get("defaults", {})
    if not isinstance(defaults, dict):
        raise BudgetFileError(f"{where}: [defaults] must be a table, got {defaults!r}")
    bad = sorted(set(defaults) - DEFAULT_KEYS)
    if bad:
        raise BudgetFileError(f"{where}: [defaults] unknown key(s) {', '.join(bad)}; known: {', '.join(sorted(DEFAULT_KEYS))}")
    for k, v in defaults.items():
        _typed(v, DEFAULT_TYPES[k], f"{where}: [defaults] {k}")
    models = doc.get("model", [])
    if not isinstance(models, list) or not models:
        raise BudgetFileError(f"{where}: no [[model]] entries")
    base = p.parent
    out = BudgetFile(where, defaults)
    for i, m in enumerate(models):
        w = f"{where}: model {i + 1}"
        if not isinstance(m, dict):
            raise BudgetFileError(f"{w}: must be a [[model]] table, got {m!r}")
        bad = sorted(set(m) - MODEL_KEYS)
        if bad:
            raise BudgetFileError(f"{w}: unknown key(s) {', '.join(bad)}; known: {', '.join(sorted(MODEL_KEYS))}")
        if "path" not in m:
            raise BudgetFileError(f"{w}: missing 'path'")
        for k in ("path", "name", "statistic", "reference"):
            if k in m:
                _typed(m[k], "text", f"{w}: {k}")
        b = ModelBudget(path=base / m["path"], name=m.get("name", Path(m["path"]).name))
        stat = m.get("statistic", "p50")
        if stat not in STATISTICS:
            raise BudgetFileError(f"{w}: statistic {stat!r} is not one of p50, p90, mean")
        b.statistic = stat
        if "max_latency" in m:
            b.max_latency_ms = _quantity(m["max_latency"], TIME_UNITS, "time", f"{w}: max_latency")
        if "max_size" in m:
            b.max_size_bytes = _quantity(m["max_size"], SIZE_UNITS, "size", f"{w}: max_size")
        if "max_peak_memory" in m:
            b.max_peak_memory_bytes = _quantity(m["max_peak_memory"], SIZE_UNITS, "size", f"{w}: max_peak_memory")
        if "min_accuracy" in m:
            b.min_accuracy = _fraction(m["min_accuracy"], f"{w}: min_accuracy")
        if "min_ovic_score" in m:
            b.min_ovic_score = _fraction(m["min_ovic_score"], f"{w}: min_ovic_score")
        if "ovic_limit_ms" in m:
            b.ovic_limit_ms = float(_typed(m["ovic_limit_ms"], "positive", f"{w}: ovic_limit_ms"))
        if ("reference" in m) != ("max_ratio" in m):
            raise BudgetFileError(f"{w}: 'reference' and 'max_ratio' go together")
        if "reference" in m:
            b.reference = base / m["reference"]
            r = m["max_ratio"]
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r < float("inf"):
                raise BudgetFileError(f"{w}: max_ratio must be a positive number, got {r!r}")
            b.max_ratio = float(r)
        if (b.min_accuracy is not None or b.min_ovic_score is not None) and "data" not in defaults:
            raise BudgetFileError(f"{w}: accuracy and OVIC budgets need 'data' in [defaults]")
        out.models.append(b)
    return out


def check(name: str, what: str, limit: float, measured: float, unit: str, upper: bool = True) -> dict[str, Any]:
    ok = measured <= limit if upper else measured >= limit
    return {"model": name, "check": what, "limit": limit, "measured": measured, "unit": unit,
            "bound": "max" if upper else "min", "ok": bool(ok)}


def junit_xml(checks: list[dict[str, Any]], suite: str = "odml.budgets", time_s: float = 0.0) -> str:
    fails = sum(1 for c in checks if not c["ok"])
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             f'<testsuites><testsuite name={quoteattr(suite)} tests="{len(checks)}" failures="{fails}" '
             f'errors="0" time="{time_s:.3f}">']
    for c in checks:
        desc = f"{c['bound']} {c['limit']:.6g} {c['unit']}, measured {c['measured']:.6g} {c['unit']}"
        lines.append(f'  <testcase classname={quoteattr(c["model"])} name={quoteattr(c["check"])}>')
        if not c["ok"]:
            lines.append(f'    <failure message={quoteattr("budget exceeded: " + desc)}/>')
        else:
            lines.append(f"    <system-out>{desc}</system-out>")
        lines.append("  </testcase>")
    lines.append("</testsuite></testsuites>")
    return "\n".join(lines) + "\n"


def evaluate(bf: BudgetFile, progress: Any = None) -> list[dict[str, Any]]:
    """Measure every model of the budget file and return one row per check."""
    from odml.devices.classify import classify_dataset
    from odml.devices.device import BenchOptions, Host
    from odml.devices.host import compare_host

    d = bf.defaults
    device = d.get("device", "host")
    if device != "host":
        raise BudgetFileError(f"{bf.source}: [defaults] device {device!r} is unknown; available: host")
    host = Host()
    bopts = BenchOptions(threads=int(d.get("threads", 1)), xnnpack=bool(d.get("xnnpack", True)),
                         warmup=int(d.get("warmup", 1)), runs=int(d.get("runs", 50)),
                         min_secs=float(d.get("min_secs", 1.0)))
    opts = host.host_options(bopts)
    rounds = int(d.get("rounds", 10))
    checks: list[dict[str, Any]] = []
    for b in bf.models:
        if progress:
            progress(f"measuring {b.name}")
        res = host.bench(b.path, bopts)
        key = STATISTICS[b.statistic]
        if b.max_latency_ms is not None:
            checks.append(check(b.name, f"{b.statistic} latency", b.max_latency_ms, res[key], "ms"))
        if b.max_size_bytes is not None:
            checks.append(check(b.name, "file size", b.max_size_bytes / 2**20, res["size_bytes"] / 2**20, "MiB"))
        if b.max_peak_memory_bytes is not None:
            checks.append(check(b.name, "peak memory", b.max_peak_memory_bytes / 2**20, res["peak_rss_mb"], "MiB"))
        if b.min_accuracy is not None or b.min_ovic_score is not None:
            if progress:
                progress(f"classifying {d['data']} with {b.name}")
            c = classify_dataset(b.path, d["data"], host, bopts, ovic=b.min_ovic_score is not None,
                                 limit_ms=b.ovic_limit_ms)
            if b.min_accuracy is not None:
                checks.append(check(b.name, "accuracy", b.min_accuracy, c["accuracy"], "", upper=False))
            if b.min_ovic_score is not None:
                checks.append(check(b.name, f"OVIC score ({b.ovic_limit_ms:g} ms)", b.min_ovic_score,
                                    c["ovic"]["score"], "", upper=False))
        if b.reference is not None:
            if progress:
                progress(f"{b.name} against {b.reference.name}, interleaved")
            cmp = compare_host(b.path, b.reference, opts, rounds)
            ratio = cmp["model"][key] / cmp["reference"][key]
            checks.append(check(b.name, f"{b.statistic} vs {b.reference.name}", b.max_ratio, ratio, "x"))
    return checks
