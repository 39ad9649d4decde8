"""odml search: spaces, rewards, the Pareto front, the search loop, resume
after kill -9, and keras-tuner's chief/worker mode on loopback."""

import itertools
import json
import random
import math
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from helpers import assert_one_line_error, check_page

# A tiny space on 16x16 inputs: a trial (export, measure, one epoch) takes seconds.
TINY = {
    "name": "tiny16", "input_size": 16,
    "stem": {"filters": [8], "kernel": [3], "stride": 2},
    "head": {"filters": [32], "dropout": 0.0},
    "stages": [
        {"stride": 1, "filters": [8], "depth": [1], "choices": {"type": ["ibn_fused", "ibn_dw"], "kernel": [3],
                                                                "expansion": [1, 2]}},
        {"stride": 2, "filters": [16], "filter_mult": [0.5, 1.0], "depth": [1, 2],
         "choices": {"type": ["ibn_dw", "ibn_gc"], "kernel": [3, 5], "expansion": [2], "groups": [2]}},
    ],
}


@pytest.fixture
def tiny_space(tmp_path):
    p = tmp_path / "tiny.json"
    p.write_text(json.dumps(TINY))
    return p


def _search_args(space, out, *extra):
    return ["search", "--space", space, "--data", "digits", "--target-ms", "0.05", "--epochs", "1",
            "--runs", "10", "--out", out, *extra]


# ---- spaces ------------------------------------------------------------------------
@pytest.mark.fast
def test_released_sizes_are_points_of_edgetpu_v2():
    from odml.nas.space import load_space
    from odml.zoo.registry import create_spec

    sp = load_space("edgetpu_v2")
    for size in ("tiny", "xs", "s", "m", "l"):
        spec = create_spec(f"mobilenet_edgetpu_v2_{size}")
        values = sp.encode(spec)
        assert values is not None, size
        back = sp.decode(values, 1001)
        assert back.to_line() == spec.to_line() and back.params == spec.params
    # and v1 (a different macro-architecture: 4 fused stages) is not
    assert sp.encode(create_spec("mobilenet_edgetpu_v1")) is None


@pytest.mark.fast
def test_space_size_counts_distinct_architectures():
    from odml.nas.space import space_from_dict

    sp = space_from_dict(TINY)
    dims = sp.dimensions()
    lines = set()
    for combo in itertools.product(*dims.values()):
        lines.add(sp.decode(dict(zip(dims, combo)), 10).to_line())
    # stage 0: 2 types x 2 expansions; stage 1: 2 widths x (one block: 2 types x 2 kernels
    # + two blocks: (2 x 2)^2) = 2 x 20
    assert sp.size() == len(lines) == 4 * 40


CONSTRAINED = {
    "name": "constrained", "input_size": 32,
    "stem": {"filters": [16], "kernel": [3], "stride": 2},
    "head": {"filters": [64]},
    "stages": [
        {"stride": 2, "filters": [24], "filter_mult": [0.5, 1.0], "depth": [1, 2],
         "choices": {"type": ["ibn_dw", "ibn_gc"], "kernel": [3, 5], "expansion": [1, 2, 4], "groups": [2, 4],
                     "ibn_gc": {"expansion": [4], "kernel": [3]}}},
        {"stride": 2, "filters": [32], "depth": [1, 2],
         "choices": {"type": ["ibn_fused", "ibn_gc"], "kernel": [3], "expansion": [1, 2], "group_size": [8]},
         "positions": [{"ibn_gc": {"expansion": [2]}}]},
    ],
}


@pytest.mark.fast
@pytest.mark.parametrize("name", ["small32", "edgetpu_v2", "constrained"])
def test_every_draw_of_a_space_is_a_valid_architecture(name):
    """10,000 random draws (every hyperparameter uniform, as the random and
    evolution oracles draw) decode to specs the spec language accepts, and a
    type's own choices hold: no GC-IBN of expansion 1 anywhere."""
    from odml.nas.space import load_space, space_from_dict
    from odml.zoo.spec import ModelSpec

    sp = space_from_dict(CONSTRAINED) if name == "constrained" else load_space(name)
    dims = sp.dimensions()
    rng = random.Random(0)
    seen_types = set()
    for _ in range(10_000):
        spec = sp.decode({k: rng.choice(v) for k, v in dims.items()}, 10)
        spec.validate("draw")  # decode validates too; a spec that fails raises here
        ModelSpec.from_line(spec.to_line(), input_shape=spec.input_shape, num_classes=10)
        for b in spec.blocks:
            seen_types.add(b.type)
            assert not (b.type == "ibn_gc" and b.expansion == 1)
            if name == "constrained" and b.type == "ibn_gc":
                assert (b.kernel, b.expansion) == (3, 4) or (b.filters == 32 and b.expansion == 2)
    assert "ibn_gc" in seen_types
    if name == "constrained":  # the size counts valid blocks only: stage 0 dw 2x3 + gc 1x1x2 groups;
        # stage 1 fused 1x2 + gc 1x1 (its expansion 1 is not a GC-IBN) x 1 group size
        assert [r["choices"] for r in sp.describe()["positions"]] == [8, 8, 3, 3]
        assert sp.size() == 1 * (2 * (8 + 8 * 8)) * (3 + 3 * 3)


@pytest.mark.fast
def test_space_with_no_valid_block_is_refused(cli, tmp_path):
    bad = json.loads(json.dumps(TINY))
    bad["stages"][1]["choices"] = {"type": ["ibn_gc"], "kernel": [3], "expansion": [1], "groups": [2]}
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(bad))
    assert_one_line_error(cli("search", "--show-space", "--space", p), "stage 1: choices: no valid block")
    bad["stages"][1]["choices"] = {"type": ["ibn_dw"], "kernel": [3], "expansion": [2], "ibn_gc": {"expansion": [2]}}
    p.write_text(json.dumps(bad))
    assert_one_line_error(cli("search", "--show-space", "--space", p), "choices given for ibn_gc")
    bad["stages"][1]["choices"] = {"type": ["ibn_gc"], "kernel": [3], "expansion": [2], "groups": [2],
                                   "ibn_gc": {"expanson": [4]}}
    p.write_text(json.dumps(bad))
    assert_one_line_error(cli("search", "--show-space", "--space", p), "stage 1: choices: ibn_gc", "expanson")
    # a one-shot search over blocks the supernet cannot share weights for: one line, before anything is written
    bad["stages"][1]["choices"] = {"type": ["ibn_dw", "ibn_grouped"], "kernel": [3], "expansion": [2],
                                   "groups": [2]}
    p.write_text(json.dumps(bad))
    assert_one_line_error(cli("search", "--space", p, "--strategy", "oneshot", "--target-ms", "0.1",
                              "--out", tmp_path / "os"), "--strategy oneshot", "ibn_grouped")
    assert not (tmp_path / "os").exists()


def test_show_space_json_and_table(cli, tiny_space):
    r = cli("search", "--show-space", "--space", tiny_space, "--json")
    assert r.exit_code == 0, r.stderr
    d = r.json()["space"]
    assert d["size"] == 160 and d["name"] == "tiny16" and len(d["positions"]) == 3
    assert d["positions"][2]["optional"] and d["positions"][1]["groups"] == [2]
    r = cli("search", "--show-space", "--space", "edgetpu_v2")
    assert r.exit_code == 0 and "edgetpu_v2" in r.stdout and "10^50.5" in r.stdout  # valid architectures only


def test_yaml_space_file(cli, tmp_path):
    import yaml

    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(TINY))
    r = cli("search", "--show-space", "--space", p, "--json")
    assert r.exit_code == 0 and r.json()["space"]["size"] == 160


# ---- rewards and Pareto ----------------------------------------------------------------
@pytest.mark.fast
def test_rewards_follow_mnasnet_and_tunas():
    from odml.nas.reward import reward

    # at the target every reward is the accuracy
    for kind, w in (("mnas", -0.07), ("mnas_hard", -0.07), ("abs", -0.1)):
        assert reward(kind, 0.8, 5.0, 5.0, w) == pytest.approx(0.8)
    assert reward("mnas", 0.8, 10.0, 5.0, -0.07) == pytest.approx(0.8 * 2 ** -0.07)
    assert reward("mnas", 0.8, 2.5, 5.0, -0.07) > 0.8  # soft: faster is rewarded
    assert reward("mnas_hard", 0.8, 2.5, 5.0, -0.07) == pytest.approx(0.8)  # hard: no bonus
    assert reward("mnas_hard", 0.8, 10.0, 5.0, -0.07) == pytest.approx(0.8 * 2 ** -0.07)
    assert reward("abs", 0.8, 7.5, 5.0, -0.1) == pytest.approx(0.8 - 0.05)
    assert reward("abs", 0.8, 2.5, 5.0, -0.1) == pytest.approx(0.8 - 0.05)  # abs punishes both sides


@pytest.mark.fast
def test_pareto_front():
    from odml.pareto import pareto_front

    pts = [{"id": i, "accuracy": a, "latency_ms": t} for i, (a, t) in
           enumerate([(0.90, 1.0), (0.85, 2.0), (0.95, 3.0), (0.95, 4.0), (0.80, 0.5), (0.97, 5.0)])]
    assert [p["id"] for p in pareto_front(pts)] == [4, 0, 2, 5]


@pytest.mark.fast
def test_median_stopping_rule():
    from odml.nas.runner import median_stop

    curves = [{"train_acc_e0": a, "train_acc_e1": b} for a, b in ((0.5, 0.8), (0.6, 0.9), (0.4, 0.7))]
    assert not median_stop(0, 0.1, curves[:2], 3)  # too few finished trials
    assert median_stop(0, 0.2, curves, 3) and not median_stop(0, 0.3, curves, 3)  # half the median after epoch 1
    assert median_stop(1, 0.75, curves, 3) and not median_stop(1, 0.85, curves, 3)
    assert not median_stop(2, 0.0, curves, 3)  # never on the last epoch


# ---- latency in the loop --------------------------------------------------------------
def test_latency_cache_and_bound(tmp_path):
    from odml.files import read_jsonl
    from odml.devices.device import parse_device
    from odml.nas.latency import LatencyMeter
    from odml.nas.space import space_from_dict

    sp = space_from_dict(TINY)
    dims = sp.dimensions()
    specs = {}
    for combo in itertools.product(*dims.values()):
        spec = sp.decode(dict(zip(dims, combo)), 10)
        specs.setdefault(spec.to_line(), spec)
    specs = list(specs.values())[:3]
    cache = tmp_path / "lat.jsonl"
    meter = LatencyMeter(parse_device("host"), "int8", 1, 10, 0.05, cache)
    lat, cached = meter.measure(specs[0])
    assert not cached and lat["median_ms"] > 0 and lat["size_bytes"] > 1000
    again, cached = meter.measure(specs[0].replace(name="renamed"))  # the name is not the architecture
    assert cached and again == lat
    assert meter.lower_bound_ms(specs[0]) is None  # no bound before three measurements
    for s in specs[1:]:
        meter.measure(s)
    assert len(read_jsonl(cache)) == 3
    fresh = LatencyMeter(parse_device("host"), "int8", 1, 10, 0.05, cache)  # another run reads the cache
    assert fresh.measure(specs[0]) == (lat, True)
    bound = fresh.lower_bound_ms(specs[0])
    assert 0 < bound <= lat["median_ms"] * (1 + 1e-9)
    other = LatencyMeter(parse_device("host"), "fp32", 1, 10, 0.05, cache)  # another precision is measured anew
    assert other.measure(specs[0])[1] is False


# ---- the search ------------------------------------------------------------------------
def test_search_end_to_end_evolution(cli, tiny_space, tmp_path):
    from odml.files import read_jsonl
    from odml.zoo.spec import ModelSpec

    out = tmp_path / "run"
    r = cli(*_search_args(tiny_space, out, "--trials", "5", "--strategy", "evolution", "--population", "2",
                          "--sample", "2", "--json"))
    assert r.exit_code == 0, r.stderr
    s = r.json()["search"]
    recs = read_jsonl(out / "trials.jsonl")
    assert s["trials"] == len(recs) == 5 and len({x["trial_id"] for x in recs}) == 5
    for rec in recs:
        assert set(rec) >= {"line", "values", "metrics", "reward", "accuracy", "latency_ms", "params", "macs", "wall_s"}
        if rec["status"] != "rejected":
            assert 0 <= rec["accuracy"] <= 1 and rec["latency_ms"] > 0 and rec["metrics"]["latency_p90_ms"] > 0
            assert rec["reward"] == pytest.approx(rec["accuracy"] * (rec["latency_ms"] / 0.05) ** -0.07)
    # one epoch on the digits at 16x16 (10 classes, chance 0.1): every trained candidate learned something
    # (0.30 to 0.44 measured), the best clearly
    trained = [x["accuracy"] for x in recs if x["status"] != "rejected"]
    assert trained and min(trained) > 0.15 and max(trained) > 0.3, trained
    best = max(recs, key=lambda x: x["reward"])
    assert s["best"]["trial_id"] == best["trial_id"]
    # after the population (2) is full, every child is the best of the newest two finished trials (--sample 2
    # takes both; a tie, either) with one choice changed, into an architecture not trained before (a mutation
    # of a choice the depth leaves out is not one)
    for i, rec in enumerate(recs[2:], 2):
        pool = recs[i - 2:i]  # trials.jsonl is in the order the trials finished
        parents = [e for e in pool if e["reward"] == max(p["reward"] for p in pool)]
        assert any(sum(rec["values"][k] != e["values"][k] for k in e["values"]) == 1 for e in parents), \
            (i, [e["values"] for e in pool], rec["values"])
        assert not rec["metrics"].get("duplicate") and rec["line"] not in {e["line"] for e in recs[:i]}
    front = json.loads((out / "pareto.json").read_text())["front"]
    lats = [p["latency_ms"] for p in front]
    accs = [p["accuracy"] for p in front]
    assert lats == sorted(lats) and accs == sorted(accs) and len(front) >= 1
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # its page (report.html), in a real browser: the best trial's figures and architecture, every trial listed
    from odml.report.page import num

    check_page(out, f"Search of {s['space']}", num(best["accuracy"]), *(num(x["reward"]) for x in recs))
    html = (out / "report.html").read_text()
    trained_here = [x for x in recs if x["status"] in ("completed", "stopped_early")]
    assert html.count("<title>trial ") == 2 * len(trained_here)  # each drawn on the front chart and over time
    assert f"<code>{best['line']}</code>" in html and s["files"]["report.html"] == str(out / "report.html")
    spec = ModelSpec.load(out / "best_spec.json")
    assert spec.to_line() == best["line"] and spec.input_shape == (16, 16, 3) and spec.num_classes == 10
    # the best spec is usable by export
    r = cli("export", out / "best_spec.json", "--quantize", "fp32", "--out", tmp_path / "exp", "--json")
    assert r.exit_code == 0, r.stderr
    # a rerun of a finished search runs nothing new and reports the same best
    r = cli(*_search_args(tiny_space, out, "--trials", "5", "--strategy", "evolution", "--population", "2",
                          "--sample", "2", "--json"))
    assert r.exit_code == 0 and r.json()["search"]["best"] == s["best"]
    assert len(read_jsonl(out / "trials.jsonl")) == 5


@pytest.mark.parametrize("strategy", ["bayesian", "hyperband"])
def test_other_oracles_run(cli, tiny_space, tmp_path, strategy):
    from odml.files import read_jsonl

    out = tmp_path / strategy
    r = cli(*_search_args(tiny_space, out, "--trials", "3", "--strategy", strategy, "--epochs", "3"))
    assert r.exit_code == 0, r.stderr
    recs = read_jsonl(out / "trials.jsonl")
    assert len(recs) == 3 and "best" in r.stdout and "pareto" in r.stdout
    if strategy == "hyperband":  # Hyperband's first bracket trains with fewer epochs than the most
        assert all("tuner/epochs" in x["values"] for x in recs)
        assert min(x["metrics"]["epochs"] for x in recs) < 3


def _odml(*args):
    return [sys.executable, "-c", "from odml.cli.app import main; main()", *map(str, args)]


def test_resume_after_kill_9(tiny_space, tmp_path):
    from odml.files import read_jsonl

    out = tmp_path / "run"
    args = _odml(*_search_args(tiny_space, out, "--trials", "4", "--strategy", "random", "--json"))
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and len(read_jsonl(out / "trials.jsonl")) < 2:
        time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = read_jsonl(out / "trials.jsonl")
    assert 2 <= len(before) < 4
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    after = read_jsonl(out / "trials.jsonl")
    ids = [x["trial_id"] for x in after]
    assert len(after) == 4 and len(set(ids)) == 4  # none lost, none run twice
    assert after[:len(before)] == before  # the finished trials are kept as they were
    assert json.loads(r.stdout)["search"]["trials"] == 4


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tuner_state_files_are_replaced_whole(tmp_path, monkeypatch):
    """keras-tuner's state files go through a temporary file and a rename: a
    write that dies half-way leaves the previous file as it was (a search
    killed mid-write used to resume from a truncated tuner0.json)."""
    from keras_tuner.src import utils as kt_utils
    from keras_tuner.src.engine.hyperparameters import HyperParameters
    from keras_tuner.src.engine.trial import Trial

    from odml.nas.runner import atomic_tuner_files

    atomic_tuner_files()
    f = tmp_path / "trial.json"
    Trial(HyperParameters(), trial_id="7").save(str(f))  # through keras-tuner's own Stateful.save
    assert json.loads(f.read_text())["trial_id"] == "7"

    def dies(src, dst):
        raise OSError("killed")

    monkeypatch.setattr(os, "replace", dies)
    with pytest.raises(OSError):
        kt_utils.save_json(str(f), {"trial_id": "8"})
    assert json.loads(f.read_text())["trial_id"] == "7"  # the old file, whole


def test_chief_and_two_workers_share_trials(tiny_space, tmp_path):
    from odml.files import read_jsonl

    out = tmp_path / "dist"
    oracle = f"127.0.0.1:{_free_port()}"
    common = _search_args(tiny_space, out, "--trials", "4", "--strategy", "random", "--oracle", oracle)
    env = {**os.environ, "KERASTUNER_ORACLE_IP": "", "KERASTUNER_TUNER_ID": ""}
    chief = subprocess.Popen(_odml(*common, "--role", "chief", "--json"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    workers = [subprocess.Popen(_odml(*common, "--role", "worker", "--worker-id", f"w{i}", "--json"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in (1, 2)]
    try:
        w_out = [w.communicate(timeout=400) for w in workers]
        c_out = chief.communicate(timeout=120)
    finally:
        for p in (chief, *workers):
            p.kill()
    assert chief.returncode == 0, c_out[1]
    assert all(w.returncode == 0 for w in workers), [o[1][-2000:] for o in w_out]
    ran = {json.loads(o[0])["search"]["tuner_id"]: json.loads(o[0])["search"]["trained"] for o in w_out}
    assert set(ran) == {"w1", "w2"} and all(n >= 1 for n in ran.values())  # both workers got trials
    recs = read_jsonl(out / "trials.jsonl")
    assert sorted(x["trial_id"] for x in recs) == ["0", "1", "2", "3"]  # none lost, none twice
    trained = sum(1 for x in recs if not x["metrics"].get("rejected") and not x["metrics"].get("duplicate"))
    assert sum(ran.values()) == trained
    assert json.loads(c_out[0])["search"]["trials"] == 4


# ---- bad input ---------------------------------------------------------------------------
def _space_file(tmp_path, mutate):
    d = json.loads(json.dumps(TINY))
    mutate(d)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d))
    return p


@pytest.mark.parametrize("mutate,fragments", [
    (lambda d: d.update(stages=[]), ("empty space",)),
    (lambda d: d["stages"][1]["choices"].update(kernel=[]), ("stage 1", "'kernel' has no choices")),
    (lambda d: d["stages"][1]["choices"].update(groups=[3]), ("stage 1 block 0", "group count 3 does not divide")),
    (lambda d: d["stages"][0].update(depth=[0]), ("stage 0", "depth")),
    (lambda d: d.update(colour="red"), ("unknown key(s) colour",)),
    (lambda d: d["stages"][1]["choices"].update(type=["ibn_xx"]), ("unknown block type 'ibn_xx'",)),
])
def test_bad_space_files(cli, tmp_path, mutate, fragments):
    p = _space_file(tmp_path, mutate)
    out = tmp_path / "never"
    r = cli(*_search_args(p, out, "--trials", "1"))
    assert_one_line_error(r, str(p), *fragments)
    assert not out.exists()


def test_bad_settings(cli, tiny_space, tmp_path):
    out = tmp_path / "never"
    for target in ("0", "-1"):
        r = cli("search", "--space", tiny_space, "--target-ms", target, "--out", out)
        assert_one_line_error(r, "--target-ms", "greater than 0")
    r = cli(*_search_args(tiny_space, out, "--device", "phone7"))
    assert_one_line_error(r, "phone7", "unknown device")
    r = cli(*_search_args(tiny_space, out, "--device", "adb:NOPE", "--benchmark-binary", sys.executable))
    assert r.exit_code == 2 and "adb:NOPE" in r.stderr
    r = cli(*_search_args("no_such_space", out))
    assert_one_line_error(r, "no_such_space", "built-in spaces: edgetpu_v2, small32")
    r = cli(*_search_args(tiny_space, out, "--strategy", "annealing"))
    assert_one_line_error(r, "--strategy 'annealing'")
    r = cli(*_search_args(tiny_space, out, "--reward", "mnas", "--exponent", "0.5"))
    assert_one_line_error(r, "--exponent")
    bad_yaml = tmp_path / "s.yaml"
    bad_yaml.write_text("stages: [\n  - {stride: 2\n")
    assert_one_line_error(cli(*_search_args(bad_yaml, out)), str(bad_yaml), "not valid YAML")
    assert not out.exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert_one_line_error(cli(*_search_args(tiny_space, busy)), "holds no search")
    assert sorted(os.listdir(busy)) == ["notes.txt"]


def test_resume_refuses_other_settings(cli, tiny_space, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    from odml.nas.runner import SearchConfig, _settings
    from odml.nas.space import load_space

    cfg = SearchConfig(space=str(tiny_space), target_ms=0.05, epochs=1, runs=10)
    (out / "search.json").write_text(json.dumps(_settings(cfg, load_space(tiny_space))))
    r = cli(*_search_args(tiny_space, out, "--reward", "abs"))
    assert_one_line_error(r, "other settings", "reward")
    assert sorted(os.listdir(out)) == ["search.json"]


def test_rejected_candidates_are_not_measured(cli, tiny_space, tmp_path):
    from odml.files import read_jsonl

    out = tmp_path / "run"
    r = cli(*_search_args(tiny_space, out, "--trials", "2", "--strategy", "random", "--max-params", "10"))
    # nothing trained: no best model named (issue 42), exit 1 with what rejected them
    assert_one_line_error(r, "no candidate was trained", "2 over --max-params", code=1)
    assert not (out / "best_spec.json").exists() and not (out / "summary.json").exists()
    recs = read_jsonl(out / "trials.jsonl")
    assert [x["status"] for x in recs] == ["rejected", "rejected"]
    assert all(x["reward"] == 0 and not math.isnan(x["latency_ms"]) for x in recs)
    # no candidate was exported or measured: the cache holds the probe of the MAC bound alone (issue 42)
    cache = read_jsonl(out / "latency_cache.jsonl")
    assert len(cache) == 1 and cache[0]["line"] not in {x["line"] for x in recs}


def test_candidates_far_over_the_target_are_not_trained(cli, tiny_space, tmp_path):
    """The MAC bound is known before the first candidate is measured (issue
    42): a probe (the largest of eight draws) is measured first, and every
    candidate whose MACs at the probe's rate exceed --reject-above x target
    is rejected unmeasured and untrained (issue 24: an oversized first draw
    of edgetpu_v2 took a whole search budget training); the one line says
    what the target allows against what the space's draws cost."""
    from odml.files import read_jsonl

    out = tmp_path / "run"
    r = cli(*_search_args(tiny_space, out, "--trials", "2", "--strategy", "random", "--target-ms", "0.00001"))
    assert_one_line_error(r, "no candidate was trained", "2 bounded by MACs over --reject-above", "the cheapest",
                          "the target allows about", "median draw costs", code=1)
    assert not (out / "best_spec.json").exists()
    recs = read_jsonl(out / "trials.jsonl")
    assert [x["status"] for x in recs] == ["rejected", "rejected"]
    assert all(x["latency_source"] == "bound" and x["latency_ms"] > 3 * 0.00001 for x in recs)
    assert all(x["metrics"]["rejected"] == 3 and x["accuracy"] == 0 and "train_accuracy" not in x["metrics"]
               for x in recs)
    bound = json.loads((out / "mac_bound.json").read_text())
    cache = read_jsonl(out / "latency_cache.jsonl")
    assert len(cache) == 1 and cache[0]["macs"] == bound["probe_macs"]  # the probe alone was measured
    assert bound["target_macs"] < min(x["macs"] for x in recs)
    # the bound is the probe's rate: its latency in ms per MAC times the candidate's MACs
    rate = bound["probe_ms"] / bound["probe_macs"]
    assert all(x["latency_ms"] == pytest.approx(rate * x["macs"], rel=1e-3) for x in recs)


def _choices(rec):
    return {k: v for k, v in rec["values"].items() if not k.startswith("tuner/")}


def test_search_edgetpu_v2_end_to_end(cli, tmp_path):
    """The seed's space searched for real (evolution, a tiny input, scaled to it): every
    candidate is a valid MobileNetEdgeTPUV2-style network that is exported,
    measured and trained; no trial fails. Three trials with a population of
    two: two random draws, then a child: the better of the two (--sample 3
    takes the whole population) with one choice mutated into an
    architecture not tried before."""
    from odml.files import read_jsonl

    out = tmp_path / "v2"
    r = cli("search", "--space", "edgetpu_v2", "--input-size", "16", "--data", "shapes:300", "--target-ms", "1",
            "--reject-above", "50",  # every draw is trained, however large (the largest are a few ms at 16 px)
            "--trials", "3", "--population", "2", "--epochs", "1", "--runs", "5", "--out", out, "--json")
    assert r.exit_code == 0, r.stderr
    assert "Traceback" not in r.stderr
    recs = read_jsonl(out / "trials.jsonl")  # in the order the trials finished
    assert len(recs) == 3 and all(x["status"] in ("completed", "stopped_early") for x in recs), recs
    assert all(x["latency_ms"] > 0 and len(x["line"].split()) >= 9 for x in recs)
    for x in recs:  # trained and scored: the reward the evolution ranks is the accuracy, weighed by the latency
        assert 0 < x["accuracy"] <= 1 and x["reward"] == pytest.approx(x["accuracy"] * (x["latency_ms"] / 1) ** -0.07)
    assert len({x["line"] for x in recs}) == 3  # three different architectures
    child, parent = recs[2], max(recs[:2], key=lambda x: x["reward"])
    changed = [k for k in _choices(child) if _choices(child)[k] != _choices(parent)[k]]
    assert len(changed) == 1, (changed, parent["line"], child["line"])  # one choice of the better parent mutated
    s = r.json()["search"]
    assert s["space"] == "edgetpu_v2"
    # scaled to the 16 px input by default (issue 42), the MAC bound probed before the first candidate
    assert s["space_scale"]["width"] < 1 and s["space_scale"]["input_size"] == 16
    assert s["mac_bound"]["probe"] == "mobilenet_edgetpu_v2_tiny" and s["mac_bound"]["target_macs"] > 0


def test_a_candidate_measured_far_over_the_target_is_not_trained(tmp_path):
    """Before any MAC bound exists (no probe, fewer than three measurements),
    a candidate is measured first: one over --reject-above x target is
    recorded as rejected (code 6: measured, not trained) and never trained;
    one under it is trained."""
    from odml.nas.config import SearchConfig, prepare
    from odml.nas.evaluate import Evaluator
    from odml.nas.latency import LatencyMeter

    cfg = SearchConfig(space="small32", data="digits", input_size=16, target_ms=1e-4, epochs=1, reject_factor=3.0)
    p = prepare(cfg, tmp_path / "s", role="worker")
    p.out.mkdir(parents=True, exist_ok=True)
    meter = LatencyMeter(p.device, "int8", 1, 5, 0.05)
    ev = Evaluator(p, meter)
    (_, spec), = p.space.draw_values(1, seed=0)
    assert meter.lower_bound_ms(spec) is None  # nothing measured: no bound to reject it before the measurement
    m = ev.evaluate(spec, 1, [])
    assert m["rejected"] == 6.0 and m["latency_measured"] == 1.0 and m["latency_ms"] > 3 * cfg.target_ms
    assert m["accuracy"] == 0.0 and ev.trained_here == 0
    p.cfg.target_ms = 10 * m["latency_ms"]  # the same model, now well within the target: measured and trained
    m = ev.evaluate(spec, 1, [])
    assert "rejected" not in m and ev.trained_here == 1 and m["accuracy"] > 0.15, m
