"""odml search --task segment (issue 41): the backbone's blocks and the BiFPN
head (channels, levels, cells, fusion) searched together on shapes-seg,
with the strategies and the latency predictor; what bad input gets."""

import json

import pytest
from helpers import assert_one_line_error

from odml.nas.space import SpaceError, load_space, space_from_dict


def _spec_of(path):
    from odml.zoo.registry import resolve

    return resolve(str(path)).config


@pytest.mark.fast
def test_the_segmentation_space_decodes_and_encodes_its_points():
    import random

    sp = load_space("autoseg64")
    assert sp.task == "segment" and {"decoder_filters", "decoder_repeats", "decoder_fusion"} <= set(sp.dimensions())
    rng = random.Random(1)
    heads = set()
    for _ in range(20):
        values = {k: rng.choice(v) for k, v in sp.dimensions().items()}
        seg = sp.decode(values, 11)
        heads.add(seg.head.to_line())
        assert seg.head.kind == "bifpn" and seg.num_classes == 11 and seg.head.min_level == 3
        back = sp.encode(seg)
        assert back is not None and sp.decode(back, 11).to_line() == seg.to_line()
    assert len(heads) > 5  # the head is searched, not fixed
    assert load_space("small32").encode(seg) is None  # a classifier space holds no segmentation model


@pytest.mark.fast
def test_bad_segmentation_spaces_are_refused():
    base = {"name": "x", "input_size": 32, "stem": {"filters": [8]},
            "stages": [{"stride": 2, "filters": [16], "depth": [1], "choices": {"type": ["ibn_dw"], "kernel": [3],
                                                                                "expansion": [2]}}]}
    for decoder, words in (({"min_level": [4]}, "reaches level 2"), ({"fusion": ["max"]}, "fusion 'max'"),
                           ({"min_level": [2], "max_level": [2]}, "no min_level is below"),
                           ({"kind": "deeplab"}, "BiFPN")):
        with pytest.raises(SpaceError, match=words):
            space_from_dict({**base, "decoder": decoder})
    with pytest.raises(SpaceError, match="drop 'head'"):
        space_from_dict({**base, "head": {"filters": [64]}, "decoder": {"min_level": [2], "max_level": [4]}})


def test_search_segment_on_a_space_without_a_head_and_other_refusals(cli, tmp_path):
    r = cli("search", "--space", "small32", "--task", "segment", "--target-ms", "1", "--out", tmp_path / "a")
    assert_one_line_error(r, "--task segment", "small32", "no decoder head")
    r = cli("search", "--space", "autoseg64", "--task", "classify", "--target-ms", "1", "--out", tmp_path / "b")
    assert_one_line_error(r, "--task classify", "segments")
    r = cli("search", "--space", "autoseg64", "--strategy", "oneshot", "--target-ms", "1", "--out", tmp_path / "c")
    assert_one_line_error(r, "oneshot", "segments")
    assert not any((tmp_path / d).exists() for d in "abc")


def test_search_segment_measured_then_hybrid_with_the_predictor(cli, tmp_path):
    """A few trials of each at tiny sizes: evolution with measured latency, then random with the predictor
    calibrated on the space (its decoder's cost fitted per MAC) in hybrid mode. Each trial is a segmentation
    model scored by mIoU; the best spec trains with `odml train`."""
    r = cli("search", "--space", "autoseg64", "--task", "segment", "--data", "shapes-seg:160", "--target-ms", "1",
            "--trials", "2", "--epochs", "1", "--runs", "5", "--out", tmp_path / "s", "--json")
    assert r.exit_code == 0, r.stderr
    s = r.json()["search"]
    assert s["task"] == "segment" and s["metric"] == "miou" and s["status"] == {"completed": 2}
    trials = [json.loads(x) for x in (tmp_path / "s" / "trials.jsonl").read_text().splitlines()]
    assert all(t["line"].split()[-1].startswith("seg_bifpn_") for t in trials)
    assert all(0 < t["accuracy"] < 1 and t["latency_ms"] > 0 for t in trials)
    best = _spec_of(tmp_path / "s" / "best_spec.json")
    top = max(trials, key=lambda t: t["reward"])  # the best spec is the trial the reward ranks first, head included
    assert best.to_line() == top["line"] and s["best"]["trial_id"] == top["trial_id"]
    assert best.num_classes == 11 and best.input_shape == (64, 64, 3)
    assert cli("train", tmp_path / "s" / "best_spec.json", "--data", "shapes-seg:100", "--epochs", "1", "--out",
               tmp_path / "best.keras").exit_code == 0

    cal = cli("calibrate", "--space", "autoseg64", "--minutes", "0.4", "--classes", "11", "--runs", "5", "--out",
              tmp_path / "cal", "--json")
    assert cal.exit_code == 0, cal.stderr
    pred = json.loads((tmp_path / "cal" / "predictor.json").read_text())
    assert "per_head_mmac" in pred["correction"] and all(m.get("head_mmacs", 0) > 0 for m in pred["models_fit"])
    assert not any(u["unit"]["kind"] == "head" for u in pred["units"])  # the decoder is no unit; no classifier head
    from odml.nas.predictor import load_predictor
    from odml.nas.units import head_macs, spec_of

    best, _ = spec_of(str(tmp_path / "s" / "best_spec.json"))  # what `odml predict` and `bench --blocks` read
    pr = load_predictor(tmp_path / "cal" / "predictor.json")
    row = pr.row(best)
    assert pr.in_space(best) and row["head_mmacs"] == pytest.approx(head_macs(best) / 1e6) and head_macs(best) > 0
    assert pr.predict(best) > 0
    r = cli("search", "--space", "autoseg64", "--data", "shapes-seg:160", "--strategy", "random", "--latency",
            "hybrid", "--predictor", tmp_path / "cal" / "predictor.json", "--target-ms", "1", "--trials", "2",
            "--epochs", "1", "--runs", "5", "--out", tmp_path / "h", "--json")
    assert r.exit_code == 0, r.stderr
    trials = [json.loads(x) for x in (tmp_path / "h" / "trials.jsonl").read_text().splitlines()]
    done = [t for t in trials if t["status"] == "completed"]
    assert done and all(t["latency_predicted_ms"] is not None for t in done)
    # a 0.4-minute calibration: predictions within a factor of two of the measured latency
    assert all(0.5 < t["latency_predicted_ms"] / t["latency_ms"] < 2 for t in done)
