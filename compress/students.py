"""The teacher (the user's pre-trained Keras classifier) and the students
(zoo names with width multipliers, spec files, or sizes derived from the
teacher's MACs). A text teacher (a model trained by `odml train pqrnn|mobilebert*`,
its .text.json beside it) takes students of its own family that read the same
input (projection or WordPiece ids), narrower by a width multiplier."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from odml.compress.recipe import RecipeError
from odml.errors import OdmlError, SpecError
from odml.zoo.spec import ModelSpec


class TeacherError(OdmlError):
    """A teacher that cannot be used."""


@dataclass
class Teacher:
    path: Path
    model: Any
    input_shape: tuple[int, ...]
    num_classes: int
    params: int
    macs: int
    text: Any = None  # TextModelInfo of a text teacher


@dataclass
class TextSpec:
    """A text student: a pQRNN or MobileBERT configuration, with what the
    image specs offer to compress (name, params, MACs, one-line form)."""

    name: str
    config: Any  # PQRNNConfig | MobileBertConfig

    @property
    def family(self) -> str:
        return "pqrnn" if hasattr(self.config, "features") else "mobilebert"

    @property
    def params(self) -> int:
        return self.config.params

    @property
    def macs(self) -> int:
        """Multiply-adds of the weights applied at every position (attention
        products of MobileBERT added); the embedding lookup costs none."""
        c = self.config
        if self.family == "pqrnn":
            return (c.params - (2 * c.hidden * c.num_classes + c.num_classes)) * c.max_len
        per_pos = c.encoder_params - c.vocab * c.embedding - (c.max_positions + c.type_vocab) * c.hidden
        return per_pos * c.seq_len + c.layers * 2 * c.seq_len * c.seq_len * c.intra + c.hidden * (c.hidden + c.num_classes)

    def to_line(self) -> str:
        c = self.config
        keys = ("max_len", "features", "bottleneck", "hidden", "layers") if self.family == "pqrnn" else \
            ("seq_len", "vocab", "layers", "hidden", "intra", "intermediate", "ffn", "heads")
        return f"{self.family}(" + ",".join(f"{k}={getattr(c, k)}" for k in keys) + ")"

    def replace(self, name: str) -> "TextSpec":
        return TextSpec(name, self.config)

    def validate(self, where: str = "") -> None:
        try:
            self.config.validate()
        except SpecError as e:
            raise RecipeError(f"student {where}: {e}") from None

    def build(self):
        from odml.train.text import build_text_model

        return build_text_model(self.config, self.name)


@dataclass
class TextArrays:
    """A text dataset featurized for the teacher (and its students): arrays
    of model inputs, in the shape compress expects of image data."""

    x_train: Any
    y_train: Any
    x_val: Any
    y_val: Any
    class_names: list[str]
    source: str
    notes: list[str]
    texts_train: list[str] | None = None
    info: Any = None  # the teacher's TextModelInfo: how texts become inputs

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def train_inputs(self, epoch: int, seed: int, distortion: float) -> Any:
        """The training inputs of one epoch: the texts distorted afresh (the
        same for a given seed and epoch, so a resumed run sees what it would
        have seen), or the fixed inputs when distortion is off."""
        if not distortion or self.texts_train is None:
            return self.x_train
        import random

        from odml.data.projection import distort

        rng = random.Random(seed * 100_003 + epoch)
        return self.info.featurize([distort(t, rng, distortion) for t in self.texts_train])[0]


def text_arrays(teacher: "Teacher", data: str, val_split: float, seed: int) -> TextArrays:
    from odml.data.text import load_text
    from odml.data.textmodel import is_text_data
    from odml.errors import DataError

    if not is_text_data(data):
        raise DataError(f"--data {data}: the teacher {teacher.path} is a text model; give a .tsv or .csv of labelled texts")
    ds = load_text(data, None, None, None, val_split, seed)
    if teacher.text.labels and ds.num_classes == teacher.num_classes and list(ds.classes) != list(teacher.text.labels):
        raise DataError(f"{data}: classes {ds.classes} differ from the teacher's {teacher.text.labels}")
    x_tr, cut_tr = teacher.text.featurize(ds.texts_train)
    x_va, cut_va = teacher.text.featurize(ds.texts_val)
    notes = list(ds.notes)
    if cut_tr or cut_va:
        notes.append(f"{cut_tr + cut_va} texts longer than the teacher's {teacher.text.length} tokens were cut")
    return TextArrays(x_tr, ds.y_train, x_va, ds.y_val, list(ds.classes), str(data), notes, list(ds.texts_train),
                      teacher.text)


def text_teacher_spec(t: "Teacher") -> TextSpec:
    from odml.zoo.textconfig import MobileBertConfig, PQRNNConfig

    cls = PQRNNConfig if t.text.family == "pqrnn" else MobileBertConfig
    known = set(cls.__dataclass_fields__)
    return TextSpec("teacher", cls(**{k: v for k, v in t.text.config.items() if k in known}))


def _scaled(spec: TextSpec, width: float, name: str) -> TextSpec:
    """``spec`` narrower (or wider) by ``width``, reading the same input."""
    from dataclasses import replace

    c = spec.config
    if spec.family == "pqrnn":
        c = replace(c, bottleneck=max(4, round(c.bottleneck * width)), hidden=max(2, round(c.hidden * width)))
    else:
        c = replace(c, hidden=max(8, round(c.hidden * width)), intra=c.heads * max(1, round(c.intra * width / c.heads)),
                    intermediate=max(4, round(c.intermediate * width)))
    return TextSpec(name, c)


def load_teacher(path: str | Path) -> Teacher:
    """Load (safe_mode on) and check that the model is an image classifier:
    one (H, W, C) input and one (classes,) output."""
    from odml.zoo.builder import count_macs, trainable_params
    from odml.zoo.load import load_keras_model

    p = Path(path)
    try:
        model = _load_savedmodel(p) if p.is_dir() else load_keras_model(p)
    except OdmlError as e:
        raise TeacherError(f"teacher {e}") from None
    ins, outs = model.inputs, model.outputs
    if len(ins) != 1 or len(outs) != 1:
        raise TeacherError(f"teacher {p}: has {len(ins)} inputs and {len(outs)} outputs; a classifier has one of each")
    ishape, oshape = tuple(ins[0].shape[1:]), tuple(outs[0].shape[1:])
    text = None
    if not p.is_dir():
        from odml.data.textmodel import load_info

        text = load_info(p)
    if text is not None:
        if None in ishape or len(oshape) != 1 or oshape[0] is None or oshape[0] < 2:
            raise TeacherError(f"teacher {p}: a text classifier needs a static input and a (classes,) output, "
                               f"got {ishape} -> {oshape}")
        t = Teacher(path=p, model=model, input_shape=tuple(int(v) for v in ishape), num_classes=int(oshape[0]),
                    params=trainable_params(model), macs=0, text=text)
        t.macs = text_teacher_spec(t).macs
        return t
    if len(ishape) != 3 or None in ishape:
        raise TeacherError(f"teacher {p}: input shape {ishape} is not an image (height, width, channels)")
    if len(oshape) != 1 or oshape[0] is None or oshape[0] < 2:
        raise TeacherError(f"teacher {p}: output shape {oshape} is not a classifier's (classes,) with 2 or more classes")
    try:
        macs = count_macs(model)
    except Exception:  # a layer type we do not count: the size derivation then uses parameters
        macs = 0
    return Teacher(path=p, model=model, input_shape=tuple(int(v) for v in ishape), num_classes=int(oshape[0]),
                   params=trainable_params(model), macs=int(macs))


def _load_savedmodel(p: Path) -> Any:
    """A Keras model saved in the SavedModel format (``model.save(folder)``).
    Its functions are traced graphs, not Python, so there is no code to run."""
    from odml._tf import keras, quiet_stderr_fd
    import odml.zoo.blocks  # noqa: F401  (registers odml's custom layers)

    if not (p / "saved_model.pb").is_file():
        raise TeacherError(f"teacher {p}: folder without saved_model.pb (not a SavedModel)")
    K = keras()
    try:
        with quiet_stderr_fd():
            model = K.models.load_model(p, compile=False)
    except Exception as e:
        msg = " ".join(str(e).split())[:300]
        raise TeacherError(f"teacher {p}: cannot load the SavedModel as a Keras model: {type(e).__name__}: {msg}") from None
    if not isinstance(model, K.Model) or not hasattr(model, "inputs") or not model.inputs:
        raise TeacherError(f"teacher {p}: the SavedModel is not a Keras model (save it with model.save)")
    return model


_ZOO_RE = re.compile(r"^(?P<name>[A-Za-z0-9_]+)(?:@(?P<width>\d+(?:\.\d+)?))?$")


def resolve_students(items: list[str], teacher: Teacher) -> list[tuple[str, ModelSpec]]:
    """``name@width`` zoo entries and spec files, fitted to the teacher's input
    and classes. Labels are unique and safe as file names."""
    from odml.zoo.registry import create_spec, list_models

    if teacher.text is not None:
        return _resolve_text_students(items, teacher)
    out: list[tuple[str, ModelSpec]] = []
    h, w, c = teacher.input_shape
    for item in items:
        item = item.strip()
        if not item:
            continue
        p = Path(item)
        if p.suffix.lower() in (".json", ".yaml", ".yml") or p.exists():
            try:
                spec = ModelSpec.load(p)
            except SpecError as e:
                raise RecipeError(f"student {e}") from None
            if spec.input_shape[2] != c:
                raise RecipeError(f"student {p}: {spec.input_shape[2]} input channels, the teacher has {c}")
            spec = spec.replace(input_shape=(h, w, c), num_classes=teacher.num_classes)
            label = p.stem
        else:
            m = _ZOO_RE.match(item)
            if not m or m["name"] not in list_models():
                raise RecipeError(f"student {item!r}: not a zoo name (NAME or NAME@WIDTH, see 'odml zoo list') "
                                  "nor a spec file")
            width = float(m["width"] or 1.0)
            try:
                spec = create_spec(m["name"], num_classes=teacher.num_classes, input_size=(h, w), width=width)
            except SpecError as e:
                raise RecipeError(f"student {item!r}: {e}") from None
            label = m["name"].replace("mobilenet_edgetpu_", "") + (f"_w{width:g}" if m["width"] else "")
        spec.validate(label)
        out.append((label, spec))
    return _unique(out)


def derive_students(sizes: list[float], teacher: Teacher, family: str = "mobilenet_edgetpu_v2_tiny"
                    ) -> list[tuple[str, ModelSpec]]:
    """For each fraction f, the ``family`` member whose width multiplier gives
    about f x the teacher's MACs (parameters when MACs are unknown)."""
    from odml.zoo.registry import create_spec

    if teacher.text is not None:
        return _derive_text_students(sizes, teacher)
    h, w, c = teacher.input_shape
    budget_of = (lambda s: s.macs) if teacher.macs else (lambda s: s.params)
    total = teacher.macs or teacher.params

    def spec_at(width: float) -> ModelSpec:
        return create_spec(family, num_classes=teacher.num_classes, input_size=(h, w), width=width)

    out = []
    for f in sorted(sizes, reverse=True):
        target = f * total
        lo, hi = 0.05, 4.0
        for _ in range(30):  # bisection on the width multiplier (cost grows with it)
            mid = (lo + hi) / 2
            if budget_of(spec_at(mid)) > target:
                hi = mid
            else:
                lo = mid
        width = round(lo, 3)
        spec = spec_at(width)
        if budget_of(spec) > target * 1.5:
            raise RecipeError(f"sizes: {f:g} of the teacher ({target:,.0f} {'MACs' if teacher.macs else 'params'}) "
                              f"is below the smallest {family} ({budget_of(spec):,})")
        out.append((f"{family.replace('mobilenet_edgetpu_', '')}_w{width:g}", spec))
    return _unique(out)


def _resolve_text_students(items: list[str], teacher: Teacher) -> list[tuple[str, TextSpec]]:
    """``family@width`` (pqrnn@0.5, mobilebert_edgetpu_xs@0.25) or a preset
    (pqrnn_tiny): the configuration of that name, narrowed by the width, with
    the teacher's input (projection or vocabulary and length) and classes."""
    from dataclasses import replace

    from odml.zoo.textconfig import TEXT_MODELS, text_config

    base = text_teacher_spec(teacher)
    out = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        m = _ZOO_RE.match(item)
        if not m or m["name"] not in TEXT_MODELS:
            raise RecipeError(f"student {item!r}: not a text model (NAME or NAME@WIDTH with NAME one of "
                              f"{', '.join(TEXT_MODELS)})")
        cfg = text_config(m["name"])
        family = "pqrnn" if m["name"].startswith("pqrnn") else "mobilebert"
        if family != base.family:
            raise RecipeError(f"student {item!r}: a {base.family} teacher takes {base.family} students "
                              "(they must read the same input)")
        same_input = ({"max_len": base.config.max_len, "features": base.config.features} if family == "pqrnn" else
                      {"seq_len": base.config.seq_len, "vocab": base.config.vocab,
                       "max_positions": base.config.max_positions})
        cfg = replace(cfg, num_classes=teacher.num_classes, **same_input)
        width = float(m["width"] or 1.0)
        label = m["name"] + (f"_w{width:g}" if m["width"] else "")
        spec = _scaled(TextSpec(label, cfg), width, label)
        spec.validate(item)
        out.append((label, spec))
    return _unique(out)


def _derive_text_students(sizes: list[float], teacher: Teacher) -> list[tuple[str, TextSpec]]:
    """The teacher's own architecture narrowed until it has about f x its MACs."""
    base = text_teacher_spec(teacher)
    out = []
    for f in sorted(sizes, reverse=True):
        target = f * base.macs
        lo, hi = 0.01, 1.0
        for _ in range(30):
            mid = (lo + hi) / 2
            if _scaled(base, mid, "x").macs > target:
                hi = mid
            else:
                lo = mid
        width = round(lo, 3)
        spec = _scaled(base, width, f"{base.family}_w{width:g}")
        if spec.macs > target * 1.5:
            raise RecipeError(f"sizes: {f:g} of the teacher ({target:,.0f} MACs) is below the narrowest "
                              f"{base.family} ({spec.macs:,})")
        out.append((spec.name, spec))
    return _unique(out)


def _unique(items: list[tuple[str, ModelSpec]]) -> list[tuple[str, ModelSpec]]:
    seen: dict[str, int] = {}
    out = []
    for label, spec in items:
        n = seen.get(label, 0)
        seen[label] = n + 1
        out.append((label if n == 0 else f"{label}_{n + 1}", spec))
    return out


def check_inherit(teacher: Teacher, students: list[tuple[str, Any]]) -> None:
    """distill.init teacher: every student must be a pQRNN of the teacher's
    depth and kernel, no wider than it, reading the same projection."""
    t = teacher.text
    if t is None or t.family != "pqrnn":
        kind = "an image classifier" if t is None else f"a {t.family} model"
        raise RecipeError(f"distill.init: teacher: students inherit the teacher's channels only from a pQRNN "
                          f"teacher; {teacher.path} is {kind}: use init random")
    tc = text_teacher_spec(teacher).config
    for label, spec in students:
        c = getattr(spec, "config", None)
        if not isinstance(spec, TextSpec) or spec.family != "pqrnn" or (c.layers, c.kernel, c.features, c.max_len) != \
                (tc.layers, tc.kernel, tc.features, tc.max_len) or c.bottleneck > tc.bottleneck or c.hidden > tc.hidden:
            raise RecipeError(f"distill.init: teacher: student {label} is not a narrower copy of the teacher's "
                              f"pQRNN (same layers, kernel and projection); use init random")


def channel_scores(teacher: Any, x: Any, samples: int = 512) -> list[Any]:
    """How much a pQRNN teacher relies on each channel (Minitron-style,
    Muralidharan et al. 2024): for the bottleneck and for each QRNN layer's
    output (forward units, then backward), the mean absolute activation on
    ``samples`` training inputs ``x`` times the norm of the weights that read
    the channel. Computed once for every student of a run."""
    import numpy as np

    from odml._tf import keras

    K = keras()
    n_layers = sum(1 for lay in teacher.layers if lay.name.endswith("_fw") and lay.name.startswith("qrnn"))
    names = ["bottleneck_mask"] + [f"qrnn{i}" for i in range(n_layers)]
    probe = K.Model(teacher.inputs, [teacher.get_layer(nm).output for nm in names])
    acts = probe.predict(np.asarray(x[:samples], np.float32), batch_size=256, verbose=0)
    mask = np.abs(np.asarray(x[:samples])).max(-1) > 0  # positions holding a token

    def readers(i: int) -> np.ndarray:  # the norm of the weights reading each channel of names[i]
        if i < n_layers:
            ks = [teacher.get_layer(f"qrnn{i}_{d}").conv.kernel.numpy() for d in ("fw", "bw")]
            return np.sqrt(sum((k ** 2).sum((0, 2)) for k in ks))
        rows = [teacher.get_layer("attention_pool").score.kernel.numpy(), teacher.get_layer("logits").kernel.numpy()]
        return np.sqrt(sum((r ** 2).sum(1) for r in rows))

    return [np.abs(a[mask]).mean(0) * readers(i) for i, a in enumerate(acts)]


def inherit_pqrnn(teacher: Any, student: Any, scores: list[Any]) -> dict[str, Any]:
    """Give a narrower pQRNN ``student`` the teacher's most important channels
    by :func:`channel_scores`: the top ones of the bottleneck and of each
    QRNN direction, and their weights, in the teacher's order. Returns the
    channels kept."""
    import numpy as np

    n_layers = len(scores) - 1

    def top(score: np.ndarray, k: int) -> np.ndarray:
        return np.sort(np.argsort(-score, kind="stable")[:k])

    b_new = student.get_layer("bottleneck").units
    keep_in = top(scores[0], b_new)
    kept = {"bottleneck": keep_in.tolist()}
    w = teacher.get_layer("bottleneck").get_weights()
    student.get_layer("bottleneck").set_weights([w[0][:, keep_in], w[1][keep_in]])
    student.get_layer("bottleneck_bn").set_weights([v[keep_in] for v in teacher.get_layer("bottleneck_bn").get_weights()])
    for i in range(n_layers):
        h_t, h_s = teacher.get_layer(f"qrnn{i}_fw").hidden, student.get_layer(f"qrnn{i}_fw").hidden
        score = scores[i + 1]  # (2 h_t,): forward units, then backward
        outs = []
        for j, d in enumerate(("fw", "bw")):
            units = top(score[j * h_t:(j + 1) * h_t], h_s)
            cols = np.concatenate([units + g * h_t for g in range(3)])  # z, f, o gates
            kern, bias = teacher.get_layer(f"qrnn{i}_{d}").get_weights()
            student.get_layer(f"qrnn{i}_{d}").set_weights([kern[:, keep_in][:, :, cols], bias[cols]])
            outs.append(units + j * h_t)
            kept[f"qrnn{i}_{d}"] = units.tolist()
        keep_in = np.concatenate(outs)
    sk, sb = teacher.get_layer("attention_pool").get_weights()
    student.get_layer("attention_pool").set_weights([sk[keep_in], sb])
    lk, lb = teacher.get_layer("logits").get_weights()
    student.get_layer("logits").set_weights([lk[keep_in], lb])
    return kept
