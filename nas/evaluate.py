"""What one trial of a search does and the record it leaves: the
``Evaluator`` decodes a candidate, bounds it (parameters, MACs, predicted or
optimistic latency), measures its latency through the search's
``LatencyMeter``, proxy-trains it (with the median stopping rule) and scores
it by the reward; ``trial_record`` is the line trials.jsonl holds for it."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable

from odml.errors import OdmlError
from odml.files import append_jsonl, read_jsonl, write_json_atomic
from odml.nas.config import FAILURES, LATENCY_CACHE, MAC_BOUND, TRIALS, Prepared
from odml.nas.latency import LatencyMeter, arch_key
from odml.nas.reward import reward


def latency_meter(p: Prepared) -> LatencyMeter:
    """The search's latency meter, made once per ``Prepared``: its cache is
    --latency-cache when given, else the run folder's latency_cache.jsonl;
    int8 is calibrated on training images. The trials and the measurement of
    the front share it."""
    if p.meter is None:
        from odml.data.images import to_float

        cache = Path(p.cfg.latency_cache) if p.cfg.latency_cache else p.out / LATENCY_CACHE
        p.meter = LatencyMeter(p.device, p.cfg.precision, p.cfg.threads, p.cfg.runs, 0.3, cache,
                               calibration=to_float(p.data.x_train[:16]), statistic=p.cfg.statistic)
    return p.meter


def mac_bound(p: Prepared, on_phase: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """The MAC bound before the first candidate: a probe measured on the
    device (the space's reference model at the input size, else the largest
    of eight random draws), its ms per MAC the optimistic rate that rejects
    candidates far over the target untrained. None in a predicted search (the
    predictor bounds) or when the latency cache already holds measurements."""
    meter = latency_meter(p)
    if (p.out / MAC_BOUND).is_file() and meter.rates_known:  # a resumed search: the probe is in the latency cache
        meter.probed = True
        return json.loads((p.out / MAC_BOUND).read_text())
    if p.predictor is not None or meter.rates_known >= 3:  # the predictor bounds, or the cache holds rates
        return None
    if p.space.task != "classify":  # a decoder's resizes make MACs a poor guide: the bound after three measurements
        return None
    if p.space.reference:
        from odml.zoo import create_spec

        probe = create_spec(p.space.reference, num_classes=p.data.num_classes, input_size=p.space.input_size)
        name = p.space.reference
    else:
        probe = max(p.space.draws(8, p.cfg.seed, p.data.num_classes), key=lambda s: s.macs)
        name = "the largest of 8 random draws"
    if on_phase:
        on_phase(f"measuring a probe ({name}) for the MAC bound")
    try:
        lat = meter.probe(probe)
    except OdmlError as e:  # a probe the device cannot run: no bound until three candidates are measured
        if on_phase:
            on_phase(f"no MAC bound yet: the probe failed ({' '.join(str(e).split())[:120]})")
        return None
    ms = meter.figure(lat)
    rate = meter.fastest_rate
    bound = {"probe": name, "probe_macs": int(probe.macs), "probe_ms": float(f"{ms:.6g}"),
             "target_macs": int(p.cfg.target_ms / rate),
             "reject_macs": int(p.cfg.reject_factor * p.cfg.target_ms / rate),
             "median_macs": p.space.median_macs(seed=p.cfg.seed)}
    write_json_atomic(p.out / MAC_BOUND, bound)
    return bound


class Evaluator:
    """What one trial does: decode, bound, measure, train, reward."""

    def __init__(self, p: Prepared, meter: LatencyMeter, on_phase: Callable[[str], None] | None = None):
        self.p, self.meter, self.on_phase = p, meter, on_phase or (lambda s: None)
        self.trained_here = 0
        self.proxies = None  # a ProxyCache, made when the screen needs one

    def records(self) -> list[dict[str, Any]]:
        return read_jsonl(self.p.out / TRIALS)

    def __call__(self, trial_id: str, values: dict[str, Any]) -> dict[str, float]:
        cfg, sp = self.p.cfg, self.p.space
        recs = self.records()
        for r in recs:
            if r["trial_id"] == trial_id:  # finished before an interruption: answer from the record
                return dict(r["metrics"])
        epochs = int(values.get("tuner/epochs", cfg.epochs))
        t0 = time.perf_counter()
        try:
            spec = sp.decode({k: v for k, v in values.items() if not k.startswith("tuner/")},
                             self.p.data.num_classes, name=f"trial_{trial_id}")
            return self.evaluate(spec, epochs, recs, trial_id)
        except Exception as e:  # noqa: BLE001 - a candidate that cannot be built, converted, measured or trained
            why = f"{type(e).__name__}: {' '.join(str(e).split())}"[:300]
            if not isinstance(e, OdmlError):
                why = f"internal error: {why}"
            append_jsonl(self.p.out / FAILURES, {"trial_id": trial_id, "reason": why})
            est = cfg.reject_factor * cfg.target_ms
            return {"failed": 1.0, "rejected": 5.0, "accuracy": 0.0, "latency_ms": est, "latency_measured": 0.0,
                    "epochs": float(epochs), "wall_s": time.perf_counter() - t0,
                    "reward": reward(cfg.reward, 0.0, est, cfg.target_ms, self.p.exponent)}

    def evaluate(self, spec, epochs: int, recs: list[dict[str, Any]] | None = None,
                 label: str = "", reject: bool = True) -> dict[str, float]:
        """The metrics of one architecture: bound, latency, proxy accuracy,
        reward. ``reject=False``: trained whatever its latency (the one-shot
        search's answer)."""
        cfg = self.p.cfg
        recs = self.records() if recs is None else recs
        t0 = time.perf_counter()
        m: dict[str, float] = {"params": float(spec.params), "macs": float(spec.macs), "epochs": float(epochs)}
        reason, est = self._bound(spec, m, reject)
        if reason is not None:
            m.update(rejected=reason, latency_ms=est, latency_measured=0.0, accuracy=0.0,
                     wall_s=time.perf_counter() - t0, reward=reward(cfg.reward, 0.0, est, cfg.target_ms, self.p.exponent))
            return m
        if cfg.latency == "predicted":
            m.update(latency_ms=est, latency_measured=0.0)
        else:
            self._measure(spec, m, label)
            if reject and m["latency_ms"] > cfg.reject_factor * cfg.target_ms:  # far over the target: not trained
                m.update(rejected=6.0, accuracy=0.0, wall_s=time.perf_counter() - t0,
                         reward=reward(cfg.reward, 0.0, m["latency_ms"], cfg.target_ms, self.p.exponent))
                return m
        self._accuracy(spec, epochs, recs, m, label)
        if cfg.screen in ("proxy", "predictor"):  # each trained trial's proxies, for the screen's Kendall tau
            if self.proxies is None:
                from odml.nas.screen import ProxyCache

                self.proxies = ProxyCache(self.p)
            try:
                self.proxies.get(spec)
            except Exception as e:  # noqa: BLE001 - a trained trial stays trained; its tau row is missing
                append_jsonl(self.p.out / FAILURES, {"trial_id": label, "reason": f"proxies: {type(e).__name__}: "
                                                     f"{' '.join(str(e).split())[:200]}", "trained": True})
        m["wall_s"] = time.perf_counter() - t0
        m["reward"] = reward(cfg.reward, m["accuracy"], m["latency_ms"], cfg.target_ms, self.p.exponent)
        return m

    def _bound(self, spec, m: dict[str, float], reject: bool) -> tuple[float | None, float | None]:
        """Why ``spec`` is rejected before it is measured or trained (the
        reason code; None: it is not), and its latency as estimated so far:
        predicted (also put in ``m``), or, when rejected without a
        prediction, the optimistic bound or else reject_factor x target."""
        cfg = self.p.cfg
        reason = None
        if cfg.max_params and spec.params > cfg.max_params:
            reason = 1.0
        elif cfg.max_macs and spec.macs > cfg.max_macs:
            reason = 2.0
        pred = self.p.predictor
        lb = self.meter.lower_bound_ms(spec) if pred is None else None
        est = None
        if pred is not None:  # predicted and hybrid: every candidate predicted first
            est = m["latency_predicted_ms"] = float(pred.predict(spec))
            if reason is None and reject and est > cfg.promising * cfg.target_ms:
                reason = 4.0
        if reason is None and reject and lb is not None and lb > cfg.reject_factor * cfg.target_ms:
            reason = 3.0
        if reason is not None:
            est = est if est is not None else lb if lb is not None else cfg.reject_factor * cfg.target_ms
        return reason, est

    def _measure(self, spec, m: dict[str, float], label: str) -> None:
        """The latency of ``spec`` measured on the device (or read from the
        cache) into ``m``; hybrid: the predictor refitted with it."""
        self.on_phase(f"trial {label}: measuring latency")
        lat, cached = self.meter.measure(spec)
        m.update({f"latency_{k}": float(v) for k, v in lat.items() if isinstance(v, (int, float)) and k != "count"})
        m["latency_ms"] = self.meter.figure(lat)
        m["latency_cached"] = float(cached)
        m["latency_measured"] = 1.0
        pred = self.p.predictor
        if pred is not None and not cached:  # hybrid: refit what the whole model adds with every measurement
            pred.add_measurement(spec, m["latency_ms"])

    def _accuracy(self, spec, epochs: int, recs: list[dict[str, Any]], m: dict[str, float], label: str) -> None:
        """The proxy accuracy of ``spec`` into ``m``: a finished trial's of the
        same architecture and budget, or trained now."""
        key = arch_key(spec, self.meter.device, self.meter.precision, self.meter.threads)
        same = next((r for r in recs if r.get("arch_key") == key and r["metrics"].get("epochs") == epochs
                     and not r["metrics"].get("rejected")), None)
        if same is not None:  # the same architecture, trained with the same budget: nothing to redo
            for k in ("accuracy", "train_accuracy", "stopped_early", "epochs_run"):
                if k in same["metrics"]:
                    m[k] = same["metrics"][k]
            m["duplicate"] = 1.0
        else:
            self.on_phase(f"trial {label}: training {epochs} epochs")
            m.update(self._train(spec, epochs, recs))

    def _train(self, spec, epochs: int, recs: list[dict[str, Any]]) -> dict[str, float]:
        from odml.train import proxy_train
        from odml.train.trainer import TrainConfig

        cfg = self.p.cfg
        # median stopping rule (Vizier): end a trial whose training accuracy after
        # an epoch is below the median of the finished trials at that epoch
        curves = [r["metrics"] for r in recs if not r["metrics"].get("rejected") and not r["metrics"].get("duplicate")]

        def should_stop(epoch: int, logs: dict) -> bool:
            return median_stop(epoch, logs.get("accuracy", 1.0), curves, epochs)

        tc = TrainConfig(epochs=epochs, batch_size=cfg.batch_size, learning_rate=cfg.lr, seed=cfg.seed,
                         distribute=cfg.distribute)
        res = proxy_train(spec, self.p.data, tc, should_stop)
        self.trained_here += 1
        out = {"accuracy": float(res["score"]), "epochs_run": float(res["epochs_run"]),
               "stopped_early": float(res["epochs_run"] < epochs), "train_s": float(res["train_wall_s"])}
        if "train_accuracy" in res:
            out["train_accuracy"] = float(res["train_accuracy"])
        for i, a in enumerate(res["history"].get("accuracy", [])):
            out[f"train_acc_e{i}"] = float(a)
        return out


def median_stop(epoch: int, acc: float, curves: list[dict[str, float]], epochs: int, min_curves: int = 3) -> bool:
    """The median stopping rule (Google Vizier): stop a trial whose training
    accuracy after ``epoch`` is below the median of the finished trials at the
    same epoch; after the first epoch only when below half of it (the first
    epoch is noisy). Never on the last epoch, and not before ``min_curves``
    trials have finished."""
    if epoch >= epochs - 1:
        return False
    seen = [c[f"train_acc_e{epoch}"] for c in curves if f"train_acc_e{epoch}" in c]
    if len(seen) < min_curves:
        return False
    med = statistics.median(seen)
    return acc < (0.5 * med if epoch == 0 else med)


def trial_record(p: Prepared, trial_id: str, values: dict[str, Any], metrics: dict[str, float]) -> dict[str, Any]:
    """The line trials.jsonl holds for a finished trial: its architecture,
    metrics, where its latency came from, its status (and a failed one's
    reason, from failures.jsonl)."""
    vals = {k: v for k, v in values.items() if not k.startswith("tuner/")}
    dev = p.device
    try:
        spec = p.space.decode(vals, p.data.num_classes, name=f"trial_{trial_id}")
        line, key, params, macs = spec.to_line(), arch_key(spec, dev, p.cfg.precision, p.cfg.threads), spec.params, \
            spec.macs
    except OdmlError:  # a failed trial whose values do not decode (its reason says so)
        line, key, params, macs = None, None, None, None
    failed = bool(metrics.get("failed"))
    reason = None
    if failed:
        reason = next((r["reason"] for r in reversed(read_jsonl(p.out / FAILURES)) if r["trial_id"] == trial_id),
                      "failed (no reason recorded)")
    return {
        "trial_id": trial_id, "line": line, "values": values, "metrics": metrics,
        "arch_key": key, "device": dev.label,
        "reward": metrics.get("reward"), "accuracy": metrics.get("accuracy"), "latency_ms": metrics.get("latency_ms"),
        "latency_source": ("measured" if metrics.get("latency_measured", 1.0) else
                           "predicted" if "latency_predicted_ms" in metrics else "bound"),
        "latency_predicted_ms": metrics.get("latency_predicted_ms"),
        "params": params, "macs": macs, "wall_s": metrics.get("wall_s"),
        "status": "failed" if failed else "rejected" if metrics.get("rejected") else (
            "stopped_early" if metrics.get("stopped_early") else "completed"),
        **({"reason": reason} if failed else {}),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
