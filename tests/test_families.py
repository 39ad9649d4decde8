"""Model families, the registry, model cards, run folders and files: the
shape that makes a new kind of model one new file (no TensorFlow here but
where a test builds a model)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.fast


def test_one_registry_lists_every_family():
    from odml.zoo import get_entry, list_families, list_models

    names = {f.name for f in list_families()}
    assert {"ibn", "pqrnn", "mobilebert", "blazepose_detector", "blazepose_landmarks", "external"} <= names
    assert list_models("pqrnn*") == ["pqrnn", "pqrnn_tiny"]
    assert "mobilebert_edgetpu_xs" in list_models("edgetpu_xs") and "blazepose_full" in list_models("blazepose")
    assert "blazepose_tiny" not in list_models()  # test-sized entries exist but are not listed
    assert get_entry("pqrnn").family.name == "pqrnn" and get_entry("blazepose_lite").task == "pose_landmarks"


def test_unknown_names_are_one_line_errors_with_suggestions():
    from odml.errors import UnknownModelError
    from odml.zoo import create_config, get_family

    with pytest.raises(UnknownModelError, match="did you mean pqrnn"):
        create_config("pqrn")
    with pytest.raises(UnknownModelError, match="unknown model family 'bert'"):
        get_family("bert")


@pytest.mark.parametrize("name", ["mobilenet_edgetpu_v2_tiny", "pqrnn_tiny", "mobilebert_edgetpu_xs",
                                  "blazepose_detector", "blazepose_lite"])
def test_every_family_says_what_goes_in_and_comes_out(name):
    from odml.zoo import resolve

    c = resolve(name)
    fam, inp, out = c.family, c.input, c.output
    assert c.params > 0 and c.macs > 0
    assert out.task in ("classify", "detect", "keypoints") and out.size > 0
    x = inp.random(np.random.default_rng(0), 3)
    assert x.shape == (3, *inp.shape) and str(x.dtype) == inp.dtype
    if inp.kind == "image":
        lo, hi = inp.range
        assert lo <= x.min() and x.max() <= hi
        mean, std = inp.normalization
        assert (0 - mean) / std == pytest.approx(lo) and (255 - mean) / std == pytest.approx(hi)
    if inp.kind == "token_ids":
        assert x.min() >= 1 and x.max() < inp.vocab_size  # 0 is padding
    d = fam.config_to_dict(c.config)
    assert fam.config_from_dict(json.loads(json.dumps(d))) == c.config  # the card's config round-trips


def test_the_detector_reads_minus_one_to_one_and_the_landmarks_zero_to_one():
    from odml.zoo import resolve

    det, lm = resolve("blazepose_detector").input, resolve("blazepose_lite").input
    assert det.normalization == (127.5, 127.5) and lm.normalization == (0.0, 255.0)
    assert det.from_pixels(np.array([0, 255], np.uint8)).tolist() == [-1.0, 1.0]
    assert resolve("blazepose_detector").output.shape == (2254, 13)


def test_text_families_scale_and_take_a_length():
    from odml.errors import SpecError
    from odml.zoo import create_config, resolve

    c = resolve("pqrnn", classes=3, input_size="32", width=0.5)
    assert (c.config.max_len, c.config.bottleneck, c.config.hidden, c.config.num_classes) == (32, 64, 48, 3)
    assert create_config("mobilebert_edgetpu_xs", layers=2).layers == 2
    with pytest.raises(SpecError, match="one sequence length"):
        resolve("pqrnn_tiny", input_size="8x8")
    with pytest.raises(SpecError, match="cannot be scaled"):
        resolve("blazepose_lite", width=0.5)
    with pytest.raises(SpecError, match="has no classes"):
        resolve("blazepose_detector", classes=3)


def test_model_cards_round_trip_and_refuse_what_they_are_not(tmp_path):
    from odml.errors import DataError
    from odml.zoo import resolve
    from odml.zoo.card import ModelCard, card_path

    c = resolve("mobilebert_edgetpu_xs", classes=2)
    card = ModelCard(c.family, c.config, "bert", ["ham", "spam"], ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hi"])
    model = tmp_path / "bert.keras"
    card.save(model)
    assert card_path(model) == tmp_path / "bert.odml.json"
    back = ModelCard.load(model)
    assert back.family is c.family and back.config == c.config and back.vocab == card.vocab
    d = json.loads(card_path(model).read_text())
    assert d["task"] == "classify" and d["input"]["kind"] == "token_ids" and d["output"]["name"] == "logits"
    assert ModelCard.load(tmp_path / "other.keras") is None
    card_path(model).write_text('{"family": "resnet", "config": {}}')
    with pytest.raises(DataError, match="unknown model family 'resnet'"):
        ModelCard.load(model)
    card_path(model).write_text("{oops")
    with pytest.raises(DataError, match="unreadable model card"):
        ModelCard.load(model)


def test_a_card_from_before_model_cards_is_read(tmp_path):
    from odml.zoo.card import ModelCard

    (tmp_path / "pq.text.json").write_text(json.dumps(
        {"schema": 1, "family": "pqrnn", "config": {"max_len": 24, "features": 64, "bottleneck": 16, "hidden": 8,
                                                     "layers": 1}, "labels": ["ham", "spam"], "vocab": None}))
    card = ModelCard.load(tmp_path / "pq.keras")
    assert card.family.name == "pqrnn" and card.input.shape == (24, 64) and card.labels == ["ham", "spam"]


def test_a_new_family_is_one_new_file(tmp_path):
    """A family module dropped into odml/zoo/families/ is found by the
    registry, listed by `odml zoo list`, and read back from a card."""
    from pathlib import Path

    import odml.zoo.families as pkg

    code = '''
from dataclasses import dataclass
from odml.zoo.family import Counts, Family, InputSpec, OutputSpec
from odml.zoo.registry import register_family

@dataclass
class TinyConfig:
    size: int = 8
    num_classes: int = 2

@register_family
class Tiny(Family):
    name = "tiny_test_family"
    zoo_task = "image_classification"
    config_type = TinyConfig
    def models(self): return {"tiny_test_net": "a test family"}
    def config(self, name): return TinyConfig()
    def count(self, cfg): return Counts(cfg.size * cfg.num_classes, cfg.size ** 2)
    def inputs(self, cfg, vocab=None): return InputSpec("image", (cfg.size, cfg.size, 3))
    def outputs(self, cfg): return OutputSpec("classify", "logits", cfg.num_classes)
'''
    folder = tmp_path / "pkgs"
    (folder / "extra").mkdir(parents=True)
    (folder / "extra" / "tiny_test_family.py").write_text(code)
    script = (f"import odml.zoo.families as pkg; pkg.__path__.append({str(folder / 'extra')!r})\n"
              "from odml.cli.app import main; import sys; sys.argv = ['odml', 'zoo', 'list', '--json']; main()")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = {m["name"]: m for m in json.loads(r.stdout)["models"]}
    assert rows["tiny_test_net"]["family"] == "tiny_test_family" and rows["tiny_test_net"]["params"] == 16
    assert rows["tiny_test_net"]["input_shape"] == [8, 8, 3]
    assert Path(pkg.__path__[0]).name == "families"


def test_run_folder_names_every_setting_that_differs(tmp_path):
    from odml.runfolder import RunFolder, RunFolderError

    run = RunFolder(tmp_path / "run", "settings.json", "test run")
    s = {"epochs": 2, "recipe": {"alpha": 0.3, "temperature": 4}, "pick": "x"}
    assert run.check(s) is False  # nothing there yet
    assert not (tmp_path / "run").exists()  # checking writes nothing
    run.write_settings(s)
    assert run.check(s) is True
    with pytest.raises(RunFolderError, match=r"epochs: 2 there, 3 now; recipe.alpha: 0.3 there, 0.5 now"):
        run.check({**s, "epochs": 3, "recipe": {"alpha": 0.5, "temperature": 4}})
    assert run.check({**s, "pick": "y"}, ignore=("pick",))  # an ignored key may change
    newer = {**s, "recipe": {**s["recipe"], "joint": False}}  # a key added after the run began
    assert run.check(newer, defaults={"recipe": {"joint": False}})
    with pytest.raises(RunFolderError, match="recipe.joint"):
        run.check({**newer, "recipe": {**newer["recipe"], "joint": True}}, defaults={"recipe": {"joint": False}})
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderError, match="holds no test run"):
        RunFolder(tmp_path / "busy", "settings.json", "test run").check(s)
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunFolderError, match="is a file"):
        RunFolder(tmp_path / "file", "settings.json", "test run").check(s)


def test_run_folder_lock_refuses_a_second_live_run(tmp_path):
    from odml.runfolder import RunFolder, RunFolderError

    run = RunFolder(tmp_path / "run", "s.json", "test run")
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time\nfrom odml.runfolder import RunFolder\n"
                               f"r = RunFolder({str(tmp_path / 'run')!r}, 's.json', 'test run')\n"
                               "with r.lock():\n    print('held', flush=True)\n    time.sleep(30)\n"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderError, match=f"pid {holder.pid}"):
            with run.lock():
                pass
    finally:
        holder.kill()
        holder.wait()
    with run.lock():  # the lock went with the killed process
        run.append("r.jsonl", {"a": 1})
    assert run.records("r.jsonl") == [{"a": 1}]


def test_files_are_written_whole_or_not_at_all(tmp_path):
    from odml.errors import OutputError
    from odml.files import append_jsonl, atomic_output, read_jsonl, write_json_atomic

    p = write_json_atomic(tmp_path / "a.json", {"x": np.float32(1.5), "y": np.arange(2)})
    assert json.loads(p.read_text()) == {"x": 1.5, "y": [0, 1]}
    with pytest.raises(RuntimeError):
        with atomic_output(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert sorted(os.listdir(tmp_path)) == ["a.json"]  # neither b.bin nor its temporary file
    with pytest.raises(OutputError, match="does not exist"):
        write_json_atomic(tmp_path / "no" / "c.json", {})
    log = tmp_path / "r.jsonl"
    append_jsonl(log, {"n": 1})
    with open(log, "a") as f:
        f.write('{"n": 2, "tor')  # a kill in the middle of a line
    append_jsonl(log, {"n": 3})
    assert read_jsonl(log) == [{"n": 1}, {"n": 3}]


def test_devices_parse_once_and_say_why_not():
    from odml.devices.device import DeviceError, Host, parse_device, parse_devices

    assert isinstance(parse_device("host"), Host) and parse_device("host").label == "host"
    assert [d.label for d in parse_devices("host, adb:R58")] == ["host", "adb:R58"]  # phones looked up when used
    with pytest.raises(DeviceError, match="unknown device"):
        parse_device("toaster")
    from odml.devices.edgetpu import status

    if not status()["available"]:
        with pytest.raises(DeviceError, match="unavailable"):
            parse_device("edgetpu")


def test_a_hook_a_family_lacks_says_not_supported_in_one_line():
    """The hooks the verbs call are declared on Family: a family without one
    answers "<family>: <what> is not supported" (exit 2), or an empty default
    where not having it is normal; which compression pipeline and which
    training options a family takes are data it declares."""
    from odml.errors import UnsupportedError
    from odml.zoo import get_family, resolve

    ibn, pq, det = get_family("ibn"), get_family("pqrnn"), get_family("blazepose_detector")
    calls = {"ibn": [lambda: ibn.featurizer(None), lambda: ibn.channel_scores(None, None),
                     lambda: ibn.inherit(None, None, []), lambda: ibn.pair("mobilenet_edgetpu_v2_tiny")],
             "pqrnn": [lambda: pq.block_spec(resolve("pqrnn_tiny").config), lambda: pq.load_file("x.json")],
             "blazepose_detector": [lambda: det.compressor(resolve("blazepose_detector").config)]}
    for name, hooks in calls.items():
        for call in hooks:
            with pytest.raises(UnsupportedError) as e:
                call()
            msg = str(e.value)
            assert msg.startswith(f"{name}: ") and msg.endswith(" is not supported") and "\n" not in msg, msg
            assert e.value.exit_code == 2
    assert pq.file_suffixes == () and ibn.check_data("digits") is None  # empty defaults
    assert ibn.block_spec(resolve("mobilenet_edgetpu_v2_tiny").config).name == "mobilenet_edgetpu_v2_tiny"
    assert {n: resolve(n).family.compressor(resolve(n).config) for n in ("mobilenet_edgetpu_v2_tiny", "pqrnn_tiny",
                                                                       "blazepose_lite")} == \
        {"mobilenet_edgetpu_v2_tiny": "distill", "pqrnn_tiny": "distill", "blazepose_lite": "keypoints"}
    assert "max_len" in pq.train_options and "max_len" not in ibn.train_options
    assert "epochs" not in get_family("blazepose_landmarks").train_options
    assert get_family("external").train_options == frozenset()  # not trained by odml

