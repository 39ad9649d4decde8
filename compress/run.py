"""odml compress, end to end: teacher in, several ready-to-use students out.

Run folder (``--out``)::

    compress.json        the settings; a rerun with the same settings resumes
    checkpoints/         all students (and optimizers) after the last finished epoch
    results.jsonl        one line per finished model (the teacher first), fsynced
    TEACHER_fp32.tflite, LABEL_int8.tflite, LABEL.keras   the models
    report.json, compress.png                             at the end

Resume: training continues from the last finished epoch; a student whose
line is in results.jsonl is not exported or measured again.
"""

from __future__ import annotations

import gzip
import json
import operator
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from odml.compress.recipe import Recipe, RecipeError, load_recipe
from odml.compress.students import Teacher, as_widths, derive_students, load_teacher, resolve_students
from odml.errors import DataError, OdmlError
from odml.files import atomic_output, write_bytes_atomic, write_json_atomic
from odml.runfolder import RunFolder, set_dotted

SCHEMA = 1
RESULTS = "results.jsonl"
SETTINGS = "compress.json"


class CompressError(OdmlError):
    """Settings that cannot start (or resume) a compression run."""


@dataclass
class CompressOptions:
    teacher: str
    data: str | None = None  # default: digits, or synthetic people for a keypoint teacher
    out: str = "runs/compress"
    recipe: str | None = None
    students: list[str] = field(default_factory=list)
    sizes: list[float] | None = None
    epochs: int | None = None
    joint: bool | None = None
    prune: float | None = None
    prune_structure: str | None = None
    quantize: str | None = None
    distill: bool | None = None
    augment: str | None = None
    init: str | None = None
    device: str = "host"
    threads: int = 1
    runs: int = 50
    val_split: float = 0.2
    pick: str | None = None
    benchmark_binary: str | None = None
    val_data: str | None = None  # validate on all of this, train on all of data
    input_size: str | None = None  # a teacher file's dynamic height and width
    input_range: str | None = None  # what pixels become at the teacher's input: 0,1 / -1,1 / 0,255
    steps: str | None = None  # a keypoint teacher's students: heatmap and regression steps ("700,2000")
    calibration_samples: int | None = None  # overrides recipe.quantize.calibration_samples
    shared: bool | None = None  # the students are widths of one network (recipe.shared.enabled)
    distribute: str = "none"  # none | mirrored: the students trained on this machine's devices (train/distribute.py)


# ---- --pick -------------------------------------------------------------------------
_OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt, "==": operator.eq}
PICK_METRICS = {"latency_ms", "size_bytes", "size_kb", "size_mb", "gzip_bytes", "params", "accuracy",
                "int8_accuracy", "speedup", "size_ratio", "miou", "int8_miou"}


def parse_pick(text: str) -> list[tuple[str, str, float]]:
    """``latency_ms<=5, size_kb<300``: conditions joined by commas or 'and'."""
    conds = []
    for part in re.split(r",|\band\b", text):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"([a-z0-9_]+)\s*(<=|>=|==|<|>)\s*([-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?)", part)
        if not m or m[1] not in PICK_METRICS:
            raise CompressError(f"--pick {text!r}: cannot read {part!r}; expected METRIC OP NUMBER with METRIC one of "
                                f"{', '.join(sorted(PICK_METRICS))}")
        conds.append((m[1], m[2], float(m[3])))
    if not conds:
        raise CompressError(f"--pick {text!r}: no condition")
    return conds


def _metric(row: dict[str, Any], name: str) -> float:
    if name == "size_kb":
        return row["size_bytes"] / 1024
    if name == "size_mb":
        return row["size_bytes"] / 2**20
    return row.get(name)


def pick(rows: list[dict[str, Any]], conds: list[tuple[str, str, float]]) -> dict[str, Any] | None:
    """The best student (by ``final_accuracy``: int8 where it exists; a
    segmentation's mIoU) that meets every condition; None when none does."""
    ok = [r for r in rows if r["role"] == "student" and all(
        _metric(r, m) is not None and _OPS[op](_metric(r, m), v) for m, op, v in conds)]
    return max(ok, key=lambda r: (final_score(r), -r["latency_ms"])) if ok else None


def final_score(r: dict[str, Any]) -> float:
    """What ranks a model of the run: its int8 score where it has one, else its
    float one; the score is mIoU for segmentation, accuracy otherwise."""
    key = "miou" if "miou" in r else "accuracy"
    return r[f"int8_{key}"] if r.get(f"int8_{key}") is not None else r[key]


# ---- the pipelines -------------------------------------------------------------------------
@dataclass(frozen=True)
class Pipeline:
    """One way of compressing a teacher, under the key its family's
    ``compressor`` names."""

    default_data: str  # --data when none is given
    prepare: Callable[..., Any]  # (options, recipe, teacher, device) -> the prepared run (``epochs``: None in stages)
    run: Callable[..., dict[str, Any]]  # (prepared, run folder, on_stage, on_epoch) -> the report


def pipelines() -> dict[str, Pipeline]:
    """The pipelines by key: "distill" (classifier students, here and in
    distill.py) and "keypoints" (landmark students, keypoints.py)."""
    from odml.compress import keypoints

    return {"distill": Pipeline("digits", _prepare, _run),
            "keypoints": Pipeline("synthetic", keypoints.prepare_keypoints, keypoints.run_keypoints)}


# ---- preparation -------------------------------------------------------------------------
@dataclass
class Prepared:
    opts: CompressOptions
    recipe: Recipe
    teacher: Teacher
    data: Any
    students: list[tuple[str, Any]]
    device: Any
    out: Path
    pick: list[tuple[str, str, float]] | None
    built: dict[str, Any] = field(default_factory=dict)  # students built while checking them (shared widths)

    @property
    def epochs(self) -> int:
        return self.recipe.epochs


def recipe_of(o: CompressOptions) -> Recipe:
    """The recipe (--recipe, or the default one) with the command-line
    settings over it, checked."""
    recipe = set_dotted(load_recipe(o.recipe), {
        "epochs": o.epochs, "distill.joint": o.joint, "distill.enabled": o.distill, "distill.augment": o.augment,
        "distill.init": o.init, "prune.sparsity": o.prune, "prune.structure": o.prune_structure,
        # --prune 0 turns pruning off, --prune-structure on (whatever --prune says)
        "prune.enabled": True if o.prune_structure is not None else None if o.prune is None else o.prune > 0,
        "quantize.mode": o.quantize, "quantize.calibration_samples": o.calibration_samples,
        "students": list(o.students) or None, "sizes": None if o.sizes is None else list(o.sizes),
        "shared.enabled": o.shared})
    return recipe.validate("settings" if o.recipe is None else f"{o.recipe} (with the command-line settings)")


def prepare(o: CompressOptions) -> Any:
    """Check everything before anything is written: the settings, the
    device, the teacher, then what the pipeline its family names checks."""
    from odml.devices.device import parse_device

    recipe = recipe_of(o)
    if o.pick:
        parse_pick(o.pick)  # a bad expression first, whatever the teacher
    if o.threads < 1 or o.runs < 1:
        raise CompressError("--threads and --runs must be at least 1")
    device = parse_device(o.device, o.benchmark_binary, compile=True)
    from odml.train import distribute

    if o.distribute == "multiworker":  # (before TF_CONFIG is read: whatever it says, this is refused)
        raise CompressError("--distribute multiworker: compress trains its students on one machine (its checkpoints, "
                            "exports and latencies are local); use --distribute mirrored for its GPUs")
    cluster = distribute.check(o.distribute)
    if cluster.kind != "none":  # the techniques whose variables change inside the step, outside what replicas share
        why = ("--shared: the narrower widths are copied out of the widest inside each step" if recipe.shared.enabled
               else "distill.joint: the teacher trains too" if recipe.distill.joint
               else "pruning with QAT: odml holds the masks and applies them inside each step"
               if recipe.prune.enabled and recipe.quantize.mode == "qat" else None)
        if why:
            raise RecipeError(f"--distribute {o.distribute}: {why}, which odml does not split between devices yet; "
                              "drop --distribute, or the technique")
    distribute.strategy(cluster)  # before the teacher: the strategy's devices are set before TensorFlow starts
    from odml.zoo.families.external import parse_range

    teacher = load_teacher(o.teacher, o.input_size, parse_range(o.input_range))
    pipeline = pipeline_of(teacher)
    o.data = o.data or pipeline.default_data
    return pipeline.prepare(o, recipe, teacher, device)


def pipeline_of(teacher: Teacher) -> Pipeline:
    pipeline = pipelines().get(teacher.compressor)
    if pipeline is None:
        raise CompressError(f"teacher {teacher.path}: its family {teacher.family.name} names the compression pipeline "
                            f"{teacher.compressor!r}, which odml does not have ({', '.join(pipelines())})")
    return pipeline


def _prepare(o: CompressOptions, recipe: Recipe, teacher: Teacher, device: Any) -> Prepared:
    """The classifier pipeline's checks: data, students, techniques."""
    conds = parse_pick(o.pick) if o.pick else None
    if o.steps is not None:
        raise CompressError(f"--steps: for a keypoint teacher's students; the students of {teacher.path} train for "
                            "--epochs")
    if recipe.shared.enabled and recipe.distill.joint:
        raise RecipeError("--shared: the widths learn from a fixed teacher; use --fixed-teacher")
    if recipe.shared.enabled and recipe.distill.inherits:
        raise RecipeError("--shared: the widths start from one network of their own; use --init random")
    if recipe.distill.joint and teacher.runtime != "tf_keras":
        raise RecipeError(f"distill.joint: the teacher {teacher.path} is a {teacher.runtime} model; training it with "
                          "the students needs a tf_keras model (odml's training loop); use --fixed-teacher")
    # a segmentation teacher's classes are the masks' (a folder without classes.txt: else the largest id seen)
    more = {"classes": teacher.num_classes} if _per_pixel(teacher) else {}
    data = teacher.family.read(teacher.card, o.data, o.val_split, recipe.seed, val_data=o.val_data, **more)
    if data.num_classes != teacher.num_classes:
        raise DataError(f"{o.data}: {data.num_classes} classes in the data but the teacher {teacher.path} has "
                        f"{teacher.num_classes} outputs")
    kind = teacher.input.kind
    if recipe.distill.augment == "mixup" and kind == "token_ids":
        raise RecipeError(f"distill.augment: mixup needs float inputs (images, pQRNN projections); the teacher "
                          f"{teacher.path} takes token ids: use dropout")
    if recipe.distill.augment == "ngram" and not teacher.input.text:
        raise RecipeError(f"distill.augment: ngram cuts texts into windows of tokens; the teacher {teacher.path} "
                          f"takes {'images' if kind == 'image' else kind}: use mixup or dropout")
    if recipe.distill.inherits:  # the teacher's kind first: no students to derive for a teacher that cannot give channels
        from odml.compress.students import check_inherit

        check_inherit(teacher, [])
    students = resolve_students(recipe.students, teacher) if recipe.students else derive_students(recipe.sizes, teacher)
    if recipe.distill.inherits:
        check_inherit(teacher, students)
    if recipe.shared.enabled:
        from odml.compress.shared import check_widths

        students = as_widths(students)
        from odml._tf import keras

        keras().utils.set_random_seed(recipe.seed)  # as the run builds them: the run takes these
        built = {label: spec.build(label) for label, spec in students}
        check_widths(list(built.items()))
    if recipe.quantize.mode == "qat" or (recipe.prune.enabled and recipe.prune.structure == "2:4"):
        from odml.compress.distill import check_techniques

        for label, spec in students:  # before anything is trained
            check_techniques(label, spec.build(label), recipe)
    out = Path(o.out)
    settings = _settings(o, recipe, teacher, students)
    if recipe.shared.enabled:
        _same_widths(out, settings)
    run_folder(out).check(settings, defaults={"recipe": Recipe().to_dict()}, ignore=("pick",))
    return Prepared(o, recipe, teacher, data, students, device, out, conds,
                    built if recipe.shared.enabled else {})


def _same_widths(out: Path, settings: dict[str, Any]) -> None:
    """A shared run resumed with other widths: refused, naming them (the
    widths trained so far are one network's variables)."""
    old = run_folder(out).saved()
    if not old or not (old.get("recipe") or {}).get("shared", {}).get("enabled"):
        return
    before, now = [s[0] for s in old.get("students") or []], [s[0] for s in settings["students"]]
    if old.get("students") != settings["students"]:
        if before == now:  # the same labels, other architectures
            before = [f"{s[0]} ({s[1]})" for s in old.get("students") or []]
            now = [f"{s[0]} ({s[1]})" for s in settings["students"]]
        raise RecipeError(f"--shared: {out} holds widths {', '.join(before)} trained as one network; resumed with "
                          f"{', '.join(now)}: resume with the same --students / --sizes, or use a new folder")


def run_folder(out: Path) -> RunFolder:
    return RunFolder(out, SETTINGS, "compression run", CompressError)


def _settings(o: CompressOptions, recipe: Recipe, teacher: Teacher, students) -> dict[str, Any]:
    st = os.stat(teacher.path)
    return json.loads(json.dumps({"schema": SCHEMA, "teacher": str(teacher.path), "teacher_size": st.st_size,
            "teacher_mtime": int(st.st_mtime), "data": o.data, "val_data": o.val_data, "val_split": o.val_split,
            "device": o.device,
            "threads": o.threads, "recipe": recipe.to_dict(), "students": [(lbl, s.to_line()) for lbl, s in students]}))


# ---- running -------------------------------------------------------------------------------
def _latency(p: Prepared, path: Path) -> dict[str, Any]:
    from odml.devices.device import BenchOptions

    # at the default --runs, at least half a second of runs; fewer runs asked for, a shorter floor in proportion
    floor = 0.5 * min(1.0, p.opts.runs / CompressOptions.runs)
    return p.device.bench(path, BenchOptions(threads=p.opts.threads, runs=p.opts.runs, min_secs=floor, warmup=2))


def _tflite_outputs(path: Path, outputs: Callable, spec: Any) -> np.ndarray:
    from odml.litert import load_interpreter, run_batch

    interp = load_interpreter(path)
    return outputs(lambda x: run_batch(interp, x), spec)


def _scores(p: Prepared, logits: np.ndarray, prefix: str = "") -> dict[str, Any]:
    """What the students' family scores beyond accuracy (text: ROC AUC;
    segmentation: mIoU and per-class IoU), named with ``prefix`` (int8_)."""
    return {f"{prefix}{k}": v for k, v in _score(p, logits).items() if k != "accuracy"}


def _score(p: Prepared, logits: np.ndarray) -> dict[str, Any]:
    """The students' family's scores of ``logits`` on the validation split
    (``accuracy``: of the examples, or of the pixels of a segmentation)."""
    return p.teacher.student_family.score(logits, p.data.y_val)


def _accuracy(p: Prepared, logits: np.ndarray) -> float:
    return float(_score(p, logits)["accuracy"])


def _teacher_logits(t: Teacher, out: Any) -> Any:
    """The teacher's output as class logits (its family's ``class_logits``)."""
    return t.family.class_logits(t.card.config, out)


def _on_train(p: Prepared, t: Teacher) -> dict[str, Any]:
    """What the teacher's soft labels hold on the training data
    (distill.soft_label_stats): per example, or per labelled pixel of up to
    64 images (the logits resized to the masks, 200,000 pixels drawn)."""
    from odml.compress.distill import soft_label_stats

    temp = p.recipe.distill.temperature
    if not _per_pixel(t):
        xs, ys = p.data.sample("train", 4096, p.recipe.seed)  # the whole training set when it is no larger
        return soft_label_stats(np.asarray(_teacher_logits(t, t.predict(t.input.from_pixels(xs)))), ys, temp)
    from odml.numeric import resize_bilinear

    xs, ys = p.data.sample("train", 64, p.recipe.seed)
    logits = np.asarray(_teacher_logits(t, t.predict(t.input.from_pixels(xs))))
    up = np.concatenate([resize_bilinear(logits[i:i + 4], *ys.shape[1:3]) for i in range(0, len(logits), 4)])
    valid = ys != p.data.ignore_label
    lg, yy = up[valid], ys[valid].astype(np.int64)
    pick = np.random.default_rng(p.recipe.seed).permutation(len(yy))[:200_000]
    return soft_label_stats(lg[pick], yy[pick], temp)


def _per_pixel(t: Teacher) -> bool:
    """The teacher's output is a map of per-pixel class scores (a segmentation model's)."""
    return t.output.measure == "pixels"


def _tflite(p: Prepared, path: Path, data: bytes, name: str, card: Any) -> None:
    """Write an exported model with its metadata: the labels, the card (and a
    text student's vocabulary), as `odml export` writes them."""
    from odml.exporters.metadata import ModelInfo, add_metadata
    from odml.exporters.tflite import signed

    labels = list(p.data.class_names)
    info = ModelInfo(name=name, description=f"{name}, compressed by odml from {p.teacher.path.name}", labels=labels,
                     card=card)
    write_bytes_atomic(path, add_metadata(signed(data, card, path.name), info))


def run(p: Any, on_stage: Callable[[str], None] | None = None,
        on_epoch: Callable[[int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run a prepared compression with the pipeline its teacher's family names."""
    folder = run_folder(p.out)
    with folder.lock():
        return pipeline_of(p.teacher).run(p, folder, on_stage, on_epoch)


def _run(p: Prepared, folder: RunFolder, on_stage: Callable[[str], None] | None,
         on_epoch: Callable[[int, dict[str, Any]], None] | None) -> dict[str, Any]:
    from odml._tf import keras
    from odml.compress.distill import Pixels, Student, sparsity_per_layer, strip, train_students
    from odml.exporters.tflite import convert, representative_from
    from odml.train.trainer import bn_batches, recalibrate_batchnorm, save_model_atomic
    from odml.zoo.card import ModelCard

    K = keras()
    say = on_stage or (lambda s: None)
    t = p.teacher
    if not folder.settings_path.is_file():
        folder.write_settings(_settings(p.opts, p.recipe, t, p.students))
    done = {r["label"]: r for r in folder.records(RESULTS)}
    # each model reads the data as its own input says (a teacher of yours may read [0, 255], the students [0, 1])
    s_in = p.students[0][1].input
    n_cal = p.recipe.quantize.calibration_samples
    rep = representative_from(s_in.from_pixels(p.data.sample("train", n_cal, p.recipe.seed)[0]), n=n_cal,
                              seed=p.recipe.seed)

    def outputs(run: Callable[[np.ndarray], np.ndarray], spec: Any) -> np.ndarray:
        """``run`` over the validation split, batch by batch (text is featurized as it goes)."""
        return np.concatenate([np.asarray(run(spec.from_pixels(x))) for x, _ in p.data.batches("val", 512)])

    teacher_label = f"teacher_{t.path.stem}"
    labels, name = list(p.data.class_names), s_in.name
    if teacher_label not in done:
        t_start = time.perf_counter()
        say("teacher: accuracy, fp32 TFLite, latency")
        t_val = np.asarray(_teacher_logits(t, outputs(t.predict, t.input)))
        acc = _accuracy(p, t_val)
        path = p.out / f"{teacher_label}_fp32.tflite"
        _tflite(p, path, t.fp32_tflite(), teacher_label, replace(t.card, labels=labels))
        lat = _latency(p, path)
        scores = _scores(p, t_val)
        say("teacher: soft labels on the training data")
        on_train = _on_train(p, t)
        row = {"label": teacher_label, "role": "teacher", "model": str(t.path), "params": t.params,
               "macs": t.macs, "accuracy": acc, "int8_accuracy": None, "size_bytes": path.stat().st_size,
               "gzip_bytes": len(gzip.compress(path.read_bytes(), 9)), "latency_ms": lat["median_ms"],
               "latency": _lat_fields(lat), "tflite": path.name, "on_train": on_train, **scores,
               "phase_s": round(time.perf_counter() - t_start, 2)}
        folder.append(RESULTS, row)
        done[teacher_label] = row
    teacher_row = done[teacher_label]
    todo = [(lbl, s) for lbl, s in p.students if lbl not in done]
    train_info: dict[str, Any] = {}
    if todo:
        K.utils.set_random_seed(p.recipe.seed)
        students = [Student(lbl, spec, p.built.pop(lbl, None) or spec.build(lbl)) for lbl, spec in p.students]
        if p.recipe.distill.inherits:
            say("students: the teacher's most important channels")
            channel = t.family.channel_scores(t.model, s_in.from_pixels(p.data.sample("train", 512)[0]))
            for s in students:
                t.family.inherit(t.model, s.model, channel)
        t0 = time.perf_counter()
        kw = dict(input_kind=t.input.kind, teacher_range=t.input.range if t.input.kind == "image" else None,
                  pixels=Pixels(p.data.ignore_label) if _per_pixel(t) else None,
                  teacher_out=lambda o: _teacher_logits(t, o))
        if p.recipe.shared.enabled:
            train_info = _train_shared(p, students, on_epoch, say, kw)
        else:
            say(f"training {len(students)} students together for {p.recipe.epochs} epochs")
            train_info = train_students(t.model, students, p.data, p.recipe, p.out / "checkpoints", on_epoch,
                                        strategy=_strategy(p), **kw)
        train_info["wall_s"] = time.perf_counter() - t0
        for s in students:
            if s.label in done:
                continue
            say(f"{s.label}: export and measure")
            te = time.perf_counter()
            qat = p.recipe.quantize.mode == "qat"
            model = strip(s.model) if p.recipe.prune.enabled and not qat else s.model  # (pruned + QAT: masks held)
            # the moving BN statistics from the data (a QAT model's too: its batch norms sit inside the wrappers)
            x_bn = p.data.sample("train", 5120, p.recipe.seed)[0]
            recalibrate_batchnorm(model, x_bn, seed=p.recipe.seed, **bn_batches(x_bn))
            logits = outputs(lambda x: model.predict(x, batch_size=256, verbose=0), s_in)
            acc = _accuracy(p, logits)
            card = ModelCard(s.spec.family, s.spec.config, s.label, labels, t.card.vocab)
            if p.recipe.quantize.mode != "qat":
                save_model_atomic(model, p.out / f"{s.label}.keras", card)
            precision = "fp32" if p.recipe.quantize.mode == "none" else "int8"
            path = p.out / f"{s.label}_{precision}.tflite"
            _tflite(p, path, convert(model, precision, rep if precision == "int8" else None,
                                     sparse=p.recipe.prune.enabled, input_name=name), s.label, card)  # pruned: sparse
            int8_out = _tflite_outputs(path, outputs, s_in) if precision == "int8" else None
            int8_acc = _accuracy(p, int8_out) if int8_out is not None else None
            scores = _scores(p, logits)
            if int8_out is not None:
                scores.update(_scores(p, int8_out, "int8_"))
            if qat:  # what QAT bought: its float weights alone, and those quantized after training (PTQ)
                scores.update(_float_and_ptq(p, model, s, outputs, rep, name))
            export_s = time.perf_counter() - te
            tm = time.perf_counter()
            lat = _latency(p, path)
            size = path.stat().st_size
            row = {"label": s.label, "role": "student", "line": s.spec.to_line(), "params": s.spec.params,
                   "macs": s.spec.macs, "accuracy": acc, "int8_accuracy": int8_acc, "precision": precision,
                   "size_bytes": size, "gzip_bytes": len(gzip.compress(path.read_bytes(), 9)),
                   "latency_ms": lat["median_ms"], "latency": _lat_fields(lat), "tflite": path.name,
                   "history": s.history, "epochs": p.recipe.epochs, "start_epoch": train_info.get("start_epoch"),
                   "train_s": train_info.get("train_s"), "epoch_s": train_info.get("epoch_s"), **scores,
                   "export_s": round(export_s, 2), "measure_s": round(time.perf_counter() - tm, 2),
                   **{k: train_info[k] for k in (*TIMING_KEYS, "wall_s", "shared", "distribute") if k in train_info}}
            if p.recipe.prune.enabled:
                layers = sparsity_per_layer(model)
                total = sum(r["weights"] for r in layers)
                row["sparsity"] = round(sum(r["sparsity"] * r["weights"] for r in layers) / max(total, 1), 4)
                row["sparsity_per_layer"] = layers
            folder.append(RESULTS, row)
            done[s.label] = row
        shutil.rmtree(p.out / "checkpoints", ignore_errors=True)  # every student is safe in results.jsonl
    return report(p, teacher_row)


# what train_students measured of the training, carried into each student's row (phases() and
# against_one_student() read them back)
TIMING_KEYS = ("one_student_step_s", "step_s", "vs_one_student", "steps_per_epoch", "trace_s", "one_student_trace_s",
               "one_student", "timing_s")


def _strategy(p: Prepared) -> Any:
    """--distribute's tf.distribute strategy (None without one)."""
    from odml.train import distribute

    return distribute.strategy(distribute.check(p.opts.distribute))


def _train_shared(p: Prepared, students: list[Any], on_epoch: Callable | None, say: Callable[[str], None],
                  kw: dict[str, Any]) -> dict[str, Any]:
    """--shared: the students trained as widths of one network (compress/shared.py) for all but the last
    ``shared.finetune_epochs`` epochs (train_students copies each width out at the end), then trained apart
    for those (with the pruning and QAT the recipe asks for)."""
    import copy

    from odml.compress.distill import train_students
    from odml.compress.shared import check_widths

    r, t = p.recipe, p.teacher
    ft = r.shared.apart(r)
    together = copy.deepcopy(r)
    together.epochs = r.epochs - ft
    together.prune.enabled, together.quantize.mode = False, "none"  # those come in the fine-tuning
    widest = check_widths([(s.label, s.model) for s in students])
    say(f"training {len(students)} students as widths of one network for {together.epochs} epochs")
    info = train_students(t.model, students, p.data, together, p.out / "checkpoints" / "shared", on_epoch,
                          shared=widest, **kw)
    out = {k: info[k] for k in ("start_epoch", "epoch_s", *TIMING_KEYS) if k in info}
    out["shared"] = {"widest": students[widest].label, "epochs": together.epochs, "train_s": info["train_s"],
                     "step_s": info.get("step_s"), "finetune_epochs": ft, "finetune_s": 0.0,
                     "widths_per_step": r.shared.widths_per_step, "graphs": info.get("graphs"),
                     "one_graph": bool(info.get("one_graph")),
                     **({"one_graph_why": info["one_graph_why"]} if info.get("one_graph_why") else {})}
    out["train_s"] = info["train_s"]
    if ft:
        apart = copy.deepcopy(r)
        apart.epochs, apart.learning_rate = ft, r.learning_rate / 10  # a short, gentle fine-tuning of each width
        before = {s.label: s.history for s in students}
        for s in students:
            s.history, s.optimizer = [], None
        say(f"fine-tuning the {len(students)} widths apart for {ft} epoch{'s' * (ft > 1)}")
        shift = (lambda e, logs: on_epoch(e + together.epochs, logs)) if on_epoch else None
        fi = train_students(t.model, students, p.data, apart, p.out / "checkpoints" / "finetune", shift,
                            time_one=False, **kw)
        for s in students:
            s.history = before[s.label] + [{**h, "epoch": h["epoch"] + together.epochs, "apart": True}
                                           for h in s.history]
        out["shared"].update(finetune_s=fi["train_s"], finetune_step_s=fi.get("step_s"))
        out["train_s"] += fi["train_s"]
        out["epoch_s"] = list(out.get("epoch_s", [])) + list(fi["epoch_s"])
    return out


def _float_and_ptq(p: Prepared, qat_model: Any, s: Any, outputs: Callable, rep: Any, name: str) -> dict[str, Any]:
    """A QAT student's weights in the float student (no fake quantization):
    its accuracy, and the accuracy of those weights quantized after training
    (PTQ int8), beside the QAT int8 file's."""
    from odml.compress.distill import float_weights
    from odml.exporters.tflite import convert
    from odml.litert import load_interpreter, run_batch

    plain = float_weights(qat_model, s.spec.build(f"{s.label}_float"))
    if plain is None:
        return {"float_accuracy": None, "ptq_int8_accuracy": None}
    f_out = outputs(lambda x: plain.predict(x, batch_size=256, verbose=0), s.spec.input)
    interp = load_interpreter(convert(plain, "int8", rep, input_name=name))
    ptq = outputs(lambda x: run_batch(interp, x), s.spec.input)
    return {"float_accuracy": _accuracy(p, f_out), "ptq_int8_accuracy": _accuracy(p, ptq)}


def _lat_fields(lat: dict[str, Any]) -> dict[str, Any]:
    return {k: lat[k] for k in ("median_ms", "mean_ms", "p90_ms", "p99_ms", "std_ms", "count") if k in lat}


def versus_teacher(folder: RunFolder, teacher_row: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's student rows with how much smaller and faster than the teacher each is."""
    students = [r for r in folder.records(RESULTS) if r["role"] == "student"]
    for r in students:
        r["size_ratio"] = round(teacher_row["size_bytes"] / r["size_bytes"], 2)
        r["speedup"] = round(teacher_row["latency_ms"] / r["latency_ms"], 2)
    return students


def phases(teacher_row: dict[str, Any], students: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the run's time went: the teacher (accuracy, file, latency, soft
    labels), the students' training (all together), their export and their
    measurement; and the training's cost against one student's (its steps
    timed alone on the first batches), Learn2Compress's claim checked on
    this run."""
    def total(key: str) -> float | None:
        vals = [r[key] for r in students if r.get(key) is not None]
        return round(sum(vals), 2) if vals else None

    training = sorted({round(r["wall_s"], 2) for r in students if r.get("wall_s") is not None})  # one per session
    out = {"teacher_s": teacher_row.get("phase_s"), "training_s": round(sum(training), 2) if training else None,
           "export_s": total("export_s"), "measure_s": total("measure_s"), "students": len(students)}
    out["wall_s"] = round(sum(v for k, v in out.items() if k.endswith("_s") and v is not None), 2)
    ratio = [r["vs_one_student"] for r in students if r.get("vs_one_student") is not None]
    if ratio:
        out["vs_one_student"] = ratio[0]
        out["one_student_step_s"] = next(r["one_student_step_s"] for r in students if r.get("one_student_step_s"))
        out["step_s"] = next(r["step_s"] for r in students if r.get("step_s"))
    shared = next((r["shared"] for r in students if r.get("shared")), None)
    if shared:  # --shared: the time together and the time apart
        out["shared"] = shared
    run = against_one_student(teacher_row, students, training)
    if run:
        out["run_vs_one_student"] = run
    return out


def against_one_student(teacher_row: dict[str, Any], students: list[dict[str, Any]],
                        training: list[float]) -> dict[str, Any] | None:
    """The run's cost per phase against one student's run, both measured in
    this run: the teacher's phase is the same; one student traces its step
    once (timed alone, or the one graph of shared widths), takes as many
    steps as this run took, at its own step time, and is exported and
    measured as that student was here. (Loading and the report, which both
    runs pay alike, are left out of both.)"""
    one = next((r for r in students if r.get("one_student") == r["label"]), None)
    if one is None or len(training) != 1 or one.get("one_student_step_s") is None or one.get("trace_s") is None:
        return None  # one student, or a run resumed across sessions, or one whose steps were not timed
    sh = one.get("shared") or {}
    trained = sum(1 for h in one.get("history", []) if h["epoch"] >= (one.get("start_epoch") or 0))
    steps = trained * (one.get("steps_per_epoch") or 0)
    finetune = sh.get("finetune_s") or 0.0
    this = {"teacher_s": teacher_row.get("phase_s") or 0.0, "tracing_s": one["trace_s"],
            "timing_one_s": one.get("timing_s") or 0.0, "fine_tuning_s": finetune,
            "export_s": sum(r.get("export_s") or 0.0 for r in students),
            "measure_s": sum(r.get("measure_s") or 0.0 for r in students)}
    this["training_s"] = max(0.0, training[0] - this["tracing_s"] - this["timing_one_s"] - finetune)
    alone = {"teacher_s": this["teacher_s"], "tracing_s": one.get("one_student_trace_s") or 0.0,
             "timing_one_s": 0.0, "fine_tuning_s": 0.0, "training_s": steps * one["one_student_step_s"],
             "export_s": one.get("export_s") or 0.0, "measure_s": one.get("measure_s") or 0.0}
    total, total_one = sum(this.values()), sum(alone.values())
    return {"student": one["label"], "this_run": {k: round(v, 2) for k, v in this.items()},
            "one_student": {k: round(v, 2) for k, v in alone.items()},
            "ratio": round(total / total_one, 2) if total_one else None}


def learned_nothing_notes(family: Any, teacher_row: dict[str, Any], students: list[dict[str, Any]], y: Any,
                          names: list[str]) -> list[str]:
    """A note for each student whose scores on the validation data show it
    failing to learn, as the students' family judges them
    (``Family.learned_nothing``): in float (train longer), else in int8
    alone (quantization lost it). A teacher that fails the same way gets
    the one note instead: the students learn from it."""
    said = family.learned_nothing(teacher_row, y, names)
    if said:
        return [f"the teacher {said} on the validation data, and the students learn from it: check the data and "
                "its labels"]
    notes = []
    for r in students:
        said = family.learned_nothing(r, y, names)
        if said:
            notes.append(f"student {r['label']} {said} on the validation data (train it longer, or on more "
                         "examples)")
            continue
        int8 = {k[len("int8_"):]: v for k, v in r.items() if k.startswith("int8_")}
        said = family.learned_nothing(int8, y, names) if int8 else None
        if said:
            notes.append(f"student {r['label']} in int8 {said} on the validation data, where in float it does not: "
                         "quantization lost it (more --calibration-samples, or --quantize qat)")
    return notes


def report(p: Prepared, teacher_row: dict[str, Any]) -> dict[str, Any]:
    from odml.compress.distill import soft_label_note
    from odml.pareto import pareto_front

    students = versus_teacher(run_folder(p.out), teacher_row)
    for r in students:
        r["final_accuracy"] = final_score(r)
    front = {r["label"] for r in pareto_front(students, acc="final_accuracy")}
    for r in students:
        r["pareto"] = r["label"] in front
    chosen = pick(students, p.pick) if p.pick else None
    for r in students:
        r["picked"] = chosen is not None and r["label"] == chosen["label"]
    students.sort(key=lambda r: r["latency_ms"])
    notes = list(getattr(p.data, "notes", []))
    weak = soft_label_note(teacher_row["on_train"]) if p.recipe.distill.enabled and "on_train" in teacher_row else None
    if weak:
        notes.append(weak)
    notes += learned_nothing_notes(p.teacher.student_family, teacher_row, students, p.data.y_val,
                                   list(p.data.class_names))
    rep = {"schema": SCHEMA, "out": str(p.out), "device": p.device.label, "recipe": p.recipe.to_dict(),
           "teacher": teacher_row, "students": students, "phases": phases(teacher_row, students), "pick": p.opts.pick,
           "picked": chosen["label"] if chosen else None, "notes": notes,
           "data": {"source": p.opts.data, "split": getattr(p.data, "split", "")}}
    write_json_atomic(p.out / "report.json", rep)
    _plot(rep, p.out / "compress.png")
    from odml import report as page

    page.write_after(p.out)  # report.html: the page of the folder's files (odml report makes it again)
    rep["files"] = {"report": str(p.out / "report.json"), "plot": str(p.out / "compress.png"),
                    "results": str(p.out / RESULTS), "page": str(p.out / page.PAGE)}
    return rep


def _plot(rep: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    t = rep["teacher"]
    for ax, key, label in ((axes[0], "latency_ms", "latency (ms, median)"), (axes[1], "size_bytes", "size (KiB)")):
        scale = 1 / 1024 if key == "size_bytes" else 1
        ax.scatter([t[key] * scale], [final_score(t)], marker="*", s=120, c="#2e86ab", label="teacher (fp32)")
        for r in rep["students"]:
            ax.scatter([r[key] * scale], [r["final_accuracy"]], s=40, c="#d1495b" if r["pareto"] else "#9aa7b8",
                       edgecolors="k" if r["picked"] else "none")
            ax.annotate(r["label"], (r[key] * scale, r["final_accuracy"]), fontsize=7, xytext=(4, 3),
                        textcoords="offset points")
        ax.set_xlabel(label)
        ax.set_ylabel("mIoU" if "miou" in t else "accuracy")
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"odml compress on {rep['device']}: students (red: Pareto set) against the teacher")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)


__all__ = ["CompressOptions", "prepare", "run", "parse_pick", "pick", "RecipeError", "asdict"]
