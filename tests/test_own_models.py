"""Your own models through every verb, built in the tests as a user builds
them: Keras Applications architectures saved with Keras 3 and with tf_keras
(.keras, .h5, SavedModel), a Keras 3 model with its preprocessing inside, a
subclassed Keras 3 model, an ONNX graph exported from one of them and one
written with onnx.helper (NCHW, as PyTorch exports it). Each goes through
export (every precision, parity), bench, and compress as a teacher; bad
files get one line."""

import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_line_error, make_image_folder

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
PRECISIONS = "fp32,fp16,dynamic,int8"


def _keras3():
    from odml._tf import tf

    tf()
    import keras

    return keras


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The models, saved once for the module."""
    from odml._tf import keras as tfk
    from odml.data.images import load_images

    d = tmp_path_factory.mktemp("own")
    keras = _keras3()
    keras.utils.set_random_seed(0)
    out = {}
    # Keras Applications, untrained (weights=None), Keras 3 and tf_keras
    m3 = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10)
    m3.save(d / "mnv2_k3.keras")
    out["mnv2_k3"] = d / "mnv2_k3.keras"
    keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), weights=None, classes=10,
                                        include_preprocessing=False).save(d / "mnv3_k3.keras")
    keras.applications.EfficientNetB0(input_shape=(32, 32, 3), weights=None, classes=10).save(d / "effb0_k3.keras")
    out.update(mnv3_k3=d / "mnv3_k3.keras", effb0_k3=d / "effb0_k3.keras")
    k2 = tfk()
    m2 = k2.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10)
    m2.save(d / "mnv2_tfk.keras")
    m2.save(d / "mnv2_tfk.h5")
    m2.save(d / "mnv2_tfk_sm")
    out.update(mnv2_tfk=d / "mnv2_tfk.keras", mnv2_h5=d / "mnv2_tfk.h5", mnv2_sm=d / "mnv2_tfk_sm")
    # a Keras 3 model with its preprocessing inside (raw pixels in), trained briefly on the digits
    ds = load_images("digits", (32, 32), 3, 0.2, 0)
    inp = keras.Input((32, 32, 3))
    h = keras.layers.Rescaling(1 / 255.0)(inp)
    h = keras.layers.Normalization(mean=0.3, variance=0.1)(h)
    h = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(h)
    h = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    pre = keras.Model(inp, keras.layers.Dense(10)(h))
    pre.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    pre.fit(ds.x_train.astype("float32"), ds.y_train, epochs=6, batch_size=64, verbose=0)
    out["pre_acc"] = float(pre.evaluate(ds.x_val.astype("float32"), ds.y_val, verbose=0)[1])
    pre.save(d / "pre_k3.keras")
    out["pre_k3"] = d / "pre_k3.keras"
    # a subclassed Keras 3 model (registered, as Keras 3 needs to load it again)
    net = Subclassed()
    net(np.zeros((1, 32, 32, 3), "float32"))
    net.save(d / "sub_k3.keras")
    out["sub_k3"] = d / "sub_k3.keras"
    # ONNX: one exported from the trained Keras 3 model (odml export --format onnx: NHWC), one written by hand (NCHW)
    out["nchw"] = _nchw_onnx(d / "nchw.onnx")
    return out


def _subclassed_class():
    keras = _keras3()

    @keras.saving.register_keras_serializable(package="odml_tests")
    class Subclassed(keras.Model):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.conv = keras.layers.Conv2D(8, 3, strides=2, activation="relu")
            self.pool = keras.layers.GlobalAveragePooling2D()
            self.out = keras.layers.Dense(10)

        def call(self, x):
            return self.out(self.pool(self.conv(x)))

    return Subclassed


Subclassed = _subclassed_class()


def _nchw_onnx(path, dynamic=False, op="Relu", domain=""):
    """Conv -> activation -> GlobalAveragePool -> Flatten -> Gemm over an NCHW input, as PyTorch exports it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "W"),
             numpy_helper.from_array(np.zeros(8, np.float32), "B"),
             numpy_helper.from_array(rng.normal(0, 0.3, (8, 10)).astype(np.float32), "G"),
             numpy_helper.from_array(np.zeros(10, np.float32), "GB")]
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node(op, ["c"], ["r"], domain=domain),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "G", "GB"], ["logits"])]
    dims = ["N", 3, "H", "W"] if dynamic else ["N", 3, 32, 32]
    g = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    m = helper.make_model(g, opset_imports=opsets)
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def _export(cli, model, out, *extra):
    r = cli("export", model, "--data", "digits", "--quantize", PRECISIONS, "--calibration-samples", "50",
            "--parity-samples", "40", "--out", out, "--json", *extra)
    assert r.exit_code == 0, r.stderr
    rep = r.json()["export"]
    assert [a["precision"] for a in rep["artifacts"] if a["format"] == "tflite"] == PRECISIONS.split(",")
    assert all(a["parity_failed"] == [] for a in rep["artifacts"])
    return rep


@pytest.mark.parametrize("key, runtime, teach", [
    ("mnv2_k3", "keras3", False), ("mnv3_k3", "keras3", False), ("effb0_k3", "keras3", False),
    ("mnv2_tfk", "keras", False), ("mnv2_h5", "keras", False), ("mnv2_sm", "keras", True)])
def test_untrained_applications_export_every_precision(cli, tmp_path, models, key, runtime, teach):
    """The issue's failing case: untrained Keras Applications models
    (near-uniform probabilities) export in every precision; their agreement
    is labelled, not failed; fp32 agrees to 1e-6."""
    rep = _export(cli, models[key], tmp_path / "e")
    assert rep["source"] == runtime and rep["family"] == "external" and rep["input_shape"] == [32, 32, 3]
    fp32 = rep["artifacts"][0]["parity"]
    assert fp32["max_abs_err"] < 1e-6 and fp32["note"].startswith("untrained")
    assert rep["data"]["split"].startswith("stratified")
    if key == "effb0_k3":  # EfficientNet rescales and normalizes inside: it reads raw pixels
        assert rep["input"]["range"] == [0.0, 255.0]
    r = cli("bench", tmp_path / "e" / rep["artifacts"][-1]["file"], "--runs", "3", "--min-secs", "0", "--json")
    assert r.exit_code == 0 and r.json()["bench"][0]["median_ms"] > 0
    if teach:
        _compress(cli, models[key], tmp_path / "c")  # Keras 3 teachers: pre_k3 and sub_k3 below


def test_keras3_model_with_preprocessing_inside(cli, tmp_path, models):
    """Rescaling and Normalization inside: odml feeds raw pixels (0..255), the
    int8 file agrees on what the model predicts, bench scores it on the
    digits like Keras did, and it teaches odml's students."""
    rep = _export(cli, models["pre_k3"], tmp_path / "e", "--format", "tflite,onnx")
    assert rep["input"]["range"] == [0.0, 255.0] and rep["input"]["mean"] == 0.0 and rep["input"]["std"] == 1.0
    i8 = next(a for a in rep["artifacts"] if a["precision"] == "int8")
    assert i8["parity"]["top1_meaningful"] and i8["parity"]["top1_agreement"] >= 0.85
    assert abs(i8["parity"]["keras_accuracy"] - models["pre_acc"]) < 0.15  # 40 images against Keras' 359
    onnx_file = tmp_path / "e" / "pre_k3.onnx"
    r = cli("bench", tmp_path / "e" / "pre_k3_fp32.tflite", models["pre_k3"], "--data", "digits", "--runs", "3",
            "--min-secs", "0", "--json")
    assert r.exit_code == 0, r.stderr
    fp32, keras_file = r.json()["bench"]
    assert fp32["classification"]["accuracy"] == pytest.approx(models["pre_acc"], abs=0.01)
    assert keras_file["converted"] == "fp32 .tflite" and keras_file["classification"]["accuracy"] == \
        pytest.approx(fp32["classification"]["accuracy"], abs=1e-9)
    # the ONNX odml wrote from it (NHWC) comes back through onnx2tf, parity against onnxruntime
    rep2 = _export(cli, onnx_file, tmp_path / "e2", "--input-range", "0,255")
    assert rep2["source"] == "onnx" and rep2["artifacts"][0]["parity"]["top1_agreement"] == 1.0
    _compress(cli, models["pre_k3"], tmp_path / "c", *SHARED)  # a Keras 3 teacher's students as widths of one network


# two widths of one network, trained in one graph (issue 44)
SHARED = ("--students", "mobilenet_edgetpu_v2_tiny@0.25,mobilenet_edgetpu_v2_tiny@0.35", "--shared")


def _compress(cli, teacher, out, *extra):
    students = () if "--students" in extra else ("--students", "mobilenet_edgetpu_v2_tiny@0.25")
    r = cli("compress", teacher, "--data", "digits", *students, "--epochs", "1", "--runs", "3", "--out", out, "--json",
            *extra)
    assert r.exit_code == 0, r.stderr
    rep = r.json()["compress"]
    for s in rep["students"]:
        assert s["int8_accuracy"] is not None and (out / s["tflite"]).is_file() and rep["teacher"]["params"] > 0
    if "--shared" in extra:
        assert len(rep["students"]) == 2 and rep["phases"]["shared"]["graphs"] == 1, rep["phases"]
    return rep


def test_subclassed_keras3_model(cli, tmp_path, models, cli_proc):
    rep = _export(cli, models["sub_k3"], tmp_path / "e")
    assert rep["source"] == "keras3" and rep["outputs"] == 10
    _compress(cli, models["sub_k3"], tmp_path / "c")
    # another process has no class to rebuild it from: one line that says so
    r = cli_proc("export", models["sub_k3"], "--quantize", "fp32", "--out", tmp_path / "never")
    assert_one_line_error(r, "sub_k3.keras", "Keras 3", "register_keras_serializable")
    assert not (tmp_path / "never").exists()


def test_onnx_from_pytorch_layout(cli, tmp_path, models, monkeypatch):
    """An NCHW graph with a dynamic batch: onnx2tf makes it NHWC; every file's
    parity is against onnxruntime on the same inputs; bench and compress take it."""
    rep = _export(cli, models["nchw"], tmp_path / "e")
    assert rep["source"] == "onnx" and rep["input_shape"] == [32, 32, 3]
    assert rep["artifacts"][0]["parity"]["max_abs_err"] < 1e-4 and rep["artifacts"][0]["parity"]["top1_meaningful"]
    r = cli("bench", models["nchw"], "--runs", "3", "--min-secs", "0", "--json")
    assert r.exit_code == 0 and r.json()["bench"][0]["model"] == str(models["nchw"])
    _compress(cli, models["nchw"], tmp_path / "c", *SHARED)  # an ONNX teacher's students as widths of one network
    _nchw_onnx(tmp_path / "dyn.onnx", dynamic=True)
    monkeypatch.chdir(tmp_path)  # a path relative to where the user is (onnx2tf works in a folder of its own)
    r = cli("export", "dyn.onnx", "--quantize", "fp32", "--input-size", "24x40", "--out", "d", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["export"]["input_shape"] == [24, 40, 3]


def test_bad_own_models(cli, tmp_path, models):
    out = tmp_path / "never"
    keras = _keras3()
    # a Keras version odml does not read
    odd = tmp_path / "future.keras"
    with zipfile.ZipFile(odd, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "9.0.0"}))
        z.writestr("config.json", "{}")
    assert_one_line_error(cli("export", odd, "--out", out), "future.keras", "Keras 9.0.0", "Keras 3")
    # two inputs where one is expected
    a, b = keras.Input((8, 8, 3)), keras.Input((8, 8, 3))
    keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.Add()([a, b])))).save(
        tmp_path / "two.keras")
    assert_one_line_error(cli("export", tmp_path / "two.keras", "--out", out), "two.keras", "2 inputs")
    # an ONNX graph whose spatial size is dynamic, and one with an op onnx2tf cannot map
    dyn = _nchw_onnx(tmp_path / "dyn.onnx", dynamic=True)
    assert_one_line_error(cli("export", dyn, "--out", out), "dyn.onnx", "dynamic size", "--input-size")
    odd_op = _nchw_onnx(tmp_path / "odd.onnx", op="FancyActivation", domain="com.example")
    assert_one_line_error(cli("export", odd_op, "--out", out), "odd.onnx", "onnx2tf cannot convert", "FancyActivation")
    # a graph onnx2tf "repairs" (its output named as its input): refused, and the user's file is left as it was
    # (onnx2tf writes its repairs over the file it converts; odml gives it a copy)
    fixed = tmp_path / "same_name.onnx"
    shutil.copyfile(Path(__file__).parent / "fuzz_regressions" / "onnx_output_named_as_input.onnx", fixed)
    before = fixed.read_bytes()
    assert_one_line_error(cli("export", fixed, "--out", out), "same_name.onnx", "does not convert as an image model")
    assert fixed.read_bytes() == before
    # a graph onnxruntime refuses (an opset from the future)
    assert_one_line_error(cli("export", Path(__file__).parent / "fuzz_regressions" / "onnx_opset_79.onnx",
                              "--out", out), "onnx_opset_79.onnx", "onnxruntime cannot load", "Opset 79")
    # an element type no runtime knows: inspect, export and bench refuse it in the same words
    unknown = Path(__file__).parent / "fuzz_regressions" / "onnx_unknown_elem_type2.onnx"
    for verb in (["inspect"], ["export", "--out", out], ["bench"]):
        assert_one_line_error(cli(verb[0], unknown, *verb[1:]), "onnx_unknown_elem_type2.onnx",
                              "malformed ONNX model", "unknown element type")
    # a teacher whose outputs are not class scores
    x = keras.Input((16, 16, 3))
    keras.Model(x, keras.layers.Conv2D(4, 3)(x)).save(tmp_path / "fmap.keras")
    assert_one_line_error(cli("compress", tmp_path / "fmap.keras", "--out", out), "fmap.keras", "not a classifier")
    # a model file is not a zoo entry: no --classes / --width
    assert_one_line_error(cli("export", models["mnv2_k3"], "--width", "0.5", "--out", out), "--width")
    # training a Keras 3 teacher jointly needs tf_keras
    assert_one_line_error(cli("compress", models["pre_k3"], "--joint", "--out", out), "distill.joint", "tf_keras",
                          "--fixed-teacher")
    assert not out.exists()


def test_validation_data_of_your_own(cli, tmp_path):
    """--val-data for train, export parity and compress; bench --split all; a
    validation set with other classes is refused."""
    train = make_image_folder(tmp_path / "train", classes=("cat", "dog"), per_class=10)
    val = make_image_folder(tmp_path / "val", classes=("cat", "dog"), per_class=4)
    other = make_image_folder(tmp_path / "other", classes=("cat", "cow"), per_class=4)
    model = tmp_path / "m.keras"
    r = cli("train", "mobilenet_edgetpu_v2_tiny", "--input-size", "32", "--width", "0.25", "--data", train,
            "--val-data", val, "--epochs", "1", "--out", model, "--json")
    assert r.exit_code == 0, r.stderr
    res = r.json()["train"]
    assert (res["train_samples"], res["val_samples"]) == (20, 8)
    assert res["data"]["split"] == f"train: all of {train}; validation: all of {val}"
    r = cli("export", model, "--data", train, "--val-data", val, "--quantize", "fp32", "--out", tmp_path / "e",
            "--json")
    assert r.exit_code == 0, r.stderr
    rep = r.json()["export"]
    assert rep["artifacts"][0]["parity"]["samples"] == 8 and "validation: all of" in rep["data"]["split"]
    r = cli("bench", tmp_path / "e" / "m_fp32.tflite", "--data", val, "--split", "all", "--runs", "3", "--json")
    assert r.exit_code == 0 and r.json()["bench"][0]["classification"]["images"] == 8
    r = cli("compress", model, "--data", train, "--val-data", val, "--students", "mobilenet_edgetpu_v2_tiny@0.25",
            "--epochs", "1", "--runs", "3", "--out", tmp_path / "c", "--json")
    assert r.exit_code == 0, r.stderr
    assert "validation: all of" in r.json()["compress"]["data"]["split"]
    for args in (["train", "mobilenet_edgetpu_v2_tiny", "--input-size", "32", "--data", train, "--val-data", other,
                  "--out", tmp_path / "x.keras"],
                 ["export", model, "--data", train, "--val-data", other, "--out", tmp_path / "x"],
                 ["compress", model, "--data", train, "--val-data", other, "--out", tmp_path / "x"]):
        assert_one_line_error(cli(*args), "other", "differ")
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.keras").exists()
    assert_one_line_error(cli("bench", tmp_path / "e" / "m_fp32.tflite", "--data", val, "--split", "most"), "--split")


@pytest.mark.fast
def test_parity_judges_untrained_outputs_on_an_absolute_scale():
    from odml.exporters.tflite import DEFAULT_THRESHOLDS, judge, parity

    rng = np.random.default_rng(0)
    flat = 0.1 + rng.normal(0, 1e-6, (50, 10))  # an untrained softmax: every class 0.1
    p = parity(flat, flat + rng.normal(0, 1e-3, flat.shape))  # int8's resolution of such an output
    assert p["note"].startswith("untrained") and not p["top1_meaningful"] and p["top1_agreement"] < 0.5
    assert judge(p, DEFAULT_THRESHOLDS["int8"]) == []
    assert judge(parity(flat, flat + 0.2), DEFAULT_THRESHOLDS["int8"])  # broken, even if untrained
    trained = rng.normal(0, 3, (50, 10))
    close = parity(trained, trained + 1e-7)
    assert judge(close, DEFAULT_THRESHOLDS["fp32"]) == [] and close["top1_meaningful"]
    assert judge(parity(trained, trained + 1e-7), type(DEFAULT_THRESHOLDS["fp32"])(1.0, 0.0)) == []  # agrees to 1e-6
    assert judge(parity(trained, rng.normal(0, 3, (50, 10))), DEFAULT_THRESHOLDS["int8"])  # unrelated outputs
    swapped = trained.copy()  # a file that swaps the top two classes of a third of the inputs, and nothing else
    for i in range(0, 50, 3):
        a, b = np.argsort(swapped[i])[-2:]
        swapped[i, [a, b]] = swapped[i, [b, a]]
    p = parity(trained, swapped)
    assert p["top1_meaningful"] and p["top1_agreement_clear"] < 0.7
    assert any("top-1" in f for f in judge(p, DEFAULT_THRESHOLDS["int8"]))


def test_readme_untrained_export_works_as_written(cli_proc, tmp_path):
    r = cli_proc("export", "mobilenet_edgetpu_v2_s", "--input-size", "224", "--calibration", "random", "--quantize",
                 "int8", "--out", tmp_path / "s", timeout=600)
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "s" / "mobilenet_edgetpu_v2_s_int8.tflite").is_file() and "untrained" in r.stdout


def test_bench_memory_is_the_models_own(cli, tmp_path, models):
    """The benchmark process's peak memory is its own, not that of the
    process (with TensorFlow loaded) it was started from."""
    r = cli("export", models["mnv2_k3"], "--quantize", "fp32", "--parity-samples", "4", "--out", tmp_path / "e")
    assert r.exit_code == 0, r.stderr
    r = cli("bench", tmp_path / "e" / "mnv2_k3_fp32.tflite", "--runs", "3", "--min-secs", "0", "--json")
    import odml._tf  # noqa: F401  (this process has TensorFlow loaded)

    assert "tensorflow" in sys.modules and r.json()["bench"][0]["peak_rss_mb"] < 400


def test_search_places_your_model_beside_the_front(cli, tmp_path, models):
    space = tmp_path / "s.json"
    space.write_text(json.dumps({"name": "t", "input_size": 32, "stem": {"filters": [8], "kernel": [3], "stride": 2},
                                 "head": {"filters": [32]}, "stages": [{"stride": 2, "filters": [8], "depth": [1],
                                 "choices": {"type": ["ibn_dw"], "kernel": [3, 5], "expansion": [2]}}]}))
    r = cli("search", "--space", space, "--data", "digits", "--target-ms", "1", "--trials", "1", "--epochs", "1",
            "--runs", "3", "--baseline", models["pre_k3"], "--out", tmp_path / "run", "--json")
    assert r.exit_code == 0, r.stderr
    (b,) = r.json()["search"]["baselines"]
    assert b["name"] == "pre_k3.keras" and b["latency_ms"] > 0 and 0 <= b["accuracy"] <= 1
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["baselines"][0]["name"] == "pre_k3.keras"


def test_a_float_tflite_from_another_team_is_quantized_and_teaches(cli, tmp_path, models):
    """The usual hand-over: a float .tflite with no odml card (TF's converter,
    from a trained Keras 3 model). odml re-quantizes it with parity against the
    file under LiteRT (accuracy on the digits kept), and distils students from
    it, the teacher run by LiteRT."""
    import tensorflow as tf

    keras = _keras3()
    m = keras.models.load_model(models["pre_k3"])
    bare = tmp_path / "handed_over.tflite"
    bare.write_bytes(tf.lite.TFLiteConverter.from_keras_model(m).convert())
    r = cli("export", bare, "--input-range", "0,255", "--data", "digits", "--quantize", "fp32,fp16,dynamic,int8",
            "--parity-samples", "10000", "--out", tmp_path / "e", "--json")  # the whole validation split
    assert r.exit_code == 0, r.stderr
    rep = r.json()["export"]
    assert rep["source"] == "litert" and rep["output"]["task"] == "classify"
    by = {a["precision"]: a for a in rep["artifacts"]}
    assert by["fp32"]["parity"]["max_abs_err"] < 1e-4
    acc = by["fp32"]["parity"]["keras_accuracy"]  # the source file's own accuracy under LiteRT, on the split Keras
    assert abs(acc - models["pre_acc"]) < 0.01 and acc > 0.15  # scored it on (chance: 0.1)
    assert by["int8"]["parity"]["tflite_accuracy"] > acc - 0.05 and by["int8"]["size_bytes"] < 0.6 * by["fp32"]["size_bytes"]
    assert all(a["parity_failed"] == [] for a in by.values()) and by["fp16"]["size_bytes"] < by["fp32"]["size_bytes"]
    rep = _compress(cli, bare, tmp_path / "c", "--input-range", "0,255")
    assert abs(rep["teacher"]["accuracy"] - acc) < 0.03  # the teacher is the file, run by LiteRT
    # an int8 file is not re-quantized
    int8 = tmp_path / "e" / by["int8"]["file"]
    assert_one_line_error(cli("export", int8, "--quantize", "int8", "--calibration", "random", "--out",
                              tmp_path / "never"), int8.name, "int8")
    assert not (tmp_path / "never").exists()
