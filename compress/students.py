"""The teacher (the user's pre-trained Keras classifier, with its model card
or read off the model) and the students: models of the family the teacher's
family names (``student_family``: MobileNetEdgeTPU members for an image
teacher, the teacher's own family for a text teacher, so that they read the
same input), given by name with a width multiplier, as spec files, or
derived from the teacher's MACs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from odml.compress.recipe import RecipeError
from odml.errors import OdmlError, SpecError
from odml.zoo.card import Carded
from odml.zoo.family import Configured


class TeacherError(OdmlError):
    """A teacher that cannot be used."""


@dataclass
class Teacher(Carded):
    path: Path
    model: Any  # callable on a batch: a tf_keras or Keras 3 model, a SavedModel signature, an ONNX graph converted
    card: Any  # ModelCard: what the teacher is
    params: int
    macs: int
    runtime: str = "tf_keras"  # what made it (odml's training loops train tf_keras models only)
    compressor: str = "distill"  # the pipeline that compresses it, as its family names it (Family.compressor)
    predict: Any = None  # its outputs on a batch of arrays, run as its file runs (a .tflite: LiteRT)

    def fp32_tflite(self) -> bytes:
        """The teacher as an fp32 .tflite (for its latency): a float .tflite
        teacher as it is (its stored fp16 weights widened), any other model
        converted."""
        if self.runtime == "litert":
            from odml.exporters.requantize import requantize

            return requantize(self.path.read_bytes(), "fp32", None, str(self.path))
        from odml.exporters.tflite import concrete_function, convert

        fn = concrete_function(self.model, self.input.shape, self.input.name, self.input.dtype)
        return convert(fn, "fp32", trackable=getattr(self.model, "loaded", None))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.card.input.shape)

    @property
    def student_family(self) -> Any:
        from odml.zoo.registry import get_family

        return get_family(self.family.student_family_for(self.card.config))


def load_teacher(path: str | Path, input_size: Any = None, input_range: tuple[float, float] | None = None
                 ) -> Teacher:
    """Load any model file odml reads (safe_mode on for Keras), or a zoo
    entry that comes with weights (MediaPipe's released landmark model once
    imported), and check that it is a classifier, or a keypoint model, whose
    family has students. The teacher only has to run forward: a Keras 3
    model, a SavedModel, an ONNX graph or a float .tflite (run by LiteRT) will
    do."""
    from odml.zoo.load import load_model
    from odml.zoo.registry import is_model, resolve

    p = Path(path)
    try:
        if not p.exists() and is_model(str(path)):
            c = resolve(str(path))
            p = c.family.model_file(c.config)
            if p is None:
                raise TeacherError(f"teacher {path}: a zoo entry without weights; give a trained model file")
        loaded = load_model(p, input_size, input_range)
    except OdmlError as e:
        raise TeacherError(f"teacher {e}" if not str(e).startswith("teacher") else str(e)) from None
    fam, out = loaded.family, loaded.output
    try:
        compressor = fam.compressor(loaded.card.config)
    except OdmlError as e:
        raise TeacherError(f"teacher {p}: {e}: it is {fam.noun}; its output is {out.name} ({out.description})") from None
    params, macs = loaded.sizes()
    t = Teacher(p, loaded.model, loaded.card, params, macs, loaded.runtime, compressor, loaded.predict)
    try:
        t.student_family.check_teacher(t)
    except SpecError as e:
        raise TeacherError(f"teacher {p}: {e}") from None
    return t


_ZOO_RE = re.compile(r"^(?P<name>[A-Za-z0-9_]+)(?:@(?P<width>\d+(?:\.\d+)?))?$")


def resolve_students(items: list[str], teacher: Teacher) -> list[tuple[str, Configured]]:
    """``name@width`` zoo entries and spec files, fitted to the teacher's input
    and classes. Labels are unique and safe as file names."""
    from odml.zoo.registry import family_of, is_model

    sf = teacher.student_family
    out: list[tuple[str, Configured]] = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        m = _ZOO_RE.match(item)
        try:
            if m and is_model(m["name"]):
                if family_of(m["name"]) is not sf:
                    raise RecipeError(f"student {item!r}: {_a(teacher.family.name)} teacher takes {sf.name} students "
                                      "(they must read the same input)")
                label, cfg = sf.student(m["name"], float(m["width"]) if m["width"] else None, teacher)
            elif Path(item).suffix.lower() in sf.file_suffixes or Path(item).exists():
                label, cfg = sf.student(item, None, teacher)
            else:
                raise RecipeError(f"student {item!r}: not a zoo name (NAME or NAME@WIDTH, see 'odml zoo list') "
                                  "nor a spec file")
            sf.validate(cfg, label)
        except SpecError as e:
            raise RecipeError(f"student {e}" if not str(e).startswith("student") else str(e)) from None
        out.append((label, Configured(sf, cfg, label)))
    return _unique(out)


def _a(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def derive_students(sizes: list[float], teacher: Teacher) -> list[tuple[str, Configured]]:
    """For each fraction f, the student family's base model narrowed (or
    widened) until it has about f x the teacher's MACs (parameters when MACs
    are unknown)."""
    sf = teacher.student_family
    stem, base = sf.student_base(teacher)
    budget_of = (lambda c: c.macs) if teacher.macs else (lambda c: c.params)
    total = teacher.macs or teacher.params
    if not total:
        raise RecipeError(f"sizes: the size of the teacher {teacher.path} is unknown (a SavedModel's signature has "
                          "no layers to count); name the students with --students")

    def at(width: float) -> Configured:
        return Configured(sf, sf.derived(base, width, teacher), stem)

    out = []
    for f in sorted(sizes, reverse=True):
        target = f * total
        lo, hi = sf.width_range
        for _ in range(30):  # bisection on the width multiplier (cost grows with it)
            mid = (lo + hi) / 2
            if budget_of(at(mid)) > target:
                hi = mid
            else:
                lo = mid
        width = round(lo, 3)
        c = at(width)
        if budget_of(c) > target * 1.5:
            raise RecipeError(f"sizes: {f:g} of the teacher ({target:,.0f} {'MACs' if teacher.macs else 'params'}) "
                              f"is below the smallest {stem} ({budget_of(c):,})")
        label = f"{stem}_w{width:g}"
        out.append((label, c.renamed(label)))
    return _unique(out)


def as_widths(students: list[tuple[str, Configured]]) -> list[tuple[str, Configured]]:
    """Shared students: each made a width of the widest (the most
    parameters) inside one network, as its family says (``width_of``)."""
    wide = max(students, key=lambda s: s[1].params)[1]
    return [(label, s if s is wide else Configured(s.family, s.family.width_of(s.config, wide.config), label))
            for label, s in students]


def _unique(items: list[tuple[str, Configured]]) -> list[tuple[str, Configured]]:
    seen: dict[str, int] = {}
    out = []
    for label, spec in items:
        n = seen.get(label, 0)
        seen[label] = n + 1
        lbl = label if n == 0 else f"{label}_{n + 1}"
        out.append((lbl, spec.renamed(lbl)))
    return out


def check_inherit(teacher: Teacher, students: list[tuple[str, Configured]]) -> None:
    """distill.init teacher: the teacher's family must give its channels, and
    every student must be a narrower copy of the teacher that reads the same
    input."""
    from odml.zoo.family import inheriting

    fam = teacher.family
    if not fam.can_inherit:
        raise RecipeError(f"distill.init: teacher: students inherit the teacher's channels only from a "
                          f"{inheriting()} teacher; {teacher.path} is {fam.noun}: use init random")
    for label, s in students:
        try:
            fam.check_inherit(teacher.card.config, s.config, label)
        except SpecError as e:
            raise RecipeError(f"distill.init: teacher: {e}; use init random") from None
