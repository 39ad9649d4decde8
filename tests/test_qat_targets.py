"""compress/qat_targets.py: quantization-aware fine-tuning toward the float
model's own outputs, on a small real tf_keras model whose regression head
puts out hundreds (so tfmot's [-6, 6] starting ranges would clamp it) and
whose activations have outlier channels (so post-training int8 is poor)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _model():
    from odml._tf import keras

    K = keras()
    L = K.layers
    inp = K.Input((24, 24, 3), name="image")
    x = L.Conv2D(16, 3, strides=2, padding="same", name="stem")(inp)
    x = L.ReLU(6.0, name="stem_relu6")(x)
    y = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    y = L.ReLU(name="dw_relu")(y)
    y = L.Conv2D(16, 1, name="project")(y)
    x = L.Add(name="add")([x, y])
    x = L.Conv2D(24, 3, strides=2, padding="same", name="conv2")(x)
    x = L.ReLU(name="conv2_relu")(x)
    maps = L.Conv2D(2, 1, name="maps_conv")(x)
    maps = L.Resizing(12, 12, name="maps_up")(maps)  # a layer tfmot has no scheme for: stays float
    h = L.GlobalAveragePooling2D(name="pool")(x)
    points = L.Dense(6, name="points")(h)
    model = K.Model(inp, [points, maps], name="small")
    rng = np.random.default_rng(1)
    for layer in model.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        k = rng.normal(0, 1, ws[0].shape).astype(np.float32)
        fan_in = float(np.prod(ws[0].shape[:-1])) if layer.name != "dw" else 9.0
        k *= np.sqrt(2.0 / fan_in)
        if layer.name in ("stem", "conv2"):  # one outlier channel: a per-tensor int8 range wasted on it
            k[..., 0] *= 40.0
        if layer.name == "points":
            k *= 100.0  # outputs in the hundreds (pixels)
        b = rng.normal(0, 0.1, ws[1].shape).astype(np.float32)
        layer.set_weights([k, b])
    return model


def _data():
    rng = np.random.default_rng(0)
    base = rng.random((1, 24, 24, 3), np.float32)
    x = np.clip(base + rng.normal(0, 0.25, (160, 24, 24, 3)).astype(np.float32), 0, 1)
    return x[:96], x[96:]


def _outputs(data: bytes, x: np.ndarray, shapes: list[tuple]) -> list[np.ndarray]:
    """The file's outputs on ``x`` in the model's order, matched by shape (the
    converter may order them otherwise)."""
    from odml.litert import load_interpreter, run_outputs

    interp = load_interpreter(data)
    got = run_outputs(interp, x)
    out = []
    for s in shapes:
        k = next(i for i, g in enumerate(got) if g.shape[1:] == s)
        out.append(got.pop(k))
    return out


def _error(ref: list[np.ndarray], got: list[np.ndarray]) -> float:
    """Mean absolute error of each output relative to its spread, averaged."""
    return float(np.mean([np.abs(r - g).mean() / r.std() for r, g in zip(ref, got)]))


@pytest.fixture(scope="module")
def setup():
    from odml.compress.qat_targets import float_outputs
    from odml.exporters.tflite import convert, representative_from

    model = _model()
    xc, xv = _data()
    ref = float_outputs(model, xv)
    shapes = [r.shape[1:] for r in ref]
    ptq = convert(model, "int8", representative_from(xc, 64))
    return model, xc, xv, ref, shapes, _error(ref, _outputs(ptq, xv, shapes))


@pytest.fixture(scope="module")
def tuned(setup):
    from odml.compress.qat_targets import qat_finetune, qat_tflite

    model, xc, xv, ref, shapes, _ = setup
    seen = []
    qat = qat_finetune(model, xc, steps=150, batch=16, lr=1e-3, progress=lambda s, loss: seen.append((s, loss)))
    return seen, _error(ref, _outputs(qat_tflite(qat, xc), xv, shapes))


def test_fine_tuning_trains_and_converts(setup, tuned):
    model, ptq_err = setup[0], setup[-1]
    seen, err = tuned
    assert [s for s, _ in seen] == list(range(1, 151))
    assert np.mean([loss for _, loss in seen[-10:]]) < np.mean([loss for _, loss in seen[:10]])
    assert err <= 1.5 * ptq_err, (err, ptq_err)  # an int8 file whose outputs match the float model's by shape
    assert not any("quant" in layer.name for layer in model.layers)  # the float model is left as it was


@pytest.mark.xfail(reason="measured 2026-12-06: fine-tuning lowers the training loss but not the held-out int8 "
                          "error (1.16x PTQ at lr 1e-3, 1.03x at 1e-4 and 3e-3; docs/benchmarks/int8_qat.md)",
                   strict=False)
def test_fine_tuning_beats_post_training_int8(setup, tuned):
    ptq_err = setup[-1]
    err = tuned[1]
    assert err <= 0.7 * ptq_err, (err, ptq_err)


def test_step_zero_is_already_near_post_training_int8(setup):
    """The activation ranges come from the float model's tensors: step 0 is
    near PTQ, where tfmot's own [-6, 6] starting ranges clamp the head."""
    from odml.compress.qat_targets import (
        _refresh_weight_ranges,
        qat_finetune,
        qat_tflite,
        quantize_model,
    )

    model, xc, xv, ref, shapes, ptq_err = setup
    step0 = _error(ref, _outputs(qat_tflite(qat_finetune(model, xc, steps=0), xc), xv, shapes))
    assert step0 <= 2.0 * ptq_err, (step0, ptq_err)
    raw = quantize_model(model)
    _refresh_weight_ranges(raw)  # weights' ranges set, activations' left at tfmot's start
    untouched = _error(ref, _outputs(qat_tflite(raw, xc), xv, shapes))
    assert untouched > 3.0 * step0, (untouched, step0)


def test_refuses_a_keras3_model():
    import keras
    from odml.compress.qat_targets import QatError, qat_finetune

    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, keras.layers.Conv2D(2, 3)(inp))
    with pytest.raises(QatError) as e:
        qat_finetune(model, np.zeros((4, 8, 8, 3), np.float32), steps=1)
    msg = str(e.value)
    assert "\n" not in msg and "tf_keras" in msg and "keras.Functional" in msg


def test_refuses_a_model_with_nothing_to_quantize():
    from odml._tf import keras
    from odml.compress.qat_targets import QatError, qat_finetune

    K = keras()
    inp = K.Input((8, 8, 3))
    model = K.Model(inp, K.layers.Resizing(4, 4)(inp))
    with pytest.raises(QatError, match="none of the model's layers") as e:
        qat_finetune(model, np.zeros((4, 8, 8, 3), np.float32), steps=1)
    assert "\n" not in str(e.value)
