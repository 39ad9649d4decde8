"""The search loop: keras-tuner oracles (random, Bayesian optimisation,
Hyperband, and our regularized evolution) drive a Tuner subclass whose
run_trial decodes a spec, bounds it, measures its latency on the device,
proxy-trains it and returns the metrics.

Run folder (``--out``)::

    search.json          the settings; a rerun with the same settings resumes
    tuner/               keras-tuner's project (oracle state, one folder per trial)
    trials.jsonl         one line per finished trial (written by the oracle, so
                         the chief records the trials of every worker)
    screened.jsonl       with a screen: the children each trial ranked (by latency, a
                         proxy or the accuracy predictor) and the one it picked
    proxies.jsonl        with a proxy or predictor screen: each architecture's
                         zero-cost proxies (the children's, every trained trial's)
    mac_bound.json       the probe measured before the first candidate, and the
                         MACs the target allows
    latency_cache.jsonl  measured latencies per (architecture, device, precision)
    pareto.json, pareto.png, best_spec.json, summary.json   at the end

The modules: ``config`` (SearchConfig, its checks, ``prepare``), ``evaluate``
(what a trial does: the Evaluator, the trial record), ``tuner`` (the oracles
and the Tuner: the keras-tuner adapter), ``report`` (the front, the summary,
baselines); this one runs the search: the chief/worker set-up, the run
folder's lock, the predictor, the tuner's loop or the one-shot strategy.

Resume: keras-tuner reloads its oracle and re-issues the trials that were
running when the search stopped; run_trial answers a trial that trials.jsonl
already holds from the record, so a trial is neither lost nor run twice.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any, Callable

from odml.errors import SpecError
from odml.files import append_jsonl, read_jsonl
from odml.nas.config import (MAX_FAILURES, ROLES, STRATEGIES, TRIALS, Prepared, SearchConfig, SearchError, prepare,
                             run_folder, search_settings)
from odml.nas.evaluate import Evaluator, latency_meter, mac_bound, median_stop, trial_record
from odml.nas.report import finish, measure_baselines
from odml.nas.tuner import BudgetSpent, Failing, atomic_tuner_files, make_oracle, make_tuner

_settings = search_settings  # the name tests/test_search.py imports


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
            folder.write_settings(search_settings(p.cfg, p.space))
        return _search(p, role, listener, on_phase)


def _search(p: Prepared, role: str, listener: Callable[[dict[str, Any]], None] | None,
            on_phase: Callable[[str], None] | None) -> dict[str, Any]:
    meter = latency_meter(p)
    p.predictor = _predictor(p, on_phase)
    evaluator = Evaluator(p, meter, on_phase)
    if p.cfg.strategy != "oneshot" and role != "chief":  # the chief serves the oracle: it measures nothing
        mac_bound(p, on_phase)
    if p.cfg.strategy == "oneshot":
        return _oneshot(p, evaluator, listener, on_phase)
    oracle = make_oracle(p, listener, on_phase)
    tuner = make_tuner(p, evaluator, oracle)
    t0 = time.perf_counter()
    tuner.started = t0
    with contextlib.redirect_stdout(sys.stderr):
        try:
            tuner.search(verbose=0)
        except BudgetSpent:
            pass
        except Failing as e:
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
        rec = trial_record(p, "oneshot", res["values"], metrics)
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


__all__ = ["SearchConfig", "SearchError", "Prepared", "prepare", "run_search", "finish", "measure_baselines",
           "distributed_env", "Evaluator", "median_stop", "atomic_tuner_files", "STRATEGIES", "SpecError"]
