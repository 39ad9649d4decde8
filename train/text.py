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

from odml.data.projection import distort, project_batch
from odml.data.text import TextDataset
from odml.zoo.pqrnn import PQRNNConfig


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

    z = logits - logits.max(-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    acc = float((p.argmax(-1) == y).mean())
    if len(np.unique(y)) < 2:
        return {"accuracy": acc, "auc": float("nan")}
    auc = roc_auc_score(y, p[:, 1]) if p.shape[1] == 2 else roc_auc_score(y, p, multi_class="ovr")
    return {"accuracy": acc, "auc": float(auc)}


def train_pqrnn(cfg: PQRNNConfig, data: TextDataset, tc: TextTrainConfig, out: Path | None = None) -> dict[str, Any]:
    from odml._tf import keras
    from odml.train.trainer import make_optimizer, save_model_atomic
    from odml.zoo.builder import trainable_params
    from odml.zoo.pqrnn import build_pqrnn

    K = keras()
    K.utils.set_random_seed(tc.seed)
    cfg.num_classes = data.num_classes
    model = build_pqrnn(cfg)
    steps = int(np.ceil(len(data.texts_train) / tc.batch_size))
    model.compile(optimizer=make_optimizer(tc.learning_rate, tc.weight_decay, tc.epochs, steps),
                  loss=K.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    x_val, trunc_val = project_batch(data.texts_val, cfg.max_len, cfg.features)
    x_val = x_val.astype(np.float32)
    rng = random.Random(tc.seed)
    history, trunc_train = [], 0
    t0 = time.perf_counter()
    for epoch in range(tc.epochs):
        texts = [distort(t, rng, tc.distortion) for t in data.texts_train] if tc.distortion else data.texts_train
        x, n = project_batch(texts, cfg.max_len, cfg.features)
        trunc_train = max(trunc_train, n)
        h = model.fit(x.astype(np.float32), data.y_train, batch_size=tc.batch_size, epochs=epoch + 1,
                      initial_epoch=epoch, verbose=0, shuffle=True)
        history.append({"epoch": epoch, "loss": float(h.history["loss"][-1]),
                        "accuracy": float(h.history["accuracy"][-1])})
    wall = time.perf_counter() - t0
    res = scores(model.predict(x_val, batch_size=256, verbose=0), data.y_val)
    if out is not None:
        save_model_atomic(model, out)
    return {"model": "pqrnn", "config": cfg.to_dict(), "params": trainable_params(model), "val_accuracy": res["accuracy"],
            "val_auc": res["auc"], "train_samples": len(data.texts_train), "val_samples": len(data.texts_val),
            "truncated": {"train": trunc_train, "val": trunc_val, "max_len": cfg.max_len},
            "train_wall_s": round(wall, 2), "history": history, "out": str(out) if out else None}
