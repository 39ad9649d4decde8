"""int8 by budget (issue 39): when the converter's int8 file misses an
output's budget, export tries litert-quantizer recipes (a8w8, a16w8 for the
most sensitive ops, float for the worst), keeps the fastest in budget, saves
its recipe beside the file, and takes it back with --recipe; a budget no
recipe meets writes the float files (the fallback) and exits 1. Real Keras
models, real conversion, the real LiteRT interpreter."""

import json

import numpy as np
import pytest

from helpers import assert_one_line_error
from test_diagnose import _model_with_an_outlier_channel


def _deep_model(path, depth=40):
    """A stack of ``depth`` small Dense layers: each adds its int8 error, so
    that with 30 of them float the rest still miss a tight budget."""
    from odml._tf import keras

    K = keras()
    K.utils.set_random_seed(0)
    inp = K.Input((8, 8, 1))
    h = K.layers.Flatten(name="flat")(inp)
    for i in range(depth):
        h = K.layers.Dense(16 if i < depth - 1 else 10, name=f"d{i}")(h)  # linear: neither vanishing nor blowing up
    K.Model(inp, h).save(path)
    return path


def test_search_keeps_the_losing_head_float(tmp_path):
    """Library: the converter's file and a8w8 miss a tight budget; the
    search ends at a recipe that leaves the output's layer float, which
    meets it; the steps before it say what they reached."""
    from dataclasses import replace

    from odml._tf import keras
    from odml.exporters import int8_search as s8
    from odml.exporters.tflite import DEFAULT_THRESHOLDS, budget_ratios, budget_text, convert, judge, parity
    from odml.litert import load_interpreter, run_batch

    m = keras().models.load_model(_model_with_an_outlier_channel(tmp_path / "m.keras"))
    rng = np.random.default_rng(0)
    x, xv = rng.random((64, 16, 16, 3), dtype=np.float32), rng.random((32, 16, 16, 3), dtype=np.float32)
    ref = m.predict(xv, verbose=0)
    th = replace(DEFAULT_THRESHOLDS["int8"], max_rel_mean_err=0.001)

    def judge8(data):
        p = parity(ref, run_batch(load_interpreter(data), xv), None, "error")
        return p, judge(p, th), budget_ratios(p, th), budget_text(p, th)

    res = s8.search(convert(m, "fp32"), x, judge8, [lay.name for lay in m.layers], outputs=list(m.output_names))
    assert res.chosen is not None and res.chosen.met
    assert [s.name for s in res.steps[:2]] == ["a8w8 min-max", "a8w8 clipped"]
    assert not any(s.met for s in res.steps[:2]) and all(s.worst > 1.5 for s in res.steps[:2])
    assert {"layer": "head", "mode": "float"} in res.chosen.recipe.ops
    assert res.chosen.worst < 0.5  # well within: not a coin toss at the limit
    rep = res.report()
    assert rep["chosen"] == res.chosen.name and len(rep["steps"]) == len(res.steps)


def test_export_searches_saves_the_recipe_and_takes_it_back(cli, tmp_path):
    model = _model_with_an_outlier_channel(tmp_path / "m.keras")
    r = cli("export", model, "--quantize", "fp32,int8", "--calibration", "random", "--budget", "error=0.001",
            "--no-qat", "--out", tmp_path / "e", "--json")
    assert r.exit_code == 0, r.stderr
    art = next(a for a in r.json()["export"]["artifacts"] if a["precision"] == "int8")
    srch = art["search"]
    assert srch["steps"][0]["step"] == "converter" and not srch["steps"][0]["met"]
    chosen = next(s for s in srch["steps"] if s["step"] == srch["chosen"])
    assert chosen["met"] and chosen["ms"] > 0 and chosen["vs_fp16"] > 0  # latency measured, against the fp16 file
    assert art["parity_failed"] == [] and art["parity"]["rel_mean_err"] <= 0.001
    recipe = tmp_path / "e" / art["recipe_file"]
    saved = json.loads(recipe.read_text())
    assert saved["engine"] == "litert-quantizer" and {"layer": "head", "mode": "float"} in saved["ops"]
    assert art["recipe_file"] in r.json()["export"]["files"]
    # given back: the same recipe, no search, the same parity
    r2 = cli("export", model, "--quantize", "int8", "--calibration", "random", "--budget", "error=0.001",
             "--recipe", recipe, "--out", tmp_path / "again", "--json")
    assert r2.exit_code == 0, r2.stderr
    art2 = r2.json()["export"]["artifacts"][0]
    assert [s["step"] for s in art2["search"]["steps"]] == ["recipe"]
    assert art2["parity"]["rel_mean_err"] == pytest.approx(art["parity"]["rel_mean_err"], rel=0.2)
    # the table shows the steps
    r3 = cli("export", model, "--quantize", "int8", "--calibration", "random", "--budget", "error=0.001",
             "--no-qat", "--out", tmp_path / "t")
    assert "int8 recipes tried" in r3.stdout and "(chosen)" in r3.stdout


def test_a_budget_no_recipe_meets_writes_the_float_files_and_exits_1(cli, tmp_path):
    model = _deep_model(tmp_path / "deep.keras")
    out = tmp_path / "e"
    r = cli("export", model, "--quantize", "fp32,fp16,int8", "--data", "digits", "--budget", "error=0.00001",
            "--no-qat", "--out", out)
    assert_one_line_error(r, "no int8 recipe meets the budget", "best reached", "relative error", "fallback", code=1)
    assert sorted(p.name for p in out.iterdir()) == ["deep_fp16.tflite", "deep_fp32.tflite", "export.json",
                                                         "report.html"]
    rep = json.loads((out / "export.json").read_text())
    int8 = next(a for a in rep["artifacts"] if a["precision"] == "int8")
    assert int8["written"] is False and len(int8["search"]["steps"]) >= 6 and int8["search"]["chosen"] is None


@pytest.mark.parametrize("content, words", [
    ('{"ops": [{"layer": "pw", "mode": "int4"}]}', ["unknown mode 'int4'"]),
    ('{"ops": [{"layer": "no_such_layer", "mode": "float"}]}', ["no_such_layer", "no op of the model"]),
    ('{"ops": [{"op": "LSTM", "mode": "float"}]}', ["LSTM", "no such op"]),
    ('{"ops": [{"node": "pw", "mode": "float"}]}', ["ops[0]"]),
    ('{"ranges": "percentile"}', ["ranges 'percentile'"]),
    ("not json", ["not JSON"]),
])
def test_bad_recipe_files_are_refused(cli, tmp_path, content, words):
    model = _model_with_an_outlier_channel(tmp_path / "m.keras")
    recipe = tmp_path / "bad.recipe.json"
    recipe.write_text(content)
    data = tmp_path / "five.npz"  # images for the toy's five classes (no warning about random calibration)
    np.savez(data, x=np.random.default_rng(0).random((40, 16, 16, 3)).astype(np.float32), y=np.arange(40) % 5)
    out = tmp_path / "never"
    r = cli("export", model, "--quantize", "int8", "--data", data, "--recipe", recipe, "--out", out)
    assert_one_line_error(r, *words)
    assert r.exit_code == 2 and not out.exists()


def test_calibration_inputs_of_the_wrong_shape_are_refused(cli, tmp_path):
    from odml.exporters.int8_search import Quantizer
    from odml.exporters.tflite import convert
    from odml.zoo.tflite_model import RequantizeError
    from odml._tf import keras

    m = keras().models.load_model(_model_with_an_outlier_channel(tmp_path / "m.keras"))
    with pytest.raises(RequantizeError, match=r"calibration inputs of shape \(8, 8, 3\), the model takes \(16, 16, 3\)"):
        Quantizer(convert(m, "fp32"), np.zeros((4, 8, 8, 3), np.float32), None, "m")
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((10, 16, 16, 5), np.float32), y=np.arange(10) % 5)
    r = cli("export", tmp_path / "m.keras", "--quantize", "int8", "--data", bad, "--out", tmp_path / "never")
    assert_one_line_error(r, "bad.npz", "shape")
    assert r.exit_code == 2 and not (tmp_path / "never").exists()


def test_diagnose_needs_a_float_reference(cli, tmp_path):
    model = _model_with_an_outlier_channel(tmp_path / "m.keras")
    r = cli("export", model, "--quantize", "int8", "--calibration", "random", "--max-rel-err", "10", "--out",
            tmp_path / "e")
    assert r.exit_code == 0, r.stderr
    int8 = tmp_path / "e" / "m_int8.tflite"
    r = cli("export", int8, "--quantize", "int8", "--calibration", "random", "--diagnose", "--out", tmp_path / "never")
    assert_one_line_error(r, "--diagnose", "no float reference")
    assert r.exit_code == 2 and not (tmp_path / "never").exists()
