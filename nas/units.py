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

from odml.files import write_file
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


def blocks_of(spec: Any) -> ModelSpec:
    """``spec`` in the spec language, as its family says (a segmentation
    model: its backbone): what its units are."""
    from odml.zoo.registry import family_for

    return family_for(spec).block_spec(spec)


def head_macs(spec: Any) -> int:
    """The MACs of ``spec`` outside its units (a segmentation model's decoder
    head; 0 for a classifier of the spec language)."""
    bb = blocks_of(spec)
    if bb is spec:
        return 0
    body = sum(r["macs"] for r in bb.layers() if r["name"] != "head")  # its units: stem and blocks
    return max(int(spec.macs) - int(body), 0)


def units_of(spec: Any) -> list[Unit]:
    """The stem, every block and the head of ``spec``, in order (a
    segmentation model: its backbone's stem and blocks; its decoder head is
    no unit, see ``head_macs``)."""
    whole, spec = spec, blocks_of(spec)
    h, _, c = spec.input_shape
    s = spec.stem
    units = [Unit("stem", h, c, s.filters, kernel=s.kernel, stride=s.stride)]
    h, cin = _conv_out(h, s.stride), s.filters
    for b in spec.blocks:
        units.append(Unit(b.type, h, cin, b.filters, kernel=b.kernel, expansion=float(b.expansion), stride=b.stride,
                          groups=b.groups, residual=has_residual(b, cin)))
        h, cin = _conv_out(h, b.stride), b.filters
    if whole is spec:  # a classifier's head (a segmentation backbone's classifier is not built)
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


def export_units(units: list[Unit], precision: str, folder: Any, activation: str = "relu",
                 lower: bool = False) -> list[Any]:
    """Each unit exported to ``folder``/unitN.tflite; the paths."""
    from pathlib import Path

    paths = []
    for i, u in enumerate(units):
        p = Path(folder) / f"unit{i}.tflite"
        write_file(p, unit_tflite(u, precision, activation, lower))
        paths.append(p)
    return paths


def spec_of(model: str) -> tuple[Any, str | None]:
    """The spec of MODEL (a zoo name, a spec file, or a .tflite / .keras /
    .h5 / SavedModel with an odml card) and, for a .tflite, the precision it
    was exported in. Raises SpecError for a model the spec language does not
    describe."""
    from pathlib import Path

    from odml.errors import SpecError, UnsupportedError
    from odml.zoo.card import ModelCard

    p = Path(model)
    precision = None
    if p.suffix.lower() == ".tflite":
        from odml.flatbuffer import precision_of, read_tflite

        m = read_tflite(p)
        card = ModelCard.from_tflite(p.read_bytes(), str(p), m.metadata)
        precision = precision_of(m)
        if card is None:
            raise SpecError(f"{p}: no odml model card in its metadata, so its architecture is unknown; give its "
                            "spec (the JSON odml search or odml export wrote)")
        cfg, fam = card.config, card.family
    elif p.suffix.lower() in (".keras", ".h5") or p.is_dir():
        card = ModelCard.load(p)
        if card is None:
            raise SpecError(f"{p}: no odml model card beside it ({p.stem}.odml.json); give its spec")
        cfg, fam = card.config, card.family
    else:
        from odml.zoo.registry import resolve

        c = resolve(model)
        cfg, fam = c.config, c.family
    try:
        fam.block_spec(cfg)  # its units (units_of): a segmentation model's are its backbone's, its head the rest
        return cfg, precision
    except UnsupportedError as e:
        raise SpecError(f"{model}: {e} (only models of the spec language have blocks: MobileNetEdgeTPU, search "
                        "results, spec files)") from None


def breakdown(spec: ModelSpec, device: Any, precision: str, opts: Any, whole_ms: float | None = None,
              lower: bool = False) -> dict[str, Any]:
    """Where the time goes: every unit of ``spec`` exported alone at
    ``precision`` and measured on ``device``; their sum beside the whole
    model's figure (what the whole adds: one invoke instead of one per unit,
    the quantize and dequantize at its ends, caches shared across blocks)."""
    import tempfile

    us = units_of(spec)
    with tempfile.TemporaryDirectory(prefix="odml-blocks-") as d:
        res = device.bench_many(export_units(us, precision, d, blocks_of(spec).activation, lower), opts)
    rows = []
    for i, (u, r) in enumerate(zip(us, res)):
        name = "stem" if u.kind == "stem" else "head" if u.kind == "head" else f"block{i - 1}"
        rows.append({"unit": name, "what": u.describe(), "macs": u.macs, "median_ms": r.get("median_ms"),
                     "error": r.get("error")})
    total = sum(r["median_ms"] or 0.0 for r in rows)
    for r in rows:
        r["share"] = (r["median_ms"] or 0.0) / total if total else 0.0
    return {"blocks": rows, "sum_ms": total, "whole_ms": whole_ms,
            "whole_adds_ms": None if whole_ms is None else whole_ms - total}
