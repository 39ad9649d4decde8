"""A saved model says what it is: its model card, ``<model>.odml.json`` beside
the ``.keras`` file and the ``odml_card`` entry of the exported ``.tflite``'s
metadata map. It holds the family and its configuration, the class labels, the
vocabulary (MobileBERT), what the input means (kind, shape, dtype, the range
pixels map onto, i.e. the normalization) and what the output is (the task).
Every path that saves a model writes one (odml train, compress, pose
training, and the library's training functions); loading reads it instead of
guessing from names or shapes.

    {"schema": 1, "family": "pqrnn", "name": "pq", "task": "classify",
     "config": {...}, "labels": ["ham", "spam"], "vocab": null,
     "input": {"kind": "projection", "shape": [64, 512], ...},
     "output": {"task": "classify", "name": "logits", "size": 2, ...}}

Cards of models trained before cards existed (``<model>.text.json``) are
read too."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from odml.errors import DataError, OdmlError
from odml.files import write_json_atomic
from odml.zoo.family import Family, InputSpec, OutputSpec

SCHEMA = 1
SUFFIX = ".odml.json"
LEGACY_SUFFIX = ".text.json"
TFLITE_ENTRY = "odml_card"  # the card's entry in a .tflite's metadata map


@dataclass
class ModelCard:
    family: Family
    config: Any
    name: str = ""
    labels: list[str] | None = None
    vocab: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> str:
        return self.output.task

    @property
    def input(self) -> InputSpec:
        return self.family.inputs(self.config, self.vocab)

    @property
    def output(self) -> OutputSpec:
        return self.family.outputs(self.config)

    @property
    def num_classes(self) -> int:
        return self.family.num_classes(self.config)

    def label_names(self) -> list[str] | None:
        """The class labels, when the output is class scores or a map of classes."""
        return list(self.labels) if self.labels and self.output.task in ("classify", "segment") else None

    def to_dict(self, with_vocab: bool = True) -> dict[str, Any]:
        d = {"schema": SCHEMA, "family": self.family.name, "name": self.name, "task": self.task,
             "config": self.family.config_to_dict(self.config), "labels": self.labels,
             "vocab": self.vocab if with_vocab else None, "input": self.input.to_dict(),
             "output": self.output.to_dict()}
        if self.extra:
            d["extra"] = self.extra
        return d

    def to_json(self, with_vocab: bool = True) -> str:
        return json.dumps(self.to_dict(with_vocab), default=str)

    @classmethod
    def from_dict(cls, d: Any, where: str = "model card") -> "ModelCard":
        from odml.zoo.registry import get_family

        if not isinstance(d, dict) or "family" not in d or "config" not in d:
            raise DataError(f"{where}: not an odml model card (no family and config)")
        try:
            family = get_family(str(d["family"]))
        except OdmlError:
            raise DataError(f"{where}: unknown model family {d['family']!r}") from None
        cfg = family.config_from_dict(dict(d["config"] or {}), where)
        labels = [str(x) for x in d["labels"]] if d.get("labels") else None
        vocab = [str(x) for x in d["vocab"]] if d.get("vocab") else None
        return cls(family, cfg, str(d.get("name") or ""), labels, vocab, dict(d.get("extra") or {}))

    # ---- beside a model file ------------------------------------------------------
    def save(self, model_path: str | Path) -> Path:
        return write_json_atomic(card_path(model_path), self.to_dict(), indent=None)

    @classmethod
    def load(cls, model_path: str | Path) -> "ModelCard | None":
        """The card saved beside ``model_path``; None when there is none."""
        path = card_path(model_path)
        legacy = _legacy_path(model_path)
        if not path.is_file() and legacy.is_file():
            return cls._load_legacy(legacy, Path(model_path))
        if not path.is_file():
            return None
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{path}: unreadable model card ({type(e).__name__}: {e})") from None
        card = cls.from_dict(d, str(path))
        card.name = card.name or _stem(model_path)
        return card

    @classmethod
    def from_tflite(cls, data: bytes, where: str = "model", metadata: dict[str, bytes] | None = None
                    ) -> "ModelCard | None":
        """The card in an exported .tflite (the ``odml_card`` entry of its
        metadata map, with the packed vocab.txt and labels.txt); None for a
        file without one. ``metadata``: the file's metadata buffers, when
        already parsed."""
        import io
        import zipfile

        if metadata is None:
            from odml.flatbuffer import parse_tflite

            metadata = parse_tflite(data, where).metadata
        raw = metadata.get(TFLITE_ENTRY)
        if not raw:
            return None
        try:
            d = json.loads(bytes(raw).decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise DataError(f"{where}: unreadable odml model card in its metadata") from None
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                names = set(z.namelist())
                if "vocab.txt" in names:
                    d["vocab"] = z.read("vocab.txt").decode("utf-8").splitlines()
                if "labels.txt" in names and not d.get("labels"):
                    d["labels"] = z.read("labels.txt").decode("utf-8").splitlines()
        except (zipfile.BadZipFile, OSError, ValueError, UnicodeDecodeError):
            pass
        return cls.from_dict(d, f"{where}: odml model card")

    @classmethod
    def _load_legacy(cls, path: Path, model_path: Path) -> "ModelCard":
        """A ``.text.json`` of a text model trained before model cards."""
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            d = {"family": d["family"], "config": d["config"], "labels": d["labels"], "vocab": d.get("vocab"),
                 "name": _stem(model_path)}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"{path}: unreadable text-model file ({type(e).__name__}: {e})") from None
        return cls.from_dict(d, str(path))


class Carded:
    """What a holder of a ``card`` (a loaded model, an export source, a
    teacher) answers from it."""

    card: Any

    @property
    def family(self) -> Family:
        return self.card.family

    @property
    def input(self) -> InputSpec:
        return self.card.input

    @property
    def output(self) -> OutputSpec:
        return self.card.output

    @property
    def num_classes(self) -> int:
        return self.card.num_classes


def _stem(p: str | Path) -> str:
    p = Path(p)
    return p.stem if p.suffix else p.name


def card_path(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name(_stem(p) + SUFFIX)


def _legacy_path(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name(_stem(p) + LEGACY_SUFFIX)
