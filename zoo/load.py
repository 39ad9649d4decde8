"""Loading a model file, whatever made it, with its card:

| file | loaded with | odml can |
|---|---|---|
| ``.keras`` saved by Keras 3 (``import keras``: the default today) | Keras 3, ``safe_mode=True`` | export, bench, compress it as a teacher |
| ``.keras`` / ``.h5`` saved by tf_keras (what odml saves) | tf_keras, ``safe_mode=True`` | all of that, and train it jointly as a teacher |
| a SavedModel folder (Keras ``model.save`` or ``tf.saved_model.save``) | tf_keras, else its serving signature | export, bench, compress it as a teacher |
| ``.onnx`` (how PyTorch and Paddle models travel) | prepared (shapes fixed, simplified, names made valid: ``zoo/onnx_prep.py``), onnx2tf to a tf_keras model (NCHW -> NHWC), onnxruntime as the reference | export (parity against onnxruntime), bench, compress it as a teacher |
| a float ``.tflite`` (how MediaPipe and app teams hand models over) | LiteRT (``zoo/tflite_model.py``) | export (re-quantized by litert-quantizer, parity against the float file), bench, compress it as a teacher |

What the model is comes from the card beside it (``model.odml.json``) or in
its metadata, or, for a model odml did not make, from the model itself (the
``external`` family): one input, its outputs (names and order kept), their
static shapes (``input_size`` fixes a dynamic height and width), parameters,
MACs, the range its input reads and what its outputs are (``--task``).
A file odml cannot handle gets one line naming what it is and what odml
accepts."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from odml.errors import OdmlError
from odml.zoo.card import Carded

EXTERNAL = "external"  # the family of models odml did not make
ACCEPTS = "a .keras file (Keras 3 or tf_keras), an .h5 file, a SavedModel folder, an .onnx file or a float .tflite"


class ModelFileError(OdmlError):
    """A model file that is missing, malformed or unsafe to load."""


def _register_layers() -> None:
    import odml.zoo.blazepose  # noqa: F401  (registers odml's custom layers)
    import odml.zoo.blocks  # noqa: F401
    import odml.zoo.mobilebert  # noqa: F401
    import odml.zoo.pqrnn  # noqa: F401


CONFIG_LIMIT = 64 << 20  # bytes of config.json odml reads
BIG = 1 << 24  # no layer setting (units, filters, a dimension, a node index) is larger in a model odml can load


def _check_config(p: Path, z: zipfile.ZipFile) -> None:
    """config.json of a .keras zip read by odml before Keras sees it: a sane
    size, and no layer setting or node reference so large that Keras would
    spend forever (or crash) building it."""
    info = z.getinfo("config.json")
    if info.file_size > CONFIG_LIMIT:
        raise ModelFileError(f"{p}: config.json declares {info.file_size:,} bytes; odml reads at most {CONFIG_LIMIT:,}")
    try:
        cfg = json.loads(z.read("config.json"))
    except RecursionError:
        raise ModelFileError(f"{p}: config.json is nested too deeply") from None

    def walk(x: Any, where: str, depth: int) -> None:
        if depth > 200:
            raise ModelFileError(f"{p}: config.json is nested too deeply (at {where})")
        if isinstance(x, dict):
            for k, v in x.items():
                if k not in ("seed", "shared_object_id"):  # (random seeds, Keras 3's object ids: any size)
                    walk(v, f"{where}.{k}", depth + 1)
        elif isinstance(x, list):
            for i, v in enumerate(x):
                walk(v, f"{where}[{i}]", depth + 1)
        elif isinstance(x, int) and not isinstance(x, bool) and abs(x) > BIG:
            raise ModelFileError(f"{p}: config.json{where} = {x} is beyond any model odml loads (at most {BIG:,})")
        elif isinstance(x, float) and not np.isfinite(x):
            raise ModelFileError(f"{p}: config.json{where} = {x} is not a finite number")

    walk(cfg, "", 0)
    _check_graphs(p, cfg)


def _check_graphs(p: Path, cfg: Any) -> None:
    """Every node reference of a functional model in ``cfg`` ([layer, node
    index, tensor index]: tf_keras's inbound_nodes and Keras 3's
    keras_history) names a layer of its model and one of that layer's calls;
    Keras loops forever on one that does not."""
    def graphs(x: Any):
        if isinstance(x, dict):
            if isinstance(x.get("layers"), list) and "output_layers" in x:
                yield x
            for v in x.values():
                yield from graphs(v)
        elif isinstance(x, list):
            for v in x:
                yield from graphs(v)

    def refs(x: Any):
        if isinstance(x, dict):
            if "keras_history" in x:
                yield x["keras_history"]
            for k, v in x.items():
                if k != "keras_history" and k != "layers":
                    yield from refs(v)
        elif isinstance(x, list):
            if 3 <= len(x) <= 4 and isinstance(x[0], str) and not isinstance(x[1], (list, dict)):
                yield x
            else:
                for v in x:
                    yield from refs(v)

    for g in graphs(cfg):
        calls = {}
        for layer in g["layers"]:
            if not isinstance(layer, dict) or not isinstance(layer.get("name"), str):
                raise ModelFileError(f"{p}: config.json: a layer without a name")
            nodes = layer.get("inbound_nodes") or []
            n = len(nodes) if isinstance(nodes, list) else 1
            calls[layer["name"]] = 1 if layer.get("class_name") == "InputLayer" else n  # called n times (an input: once)
        parts = [layer.get("inbound_nodes") for layer in g["layers"]] + [g.get("input_layers"), g.get("output_layers")]
        for r in refs(parts):
            ok = (isinstance(r, list) and len(r) >= 3 and isinstance(r[0], str) and r[0] in calls
                  and all(isinstance(i, int) and not isinstance(i, bool) for i in r[1:3])
                  and 0 <= r[1] < calls[r[0]] and 0 <= r[2] < 1024)
            if not ok:
                raise ModelFileError(f"{p}: config.json: the node reference {json.dumps(r)[:80]} names no call of a "
                                     "layer of its model")


def keras_version(p: Path) -> str | None:
    """The Keras version a .keras file was saved with (its metadata.json);
    None when the zip has none. Checks its config.json (``_check_config``)."""
    try:
        with zipfile.ZipFile(p) as z:
            names = set(z.namelist())
            if "config.json" in names:
                _check_config(p, z)
            if "metadata.json" in names:
                return str(json.loads(z.read("metadata.json")).get("keras_version") or "") or None
            if "config.json" not in names:
                raise ModelFileError(f"{p}: a zip without config.json is not a Keras model; odml reads {ACCEPTS}")
    except zipfile.BadZipFile:
        raise ModelFileError(f"{p}: cannot load Keras model: not a .keras zip archive (a corrupt or other file); "
                             f"odml reads {ACCEPTS}") from None
    except (OSError, ValueError, RuntimeError, zipfile.LargeZipFile, NotImplementedError, EOFError) as e:
        raise ModelFileError(f"{p}: cannot load Keras model: unreadable config or metadata ({type(e).__name__})"
                             ) from None
    return None


def load_keras_model(path: str | Path) -> Any:
    """A tf_keras model from a .keras or .h5 file (safe_mode on)."""
    from odml._tf import keras, quiet_stderr_fd

    _register_layers()
    K = keras()
    p = _existing(path)
    if p.is_dir():
        raise ModelFileError(f"{p}: is a folder; SavedModel folders are read by 'odml export' and 'odml compress'")
    if p.suffix.lower() not in (".keras", ".h5"):
        raise ModelFileError(f"{p}: expected a .keras or .h5 model")
    if p.suffix.lower() == ".keras":
        v = keras_version(p)
        if v and v.startswith("3"):
            raise ModelFileError(f"{p}: saved by Keras {v}; odml trains and prunes tf_keras models (this one it "
                                 "exports, benchmarks and distils from)")
    try:
        with quiet_stderr_fd():
            return K.models.load_model(p, compile=False, safe_mode=True)
    except Exception as e:  # Keras raises many types for a bad file; all mean the same to the user
        msg = " ".join(str(e).split())[:300]
        raise ModelFileError(f"{p}: cannot load Keras model: {type(e).__name__}: {msg}") from None


def _load_keras3(p: Path, version: str) -> Any:
    from odml._tf import quiet_stderr_fd, tf

    tf()
    import keras

    try:
        with quiet_stderr_fd():
            return keras.saving.load_model(p, compile=False, safe_mode=True)
    except Exception as e:
        msg = " ".join(str(e).split())[:300]
        hint = ("; a Lambda layer or custom code is refused (safe_mode)" if "safe_mode" in msg or "Lambda" in msg
                else "; a custom layer must be registered with keras.saving.register_keras_serializable")
        raise ModelFileError(f"{p}: a Keras {version} model that Keras {keras.__version__} cannot load: "
                             f"{type(e).__name__}: {msg}{hint}") from None


def _subclassed_shapes(p: Path, model: Any) -> tuple:
    """(input shape, output shape, dtype) of a subclassed Keras 3 model, which
    has no symbolic inputs: the input from the build_config Keras saved, the
    output from one call."""
    try:
        with zipfile.ZipFile(p) as z:
            shape = json.loads(z.read("config.json")).get("build_config", {}).get("input_shape")
    except (OSError, ValueError, KeyError):
        shape = None
    if not shape or not isinstance(shape[0], (int, type(None))):
        raise ModelFileError(f"{p}: a subclassed Keras model saved without its input shape (build_config); build "
                             "it on an input before saving, or save a functional model")
    ishape = tuple(None if d is None else int(d) for d in shape[1:])
    if None in ishape:
        return ishape, (None,), "float32"
    y = model(np.zeros((1, *ishape), np.float32))
    if isinstance(y, (list, tuple, dict)):
        raise ModelFileError(f"{p}: the model returns several outputs; odml handles models with one")
    return ishape, tuple(int(d) for d in y.shape[1:]), "float32"


def load_keras_savedmodel(p: Path) -> Any:
    """A Keras model saved in the SavedModel format (``model.save(folder)``)."""
    from odml._tf import keras, quiet_stderr_fd

    _register_layers()
    if not (p / "saved_model.pb").is_file():
        raise ModelFileError(f"{p}: folder without saved_model.pb (not a SavedModel)")
    K = keras()
    try:
        with quiet_stderr_fd():
            model = K.models.load_model(p, compile=False)
    except Exception as e:
        msg = " ".join(str(e).split())[:300]
        raise ModelFileError(f"{p}: cannot load the SavedModel as a Keras model: {type(e).__name__}: {msg}") from None
    if not isinstance(model, K.Model) or not getattr(model, "inputs", None):
        raise ModelFileError(f"{p}: the SavedModel is not a Keras model (save it with model.save)")
    return model


class SignatureModel:
    """A plain SavedModel's serving signature as a one-input, one-output model:
    callable on a batch (also inside a tf.function), ``predict`` on arrays."""

    def __init__(self, p: Path):
        from odml._tf import quiet_stderr_fd, tf

        T = tf()
        if not (p / "saved_model.pb").is_file():
            raise ModelFileError(f"{p}: folder is not a SavedModel (no saved_model.pb)")
        try:
            with quiet_stderr_fd():
                self.loaded = T.saved_model.load(str(p))
        except Exception as e:
            raise ModelFileError(f"{p}: cannot load SavedModel: {type(e).__name__}") from None
        sigs = dict(getattr(self.loaded, "signatures", {}) or {})
        if not sigs:
            raise ModelFileError(f"{p}: SavedModel has no signature; export it with a serving_default signature")
        self.sig = sigs.get("serving_default") or next(iter(sigs.values()))
        args = self.sig.structured_input_signature[1]
        if len(args) != 1:
            raise ModelFileError(f"{p}: the signature takes {len(args)} inputs; odml handles models with one input")
        self.in_name, spec = next(iter(args.items()))
        outs = self.sig.structured_outputs
        if len(outs) != 1:
            raise ModelFileError(f"{p}: the signature returns {len(outs)} outputs; odml handles models with one")
        self.out_name = next(iter(outs))
        self.input_shape = tuple(spec.shape[1:])
        self.output_shape = tuple(outs[self.out_name].shape[1:])
        self.dtype = spec.dtype.name

    def __call__(self, x: Any, training: bool = False) -> Any:
        return self.sig(**{self.in_name: x})[self.out_name]

    def predict(self, x: np.ndarray, batch_size: int = 64, verbose: int = 0) -> np.ndarray:
        from odml._tf import tf

        T = tf()
        return np.concatenate([self(T.constant(x[i:i + batch_size])).numpy() for i in range(0, len(x), batch_size)])


def onnx_tensors(graph: Any, p: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """The graph inputs (initializers left out) and outputs of an ONNX model,
    each as name, shape (a dimension's number, its symbolic name or None) and
    numpy dtype, and its parameter count. What onnx's checker lets through
    may still name element types no runtime knows: that is refused here, in
    the same words for inspect, export and bench."""
    import onnx
    from onnx import numpy_helper

    def tensor(v: Any) -> dict[str, Any]:
        t = v.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
        return {"name": v.name, "shape": shape, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name}

    inits = {i.name for i in graph.graph.initializer}
    try:
        params = sum(int(numpy_helper.to_array(i).size) for i in graph.graph.initializer)
        inputs = [tensor(v) for v in graph.graph.input if v.name not in inits]
        outputs = [tensor(v) for v in graph.graph.output]
    except (KeyError, ValueError, TypeError) as e:
        raise ModelFileError(f"{p}: malformed ONNX model ({type(e).__name__}: {' '.join(str(e).split())[:150]}; "
                             "an unknown element type or a tensor whose data does not match its shape)") from None
    return inputs, outputs, params


def onnx_macs(graph: Any, in_name: str, shape: list[int]) -> int:
    """Multiply-adds of an ONNX graph's Conv, Gemm and MatMul nodes, from
    ONNX's shape inference at the given input shape (0 when shapes are not
    known)."""
    import onnx

    g = onnx.ModelProto()
    g.CopyFrom(graph)
    for i in g.graph.input:
        if i.name == in_name:
            for d, v in zip(i.type.tensor_type.shape.dim, shape):
                d.ClearField("dim_param")
                d.dim_value = int(v)
    try:
        g = onnx.shape_inference.infer_shapes(g)
    except Exception:  # noqa: BLE001 - an unusual graph: its size is then its parameters
        return 0
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in (*g.graph.value_info, *g.graph.input, *g.graph.output)}
    shapes.update({t.name: list(t.dims) for t in g.graph.initializer})
    total = 0
    for n in g.graph.node:
        try:
            if n.op_type == "Conv":
                w, y = shapes[n.input[1]], shapes[n.output[0]]  # weights (Cout, Cin/groups, kh, kw); output NCHW
                total += int(np.prod(y[1:])) * int(np.prod(w[1:]))
            elif n.op_type in ("Gemm", "MatMul"):
                a, y = shapes[n.input[0]], shapes[n.output[0]]
                total += int(np.prod(y)) * int(a[-1])
        except (KeyError, IndexError, ValueError):
            continue
    return int(total)


# ONNX graphs are prepared and converted in zoo/onnx_prep.py; the names stay importable from here
from odml.zoo.onnx_prep import OnnxModel, _sample_images_in  # noqa: F401


@dataclass
class Loaded(Carded):
    """A model loaded from a file, with its card; ``model`` is callable on a
    batch (in eager code and inside a tf.function), ``runtime`` says what
    made it: tf_keras (odml's), keras3, savedmodel, onnx."""

    path: Path
    model: Any
    card: Any  # ModelCard
    runtime: str = "tf_keras"
    reference: Callable[[np.ndarray], Any] | None = None  # the source's own runtime (ONNX: onnxruntime, .tflite: LiteRT)
    info: dict[str, Any] | None = None  # how it was read (ONNX: exporter, ops, preparation, conversion settings)

    @property
    def counts(self) -> Any:
        return self.card.family.count(self.card.config)

    def sizes(self) -> tuple[int, int]:
        """(trainable parameters, MACs): the card's counts, else counted on the
        model's layers (0 where there are none to count, a SavedModel's
        signature)."""
        c = self.counts
        has_layers = hasattr(self.model, "layers")
        macs = c.macs if c.macs is not None else (count_macs(self.model) if has_layers else 0)
        params = c.params or (count_params(self.model) if has_layers else 0)
        return int(params), int(macs or 0)

    @property
    def trainable(self) -> bool:
        """Whether odml's training loops (tf_keras) can train it."""
        return self.runtime == "tf_keras"

    def predict(self, x: np.ndarray) -> Any:
        """The model's output on a batch: an array, or a list of arrays in the
        card's order for a model of several outputs."""
        y = self.reference(x) if self.reference is not None else predict_keras(self.model, x)
        if isinstance(y, (list, tuple)) and len(y) == 1 and self.card.output.count == 1:
            return np.asarray(y[0])
        return y


def predict_keras(model: Any, x: np.ndarray, batch_size: int = 64) -> Any:
    """``model.predict`` as an array, or a list of arrays (a model of several outputs)."""
    y = model.predict(x, batch_size=batch_size, verbose=0)
    if isinstance(y, dict):
        y = [y[k] for k in model.output_names]
    return [np.asarray(v) for v in y] if isinstance(y, (list, tuple)) else np.asarray(y)


def count_params(model: Any) -> int:
    """Trainable parameters of a Keras model (tf_keras or Keras 3)."""
    return int(sum(int(np.prod([int(d) for d in w.shape])) for w in model.trainable_weights))


def count_macs(model: Any) -> int:
    """Multiply-adds of the convolution and dense layers of a built Keras model
    (tf_keras or Keras 3), from each layer's configuration and output shape;
    0 when a shape is unknown."""
    def shape(t: Any) -> list[int]:
        return [int(d) for d in t.shape[1:]]

    total = 0
    try:
        for layer in model.layers:
            kind = type(layer).__name__
            if kind == "DepthwiseConv2D":
                h, w, c = shape(layer.output)
                kh, kw = layer.kernel_size
                total += h * w * kh * kw * c
            elif kind in ("Conv2D", "Convolution2D"):
                h, w, cout = shape(layer.output)
                kh, kw = layer.kernel_size
                total += h * w * kh * kw * (shape(layer.input)[-1] // layer.groups) * cout
            elif kind == "Dense":
                dims = shape(layer.input)
                total += int(np.prod(dims[:-1] or [1])) * dims[-1] * layer.units
    except (AttributeError, TypeError, ValueError):
        return 0
    return int(total)


def _input_range(model: Any) -> tuple[float, float]:
    """[0, 255] when the model's first layer rescales or normalizes its input
    itself (Keras' Rescaling, Normalization: raw pixels in), else [0, 1]."""
    layers = [lay for lay in getattr(model, "layers", []) if type(lay).__name__ != "InputLayer"]
    if layers and type(layers[0]).__name__ in ("Rescaling", "Normalization"):
        return (0.0, 255.0)
    return (0.0, 1.0)


def describe(model: Any, runtime: str, where: str, input_size: Any = None,
             input_range: tuple[float, float] | None = None, shapes: tuple | None = None,
             params: int | None = None, macs: int | None = None, task: str | None = None,
             names: list[str] | None = None) -> Any:
    """The external family's configuration of a loaded model: one input, its
    outputs (their shapes static: ``input_size`` fixes a dynamic height and
    width; ``names`` keep them, in order, in exported files), parameters,
    MACs, the input range, and what the outputs are (``task``; read off the
    shapes when None)."""
    from odml.errors import SpecError
    from odml.zoo.families.external import ExternalConfig

    if shapes is None:
        ins, outs = getattr(model, "inputs", None) or [], getattr(model, "outputs", None) or []
        if len(ins) != 1 or not outs:
            raise ModelFileError(f"{where}: has {len(ins)} inputs and {len(outs)} outputs; odml handles models with "
                                 "one input and at least one output")
        ishape = tuple(None if d is None else int(d) for d in ins[0].shape[1:])
        oshapes = [tuple(None if d is None else int(d) for d in o.shape[1:]) for o in outs]
        dtype = getattr(ins[0].dtype, "name", str(ins[0].dtype))
        if len(outs) > 1 and names is None:
            names = [str(n) for n in (getattr(model, "output_names", None) or [])] or None
    else:
        ishape, oshape, dtype = shapes
        oshapes = [tuple(o) for o in oshape] if oshape and isinstance(oshape[0], (tuple, list)) else [tuple(oshape)]
    if input_size is not None and len(ishape) == 3:
        from odml.zoo.families.ibn import input_shape

        h, w, _ = input_shape(int(input_size) if str(input_size).isdigit() else input_size)
        ishape = (h, w, ishape[2])
        if any(None in o for o in oshapes):
            y = model(np.zeros((1, *ishape), np.float32))
            y = list(y.values()) if isinstance(y, dict) else (list(y) if isinstance(y, (list, tuple)) else [y])
            oshapes = [tuple(int(d) for d in t.shape[1:]) for t in y]
    if None in ishape or any(None in o for o in oshapes):
        raise ModelFileError(f"{where}: input {list(ishape)} -> output {', '.join(str(list(o)) for o in oshapes)} is "
                             "not of static shape; give --input-size HxW")
    if params is None:
        params = count_params(model) if hasattr(model, "trainable_weights") else 0
    if macs is None:
        macs = count_macs(model) if hasattr(model, "layers") else 0
    rng = input_range or (_input_range(model) if hasattr(model, "layers") else (0.0, 1.0))
    outputs = tuple(zip([str(n) for n in names], oshapes)) if names and len(names) == len(oshapes) else ()
    try:
        return ExternalConfig(tuple(ishape), tuple(oshapes[0]), str(dtype), params, macs, runtime, rng, outputs,
                              task or "").validate()
    except SpecError as e:
        raise ModelFileError(f"{where}: {e}") from None


def card_of(model: Any, path: Path, runtime: str = "tf_keras", input_size: Any = None,
            input_range: tuple[float, float] | None = None, shapes: tuple | None = None,
            params: int | None = None, macs: int | None = None, task: str | None = None,
            names: list[str] | None = None) -> Any:
    """The card saved beside ``path``, checked against the loaded model, or a
    card of the ``external`` family read off the model."""
    from odml.zoo.card import ModelCard
    from odml.zoo.registry import get_family

    card = ModelCard.load(path) if not path.is_dir() else None
    stem = path.stem if path.suffix else path.name
    if card is None:
        return ModelCard(get_family(EXTERNAL), describe(model, runtime, str(path), input_size, input_range, shapes,
                                                        params, macs, task, names), stem)
    check_task(card, task, str(path))
    shape = tuple(int(d) for d in model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else None
    if shape is not None and shape != tuple(card.input.shape):
        raise ModelFileError(f"{path}: the model takes {list(shape)} but its card ({stem}.odml.json) says "
                             f"{list(card.input.shape)}; the card belongs to another model")
    card.name = card.name or stem
    return card


def check_task(card: Any, task: str | None, where: str) -> None:
    """``--task`` given for a model whose card already says what it is: it
    must say the same."""
    if task and task != card.output.task:
        raise ModelFileError(f"{where}: --task {task}, but its model card says its output is {card.output.task} "
                             f"({card.family.name})")


def foreign_card(input_shape: tuple[int, ...], output_shape: tuple[int, ...], dtype: str = "float32",
                 name: str = "", input_range: tuple[float, float] | None = None) -> Any:
    """The card of a model odml did not make, from its tensors alone (a .tflite
    without odml metadata)."""
    from odml.zoo.card import ModelCard
    from odml.zoo.families.external import ExternalConfig
    from odml.zoo.registry import get_family

    cfg = ExternalConfig(tuple(int(d) for d in input_shape), tuple(int(d) for d in output_shape), dtype,
                         input_range=input_range or (0.0, 1.0))
    return ModelCard(get_family(EXTERNAL), cfg, name)


def _existing(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"{p}: model not found")
    return p


def load_model(path: str | Path, input_size: Any = None, input_range: tuple[float, float] | None = None,
               task: str | None = None) -> Loaded:
    """Any model file odml reads (the table above), with its card; ``task``
    says what the outputs of a model without a card are (``--task``)."""
    p = _existing(path)
    suffix = p.suffix.lower()
    if p.is_dir():
        if not (p / "saved_model.pb").is_file():
            raise ModelFileError(f"{p}: folder is not a SavedModel (no saved_model.pb); odml reads {ACCEPTS}")
        try:
            model = load_keras_savedmodel(p)
            return Loaded(p, model, card_of(model, p, "tf_keras", input_size, input_range, task=task))
        except ModelFileError:
            sm = SignatureModel(p)
            shapes = (sm.input_shape, sm.output_shape, sm.dtype)
            return Loaded(p, sm, card_of(sm, p, "savedmodel", input_size, input_range, shapes, task=task), "savedmodel")
    if suffix == ".onnx":
        from odml.zoo.onnx_prep import OnnxModel

        om = OnnxModel(p, input_size)
        card = card_of(om.model, p, "onnx", None, input_range, (om.hwc, list(om.output_shapes), "float32"),
                       params=om.params, macs=om.macs, task=task, names=list(om.output_names))
        return Loaded(p, om.model, card, "onnx", om.reference, om.info)
    if suffix == ".tflite":
        from odml.zoo.tflite_model import TfliteModel

        tm = TfliteModel(p)
        card = _tflite_card(tm, p, input_range, task)
        return Loaded(p, tm, card, "litert", tm.predict, {"ops": tm.ops})
    if suffix == ".keras":
        v = keras_version(p)
        if v and v.split(".")[0] not in ("2", "3"):
            raise ModelFileError(f"{p}: saved by Keras {v}; odml reads .keras files of Keras 3 and of tf_keras "
                                 "(Keras 2)")
        if v and v.startswith("3"):
            model = _load_keras3(p, v)
            shapes = None if getattr(model, "inputs", None) else _subclassed_shapes(p, model)
            return Loaded(p, model, card_of(model, p, "keras3", input_size, input_range, shapes, task=task), "keras3")
    if suffix in (".keras", ".h5"):
        model = load_keras_model(p)
        return Loaded(p, model, card_of(model, p, "tf_keras", input_size, input_range, task=task))
    raise ModelFileError(f"{p}: {suffix or 'no suffix'} is not a model odml reads; it reads {ACCEPTS}")


def _tflite_card(tm: Any, p: Path, input_range: tuple[float, float] | None, task: str | None) -> Any:
    """The card of a .tflite: the one odml wrote into its metadata, else read
    off its tensors (the external family, names and order kept)."""
    from odml.zoo.card import ModelCard
    from odml.zoo.registry import get_family

    card = ModelCard.from_tflite(tm.data, str(p))
    if card is not None:
        check_task(card, task, str(p))
        card.name = card.name or p.stem
        return card
    return ModelCard(get_family(EXTERNAL), describe(tm, "litert", str(p), None, input_range,
                                                    (tm.input_shape, list(tm.output_shapes), tm.input_dtype),
                                                    tm.params, tm.macs, task, list(tm.output_names)), p.stem)


def save_model(model: Any, path: str | Path, card: Any) -> Path:
    """Save a tf_keras model through a temporary name and a rename, and its
    card beside it."""
    from odml.files import atomic_output

    p = Path(path)
    with atomic_output(p) as tmp:
        model.save(tmp)
    card.name = card.name or p.stem
    card.save(p)
    return p

