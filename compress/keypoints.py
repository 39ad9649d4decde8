"""odml compress for a keypoint teacher: BlazePose landmark students
distilled from a landmark model's keypoints (MediaPipe's released full model
once imported, or a landmark model of yours), on synthetic people or a
COCO-style keypoint file.

Each student is trained as odml trains its landmark models (heatmap stage,
then regression with the heatmap tower frozen) with the teacher's outputs on
every crop as its targets: coordinates, visibility and presence as soft
probabilities, the pose flag, heatmaps around the points the teacher finds
present. Then the student is exported (fp16 and int8, calibrated on crops
of the same data) and measured on the device; the table gives PCK@0.2
against the teacher's keypoints (and both against the ground truth), size
and latency beside the teacher's fp16 file. The run folder is a compression
run folder: settings checked, one live run, a finished student kept in
results.jsonl, an interrupted one resumed from its stage and step.
"""

from __future__ import annotations

import gzip
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from odml.compress.recipe import RecipeError
from odml.errors import DataError
from odml.files import write_bytes_atomic, write_json_atomic

DEFAULT_STEPS = "700,2000"  # heatmap, regression: what `odml train blazepose` runs for its landmark model


@dataclass
class KeypointPrepared:
    opts: Any  # CompressOptions
    teacher: Any  # Teacher
    students: list[tuple[str, Any]]
    device: Any
    out: Path
    heatmap_steps: int
    regression_steps: int
    calibration_samples: int
    seed: int

    @property
    def data(self) -> str:
        return self.opts.data

    @property
    def epochs(self) -> None:
        """None: the students train in stages of steps, not epochs."""
        return None


def parse_steps(text: str | None) -> tuple[int, int]:
    try:
        h, r = (int(v) for v in (text or DEFAULT_STEPS).split(","))
        assert h >= 0 and r >= 0
    except (ValueError, AssertionError):
        raise DataError(f"--steps {text!r}: a keypoint teacher's students take two counts, heatmap and "
                        f"regression steps, e.g. {DEFAULT_STEPS}") from None
    return h, r


def prepare_keypoints(o: Any, recipe: Any, teacher: Any, device: Any) -> KeypointPrepared:
    """Everything checked before anything is written: the data, the
    students (named: BlazePose landmark models reading the teacher's crops),
    the techniques (distillation only: pruning and quantization-aware
    training are refused), the steps, the run folder's settings; and the
    options of the classifier pipeline, refused rather than ignored."""
    from odml.compress.students import resolve_students

    sf = teacher.student_family
    if recipe.distill.joint:
        raise RecipeError(f"distill.joint: the keypoint teacher {teacher.path} stays fixed; use --fixed-teacher")
    if o.epochs is not None:
        raise RecipeError(f"--epochs: a keypoint teacher's students train in stages of --steps (heatmap, regression; "
                          f"default {DEFAULT_STEPS}), not epochs")
    if o.sizes is not None:
        raise RecipeError(f"--sizes: {sf.name} students are not derived by size; name them for a keypoint teacher "
                          "(--students blazepose_lite)")
    if recipe.distill.augment != "none":
        raise RecipeError(f"distill.augment: {recipe.distill.augment} is for classifier students; a keypoint "
                          "teacher's students learn from its keypoints on each crop: use none")
    if recipe.distill.init != "random":
        raise RecipeError(f"distill.init: {recipe.distill.init}: a keypoint teacher's students start from random "
                          "weights: use random")
    sf.check_data(o.data)
    if o.data != "synthetic":
        from odml.data.pose import read_coco

        read_coco(o.data)  # a bad file fails here
    if o.distribute != "none":
        raise RecipeError(f"--distribute {o.distribute}: a keypoint teacher's students train on one device (their "
                          "stages are odml's own loop); drop --distribute")
    if o.val_data:
        raise RecipeError("--val-data: a keypoint teacher's students are checked on held-out images of --data")
    if o.pick:
        raise RecipeError("--pick: its metrics are a classifier's; a keypoint teacher's students are listed with their "
                          "PCK, size and latency to choose from")
    if recipe.prune.enabled:
        raise RecipeError("prune: keypoint students are distilled, not pruned (export them with 'odml export')")
    if recipe.quantize.mode == "qat":
        raise RecipeError("quantize: qat is for classifier students; keypoint students are quantized after training")
    if recipe.shared.enabled:
        raise RecipeError("--shared: a keypoint teacher's students train in stages one after the other; they do not "
                          "share parameters")
    if not recipe.students:
        raise RecipeError(f"students: name them for a keypoint teacher (--students blazepose_lite); {sf.name} "
                          "students are not derived by size")
    if not recipe.distill.enabled:
        raise RecipeError("distill: a keypoint teacher's students learn from its keypoints; distillation cannot be off")
    students = resolve_students(recipe.students, teacher)
    h, r = parse_steps(o.steps)
    p = KeypointPrepared(o, teacher, students, device, Path(o.out), h, r, recipe.quantize.calibration_samples,
                         recipe.seed)
    from odml.compress.run import run_folder

    run_folder(p.out).check(settings(p))
    return p


def settings(p: KeypointPrepared) -> dict[str, Any]:
    st = os.stat(p.teacher.path)
    return {"schema": 1, "kind": "keypoints", "teacher": str(p.teacher.path), "teacher_size": st.st_size,
            "teacher_mtime": int(st.st_mtime), "data": p.opts.data, "device": p.opts.device,
            "threads": p.opts.threads, "steps": [p.heatmap_steps, p.regression_steps], "seed": p.seed,
            "calibration_samples": p.calibration_samples,
            "students": [[lbl, s.to_line()] for lbl, s in p.students]}


def teacher_runner(t: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The teacher as crops -> odml's landmark layout, run by LiteRT on its
    fp32 conversion (fast beside the training on a CPU); safe to call from
    the batch thread and the main thread."""
    from odml.exporters.tflite import concrete_function, convert
    from odml.litert import load_interpreter, run_outputs

    fn = concrete_function(t.model, t.input.shape, t.input.name, t.input.dtype)
    interp = load_interpreter(convert(fn, "fp32", trackable=getattr(t.model, "loaded", None)), threads=1)
    lock = threading.Lock()

    def run(x: np.ndarray) -> np.ndarray:
        with lock:
            outs = run_outputs(interp, np.asarray(x, np.float32))
        return t.family.landmarks(t.card.config, outs)

    return run


def _export(path: Path, model: Any, precision: str, card: Any, what: str, rep: Any = None) -> bytes:
    from odml.exporters.metadata import ModelInfo, add_metadata
    from odml.exporters.tflite import concrete_function, convert, keep_io, signed

    inp = card.input
    fn = model if hasattr(model, "inputs") and model.inputs else concrete_function(model, inp.shape, inp.name)
    data = convert(fn, precision, rep, "float", getattr(model, "loaded", None), input_name=inp.name)
    if card.output.tensors:
        data = keep_io(data, inp.name, card.output.tensors, f"{path.name}")
    data = add_metadata(signed(data, card, path.name), ModelInfo(name=card.name, description=what, card=card))
    write_bytes_atomic(path, data)
    return data


def run_keypoints(p: KeypointPrepared, folder: Any, on_stage: Callable[[str], None] | None = None,
                  on_epoch: Any = None) -> dict[str, Any]:
    """The students trained, exported and measured (``on_epoch`` unused:
    they train in stages, told through ``on_stage``)."""
    from odml.compress.run import RESULTS, _lat_fields, _latency
    from odml.exporters.tflite import representative_from
    from odml.litert import load_interpreter, run_outputs
    from odml.train.pose import PoseTrainConfig, distill_landmarks

    say = on_stage or (lambda s: None)

    t = p.teacher
    if not folder.settings_path.is_file():
        folder.write_settings(settings(p))
    done = {r["label"]: r for r in folder.records(RESULTS)}
    teacher_label = f"teacher_{t.path.stem}"
    if teacher_label not in done:
        say("teacher: fp16 TFLite, latency")
        path = p.out / f"{teacher_label}_fp16.tflite"
        _export(path, t.model, "fp16", t.card, f"{t.card.name or t.path.stem}, the teacher of an odml compress run")
        lat = _latency(p, path)
        row = {"label": teacher_label, "role": "teacher", "model": str(t.path), "params": t.params,
               "precision": "fp16", "size_bytes": path.stat().st_size,
               "gzip_bytes": len(gzip.compress(path.read_bytes(), 9)), "latency_ms": lat["median_ms"],
               "latency": _lat_fields(lat), "tflite": path.name}
        folder.append(RESULTS, row)
        done[teacher_label] = row
    todo = [(lbl, s) for lbl, s in p.students if lbl not in done]
    if todo:
        say("teacher: labelling crops with its keypoints")
        teacher = teacher_runner(t)
        cfg = PoseTrainConfig(landmark=todo[0][0], heatmap_steps=p.heatmap_steps, regression_steps=p.regression_steps,
                              seed=p.seed, batch_size=8, val_images=100)
        from odml.data.pose_items import landmark_inputs

        def measured(label: str, res: dict[str, Any], evaluate: Callable) -> None:
            say(f"{label}: export and measure")
            from odml.zoo.load import load_model

            loaded = load_model(res["file"])
            size = loaded.input.shape[0]
            x_cal = landmark_inputs(size, p.data, 1, p.calibration_samples, p.seed)[1]
            spec = dict(p.students)[label]
            row: dict[str, Any] = {"label": label, "role": "student", "line": spec.to_line(),
                                   "params": res["params"], "macs": spec.macs,
                                   "keras": res["file"], "train_s": res["train_s"], "stages": res["stages"],
                                   "steps": [p.heatmap_steps, p.regression_steps],
                                   "pck@0.2_vs_teacher": res["pck@0.2_vs_teacher"],
                                   "pck@0.2_vs_truth": res.get("student_pck@0.2_vs_truth"),
                                   "teacher_pck@0.2_vs_truth": res.get("teacher_pck@0.2_vs_truth"),
                                   "people": res.get("people")}
            for prec in ("fp16", "int8"):
                path = p.out / f"{label}_{prec}.tflite"
                rep = representative_from(x_cal, p.calibration_samples, p.seed) if prec == "int8" else None
                data = _export(path, loaded.model, prec, loaded.card, f"{label}, distilled by odml from {t.path.name}",
                               rep)
                interp = load_interpreter(data)
                pk = evaluate(lambda x: run_outputs(interp, x)[0])
                lat = _latency(p, path)
                row[f"{prec}_pck@0.2_vs_teacher"] = pk["pck@0.2_vs_teacher"]
                row[f"{prec}_size_bytes"] = path.stat().st_size
                row[f"{prec}_latency_ms"] = lat["median_ms"]
                row[f"{prec}_latency"] = _lat_fields(lat)
                row[f"{prec}_tflite"] = path.name
            row["size_bytes"], row["latency_ms"] = row["int8_size_bytes"], row["int8_latency_ms"]
            folder.append(RESULTS, row)
            done[label] = row

        t0 = time.perf_counter()
        distill_landmarks(teacher, p.data, p.out, todo, cfg, folder, log=say, on_student=measured)
        say(f"students done in {time.perf_counter() - t0:.0f} s")
        for f in p.out.glob("*.ckpt.weights.h5"):
            f.unlink()
    return report_keypoints(p, done[teacher_label])


def report_keypoints(p: KeypointPrepared, teacher_row: dict[str, Any]) -> dict[str, Any]:
    from odml.compress.run import RESULTS, SCHEMA, run_folder, versus_teacher

    students = versus_teacher(run_folder(p.out), teacher_row)
    students.sort(key=lambda r: r["latency_ms"])
    rep = {"schema": SCHEMA, "kind": "keypoints", "out": str(p.out), "device": p.device.label,
           "teacher": teacher_row, "students": students, "data": {"source": p.opts.data},
           "steps": [p.heatmap_steps, p.regression_steps],
           "metric": "PCK@0.2 against the teacher's keypoints: the 33 body points the teacher finds present, within "
                     "0.2 x the torso (left shoulder to right hip) of the teacher's points, on held-out people cropped "
                     "on their true ROI"}
    write_json_atomic(p.out / "report.json", rep)
    from odml import report as page

    page.write_after(p.out)  # report.html (odml report makes it again)
    rep["files"] = {"report": str(p.out / "report.json"), "results": str(p.out / RESULTS),
                    "page": str(p.out / page.PAGE)}
    return rep
