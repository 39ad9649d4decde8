"""Students that share their parameters (``odml compress --shared``): the
students are widths of one network. The widest student's variables are the
only ones trained; a narrower student's weights are the leading slice of
each (its first channels, as in slimmable networks: Yu et al., "Slimmable
Neural Networks", ICLR 2019), and its batch-norm statistics are its own
(re-estimated from the data before export).

Two ways to train them, chosen by measurement (docs/compress.md):

- **One width per step, one graph** (the default, ``widths_per_step: 1``):
  each step trains one width, the widths taking turns (every width once
  per round, in a random order), as Once-for-All samples one sub-network
  per step (Cai et al., "Once-for-All", ICLR 2020). Every width runs in one
  traced graph: the widest network with the output channels of each layer
  beyond the width multiplied by zero (:class:`MaskedWidths`), which
  computes exactly the narrower network with the leading slices of the
  widest's weights (checked on a batch before training). A step costs one
  student's step and the run traces one graph, so three students cost
  about what one does (Learn2Compress's "3 compressed models for about 10%
  more time").
- **Several widths per step** (``widths_per_step`` 2 or more): the sandwich
  rule (Yu & Huang, "Universally Slimmable Networks and Improved Training
  Techniques", ICCV 2019): the widest, the narrowest and one other at
  random on the same batch, the narrower distilled in place from the
  widest as well as from the teacher, their gradients padded to the
  widest's shapes and summed into one optimizer step. Each width is its
  own model, its variables copied out of the widest's inside the step.
  Also the way for widths that one graph cannot compute (a narrower
  network whose rounded channels give it a residual connection the widest
  lacks, grouped convolutions, gates packed in one kernel).

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
    seen: dict[tuple, str] = {}
    for label, lay in layouts:
        key = tuple(shape for _, _, shape in lay)
        if key in seen:
            raise RecipeError(f"--shared: students {seen[key]} and {label} are the same width (every weight the same "
                              "shape): give each width once")
        seen[key] = label
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
        assign_leading(self.pairs[i])

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

    def turns(self, seed: int, start: int, count: int) -> list[list[int]]:
        """One width per step for steps ``start`` to ``start + count`` of the
        run: the widths in turn, each once per round, every round's order
        drawn from ``(seed, round)`` (so an epoch, or a resumed run, needs
        only its own rounds)."""
        n = len(self.order)
        out: list[list[int]] = []
        for r in range(start // n, -(-(start + count) // n)):
            out += self._round(np.random.default_rng([seed, r]))
        skip = start - (start // n) * n
        return out[skip:skip + count]

    def _round(self, rng: np.random.Generator) -> list[list[int]]:
        """One round of turns: every width once, in an order drawn from ``rng``."""
        return [[int(self.order[i])] for i in rng.permutation(len(self.order))]

    def groups(self, rng: np.random.Generator, steps: int, per_step: int = 3) -> list[list[int]]:
        """The widths each of ``steps`` steps trains, the widest first. One per
        step: the widths in turn, each once per round. Three per step is the
        sandwich rule: the widest, the narrowest and one
        other at random; two: the widest and one other at random; more: the
        widest, the narrowest and others at random. All of them when there
        are no more than ``per_step``."""
        wide, narrow, middle = self.order[0], self.order[-1], self.order[1:-1]
        if per_step == 1:  # the widths take turns: each once per round, in a random order
            out: list[list[int]] = []
            while len(out) < steps:
                out += self._round(rng)
            return out[:steps]
        if len(self.order) <= per_step:
            return [self.order] * steps
        if per_step == 2:
            return [[wide, int(self.order[1 + rng.integers(len(self.order) - 1)])] for _ in range(steps)]
        out = []
        for _ in range(steps):
            pick = sorted(rng.choice(len(middle), per_step - 2, replace=False))
            out.append([wide, *(int(middle[i]) for i in pick), narrow])
        return out


def graph_difference(wide: Any, narrow: Any) -> str | None:
    """Why one graph cannot compute ``narrow`` as ``wide`` with channels
    zeroed: the first layer where their graphs part (None: the same layers
    in the same order)."""
    a, b = wide.layers, narrow.layers
    for la, lb in zip(a, b):
        if type(la) is not type(lb):
            return f"{lb.name} is a {type(lb).__name__} where the widest has {la.name}, a {type(la).__name__}"
    if len(a) != len(b):
        extra = (b if len(b) > len(a) else a)[min(len(a), len(b))]
        return f"{len(b)} layers against the widest's {len(a)} (from {extra.name})"
    return None


def _channels(layer: Any) -> int | None:
    shape = layer.output_shape
    if isinstance(shape, list) or not shape or shape[-1] is None:
        return None  # several outputs (or none known): left as they are
    return int(shape[-1])


class MaskedWidths:
    """Every width in one graph: the widest model's layers called again (its
    variables, not copies) with each output whose channels differ between
    the widths multiplied by the current width's mask (ones for its leading
    channels, zeros beyond). ``width`` (a variable read inside the graph)
    says which student the graph computes: one trace serves them all."""

    def __init__(self, models: list[Any], widest: int):
        from odml._tf import keras, tf

        T, K = tf(), keras()
        self.widest = widest
        self.width = T.Variable(widest, dtype=T.int32, trainable=False, name="shared_width")
        wide = models[widest]
        tables: dict[str, np.ndarray] = {}
        for li, layer in enumerate(wide.layers):
            cw = _channels(layer)
            sizes = [_channels(m.layers[li]) for m in models]
            if cw is None or any(c is None for c in sizes) or all(c == cw for c in sizes):
                continue
            rows = np.zeros((len(models), cw), np.float32)
            for i, c in enumerate(sizes):
                rows[i, :c] = 1
            tables[layer.name] = rows
        width = self.width

        class Masked(K.layers.Layer):
            def __init__(self, inner: Any, table: np.ndarray):
                super().__init__(name=f"{inner.name}_masked")
                self.inner, self.table = inner, T.constant(table)

            def call(self, *args, **kwargs):
                return self.inner(*args, **kwargs) * T.gather(self.table, width)

        self.model = K.models.clone_model(
            wide, clone_function=lambda layer: Masked(layer, tables[layer.name]) if layer.name in tables else layer)
        self.masked_layers = len(tables)

    def check(self, models: list[Any], x: np.ndarray) -> str | None:
        """Run every narrower model, its weights the leading slices of the
        widest's, against the graph at its width on ``x``: None when they
        agree, else which width differs and by how much (its narrower
        weights are put back)."""
        for i, m in enumerate(models):
            if i == self.widest:
                continue
            saved = m.get_weights()
            try:
                assign_leading(zip(m.weights, models[self.widest].weights))  # batch-norm statistics too
                self.width.assign(i)
                want = np.asarray(m(x, training=False))
                got = np.asarray(self.model(x, training=False))
            finally:
                m.set_weights(saved)
            scale = float(np.abs(want).max())
            if not scale > 0:  # (nothing to compare: the safe way, a graph per width)
                self.width.assign(self.widest)
                return f"{m.name} gives only zeros on the check batch"
            if not np.isfinite(got).all() or float(np.abs(got - want).max()) > 1e-3 * scale:
                self.width.assign(self.widest)
                return f"{m.name}'s outputs differ from the widest's graph at its width by " \
                       f"{float(np.abs(got - want).max()) / scale:.0%}"
        self.width.assign(self.widest)
        return None


def assign_leading(pairs: Any) -> None:
    """Each (narrower variable, widest's variable) pair: the narrower :=
    the leading slice of the widest's (eagerly, or inside a step)."""
    for nv, wv in pairs:
        nv.assign(wv[tuple(slice(0, int(d)) for d in nv.shape)])
