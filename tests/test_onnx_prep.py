"""Real ONNX graphs from any exporter convert (issue 38): zoo/onnx_prep.py
prepares each graph (input shape fixed, simplified, names made TensorFlow
scopes, constant outputs repaired) and converts it with onnx2tf, retrying
with other settings; the Keras model must give what onnxruntime gives on
the original file, output by output, under the original output names. The
graphs (tests/pretrained.py) were written by paddle2onnx and torch.onnx;
bad graphs get one line through the real CLI, and nothing is written."""

import os

import numpy as np
import pytest
from helpers import assert_one_line_error
from pretrained import fetch

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

# key -> the --input-size it converts at
CORPUS = {"ocr_cls": "48x192", "ocr_det": "320x320", "ocr_rec": "48x320", "orientation": "224",
          "captcha_det": "416", "nudenet": "320", "captcha_rec": "64x256"}


def text_images(n, h, w, seed):
    """White pages of black random text in [-1, 1] (PP-OCR's input range):
    a text detector's probability map is 0 everywhere on noise, which leaves
    nothing to compare."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    font = ImageFont.load_default(size=max(10, h // 12))
    out = []
    for _ in range(n):
        im = Image.new("RGB", (w, h), (255, 255, 255))
        d = ImageDraw.Draw(im)
        for _ in range(6):
            s = "".join(rng.choice(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "), 12))
            d.text((int(rng.integers(0, w // 3)), int(rng.integers(0, h - 20))), s, fill=(0, 0, 0), font=font)
        out.append(np.asarray(im, np.float32) / 127.5 - 1)
    return np.stack(out)


def inputs(key, hwc, n=2, seed=0):
    """``n`` inputs of the graph ``key`` (NHWC): random pixels in [0, 1), or
    text pages for the detector."""
    if key == "ocr_det":
        return text_images(n, hwc[0], hwc[1], seed)
    return np.random.default_rng(seed).random((n, *hwc), dtype=np.float32)


def keras_outputs(om, x):
    """The Keras model's outputs on ``x``: in one call where it takes any
    batch, else one sample at a time."""
    def run(b):
        ys = om.model(b)
        return [np.asarray(y) for y in (ys if isinstance(ys, (list, tuple)) else [ys])]

    if om.info["batch"] is None:
        return run(x)
    per = [run(x[i:i + 1]) for i in range(len(x))]
    return [np.concatenate([p[k] for p in per]) for k in range(len(per[0]))]


def relative_errors(om, x):
    """Per output: the mean absolute difference from onnxruntime, over the spread of onnxruntime's."""
    ys, refs = keras_outputs(om, x), om.reference(x)
    assert [y.shape for y in ys] == [r.shape for r in refs]
    return [float(np.mean(np.abs(y - r)) / np.std(r)) for y, r in zip(ys, refs)]


@pytest.mark.parametrize("key", list(CORPUS))
def test_real_graphs_convert_and_match_onnxruntime(key):
    import onnx
    from odml.zoo.onnx_prep import OnnxModel

    src = fetch(key)
    om = OnnxModel(src, CORPUS[key])
    names = [o.name for o in onnx.load(str(src)).graph.output]
    assert om.output_names == names and len(om.model.outputs) == len(names)
    assert om.model.output_names == [n.replace(":", "__") for n in names]  # onnx2tf's layers keep the names
    assert len(om.output_shapes) == len(names) and all(isinstance(d, int) for s in om.output_shapes for d in s)
    x = inputs(key, om.hwc)
    errs = relative_errors(om, x)
    assert max(errs) < 1e-3, (key, errs, om.info)
    info = om.info
    assert info["ops"] == len(onnx.load(str(src)).graph.node) and 0 < info["ops_prepared"] <= info["ops"]
    assert info["exporter"] and info["convert_s"] > 0 and isinstance(info["settings"], dict)
    assert any(s.startswith("simplified with onnxslim") for s in info["steps"]), info["steps"]
    assert om.params > 0 and om.macs > 0


def _graph(path, inputs, outputs, nodes, inits=(), opsets=(("", 17),)):
    import onnx
    from onnx import helper

    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def _multi_output(path):
    """Three outputs: class scores, an NCHW feature map named with an '@'
    (not a TensorFlow scope) and a constant (anchors, an initializer)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.normal(0, 0.3, (8, 10)).astype(np.float32), "G"),
             numpy_helper.from_array(np.arange(8, dtype=np.float32).reshape(4, 2), "anchors")]
    nodes = [helper.make_node("Conv", ["x", "W"], ["feat@1"], pads=[1, 1, 1, 1], strides=[2, 2], name="conv:0"),
             helper.make_node("Relu", ["feat@1"], ["r"], name="Relu@0"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "G"], ["logits"])]
    return _graph(path, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                  [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10]),
                   helper.make_tensor_value_info("feat@1", TensorProto.FLOAT, ["N", 8, "h", "w"]),
                   helper.make_tensor_value_info("anchors", TensorProto.FLOAT, [4, 2])], nodes, inits)


def test_several_outputs_keep_their_names_order_and_layout(tmp_path):
    from odml.zoo.onnx_prep import OnnxModel

    om = OnnxModel(_multi_output(tmp_path / "multi.onnx"), "24x40")
    assert om.output_names == ["logits", "feat@1", "anchors"]
    assert om.info["renamed_outputs"] == {"feat@1": "feat_1"}
    assert any("Identity" in s and "anchors" in s for s in om.info["steps"])
    assert om.output_shapes[:2] == [(10,), (12, 20, 8)]  # the NCHW map comes out NHWC, like the reference
    x = np.random.default_rng(0).random((2, 24, 40, 3), dtype=np.float32)
    ys, refs = keras_outputs(om, x), om.reference(x)
    assert [r.shape for r in refs][:2] == [(2, 10), (2, 12, 20, 8)]
    for y, r in zip(ys, refs):
        np.testing.assert_allclose(y, r, atol=1e-5)


def test_a_dynamic_batch_stays_dynamic_where_it_converts(tmp_path):
    """A graph with a dynamic batch converts to a model of any batch (a
    teacher trains on batches); height and width come from --input-size."""
    from odml.zoo.onnx_prep import OnnxModel
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "W")
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])]
    p = _graph(tmp_path / "fcn.onnx", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3, "?", "?"])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 4, "?", "?"])], nodes, [w])
    om = OnnxModel(p, "16x24")
    assert om.info["batch"] is None and om.model.inputs[0].shape[1:] == (16, 24, 3)
    x = np.random.default_rng(1).random((3, 16, 24, 3), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(om.model(x)), om.reference(x)[0], atol=1e-5)


def test_a_failure_inside_onnx2tf_names_the_op_and_node_and_stops(tmp_path, monkeypatch):
    """An op onnx2tf has no converter for, reached inside onnx2tf (the
    check before it left out): one line naming op and node, after one try
    (no setting gives it a converter)."""
    from odml.zoo import onnx_prep
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", ["x"], ["r"], name="first"),
             helper.make_node("FancyActivation", ["r"], ["y"], name="fancy_1", domain="com.example")]
    p = _graph(tmp_path / "odd.onnx", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])], nodes,
               opsets=(("", 17), ("com.example", 1)))
    runs = []
    real = onnx_prep.run_onnx2tf
    monkeypatch.setattr(onnx_prep, "_onnx2tf_ops", lambda: None)
    monkeypatch.setattr(onnx_prep, "_session", lambda p, error: None)  # onnxruntime has no FancyActivation either
    monkeypatch.setattr(onnx_prep, "run_onnx2tf", lambda p, a: runs.append(a) or real(p, a))
    with pytest.raises(onnx_prep.OnnxGraphError) as e:
        onnx_prep.OnnxModel(p)
    msg = str(e.value)
    assert "onnx2tf cannot convert" in msg and "FancyActivation node fancy_1" in msg and "\n" not in msg
    assert len(runs) == 1


def test_a_failed_conversion_is_retried_with_other_settings(tmp_path, monkeypatch):
    """onnx2tf takes every setting odml retries with, and a conversion that
    fails with its defaults is tried again with them (the first that works
    is reported)."""
    import onnx
    from odml.zoo import onnx_prep

    p = _multi_output(tmp_path / "m.onnx")
    real = onnx_prep.run_onnx2tf
    seen = []

    def fail_defaults(path, a):
        seen.append(dict(a.settings))
        if not a.settings:  # as if onnx2tf had raised at the first Conv
            a.failure = ("Conv", "conv__0", "simulated")
            return a
        return real(path, a)

    monkeypatch.setattr(onnx_prep, "run_onnx2tf", fail_defaults)
    om = onnx_prep.OnnxModel(p, "24x40")
    assert om.info["settings"] == onnx_prep.RETRIES[0] and seen[-1] == onnx_prep.RETRIES[0]
    prep = onnx_prep.prepare(p, onnx.load(str(p)), "24x40")
    for settings in onnx_prep.RETRIES[1:]:
        a = real(p, onnx_prep.Attempt(prep, settings))
        assert a.model is not None, (settings, a.failure)


def test_bad_graphs_get_one_line_and_nothing_is_written(cli, tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    out = tmp_path / "never"
    w = numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.float32), "W")
    conv = [helper.make_node("Conv", ["x", "W"], ["y"], pads=[1, 1, 1, 1])]

    def export(p, *extra):
        return cli("export", p, "--out", out, "--quantize", "fp32", *extra)

    # a dynamic dimension --input-size does not fix: the channels
    p = _graph(tmp_path / "chan.onnx", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "C", 32, 32])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 32, 32])], conv, [w])
    assert_one_line_error(export(p, "--input-size", "32x32"), "chan.onnx", "input x", "dimension 1", "'C'")
    # two image inputs
    two = [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Conv", ["s", "W"], ["y"])]
    p = _graph(tmp_path / "two.onnx", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 8, 8])
                                       for n in ("a", "b")],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])], two, [w])
    assert_one_line_error(export(p), "two.onnx", "has 2 inputs (a, b)", "one image input")
    # an input that is not an image
    p = _graph(tmp_path / "seq.onnx", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 8])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 8])],
               [helper.make_node("Relu", ["x"], ["y"])])
    assert_one_line_error(export(p), "seq.onnx", "input x has 3 dimensions")
    # an op the converter cannot map
    odd = [helper.make_node("Relu", ["x"], ["r"]),
           helper.make_node("FancyActivation", ["r"], ["y"], name="fancy_1", domain="com.example")]
    p = _graph(tmp_path / "odd.onnx", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])], odd,
               opsets=(("", 17), ("com.example", 1)))
    assert_one_line_error(export(p), "odd.onnx", "onnx2tf cannot convert", "op FancyActivation", "node fancy_1")
    assert not out.exists()
