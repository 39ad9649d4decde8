"""The search loop: keras-tuner oracles (random, Bayesian optimisation,
Hyperband, and our regularized evolution) drive a Tuner subclass whose
run_trial decodes a spec, bounds it, measures its latency on the device,
proxy-trains it and returns the metrics.

Run folder (``--out``)::

    search.json          the settings; a rerun with the same settings resumes
    tuner/               keras-tuner's project (oracle state, one folder per trial)
    trials.jsonl         one line per finished trial (written by the oracle, so
                         the chief records the trials of every worker)
    screened.jsonl       with a predictor: the children each trial ranked by
                         predicted latency and the one it picked
    latency_cache.jsonl  measured latencies per (architecture, device, precision)
    pareto.json, pareto.png, best_spec.json, summary.json   at the end

Resume: keras-tuner reloads its oracle and re-issues the trials that were
running when the search stopped; run_trial answers a trial that trials.jsonl
already holds from the record, so a trial is neither lost nor run twice.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from odml.devices.device import parse_device
from odml.errors import OdmlError, SpecError
from odml.files import append_jsonl, read_jsonl, write_json_atomic, write_text_atomic
from odml.nas.latency import LatencyMeter, arch_key, latency_figure
from odml.pareto import pareto_front, plot_front
from odml.runfolder import RunFolder
from odml.nas.reward import check_reward, reward
from odml.nas.space import SearchSpace, load_space

STRATEGIES = ("evolution", "random", "bayesian", "hyperband", "oneshot")
LATENCY = ("measured", "predicted", "hybrid")
SCHEMA = 1
TRIALS = "trials.jsonl"
FRONT_MEASURED = "front_measured.jsonl"
SCREENED = "screened.jsonl"
FAILURES = "failures.jsonl"
MAX_FAILURES = 10  # consecutive failed trials before the search stops, saying why
SETTINGS = "search.json"
ROLES = ("single", "chief", "worker")


class SearchError(OdmlError):
    """Settings that cannot start (or resume) a search."""


@dataclass
class SearchConfig:
    space: str = "small32"
    data: str = "digits"
    device: str = "host"
    target_ms: float = 1.0
    reward: str = "mnas"
    exponent: float | None = None
    strategy: str = "evolution"
    trials: int = 20
    epochs: int = 3
    batch_size: int = 64
    lr: float = 3e-3
    precision: str = "int8"
    threads: int = 1
    runs: int = 30
    max_params: int | None = None
    max_macs: int | None = None
    reject_factor: float = 3.0  # skip candidates whose optimistic latency is above this x target
    population: int = 10  # regularized evolution
    sample: int = 3
    val_split: float = 0.2
    seed: int = 0
    input_size: int | None = None  # override the space's input size
    benchmark_binary: str | None = None
    latency_cache: str | None = None
    max_minutes: float | None = None  # stop starting new trials after this long (this invocation)
    latency: str = "measured"  # measured | predicted | hybrid
    predictor: str | None = None  # a predictor.json (odml calibrate); None: calibrate into the run folder first
    calibrate_minutes: float = 10.0
    promising: float = 1.5  # predicted/hybrid: candidates predicted above this x target are not trained
    screen: int | None = None  # evolution with a predictor: children predicted per trial (None: 8; 1: off)
    statistic: str = "min"  # a candidate's latency: its fastest timed run (reproducible) or the median
    supernet_epochs: int | None = None  # oneshot: epochs of the supernet and controller (None: --epochs)

    # settings that must match to resume a run folder
    IDENTITY = ("data", "device", "target_ms", "reward", "exponent", "strategy", "epochs", "batch_size", "lr",
                "precision", "threads", "val_split", "seed", "input_size", "max_params", "max_macs",
                "reject_factor", "population", "sample", "latency", "predictor", "promising", "screen", "statistic",
                "supernet_epochs")


@dataclass
class Prepared:
    cfg: SearchConfig
    space: SearchSpace
    exponent: float
    out: Path
    device: Any
    data: Any = None
    records: list[dict[str, Any]] = field(default_factory=list)
    predictor: Any = None


def _check_config(cfg: SearchConfig) -> tuple[SearchSpace, float, Any]:
    w = check_reward(cfg.reward, cfg.target_ms, cfg.exponent)
    if cfg.strategy not in STRATEGIES:
        raise SearchError(f"--strategy {cfg.strategy!r}: choose one of {', '.join(STRATEGIES)}")
    for name, v, lo in (("--trials", cfg.trials, 1), ("--epochs", cfg.epochs, 1), ("--batch-size", cfg.batch_size, 1),
                        ("--threads", cfg.threads, 1), ("--runs", cfg.runs, 1), ("--population", cfg.population, 2),
                        ("--sample", cfg.sample, 1)):
        if v < lo:
            raise SearchError(f"{name} {v}: must be at least {lo}")
    if not 0 < cfg.val_split < 1:
        raise SearchError(f"--val-split {cfg.val_split:g}: must be between 0 and 1")
    if cfg.max_minutes is not None and not cfg.max_minutes > 0:
        raise SearchError(f"--max-minutes {cfg.max_minutes:g}: must be greater than 0")
    if cfg.latency not in LATENCY:
        raise SearchError(f"--latency {cfg.latency!r}: choose one of {', '.join(LATENCY)}")
    if cfg.latency != "measured" and not cfg.promising > 1:
        raise SearchError(f"--promising {cfg.promising:g}: must be greater than 1 (a multiple of the target)")
    if (cfg.latency != "measured" or cfg.strategy == "oneshot") and cfg.predictor is None \
            and not cfg.calibrate_minutes > 0:
        raise SearchError(f"--calibrate-minutes {cfg.calibrate_minutes:g}: must be greater than 0")
    if cfg.screen is not None and cfg.screen != 1:
        if cfg.screen < 1:
            raise SearchError(f"--screen {cfg.screen}: must be at least 1 (1: no screening)")
        if cfg.latency == "measured" or cfg.strategy != "evolution":
            raise SearchError(f"--screen {cfg.screen}: ranks children by predicted latency, so it needs "
                              "--strategy evolution and --latency predicted or hybrid")
    if cfg.supernet_epochs is not None:
        if cfg.strategy != "oneshot":
            raise SearchError(f"--supernet-epochs {cfg.supernet_epochs}: only --strategy oneshot trains a supernet")
        if cfg.supernet_epochs < 1:
            raise SearchError(f"--supernet-epochs {cfg.supernet_epochs}: must be at least 1")
    if cfg.statistic not in ("min", "median"):
        raise SearchError(f"--statistic {cfg.statistic!r}: choose min (the fastest timed run) or median")
    if cfg.reject_factor <= 1:
        raise SearchError(f"--reject-above {cfg.reject_factor:g}: must be greater than 1 (a multiple of the target)")
    space = load_space(cfg.space)
    if cfg.input_size is not None:
        if cfg.input_size < 8:
            raise SearchError(f"--input-size {cfg.input_size}: at least 8")
        space.input_size = cfg.input_size
    device = parse_device(cfg.device, cfg.benchmark_binary, compile=True)
    if cfg.strategy == "oneshot" and any(t == "ibn_grouped" for st in space.stages for j in range(max(st.depth))
                                         for t in st.at(j).type):
        raise SearchError(f"--strategy oneshot: space {space.name} has ibn_grouped blocks, which the supernet does "
                          "not share weights for yet; use --strategy evolution")
    if (cfg.latency != "measured" or cfg.strategy == "oneshot") and cfg.predictor is not None:
        from odml.nas.predictor import load_predictor

        load_predictor(cfg.predictor).check(device, space, cfg.precision, cfg.threads, "interpreter", cfg.statistic)
    return space, w, device


def prepare(cfg: SearchConfig, out: Path, role: str = "single") -> Prepared:
    """Check everything a search needs before anything is written: the
    settings, the space, the device, the data and the run folder."""
    from odml.data.images import load_images

    space, w, device = _check_config(cfg)
    data = load_images(cfg.data, (space.input_size, space.input_size), 3, cfg.val_split, cfg.seed)
    out = Path(out)
    if role == "worker":  # a worker joins the chief's run: the chief checked the folder
        run_folder(out).check({}, keys=(), foreign_ok=True)
    else:
        run_folder(out).check(_settings(cfg, space), keys=(*SearchConfig.IDENTITY, "space"))
    return Prepared(cfg=cfg, space=space, exponent=w, out=out, device=device, data=data)


def run_folder(out: Path) -> RunFolder:
    return RunFolder(out, SETTINGS, "search", SearchError)


def _settings(cfg: SearchConfig, space: SearchSpace) -> dict[str, Any]:
    d = asdict(cfg)
    d["space_name"] = cfg.space
    d["space"] = space.to_dict()
    d["space"]["input_size"] = space.input_size
    d["schema"] = SCHEMA
    return d


# ---- the objective ----------------------------------------------------------------
class Evaluator:
    """What one trial does: decode, bound, measure, train, reward."""

    def __init__(self, p: Prepared, meter: LatencyMeter, on_phase: Callable[[str], None] | None = None):
        self.p, self.meter, self.on_phase = p, meter, on_phase or (lambda s: None)
        self.trained_here = 0

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
            m.update(rejected=reason, latency_ms=est, latency_measured=0.0, accuracy=0.0,
                     wall_s=time.perf_counter() - t0, reward=reward(cfg.reward, 0.0, est, cfg.target_ms, self.p.exponent))
            return m
        if cfg.latency == "predicted":
            m.update(latency_ms=est, latency_measured=0.0)
        else:
            self.on_phase(f"trial {label}: measuring latency")
            lat, cached = self.meter.measure(spec)
            m.update({f"latency_{k}": float(v) for k, v in lat.items() if isinstance(v, (int, float)) and k != "count"})
            m["latency_ms"] = self.meter.figure(lat)
            m["latency_cached"] = float(cached)
            m["latency_measured"] = 1.0
            if pred is not None and not cached:  # hybrid: refit what the whole model adds with every measurement
                pred.add_measurement(spec, m["latency_ms"])
            if reject and m["latency_ms"] > cfg.reject_factor * cfg.target_ms:  # far over the target: not trained
                m.update(rejected=6.0, accuracy=0.0, wall_s=time.perf_counter() - t0,
                         reward=reward(cfg.reward, 0.0, m["latency_ms"], cfg.target_ms, self.p.exponent))
                return m
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
        m["wall_s"] = time.perf_counter() - t0
        m["reward"] = reward(cfg.reward, m["accuracy"], m["latency_ms"], cfg.target_ms, self.p.exponent)
        return m

    def _train(self, spec, epochs: int, recs: list[dict[str, Any]]) -> dict[str, float]:
        from odml.train.trainer import TrainConfig, train_classifier

        cfg = self.p.cfg
        # median stopping rule (Vizier): end a trial whose training accuracy after
        # an epoch is below the median of the finished trials at that epoch
        curves = [r["metrics"] for r in recs if not r["metrics"].get("rejected") and not r["metrics"].get("duplicate")]

        def should_stop(epoch: int, logs: dict) -> bool:
            return median_stop(epoch, logs.get("accuracy", 1.0), curves, epochs)

        tc = TrainConfig(epochs=epochs, batch_size=cfg.batch_size, learning_rate=cfg.lr, seed=cfg.seed)
        res = train_classifier(spec, self.p.data, tc, None, None, should_stop)
        self.trained_here += 1
        out = {"accuracy": float(res["val_accuracy"]), "train_accuracy": float(res["train_accuracy"]),
               "epochs_run": float(res["epochs_run"]), "stopped_early": float(res["epochs_run"] < epochs),
               "train_s": float(res["train_wall_s"])}
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


# ---- oracles ----------------------------------------------------------------------
def _recording(base: type, p: Prepared, listener: Callable[[dict[str, Any]], None] | None) -> type:
    """``base`` (a keras-tuner Oracle class) that also writes every finished
    trial to trials.jsonl. The chief's oracle sees every worker's trials."""
    from keras_tuner.src.engine import trial as trial_module

    class Recording(base):  # type: ignore[misc, valid-type]
        def end_trial(self, trial):
            known = self.trials.get(trial.trial_id)
            if known is not None and trial.status == trial_module.TrialStatus.COMPLETED:
                done = {r["trial_id"] for r in read_jsonl(p.out / TRIALS)}
                if trial.trial_id not in done:
                    metrics = {name: float(h.get_last_value()) for name, h in known.metrics.metrics.items()
                               if h.get_last_value() is not None}
                    rec = _record(p, trial.trial_id, trial.hyperparameters.values, metrics)
                    append_jsonl(p.out / TRIALS, rec)
                    if listener:
                        listener(rec)
            return super().end_trial(trial)

    Recording.__name__ = f"Recording{base.__name__}"
    return Recording


def _record(p: Prepared, trial_id: str, values: dict[str, Any], metrics: dict[str, float]) -> dict[str, Any]:
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


def evolution_oracle_class() -> type:
    """Regularized (aging) evolution (Real et al. 2019) as a keras-tuner Oracle:
    random trials until the population is full, then the best of a random
    sample of the newest ``population`` finished trials, with one choice
    mutated. Its state is the oracle's trial history, so resume and the
    chief/worker mode work as for the built-in oracles."""
    import keras_tuner as kt
    from keras_tuner.src.engine import trial as trial_module

    class EvolutionOracle(kt.Oracle):
        def __init__(self, population: int = 10, sample: int = 3, space: SearchSpace | None = None,
                     children: int = 1, screen: Callable[[str, list[dict[str, Any]]], int] | None = None, **kwargs):
            super().__init__(**kwargs)
            self.population, self.sample, self.space = population, sample, space
            self.children, self.screen = max(1, children), screen

        def _arch(self, values: dict[str, Any]) -> str | None:
            """The architecture ``values`` decode to (None when it is not a valid
            one); choices of positions the depth leaves out do not count."""
            if self.space is None:
                return json.dumps(values, sort_keys=True)
            try:
                d = self.space.decode(values, 2).to_dict()
            except Exception:  # noqa: BLE001 - an invalid combination is simply not a child
                return None
            d.pop("name", None)
            return json.dumps(d, sort_keys=True)

        def populate_space(self, trial_id):
            done = [self.trials[t] for t in self.end_order
                    if self.trials[t].status == trial_module.TrialStatus.COMPLETED and self.trials[t].score is not None]
            rng = random.Random(f"{self.seed}-{trial_id}")
            want = self.children if self.screen is not None else 1
            cands: list[dict[str, Any]] = []
            seen = {self._arch(t.hyperparameters.values) for t in self.trials.values()}
            if len(done) >= self.population:
                pool = done[-self.population:]
                parent = max(rng.sample(pool, min(self.sample, len(pool))), key=lambda t: t.score)
                for _ in range(100 * want):  # mutations that change the architecture, into ones not tried yet
                    child = self._mutate(parent.hyperparameters.values, rng)
                    arch = self._arch(child)
                    if arch is not None and arch not in seen and not self._duplicate(child):
                        cands.append(child)
                        seen.add(arch)
                        if len(cands) >= want:
                            break
            if not cands:  # random draws of architectures not tried yet (values that differ only in
                for _ in range(20 * want):  # positions the depth leaves out are the same architecture)
                    v = self._random_values()
                    if v is None:
                        break
                    arch = self._arch(v)
                    if arch is not None and arch not in seen:
                        cands.append(v)
                        seen.add(arch)
                        if len(cands) >= want:
                            break
            if not cands:
                v = self._random_values()
                cands = [v] if v is not None else []
            if not cands:
                return {"status": trial_module.TrialStatus.STOPPED, "values": None}
            values = cands[self.screen(trial_id, cands)] if self.screen is not None and len(cands) > 1 else cands[0]
            return {"status": trial_module.TrialStatus.RUNNING, "values": values}

        def _mutate(self, values: dict[str, Any], rng: random.Random) -> dict[str, Any]:
            child = dict(values)
            hps = [h for h in self.hyperparameters.space if len(getattr(h, "values", [])) > 1]
            h = rng.choice(hps)
            child[h.name] = rng.choice([v for v in h.values if v != values.get(h.name)])
            return child

    return EvolutionOracle


def make_oracle(p: Prepared, listener: Callable[[dict[str, Any]], None] | None = None):
    import keras_tuner as kt

    cfg = p.cfg
    hp = kt.HyperParameters()
    p.space.declare(hp)
    objective = kt.Objective("reward", direction="max")
    common = dict(objective=objective, hyperparameters=hp, seed=cfg.seed + 1, max_consecutive_failed_trials=5,
                  allow_new_entries=False, tune_new_entries=False)
    if cfg.strategy == "random":
        oracle = _recording(kt.oracles.RandomSearchOracle, p, listener)(max_trials=cfg.trials, **common)
    elif cfg.strategy == "bayesian":
        oracle = _recording(kt.oracles.BayesianOptimizationOracle, p, listener)(
            max_trials=cfg.trials, num_initial_points=max(3, min(10, cfg.trials // 3)), **common)
    elif cfg.strategy == "hyperband":
        oracle = _recording(kt.oracles.HyperbandOracle, p, listener)(
            max_epochs=cfg.epochs, factor=3, hyperband_iterations=1000, **common)
        oracle.max_trials = cfg.trials  # the brackets run until the trial budget is spent
    else:
        oracle = _recording(evolution_oracle_class(), p, listener)(
            max_trials=cfg.trials, population=cfg.population, sample=cfg.sample, space=p.space,
            children=screen_count(cfg), screen=_screener(p), **common)
    return oracle


def screen_count(cfg: SearchConfig) -> int:
    """How many children each evolution trial ranks by predicted latency
    (1: no screening)."""
    if cfg.screen is not None:
        return cfg.screen
    return 8 if cfg.latency != "measured" and cfg.strategy == "evolution" else 1


def _screener(p: Prepared) -> Callable[[str, list[dict[str, Any]]], int] | None:
    """With a predictor, each new trial of the evolution is the best of
    several children (or random draws while the population fills): every
    child is predicted, and the one trained is the largest (in MACs)
    predicted within the target, or the fastest when none is (what
    Once-for-All's and HAT's searches do with their predictors: many
    candidates ranked per one evaluated). Every screened child is written to
    screened.jsonl (the summary counts them as candidates considered)."""
    if p.predictor is None or screen_count(p.cfg) <= 1:
        return None
    target = p.cfg.target_ms

    def screen(trial_id: str, cands: list[dict[str, Any]]) -> int:
        rows = []
        for v in cands:
            spec = p.space.decode({k: x for k, x in v.items() if not k.startswith("tuner/")}, p.data.num_classes)
            rows.append({"line": spec.to_line(), "predicted_ms": round(float(p.predictor.predict(spec)), 6),
                         "macs": spec.macs})
        fits = [i for i, r in enumerate(rows) if r["predicted_ms"] <= target]
        pick = (max(fits, key=lambda i: rows[i]["macs"]) if fits
                else min(range(len(rows)), key=lambda i: rows[i]["predicted_ms"]))
        append_jsonl(p.out / SCREENED, {"trial_id": trial_id, "chosen": pick, "candidates": rows})
        return pick

    return screen


def considered(out: Path, recs: list[dict[str, Any]]) -> int:
    """Candidates the search looked at: its trials, the children that
    screening ranked and did not pick (each trial's last screening counts),
    and the distinct paths a one-shot controller sampled."""
    extra = {r["trial_id"]: len(r["candidates"]) - 1 for r in read_jsonl(out / SCREENED)}
    oneshot = read_jsonl(out / "oneshot" / "log.jsonl")
    paths = max(0, oneshot[-1]["paths_considered"] - 1) if oneshot else 0
    return len(recs) + sum(extra.values()) + paths


class _BudgetSpent(Exception):
    """--max-minutes has passed: no new trial is started."""


class _Failing(Exception):
    """The last MAX_FAILURES trials all failed: the search stops."""


def atomic_tuner_files() -> None:
    """Make keras-tuner write its state files (tuner0.json, oracle.json,
    trial.json) through a temporary file and a rename: it writes them in
    place, so a search killed mid-write (kill -9) left a truncated JSON file
    that the resumed search could not read."""
    from keras_tuner.src import utils as kt_utils

    if getattr(kt_utils.save_json, "odml_atomic", False):
        return

    def save_json(path, obj):
        text = json.dumps(obj)
        write_text_atomic(Path(path), text)
        return text

    save_json.odml_atomic = True
    kt_utils.save_json = save_json


def make_tuner(p: Prepared, evaluator: Evaluator, oracle: Any):
    import keras_tuner as kt

    atomic_tuner_files()

    class OdmlTuner(kt.engine.base_tuner.BaseTuner):
        """Runs one candidate per trial through ``evaluator`` and returns its
        metrics; keras-tuner's own model-fitting path is not used."""

        started = time.perf_counter()

        def pre_create_trial(self):
            budget = p.cfg.max_minutes
            if budget is not None and time.perf_counter() - self.started > budget * 60:
                raise _BudgetSpent()
            last = read_jsonl(p.out / TRIALS)[-MAX_FAILURES:]
            if len(last) == MAX_FAILURES and all(r["status"] == "failed" for r in last):
                raise _Failing(last[-1].get("reason", "failed"))

        def run_trial(self, trial, *args, **kwargs):
            try:
                return evaluator(trial.trial_id, trial.hyperparameters.values)
            except OdmlError as e:  # a candidate that cannot be built or converted
                raise kt.errors.FailedTrialError(str(e)) from None

        def save_model(self, trial_id, model, step=0):
            pass

        def load_model(self, trial):
            return None

    with contextlib.redirect_stdout(sys.stderr):  # "Reloading Tuner from ..." is not our output
        return OdmlTuner(oracle=oracle, directory=str(p.out), project_name="tuner", overwrite=False)


# ---- running ----------------------------------------------------------------------
def distributed_env(role: str, oracle_address: str | None, worker_id: str | None) -> dict[str, str]:
    """The KERASTUNER_* variables of keras-tuner's chief/worker mode."""
    if role not in ROLES:
        raise SearchError(f"--role {role!r}: choose one of chief, worker")
    if role == "single":
        return {}
    addr = oracle_address or (f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
                              if "KERASTUNER_ORACLE_IP" in os.environ and "KERASTUNER_ORACLE_PORT" in os.environ
                              else "127.0.0.1:8000")
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SearchError(f"--oracle {addr!r}: expected HOST:PORT")
    tid = "chief" if role == "chief" else (worker_id or os.environ.get("KERASTUNER_TUNER_ID") or
                                            f"worker-{os.uname().nodename}-{os.getpid()}")
    if role == "worker" and "chief" in tid:
        raise SearchError(f"--worker-id {tid!r}: a worker id must not contain 'chief'")
    return {"KERASTUNER_TUNER_ID": tid, "KERASTUNER_ORACLE_IP": host, "KERASTUNER_ORACLE_PORT": port}


def run_search(p: Prepared, role: str = "single", env: dict[str, str] | None = None,
               listener: Callable[[dict[str, Any]], None] | None = None,
               on_phase: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the search in ``p.out``; returns the summary (chief and
    single) or what this worker ran."""
    from odml._tf import tf

    tf()  # TF (and TF_USE_LEGACY_KERAS) before keras-tuner picks its backend
    for k in [k for k in os.environ if k.startswith("KERASTUNER_")]:
        del os.environ[k]
    os.environ.update(env or {})
    folder = run_folder(p.out)
    folder.create()
    with contextlib.ExitStack() as stack:
        if role != "worker":  # workers share the chief's folder
            stack.enter_context(folder.lock())
            folder.write_settings(_settings(p.cfg, p.space))
        return _search(p, role, listener, on_phase)


def _search(p: Prepared, role: str, listener: Callable[[dict[str, Any]], None] | None,
            on_phase: Callable[[str], None] | None) -> dict[str, Any]:
    cache = Path(p.cfg.latency_cache) if p.cfg.latency_cache else p.out / "latency_cache.jsonl"
    from odml.data.images import to_float

    meter = LatencyMeter(p.device, p.cfg.precision, p.cfg.threads, p.cfg.runs, 0.3, cache,
                         calibration=to_float(p.data.x_train[:16]), statistic=p.cfg.statistic)
    p.predictor = _predictor(p, on_phase)
    evaluator = Evaluator(p, meter, on_phase)
    if p.cfg.strategy == "oneshot":
        return _oneshot(p, evaluator, listener, on_phase)
    oracle = make_oracle(p, listener)
    tuner = make_tuner(p, evaluator, oracle)
    t0 = time.perf_counter()
    tuner.started = t0
    with contextlib.redirect_stdout(sys.stderr):
        try:
            tuner.search(verbose=0)
        except _BudgetSpent:
            pass
        except _Failing as e:
            if all(r["status"] == "failed" for r in read_jsonl(p.out / TRIALS)):
                raise SearchError(f"{p.out}: no candidate could be evaluated: the first {MAX_FAILURES} trials all "
                                  f"failed (recorded in trials.jsonl); the last: {e}") from None
    wall = time.perf_counter() - t0
    if role == "worker":
        return {"role": "worker", "tuner_id": os.environ.get("KERASTUNER_TUNER_ID"), "trained": evaluator.trained_here,
                "wall_s": round(wall, 1)}
    return finish(p)


def _oneshot(p: Prepared, evaluator: Evaluator, listener: Callable[[dict[str, Any]], None] | None,
             on_phase: Callable[[str], None] | None) -> dict[str, Any]:
    """--strategy oneshot: the supernet and its controller (nas/oneshot.py),
    then the controller's architecture trained standalone, measured and
    recorded as the run's trial."""
    from odml.nas.oneshot import search_oneshot

    if not any(r["trial_id"] == "oneshot" for r in read_jsonl(p.out / TRIALS)):
        res = search_oneshot(p, p.predictor.predict, on_phase or (lambda s: None))
        if on_phase:
            on_phase("one-shot: training the architecture found standalone")
        metrics = evaluator.evaluate(res["spec"], p.cfg.epochs, label="oneshot", reject=False)
        rec = _record(p, "oneshot", res["values"], metrics)
        append_jsonl(p.out / TRIALS, rec)
        if listener:
            listener(rec)
    return finish(p)


def _predictor(p: Prepared, on_phase: Callable[[str], None] | None) -> Any:
    """The predictor of a predicted or hybrid search, and of the one-shot
    strategy (it predicts every path the controller samples): the file given,
    or one calibrated first into OUT/calibration (resumed like the search)."""
    cfg = p.cfg
    if cfg.latency == "measured" and cfg.strategy != "oneshot":
        return None
    from odml.nas.predictor import CalibrationConfig, calibrate, load_predictor

    path = cfg.predictor
    if path is None:
        cc = CalibrationConfig(device=cfg.device, space=cfg.space, precision=cfg.precision, threads=cfg.threads,
                               input_size=cfg.input_size, classes=p.data.num_classes, seed=cfg.seed,
                               minutes=cfg.calibrate_minutes, benchmark_binary=cfg.benchmark_binary,
                               statistic=cfg.statistic)
        path = calibrate(cc, p.out / "calibration", progress=on_phase)["predictor"]
    pred = load_predictor(path).check(p.device, p.space, cfg.precision, cfg.threads, "interpreter", cfg.statistic)
    if cfg.latency == "hybrid":  # a resumed search refits with what it measured before
        for r in read_jsonl(p.out / TRIALS):
            if not r["metrics"].get("rejected") and r.get("latency_source") == "measured" \
                    and not r["metrics"].get("latency_cached"):
                spec = p.space.decode({k: v for k, v in r["values"].items() if not k.startswith("tuner/")},
                                      p.data.num_classes)
                pred.add_measurement(spec, float(r["latency_ms"]))
    return pred


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
        from odml.data.images import to_float

        meter = LatencyMeter(p.device, p.cfg.precision, p.cfg.threads, p.cfg.runs, 0.3,
                             p.out / "latency_cache.jsonl", calibration=to_float(p.data.x_train[:16]),
                             statistic=p.cfg.statistic)
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
    status_counts: dict[str, int] = {}
    for r in recs:
        status_counts[r["status"]] = status_counts.get(r["status"], 0) + 1
    summary = {
        "schema": SCHEMA, "out": str(p.out), "space": p.space.name, "space_size": p.space.size(),
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
        "files": {k: str(p.out / k) for k in (TRIALS, "pareto.json", "pareto.png", "best_spec.json")},
    }
    _write_json(p.out / "summary.json", summary)
    return summary


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
            out.append({"name": Path(m).name, "model": str(m), "accuracy": round(float(c["accuracy"]), 4),
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


def check_prepared_for_resume(p: Prepared) -> int:
    """How many trials the run folder already holds."""
    return len(read_jsonl(p.out / TRIALS))


__all__ = ["SearchConfig", "prepare", "run_search", "finish", "distributed_env", "STRATEGIES", "SpecError"]
