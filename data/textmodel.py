"""What turns raw text into a text model's input, saved beside the model as
``<model>.text.json`` (and read by export, bench, compress and the
end-to-end helper): the family, its configuration, the class labels and, for
MobileBERT, the WordPiece vocabulary.

    pqrnn:      text -> ternary projection (max_len, features) float
    mobilebert: text -> WordPiece ids (seq_len,) int32, 0 = padding
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from odml.errors import DataError
from odml.numeric import softmax

SUFFIX = ".text.json"


@dataclass
class TextModelInfo:
    family: str  # "pqrnn" or "mobilebert"
    config: dict[str, Any]
    labels: list[str]
    vocab: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return int(self.config["max_len"] if self.family == "pqrnn" else self.config["seq_len"])

    def featurize(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """(the model's inputs for ``texts``, how many texts were cut to the maximum length)."""
        if self.family == "pqrnn":
            from odml.data.projection import project_batch

            x, cut = project_batch(list(texts), self.length, int(self.config["features"]))
            return x.astype(np.float32), cut
        from odml.data.wordpiece import WordPiece

        return WordPiece(self.vocab or [], self.length).encode(list(texts))

    def to_dict(self) -> dict[str, Any]:
        return {"schema": 1, "family": self.family, "config": self.config, "labels": self.labels,
                "vocab": self.vocab, **({"extra": self.extra} if self.extra else {})}


def sidecar(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name((p.stem if p.suffix else p.name) + SUFFIX)


def save_info(info: TextModelInfo, model_path: str | Path) -> Path:
    path = sidecar(model_path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info.to_dict()) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_info(model_path: str | Path) -> TextModelInfo | None:
    """The text information saved beside ``model_path``, or None for a model without one."""
    path = sidecar(model_path)
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        info = TextModelInfo(d["family"], dict(d["config"]), list(d["labels"]), d.get("vocab"), d.get("extra", {}))
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: unreadable text-model file ({type(e).__name__}: {e})") from None
    if info.family not in ("pqrnn", "mobilebert"):
        raise DataError(f"{path}: unknown text family {info.family!r}")
    return info


def is_text_data(data: str | None) -> bool:
    return data is not None and Path(data).suffix.lower() in (".tsv", ".csv", ".txt")


def info_from_tflite(path: str | Path, model: Any = None) -> TextModelInfo:
    """How to featurize text for an exported text model, from the .tflite
    alone: a float input (1, max_len, features) is a pQRNN projection; an
    integer input (1, seq_len) takes WordPiece ids from the vocab.txt packed
    in its metadata. Labels come from the packed labels.txt when present."""
    import io
    import zipfile

    from odml.exporters.flatbuffer import read_tflite

    model = model or read_tflite(Path(path))
    t = model.inputs[0]
    shape, dtype = list(t.shape), str(t.dtype)
    try:
        z = zipfile.ZipFile(io.BytesIO(Path(path).read_bytes()))
        names = z.namelist()
    except zipfile.BadZipFile:
        z, names = None, []
    labels = z.read("labels.txt").decode("utf-8").splitlines() if "labels.txt" in names else []
    if len(shape) == 3 and dtype.startswith("float"):
        return TextModelInfo("pqrnn", {"max_len": shape[1], "features": shape[2]}, labels)
    if len(shape) == 2 and dtype.startswith("int"):
        if "vocab.txt" not in names:
            raise DataError(f"{path}: a token-id model without a packed vocab.txt; export it with odml (metadata on)")
        vocab = z.read("vocab.txt").decode("utf-8").splitlines()
        return TextModelInfo("mobilebert", {"seq_len": shape[1]}, labels, vocab)
    raise DataError(f"{path}: input {shape} {dtype} is neither a pQRNN projection [1, T, F] float nor token ids "
                    f"[1, T] int; text data needs a text model")


class TextClassifier:
    """End to end on raw strings with an exported text model (.tflite) and the
    LiteRT interpreter: featurize (projection or WordPiece, exactly as in
    training), invoke, softmax.

        clf = TextClassifier("export/model_int8.tflite")
        clf.predict(["WINNER!! claim your prize now", "see you at 7"])
        -> [("spam", 0.97), ("ham", 0.99)]
    """

    def __init__(self, path: str | Path, threads: int = 1):
        from odml.devices.litert import load_interpreter

        self.path = Path(path)
        self.info = info_from_tflite(self.path)
        self.interp = load_interpreter(str(self.path), threads=threads)

    def probabilities(self, texts: list[str]) -> np.ndarray:
        from odml.devices.litert import run_batch

        if isinstance(texts, str):
            texts = [texts]
        x, _ = self.info.featurize(list(texts))
        return softmax(run_batch(self.interp, x))

    def predict(self, texts: list[str]) -> list[tuple[str, float]]:
        p = self.probabilities(texts)
        names = self.info.labels or [str(i) for i in range(p.shape[1])]
        return [(names[int(i)], float(row[int(i)])) for row, i in zip(p, p.argmax(-1))]
