"""odml export and odml inspect with real TensorFlow conversion, the real
LiteRT interpreter, tf2onnx + onnxruntime, and tflite-support's metadata
reader."""

import json

import numpy as np
import pytest
from helpers import assert_one_line_error, need, check_page

SMALL = ["--input-size", "32", "--width", "0.25"]
MUTANTS, MIN_RAN = 40, 10  # test_corrupted_bytes_never_crash: mutants, and how many must reach invoke() (23 do with seed 1)
ZOO = ["mobilenet_edgetpu_v2_tiny", "mobilenet_edgetpu_v2_xs", "mobilenet_edgetpu_v2_s", "mobilenet_edgetpu_v2_m",
       "mobilenet_edgetpu_v2_l", "mobilenet_edgetpu_v1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny MobileNetEdgeTPUV2 (with GC-IBN blocks) trained briefly on digits."""
    from odml.data.images import load_images
    from odml.train.trainer import TrainConfig, train_classifier
    from odml.zoo import create_spec

    d = tmp_path_factory.mktemp("trained")
    spec = create_spec("mobilenet_edgetpu_v2_tiny", num_classes=10, input_size=32, width=0.5)
    ds = load_images("digits", (32, 32), 3, 0.2, 0)
    res = train_classifier(spec, ds, TrainConfig(epochs=3), d / "model.keras")
    assert res["val_accuracy"] > 0.6
    return d / "model.keras"


@pytest.mark.parametrize("name", ZOO)
def test_every_zoo_model_exports_fp32_and_int8_with_parity(cli, tmp_path, request, name):
    """Each zoo model, small (32x32, width 0.5) and trained briefly on digits so
    that its logits mean something, exports fp32 and int8 with parity (the
    tiny one is the module's trained model: the same spec, trained the same)."""
    from odml.data.images import load_images
    from odml.train.trainer import TrainConfig, train_classifier
    from odml.zoo import create_spec

    if name == "mobilenet_edgetpu_v2_tiny":
        model = request.getfixturevalue("trained")
    else:
        model = tmp_path / "m.keras"
        spec = create_spec(name, num_classes=10, input_size=32, width=0.5)
        train_classifier(spec, load_images("digits", (32, 32), 3, 0.2, 0), TrainConfig(epochs=3), model)
    out = tmp_path / "out"
    r = cli("export", model, "--data", "digits", "--quantize", "fp32,int8",
            "--calibration-samples", "100", "--out", out, "--json")
    assert r.exit_code == 0, r.stderr
    rep = r.json()["export"]
    assert rep["ok"] and [a["precision"] for a in rep["artifacts"]] == ["fp32", "int8"]
    fp32, int8 = rep["artifacts"]
    assert fp32["parity"]["top1_agreement"] >= 0.99 and fp32["parity"]["rel_mean_err"] < 1e-3
    assert int8["parity_failed"] == [] and int8["parity"]["top1_agreement"] >= 0.85
    assert (out / f"{model.stem}_int8.tflite").is_file() and (out / "export.json").is_file()


def test_random_calibration_warns(cli, tmp_path):
    out = tmp_path / "out"
    r = cli("export", "mobilenet_edgetpu_v2_tiny", *SMALL, "--quantize", "int8", "--calibration", "random",
            "--calibration-samples", "20", "--min-top1", "0", "--max-rel-err", "10", "--out", out)
    assert r.exit_code == 0, r.stderr
    assert "random inputs" in r.stderr and "unknown" in r.stderr and (out / "mobilenet_edgetpu_v2_tiny_int8.tflite").is_file()
    row = next(line for line in r.stdout.splitlines() if "_int8.tflite" in line)
    assert "nan" not in row and " - " in row  # no fp32 file exported: no size ratio to show


def test_trained_model_all_precisions_metadata_and_inspect(cli, tmp_path, trained):
    out = tmp_path / "exp"
    r = cli("export", trained, "--data", "digits", "--quantize", "fp32,fp16,dynamic,int8", "--out", out,
            "--author", "odml tests", "--license", "Apache-2.0", "--json")
    assert r.exit_code == 0, r.stderr
    arts = {a["precision"]: a for a in r.json()["export"]["artifacts"]}
    assert set(arts) == {"fp32", "fp16", "dynamic", "int8"}
    for a in arts.values():
        assert a["parity"]["top1_agreement"] >= 0.95 and a["parity_failed"] == []
        assert abs(a["parity"]["tflite_accuracy"] - a["parity"]["keras_accuracy"]) <= 0.03
    assert arts["int8"]["size_bytes"] < 0.4 * arts["fp32"]["size_bytes"]
    assert arts["fp16"]["size_bytes"] < 0.6 * arts["fp32"]["size_bytes"]
    assert arts["int8"]["ops"].get("CONV_2D") and "FlexConv2D" not in json.dumps(arts["int8"]["ops"])
    # inspect reads sizes, tensors, ops and the metadata back
    r = cli("inspect", out / "model_int8.tflite", "--json")
    info = r.json()["inspect"]
    assert info["size_bytes"] == arts["int8"]["size_bytes"] and info["ops"] == arts["int8"]["ops"]
    assert info["metadata"]["author"] == "odml tests" and info["metadata"]["license"] == "Apache-2.0"
    assert info["metadata"]["labels"] == [str(i) for i in range(10)]
    assert info["metadata"]["normalization"] == {"mean": [0.0], "std": [255.0]}
    assert info["weight_dtypes"].get("int8", 0) > 0.9 * info["params"] - info["weight_dtypes"].get("int32", 0)
    r = cli("inspect", out / "model_int8.tflite")
    assert r.exit_code == 0 and "metadata" in r.stdout and "DEPTHWISE_CONV_2D" in r.stdout
    # every file carries a serving_default signature under the family's names, and runs through it
    from ai_edge_litert.interpreter import Interpreter

    x = np.random.default_rng(0).random((1, 32, 32, 3), dtype=np.float32)
    for prec in arts:
        it = Interpreter(model_path=str(out / f"model_{prec}.tflite"))
        assert it.get_signature_list() == {"serving_default": {"inputs": ["image"], "outputs": ["logits"]}}, prec
        runner = it.get_signature_runner("serving_default")
        xi = x if prec != "int8" or runner.get_input_details()["image"]["dtype"] == np.float32 else None
        assert runner(image=xi)["logits"].shape == (1, 10)


def _tflite_support_metadata():
    """tflite-support's metadata module (the ecosystem's reader), with the
    libusb its native extension links against preloaded from libusb-package."""
    import ctypes
    import glob
    import os

    try:
        import libusb_package

        for lib in glob.glob(os.path.join(os.path.dirname(libusb_package.__file__), "libusb-1.0*.so*"))[:1]:
            ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
        from tensorflow_lite_support.metadata.python import metadata
    except ImportError as e:
        need(False, f"tflite-support is not installed ({e}): make test installs it, or "
                    "pip install --no-deps tflite-support==0.4.4 (test-only; it pins protobuf<4)")
    return metadata


def test_metadata_reads_back_with_tflite_support(tmp_path, trained, cli):
    """odml writes the metadata itself; the ecosystem's own reader must agree."""
    md = _tflite_support_metadata()
    out = tmp_path / "exp"
    r = cli("export", trained, "--data", "digits", "--quantize", "fp32", "--out", out, "--name", "digits-net",
            "--description", "handwritten digits")
    assert r.exit_code == 0, r.stderr
    disp = md.MetadataDisplayer.with_model_file(str(out / "model_fp32.tflite"))
    meta = json.loads(disp.get_metadata_json())
    assert meta["name"] == "digits-net" and meta["description"] == "handwritten digits"
    norm = meta["subgraph_metadata"][0]["input_tensor_metadata"][0]["process_units"][0]["options"]
    assert norm == {"mean": [0.0], "std": [255.0]}
    assert disp.get_packed_associated_file_list() == ["labels.txt"]
    assert disp.get_associated_file_buffer("labels.txt").decode().split() == [str(i) for i in range(10)]
    assert meta["min_parser_version"] == "1.0.0" and meta["version"] == "1"
    out_md = meta["subgraph_metadata"][0]["output_tensor_metadata"][0]
    assert out_md["associated_files"][0]["type"] == "TENSOR_AXIS_LABELS"
    assert meta["subgraph_metadata"][0]["input_tensor_metadata"][0]["content"]["content_properties"] == \
        {"color_space": "RGB"}
    assert sorted(f.name for f in out.iterdir()) == ["export.json", "model_fp32.tflite", "report.html"]  # no work file left


def test_int8_io_and_onnx_parity(cli, tmp_path, trained):
    out = tmp_path / "exp"
    r = cli("export", trained, "--data", "digits", "--quantize", "int8", "--io", "int8", "--format", "tflite,onnx",
            "--out", out, "--json")
    assert r.exit_code == 0, r.stderr
    arts = r.json()["export"]["artifacts"]
    onnx_art = next(a for a in arts if a["format"] == "onnx")
    assert onnx_art["checker"] == "passed" and onnx_art["parity"]["max_abs_err"] < 1e-3
    assert onnx_art["parity"]["top1_agreement"] == 1.0
    info = cli("inspect", out / "model.onnx", "--json").json()["inspect"]
    assert info["format"] == "onnx" and info["inputs"][0]["shape"] == [1, 32, 32, 3] and info["params"] > 100_000
    t = cli("inspect", out / "model_int8.tflite", "--json").json()["inspect"]
    assert t["inputs"][0]["dtype"] == "int8" and t["outputs"][0]["dtype"] == "int8"
    assert t["inputs"][0]["quantization"]["scale"][0] > 0
    # the page: passed, each file with its size and parity figures
    from odml.report.page import num

    check_page(out, "PASSED", *(a["file"] for a in arts), *(num(a["parity"]["rel_mean_err"]) for a in arts),
               *(num(a["size_bytes"] / 1024) for a in arts))


def test_edgetpu_lowering_and_compatibility(cli, tmp_path, trained):
    out = tmp_path / "cpu"
    assert cli("export", trained, "--data", "digits", "--quantize", "int8", "--out", out).exit_code == 0
    plain = cli("inspect", out / "model_int8.tflite", "--json").json()["inspect"]["edgetpu"]
    assert not plain["fully_mapped"] and "Grouped convolution" in plain["first_unsupported"]["reason"]
    assert plain["on_cpu"] > 0
    tpu = tmp_path / "tpu"
    r = cli("export", trained, "--data", "digits", "--target", "edgetpu", "--out", tpu, "--json")
    assert r.exit_code == 0, r.stderr
    art = next(a for a in r.json()["export"]["artifacts"] if a["precision"] == "int8")
    assert art["edgetpu"]["fully_mapped"]
    # with float input/output only the QUANTIZE / DEQUANTIZE conversions stay on the CPU
    cpu = [r["op"] for r in art["edgetpu"]["ops"] if r["status"] != "Mapped to Edge TPU"]
    assert sorted(cpu) == ["DEQUANTIZE", "QUANTIZE"]
    assert art["ops"].get("SPLIT") and art["parity_failed"] == []
    assert "edgetpu_compiler" in r.stderr and art["edgetpu"]["compiler"] == {"available": False}


@pytest.mark.fast
def test_compiler_log_parser():
    from odml.exporters.edgetpu import parse_compiler_log

    log = """Edge TPU Compiler version 16.0.384591198
Model compiled successfully in 1201 ms.

Input model: m_int8.tflite
Output model: m_int8_edgetpu.tflite
Number of Edge TPU subgraphs: 1
Total number of operations: 72
Operation log: m_int8_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU.
Number of operations that will run on Edge TPU: 7
Number of operations that will run on CPU: 65

Operator                       Count      Status

CONV_2D                        40         Mapped to Edge TPU
CONV_2D                        1          Operation is otherwise supported, but not mapped due to some unspecified limitation
DEPTHWISE_CONV_2D              12         More than one subgraph is not supported
QUANTIZE                       1          Operation is working on an unsupported data type
"""
    res = parse_compiler_log(log)
    assert res["on_edgetpu"] == 7 and res["on_cpu"] == 65
    assert res["table"][0] == {"operator": "CONV_2D", "count": 40, "status": "Mapped to Edge TPU"}
    assert res["table"][3]["status"] == "Operation is working on an unsupported data type" and len(res["table"]) == 4


def test_savedmodel_source(cli, tmp_path, trained):
    from odml._tf import tf
    from odml.zoo.load import load_keras_model

    m = load_keras_model(trained)
    T = tf()
    sm = tmp_path / "sm"
    fn = T.function(lambda image: {"logits": m(image, training=False)},
                    input_signature=[T.TensorSpec([None, 32, 32, 3], T.float32, name="image")])
    T.saved_model.save(m, str(sm), signatures={"serving_default": fn})
    r = cli("export", sm, "--data", "digits", "--quantize", "fp32,int8", "--out", tmp_path / "o", "--json")
    assert r.exit_code == 0, r.stderr
    assert all(a["parity_failed"] == [] for a in r.json()["export"]["artifacts"])


# ---- bad input: one line, exit 2 (1 for parity), nothing written ---------------------------


@pytest.mark.parametrize("kind", ["truncated", "empty", "random", "onnx_renamed", "missing"])
def test_inspect_rejects_bad_tflite(cli, tmp_path, trained, kind):
    path = tmp_path / "bad.tflite"
    if kind in ("truncated", "onnx_renamed"):
        out = tmp_path / "exp"
        assert cli("export", trained, "--quantize", "fp32", "--format", "tflite,onnx", "--out", out,
                   "--no-metadata").exit_code == 0
        src = out / ("model_fp32.tflite" if kind == "truncated" else "model.onnx")
        data = src.read_bytes()
        path.write_bytes(data[: len(data) // 3] if kind == "truncated" else data)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    fragment = {"truncated": "truncated", "empty": "empty file", "random": "not a TFLite flatbuffer",
                "onnx_renamed": "looks like onnx", "missing": "not found"}[kind]
    assert_one_line_error(cli("inspect", path), str(path), fragment)


def test_corrupted_bytes_never_crash(cli, tmp_path, trained):
    """Flip bytes all over a valid model and run each mutant through the real
    CLI (`odml bench`: the file checked, then loaded and invoked by LiteRT in
    its own process): every run ends with exit 0 (it ran: the interpreter's
    invoke() was reached and timed) or a one-line error (exit 2), never a
    crash (a traceback, or the runtime's process dying); and enough mutants
    reach invoke() that refusing everything cannot pass."""
    out = tmp_path / "exp"
    assert cli("export", trained, "--quantize", "fp32", "--out", out, "--no-metadata").exit_code == 0
    data = bytearray((out / "model_fp32.tflite").read_bytes())
    rng = np.random.default_rng(1)
    outcomes = []
    for i in range(MUTANTS):
        bad = bytearray(data)
        for pos in rng.integers(0, 4096, 1 + i % 3):  # the flatbuffer tables sit near the front; 1 to 3 bytes,
            bad[pos] = rng.integers(0, 256)  # so that about half the mutants pass the checks and reach the runtime
        path = tmp_path / f"mutant{i}.tflite"
        path.write_bytes(bytes(bad))
        r = cli("bench", path, "--runs", "1", "--min-secs", "0", "--json")
        said = r.stdout + r.stderr
        assert "Traceback" not in said and "crashed" not in said, (i, said[-2000:])
        assert r.exit_code in (0, 1, 2), (i, r.exit_code, said[-2000:])
        if r.exit_code == 0:
            (res,) = r.json()["bench"]
            assert res["count"] >= 1 and res["mean_ms"] > 0, res  # invoked, and timed
            outcomes.append("ran")
        else:
            assert_one_line_error(r, str(path), code=r.exit_code)
            outcomes.append(r.stderr.strip())
    ran = outcomes.count("ran")
    assert ran >= MIN_RAN, (ran, outcomes)
    assert ran < MUTANTS, outcomes  # and the checks refused some: the mutants are not all harmless


def test_savedmodel_without_signature(cli, tmp_path):
    from odml._tf import tf

    T = tf()
    mod = T.Module()
    mod.v = T.Variable(1.0)
    T.saved_model.save(mod, str(tmp_path / "nosig"), signatures={})
    out = tmp_path / "o"
    assert_one_line_error(cli("export", tmp_path / "nosig", "--out", out), "no signature")
    assert not out.exists()


def test_lambda_keras_file_refused(cli, tmp_path):
    from odml._tf import keras

    K = keras()
    inp = K.Input((8, 8, 3))
    m = K.Model(inp, K.layers.Dense(2)(K.layers.Flatten()(K.layers.Lambda(lambda t: t * 2)(inp))))
    m.save(tmp_path / "lam.keras")
    out = tmp_path / "o"
    assert_one_line_error(cli("export", tmp_path / "lam.keras", "--out", out), "lam.keras", "cannot load")
    assert not out.exists()


def test_int8_without_calibration_refused(cli, tmp_path):
    out = tmp_path / "o"
    r = cli("export", "mobilenet_edgetpu_v2_tiny", *SMALL, "--quantize", "int8", "--out", out)
    assert_one_line_error(r, "calibration")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_parity_failure_exits_1_and_writes_nothing(cli, tmp_path, trained):
    out = tmp_path / "o"
    r = cli("export", trained, "--data", "digits", "--quantize", "int8", "--max-rel-err", "0", "--out", out)
    assert_one_line_error(r, "parity failed", "int8", code=1)
    assert "FAILED" in r.stdout
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_bad_options(cli, tmp_path):
    assert_one_line_error(cli("export", "mobilenet_edgetpu_v1", "--quantize", "int4", "--out", tmp_path / "o"),
                          "unknown precision int4")
    assert_one_line_error(cli("export", "mobilenet_edgetpu_v1", "--out", tmp_path / "x" / "o"), "does not exist")


def test_spec_json_and_h5_sources(cli, tmp_path, trained):
    """A spec file exports like a zoo name; an .h5 file like a .keras file."""
    spec = tmp_path / "s.json"
    assert cli("zoo", "show", "mobilenet_edgetpu_v1", "--input-size", "32", "--width", "0.25", "--classes", "4",
               "--out", spec).exit_code == 0
    r = cli("export", spec, "--quantize", "fp32", "--out", tmp_path / "a", "--json")
    assert r.exit_code == 0, r.stderr
    rep = r.json()["export"]
    assert rep["source"] == "spec" and rep["outputs"] == 4 and rep["parity_inputs"] == "random"
    from odml.zoo import ModelSpec

    assert rep["params"] == ModelSpec.load(spec).params
    from odml.zoo.load import load_keras_model

    load_keras_model(trained).save(tmp_path / "m.h5")
    r = cli("export", tmp_path / "m.h5", "--data", "digits", "--quantize", "fp16", "--out", tmp_path / "b", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["export"]["artifacts"][0]["parity"]["top1_agreement"] >= 0.98


def test_data_with_other_class_count_refused(cli, tmp_path, trained):
    from helpers import make_image_folder

    make_image_folder(tmp_path / "imgs", classes=("a", "b", "c"), per_class=4)
    out = tmp_path / "o"
    assert_one_line_error(cli("export", trained, "--data", tmp_path / "imgs", "--out", out),
                          "3 classes in the data", "10 outputs")
    assert not out.exists()


def test_operator_swapped_for_another_is_one_line_not_a_crash(cli_proc, cli, tmp_path, trained):
    """An operator code changed to SPLIT (found by fuzzing): well-formed, but
    its axis is then an activation. XNNPACK read it unchecked and the process
    died; the model is now built with LiteRT's own kernels first."""
    from ai_edge_litert import schema_py_generated as schema

    from odml.flatbuffer import pack_tflite

    out = tmp_path / "exp"
    assert cli("export", trained, "--quantize", "fp32", "--out", out, "--no-metadata").exit_code == 0
    m = schema.ModelT.InitFromPackedBuf(bytearray((out / "model_fp32.tflite").read_bytes()), 0)
    mean = [oc for oc in m.operatorCodes if oc.builtinCode == schema.BuiltinOperator.MEAN]
    assert mean, "the test model has a global average pool (MEAN)"
    mean[0].builtinCode = mean[0].deprecatedBuiltinCode = schema.BuiltinOperator.SPLIT
    bad = tmp_path / "split.tflite"
    bad.write_bytes(pack_tflite(m))
    r = cli_proc("bench", bad, "--runs", "2", "--warmup", "1")
    assert r.exit_code == 2, (r.exit_code, r.stderr[-2000:])
    assert_one_line_error(r, str(bad), "LiteRT cannot load it")
