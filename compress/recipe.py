"""The compression recipe: which techniques, with which settings (YAML or
JSON). Every key is checked; an unknown key or an impossible value is a
one-line error that names the file and the key.

    epochs: 10
    batch_size: 64
    learning_rate: 0.003
    seed: 0
    text_distortion: 0      # text teachers: each token distorted afresh every epoch with this probability
    students: [mobilenet_edgetpu_v2_tiny@0.5, my_spec.json]   # or sizes: [0.5, 0.25, 0.125]
    distill: {enabled: true, temperature: 4, alpha: 0.3, joint: false, augment: none, init: random}
    prune: {enabled: false, sparsity: 0.5, structure: unstructured, begin: 0.2, end: 0.8, frequency: 10}
    quantize: {mode: ptq, calibration_samples: 200}
    shared: {enabled: false, finetune_epochs: 0, widths_per_step: 1}   # students that are widths of one network (compress/shared.py)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from odml.errors import OdmlError


class RecipeError(OdmlError):
    """A recipe (or a command-line setting of one) that cannot be used."""


AUGMENTS = ("none", "mixup", "dropout", "ngram")
INITS = ("random", "teacher")


@dataclass
class Distill:
    enabled: bool = True
    temperature: float = 4.0
    alpha: float = 0.3  # weight of the soft (teacher) loss; the hard labels get 1 - alpha (T 4, alpha 0.3 beat T 4, alpha 0.7 and T 2, alpha 0.5 on digits)
    joint: bool = False  # train the teacher on the labels at the same time
    # a second, perturbed copy of every batch that the teacher labels and the students learn from the soft loss
    # alone (the teacher's knowledge beyond the training inputs): "mixup" (pairs mixed, Beta(0.4, 0.4); float
    # inputs: images, pQRNN projections), "dropout" (tokens, or 8x8 patches of an image, zeroed at 15%), "ngram"
    # (texts: windows of 1-5 consecutive tokens, Tang et al. 2019), "none"; the soft loss is over both halves
    augment: str = "none"
    # where the students' weights start: "random", or "teacher": the teacher's most important channels and their
    # weights (width pruning of the teacher, Minitron-style; pQRNN students of a pQRNN teacher)
    init: str = "random"

    @property
    def inherits(self) -> bool:
        """The students start from the teacher's channels (distillation on)."""
        return self.enabled and self.init == "teacher"


@dataclass
class Prune:
    enabled: bool = False
    sparsity: float = 0.5
    structure: str = "unstructured"  # or "2:4"
    begin: float = 0.2  # fraction of the training steps when pruning starts ...
    end: float = 0.8  # ... and when it reaches the target sparsity (polynomial decay)
    frequency: int = 10  # steps between mask updates


@dataclass
class Quantize:
    mode: str = "ptq"  # ptq (post-training int8), qat (quantization-aware training), none
    calibration_samples: int = 200


@dataclass
class Shared:
    enabled: bool = False  # the students are widths of one network, trained together (compress/shared.py)
    # the last of the epochs: each width copied out and trained apart (0: none; pruning and QAT happen there, so with
    # either of them at least 1)
    finetune_epochs: int = 0
    # widths trained per step: 1 (the widths in turn, all in one graph: a step costs about one student's); 3 is the
    # sandwich rule (the widest, the narrowest, one other at random, each width its own graph); 2 trains the widest
    # and one other at random; more: the widest, the narrowest and others at random
    widths_per_step: int = 1

    def apart(self, recipe: "Recipe") -> int:
        """The epochs of fine-tuning apart: as given, at least one when the
        recipe prunes or trains quantization-aware (they happen there)."""
        return max(self.finetune_epochs, int(recipe.prune.enabled or recipe.quantize.mode == "qat"))


@dataclass
class Recipe:
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-5
    seed: int = 0
    # text teachers: the training texts distorted afresh every epoch (each token, with this probability, loses a
    # character, has one moved or gets one inserted), as `odml train` trains pQRNN; the teacher labels the same
    # distorted texts the students see. 0 (the texts as they are) trained SMS students better in 6 epochs
    text_distortion: float = 0.0
    students: list[str] = field(default_factory=list)
    sizes: list[float] = field(default_factory=lambda: [0.5, 0.25, 0.125])
    distill: Distill = field(default_factory=Distill)
    prune: Prune = field(default_factory=Prune)
    quantize: Quantize = field(default_factory=Quantize)
    shared: Shared = field(default_factory=Shared)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self, where: str = "recipe") -> "Recipe":
        def bad(key: str, why: str) -> RecipeError:
            return RecipeError(f"{where}: {key}: {why}")

        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise bad("epochs", f"must be a positive integer, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise bad("batch_size", f"must be a positive integer, got {self.batch_size!r}")
        if not self.learning_rate > 0:
            raise bad("learning_rate", f"must be positive, got {self.learning_rate!r}")
        if not 0 <= self.text_distortion < 1:
            raise bad("text_distortion", f"must be in [0, 1), got {self.text_distortion!r}")
        if not self.students and not self.sizes:
            raise bad("students", "no students and no sizes: nothing to train")
        for s in self.sizes:
            if not 0 < s < 1:
                raise bad("sizes", f"{s!r} is not a fraction of the teacher's MACs in (0, 1)")
        d = self.distill
        if not d.temperature > 0:
            raise bad("distill.temperature", f"must be positive, got {d.temperature!r}")
        if not 0 <= d.alpha <= 1:
            raise bad("distill.alpha", f"must be in [0, 1], got {d.alpha!r}")
        if d.augment not in AUGMENTS:
            raise bad("distill.augment", f"must be {', '.join(AUGMENTS)}, got {d.augment!r}")
        if d.init not in INITS:
            raise bad("distill.init", f"must be {' or '.join(INITS)}, got {d.init!r}")
        p = self.prune
        if not 0 <= p.sparsity < 1:
            raise bad("prune.sparsity", f"must be in [0, 1), got {p.sparsity!r}")
        if p.structure not in ("unstructured", "2:4"):
            raise bad("prune.structure", f"must be unstructured or '2:4' (quoted in YAML), got {p.structure!r}")
        if not 0 <= p.begin < p.end <= 1:
            raise bad("prune.begin/end", f"need 0 <= begin < end <= 1, got {p.begin!r} and {p.end!r}")
        if not isinstance(p.frequency, int) or p.frequency < 1:
            raise bad("prune.frequency", f"must be a positive integer, got {p.frequency!r}")
        q = self.quantize
        if q.mode not in ("ptq", "qat", "none"):
            raise bad("quantize.mode", f"must be ptq, qat or none, got {q.mode!r}")
        if not isinstance(q.calibration_samples, int) or q.calibration_samples < 1:
            raise bad("quantize.calibration_samples", f"must be a positive integer, got {q.calibration_samples!r}")
        sh = self.shared
        if not isinstance(sh.finetune_epochs, int) or sh.finetune_epochs < 0:
            raise bad("shared.finetune_epochs", f"must be a whole number of epochs, got {sh.finetune_epochs!r}")
        if not isinstance(sh.widths_per_step, int) or sh.widths_per_step < 1:
            raise bad("shared.widths_per_step", f"must be 1 or more, got {sh.widths_per_step!r}")
        if sh.enabled and sh.apart(self) >= self.epochs:
            if sh.apart(self) > sh.finetune_epochs:  # forced: pruning or QAT happen in an epoch apart
                what = "pruning" if self.prune.enabled else "QAT"
                raise bad("epochs", f"{self.epochs} with --shared and {what}: {what} happens while each width is "
                          "fine-tuned apart for the last epoch, which leaves none to train the widths together; give "
                          "--epochs 2 or more")
            raise bad("shared.finetune_epochs", f"{sh.finetune_epochs} of {self.epochs} epochs leaves none to train "
                      "the widths together; give more epochs or fewer to fine-tune")
        return self


_SECTIONS = {"distill": Distill, "prune": Prune, "quantize": Quantize, "shared": Shared}


def _build(cls: type, d: Any, where: str) -> Any:
    if not isinstance(d, dict):
        raise RecipeError(f"{where}: expected a mapping, got {type(d).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}")
    kwargs = {}
    for k, v in d.items():
        if k in _SECTIONS and cls is Recipe:
            v = _build(_SECTIONS[k], v or {}, f"{where}: {k}")
        elif k in ("students", "sizes"):
            if not isinstance(v, list):
                raise RecipeError(f"{where}: {k}: expected a list")
            want = str if k == "students" else (int, float)
            for x in v:
                if not isinstance(x, want) or isinstance(x, bool):
                    raise RecipeError(f"{where}: {k}: expected a list of {'names' if k == 'students' else 'numbers'}, "
                                      f"got {x!r}")
        else:
            default = getattr(cls(), k)
            if isinstance(default, bool) and not isinstance(v, bool):
                raise RecipeError(f"{where}: {k}: expected true or false, got {v!r}")
            if isinstance(default, (int, float)) and not isinstance(default, bool):
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise RecipeError(f"{where}: {k}: expected a number, got {v!r}")
                if isinstance(default, float):
                    v = float(v)
                if not math.isfinite(v):
                    raise RecipeError(f"{where}: {k}: expected a finite number, got {v!r}")
            if isinstance(default, str) and not isinstance(v, str):
                v = str(v)
        kwargs[k] = v
    return cls(**kwargs)


def recipe_from_dict(d: Any, where: str = "recipe") -> Recipe:
    if d is None:
        d = {}
    return _build(Recipe, d, where).validate(where)


def load_recipe(path: str | Path | None) -> Recipe:
    """The default recipe, or the one in a YAML / JSON file."""
    if path is None:
        return Recipe().validate()
    from odml.documents import read_document

    return recipe_from_dict(read_document(path, "recipe", RecipeError), str(path))
