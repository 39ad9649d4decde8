"""Outputs of any meaning (issue 38): what a task makes of a model's outputs,
and how each output is judged against the source (top-1 for class scores,
per-pixel agreement for maps, per-step agreement for sequences, relative
error otherwise)."""

import numpy as np
import pytest

from odml.exporters.tflite import DEFAULT_THRESHOLDS, judge, judge_outputs, parity, parity_outputs
from odml.zoo.family import measure_of, task_fits
from odml.zoo.families.external import ExternalConfig

pytestmark = pytest.mark.fast


def test_measure_follows_the_task_and_the_shape():
    assert measure_of("classify", (10,)) == "top1"
    assert measure_of("segment", (64, 64, 1)) == "pixels"
    assert measure_of("sequence", (40, 6625)) == "steps"
    assert measure_of("detect", (3549, 6)) == "error"
    assert measure_of("segment", (10,)) == "error"  # a map's other outputs are judged by their error


@pytest.mark.parametrize("task,shapes,ok", [
    ("classify", [(2,)], True), ("classify", [(1, 80, 80)], False), ("segment", [(320, 320, 1)], True),
    ("segment", [(2,)], False), ("sequence", [(40, 6625)], True), ("sequence", [(6625,)], False),
    ("detect", [(2016, 18), (2016, 1)], True), ("detect", [(63,)], False), ("keypoints", [(63,), (1,)], True),
    ("features", [(7,)], True), ("boxes", [(7,)], False)])
def test_a_task_must_fit_the_outputs(task, shapes, ok):
    assert (task_fits(task, shapes) is None) == ok


def test_an_external_model_reads_its_task_off_the_shapes_or_is_told():
    def cfg(outs, task=""):
        return ExternalConfig((32, 32, 3), outs[0][1], outputs=tuple(outs), task=task).validate()

    from odml.zoo.registry import get_family

    fam = get_family("external")
    assert fam.outputs(cfg([("prob", (5,))])).task == "classify"
    assert fam.outputs(cfg([("map", (32, 32, 1))])).task == "segment"  # a map the size of the input
    assert fam.outputs(cfg([("a", (8, 4)), ("b", (8, 1))])).task == "features"
    spec = fam.outputs(cfg([("seq", (40, 97))], "sequence"))
    assert spec.task == "sequence" and spec.measure == "steps" and [t.name for t in spec.tensors] == ["seq"]
    from odml.errors import SpecError

    with pytest.raises(SpecError, match="classify needs"):
        cfg([("map", (32, 32, 1))], "classify")


def test_per_pixel_agreement_catches_a_flipped_region_that_the_mean_error_forgives():
    rng = np.random.default_rng(0)
    ref = (rng.random((4, 32, 32, 1)) > 0.5) * 0.96 + 0.02  # a confident probability map
    assert judge(parity(ref, ref + 1e-4, measure="pixels"), DEFAULT_THRESHOLDS["fp16"]) == []
    bad = ref.copy()
    bad[:, :16, :8] = 1 - bad[:, :16, :8]  # an eighth of each map flipped: a broken file
    p = parity(ref, bad, measure="pixels")
    assert p["agreement"] == pytest.approx(0.875, abs=0.01)
    assert any("per-pixel agreement" in f for f in judge(p, DEFAULT_THRESHOLDS["int8"]))
    # several channels: the class of each pixel is its argmax
    logits = rng.normal(0, 3, (2, 8, 8, 4))
    assert parity(logits, logits[..., ::-1], measure="pixels")["agreement"] < 0.5


def test_per_step_agreement_catches_swapped_steps_that_the_error_forgives():
    rng = np.random.default_rng(1)
    ref = rng.normal(0, 1, (3, 40, 97))
    ref[..., 0] += 6.0  # symbol 0 leads every step by a clear margin ...
    ref[..., 1] += 5.0  # ... over symbol 1
    p = parity(ref, ref + rng.normal(0, 1e-3, ref.shape), measure="steps")
    assert p["agreement"] == 1.0 and judge(p, DEFAULT_THRESHOLDS["fp32"]) == []
    bad = ref.copy()
    bad[:, ::5, :2] = bad[:, ::5, 1::-1]  # a fifth of the steps read the runner-up
    p = parity(ref, bad, measure="steps")
    assert p["agreement"] == pytest.approx(0.8)
    failed = judge(p, DEFAULT_THRESHOLDS["fp16"])
    assert failed == [f"per-step agreement {p['agreement_clear']:.3f} < 0.99"]  # the error alone passes


def test_several_outputs_each_judged_by_its_own_measure():
    rng = np.random.default_rng(2)
    scores = rng.normal(0, 3, (20, 10))
    boxes = rng.normal(0, 1, (20, 50, 4))
    p = parity_outputs([scores, boxes], [scores, boxes + 1.0], ["scores", "boxes"], ["top1", "error"])
    assert p["outputs"]["scores"]["top1_agreement"] == 1.0 and "top1_agreement" not in p["outputs"]["boxes"]
    failed = judge_outputs(p, DEFAULT_THRESHOLDS["int8"])
    assert failed and all(f.startswith("boxes: ") for f in failed)


def test_a_student_that_learned_nothing_is_named_as_its_family_judges_it():
    """compress's notes on a model that fails to learn: a segmenter that
    never finds a class the masks hold (learned nothing when it finds one
    class at most), a classifier no more accurate than always answering the
    commonest label (unless its scores still rank: AUC above 0.6); float
    first (train longer), else int8 alone (quantization lost it); a teacher
    that fails so gets the one note; one that learned gets none."""
    from odml.compress.run import learned_nothing_notes
    from odml.zoo.registry import get_family

    seg = get_family("segmentation")
    masks = np.zeros((2, 16, 16), np.uint8)
    masks[:, 4:8, 4:8] = 1  # 1/16 of the pixels: a person
    masks[:, 10:12, 10:12] = 2  # a dog
    masks[0, 0, :] = 255  # ignored
    maps = np.zeros((2, 16, 16, 3), np.float32)
    maps[..., 0] = 1.0
    everywhere = seg.score(maps, masks)
    maps[:, 4:8, 4:8] = [0.0, 1.0, 0.0]
    no_dog = seg.score(maps, masks)
    maps[:, 10:12, 10:12] = [0.0, 0.0, 1.0]
    good = seg.score(maps, masks)
    names = ["background", "person", "dog"]
    rows = [{"label": "idle", **everywhere, **{f"int8_{k}": v for k, v in everywhere.items()}},
            {"label": "int8_only", **good, **{f"int8_{k}": v for k, v in everywhere.items()}},
            {"label": "no_dog", **no_dog},
            {"label": "good", **good, **{f"int8_{k}": v for k, v in good.items()}}]
    notes = learned_nothing_notes(seg, good, rows, masks, names)
    assert len(notes) == 3, notes
    assert notes[0] == ("student idle never finds 'person' (6.5% of the pixels; IoU 0), 'dog' (1.6% of the pixels; "
                        "IoU 0), as a model that learned nothing from its input on the validation data (train it "
                        "longer, or on more examples)")
    assert notes[1].startswith("student int8_only in int8 never finds 'person'") and "quantization lost it" in notes[1]
    assert notes[2].startswith("student no_dog never finds 'dog' (1.6% of the pixels; IoU 0) on the validation")
    assert "learned nothing" not in notes[2]  # it finds the person
    teacher = learned_nothing_notes(seg, everywhere, rows, masks, names)
    assert len(teacher) == 1 and teacher[0].startswith("the teacher never finds 'person'")

    cls = get_family("ibn")
    y = np.array([0] * 8 + [1, 2])
    majority = np.eye(3)[np.zeros(10, int)]
    right = np.eye(3)[y]
    rows = [{"label": "idle", **cls.score(majority, y)}, {"label": "good", **cls.score(right, y)}]
    notes = learned_nothing_notes(cls, cls.score(right, y), rows, y, ["ham", "spam", "other"])
    assert notes == ["student idle is no more accurate (80.0%) than always answering 'ham' (80.0% of the labels), as "
                     "a model that learned nothing from its input on the validation data (train it longer, or on "
                     "more examples)"]
    assert cls.learned_nothing({"accuracy": 0.8, "auc": 0.95}, y, ["ham"]) is None  # it ranks; its threshold is off
    assert cls.learned_nothing({"accuracy": 0.8, "auc": 0.5}, y, ["ham"]).startswith(
        "is no more accurate (80.0%) than always answering 'ham' (80.0% ")
    assert cls.learned_nothing({"accuracy": 0.9, "auc": 0.5}, y, ["ham"]) is None  # one example beyond the majority
