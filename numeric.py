"""Small numeric helpers shared by training, compression and the runtime
classifiers (NumPy only: safe to import anywhere)."""

from __future__ import annotations

import numpy as np


def softmax(z: np.ndarray) -> np.ndarray:
    """Probabilities from logits along the last axis, stable for large
    logits; the dtype of ``z`` is kept."""
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def classification_scores(logits: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy and ROC AUC of class scores (one-vs-rest macro average beyond
    two classes; NaN when the labels hold a single class)."""
    from sklearn.metrics import roc_auc_score

    p = softmax(np.asarray(logits))
    y = np.asarray(y)
    acc = float((p.argmax(-1) == y).mean())
    if len(np.unique(y)) < 2:
        return {"accuracy": acc, "auc": float("nan")}
    auc = roc_auc_score(y, p[:, 1]) if p.shape[1] == 2 else roc_auc_score(y, p, multi_class="ovr")
    return {"accuracy": acc, "auc": float(auc)}
