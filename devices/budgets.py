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

On a phone (``device = "adb:SERIAL"`` and ``accelerators = ["cpu", "gpu"]``
in [defaults], or ``--device`` / ``--accelerator`` on the command line)
every model is measured on each accelerator; a check applies to each of
them, and a table named after one applies to it alone::

    min_delegated = 0.95       # share of the graph's ops the accelerator's delegate took
    [model.gpu]
    max_latency = "4 ms"
    min_delegated = 1.0
    min_delegated_time = 0.9   # share of the time spent in the delegate (needs an op profile: op_profile = true)

A table for an accelerator that is not measured is refused.

Every check becomes one row of the verdict (and one JUnit test case)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as xml_escape
from xml.sax.saxutils import quoteattr

from odml.errors import OdmlError


class BudgetFileError(OdmlError):
    pass


TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
SIZE_UNITS = {"b": 1, "kb": 1e3, "kib": 1024, "mb": 1e6, "mib": 2**20, "gb": 1e9, "gib": 2**30}
STATISTICS = {"p50": "median_ms", "median": "median_ms", "p90": "p90_ms", "mean": "mean_ms"}
DEFAULT_KEYS = {"device", "threads", "runs", "warmup", "min_secs", "xnnpack", "data", "ovic_limit_ms", "rounds",
                "accelerators", "op_profile", "benchmark_binary", "core_mask"}
ACCEL_KEYS = {"statistic", "max_latency", "min_delegated", "min_delegated_time"}  # also in a [model.<accelerator>]
MODEL_KEYS = {"path", "name", "statistic", "max_latency", "max_size", "max_peak_memory", "min_accuracy",
              "min_ovic_score", "ovic_limit_ms", "reference", "max_ratio", "min_delegated", "min_delegated_time"}
ACCELERATOR_NAMES = ("cpu", "gpu", "npu", "edgetpu")  # devices.device.KNOWN_ACCELERATORS


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
    min_delegated: float | None = None
    min_delegated_time: float | None = None
    per_accelerator: dict[str, "ModelBudget"] = field(default_factory=dict)  # [model.gpu]: its checks there


@dataclass
class BudgetFile:
    source: str
    defaults: dict[str, Any] = field(default_factory=dict)
    models: list[ModelBudget] = field(default_factory=list)
    base: Path = Path(".")  # the budget file's folder: relative paths in it are relative to it


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
                 "xnnpack": "flag", "data": "text", "ovic_limit_ms": "positive", "rounds": "count",
                 "accelerators": "names", "op_profile": "flag", "benchmark_binary": "text", "core_mask": "text"}


def _typed(v: Any, kind: str, where: str) -> Any:
    """``v`` if it is of ``kind`` (text, flag, count >= 1, whole >= 0, positive or whole+ >= 0 finite numbers)."""
    import math

    number = isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "names":
        if not (isinstance(v, list) and v and all(isinstance(a, str) and a in ACCELERATOR_NAMES for a in v)):
            raise BudgetFileError(f"{where}: expected a list of accelerators ({', '.join(ACCELERATOR_NAMES)}), "
                                  f"got {v!r}")
        return v
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
    out = BudgetFile(where, defaults, base=base)
    for i, m in enumerate(models):
        w = f"{where}: model {i + 1}"
        if not isinstance(m, dict):
            raise BudgetFileError(f"{w}: must be a [[model]] table, got {m!r}")
        bad = sorted(set(m) - MODEL_KEYS - set(ACCELERATOR_NAMES))
        if bad:
            raise BudgetFileError(f"{w}: unknown key(s) {', '.join(bad)}; known: {', '.join(sorted(MODEL_KEYS))} "
                                  f"and a table per accelerator ({', '.join(ACCELERATOR_NAMES)})")
        if "path" not in m:
            raise BudgetFileError(f"{w}: missing 'path'")
        for k in ("path", "name", "statistic", "reference"):
            if k in m:
                _typed(m[k], "text", f"{w}: {k}")
        b = ModelBudget(path=base / m["path"], name=m.get("name", Path(m["path"]).name))
        _accel_checks(b, m, w)
        measured = defaults.get("accelerators")
        for acc in ACCELERATOR_NAMES:
            if acc not in m:
                continue
            sub = m[acc]
            if not isinstance(sub, dict):
                raise BudgetFileError(f"{w}: {acc} must be a table ([model.{acc}]), got {sub!r}")
            bad = sorted(set(sub) - ACCEL_KEYS)
            if bad:
                raise BudgetFileError(f"{w}: [model.{acc}] unknown key(s) {', '.join(bad)}; known: "
                                      f"{', '.join(sorted(ACCEL_KEYS))}")
            if measured is not None and acc not in measured:
                raise BudgetFileError(f"{w}: [model.{acc}] budgets an accelerator that is not measured "
                                      f"(accelerators = {measured})")
            a = ModelBudget(path=b.path, name=b.name, statistic=b.statistic, max_latency_ms=b.max_latency_ms,
                            min_delegated=b.min_delegated, min_delegated_time=b.min_delegated_time)
            _accel_checks(a, sub, f"{w}: [model.{acc}]")
            b.per_accelerator[acc] = a
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


def _accel_checks(b: ModelBudget, m: dict[str, Any], w: str) -> None:
    """The checks a model may set for every accelerator or for one ([model.gpu])."""
    if "statistic" in m:
        _typed(m["statistic"], "text", f"{w}: statistic")
        if m["statistic"] not in STATISTICS:
            raise BudgetFileError(f"{w}: statistic {m['statistic']!r} is not one of p50, p90, mean")
        b.statistic = m["statistic"]
    if "max_latency" in m:
        b.max_latency_ms = _quantity(m["max_latency"], TIME_UNITS, "time", f"{w}: max_latency")
    if "min_delegated" in m:
        b.min_delegated = _fraction(m["min_delegated"], f"{w}: min_delegated")
    if "min_delegated_time" in m:
        b.min_delegated_time = _fraction(m["min_delegated_time"], f"{w}: min_delegated_time")


def check(name: str, what: str, limit: float, measured: float, unit: str, upper: bool = True) -> dict[str, Any]:
    ok = measured <= limit if upper else measured >= limit
    return {"model": name, "check": what, "limit": limit, "measured": measured, "unit": unit,
            "bound": "max" if upper else "min", "ok": bool(ok)}


def junit_xml(checks: list[dict[str, Any]], suite: str = "odml.budgets", time_s: float = 0.0,
              report: Any = None) -> str:
    """JUnit XML, one test case per check; ``report``: the run's page
    (bench --report), named in the suite's properties and in every case."""
    fails = sum(1 for c in checks if not c["ok"])
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             f'<testsuites><testsuite name={quoteattr(suite)} tests="{len(checks)}" failures="{fails}" '
             f'errors="0" time="{time_s:.3f}">']
    see = ""
    if report is not None:
        lines.append(f'  <properties><property name="report" value={quoteattr(str(report))}/></properties>')
        see = f" (the page: {report})"
    for c in checks:
        desc = f"{c['bound']} {c['limit']:.6g} {c['unit']}, measured {c['measured']:.6g} {c['unit']}{see}"
        lines.append(f'  <testcase classname={quoteattr(c["model"])} name={quoteattr(c["check"])}>')
        if not c["ok"]:
            lines.append(f'    <failure message={quoteattr("budget exceeded: " + desc)}/>')
        else:
            lines.append(f"    <system-out>{xml_escape(desc)}</system-out>")
        lines.append("  </testcase>")
    lines.append("</testsuite></testsuites>")
    return "\n".join(lines) + "\n"


def evaluate(bf: BudgetFile, progress: Any = None, device: str | None = None, accelerators: list[str] | None = None,
             benchmark_binary: str | None = None) -> list[dict[str, Any]]:
    """Measure every model of the budget file and return one row per check.
    ``device`` / ``accelerators`` (the command line's) replace the file's."""
    from dataclasses import replace

    from odml.devices.classify import classify_dataset
    from odml.devices.device import BenchOptions, DeviceError, Host, parse_device
    from odml.devices.host import compare_host

    d = bf.defaults
    where = device or d.get("device", "host")
    try:
        given = benchmark_binary or (str(bf.base / d["benchmark_binary"]) if d.get("benchmark_binary") else None)
        dev = parse_device(where, given, check=False)
        accs = dev.accelerators_for(accelerators or d.get("accelerators"))
    except DeviceError as e:
        raise BudgetFileError(f"{bf.source}: {e}") from None
    for b in bf.models:
        for acc in b.per_accelerator:
            if acc not in accs:
                raise BudgetFileError(f"{bf.source}: {b.name}: [model.{acc}] budgets an accelerator that is not "
                                      f"measured (measured: {', '.join(accs)})")
        if b.reference is not None and not isinstance(dev, Host):
            raise BudgetFileError(f"{bf.source}: {b.name}: reference / max_ratio are measured on the host (interleaved "
                                  f"runs in one process), not on {dev.label}; budget them in a file for the host")
    dev.check()
    bopts = BenchOptions(threads=int(d.get("threads", 1)), xnnpack=bool(d.get("xnnpack", True)),
                         warmup=int(d.get("warmup", 1)), runs=int(d.get("runs", 50)),
                         min_secs=float(d.get("min_secs", 1.0)), op_profile=bool(d.get("op_profile", False)),
                         core_mask=d.get("core_mask"))
    rounds = int(d.get("rounds", 10))
    checks: list[dict[str, Any]] = []
    for b in bf.models:
        for acc in accs:
            if progress:
                progress(f"measuring {b.name} on {dev.label} ({acc})")
            res = dev.bench(b.path, replace(bopts, accelerator=acc))
            tag = f" ({acc})" if len(accs) > 1 or acc != dev.accelerators[0] else ""
            checks += _row_checks(b.per_accelerator.get(acc, b), res, tag, dev.label)
            if b.min_ovic_score is not None and not dev.classifies:  # the row's latency, the host's predictions
                if progress:
                    progress(f"classifying {d['data']} with {b.name} for {dev.label} ({acc})")
                c = classify_dataset(b.path, d["data"], Host(), bopts, ovic=True, limit_ms=b.ovic_limit_ms,
                                     latency_ms=res.get("median_ms") or res.get("mean_ms"),
                                     latency_from=f"{dev.label} ({acc})")
                checks.append(check(b.name, f"OVIC score ({b.ovic_limit_ms:g} ms){tag}", b.min_ovic_score,
                                    c["ovic"]["score"], "", upper=False))
        if b.max_size_bytes is not None:
            checks.append(check(b.name, "file size", b.max_size_bytes / 2**20, res["size_bytes"] / 2**20, "MiB"))
        if b.max_peak_memory_bytes is not None:
            peak = res.get("peak_rss_mb", res.get("peak_memory_mb"))
            if peak is None:
                raise BudgetFileError(f"{bf.source}: {b.name}: {dev.label} reports no peak memory")
            checks.append(check(b.name, "peak memory", b.max_peak_memory_bytes / 2**20, peak, "MiB"))
        if b.min_accuracy is not None or (b.min_ovic_score is not None and dev.classifies):
            if progress:
                progress(f"classifying {d['data']} with {b.name}")
            ovic = b.min_ovic_score is not None and dev.classifies
            c = classify_dataset(b.path, d["data"], dev if dev.classifies else Host(), bopts, ovic=ovic,
                                 limit_ms=b.ovic_limit_ms)
            if b.min_accuracy is not None:
                checks.append(check(b.name, "accuracy", b.min_accuracy, c["accuracy"], "", upper=False))
            if ovic:
                checks.append(check(b.name, f"OVIC score ({b.ovic_limit_ms:g} ms)", b.min_ovic_score,
                                    c["ovic"]["score"], "", upper=False))
        if b.reference is not None:
            if progress:
                progress(f"{b.name} against {b.reference.name}, interleaved")
            key = STATISTICS[b.statistic]
            cmp = compare_host(b.path, b.reference, dev.host_options(bopts), rounds)
            ratio = cmp["model"][key] / cmp["reference"][key]
            checks.append(check(b.name, f"{b.statistic} vs {b.reference.name}", b.max_ratio, ratio, "x"))
    return checks


def _row_checks(b: ModelBudget, res: dict[str, Any], tag: str, label: str) -> list[dict[str, Any]]:
    """The latency and delegation checks of one measured row (one accelerator)."""
    out = []
    if b.max_latency_ms is not None:
        key = STATISTICS[b.statistic]
        if res.get(key) is None:
            raise BudgetFileError(f"{b.name}: {label} reports no {b.statistic} latency (it reports "
                                  f"{', '.join(k for k in ('median_ms', 'mean_ms', 'p90_ms') if res.get(k) is not None)})")
        out.append(check(b.name, f"{b.statistic} latency{tag}", b.max_latency_ms, res[key], "ms"))
    for what, limit, field_ in (("delegated ops", b.min_delegated, "share_ops"),
                                ("delegated time", b.min_delegated_time, "share_time")):
        if limit is None:
            continue
        share = (res.get("delegation") or {}).get(field_)
        if share is None:
            need = "an op profile (op_profile = true in [defaults])" if field_ == "share_time" else \
                "a device whose benchmark reports its delegate (a phone over adb)"
            raise BudgetFileError(f"{b.name}: {what} on {label}{tag} is not known: it needs {need}")
        out.append(check(b.name, f"{what}{tag}", limit, share, "", upper=False))
    return out
