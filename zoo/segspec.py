"""Semantic segmentation in the spec language: a backbone (a
:class:`~odml.zoo.spec.ModelSpec`'s stem and blocks; its classification head
unused) and a decoder head, as data, with parameters and MACs counted
without TensorFlow.

Two decoders, after the TensorFlow Model Garden's Edge TPU segmentation
models (official/projects/edgetpu/vision: configs/
semantic_segmentation_config.py and semantic_segmentation_searched_config.py,
modeling/heads/bifpn_head.py):

- ``deeplabv3plus`` (DeepLabv3+, Chen et al. 2018): ASPP on the backbone's
  stride-32 features (a 1x1 branch, three dilated depthwise-separable
  branches, image pooling, projected with dropout), fused with the stride-16
  features projected to 48 channels, two depthwise-separable convolutions,
  a 1x1 classifier: logits at stride 16.
- ``bifpn`` (Autoseg-EdgeTPU): levels 3..8 (strides 8..256; the levels past
  the backbone made by 1x1 projection and 3x3 average pooling), every level
  projected to the head's channels, ``repeats`` BiFPN cells (EfficientDet's
  top-down and bottom-up paths, 11 nodes over 6 levels; each node sums its
  inputs resized to its level, then a separable 3x3 conv, BN, ReLU6), every
  level resized to stride 8 and summed, a separable 3x3 conv, and a
  separable 3x3 classifier: logits at stride 8.

The one-line form adds the head to the backbone's line:
``seg_deeplabv3plus_c256_a128_l48_n2`` or ``seg_bifpn_c96_r4_p3-8``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from odml.errors import SpecError
from odml.zoo.spec import BN_PARAMS, ModelSpec, _check_fields

KINDS = ("deeplabv3plus", "bifpn")
FUSIONS = ("sum", "weighted")


@dataclass
class SegHead:
    kind: str = "deeplabv3plus"
    filters: int = 256  # deeplabv3plus: the decoder's convolutions; bifpn: every level's channels
    # deeplabv3plus
    level: int = 5  # ASPP on the features at stride 2**level
    low_level: int = 4  # fused with the features at stride 2**low_level (the logits' stride)
    aspp_filters: int = 128
    rates: list[int] = field(default_factory=lambda: [5, 10, 15])
    low_filters: int = 48
    convs: int = 2
    dropout: float = 0.3
    # bifpn
    min_level: int = 3  # the logits' stride is 2**min_level
    max_level: int = 8
    repeats: int = 4
    fusion: str = "sum"  # sum: a plain add (Autoseg's); weighted: EfficientDet's fast normalized fusion

    def to_line(self) -> str:
        if self.kind == "bifpn":
            line = f"seg_bifpn_c{self.filters}_r{self.repeats}_p{self.min_level}-{self.max_level}"
            return line + ("_weighted" if self.fusion == "weighted" else "")
        return (f"seg_deeplabv3plus_c{self.filters}_a{self.aspp_filters}_l{self.low_filters}_n{self.convs}"
                + ("" if (self.level, self.low_level) == (5, 4) else f"_p{self.low_level}-{self.level}"))

    @property
    def stride(self) -> int:
        return 2 ** (self.min_level if self.kind == "bifpn" else self.low_level)

    def validate(self, where: str) -> None:
        if self.kind not in KINDS:
            raise SpecError(f"{where}: head kind {self.kind!r} is not one of {', '.join(KINDS)}")
        for name in ("filters", "aspp_filters", "low_filters", "convs", "repeats"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise SpecError(f"{where}: head {name} must be a positive integer, got {v!r}")
        if not 0 <= self.dropout < 1:
            raise SpecError(f"{where}: head dropout must be in [0, 1), got {self.dropout}")
        if self.kind == "bifpn":
            if not 2 <= self.min_level < self.max_level <= 10:
                raise SpecError(f"{where}: BiFPN levels {self.min_level}-{self.max_level}: need 2 <= min < max <= 10")
            if self.fusion not in FUSIONS:
                raise SpecError(f"{where}: fusion {self.fusion!r} is not one of {', '.join(FUSIONS)}")
        else:
            if not 2 <= self.low_level < self.level <= 6:
                raise SpecError(f"{where}: DeepLabv3+ levels: need 2 <= low_level < level <= 6, got "
                                f"{self.low_level} and {self.level}")
            if not (isinstance(self.rates, list) and self.rates and
                    all(isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in self.rates)):
                raise SpecError(f"{where}: ASPP rates must be a list of positive integers, got {self.rates!r}")


@dataclass
class SegSpec:
    """A segmentation model: backbone (stem and blocks of ``backbone``) and head."""

    name: str = "custom_seg"
    backbone: ModelSpec = field(default_factory=ModelSpec)
    head: SegHead = field(default_factory=SegHead)
    num_classes: int = 32
    task: str = "semantic_segmentation"
    finalize: str = ""  # steps after the logits in exported files (export --finalize): "resize512,argmax"

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.backbone.input_shape

    @property
    def logits_shape(self) -> tuple[int, int, int]:
        h, w, _ = self.input_shape
        s = self.head.stride
        return (math.ceil(h / s), math.ceil(w / s), self.num_classes)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """The logits at the head's stride, or what ``finalize`` makes of them."""
        shape: tuple[int, ...] = self.logits_shape
        steps = finalize_steps(self.finalize, "finalize") if self.finalize else []
        for i, (step, size) in enumerate(steps):
            if step == "resize":
                shape = (size, size, *shape[2:])
            elif step == "argmax":  # the last step: int32 labels, no channel; else a float (h, w, 1) map
                shape = shape[:2] if i == len(steps) - 1 else (shape[0], shape[1], 1)
            else:
                shape = shape[:2]
        return shape

    # ---- serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        b = self.backbone
        return {"schema": 1, "name": self.name, "task": self.task, "num_classes": self.num_classes,
                "input_shape": list(b.input_shape), "activation": b.activation, "bn_momentum": b.bn_momentum,
                "bn_epsilon": b.bn_epsilon, "drop_connect_rate": b.drop_connect_rate,
                "backbone": " ".join([b.stem.to_line(), *(x.to_line() for x in b.blocks)]),
                "head": asdict(self.head), "line": self.to_line(), **({"finalize": self.finalize} if self.finalize
                                                                       else {})}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: Any, where: str = "spec") -> "SegSpec":
        if not isinstance(d, dict):
            raise SpecError(f"{where}: a segmentation spec must be a JSON object, got {type(d).__name__}")
        d = dict(d)
        d.pop("schema", None)
        d.pop("line", None)
        known = {"name", "task", "num_classes", "input_shape", "activation", "bn_momentum", "bn_epsilon",
                 "drop_connect_rate", "backbone", "head", "finalize"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SpecError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        if not isinstance(d.get("backbone"), str):
            raise SpecError(f"{where}: 'backbone' must be the backbone's one-line form (stem and blocks)")
        head = d.get("head", {})
        if not isinstance(head, dict):
            raise SpecError(f"{where}: 'head' must be an object")
        hknown = set(SegHead.__dataclass_fields__)
        bad = sorted(set(head) - hknown)
        if bad:
            raise SpecError(f"{where}: head: unknown key(s) {', '.join(bad)}; known: {', '.join(sorted(hknown))}")
        n = d.get("num_classes", 32)
        bb = ModelSpec.from_dict({"name": d.get("name", "custom_seg"), "line": d["backbone"] + " head_c0",
                                  "input_shape": d.get("input_shape", [512, 512, 3]),
                                  "num_classes": n if isinstance(n, int) and n >= 2 else 2,
                                  **{k: d[k] for k in ("activation", "bn_momentum", "bn_epsilon", "drop_connect_rate")
                                     if k in d}}, where)
        try:
            spec = cls(name=d.get("name", "custom_seg"), backbone=bb, head=_check_fields(SegHead(**head), where),
                       num_classes=n, finalize=str(d.get("finalize") or ""))
        except TypeError as e:
            raise SpecError(f"{where}: {e}") from None
        spec.validate(where)
        return spec

    def to_line(self) -> str:
        return " ".join([self.backbone.stem.to_line(), *(b.to_line() for b in self.backbone.blocks),
                         self.head.to_line()])

    def replace(self, **kwargs: Any) -> "SegSpec":
        return replace(self, **kwargs)

    # ---- validation -----------------------------------------------------------------------
    def validate(self, where: str = "spec") -> None:
        if not isinstance(self.num_classes, int) or isinstance(self.num_classes, bool) or self.num_classes < 2:
            raise SpecError(f"{where}: num_classes must be at least 2, got {self.num_classes!r}")
        self.backbone.validate(where)
        self.head.validate(where)
        if self.finalize:
            finalize_steps(self.finalize, f"{where}: finalize")
        levels = self.endpoints()
        need = ([self.head.low_level, self.head.level] if self.head.kind == "deeplabv3plus"
                else [self.head.min_level])
        for lv in need:
            if lv not in levels:
                raise SpecError(f"{where}: the head needs the backbone's features at stride {2 ** lv}, and the "
                                f"backbone reaches strides {', '.join(str(2 ** v) for v in sorted(levels))}")
        if self.head.kind == "bifpn" and max(levels) < self.head.min_level:
            raise SpecError(f"{where}: BiFPN needs a backbone level at or above {self.head.min_level}")

    # ---- the backbone's features ----------------------------------------------------------
    def endpoints(self) -> dict[int, tuple[int, int, int, int]]:
        """level -> (index of the last unit at that stride: 0 the stem, i + 1 block i;
        height, width, channels) for every stride the backbone reaches."""
        h, w, _ = self.input_shape
        s = self.backbone.stem
        h, w = math.ceil(h / s.stride), math.ceil(w / s.stride)
        stride, out = s.stride, {}
        out[int(math.log2(stride))] = (0, h, w, s.filters)
        for i, b in enumerate(self.backbone.blocks):
            if b.stride == 2:
                h, w, stride = math.ceil(h / 2), math.ceil(w / 2), stride * 2
            out[int(math.log2(stride))] = (i + 1, h, w, b.filters)
        return out

    # ---- cost model -----------------------------------------------------------------------
    def layers(self) -> list[dict[str, Any]]:
        rows = [r for r in self.backbone.layers() if r["name"] != "head"]
        p, m = head_cost(self)
        rows.append({"name": "head", "line": self.head.to_line(), "type": self.head.kind, "kernel": 3,
                     "expansion": 1, "stride": self.head.stride, "filters": self.head.filters, "groups": 1,
                     "output_shape": list(self.logits_shape), "params": int(p), "macs": int(m)})
        return rows

    @property
    def params(self) -> int:
        return sum(r["params"] for r in self.layers())

    @property
    def macs(self) -> int:
        return sum(r["macs"] for r in self.layers())


def _conv(cin: int, cout: int, k: int, hw: int, bias: bool = False, bn: bool = True) -> tuple[int, int]:
    return k * k * cin * cout + (cout if bias else 0) + (BN_PARAMS * cout if bn else 0), hw * k * k * cin * cout


def _sep(cin: int, cout: int, hw: int, bias: bool = False, bn: bool = True) -> tuple[int, int]:
    """A separable 3x3 convolution: depthwise 3x3, pointwise to cout (no BN between)."""
    return 9 * cin + cin * cout + (cout if bias else 0) + (BN_PARAMS * cout if bn else 0), hw * (9 * cin + cin * cout)


def bifpn_nodes(min_level: int, max_level: int) -> list[tuple[int, list[int]]]:
    """EfficientDet's BiFPN graph: each node's level and the ids of its
    inputs (ids 0.. are the input levels min..max, then the nodes in order)."""
    n = max_level - min_level + 1
    nodes: list[tuple[int, list[int]]] = []
    last = {lv: lv - min_level for lv in range(min_level, max_level + 1)}  # level -> latest id
    top = max_level
    for lv in range(max_level - 1, min_level - 1, -1):  # top-down
        nodes.append((lv, [last[lv], last[top] if lv == max_level - 1 else n + len(nodes) - 1]))
        top = lv
    td = {lv: n + i for i, (lv, _) in enumerate(nodes)}  # level -> top-down node id
    prev = td[min_level]
    for lv in range(min_level + 1, max_level + 1):  # bottom-up
        ins = [lv - min_level] + ([td[lv]] if lv in td and lv != min_level else []) + [prev]
        nodes.append((lv, ins))
        prev = n + len(nodes) - 1
    return nodes


def head_cost(spec: SegSpec) -> tuple[int, int]:
    """Parameters and MACs of the head (trainable: BN's moving statistics excluded)."""
    hd, ends, nc = spec.head, spec.endpoints(), spec.num_classes
    params = macs = 0

    def add(pm: tuple[int, int]) -> None:
        nonlocal params, macs
        params += pm[0]
        macs += pm[1]

    if hd.kind == "deeplabv3plus":
        _, h, w, cin = ends[hd.level]
        a = hd.aspp_filters
        add(_conv(cin, a, 1, h * w))  # 1x1 branch
        for _ in hd.rates:  # dilated depthwise 3x3 (no BN), then 1x1 + BN
            add((9 * cin, h * w * 9 * cin))
            add(_conv(cin, a, 1, h * w))
        add(_conv(cin, a, 1, 1))  # image pooling branch
        add(_conv(a * (len(hd.rates) + 2), a, 1, h * w))  # projection
        _, lh, lw, lc = ends[hd.low_level]
        add(_conv(lc, hd.low_filters, 1, lh * lw))
        c = a + hd.low_filters
        for _ in range(hd.convs):  # depthwise 3x3 + BN, 1x1 + BN
            add((9 * c + BN_PARAMS * c, lh * lw * 9 * c))
            add(_conv(c, hd.filters, 1, lh * lw))
            c = hd.filters
        add(_conv(c, nc, 1, lh * lw, bias=True, bn=False))
        return params, macs
    f = hd.filters
    top = max(ends)
    hw = {lv: (ends[lv][1], ends[lv][2]) for lv in ends}
    ch = {lv: ends[lv][3] for lv in ends}
    for lv in range(top + 1, hd.max_level + 1):  # levels past the backbone: 1x1 projection (when needed), pool
        src = lv - 1
        if ch[src] != f:
            add(_conv(ch[src], f, 1, hw[src][0] * hw[src][1], bias=True, bn=False))
        hw[lv] = (math.ceil(hw[src][0] / 2), math.ceil(hw[src][1] / 2))
        ch[lv] = f
    for lv in range(hd.min_level, hd.max_level + 1):  # every level to f channels
        if ch[lv] != f:
            add(_conv(ch[lv], f, 1, hw[lv][0] * hw[lv][1], bias=True))
    nodes = bifpn_nodes(hd.min_level, hd.max_level)
    for _ in range(hd.repeats):
        for lv, ins in nodes:
            add(_sep(f, f, hw[lv][0] * hw[lv][1]))
            if hd.fusion == "weighted":
                params += len(ins)
    h3 = hw[hd.min_level][0] * hw[hd.min_level][1]
    add(_sep(f, f, h3))
    add(_sep(f, nc, h3, bias=True, bn=False))
    return params, macs


def finalize_steps(text: str, where: str = "--finalize") -> list[tuple[str, int]]:
    """The steps of a finalize method (the Model Garden's export_util
    finalize_serving): ``resizeN`` (bilinear before the argmax, nearest
    neighbour after it), ``argmax`` (once), ``squeeze`` (after the argmax);
    the result must be a label map (height x width): ``resize512,argmax``,
    ``resize256,argmax,resize512,squeeze``."""
    steps: list[tuple[str, int]] = []
    seen_argmax = False
    for tok in [t.strip().lower() for t in text.split(",") if t.strip()]:
        m = re.fullmatch(r"resize(\d+)", tok)
        if m and 8 <= int(m[1]) <= 4096:
            steps.append(("resize", int(m[1])))
        elif tok == "argmax" and not seen_argmax:
            steps.append(("argmax", 0))
            seen_argmax = True
        elif tok == "squeeze" and seen_argmax and steps[-1][0] != "squeeze":
            steps.append(("squeeze", 0))
        else:
            raise SpecError(f"{where} {text!r}: cannot take {tok!r}; steps are resizeN (N from 8 to 4096), one "
                            "argmax, and squeeze after it, e.g. resize512,argmax or resize256,argmax,resize512,squeeze")
    if not seen_argmax or (steps[-1][0] != "argmax" and steps[-1][0] != "squeeze"):
        raise SpecError(f"{where} {text!r}: must end in a label map: argmax last, or squeeze after a resize that "
                        "follows it")
    return steps


_HEAD_RE = re.compile(r"^seg_(?P<kind>deeplabv3plus|bifpn)(?P<rest>(?:_[a-z0-9.\-]+)*)$")


def parse_head(token: str, where: str = "head") -> SegHead:
    m = _HEAD_RE.match(token.strip())
    if not m:
        raise SpecError(f"{where}: cannot parse head {token!r}; expected seg_deeplabv3plus_cC_aA_lL_nN or "
                        "seg_bifpn_cC_rR_pMIN-MAX[_weighted]")
    h = SegHead(kind=m["kind"], filters=256 if m["kind"] == "deeplabv3plus" else 96)
    for tok in [t for t in m["rest"].split("_") if t]:
        if re.fullmatch(r"c\d+", tok):
            h.filters = int(tok[1:])
        elif re.fullmatch(r"a\d+", tok):
            h.aspp_filters = int(tok[1:])
        elif re.fullmatch(r"l\d+", tok):
            h.low_filters = int(tok[1:])
        elif re.fullmatch(r"n\d+", tok):
            h.convs = int(tok[1:])
        elif re.fullmatch(r"r\d+", tok):
            h.repeats = int(tok[1:])
        elif re.fullmatch(r"p\d+-\d+", tok):
            lo, hi = (int(v) for v in tok[1:].split("-"))
            if h.kind == "bifpn":
                h.min_level, h.max_level = lo, hi
            else:
                h.low_level, h.level = lo, hi
        elif tok in FUSIONS:
            h.fusion = tok
        else:
            raise SpecError(f"{where}: unknown option {tok!r} in head {token!r}")
    h.validate(where)
    return h
