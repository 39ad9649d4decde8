"""Text classification data: a TSV or CSV file with a label column and a text
column (for example ../shared/data/sms_spam), header detected, columns chosen
by name or index, split 80/20 (stratified, fixed seed) like the images.

Bad input gets one line that names the file and the line: bytes that are not
UTF-8, a line with the wrong number of columns, a label column with a single
class. Empty texts are dropped and counted in the notes."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from odml.data.images import epoch_order, sample_indices, stratified_split
from odml.errors import DataError


@dataclass
class TextDataset:
    texts_train: list[str]
    y_train: np.ndarray
    texts_val: list[str]
    y_val: np.ndarray
    classes: list[str]
    source: str
    notes: list[str] = field(default_factory=list)
    split: str = ""  # which texts validate: a stratified fraction, another file, all

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def summary(self) -> dict[str, Any]:
        return {"source": self.source, "classes": self.classes, "train": len(self.texts_train),
                "val": len(self.texts_val), "split": self.split, "notes": self.notes}


def _column(spec: str | int | None, header: list[str] | None, default: int, what: str, where: str, ncols: int) -> int:
    if spec is None:
        return default
    if isinstance(spec, int) or str(spec).lstrip("-").isdigit():
        i = int(spec)
        if not 0 <= i < ncols:
            raise DataError(f"{where}: {what} column {i} does not exist (the file has {ncols} columns, 0-based)")
        return i
    if header is None:
        raise DataError(f"{where}: {what} column {spec!r} given by name, but the file has no header line")
    lowered = [h.strip().lower() for h in header]
    if str(spec).lower() not in lowered:
        raise DataError(f"{where}: no {what} column {spec!r} (columns: {', '.join(header)})")
    return lowered.index(str(spec).lower())


def load_text(path: str | Path, label_col: str | int | None = None, text_col: str | int | None = None,
              header: bool | None = None, val_fraction: float = 0.2, seed: int = 0, val_data: str | None = None,
              split: str = "val") -> TextDataset:
    """Read a TSV (``.tsv``, ``.txt``) or CSV (``.csv``) file of labelled
    texts. Validation: a stratified ``val_fraction`` (fixed by ``seed``), or
    every text of ``val_data`` (the same columns; the same classes), or with
    ``split="all"`` every text of ``path``."""
    texts, labels, notes, classes = _read_text(path, label_col, text_col, header)
    index = {c: k for k, c in enumerate(classes)}
    y = np.array([index[c] for c in labels], dtype=np.int64)
    if val_data is not None:
        if not is_text_file(val_data):
            raise DataError(f"--val-data {val_data}: validation texts must be a .tsv, .csv or .txt file like {path}")
        vt, vl, vnotes, vclasses = _read_text(val_data, label_col, text_col, header)
        if vclasses != classes:
            raise DataError(f"{val_data}: classes {vclasses} differ from {path}'s {classes} (the validation data must "
                            "have the same classes)")
        yv = np.array([index[c] for c in vl], dtype=np.int64)
        return TextDataset(texts, y, vt, yv, classes, str(path), notes + vnotes,
                           f"train: all of {path}; validation: all of {val_data}")
    if split == "all":
        return TextDataset(texts, y, texts, y, classes, str(path), notes, f"all of {path} ({len(texts)} texts)")
    if split != "val":
        raise DataError(f"--split {split!r}: expected val or all")
    tr, va = stratified_split(y, val_fraction, seed)
    return TextDataset(texts_train=[texts[i] for i in tr], y_train=y[tr], texts_val=[texts[i] for i in va],
                       y_val=y[va], classes=classes, source=str(path), notes=notes,
                       split=f"stratified {1 - val_fraction:.0%}/{val_fraction:.0%} of {path} (seed {seed})")


MAX_TEXT_CHARS = 100_000  # a text is cut here on reading: no text model reads more than a few thousand characters


def _read_text(path: str | Path, label_col: Any, text_col: Any, header: bool | None
               ) -> tuple[list[str], list[str], list[str], list[str]]:
    """(texts, their labels, notes, the classes in sorted order) of one file."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: text data file not found")
    raw = p.read_bytes()
    lines = raw.split(b"\n")
    for i, line in enumerate(lines, 1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{p}: line {i}: bytes that are not UTF-8 (byte {e.start + 1}: "
                            f"{line[e.start:e.start + 1]!r}); convert the file to UTF-8") from None
    text = raw.decode("utf-8-sig")
    if p.suffix.lower() == ".csv":
        csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))  # one long text is still a text
        rows = list(csv.reader(text.splitlines()))
    else:  # TSV: tabs separate, quotes are text (SMS messages are full of them)
        rows = [ln.split("\t") for ln in text.splitlines()]
    numbered = [(i, r) for i, r in enumerate(rows, 1) if any(c.strip() for c in r)]
    if not numbered:
        raise DataError(f"{p}: no labelled texts (the file is empty or only whitespace)")
    blank = sum(1 for r in rows if not any(c.strip() for c in r)) - (1 if rows and not rows[-1] else 0)
    ncols = len(numbered[0][1])
    if ncols < 2:
        raise DataError(f"{p}: line {numbered[0][0]}: 1 column; expected a label and a text column "
                        f"({'tab' if p.suffix.lower() != '.csv' else 'comma'}-separated)")
    for i, r in numbered:
        if len(r) != ncols:
            raise DataError(f"{p}: line {i}: {len(r)} columns, expected {ncols} as on line {numbered[0][0]}")
    first = numbered[0][1]
    probe_label = _column(label_col if isinstance(label_col, int) or str(label_col or "").isdigit() else None,
                          None, 0, "label", str(p), ncols)
    by_name = any(c is not None and not isinstance(c, int) and not str(c).lstrip("-").isdigit()
                  for c in (label_col, text_col))
    if header is None and by_name:
        header = True
    if header is None:  # a header's label cell names the column: it is no label of any other line
        rest = {r[probe_label].strip() for _, r in numbered[1:]}
        header = first[probe_label].strip() not in rest and len(rest) <= max(2, len(numbered) // 2)
    head = first if header else None
    body = numbered[1:] if header else numbered
    li = _column(label_col, head, 0, "label", str(p), ncols)
    ti = _column(text_col, head, 1 if li == 0 else 0, "text", str(p), ncols)
    labels, texts, empty, long = [], [], 0, []
    for i, r in body:
        t = r[ti].strip()
        if not t:
            empty += 1
            continue
        if len(t) > MAX_TEXT_CHARS:
            long.append(i)
            t = t[:MAX_TEXT_CHARS]
        labels.append(r[li].strip())
        texts.append(t)
    notes = []
    if blank > 0:
        notes.append(f"{blank} blank lines skipped")
    if empty:
        notes.append(f"{empty} empty texts dropped")
    if long:
        where = ", ".join(str(i) for i in long[:5]) + (" ..." if len(long) > 5 else "")
        notes.append(f"{len(long)} texts longer than {MAX_TEXT_CHARS:,} characters cut to their first "
                     f"{MAX_TEXT_CHARS:,} (line {where}; no model reads that far)")
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise DataError(f"{p}: the label column has a single class ({classes[0] if classes else 'none'}); "
                        "a classifier needs two or more")
    return texts, labels, notes, classes


TEXT_SUFFIXES = (".tsv", ".csv", ".txt")


def is_text_file(data: str | None) -> bool:
    """Whether ``data`` names a file of labelled texts (the readers of this
    module take .tsv, .csv and .txt)."""
    return data is not None and Path(data).suffix.lower() in TEXT_SUFFIXES


def require_text_file(data: str, model: str) -> None:
    """The one-line error for a text model given data that is not text."""
    if not is_text_file(data):
        raise DataError(f"--data {data}: {model} is a text model; it trains on a .tsv, .csv or .txt file of labelled "
                        "texts (text data needs a text model, and a text model text data)")


@dataclass
class FeaturizedText:
    """A text dataset that a family's featurizer (``featurize(texts) ->
    (inputs, texts cut)``) turns into model inputs batch by batch, so that
    nothing proportional to the corpus is held but the texts: ``batches``
    and ``epoch_dataset`` stream them (the training texts distorted afresh
    each epoch, the same for a seed and epoch, so a resumed run sees what it
    would have seen), ``sample`` gives a few (calibration, parity).
    ``x_train`` / ``x_val`` featurize a whole split at once, for small data."""

    texts_train: list[str]
    y_train: np.ndarray
    texts_val: list[str]
    y_val: np.ndarray
    class_names: list[str]
    source: str
    notes: list[str]
    featurize: Any
    max_len: int
    split: str = ""
    cut: dict[str, int] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _split(self, split: str) -> tuple[list[str], np.ndarray]:
        if split == "train":
            return self.texts_train, self.y_train
        if split == "val":
            return self.texts_val, self.y_val
        raise ValueError(f"split {split!r}")

    def count(self, split: str) -> int:
        return len(self._split(split)[0])

    @property
    def x_train(self) -> Any:
        return self.featurize(self.texts_train)[0]

    @property
    def x_val(self) -> Any:
        return self.featurize(self.texts_val)[0]

    def sample(self, split: str, n: int | None = None, seed: int | None = None) -> tuple[Any, np.ndarray]:
        """(inputs, labels) of ``n`` texts of ``split``: the first ones, or
        ``n`` chosen by ``seed``."""
        texts, y = self._split(split)
        idx = sample_indices(len(texts), n, seed)
        return self.featurize([texts[i] for i in idx])[0], y[idx]

    def _epoch_texts(self, epoch: int, seed: int, distortion: float) -> list[str]:
        if not distortion:
            return self.texts_train
        import random

        from odml.data.projection import distort

        rng = random.Random(seed * 100_003 + epoch)
        return [distort(t, rng, distortion) for t in self.texts_train]

    def batches(self, split: str, batch: int, epoch: int = 0, seed: int = 0, shuffle: bool = False,
                distortion: float = 0.0, full: bool = False) -> Iterator[tuple[Any, np.ndarray]]:
        """(inputs, labels) batch by batch: ``split`` in order, or shuffled
        (and, for training, distorted) for ``epoch``; with ``full``, whole
        batches only (the few texts left over are others every epoch). Texts
        longer than the model's length are counted in ``cut[split]``."""
        texts, y = self._split(split)
        if split == "train" and distortion:
            texts = self._epoch_texts(epoch, seed, distortion)
        order = epoch_order(len(texts), epoch, seed, shuffle)
        if full:
            order = order[:max(1, len(order) // batch) * batch]
        cut = 0
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            x, c = self.featurize([texts[j] for j in idx])
            cut += c
            yield x, y[idx]
        self.cut[split] = max(self.cut.get(split, 0), cut)

    def epoch_dataset(self, epoch: int, batch: int, seed: int, distortion: float = 0.0, full: bool = False) -> Any:
        """The training batches of ``epoch`` as a tf.data pipeline fed by
        :meth:`batches` (featurized while the model trains on the batch
        before); ``full``: whole batches only (one shape for XLA)."""
        from odml._tf import tf

        T = tf()
        x0, _ = self.featurize(self.texts_train[:1])
        spec = (T.TensorSpec((None, *x0.shape[1:]), T.as_dtype(x0.dtype)), T.TensorSpec((None,), T.int64))
        ds = T.data.Dataset.from_generator(lambda: ((x, y.astype(np.int64)) for x, y in self.batches(
            "train", batch, epoch, seed, True, distortion, full)), output_signature=spec)
        return ds.prefetch(2)

    def train_inputs(self, epoch: int, seed: int, distortion: float) -> Any:
        """All training inputs of ``epoch`` at once (small data; streaming code uses epoch_dataset)."""
        if not distortion:
            return self.x_train
        return self.featurize(self._epoch_texts(epoch, seed, distortion))[0]

    def summary(self) -> dict[str, Any]:
        return {"source": self.source, "classes": self.class_names, "train": len(self.texts_train),
                "val": len(self.texts_val), "split": self.split, "notes": self.notes}


def featurized(ds: TextDataset, featurize: Any, max_len: int) -> FeaturizedText:
    """``ds`` with its texts turned into model inputs by ``featurize``, batch
    by batch when they are used; one pass now (holding nothing) counts the
    texts longer than ``max_len`` tokens, for the notes."""
    data = FeaturizedText(list(ds.texts_train), ds.y_train, list(ds.texts_val), ds.y_val, list(ds.classes), ds.source,
                          list(ds.notes), featurize, max_len, ds.split)
    for split in ("train", "val"):
        for _ in data.batches(split, 2048):
            pass
    cut = data.cut.get("train", 0) + data.cut.get("val", 0)
    if cut:
        data.notes.append(f"{cut} texts longer than the model's {max_len} tokens were cut")
    data.cut["max_len"] = max_len
    return data
