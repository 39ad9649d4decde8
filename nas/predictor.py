"""A latency predictor fitted to one device, space and precision.

`odml calibrate` measures, on the device itself, a designed set of units
(stems, blocks and heads drawn from the space: every block type, kernel,
expansion, group count, stride, width and the resolution each stage sees)
and a few whole architectures, then fits:

- per unit, a linear model of its costs (the MACs of each of its
  convolutions, the activations it reads and writes) per kind of block and
  kernel size, times scikit-learn's gradient boosting on the log of what
  the linear part leaves (from the unit's type, kernel, expansion, groups,
  stride, channels, resolution and costs);
- per model, what the whole model adds to the sum of its units (one invoke
  instead of one per unit, caches shared between blocks, a kind of block
  that runs slower inside a model than alone): either
  ``measured = a * sum(units) + b + c * len(units)`` or a weight per kind of
  block (type and kernel) pulled towards 1, by least squares on relative
  error over the whole models set aside for fitting, the form chosen by
  5-fold cross-validation on those models.

Other whole architectures are held out and only predicted: their errors are
the accuracy the calibration reports. The predictor file holds the
measurements and the fitted correction, not a pickled model: loading it
refits the trees (deterministic, well under a second), so the file is plain
JSON that any version reads and that cannot run code.

Run folder (``--out``)::

    calibrate.json       the settings; a rerun with the same settings resumes
    measurements.jsonl   one line per unit or whole model measured (a rerun measures none twice)
    state.json           the time spent so far (the budget counts every invocation)
    predictor.json       the predictor (``odml predict``, ``odml search --predictor``)
"""

from __future__ import annotations

import json
import math
import random
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from odml.devices.device import BenchOptions, Device, parse_device
from odml.errors import OdmlError
from odml.files import append_jsonl, read_jsonl, write_file, write_json_atomic
from odml.nas.latency import PRECISIONS, LatencyMeter, latency_figure
from odml.nas.space import SearchSpace, space_for_input
from odml.nas.units import KINDS, Unit, export_units, head_macs, units_of
from odml.runfolder import RunFolder
from odml.zoo.spec import ModelSpec

SCHEMA = 2
KIND = "odml-latency-predictor"
SETTINGS = "calibrate.json"
MEASUREMENTS = "measurements.jsonl"
PREDICTOR = "predictor.json"
STATE = "state.json"
UNIT_SHARE = 0.5  # of the time budget spent on units; the rest on whole models (fit and held out)
BATCH = 16  # units exported, then measured in one go
STATISTICS = ("min", "median")  # the latency figure predicted: the fastest timed run, or the median of instance medians


class CalibrationError(OdmlError):
    """Settings that cannot start a calibration, or a device that went away."""


class PredictorError(OdmlError):
    """A predictor file that cannot be used here."""


@dataclass
class CalibrationConfig:
    device: str = "host"
    space: str = "small32"
    precision: str = "int8"
    threads: int = 1
    runtime: str = "interpreter"
    input_size: int | None = None
    classes: int = 10
    seed: int = 0
    minutes: float = 10.0
    runs: int = 30
    benchmark_binary: str | None = None
    statistic: str = "min"  # not part of the identity: the same measurements refit for either

    IDENTITY = ("device", "space", "precision", "threads", "runtime", "input_size", "classes", "seed", "runs")


def _space(cfg_space: str, input_size: int | None) -> SearchSpace:
    return space_for_input(cfg_space, input_size)  # scaled as the search scales it (NAME@auto)


def space_digest(sp: SearchSpace) -> str:
    import hashlib

    d = sp.to_dict()
    d["input_size"] = sp.input_size
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def sample_spec(sp: SearchSpace, rng: random.Random, classes: int) -> ModelSpec | None:
    """A uniformly drawn architecture of ``sp`` (None when the draw is not a
    valid one)."""
    values = {k: rng.choice(v) for k, v in sp.dimensions().items()}
    try:
        return sp.decode(values, classes, name="sampled")
    except OdmlError:
        return None


def design_units(sp: SearchSpace, seed: int, classes: int):
    """The designed set, endlessly: every stem, then round after round, for
    every stage and both kinds of position (the first, with the stage's
    stride and the previous stage's widths in; the others), every
    combination of type, kernel, expansion and group choice once per round
    in a shuffled order, each with its widths drawn from the space; every
    head per round. The resolution of each unit is the one its stage sees."""
    from odml.nas.space import _groups_for
    from odml.zoo.spec import Block, _conv_out

    rng = random.Random(f"design-{seed}")
    res0 = _conv_out(sp.input_size, sp.stem_stride)
    for f in sp.stem_filters:
        for k in sp.stem_kernel:
            yield Unit("stem", sp.input_size, 3, f, kernel=k, stride=sp.stem_stride)
    while True:
        res, prev = res0, sorted(set(sp.stem_filters))
        for st in sp.stages:
            own = sorted({ch for ch, _, _ in st.channel_options()})
            for first in (True, False):
                if not first and max(st.depth) < 2:
                    continue
                positions = [j for j in range(max(st.depth)) if (j == 0) == first]
                combos = list(st.at(positions[0]).combos()) if positions else []
                rng.shuffle(combos)
                for t, k, e, g in combos:
                    cin = rng.choice(prev if first else own)
                    cout = rng.choice(own)
                    stride = st.stride if first else 1
                    b = Block(type=t, kernel=k, expansion=e, stride=stride, filters=cout)
                    try:
                        groups = _groups_for(g, b, cin) if t in ("ibn_gc", "ibn_grouped") else 1
                    except (OdmlError, ValueError, ZeroDivisionError):
                        continue
                    cexp = int(round(cin * e))
                    if groups < 1 or cin % groups or cexp % groups:
                        continue
                    yield Unit(t, res, cin, cout, kernel=k, expansion=float(e), stride=stride, groups=groups,
                               residual=stride == 1 and cin == cout)
            res, prev = _conv_out(res, st.stride), own
        for cin in prev if sp.decoder is None else ():  # every head the last stage's widths can meet, each round
            for hf in sp.head_filters:  # (every classifier has one; a segmentation model's decoder is no unit)
                yield Unit("head", res, cin, hf, classes=classes)


def _arch_id(spec: ModelSpec) -> str:
    import hashlib

    return hashlib.sha256(spec.to_line().encode()).hexdigest()[:16] + f"-{spec.num_classes}"


# ---- features and the fit ----------------------------------------------------------
def features(u: Unit) -> list[float]:
    cexp = u.cin * u.expansion
    row = [1.0 if u.kind == k else 0.0 for k in KINDS]
    row += [u.kernel, u.expansion, u.groups, u.stride, u.cin, u.cout, u.res, u.classes, float(u.residual),
            math.log2(u.macs + 1), math.log2(u.res * u.res * u.cin + 1), math.log2(u.out_res ** 2 * max(u.cout, 1) + 1),
            math.log2(cexp + 1), math.log2(u.res * u.res * cexp + 1)]
    row += [math.log2(m + 1) for m in u.op_macs()]
    return row


def roofline_features(u: Unit) -> list[float]:
    """What a unit's time is nearly linear in, per kind of unit (and, for
    blocks, per kernel size: each kernel size is its own microkernel): the
    MACs of its three convolutions, the activations it reads and writes, and
    a constant."""
    e, sp, pr = u.op_macs()
    base = [e, sp, pr, u.res * u.res * u.cin, u.out_res ** 2 * max(u.cout, 1), u.res * u.res * u.cin * u.expansion,
            1.0]
    row: list[float] = []
    for kind, kernel in _ROOF_GROUPS:
        on = u.kind == kind and (kernel == 0 or u.kernel == kernel)
        row += [b if on else 0.0 for b in base]
    if not any(row):  # a kernel size outside the groups: the nearest one of its kind
        near = min((g for g in _ROOF_GROUPS if g[0] == u.kind), key=lambda g: abs(g[1] - u.kernel), default=None)
        if near is not None:
            i = _ROOF_GROUPS.index(near) * len(base)
            row[i:i + len(base)] = base
    return row


_ROOF_GROUPS = [("stem", 0), ("head", 0)] + [(k, kk) for k in KINDS if k not in ("stem", "head") for kk in (1, 3, 5, 7, 9)]


class UnitModel:
    """A unit's latency: a linear model of its costs per kind and kernel
    (non-negative least squares on relative error: the roofline part, which
    extrapolates), times what scikit-learn's gradient boosting learns on
    the log of what is left (the part no linear cost explains: XNNPACK's
    int8 depthwise 7x7, for one, is far off its 3x3 and 5x5 per MAC)."""

    def __init__(self, units: list[Unit], ms: list[float]):
        from scipy.optimize import nnls
        from sklearn.ensemble import GradientBoostingRegressor

        y = np.maximum(np.asarray(ms, dtype=np.float64), 1e-5)
        lin = np.asarray([roofline_features(u) for u in units], dtype=np.float64)
        a = lin / y[:, None]
        scale = a.max(axis=0)
        scale[scale == 0] = 1.0
        coef, _ = nnls(a / scale, np.ones(len(y)))
        self.coef = coef / scale
        base = self._base(lin)
        x = np.asarray([features(u) for u in units], dtype=np.float64)
        self.trees = GradientBoostingRegressor(n_estimators=200, max_depth=3, learning_rate=0.05, subsample=0.8,
                                               min_samples_leaf=3, random_state=0)
        self.trees.fit(x, np.log(y) - np.log(base))

    def _base(self, lin: np.ndarray) -> np.ndarray:
        return np.maximum(lin @ self.coef, 1e-5)

    def predict(self, units: list[Unit]) -> np.ndarray:
        lin = np.asarray([roofline_features(u) for u in units], dtype=np.float64)
        x = np.asarray([features(u) for u in units], dtype=np.float64)
        return self._base(lin) * np.exp(self.trees.predict(x))


def group_of(u: Unit) -> str:
    return u.kind if u.kind in ("stem", "head") else f"{u.kind}_k{u.kernel}"


def _scale_fit(rows: list[dict[str, Any]], weights: bool = False) -> dict[str, Any]:
    """measured = a * sum + b + c * units (+ d * parameters), least squares on
    relative error (a pure scale when there are too few models). The
    parameter term is what a model pays for weights that no longer stay in
    the caches from one block to the next: a unit measured alone keeps its
    own weights warm, a large model does not."""
    s, n, m = (np.asarray([r[k] for r in rows], dtype=np.float64) for k in ("sum_ms", "units", "ms"))
    if len(m) == 0:
        return {"kind": "scale", "coef": [1.0, 0.0, 0.0, 0.0]}
    head = _head_column(rows)
    if len(m) >= 6 or (len(m) >= 4 and not weights):
        cols = [s, np.ones_like(s), n]
        if weights:
            cols.append(np.asarray([r.get("params", 0) for r in rows], dtype=np.float64) * 1e-6)
        if head is not None:
            cols.append(head)
        coef, *_ = np.linalg.lstsq(np.stack(cols, axis=1) / m[:, None], np.ones_like(m), rcond=None)
        if coef[0] > 0:
            out = [float(c) for c in coef]
            extra = {"per_head_mmac": out.pop()} if head is not None else {}
            return {"kind": "scale", "coef": out + ([] if weights else [0.0]), **extra}
    if head is not None and len(m) >= 2:  # too few models for the rest: the units scaled, the head per MAC
        coef, *_ = np.linalg.lstsq(np.stack([s, head], axis=1) / m[:, None], np.ones_like(m), rcond=None)
        if coef[0] > 0 and coef[1] >= 0:
            return {"kind": "scale", "coef": [float(coef[0]), 0.0, 0.0, 0.0], "per_head_mmac": float(coef[1])}
    return {"kind": "scale", "coef": [float(np.median(m / s)), 0.0, 0.0, 0.0]}


def _groups_fit(rows: list[dict[str, Any]], lam: float) -> dict[str, Any]:
    """measured = sum over groups (kind and kernel) of w_g * the group's
    predicted time + b + d * parameters: how much slower (or faster) each
    kind of block runs inside a model than alone, and what weights that do
    not stay cached cost; w pulled towards 1 by ``lam`` (non-negative least
    squares on relative error)."""
    from scipy.optimize import nnls

    names = sorted({g for r in rows for g in r["groups"]})
    m = np.asarray([r["ms"] for r in rows], dtype=np.float64)
    head = _head_column(rows)
    free = 3 if head is not None else 2  # the constant, the parameters (and the head's MACs): not pulled
    g = np.asarray([[r["groups"].get(k, 0.0) for k in names] + [1.0, r.get("params", 0) * 1e-6]
                    + ([r.get("head_mmacs", 0.0)] if head is not None else []) for r in rows], dtype=np.float64)
    reg = np.sqrt(lam) * np.eye(len(names) + free)
    reg[-free:, -free:] = 0.0
    target = np.concatenate([np.ones(len(m)), np.sqrt(lam) * np.r_[np.ones(len(names)), np.zeros(free)]])
    x, _ = nnls(np.vstack([g / m[:, None], reg]), target)
    out = {"kind": "groups", "lambda": lam, "weights": dict(zip(names, map(float, x[:len(names)]))),
           "const": float(x[len(names)]), "per_mparam": float(x[len(names) + 1])}
    if head is not None:
        out["per_head_mmac"] = float(x[-1])
    return out


def apply_correction(corr: dict[str, Any], row: dict[str, Any]) -> float:
    head = corr.get("per_head_mmac", 0.0) * row.get("head_mmacs", 0.0)
    if corr["kind"] == "groups":
        w = corr["weights"]
        return float(sum(w.get(k, 1.0) * v for k, v in row["groups"].items()) + corr["const"]
                     + corr.get("per_mparam", 0.0) * row.get("params", 0) * 1e-6 + head)
    a, b, c, d = (list(corr["coef"]) + [0.0])[:4]
    return float(a * row["sum_ms"] + b + c * row["units"] + d * row.get("params", 0) * 1e-6 + head)


def _head_column(rows: list[dict[str, Any]]) -> np.ndarray | None:
    """The MACs (millions) of what the units leave out, a segmentation model's
    decoder head, when any model has one: its cost is fitted per MAC with the
    rest of the correction."""
    h = np.asarray([r.get("head_mmacs", 0.0) for r in rows], dtype=np.float64)
    return h if h.any() else None


def fit_correction(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the whole model adds, chosen by 5-fold cross-validation on the
    models set aside for fitting (never on the held-out ones): the overall
    scale, or a weight per kind of block (three strengths of the pull
    towards 1)."""
    fits: list[Callable[[list[dict[str, Any]]], dict[str, Any]]] = [_scale_fit, lambda rr: _scale_fit(rr, True)]
    fits += [lambda rr, lam=lam: _groups_fit(rr, lam) for lam in (0.3, 1.0, 3.0)]
    if len(rows) < 10:
        return _scale_fit(rows)
    folds = [list(range(k, len(rows), 5)) for k in range(5)]
    best, best_err = _scale_fit, float("inf")
    for f in fits:
        errs = []
        for te in folds:
            tr = [rows[i] for i in range(len(rows)) if i not in te]
            c = f(tr)
            errs += [abs(apply_correction(c, rows[i]) / rows[i]["ms"] - 1) for i in te]
        err = float(np.mean(errs))
        if err < best_err:
            best, best_err = f, err
    out = best(rows)
    out["cv_error"] = best_err
    return out


def accuracy(pred: list[float], measured: list[float]) -> dict[str, Any]:
    p, m = np.asarray(pred, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    if not len(m):
        return {"models": 0}
    rel = p / m - 1
    return {"models": int(len(m)), "within_5pct": float(np.mean(np.abs(rel) <= 0.05)),
            "within_10pct": float(np.mean(np.abs(rel) <= 0.10)), "rmse_ms": float(np.sqrt(np.mean((p - m) ** 2))),
            "mape": float(np.mean(np.abs(rel))), "max_error": float(np.max(np.abs(rel)))}


class Predictor:
    """Predicts a spec's latency on the device it was calibrated on."""

    def __init__(self, doc: dict[str, Any], where: str = "predictor"):
        self.doc, self.where = doc, where
        self.units = [Unit.from_dict(r["unit"]) for r in doc["units"]]
        self._model = UnitModel(self.units, [r["ms"] for r in doc["units"]])
        self.correction = dict(doc.get("correction") or {"kind": "scale", "coef": [1.0, 0.0, 0.0, 0.0]})
        self._kinds = {u.kind for u in self.units}
        self._ranges: dict[str, dict[str, tuple[float, float]]] = {}
        for group, fields in _RANGE_FIELDS.items():
            mine = [u for u in self.units if _group(u) == group]
            if mine:
                self._ranges[group] = {f: (min(float(getattr(u, f)) for u in mine),
                                           max(float(getattr(u, f)) for u in mine)) for f in fields}

    # ---- identity -------------------------------------------------------------
    @property
    def device(self) -> str:
        return self.doc["device"]

    @property
    def precision(self) -> str:
        return self.doc["precision"]

    @property
    def statistic(self) -> str:
        return self.doc["statistic"]

    def check(self, device: Device | None = None, space: SearchSpace | None = None, precision: str | None = None,
              threads: int | None = None, runtime: str | None = None, statistic: str | None = None) -> "Predictor":
        """Refuse, in one line, a predictor made for another device, space,
        precision, thread count, runtime or statistic."""
        d = self.doc
        for what, mine, theirs in (("device", d["device"], device.label if device is not None else None),
                                   ("precision", d["precision"], precision), ("threads", d["threads"], threads),
                                   ("runtime", d.get("runtime", "interpreter"), runtime),
                                   ("statistic", d["statistic"], statistic)):
            if theirs is not None and mine != theirs:
                raise PredictorError(f"{self.where}: fitted for {what} {mine}, not {theirs}; calibrate for "
                                     f"{theirs} (odml calibrate --{what} {theirs})")
        if space is not None and (d["space"]["name"] != space.name or d["space"]["digest"] != space_digest(space)):
            other = "another version of the space" if d["space"]["name"] == space.name else f"space {d['space']['name']}"
            raise PredictorError(f"{self.where}: fitted on {other} (input {d['space']['input_size']}), not "
                                 f"{space.name} at input {space.input_size}; calibrate on this space")
        return self

    # ---- prediction -------------------------------------------------------------
    def unit_ms(self, units: list[Unit]) -> np.ndarray:
        return self._model.predict(units)

    def outside(self, spec: ModelSpec) -> tuple[list[str], bool]:
        """How far ``spec`` lies outside what was measured: (notes, whether
        the prediction is unusable)."""
        notes, refuse = [], False
        for i, u in enumerate(units_of(spec)):
            if u.kind not in self._kinds:
                notes.append(f"unit {i} is a {u.kind} block, a type never measured")
                refuse = True
                continue
            for f, (lo, hi) in self._ranges.get(_group(u), {}).items():
                v = float(getattr(u, f))
                if v > hi or v < lo:
                    factor = v / hi if v > hi else lo / max(v, 1e-9)
                    notes.append(f"unit {i} ({u.describe()}): {f} {v:g} outside the measured {lo:g}-{hi:g} "
                                 f"({factor:.1f}x)")
                    refuse = refuse or factor > 4
        return notes, refuse

    def in_space(self, spec: ModelSpec) -> bool:
        """Whether ``spec`` is a point of the space the predictor was fitted on."""
        try:
            sp = _space(self.doc["space"].get("source", self.doc["space"]["name"]), self.doc["space"]["input_size"])
        except OdmlError:
            return False
        return space_digest(sp) == self.doc["space"]["digest"] and sp.encode(spec) is not None

    def row(self, spec: ModelSpec) -> dict[str, Any]:
        """What the correction reads of a spec: the units' predicted sum, their
        count and the sum per kind of block."""
        us = units_of(spec)
        ms = self.unit_ms(us)
        groups: dict[str, float] = {}
        for u, m in zip(us, ms):
            groups[group_of(u)] = groups.get(group_of(u), 0.0) + float(m)
        row = {"sum_ms": float(ms.sum()), "units": len(us), "groups": groups, "params": spec.params}
        head = head_macs(spec)
        if head:
            row["head_mmacs"] = head / 1e6
        return row

    def predict(self, spec: ModelSpec) -> float:
        return apply_correction(self.correction, self.row(spec))

    def breakdown(self, spec: ModelSpec) -> dict[str, Any]:
        us = units_of(spec)
        ms = self.unit_ms(us)
        total = self.predict(spec)
        return {"predicted_ms": total, "units": [{"unit": u.describe(), "macs": u.macs, "predicted_ms": float(m)}
                                                  for u, m in zip(us, ms)],
                "sum_ms": float(ms.sum()), "whole_model_adds_ms": total - float(ms.sum())}

    # ---- refit with new whole-model measurements (the hybrid search) ----------------
    def add_measurement(self, spec: ModelSpec, measured_ms: float) -> None:
        self.doc.setdefault("online", []).append({"line": spec.to_line(), **self.row(spec),
                                                  "ms": float(measured_ms)})
        self.correction = fit_correction(self.doc.get("models_fit", []) + self.doc["online"])


_RANGE_FIELDS = {"stem": ("res", "cout", "kernel"), "head": ("res", "cin", "cout", "classes"),
                 "block": ("res", "cin", "cout", "kernel", "expansion", "groups")}


def _group(u: Unit) -> str:
    return u.kind if u.kind in ("stem", "head") else "block"


def load_predictor(path: str | Path) -> Predictor:
    from odml.documents import read_document

    p = Path(path)
    doc = read_document(p, "predictor", PredictorError)  # one line for a missing or unreadable file
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise PredictorError(f"{p}: not an odml latency predictor (no kind {KIND!r}; odml calibrate writes one)")
    if doc.get("schema") != SCHEMA:
        raise PredictorError(f"{p}: schema {doc.get('schema')!r}, this odml reads {SCHEMA}")
    try:
        if len(doc["units"]) < 3:
            raise PredictorError(f"{p}: only {len(doc['units'])} units measured; calibrate longer")
        return Predictor(doc, str(p))
    except (KeyError, TypeError, ValueError) as e:
        raise PredictorError(f"{p}: malformed ({type(e).__name__}: {e})") from None


# ---- calibration -------------------------------------------------------------------
def run_folder(out: Path) -> RunFolder:
    return RunFolder(out, SETTINGS, "calibration", CalibrationError)


def _settings(cfg: CalibrationConfig, sp: SearchSpace) -> dict[str, Any]:
    d = asdict(cfg)
    d.update(schema=SCHEMA, space_digest=space_digest(sp), space_input_size=sp.input_size)
    return d


def check_calibration(cfg: CalibrationConfig, out: Path) -> tuple[SearchSpace, Device]:
    """Everything a calibration needs, checked before anything is written."""
    if cfg.precision not in PRECISIONS:
        raise CalibrationError(f"--precision {cfg.precision!r}: choose one of {', '.join(PRECISIONS)}")
    if cfg.statistic not in STATISTICS:
        raise CalibrationError(f"--statistic {cfg.statistic!r}: choose min (the fastest timed run) or median")
    if cfg.threads < 1 or cfg.runs < 1 or cfg.classes < 2:
        raise CalibrationError("--threads and --runs must be at least 1, --classes at least 2")
    if not cfg.minutes > 0:
        raise CalibrationError(f"--minutes {cfg.minutes:g}: must be greater than 0")
    from odml.devices.host import RUNTIMES

    if cfg.runtime not in RUNTIMES:
        raise CalibrationError(f"--runtime {cfg.runtime!r}: choose interpreter or compiled")
    sp = _space(cfg.space, cfg.input_size)
    dev = parse_device(cfg.device, cfg.benchmark_binary, compile=True)
    if cfg.runtime not in dev.runtimes:
        raise CalibrationError(f"--runtime {cfg.runtime}: {dev.label} runs {' or '.join(dev.runtimes)}")
    run_folder(out).check(_settings(cfg, sp), keys=(*CalibrationConfig.IDENTITY, "space_digest"))
    return sp, dev


def _bench(dev: Device, paths: list[Path], cfg: CalibrationConfig, done: int,
           on_result: Callable[[int, dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    opts = BenchOptions(threads=cfg.threads, runs=cfg.runs, min_secs=0.2, warmup=1, runtime=cfg.runtime)
    kept = [done]

    def count(i: int, r: dict[str, Any]) -> None:
        kept[0] += 1
        if on_result:
            on_result(i, r)

    try:
        return dev.bench_many(paths, opts, count)
    except OdmlError as e:
        raise CalibrationError(f"--device {dev.label}: measuring failed after {kept[0]} measurements, which are kept "
                               f"(rerun the same command to resume): {' '.join(str(e).split())[:240]}") from None


def calibrate(cfg: CalibrationConfig, out: Path, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure units and whole models for ``cfg.minutes``, fit, write the
    predictor; resumes what an earlier run in ``out`` measured."""
    say = progress or (lambda s: None)
    out = Path(out)
    sp, dev = check_calibration(cfg, out)
    folder = run_folder(out)
    with folder.lock():
        folder.write_settings(_settings(cfg, sp))
        recs = read_jsonl(out / MEASUREMENTS)
        seen = {r["key"] for r in recs}
        finished_before, n_before = (out / PREDICTOR).is_file(), len(recs)
        budget = cfg.minutes * 60
        state = out / STATE
        try:  # an earlier invocation's time counts towards the budget
            spent = float(json.loads(state.read_text())["elapsed_s"])
        except (OSError, ValueError, KeyError, TypeError):
            spent = sum(r.get("cost_s", 0.0) for r in recs)
        started = time.perf_counter()

        def elapsed() -> float:
            t = spent + time.perf_counter() - started
            write_json_atomic(state, {"elapsed_s": round(t, 3)})
            return t

        lower = dev.lowers_grouped
        # 1. units: the designed set (each stage's resolution and widths as the space has them)
        design = design_units(sp, cfg.seed, cfg.classes)
        queue: list[Unit] = []
        tries = 0
        while elapsed() < UNIT_SHARE * budget and tries < 20000:
            while len(queue) < BATCH and tries < 20000:
                tries += 1
                u = next(design)
                if u.key() not in seen and u not in queue:
                    queue.append(u)
            batch, queue = queue[:BATCH], queue[BATCH:]
            if not batch:
                break
            say(f"units: {sum(r['what'] == 'unit' for r in recs)} measured, {elapsed() / 60:.1f} of "
                f"{cfg.minutes:g} min")
            recs += _measure_units(batch, dev, cfg, sp, out, lower, len(recs))
            seen.update(r["key"] for r in recs)
        # 2. whole models: alternately set aside for the fit and held out
        rng = random.Random(f"models-{cfg.seed}")
        j = 0
        while True:
            n_fit = sum(r["what"] == "model" and r["role"] == "fit" for r in recs)
            n_hold = sum(r["what"] == "model" and r["role"] == "holdout" for r in recs)
            if elapsed() >= budget and n_fit >= 2 and n_hold >= 2:
                break
            if j > 2000:
                break
            spec = sample_spec(sp, rng, cfg.classes)
            j += 1
            if spec is None:
                continue
            key = "model-" + _arch_id(spec)
            if key in seen:
                continue
            role = "holdout" if (n_fit + n_hold) % 2 else "fit"
            say(f"whole models: {n_fit} to fit, {n_hold} held out, {elapsed() / 60:.1f} of {cfg.minutes:g} min")
            rec = _measure_model(spec, key, role, dev, cfg, out, len(recs), sp)
            recs.append(rec)
            seen.add(key)
        doc = fit(recs, cfg, sp, dev)
        doc["calibration_s"] = round(spent if finished_before and len(recs) == n_before else elapsed(), 1)
        write_json_atomic(out / PREDICTOR, doc)
        from odml import report

        report.write_after(out)  # report.html: predicted against measured on the held-out models
    return {"out": str(out), "predictor": str(out / PREDICTOR), "page": str(out / report.PAGE), "device": dev.label, "space": sp.name,
            "precision": cfg.precision, "statistic": cfg.statistic, "units": len(doc["units"]), "models_fit": len(doc["models_fit"]),
            "models_held_out": len(doc["held_out"]), "accuracy": doc["accuracy"], "calibration_s": doc["calibration_s"],
            "unit_cv": doc.get("unit_cv")}


def _measure_units(batch: list[Unit], dev: Device, cfg: CalibrationConfig, sp: SearchSpace, out: Path, lower: bool,
                   done: int) -> list[dict[str, Any]]:
    t0 = time.perf_counter()
    recs: list[dict[str, Any]] = []
    last = [t0]

    def keep(i: int, r: dict[str, Any]) -> None:  # written as each result comes: a device that goes away loses none
        u = batch[i]
        now = time.perf_counter()
        cost = now - last[0]  # the host answers a whole batch at once: its first unit carries the batch's time
        last[0] = now
        rec = {"what": "unit", "key": u.key(), "unit": u.to_dict(), "cost_s": round(cost, 3), **_result(r)}
        append_jsonl(out / MEASUREMENTS, rec)
        recs.append(rec)

    with tempfile.TemporaryDirectory(prefix="odml-calib-") as d:
        _bench(dev, export_units(batch, cfg.precision, d, sp.activation, lower), cfg, done, keep)
    return recs


def _result(r: dict[str, Any]) -> dict[str, Any]:
    """What a measurement record keeps of a benchmark result."""
    if "error" in r:
        return {"error": r["error"]}
    return {"median_ms": float(r["median_ms"]), "min_ms": r.get("min_ms"), "spread": r.get("spread"),
            "stable": r.get("stable", True)}


def _measure_model(spec: Any, key: str, role: str, dev: Device, cfg: CalibrationConfig, out: Path,
                   done: int, sp: SearchSpace) -> dict[str, Any]:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="odml-calib-") as d:
        p = Path(d) / "model.tflite"
        write_file(p, LatencyMeter(dev, cfg.precision).export(spec))  # exported as the search exports candidates
        r = _bench(dev, [p], cfg, done)[0]
    rec = {"what": "model", "key": key, "role": role, "line": spec.to_line(), "classes": spec.num_classes,
           "values": sp.encode(spec), "cost_s": round(time.perf_counter() - t0, 3), **_result(r)}
    append_jsonl(out / MEASUREMENTS, rec)
    return rec


def fit(recs: list[dict[str, Any]], cfg: CalibrationConfig, sp: SearchSpace, dev: Device) -> dict[str, Any]:
    """The predictor document from the measurements."""
    units = [r for r in recs if r["what"] == "unit" and "median_ms" in r]
    if len(units) < 3:
        raise CalibrationError(f"only {len(units)} units could be measured in {cfg.minutes:g} min; give more --minutes")
    doc: dict[str, Any] = {
        "schema": SCHEMA, "kind": KIND, "device": dev.label, "precision": cfg.precision, "threads": cfg.threads,
        "runtime": cfg.runtime,
        "space": {"name": sp.name, "source": cfg.space, "digest": space_digest(sp), "input_size": sp.input_size},
        "fitted_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "model": "per unit (its fastest run): linear costs per kind "
        "and kernel x gradient boosting on the rest (scikit-learn); per model: a weight per kind of block or a*sum+b+c*units, "
        "chosen by cross-validation on the fitted models",
        "statistic": cfg.statistic,
        "units": [{"unit": r["unit"], "ms": _unit_figure(r)} for r in units],
        "correction": {"kind": "scale", "coef": [1.0, 0.0, 0.0, 0.0]}, "models_fit": [], "held_out": [],
    }
    pred = Predictor(doc, "calibration")
    for role, name in (("fit", "models_fit"), ("holdout", "held_out")):
        for r in recs:
            if r["what"] != "model" or r["role"] != role or "median_ms" not in r:
                continue
            classes = r.get("classes", cfg.classes)
            if r.get("values") is not None:  # the space's values (a segmentation model has no one-line spec file)
                spec = sp.decode(r["values"], classes, name="m")
            else:
                spec = ModelSpec.from_line(r["line"], name="m", input_shape=(sp.input_size, sp.input_size, 3),
                                           num_classes=classes, activation=sp.activation)
            doc[name].append({"line": r["line"], **pred.row(spec), "ms": latency_figure(r, cfg.statistic)})
    doc["correction"] = fit_correction(doc["models_fit"])
    for r in doc["held_out"]:
        r["predicted_ms"] = apply_correction(doc["correction"], r)
    doc["accuracy"] = accuracy([r["predicted_ms"] for r in doc["held_out"]], [r["ms"] for r in doc["held_out"]])
    doc["unit_cv"] = _unit_cv(pred.units, [r["ms"] for r in doc["units"]])
    return doc


def _unit_figure(r: dict[str, Any]) -> float:
    """What a unit is fitted on, whatever the statistic predicted: its fastest
    run. A unit alone runs for tens of microseconds, so its median moves with
    every disturbance (and with where one instance's buffers land) far more
    than a whole model's; the fastest run repeats to a fraction of a percent
    (docs/benchmarks/latency-predictor.md). The per-model correction, fitted
    on the whole models' figures in the chosen statistic, carries the rest."""
    return latency_figure(r, "min")


def _unit_cv(units: list[Unit], ms: list[float]) -> dict[str, float] | None:
    """5-fold cross-validated error of the unit regressor alone."""
    if len(units) < 20:
        return None
    idx = np.random.default_rng(0).permutation(len(units))
    rel = []
    for k in range(5):
        test = set(idx[k::5].tolist())
        tr = [i for i in range(len(units)) if i not in test]
        model = UnitModel([units[i] for i in tr], [ms[i] for i in tr])
        te = sorted(test)
        p = model.predict([units[i] for i in te])
        rel += list(np.abs(p / np.asarray([ms[i] for i in te]) - 1))
    r = np.asarray(rel)
    return {"units": len(units), "within_10pct": float(np.mean(r <= 0.10)), "mape": float(np.mean(r))}
