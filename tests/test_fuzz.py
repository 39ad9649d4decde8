"""Fuzzing (issue 26), the fast tier: a few hundred mutants of every input
kind (fixed seed) through odml's readers in a worker process; each must end
in a result or a one-line error, never another exception or a crash. The
long run: tests/bench/fuzz.py --minutes N."""

import fuzzing


def test_mutants_of_every_input_kind_get_a_result_or_one_line(tmp_path):
    res = fuzzing.fuzz(list(fuzzing.KINDS), seed=0, cases=300, seconds=600, work=tmp_path, save=tmp_path / "found")
    assert res["findings"] == [], res["findings"]
    assert res["cases"] == 300
    for kind, c in res["counts"].items():
        assert c["error"] > 0, (kind, c)  # the mutants reach the checks: some are refused ...
    assert sum(c["ok"] for c in res["counts"].values()) > 0  # ... and some still read


def test_inputs_that_found_bugs_stay_fixed(tmp_path):
    """Every input a fuzzing run found a traceback, a crash or a hang with
    (tests/fuzz_regressions/NAME.KIND), replayed in a worker process."""
    from pathlib import Path

    folder = Path(__file__).parent / "fuzz_regressions"
    res = fuzzing.fuzz([], 0, 0, 600, tmp_path, replay=folder)
    assert res["cases"] == len(fuzzing.replay_files(folder)) >= 8
    assert res["findings"] == [], res["findings"]


# ---- documents: specs, spaces, recipes, budgets (Hypothesis) ---------------------------------
import copy  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 63) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def _paths(doc, path=()):
    yield path
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, path + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, path + (i,))


@st.composite
def mutated(draw, seed):
    """``seed`` with one to three edits: a value replaced by any JSON value,
    a key removed, or an unknown key added."""
    doc = copy.deepcopy(seed)
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(doc))
        path = draw(st.sampled_from(paths))
        if not path:
            doc = draw(VALUES)
            continue
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        how = draw(st.sampled_from(["replace", "remove", "add"]))
        if how == "remove" and isinstance(parent, dict):
            del parent[path[-1]]
        elif how == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(VALUES)
        else:
            parent[path[-1]] = draw(VALUES)
        if not isinstance(doc, (dict, list)):
            break
    return doc


def _one_line(load, text, suffix):
    """``load`` reads the document or raises an OdmlError of one line."""
    from odml.errors import OdmlError

    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # numpy's overflow warnings print a second line
        p = Path(d) / f"doc{suffix}"
        p.write_text(text)
        try:
            load(p)
        except OdmlError as e:
            assert str(e).strip() and "\n" not in str(e).strip(), str(e)
            return "error"
    return "ok"


def _spec_seed():
    from odml.zoo import create_spec

    return create_spec("mobilenet_edgetpu_v2_tiny", num_classes=10, input_size=32, width=0.5).to_dict()


@pytest.mark.fast
@FUZZ
@given(st.data())
def test_spec_documents(data):
    from odml.zoo.spec import ModelSpec

    seed = _spec_seed()
    doc = data.draw(mutated(seed))
    _one_line(ModelSpec.load, json.dumps(doc, allow_nan=True), ".json")


@pytest.mark.fast
@FUZZ
@given(st.data())
def test_space_documents(data):
    from test_search import TINY

    from odml.nas.space import load_space

    doc = data.draw(mutated(TINY))
    _one_line(load_space, json.dumps(doc, allow_nan=True), ".json")


@pytest.mark.fast
@pytest.mark.parametrize("dropout", [None, "0.2", True, 1.0, -0.1, float("nan"), [0.2]])
def test_space_head_dropout_of_the_wrong_kind_is_one_line(dropout):
    """Found by the Hypothesis test above in CI: ``head: {dropout: null}``
    reached ``float(None)``."""
    from test_search import TINY

    from odml.nas.space import load_space

    from odml.nas.space import SpaceError

    doc = copy.deepcopy(TINY)
    doc.setdefault("head", {})["dropout"] = dropout
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "space.json"
        p.write_text(json.dumps(doc, allow_nan=True))
        with pytest.raises(SpaceError, match=r"head: dropout must be a number in \[0, 1\)"):
            load_space(p)


@pytest.mark.fast
@FUZZ
@given(st.data())
def test_recipe_documents(data):
    from odml.compress.recipe import Recipe, load_recipe

    doc = data.draw(mutated(Recipe().to_dict()))
    _one_line(load_recipe, json.dumps(doc, allow_nan=True), ".json")


BUDGET = """[defaults]
threads = 1
runs = 5

[[model]]
path = "m.tflite"
statistic = "p90"
max_latency = "5 ms"
max_size = "2 MB"
min_accuracy = 0.9
reference = "r.tflite"
max_ratio = 1.05
"""


@pytest.mark.fast
@FUZZ
@given(st.data())
def test_budget_documents(data):
    from odml.devices.budgets import load_budgets

    lines = BUDGET.splitlines()
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(lines) - 1))
        key = lines[i].split("=")[0].strip() if "=" in lines[i] else data.draw(st.text(max_size=6))
        value = data.draw(st.one_of(st.text(max_size=10).map(json.dumps), st.integers(-10 ** 20, 10 ** 20).map(str),
                                    st.sampled_from(["nan", "inf", "-1e400", "[]", "{}", "true", '"0 ms"', '"9 XB"',
                                                     "'''", "[[model]]", ""])))
        lines[i] = f"{key} = {value}"
    _one_line(load_budgets, "\n".join(lines) + "\n", ".toml")


_COCO: dict = {}


def _coco_seed():
    """A COCO-style keypoint file of two synthetic people (written once)."""
    if not _COCO:
        from odml.data.pose import write_coco

        folder = Path(tempfile.mkdtemp(prefix="odml-fuzz-coco-"))
        path = write_coco(folder, 2, seed=0, size=(32, 32))
        _COCO.update(folder=folder, doc=json.loads(path.read_text()))
    return _COCO["folder"], _COCO["doc"]


@pytest.mark.fast
@FUZZ
@given(st.data())
def test_coco_keypoint_documents(data):
    """A user's keypoint file (``--data`` of pose training and compression):
    read, then every sample's image and points."""
    from odml.data.pose import read_coco

    folder, seed = _coco_seed()
    doc = data.draw(mutated(seed))

    def load(p):
        coco = read_coco(p, images=folder)
        for i in range(len(coco)):
            coco.sample(i)

    _one_line(load, json.dumps(doc, allow_nan=True), ".json")
