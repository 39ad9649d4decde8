"""A model that odml did not make (no model card beside it): a Keras 3 or
tf_keras model, a SavedModel, or an ONNX graph (converted to TensorFlow by
onnx2tf). What odml can know of it comes from the model itself, read by
``odml.zoo.load``: one input and one output of static shape (a dynamic size
is fixed by ``--input-size``); an image input (H, W, C) reads pixels mapped
onto ``input_range`` ([0, 1] by default; [0, 255] when the model starts with
a Rescaling or Normalization layer; ``--input-range`` says otherwise), and an
output of N >= 2 values is class scores. odml cannot rebuild, scale or train
such a model, but it exports, benchmarks and compresses it (the students are
MobileNetEdgeTPU members)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from odml.errors import SpecError
from odml.zoo.family import Counts, Family, InputSpec, OutputSpec
from odml.zoo.registry import register_family

RUNTIMES = ("tf_keras", "keras3", "savedmodel", "onnx")
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

    def validate(self) -> "ExternalConfig":
        if self.runtime not in RUNTIMES:
            raise SpecError(f"runtime {self.runtime!r} is not one of {', '.join(RUNTIMES)}")
        return self

    @property
    def num_classes(self) -> int:
        return int(self.output_shape[0]) if len(self.output_shape) == 1 else 0


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
            return ExternalConfig(tuple(d["input_shape"]), tuple(d["output_shape"]), d.get("input_dtype", "float32"),
                                  int(d.get("params", 0)), int(d.get("macs", 0)), d.get("runtime", "tf_keras"),
                                  tuple(d.get("input_range", (0.0, 1.0)))).validate()
        except (KeyError, TypeError, ValueError) as e:
            raise SpecError(f"{where}: not the configuration of an external model ({type(e).__name__}: {e})") from None

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
        n = 1
        for d in cfg.output_shape:
            n *= d
        if len(cfg.output_shape) == 1 and n >= 2:
            return OutputSpec("classify", "logits", n, "one score per class (argmax is the prediction)")
        return OutputSpec("features", "output", n, f"a tensor of shape {list(cfg.output_shape)}", cfg.output_shape)

    def read(self, card: Any, data: str, val_split: float = 0.2, seed: int = 0, **options: Any) -> Any:
        from odml.data.images import load_images

        shape = card.input.shape
        if card.input.kind != "image":
            raise SpecError(f"--data {data}: {card.name} takes a {list(shape)} input, not an image; without a model "
                            "card odml reads images only")
        return load_images(data, shape[:2], shape[2], val_split, seed, val_data=options.get("val_data"),
                           split=options.get("split", "val"))
