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
