"""A .tflite classifier on a dataset: accuracy (and what its family scores
beyond it, such as ROC AUC for text), per-input latency, the OVIC scores;
and ``TextClassifier``, an exported text model end to end on raw strings.

What the file is comes from the model card packed in its metadata (every
file odml exports carries one); a file without one is read as an image
classifier (pixels in [0, 1]) when its input is an image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from odml.errors import DataError
from odml.numeric import softmax


def tflite_card(path: str | Path, info: Any = None) -> Any:
    """The model card of an exported file: packed in its metadata, or read
    off its tensors for a file odml did not export (an image classifier)."""
    from odml.flatbuffer import read_tflite
    from odml.zoo.card import ModelCard
    from odml.zoo.load import foreign_card

    p = Path(path)
    info = info or read_tflite(p)
    card = ModelCard.from_tflite(p.read_bytes(), str(p), info.metadata)
    if card is not None:
        return card
    t, o = info.inputs[0], info.outputs[0]
    card = foreign_card(tuple(t.shape[1:]), tuple(o.shape[1:]), "float32", p.stem)  # int8 inputs are quantized floats
    if card.input.kind != "image":
        raise DataError(f"{p}: input {list(t.shape)} {t.dtype} and no odml model card in its metadata; --data scores "
                        "image classifiers, and models exported by odml (their metadata says what the input is)")
    return card


def classify_dataset(model: str | Path, data: str, device: Any, opts: Any, ovic: bool = False,
                     limit_ms: float = 33.0, k: float | None = None, a0: float | None = None,
                     seed: int = 0, split: str = "val", latency_ms: float | None = None,
                     latency_from: str | None = None) -> dict[str, Any]:
    """Classify the validation split of ``data`` (``split="all"``: all of it)
    with ``model`` on ``device`` (host or Edge TPU): accuracy and the family's
    other scores, per-input latency, and the OVIC scores when asked.
    ``latency_ms``: every input's latency is this figure (``latency_from``
    says whose: a phone's, which reports a summary, not each run), the
    predictions still the host's."""
    from dataclasses import replace

    from odml.devices.host import read_tflite_checked
    from odml.devices.ovic import ovic_2018, ovic_frontier
    from odml.devices.stats import latency_stats

    info = read_tflite_checked(model)
    card = tflite_card(model, info)
    if card.output.task == "segment":
        return _segment_dataset(model, card, data, device, opts, seed, split, latency_ms, latency_from)
    if card.output.task != "classify":
        raise DataError(f"{model}: --data scores classifiers and segmentation models; this is {card.family.noun}")
    n_out = int(np.prod(info.outputs[0].shape[1:]))
    ds = card.family.read(card, data, 0.2, seed, split=split)
    if ds.num_classes != n_out:
        raise DataError(f"{data}: {ds.num_classes} classes in the data but {model} has {n_out} outputs")
    o = replace(opts, threads=1) if ovic else opts
    run: dict[str, list] = {"latencies_ms": [], "predictions": [], "outputs": []}
    for x, _ in ds.batches("val", 4096):  # a text corpus is featurized chunk by chunk, never held whole
        r = device.classify(model, card.input.from_pixels(x), o)
        for key in run:
            run[key].extend(r[key])
    y = np.asarray(ds.y_val)
    if latency_ms is not None:
        run["latencies_ms"] = [float(latency_ms)] * len(run["predictions"])
    correct = [p == t for p, t in zip(run["predictions"], y.tolist())]
    scores = card.family.score(np.asarray(run["outputs"], dtype=np.float64), y)
    res: dict[str, Any] = {"data": data, "split": ds.split, "images": len(correct),
                           "accuracy": sum(correct) / len(correct),
                           **{k_: v for k_, v in scores.items() if k_ != "accuracy"},
                           "mean_latency_ms": float(np.mean(run["latencies_ms"])),
                           "per_image": latency_stats(np.asarray(run["latencies_ms"]) / 1e3)}
    if latency_ms is not None:
        res["latency_from"] = latency_from
    if card.input.text:
        res["texts"] = len(correct)
        res["truncated"] = int(ds.cut.get("val", 0))
    if ovic:
        res["ovic"] = ovic_2018(run["latencies_ms"], correct, limit_ms)
        if k is not None:
            o = res["ovic"]
            res["frontier"] = ovic_frontier(o["accuracy"], o["mean_latency_ms"], k, a0)
    elif k is not None:
        res["frontier"] = ovic_frontier(res["accuracy"], res["mean_latency_ms"], k, a0)
    return res


def _segment_dataset(model: Any, card: Any, data: str, device: Any, opts: Any, seed: int, split: str,
                     latency_ms: float | None = None, latency_from: str | None = None) -> dict[str, Any]:
    """A segmentation model on the validation split of ``data``: mIoU, pixel
    accuracy and per-class IoU (the family's score), per-image latency
    (``latency_ms``: a phone's per-inference figure for every image)."""
    from odml.devices.stats import latency_stats

    ds = card.family.read(card, data, 0.2, seed, split=split, classes=card.output.size)
    if ds.num_classes != card.output.size:
        raise DataError(f"{data}: {ds.num_classes} classes in the data but {model} has {card.output.size}")
    lat: list[float] = []
    maps: list[Any] = []
    for x, _ in ds.batches("val", 256):
        r = device.classify(model, card.input.from_pixels(x), opts)
        lat.extend(r["latencies_ms"])
        maps.extend(r["outputs"])
    y = np.asarray(ds.y_val)
    scores = card.family.score(np.stack(maps), y)
    if latency_ms is not None:
        lat = [float(latency_ms)] * len(lat)
    res = {"data": data, "split": ds.split, "images": len(y), "accuracy": scores["accuracy"],
           "miou": scores["miou"], "iou": scores["iou"], "class_names": list(ds.class_names),
           "mean_latency_ms": float(np.mean(lat)), "per_image": latency_stats(np.asarray(lat) / 1e3)}
    if latency_ms is not None:
        res["latency_from"] = latency_from
    return res


class TextClassifier:
    """End to end on raw strings with an exported text model (.tflite) and the
    LiteRT interpreter: featurize exactly as in training (the card packed in
    the file says how: a pQRNN projection, or WordPiece with the packed
    vocab.txt), invoke, softmax.

        clf = TextClassifier("export/model_int8.tflite")
        clf.predict(["WINNER!! claim your prize now", "see you at 7"])
        -> [("spam", 0.97), ("ham", 0.99)]
    """

    def __init__(self, path: str | Path, threads: int = 1):
        from odml.litert import load_interpreter

        self.path = Path(path)
        self.card = tflite_card(self.path)
        if not self.card.input.text:
            raise DataError(f"{self.path}: not a text model (its input is {self.card.input.describe()})")
        self.featurize = self.card.family.featurizer(self.card)
        self.interp = load_interpreter(str(self.path), threads=threads)

    def probabilities(self, texts: list[str]) -> np.ndarray:
        from odml.litert import run_batch

        if isinstance(texts, str):
            texts = [texts]
        x, _ = self.featurize(list(texts))
        return softmax(run_batch(self.interp, x))

    def predict(self, texts: list[str]) -> list[tuple[str, float]]:
        p = self.probabilities(texts)
        names = self.card.labels or [str(i) for i in range(p.shape[1])]
        return [(names[int(i)], float(row[int(i)])) for row, i in zip(p, p.argmax(-1))]
