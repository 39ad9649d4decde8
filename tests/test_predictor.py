"""Measurement fidelity (both LiteRT runtimes, instances, spread), the units
a spec's latency is the sum of, `odml calibrate` (resume, kill -9, a phone
that goes away), `odml predict` (refusals, specs outside the space), `odml
bench --blocks`, and the search with predicted and hybrid latency. Real
LiteRT, real TensorFlow conversion, the real adb client against the
stand-in phone."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from helpers import assert_one_line_error, check_page
from test_search import TINY

from odml.files import read_jsonl


def _space_file(tmp_path):
    p = tmp_path / "tiny.json"
    p.write_text(json.dumps(TINY))
    return p


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """A predictor for the tiny space on the host at int8 (a short budget)."""
    from typer.testing import CliRunner

    from odml.cli.app import app

    d = tmp_path_factory.mktemp("calib")
    space = _space_file(d)
    out = d / "cal"
    args = ["calibrate", "--space", str(space), "--precision", "int8", "--minutes", "0.3", "--runs", "10",
            "--out", str(out), "--json"]
    r = CliRunner().invoke(app, args, catch_exceptions=False)
    assert r.exit_code == 0, r.stdout
    return {"space": space, "out": out, "args": args, "result": json.loads(r.stdout)["calibrate"]}


# ---- units ---------------------------------------------------------------------------
@pytest.mark.fast
@pytest.mark.parametrize("space_name", ["small32", "edgetpu_v2"])
@pytest.mark.parametrize("seed", range(20))
def test_units_add_up_to_the_spec(seed, space_name):
    from odml.nas.predictor import sample_spec
    from odml.nas.space import load_space
    from odml.nas.units import units_of

    sp = load_space(space_name)
    rng = random.Random(seed)
    spec = next(s for s in (sample_spec(sp, rng, 10) for _ in range(100)) if s is not None)
    us = units_of(spec)
    assert len(us) == len(spec.blocks) + 2
    assert sum(u.macs for u in us) == spec.macs
    for u in us:
        assert sum(u.op_macs()) == u.macs, u
    # the resolution each unit sees follows the strides
    assert us[1].res == -(-spec.input_shape[0] // spec.stem.stride)
    for a, b in zip(us[1:-1], us[2:]):
        assert b.res == a.out_res and b.cin == a.cout


@pytest.mark.fast
def test_the_designed_set_covers_every_choice():
    import itertools

    from odml.nas.predictor import design_units
    from odml.nas.space import load_space

    sp = load_space("small32")
    units = list(itertools.islice(design_units(sp, 0, 10), 400))
    blocks = [u for u in units if u.kind not in ("stem", "head")]
    for t in ("ibn_dw", "ibn_fused", "ibn_gc"):
        for k in (3, 5, 7):
            for e in (2.0, 4.0, 6.0):
                assert any(u.kind == t and u.kernel == k and u.expansion == e for u in blocks), (t, k, e)
    assert {u.stride for u in blocks} == {1, 2}
    assert {u.res for u in blocks} == {16, 8, 4}  # what each stage sees
    assert {u.groups for u in blocks if u.kind == "ibn_gc"} == {2, 4}
    assert any(u.kind == "stem" for u in units) and any(u.kind == "head" for u in units)


# ---- measurement fidelity ---------------------------------------------------------------
@pytest.fixture(scope="module")
def tflites(tmp_path_factory):
    import numpy as np

    from odml.exporters.tflite import convert, representative_from
    from odml.zoo import create_model, create_spec

    d = tmp_path_factory.mktemp("prec")
    model = create_model(create_spec("mobilenet_edgetpu_v1", num_classes=4, input_size=32, width=0.25))
    x = np.random.default_rng(0).uniform(0, 1, (8, 32, 32, 3)).astype("float32")
    files = {}
    for p in ("fp32", "fp16", "dynamic", "int8"):
        files[p] = d / f"m_{p}.tflite"
        files[p].write_bytes(convert(model, p, representative_from(x, 8) if p == "int8" else None))
    return files


def test_precision_is_read_off_the_file(tflites):
    from odml.flatbuffer import precision_of, read_tflite

    for p, path in tflites.items():
        assert precision_of(read_tflite(path)) == p


def test_both_runtimes_instances_and_spread(cli, tflites):
    from odml.devices.host import BenchError, HostOptions, bench_host

    for rt in ("interpreter", "compiled"):
        r = bench_host(tflites["int8"], HostOptions(runs=12, min_secs=0, runtime=rt))
        meds = sorted(r["instance_medians_ms"])
        assert r["runtime"] == rt and len(meds) in (3, 5)  # five when the first three disagree
        assert r["median_ms"] == pytest.approx(meds[len(meds) // 2])
        mid = meds[len(meds) // 2 - 1:len(meds) // 2 + 2]
        assert r["spread"] == pytest.approx((mid[-1] - mid[0]) / r["median_ms"])
        assert r["stable"] == (r["spread"] <= 0.10)
        assert r["warmup_runs"] >= 6 and r["app_ms"] > 0 and r["count"] >= 12
    with pytest.raises(BenchError, match="--no-xnnpack"):
        bench_host(tflites["int8"], HostOptions(runtime="compiled", xnnpack=False))
    r = cli("bench", tflites["fp32"], "--runtime", "compiled", "--runs", "10", "--min-secs", "0", "--json")
    assert r.exit_code == 0, r.stderr
    res = r.json()["bench"][0]
    assert res["runtime"] == "compiled" and res["median_ms"] > 0 and "spread" in res
    assert_one_line_error(cli("bench", tflites["fp32"], "--runtime", "gpu"), "--runtime 'gpu'")


# ---- calibrate, predict ------------------------------------------------------------------
def test_calibrate_writes_a_predictor_and_resumes(cli, calibrated):
    res, out = calibrated["result"], calibrated["out"]
    assert res["units"] >= 3 and res["models_fit"] >= 2 and res["models_held_out"] >= 2
    acc = res["accuracy"]
    assert acc["models"] == res["models_held_out"] and 0 <= acc["within_5pct"] <= acc["within_10pct"] <= 1
    assert acc["rmse_ms"] >= 0
    doc = json.loads((out / "predictor.json").read_text())
    assert doc["kind"] == "odml-latency-predictor" and doc["device"] == "host" and doc["precision"] == "int8"
    recs = read_jsonl(out / "measurements.jsonl")
    keys = [r["key"] for r in recs]
    assert len(keys) == len(set(keys))
    # units are fitted on their fastest run; whole models on the statistic asked for (min by default)
    by_key = {r["key"]: r for r in recs}
    from odml.nas.units import Unit

    assert doc["statistic"] == "min" and all(r["ms"] == by_key[Unit.from_dict(r["unit"]).key()]["min_ms"]
                                             for r in doc["units"])
    mins = {r["line"]: r["min_ms"] for r in recs if r["what"] == "model" and r["role"] == "holdout"}
    meds = {r["line"]: r["median_ms"] for r in recs if r["what"] == "model" and r["role"] == "holdout"}
    assert {r["line"]: r["ms"] for r in doc["held_out"]} == mins
    # its page: predicted against measured on every held-out model, the figures of predictor.json
    from odml.report.page import num

    check_page(out, "Predicted against measured", f"{100 * acc['within_10pct']:.0f}%",
               *(num(r["predicted_ms"]) for r in doc["held_out"]))
    # a rerun with the same settings resumes: the budget is spent, nothing is measured again, the same fit
    r = cli(*calibrated["args"])
    assert r.exit_code == 0, r.stderr
    assert len(read_jsonl(out / "measurements.jsonl")) == len(recs)
    assert r.json()["calibrate"]["accuracy"] == pytest.approx(acc)
    # the other statistic refits the same measurements, measuring nothing
    med = cli(*calibrated["args"], "--statistic", "median")
    assert med.exit_code == 0, med.stderr
    assert len(read_jsonl(out / "measurements.jsonl")) == len(recs) and med.json()["calibrate"]["statistic"] == "median"
    doc2 = json.loads((out / "predictor.json").read_text())
    assert doc2["statistic"] == "median" and {r["line"]: r["ms"] for r in doc2["held_out"]} == meds
    # and a search that ranks by the other statistic refuses it in one line
    assert_one_line_error(cli("search", "--space", calibrated["space"], "--target-ms", "0.02", "--latency", "hybrid",
                              "--predictor", out / "predictor.json", "--out", out.parent / "s_min"),
                          "fitted for statistic median, not min")
    r = cli(*calibrated["args"])  # back to min for the tests that follow
    assert r.exit_code == 0 and json.loads((out / "predictor.json").read_text())["statistic"] == "min"
    # other settings in the same folder: refused, saying which
    args = list(calibrated["args"])
    args[args.index("int8")] = "fp32"
    assert_one_line_error(cli(*args), "precision")


def test_predict_and_its_refusals(cli, calibrated, tmp_path):
    from odml.nas.predictor import load_predictor
    from odml.nas.space import load_space
    from odml.zoo.spec import ModelSpec

    pred_file = calibrated["out"] / "predictor.json"
    sp = load_space(str(calibrated["space"]))
    spec = sp.decode({}, 10, name="inside")
    sf = tmp_path / "inside.json"
    sf.write_text(spec.to_json())
    r = cli("predict", sf, "--predictor", pred_file, "--json")
    assert r.exit_code == 0, r.stderr
    res = r.json()["predict"]
    assert res["in_space"] and res["outside"] == [] and res["predicted_ms"] > 0
    assert len(res["units"]) == len(spec.blocks) + 2
    assert res["predicted_ms"] == pytest.approx(load_predictor(pred_file).predict(spec))
    # a kernel the space never had: predicted, with a warning that says how far outside
    k7 = ModelSpec.from_line(spec.to_line().replace("dw_k3_e2", "dw_k7_e2", 1), name="k7", input_shape=spec.input_shape,
                             num_classes=10)
    (tmp_path / "k7.json").write_text(k7.to_json())
    r = cli("predict", tmp_path / "k7.json", "--predictor", pred_file)
    assert r.exit_code == 0, r.stderr
    assert "not a point of space" in r.stderr and "kernel 7 outside the measured 3-5 (1.4x)" in r.stderr
    # a block type never measured: refused
    grouped = ModelSpec.from_line(spec.to_line().replace("fused_k3_e1_s1_c8", "grouped_k3_e2_s1_c8_g2"),
                                  name="g", input_shape=spec.input_shape, num_classes=10)
    (tmp_path / "g.json").write_text(grouped.to_json())
    assert_one_line_error(cli("predict", tmp_path / "g.json", "--predictor", pred_file), "ibn_grouped",
                          "never measured")
    # a model far bigger than anything measured (224x224 against 16x16): refused
    assert_one_line_error(cli("predict", "mobilenet_edgetpu_v2_tiny", "--predictor", pred_file), "outside the measured")
    # the predictor for another device, precision or space
    assert_one_line_error(cli("predict", sf, "--predictor", pred_file, "--precision", "fp32"), "precision int8",
                          "fp32")
    assert_one_line_error(cli("predict", sf, "--predictor", pred_file, "--device", "adb:PHONE"), "device host")
    other = json.loads(pred_file.read_text())
    other["device"] = "adb:PHONE"
    (tmp_path / "phone.json").write_text(json.dumps(other))
    base = ("search", "--space", calibrated["space"], "--target-ms", "0.05", "--trials", "1", "--epochs", "1",
            "--latency", "hybrid")
    assert_one_line_error(cli(*base, "--predictor", tmp_path / "phone.json", "--out", tmp_path / "s1"),
                          "device adb:PHONE", "not host")
    assert_one_line_error(cli(*base, "--predictor", pred_file, "--precision", "fp32", "--out", tmp_path / "s2"),
                          "precision int8", "not fp32")
    assert_one_line_error(cli(*base[:2], "small32", *base[3:], "--predictor", pred_file, "--out", tmp_path / "s3"),
                          "fitted on space tiny16", "small32")
    assert_one_line_error(cli("predict", sf, "--predictor", sf), "not an odml latency predictor")
    assert not any((tmp_path / s).exists() for s in ("s1", "s2", "s3"))


def test_calibration_killed_resumes_without_measuring_twice(cli_proc, tmp_path):
    space = _space_file(tmp_path)
    out = tmp_path / "cal"
    args = ["calibrate", "--space", space, "--precision", "fp32", "--minutes", "0.25", "--runs", "10", "--out", out]
    cmd = [sys.executable, "-c", "from odml.cli.app import main; main()", *map(str, args)]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and len(read_jsonl(out / "measurements.jsonl")) < 3:
        time.sleep(0.2)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    before = [r["key"] for r in read_jsonl(out / "measurements.jsonl")]
    assert len(before) >= 3 and not (out / "predictor.json").exists()
    r = cli_proc(*args, "--json")
    assert r.exit_code == 0, r.stderr
    after = [r["key"] for r in read_jsonl(out / "measurements.jsonl")]
    assert after[:len(before)] == before and len(after) == len(set(after))
    assert (out / "predictor.json").is_file()


# ---- bench --blocks --------------------------------------------------------------------------
def test_bench_blocks(cli, tmp_path, tflites):
    from odml.nas.space import space_from_dict
    from odml.nas.units import units_of

    spec = space_from_dict(TINY).decode({"s1_depth": 2}, 10, name="tinyspec")
    sf = tmp_path / "tinyspec.json"
    sf.write_text(spec.to_json())
    r = cli("export", sf, "--out", tmp_path / "exp", "--quantize", "int8", "--calibration", "random")
    assert r.exit_code == 0, r.stderr
    f = tmp_path / "exp" / "tinyspec_int8.tflite"
    r = cli("bench", f, "--blocks", "--runs", "10", "--min-secs", "0", "--json")
    assert r.exit_code == 0, r.stderr
    b = r.json()["bench"][0]["blocks"]
    assert [x["unit"] for x in b["blocks"]] == ["stem", "block0", "block1", "block2", "head"]
    assert [x["macs"] for x in b["blocks"]] == [u.macs for u in units_of(spec)]
    assert all(x["median_ms"] > 0 for x in b["blocks"])
    assert b["sum_ms"] == pytest.approx(sum(x["median_ms"] for x in b["blocks"]))
    assert b["whole_ms"] > 0 and sum(x["share"] for x in b["blocks"]) == pytest.approx(1.0)
    r = cli("bench", f, "--blocks", "--runs", "10", "--min-secs", "0")
    assert r.exit_code == 0 and "blocks of tinyspec_int8.tflite" in r.stdout and "the whole model" in r.stdout
    # a file odml did not make has no spec to break into blocks
    assert_one_line_error(cli("bench", tflites["fp32"], "--blocks"), "no odml model card")


# ---- search with predicted latency ---------------------------------------------------------
def test_search_hybrid_and_predicted(cli, calibrated, tmp_path):
    pred_file = calibrated["out"] / "predictor.json"
    common = ("search", "--space", calibrated["space"], "--target-ms", "0.02", "--trials", "5", "--epochs", "1",
              "--strategy", "random", "--runs", "10", "--json")
    r = cli(*common, "--latency", "hybrid", "--predictor", pred_file, "--promising", "100", "--out", tmp_path / "h")
    assert r.exit_code == 0, r.stderr
    s = r.json()["search"]
    recs = read_jsonl(tmp_path / "h" / "trials.jsonl")
    trained = [x for x in recs if x["status"] != "rejected"]
    assert trained and all(x["latency_source"] == "measured" and x["latency_predicted_ms"] > 0 for x in trained)
    assert s["measured"] == len(trained) and s["latency"] == "hybrid"
    assert all(p["latency_source"] == "measured" for p in s["pareto"])
    # a promising factor that nothing passes: every candidate predicted, none measured or trained
    r = cli(*common, "--latency", "hybrid", "--predictor", pred_file, "--promising", "1.01", "--target-ms", "0.0001",
            "--out", tmp_path / "h0")
    assert_one_line_error(r, "no candidate was trained", "predicted over --promising", "(predicted)", code=1)
    assert not (tmp_path / "h0" / "best_spec.json").exists()
    recs = read_jsonl(tmp_path / "h0" / "trials.jsonl")
    assert len(recs) == 5 and all(x["status"] == "rejected" and x["latency_source"] == "predicted" for x in recs)
    assert not (tmp_path / "h0" / "latency_cache.jsonl").exists()
    # predicted, with no predictor given: calibrated inside the run folder first; the front's points measured
    r = cli(*common, "--latency", "predicted", "--calibrate-minutes", "0.2", "--promising", "100",
            "--out", tmp_path / "p")
    assert r.exit_code == 0, r.stderr
    s = r.json()["search"]
    assert (tmp_path / "p" / "calibration" / "predictor.json").is_file()
    recs = read_jsonl(tmp_path / "p" / "trials.jsonl")
    assert all(x["latency_source"] == "predicted" for x in recs)
    front = read_jsonl(tmp_path / "p" / "front_measured.jsonl")
    assert front and {f["trial_id"] for f in front} >= {p["trial_id"] for p in s["pareto"]}
    assert all(p["latency_source"] == "measured" and p["latency_predicted_ms"] > 0 for p in s["pareto"])


def test_search_screens_children_by_prediction(cli, calibrated, tmp_path):
    """Evolution with a predictor: each trial is the pick of several children
    (random draws while the population fills), every one predicted; the pick
    is the largest predicted within the target, or the fastest when none is."""
    pred_file = calibrated["out"] / "predictor.json"
    r = cli("search", "--space", calibrated["space"], "--target-ms", "0.02", "--trials", "4", "--epochs", "1",
            "--population", "2", "--runs", "10", "--latency", "hybrid", "--predictor", pred_file,
            "--promising", "100", "--screen", "4", "--out", tmp_path / "s", "--json")
    assert r.exit_code == 0, r.stderr
    s = r.json()["search"]
    recs = read_jsonl(tmp_path / "s" / "trials.jsonl")
    screened = {x["trial_id"]: x for x in read_jsonl(tmp_path / "s" / "screened.jsonl")}
    assert len(recs) == 4 and set(screened) >= {x["trial_id"] for x in recs}
    ranked = 0
    for rec in recs:
        sc = screened[rec["trial_id"]]
        c = sc["candidates"]
        assert 2 <= len(c) <= 4 and len({x["line"] for x in c}) == len(c)
        assert c[sc["chosen"]]["line"] == rec["line"]  # the trial trained the pick
        assert rec["latency_predicted_ms"] == pytest.approx(c[sc["chosen"]]["predicted_ms"], abs=1e-6)  # written to 6 places
        fits = [x for x in c if x["predicted_ms"] <= 0.02]
        want = max(fits, key=lambda x: x["macs"]) if fits else min(c, key=lambda x: x["predicted_ms"])
        assert c[sc["chosen"]]["macs"] == want["macs"] and c[sc["chosen"]]["predicted_ms"] == want["predicted_ms"]
        ranked += len(c) - 1
    assert s["considered"] == len(recs) + ranked > len(recs)
    # screening ranks the evolution's children (with measured latency too, since issue 42: a fit of the trials
    # measured so far estimates them)
    assert_one_line_error(cli("search", "--space", calibrated["space"], "--target-ms", "0.02", "--screen", "4",
                              "--latency", "hybrid", "--predictor", str(pred_file), "--strategy", "random", "--out",
                              tmp_path / "x"), "--screen 4", "--strategy evolution")
    assert not (tmp_path / "x").exists()
    # and only the one-shot strategy has a supernet
    assert_one_line_error(cli("search", "--space", calibrated["space"], "--target-ms", "0.02", "--supernet-epochs",
                              "2", "--out", tmp_path / "x"), "--supernet-epochs 2")
    assert not (tmp_path / "x").exists()


# ---- one-shot search ---------------------------------------------------------------------
def test_supernet_masks_what_a_path_does_not_use(calibrated):
    """The supernet set to a narrow path computes the same whatever the
    weights of the channels and kernel taps the path leaves out hold: a
    smaller kernel is the centre of the largest, a narrower width the first
    channels."""
    import numpy as np

    from odml.nas.oneshot import Supernet
    from odml.nas.space import load_space

    sp = load_space(str(calibrated["space"]))
    net = Supernet(sp, 10, seed=0)
    values = {k: v[0] for k, v in sp.dimensions().items()}  # the first choice everywhere: the narrowest widths
    values.update({k: next(t for t in v if t.startswith("dw_k3")) for k, v in sp.dimensions().items()
                   if k.endswith("_block") and any(t.startswith("dw_k3") for t in v)})
    spec = sp.decode(values, 10)
    net.configure(spec, values)
    x = np.random.default_rng(0).uniform(0, 1, (4, sp.input_size, sp.input_size, 3)).astype(np.float32)
    before = net(x).numpy()
    stage1 = spec.blocks[-1].filters
    changed = 0
    for name, w in net.weights.items():
        a = w.numpy().copy()
        if name.startswith("s1b") and name.endswith("/p") and a.shape[-1] > stage1:  # projections: unused widths
            a[..., stage1:] += 5.0
            changed += 1
        if name.endswith("ibn_dw/d") and a.shape[0] == 5:  # a 3x3 path in a 5x5 kernel: the outer ring
            a[0], a[-1], a[:, 0], a[:, -1] = 7.0, 7.0, 7.0, 7.0
            changed += 1
        w.assign(a)
    assert changed >= 2
    np.testing.assert_allclose(net(x).numpy(), before, rtol=1e-4, atol=1e-4)
    wide = {k: v[-1] for k, v in sp.dimensions().items()}  # and a wider path sees those weights
    net.configure(sp.decode(wide, 10), wide)
    assert not np.allclose(net(x).numpy(), before, atol=1e-3)


def test_oneshot_search_end_to_end_and_resumes_after_kill_9(calibrated, tmp_path):
    """--strategy oneshot: the supernet and controller train for
    --supernet-epochs (one log line per epoch, state saved after each), the
    controller's architecture is trained standalone for --epochs, measured and
    recorded; killed with SIGKILL after its first epoch, the same command
    resumes there."""
    pred_file = calibrated["out"] / "predictor.json"
    out = tmp_path / "os"
    args = [sys.executable, "-c", "from odml.cli.app import main; main()", "search", "--space",
            str(calibrated["space"]), "--strategy", "oneshot", "--predictor", str(pred_file), "--target-ms", "0.01",
            "--epochs", "1", "--supernet-epochs", "3", "--runs", "10", "--out", str(out), "--json"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(read_jsonl(out / "oneshot" / "log.jsonl")) < 1:
        time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(read_jsonl(out / "oneshot" / "log.jsonl"))
    assert 1 <= done < 3 and not (out / "trials.jsonl").exists()
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    log = read_jsonl(out / "oneshot" / "log.jsonl")
    assert [x["epoch"] for x in log] == [1, 2, 3]  # none lost, none trained twice
    assert log[-1]["paths_considered"] > log[0]["paths_considered"] > 1
    recs = read_jsonl(out / "trials.jsonl")
    assert len(recs) == 1 and recs[0]["trial_id"] == "oneshot" and recs[0]["line"] == log[-1]["line"]
    assert recs[0]["latency_source"] == "measured" and recs[0]["accuracy"] > 0.1
    assert recs[0]["metrics"]["epochs"] == 1  # the standalone training has --epochs, not the supernet's
    s = json.loads(r.stdout)["search"]
    assert s["strategy"] == "oneshot" and s["reward"] == "abs" and s["considered"] == log[-1]["paths_considered"]


def test_oneshot_sandwich_rule(cli, calibrated, tmp_path):
    """--supernet-rule sandwich: each step trains the space's largest path on
    the labels and the smallest and two random paths on its predictions (in
    the supernet's log: the extremes are among the paths considered); the
    controller's answer is trained standalone and recorded."""
    from odml.nas.oneshot import _extreme_path
    from odml.nas.space import load_space

    pred_file = calibrated["out"] / "predictor.json"
    out = tmp_path / "sw"
    r = cli("search", "--space", calibrated["space"], "--strategy", "oneshot", "--supernet-rule", "sandwich",
            "--predictor", pred_file, "--target-ms", "0.01", "--epochs", "1", "--supernet-epochs", "1", "--runs", "5",
            "--out", out, "--json")
    assert r.exit_code == 0, r.stderr
    log = read_jsonl(out / "oneshot" / "log.jsonl")
    sp = load_space(calibrated["space"])
    big, small = _extreme_path(sp, 10, max)[0], _extreme_path(sp, 10, min)[0]
    draws = sp.draws(40, 1, 10)
    assert big.macs >= max(d.macs for d in draws) and small.macs <= min(d.macs for d in draws) < big.macs
    assert len(log) == 1 and log[0]["paths_considered"] >= 4
    recs = read_jsonl(out / "trials.jsonl")
    assert len(recs) == 1 and recs[0]["trial_id"] == "oneshot" and recs[0]["accuracy"] > 0.1
    assert_one_line_error(cli("search", "--space", calibrated["space"], "--target-ms", "0.01", "--supernet-rule",
                              "sandwich", "--out", tmp_path / "x"), "--supernet-rule sandwich", "--strategy oneshot")
    assert_one_line_error(cli("search", "--space", calibrated["space"], "--target-ms", "0.01", "--strategy",
                              "oneshot", "--supernet-rule", "ofa", "--out", tmp_path / "x"), "--supernet-rule 'ofa'")
    assert not (tmp_path / "x").exists()


def test_the_predicted_front_is_measured_through_the_latency_cache(tmp_path):
    """A predicted search measures its front with the search's own latency
    meter: --latency-cache answers a candidate it already holds (here with a
    figure no host would measure) and gets the candidates it lacked appended;
    the run folder gets no cache of its own."""
    import itertools

    from odml.files import append_jsonl
    from odml.nas.config import SearchConfig, prepare
    from odml.nas.evaluate import trial_record
    from odml.nas.latency import arch_key
    from odml.nas.report import finish
    from odml.nas.reward import reward

    cache, out = tmp_path / "shared_cache.jsonl", tmp_path / "run"
    cfg = SearchConfig(space=str(_space_file(tmp_path)), target_ms=1.0, latency="predicted", runs=10,
                       latency_cache=str(cache))
    p = prepare(cfg, out)
    out.mkdir()
    dims = p.space.dimensions()
    picked = {}
    for combo in itertools.product(*dims.values()):
        values = dict(zip(dims, combo))
        picked.setdefault(p.space.decode(values, p.data.num_classes).to_line(), values)
        if len(picked) == 2:
            break
    (va, vb) = picked.values()
    spec_a = p.space.decode(va, p.data.num_classes)
    append_jsonl(cache, {"key": arch_key(spec_a, p.device, "int8", 1), "line": spec_a.to_line(), "macs": spec_a.macs,
                         "device": p.device.label, "precision": "int8", "threads": 1,
                         "latency": {"median_ms": 42.0, "min_ms": 42.0, "count": 10, "size_bytes": 1000}})
    for tid, values, acc, ms in (("a", va, 0.9, 0.5), ("b", vb, 0.5, 0.2)):  # both on the predicted front
        metrics = {"accuracy": acc, "latency_ms": ms, "latency_predicted_ms": ms, "latency_measured": 0.0,
                   "epochs": 1.0, "reward": reward(cfg.reward, acc, ms, cfg.target_ms, p.exponent)}
        append_jsonl(out / "trials.jsonl", trial_record(p, tid, values, metrics))
    s = finish(p)
    front = {r["trial_id"]: r["latency_ms"] for r in read_jsonl(out / "front_measured.jsonl")}
    assert front["a"] == 42.0  # the cache's figure: not measured again
    assert 0 < front["b"] < 42.0  # measured now, and added to the cache
    lines = read_jsonl(cache)
    assert len(lines) == 2 and lines[1]["line"] == p.space.decode(vb, p.data.num_classes).to_line()
    assert not (out / "latency_cache.jsonl").exists()
    assert {r["trial_id"]: r["latency_ms"] for r in s["pareto"]}["a"] == 42.0
