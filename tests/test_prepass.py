"""Cheap int8 pre-passes (issue 39 part 3, ``exporters/prepass.py``): bias
correction of a quantized file, percentile activation ranges, cross-layer
equalization (a tf_keras model and a float .tflite). The .tflite models
here are small float files built in the test (pure Python, no TensorFlow),
quantized by litert-quantizer as odml quantizes them; the figures on real
models are in docs/benchmarks/int8_prepasses.md."""

from __future__ import annotations

import numpy as np
import pytest

# ---------------------------------------------------------------- a small float .tflite, built by hand

_CONV, _DW, _FC = 3, 4, 9  # schema BuiltinOperator
_RELU, _RELU6 = 1, 3  # schema ActivationFunctionType


def _tflite(in_shape, layers) -> bytes:
    """A float32 .tflite: input (1, *in_shape) through ``layers``, each
    (kind, weights, bias, fused activation): "conv" (weights O,KH,KW,I,
    SAME, stride 1), "dw" (1,KH,KW,C), "fc" (O,I; the input flattened)."""
    from odml.flatbuffer import _schema, pack_tflite, sign

    s = _schema()
    m = s.ModelT()
    m.version, m.description = 3, b"test"
    m.buffers = [s.BufferT()]
    m.operatorCodes = []
    sg = s.SubGraphT()
    sg.tensors, sg.operators = [], []

    def tensor(name, shape, value=None):
        t = s.TensorT()
        t.name, t.shape, t.type = name.encode(), np.array(shape, np.int32), 0
        t.buffer = 0
        if value is not None:
            b = s.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(value, "<f4").tobytes(), np.uint8)
            m.buffers.append(b)
            t.buffer = len(m.buffers) - 1
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    def code(builtin):
        for k, oc in enumerate(m.operatorCodes):
            if oc.builtinCode == builtin:
                return k
        oc = s.OperatorCodeT()
        oc.builtinCode = oc.deprecatedBuiltinCode = builtin
        oc.version = 1
        m.operatorCodes.append(oc)
        return len(m.operatorCodes) - 1

    cur, shape = tensor("input", [1, *in_shape]), [1, *in_shape]
    sg.inputs = [cur]
    for k, (kind, w, b, act) in enumerate(layers):
        op = s.OperatorT()
        if kind == "fc":
            shape = [1, w.shape[0]]
            o = s.FullyConnectedOptionsT()
            op.opcodeIndex, op.builtinOptionsType = code(_FC), s.BuiltinOptions.FullyConnectedOptions
        else:
            o = s.Conv2DOptionsT() if kind == "conv" else s.DepthwiseConv2DOptionsT()
            o.padding, o.strideW, o.strideH, o.dilationWFactor, o.dilationHFactor = 0, 1, 1, 1, 1
            if kind == "dw":
                o.depthMultiplier = 1
            shape = [*shape[:3], w.shape[0] if kind == "conv" else w.shape[3]]
            op.opcodeIndex = code(_CONV if kind == "conv" else _DW)
            op.builtinOptionsType = s.BuiltinOptions.Conv2DOptions if kind == "conv" else \
                s.BuiltinOptions.DepthwiseConv2DOptions
        o.fusedActivationFunction = act
        op.builtinOptions = o
        out = tensor(f"layer{k}/{kind}", shape)
        op.inputs = [cur, tensor(f"layer{k}/w", w.shape, w), tensor(f"layer{k}/b", b.shape, b)]
        op.outputs = [out]
        sg.operators.append(op)
        cur = out
    sg.outputs = [cur]
    m.subgraphs = [sg]
    sign(m)
    return pack_tflite(m)


def _run(data, x):
    from odml.exporters.requantize import _outputs

    return _outputs(data, np.asarray(x, np.float32), "test")[0]


def _shifted_model():
    """A convolution (ReLU) then a fully connected layer whose int8 forms
    lose the same share of every output: in each output channel one weight
    sets the per-channel int8 scale (max |w| / 127) and every other weight
    is 0.45 of that scale, which rounds to 0. On positive inputs the lost
    weights were a systematic part of each output: int8 has a clear mean
    shift that bias correction can take off."""
    rng = np.random.default_rng(0)
    step = 1.0 / 127
    wc = np.full((8, 3, 3, 4), 0.45 * step, np.float32)
    wc[:, 1, 1, 0] = 1.0
    wf = np.full((6, 4 * 4 * 8), 0.45 * step, np.float32)
    wf[np.arange(6), rng.integers(0, wf.shape[1], 6)] = 1.0
    return _tflite((4, 4, 4), [("conv", wc, np.zeros(8, np.float32), _RELU),
                               ("fc", wf, np.zeros(6, np.float32), 0)])


def _quantized(fp32, x, qsv=None):
    from odml.exporters.requantize import _quantize, float32_flatbuffer
    from odml.flatbuffer import parse_tflite

    f = float32_flatbuffer(fp32, "test")
    return f, _quantize(f, parse_tflite(f, "test"), "int8", x, "test", qsv=qsv)


@pytest.mark.fast
def test_bias_correction_takes_off_int8s_mean_shift():
    from odml.exporters.prepass import bias_correct

    rng = np.random.default_rng(1)
    xc, xv = rng.random((32, 4, 4, 4), np.float32), rng.random((32, 4, 4, 4), np.float32)
    f, q = _quantized(_shifted_model(), xc)
    ref, before = _run(f, xv), _run(q, xv)
    shift = np.abs((before - ref).mean(0)).mean()
    assert shift > 0.05 * np.abs(ref).mean()  # int8 is clearly shifted: the lost weights were ~11% of each output
    fixed, n = bias_correct(f, q, xc)
    assert n == 2  # both ops corrected
    after = _run(fixed, xv)
    # on inputs it was not measured on: the mean error is a small part of what it was, and so is the mean |error|
    assert np.abs((after - ref).mean(0)).mean() < 0.15 * shift
    assert np.abs(after - ref).mean() < 0.5 * np.abs(before - ref).mean()
    # a correction of the wrong sign (or twice the shift) does not pass
    wrong, _ = bias_correct(f, q, xc, at="output")  # the other measure agrees here (the ReLU does not clip)
    assert np.abs((_run(wrong, xv) - ref).mean(0)).mean() < 0.15 * shift


@pytest.mark.fast
def test_bias_correction_keeps_the_files_inputs_outputs_and_function():
    from odml.exporters.prepass import bias_correct
    from odml.flatbuffer import parse_tflite
    from odml.litert import load_interpreter

    rng = np.random.default_rng(2)
    xc = rng.random((16, 4, 4, 4), np.float32)
    f, q = _quantized(_shifted_model(), xc)
    fixed, _ = bias_correct(f, q, xc, steps=1)
    a, b = parse_tflite(q, "q"), parse_tflite(fixed, "fixed")
    assert [(t.name, t.dtype, list(t.shape)) for t in a.inputs + a.outputs] == \
        [(t.name, t.dtype, list(t.shape)) for t in b.inputs + b.outputs]
    assert a.ops == b.ops and len(fixed) == pytest.approx(len(q), rel=0.05)
    load_interpreter(fixed, verify=True)  # LiteRT (XNNPACK) runs it
    ref = _run(f, xc)
    err = np.abs(_run(fixed, xc) - ref).mean()  # still the float model's function, closer than before
    assert err < 0.1 * np.abs(ref).mean() and err < np.abs(_run(q, xc) - ref).mean()
    # nothing to correct (a file with no int8 op matched): returned as it is
    same, n = bias_correct(f, f, xc)
    assert same == f and n == 0


@pytest.mark.fast
def test_percentile_ranges_are_narrower_than_min_max_on_outliers():
    from odml.exporters.prepass import percentile_ranges
    from odml.exporters.requantize import _calibrate, float32_flatbuffer
    from odml.flatbuffer import parse_tflite

    rng = np.random.default_rng(3)
    w = rng.normal(0, 0.3, (8, 1, 1, 4)).astype(np.float32)
    f = float32_flatbuffer(_tflite((16, 16, 4), [("conv", w, np.zeros(8, np.float32), 0)]), "test")
    x = rng.random((32, 16, 16, 4), np.float32)
    x[31, 3, 3, :] = 40.0  # one outlier pixel: 8 of the output's 65,536 values
    model = parse_tflite(f, "test")
    mm = _calibrate(f, model, x, "test")
    out = model.outputs[0].name
    assert out in mm and "input" in mm
    y = _run(f, x)
    for pct in (99.9, 99.99):
        p = percentile_ranges(f, model, x, mm, pct)
        lo, hi = float(np.min(p[out]["min"])), float(np.max(p[out]["max"]))
        assert y.min() < lo <= 0.0 <= hi < y.max() and (hi - lo) < 0.2 * (y.max() - y.min()), pct
        assert p["input"] is mm["input"]  # the input keeps its range
    # the percentiles of all values pooled, whatever the order (litert-quantizer's min-max is a moving average
    # of each input's min and max: the outlier input last widens it, first hardly does)
    ranges = []
    for order in (np.arange(32), np.arange(32)[::-1]):
        q = percentile_ranges(f, model, x[order], _calibrate(f, model, x[order], "test"), 99.99)
        ranges.append((float(np.min(q[out]["min"])), float(np.max(q[out]["max"]))))
    assert ranges[0] == pytest.approx(ranges[1])
    # narrow_only: within litert-quantizer's range (here the outlier input came first: its min-max is narrow)
    first = x[np.arange(32)[::-1]]
    mm_first = _calibrate(f, model, first, "test")
    q = percentile_ranges(f, model, first, mm_first, 99.99, narrow_only=True)
    assert float(np.max(q[out]["max"])) <= float(np.max(mm_first[out]["max"])) + 1e-6
    assert float(np.min(q[out]["min"])) >= float(np.min(mm_first[out]["min"])) - 1e-6
    # without outliers the percentiles keep most of the range
    clean = rng.random((32, 16, 16, 4), np.float32)
    p = percentile_ranges(f, model, clean, _calibrate(f, model, clean, "test"), 99.99)
    assert float(np.max(p[out]["max"])) > 0.8 * float(_run(f, clean).max())
    with pytest.raises(ValueError):
        percentile_ranges(f, model, clean, mm, 30.0)


# ---------------------------------------------------------------- cross-layer equalization


def _uneven(rng, shape, axis):
    """Weights whose channels along ``axis`` differ in range by 10^4."""
    w = rng.normal(0, 1, shape)
    scale = np.logspace(-2, 2, shape[axis])
    return (w * scale.reshape([-1 if i == axis else 1 for i in range(len(shape))])).astype(np.float32)


@pytest.mark.fast
def test_equalize_tflite_keeps_the_function_and_evens_the_ranges():
    from odml.exporters.prepass import equalize_tflite

    rng = np.random.default_rng(4)
    x = rng.random((16, 8, 8, 6), np.float32)
    layers = [("dw", _uneven(rng, (1, 3, 3, 6), 3), np.zeros(6, np.float32), _RELU),
              ("conv", rng.normal(0, 1, (5, 1, 1, 6)).astype(np.float32), np.zeros(5, np.float32), 0)]
    f = _tflite((8, 8, 6), layers)
    r = equalize_tflite(f, x)
    assert r.pairs == [("layer0/dw", "layer1/conv")] and not r.skipped and r.channels == (6, 6)
    assert r.spread[1] < r.spread[0] / 20  # each channel sqrt(r1 * r2): the spread about its square root
    a, b = _run(f, x), _run(r.model, x)
    assert np.abs(a - b).max() < 1e-4 * max(1.0, np.abs(a).max())
    # by activations: the ranges of what the convolution reads evened out instead, the function kept
    r = equalize_tflite(f, x, by="activations")
    assert r.pairs and r.spread[1] < r.spread[0] / 20
    assert np.abs(a - _run(r.model, x)).max() < 1e-4 * max(1.0, np.abs(a).max())
    with pytest.raises(ValueError):
        equalize_tflite(f, by="activations")  # needs calibration inputs
    # through a fused RELU6: without calibration inputs skipped; with them, only channels that stay below 6
    layers[0] = (*layers[0][:3], _RELU6)
    f6 = _tflite((8, 8, 6), layers)
    r = equalize_tflite(f6)
    assert not r.pairs and r.skipped and "no calibration inputs" in r.skipped[0][2] and r.model == f6
    r = equalize_tflite(f6, x)
    a = _run(f6, x)
    assert np.abs(a - _run(r.model, x)).max() < 1e-4 * max(1.0, np.abs(a).max())


@pytest.mark.slow
def test_equalize_keeps_the_keras_function_and_evens_the_per_channel_ranges():
    from odml._tf import keras
    from odml.exporters.prepass import equalize, equalize_report

    K = keras()
    K.utils.set_random_seed(0)
    rng = np.random.default_rng(5)
    inp = K.Input((12, 12, 3))
    h = K.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inp)
    h = K.layers.DepthwiseConv2D(3, padding="same", name="dw_relu")(h)
    h = K.layers.ReLU(name="relu")(h)
    h = K.layers.Conv2D(8, 1, name="pw_relu")(h)
    h = K.layers.DepthwiseConv2D(3, padding="same", name="dw_relu6")(h)
    h = K.layers.ReLU(6.0, name="relu6")(h)
    h = K.layers.Conv2D(8, 1, name="pw_relu6")(h)
    h = K.layers.DepthwiseConv2D(3, padding="same", name="dw_lin")(h)
    a = K.layers.Conv2D(4, 1, name="pw_lin")(h)
    b = K.layers.GlobalAveragePooling2D(name="gap")(h)  # dw_lin has two readers: not a pair
    m = K.Model(inp, [a, b])
    for name in ("dw_relu", "dw_relu6"):
        k, bias = m.get_layer(name).get_weights()
        m.get_layer(name).set_weights([_uneven(rng, k.shape, 2) * (0.05 if name == "dw_relu6" else 1), bias])
    x = rng.random((24, 12, 12, 3)).astype(np.float32)
    before = [np.asarray(y) for y in m(x)]
    weights = [w.copy() for w in m.get_weights()]

    r = equalize_report(m, x)
    assert ("dw_relu", "pw_relu") in r.pairs and ("dw_relu6", "pw_relu6") in r.pairs
    assert [s[0] for s in r.skipped] == ["dw_lin"] and "2 layers" in r.skipped[0][2]
    assert r.spread[1] < r.spread[0] / 10
    after = [np.asarray(y) for y in r.model(x)]
    for u, v in zip(before, after):
        assert np.abs(u - v).max() < 1e-4 * max(1.0, float(np.abs(u).max()))
    assert all(np.array_equal(u, v) for u, v in zip(weights, m.get_weights()))  # the original is left as it is
    spread = [np.abs(mm.get_layer("dw_relu").get_weights()[0]).max((0, 1, 3)) for mm in (m, r.model)]
    assert spread[1].max() / spread[1].min() < spread[0].max() / spread[0].min() / 20  # about its square root

    # by activations (the ranges of what each Conv2D reads): the function kept too
    r = equalize_report(m, x, by="activations")
    assert len(r.pairs) == 2
    for u, v in zip(before, [np.asarray(y) for y in r.model(x)]):
        assert np.abs(u - v).max() < 1e-4 * max(1.0, float(np.abs(u).max()))

    # without calibration inputs the ReLU6 pair is left alone (ReLU6 is not scale-equivariant)
    new, n = equalize(m)
    assert n == 1
    assert np.array_equal(new.get_layer("dw_relu6").get_weights()[0], m.get_layer("dw_relu6").get_weights()[0])
