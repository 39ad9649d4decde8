"""Several students trained in one run: one data pipeline, one teacher
forward pass per batch, each student's loss the hard-label cross-entropy
plus the distillation term (Hinton et al.: T^2 KL between the softened
teacher and student distributions). The teacher is fixed, or (joint)
trained on the labels in the same step. Pruning (tfmot, polynomial decay)
and quantization-aware training wrap the students before training.
A checkpoint after every epoch lets an interrupted run continue."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from odml import interrupts
from odml.compress.recipe import Recipe, RecipeError
from odml.files import write_text_atomic
from odml.train.distribute import replica_mean_grads, run_split


@dataclass
class Student:
    label: str
    spec: Any
    model: Any = None  # what trains (wrapped for pruning / QAT)
    optimizer: Any = None
    history: list[dict[str, float]] = field(default_factory=list)
    masks: Any = None  # pruned and trained quantization-aware: the masks held by odml (compress/masks.py)


def _prunable(layer, K, structure: str) -> bool:
    if hasattr(layer, "get_prunable_weights"):  # odml's own layers that say what to prune (the QRNN gates)
        return structure == "unstructured"
    if isinstance(layer, K.layers.DepthwiseConv2D):
        return structure == "unstructured"
    if isinstance(layer, K.layers.Conv2D):
        if structure == "unstructured":
            return True  # grouped convolutions too: the mask is over the kernel as stored
        return layer.groups == 1 and int(layer.input_shape[-1]) % 4 == 0
    if isinstance(layer, K.layers.Dense):
        return structure == "unstructured" or int(layer.input_shape[-1]) % 4 == 0
    return False


@dataclass(frozen=True)
class Pixels:
    """Students that segment: labels are masks at the input size, logits at
    the model's stride, resized bilinearly to the masks for the loss and the
    accuracy (as odml trains segmentation models, train/segment.py);
    ``ignore_label`` pixels count in neither. The teacher's per-pixel
    distribution is resized to each student's logits for the soft loss."""

    ignore_label: int = 255

    def loss(self, y: Any, logits: Any) -> Any:
        from odml.train.segment import seg_loss

        return seg_loss(self.ignore_label)(y, logits)

    def accuracy(self, y: Any, logits: Any) -> Any:
        from odml._tf import tf

        T = tf()
        y = T.cast(y, T.int32)
        pred = T.argmax(T.image.resize(logits, T.shape(y)[1:3], method="bilinear"), -1, output_type=T.int32)
        valid = T.cast(T.not_equal(y, self.ignore_label), T.float32)
        return T.reduce_sum(T.cast(T.equal(pred, y), T.float32) * valid) / T.maximum(T.reduce_sum(valid), 1.0)


def wrap_for_pruning(model: Any, recipe: Recipe, total_steps: int) -> Any:
    """Wrap every prunable layer (convolutions and dense layers; 2:4 only where
    the input channels allow it) with tfmot's prune_low_magnitude."""
    import tensorflow_model_optimization as tfmot

    from odml._tf import keras

    K = keras()
    p = recipe.prune
    begin, end = int(p.begin * total_steps), max(int(p.end * total_steps), int(p.begin * total_steps) + 1)
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, p.sparsity, begin, end, power=3, frequency=p.frequency)
    kwargs: dict[str, Any] = {"pruning_schedule": schedule}
    if p.structure == "2:4":
        kwargs = {"sparsity_m_by_n": (2, 4)}  # fixed 2-of-4 masks from the start

    def clone(layer):
        if _prunable(layer, K, p.structure):
            return tfmot.sparsity.keras.prune_low_magnitude(layer.__class__.from_config(layer.get_config()), **kwargs)
        return layer.__class__.from_config(layer.get_config())

    with tfmot.sparsity.keras.prune_scope():
        wrapped = K.models.clone_model(model, clone_function=clone)
    for layer, target in zip(model.layers, wrapped.layers):  # same order; a pre-trained student keeps its weights
        inner = getattr(target, "layer", target)
        if layer.weights:
            inner.set_weights(layer.get_weights())
    return wrapped


def wrap_for_qat(model: Any, label: str) -> Any:
    """tfmot's quantization-aware model (fake-quant of weights and activations)."""
    import tensorflow_model_optimization as tfmot

    import re

    try:
        return tfmot.quantization.keras.quantize_model(model)
    except Exception as e:  # layers tfmot cannot quantize (custom ones, grouped convolutions, ...)
        msg = " ".join(str(e).split())
        m = re.search(r"Layer ([^\s:]+):<class '([^']+)'> is not supported", msg)
        if m:
            raise RecipeError(f"student {label}: quantization-aware training: tfmot has no scheme for layer "
                              f"{m[1]} ({m[2].rsplit('.', 1)[-1]}); use --quantize ptq") from None
        raise RecipeError(f"student {label}: quantization-aware training is not possible for this model "
                          f"({type(e).__name__}: {msg[:200]}); use --quantize ptq") from None


def check_techniques(label: str, model: Any, recipe: Recipe) -> None:
    """Refuse, before any training, a chain a student cannot take: QAT of a
    layer tfmot has no scheme for, 2:4 sparsity where no layer has input
    channels in multiples of 4."""
    from odml._tf import keras

    K = keras()
    if recipe.prune.enabled and recipe.prune.structure == "2:4" and not any(
            _prunable(layer, K, "2:4") for layer in model.layers):
        raise RecipeError(f"student {label}: no layer has input channels in multiples of 4, which 2:4 sparsity "
                          "needs; use --prune-structure unstructured")
    if recipe.quantize.mode == "qat":
        wrap_for_qat(model, label)


def float_weights(qat_model: Any, plain: Any) -> Any:
    """``plain`` (the student built afresh) with the weights of its QAT model,
    matched by variable name (a QAT wrapper holds its layer's variables under
    the layer's own names, beside the quantizers' ranges); None when one is
    missing."""
    src = {v.name: v for v in qat_model.weights}
    values = []
    for w in plain.weights:
        v = src.get(w.name)
        if v is None or tuple(v.shape) != tuple(w.shape):
            return None
        values.append(v.numpy())
    plain.set_weights(values)
    return plain


def strip(model: Any) -> Any:
    import tensorflow_model_optimization as tfmot

    return tfmot.sparsity.keras.strip_pruning(model)


def sparsity_per_layer(model: Any) -> list[dict[str, Any]]:
    """The fraction of zero weights of every convolution / dense kernel (and of
    the weights a layer names as prunable)."""
    from odml._tf import keras
    from odml.compress.masks import kernel_var

    K = keras()
    rows = []
    for layer in model.layers:
        named = layer.get_prunable_weights() if hasattr(layer, "get_prunable_weights") and layer.weights else []
        inner = getattr(layer, "layer", layer)  # inside a QAT wrapper, which holds the variables
        kernel = kernel_var(inner, layer) if isinstance(inner, (K.layers.Conv2D, K.layers.Dense)) else None
        if named:  # the QRNN gates
            k = np.concatenate([w.numpy().ravel() for w in named])
        elif kernel is not None:
            k = kernel.numpy()
        else:
            continue
        rows.append({"layer": inner.name, "weights": int(k.size), "sparsity": round(float((k == 0).mean()), 4)})
    return rows


def _optimizer(recipe: Recipe, steps: int):
    from odml.train.trainer import make_optimizer

    return make_optimizer(recipe.learning_rate, recipe.weight_decay, recipe.epochs, steps)


SURE = 0.97  # a training example the teacher is "sure" of: p(label) at least this
LITTLE = 0.02  # nats: soft labels closer than this to smoothed labels hold little more than the labels


def soft_label_stats(logits: np.ndarray, y: np.ndarray, temperature: float) -> dict[str, float]:
    """What the teacher's soft labels hold beyond the hard ones, on the
    training examples: its accuracy there, the share it is sure of (p(label)
    >= SURE), the mean and spread of the softened probability of the true
    class at ``temperature``, and ``beyond_smoothing``: the mean KL divergence
    (nats) from the softened teacher to labels smoothed to that same mean
    (the rest spread evenly over the other classes). Near 0, distilling is
    training on smoothed labels: the teacher adds little."""
    from odml.numeric import softmax

    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y).astype(int)
    rows = np.arange(len(y))
    soft = softmax(logits / temperature)
    p1, pt = softmax(logits)[rows, y], soft[rows, y]
    smooth = np.full_like(soft, (1 - pt.mean()) / (soft.shape[1] - 1))
    smooth[rows, y] = pt.mean()
    kl = (soft * np.log(np.clip(soft, 1e-12, 1) / smooth)).sum(-1).mean()
    return {"examples": int(len(y)), "accuracy": round(float((logits.argmax(-1) == y).mean()), 4),
            "sure_share": round(float((p1 >= SURE).mean()), 4), "temperature": float(temperature),
            "soft_label_mean": round(float(pt.mean()), 4), "soft_label_std": round(float(pt.std()), 4),
            "beyond_smoothing": round(float(kl), 4)}


def soft_label_note(stats: dict[str, float]) -> str | None:
    """A line for the user when the teacher's soft labels are smoothed labels
    in effect (measured: SMS pQRNN teacher 0.006 nats, where distilling did
    not help; digits MobileNetEdgeTPUV2 teacher 0.072, where it did)."""
    if stats.get("beyond_smoothing", LITTLE) >= LITTLE:
        return None
    return (f"the teacher's soft labels (T={stats['temperature']:g}) are nearly smoothed labels: the true class gets "
            f"{stats['soft_label_mean']:.2f} +- {stats['soft_label_std']:.2f} on the training data, "
            f"{stats['beyond_smoothing']:.3f} nats from labels smoothed to that (under {LITTLE:g}), sure of "
            f"{stats['sure_share']:.0%} of the examples; distillation may not beat training alone (compare with "
            "--no-distill)")


NGRAM_MAX = 5  # the longest window ``ngram`` takes (Tang et al. 2019 sample n in 1..5)


def text_window(x: Any, kind: str, max_n: int = NGRAM_MAX) -> Any:
    """Each text of a batch cut to a window of 1..``max_n`` consecutive tokens
    at a random place, moved to the front, the rest padding (Tang et al.
    2019's n-gram sampling). ``x``: pQRNN projections (N, L, F) whose padding
    rows are 0 (``kind`` "projection"), or token ids (N, L) with [PAD] = 0
    whose first id ([CLS]) stays first ("token_ids"). A fragment has no label
    of its own; the teacher gives it one."""
    from odml._tf import tf

    T = tf()
    n, length = T.shape(x)[0], int(x.shape[1])
    ids = kind == "token_ids"
    used = T.not_equal(x, 0) if ids else T.reduce_any(T.not_equal(x, 0), -1)
    first = 1 if ids else 0  # token ids: [CLS] kept in front of the window
    tokens = T.maximum(T.reduce_sum(T.cast(used, T.int32), -1) - first, 1)  # tokens a window can take
    size = T.minimum(T.random.uniform([n], 1, max_n + 1, dtype=T.int32), tokens)
    start = first + T.cast(T.floor(T.random.uniform([n]) * T.cast(tokens - size + 1, T.float32)), T.int32)
    pos = T.range(length)[None, :]
    src = T.clip_by_value(start[:, None] + pos - first, 0, length - 1)
    src = T.where(pos < first, pos, src)
    keep = T.logical_or(pos < first, pos - first < size[:, None])
    out = T.gather(x, src, batch_dims=1)
    keep = T.cast(keep, x.dtype)
    return out * (keep if ids else keep[..., None])


def perturb(x: Any, how: str, kind: str, rate: float = 0.15) -> Any:
    """A perturbed copy of a batch for distillation (the teacher labels it);
    ``kind`` is what the input is (the family's InputSpec.kind): ``mixup``:
    each input mixed with another of the batch, weight ~ Beta(0.4, 0.4);
    ``dropout``: tokens zeroed (text: projection rows, or token ids set to
    [PAD] = 0, the first kept) or 8x8 patches of an image, each at ``rate``;
    ``ngram``: texts cut to windows of a few tokens (:func:`text_window`)."""
    from odml._tf import tf

    T = tf()
    if how == "ngram":
        return text_window(x, kind)
    n = T.shape(x)[0]
    if how == "mixup":
        g1, g2 = T.random.gamma([n], 0.4), T.random.gamma([n], 0.4)
        lam = T.reshape(g1 / T.maximum(g1 + g2, 1e-6), [-1] + [1] * (len(x.shape) - 1))
        lam = T.cast(lam, x.dtype)
        return lam * x + (1 - lam) * T.gather(x, T.random.shuffle(T.range(n)))
    if kind == "image":  # patches
        h, w = int(x.shape[1]), int(x.shape[2])
        keep = T.cast(T.random.uniform([n, -(-h // 8), -(-w // 8), 1]) >= rate, x.dtype)
        keep = T.repeat(T.repeat(keep, 8, axis=1), 8, axis=2)[:, :h, :w]
        return x * keep
    length = int(x.shape[1])
    keep = T.random.uniform([n, length]) >= rate
    keep = T.logical_or(keep, T.range(length)[None, :] == 0)  # the first token ([CLS]) stays
    keep = T.cast(keep, x.dtype)
    return x * (keep[..., None] if kind == "projection" else keep)


def train_students(teacher_model: Any, students: list[Student], data: Any, recipe: Recipe, ckpt_dir: Path,
                   on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
                   input_kind: str = "image", teacher_range: tuple[float, float] | None = None,
                   shared: int | None = None, time_one: bool = True, pixels: Any = None,
                   teacher_out: Callable[[Any], Any] | None = None, strategy: Any = None) -> dict[str, Any]:
    """Train all students together for recipe.epochs on ``data`` (arrays of
    model inputs: images, or texts featurized by the teacher's family,
    ``input_kind`` saying which), resuming from the last finished epoch in
    ``ckpt_dir``. Images reach the students in [0, 1] and the teacher in
    ``teacher_range`` (a teacher of yours may read [0, 255] or [-1, 1]).
    ``shared``: the index of the widest student, whose variables all the
    students share (compress/shared.py). ``time_one``: time one student's
    step alone, to set the run's against. ``pixels``: the students segment
    (:class:`Pixels`: labels are masks, losses and accuracy per pixel).
    ``teacher_out``: the teacher's output as class logits (its family's
    ``class_logits``). ``strategy``: a tf.distribute strategy (--distribute
    mirrored): the students mirrored, each batch split between its replicas,
    their trained weights in local models at the end. Returns timing and
    per-epoch history."""
    trainer = StudentTrainer(teacher_model, students, data, recipe, input_kind, teacher_range, shared, pixels,
                             teacher_out, strategy)
    info = EpochLoop(trainer, ckpt_dir, on_epoch).run(time_one)
    trainer.local_copies()
    if strategy is not None:
        info["distribute"] = {"replicas": int(strategy.num_replicas_in_sync)}
    return info


class StudentTrainer:
    """The students of one run made ready to train (wrapped for pruning and
    QAT, optimizers built, the narrower shared widths loaded from the
    widest), the teacher and its optimizer when it trains too (joint), the
    losses, and the training step: one ``tf.function`` per group of students
    trained together."""

    def __init__(self, teacher_model: Any, students: list[Student], data: Any, recipe: Recipe,
                 input_kind: str = "image", teacher_range: tuple[float, float] | None = None,
                 shared: int | None = None, pixels: Any = None, teacher_out: Callable[[Any], Any] | None = None,
                 strategy: Any = None):
        from odml._tf import keras, tf

        T, K = tf(), keras()
        K.utils.set_random_seed(recipe.seed)
        self.strategy = strategy  # tf.distribute: the students and optimizers mirrored, each batch split
        self.teacher, self.students, self.data, self.recipe = teacher_model, students, data, recipe
        self.input_kind, self.shared, self.pixels = input_kind, shared, pixels
        self.teacher_out = teacher_out or (lambda t: t)
        self.steps = int(np.ceil(len(data.y_train) / recipe.batch_size))  # per epoch
        self.total_steps = self.steps * recipe.epochs
        d = self.distill = recipe.distill
        self.chain = recipe.prune.enabled and recipe.quantize.mode == "qat"  # tfmot's two wrappers do not nest
        for s in students:
            self.prepare(s)
        self.sh = self._share()
        self.masked, self.one_graph_why = self._one_graph()
        self.teacher_opt = _optimizer(recipe, self.steps) if d.joint else None
        # per-row losses, averaged here (a strategy's replicas refuse Keras' own averaging)
        self.ce = K.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
        self.kl = K.losses.KLDivergence(reduction="none")
        self.temp, self.alpha = float(d.temperature), float(d.alpha) if d.enabled else 0.0
        x0, y0 = data.sample("train", 1)
        in_dtype = T.float32 if x0.dtype == np.uint8 else T.as_dtype(x0.dtype)
        y_spec = T.TensorSpec([None, *y0.shape[1:]], T.int32) if pixels else T.TensorSpec([None], T.int64)
        self.signature = [T.TensorSpec([None, *list(x0.shape[1:])], in_dtype), y_spec]
        with self.scope():
            for i, s in enumerate(students):  # optimizer slots created eagerly, not while tracing
                if self.sh is None or i == shared:  # shared: the widest's optimizer steps for all
                    s.optimizer.build(s.model.trainable_variables)
            if self.teacher_opt is not None:
                self.teacher_opt.build(teacher_model.trainable_variables)
        lo, hi = teacher_range or (0.0, 1.0)
        self.to_teacher = None if (lo, hi) == (0.0, 1.0) else (float(hi - lo), float(lo))  # [0, 1] -> its range
        self.aug = d.augment if d.enabled and self.alpha else "none"  # (mixup on token ids: refused by compress.run)
        self._steps: dict[tuple[int, ...], Any] = {}

    def scope(self) -> Any:
        """The strategy's scope (variables made in it are mirrored), or none."""
        import contextlib

        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def prepare(self, s: Student) -> None:
        """``s`` wrapped for pruning and / or QAT (or its masks held by odml
        when both), with its optimizer; under a strategy, rebuilt in its
        scope with the same weights first."""
        recipe = self.recipe
        with self.scope():
            model = self.wrapped(self._rebuilt(s) if self.strategy is not None else s.model, s.label)
            if self.chain:
                from odml.compress.masks import HeldMasks

                s.masks = HeldMasks(model, recipe.prune, self.total_steps)
            s.model = model
            s.optimizer = _optimizer(recipe, self.steps)

    def wrapped(self, model: Any, label: str) -> Any:
        """``model`` in tfmot's pruning and / or QAT wrappers, as the recipe asks."""
        if self.recipe.prune.enabled and not self.chain:
            model = wrap_for_pruning(model, self.recipe, self.total_steps)
        if self.recipe.quantize.mode == "qat":
            model = wrap_for_qat(model, label)
        return model

    def local_copies(self) -> None:
        """Under a strategy: each student's trained weights moved into a
        model of this process alone, built outside the strategy (what
        follows, BatchNorm's statistics and the export, needs no replica)."""
        if self.strategy is None:
            return
        for s in self.students:
            s.model = self._rebuilt(s, wrapped=True)

    def _rebuilt(self, s: Student, wrapped: bool = False) -> Any:
        """A new model of ``s``'s spec (in the recipe's wrappers when its
        weights are the wrapped ones) holding ``s``'s weights: made in
        whatever scope is current."""
        model = s.spec.build(s.label)
        if wrapped:
            model = self.wrapped(model, s.label)
        model.set_weights(s.model.get_weights())
        return model

    def _share(self) -> Any:
        """``shared``: the students' variables as slices of the widest's, the
        narrower ones starting as those slices."""
        if self.shared is None:
            return None
        from odml.compress.shared import SharedWidths

        sh = SharedWidths([s.model for s in self.students], self.shared)
        self.load_widths(sh)
        return sh

    def _one_graph(self) -> tuple[Any, str | None]:
        """Shared widths trained one per step: every width in one graph
        (compress/shared.py's MaskedWidths) when one graph computes each of
        them exactly (checked on a training batch); else None and why (each
        width then traces a step of its own)."""
        if self.sh is None or self.recipe.shared.widths_per_step != 1:
            return None, None
        from odml.compress.shared import MaskedWidths, graph_difference

        models = [s.model for s in self.students]
        wide = models[self.shared]
        for m in models:
            why = graph_difference(wide, m)
            if why:
                return None, f"{m.name}: {why}"
        x = self.data.sample("train", 8, self.recipe.seed)[0]
        if x.dtype == np.uint8:  # as training feeds them: [0, 1]
            from odml.data.images import to_float

            x = to_float(x)
        try:
            mw = MaskedWidths(models, self.shared)
            why = mw.check(models, x)
        except (AttributeError, TypeError, ValueError) as e:  # a layer without one output shape, outputs that differ
            return None, f"one graph could not be made of them ({type(e).__name__}: {str(e)[:120]})"
        return (None, why) if why else (mw, None)

    def load_widths(self, sh: Any = None) -> None:
        """Each narrower width copied out of the widest (shared widths)."""
        sh = self.sh if sh is None else sh
        for i in range(len(self.students)):
            if i != self.shared:
                sh.load(i)

    def student_loss(self, y: Any, logits: Any, t_soft: Any) -> Any:
        """Hard loss on the labelled rows; the soft loss on every row (with an
        augmented step, the perturbed copy after them has soft labels alone)."""
        from odml._tf import tf

        T = tf()
        hard = self.hard_loss(y, logits[: T.shape(y)[0]])
        if not self.alpha or t_soft is None:
            return hard
        if self.pixels and tuple(t_soft.shape[1:3]) != tuple(logits.shape[1:3]):  # the teacher's map at the student's
            t_soft = T.image.resize(t_soft, logits.shape[1:3], method="bilinear")
        soft = _mean(self.kl(t_soft, T.nn.softmax(logits / self.temp))) * self.temp * self.temp
        return (1 - self.alpha) * hard + self.alpha * soft

    def hard_loss(self, y: Any, logits: Any) -> Any:
        """Cross-entropy on the labels: per example, or per pixel of the masks
        (the logits resized to them, ignored pixels left out)."""
        return self.pixels.loss(y, logits) if self.pixels else _mean(self.ce(y, logits))

    def accuracy(self, y: Any, logits: Any) -> Any:
        """The share of examples (pixels of the masks) whose argmax is the label."""
        from odml._tf import tf

        T = tf()
        if self.pixels:
            return self.pixels.accuracy(y, logits)
        pred = T.argmax(logits, -1, output_type=T.int32)
        return T.reduce_mean(T.cast(T.equal(pred, T.cast(y, T.int32)), T.float32))

    def teacher_soft(self, x: Any, y: Any, n: Any) -> Any:
        """The teacher's softened distribution on ``x`` (None in plain
        training: no teacher pass at all); joint: the teacher steps on the
        labels of the first ``n`` rows in the same pass."""
        from odml._tf import tf

        T, d, teacher = tf(), self.distill, self.teacher
        xt = x if self.to_teacher is None else x * self.to_teacher[0] + self.to_teacher[1]
        if not (d.enabled or d.joint):
            return None
        if d.joint:
            with T.GradientTape() as tape:
                t_logits = self.teacher_out(teacher(xt, training=True))
                t_loss = self.hard_loss(y, t_logits[:n])
            grads = replica_mean_grads(tape.gradient(t_loss, teacher.trainable_variables), n)
            self.teacher_opt.apply_gradients(zip(grads, teacher.trainable_variables))
        else:
            t_logits = self.teacher_out(teacher(xt, training=False))  # one teacher pass, shared by every student
        return T.stop_gradient(T.nn.softmax(t_logits / self.temp))

    def make_step(self, group: list[Student], tied: Any = None, idx: tuple[int, ...] = ()) -> Any:
        """One training step of ``group`` (one trace for every batch size: the
        last batch is smaller). ``tied``: the students share the widest's
        variables (``idx``: their indices, the widest first)."""
        from odml._tf import tf

        T = tf()
        aug, temp, kind = self.aug, self.temp, self.input_kind

        def body(x, y):
            n = T.shape(x)[0]
            if aug != "none":  # one pass over the batch and its perturbed copy
                x = T.concat([x, perturb(x, aug, kind)], 0)
            t_soft = self.teacher_soft(x, y, n)
            out = []
            summed, w_soft = None, None
            for j, s in enumerate(group):
                target = t_soft
                if tied is not None and idx[j] != tied.widest:  # its variables: the widest's leading slices
                    tied.load(idx[j])
                if tied is not None and j and w_soft is not None:  # in-place distillation: from the widest too
                    if t_soft is not None and self.pixels and tuple(t_soft.shape[1:3]) != tuple(w_soft.shape[1:3]):
                        t_soft = T.image.resize(t_soft, w_soft.shape[1:3], method="bilinear")  # the widths' stride
                    target = w_soft if t_soft is None else (t_soft + w_soft) / 2
                with T.GradientTape() as tape:
                    logits = s.model(x, training=True)
                    loss = self.student_loss(y, logits, target)
                grads = replica_mean_grads(tape.gradient(loss, s.model.trainable_variables), n)
                if tied is None:
                    s.optimizer.apply_gradients(zip(grads, s.model.trainable_variables))
                else:  # one optimizer step for all widths, after the last
                    summed = tied.add(summed, idx[j], grads)
                    if idx[j] == tied.widest:
                        w_soft = T.stop_gradient(T.nn.softmax(logits / temp))
                if s.masks is not None:
                    s.masks.apply()
                out.append((loss, self.accuracy(y, logits[:n])))
            if tied is not None:  # (the widest's optimizer, whichever widths this step trained)
                wide = self.students[tied.widest]
                wide.optimizer.apply_gradients(zip(summed, wide.model.trainable_variables))
            return out, n

        strategy = self.strategy

        @T.function(input_signature=self.signature)
        def step(x, y):
            if strategy is None:
                return body(x, y)[0]
            return run_split(strategy, body, x, y)  # each replica its share of the batch, the means over all

        return step

    def step_for(self, idx: tuple[int, ...]) -> Any:
        """The step of the students ``idx`` (traced once per group; shared
        widths in one graph: one trace for every width)."""
        if self.masked is not None:
            from odml._tf import tf

            if "masked" not in self._steps:
                self._steps["masked"] = self.make_masked_step()
            step, w = self._steps["masked"], tf().constant(idx[0], tf().int32)
            return lambda x, y: step(x, y, w)
        if idx not in self._steps:
            self._steps[idx] = self.make_step([self.students[i] for i in idx], self.sh, idx)
        return self._steps[idx]

    def make_masked_step(self) -> Any:
        """One step of one shared width, given by its index: the widest's graph
        with the width's masks (compress/shared.py), the widest's optimizer
        stepping the shared variables."""
        from odml._tf import tf

        T = tf()
        mw, aug, kind = self.masked, self.aug, self.input_kind
        model, opt = mw.model, self.students[self.shared].optimizer

        @T.function(input_signature=[*self.signature, T.TensorSpec([], T.int32)])
        def step(x, y, width):
            mw.width.assign(width)
            n = T.shape(x)[0]
            if aug != "none":
                x = T.concat([x, perturb(x, aug, kind)], 0)
            t_soft = self.teacher_soft(x, y, n)
            with T.GradientTape() as tape:
                logits = model(x, training=True)
                loss = self.student_loss(y, logits, t_soft)
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables))
            return [(loss, self.accuracy(y, logits[:n]))]

        return step

    def groups(self, epoch: int) -> Any:
        """The students each step of ``epoch`` trains (shared widths: a draw of
        widths per step); None: all of them every step."""
        if self.sh is None:
            return None
        per = self.recipe.shared.widths_per_step
        if per == 1:  # the widths' turns run on across epochs (an epoch of fewer steps than widths skips none)
            return iter(self.sh.turns(self.recipe.seed, self.steps * epoch, self.steps))
        return iter(self.sh.groups(np.random.default_rng([self.recipe.seed, epoch]), self.steps, per))

    def pruning_callbacks(self, models: list[Any]) -> list[Any]:
        """tfmot's step counters of the pruning wrappers of ``models`` (none
        when the masks are odml's, or nothing is pruned)."""
        if not (self.recipe.prune.enabled and not self.chain):
            return []
        import tensorflow_model_optimization as tfmot

        cbs = []
        for model in models:
            cb = tfmot.sparsity.keras.UpdatePruningStep()
            cb.set_model(model)
            cb.on_train_begin()
            cbs.append(cb)
        return cbs

    def time_one_student(self) -> tuple[float, float]:
        """One student's training cost, to set the run's against
        (Learn2Compress: many students for little more than one): a copy of
        the first student (shared: the widest), trained alone on the first
        batches and thrown away. Returns its seconds per step and its trace's."""
        first = self.students[self.shared or 0]
        alone = Student(first.label, first.spec, first.spec.build(f"{first.label}_alone"))
        self.prepare(alone)
        with self.scope():
            alone.optimizer.build(alone.model.trainable_variables)
        before = None
        cbs = self.pruning_callbacks([alone.model])  # tfmot's wrappers want their step counter, as in training
        if cbs:
            before = lambda: cbs[0].on_train_batch_begin(batch=-1)  # noqa: E731
        return _time_steps(self.make_step([alone]), self.data, self.recipe, 12, 2, before)


class EpochLoop:
    """The epochs of a ``StudentTrainer`` from the last finished one in
    ``ckpt_dir``: after every epoch the students' history (history.json) and
    a ``tf.train.Checkpoint`` (students, optimizers, a joint teacher, the
    epoch); the timings of the epochs and steps."""

    def __init__(self, trainer: StudentTrainer, ckpt_dir: Path,
                 on_epoch: Callable[[int, dict[str, Any]], None] | None = None):
        from odml._tf import tf

        T = tf()
        self.tr, self.on_epoch = trainer, on_epoch
        self.epoch_var = T.Variable(0, dtype=T.int64, trainable=False)
        self.manager = self._checkpoint(ckpt_dir)
        self.hist_file = Path(ckpt_dir) / "history.json"
        self.start = self._resume()
        self.global_step = self.start * trainer.steps
        self.pruning_cbs = trainer.pruning_callbacks([s.model for s in trainer.students])
        self.epoch_times: list[float] = []
        self.step_times: list[float] = []
        self.widest_times: list[float] = []  # shared widths: the widest's steps (one student's)
        self.first_times: list[float] = []  # each graph's first step: its trace
        self._seen: set[tuple[int, ...]] = set()
        self.solo_trace: float | None = None  # one student's trace (timed alone, or the one graph's)
        self.timing_s = 0.0  # timing one student alone (its trace and steps), when it was

    def _checkpoint(self, ckpt_dir: Path) -> Any:
        from odml._tf import tf

        T, tr = tf(), self.tr
        objs: dict[str, Any] = {"epoch": self.epoch_var}
        if tr.distill.joint:  # a fixed teacher does not change: nothing of it to checkpoint
            objs["teacher"] = tr.teacher
        for i, s in enumerate(tr.students):
            if tr.sh is not None and i != tr.shared:
                continue  # shared widths: the widest's variables are every width's (copied out at the end)
            objs[f"student{i}"] = s.model
            objs[f"opt{i}"] = s.optimizer
        if tr.teacher_opt is not None:
            objs["teacher_opt"] = tr.teacher_opt
        self.ckpt = T.train.Checkpoint(**objs)
        manager = T.train.CheckpointManager(self.ckpt, str(ckpt_dir), max_to_keep=1)
        Path(ckpt_dir).mkdir(parents=True, exist_ok=True)
        return manager

    def _resume(self) -> int:
        """The first epoch to train: the checkpoint restored, with the
        students' history of the epochs before it and their held masks."""
        if self.manager.latest_checkpoint:
            self.ckpt.restore(self.manager.latest_checkpoint).expect_partial()
        start = int(self.epoch_var.numpy())
        students = self.tr.students
        if start and self.hist_file.is_file():  # written just before each checkpoint: keep the epochs it holds
            saved = json.loads(self.hist_file.read_text())
            for s in students:
                s.history = [h for h in saved.get(s.label, []) if h["epoch"] < start]
        for s in students:
            if s.masks is not None and start:
                s.masks.resume()
        return start

    def run(self, time_one: bool = True) -> dict[str, Any]:
        tr, recipe = self.tr, self.tr.recipe
        solo = None
        if len(tr.students) > 1 and self.start < recipe.epochs and not tr.distill.joint and time_one and \
                tr.masked is None:  # (one graph: the widest's own steps are one student's)
            t0 = time.perf_counter()
            solo, self.solo_trace = tr.time_one_student()
            self.timing_s = time.perf_counter() - t0
        for epoch in range(self.start, recipe.epochs):
            self.epoch(epoch)
        if tr.sh is not None:  # each width copied out of the widest, as trained (or as restored)
            tr.load_widths()
        res = {"start_epoch": self.start, "epochs": recipe.epochs, "epoch_s": self.epoch_times,
               "train_s": float(sum(self.epoch_times)), "steps_per_epoch": tr.steps}
        if self.step_times:
            res["step_s"] = round(float(np.median(self.step_times)), 5)
        if tr.masked is not None and self.widest_times:
            solo = float(np.median(self.widest_times))
        if solo is not None and self.step_times:
            res.update(one_student_step_s=round(solo, 5), vs_one_student=round(res["step_s"] / solo, 3))
        if self.first_times and self.step_times:  # each graph's first step less a step: tracing it
            res["trace_s"] = round(sum(max(0.0, t - res["step_s"]) for t in self.first_times), 2)
            if tr.masked is not None:
                self.solo_trace = res["trace_s"]
        if solo is not None and self.solo_trace is not None:
            res["one_student_trace_s"] = round(self.solo_trace, 2)
        if solo is not None:
            res["one_student"] = tr.students[tr.shared or 0].label
            res["timing_s"] = round(self.timing_s, 2)
        if tr.sh is not None:
            res["graphs"] = 1 if tr.masked is not None else len(tr._steps)
            res["one_graph"] = tr.masked is not None
            if tr.one_graph_why:
                res["one_graph_why"] = tr.one_graph_why
        return res

    def epoch(self, epoch: int) -> None:
        """One epoch of every student, then its history and checkpoint."""
        tr, recipe = self.tr, self.tr.recipe
        students = tr.students
        t0 = time.perf_counter()
        # the epoch's batches (texts featurized as they are needed, distorted afresh when the recipe says so)
        ds = tr.data.epoch_dataset(epoch, recipe.batch_size, recipe.seed, recipe.text_distortion)
        sums, counts = np.zeros((len(students), 2)), np.zeros(len(students))
        groups = tr.groups(epoch)
        t_step = time.perf_counter()
        for x, y in ds:
            interrupts.check()
            for cb in self.pruning_cbs:
                cb.on_train_batch_begin(batch=-1)
            for s in students:
                if s.masks is not None:
                    s.masks.update(self.global_step)
            idx = tuple(next(groups)) if groups is not None else tuple(range(len(students)))
            graph = idx if tr.masked is None else ()  # (one graph: every width's step)
            fresh = graph not in self._seen
            self._seen.add(graph)
            res = tr.step_for(idx)(x, y)
            self.global_step += 1
            sums[list(idx)] += np.array([[float(l), float(a)] for l, a in res])
            counts[list(idx)] += 1
            now = time.perf_counter()
            if fresh:
                self.first_times.append(now - t_step)
            elif self.global_step > self.start * tr.steps + 2:  # (the first two: the trace)
                self.step_times.append(now - t_step)
                if tr.sh is not None and idx == (tr.sh.widest,):
                    self.widest_times.append(now - t_step)
            t_step = now
        for cb in self.pruning_cbs:
            cb.on_epoch_end(batch=-1)
        self.epoch_times.append(time.perf_counter() - t0)
        self._end_epoch(epoch, sums / np.maximum(counts, 1)[:, None])

    def _end_epoch(self, epoch: int, means: np.ndarray) -> None:
        """The epoch's mean loss and accuracy into each student's history, the
        history file, the checkpoint; ``on_epoch`` told."""
        students = self.tr.students
        logs = {}
        for s, (loss, acc) in zip(students, means):
            s.history.append({"epoch": epoch, "loss": float(loss), "accuracy": float(acc)})
            logs[s.label] = {"loss": float(loss), "accuracy": float(acc)}
        self.epoch_var.assign(epoch + 1)
        write_text_atomic(self.hist_file, json.dumps({s.label: s.history for s in students}))
        self.manager.save()
        if self.on_epoch:
            self.on_epoch(epoch, logs)


def _mean(v: Any) -> Any:
    """The mean of ``v`` (0 for none: a replica given no rows of a short last batch)."""
    from odml._tf import tf

    T = tf()
    return T.math.divide_no_nan(T.reduce_sum(v), T.cast(T.size(v), v.dtype))


def _time_steps(step: Any, data: Any, recipe: Recipe, n: int, warmup: int,
                before: Callable[[], None] | None = None) -> tuple[float, float]:
    """Median seconds per step of ``step`` (the batch fetched as in training)
    over the first ``n`` batches after ``warmup`` ones (the trace), and the
    first step's seconds beyond that (the trace)."""
    ds = data.epoch_dataset(0, recipe.batch_size, recipe.seed, recipe.text_distortion)
    times, first = [], float("nan")
    t = time.perf_counter()
    for i, (x, y) in enumerate(ds):
        if before is not None:
            before()
        [float(loss) for loss, _ in step(x, y)]  # as training reads them: the step has finished
        now = time.perf_counter()
        if i >= warmup:
            times.append(now - t)
        elif not i:
            first = now - t
        t = now
        if len(times) >= n:
            break
    med = float(np.median(times)) if times else float("nan")
    return med, max(0.0, first - med)
