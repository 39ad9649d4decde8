"""The command line as a user types it: zoo, train, and one-line errors with
exit code 2 and no partial output for every bad input."""

import json
import subprocess
import sys

import pytest
from helpers import assert_one_line_error, make_image_folder

PUBLISHED = {
    "mobilenet_edgetpu_v2_tiny": 3_762_729, "mobilenet_edgetpu_v2_xs": 4_462_697, "mobilenet_edgetpu_v2_s": 5_987_737,
    "mobilenet_edgetpu_v2_m": 8_464_233, "mobilenet_edgetpu_v2_l": 10_923_049, "mobilenet_edgetpu_v1": 4_092_713,
}
SMALL = ["--input-size", "32", "--width", "0.25"]


def test_help_and_version(cli_proc):
    r = cli_proc("--help")
    assert r.exit_code == 0 and "zoo" in r.stdout and "train" in r.stdout
    from odml import __version__

    r = cli_proc("--version")
    assert r.exit_code == 0 and r.stdout.strip() == f"odml {__version__}"


def test_zoo_list_table_and_json(cli):
    r = cli("zoo", "list")
    assert r.exit_code == 0
    for name, params in PUBLISHED.items():
        assert name in r.stdout and f"{params:,}" in r.stdout
    r = cli("zoo", "list", "--json")
    rows = {m["name"]: m for m in r.json()["models"]}
    assert {n: rows[n]["params"] for n in PUBLISHED} == PUBLISHED
    assert rows["mobilenet_edgetpu_v2_s"]["input_shape"] == [224, 224, 3]
    r = cli("zoo", "list", "v2_[lms]", "--json")
    assert [m["name"] for m in r.json()["models"]] == ["mobilenet_edgetpu_v2_l", "mobilenet_edgetpu_v2_m",
                                                       "mobilenet_edgetpu_v2_s"]


def test_zoo_show_blocks_and_line(cli, tmp_path):
    r = cli("zoo", "show", "mobilenet_edgetpu_v2_s")
    assert r.exit_code == 0
    assert "5,987,737" in r.stdout and "fused_k3_e8_s2_c48 gc_k3_e4_s1_c48_g3" in r.stdout
    r = cli("zoo", "show", "mobilenet_edgetpu_v2_s", "--json", "--out", tmp_path / "s.json")
    d = r.json()
    assert d["params"] == 5_987_737 and len(d["layers"]) == 22
    assert d["layers"][3]["type"] == "ibn_gc" and d["layers"][3]["groups"] == 3
    assert d["layers"][1]["output_shape"] == [112, 112, 24]
    # the written spec is a spec: show it again from the file with overrides
    r = cli("zoo", "show", tmp_path / "s.json", "--classes", "10", "--json")
    assert r.json()["spec"]["num_classes"] == 10 and r.json()["spec"]["line"] == d["spec"]["line"]


def test_unknown_model_suggests(cli):
    r = cli("zoo", "show", "mobilenet_edgetpu_v2_x")
    assert_one_line_error(r, "unknown model 'mobilenet_edgetpu_v2_x'", "mobilenet_edgetpu_v2_xs")


def test_spec_not_json_and_invalid_block(cli, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    assert_one_line_error(cli("zoo", "show", bad), str(bad), "not valid JSON")
    inv = tmp_path / "inv.json"
    inv.write_text(json.dumps({"input_shape": [32, 32, 3], "num_classes": 3,
                               "blocks": ["fused_k3_e4_s2_c16", "gc_k3_e4_s1_c16_g3"]}))
    assert_one_line_error(cli("zoo", "show", inv), str(inv), "block 1 (gc_k3_e4_s1_c16_g3)", "3 groups")
    out = tmp_path / "m.keras"
    assert_one_line_error(cli("train", inv, "--out", out, "--epochs", "1"), "block 1")
    assert not out.exists()


def test_train_digits_end_to_end(cli_proc, tmp_path):
    out = tmp_path / "model.keras"
    r = cli_proc("train", "mobilenet_edgetpu_v2_tiny", *SMALL, "--data", "digits", "--epochs", "3", "--out", out,
                 "--json")
    assert r.exit_code == 0, r.stderr
    res = json.loads(r.stdout)["train"]
    assert out.is_file() and (tmp_path / "model.logs").is_dir()
    assert res["classes"] == 10 and res["input_shape"] == [32, 32, 3]
    assert res["val_accuracy"] > 0.5  # chance is 0.1
    from odml.zoo import create_spec

    assert res["params"] == create_spec("mobilenet_edgetpu_v2_tiny", num_classes=10, input_size=32, width=0.25).params
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary files left


def test_train_image_folder_table(cli, tmp_path):
    make_image_folder(tmp_path / "imgs", per_class=8)
    out = tmp_path / "m.keras"
    r = cli("train", "mobilenet_edgetpu_v1", *SMALL, "--data", tmp_path / "imgs", "--epochs", "1", "--out", out,
            "--no-tensorboard", "--batch-size", "8")
    assert r.exit_code == 0, r.stderr
    assert "val accuracy" in r.stdout and "MACs" in r.stdout and out.is_file()
    assert "resized" in r.stderr
    assert not (tmp_path / "m.logs").exists()


@pytest.mark.parametrize("case", ["missing_folder_out", "empty_data", "single_class", "unknown_model", "bad_suffix"])
def test_train_bad_input_leaves_nothing(cli, tmp_path, case):
    data, out = "digits", tmp_path / "m.keras"
    model, fragment = "mobilenet_edgetpu_v2_tiny", ""
    if case == "missing_folder_out":
        out, fragment = tmp_path / "nowhere" / "m.keras", "does not exist"
    elif case == "empty_data":
        (tmp_path / "empty").mkdir()
        data, fragment = tmp_path / "empty", "no class subfolders"
    elif case == "single_class":
        make_image_folder(tmp_path / "one", classes=("a",), per_class=3)
        data, fragment = tmp_path / "one", "only one class"
    elif case == "unknown_model":
        model, fragment = "mobilenet_edgetpu_v3", "unknown model"
    elif case == "bad_suffix":
        out, fragment = tmp_path / "m.tflite", ".keras or .h5"
    before = set(tmp_path.rglob("*"))
    r = cli("train", model, *SMALL, "--data", data, "--epochs", "1", "--out", out)
    assert_one_line_error(r, fragment)
    assert set(tmp_path.rglob("*")) == before


def test_help_paragraphs_wrap_to_the_terminal(cli_proc):
    """A docstring's paragraphs are not broken where the source wraps them."""
    r = cli_proc("search", "--help", env={"COLUMNS": "250"})
    assert r.exit_code == 0 and "proxy-trained on --data for a few epochs" in r.stdout


@pytest.mark.parametrize("model, extra, words", [
    ("mobilenet_edgetpu_v2_tiny", ("--max-len", "16"), ("ibn: --max-len is not supported",)),
    ("mobilenet_edgetpu_v2_tiny", ("--patience", "1"), ("ibn: --patience is not supported",)),
    ("mobilenet_edgetpu_v2_tiny", ("--variant", "full"), ("ibn: --variant is not supported",)),
    ("mobilenet_edgetpu_v2_tiny", ("--steps", "1,1,1"), ("ibn: --steps is not supported", "--epochs")),
    ("pqrnn_tiny", ("--no-tensorboard",), ("pqrnn: --tensorboard/--no-tensorboard is not supported",)),
    ("pqrnn_tiny", ("--vocab-size", "100"), ("pqrnn: --vocab-size is not supported",)),
    ("blazepose", ("--epochs", "2"), ("blazepose_landmarks: --epochs is not supported", "--steps")),
    ("blazepose_lite", ("--variant", "full"), ("--variant", "one landmark model")),
])
def test_train_refuses_an_option_the_family_does_not_take(cli, tmp_path, model, extra, words):
    """An option of `odml train` that the model's family does not take (its
    train_options) is refused in one line, exit 2, before anything is read
    or written, instead of being ignored."""
    r = cli("train", model, *extra, "--out", tmp_path / "m.keras")
    assert_one_line_error(r, *words)
    assert list(tmp_path.iterdir()) == []

