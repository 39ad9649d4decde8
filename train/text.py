"""Training pQRNN on a text dataset: texts projected (and, in training,
distorted afresh every epoch), AdamW with warm-up and cosine decay, accuracy
and ROC AUC on the validation split."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from odml.data.projection import distort
from odml.data.text import TextDataset
from odml.numeric import softmax
from odml.zoo.textconfig import MobileBertConfig, PQRNNConfig


@dataclass
class TextTrainConfig:
    epochs: int = 5
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-5
    distortion: float = 0.25  # probability that a token is distorted in training (0: off)
    seed: int = 0


def scores(logits: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy and ROC AUC (one-vs-rest macro average beyond two classes)."""
    from sklearn.metrics import roc_auc_score

    p = softmax(logits)
    acc = float((p.argmax(-1) == y).mean())
    if len(np.unique(y)) < 2:
        return {"accuracy": acc, "auc": float("nan")}
    auc = roc_auc_score(y, p[:, 1]) if p.shape[1] == 2 else roc_auc_score(y, p, multi_class="ovr")
    return {"accuracy": acc, "auc": float(auc)}


def build_text_model(cfg: PQRNNConfig | MobileBertConfig, name: str):
    if isinstance(cfg, PQRNNConfig):
        from odml.zoo.pqrnn import build_pqrnn

        return build_pqrnn(cfg, name=name)
    from odml.zoo.mobilebert import build_mobilebert

    return build_mobilebert(cfg, name=name)


def train_text(name: str, cfg: PQRNNConfig | MobileBertConfig, data: TextDataset, tc: TextTrainConfig,
               out: Path | None = None, vocab: list[str] | None = None, progress: Any = None) -> dict[str, Any]:
    """Train text model ``name`` (pqrnn*, mobilebert*) on ``data``; save it and
    its ``.text.json`` beside it when ``out`` is given. pQRNN texts are
    distorted afresh every epoch (tc.distortion); MobileBERT needs ``vocab``."""
    from odml._tf import keras
    from odml.data.textmodel import TextModelInfo, save_info
    from odml.train.trainer import make_optimizer, save_model_atomic
    from odml.zoo.builder import trainable_params

    K = keras()
    K.utils.set_random_seed(tc.seed)
    cfg.num_classes = data.num_classes
    cfg.validate()
    family = "pqrnn" if isinstance(cfg, PQRNNConfig) else "mobilebert"
    info = TextModelInfo(family, cfg.to_dict(), list(data.classes), vocab if family == "mobilebert" else None)
    if family == "mobilebert" and not vocab:
        raise ValueError("MobileBERT needs a vocabulary")
    model = build_text_model(cfg, name)
    steps = int(np.ceil(len(data.texts_train) / tc.batch_size))
    model.compile(optimizer=make_optimizer(tc.learning_rate, tc.weight_decay, tc.epochs, steps),
                  loss=K.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    x_val, trunc_val = info.featurize(data.texts_val)
    fixed = None if family == "pqrnn" else info.featurize(data.texts_train)
    rng = random.Random(tc.seed)
    history, trunc_train = [], 0
    t0 = time.perf_counter()
    cbs = []
    if progress is not None:
        from odml.train.trainer import _keras_callback

        cbs.append(_keras_callback(K, progress))
        progress.start(tc.epochs, steps)
    for epoch in range(tc.epochs):
        if fixed is None:
            texts = [distort(t, rng, tc.distortion) for t in data.texts_train] if tc.distortion else data.texts_train
            x, n = info.featurize(texts)
        else:
            x, n = fixed
        trunc_train = max(trunc_train, n)
        h = model.fit(x, data.y_train, batch_size=tc.batch_size, epochs=epoch + 1, initial_epoch=epoch, verbose=0,
                      shuffle=True, callbacks=cbs)
        history.append({"epoch": epoch, "loss": float(h.history["loss"][-1]),
                        "accuracy": float(h.history["accuracy"][-1])})
    wall = time.perf_counter() - t0
    if progress is not None:
        progress.stop()
    res = scores(model.predict(x_val, batch_size=256, verbose=0), data.y_val)
    if out is not None:
        save_model_atomic(model, out)
        save_info(info, out)
    return {"model": name, "family": family, "config": cfg.to_dict(), "params": trainable_params(model),
            "val_accuracy": res["accuracy"], "val_auc": res["auc"], "train_samples": len(data.texts_train),
            "val_samples": len(data.texts_val), "classes": data.num_classes,
            "truncated": {"train": trunc_train, "val": trunc_val, "max_len": info.length},
            "train_wall_s": round(wall, 2), "history": history, "out": str(out) if out else None}


def train_pqrnn(cfg: PQRNNConfig, data: TextDataset, tc: TextTrainConfig, out: Path | None = None) -> dict[str, Any]:
    return train_text("pqrnn", cfg, data, tc, out)
