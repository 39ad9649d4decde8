"""pQRNN: an on-device text classifier over a ternary projection of the
tokens (Kaliamoorthi, Siddhant, Li and Johnson, "Distilling Large Language
Models into Tiny and Effective Students using pQRNN", 2021; the projection of
PRADO, Kaliamoorthi, Ravi and Kozareva, EMNLP 2019):

    text -> projection (max_len, features) of -1/0/+1 (odml.data.projection)
      -> bottleneck (dense + batch norm + ReLU)
      -> bidirectional QRNN layers (fo-pooling, kernel 3, zoneout)
      -> attention pooling -> logits

The Keras layers are in ``odml.zoo.pqrnn``; this module is the family: the
configuration and its parameter count, scaling, the featurizer, the data
reader, the score, and the channel map that lets a narrower pQRNN student
start from a teacher's most important channels."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from odml.errors import DataError, SpecError
from odml.numeric import classification_scores
from odml.zoo.family import TRAIN_TEXT, Counts, Family, InputSpec, OutputSpec
from odml.zoo.registry import register_family


@dataclass
class PQRNNConfig:
    max_len: int = 64
    features: int = 512
    bottleneck: int = 128
    hidden: int = 96  # QRNN state per direction
    layers: int = 2
    kernel: int = 3
    zoneout: float = 0.25
    dropout: float = 0.1
    num_classes: int = 2

    def validate(self) -> "PQRNNConfig":
        from odml.data.projection import check_features

        check_features(self.features)
        for k in ("max_len", "bottleneck", "hidden", "layers", "kernel", "num_classes"):
            if int(getattr(self, k)) < 1:
                raise SpecError(f"pqrnn: {k} must be at least 1, got {getattr(self, k)}")
        if self.num_classes < 2:
            raise SpecError("pqrnn: a classifier needs 2 or more classes")
        if not 0 <= self.zoneout < 1 or not 0 <= self.dropout < 1:
            raise SpecError("pqrnn: zoneout and dropout must be in [0, 1)")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def params(self) -> int:
        """Trainable parameters, from the configuration alone."""
        n = self.features * self.bottleneck + self.bottleneck + 2 * self.bottleneck  # dense + BN gamma/beta
        d = self.bottleneck
        for _ in range(self.layers):
            n += 2 * (self.kernel * d * 3 * self.hidden + 3 * self.hidden)  # two directions
            d = 2 * self.hidden
        return n + (d + 1) + (d * self.num_classes + self.num_classes)

    @property
    def macs(self) -> int:
        """Multiply-adds of the weights applied at every position."""
        return (self.params - (2 * self.hidden * self.num_classes + self.num_classes)) * self.max_len


PRESETS = {
    "default": PQRNNConfig(),
    "tiny": PQRNNConfig(max_len=24, features=64, bottleneck=16, hidden=8, layers=1, dropout=0.0),
}
MODELS = {"pqrnn": "default", "pqrnn_tiny": "tiny"}
_KEYS = ("max_len", "features", "bottleneck", "hidden", "layers")


@register_family
class PQRNN(Family):
    name = "pqrnn"
    task = "classify"
    noun = "a pQRNN text classifier"
    zoo_task = "text_classification"
    title = "pQRNN text classifiers over a ternary token projection (PRADO / pQRNN)"
    trainer = "text"
    student_family = "pqrnn"
    can_inherit = True
    distorts_text = True
    train_options = TRAIN_TEXT | {"distortion"}  # (no vocabulary: the projection hashes tokens)
    train_defaults = {"batch_size": 64, "learning_rate": 3e-3}
    config_type = PQRNNConfig

    def models(self) -> dict[str, str]:
        return {n: f"{PRESETS[p].layers} bidirectional QRNN layers of {PRESETS[p].hidden}" for n, p in MODELS.items()}

    def config(self, name: str) -> PQRNNConfig:
        return dataclasses.replace(PRESETS[MODELS[name]])

    def with_input_size(self, cfg: PQRNNConfig, size: Any) -> PQRNNConfig:
        return dataclasses.replace(cfg, max_len=_length(size))

    def with_length(self, cfg: PQRNNConfig, n: int) -> PQRNNConfig:
        return dataclasses.replace(cfg, max_len=int(n))

    def scale(self, cfg: PQRNNConfig, width: float, where: str = "") -> PQRNNConfig:
        return dataclasses.replace(cfg, bottleneck=max(4, round(cfg.bottleneck * width)),
                                   hidden=max(2, round(cfg.hidden * width)))

    def line(self, cfg: PQRNNConfig) -> str:
        return "pqrnn(" + ",".join(f"{k}={getattr(cfg, k)}" for k in _KEYS) + ")"

    def count(self, cfg: PQRNNConfig) -> Counts:
        return Counts(cfg.params, cfg.macs)

    def build(self, cfg: PQRNNConfig, name: str | None = None) -> Any:
        from odml.zoo.pqrnn import build_pqrnn

        return build_pqrnn(cfg, name=name or "pqrnn")

    def inputs(self, cfg: PQRNNConfig, vocab: list[str] | None = None) -> InputSpec:
        return InputSpec("projection", (cfg.max_len, cfg.features), "float32", (-1.0, 1.0), "projection",
                         "pQRNN ternary projection of the text (odml.data.projection: lower-cased whitespace tokens "
                         "+ </s>, SHAKE-128, 2 bits per feature), one row per token, 0 rows = padding", text="pqrnn")

    def outputs(self, cfg: PQRNNConfig) -> OutputSpec:
        return OutputSpec("classify", "logits", cfg.num_classes, "one score per class (argmax is the prediction)")

    def data_hint(self) -> str:
        return "a .tsv, .csv or .txt file of labelled texts"

    def featurizer(self, card: Any):
        from odml.data.projection import project_batch

        cfg = card.config

        def featurize(texts: list[str]) -> tuple[np.ndarray, int]:
            x, cut = project_batch(list(texts), cfg.max_len, cfg.features)
            return x.astype(np.float32), cut

        return featurize

    def read(self, card: Any, data: str, val_split: float = 0.2, seed: int = 0, **options: Any) -> Any:
        return read_texts(self, card, data, val_split, seed, card.config.max_len, **options)

    def score(self, logits: np.ndarray, y: np.ndarray) -> dict[str, float]:
        return classification_scores(logits, y)

    # ---- compression ------------------------------------------------------------------
    def student(self, item: str, width: float | None, teacher: Any) -> tuple[str, PQRNNConfig]:
        t = teacher.card.config
        cfg = dataclasses.replace(self.config(item), num_classes=teacher.num_classes, max_len=t.max_len,
                                  features=t.features)
        if width is not None:
            cfg = self.scale(cfg, width)
        return item + (f"_w{width:g}" if width is not None else ""), cfg.validate()

    def check_inherit(self, teacher_cfg: PQRNNConfig, student_cfg: Any, label: str) -> None:
        c, t = student_cfg, teacher_cfg
        if not isinstance(c, PQRNNConfig) or (c.layers, c.kernel, c.features, c.max_len) != \
                (t.layers, t.kernel, t.features, t.max_len) or c.bottleneck > t.bottleneck or c.hidden > t.hidden:
            raise SpecError(f"student {label} is not a narrower copy of the teacher's pQRNN (same layers, kernel and "
                            "projection)")

    def channel_scores(self, teacher: Any, x: Any, samples: int = 512) -> list[Any]:
        """How much a pQRNN teacher relies on each channel (Minitron-style,
        Muralidharan et al. 2024): for the bottleneck and for each QRNN
        layer's output (forward units, then backward), the mean absolute
        activation on ``samples`` training inputs ``x`` times the norm of the
        weights that read the channel. Computed once for every student."""
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

    def inherit(self, teacher: Any, student: Any, scores: list[Any]) -> dict[str, Any]:
        """Give a narrower pQRNN ``student`` the teacher's most important
        channels by :meth:`channel_scores`: the top ones of the bottleneck and
        of each QRNN direction, and their weights, in the teacher's order.
        Returns the channels kept."""
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


def _length(size: Any) -> int:
    if isinstance(size, int) or (isinstance(size, str) and size.isdigit() and int(size) >= 1):
        return int(size)
    raise SpecError(f"--input-size {size}: a text model takes one sequence length, e.g. 128")


def read_texts(family: Family, card: Any, data: str, val_split: float, seed: int, max_len: int,
               label_col: Any = None, text_col: Any = None, val_data: str | None = None, split: str = "val",
               **_: Any) -> Any:
    """A text family's reader: labelled texts (data/text.py; validation on a
    fraction, on ``val_data``, or on all of ``data``), checked against the
    model's labels, featurized by the family."""
    from odml.data.text import featurized, load_text, require_text_file

    require_text_file(data, card.name or family.name)
    ds = load_text(data, label_col, text_col, None, val_split, seed, val_data, split)
    if card.labels and list(ds.classes) != list(card.labels):
        raise DataError(f"{data}: classes {ds.classes} differ from the model's {card.labels}")
    return featurized(ds, family.featurizer(card), max_len)
