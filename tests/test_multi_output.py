"""Models of several outputs through export: the converted file's outputs put
in the order and under the names the family gives (a drop-in replacement for
a released file), checked against the real LiteRT interpreter."""

import numpy as np
import pytest

from odml.errors import CheckFailed


def _model():
    from odml._tf import keras

    K = keras()
    inp = K.Input((6,), name="x")
    h = K.layers.Dense(8, activation="relu")(inp)
    return K.Model(inp, [K.layers.Dense(3, name="small")(h), K.layers.Dense(5, name="large")(h)])


def test_keep_io_orders_and_names_the_outputs():
    from odml.exporters.tflite import convert, keep_io
    from odml.litert import load_interpreter, run_outputs
    from odml.zoo.family import OutputTensor

    m = _model()
    data = convert(m, "fp32", input_name="x")
    want = (OutputTensor("scores", (5,)), OutputTensor("boxes", (3,)))  # the other order, other names
    out = keep_io(data, "input_1", want, "test model")
    it = load_interpreter(out)
    assert [d["name"] for d in it.get_input_details()] == ["input_1"]
    assert [(d["name"], d["shape"].tolist()) for d in it.get_output_details()] == [("scores", [1, 5]),
                                                                                  ("boxes", [1, 3])]
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    small, large = (np.asarray(y) for y in m(x))
    got = run_outputs(it, x)
    np.testing.assert_allclose(got[0], large, atol=1e-5)  # values follow their tensors, not positions
    np.testing.assert_allclose(got[1], small, atol=1e-5)
    again = keep_io(out, "input_1", want, "test model")
    assert again == out  # a file already so is returned as it is


def test_keep_io_refuses_outputs_that_do_not_match():
    from odml.exporters.tflite import convert, keep_io
    from odml.zoo.family import OutputTensor

    data = convert(_model(), "fp32", input_name="x")
    with pytest.raises(CheckFailed, match=r"no output of shape \[1, 7\]"):
        keep_io(data, "x", (OutputTensor("a", (7,)), OutputTensor("b", (3,))), "test model")
    with pytest.raises(CheckFailed, match="2 outputs where 1 are expected"):
        keep_io(data, "x", (OutputTensor("a", (3,)),), "test model")


def test_onnx_export_checks_every_output(tmp_path):
    """The ONNX file made from such a .tflite keeps its outputs, named and in
    order, each checked against the source with onnxruntime."""
    from odml.exporters.onnx import export_onnx
    from odml.exporters.tflite import DEFAULT_THRESHOLDS, convert, keep_io
    from odml.zoo.family import OutputTensor

    m = _model()
    want = (OutputTensor("scores", (5,)), OutputTensor("boxes", (3,)))
    data = keep_io(convert(m, "fp32", input_name="x"), "input_1", want, "test model")
    x = np.random.default_rng(1).normal(size=(4, 6)).astype(np.float32)
    small, large = (np.asarray(y) for y in m(x))
    art = export_onnx(data, tmp_path / "m.onnx", x, [large, small], None, DEFAULT_THRESHOLDS["fp32"],
                      ["scores", "boxes"])
    assert art["parity_failed"] == [] and sorted(art["parity"]["outputs"]) == ["boxes", "scores"]
    assert art["parity"]["max_abs_err"] < 1e-4
    bad = export_onnx(data, tmp_path / "b.onnx", x, [small * 0 + 9, large * 0 + 9][::-1], None,
                      DEFAULT_THRESHOLDS["fp32"], ["scores", "boxes"])
    assert bad["parity_failed"] and bad["parity_failed"][0].startswith("scores:")
