"""The spec language: an architecture as data.

A :class:`ModelSpec` is a stem, a list of blocks and a head. Every part is a
dataclass that round-trips through JSON, and every block also has a compact
one-line form::

    fused_k3_e8_s2_c48        ibn_fused, kernel 3, expansion 8, stride 2, 48 filters
    gc_k3_e4_s1_c48_g3        ibn_gc (GC-IBN): fused IBN whose k x k conv has 3 groups
    dw_k3_e4_s1_c96           ibn_dw: depthwise IBN
    grouped_k3_e4_s1_c96_g4   ibn_grouped: 1x1 expand, k x k group conv, 1x1 project
    ... optional suffixes: _se0.25 (squeeze-excite ratio), _relu6 / _hswish / _relu
    (activation of this block), _noskip (no residual even where one fits)

    stem_k5_s2_c32            the stem: one k x k conv + BN + activation
    head_c1280                the head: 1x1 conv to 1280 + BN + activation, pool, classifier

A model's one-line form is its stem, blocks and head joined by spaces.

Parameters and MACs are computed here from the spec alone, without TensorFlow,
so a search can filter candidates cheaply. Parameters are trainable parameters,
as the Model Garden and the published counts give them (batch-norm moving
statistics excluded); they equal the built Keras model's trainable weights.
MACs count the multiply-adds of convolutions and dense layers.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from odml.errors import SpecError

SCHEMA = 1

BLOCK_TYPES = ("ibn_dw", "ibn_fused", "ibn_gc", "ibn_grouped")
ACTIVATIONS = ("relu", "relu6", "hswish")
# one-line prefixes <-> block types
_PREFIX = {"dw": "ibn_dw", "fused": "ibn_fused", "gc": "ibn_gc", "grouped": "ibn_grouped"}
_TYPE_PREFIX = {v: k for k, v in _PREFIX.items()}
BN_PARAMS = 2  # trainable: gamma and beta (the moving mean and variance are not parameters
# in the published counts; Keras lists them as non-trainable weights)


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Scale ``filters`` by ``width`` and round to a multiple of ``divisor``
    (never below ``divisor``, never more than 10% below the exact value)."""
    if width == 1.0:
        return int(filters)
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:
        new += divisor
    return int(new)


def _conv_out(size: int, stride: int) -> int:
    return math.ceil(size / stride)  # "same" padding


@dataclass
class Stem:
    filters: int = 32
    kernel: int = 3
    stride: int = 2

    def to_line(self) -> str:
        return f"stem_k{self.kernel}_s{self.stride}_c{self.filters}"


@dataclass
class Head:
    filters: int = 1280  # 0: no 1x1 conv before pooling
    dropout: float = 0.2

    def to_line(self) -> str:
        line = f"head_c{self.filters}"
        if self.dropout != 0.2:
            line += f"_d{_fmt(self.dropout)}"
        return line


@dataclass
class Block:
    type: str
    kernel: int
    expansion: float
    stride: int
    filters: int
    groups: int = 1
    se: float = 0.0
    activation: str | None = None  # None: the model's activation
    skip: bool = True  # residual when stride 1 and Cin == Cout

    def to_line(self) -> str:
        line = (
            f"{_TYPE_PREFIX.get(self.type, self.type)}_k{self.kernel}_e{_fmt(self.expansion)}"
            f"_s{self.stride}_c{self.filters}"
        )
        if self.groups != 1 or self.type in ("ibn_gc", "ibn_grouped"):
            line += f"_g{self.groups}"
        if self.se:
            line += f"_se{_fmt(self.se)}"
        if self.activation:
            line += f"_{self.activation}"
        if not self.skip:
            line += "_noskip"
        return line


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


@dataclass
class ModelSpec:
    name: str = "custom"
    input_shape: tuple[int, int, int] = (224, 224, 3)
    num_classes: int = 1001
    stem: Stem = field(default_factory=Stem)
    blocks: list[Block] = field(default_factory=list)
    head: Head = field(default_factory=Head)
    activation: str = "relu"
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    drop_connect_rate: float = 0.0
    task: str = "image_classification"

    # ---- serialisation -------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["line"] = self.to_line()
        return {"schema": SCHEMA, **d}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: Any, where: str = "spec") -> "ModelSpec":
        if not isinstance(d, dict):
            raise SpecError(f"{where}: a spec must be a JSON object, got {type(d).__name__}")
        d = dict(d)
        d.pop("schema", None)
        line = d.pop("line", None)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SpecError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        try:
            if "stem" in d:
                d["stem"] = _from_fields(Stem, d["stem"], f"{where}: stem")
            if "head" in d:
                d["head"] = _from_fields(Head, d["head"], f"{where}: head")
            if "blocks" in d:
                if not isinstance(d["blocks"], list):
                    raise SpecError(f"{where}: 'blocks' must be a list")
                blocks = []
                for i, b in enumerate(d["blocks"]):
                    if isinstance(b, str):
                        blocks.append(parse_block(b, f"{where}: block {i}"))
                    else:
                        blocks.append(_from_fields(Block, b, f"{where}: block {i}"))
                d["blocks"] = blocks
            elif line:
                stem, blocks, head = parse_line(line, where)
                d.setdefault("stem", stem)
                d["blocks"] = blocks
                d.setdefault("head", head)
            if "input_shape" in d:
                shape = d["input_shape"]
                if not (isinstance(shape, (list, tuple)) and len(shape) == 3 and all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 16384 for v in shape)):
                    raise SpecError(f"{where}: input_shape must be [height, width, channels], got {shape!r}")
                d["input_shape"] = tuple(shape)
            spec = _check_fields(cls(**d), where)
        except TypeError as e:
            raise SpecError(f"{where}: {e}") from None
        spec.validate(where)
        return spec

    @classmethod
    def from_json(cls, text: str, where: str = "spec") -> "ModelSpec":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(f"{where}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
        return cls.from_dict(data, where)

    @classmethod
    def load(cls, path: str | Path) -> "ModelSpec":
        from odml.documents import read_document

        return cls.from_dict(read_document(path, "spec", SpecError), str(path))

    def to_line(self) -> str:
        return " ".join([self.stem.to_line(), *(b.to_line() for b in self.blocks), self.head.to_line()])

    @classmethod
    def from_line(cls, line: str, **kwargs: Any) -> "ModelSpec":
        stem, blocks, head = parse_line(line, "spec line")
        spec = cls(stem=stem, blocks=blocks, head=head, **kwargs)
        spec.validate("spec line")
        return spec

    def replace(self, **kwargs: Any) -> "ModelSpec":
        return replace(self, **kwargs)

    # ---- validation ------------------------------------------------------
    def validate(self, where: str = "spec") -> None:
        h, w, c = self.input_shape
        if min(h, w, c) < 1:
            raise SpecError(f"{where}: input_shape {list(self.input_shape)} must be positive")
        if self.num_classes < 2:
            raise SpecError(f"{where}: num_classes must be at least 2, got {self.num_classes}")
        if self.activation not in ACTIVATIONS:
            raise SpecError(f"{where}: activation {self.activation!r} is not one of {', '.join(ACTIVATIONS)}")
        if not 0 <= self.drop_connect_rate < 1:
            raise SpecError(f"{where}: drop_connect_rate must be in [0, 1), got {self.drop_connect_rate}")
        if not 0 <= self.head.dropout < 1:
            raise SpecError(f"{where}: head dropout must be in [0, 1), got {self.head.dropout}")
        s = self.stem
        _check_kernel(s.kernel, f"{where}: stem")
        _check_stride(s.stride, f"{where}: stem")
        _check_positive(s.filters, "filters", f"{where}: stem")
        if self.head.filters < 0:
            raise SpecError(f"{where}: head filters must be >= 0, got {self.head.filters}")
        if not self.blocks:
            raise SpecError(f"{where}: no blocks")
        cin = s.filters
        for i, b in enumerate(self.blocks):
            _validate_block(b, cin, f"{where}: block {i} ({b.to_line()})")
            cin = b.filters

    # ---- cost model ------------------------------------------------------
    def layers(self) -> list[dict[str, Any]]:
        """Per-part rows: name, line, type, kernel, expansion, stride, filters,
        groups, output shape, parameters and MACs."""
        h, w, c = self.input_shape
        rows = []
        s = self.stem
        h, w = _conv_out(h, s.stride), _conv_out(w, s.stride)
        params = s.kernel * s.kernel * c * s.filters + BN_PARAMS * s.filters
        macs = h * w * s.kernel * s.kernel * c * s.filters
        rows.append(_row("stem", s.to_line(), "conv", s.kernel, 1, s.stride, s.filters, 1, (h, w, s.filters), params, macs))
        cin = s.filters
        for i, b in enumerate(self.blocks):
            p, m, (h, w) = block_cost(b, cin, h, w)
            rows.append(
                _row(f"block{i}", b.to_line(), b.type, b.kernel, b.expansion, b.stride, b.filters, b.groups, (h, w, b.filters), p, m)
            )
            cin = b.filters
        hf = self.head.filters
        params = macs = 0
        if hf:
            params += cin * hf + BN_PARAMS * hf
            macs += h * w * cin * hf
            cin = hf
        params += cin * self.num_classes + self.num_classes
        macs += cin * self.num_classes
        rows.append(_row("head", self.head.to_line(), "head", 1, 1, 1, hf, 1, (self.num_classes,), params, macs))
        return rows

    @property
    def params(self) -> int:
        return sum(r["params"] for r in self.layers())

    @property
    def macs(self) -> int:
        return sum(r["macs"] for r in self.layers())

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.num_classes,)


def _row(name, line, typ, k, e, s, f, g, shape, params, macs) -> dict[str, Any]:
    return {
        "name": name, "line": line, "type": typ, "kernel": k, "expansion": e, "stride": s,
        "filters": f, "groups": g, "output_shape": list(shape), "params": int(params), "macs": int(macs),
    }


def expanded_filters(b: Block, cin: int) -> int:
    return int(round(cin * b.expansion))


def se_filters(b: Block, cin: int) -> int:
    return max(1, int(cin * b.se))


def has_residual(b: Block, cin: int) -> bool:
    return b.skip and b.stride == 1 and cin == b.filters


def block_cost(b: Block, cin: int, h: int, w: int) -> tuple[int, int, tuple[int, int]]:
    """(parameters, MACs, (out_h, out_w)) of block ``b`` on a ``cin``-channel
    ``h`` x ``w`` input."""
    k, s, cout = b.kernel, b.stride, b.filters
    ho, wo = _conv_out(h, s), _conv_out(w, s)
    cexp = expanded_filters(b, cin)
    params = macs = 0
    expand = b.expansion != 1
    if b.type == "ibn_dw":
        if expand:
            params += cin * cexp + BN_PARAMS * cexp
            macs += h * w * cin * cexp
        params += k * k * cexp + BN_PARAMS * cexp
        macs += ho * wo * k * k * cexp
    elif b.type in ("ibn_fused", "ibn_gc"):
        g = b.groups if b.type == "ibn_gc" else 1
        if expand:
            params += k * k * (cin // g) * cexp + BN_PARAMS * cexp
            macs += ho * wo * k * k * (cin // g) * cexp
    elif b.type == "ibn_grouped":
        if expand:
            params += cin * cexp + BN_PARAMS * cexp
            macs += h * w * cin * cexp
        params += k * k * (cexp // b.groups) * cexp + BN_PARAMS * cexp
        macs += ho * wo * k * k * (cexp // b.groups) * cexp
    else:  # validated earlier
        raise SpecError(f"unknown block type {b.type!r}")
    if b.se:
        cse = se_filters(b, cin)
        params += cexp * cse + cse + cse * cexp + cexp
        macs += 2 * cexp * cse
    # projection (for a fused block without expansion it carries the stride)
    params += cexp * cout + BN_PARAMS * cout
    macs += ho * wo * cexp * cout
    return params, macs, (ho, wo)


def _check_kernel(k: Any, where: str) -> None:
    if not isinstance(k, int) or k < 1 or k % 2 == 0:
        raise SpecError(f"{where}: kernel must be an odd positive integer, got {k!r}")


def _check_stride(s: Any, where: str) -> None:
    if s not in (1, 2):
        raise SpecError(f"{where}: stride must be 1 or 2, got {s!r}")


def _check_positive(v: Any, what: str, where: str) -> None:
    if not isinstance(v, int) or v < 1:
        raise SpecError(f"{where}: {what} must be a positive integer, got {v!r}")


def _validate_block(b: Block, cin: int, where: str) -> None:
    if b.type not in BLOCK_TYPES:
        raise SpecError(f"{where}: unknown block type {b.type!r}; known: {', '.join(BLOCK_TYPES)}")
    _check_kernel(b.kernel, where)
    _check_stride(b.stride, where)
    _check_positive(b.filters, "filters", where)
    _check_positive(b.groups, "groups", where)
    if not isinstance(b.expansion, (int, float)) or b.expansion <= 0:
        raise SpecError(f"{where}: expansion must be positive, got {b.expansion!r}")
    cexp = expanded_filters(b, cin)
    if cexp < 1:
        raise SpecError(f"{where}: expansion {b.expansion} of {cin} channels leaves no channels")
    if b.activation is not None and b.activation not in ACTIVATIONS:
        raise SpecError(f"{where}: activation {b.activation!r} is not one of {', '.join(ACTIVATIONS)}")
    if not 0 <= b.se < 1:
        raise SpecError(f"{where}: se ratio must be in [0, 1), got {b.se}")
    if b.type in ("ibn_dw", "ibn_fused") and b.groups != 1:
        raise SpecError(f"{where}: {b.type} takes no group count (use ibn_gc or ibn_grouped)")
    if b.type == "ibn_gc":
        if b.expansion == 1:
            raise SpecError(f"{where}: ibn_gc needs an expansion other than 1 (its k x k expansion conv is the group conv)")
        if cin % b.groups or cexp % b.groups:
            raise SpecError(
                f"{where}: {b.groups} groups do not divide the {cin} input channels and {cexp} expanded channels"
            )
    if b.type == "ibn_grouped" and cexp % b.groups:
        raise SpecError(f"{where}: {b.groups} groups do not divide the {cexp} expanded channels")


def _from_fields(cls, d: Any, where: str):
    if not isinstance(d, dict):
        raise SpecError(f"{where}: expected an object, got {type(d).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        return _check_fields(cls(**d), where)
    except TypeError as e:
        raise SpecError(f"{where}: {e}") from None


_FIELD_TYPES = {"int": "a whole number", "float": "a number", "str": "a string", "bool": "true or false",
                "str | None": "a string or null"}


def _check_fields(obj: Any, where: str) -> Any:
    """Each scalar field of the dataclass ``obj`` holds a value of its declared
    type (a finite number for int and float; true/false is not a number)."""
    for f in fields(obj):
        if f.type not in _FIELD_TYPES:
            continue
        v = getattr(obj, f.name)
        number = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ok = {"int": number and isinstance(v, int) and abs(v) < 2 ** 31, "float": number,
              "str": isinstance(v, str), "bool": isinstance(v, bool),
              "str | None": v is None or isinstance(v, str)}[f.type]
        if not ok:
            raise SpecError(f"{where}: {f.name} must be {_FIELD_TYPES[f.type]}, got {v!r}")
    return obj


_NUM = r"(\d+(?:\.\d+)?)"
_BLOCK_RE = re.compile(
    rf"^(?P<prefix>[a-z]+)_k(?P<k>\d+)_e(?P<e>{_NUM[1:-1]})_s(?P<s>\d+)_c(?P<c>\d+)(?P<rest>(?:_[a-z0-9.]+)*)$"
)
_STEM_RE = re.compile(r"^stem_k(?P<k>\d+)_s(?P<s>\d+)_c(?P<c>\d+)$")
_HEAD_RE = re.compile(rf"^head_c(?P<c>\d+)(?:_d(?P<d>{_NUM[1:-1]}))?$")


def _num(text: str) -> float | int:
    v = float(text)
    return int(v) if v.is_integer() else v


def parse_block(text: str, where: str = "block") -> Block:
    """Parse a one-line block form such as ``gc_k3_e4_s1_c48_g3``."""
    t = text.strip()
    m = _BLOCK_RE.match(t)
    if not m:
        raise SpecError(
            f"{where}: cannot parse block {text!r}; expected TYPE_kK_eE_sS_cC[_gG][_seR][_relu6|_hswish][_noskip]"
            f" with TYPE one of {', '.join(_PREFIX)}"
        )
    prefix = m["prefix"]
    btype = _PREFIX.get(prefix) or (prefix if prefix in BLOCK_TYPES else None)
    if btype is None:
        raise SpecError(f"{where}: unknown block type {prefix!r} in {text!r}; known: {', '.join(_PREFIX)}")
    b = Block(type=btype, kernel=int(m["k"]), expansion=_num(m["e"]), stride=int(m["s"]), filters=int(m["c"]))
    for tok in [x for x in m["rest"].split("_") if x]:
        if re.fullmatch(r"g\d+", tok):
            b.groups = int(tok[1:])
        elif re.fullmatch(rf"se{_NUM}", tok):
            b.se = float(tok[2:])
        elif tok in ACTIVATIONS:
            b.activation = tok
        elif tok == "noskip":
            b.skip = False
        else:
            raise SpecError(f"{where}: unknown option {tok!r} in block {text!r}")
    return b


def parse_line(line: str, where: str = "spec line") -> tuple[Stem, list[Block], Head]:
    """Parse a model's one-line form: ``stem_... block block ... head_...``
    (the stem and head are optional and default to Stem() and Head())."""
    tokens = line.replace(",", " ").split()
    stem, head = Stem(), Head()
    blocks = []
    for tok in tokens:
        if tok.startswith("stem_"):
            m = _STEM_RE.match(tok)
            if not m:
                raise SpecError(f"{where}: cannot parse stem {tok!r}; expected stem_kK_sS_cC")
            stem = Stem(filters=int(m["c"]), kernel=int(m["k"]), stride=int(m["s"]))
        elif tok.startswith("head_"):
            m = _HEAD_RE.match(tok)
            if not m:
                raise SpecError(f"{where}: cannot parse head {tok!r}; expected head_cC[_dDROPOUT]")
            head = Head(filters=int(m["c"]), dropout=float(m["d"]) if m["d"] else 0.2)
        else:
            blocks.append(parse_block(tok, f"{where}: block {len(blocks)}"))
    return stem, blocks, head
