"""MobileNetEdgeTPUV2 (tiny, xs, s, m, l) and MobileNetEdgeTPU (v1), as specs.

Topologies follow the TensorFlow Model Garden (official/projects/edgetpu/vision)
as summarised in REFERENCE.md section 1. Every size is one builder over one
table; overrides (classes, input size, width multiplier, dropout,
drop-connect) give the small variants used for 32x32 inputs.
"""

from __future__ import annotations

from typing import Any

from odml.errors import SpecError
from odml.zoo.registry import register
from odml.zoo.spec import Block, Head, ModelSpec, Stem, round_filters

# (type, kernel, expansion, stride) per block, grouped as in the Model Garden
_V2_GROUPS = [
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


def _input_shape(input_size: Any) -> tuple[int, int, int]:
    if isinstance(input_size, int):
        h = w = input_size
    elif isinstance(input_size, str):
        parts = input_size.lower().split("x")
        try:
            h, w = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
        except ValueError:
            raise SpecError(f"input size {input_size!r} is not N or HxW") from None
    else:
        h, w = input_size
    if h < 8 or w < 8:
        raise SpecError(f"input size {h}x{w} is too small (at least 8x8)")
    return (h, w, 3)


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


def mobilenet_edgetpu_v2(
    size: str,
    num_classes: int = 1001,
    input_size: Any = 224,
    width: float = 1.0,
    dropout: float = 0.2,
    drop_connect_rate: float = 0.0,
) -> ModelSpec:
    group_filters, stem_filters, stem_kernel, head_filters, group_size = V2_SIZES[size]
    width = _check_width(width)
    stem = Stem(filters=round_filters(stem_filters, width), kernel=stem_kernel, stride=2)
    blocks: list[Block] = []
    cin = stem.filters
    for gi, (group, filters) in enumerate(zip(_V2_GROUPS, group_filters)):
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
    return _assemble(f"mobilenet_edgetpu_v2_{size}", stem, blocks, head_filters, num_classes, input_size, width,
                     dropout, drop_connect_rate)


def _assemble(name: str, stem: Stem, blocks: list[Block], head_filters: int, num_classes: int, input_size: Any,
              width: float, dropout: float, drop_connect_rate: float) -> ModelSpec:
    """The spec of a family member; the head narrows with the width below 1 only."""
    head = Head(filters=round_filters(head_filters, width) if width < 1 else head_filters, dropout=dropout)
    spec = ModelSpec(name=name, input_shape=_input_shape(input_size), num_classes=int(num_classes), stem=stem,
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


def mobilenet_edgetpu_v1(
    num_classes: int = 1001,
    input_size: Any = 224,
    width: float = 1.0,
    dropout: float = 0.2,
    drop_connect_rate: float = 0.0,
) -> ModelSpec:
    width = _check_width(width)
    blocks = []
    for kind, filters, k, repeats, e, s, skip in _V1_BLOCKS:
        for r in range(repeats):
            blocks.append(
                Block(type=_TYPES[kind], kernel=k, expansion=e, stride=s if r == 0 else 1,
                      filters=round_filters(filters, width), skip=skip)
            )
    return _assemble("mobilenet_edgetpu_v1", Stem(filters=round_filters(32, width), kernel=3, stride=2), blocks, 1280,
                     num_classes, input_size, width, dropout, drop_connect_rate)


def _register_v2(size: str) -> None:
    @register(f"mobilenet_edgetpu_v2_{size}", "image_classification",
              f"MobileNetEdgeTPUV2-{size.upper() if size != 'tiny' else 'Tiny'} (Model Garden)")
    def _build(**overrides: Any) -> ModelSpec:
        return mobilenet_edgetpu_v2(size, **overrides)


for _size in V2_SIZES:
    _register_v2(_size)

register("mobilenet_edgetpu_v1", "image_classification", "MobileNetEdgeTPU (v1)")(mobilenet_edgetpu_v1)
