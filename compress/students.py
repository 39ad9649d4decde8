"""The teacher (the user's pre-trained Keras classifier) and the students
(zoo names with width multipliers, spec files, or sizes derived from the
teacher's MACs)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from odml.compress.recipe import RecipeError
from odml.errors import OdmlError, SpecError
from odml.zoo.spec import ModelSpec


class TeacherError(OdmlError):
    """A teacher that cannot be used."""


@dataclass
class Teacher:
    path: Path
    model: Any
    input_shape: tuple[int, int, int]
    num_classes: int
    params: int
    macs: int


def load_teacher(path: str | Path) -> Teacher:
    """Load (safe_mode on) and check that the model is an image classifier:
    one (H, W, C) input and one (classes,) output."""
    from odml.zoo.builder import count_macs, trainable_params
    from odml.zoo.load import load_keras_model

    p = Path(path)
    try:
        model = _load_savedmodel(p) if p.is_dir() else load_keras_model(p)
    except OdmlError as e:
        raise TeacherError(f"teacher {e}") from None
    ins, outs = model.inputs, model.outputs
    if len(ins) != 1 or len(outs) != 1:
        raise TeacherError(f"teacher {p}: has {len(ins)} inputs and {len(outs)} outputs; a classifier has one of each")
    ishape, oshape = tuple(ins[0].shape[1:]), tuple(outs[0].shape[1:])
    if len(ishape) != 3 or None in ishape:
        raise TeacherError(f"teacher {p}: input shape {ishape} is not an image (height, width, channels)")
    if len(oshape) != 1 or oshape[0] is None or oshape[0] < 2:
        raise TeacherError(f"teacher {p}: output shape {oshape} is not a classifier's (classes,) with 2 or more classes")
    try:
        macs = count_macs(model)
    except Exception:  # a layer type we do not count: the size derivation then uses parameters
        macs = 0
    return Teacher(path=p, model=model, input_shape=tuple(int(v) for v in ishape), num_classes=int(oshape[0]),
                   params=trainable_params(model), macs=int(macs))


def _load_savedmodel(p: Path) -> Any:
    """A Keras model saved in the SavedModel format (``model.save(folder)``).
    Its functions are traced graphs, not Python, so there is no code to run."""
    from odml._tf import keras, quiet_stderr_fd
    import odml.zoo.blocks  # noqa: F401  (registers odml's custom layers)

    if not (p / "saved_model.pb").is_file():
        raise TeacherError(f"teacher {p}: folder without saved_model.pb (not a SavedModel)")
    K = keras()
    try:
        with quiet_stderr_fd():
            model = K.models.load_model(p, compile=False)
    except Exception as e:
        msg = " ".join(str(e).split())[:300]
        raise TeacherError(f"teacher {p}: cannot load the SavedModel as a Keras model: {type(e).__name__}: {msg}") from None
    if not isinstance(model, K.Model) or not hasattr(model, "inputs") or not model.inputs:
        raise TeacherError(f"teacher {p}: the SavedModel is not a Keras model (save it with model.save)")
    return model


_ZOO_RE = re.compile(r"^(?P<name>[A-Za-z0-9_]+)(?:@(?P<width>\d+(?:\.\d+)?))?$")


def resolve_students(items: list[str], teacher: Teacher) -> list[tuple[str, ModelSpec]]:
    """``name@width`` zoo entries and spec files, fitted to the teacher's input
    and classes. Labels are unique and safe as file names."""
    from odml.zoo.registry import create_spec, list_models

    out: list[tuple[str, ModelSpec]] = []
    h, w, c = teacher.input_shape
    for item in items:
        item = item.strip()
        if not item:
            continue
        p = Path(item)
        if p.suffix.lower() in (".json", ".yaml", ".yml") or p.exists():
            try:
                spec = ModelSpec.load(p)
            except SpecError as e:
                raise RecipeError(f"student {e}") from None
            if spec.input_shape[2] != c:
                raise RecipeError(f"student {p}: {spec.input_shape[2]} input channels, the teacher has {c}")
            spec = spec.replace(input_shape=(h, w, c), num_classes=teacher.num_classes)
            label = p.stem
        else:
            m = _ZOO_RE.match(item)
            if not m or m["name"] not in list_models():
                raise RecipeError(f"student {item!r}: not a zoo name (NAME or NAME@WIDTH, see 'odml zoo list') "
                                  "nor a spec file")
            width = float(m["width"] or 1.0)
            try:
                spec = create_spec(m["name"], num_classes=teacher.num_classes, input_size=(h, w), width=width)
            except SpecError as e:
                raise RecipeError(f"student {item!r}: {e}") from None
            label = m["name"].replace("mobilenet_edgetpu_", "") + (f"_w{width:g}" if m["width"] else "")
        spec.validate(label)
        out.append((label, spec))
    return _unique(out)


def derive_students(sizes: list[float], teacher: Teacher, family: str = "mobilenet_edgetpu_v2_tiny"
                    ) -> list[tuple[str, ModelSpec]]:
    """For each fraction f, the ``family`` member whose width multiplier gives
    about f x the teacher's MACs (parameters when MACs are unknown)."""
    from odml.zoo.registry import create_spec

    h, w, c = teacher.input_shape
    budget_of = (lambda s: s.macs) if teacher.macs else (lambda s: s.params)
    total = teacher.macs or teacher.params

    def spec_at(width: float) -> ModelSpec:
        return create_spec(family, num_classes=teacher.num_classes, input_size=(h, w), width=width)

    out = []
    for f in sorted(sizes, reverse=True):
        target = f * total
        lo, hi = 0.05, 4.0
        for _ in range(30):  # bisection on the width multiplier (cost grows with it)
            mid = (lo + hi) / 2
            if budget_of(spec_at(mid)) > target:
                hi = mid
            else:
                lo = mid
        width = round(lo, 3)
        spec = spec_at(width)
        if budget_of(spec) > target * 1.5:
            raise RecipeError(f"sizes: {f:g} of the teacher ({target:,.0f} {'MACs' if teacher.macs else 'params'}) "
                              f"is below the smallest {family} ({budget_of(spec):,})")
        out.append((f"{family.replace('mobilenet_edgetpu_', '')}_w{width:g}", spec))
    return _unique(out)


def _unique(items: list[tuple[str, ModelSpec]]) -> list[tuple[str, ModelSpec]]:
    seen: dict[str, int] = {}
    out = []
    for label, spec in items:
        n = seen.get(label, 0)
        seen[label] = n + 1
        out.append((label if n == 0 else f"{label}_{n + 1}", spec))
    return out
