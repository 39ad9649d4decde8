"""The export job: a model (zoo name, spec, Keras file, SavedModel folder) ->
a folder of .tflite (and .onnx) files with metadata, an export report, and the
parity of every file against the source model. Files are made in a staging
folder and moved into place only when every step succeeded, so a failed or
interrupted export leaves nothing behind."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from odml.errors import DataError, OutputError
from odml.exporters.tflite import DEFAULT_THRESHOLDS, ExportError, ParityThreshold, convert, judge, parity

REPORT_NAME = "export.json"


@dataclass
class Source:
    name: str
    kind: str  # "spec", "keras" or "savedmodel"
    input_shape: tuple[int, int, int]
    outputs: int
    predict: Callable[[np.ndarray], np.ndarray]
    convertible: Any  # a Keras model or a concrete function
    trackable: Any = None
    keras_model: Any = None
    spec: Any = None
    text: Any = None  # TextModelInfo of a text model (data/textmodel.py)
    input_dtype: str = "float32"
    task: str = "classification"  # or "pose_detection", "pose_landmarks" (regression: no top-1)

    def random_inputs(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Inputs of the right shape and type without data: pixels in [0, 1),
        or token ids within the vocabulary (0 is padding)."""
        if self.input_dtype.startswith("int"):
            high = 100
            if self.text is not None:
                high = len(self.text.vocab) if self.text.vocab else int(self.text.config.get("vocab", 100))
            return rng.integers(1, high, size=(n, *self.input_shape)).astype(self.input_dtype)
        if self.text is not None:  # a ternary projection
            return rng.integers(-1, 2, size=(n, *self.input_shape)).astype(np.float32)
        if self.task == "pose_detection":  # the detector takes [-1, 1]
            return rng.random((n, *self.input_shape), dtype=np.float32) * 2 - 1
        return rng.random((n, *self.input_shape), dtype=np.float32)


def load_source(model: str, classes: int | None = None, input_size: str | None = None,
                width: float | None = None) -> Source:
    from odml.zoo.load import ModelFileError, load_keras_model

    p = Path(model)
    if p.is_dir():
        return _load_savedmodel(p)
    if p.suffix.lower() in (".keras", ".h5"):
        if not p.exists():
            raise ModelFileError(f"{p}: model not found")
        from odml.data.textmodel import load_info

        km = load_keras_model(p)
        return _keras_source(p.stem, "keras", km, load_info(p))
    from odml.zoo.poseconfig import POSE_PRESETS
    from odml.zoo.textconfig import TEXT_MODELS

    if model in TEXT_MODELS:
        return _text_zoo_source(model, classes, input_size)
    if model in POSE_PRESETS:  # untrained (random weights): for latency, size and op sets
        from odml.zoo.blazepose import build_pose_model
        from odml.zoo.poseconfig import pose_config

        return _keras_source(model, "zoo", build_pose_model(pose_config(model), model).deploy)
    from odml.zoo.resolve import resolve_spec
    from odml.zoo.builder import build_model

    spec = resolve_spec(model, classes, input_size, width)
    src = _keras_source(spec.name, "spec", build_model(spec))
    src.spec = spec
    return src


def _text_zoo_source(name: str, classes: int | None, length: str | None) -> Source:
    """An untrained text model of the zoo (random weights: for latency and
    size; its accuracy means nothing). ``length`` sets the sequence length."""
    from odml.data.textmodel import TextModelInfo
    from odml.errors import SpecError
    from odml.train.text import build_text_model
    from odml.zoo.textconfig import PQRNNConfig, text_config

    over: dict[str, Any] = {"num_classes": classes}
    if length is not None:
        if not str(length).isdigit() or int(length) < 1:
            raise SpecError(f"--input-size {length}: a text model takes one sequence length, e.g. 128")
        over["max_len" if name.startswith("pqrnn") else "seq_len"] = int(length)
    cfg = text_config(name, **over)
    family = "pqrnn" if isinstance(cfg, PQRNNConfig) else "mobilebert"
    info = TextModelInfo(family, cfg.to_dict(), [str(i) for i in range(cfg.num_classes)])
    return _keras_source(name, "zoo", build_text_model(cfg, name), info)


def _keras_source(name: str, kind: str, km: Any, text: Any = None) -> Source:
    shape = tuple(km.input_shape[1:]) if not isinstance(km.input_shape, list) else None
    if text is not None:
        if shape is None or any(d is None for d in shape):
            raise ExportError(f"{name}: a text model needs one input of static shape, got {km.input_shape}")
    elif shape is None or len(shape) != 3 or any(d is None for d in shape):
        raise ExportError(f"{name}: export handles image models with one input of static shape HxWxC "
                          f"(or text models with their .text.json beside them), got {km.input_shape}")
    shape = tuple(int(d) for d in shape)
    out = km.output_shape
    if isinstance(out, list):
        raise ExportError(f"{name}: export handles models with one output, got {len(out)}")

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(km.predict(x, batch_size=64, verbose=0))

    dtype = km.inputs[0].dtype
    dtype = getattr(dtype, "name", str(dtype))
    task = "classification"
    if km.name.startswith("blazepose"):  # odml's pose models (zoo/blazepose.py names them so)
        task = "pose_detection" if "detector" in km.name else "pose_landmarks"
    return Source(name, kind, shape, int(np.prod(out[1:])), predict, km, None, km, text=text, input_dtype=dtype,
                  task=task)


def _load_savedmodel(p: Path) -> Source:
    from odml._tf import quiet_stderr_fd, tf
    from odml.zoo.load import ModelFileError

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
    if len(shape) != 3 or any(d is None for d in shape):
        raise ModelFileError(f"{p}: signature input {in_name} has shape {spec.shape}; need [batch, H, W, C] static")
    out_name = sorted(sig.structured_outputs)[0]
    fn = T.function(lambda x: sig(**{in_name: x})[out_name])
    cfn = fn.get_concrete_function(T.TensorSpec((1, *shape), T.float32))

    def predict(x: np.ndarray) -> np.ndarray:
        return np.concatenate([sig(**{in_name: T.constant(x[i:i + 64])})[out_name].numpy()
                               for i in range(0, len(x), 64)])

    outputs = int(np.prod(sig.structured_outputs[out_name].shape[1:]))
    return Source(p.name, "savedmodel", tuple(int(d) for d in shape), outputs, predict, cfn, loaded)


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
    from odml.devices.litert import load_interpreter, run_batch
    from odml.exporters.flatbuffer import parse_tflite
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
    if y_val is not None and src.outputs > 1 and int(y_val.max()) >= src.outputs:
        raise DataError(f"the data has labels up to {int(y_val.max())} but the model has {src.outputs} outputs")
    ref = src.predict(x_val)

    stage = Path(tempfile.mkdtemp(prefix=f".{opts.out_dir.name}.export-", dir=opts.out_dir.parent))
    try:
        artifacts: list[dict[str, Any]] = []
        fp32_bytes = None
        stem = src.name
        convertible = src.convertible
        if opts.target == "edgetpu":
            from odml.exporters.edgetpu import lower_for_edgetpu

            convertible, lowered = lower_for_edgetpu(src)
            if lowered:
                warn(f"edgetpu: {lowered} grouped convolution(s) lowered to split/conv/concat")
        for prec in opts.precisions:
            if step:
                step(f"tflite {prec}")
            t0 = time.perf_counter()
            rep = representative_from(x_calib, opts.calibration_samples, opts.seed) if prec == "int8" else None
            io = opts.io if prec == "int8" else "float"
            data = convert(convertible, prec, rep, io, src.trackable)
            conv_s = time.perf_counter() - t0
            if opts.metadata is not None:
                from odml.exporters.metadata import add_metadata

                data = add_metadata(data, opts.metadata, stage)
            if prec == "fp32":
                fp32_bytes = data
            name = f"{stem}_{prec}{'_edgetpu' if opts.target == 'edgetpu' else ''}.tflite"
            (stage / name).write_bytes(data)
            interp = load_interpreter(data)
            p = parity(ref, run_batch(interp, x_val), y_val if src.outputs > 1 else None)
            if src.task != "classification":  # keypoints and boxes: the errors are what count
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
                fp32_bytes = convert(convertible, "fp32", None, "float", src.trackable)
            art = export_onnx(fp32_bytes, stage / f"{stem}.onnx", x_val, ref, y_val if src.outputs > 1 else None,
                              opts.thresholds["fp32"])
            artifacts.append(art)
        fp32 = next((a["size_bytes"] for a in artifacts if a["precision"] == "fp32" and a["format"] == "tflite"), None)
        for a in artifacts:
            if fp32:
                a["size_vs_fp32"] = round(a["size_bytes"] / fp32, 4)
        report = {
            "model": src.name, "source": src.kind, "input_shape": list(src.input_shape), "input_dtype": src.input_dtype,
            "outputs": src.outputs, "task": src.task, **({"text": src.text.family} if src.text is not None else {}),
            "target": opts.target, "out_dir": str(opts.out_dir),
            "parity_inputs": "validation data" if y_val is not None else "random",
            "artifacts": artifacts,
        }
        if src.spec is not None:
            report["params"], report["macs"] = src.spec.params, src.spec.macs
        failed = [a for a in artifacts if a["parity_failed"]]
        report["ok"] = not failed
        if failed:
            return report  # the caller reports the failure; nothing is written
        import json

        (stage / REPORT_NAME).write_text(json.dumps({"schema": 1, **report}, indent=2) + "\n")
        opts.out_dir.mkdir(exist_ok=True)
        for f in sorted(stage.iterdir()):
            if f.name in ("labels.txt", "vocab.txt"):
                continue  # packed into the .tflite
            os.replace(f, opts.out_dir / f.name)
        return report
    finally:
        shutil.rmtree(stage, ignore_errors=True)
