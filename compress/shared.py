"""Students that share their parameters (``odml compress --shared``): the
students are widths of one network. The widest student's variables are the
only ones trained; a narrower student's weights are the leading slice of
each (its first channels, as in slimmable networks: Yu et al., "Slimmable
Neural Networks", ICLR 2019), and its batch-norm statistics are its own
(switchable batch norm). Every step trains the widest, the narrowest and a
random other width on the same batch (the sandwich rule), the narrower ones
distilled in place from the widest as well as from the teacher (Yu & Huang,
"Universally Slimmable Networks and Improved Training Techniques", ICCV
2019; Once-for-All, Cai et al. 2020, trains its elastic widths the same
way). Their gradients, padded to the widest's shapes, are summed into one
optimizer step. At the end each width is copied out as its own model,
fine-tuned briefly apart (compress/distill.py) and exported.

Generic over families: students qualify when they are the same layers in
the same order, each weight no larger than the widest's along any axis."""

from __future__ import annotations

from typing import Any

import numpy as np

from odml.compress.recipe import RecipeError


def _layout(model: Any) -> list[tuple[str, str, tuple[int, ...]]]:
    """(layer class, weight path, shape) of each trainable weight, in order."""
    out = []
    for layer in model.layers:
        for w in layer.trainable_weights:
            out.append((type(layer).__name__, w.name.split(":")[0], tuple(int(d) for d in w.shape)))
    return out


def check_widths(models: list[tuple[str, Any]]) -> int:
    """Raise RecipeError unless the (label, built model) pairs are widths of
    one network; return the index of the widest."""
    if len(models) < 2:
        raise RecipeError("--shared: needs at least two students (widths of one network to train together)")
    layouts = [(label, _layout(m)) for label, m in models]
    sizes = [sum(int(np.prod(s)) for _, _, s in lay) for _, lay in layouts]
    wi = int(np.argmax(sizes))
    wl, wide = layouts[wi]
    for label, lay in layouts:
        if len(lay) != len(wide):
            raise RecipeError(f"--shared: students {wl} and {label} are not widths of one network: {len(wide)} "
                              f"against {len(lay)} trainable weights (a different depth or family); give students "
                              "of one family that differ in width only")
        for (c1, n1, s1), (c2, n2, s2) in zip(wide, lay):
            if c1 != c2 or len(s1) != len(s2):
                raise RecipeError(f"--shared: students {wl} and {label} are not widths of one network: {n1} is a "
                                  f"{c1} in one and {n2} a {c2} in the other")
            if any(a < b for a, b in zip(s1, s2)):
                raise RecipeError(f"--shared: student {label}'s {n2} {list(s2)} is wider than {wl}'s {list(s1)} "
                                  "along some axis: each width must fit inside the widest")
    return wi


class SharedWidths:
    """The students' trainable variables tied to the widest's."""

    def __init__(self, models: list[Any], widest: int):
        self.widest = widest
        wide = models[widest].trainable_variables
        self.wide_vars = list(wide)
        # per model: (its variable, the widest's variable) pairs; none for the widest itself
        self.pairs = [[] if i == widest else list(zip(m.trainable_variables, wide)) for i, m in enumerate(models)]
        order = sorted(range(len(models)), key=lambda i: -sum(int(np.prod(v.shape)) for v in models[i].trainable_variables))
        self.order = order  # widest first, narrowest last

    def load(self, i: int) -> None:
        """Model ``i``'s variables := the leading slices of the widest's."""
        for nv, wv in self.pairs[i]:
            nv.assign(wv[tuple(slice(0, int(d)) for d in nv.shape)])

    def add(self, acc: list[Any] | None, i: int, grads: list[Any]) -> list[Any]:
        """``acc`` (gradients of the widest's variables) plus model ``i``'s,
        each padded with zeros to the widest's shape."""
        from odml._tf import tf

        T = tf()
        if i == self.widest:
            padded = [T.zeros_like(wv) if g is None else T.convert_to_tensor(g) for g, wv in zip(grads, self.wide_vars)]
        else:
            padded = []
            for g, (nv, wv) in zip(grads, self.pairs[i]):
                if g is None:
                    padded.append(T.zeros_like(wv))
                else:
                    pad = [[0, int(w) - int(n)] for n, w in zip(nv.shape, wv.shape)]
                    padded.append(T.pad(T.convert_to_tensor(g), pad))
        return padded if acc is None else [a + p for a, p in zip(acc, padded)]

    def groups(self, rng: np.random.Generator, steps: int, per_step: int = 3) -> list[list[int]]:
        """The widths each of ``steps`` steps trains, the widest first. Three
        per step is the sandwich rule: the widest, the narrowest and one
        other at random; two: the widest and one other at random; more: the
        widest, the narrowest and others at random. All of them when there
        are no more than ``per_step``."""
        wide, narrow, middle = self.order[0], self.order[-1], self.order[1:-1]
        if len(self.order) <= per_step:
            return [self.order] * steps
        if per_step == 2:
            return [[wide, int(self.order[1 + rng.integers(len(self.order) - 1)])] for _ in range(steps)]
        out = []
        for _ in range(steps):
            pick = sorted(rng.choice(len(middle), per_step - 2, replace=False))
            out.append([wide, *(int(middle[i]) for i in pick), narrow])
        return out
