"""Inverted-bottleneck image classifiers in odml's spec language: the zoo's
MobileNetEdgeTPUV2 (tiny, xs, s, m, l) and MobileNetEdgeTPU (v1), and every
spec (a search's best_spec.json, your own). The configuration is a
:class:`~odml.zoo.spec.ModelSpec`.

Topologies follow the TensorFlow Model Garden (official/projects/edgetpu/
vision: the mobilenet_edgetpu_v2 and mobilenet_edgetpu block tables); the
fused and group-convolution IBN blocks are those of Gupta and Akin,
"Accelerator-aware Neural Network Design using AutoML" (2020). Every size is
one builder over one table; overrides (classes, input size, width
multiplier, dropout, drop-connect) give the small variants used for 32x32 inputs.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from odml.errors import SpecError
from odml.zoo.family import TRAIN_IMAGES, Counts, Family, InputSpec, OutputSpec
from odml.zoo.registry import register_family
from odml.zoo.spec import Block, Head, ModelSpec, Stem, has_residual, round_filters

# (type, kernel, expansion, stride) per block, grouped as in the Model Garden
V2_GROUPS = [
    [("fused", 3, 1, 1)],
    [("fused", 3, 8, 2), ("gc", 3, 4, 1)],
    [("fused", 3, 8, 2), ("gc", 3, 4, 1), ("fused", 3, 4, 1), ("gc", 3, 4, 1)],
    [("fused", 3, 8, 2), ("dw", 3, 4, 1), ("dw", 3, 4, 1), ("dw", 3, 4, 1)],
    [("dw", 3, 8, 1), ("dw", 3, 4, 1), ("dw", 3, 4, 1), ("dw", 3, 4, 1)],
    [("dw", 3, 8, 2), ("dw", 3, 4, 1), ("dw", 3, 4, 1), ("dw", 3, 4, 1)],
    [("dw", 3, 8, 1)],
]

# size: (group filters, stem filters, stem kernel, head filters, group size)
V2_SIZES: dict[str, tuple[list[int], int, int, int, int]] = {
    "tiny": ([16, 32, 48, 80, 112, 160, 192], 32, 5, 1280, 64),
    "xs": ([16, 32, 48, 96, 144, 160, 192], 32, 5, 1280, 64),
    "s": ([24, 48, 64, 128, 160, 192, 256], 64, 5, 1280, 64),
    "m": ([32, 64, 80, 160, 192, 240, 320], 64, 5, 1344, 64),
    "l": ([32, 64, 96, 192, 240, 256, 384], 64, 7, 1408, 128),
}

# the published parameter counts (1001 classes, 224x224) and MACs, for checks
V2_REFERENCE = {
    "tiny": (3_762_729, 512e6),
    "xs": (4_462_697, 708e6),
    "s": (5_987_737, 1198e6),
    "m": (8_464_233, 1836e6),
    "l": (10_923_049, 2531e6),
}
V1_REFERENCE = (4_092_713, 990e6)

_TYPES = {"fused": "ibn_fused", "gc": "ibn_gc", "dw": "ibn_dw"}
PREFIX = "mobilenet_edgetpu_"


def input_shape(input_size: Any, channels: int = 3) -> tuple[int, int, int]:
    """An input size N, "N", "HxW" or (H, W) -> (H, W, channels)."""
    if isinstance(input_size, int):
        h = w = input_size
    elif isinstance(input_size, str):
        parts = input_size.lower().split("x")
        try:
            h, w = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
        except ValueError:
            raise SpecError(f"input size {input_size!r} is not N or HxW") from None
        if len(parts) > 2:
            raise SpecError(f"input size {input_size!r} is not N or HxW")
    else:
        h, w = input_size
    if h < 8 or w < 8:
        raise SpecError(f"input size {h}x{w} is too small (at least 8x8)")
    return (h, w, channels)


def fit_groups(groups: int, cin: int, cexp: int) -> int:
    """The largest group count <= ``groups`` that divides both channel counts."""
    g = max(1, groups)
    while g > 1 and (cin % g or cexp % g):
        g -= 1
    return g


def _check_width(width: float) -> float:
    width = float(width)
    if not 0 < width <= 4:
        raise SpecError(f"width multiplier must be in (0, 4], got {width}")
    return width


def mobilenet_edgetpu_v2(size: str, num_classes: int = 1001, input_size: Any = 224, width: float = 1.0,
                         dropout: float = 0.2, drop_connect_rate: float = 0.0) -> ModelSpec:
    group_filters, stem_filters, stem_kernel, head_filters, group_size = V2_SIZES[size]
    width = _check_width(width)
    stem = Stem(filters=round_filters(stem_filters, width), kernel=stem_kernel, stride=2)
    blocks: list[Block] = []
    cin = stem.filters
    for gi, (group, filters) in enumerate(zip(V2_GROUPS, group_filters)):
        cout = round_filters(filters, width)
        for bi, (kind, k, e, s) in enumerate(group):
            if size == "tiny" and (gi, bi) in ((2, 0), (2, 2), (3, 0)):
                kind = "gc"
            groups = 1
            if kind == "gc":
                cexp = cin * e
                groups = fit_groups(cexp // group_size, cin, cexp)
            blocks.append(Block(type=_TYPES[kind], kernel=k, expansion=e, stride=s, filters=cout, groups=groups))
            cin = cout
    return _assemble(f"{PREFIX}v2_{size}", stem, blocks, head_filters, num_classes, input_size, width, dropout,
                     drop_connect_rate)


def _assemble(name: str, stem: Stem, blocks: list[Block], head_filters: int, num_classes: int, input_size: Any,
              width: float, dropout: float, drop_connect_rate: float) -> ModelSpec:
    """The spec of a family member; the head narrows with the width below 1 only."""
    head = Head(filters=round_filters(head_filters, width) if width < 1 else head_filters, dropout=dropout)
    spec = ModelSpec(name=name, input_shape=input_shape(input_size), num_classes=int(num_classes), stem=stem,
                     blocks=blocks, head=head, drop_connect_rate=drop_connect_rate)
    spec.validate(spec.name)
    return spec


# MobileNetEdgeTPU (v1): (in, out, kernel, repeats, expansion, stride, skip)
_V1_BLOCKS = [
    ("fused", 16, 3, 1, 1, 1, True),
    ("fused", 32, 3, 1, 8, 2, True),
    ("fused", 32, 3, 3, 4, 1, True),
    ("fused", 48, 3, 1, 8, 2, True),
    ("fused", 48, 3, 3, 4, 1, True),
    ("dw", 96, 3, 1, 8, 2, True),
    ("dw", 96, 3, 3, 4, 1, True),
    ("dw", 96, 3, 1, 8, 1, False),
    ("dw", 96, 3, 3, 4, 1, True),
    ("dw", 160, 5, 1, 8, 2, True),
    ("dw", 160, 5, 3, 4, 1, True),
    ("dw", 192, 3, 1, 8, 1, True),
]


def mobilenet_edgetpu_v1(num_classes: int = 1001, input_size: Any = 224, width: float = 1.0, dropout: float = 0.2,
                         drop_connect_rate: float = 0.0) -> ModelSpec:
    width = _check_width(width)
    blocks = []
    for kind, filters, k, repeats, e, s, skip in _V1_BLOCKS:
        for r in range(repeats):
            blocks.append(Block(type=_TYPES[kind], kernel=k, expansion=e, stride=s if r == 0 else 1,
                                filters=round_filters(filters, width), skip=skip))
    return _assemble(f"{PREFIX}v1", Stem(filters=round_filters(32, width), kernel=3, stride=2), blocks, 1280,
                     num_classes, input_size, width, dropout, drop_connect_rate)


def _builder(name: str):
    if name == f"{PREFIX}v1":
        return mobilenet_edgetpu_v1
    size = name[len(f"{PREFIX}v2_"):]
    return lambda **kw: mobilenet_edgetpu_v2(size, **kw)


_SCALAR_SETTINGS = ("activation", "bn_momentum", "bn_epsilon", "drop_connect_rate")


@register_family
class IBN(Family):
    name = "ibn"
    task = "classify"
    noun = "an image classifier"
    zoo_task = "image_classification"
    title = ("inverted-bottleneck image classifiers in odml's spec language: MobileNetEdgeTPUV2, MobileNetEdgeTPU "
             "and any spec")
    trainer = "classifier"
    student_family = "ibn"
    config_type = ModelSpec
    file_suffixes = (".json", ".yaml", ".yml")
    train_options = TRAIN_IMAGES
    width_range = (0.05, 4.0)

    def models(self) -> dict[str, str]:
        out = {f"{PREFIX}v2_{s}": f"MobileNetEdgeTPUV2-{s.upper() if s != 'tiny' else 'Tiny'} (Model Garden)"
               for s in V2_SIZES}
        out[f"{PREFIX}v1"] = "MobileNetEdgeTPU (v1)"
        return out

    def config(self, name: str) -> ModelSpec:
        return _builder(name)()

    def configure(self, name: str, classes: int | None = None, input_size: Any = None, width: float | None = None,
                  sets: dict[str, Any] | None = None) -> ModelSpec:
        sets = dict(sets or {})
        builder = {k: sets.pop(k) for k in ("dropout", "drop_connect_rate") if k in sets}
        kw = {"num_classes": classes, "input_size": _size_arg(input_size), "width": width, **builder}
        spec = _builder(name)(**{k: v for k, v in kw.items() if v is not None})
        if sets:
            spec = spec.replace(**sets)
            spec.validate(name)
        return spec

    def setting_names(self) -> list[str]:
        return list(_SCALAR_SETTINGS)

    def load_file(self, path: str, classes: int | None = None, input_size: Any = None,
                  width: float | None = None) -> ModelSpec:
        """A spec file (JSON/YAML), with the class and input-size overrides."""
        from odml.documents import read_document
        from odml.errors import NotThisFormat

        doc = read_document(path, "spec", SpecError)
        if isinstance(doc, dict) and "backbone" in doc:  # a segmentation spec (zoo/segspec.py)
            raise NotThisFormat(f"{path}: not a classifier spec (it has a 'backbone')")
        spec = ModelSpec.from_dict(doc, str(path))
        changes: dict[str, Any] = {}
        if classes is not None:
            changes["num_classes"] = classes
        if input_size is not None:
            h, w, _ = input_shape(_size_arg(input_size))
            changes["input_shape"] = (h, w, spec.input_shape[2])
        if width is not None and width != 1.0:
            raise SpecError(f"{path}: --width applies to zoo names; edit the spec's filters instead")
        spec = spec.replace(**changes)
        spec.validate(path)
        return spec

    def validate(self, cfg: ModelSpec, where: str = "") -> ModelSpec:
        cfg.validate(where or cfg.name)
        return cfg

    def with_classes(self, cfg: ModelSpec, n: int) -> ModelSpec:
        return cfg.replace(num_classes=int(n))

    def with_input_size(self, cfg: ModelSpec, size: Any) -> ModelSpec:
        h, w, _ = input_shape(_size_arg(size))
        return cfg.replace(input_shape=(h, w, cfg.input_shape[2]))

    def config_from_dict(self, d: dict[str, Any], where: str = "config") -> ModelSpec:
        return ModelSpec.from_dict(d, where)

    def config_to_dict(self, cfg: ModelSpec) -> dict[str, Any]:
        return cfg.to_dict()

    def line(self, cfg: ModelSpec) -> str:
        return cfg.to_line()

    def label(self, name: str) -> str:
        return name[len(PREFIX):] if name.startswith(PREFIX) else name

    def blocks(self, cfg: ModelSpec) -> list[dict[str, Any]]:
        return cfg.layers()

    def block_spec(self, cfg: ModelSpec) -> ModelSpec:
        return cfg

    def unit_of(self, cfg: ModelSpec, layer: str) -> str | None:
        """Layers are named by ``zoo/builder.py``: ``stem_*``, ``block<i>_*``,
        ``head_*``, then ``pool``, ``dropout`` and ``logits`` (the head's)."""
        import re

        m = re.match(r"^(stem|head|block\d+)(?:_|$)", layer)
        if m:
            return m[1]
        return "head" if layer in ("pool", "dropout", "logits") else None

    def count(self, cfg: ModelSpec) -> Counts:
        return Counts(cfg.params, cfg.macs)

    def build(self, cfg: ModelSpec, name: str | None = None) -> Any:
        from odml.zoo.builder import build_model

        return build_model(cfg if name is None else cfg.replace(name=name))

    def inputs(self, cfg: ModelSpec, vocab: list[str] | None = None) -> InputSpec:
        return InputSpec("image", tuple(cfg.input_shape), "float32", (0.0, 1.0), "image",
                         "RGB image; the model reads pixel / 255")

    def outputs(self, cfg: ModelSpec) -> OutputSpec:
        return OutputSpec("classify", "logits", cfg.num_classes, "one score per class (argmax is the prediction)")

    def read(self, card: Any, data: str, val_split: float = 0.2, seed: int = 0, **options: Any) -> Any:
        from odml.data.images import load_images

        h, w, c = card.input.shape
        return load_images(data, (h, w), c, val_split, seed, val_data=options.get("val_data"),
                           split=options.get("split", "val"))

    # ---- compression: students of image teachers are MobileNetEdgeTPU members --------------
    def check_teacher(self, teacher: Any) -> None:
        if teacher.input.kind != "image" or len(teacher.input.shape) != 3:
            raise SpecError(f"input shape {tuple(teacher.input.shape)} is not an image (height, width, channels)")

    def student_base(self, teacher: Any) -> tuple[str, ModelSpec]:
        h, w, _ = teacher.input.shape
        base = f"{PREFIX}v2_tiny"
        return self.label(base), self.configure(base, classes=teacher.num_classes, input_size=(h, w))

    def derived(self, base: ModelSpec, width: float, teacher: Any) -> ModelSpec:
        h, w, _ = teacher.input.shape
        return self.configure(base.name, classes=teacher.num_classes, input_size=(h, w), width=width)

    def width_of(self, cfg: ModelSpec, widest: ModelSpec) -> ModelSpec:
        """A block whose input and output channels round to the same count at
        this width (the 8-channel floor) has a residual the widest's block
        lacks: as a width of the widest it goes without (``_noskip``)."""
        if len(cfg.blocks) != len(widest.blocks):
            return cfg
        blocks, cin, cin_w = [], cfg.stem.filters, widest.stem.filters
        for b, bw in zip(cfg.blocks, widest.blocks):
            blocks.append(dataclasses.replace(b, skip=False) if has_residual(b, cin) and not has_residual(bw, cin_w)
                          else b)
            cin, cin_w = b.filters, bw.filters
        return cfg if blocks == list(cfg.blocks) else cfg.replace(blocks=blocks)

    def student(self, item: str, width: float | None, teacher: Any) -> tuple[str, ModelSpec]:
        shape = tuple(teacher.input.shape)
        return self._named_student(item, width, teacher, ModelSpec.load,
                                   lambda spec: spec.replace(input_shape=shape, num_classes=teacher.num_classes))


def _size_arg(value: Any) -> Any:
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


def is_spec_path(model: str) -> bool:
    """Whether a model argument names a spec file rather than a zoo entry."""
    return model.lower().endswith((".json", ".yaml", ".yml")) or os.sep in model or Path(model).is_file()


