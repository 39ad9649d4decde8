"""A Keras model that odml did not make (no model card beside it): what odml
can know of it comes from the model itself. One input of static shape and
one output; an image input (H, W, C) is read as pixels in [0, 1], the odml
convention, and an output of N >= 2 values as class scores. odml cannot
rebuild, scale or train such a model, but it exports, benchmarks and
compresses it (the students are MobileNetEdgeTPU members)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from odml.errors import SpecError
from odml.zoo.family import Counts, Family, InputSpec, OutputSpec
from odml.zoo.registry import register_family


@dataclass
class KerasModelConfig:
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    input_dtype: str = "float32"
    params: int = 0  # trainable parameters of the loaded model
    macs: int = 0  # multiply-adds of its convolution and dense layers (0: not counted)

    def validate(self) -> "KerasModelConfig":
        return self

    @property
    def num_classes(self) -> int:
        return int(self.output_shape[0]) if len(self.output_shape) == 1 else 0


@register_family
class KerasModel(Family):
    name = "keras_model"
    task = "classify"
    noun = "an image classifier"
    zoo_task = "image_classification"
    title = "a Keras model without an odml model card (an image classifier, pixels in [0, 1])"
    trainer = None
    student_family = "ibn"
    config_type = KerasModelConfig

    def from_model(self, km: Any, where: str) -> KerasModelConfig:
        """The facts of a loaded tf_keras model; one input and one output of
        static shape."""
        from odml.zoo.builder import count_macs, trainable_params

        ins, outs = getattr(km, "inputs", None) or [], getattr(km, "outputs", None) or []
        if len(ins) != 1 or len(outs) != 1:
            raise SpecError(f"{where}: has {len(ins)} inputs and {len(outs)} outputs; odml handles models with one "
                            "of each")
        ishape, oshape = tuple(ins[0].shape[1:]), tuple(outs[0].shape[1:])
        if None in ishape or None in oshape:
            raise SpecError(f"{where}: input {ishape} -> output {oshape} is not of static shape; export the model "
                            "with fixed input dimensions")
        dtype = getattr(ins[0].dtype, "name", str(ins[0].dtype))
        try:
            macs = count_macs(km)
        except Exception:  # a layer type we do not count
            macs = 0
        return KerasModelConfig(tuple(int(d) for d in ishape), tuple(int(d) for d in oshape), dtype,
                                trainable_params(km), int(macs))

    def config_from_dict(self, d: dict[str, Any], where: str = "config") -> KerasModelConfig:
        try:
            return KerasModelConfig(tuple(d["input_shape"]), tuple(d["output_shape"]), d.get("input_dtype", "float32"),
                                    int(d.get("params", 0)), int(d.get("macs", 0)))
        except (KeyError, TypeError, ValueError) as e:
            raise SpecError(f"{where}: not the configuration of a Keras model ({type(e).__name__}: {e})") from None

    def with_classes(self, cfg: KerasModelConfig, n: int) -> KerasModelConfig:
        raise SpecError("--classes: the class count of a Keras model is its own")

    def count(self, cfg: KerasModelConfig) -> Counts:
        return Counts(cfg.params, cfg.macs or None)

    def build(self, cfg: KerasModelConfig, name: str | None = None) -> Any:
        raise SpecError("odml cannot rebuild a Keras model it did not make; it is loaded from its file")

    def inputs(self, cfg: KerasModelConfig, vocab: list[str] | None = None) -> InputSpec:
        if len(cfg.input_shape) == 3 and cfg.input_dtype.startswith("float"):
            return InputSpec("image", cfg.input_shape, cfg.input_dtype, (0.0, 1.0), "image",
                             "RGB image; the model reads pixel / 255")
        return InputSpec("tensor", cfg.input_shape, cfg.input_dtype, (0.0, 1.0), "input",
                         "the model's input tensor")

    def outputs(self, cfg: KerasModelConfig) -> OutputSpec:
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
        return load_images(data, shape[:2], shape[2], val_split, seed)

