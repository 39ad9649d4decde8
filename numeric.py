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


def resize_bilinear(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, h, w, C) -> (N, height, width, C), bilinear with half-pixel centres
    (what tf.image.resize does), in numpy."""
    n, h, w, c = x.shape

    def axis(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(dst) + 0.5) * src / dst - 0.5, 0, src - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, src - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    y0, y1, fy = axis(h, height)
    x0, x1, fx = axis(w, width)
    rows = x[:, y0] * (1 - fy)[None, :, None, None] + x[:, y1] * fy[None, :, None, None]
    return rows[:, :, x0] * (1 - fx)[None, None, :, None] + rows[:, :, x1] * fx[None, None, :, None]
