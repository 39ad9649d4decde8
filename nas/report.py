"""The end of a search: the Pareto front of the trials (in a predicted
search its points measured on the device now, through the search's latency
meter), the best spec, pareto.json and .png and summary.json; your own
models timed and scored beside the front (``--baseline``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from odml.errors import CheckFailed
from odml.files import append_jsonl, read_jsonl, write_json_atomic
from odml.nas.config import FRONT_MEASURED, MAC_BOUND, SCHEMA, SCREENED, TRIALS, Prepared, SearchError
from odml.nas.evaluate import latency_meter
from odml.nas.latency import latency_figure
from odml.nas.reward import reward
from odml.nas.screen import ranking_report
from odml.pareto import pareto_front, plot_front


def _measure_front(p: Prepared, recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The candidates that were trained with a predicted latency and lie on
    the predicted front, measured on the device (FRONT_MEASURED), so that
    the front's points are measured figures; the records as the front sees
    them."""
    trained = [r for r in recs if not r["metrics"].get("rejected")]
    if all(r.get("latency_source", "measured") == "measured" for r in trained):
        return trained
    known = {r["trial_id"]: r for r in read_jsonl(p.out / FRONT_MEASURED)}
    todo = [r for r in pareto_front(trained) if r["trial_id"] not in known]
    if todo:
        meter = latency_meter(p)  # the search's: its latency cache (--latency-cache) answers what it holds
        for r in todo:
            spec = p.space.decode({k: v for k, v in r["values"].items() if not k.startswith("tuner/")},
                                  p.data.num_classes, name=f"trial_{r['trial_id']}")
            lat, _ = meter.measure(spec)
            known[r["trial_id"]] = {"trial_id": r["trial_id"], "latency_ms": meter.figure(lat)}
            append_jsonl(p.out / FRONT_MEASURED, known[r["trial_id"]])
    out = []
    for r in trained:
        if r["trial_id"] in known:
            m = known[r["trial_id"]]["latency_ms"]
            r = {**r, "latency_ms": m, "latency_source": "measured", "latency_predicted_ms": r["latency_ms"],
                 "reward": reward(p.cfg.reward, r["accuracy"], m, p.cfg.target_ms, p.exponent)}
            out.append(r)
    return out


def finish(p: Prepared, baselines: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write the Pareto front (JSON and PNG), the best spec and the summary.
    The front's points are measured figures (in a predicted search, the
    points of the predicted front are measured now)."""
    recs = read_jsonl(p.out / TRIALS)
    if not recs:
        raise SearchError(f"{p.out}: no trial finished")
    if all(r["status"] == "failed" for r in recs):
        raise SearchError(f"{p.out}: no candidate could be evaluated: all {len(recs)} trials failed; the last: "
                          f"{recs[-1].get('reason', 'failed')}")
    if not any(r["status"] in ("completed", "stopped_early") for r in recs):
        raise CheckFailed(nothing_trained(p, recs))
    measured = _measure_front(p, recs)
    front = pareto_front(measured) if measured else []
    if p.cfg.latency == "predicted" and measured:  # the best by measured figures
        by_id = {r["trial_id"]: r for r in measured}
        recs = [by_id.get(r["trial_id"], r) for r in recs]
    best = max((r for r in recs if r["status"] != "failed"), key=lambda r: r["reward"])
    spec = p.space.decode({k: v for k, v in best["values"].items() if not k.startswith("tuner/")},
                          p.data.num_classes, name=f"{p.space.name}_best")
    _write_json(p.out / "best_spec.json", spec.to_dict())
    _write_json(p.out / "pareto.json", {"schema": SCHEMA, "target_ms": p.cfg.target_ms, "device": p.device.label,
                                        "front": [_brief(r) for r in front]})
    if measured:
        plot_front(measured, front, p.out / "pareto.png",
                   f"search {p.space.name} on {p.device.label} ({len(recs)} trials)", p.cfg.target_ms, baselines or [])
    summary = _summary(p, recs, best, front, baselines)
    _write_json(p.out / "summary.json", summary)
    from odml import report

    report.write_after(p.out)  # report.html: the page of the folder's files (odml report makes it again)
    return summary


REJECTED = {1.0: "over --max-params", 2.0: "over --max-macs", 3.0: "bounded by MACs over --reject-above x target",
            4.0: "predicted over --promising x target", 6.0: "measured over --reject-above x target"}


def nothing_trained(p: Prepared, recs: list[dict[str, Any]]) -> str:
    """Why a search that trained no candidate names no best model: what
    rejected them, what the cheapest cost against the target, what to change."""
    from collections import Counter

    why = Counter(REJECTED.get(r["metrics"].get("rejected"), r["status"]) for r in recs)
    said = ", ".join(f"{n} {w}" for w, n in why.most_common())
    costs = [r for r in recs if r.get("latency_ms") is not None and r["status"] == "rejected"]
    cheapest = min(costs, key=lambda r: r["latency_ms"]) if costs else None
    cost = (f"; the cheapest: {cheapest['latency_ms']:.3g} ms ({cheapest.get('latency_source', 'measured')}) against "
            f"the target {p.cfg.target_ms:g} ms" if cheapest else "")
    if (p.out / MAC_BOUND).is_file():
        b = json.loads((p.out / MAC_BOUND).read_text())
        cost += (f"; the target allows about {b['target_macs'] / 1e6:.3g}M MACs on this device, the space's median "
                 f"draw costs {b['median_macs'] / 1e6:.3g}M")
    return (f"{p.out}: no candidate was trained: all {len(recs)} trials were rejected ({said}){cost}; raise "
            "--target-ms, lower --input-size or search a smaller space (no best model named, no best_spec.json)")


def _summary(p: Prepared, recs: list[dict[str, Any]], best: dict[str, Any], front: list[dict[str, Any]],
             baselines: list[dict[str, Any]] | None) -> dict[str, Any]:
    """What summary.json holds (and the search returns)."""
    status_counts: dict[str, int] = {}
    for r in recs:
        status_counts[r["status"]] = status_counts.get(r["status"], 0) + 1
    return {
        "schema": SCHEMA, "out": str(p.out), "space": p.space.name, "space_size": p.space.size(),
        "task": p.space.task, "metric": "miou" if p.space.task == "segment" else "accuracy",  # what "accuracy" is
        "strategy": p.cfg.strategy, "device": p.device.label, "precision": p.cfg.precision,
        "reward": p.cfg.reward, "exponent": p.exponent, "target_ms": p.cfg.target_ms,
        "trials": len(recs), "considered": considered(p.out, recs), "status": status_counts,
        "failed_reason": next((r.get("reason") for r in recs if r["status"] == "failed"), None),
        "latency": p.cfg.latency,
        "trained": sum(1 for r in recs if not r["metrics"].get("rejected") and not r["metrics"].get("duplicate")),
        "measured": sum(1 for r in recs if r.get("latency_source", "measured") == "measured"
                        and not r["metrics"].get("rejected")),
        "trial_wall_s": round(sum(r.get("wall_s") or 0 for r in recs), 1),
        "best": {**_brief(best), "spec": str(p.out / "best_spec.json")},
        "pareto": [_brief(r) for r in front],
        **({"baselines": baselines} if baselines else {}),
        **({"screen": ranking} if (ranking := ranking_report(p, recs)) else {}),
        **({"mac_bound": json.loads((p.out / MAC_BOUND).read_text())} if (p.out / MAC_BOUND).is_file() else {}),
        **({"space_scale": p.space.scale} if p.space.scale else {}),
        "files": {k: str(p.out / k) for k in (TRIALS, "pareto.json", "pareto.png", "best_spec.json", "report.html")},
    }


def measure_baselines(p: Prepared, models: list[str], input_size: Any = None,
                      input_range: tuple[float, float] | None = None) -> list[dict[str, Any]]:
    """Your own models beside the search's front: each (a .tflite, or a model
    file converted to fp32 first) timed on the search's device as the trials
    were, and scored on the search's validation split."""
    import tempfile

    from odml.devices.classify import classify_dataset
    from odml.devices.device import BenchOptions, Host
    from odml.exporters.export import to_fp32_tflite

    out = []
    opts = BenchOptions(threads=p.cfg.threads, runs=p.cfg.runs, min_secs=0.3, warmup=2)
    with tempfile.TemporaryDirectory(prefix="odml-baseline-") as d:
        for m in models:
            path = Path(m)
            if path.suffix.lower() != ".tflite":
                path = to_fp32_tflite(path, Path(d) / f"{path.stem}_fp32.tflite", input_size, input_range)
            lat = p.device.bench(path, opts)
            c = classify_dataset(path, p.cfg.data, Host(), opts, seed=p.cfg.seed)
            score = c["miou"] if p.space.task == "segment" else c["accuracy"]  # as the trials are scored
            out.append({"name": Path(m).name, "model": str(m), "accuracy": round(float(score), 4),
                        "latency_ms": round(latency_figure(lat, p.cfg.statistic), 4),
                        "size_bytes": lat.get("size_bytes"),
                        "split": c["split"], "device": p.device.label})
    return out


def _brief(r: dict[str, Any]) -> dict[str, Any]:
    def rnd(x, n=4):
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), n)

    return {"trial_id": r["trial_id"], "reward": rnd(r["reward"]), "accuracy": rnd(r["accuracy"]),
            "latency_ms": rnd(r["latency_ms"]), "latency_source": r.get("latency_source", "measured"),
            "latency_predicted_ms": rnd(r.get("latency_predicted_ms")), "params": r["params"], "macs": r["macs"],
            "status": r["status"], "line": r["line"]}


def _write_json(path: Path, obj: Any) -> None:
    write_json_atomic(path, obj)


def considered(out: Path, recs: list[dict[str, Any]]) -> int:
    """Candidates the search looked at: its trials, the children that
    screening ranked and did not pick (each trial's last screening counts),
    and the distinct paths a one-shot controller sampled."""
    extra = {r["trial_id"]: len(r["candidates"]) - 1 for r in read_jsonl(out / SCREENED)}
    oneshot = read_jsonl(out / "oneshot" / "log.jsonl")
    paths = max(0, oneshot[-1]["paths_considered"] - 1) if oneshot else 0
    return len(recs) + sum(extra.values()) + paths
