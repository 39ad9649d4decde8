"""The export job: a model (zoo name, spec, Keras file, SavedModel folder) ->
a folder of .tflite (and .onnx) files with metadata, an export report, and the
parity of every file against the source model. Files are made in a staging
folder that takes the place of --out in one step (an atomic exchange) only
when every step succeeded, so a failed, interrupted or killed export leaves
the previous export whole or nothing; the report lists every file the folder
holds, and one export at a time writes a folder."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from odml.errors import DataError, OutputError
from odml.exporters.tflite import DEFAULT_THRESHOLDS, ExportError, ParityThreshold, convert, judge, parity
from odml.files import held, replace_folder, temp_dir_beside, write_failure, write_file, write_json_atomic
from odml.exporters.int8_search import RECIPE_SUFFIX
from odml.zoo.card import Carded

REPORT_NAME = "export.json"
SCHEMA = 1  # export.json's (report/views.py reads it)


@dataclass
class Source(Carded):
    """A model to export: what it is (its card: family, input, output), how to
    run it, and what the converter takes."""

    name: str
    kind: str  # "zoo" (a zoo name), "spec" (a spec file), "keras" (a .keras / .h5 file) or "savedmodel"
    card: Any  # ModelCard
    predict: Callable[[np.ndarray], np.ndarray]
    convertible: Any  # a Keras model or a concrete function
    trackable: Any = None
    keras_model: Any = None
    requantize: Callable[[str, np.ndarray | None], bytes] | None = None  # a float .tflite: (precision, calibration)
    info: dict[str, Any] | None = None  # how a model file was read (ONNX: exporter, ops, preparation)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.input.shape)

    @property
    def outputs(self) -> int:
        return self.output.size

    @property
    def classifies(self) -> bool:
        return self.output.task == "classify"

    def random_inputs(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.input.random(rng, n)

    def tflite(self, precision: str, convertible: Any = None, x_calib: np.ndarray | None = None, io: str = "float",
               samples: int = 200, seed: int = 0) -> bytes:
        """This model as a .tflite in ``precision`` (int8 calibrated on up to
        ``samples`` of ``x_calib``): a float .tflite re-quantized, anything
        else converted (``convertible``: another form of it, default its
        own); its outputs kept in the family's order and with its names."""
        from odml.exporters.tflite import keep_io, representative_from

        if self.requantize is not None:
            data = self.requantize(precision, _calibration(x_calib, samples, seed) if precision == "int8" else None)
        else:
            rep = representative_from(x_calib, samples, seed) if precision == "int8" else None
            data = convert(self.convertible if convertible is None else convertible, precision, rep, io,
                           self.trackable, input_name=self.input.name)
        tensors = self.output.tensors
        return keep_io(data, self.input.name, tensors, f"{precision} file") if tensors else data


MODEL_FILES = (".keras", ".h5", ".onnx", ".tflite")


def load_source(model: str, classes: int | None = None, input_size: str | None = None,
                width: float | None = None, sets: list[str] | None = None,
                input_range: tuple[float, float] | None = None, task: str | None = None) -> Source:
    """A zoo name (with overrides), a spec file, or a model file: .keras
    (Keras 3 or tf_keras) / .h5 with its card beside it or read off the model,
    a SavedModel folder, an .onnx graph (converted by onnx2tf; parity against
    onnxruntime), a float .tflite (re-quantized; parity against the file under
    LiteRT). ``input_size`` fixes a file's dynamic height and width; ``task``
    says what a file's outputs are."""
    from odml.zoo.family import TASKS
    from odml.zoo.load import load_model

    if task is not None and task not in TASKS:
        raise ExportError(f"--task {task}: expected one of {', '.join(TASKS)}")
    p = Path(model)
    if p.is_dir() or p.suffix.lower() in MODEL_FILES:
        if classes is not None or width is not None or sets:
            raise ExportError(f"{p}: --classes, --width and --set apply to zoo names and specs, not to a model file")
        loaded = load_model(p, input_size, input_range, task)
        return file_source(loaded)
    if task is not None:
        raise ExportError(f"--task applies to model files; {model} is a {'spec' if p.suffix else 'zoo model'} whose "
                          "family says what its outputs are")
    from odml.zoo.card import ModelCard
    from odml.zoo.registry import is_model, resolve

    c = resolve(model, classes, input_size, width, sets)
    card = ModelCard(c.family, c.config, c.name)  # untrained: no labels (--labels or --data give them)
    km = c.build()
    from odml.zoo.load import predict_keras

    return Source(c.name, "zoo" if is_model(model) else "spec", card, lambda x: predict_keras(km, x), km, None, km)


def finalized(src: Source, method: str) -> Source:
    """``src`` whose exported files end in ``method`` (--finalize: a
    segmentation model's resize and argmax after its logits, as the Model
    Garden's export offers them); the finalized float model is the parity
    reference. The family says whether its models take it."""
    from dataclasses import replace

    from odml.zoo.load import predict_keras

    cfg, km = src.family.finalize(src.card.config, method, src.keras_model)  # a model that cannot take it: refused
    if km is None:
        raise ExportError(f"--finalize {method}: {src.name} is not a Keras model odml can add the steps to")
    return replace(src, card=replace(src.card, config=cfg), predict=lambda x: predict_keras(km, x), convertible=km,
                   keras_model=km, trackable=None)


def file_source(loaded: Any) -> Source:
    """A loaded model file as an export source: its own predictions as the
    reference (ONNX: onnxruntime's), a batch-1 concrete function to convert."""
    from odml.exporters.tflite import concrete_function

    card, m = loaded.card, loaded.model
    inp = card.input
    kind = {"tf_keras": "keras"}.get(loaded.runtime, loaded.runtime)
    name = card.name or loaded.path.stem
    if loaded.runtime == "litert":  # a .tflite: re-quantized as it is, never rebuilt
        from odml.exporters.requantize import check_float, requantize

        data = loaded.model.data  # the file's bytes, read once by TfliteModel
        check_float(data, str(loaded.path))
        return Source(name, kind, card, loaded.predict, None, None, None,
                      lambda prec, x: requantize(data, prec, x, str(loaded.path)), loaded.info)
    keras = loaded.runtime == "tf_keras" and getattr(m, "inputs", None) and \
        tuple(int(d) for d in m.inputs[0].shape[1:] if d is not None) == tuple(inp.shape)
    convertible = m if keras else concrete_function(m, inp.shape, inp.name, inp.dtype)
    return Source(name, kind, card, loaded.predict, convertible, getattr(m, "loaded", None), m if keras else None,
                  None, loaded.info)


@dataclass
class ExportOptions:
    precisions: list[str]
    out_dir: Path
    formats: list[str] = field(default_factory=lambda: ["tflite"])
    io: str = "float"
    calibration: str = "data"  # or "random"
    calibration_samples: int = 200
    parity_samples: int = 100
    thresholds: dict[str, ParityThreshold] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    target: str = "cpu"  # or "edgetpu"
    metadata: Any = None  # ModelInfo
    seed: int = 0
    data: dict[str, Any] | None = None  # where the parity and calibration inputs came from (source, split)
    diagnose: bool = False  # int8: the error each op adds against the fp32 file, mapped back to its layer
    search: bool = True  # int8 (cpu, float io): recipes tried until the budget holds (exporters/int8_search.py)
    recipe: Any = None  # int8_search.Recipe given with --recipe: applied as it is, no search
    timer: Callable[[list[bytes]], list[float]] | None = None  # files -> host latency (ms), for the search
    finetune: Callable[[Any, np.ndarray], bytes] | None = None  # (tf_keras model, calibration) -> int8 file (QAT)


def to_fp32_tflite(model: str | Path, out: Path, input_size: Any = None,
                   input_range: tuple[float, float] | None = None, task: str | None = None) -> Path:
    """A model file (.keras, .h5, SavedModel, .onnx) as an fp32 .tflite at
    ``out``, with its card in the metadata (for benchmarking what is not a
    .tflite yet)."""
    from odml.exporters.metadata import ModelInfo, add_metadata
    from odml.files import write_bytes_atomic

    src = load_source(str(model), input_size=input_size, input_range=input_range, task=task)
    data = add_metadata(src.tflite("fp32"), ModelInfo(name=src.name, description=f"{src.name} converted by odml for a benchmark",
                                        card=src.card))
    return write_bytes_atomic(out, data)


def _calibration(x: np.ndarray | None, samples: int, seed: int) -> np.ndarray | None:
    """Up to ``samples`` inputs of ``x``, drawn as the converter's
    representative dataset draws them (``representative_from``)."""
    if x is None:
        return None
    idx = np.random.default_rng(seed).permutation(len(x))[:samples]
    return np.asarray(x[idx], np.float32)


def _int8(src: Source, opts: ExportOptions, convertible: Any, x_calib: np.ndarray | None,
          judge_file: Callable[[bytes], tuple[dict[str, Any], list[str]]], made: dict[str, bytes],
          step: Callable[[str], None] | None) -> tuple[bytes, Any]:
    """The int8 file: ``opts.recipe`` applied, else the converter's file
    (the first candidate) and, while the budget is not met, the recipes of
    ``exporters.int8_search`` then quantization-aware fine-tuning
    (``opts.finetune``); the file and the search (or None)."""
    from odml.exporters import int8_search as s8
    from odml.exporters.tflite import budget_ratios, budget_text, keep_io

    th = opts.thresholds["int8"]
    layers = [lay.name for lay in getattr(src.keras_model, "layers", [])] or None
    outputs = list(getattr(src.keras_model, "output_names", None) or [])  # the layer making each output
    x = _calibration(x_calib, opts.calibration_samples, opts.seed)

    def plain() -> bytes:
        return src.tflite("int8", convertible, x_calib, "float", opts.calibration_samples, opts.seed)

    def fp32() -> bytes:
        return made.get("fp32") or src.tflite("fp32", convertible)

    def judge8(data: bytes) -> tuple[dict[str, Any], list[str], dict[str, float], str]:
        p, failed = judge_file(data)
        return p, failed, budget_ratios(p, th), budget_text(p, th)

    def judged(name: str, recipe: Any, data: bytes, seconds: float = 0.0) -> Any:
        return s8.Step(name, recipe, data, *judge8(data), seconds)

    if opts.recipe is not None:
        one = judged("recipe", opts.recipe, s8.apply(opts.recipe, fp32(), x, layers, plain, src.name, outputs))
        return one.data, s8.Searched([one], one if one.met else None)
    first = judged("converter", s8.Recipe("tflite-converter"), plain())
    if first.met:
        return first.data, None  # the converter's file holds: nothing to search
    if not opts.search:
        return first.data, s8.Searched([first], None)
    fp16 = made.get("fp16")
    if opts.timer is not None and fp16 is None:
        fp16 = src.tflite("fp16", convertible)  # the reference the recipes' latency is compared with
    res = s8.search(fp32(), x, judge8, layers, first, opts.timer, fp16, src.name, step, outputs)
    if res.chosen is None and opts.finetune is not None and src.keras_model is not None:
        if step:
            step("int8: quantization-aware fine-tuning toward the float outputs")
        t0 = time.perf_counter()
        data = opts.finetune(src.keras_model, x)
        tensors = src.output.tensors
        data = keep_io(data, src.input.name, tensors, "QAT file") if tensors else data
        q = judged("qat", s8.Recipe("qat"), data, time.perf_counter() - t0)
        if opts.timer is not None and fp16 is not None:  # against the fp16 file again, scaled to its first figure
            ms, ref_ms = opts.timer([data, fp16])
            q.ms = ms * (res.fp16_ms or ref_ms) / ref_ms
        res.steps.append(q)
        res.chosen = q if q.met else None
    return res.best.data, res


def _fallback(res: Any, precisions: list[str]) -> str:
    """The one line of an int8 file that no recipe kept in budget."""
    best = res.best
    floats = " and ".join(p for p in ("fp32", "fp16") if p in precisions)
    tail = f"the {floats} file{'s are' if ' and ' in floats else ' is'} the fallback" if floats else \
        "nothing written: add fp32 or fp16 to --quantize for a float fallback"
    return (f"no int8 recipe meets the budget (tried {len(res.steps)}); best reached with {best.recipe.describe()}: "
            f"{best.budget}; {tail}")


DIAGNOSIS_SAMPLES = 16  # inputs both files run on, every tensor kept


def _diagnosis(src: Source, fp32: bytes, int8: bytes, x: np.ndarray) -> dict[str, Any]:
    """Which layers the int8 file loses most in (``exporters/diagnose.py``),
    on calibration inputs; the worst ten and the outputs' errors in the
    report (every op's row stays out)."""
    from odml.exporters.diagnose import diagnose

    km = src.keras_model
    layers = [lay.name for lay in getattr(km, "layers", [])] or None
    outputs = list(getattr(km, "output_names", None) or [])  # the layer making each output, in order
    d = diagnose(fp32, int8, np.asarray(x[:DIAGNOSIS_SAMPLES], np.float32), layers, outputs)
    d.pop("all")
    return d


def check_out_dir(out_dir: Path) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: exists and is not a folder")
    if not out_dir.parent.is_dir():
        raise OutputError(f"{out_dir}: parent folder {out_dir.parent} does not exist")
    return out_dir


WORK_FILES = ("model_with_metadata.tflite",)  # the work file earlier exports left behind: replaced with the rest


def unexported_files(out_dir: Path) -> list[str]:
    """The files of ``out_dir`` that no odml export wrote: all of them unless
    it holds an earlier export's report, which lists every file it wrote."""
    have = sorted(f.name for f in out_dir.iterdir())
    try:
        report = json.loads((out_dir / REPORT_NAME).read_text(encoding="utf-8"))
        listed = set(report.get("files") or [a["file"] for a in report["artifacts"]])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return have
    from odml.report import PAGE  # (allowed in a folder exported before the page was written)

    listed |= {REPORT_NAME, PAGE, *WORK_FILES} | {f"{Path(f).stem}_compiler.log" for f in listed}
    return [f for f in have if f not in listed]


def check_replaceable(out_dir: Path) -> None:
    """An export replaces its whole --out folder: refuse one that holds files
    an export did not write (the user's), naming them."""
    check_out_dir(out_dir)
    others = unexported_files(out_dir) if out_dir.is_dir() else []
    if others:
        raise OutputError(f"{out_dir}: holds {others[0]}" + (f" and {len(others) - 1} more" if len(others) > 1 else "")
                          + " that odml export did not write; an export replaces its whole folder: give a new or "
                          "empty one")


def export_lock(out_dir: Path) -> Any:
    """The lock of one export folder (beside it: the folder itself is swapped)."""
    def busy(pid: str) -> OutputError:
        return OutputError(f"{out_dir}: another odml export (pid {pid}) is writing this folder")

    return held(out_dir.parent / f".{out_dir.name}.lock", busy, remove=True)


def run_export(src: Source, opts: ExportOptions, x_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
               x_calib: np.ndarray | None = None, warn: Callable[[str], None] = print,
               step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Convert, check parity, attach metadata; returns the report. Raises
    before writing anything if an input is unusable. The folder is written
    whole or not at all, by one export at a time."""
    check_out_dir(opts.out_dir)  # its parent exists: the lock goes there
    folder = opts.out_dir.resolve() if opts.out_dir.is_symlink() else opts.out_dir  # a link keeps pointing there
    with export_lock(folder):
        check_replaceable(folder)
        report = _export(src, replace(opts, out_dir=folder), x_val, y_val, x_calib, warn, step)
        report["out_dir"] = str(opts.out_dir)  # as the user named it
        return report


def _export(src: Source, opts: ExportOptions, x_val: np.ndarray | None, y_val: np.ndarray | None,
            x_calib: np.ndarray | None, warn: Callable[[str], None],
            step: Callable[[str], None] | None) -> dict[str, Any]:
    from odml.litert import load_interpreter, run_batch, run_outputs
    from odml.flatbuffer import parse_tflite
    from odml.exporters.tflite import judge_outputs, parity_outputs, signed

    rng = np.random.default_rng(opts.seed)
    if "int8" in opts.precisions:
        if x_calib is None:
            if opts.calibration != "random":
                raise ExportError("int8 needs calibration data: give --data, or --calibration random "
                                  "(accuracy is then unknown)")
            warn("int8 calibrated on random inputs: accuracy of the int8 model is unknown")
            x_calib = src.random_inputs(rng, opts.calibration_samples)
    if x_val is None:
        x_val = src.random_inputs(rng, min(opts.parity_samples, 32))
        y_val = None
    x_val = x_val[: opts.parity_samples]
    y_val = y_val[: opts.parity_samples] if y_val is not None else None
    if y_val is not None and src.classifies and int(y_val.max()) >= src.outputs:
        raise DataError(f"the data has labels up to {int(y_val.max())} but the model has {src.outputs} outputs")
    ref = src.predict(x_val)
    tensors = src.output.tensors  # outputs kept in the family's order and with its names, each judged by its measure
    if tensors and not isinstance(ref, (list, tuple)):
        ref = [ref]
    measures = list(tensors)  # each output judged by its measure, read with its OutputTensor (points, extent, logits)
    labels = y_val if src.classifies else None
    if src.requantize is not None and opts.io != "float" and "int8" in opts.precisions:
        raise ExportError(f"--io {opts.io}: a .tflite is re-quantized with float input and output (its app feeds "
                          "floats); leave --io float")

    stage = temp_dir_beside(opts.out_dir, "export")
    try:
        artifacts: list[dict[str, Any]] = []
        artifacts_data: list[bytes] = []  # each precision's file, as made (before metadata)
        fp32_bytes = None

        def judge_file(data: bytes, prec: str = "int8") -> tuple[dict[str, Any], list[str]]:
            interp = load_interpreter(data)
            if tensors:
                p = parity_outputs(ref, run_outputs(interp, x_val), [t.name for t in tensors], measures, labels)
                return p, judge_outputs(p, opts.thresholds[prec])
            p = parity(ref, run_batch(interp, x_val), labels, src.output.measure)  # one output: errors, top-1
            return p, judge(p, opts.thresholds[prec])
        stem = src.name
        convertible = src.convertible
        if opts.target == "edgetpu":
            from odml.exporters.edgetpu import lower_for_edgetpu

            convertible, lowered = lower_for_edgetpu(src.keras_model) if src.keras_model is not None else (convertible, 0)
            if lowered:
                warn(f"edgetpu: {lowered} grouped convolution(s) lowered to split/conv/concat")
        for prec in opts.precisions:
            if step:
                step(f"tflite {prec}")
            t0 = time.perf_counter()
            io = opts.io if prec == "int8" else "float"
            searched = None
            if prec == "int8" and io == "float" and opts.target == "cpu":
                made = {p: a for p, a in zip(opts.precisions, artifacts_data)}
                data, searched = _int8(src, opts, convertible, x_calib, judge_file, made, step)
            else:
                data = src.tflite(prec, convertible, x_calib, io, opts.calibration_samples, opts.seed)
            data = signed(data, src.card, f"{prec} file")  # a serving_default signature, by the family's names
            artifacts_data.append(data)
            conv_s = time.perf_counter() - t0
            name = f"{stem}_{prec}{'_edgetpu' if opts.target == 'edgetpu' else ''}.tflite"
            try:
                if opts.metadata is not None:
                    from odml.exporters.metadata import add_metadata

                    data = add_metadata(data, opts.metadata)
                write_file(stage / name, data)
            except OutputError as e:  # name the file the user asked for, not odml's work files
                raise OutputError(f"{opts.out_dir / name}: cannot write: {str(e).split('cannot write: ', 1)[-1]}") \
                    from None
            if prec == "fp32":
                fp32_bytes = data
            p, failed = judge_file(data, prec)
            model = parse_tflite(data, name)
            art = {"file": name, "format": "tflite", "precision": prec, "io": io, "size_bytes": len(data),
                   "convert_s": round(conv_s, 2), "ops": model.op_histogram, "parity": p,
                   "parity_threshold": vars(opts.thresholds[prec]), "parity_failed": failed}
            if searched is not None:  # how the int8 file was made: the recipe (beside it) and the steps tried
                art["search"] = searched.report()
                recipe_file = f"{Path(name).stem}{RECIPE_SUFFIX}"
                write_json_atomic(stage / recipe_file, searched.best.recipe.to_dict())
                art["recipe"], art["recipe_file"] = searched.best.recipe.to_dict(), recipe_file
                if searched.chosen is None:
                    failed = art["parity_failed"] = [_fallback(searched, opts.precisions)]
                    art["written"] = False
                    (stage / name).unlink()
                    (stage / recipe_file).unlink()
            if opts.target == "edgetpu" and prec == "int8":
                from odml.exporters.edgetpu import compatibility, try_compile

                art["edgetpu"] = compatibility(model)
                art["edgetpu"]["compiler"] = try_compile(stage / name, stage, warn)
            if opts.diagnose and prec == "int8":
                if step:
                    step("int8 diagnosis")
                if fp32_bytes is None:  # the float file of the same model, converted the same way
                    fp32_bytes = src.tflite("fp32", convertible)
                art["diagnosis"] = _diagnosis(src, fp32_bytes, data, x_calib if x_calib is not None else x_val)
            artifacts.append(art)
        if "onnx" in opts.formats:
            if step:
                step("onnx")
            from odml.exporters.onnx import export_onnx

            if fp32_bytes is None:
                fp32_bytes = src.tflite("fp32", convertible)
            art = export_onnx(fp32_bytes, stage / f"{stem}.onnx", x_val, ref, labels, opts.thresholds["fp32"],
                              [t.name for t in tensors], measures, src.output.measure)
            artifacts.append(art)
        fp32 = next((a["size_bytes"] for a in artifacts if a["precision"] == "fp32" and a["format"] == "tflite"), None)
        for a in artifacts:
            if fp32:
                a["size_vs_fp32"] = round(a["size_bytes"] / fp32, 4)
        report = {
            "model": src.name, "source": src.kind, **({"source_info": src.info} if src.info else {}),
            "family": src.family.name, "input_shape": list(src.input_shape),
            "input_dtype": src.input.dtype, "input": src.input.to_dict(), "outputs": src.outputs,
            "output": src.output.to_dict(), "task": src.family.zoo_task,
            **({"text": src.input.text} if src.input.text else {}),
            "target": opts.target, "out_dir": str(opts.out_dir),
            "parity_inputs": "validation data" if y_val is not None else ("data" if opts.data else "random"),
            **({"data": opts.data} if opts.data else {}),
            "artifacts": artifacts,
        }
        counts = src.family.count(src.card.config)
        report["params"], report["macs"] = counts.params, counts.macs
        failed = [a for a in artifacts if a["parity_failed"]]
        report["ok"] = not failed
        if failed and (not all(a.get("written") is False for a in failed) or len(failed) == len(artifacts)):
            return report  # the caller reports the failure; nothing is written
        # (an int8 file no recipe kept in budget is left out; the other files are written: the fallback)
        from odml import report as page

        # all the folder will hold: the files, this report and its page
        report["files"] = sorted([*(f.name for f in stage.iterdir()), REPORT_NAME, page.PAGE])
        write_json_atomic(stage / REPORT_NAME, {"schema": SCHEMA, **report})
        if page.write_after(stage, shown_as=str(opts.out_dir)) is None:  # report.html, drawn from the staged files
            report["files"].remove(page.PAGE)  # (a page that could not be drawn: the export stands without it)
            write_json_atomic(stage / REPORT_NAME, {"schema": SCHEMA, **report})
        replace_folder(stage, opts.out_dir)  # the whole export in one step: the old one whole or the new one
        return report
    except Exception as e:  # a full disk while staging: name the file the user asked for, not the staging one
        failed = write_failure(e)
        if failed is None:
            raise
        raise OutputError(str(failed).replace(str(stage), str(opts.out_dir))) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
