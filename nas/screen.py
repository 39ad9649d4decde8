"""Screening: each trial of the evolution is the pick of several children
(random draws while the population fills), ranked without training them.

- ``latency``: the largest (in MACs) estimated within the target, or the
  fastest when none is (Once-for-All's and HAT's use of a latency
  predictor);
- ``proxy``: the best zero-cost proxy (``--proxy``, nas/proxies.py) among
  those estimated within the target;
- ``predictor``: the best predicted reward, the accuracy from a Gaussian
  process fitted on the trials this search has trained (the architecture's
  choices, its size and its proxies as features), its uncertainty counted
  (the mean plus half a standard deviation). Until ``MIN_FIT`` trials are
  trained it falls back to ``latency`` and says so.

A child's latency is estimated by the calibrated predictor of a predicted
or hybrid search; with measured latency, by a line through log latency
against log MACs of the trials measured so far (its slope held to 0.5-1.5,
never below the MAC bound), or before six are, by the latency meter's
optimistic bound (the fastest ms per MAC seen).

Every screening goes to screened.jsonl (the candidates, what each was
scored, the pick, the screen that picked and why it fell back); every
candidate's proxies to proxies.jsonl (by architecture line), which the
evaluator also fills for each trained trial, so the report gives each
proxy's Kendall tau against the trained accuracy.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable

import numpy as np

from odml.files import append_jsonl, read_jsonl
from odml.nas import proxies
from odml.nas.config import PROXIES, SCREENED, TRIALS, Prepared
from odml.nas.reward import reward

SCREENS = ("none", "latency", "proxy", "predictor")
MIN_FIT = 4  # trained trials the accuracy predictor needs
PREDICTOR_PROXIES = proxies.FORWARD  # the proxies among its features: one forward pass each (no synflow copy, no gradients)
KAPPA = 0.5  # the predictor's pick: mean + KAPPA x standard deviation
FIT_POINTS = 6  # measured trials before the latency of children is fitted on log MACs (before: the MAC bound)


def proxy_batch(p: Prepared) -> np.ndarray:
    from odml.data.images import to_float

    return to_float(p.data.x_train[:proxies.BATCH])


class ProxyCache:
    """Each architecture's proxies, computed once (only the ones asked for)
    and kept in proxies.jsonl (a later line of an architecture adds to the
    earlier ones)."""

    def __init__(self, p: Prepared):
        self.p = p
        self.known: dict[str, dict[str, float]] = {}
        self._read()
        self.x: np.ndarray | None = None

    def _read(self) -> None:
        for r in read_jsonl(self.p.out / PROXIES):
            self.known.setdefault(r["line"], {}).update(r["proxies"])

    def get(self, spec: Any, which: set[str] | None = None) -> dict[str, float]:
        """The proxies ``which`` (default: every one) of ``spec``."""
        which = set(proxies.SINGLE) if which is None else set(which)
        line = spec.to_line()
        if not which <= set(self.known.get(line, {})):
            self._read()  # another worker's
        missing = which - set(self.known.get(line, {}))
        if missing:
            if self.x is None:
                self.x = proxy_batch(self.p)
            vals = proxies.compute(spec, self.x, self.p.cfg.seed, missing)
            append_jsonl(self.p.out / PROXIES, {"line": line, "proxies": vals})
            self.known.setdefault(line, {}).update(vals)
        return self.known[line]


def features(space: Any, values: dict[str, Any], spec: Any, px: dict[str, float] | None) -> list[float]:
    """An architecture as numbers: each choice of the space (ordered ones as
    their position, block tokens as type, kernel, expansion and groups), its
    log parameters and MACs, and (``px`` given) the proxies of one forward
    pass (PREDICTOR_PROXIES)."""
    out: list[float] = []
    for name, options in space.dimensions().items():
        v = values.get(name, options[0])
        if name.endswith("_block"):
            t = str(v).split("_")[0]
            out += [float(t == x) for x in ("dw", "fused", "gc")]
            nums = {k: float(n) for k, n in re.findall(r"_(k|e|g|size)([0-9.]+)", str(v))}
            out += [nums.get("k", 0.0), nums.get("e", 0.0), nums.get("g", 0.0), nums.get("size", 0.0) / 64]
        elif isinstance(options[0], str):
            out += [float(v == o) for o in options]
        else:
            out.append(options.index(v) / max(1, len(options) - 1) if v in options else 0.0)
    out += [math.log10(max(1, spec.params)), math.log10(max(1, spec.macs))]
    if px is not None:
        out += [float(np.clip(px.get(k, 0.0), -1e6, 1e6)) for k in PREDICTOR_PROXIES]
    return out


class AccuracyPredictor:
    """A Gaussian process (scikit-learn; constant x RBF plus white noise,
    features standardised) fitted on (features, accuracy) of trained trials."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.gp = None
        self.mu = self.sd = None
        self.n = 0

    def fit(self, x: list[list[float]], y: list[float]) -> "AccuracyPredictor":
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

        xa = np.asarray(x, np.float64)
        self.mu, self.sd = xa.mean(0), xa.std(0) + 1e-9
        z = (xa - self.mu) / self.sd
        kernel = ConstantKernel(1.0, (1e-3, 1e3)) * RBF(length_scale=math.sqrt(z.shape[1]),
                                                        length_scale_bounds=(1e-1, 1e3)) + WhiteKernel(0.1, (1e-5, 1))
        self.gp = GaussianProcessRegressor(kernel, normalize_y=True, random_state=self.seed, n_restarts_optimizer=2)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.gp.fit(z, np.asarray(y, np.float64))
        self.n = len(y)
        return self

    def predict(self, x: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
        z = (np.asarray(x, np.float64) - self.mu) / self.sd
        mean, std = self.gp.predict(z, return_std=True)
        return np.clip(mean, 0.0, 1.0), std


def trained_records(p: Prepared) -> list[dict[str, Any]]:
    """Finished trials that were trained (not rejected, failed or a repeat)."""
    return [r for r in read_jsonl(p.out / TRIALS) if r["status"] in ("completed", "stopped_early")
            and not r["metrics"].get("duplicate")]


class Screener:
    """The evolution's screen: called with a trial's candidates (hyperparameter
    values), returns the index of the one to train."""

    def __init__(self, p: Prepared, say: Callable[[str], None] | None = None):
        self.p, self.mode = p, p.cfg.screen
        self.say = say or (lambda s: None)
        self.cache = ProxyCache(p)
        self.told = False

    def _spec(self, values: dict[str, Any]) -> Any:
        return self.p.space.decode({k: x for k, x in values.items() if not k.startswith("tuner/")},
                                   self.p.data.num_classes)

    def latency_model(self) -> Callable[[Any], float | None]:
        """The children's latency estimate: the calibrated predictor, the
        log-log fit of the measured trials, or the meter's optimistic bound."""
        if self.p.predictor is not None:
            return lambda spec: float(self.p.predictor.predict(spec))
        meter = self.p.meter

        def bound(spec: Any) -> float | None:
            return meter.lower_bound_ms(spec) if meter is not None else None

        meas = [r for r in read_jsonl(self.p.out / TRIALS) if r.get("latency_source") == "measured"
                and r["metrics"].get("latency_measured") and r.get("macs") and r.get("latency_ms")]
        lm = np.log([r["macs"] for r in meas]) if meas else np.zeros(0)
        if len(meas) < FIT_POINTS or np.ptp(lm) < math.log(1.5):
            return bound
        slope, icept = np.polyfit(lm, np.log([r["latency_ms"] for r in meas]), 1)
        slope = float(np.clip(slope, 0.5, 1.5))  # latency grows with MACs, neither flat nor faster than squared
        icept = float(np.mean(np.log([r["latency_ms"] for r in meas]) - slope * lm))

        def fitted(spec: Any) -> float | None:
            est = math.exp(icept + slope * math.log(max(1, spec.macs)))
            lb = bound(spec)
            return est if lb is None else max(est, lb)

        return fitted

    def __call__(self, trial_id: str, cands: list[dict[str, Any]]) -> int:
        try:
            return self._screen(trial_id, cands)
        except Exception as e:  # noqa: BLE001 - a screen that fails must not stop the search: the first child
            why = f"the screen failed ({type(e).__name__}: {' '.join(str(e).split())[:160]}): the first child trained"
            self.say(f"screen {self.mode}: {why}")
            append_jsonl(self.p.out / SCREENED, {"trial_id": trial_id, "screen": "none", "chosen": 0,
                                                 "fallback": why, "candidates": [{"line": None} for _ in cands]})
            return 0

    def _screen(self, trial_id: str, cands: list[dict[str, Any]]) -> int:
        cfg = self.p.cfg
        specs = [self._spec(v) for v in cands]
        done = trained_records(self.p)
        est = self.latency_model()
        rows: list[dict[str, Any]] = [{"line": s.to_line(), "macs": s.macs, "params": s.params} for s in specs]
        for r, s in zip(rows, specs):
            ms = est(s)
            r["estimated_ms"] = None if ms is None else round(ms, 6)
            if self.p.predictor is not None:
                r["predicted_ms"] = r["estimated_ms"]
        mode, why = self.mode, None
        if mode == "predictor" and len(done) < MIN_FIT:
            mode, why = "latency", (f"the accuracy predictor needs {MIN_FIT} trained trials, "
                                    f"{len(done)} so far: screened by latency")
            if not self.told:
                self.say(f"screen predictor: {why}")
                self.told = True
        fits = [i for i, r in enumerate(rows) if r["estimated_ms"] is None or r["estimated_ms"] <= cfg.target_ms]
        if mode in ("proxy", "predictor"):
            want = proxies.needs([cfg.proxy]) if mode == "proxy" else set(PREDICTOR_PROXIES)
            px = [self.cache.get(s, want) for s in specs]
            for r, v in zip(rows, px):
                r["proxies"] = v
        if mode == "proxy":
            sc = proxies.scores(px, cfg.proxy)
            for r, v in zip(rows, sc):
                r["score"] = v
            pick = max(fits, key=lambda i: sc[i]) if fits else self._fastest(rows)
        elif mode == "predictor":
            pred = self._fit(done)
            x = [features(self.p.space, {k: v for k, v in c.items() if not k.startswith("tuner/")}, s, v)
                 for c, s, v in zip(cands, specs, px)]
            mean, std = pred.predict(x)
            scores = []
            for r, m, sd in zip(rows, mean, std):
                r["predicted_accuracy"], r["predicted_std"] = round(float(m), 5), round(float(sd), 5)
                lat = r["estimated_ms"] if r["estimated_ms"] is not None else cfg.target_ms
                r["score"] = reward(cfg.reward, float(np.clip(m + KAPPA * sd, 0, 1)), max(lat, 1e-6),
                                    cfg.target_ms, self.p.exponent)
                scores.append(r["score"])
            pick = max(range(len(rows)), key=lambda i: scores[i])
        else:  # latency
            pick = (max(fits, key=lambda i: rows[i]["macs"]) if fits and any(r["estimated_ms"] is not None for r in rows)
                    else self._fastest(rows))
        append_jsonl(self.p.out / SCREENED, {"trial_id": trial_id, "screen": mode, "chosen": pick,
                                             **({"fallback": why} if why else {}), "candidates": rows})
        return pick

    @staticmethod
    def _fastest(rows: list[dict[str, Any]]) -> int:
        known = [i for i, r in enumerate(rows) if r["estimated_ms"] is not None]
        if not known:
            return min(range(len(rows)), key=lambda i: rows[i]["macs"])
        return min(known, key=lambda i: rows[i]["estimated_ms"])

    def _fit(self, done: list[dict[str, Any]]) -> AccuracyPredictor:
        x, y = [], []
        for r in done:
            vals = {k: v for k, v in r["values"].items() if not k.startswith("tuner/")}
            spec = self.p.space.decode(vals, self.p.data.num_classes)
            x.append(features(self.p.space, vals, spec, self.cache.get(spec, set(PREDICTOR_PROXIES))))
            y.append(float(r["accuracy"]))
        return AccuracyPredictor(self.p.cfg.seed).fit(x, y)


def ranking_report(p: Prepared, recs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """How well the screen ranked the trained trials: the Kendall tau against
    the trained accuracy of every proxy (the aggregates ranked over the trained
    set) and of the predictor's predictions made before each trial trained;
    None when the search did not screen by proxy or predictor."""
    if p.cfg.screen not in ("proxy", "predictor"):
        return None
    known: dict[str, dict[str, float]] = {}
    for r in read_jsonl(p.out / PROXIES):  # an architecture's later lines add the proxies its earlier ones lacked
        known.setdefault(r["line"], {}).update(r["proxies"])
    trained = [r for r in recs if r["status"] in ("completed", "stopped_early")
               and not r["metrics"].get("duplicate") and r["line"] in known]
    acc = [float(r["accuracy"]) for r in trained]
    rows = [known[r["line"]] for r in trained]
    taus = {name: proxies.kendall_tau(proxies.scores(rows, name), acc) for name in proxies.NAMES} if rows else {}
    picked = {}
    for s in read_jsonl(p.out / SCREENED):
        c = s["candidates"][s["chosen"]]
        if s.get("screen") == "predictor" and "predicted_accuracy" in c:
            picked[s["trial_id"]] = c["predicted_accuracy"]
    pairs = [(picked[r["trial_id"]], float(r["accuracy"])) for r in recs
             if r["trial_id"] in picked and r["status"] in ("completed", "stopped_early")]
    out = {"screen": p.cfg.screen, "proxy": p.cfg.proxy, "trained": len(trained), "kendall_tau": taus, "min_fit": MIN_FIT,
           "fallbacks": sum(1 for s in read_jsonl(p.out / SCREENED) if s.get("fallback"))}
    if p.cfg.screen == "predictor":
        out["predictor_tau"] = proxies.kendall_tau([a for a, _ in pairs], [b for _, b in pairs])
        out["predictor_pairs"] = len(pairs)
    return out
