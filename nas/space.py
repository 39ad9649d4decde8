"""Search spaces as data, on top of the spec language.

A space is a JSON or YAML document::

    name: small32
    input_size: 32
    activation: relu
    stem: {filters: [16, 24], kernel: [3], stride: 1}
    head: {filters: [256, 512], dropout: 0.2}
    stages:
      - stride: 2
        filters: [24]            # absolute choices for the stage's output channels
        filter_mult: [0.75, 1.0] # ... each scaled by one of these (rounded to a multiple of 8)
        depth: [1, 2, 3]         # how many blocks the stage has
        choices:                 # every block position of the stage chooses from these
          type: [ibn_dw, ibn_fused, ibn_gc]
          kernel: [3, 5]
          expansion: [2, 4, 6]
          groups: [2, 4]         # GC-IBN group count (or group_size: [64] as in the Model Garden)
          ibn_gc: {expansion: [4, 6]}  # a type's own choices (the others keep the ones above)
        positions:               # optional per-position overrides, by index
          - {expansion: [8]}

Each block position is one hyperparameter whose values are its valid block
choices (``gc_k3_e4_g2``, ``dw_k5_e6``): the product of each type's choices,
less any the spec language rejects, so that every sampler and mutation draws
valid architectures only and the size counts valid ones. The first block of a stage carries its stride; all blocks of a stage output
its channels, and a block has a residual when its input and output match.
Every choice becomes one keras-tuner hyperparameter (fixed ones are left out),
so any oracle can sample the space; ``decode`` turns sampled values into a
:class:`ModelSpec` and ``encode`` finds the values of a given spec (the
released MobileNetEdgeTPUV2 sizes are points of ``edgetpu_v2``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from odml.errors import SpecError
from odml.zoo.spec import BLOCK_TYPES, Block, Head, ModelSpec, Stem, expanded_filters, round_filters

SCHEMA = 1
_CHOICE_KEYS = ("type", "kernel", "expansion", "groups", "group_size")
_STAGE_KEYS = ("stride", "filters", "filter_mult", "depth", "choices", "positions")
_SPACE_KEYS = ("name", "description", "input_size", "activation", "stem", "head", "stages", "dropout", "decoder",
               "reference", "scale")
_DECODER_KEYS = ("kind", "filters", "min_level", "max_level", "repeats", "fusion")


class SpaceError(SpecError):
    """A search space that cannot be searched."""


@dataclass
class Choices:
    type: list[str]
    kernel: list[int]
    expansion: list[float]
    groups: list[int] = field(default_factory=list)  # explicit GC-IBN group counts ...
    group_size: list[int] = field(default_factory=list)  # ... or channels per group (fitted per block)
    by_type: dict[str, "Choices"] = field(default_factory=dict)  # a block type's own kernels, expansions, groups
    _combos: list | None = field(default=None, init=False, repr=False, compare=False)

    def of(self, t: str) -> "Choices":
        """The choices a block of type ``t`` has (its own where the space says so)."""
        return self.by_type.get(t, self)

    def combos(self) -> list[tuple[str, int, float, Any]]:
        """Every valid (type, kernel, expansion, group token) of a block here:
        the product of each type's choices, less what the spec language
        rejects whatever the channels (an ibn_gc of expansion 1, for one).
        One hyperparameter of the search holds them, so that no sampler,
        mutation or oracle can draw an invalid block."""
        if self._combos is not None:
            return self._combos
        out = []
        for t in self.type:
            c = self.of(t)
            grouped = t in ("ibn_gc", "ibn_grouped")
            for k in c.kernel:
                for e in c.expansion:
                    for g in (_group_tokens(c) if grouped else [1]):
                        if _block_ok(t, k, e, g):
                            out.append((t, k, e, g))
        self._combos = out
        return out

    def count(self) -> int:
        return len(self.combos())


def block_token(combo: tuple[str, int, float, Any]) -> str:
    """A block choice as one hyperparameter value: gc_k3_e4_g2, dw_k5_e6, gc_k3_e4_size64."""
    t, k, e, g = combo
    tok = f"{t.replace('ibn_', '')}_k{k}_e{e:g}"
    return tok + (f"_{g}" if str(g).startswith("size") else f"_g{g}") if t in ("ibn_gc", "ibn_grouped") else tok


def _block_ok(t: str, k: int, e: float, g: Any) -> bool:
    """Whether the spec language accepts this block for channels that every
    group count divides (channel-dependent rules are check_groups')."""
    from odml.zoo.spec import _validate_block

    groups = 1 if str(g).startswith("size") else int(g)
    try:
        _validate_block(Block(type=t, kernel=k, expansion=e, stride=1, filters=8, groups=groups), 64 * groups, "")
    except SpecError:
        return False
    return True


@dataclass
class Stage:
    stride: int
    filters: list[int]
    filter_mult: list[float]
    depth: list[int]
    choices: Choices
    positions: list[Choices | None] = field(default_factory=list)

    def at(self, j: int) -> Choices:
        return self.positions[j] if j < len(self.positions) and self.positions[j] is not None else self.choices

    def channel_options(self) -> list[tuple[int, int, float]]:
        """(channels, base filters, multiplier) for every filter choice."""
        return [(round_filters(f, m), f, m) for f in self.filters for m in self.filter_mult]


@dataclass
class Decoder:
    """A segmentation space's head: the choices of Autoseg-EdgeTPU's BiFPN
    (zoo/segspec.py): the channels of every level, the levels (the logits'
    stride is 2**min_level; levels past the backbone's are pooled from its
    last), the cells repeated and how each node fuses its inputs."""

    filters: list[int]
    min_level: list[int]
    max_level: list[int]
    repeats: list[int]
    fusion: list[str]

    def count(self) -> int:
        levels = sum(1 for lo in self.min_level for hi in self.max_level if lo < hi)
        return len(self.filters) * levels * len(self.repeats) * len(self.fusion)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "bifpn", "filters": self.filters, "min_level": self.min_level, "max_level": self.max_level,
                "repeats": self.repeats, "fusion": self.fusion}


@dataclass
class SearchSpace:
    name: str
    input_size: int
    stem_filters: list[int]
    stem_kernel: list[int]
    stem_stride: int
    head_filters: list[int]
    stages: list[Stage]
    activation: str = "relu"
    dropout: float = 0.2
    description: str = ""
    decoder: Decoder | None = None  # a segmentation space: the head searched with the backbone
    reference: str = ""  # a zoo entry whose cost at the input size the space is scaled to (NAME@auto)
    scale: dict[str, Any] | None = None  # how it was scaled (width, depth, median and reference MACs)

    @property
    def task(self) -> str:
        """What the space's models do: segment (it has a decoder head) or classify."""
        return "segment" if self.decoder is not None else "classify"

    # ---- size and description -----------------------------------------
    def size(self) -> int:
        n = len(self.stem_filters) * len(self.stem_kernel) * len(self.head_filters)
        if self.decoder is not None:
            n *= self.decoder.count()
        for st in self.stages:
            per_depth = 0
            for d in st.depth:
                per_depth += math.prod(st.at(j).count() for j in range(d))
            n *= len(st.filters) * len(st.filter_mult) * per_depth
        return n

    def describe(self) -> dict[str, Any]:
        rows = []
        for i, st in enumerate(self.stages):
            for j in range(max(st.depth)):
                c = st.at(j)
                combos = c.combos()
                grouped = [c.of(t) for t in c.type if t in ("ibn_gc", "ibn_grouped")]
                rows.append({
                    "stage": i, "position": j, "stride": st.stride if j == 0 else 1,
                    "filters": sorted({ch for ch, _, _ in st.channel_options()}),
                    "depth": st.depth, "optional": j >= min(st.depth),
                    "type": c.type, "kernel": sorted({x[1] for x in combos}),
                    "expansion": sorted({x[2] for x in combos}),
                    "groups": sorted({g for x in grouped for g in x.groups}),
                    "group_size": sorted({g for x in grouped for g in x.group_size}),
                    "by_type": {t: _choice_dict(x) for t, x in c.by_type.items()},
                    "choices": c.count(),
                })
        size = self.size()
        return {
            "name": self.name, "description": self.description, "input_size": self.input_size,
            "stem": {"filters": self.stem_filters, "kernel": self.stem_kernel, "stride": self.stem_stride},
            "head": {"filters": self.head_filters, "dropout": self.dropout},
            "positions": rows, "size": size, "log10_size": round(math.log10(size), 2),
            "hyperparameters": len(self.dimensions()),
            **({"decoder": self.decoder.to_dict()} if self.decoder is not None else {}),
            **({"scale": self.scale} if self.scale else {}),
        }

    # ---- hyperparameters ---------------------------------------------------
    def dimensions(self) -> dict[str, list]:
        """Every choice with more than one value, by hyperparameter name."""
        dims: dict[str, list] = {}

        def add(name: str, values: list) -> None:
            if len(values) > 1:
                dims[name] = list(values)

        add("stem_filters", self.stem_filters)
        add("stem_kernel", self.stem_kernel)
        add("head_filters", self.head_filters)
        for i, st in enumerate(self.stages):
            add(f"s{i}_filters", st.filters)
            add(f"s{i}_mult", st.filter_mult)
            add(f"s{i}_depth", st.depth)
            for j in range(max(st.depth)):
                add(f"s{i}_b{j}_block", [block_token(x) for x in st.at(j).combos()])
        if self.decoder is not None:
            for k in ("filters", "min_level", "max_level", "repeats", "fusion"):
                add(f"decoder_{k}", getattr(self.decoder, k))
        return dims

    def declare(self, hp: Any) -> None:
        """Register the space's hyperparameters with a keras-tuner HyperParameters."""
        for name, values in self.dimensions().items():
            if any(isinstance(v, float) for v in values):  # one value type per choice: [0.75, 1, 1.5] -> floats
                values = [float(v) for v in values]
            hp.Choice(name, values, ordered=not isinstance(values[0], str))

    def decode(self, values: dict[str, Any], num_classes: int, name: str = "searched") -> Any:
        """The spec that ``values`` choose (missing values take the first
        choice): a ModelSpec, or for a space with a decoder a SegSpec (the
        blocks its backbone, the decoder its head)."""

        def v(key: str, options: list) -> Any:
            return values.get(key, options[0])

        stem = Stem(filters=int(v("stem_filters", self.stem_filters)), kernel=int(v("stem_kernel", self.stem_kernel)),
                    stride=self.stem_stride)
        blocks: list[Block] = []
        cin = stem.filters
        for i, st in enumerate(self.stages):
            cout = round_filters(int(v(f"s{i}_filters", st.filters)), float(v(f"s{i}_mult", st.filter_mult)))
            for j in range(int(v(f"s{i}_depth", st.depth))):
                combos = st.at(j).combos()
                tok = values.get(f"s{i}_b{j}_block", block_token(combos[0]))
                combo = next((x for x in combos if block_token(x) == tok), None)
                if combo is None:
                    raise SpaceError(f"space {self.name}: s{i}_b{j}_block {tok!r} is not one of its block choices")
                typ, k, exp, g = combo
                b = Block(type=typ, kernel=k, expansion=exp, stride=st.stride if j == 0 else 1, filters=cout)
                if typ in ("ibn_gc", "ibn_grouped"):
                    b.groups = _groups_for(g, b, cin)
                blocks.append(b)
                cin = cout
        spec = ModelSpec(name=name, input_shape=(self.input_size, self.input_size, 3), num_classes=int(num_classes),
                         stem=stem, blocks=blocks, head=Head(filters=int(v("head_filters", self.head_filters)),
                                                             dropout=self.dropout),
                         activation=self.activation)
        spec.validate(f"space {self.name}")
        if self.decoder is None:
            return spec
        from odml.zoo.segspec import SegHead, SegSpec

        dec = self.decoder
        head = SegHead(kind="bifpn", filters=int(v("decoder_filters", dec.filters)),
                       min_level=int(v("decoder_min_level", dec.min_level)),
                       max_level=int(v("decoder_max_level", dec.max_level)),
                       repeats=int(v("decoder_repeats", dec.repeats)), fusion=str(v("decoder_fusion", dec.fusion)))
        if head.min_level >= head.max_level:
            raise SpaceError(f"space {self.name}: decoder levels {head.min_level}-{head.max_level}: the lowest must "
                             "be below the highest")
        seg = SegSpec(name=name, backbone=spec.replace(num_classes=2), head=head, num_classes=int(num_classes))
        seg.validate(f"space {self.name}")
        return seg

    def encode(self, spec: Any) -> dict[str, Any] | None:
        """The hyperparameter values that decode to ``spec``'s architecture, or
        None when the spec is not a point of this space."""
        dims = self.dimensions()
        vals: dict[str, Any] = {}
        if self.decoder is not None:  # a segmentation spec: its backbone, then its head
            head, spec = getattr(spec, "head", None), getattr(spec, "backbone", None)
            dec = self.decoder
            if spec is None or getattr(head, "kind", None) != "bifpn" or head.filters not in dec.filters \
                    or head.min_level not in dec.min_level or head.max_level not in dec.max_level \
                    or head.repeats not in dec.repeats or head.fusion not in dec.fusion:
                return None
            vals.update(decoder_filters=head.filters, decoder_min_level=head.min_level,
                        decoder_max_level=head.max_level, decoder_repeats=head.repeats, decoder_fusion=head.fusion)
        elif getattr(spec, "stem", None) is None:  # not a model of the spec language (a segmentation model)
            return None
        if spec.stem.filters not in self.stem_filters or spec.stem.kernel not in self.stem_kernel \
                or spec.stem.stride != self.stem_stride or spec.head.filters not in self.head_filters:
            return None
        vals.update(stem_filters=spec.stem.filters, stem_kernel=spec.stem.kernel, head_filters=spec.head.filters)
        found = self._encode_stages(spec.blocks, 0, spec.stem.filters, 0)
        if found is None:
            return None
        vals.update(found)
        return {k: val for k, val in vals.items() if k in dims}

    def _encode_stages(self, blocks: list[Block], pos: int, cin: int, i: int) -> dict[str, Any] | None:
        if i == len(self.stages):
            return {} if pos == len(blocks) else None
        st = self.stages[i]
        for d in st.depth:
            part = blocks[pos:pos + d]
            if len(part) != d or len({b.filters for b in part}) != 1:
                continue
            for ch, f, m in st.channel_options():
                if ch != part[0].filters:
                    continue
                vals: dict[str, Any] = {f"s{i}_filters": f, f"s{i}_mult": m, f"s{i}_depth": d}
                c_in, ok = cin, True
                for j, b in enumerate(part):
                    if b.stride != (st.stride if j == 0 else 1) or b.se or not b.skip or b.activation:
                        ok = False
                        break
                    grouped = b.type in ("ibn_gc", "ibn_grouped")
                    combo = next((x for x in st.at(j).combos() if x[:3] == (b.type, b.kernel, b.expansion)
                                  and (_groups_for(x[3], b, c_in) if grouped else 1) == b.groups), None)
                    if combo is None:
                        ok = False
                        break
                    vals[f"s{i}_b{j}_block"] = block_token(combo)
                    c_in = b.filters
                if ok:
                    rest = self._encode_stages(blocks, pos + d, ch, i + 1)
                    if rest is not None:
                        return {**vals, **rest}
        return None

    # ---- scaling to the input ----------------------------------------------
    def draw_values(self, n: int, seed: int = 0, num_classes: int = 10) -> list[tuple[dict[str, Any], Any]]:
        """``n`` random architectures of the space (uniform over each choice):
        (hyperparameter values, spec) pairs."""
        import random

        rng = random.Random(seed)
        dims = self.dimensions()
        out = []
        for _ in range(n * 3):
            values = {k: rng.choice(v) for k, v in dims.items()}
            try:
                out.append((values, self.decode(values, num_classes)))
            except SpecError:
                continue
            if len(out) == n:
                break
        return out

    def draws(self, n: int, seed: int = 0, num_classes: int = 10) -> list[Any]:
        """The specs of ``draw_values``."""
        return [spec for _, spec in self.draw_values(n, seed, num_classes)]

    def median_macs(self, n: int = 48, seed: int = 0) -> int:
        macs = sorted(s.macs for s in self.draws(n, seed))
        return int(macs[len(macs) // 2]) if macs else 0

    def scaled(self, width: float, depth: float) -> "SearchSpace":
        """The space with every width (stem, stages, head) multiplied by
        ``width`` (rounded to a multiple of 8) and every depth choice by
        ``depth`` (at least 1)."""
        d = self.to_dict()
        d["stem"]["filters"] = sorted({round_filters(f, width) for f in self.stem_filters})
        if self.decoder is None:
            d["head"]["filters"] = sorted({round_filters(f, width) if f else 0 for f in self.head_filters})
        else:
            d.pop("head")
        for st in d["stages"]:
            st["filters"] = sorted({round_filters(f, width) for f in st["filters"]})
            st["depth"] = sorted({max(1, int(round(x * depth))) for x in st["depth"]})
            if "positions" in st:
                st["positions"] = st["positions"][:max(st["depth"])]
            for c in [st["choices"], *st.get("positions", []), *(st["choices"].get(t) for t in BLOCK_TYPES)]:
                if isinstance(c, dict) and c.get("group_size"):  # channels per group narrow with the widths
                    c["group_size"] = sorted({round_filters(g, width) for g in c["group_size"]})
        d["reference"] = self.reference
        sp = space_from_dict(d, f"space {self.name} scaled x{width:g} wide, x{depth:g} deep")
        return sp

    def fit_to(self, reference_macs: int) -> "SearchSpace":
        """The space scaled (width 0.25-1, depth 0.5-1) so that its median
        random draw costs about ``reference_macs`` at its input size; the
        least scaling whose median is within 15% of the closest."""
        grid = [(w, dp) for dp in (1.0, 0.75, 0.5) for w in (1.0, 0.75, 0.5, 0.35, 0.25)]
        tried = []
        for w, dp in grid:
            try:
                sp = self if (w, dp) == (1.0, 1.0) else self.scaled(w, dp)
            except SpaceError:  # group counts that do not divide the narrower widths: not a candidate scale
                continue
            sp.input_size = self.input_size
            med = sp.median_macs()
            tried.append((abs(math.log(max(1, med) / reference_macs)), -(w * dp), w, dp, med, sp))
        best = min(t[0] for t in tried)
        _, _, w, dp, med, sp = min((t for t in tried if t[0] <= best + math.log(1.15)), key=lambda t: (t[1], t[0]))
        sp.scale = {"width": w, "depth": dp, "median_macs": med, "reference": self.reference,
                    "reference_macs": int(reference_macs), "input_size": self.input_size,
                    "unscaled_median_macs": tried[0][4]}
        return sp

    # ---- serialisation -----------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        ch = _choice_dict
        return {
            "schema": SCHEMA, "name": self.name, "description": self.description, "input_size": self.input_size,
            "activation": self.activation, "dropout": self.dropout,
            **({"scale": self.scale} if self.scale else {}),  # (the reference is the built-in's: not a setting)
            "stem": {"filters": self.stem_filters, "kernel": self.stem_kernel, "stride": self.stem_stride},
            "head": {"filters": self.head_filters},
            **({"decoder": self.decoder.to_dict()} if self.decoder is not None else {}),
            "stages": [
                {"stride": st.stride, "filters": st.filters, "filter_mult": st.filter_mult, "depth": st.depth,
                 "choices": ch(st.choices), **({"positions": [ch(p) if p else {} for p in st.positions]}
                                               if st.positions else {})}
                for st in self.stages
            ],
        }


def _choice_dict(c: Choices) -> dict[str, Any]:
    d: dict[str, Any] = {"type": c.type, "kernel": c.kernel, "expansion": c.expansion}
    if c.groups:
        d["groups"] = c.groups
    if c.group_size:
        d["group_size"] = c.group_size
    for t, sub in c.by_type.items():
        d[t] = {k: v for k, v in _choice_dict(sub).items() if k != "type"}
    return d


def _group_tokens(c: Choices) -> list:
    """GC-IBN group choices as hyperparameter values: counts as ints, group
    sizes as 'size64' strings (one hyperparameter holds both kinds)."""
    toks: list = list(c.groups) + [f"size{s}" for s in c.group_size]
    if not toks:
        return [1]
    if all(isinstance(t, int) for t in toks) or all(isinstance(t, str) for t in toks):
        return toks
    return [str(t) for t in toks]  # keras-tuner wants one value type per choice


def _groups_for(token: Any, b: Block, cin: int) -> int:
    from odml.zoo.families.ibn import fit_groups

    cexp = expanded_filters(b, cin)
    text = str(token)
    if text.startswith("size"):
        return fit_groups(cexp // int(text[4:]), cin, cexp)
    return int(text)


# ---- loading and validation ----------------------------------------------------
def _list(d: dict, key: str, kind: type, where: str, default: Any = None) -> list:
    if key not in d:
        if default is None:
            raise SpaceError(f"{where}: missing '{key}'")
        return list(default)
    v = d[key]
    vals = v if isinstance(v, list) else [v]
    if not vals:
        raise SpaceError(f"{where}: '{key}' has no choices (an empty space)")
    out = []
    for x in vals:
        if kind is float and isinstance(x, (int, float)) and not isinstance(x, bool):
            out.append(int(x) if float(x).is_integer() else float(x))
        elif kind is int and isinstance(x, int) and not isinstance(x, bool):
            out.append(x)
        elif kind is str and isinstance(x, str):
            out.append(x)
        else:
            raise SpaceError(f"{where}: '{key}' choice {x!r} is not a{'n' if kind is int else ''} {kind.__name__}")
    if len(set(out)) != len(out):
        raise SpaceError(f"{where}: '{key}' repeats a choice: {out}")
    return out


def _check_keys(d: Any, known: tuple[str, ...], where: str) -> dict:
    if not isinstance(d, dict):
        raise SpaceError(f"{where}: expected a mapping, got {type(d).__name__}")
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise SpaceError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return d


def _choices(d: Any, where: str, base: Choices | None = None, by_type: bool = True) -> Choices:
    d = _check_keys(d, _CHOICE_KEYS + (BLOCK_TYPES if by_type else ()), where)
    c = Choices(
        type=_list(d, "type", str, where, base.type if base else None),
        kernel=_list(d, "kernel", int, where, base.kernel if base else None),
        expansion=_list(d, "expansion", float, where, base.expansion if base else None),
        groups=_list(d, "groups", int, where, base.groups if base else []) if "groups" in d or base else [],
        group_size=_list(d, "group_size", int, where, base.group_size if base else []) if "group_size" in d or base else [],
    )
    if base and ("groups" in d) != ("group_size" in d):  # an override of one kind replaces the other
        c.group_size = c.group_size if "group_size" in d else []
        c.groups = c.groups if "groups" in d else []
    for t in c.type:
        if t not in BLOCK_TYPES:
            raise SpaceError(f"{where}: unknown block type {t!r}; known: {', '.join(BLOCK_TYPES)}")
    for k in c.kernel:
        if k < 1 or k % 2 == 0:
            raise SpaceError(f"{where}: kernel {k} must be odd and positive")
    for e in c.expansion:
        if e <= 0:
            raise SpaceError(f"{where}: expansion {e} must be positive")
    for g in c.groups + c.group_size:
        if g < 1:
            raise SpaceError(f"{where}: group choice {g} must be at least 1")
    own = {t: d[t] for t in BLOCK_TYPES if t in d} if by_type else {}
    inherited = {t: x for t, x in (base.by_type.items() if base else ()) if t not in own and t in c.type}
    for t, sub in own.items():  # a type's own choices: {ibn_gc: {expansion: [2, 4]}}
        if t not in c.type:
            raise SpaceError(f"{where}: choices given for {t}, which is not one of its types ({', '.join(c.type)})")
        if not isinstance(sub, dict) or "type" in sub:
            raise SpaceError(f"{where}: {t}: expected a mapping of kernel, expansion, groups or group_size")
        parent = base.by_type.get(t, c) if base else c
        c.by_type[t] = _choices({**sub, "type": [t]}, f"{where}: {t}", parent, by_type=False)
    c.by_type.update(inherited)
    if any(c.of(t).groups == [] and c.of(t).group_size == [] for t in c.type if t in ("ibn_gc", "ibn_grouped")):
        raise SpaceError(f"{where}: ibn_gc needs 'groups' (counts) or 'group_size' choices")
    if by_type and not c.combos():
        raise SpaceError(f"{where}: no valid block: every combination of its types, kernels and expansions is "
                         "rejected by the spec language (ibn_gc needs an expansion other than 1)")
    return c


def space_from_dict(d: Any, where: str = "space") -> SearchSpace:
    d = _check_keys(d, _SPACE_KEYS + ("schema",), where)
    stem = _check_keys(d.get("stem", {}), ("filters", "kernel", "stride"), f"{where}: stem")
    head = _check_keys(d.get("head", {}), ("filters", "dropout"), f"{where}: head")
    stages_raw = d.get("stages")
    if not isinstance(stages_raw, list) or not stages_raw:
        raise SpaceError(f"{where}: 'stages' must be a non-empty list (an empty space has nothing to search)")
    input_size = d.get("input_size", 224)
    if not isinstance(input_size, int) or input_size < 8:
        raise SpaceError(f"{where}: input_size must be an integer of at least 8, got {input_size!r}")
    stem_stride = stem.get("stride", 2)
    if stem_stride not in (1, 2):
        raise SpaceError(f"{where}: stem: stride must be 1 or 2, got {stem_stride!r}")
    stages = []
    for i, s in enumerate(stages_raw):
        w = f"{where}: stage {i}"
        s = _check_keys(s, _STAGE_KEYS, w)
        if s.get("stride") not in (1, 2):
            raise SpaceError(f"{w}: stride must be 1 or 2, got {s.get('stride')!r}")
        base = _choices(s.get("choices"), f"{w}: choices")
        positions_raw = s.get("positions", [])
        if not isinstance(positions_raw, list):
            raise SpaceError(f"{w}: 'positions' must be a list")
        positions = [(_choices(p, f"{w} position {j}", base) if p else None) for j, p in enumerate(positions_raw)]
        st = Stage(stride=s["stride"], filters=_list(s, "filters", int, w), filter_mult=_list(s, "filter_mult", float, w, [1.0]),
                   depth=_list(s, "depth", int, w), choices=base, positions=positions)
        if any(x < 1 for x in st.depth):
            raise SpaceError(f"{w}: depth choices must be at least 1, got {st.depth}")
        if any(x < 1 for x in st.filters) or any(m <= 0 for m in st.filter_mult):
            raise SpaceError(f"{w}: filters and filter_mult must be positive")
        if len(positions) > max(st.depth):
            raise SpaceError(f"{w}: {len(positions)} position overrides for at most {max(st.depth)} blocks")
        stages.append(st)
    dropout = head.get("dropout", d.get("dropout", 0.2))
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise SpaceError(f"{where}: head: dropout must be a number in [0, 1), got {dropout!r}")
    sp = SearchSpace(
        name=str(d.get("name", "custom")), description=str(d.get("description", "")), input_size=input_size,
        stem_filters=_list(stem, "filters", int, f"{where}: stem"), stem_kernel=_list(stem, "kernel", int, f"{where}: stem", [3]),
        stem_stride=stem_stride, head_filters=_list(head, "filters", int, f"{where}: head", [1280]),
        stages=stages, activation=str(d.get("activation", "relu")),
        dropout=float(dropout), reference=str(d.get("reference", "") or ""),
        scale=d.get("scale") if isinstance(d.get("scale"), dict) else None,
    )
    if "decoder" in d:
        if "head" in d:
            raise SpaceError(f"{where}: a space with a decoder segments: its head is the decoder; drop 'head'")
        sp.head_filters, sp.dropout = [0], 0.0
        sp.decoder = _decoder(d["decoder"], sp, f"{where}: decoder")
    check_groups(sp, where)
    return sp


def _decoder(d: Any, sp: SearchSpace, where: str) -> Decoder:
    """A space's decoder section, checked against its backbone: the lowest
    level must be one the backbone reaches (its stride-2**level features)."""
    from odml.zoo.segspec import FUSIONS

    d = _check_keys(d, _DECODER_KEYS, where)
    if d.get("kind", "bifpn") != "bifpn":
        raise SpaceError(f"{where}: kind {d.get('kind')!r}: the searched decoder is a BiFPN ('bifpn')")
    dec = Decoder(filters=_list(d, "filters", int, where, [64]), min_level=_list(d, "min_level", int, where, [3]),
                  max_level=_list(d, "max_level", int, where, [6]), repeats=_list(d, "repeats", int, where, [2]),
                  fusion=_list(d, "fusion", str, where, ["sum"]))
    if any(f < 1 for f in dec.filters) or any(r < 1 for r in dec.repeats):
        raise SpaceError(f"{where}: filters and repeats must be at least 1")
    bad = [f for f in dec.fusion if f not in FUSIONS]
    if bad:
        raise SpaceError(f"{where}: fusion {bad[0]!r} is not one of {', '.join(FUSIONS)}")
    reach = int(math.log2(sp.stem_stride * math.prod(st.stride for st in sp.stages)))
    if not all(2 <= lv <= 10 for lv in dec.min_level + dec.max_level):
        raise SpaceError(f"{where}: levels must be between 2 and 10 (stride 4 to 1024)")
    if max(dec.min_level) > reach:
        raise SpaceError(f"{where}: min_level {max(dec.min_level)}: the backbone reaches level {reach} "
                         f"(stride {2 ** reach}); the lowest level must be one it computes")
    if not any(lo < hi for lo in dec.min_level for hi in dec.max_level):
        raise SpaceError(f"{where}: no min_level is below a max_level")
    return dec


def check_groups(sp: SearchSpace, where: str) -> None:
    """Every explicit group count must divide the channels it meets, for every
    combination of filters, multipliers and expansions the space allows."""
    prev = sorted({(c, f"stem filters {c}") for c in sp.stem_filters})
    for i, st in enumerate(sp.stages):
        own = [(ch, f"filters {f} x filter_mult {m:g}") for ch, f, m in st.channel_options()]
        for j in range(max(st.depth)):
            c = st.at(j)
            for t, _k, e, g in c.combos():
                if t not in ("ibn_gc", "ibn_grouped") or str(g).startswith("size"):
                    continue
                for cin, why in (prev if j == 0 else own):
                    cexp = int(round(cin * e))
                    if (t == "ibn_gc" and (cin % g or cexp % g)) or cexp % g:
                        raise SpaceError(
                            f"{where}: stage {i} block {j}: {t} group count {g} does not divide the "
                            f"{cin} input / {cexp} expanded channels ({why}, expansion {e:g})")
        prev = own


SCALES = ("auto", "full")


def split_scale(name: str) -> tuple[str, str | None]:
    """``NAME@auto`` / ``NAME@full`` -> (NAME, the scale asked for)."""
    base, sep, how = str(name).rpartition("@")
    if not sep:
        return str(name), None
    if how not in SCALES:
        raise SpaceError(f"--space {name}: after '@' choose auto (scaled to the input size) or full (as written)")
    return base, how


def space_for_input(name: str, input_size: int | None) -> SearchSpace:
    """The space ``name`` at ``input_size`` (None: its own): ``NAME@auto``,
    or a space with a reference model searched at another input size than
    its own, is scaled so that its median draw costs what the reference
    costs at that size (``space.scale`` says how); ``NAME@full`` as written."""
    base, how = split_scale(name)
    sp = load_space(base)
    own = sp.input_size
    if input_size is not None:
        sp.input_size = input_size
    if how == "full" or (how is None and (sp.input_size == own or not sp.reference)):
        return sp
    if not sp.reference:
        raise SpaceError(f"--space {name}: space {sp.name} names no reference model to scale to (a 'reference' "
                         "zoo entry in the space file)")
    from odml.zoo import create_spec

    try:
        ref = create_spec(sp.reference, num_classes=10, input_size=sp.input_size)
    except SpecError as e:
        raise SpaceError(f"space {sp.name}: reference {sp.reference!r}: {e}") from None
    return sp.fit_to(ref.macs)


def load_space(name_or_path: str | Path) -> SearchSpace:
    """A built-in space by name, or a JSON / YAML space file."""
    text_name = str(name_or_path)
    if text_name in BUILTIN:
        return BUILTIN[text_name]()
    p = Path(name_or_path)
    if not p.is_file():
        raise SpaceError(f"{p}: no such space file (built-in spaces: {', '.join(BUILTIN)})")
    from odml.documents import read_document

    data = read_document(p, "space", SpaceError)
    return space_from_dict(data, str(p))


# ---- built-in spaces -------------------------------------------------------------
_ALL_TYPES = ["ibn_dw", "ibn_fused", "ibn_gc"]


def edgetpu_v2_space() -> SearchSpace:
    """The MobileNetEdgeTPUV2 macro-architecture (7 stages, strides and the
    stem/head layout of the Model Garden) with every block searchable; the
    released tiny, xs, s, m and l are points of it."""
    from odml.zoo.families.ibn import V2_GROUPS, V2_SIZES

    free = {"type": _ALL_TYPES, "kernel": [3, 5, 7], "expansion": [1, 2, 4, 6, 8], "group_size": [64, 128],
            "ibn_gc": {"expansion": [2, 4, 6, 8]}}  # a GC-IBN's k x k expansion conv is its group conv
    depth_choices = [[1], [1, 2, 3], [2, 3, 4, 5], [2, 3, 4, 5], [2, 3, 4, 5], [2, 3, 4, 5], [1, 2]]
    stages = []
    for gi, group in enumerate(V2_GROUPS):
        filters = sorted({sizes[0][gi] for sizes in V2_SIZES.values()})
        stages.append({"stride": group[0][3], "filters": filters, "depth": depth_choices[gi], "choices": free})
    return space_from_dict({
        "name": "edgetpu_v2", "input_size": 224, "reference": "mobilenet_edgetpu_v2_tiny",
        "description": "MobileNetEdgeTPUV2 macro-architecture, every block searchable (released sizes are points)",
        "stem": {"filters": sorted({s[1] for s in V2_SIZES.values()}), "kernel": [3, 5, 7], "stride": 2},
        "head": {"filters": sorted({s[3] for s in V2_SIZES.values()}), "dropout": 0.2},
        "stages": stages,
    }, "space edgetpu_v2")


def small32_space() -> SearchSpace:
    """A small space for 32x32 inputs (the embedded digits, CIFAR-sized data):
    a stride-2 stem as in the zoo models, then four stages (16x16 down to 2x2)
    of every block type, kernels 3-7, expansions 2-6 and three widths."""
    blocks = {"type": _ALL_TYPES, "kernel": [3, 5, 7], "expansion": [2, 4, 6], "groups": [2, 4]}
    return space_from_dict({
        "name": "small32", "input_size": 32,
        "description": "32x32 inputs: stride-2 stem, 4 searchable stages (IBN, fused IBN, GC-IBN)",
        "stem": {"filters": [16, 24, 32], "kernel": [3], "stride": 2},
        "head": {"filters": [256, 512], "dropout": 0.2},
        "stages": [
            {"stride": 1, "filters": [16], "depth": [1], "choices": {"type": ["ibn_fused", "ibn_dw"], "kernel": [3],
                                                                     "expansion": [1, 2]}},
            {"stride": 2, "filters": [24], "filter_mult": [0.5, 1.0, 1.5], "depth": [1, 2, 3], "choices": blocks},
            {"stride": 2, "filters": [40], "filter_mult": [0.5, 1.0, 1.5], "depth": [1, 2, 3], "choices": blocks},
            {"stride": 2, "filters": [80], "filter_mult": [0.5, 1.0, 1.5], "depth": [1, 2, 3], "choices": blocks},
        ],
    }, "space small32")


def autoseg64_space() -> SearchSpace:
    """A small segmentation space for 64x64 inputs (the generated shapes-seg
    scenes): a stride-2 stem, five stages down to stride 32 of every block
    type, and Autoseg-EdgeTPU's BiFPN head searched with them (channels,
    levels 3 up to 5-7, 1-3 cells, plain or weighted fusion): the Model
    Garden's Autoseg search at a size a laptop trains."""
    blocks = {"type": _ALL_TYPES, "kernel": [3, 5], "expansion": [2, 4, 6], "groups": [2, 4]}
    return space_from_dict({
        "name": "autoseg64", "input_size": 64,
        "description": "64x64 segmentation: stride-2 stem, 5 searchable stages (IBN, fused IBN, GC-IBN), BiFPN head",
        "stem": {"filters": [16, 24], "kernel": [3], "stride": 2},
        "stages": [
            {"stride": 1, "filters": [16], "depth": [1], "choices": {"type": ["ibn_fused", "ibn_dw"], "kernel": [3],
                                                                     "expansion": [1, 2]}},
            {"stride": 2, "filters": [24], "filter_mult": [0.5, 1.0], "depth": [1, 2], "choices": blocks},
            {"stride": 2, "filters": [32], "filter_mult": [0.5, 1.0, 1.5], "depth": [1, 2], "choices": blocks},
            {"stride": 2, "filters": [64], "filter_mult": [0.5, 1.0, 1.5], "depth": [1, 2], "choices": blocks},
            {"stride": 2, "filters": [96], "filter_mult": [0.5, 1.0], "depth": [1, 2], "choices": blocks},
        ],
        "decoder": {"filters": [32, 48, 64], "min_level": [3], "max_level": [5, 6, 7], "repeats": [1, 2, 3],
                    "fusion": ["sum", "weighted"]},
    }, "space autoseg64")


BUILTIN = {"edgetpu_v2": edgetpu_v2_space, "small32": small32_space, "autoseg64": autoseg64_space}
