"""A model that odml did not make (no model card beside it): a Keras 3 or
tf_keras model, a SavedModel, or an ONNX graph (converted to TensorFlow by
onnx2tf). What odml can know of it comes from the model itself, read by
``odml.zoo.load``: one input and one output of static shape (a dynamic size
is fixed by ``--input-size``); an image input (H, W, C) reads pixels mapped
onto ``input_range`` ([0, 1] by default; [0, 255] when the model starts with
a Rescaling or Normalization layer; ``--input-range`` says otherwise), and an
output of N >= 2 values is class scores. odml cannot rebuild, scale or train
such a model, but it exports, benchmarks and compresses it (the students are
MobileNetEdgeTPU members).

Its outputs keep their names and order (``outputs``), and what they mean is
the ``task``: given by ``--task``, else read off the shapes (N >= 2 values:
class scores; a map of the input's height and width: segmentation; anything
else: features). The task says how each output is judged against the source
(``zoo.family.measure_of``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from odml.errors import SpecError
from odml.zoo.family import Counts, Family, InputSpec, OutputSpec, OutputTensor, measure_of, task_fits
from odml.zoo.registry import register_family

RUNTIMES = ("tf_keras", "keras3", "savedmodel", "onnx", "litert")
RANGES = {"0,1": (0.0, 1.0), "-1,1": (-1.0, 1.0), "0,255": (0.0, 255.0)}


@dataclass
class ExternalConfig:
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    input_dtype: str = "float32"
    params: int = 0  # trainable parameters of the loaded model (0: not known, a SavedModel's)
    macs: int = 0  # multiply-adds of its convolution and dense layers (0: not counted)
    runtime: str = "tf_keras"  # what runs it: tf_keras, keras3, savedmodel, onnx (through onnx2tf)
    input_range: tuple[float, float] = (0.0, 1.0)  # what pixels 0..255 become at the input
    outputs: tuple[tuple[str, tuple[int, ...]], ...] = ()  # (name, shape) of every output, in the model's order
    task: str = ""  # what the outputs are (zoo.family.TASKS); "" : read off the shapes

    def validate(self) -> "ExternalConfig":
        if self.runtime not in RUNTIMES:
            raise SpecError(f"runtime {self.runtime!r} is not one of {', '.join(RUNTIMES)}")
        why = task_fits(self.task, self.output_shapes) if self.task else None
        if why:
            raise SpecError(f"--task {self.task}: {why}")
        return self

    @property
    def output_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(s) for _, s in self.outputs] or [tuple(self.output_shape)]

    @property
    def the_task(self) -> str:
        """``task``, or read off the shapes: class scores, a map the size of the
        input (segmentation), else features."""
        if self.task:
            return self.task
        first = self.output_shapes[0]
        if len(self.output_shapes) == 1 and measure_of("classify", first) == "top1":
            return "classify"
        if len(first) == 3 and len(self.input_shape) == 3 and tuple(first[:2]) == tuple(self.input_shape[:2]):
            return "segment"
        return "features"

    @property
    def num_classes(self) -> int:
        return int(self.output_shape[0]) if self.the_task == "classify" else 0


def parse_range(text: str | None) -> tuple[float, float] | None:
    """``--input-range``: 0,1 / -1,1 / 0,255 (what pixels become)."""
    if text is None:
        return None
    key = text.replace(" ", "")
    if key not in RANGES:
        raise SpecError(f"--input-range {text!r}: expected one of {', '.join(RANGES)} (what pixels 0..255 become "
                        "at the model's input)")
    return RANGES[key]


@register_family
class External(Family):
    name = "external"
    task = "classify"
    noun = "an image classifier"
    zoo_task = "image_classification"
    title = "a model odml did not make (Keras 3, tf_keras, SavedModel or ONNX), read off the model itself"
    trainer = None
    student_family = "ibn"
    config_type = ExternalConfig

    def config_from_dict(self, d: dict[str, Any], where: str = "config") -> ExternalConfig:
        try:
            outs = tuple((str(n), tuple(int(x) for x in sh)) for n, sh in d.get("outputs", ()))
            return ExternalConfig(tuple(d["input_shape"]), tuple(d["output_shape"]), d.get("input_dtype", "float32"),
                                  int(d.get("params", 0)), int(d.get("macs", 0)), d.get("runtime", "tf_keras"),
                                  tuple(d.get("input_range", (0.0, 1.0))), outs, str(d.get("task", ""))).validate()
        except (KeyError, TypeError, ValueError) as e:
            raise SpecError(f"{where}: not the configuration of an external model ({type(e).__name__}: {e})") from None

    def student_family_for(self, cfg: ExternalConfig) -> str | None:
        return "segmentation" if cfg.the_task == "segment" else self.student_family

    def num_classes(self, cfg: ExternalConfig) -> int:
        if cfg.the_task == "segment":
            return int(cfg.output_shapes[0][-1])  # per-pixel scores: one per class
        return cfg.num_classes

    def with_classes(self, cfg: ExternalConfig, n: int) -> ExternalConfig:
        raise SpecError("--classes: the class count of your own model is its own")

    def count(self, cfg: ExternalConfig) -> Counts:
        return Counts(cfg.params, cfg.macs or None)

    def build(self, cfg: ExternalConfig, name: str | None = None) -> Any:
        raise SpecError("odml cannot rebuild a model it did not make; it is loaded from its file")

    def inputs(self, cfg: ExternalConfig, vocab: list[str] | None = None) -> InputSpec:
        if len(cfg.input_shape) == 3 and cfg.input_dtype.startswith("float"):
            lo, hi = cfg.input_range
            return InputSpec("image", cfg.input_shape, cfg.input_dtype, (float(lo), float(hi)), "image",
                             f"RGB image; the model reads pixels mapped onto [{lo:g}, {hi:g}]")
        return InputSpec("tensor", cfg.input_shape, cfg.input_dtype, (0.0, 1.0), "input", "the model's input tensor")

    def outputs(self, cfg: ExternalConfig) -> OutputSpec:
        task = cfg.the_task
        words = {"top1": "one score per class (argmax is the prediction)", "pixels": "a map: per pixel, a score per "
                 "channel", "steps": "a sequence: per step, one score per symbol"}
        tensors = tuple(OutputTensor(name, tuple(shape), words.get(measure_of(task, shape), f"a tensor of shape "
                                     f"{list(shape)}"), measure_of(task, shape)) for name, shape in cfg.outputs)
        shape = tuple(cfg.output_shapes[0])
        n = 1
        for d in shape:
            n *= d
        name = tensors[0].name if tensors else ("logits" if task == "classify" else "output")
        desc = tensors[0].description if tensors else words.get(measure_of(task, shape), f"a tensor of shape {list(shape)}")
        return OutputSpec(task, name, n, desc, shape if task != "classify" else (), tensors)

    def read(self, card: Any, data: str, val_split: float = 0.2, seed: int = 0, **options: Any) -> Any:
        from odml.data.images import load_images

        shape = card.input.shape
        if card.input.kind != "image":
            raise SpecError(f"--data {data}: {card.name} takes a {list(shape)} input, not an image; without a model "
                            "card odml reads images only")
        if card.task == "segment":  # images with masks
            from odml.data.segmentation import load_segmentation

            return load_segmentation(data, shape[:2], shape[2], val_split, seed, classes=options.get("classes"),
                                     split=options.get("split", "val"))
        return load_images(data, shape[:2], shape[2], val_split, seed, val_data=options.get("val_data"),
                           split=options.get("split", "val"))
