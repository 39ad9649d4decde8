"""Pruning that quantization-aware training keeps (Learn2Compress's chain:
pruning, quantization and distillation together).

tfmot's pruning wrappers and its quantization wrappers do not nest (cloning a
pruned model for QAT fails), so when a student is both pruned and trained
quantization-aware, odml trains the QAT model and holds the pruning masks
itself, with tfmot's schedule: a magnitude mask per kernel, recomputed every
``frequency`` steps between ``begin`` and ``end`` while the sparsity rises
along tfmot's PolynomialDecay (power 3) to its target, or 2:4 masks (the two
largest of every four input channels) from the first step; after every
optimizer step the masked weights are set back to zero. The fake-quantized
kernels are the masked ones, so the int8 file keeps the zeros (int8 zero is
exactly 0 under symmetric weight quantization)."""

from __future__ import annotations

from typing import Any

import numpy as np


def kernel_var(layer: Any, wrapper: Any) -> Any:
    """The kernel variable of ``layer``; inside a QAT wrapper, the one the
    wrapper holds (it sets the layer's ``kernel`` to the fake-quantized
    tensor while it runs)."""
    for entry in getattr(wrapper, "_weight_vars", None) or []:
        if entry[0].name.split("/")[-1].split(":")[0] in ("kernel", "depthwise_kernel"):
            return entry[0]
    var = getattr(layer, "depthwise_kernel", None)
    return var if var is not None else getattr(layer, "kernel", None)


def prunable_kernel(layer: Any, structure: str, wrapper: Any = None) -> Any:
    """The kernel variable a layer's mask applies to, or None: convolutions
    (depthwise ones unstructured only) and dense layers; 2:4 needs input
    channels in multiples of 4 and no groups. Read off the kernel's shape, so
    that it works on a layer inside a QAT wrapper (``wrapper``)."""
    from odml._tf import keras

    K = keras()
    if not isinstance(layer, (K.layers.Conv2D, K.layers.Dense)):
        return None
    var = kernel_var(layer, wrapper)
    if var is None or structure == "unstructured":
        return var
    if isinstance(layer, K.layers.DepthwiseConv2D):
        return None
    if isinstance(layer, K.layers.Conv2D):
        return var if layer.groups == 1 and int(var.shape[-2]) % 4 == 0 else None
    return var if int(var.shape[0]) % 4 == 0 else None


def magnitude_mask(w: np.ndarray, sparsity: float) -> np.ndarray:
    """1 for the largest |w| (a ``1 - sparsity`` share), 0 for the rest."""
    k = int(round(w.size * (1.0 - sparsity)))
    if k >= w.size:
        return np.ones_like(w)
    if k <= 0:
        return np.zeros_like(w)
    thresh = np.partition(np.abs(w).ravel(), w.size - k)[w.size - k]
    return (np.abs(w) >= thresh).astype(w.dtype)


def two_of_four_mask(w: np.ndarray) -> np.ndarray:
    """The two largest |w| of every four consecutive input channels (the
    second-to-last axis of a convolution kernel, the first of a dense one)."""
    axis = w.ndim - 2 if w.ndim == 4 else 0
    a = np.moveaxis(np.abs(w), axis, -1)
    g = a.reshape(*a.shape[:-1], a.shape[-1] // 4, 4)
    keep = np.argsort(g, axis=-1)[..., 2:]
    m = np.zeros_like(g)
    np.put_along_axis(m, keep, 1.0, axis=-1)
    return np.moveaxis(m.reshape(a.shape), -1, axis).astype(w.dtype)


class HeldMasks:
    """The masks of one (QAT-wrapped) student."""

    def __init__(self, model: Any, prune: Any, total_steps: int):
        from odml._tf import tf

        T = tf()
        self.prune = prune
        self.begin = int(prune.begin * total_steps)
        self.end = max(int(prune.end * total_steps), self.begin + 1)
        self.pairs = []
        for layer in model.layers:
            inner = getattr(layer, "layer", layer)
            var = prunable_kernel(inner, prune.structure, layer if inner is not layer else None)
            if var is not None:
                self.pairs.append((inner.name, var, T.Variable(T.ones_like(var), trainable=False)))

    def sparsity_at(self, step: int) -> float:
        """tfmot's PolynomialDecay from 0 to the target, power 3."""
        p = min(max((step - self.begin) / (self.end - self.begin), 0.0), 1.0)
        return float(self.prune.sparsity * (1.0 - (1.0 - p) ** 3))

    def due(self, step: int) -> bool:
        if self.prune.structure == "2:4":
            return step % self.prune.frequency == 0
        return self.begin <= step <= self.end and ((step - self.begin) % self.prune.frequency == 0 or step == self.end)

    def update(self, step: int) -> None:
        """New masks from the weights' magnitudes (eager, between steps)."""
        if not self.due(step):
            return
        s = self.sparsity_at(step)
        for _, var, mask in self.pairs:
            w = var.numpy()
            m = two_of_four_mask(w) if self.prune.structure == "2:4" else magnitude_mask(w, s)
            mask.assign(m)
            var.assign(w * m)

    def resume(self) -> None:
        """Masks from the restored weights (a masked weight is exactly 0)."""
        for _, var, mask in self.pairs:
            mask.assign((var.numpy() != 0).astype(np.float32))

    def apply(self) -> None:
        """The masked weights back to zero (inside the training step)."""
        for _, var, mask in self.pairs:
            var.assign(var * mask)
