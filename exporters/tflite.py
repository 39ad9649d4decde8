"""Keras -> TFLite at fp32, fp16, dynamic-range and full-integer int8, and the
parity check of every exported file against the Keras model (run with LiteRT
on the same inputs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from odml.errors import CheckFailed, OdmlError

PRECISIONS = ("fp32", "fp16", "dynamic", "int8")


class ExportError(OdmlError):
    """An export that cannot be done with the given inputs."""


@dataclass(frozen=True)
class ParityThreshold:
    """Minimum top-1 agreement with the source model and maximum mean
    absolute error of the outputs, relative to their spread (see parity);
    for outputs judged in their own units (zoo.family.MEASURES), the most
    each may be off: keypoints in % of the crop, boxes in input pixels,
    probabilities (None: that output is judged by its relative error, as
    any other); ``outputs``: (output name, limit) pairs that replace the
    limit of that output's own measure (its maximum for keypoints, boxes,
    probability and error, its minimum agreement for top1, pixels, steps)."""

    min_top1: float
    max_rel_mean_err: float
    min_agreement: float = 0.9  # the decision at each pixel of a map or step of a sequence
    max_keypoint_pct: float | None = None
    max_box_px: float | None = None
    max_prob_err: float | None = None
    outputs: tuple[tuple[str, float], ...] = ()

    def limit(self, measure: str, name: str | None = None) -> float | None:
        """The limit on the figure of an output judged by ``measure``: its
        own (``outputs``) where ``name`` has one."""
        own = dict(self.outputs)
        if name is not None and name in own:
            return own[name]
        return getattr(self, _LIMIT_FIELD[measure])


# The field of ParityThreshold that limits each measure's figure; the figure of each measure in the output's own
# units (a key of parity's result).
_LIMIT_FIELD = {"top1": "min_top1", "pixels": "min_agreement", "steps": "min_agreement", "error": "max_rel_mean_err",
                "keypoints": "max_keypoint_pct", "boxes": "max_box_px", "probability": "max_prob_err"}
OWN_UNITS = {"keypoints": "keypoint_pct", "boxes": "box_px", "probability": "prob_err"}


# Why these numbers (measured on the zoo and the text models trained briefly): fp32 conversion only reorders
# float arithmetic (errors of 1e-7 relative); fp16 stores weights at 11 bits of mantissa; dynamic-range and int8
# quantize weights (and int8 activations) to 8 bits, an error of a few percent of the outputs' spread, and flip
# the argmax only where the top two classes are within that error of each other.
# A map or a sequence is thousands of decisions per input, most of them clear-cut (coin tosses are left out, see
# _decision_parity): a file that flips a tenth of them is broken even where a class's argmax could still agree.
# Keypoints, boxes and probabilities are judged in the units a user reads them in. int8 and dynamic: a point 2% of
# its crop off (5 pixels of a 256 crop), a box coordinate 2 input pixels off, a probability 0.05 off, on average;
# fp32 and fp16 are held to their arithmetic, as above. `odml export --budget` sets int8's (parse_budget).
DEFAULT_THRESHOLDS = {
    "fp32": ParityThreshold(0.99, 1e-3, 0.999, 0.05, 0.05, 1e-3),
    "fp16": ParityThreshold(0.98, 1e-2, 0.99, 0.5, 0.5, 0.01),
    "dynamic": ParityThreshold(0.90, 0.10, 0.95, 2.0, 2.0, 0.05),
    "int8": ParityThreshold(0.85, 0.25, 0.90, 2.0, 2.0, 0.05),
}
# Outputs that vary by less than this (standard deviation over inputs and classes) carry no class information:
# an untrained model's near-uniform logits or probabilities (trained classifiers' outputs vary by 0.1 for
# probabilities to several units for logits). Their top-1 agreement is reported but not judged (which class wins is
# decided by noise), and their errors are judged on an absolute scale, UNTRAINED_SCALE (a tenth of a probability
# or logit unit): an int8 softmax output's resolution alone is 1/256, against outputs that differ by 1e-5.
SPREAD_FLOOR = 1e-3
UNTRAINED_SCALE = 0.1
# A file whose every output is within this of the source's agrees, whatever the outputs look like.
ABS_AGREE = 1e-6


def parse_precisions(text: str) -> list[str]:
    items = [p.strip().lower() for p in text.split(",") if p.strip()]
    bad = [p for p in items if p not in PRECISIONS]
    if bad or not items:
        raise ExportError(f"--quantize: unknown precision {', '.join(bad) or '(none)'}; choose from {', '.join(PRECISIONS)}")
    return list(dict.fromkeys(items))


def concrete_function(model: Any, input_shape: tuple[int, ...], name: str = "input", dtype: Any = None):
    """A batch-1 concrete function of a model callable on a batch (a tf_keras
    or Keras 3 model, a SavedModel's signature), with static shapes, as
    on-device runtimes and the Edge TPU want; ``name``: the input tensor's
    name in the converted file (the family's: image, projection, input_ids)."""
    from odml._tf import tf

    T = tf()
    fn = T.function(lambda x: model(x, training=False))
    if dtype is None:
        dtype = model.inputs[0].dtype if getattr(model, "inputs", None) else T.float32
    return fn.get_concrete_function(T.TensorSpec((1, *input_shape), T.as_dtype(dtype), name=name))


def convert(model_or_fn: Any, precision: str, representative: Callable[[], Iterable] | None = None,
            io: str = "float", trackable: Any = None, sparse: bool = False, input_name: str = "input") -> bytes:
    """Convert a Keras model (or a concrete function) to a .tflite in
    ``precision``. int8 needs ``representative`` (a generator of [sample]
    lists); ``io`` chooses int8 or float input/output for int8 models.
    ``sparse`` stores pruned weights in TFLite's sparse tensor format
    (Optimize.EXPERIMENTAL_SPARSITY; the runtime densifies them at load)."""
    import logging

    from odml._tf import quiet_stderr_fd, tf

    T = tf()
    if hasattr(model_or_fn, "get_concrete_function") or hasattr(model_or_fn, "structured_input_signature"):
        fn = model_or_fn
    else:
        fn = concrete_function(model_or_fn, tuple(model_or_fn.input_shape[1:]), input_name)
    # Without a trackable object the converter freezes the function's variables
    # into constants directly: 20x faster than its SavedModel round trip
    # (0.8 s against 16 s for a small model on 2 cores), same ops and sizes.
    absl_log = logging.getLogger("absl")
    level = absl_log.level
    absl_log.setLevel(logging.ERROR)  # the "provide trackable_obj" deprecation notice
    try:
        conv = T.lite.TFLiteConverter.from_concrete_functions([fn])
    finally:
        absl_log.setLevel(level)
    if precision == "fp16":
        conv.optimizations = [T.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [T.float16]
    elif precision == "dynamic":
        conv.optimizations = [T.lite.Optimize.DEFAULT]
    elif precision == "int8":
        if representative is None:
            raise ExportError("int8 needs calibration data (--data) or --calibration random")
        conv.optimizations = [T.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [T.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if io == "int8":
            conv.inference_input_type = T.int8
            conv.inference_output_type = T.int8
    elif precision != "fp32":
        raise ExportError(f"unknown precision {precision!r}")
    if sparse and precision == "fp32":  # int8 sparse tensors trip the XNNPACK delegate (FULLY_CONNECTED)
        conv.optimizations = [*conv.optimizations, T.lite.Optimize.EXPERIMENTAL_SPARSITY]
    try:
        import warnings

        with quiet_stderr_fd(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Statistics for quantized inputs were expected" (we calibrate)
            return bytes(conv.convert())
    except Exception as e:
        msg = " ".join(str(e).split())[:300]
        raise ExportError(f"TFLite conversion to {precision} failed: {type(e).__name__}: {msg}") from None


def representative_from(x: np.ndarray, n: int = 200, seed: int = 0):
    """A representative-dataset generator over up to ``n`` samples of ``x``."""
    idx = np.random.default_rng(seed).permutation(len(x))[:n]

    def gen():
        for i in idx:
            xi = x[i:i + 1]
            yield [xi if np.issubdtype(xi.dtype, np.integer) else xi.astype(np.float32)]

    return gen


def parity(keras_out: np.ndarray, tflite_out: np.ndarray, labels: np.ndarray | None = None,
           measure: str = "top1", tensor: Any = None, scores: np.ndarray | None = None) -> dict[str, Any]:
    """Agreement between two output arrays of the same inputs: the absolute
    errors; the mean error relative to the spread of the source's outputs
    (near-constant outputs, an untrained model's, are judged in absolute
    units instead); then what the output's ``measure`` (zoo.family.MEASURES)
    adds: top-1 agreement of class scores, with whether it means anything here
    (not for near-constant outputs, nor where the source's top two classes are
    closer than the file's error) and accuracy when labels exist; the
    agreement of the decision at each pixel of a map or each step of a
    sequence ("pixels", "steps"); nothing more for "error"; and for outputs
    in their own units, read with ``tensor`` (an OutputTensor: points,
    extent, logits; see _own_units): "keypoints" (``keypoint_pct``: the mean
    distance of the points' x, y in % of the extent, and ``keypoint_pct_p95``
    over inputs of each input's mean), "boxes" (``box_px``: the mean absolute
    error of the coordinates in pixels, ``box_px_p95`` likewise), "probability"
    (``prob_err``: the mean absolute difference of the probabilities, after a
    sigmoid of logits; ``prob_err_max``)."""
    if measure in ("pixels", "steps"):
        return _decision_parity(np.asarray(keras_out), np.asarray(tflite_out), measure)
    if measure == "labels":
        return _label_parity(np.asarray(keras_out), np.asarray(tflite_out))
    if measure in OWN_UNITS:
        return _own_units(np.asarray(keras_out), np.asarray(tflite_out), measure, tensor, scores)
    res = _top1_parity(keras_out, tflite_out, labels)
    if measure != "top1":
        for k in [k for k in res if k.startswith("top1") or k in ("median_top1_margin", "keras_accuracy",
                                                                     "tflite_accuracy")]:
            res.pop(k)
        if res.get("note", "").startswith("top-1"):
            res.pop("note")
    res["measure"] = measure
    return res


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -100.0, 100.0)))


def _detected(p: np.ndarray, at_least: float = 0.5, best: int = 5) -> np.ndarray:
    """The rows of one input whose probability ``p`` is at least
    ``at_least``; without any, the ``best`` most probable."""
    sel = np.flatnonzero(p >= at_least)
    return sel if len(sel) else np.argsort(-p)[:best]


def _own_units(k: np.ndarray, t: np.ndarray, measure: str, tensor: Any,
               scores: np.ndarray | None = None) -> dict[str, Any]:
    """The errors (as every output's), and the figure of an output judged in
    its own units (see parity); ``scores``: the source's probability of each
    row of a boxes output (its ``scored_by``), to judge the boxes where it
    detects something."""
    n = len(k)
    k = k.astype(np.float64).reshape(n, -1)
    t = t.astype(np.float64).reshape(len(t), -1)
    _, res = _errors(k, t)
    res.pop("note", None)  # the relative error is not what is judged here
    res["measure"] = measure
    points = int(getattr(tensor, "points", 0) or 0)
    if points and k.shape[1] % points:
        raise ExportError(f"{measure}: {k.shape[1]} values per input are not rows of {points}")
    if measure == "keypoints":
        extent = float(getattr(tensor, "extent", 0.0) or 0.0)
        if points < 2 or extent <= 0:
            raise ExportError("keypoints are judged with the values per point (at least x, y) and the extent the "
                              "coordinates are measured against")
        d = k.reshape(n, -1, points)[..., :2] - t.reshape(n, -1, points)[..., :2]
        per = np.sqrt((d ** 2).sum(-1)).mean(1) / extent * 100  # each input's mean distance, in % of the extent
        res.update(keypoint_pct=float(per.mean()), keypoint_pct_p95=float(np.percentile(per, 95)),
                   keypoint_extent=extent, keypoint_of=getattr(tensor, "extent_name", "") or "the crop")
    elif measure == "boxes":
        rows = points or k.shape[1]
        err = np.abs(k - t).reshape(n, -1, rows).mean(-1)  # per input and row (anchor)
        if scores is not None:  # the rows the source detects something in
            err = np.array([e[_detected(sc)].mean() for e, sc in zip(err, scores.reshape(n, -1))])
            res["box_rows"] = "where the source's score is at least 0.5 (else its 5 best)"
        per = err.mean(1) if err.ndim > 1 else err
        res.update(box_px=float(per.mean()), box_px_p95=float(np.percentile(per, 95)))
    else:
        if getattr(tensor, "logits", False):
            k, t = _sigmoid(k), _sigmoid(t)
        e = np.abs(k - t)
        res.update(prob_err=float(e.mean()), prob_err_max=float(e.max()))
    return res


def _errors(k: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    err = np.abs(k - t)
    spread = float(k.std())
    untrained = spread < SPREAD_FLOOR
    res: dict[str, Any] = {
        "samples": int(len(k)),
        "max_abs_err": float(err.max()),
        "mean_abs_err": float(err.mean()),
        "output_spread": spread,
        "rel_mean_err": float(err.mean() / (UNTRAINED_SCALE if untrained else spread)),
    }
    if untrained:
        res["note"] = "untrained: agreement not meaningful (the outputs barely vary); errors judged in absolute units"
    return err, res


def _decision_parity(k: np.ndarray, t: np.ndarray, measure: str) -> dict[str, Any]:
    """Errors, and how often the file decides as the source at each pixel of a
    map (N, H, W, C) or step of a sequence (N, T, C): the argmax over the
    channels, or for a one-channel map whether a value lies above the middle
    of its range (0.5 for probabilities, else 0). Positions where the source
    itself is within 4x the file's typical (median) error of the other
    decision are coin tosses: ``agreement_clear`` leaves them out, and is what
    is judged (the median, not the mean: a region the file gets wholly wrong
    must not make every position look uncertain)."""
    k = k.astype(np.float64)
    t = t.astype(np.float64)
    err, res = _errors(k.reshape(len(k), -1), t.reshape(len(t), -1))
    tol = 4 * np.median(err, 1).reshape((len(k),) + (1,) * (k.ndim - 2))
    if k.shape[-1] == 1:
        mid = 0.5 if k.min() >= 0.0 and k.max() <= 1.0 else 0.0
        kd, td = k[..., 0] > mid, t[..., 0] > mid
        clear = np.abs(k[..., 0] - mid) > tol
    else:
        kd, td = k.argmax(-1), t.argmax(-1)
        top2 = np.sort(k, -1)[..., -2:]
        clear = (top2[..., 1] - top2[..., 0]) > tol
    agree = kd == td
    res.update(measure=measure, agreement=float(agree.mean()), judged_positions=int(clear.sum()),
               positions=int(agree.size))
    if measure == "pixels":  # a one-channel map: the two sides of the middle are the classes
        res.update(_class_iou(kd.astype(np.int64), td.astype(np.int64)))
    if "note" in res or clear.mean() < 0.5:
        res["agreement_meaningful"] = False
        res.setdefault("note", f"{'per-pixel' if measure == 'pixels' else 'per-step'} agreement not judged: for most "
                               "positions the source's decision is closer than this file's error")
    else:
        res["agreement_meaningful"] = True
        res["agreement_clear"] = float(agree[clear].mean())
    return res


def _class_iou(kd: np.ndarray, td: np.ndarray) -> dict[str, Any]:
    """Per class of the source's decisions, the IoU of the file's decisions
    with them (classes the source decides on at least once): the worst and
    the mean."""
    ious = []
    for c in np.unique(kd):
        a, b = kd == c, td == c
        ious.append(float((a & b).sum() / max((a | b).sum(), 1)))
    return {"class_iou_min": min(ious), "class_iou_mean": float(np.mean(ious)), "classes": len(ious)}


def _label_parity(k: np.ndarray, t: np.ndarray) -> dict[str, Any]:
    """A label map (a finalized segmentation output): how often the file's
    label equals the source's at each pixel, and the per-class IoU."""
    kd, td = np.rint(k).astype(np.int64), np.rint(t).astype(np.int64)
    agree = kd == td
    diff = np.abs(k.astype(np.float64) - t.astype(np.float64))
    return {"measure": "labels", "agreement": float(agree.mean()), "agreement_meaningful": True,
            "positions": int(agree.size), "max_abs_err": float(diff.max()), "mean_abs_err": float(diff.mean()),
            "rel_mean_err": float(1.0 - agree.mean()), **_class_iou(kd, td)}


def _top1_parity(keras_out: np.ndarray, tflite_out: np.ndarray, labels: np.ndarray | None = None) -> dict[str, Any]:
    k = keras_out.reshape(len(keras_out), -1).astype(np.float64)
    t = tflite_out.reshape(len(tflite_out), -1).astype(np.float64)
    err, res = _errors(k, t)
    untrained = "note" in res
    if k.shape[1] > 1:
        agree = k.argmax(1) == t.argmax(1)
        res["top1_agreement"] = float(agree.mean())
        top2 = np.sort(k, 1)[:, -2:]
        margins = top2[:, 1] - top2[:, 0]
        res["median_top1_margin"] = float(np.median(margins))
        # the argmax of a sample whose top two classes are within the file's error on that sample of each other is
        # a coin toss: judge the agreement on the samples the source decides clearly, its top two classes further
        # apart than 4x the sample's mean error (the error check guards the rest)
        clear = margins > 4 * err.mean(1)
        res["top1_judged_samples"] = int(clear.sum())
        if untrained:
            res["top1_meaningful"] = False
        elif clear.mean() < 0.5:
            res["top1_meaningful"] = False
            res["note"] = "top-1 not judged: for most inputs the source's top two classes are closer than this file's error"
        else:
            res["top1_meaningful"] = True
            res["top1_agreement_clear"] = float(agree[clear].mean())
        if labels is not None:
            res["keras_accuracy"] = float((k.argmax(1) == labels).mean())
            res["tflite_accuracy"] = float((t.argmax(1) == labels).mean())
    return res


def _checks(p: dict[str, Any], th: ParityThreshold, name: str | None = None) -> list[tuple[str, float, float]]:
    """What is judged of one output's parity: (kind, figure, limit), the
    agreements (kinds top1, pixels, steps) at least their limit, the rest at
    most. An output in its own units (keypoints, boxes, probability) is
    judged by that figure alone where ``th`` has a limit for it, else by its
    relative error as any other output; ``name`` picks the output's own limit
    (ParityThreshold.outputs)."""
    m = p.get("measure") or ("top1" if "top1_agreement" in p else "error")
    if m == "labels":  # labels are equal or not: their agreement is all there is to judge
        return [("pixels", p["agreement"], th.limit("pixels", name))]
    if m in OWN_UNITS:
        lim = th.limit(m, name)
        if lim is not None:
            return [(m, p[OWN_UNITS[m]], lim)]
    checks = []
    top1 = p.get("top1_agreement_clear", p.get("top1_agreement"))
    if top1 is not None and p.get("top1_meaningful", True):
        checks.append(("top1", top1, th.limit("top1", name) if m == "top1" else th.min_top1))
    agree = p.get("agreement_clear", p.get("agreement"))
    if agree is not None and p.get("agreement_meaningful", True):
        kind = "pixels" if m == "pixels" else "steps"
        checks.append((kind, agree, th.limit(kind, name) if m == kind else th.min_agreement))
    checks.append(("error", p["rel_mean_err"], th.limit("error", name) if m == "error" else th.max_rel_mean_err))
    return checks


_AT_LEAST = ("top1", "pixels", "steps")


def _fails(kind: str, figure: float, limit: float) -> bool:
    return figure < limit if kind in _AT_LEAST else figure > limit


def _phrase(kind: str, figure: float, limit: float, p: dict[str, Any]) -> str:
    """A failed check in a few words."""
    if kind == "keypoints":
        return f"keypoints {figure:.2f}% of {p.get('keypoint_of', 'the crop')} > {limit:g}%"
    if kind == "boxes":
        return f"boxes {figure:.2f} px > {limit:g} px"
    if kind == "probability":
        return f"probability error {figure:.3g} > {limit:g}"
    if kind == "top1":
        return f"top-1 agreement {figure:.3f} < {limit}"
    if kind in ("pixels", "steps"):
        return f"{'per-pixel' if kind == 'pixels' else 'per-step'} agreement {figure:.3f} < {limit}"
    return f"relative mean error {figure:.4f} > {limit}"


def judge(p: dict[str, Any], th: ParityThreshold, name: str | None = None) -> list[str]:
    """The parity checks that failed, as short phrases (empty: parity holds);
    ``name``: the output's, for its own limit (ParityThreshold.outputs)."""
    if p["max_abs_err"] <= ABS_AGREE:
        return []
    return [_phrase(kind, f, lim, p) for kind, f, lim in _checks(p, th, name) if _fails(kind, f, lim)]


def _ratio(kind: str, figure: float, limit: float) -> float:
    """A figure over its limit (at most 1: within it); of an agreement, its
    shortfall from 1 over the limit's."""
    num, den = (1.0 - figure, 1.0 - limit) if kind in _AT_LEAST else (figure, limit)
    if den <= 0:
        return 0.0 if num <= 0 else float("inf")
    return max(0.0, num / den)


def _per_output(p: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return p.get("outputs") or {"output": p}


def budget_ratios(p: dict[str, Any], th: ParityThreshold) -> dict[str, float]:
    """Per output of a ``parity_outputs`` result, how much of its budget it
    takes: its figure over its limit (keypoints, boxes, probability, relative
    error), or of an agreement (top-1, per pixel, per step) its shortfall from
    1 over the limit's; the largest where an output has several checks. At
    most 1: within budget, exactly where ``judge`` passes the output."""
    res = {}
    for n, q in _per_output(p).items():
        checks = _checks(q, th, n)
        res[n] = 0.0 if q["max_abs_err"] <= ABS_AGREE else max(_ratio(*c) for c in checks)
    return res


def _budget_item(kind: str, figure: float, limit: float, p: dict[str, Any]) -> str:
    if kind == "keypoints":
        of = p.get("keypoint_of", "the crop")
        return f"keypoints {figure:.3g}% of {of} (budget {limit:g}%)"
    if kind == "boxes":
        return f"boxes {figure:.3g} px (budget {limit:g} px)"
    if kind == "probability":
        return f"probability {figure:.3g} (budget {limit:g})"
    if kind in _AT_LEAST:
        what = {"top1": "top-1", "pixels": "per-pixel", "steps": "per-step"}[kind]
        return f"{what} agreement {figure:.3f} (budget {limit:g})"
    return f"relative error {figure:.3g} (budget {limit:g})"


def budget_text(p: dict[str, Any], th: ParityThreshold) -> str:
    """Each output's figure against its budget, on one line: "Identity
    keypoints 2.41% of the crop (budget 2%), Identity_1 probability 0.012
    (budget 0.05)"; of an output with several checks, the one that takes
    most of its budget."""
    items = []
    for n, q in _per_output(p).items():
        checks = _checks(q, th, n)
        worst = max(checks, key=lambda c: _ratio(*c))
        items.append(f"{n} {_budget_item(*worst, q)}")
    return ", ".join(items)


def parse_budget(text: str, base: ParityThreshold) -> ParityThreshold:
    """``base`` with the limits of ``--budget``: comma-separated KEY=VALUE
    where KEY is a measure (zoo.family.MEASURES: keypoints in % of the crop,
    boxes in pixels, probability, the minimum agreement of pixels, steps and
    top1, the relative error) or the name of an output (its own measure's
    limit; any key that is not a measure is taken as one: check_budget checks
    them against the model's outputs). Raises ExportError naming the bad
    item."""
    from odml.zoo.family import MEASURES

    fields: dict[str, float] = {}
    own: dict[str, float] = dict(base.outputs)
    items = [i.strip() for i in text.split(",") if i.strip()]
    if not items:
        raise ExportError("--budget: expected MEASURE=VALUE or OUTPUT=VALUE items, e.g. keypoints=1.5,Identity_4=3")
    for item in items:
        key, eq, value = (s.strip() for s in item.partition("="))
        if not eq or not key or not value:
            raise ExportError(f"--budget {item}: expected MEASURE=VALUE or OUTPUT=VALUE")
        try:
            v = float(value)
        except ValueError:
            raise ExportError(f"--budget {item}: {value!r} is not a number") from None
        if not np.isfinite(v) or v < 0:
            raise ExportError(f"--budget {item}: a budget is a number of at least 0")
        if key in MEASURES:
            if key in _AT_LEAST and v > 1:
                raise ExportError(f"--budget {item}: {key} is a minimum agreement, from 0 to 1")
            field = _LIMIT_FIELD[key]
            if field in fields and fields[field] != v:  # pixels and steps share one minimum agreement
                raise ExportError(f"--budget {item}: pixels and steps share one minimum agreement, "
                                  f"already {fields[field]:g}")
            fields[field] = v
        else:
            own[key] = v
    from dataclasses import replace

    return replace(base, **fields, outputs=tuple(own.items()))


def check_budget(th: ParityThreshold, outputs: Any) -> None:
    """Raise ExportError when a per-output limit of ``th`` names no output
    of ``outputs`` (OutputTensor: name, measure), or gives an agreement
    output a minimum above 1."""
    from odml.zoo.family import MEASURES

    by_name = {t.name: t for t in outputs}
    for key, v in th.outputs:
        t = by_name.get(key)
        if t is None:
            have = (f"this model's outputs: {', '.join(by_name)}" if by_name else
                    "this model has one output: give its measure")
            raise ExportError(f"--budget {key}={v:g}: unknown measure or output {key!r} (measures: "
                              f"{', '.join(MEASURES)}; {have})")
        if t.measure in _AT_LEAST and v > 1:
            raise ExportError(f"--budget {key}={v:g}: {key} is judged by its {MEASURES[t.measure]}, a minimum "
                              "from 0 to 1")


def parity_failure(results: list[dict[str, Any]], random_inputs: bool = False) -> CheckFailed | None:
    """The failed parity checks as one error; ``random_inputs``: say that
    they ran on noise, where a real model's outputs barely vary (so the
    errors relative to their spread look large) and --data gives inputs like
    the model's."""
    bad = [r for r in results if r.get("parity_failed")]
    if not bad:
        return None
    hint = ("; parity ran on random inputs, on which a real model's outputs barely vary: give --data (inputs like "
            "the model's) to judge it on them") if random_inputs else ""
    return CheckFailed("parity failed: " + "; ".join(f"{r['precision']}: {', '.join(r['parity_failed'])}"
                                                     for r in bad) + hint)


def signed(data: bytes, card: Any, where: str = "converted model") -> bytes:
    """``data`` with a ``serving_default`` signature under the names the
    model's family gives its input and outputs (what LiteRT's CompiledModel
    and Android's ``runSignature`` address a model by)."""
    from odml.flatbuffer import with_signature

    out = card.output
    return with_signature(data, [card.input.name], [t.name for t in out.tensors] or [out.name], where)


def keep_io(data: bytes, input_name: str, tensors: Any, where: str = "converted model") -> bytes:
    """``data`` with its input tensor named ``input_name`` and its outputs in
    the order and with the names of ``tensors`` (OutputTensor: name, shape),
    so that the file can replace one that an app already loads by tensor name
    or position. Outputs are matched by shape (outputs of one shape keep the
    converter's order, which is the model's); a file already so is returned
    as it is. Raises CheckFailed when the outputs cannot be matched."""
    from odml.flatbuffer import pack_tflite, parse_tflite

    model = parse_tflite(data, where)
    want_shapes = [[1, *t.shape] for t in tensors]
    have = [[1, *o.shape[1:]] if o.shape[:1] == [-1] else o.shape for o in model.outputs]  # a dynamic batch: 1
    order: list[int] = []
    for w in want_shapes:
        k = next((j for j, s in enumerate(have) if s == w and j not in order), None)
        if k is None:
            raise CheckFailed(f"{where}: no output of shape {w} left to match (its outputs: "
                              f"{', '.join(str(s) for s in have)})")
        order.append(k)
    if len(order) != len(model.outputs):
        raise CheckFailed(f"{where}: {len(model.outputs)} outputs where {len(order)} are expected")
    if order == list(range(len(model.outputs))) and [model.outputs[k].name for k in order] == [t.name for t in tensors] \
            and model.inputs[0].name == input_name:
        return data
    obj = model.raw
    g = obj.subgraphs[0]
    g.tensors[g.inputs[0]].name = input_name
    new_outs = [int(g.outputs[k]) for k in order]
    for i, t in zip(new_outs, tensors):
        g.tensors[i].name = t.name
    g.outputs = new_outs
    for sig in obj.signatureDefs or []:  # a signature's outputs take the same names
        for tm in sig.outputs or []:
            if tm.tensorIndex in new_outs:
                tm.name = tensors[new_outs.index(tm.tensorIndex)].name
    return pack_tflite(obj, len(data))


def parity_outputs(ref: list[np.ndarray], got: list[np.ndarray], names: list[str],
                   measures: list[Any] | None = None, labels: np.ndarray | None = None) -> dict[str, Any]:
    """``parity`` of each output of a model (each judged by its measure:
    ``measures``, default relative error: a measure's name, or the output's
    OutputTensor, whose points, extent and logits the measures in the
    output's own units read), and the worst figures over them; ``labels``
    score the first output when it is class scores."""
    measures = measures or ["error"] * len(names)
    per = {}
    by_name = dict(zip(names, zip(ref, measures)))
    for i, (n, r, g, mt) in enumerate(zip(names, ref, got, measures)):
        m, tensor = (mt, None) if isinstance(mt, str) else (mt.measure, mt)
        scores = None
        if getattr(tensor, "scored_by", "") in by_name:  # a detector's boxes: judged where the source detects
            sr, st = by_name[tensor.scored_by]
            scores = np.asarray(sr, np.float64)
            scores = _sigmoid(scores) if getattr(st, "logits", False) else scores
        per[n] = parity(np.asarray(r), np.asarray(g), labels if i == 0 and m == "top1" else None, m, tensor, scores)
        per[n]["measure"] = m
    worst = {k: max(p[k] for p in per.values()) for k in ("max_abs_err", "mean_abs_err", "rel_mean_err")}
    res: dict[str, Any] = {"samples": int(len(ref[0])), **worst, "outputs": per}
    first = per[names[0]]
    for k in ("top1_agreement", "top1_agreement_clear", "top1_meaningful", "keras_accuracy", "tflite_accuracy"):
        if k in first:  # a classifier's figures, where a table looks for them
            res[k] = first[k]
    return res


def judge_outputs(p: dict[str, Any], th: ParityThreshold) -> list[str]:
    """``judge`` of every output of ``parity_outputs``, each with its own
    limit where ``th`` gives one by name."""
    if len(p["outputs"]) == 1:
        n, q = next(iter(p["outputs"].items()))
        return judge(q, th, n)
    return [f"{n}: {f}" for n, q in p["outputs"].items() for f in judge(q, th, n)]


def agreement_text(p: dict[str, Any]) -> str:
    """The agreement figure of one output's parity for a table: top-1, per
    pixel or per step; the distance of keypoints in % of their crop, box
    coordinates' error in pixels, the probability error; '-' for an output
    judged by its error alone."""
    if "top1_agreement" in p:
        return f"{p['top1_agreement']:.3f} top-1"
    if "agreement" in p:
        return f"{p['agreement']:.3f} {p.get('measure') if p.get('measure') in ('pixels', 'labels') else 'steps'}"
    if "keypoint_pct" in p:
        return f"{p['keypoint_pct']:.3g}% {p.get('keypoint_of', 'the crop').split()[-1]}"
    if "box_px" in p:
        return f"{p['box_px']:.3g} px"
    if "prob_err" in p:
        return f"{p['prob_err']:.3g} prob"
    return "-"
