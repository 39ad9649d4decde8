"""A spec as the pieces its latency is the sum of: the stem, every block and
the head, each with what its cost depends on (type, kernel, expansion,
groups, stride, channels in and out, the resolution it sees, the residual).
Each unit can be built alone as a model (its input at that resolution and
width), exported at a precision and measured on a device: what `odml
calibrate` measures and `odml bench --blocks` breaks a model into.

nn-Meter (Zhang et al., MobiSys 2021) and LitePred (Feng et al., NSDI 2024)
predict a model's latency as the sum of its kernels' latencies; a block of
the spec language is fused as one kernel group here (conv + BN + activation
fold into one op at conversion), so the block is the unit."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from odml.zoo.spec import Block, ModelSpec, block_cost, has_residual, _conv_out

KINDS = ("stem", "ibn_dw", "ibn_fused", "ibn_gc", "ibn_grouped", "head")
FEATURES = ("kernel", "expansion", "groups", "stride", "cin", "cout", "res", "classes", "residual")


@dataclass(frozen=True)
class Unit:
    kind: str
    res: int  # input height = width
    cin: int
    cout: int  # head: the 1x1 conv's filters (0: none)
    kernel: int = 1
    expansion: float = 1.0
    stride: int = 1
    groups: int = 1
    classes: int = 0  # head only
    residual: bool = False

    @property
    def macs(self) -> int:
        if self.kind == "stem":
            ho = _conv_out(self.res, self.stride)
            return ho * ho * self.kernel * self.kernel * self.cin * self.cout
        if self.kind == "head":
            c = self.cout or self.cin
            return self.res * self.res * self.cin * self.cout + c * self.classes
        return block_cost(self.block(), self.cin, self.res, self.res)[1]

    def op_macs(self) -> tuple[int, int, int]:
        """MACs of the unit's three convolutions: (expansion 1x1, the spatial
        kxk one (depthwise, full or grouped), projection 1x1): each maps to
        its own kernel in the runtime, with its own speed (XNNPACK's int8
        depthwise 7x7 is far slower per MAC than its 1x1 convolutions)."""
        ho = self.out_res
        cexp = int(round(self.cin * self.expansion))
        if self.kind == "stem":
            return 0, self.macs, 0
        if self.kind == "head":
            return self.res * self.res * self.cin * self.cout, 0, (self.cout or self.cin) * self.classes
        k2 = self.kernel * self.kernel
        expand = self.expansion != 1
        if self.kind == "ibn_dw":
            return (self.res * self.res * self.cin * cexp if expand else 0), ho * ho * k2 * cexp, ho * ho * cexp * self.cout
        if self.kind == "ibn_grouped":
            return self.res * self.res * self.cin * cexp, ho * ho * k2 * (cexp // self.groups) * cexp, ho * ho * cexp * self.cout
        g = self.groups if self.kind == "ibn_gc" else 1
        return 0, (ho * ho * k2 * (self.cin // g) * cexp if expand else 0), ho * ho * cexp * self.cout

    @property
    def out_res(self) -> int:
        return 1 if self.kind == "head" else _conv_out(self.res, self.stride)

    def block(self) -> Block:
        return Block(type=self.kind, kernel=self.kernel, expansion=self.expansion, stride=self.stride,
                     filters=self.cout, groups=self.groups)

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Unit":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def describe(self) -> str:
        if self.kind == "stem":
            return f"stem k{self.kernel} s{self.stride} {self.cin}->{self.cout} @{self.res}"
        if self.kind == "head":
            return f"head {self.cin}->{self.cout}->{self.classes} @{self.res}"
        g = f" g{self.groups}" if self.groups != 1 else ""
        return (f"{self.kind} k{self.kernel} e{self.expansion:g} s{self.stride}{g} {self.cin}->{self.cout} "
                f"@{self.res}")


def units_of(spec: ModelSpec) -> list[Unit]:
    """The stem, every block and the head of ``spec``, in order."""
    h, _, c = spec.input_shape
    s = spec.stem
    units = [Unit("stem", h, c, s.filters, kernel=s.kernel, stride=s.stride)]
    h, cin = _conv_out(h, s.stride), s.filters
    for b in spec.blocks:
        units.append(Unit(b.type, h, cin, b.filters, kernel=b.kernel, expansion=float(b.expansion), stride=b.stride,
                          groups=b.groups, residual=has_residual(b, cin)))
        h, cin = _conv_out(h, b.stride), b.filters
    units.append(Unit("head", h, cin, spec.head.filters, classes=spec.num_classes))
    return units


def unit_model(u: Unit, activation: str = "relu"):
    """``u`` alone as a tf_keras model: its input at its resolution and width."""
    from odml.zoo.blocks import K, _Ctx, ibn_block

    ctx = _Ctx(activation, 0.99, 1e-3)
    inp = K.Input(shape=(u.res, u.res, u.cin), name="image")
    if u.kind == "stem":
        x = ctx.conv_bn(inp, u.cout, u.kernel, u.stride, "stem", act=activation)
    elif u.kind == "head":
        x = ctx.conv_bn(inp, u.cout, 1, 1, "head", act=activation) if u.cout else inp
        x = K.layers.GlobalAveragePooling2D(name="pool")(x)
        x = K.layers.Dense(u.classes, name="logits")(x)
    else:
        x = ibn_block(inp, u.block(), u.cin, ctx, "block")
    return K.Model(inp, x, name=f"unit_{u.kind}")


def unit_tflite(u: Unit, precision: str, activation: str = "relu", lower: bool = False) -> bytes:
    """``u`` exported at ``precision`` (int8 calibrated on random activations
    in [0, 1]: latency does not depend on the values). An int8 unit takes and
    gives int8 tensors, as it does inside a model: float input and output
    would add a quantize and a dequantize of its activations that the whole
    model pays once, not once per block."""
    import numpy as np

    from odml.exporters.tflite import convert, representative_from

    model = unit_model(u, activation)
    if lower:  # the Edge TPU maps grouped convolutions as split/conv/concat
        from odml.exporters.edgetpu import lower_for_edgetpu

        model, _ = lower_for_edgetpu(model)
    rep = None
    if precision == "int8":
        x = np.random.default_rng(0).uniform(0, 1, (8, u.res, u.res, u.cin)).astype(np.float32)
        rep = representative_from(x, n=8)
    return convert(model, precision, rep, io="int8" if precision == "int8" else "float", input_name="image")
