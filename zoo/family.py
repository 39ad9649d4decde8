"""Model families: each kind of model odml knows lives in one module of
``odml/zoo/families/`` and answers, for every verb, what it is (the idea of
timm's per-model config record and of the Model Garden's Task class):

- how it is configured (zoo entries, overrides, ``--set``), scaled by width,
  counted (parameters, MACs) and built (a tf_keras model);
- what its input means (:class:`InputSpec`: dtype, shape, the range pixels
  map onto, the text featurization) and what its output is
  (:class:`OutputSpec`: class logits, detections, keypoints);
- how its data is read and featurized, how its outputs are scored, which
  training loop trains it, and which students compress it.

The verbs (train, export, bench, compress, search) ask the family; none tests
a model's name, shape or file suffix to find out what kind of model it is.
Nothing here imports TensorFlow (``build`` does, when called).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from odml.errors import SpecError, UnsupportedError

TASKS = ("classify", "detect", "keypoints")

# The options of `odml train`, named as odml.train.TrainRequest's fields (and --input-size, --width, --set as
# input_size, width, sets): a family's ``train_options`` is the set its training loop takes; `odml train` refuses
# the others in one line instead of ignoring them. The groups below are what each loop of odml.train reads.
TRAIN_COMMON = frozenset({"data", "batch_size", "learning_rate", "seed"})
TRAIN_EPOCHS = TRAIN_COMMON | {"epochs", "val_split", "val_data"}
TRAIN_IMAGES = TRAIN_EPOCHS | {"logdir", "tensorboard", "input_size", "width", "sets", "distribute"}  # the classifier loop
TRAIN_TEXT = TRAIN_EPOCHS | {"max_len", "label_col", "text_col", "patience", "width", "sets"}  # the text loop
TRAIN_POSE = TRAIN_COMMON | {"variant", "val_images", "steps"}  # the pose loop (stages of steps, not epochs)


@dataclass(frozen=True)
class InputSpec:
    """What a model's (single) input is."""

    kind: str  # "image", "projection" (pQRNN's ternary text projection) or "token_ids"
    shape: tuple[int, ...]  # without the batch dimension
    dtype: str = "float32"
    range: tuple[float, float] = (0.0, 1.0)  # images: the values pixels 0..255 map onto, linearly
    name: str = "image"  # the input tensor's name in exported files
    description: str = ""
    text: str | None = None  # how a text becomes this input: the family whose featurizer does it
    vocab_size: int | None = None  # token ids lie in [0, vocab_size)

    @property
    def normalization(self) -> tuple[float, float]:
        """(mean, std) such that (pixel - mean) / std is what the model reads
        (the convention of TFLite metadata's NormalizationOptions)."""
        lo, hi = self.range
        std = 255.0 / (hi - lo)
        return -lo * std + 0.0, std  # + 0.0: no negative zero

    def from_pixels(self, x: np.ndarray) -> np.ndarray:
        """uint8 images -> the float32 values the model reads; arrays that are
        already model inputs pass through."""
        if x.dtype != np.uint8:
            return x
        lo, hi = self.range
        return (x.astype(np.float32) * ((hi - lo) / 255.0) + lo).astype(np.float32)

    def random(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Inputs of the right shape and type without data: pixels in range,
        a ternary projection, or token ids within the vocabulary (0 is padding)."""
        if self.kind == "token_ids":
            return rng.integers(1, max(2, self.vocab_size or 100), size=(n, *self.shape)).astype(self.dtype)
        if self.kind == "projection":
            return rng.integers(-1, 2, size=(n, *self.shape)).astype(np.float32)
        lo, hi = self.range
        return (rng.random((n, *self.shape), dtype=np.float32) * (hi - lo) + lo).astype(np.float32)

    def describe(self) -> str:
        dims = "x".join(map(str, self.shape))
        if self.kind == "token_ids":
            return f"{self.shape[0]} token ids"
        if self.kind == "projection":
            return f"{dims} projection"
        return dims

    def to_dict(self) -> dict[str, Any]:
        mean, std = self.normalization
        d = {"kind": self.kind, "name": self.name, "shape": list(self.shape), "dtype": self.dtype,
             "description": self.description}
        if self.kind == "image":
            d.update(range=list(self.range), mean=mean, std=std)
        if self.text:
            d["text"] = self.text
        if self.vocab_size:
            d["vocab_size"] = self.vocab_size
        return d


# What a model's outputs mean (``--task`` of a model file; a family's ``task``), and how each output of a task is
# judged against the source model: top-1 agreement of class scores, per-pixel agreement of a map (the class of each
# pixel: argmax over its channels, or above / below the middle of a one-channel map), per-step agreement of a
# sequence (argmax at each step), and otherwise the error relative to the spread of the source's outputs. An output
# whose family says what its values are is judged in their own units instead (OutputTensor's points, extent,
# logits): points by their distance in % of the input they are in ("keypoints"), box coordinates in input pixels
# ("boxes"), scores as probabilities ("probability").
TASKS = ("classify", "segment", "detect", "keypoints", "sequence", "features")
MEASURES = {"top1": "top-1 agreement", "pixels": "per-pixel agreement", "labels": "per-pixel label agreement",
            "steps": "per-step agreement",
            "error": "relative error", "keypoints": "keypoint distance in % of the input (the crop)",
            "boxes": "box coordinate error in input pixels", "probability": "probability error"}


def measure_of(task: str, shape: tuple[int, ...]) -> str:
    """How an output of ``shape`` (without the batch) of a ``task`` model is
    judged (a key of MEASURES)."""
    if task == "classify" and len(shape) == 1 and shape[0] >= 2:
        return "top1"
    if task == "segment" and len(shape) == 3:
        return "pixels"
    if task == "segment" and len(shape) == 2:  # a label map (a finalized segmentation output)
        return "labels"
    if task == "sequence" and len(shape) == 2 and shape[1] >= 2:
        return "steps"
    return "error"


def task_fits(task: str, shapes: list[tuple[int, ...]]) -> str | None:
    """Why outputs of ``shapes`` cannot be what ``task`` says (None: they can):
    class scores are N >= 2 values, a map is height x width x channels, a
    sequence is steps x scores, detections are rows of values."""
    if task not in TASKS:
        return f"unknown task {task!r}; one of {', '.join(TASKS)}"
    want = {"classify": ("top1", "class scores (N >= 2 values)"), "segment": ("pixels", "a map (height x width x "
            "channels)"), "sequence": ("steps", "a sequence (steps x scores, at least 2 scores)")}
    if task in want and measure_of(task, shapes[0]) != want[task][0]:
        return f"{task} needs its first output to be {want[task][1]}, not {list(shapes[0])}"
    if task == "detect" and not any(len(s) >= 2 for s in shapes):
        return f"detect needs an output of rows of values (boxes, scores), not {', '.join(str(list(s)) for s in shapes)}"
    return None


@dataclass(frozen=True)
class OutputTensor:
    """One output tensor of a model with several: its name in exported files,
    its shape (without the batch dimension), what it holds and how it is
    judged (a key of MEASURES). For the measures in the output's own units:
    ``points``, the values per point or row (the first two of a point are its
    x, y: 5 for landmarks of x, y, z, visibility, presence; every value of a
    box row is a pixel coordinate); ``extent``, the size the coordinates are
    measured against (a 256-pixel crop: 256; "keypoints" needs it), and
    ``extent_name`` what that is in words (default "the crop"); ``logits``:
    the scores are logits (a sigmoid makes them probabilities); ``scored_by``:
    the output that scores this one's rows (a detector's anchors), so that
    boxes are judged where the source detects something, not on background
    anchors whose regressions no app reads."""

    name: str
    shape: tuple[int, ...]
    description: str = ""
    measure: str = "error"
    points: int = 0
    extent: float = 0.0
    logits: bool = False
    extent_name: str = ""
    scored_by: str = ""

    def __post_init__(self) -> None:
        if self.measure not in MEASURES:
            raise SpecError(f"output {self.name}: unknown measure {self.measure!r}; one of {', '.join(MEASURES)}")
        size = int(np.prod(self.shape)) if self.shape else 0
        if self.points < 0 or self.points and size % self.points:
            raise SpecError(f"output {self.name}: {size} values are not rows of {self.points}")
        if self.measure == "keypoints" and (self.points < 2 or not self.extent > 0):
            raise SpecError(f"output {self.name}: keypoints need points (values per point, at least x, y) and the "
                            "extent the coordinates are measured against")

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "shape": list(self.shape), "description": self.description, "measure": self.measure}
        if self.points:
            d["points"] = self.points
        if self.extent:
            d["extent"] = self.extent
        if self.extent_name:
            d["extent_name"] = self.extent_name
        if self.logits:
            d["logits"] = True
        if self.scored_by:
            d["scored_by"] = self.scored_by
        return d


@dataclass(frozen=True)
class OutputSpec:
    """What a model's output is: one tensor, or (``tensors``) several in a
    fixed order with fixed names, the first of which is the main one that
    ``name``, ``size`` and ``shape`` describe (a model that keeps a released
    file's outputs, so that it can replace that file in an app)."""

    task: str  # one of TASKS
    name: str  # the output's name in metadata: logits, detections, landmarks
    size: int  # values per input (classes for a classifier)
    description: str = ""
    shape: tuple[int, ...] = ()
    tensors: tuple[OutputTensor, ...] = ()

    @property
    def count(self) -> int:
        """How many output tensors the model has."""
        return max(1, len(self.tensors))

    @property
    def measure(self) -> str:
        """How the (main) output is judged against the source (MEASURES)."""
        return self.tensors[0].measure if self.tensors else measure_of(self.task, tuple(self.shape or (self.size,)))

    def to_dict(self) -> dict[str, Any]:
        d = {"task": self.task, "name": self.name, "size": self.size, "shape": list(self.shape or (self.size,)),
             "description": self.description, "measure": self.measure}
        if self.tensors:
            d["tensors"] = [t.to_dict() for t in self.tensors]
        return d


@dataclass(frozen=True)
class Counts:
    params: int
    macs: int | None = None
    extra: dict[str, int] = field(default_factory=dict)  # published-comparison figures (encoder, heatmap heads)


class Family:
    """The base of every family: sensible defaults, overridden where a family
    differs. Subclasses set the class attributes and the methods marked
    below."""

    name = ""
    task = "classify"
    title = ""  # what the family is, with its public source
    noun = "a model"  # what one of its models is, in a sentence ("an image classifier")
    zoo_task = ""  # the task column of `odml zoo list`
    width_range = (0.01, 1.0)  # compression: the width multipliers students are derived between
    trainer: str | None = None  # the training loop of odml.train that trains it; None: not trained by odml
    student_family: str | None = None  # compression: students of a teacher of this family; None: not a teacher
    can_inherit = False  # compress --init teacher: students can start from the teacher's channels
    distorts_text = False  # text: training texts distorted afresh every epoch by default
    train_defaults: dict[str, Any] = {"batch_size": 64, "learning_rate": 2e-3}
    config_type: type | None = None  # the configuration dataclass
    file_suffixes: tuple[str, ...] = ()  # suffixes of the spec files ``load_file`` reads (none: it reads none)
    train_options: frozenset[str] = frozenset()  # the options of `odml train` its loop takes (see TRAIN_IMAGES)

    def unsupported(self, what: str) -> UnsupportedError:
        """The one-line error of a hook this family does not provide."""
        return UnsupportedError(f"{self.name}: {what} is not supported")

    # ---- the zoo ----------------------------------------------------------------------
    def models(self) -> dict[str, str]:
        """Zoo entries of this family: name -> one-line description."""
        return {}

    def hidden(self) -> set[str]:
        """Entries that exist (tests, smoke runs) but are not listed."""
        return set()

    def config(self, name: str) -> Any:
        """The configuration of zoo entry ``name``."""
        raise SpecError(f"{self.name}: no zoo entry {name!r}")

    def configure(self, name: str, classes: int | None = None, input_size: Any = None, width: float | None = None,
                  sets: dict[str, Any] | None = None) -> Any:
        """The configuration of ``name`` with the overrides every verb offers."""
        cfg = self.config(name)
        if sets:
            cfg = dataclasses.replace(cfg, **sets)
        if classes is not None:
            cfg = self.with_classes(cfg, classes)
        if input_size is not None:
            cfg = self.with_input_size(cfg, input_size)
        if width is not None and width != 1.0:
            cfg = self.scale(cfg, width, name)
        return self.validate(cfg, name)

    def load_file(self, path: str, classes: int | None = None, input_size: Any = None,
                  width: float | None = None) -> Any:
        """The configuration in spec file ``path`` (one of ``file_suffixes``)
        with the overrides every verb offers."""
        raise self.unsupported("reading spec files")

    def setting_names(self) -> list[str]:
        """What ``--set KEY=VALUE`` may change."""
        return [f.name for f in dataclasses.fields(self.config_type)] if self.config_type else []

    def parse_sets(self, items: list[str], base: Any) -> dict[str, Any]:
        """``--set KEY=VALUE`` items, typed as the configuration's fields."""
        names = [n for n in self.setting_names() if n != "num_classes"]
        out: dict[str, Any] = {}
        for item in items:
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or key not in names:
                raise SpecError(f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(names)}")
            cur = getattr(base, key)
            try:
                out[key] = type(cur)(value) if not isinstance(cur, bool) else value.lower() in ("1", "true", "yes")
            except (TypeError, ValueError):
                raise SpecError(f"--set {item!r}: {key} takes a {type(cur).__name__}") from None
        return out

    def validate(self, cfg: Any, where: str = "") -> Any:
        v = getattr(cfg, "validate", None)
        if v is not None:
            res = v()
            return cfg if res is None else res
        return cfg

    def with_classes(self, cfg: Any, n: int) -> Any:
        if not hasattr(cfg, "num_classes"):
            raise SpecError(f"{self.name}: a {self.task} model has no class count")
        return dataclasses.replace(cfg, num_classes=int(n))

    def with_input_size(self, cfg: Any, size: Any) -> Any:
        raise SpecError(f"--input-size: {self.name} models have a fixed input size")

    def with_length(self, cfg: Any, n: int) -> Any:
        raise SpecError(f"--max-len: {self.name} models take no sequence length")

    def with_vocabulary(self, cfg: Any, vocab: list[str]) -> Any:
        """``cfg`` sized for ``vocab`` (families that embed token ids)."""
        return cfg

    def scale(self, cfg: Any, width: float, where: str = "") -> Any:
        """``cfg`` narrower (or wider) by ``width``."""
        raise SpecError(f"{where or self.name}: {self.name} models cannot be scaled by a width multiplier")

    def config_from_dict(self, d: dict[str, Any], where: str = "config") -> Any:
        assert self.config_type is not None
        known = {f.name for f in dataclasses.fields(self.config_type)}
        try:
            cfg = self.config_type(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known})
        except TypeError as e:
            raise SpecError(f"{where}: {e}") from None
        return self.validate(cfg, where)

    def config_to_dict(self, cfg: Any) -> dict[str, Any]:
        return dataclasses.asdict(cfg)

    def line(self, cfg: Any) -> str:
        """A one-line form of the configuration (settings, tables)."""
        d = self.config_to_dict(cfg)
        return f"{self.name}(" + ",".join(f"{k}={v}" for k, v in d.items()) + ")"

    def label(self, name: str) -> str:
        """A short label of entry ``name`` (compress uses it for file names)."""
        return name

    # ---- cost, build ----------------------------------------------------------------------
    def count(self, cfg: Any) -> Counts:
        raise NotImplementedError

    def build(self, cfg: Any, name: str | None = None) -> Any:
        """The deployable tf_keras model (one input, one output)."""
        raise NotImplementedError

    # ---- what goes in and comes out --------------------------------------------------------
    def inputs(self, cfg: Any, vocab: list[str] | None = None) -> InputSpec:
        raise NotImplementedError

    def outputs(self, cfg: Any) -> OutputSpec:
        raise NotImplementedError

    def describe(self, cfg: Any, name: str = "") -> str:
        """A line for `odml zoo list`'s notes about entry ``name`` (empty: none)."""
        return ""

    def blocks(self, cfg: Any) -> list[dict[str, Any]] | None:
        """Per-block rows of `odml zoo show` (type, kernel, ..., parameters,
        MACs) for a family described block by block; None otherwise."""
        return None

    def settings(self, cfg: Any) -> list[tuple[str, str]]:
        """(setting, value) rows of `odml zoo show`."""
        return [(k, str(v)) for k, v in self.config_to_dict(cfg).items()]

    # ---- data and scores ------------------------------------------------------------------
    def data_hint(self) -> str:
        """What --data takes for this family (for error messages and help)."""
        return "'digits', 'shapes', a folder of class subfolders, or an .npz"

    def read(self, card: Any, data: str, val_split: float = 0.2, seed: int = 0, **options: Any) -> Any:
        """``data`` as model inputs for ``card``'s model: an object with
        y_train, y_val, class_names, source, notes, split, ``count(split)``,
        ``sample(split, n, seed)`` (a few inputs: calibration, parity),
        ``batches(split, batch, ...)`` and ``epoch_dataset(epoch, batch, seed,
        distortion)`` (all of a split, streamed: text is featurized batch by
        batch, never held whole), and x_train / x_val (a whole split at
        once, for small data). Options:
        ``val_data`` (validate on all of that source, train on all of
        ``data``), ``split="all"`` (validate on all of ``data``)."""
        raise SpecError(f"{self.name}: odml reads no data for {self.task} models")

    def score(self, logits: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Metrics of a classifier's outputs against labels."""
        return {"accuracy": float((np.asarray(logits).argmax(-1) == y).mean())}

    def learned_nothing(self, scores: dict[str, Any], y: np.ndarray, names: list[str]) -> str | None:
        """What ``scores`` (this family's ``score`` of a model's outputs
        against the labels ``y``) show the model failing to learn, in words
        (for compress's notes), or None: a classifier no more accurate than
        always answering the commonest label, unless its scores still rank
        the classes (ROC AUC above 0.6, where the family gives it)."""
        y = np.asarray(y).ravel()
        y = y[y >= 0]
        acc, auc = scores.get("accuracy"), scores.get("auc")
        if acc is None or not len(y) or (auc is not None and auc == auc and auc > 0.6):
            return None
        counts = np.bincount(y.astype(np.int64))
        top = int(counts.argmax())
        share = counts[top] / len(y)
        if acc > share + 0.5 / len(y):
            return None
        name = names[top] if top < len(names) else str(top)
        return (f"is no more accurate ({acc:.1%}) than always answering {name!r} ({share:.1%} of the labels), as a "
                "model that learned nothing from its input")

    def vocabulary(self, texts: list[str], vocab_file: Any = None, vocab_size: int = 8000) -> list[str] | None:
        """The vocabulary a model of this family needs (None: it needs none)."""
        return None

    def featurizer(self, card: Any) -> Any:
        """texts -> (model inputs, tokens cut) for ``card``'s model: how a
        text family turns texts into what its model reads."""
        raise self.unsupported("featurizing texts")

    def check_data(self, data: str) -> None:
        """Raise DataError, before anything is written, when --data ``data``
        is not something this family's ``read`` takes; by default there is
        nothing to check ahead of ``read``."""

    # ---- training --------------------------------------------------------------------------
    def pair(self, name: str, variant: str | None = None) -> tuple[str, str]:
        """(detector, landmark model) that ``odml train NAME --variant V``
        trains (a pose pipeline's two models)."""
        raise self.unsupported("training a detector and landmark pair")

    # ---- latency ---------------------------------------------------------------------------
    def block_spec(self, cfg: Any) -> Any:
        """``cfg`` in odml's spec language (a zoo.spec.ModelSpec): what latency
        prediction and the per-block breakdown read."""
        raise self.unsupported("latency prediction and breakdown by blocks")

    def finalize(self, cfg: Any, method: str, model: Any = None) -> tuple[Any, Any]:
        """``cfg`` whose exported files end in ``method`` (export
        --finalize: a segmentation model's resize and argmax after its
        logits), and ``model`` (a built or loaded tf_keras model of ``cfg``)
        with those steps after its output."""
        raise self.unsupported(f"--finalize {method} (only segmentation models take it)")

    def unit_of(self, cfg: Any, layer: str) -> str | None:
        """The unit of ``block_spec(cfg)`` (``stem``, ``block<i>``, ``head``)
        the layer named ``layer`` belongs to, for a per-op profile summed per
        block (``zoo/opmap.py``); None where the family has no blocks or the
        layer is in none."""
        return None

    # ---- compression ------------------------------------------------------------------------
    def compressor(self, cfg: Any) -> str:
        """The pipeline of odml.compress that compresses a teacher of this
        family (configuration ``cfg``), by its key: "distill" (classifier
        students distilled together, pruned, quantized: compress/run.py and
        distill.py) or "keypoints" (landmark students trained on a keypoint
        teacher's outputs: compress/keypoints.py)."""
        out = self.outputs(cfg)
        if out.task == "segment" and out.measure == "labels":
            raise self.unsupported("compression of a finalized segmentation model (its label map holds no scores to "
                                   "distill; compress the model before export --finalize)")
        if out.task not in ("classify", "segment"):
            raise self.unsupported("compression of a model that is not a classifier (nor a segmentation model)")
        if self.student_family_for(cfg) is None:
            raise self.unsupported(f"compression of {self.noun} (odml has no students for it)")
        return "distill"

    def student_family_for(self, cfg: Any) -> str | None:
        """The family whose models are the students of a teacher of
        configuration ``cfg`` (by default ``student_family``; a model read
        off its file takes segmentation students when it segments)."""
        return self.student_family

    def num_classes(self, cfg: Any) -> int:
        """The classes a classifier or segmentation model tells apart (0 for
        other outputs)."""
        out = self.outputs(cfg)
        return out.size if out.task == "classify" else 0

    def class_logits(self, cfg: Any, outputs: Any) -> Any:
        """A teacher's main output (a batch, a tensor inside a
        ``tf.function`` or an array) as per-class logits, what students
        distill and what is scored: by default the output as it is."""
        return outputs

    def student_base(self, teacher: Any) -> tuple[str, Any]:
        """(label stem, configuration) of the member students derived by MACs
        are narrowed from, for ``teacher`` (a loaded model of a family whose
        ``student_family`` is this one): by default the teacher itself."""
        return self.name, teacher.card.config

    def derived(self, base: Any, width: float, teacher: Any) -> Any:
        """``base`` at ``width``, a student derived for ``teacher``."""
        return self.scale(base, width)

    def width_of(self, cfg: Any, widest: Any) -> Any:
        """``cfg`` made a narrower width of ``widest`` inside one network
        (students that share their parameters): the same layers in the same
        order, where its rounded channels would give it others. By default
        as it is (compress/shared.py checks the graphs)."""
        return cfg

    def student(self, item: str, width: float | None, teacher: Any) -> tuple[str, Any]:
        """(label, configuration) of student ``item`` (a zoo entry, or a
        file this family reads) at ``width``, reading the teacher's input."""
        raise SpecError(f"student {item!r}: not a model of {self.name}")

    def _named_student(self, item: str, width: float | None, teacher: Any, load: Callable[[str], Any],
                       fit: Callable[[Any], Any]) -> tuple[str, Any]:
        """``student`` for the families whose students are zoo entries at a
        width or spec files: a file is ``load``-ed, checked against the
        teacher's input channels and ``fit`` to the teacher; a zoo entry is
        configured at the teacher's input size and classes."""
        from pathlib import Path

        h, w, c = teacher.input.shape
        if width is None and (Path(item).suffix.lower() in self.file_suffixes or Path(item).exists()):
            spec = load(item)
            if spec.input_shape[2] != c:
                raise SpecError(f"{item}: {spec.input_shape[2]} input channels, the teacher has {c}")
            return Path(item).stem, fit(spec)
        if item not in self.models():
            raise SpecError(f"{item!r}: not a zoo name (NAME or NAME@WIDTH, see 'odml zoo list') nor a spec file")
        spec = self.configure(item, classes=teacher.num_classes, input_size=(h, w), width=width or 1.0)
        return self.label(item) + (f"_w{width:g}" if width is not None else ""), spec

    def landmarks(self, cfg: Any, outputs: Any) -> np.ndarray:
        """A keypoint model's outputs on a batch (an array, or the list of its
        output tensors) in odml's landmark layout (LANDMARKS x (x, y as
        fractions of the input, z in input widths, visibility, presence), then
        the pose flag): what a keypoint teacher gives its students."""
        raise SpecError(f"{self.name}: its outputs are not keypoints")

    def model_file(self, cfg: Any) -> Any:
        """The file a zoo entry's trained model lives in (a Path), for
        entries that come with weights; None for those built untrained."""
        return None

    def check_teacher(self, teacher: Any) -> None:
        """Raise SpecError when ``teacher`` (of a family whose students come
        from this one) cannot be compressed into this family's models."""

    def check_inherit(self, teacher_cfg: Any, student_cfg: Any, label: str) -> None:
        raise SpecError(f"students inherit the teacher's channels only from a {inheriting()} teacher")

    def channel_scores(self, teacher: Any, x: Any, samples: int = 512) -> list[Any]:
        """How much the teacher (a built model of this family) relies on each
        of its channels, on inputs ``x``: what ``inherit`` keeps (families
        with ``can_inherit``)."""
        raise self.unsupported("starting students from the teacher's channels")

    def inherit(self, teacher: Any, student: Any, scores: list[Any]) -> dict[str, Any]:
        """Give a narrower ``student`` the teacher's most important channels
        by ``scores`` (from ``channel_scores``) and their weights."""
        raise self.unsupported("starting students from the teacher's channels")

    def __repr__(self) -> str:
        return f"<family {self.name}>"


def inheriting() -> str:
    from odml.zoo.registry import families

    return " or ".join(f.name for f in families() if f.can_inherit) or "(no family)"


@dataclass
class Configured:
    """A zoo entry or spec file resolved: the family, its configuration and
    the name the model goes by."""

    family: Family
    config: Any
    name: str

    @property
    def counts(self) -> Counts:
        return self.family.count(self.config)

    @property
    def params(self) -> int:
        return self.counts.params

    @property
    def macs(self) -> int:
        return self.counts.macs or 0

    @property
    def input(self) -> InputSpec:
        return self.family.inputs(self.config)

    @property
    def output(self) -> OutputSpec:
        return self.family.outputs(self.config)

    def to_line(self) -> str:
        return self.family.line(self.config)

    def build(self, name: str | None = None) -> Any:
        return self.family.build(self.config, name or self.name)

    def renamed(self, name: str) -> "Configured":
        return Configured(self.family, self.config, name)
