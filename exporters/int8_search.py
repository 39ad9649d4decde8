"""int8 by budget: the fastest int8 recipe whose outputs stay within their
budget (each output judged in its own measure: keypoints in % of the crop,
boxes in pixels, maps by pixel agreement, class scores by top-1; see
``exporters.tflite.ParityThreshold``).

A recipe is data (saved as JSON beside the file it made, given back with
``odml export --recipe``): the calibration ranges and, per op kind or per
layer of the model (the Keras layer or ONNX node its ops came from,
``zoo.opmap.layer_of``), a mode:

- ``a8w8``: int8 activations and weights (the default);
- ``a16w8``: int16 activations, int8 weights (LiteRT's 16x8 kernels: more
  accurate, but XNNPACK does not run them, so each such op runs on LiteRT's
  reference kernels, slowly);
- ``w8``: int8 weights, float activations;
- ``float``: left float (XNNPACK runs float and int8 ops in one delegate,
  converting between them).

The converter's own int8 file is tried first (``engine: tflite-converter``:
what odml always made); when it misses the budget, litert-quantizer (the
LiteRT team's quantizer, which takes recipes per op) quantizes the fp32 file
by recipes from cheapest to safest: all a8w8 (min-max and MSE-clipped
activation ranges), then a16w8 for the ops the diagnosis
(``exporters.diagnose``) finds most sensitive, then float for the worst.
Each step is measured: the budget on the parity inputs and, where the caller
gives a timer, the latency. The first stage with a recipe in budget ends the
search; of its recipes the fastest wins. When none is in budget, the caller
may fine-tune (``finetune``: quantization-aware training, compress's job)
and judge that file the same way."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from odml.exporters.requantize import MODES, op_regex
from odml.exporters.tflite import ExportError

RANGES = ("min-max", "clipped")  # activation ranges: the calibration's min and max, or narrowed where MSE falls
ENGINES = ("tflite-converter", "litert-quantizer", "qat")
SENSITIVE = (1, 3)  # a16w8 for this many of the most sensitive ops
WORST = (1, 3, 10, 30)  # float for this many of the worst ops
DIAGNOSE_SAMPLES = 16
BIAS_SAMPLES = 32  # calibration inputs the bias correction measures the int8 convolutions' mean error on
RECIPE_SUFFIX = ".recipe.json"


class RecipeError(ExportError):
    """A recipe file odml cannot apply (exit 2)."""


@dataclass
class Recipe:
    """How an int8 file is made. ``ops``: {"op": KIND or "layer": NAME,
    "mode": MODE} entries, later ones winning."""

    engine: str = "litert-quantizer"
    ranges: str = "min-max"
    ops: list[dict[str, str]] = field(default_factory=list)
    bias_correction: bool = False  # each int8 conv's mean error on the calibration inputs taken off its bias

    def to_dict(self) -> dict[str, Any]:
        return {"schema": 1, "engine": self.engine, "default": "a8w8", "ranges": self.ranges, "ops": list(self.ops),
                "bias_correction": self.bias_correction}

    def describe(self) -> str:
        if self.engine != "litert-quantizer":
            return {"tflite-converter": "the converter's int8", "qat": "quantization-aware fine-tuning"}[self.engine]
        modes: dict[str, int] = {}
        for o in self.ops:
            modes[o["mode"]] = modes.get(o["mode"], 0) + 1
        rest = ", ".join(f"{m} for {n} {'op' if n == 1 else 'ops'}" for m, n in modes.items())
        return f"a8w8 ({self.ranges})" + (f", {rest}" if rest else "") + (", bias corrected" if self.bias_correction
                                                                            else "")


def load_recipe(path: str | Path) -> Recipe:
    """A recipe file (``Recipe.to_dict``), checked: its engine, ranges and
    each entry's key and mode; raises RecipeError naming what is wrong."""
    p = Path(path)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise RecipeError(f"--recipe {p}: cannot read it: {e.strerror or e}") from None
    except ValueError as e:
        raise RecipeError(f"--recipe {p}: not JSON: {e}") from None
    if not isinstance(d, dict):
        raise RecipeError(f"--recipe {p}: expected an object with engine, ranges and ops")
    unknown = sorted(set(d) - {"schema", "engine", "default", "ranges", "ops", "bias_correction"})
    if unknown:
        raise RecipeError(f"--recipe {p}: unknown key {unknown[0]!r} (keys: engine, ranges, ops, bias_correction)")
    engine, ranges = d.get("engine", "litert-quantizer"), d.get("ranges", "min-max")
    if engine not in ENGINES[:2]:
        raise RecipeError(f"--recipe {p}: engine {engine!r}: expected one of {', '.join(ENGINES[:2])} (a QAT file "
                          "is made by fine-tuning, not by a recipe)")
    if ranges not in RANGES:
        raise RecipeError(f"--recipe {p}: ranges {ranges!r}: expected one of {', '.join(RANGES)}")
    if d.get("default", "a8w8") != "a8w8":
        raise RecipeError(f"--recipe {p}: default {d['default']!r}: the default mode is a8w8")
    ops = d.get("ops", [])
    if not isinstance(ops, list):
        raise RecipeError(f"--recipe {p}: ops must be a list of {{\"layer\" or \"op\": ..., \"mode\": ...}}")
    for i, o in enumerate(ops):
        if not isinstance(o, dict) or sorted(o) not in (["layer", "mode"], ["mode", "op"]):
            raise RecipeError(f"--recipe {p}: ops[{i}]: expected {{\"layer\": NAME, \"mode\": MODE}} or "
                              f"{{\"op\": KIND, \"mode\": MODE}}, got {json.dumps(o)[:80]}")
        if o["mode"] not in MODES:
            raise RecipeError(f"--recipe {p}: ops[{i}]: unknown mode {o['mode']!r} (modes: {', '.join(MODES)})")
    bc = d.get("bias_correction", False)
    if not isinstance(bc, bool):
        raise RecipeError(f"--recipe {p}: bias_correction must be true or false, got {json.dumps(bc)[:40]}")
    if engine == "tflite-converter" and (ops or bc):
        raise RecipeError(f"--recipe {p}: the converter's int8 takes no per-op modes nor bias correction; use engine "
                          "litert-quantizer")
    return Recipe(engine, ranges, [dict(o) for o in ops], bc)


def op_table(fp32: bytes, layers: list[str] | None, outputs: list[str] | None = None) -> list[tuple[str, str, str]]:
    """(kind, output tensor name, layer) of each op of a float file: the
    layer of ``layers`` its name holds, or without them the op itself (its
    first fused name); an op making the k-th output of the file comes from
    ``outputs[k]`` (an output's tensor is named after the output, not its
    layer)."""
    from odml.zoo.opmap import layer_of
    from odml.flatbuffer import _s
    from odml.zoo.tflite_model import _op_name, _read

    m = _read(fp32, "model")
    sg = m.subgraphs[0]
    out_layer = {int(t): n for t, n in zip(sg.outputs, outputs or [])}
    rows = []
    for op in sg.operators or []:
        name = _s(sg.tensors[int(op.outputs[0])].name)
        # without the model's layers (a .tflite, an ONNX graph's function) an op is its own layer: the path component
        # a name's layer would be read from can be shared by the whole graph
        layer = out_layer.get(int(op.outputs[0])) or (layer_of(name, layers) if layers else name.split(";")[0])
        rows.append((_op_name(m, op), name, layer))
    return rows


def recipe_modes(recipe: Recipe, table: list[tuple[str, str, str]], where: str) -> list[tuple[str, str, str]]:
    """The recipe's entries as litert-quantizer's (regex, operation, mode),
    a layer's as one entry per op that came from it; an op kind the file
    does not hold or a layer no op came from raises RecipeError."""
    kinds = {k for k, _, _ in table}
    out = []
    for o in recipe.ops:
        if "op" in o:
            if o["op"] not in kinds:
                raise RecipeError(f"{where}: recipe op {o['op']!r}: the model has no such op (it has "
                                  f"{', '.join(sorted(kinds))})")
            out.append((".*", o["op"], o["mode"]))
            continue
        names = [n for _, n, lay in table if lay == o["layer"]]
        if not names:
            raise RecipeError(f"{where}: recipe layer {o['layer']!r}: no op of the model comes from it")
        out += [(op_regex(n), "*", o["mode"]) for n in names]
    return out


@dataclass
class Step:
    """One recipe tried: what it made and how it did."""

    name: str
    recipe: Recipe
    data: bytes
    parity: dict[str, Any]
    failed: list[str]
    ratios: dict[str, float]
    budget: str  # each output against its budget, one line
    seconds: float
    ms: float | None = None

    @property
    def met(self) -> bool:
        return not self.failed

    @property
    def worst(self) -> float:
        return max(self.ratios.values(), default=float("inf"))  # a step that could not be made: the worst

    def to_dict(self, fp16_ms: float | None) -> dict[str, Any]:
        d = {"step": self.name, "recipe": self.recipe.to_dict(), "what": self.recipe.describe(),
             "met": self.met, "budget": self.budget, "ratios": {k: round(v, 4) for k, v in self.ratios.items()},
             "size_bytes": len(self.data), "seconds": round(self.seconds, 1)}
        if self.ms is not None:
            d["ms"] = round(self.ms, 3)
            if fp16_ms:
                d["vs_fp16"] = round(self.ms / fp16_ms, 3)
        return d


Judge = Callable[[bytes], tuple[dict[str, Any], list[str], dict[str, float], str]]  # parity, failed, ratios, text
Timer = Callable[[list[bytes]], list[float]]  # files -> host latency in ms, in one interleaved measurement


@dataclass
class Searched:
    steps: list[Step]
    chosen: Step | None  # the fastest in budget (None: none is)
    fp16_ms: float | None = None

    @property
    def best(self) -> Step:
        """The chosen step, else the one closest to its budget."""
        return self.chosen or min(self.steps, key=lambda s: s.worst)

    def report(self) -> dict[str, Any]:
        return {"steps": [s.to_dict(self.fp16_ms) for s in self.steps], "chosen": self.chosen.name if self.chosen
                else None, "best": self.best.name, **({"fp16_ms": round(self.fp16_ms, 3)} if self.fp16_ms else {})}


class Quantizer:
    """litert-quantizer on one fp32 file, calibrated once."""

    def __init__(self, fp32: bytes, x_calib: np.ndarray, layers: list[str] | None, where: str,
                 outputs: list[str] | None = None):
        from odml.exporters import requantize as rq

        self.fp32 = rq.float32_flatbuffer(fp32, where)
        self.model = rq.parse_tflite(self.fp32, where)
        self.x = rq._check_calibration(self.model, x_calib, where)
        self.where = where
        self.table = op_table(self.fp32, layers, outputs)
        self.output_names = {t.name for t in self.model.outputs}
        self._qsv: dict[str, Any] = {}

    def ranges(self, kind: str) -> dict[str, Any]:
        from odml.exporters import requantize as rq

        if "min-max" not in self._qsv:
            self._qsv["min-max"] = rq._calibrate(self.fp32, self.model, self.x, self.where)
        if kind == "clipped" and kind not in self._qsv:
            self._qsv[kind] = rq._clipped(self.fp32, self.model, self.x, self._qsv["min-max"], self.where)
        return self._qsv[kind]

    def quantize(self, recipe: Recipe) -> bytes:
        from odml.exporters import requantize as rq

        modes = recipe_modes(recipe, self.table, self.where)
        out = rq._quantize(self.fp32, self.model, "int8", self.x, self.where, qsv=self.ranges(recipe.ranges),
                           modes=modes)
        rq._check_io(out, self.model, self.where)
        return self.corrected(out) if recipe.bias_correction else out

    def corrected(self, data: bytes) -> bytes:
        """``data`` bias corrected (exporters.prepass.bias_correct) on the
        first BIAS_SAMPLES calibration inputs."""
        from odml.exporters.prepass import bias_correct

        return bias_correct(self.fp32, data, self.x[:BIAS_SAMPLES], self.where)[0]


def _try(name: str, recipe: Recipe, make: Callable[[], bytes], judge: Judge) -> Step:
    """One recipe made and judged; one the quantizer or LiteRT cannot make
    or run is a step that failed, saying why (the search goes on)."""
    from odml.errors import OdmlError

    t0 = time.perf_counter()
    try:
        data = make()
        p, failed, ratios, text = judge(data)
    except OdmlError as e:
        why = str(e).split(": ", 1)[-1]
        return Step(name, recipe, b"", {}, [f"cannot be made: {why}"], {}, f"cannot be made: {why}",
                    time.perf_counter() - t0)
    return Step(name, recipe, data, p, failed, ratios, text, time.perf_counter() - t0)


def _time(steps: list[Step], timer: Timer | None, fp16: bytes | None) -> float | None:
    """Each step's latency, measured together (with the fp16 file as the
    reference); the fp16 file's."""
    if timer is None:
        return None
    made = [s for s in steps if s.data]
    ms = timer([s.data for s in made] + ([fp16] if fp16 is not None else []))
    for s, m in zip(made, ms):
        s.ms = m
    return ms[-1] if fp16 is not None else None


def search(fp32: bytes, x_calib: np.ndarray, judge: Judge, layers: list[str] | None = None,
           plain: Step | None = None, timer: Timer | None = None, fp16: bytes | None = None,
           where: str = "model", say: Callable[[str], None] | None = None,
           outputs: list[str] | None = None) -> Searched:
    """The fastest recipe in budget, stage by stage (see the module's text):
    ``plain`` (the converter's int8 file, when there is one), then
    litert-quantizer's a8w8, a16w8 for the most sensitive ops, float for
    the worst. ``judge`` judges a file against the budget; ``timer`` (files
    -> ms) measures latency (None: the first recipe in budget wins)."""
    from odml.exporters.diagnose import diagnose

    steps: list[Step] = []
    fp16_ms: list[float | None] = [None]

    def stage(new: list[Step]) -> Step | None:
        steps.extend(new)
        if timer is not None:
            ms = _time(new, timer, fp16)
            fp16_ms[0] = fp16_ms[0] or ms
        met = [s for s in new if s.met]
        if not met:
            return None
        return min(met, key=lambda s: s.ms) if timer is not None else met[0]

    def note(msg: str) -> None:
        if say:
            say(msg)

    if plain is not None:  # the converter's file, already judged
        got = stage([plain])
        if got:
            return Searched(steps, got, fp16_ms[0])
    q = Quantizer(fp32, x_calib, layers, where, outputs)
    note("int8: litert-quantizer a8w8")
    got = stage([_try(f"a8w8 {r}", Recipe(ranges=r), lambda r=r: q.quantize(Recipe(ranges=r)), judge)
                 for r in RANGES])
    if got:
        return Searched(steps, got, fp16_ms[0])
    base = min(steps[-len(RANGES):], key=lambda s: s.worst)
    note("int8: diagnosing the best a8w8 file")
    d = diagnose(q.fp32, base.data, q.x[:DIAGNOSE_SAMPLES], layers, outputs)
    # the heads first (the ops computing each output from the last weighted op before it: a head regressing pixels
    # is where a budget in pixels is lost, while its error per channel, what the diagnosis ranks by, can look
    # small), then the layers by the error their ops add; named as the float file's op table names them
    from odml.zoo.opmap import tensor_key as _key
    from odml.exporters.requantize import _heads

    layer_of_tensor = {n: lay for _, n, lay in q.table}
    heads = [layer_of_tensor[n] for chain in _heads(q.fp32).values() for n in chain if n in layer_of_tensor]
    makers = {lay for _, n, lay in q.table if n in q.output_names}
    worst = [layer_of_tensor.get(_key(r["tensor"])) for r in sorted(d["all"], key=lambda r: -r["added"])
             if r["added"] > 0]
    ranked = list(dict.fromkeys(heads + [lay for lay in worst if lay]))  # a layer's ops once
    # (int16 activations for an op making an output would make that output int16: a16w8 leaves the heads out)
    for mode, counts, layers_ in (("a16w8", SENSITIVE, [lay for lay in ranked if lay not in makers]),
                                  ("float", WORST, ranked)):
        new = []
        for k in sorted({min(k, len(layers_)) for k in counts} - {0}):
            r = Recipe(ranges=base.recipe.ranges, ops=[{"layer": lay, "mode": mode} for lay in layers_[:k]])
            note(f"int8: {r.describe()}")
            new.append(_try(f"{mode} worst {k}", r, lambda r=r: q.quantize(r), judge))
        got = stage(new)
        if got:
            return Searched(steps, got, fp16_ms[0])
    # last, the best of those bias corrected (each int8 convolution's mean error taken off its bias; measured on
    # BlazePose: keypoints 2.85% -> 2.21% of the crop; docs/benchmarks/int8_prepasses.md)
    made = [st for st in steps if st.recipe.engine == "litert-quantizer" and st.data]
    if not made:
        return Searched(steps, None, fp16_ms[0])
    best = min(made, key=lambda st: st.worst)
    r = Recipe(ranges=best.recipe.ranges, ops=list(best.recipe.ops), bias_correction=True)
    note(f"int8: {r.describe()}")
    got = stage([_try(f"{best.name} + bias correction", r, lambda: q.corrected(best.data), judge)])
    return Searched(steps, got, fp16_ms[0])


def apply(recipe: Recipe, fp32: bytes, x_calib: np.ndarray, layers: list[str] | None, plain: Callable[[], bytes],
          where: str = "model", outputs: list[str] | None = None) -> bytes:
    """The int8 file ``recipe`` makes (a recipe given with --recipe);
    ``plain``: the converter's int8 file, for engine tflite-converter."""
    if recipe.engine == "tflite-converter":
        return plain()
    return Quantizer(fp32, x_calib, layers, where, outputs).quantize(recipe)
