"""A corpus of real pretrained graphs nobody here wrote (issue 38), each taken
through `odml export` (fp32 and fp16, parity judged per output by what the
output is), `odml inspect` and `odml bench`, as a user runs them: ONNX graphs
written by paddle2onnx (PP-OCR's classifier, DBNet detector and SVTR
recognizer; a document-orientation classifier) and by torch.onnx (a YOLOX-style
and a YOLOv8 detector), and float .tflite files of MediaPipe (hand landmarks,
palm and face detection, selfie segmentation). Where each comes from:
tests/pretrained.py."""

import pytest

from helpers import assert_one_line_error
from pretrained import fetch

# key -> (export options, the task, the measure that judges the first output)
ONNX = {
    "ocr_cls": (["--input-size", "48x192", "--input-range", "-1,1", "--data", "TEXT_LINES"], "classify", "top1"),
    "ocr_det": (["--input-size", "320x320", "--input-range", "-1,1"], "segment", "pixels"),
    "ocr_rec": (["--input-size", "48x320", "--input-range", "-1,1"], "sequence", "steps"),
    "orientation": (["--input-range", "-1,1"], "classify", "top1"),
    "captcha_det": (["--input-range", "0,255"], "detect", "error"),
    "nudenet": (["--input-size", "320x320"], "detect", "error"),
}
TFLITE = {
    "mp_hand": ([], "keypoints", "error"),
    "mp_palm": (["--input-range", "-1,1"], "detect", "error"),
    "mp_face_det": (["--input-range", "-1,1"], "detect", "error"),
    "mp_selfie": ([], "segment", "pixels"),
}


def text_lines(root, n=60, seed=0):
    """Printed text lines (48x192, dark on light), upright in 0/ and turned
    over in 180/: what PP-OCR's orientation classifier is for (its classes
    are '0' and '180')."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    words = ["invoice", "total", "2024", "Paris", "receipt", "amount", "hello", "world", "phone", "model", "export",
             "number", "street", "coffee", "12.50", "order", "name"]
    font = ImageFont.load_default(size=26)
    for cls in ("0", "180"):
        (root / cls).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        im = Image.new("RGB", (192, 48), tuple(int(v) for v in rng.integers(200, 256, 3)))
        ImageDraw.Draw(im).text((int(rng.integers(2, 12)), int(rng.integers(4, 14))), " ".join(rng.choice(words, 4)),
                                fill=tuple(int(v) for v in rng.integers(0, 60, 3)), font=font)
        cls = "0" if i % 2 == 0 else "180"
        (im if cls == "0" else im.rotate(180)).save(root / cls / f"{i}.png")
    return root


def _export(cli, key, opts, task, out):
    src = fetch(key)
    if "--data" in opts:  # generated beside the export
        opts = [str(text_lines(out.parent / "text_lines")) if o == "TEXT_LINES" else o for o in opts]
    r = cli("export", src, *opts, "--task", task, "--quantize", "fp32,fp16", "--parity-samples",
            "100" if "--data" in opts else "4", "--out", out, "--json")
    assert r.exit_code == 0, (key, r.stdout[-2000:], r.stderr[-2000:])
    return src, r.json()["export"]


def _source_outputs(src):
    """The output names of the source file, in order, as its own runtime lists them."""
    if src.suffix == ".onnx":
        import onnx

        g = onnx.load(str(src))
        return [o.name for o in g.graph.output]
    from odml.flatbuffer import read_tflite

    return [t.name for t in read_tflite(src).outputs]


def _check(cli, key, opts, task, measure, tmp_path):
    src, rep = _export(cli, key, opts, task, tmp_path / key)
    assert rep["output"]["task"] == task
    names = _source_outputs(src)
    for a in rep["artifacts"]:
        assert a["parity_failed"] == [], (key, a["precision"], a["parity_failed"])
        per = a["parity"]["outputs"]
        assert list(per) == names  # every output kept, named and ordered as in the source
        first = per[names[0]]
        assert first["measure"] == measure
        if measure == "top1":
            assert "top1_agreement" in first
            if "tflite_accuracy" in first:  # on inputs it is made for, the real model does its job, in every file
                assert first["keras_accuracy"] >= 0.9 and first["tflite_accuracy"] >= 0.9
        elif measure in ("pixels", "steps"):
            assert first["agreement"] >= (0.999 if a["precision"] == "fp32" else 0.99)
        assert first["rel_mean_err"] < (1e-3 if a["precision"] == "fp32" else 1e-2)
    fp16 = tmp_path / key / next(a["file"] for a in rep["artifacts"] if a["precision"] == "fp16")
    r = cli("inspect", fp16, "--json")
    assert r.exit_code == 0, r.stderr
    info = r.json()["inspect"]
    assert [o["name"] for o in info["outputs"]] == names  # the file drops in where the source was loaded by name
    benched = [fp16, src] if src.suffix == ".tflite" else [fp16]  # the original too (selfie's custom op: XNNPACK)
    r = cli("bench", *benched, "--runs", "3", "--warmup", "1", "--min-secs", "0", "--json")
    assert r.exit_code == 0, r.stderr
    assert len(r.json()["bench"]) == len(benched) and all(b["median_ms"] > 0 for b in r.json()["bench"])
    r = cli("inspect", src, "--json")
    assert r.exit_code == 0, r.stderr
    return rep


@pytest.mark.parametrize("key", list(ONNX))
def test_real_onnx_graphs_convert_with_parity_per_output(cli, key, tmp_path):
    opts, task, measure = ONNX[key]
    rep = _check(cli, key, opts, task, measure, tmp_path)
    assert rep["source"] == "onnx"
    assert rep["source_info"]["ops"] > 0 and rep["source_info"]["convert_s"] > 0


@pytest.mark.parametrize("key", list(TFLITE))
def test_real_float_tflite_files_requantize_with_parity_per_output(cli, key, tmp_path):
    opts, task, measure = TFLITE[key]
    rep = _check(cli, key, opts, task, measure, tmp_path)
    assert rep["source"] == "litert"


def test_a_task_that_does_not_fit_is_refused(cli, tmp_path):
    out = tmp_path / "never"
    assert_one_line_error(cli("export", fetch("mp_palm"), "--task", "classify", "--quantize", "fp32", "--out", out),
                          "palm_detection_lite.tflite", "--task classify")
    assert_one_line_error(cli("export", fetch("mp_selfie"), "--task", "sequence", "--quantize", "fp32", "--out",
                              out), "selfie_segmentation.tflite", "--task sequence")
    assert_one_line_error(cli("export", fetch("mp_palm"), "--task", "boxes", "--quantize", "fp32", "--out", out),
                          "--task boxes", "classify, segment")
    assert not out.exists()


def test_tflite_files_that_cannot_be_requantized_are_refused_in_one_line(cli, tmp_path):
    """Flex (TensorFlow) ops, a custom op LiteRT cannot run: exit 2 naming
    the op, nothing written."""
    from odml._tf import tf
    from odml.flatbuffer import pack_tflite, parse_tflite

    T = tf()
    f = T.function(lambda x: T.linalg.inv(T.eye(4) + T.abs(x[0, 0])), input_signature=[T.TensorSpec([1, 4])])
    c = T.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    c.target_spec.supported_ops = [T.lite.OpsSet.TFLITE_BUILTINS, T.lite.OpsSet.SELECT_TF_OPS]
    flex = tmp_path / "flex.tflite"
    flex.write_bytes(c.convert())
    out = tmp_path / "never"
    assert_one_line_error(cli("export", flex, "--quantize", "fp16", "--out", out), "flex.tflite", "FlexMatrixInverse")
    model = parse_tflite(fetch("mp_selfie").read_bytes()).raw
    for oc in model.operatorCodes:
        if oc.customCode:
            oc.customCode = b"SelfieSecretOp"
    custom = tmp_path / "custom.tflite"
    custom.write_bytes(pack_tflite(model, 400_000))
    assert_one_line_error(cli("export", custom, "--quantize", "fp16", "--out", out), "custom.tflite", "SelfieSecretOp")
    assert not out.exists()
