"""Quantization-aware fine-tuning toward a float model's own outputs.

When post-training int8 cannot meet a model's budget, a quantization-aware
copy of the model (tfmot's fake-quant of weights and activations) is
fine-tuned on the calibration inputs with the float model's outputs as its
targets (no labels: every output, each one's squared error divided by that
output's variance so that each counts), then converted to an int8 .tflite.

- Layers tfmot's Default8BitQuantizeRegistry has no scheme for (``Resizing``,
  ``Identity``, ``Lambda``, a layer whose activation tfmot cannot wrap) stay
  float: each layer is annotated on its own inside ``clone_model``.
- tfmot's activation quantizers start at [-6, 6] and move by moving averages
  (decay 0.999), which clamps outputs in pixels for hundreds of steps (MediaPipe's
  BlazePose landmark model: keypoints 63% of the crop away right after
  ``quantize_apply``). So before training every activation range (the
  ``*_min``/``*_max`` pairs of each QuantizeWrapperV2 and of the input's
  QuantizeLayer, not the weights') is set to the min and max of the matching
  float layer's tensor on the calibration data, as a post-training
  calibration would; the weights' ranges are their own min and max.
- Training runs the model in inference mode (ranges fixed at the float
  model's, batch normalization on its moving statistics, no dropout), with
  the weights' ranges following the weights after every step as tfmot's
  LastValueQuantizer does in training.

``qat_finetune`` returns the tf_keras QAT model; ``qat_tflite`` converts it
(TF converter, Optimize.DEFAULT and representative data: float input and
outputs). The converter may order outputs its own way; the caller names and
orders them (``exporters.tflite.keep_io``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from odml.errors import OdmlError


class QatError(OdmlError):
    """A model quantization-aware fine-tuning cannot take (one line)."""


def _check_model(model: Any, K: Any) -> None:
    if not isinstance(model, K.Model):
        kind = f"{type(model).__module__.split('.')[0]}.{type(model).__name__}"
        raise QatError(f"quantization-aware fine-tuning needs a tf_keras model (tfmot works only on tf_keras), "
                       f"got {kind}")
    if not (isinstance(model, K.Sequential) or getattr(model, "_is_graph_network", False)):
        raise QatError(f"quantization-aware fine-tuning needs a functional or Sequential tf_keras model, "
                       f"got a subclassed {type(model).__name__}")
    if len(model.inputs) != 1:
        raise QatError(f"quantization-aware fine-tuning takes a model of one input, this one has {len(model.inputs)}")


def _activation_ok(layer: Any) -> bool:
    """Whether tfmot's QuantizeAwareActivation can wrap the layer's own
    activation (a layer with another one stays float)."""
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_aware_activation import (
        QuantizeAwareActivation as Q,
    )

    act = getattr(layer, "activation", None)
    if act is None:
        return True
    name = getattr(act, "__name__", type(act).__name__)
    return name in Q._PRE_QUANT_ACTIVATIONS or name in Q._POST_QUANT_ACTIVATIONS or name in Q._NO_QUANTIZE_ACTIVATIONS


def quantize_model(model: Any) -> Any:
    """tfmot's QAT model of ``model``: every layer the default 8-bit registry
    supports annotated, the others float, the weights copied. Raises QatError
    when no layer can be quantized or tfmot refuses the model."""
    import tensorflow_model_optimization as tfmot
    from odml._tf import keras

    K = keras()
    _check_model(model, K)
    qk = tfmot.quantization.keras
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit.default_8bit_quantize_registry import (
        Default8BitQuantizeRegistry,
    )

    registry = Default8BitQuantizeRegistry()
    annotated: list[str] = []

    def clone(layer: Any) -> Any:
        fresh = layer.__class__.from_config(layer.get_config())
        try:
            ok = registry.supports(layer) and _activation_ok(layer)
        except Exception:  # noqa: BLE001  (a layer the registry cannot even inspect stays float)
            ok = False
        if not ok:
            return fresh
        annotated.append(layer.name)
        return qk.quantize_annotate_layer(fresh)

    try:
        with qk.quantize_scope():
            marked = K.models.clone_model(model, clone_function=clone)
    except Exception as e:  # noqa: BLE001  (custom layers clone_model cannot rebuild from their config)
        raise QatError(f"quantization-aware fine-tuning: the model cannot be cloned for tfmot "
                       f"({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None
    if not annotated:
        raise QatError("quantization-aware fine-tuning: tfmot can quantize none of the model's layers, "
                       "nothing to fine-tune")
    for layer in model.layers:  # weights by layer name (an annotated layer holds its layer under the same name)
        if not layer.weights:
            continue
        target = marked.get_layer(layer.name) if layer.name not in annotated else next(
            t.layer for t in marked.layers if getattr(t, "layer", None) is not None and t.layer.name == layer.name)
        target.set_weights(layer.get_weights())
    try:
        with qk.quantize_scope():
            return qk.quantize_apply(marked)
    except Exception as e:  # noqa: BLE001
        msg = " ".join(str(e).split())
        raise QatError(f"quantization-aware fine-tuning: tfmot cannot quantize the model "
                       f"({type(e).__name__}: {msg[:200]})") from None


def _range_pairs(qat: Any) -> list[tuple[str, str, dict]]:
    """Every activation range of the QAT model: (float layer name, which
    tensor: "output" | "pre", {min_var, max_var}). The input QuantizeLayer's
    range is its input's, named by the layer that makes it."""
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_layer import (
        QuantizeLayer,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_wrapper import (
        QuantizeWrapper,
    )

    def float_name(layer: Any) -> str:
        return layer.layer.name if isinstance(layer, QuantizeWrapper) else layer.name

    pairs: list[tuple[str, str, dict]] = []
    for layer in qat.layers:
        if isinstance(layer, QuantizeLayer):
            v = getattr(layer, "quantizer_vars", None)
            if layer.quantizer is None or not v or len(layer._inbound_nodes) != 1:
                continue
            src = layer._inbound_nodes[0].inbound_layers
            src = src[0] if isinstance(src, (list, tuple)) else src
            pairs.append((float_name(src), "output", v))
        elif isinstance(layer, QuantizeWrapper):
            name = layer.layer.name
            if getattr(layer, "_output_quantizers", None):
                pairs.append((name, "output", layer._output_quantizer_vars))
            for qa in layer._quantize_activations:
                if getattr(qa, "_pre_activation_vars", None):
                    pairs.append((name, "pre", qa._pre_activation_vars))
                if getattr(qa, "_post_activation_vars", None):
                    pairs.append((name, "output", qa._post_activation_vars))
    return [p for p in pairs if isinstance(p[2], dict) and "min_var" in p[2] and "max_var" in p[2]]


def _batches(n: int, size: int):
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


def init_ranges(qat: Any, model: Any, x: np.ndarray, batch: int = 8) -> dict[str, int]:
    """Set every activation range of ``qat`` to the min and max of the
    matching tensor of the float ``model`` on ``x`` (a layer's output; before
    its activation for a range tfmot takes there), and every weight range to
    its weight's. Returns {"set": n, "unmatched": n} (ranges of layers tfmot's
    transforms made, which keep tfmot's initial [-6, 6])."""
    from odml._tf import keras, tf

    T, K = tf(), keras()
    pairs = _range_pairs(qat)
    tensors: dict[tuple[str, str], Any] = {}
    for name, where, _ in pairs:
        if (name, where) in tensors:
            continue
        try:
            fl = model.get_layer(name)
        except ValueError:
            continue
        if len(fl._inbound_nodes) != 1:
            continue
        if where == "output":
            tensors[(name, where)] = fl.output
        else:  # the layer's output before its activation: a linear copy sharing its weights
            cfg = {**fl.get_config(), "activation": "linear", "name": f"{fl.name}__odml_pre"}
            lin = fl.__class__.from_config(cfg)
            out = lin(fl.input)
            lin.set_weights(fl.get_weights())
            tensors[(name, where)] = out
    keys = list(tensors)
    stats = {k: [np.inf, -np.inf] for k in keys}
    if keys:
        probe = K.Model(model.inputs, [tensors[k] for k in keys])

        @T.function
        def minmax(xb):
            outs = probe(xb, training=False)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            return T.stack([T.reduce_min(o) for o in outs]), T.stack([T.reduce_max(o) for o in outs])

        for s in _batches(len(x), batch):
            lo, hi = minmax(T.constant(x[s]))
            for k, a, b in zip(keys, lo.numpy(), hi.numpy()):
                stats[k][0], stats[k][1] = min(stats[k][0], float(a)), max(stats[k][1], float(b))
    done = unmatched = 0
    for name, where, v in pairs:
        st = stats.get((name, where))
        if st is None or not np.isfinite(st).all():
            unmatched += 1
            continue
        lo, hi = min(st[0], 0.0), max(st[1], 0.0)  # the range holds zero, as the converter's calibration does
        if hi - lo < 1e-6:
            hi = lo + 1e-6
        v["min_var"].assign(lo)
        v["max_var"].assign(hi)
        done += 1
    _refresh_weight_ranges(qat)
    return {"set": done, "unmatched": unmatched}


def _weight_quantizers(qat: Any) -> list[tuple[Any, Any, Any]]:
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_wrapper import (
        QuantizeWrapper,
    )

    return [wq for layer in qat.layers if isinstance(layer, QuantizeWrapper) for wq in layer._weight_vars]


def _refresh_weight_ranges(qat: Any) -> None:
    """Each weight's range set to its weight's (LastValueQuantizer in training mode)."""
    for weight, quantizer, vars_ in _weight_quantizers(qat):
        quantizer(weight, True, weights=vars_)


def float_outputs(model: Any, x: np.ndarray, batch: int = 8) -> list[np.ndarray]:
    """Every output of the float ``model`` on ``x``, in the model's order."""
    from odml._tf import tf

    T = tf()
    fn = T.function(lambda xb: model(xb, training=False))
    parts: list[list[np.ndarray]] = []
    for s in _batches(len(x), batch):
        out = fn(T.constant(x[s]))
        out = out if isinstance(out, (list, tuple)) else [out]
        if not parts:
            parts = [[] for _ in out]
        for p, o in zip(parts, out):
            p.append(np.asarray(o, dtype=np.float32))
    return [np.concatenate(p, axis=0) for p in parts]


def qat_finetune(model: Any, x_calib: np.ndarray, steps: int = 300, batch: int = 8, lr: float = 1e-5, seed: int = 0,
                 progress: Callable[[int, float], None] | None = None) -> Any:
    """A quantization-aware copy of the tf_keras ``model`` (tfmot), its
    activation ranges set from the float model's tensors on ``x_calib``, then
    fine-tuned for ``steps`` steps of Adam (``lr``, batches of ``batch``
    calibration inputs) toward the float model's outputs on them: the mean
    over outputs of each one's squared error divided by its variance.
    ``progress(step, loss)`` is called after every step. ``steps=0`` returns
    the model with its ranges set and nothing trained."""
    from odml._tf import keras, tf

    T, K = tf(), keras()
    _check_model(model, K)
    x = np.asarray(x_calib)
    if len(x) == 0:
        raise QatError("quantization-aware fine-tuning needs calibration inputs, got none")
    if not np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32)
    qat = quantize_model(model)
    init_ranges(qat, model, x)
    if steps <= 0:
        return qat
    targets = float_outputs(model, x)
    scales = [np.float32(1.0 / max(float(t.std()), 1e-6)) for t in targets]
    seen: set[int] = set()
    variables = [v for v in qat.trainable_variables if not (id(v) in seen or seen.add(id(v)))]
    if not variables:
        raise QatError("quantization-aware fine-tuning: the model has no trainable weights, nothing to fine-tune")
    opt = K.optimizers.Adam(learning_rate=lr)
    weight_q = _weight_quantizers(qat)
    n_out = len(targets)

    @T.function
    def train_step(xb, tb):
        with T.GradientTape() as tape:
            ys = qat(xb, training=False)
            ys = ys if isinstance(ys, (list, tuple)) else [ys]
            loss = T.add_n([T.reduce_mean(T.square((T.cast(y, T.float32) - t) * s))
                            for y, t, s in zip(ys, tb, scales)]) / n_out
        grads = tape.gradient(loss, variables)
        opt.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
        for weight, quantizer, vars_ in weight_q:
            quantizer(weight, True, weights=vars_)
        return loss

    b = max(1, min(batch, len(x)))
    rng = np.random.default_rng(seed)
    order: list[int] = []
    for step in range(1, steps + 1):
        if len(order) < b:
            order += list(rng.permutation(len(x)))
        idx, order = np.sort(order[:b]), order[b:]
        loss = float(train_step(T.constant(x[idx]), [T.constant(t[idx]) for t in targets]))
        if progress is not None:
            progress(step, loss)
    return qat


def qat_tflite(qat_model: Any, x_calib: np.ndarray, samples: int = 64) -> bytes:
    """The int8 .tflite of a QAT model (TF converter, Optimize.DEFAULT,
    representative data from ``samples`` calibration inputs for the layers
    left float), float input and outputs, in the converter's output order."""
    from odml.exporters.tflite import convert, representative_from

    try:
        return convert(qat_model, "int8", representative_from(np.asarray(x_calib), samples))
    except OdmlError as e:
        raise QatError(f"quantization-aware model: {e}") from None
