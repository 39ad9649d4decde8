"""Training loops: image classifiers (``trainer``), text classifiers
(``text``), BlazePose (``pose``) and semantic segmentation (``segment``). A family names the loop that trains it
(``Family.trainer``); :func:`train_model` runs that loop for a resolved zoo
entry or spec with the options of ``odml train``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from odml.errors import SpecError, UnsupportedError


@dataclass
class TrainRequest:
    """What ``odml train`` was asked; each loop reads the options it takes."""

    data: str | None = None
    val_data: str | None = None  # validate on all of this, train on all of data
    epochs: int = 5
    batch_size: int | None = None  # None: the family's default
    learning_rate: float | None = None
    val_split: float = 0.2
    seed: int = 0
    logdir: str | None = None
    tensorboard: bool = True
    distribute: str = "none"  # none | mirrored | multiworker (odml.train.distribute)
    # text
    max_len: int | None = None
    label_col: str | None = None
    text_col: str | None = None
    vocab: Path | None = None
    vocab_size: int = 8000
    distortion: float = 0.25
    patience: int = 3  # text: epochs without a better validation loss before stopping (0: never stop early)
    # pose
    variant: str | None = None
    val_images: int = 200
    steps: str = "300,700,2000"
    extra: dict[str, Any] = field(default_factory=dict)

    def batch(self, family: Any) -> int:
        return self.batch_size or int(family.train_defaults.get("batch_size", 64))

    def lr(self, family: Any) -> float:
        return self.learning_rate or float(family.train_defaults.get("learning_rate", 2e-3))


def check_options(c: Any, given: Iterable[str], flags: dict[str, str] | None = None) -> None:
    """Refuse, in one line, an option of `odml train` that the family of
    Configured ``c`` does not take (its ``train_options``) rather than
    ignore it. ``given``: the names of the options given (TrainRequest's
    fields, and input_size, width, sets); ``flags``: name -> the flag as the
    user types it (default ``--name`` with dashes)."""
    fam = c.family
    if not fam.train_options:
        return  # not trained by odml: train_model says so

    def flag(name: str) -> str:
        return (flags or {}).get(name) or "--" + name.replace("_", "-")

    for name in sorted(given):
        if name not in fam.train_options:
            raise UnsupportedError(f"{fam.name}: {flag(name)} is not supported: odml trains {c.name} ({fam.noun}) "
                                   f"with {', '.join(sorted(map(flag, fam.train_options)))}")


def train_model(c: Any, req: TrainRequest, out: Path, progress: Any = None,
                log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train Configured ``c`` with the loop its family names; the result holds
    ``summary``: (metric, value) rows for a table."""
    from odml.train import pose, segment, text, trainer

    loops = {"classifier": trainer.train_entry, "text": text.train_entry, "pose": pose.train_entry,
             "segment": segment.train_entry}
    loop = loops.get(c.family.trainer or "")
    if loop is None:
        raise SpecError(f"{c.name}: odml does not train {c.family.name} models ({c.family.title})")
    from odml.train.distribute import check

    out = Path(out)
    if not check(req.distribute).chief:  # another worker of a multi-worker run: the chief alone writes OUT
        return loop(c, req, out, progress, log or (lambda m: None))
    if not out.parent.is_dir():  # the loop says so in its own words
        return loop(c, req, out, progress, log or (lambda m: None))
    from odml.errors import OutputError
    from odml.files import held

    def busy(pid: str) -> OutputError:
        return OutputError(f"--out {out}: another odml process (pid {pid}) is training into this file; wait for it "
                           "or use another path")

    with held(out.parent / f".{out.name}.lock", busy, remove=True):
        return loop(c, req, out, progress, log or (lambda m: None))


def proxy_train(spec: Any, data: Any, cfg: Any, should_stop: Callable[[int, dict], bool] | None = None
                ) -> dict[str, Any]:
    """Train ``spec`` (a classifier's or a segmentation model's configuration)
    on ``data`` with the loop its family names, nothing saved: what a search
    trial does. The result holds ``score`` (validation accuracy; mIoU for a
    segmentation model), ``epochs_run``, ``train_wall_s`` and ``history``,
    and ``train_accuracy`` where the loop reports one."""
    from odml.train import segment, trainer
    from odml.zoo.registry import family_for

    kind = family_for(spec).trainer
    if kind == "segment":
        res = segment.train_segmentation(spec, data, cfg, None, None, should_stop)
        return {**res, "score": res["val_miou"]}
    if kind == "classifier":
        res = trainer.train_classifier(spec, data, cfg, None, None, should_stop)
        return {**res, "score": res["val_accuracy"]}
    raise SpecError(f"{spec.name}: a search trains classifiers and segmentation models, not {family_for(spec).noun}")
