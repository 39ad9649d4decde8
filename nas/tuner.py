"""The keras-tuner adapter: the oracles (keras-tuner's random, Bayesian
optimisation and Hyperband, and our regularized evolution, which may screen
several children per trial: nas/screen.py), each recording finished
trials to trials.jsonl, and the Tuner whose run_trial is the search's
``Evaluator``. keras-tuner's state files are written whole (``save_json``
patched to write a temporary file and rename it)."""

from __future__ import annotations

import contextlib
import json
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable

from odml.errors import OdmlError
from odml.files import append_jsonl, read_jsonl, write_text_atomic
from odml.nas.config import MAX_FAILURES, TRIALS, Prepared, SearchConfig
from odml.nas.evaluate import Evaluator, trial_record
from odml.nas.space import SearchSpace


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
                    rec = trial_record(p, trial.trial_id, trial.hyperparameters.values, metrics)
                    append_jsonl(p.out / TRIALS, rec)
                    if listener:
                        listener(rec)
            return super().end_trial(trial)

    Recording.__name__ = f"Recording{base.__name__}"
    return Recording


class _Evolution:
    """Regularized evolution's choice of each new trial, mixed into
    keras-tuner's Oracle by ``evolution_oracle_class`` (so that keras-tuner
    is imported only when a search runs)."""

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
        from keras_tuner.src.engine import trial as trial_module

        rng = random.Random(f"{self.seed}-{trial_id}")
        want = self.children if self.screen is not None else 1
        seen = {self._arch(t.hyperparameters.values) for t in self.trials.values()}
        cands = self._children(rng, want, seen) or self._draws(want, seen)
        if not cands:
            v = self._random_values()
            cands = [v] if v is not None else []
        if not cands:
            return {"status": trial_module.TrialStatus.STOPPED, "values": None}
        values = cands[self.screen(trial_id, cands)] if self.screen is not None and len(cands) > 1 else cands[0]
        return {"status": trial_module.TrialStatus.RUNNING, "values": values}

    def _children(self, rng: random.Random, want: int, seen: set[str | None]) -> list[dict[str, Any]]:
        """Up to ``want`` children of the best of a random sample of the
        newest ``population`` finished trials, each one mutation into an
        architecture not tried yet (added to ``seen``); none while the
        population fills."""
        from keras_tuner.src.engine import trial as trial_module

        done = [self.trials[t] for t in self.end_order
                if self.trials[t].status == trial_module.TrialStatus.COMPLETED and self.trials[t].score is not None]
        cands: list[dict[str, Any]] = []
        if len(done) < self.population:
            return cands
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
        return cands

    def _draws(self, want: int, seen: set[str | None]) -> list[dict[str, Any]]:
        """Up to ``want`` random draws of architectures not tried yet (values
        that differ only in positions the depth leaves out are the same
        architecture)."""
        cands: list[dict[str, Any]] = []
        for _ in range(20 * want):
            v = self._random_values()
            if v is None:
                break
            arch = self._arch(v)
            if arch is not None and arch not in seen:
                cands.append(v)
                seen.add(arch)
                if len(cands) >= want:
                    break
        return cands

    def _mutate(self, values: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        child = dict(values)
        hps = [h for h in self.hyperparameters.space if len(getattr(h, "values", [])) > 1]
        h = rng.choice(hps)
        child[h.name] = rng.choice([v for v in h.values if v != values.get(h.name)])
        return child


def evolution_oracle_class() -> type:
    """Regularized (aging) evolution (Real et al. 2019) as a keras-tuner Oracle:
    random trials until the population is full, then the best of a random
    sample of the newest ``population`` finished trials, with one choice
    mutated. Its state is the oracle's trial history, so resume and the
    chief/worker mode work as for the built-in oracles."""
    import keras_tuner as kt

    class EvolutionOracle(_Evolution, kt.Oracle):
        pass

    return EvolutionOracle


def make_oracle(p: Prepared, listener: Callable[[dict[str, Any]], None] | None = None,
                say: Callable[[str], None] | None = None):
    """The oracle of ``--strategy`` over the space's hyperparameters, recording
    every finished trial (``listener`` is told of each record)."""
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
            children=screen_count(cfg), screen=_screener(p, say), **common)
    return oracle


def screen_count(cfg: SearchConfig) -> int:
    """How many children each evolution trial screens (1: no screening)."""
    return 1 if cfg.screen in (None, "none") else (cfg.children or 8)


def _screener(p: Prepared, say: Callable[[str], None] | None = None) -> Callable[[str, list[dict[str, Any]]], int] | None:
    """The evolution's screen (nas/screen.py), or None without one."""
    if screen_count(p.cfg) <= 1:
        return None
    from odml.nas.screen import Screener

    return Screener(p, say)


class BudgetSpent(Exception):
    """--max-minutes has passed: no new trial is started."""


class Failing(Exception):
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
    """keras-tuner's Tuner of the run folder's project (reloaded when it
    exists), each trial run by ``evaluator``; it starts no new trial past
    --max-minutes or after MAX_FAILURES failed trials in a row."""
    import keras_tuner as kt

    atomic_tuner_files()

    class OdmlTuner(kt.engine.base_tuner.BaseTuner):
        """Runs one candidate per trial through ``evaluator`` and returns its
        metrics; keras-tuner's own model-fitting path is not used."""

        started = time.perf_counter()

        def pre_create_trial(self):
            budget = p.cfg.max_minutes
            if budget is not None and time.perf_counter() - self.started > budget * 60:
                raise BudgetSpent()
            last = read_jsonl(p.out / TRIALS)[-MAX_FAILURES:]
            if len(last) == MAX_FAILURES and all(r["status"] == "failed" for r in last):
                raise Failing(last[-1].get("reason", "failed"))

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
