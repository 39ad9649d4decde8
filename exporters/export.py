"""The export job: a model (zoo name, spec, Keras file, SavedModel folder) ->
a folder of .tflite (and .onnx) files with metadata, an export report, and the
parity of every file against the source model. Files are made in a staging
folder and moved into place only when every step succeeded, so a failed or
interrupted export leaves nothing behind."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from odml.errors import DataError, OutputError
from odml.exporters.metadata import PACKED
from odml.exporters.tflite import DEFAULT_THRESHOLDS, ExportError, ParityThreshold, convert, judge, parity
from odml.files import temp_dir_beside, write_json_atomic
from odml.zoo.card import Carded

REPORT_NAME = "export.json"


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


def load_source(model: str, classes: int | None = None, input_size: str | None = None,
                width: float | None = None, sets: list[str] | None = None) -> Source:
    """A zoo name (with overrides), a spec file, a .keras / .h5 model (its card
    beside it) or a SavedModel folder."""
    from odml.zoo.load import ModelFileError, load_model

    p = Path(model)
    if p.is_dir():
        return _load_savedmodel(p)
    if p.suffix.lower() in (".keras", ".h5"):
        if not p.exists():
            raise ModelFileError(f"{p}: model not found")
        loaded = load_model(p)
        return _keras_source(loaded.card.name or p.stem, "keras", loaded.model, loaded.card)
    from odml.zoo.card import ModelCard
    from odml.zoo.registry import is_model, resolve

    c = resolve(model, classes, input_size, width, sets)
    card = ModelCard(c.family, c.config, c.name)  # untrained: no labels (--labels or --data give them)
    return _keras_source(c.name, "zoo" if is_model(model) else "spec", c.build(), card)


def _keras_source(name: str, kind: str, km: Any, card: Any) -> Source:
    shape = tuple(km.input_shape[1:]) if not isinstance(km.input_shape, list) else None
    if shape is None or any(d is None for d in shape):
        raise ExportError(f"{name}: export handles models with one input of static shape, got {km.input_shape}")
    if isinstance(km.output_shape, list):
        raise ExportError(f"{name}: export handles models with one output, got {len(km.output_shape)}")

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(km.predict(x, batch_size=64, verbose=0))

    return Source(name, kind, card, predict, km, None, km)


def _load_savedmodel(p: Path) -> Source:
    from odml._tf import quiet_stderr_fd, tf
    from odml.zoo.load import ModelFileError, foreign_card

    T = tf()
    if not (p / "saved_model.pb").is_file():
        raise ModelFileError(f"{p}: folder is not a SavedModel (no saved_model.pb)")
    try:
        with quiet_stderr_fd():
            loaded = T.saved_model.load(str(p))
    except Exception as e:
        raise ModelFileError(f"{p}: cannot load SavedModel: {type(e).__name__}") from None
    sigs = dict(getattr(loaded, "signatures", {}) or {})
    if not sigs:
        raise ModelFileError(f"{p}: SavedModel has no signature; export it with a serving_default signature")
    sig = sigs.get("serving_default") or next(iter(sigs.values()))
    args = sig.structured_input_signature[1]
    if len(args) != 1:
        raise ModelFileError(f"{p}: the signature takes {len(args)} inputs; export handles one image input")
    in_name, spec = next(iter(args.items()))
    shape = tuple(spec.shape[1:])
    out_name = sorted(sig.structured_outputs)[0]
    out_shape = tuple(sig.structured_outputs[out_name].shape[1:])
    if any(d is None for d in (*shape, *out_shape)):
        raise ModelFileError(f"{p}: signature input {in_name} has shape {spec.shape}; need [batch, H, W, C] static")
    card = foreign_card(shape, out_shape, "float32", p.name)
    if card.input.kind != "image":
        raise ModelFileError(f"{p}: signature input {in_name} has shape {spec.shape}; need [batch, H, W, C] static")
    fn = T.function(lambda x: sig(**{in_name: x})[out_name])
    cfn = fn.get_concrete_function(T.TensorSpec((1, *shape), T.float32))

    def predict(x: np.ndarray) -> np.ndarray:
        return np.concatenate([sig(**{in_name: T.constant(x[i:i + 64])})[out_name].numpy()
                               for i in range(0, len(x), 64)])

    return Source(p.name, "savedmodel", card, predict, cfn, loaded)


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


def check_out_dir(out_dir: Path) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: exists and is not a folder")
    if not out_dir.parent.is_dir():
        raise OutputError(f"{out_dir}: parent folder {out_dir.parent} does not exist")
    return out_dir


def run_export(src: Source, opts: ExportOptions, x_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
               x_calib: np.ndarray | None = None, warn: Callable[[str], None] = print,
               step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Convert, check parity, attach metadata; returns the report. Raises
    before writing anything if an input is unusable."""
    from odml.litert import load_interpreter, run_batch
    from odml.flatbuffer import parse_tflite
    from odml.exporters.tflite import representative_from

    check_out_dir(opts.out_dir)
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

    stage = temp_dir_beside(opts.out_dir, "export")
    try:
        artifacts: list[dict[str, Any]] = []
        fp32_bytes = None
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
            rep = representative_from(x_calib, opts.calibration_samples, opts.seed) if prec == "int8" else None
            io = opts.io if prec == "int8" else "float"
            data = convert(convertible, prec, rep, io, src.trackable, input_name=src.input.name)
            conv_s = time.perf_counter() - t0
            if opts.metadata is not None:
                from odml.exporters.metadata import add_metadata

                data = add_metadata(data, opts.metadata, stage)
            if prec == "fp32":
                fp32_bytes = data
            name = f"{stem}_{prec}{'_edgetpu' if opts.target == 'edgetpu' else ''}.tflite"
            (stage / name).write_bytes(data)
            interp = load_interpreter(data)
            p = parity(ref, run_batch(interp, x_val), y_val if src.classifies else None)
            if not src.classifies:  # keypoints and boxes: the errors are what count, not an argmax
                p.pop("top1_agreement", None)
            failed = judge(p, opts.thresholds[prec])
            model = parse_tflite(data, name)
            art = {"file": name, "format": "tflite", "precision": prec, "io": io, "size_bytes": len(data),
                   "convert_s": round(conv_s, 2), "ops": model.op_histogram, "parity": p,
                   "parity_threshold": vars(opts.thresholds[prec]), "parity_failed": failed}
            if opts.target == "edgetpu" and prec == "int8":
                from odml.exporters.edgetpu import compatibility, try_compile

                art["edgetpu"] = compatibility(model)
                art["edgetpu"]["compiler"] = try_compile(stage / name, stage, warn)
            artifacts.append(art)
        if "onnx" in opts.formats:
            if step:
                step("onnx")
            from odml.exporters.onnx import export_onnx

            if fp32_bytes is None:
                fp32_bytes = convert(convertible, "fp32", None, "float", src.trackable, input_name=src.input.name)
            art = export_onnx(fp32_bytes, stage / f"{stem}.onnx", x_val, ref, y_val if src.classifies else None,
                              opts.thresholds["fp32"])
            artifacts.append(art)
        fp32 = next((a["size_bytes"] for a in artifacts if a["precision"] == "fp32" and a["format"] == "tflite"), None)
        for a in artifacts:
            if fp32:
                a["size_vs_fp32"] = round(a["size_bytes"] / fp32, 4)
        report = {
            "model": src.name, "source": src.kind, "family": src.family.name, "input_shape": list(src.input_shape),
            "input_dtype": src.input.dtype, "input": src.input.to_dict(), "outputs": src.outputs,
            "output": src.output.to_dict(), "task": src.family.zoo_task,
            **({"text": src.input.text} if src.input.text else {}),
            "target": opts.target, "out_dir": str(opts.out_dir),
            "parity_inputs": "validation data" if y_val is not None else "random",
            "artifacts": artifacts,
        }
        counts = src.family.count(src.card.config)
        report["params"], report["macs"] = counts.params, counts.macs
        failed = [a for a in artifacts if a["parity_failed"]]
        report["ok"] = not failed
        if failed:
            return report  # the caller reports the failure; nothing is written
        write_json_atomic(stage / REPORT_NAME, {"schema": 1, **report})
        opts.out_dir.mkdir(exist_ok=True)
        for f in sorted(stage.iterdir()):
            if f.name in PACKED:
                continue  # packed into the .tflite
            os.replace(f, opts.out_dir / f.name)
        return report
    finally:
        shutil.rmtree(stage, ignore_errors=True)
