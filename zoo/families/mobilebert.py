"""MobileBERT (Sun et al., "MobileBERT: a Compact Task-Agnostic BERT for
Resource-Limited Devices", ACL 2020) and MobileBERT-EdgeTPU (the TensorFlow
Model Garden's official/projects/edgetpu/nlp: XS, S, M) as text classifiers
over WordPiece token ids: bottleneck blocks (hidden -> intra -> hidden), key
and query from one shared bottleneck and the value from the block input,
``ffn`` stacked feed-forward networks, no_norm (element-wise scale and bias),
ReLU, a trigram projection of 128-wide word embeddings to the hidden size,
a pooler on the first token and the logits.

The Keras layers are in ``odml.zoo.mobilebert``; this module is the family:
configurations and parameter counts (tests check them against the built
models and the published encoder sizes), scaling, the WordPiece featurizer
and vocabulary, the data reader and the score."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from odml.errors import SpecError
from odml.numeric import classification_scores
from odml.zoo.families.pqrnn import _length, read_texts
from odml.zoo.family import TRAIN_TEXT, Counts, Family, InputSpec, OutputSpec
from odml.zoo.registry import register_family


@dataclass
class MobileBertConfig:
    layers: int = 24
    hidden: int = 512
    intra: int = 128
    intermediate: int = 512
    ffn: int = 4
    heads: int = 4
    embedding: int = 128
    vocab: int = 30522
    max_positions: int = 512
    type_vocab: int = 2
    seq_len: int = 128
    dropout: float = 0.1
    num_classes: int = 2

    def validate(self) -> "MobileBertConfig":
        for k in ("layers", "hidden", "intra", "intermediate", "ffn", "heads", "embedding", "vocab", "seq_len"):
            if int(getattr(self, k)) < 1:
                raise SpecError(f"mobilebert: {k} must be at least 1, got {getattr(self, k)}")
        if self.intra % self.heads:
            raise SpecError(f"mobilebert: {self.heads} heads do not divide the bottleneck width {self.intra}")
        if self.seq_len > self.max_positions:
            raise SpecError(f"mobilebert: sequence length {self.seq_len} exceeds the {self.max_positions} positions")
        if self.num_classes < 2:
            raise SpecError("mobilebert: a classifier needs 2 or more classes")
        if self.vocab < 5:
            raise SpecError(f"mobilebert: a vocabulary of {self.vocab} tokens is too small")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def encoder_params(self) -> int:
        """Embeddings and transformer blocks, without the classification head."""
        h, b, f = self.hidden, self.intra, self.intermediate
        nonorm = lambda d: 2 * d  # noqa: E731 - scale and bias
        emb = self.vocab * self.embedding + (3 * self.embedding * h + h) + self.max_positions * h \
            + self.type_vocab * h + nonorm(h)
        bottleneck = h * b + b + nonorm(b)  # input bottleneck; the shared key/query one is the same size
        attention = 2 * (b * b + b) + (h * b + b) + (b * b + b) + nonorm(b)  # q, k (from intra); v (from hidden); out
        ffn = self.ffn * (b * f + f + f * b + b + nonorm(b))
        out = b * h + h + nonorm(h)
        return emb + self.layers * (2 * bottleneck + attention + ffn + out)

    @property
    def params(self) -> int:
        """With the head: a pooler (dense + tanh on the first token) and the logits."""
        return self.encoder_params + self.hidden * self.hidden + self.hidden + self.hidden * self.num_classes \
            + self.num_classes

    @property
    def macs(self) -> int:
        """Multiply-adds of the weights applied at every position, the
        attention products, and the head; the embedding lookup costs none."""
        per_pos = self.encoder_params - self.vocab * self.embedding - (self.max_positions + self.type_vocab) * self.hidden
        return per_pos * self.seq_len + self.layers * 2 * self.seq_len * self.seq_len * self.intra \
            + self.hidden * (self.hidden + self.num_classes)


PRESETS = {
    "mobilebert": MobileBertConfig(),
    "mobilebert_edgetpu_xs": MobileBertConfig(layers=8, intra=256, intermediate=1024, ffn=4),
    "mobilebert_edgetpu_s": MobileBertConfig(layers=12, intra=256, intermediate=1024, ffn=4),
    "mobilebert_edgetpu_m": MobileBertConfig(layers=12, intra=256, intermediate=1024, ffn=6),
}
# the published encoder sizes (MobileBERT paper; Model Garden MobileBERT-EdgeTPU)
PUBLISHED = {"mobilebert": 24.6e6, "mobilebert_edgetpu_xs": 27.1e6, "mobilebert_edgetpu_s": 38.3e6,
             "mobilebert_edgetpu_m": 50.9e6}
_KEYS = ("seq_len", "vocab", "layers", "hidden", "intra", "intermediate", "ffn", "heads")


@register_family
class MobileBert(Family):
    name = "mobilebert"
    task = "classify"
    noun = "a MobileBERT text classifier"
    zoo_task = "text_classification"
    title = "MobileBERT and MobileBERT-EdgeTPU text classifiers over WordPiece ids"
    trainer = "text"
    student_family = "mobilebert"
    train_defaults = {"batch_size": 64, "learning_rate": 5e-4}
    config_type = MobileBertConfig
    train_options = TRAIN_TEXT | {"vocab", "vocab_size"}  # (texts are not distorted: distorts_text is off)

    def models(self) -> dict[str, str]:
        return {n: f"{c.layers} blocks, intra {c.intra}, {c.ffn} FFNs" for n, c in PRESETS.items()}

    def config(self, name: str) -> MobileBertConfig:
        return dataclasses.replace(PRESETS[name])

    def with_input_size(self, cfg: MobileBertConfig, size: Any) -> MobileBertConfig:
        return dataclasses.replace(cfg, seq_len=_length(size))

    def with_length(self, cfg: MobileBertConfig, n: int) -> MobileBertConfig:
        return dataclasses.replace(cfg, seq_len=int(n))

    def with_vocabulary(self, cfg: MobileBertConfig, vocab: list[str]) -> MobileBertConfig:
        return dataclasses.replace(cfg, vocab=len(vocab)).validate()

    def scale(self, cfg: MobileBertConfig, width: float, where: str = "") -> MobileBertConfig:
        return dataclasses.replace(cfg, hidden=max(8, round(cfg.hidden * width)),
                                   intra=cfg.heads * max(1, round(cfg.intra * width / cfg.heads)),
                                   intermediate=max(4, round(cfg.intermediate * width)))

    def line(self, cfg: MobileBertConfig) -> str:
        return "mobilebert(" + ",".join(f"{k}={getattr(cfg, k)}" for k in _KEYS) + ")"

    def count(self, cfg: MobileBertConfig) -> Counts:
        return Counts(cfg.params, cfg.macs, {"encoder_params": cfg.encoder_params})

    def describe(self, cfg: MobileBertConfig, name: str = "") -> str:
        pub = f" (published: {PUBLISHED[name] / 1e6:.1f}M)" if name in PUBLISHED else ""
        return (f"{cfg.layers} blocks, intra {cfg.intra}, {cfg.ffn} FFNs; encoder {cfg.encoder_params:,} "
                f"parameters{pub}, the rest is the head")

    def settings(self, cfg: MobileBertConfig) -> list[tuple[str, str]]:
        return [*super().settings(cfg), ("encoder parameters", f"{cfg.encoder_params:,}")]

    def build(self, cfg: MobileBertConfig, name: str | None = None) -> Any:
        from odml.zoo.mobilebert import build_mobilebert

        return build_mobilebert(cfg, name=name or "mobilebert")

    def inputs(self, cfg: MobileBertConfig, vocab: list[str] | None = None) -> InputSpec:
        return InputSpec("token_ids", (cfg.seq_len,), "int32", (0.0, float(cfg.vocab)), "input_ids",
                         "WordPiece token ids: [CLS] text [SEP], padded with 0 ([PAD]); vocabulary in vocab.txt",
                         text="mobilebert", vocab_size=len(vocab) if vocab else cfg.vocab)

    def outputs(self, cfg: MobileBertConfig) -> OutputSpec:
        return OutputSpec("classify", "logits", cfg.num_classes, "one score per class (argmax is the prediction)")

    def data_hint(self) -> str:
        return "a .tsv, .csv or .txt file of labelled texts"

    def vocabulary(self, texts: list[str], vocab_file: Any = None, vocab_size: int = 8000) -> list[str]:
        from odml.data.wordpiece import read_vocab, train_vocab

        return read_vocab(vocab_file) if vocab_file is not None else train_vocab(texts, vocab_size)

    def featurizer(self, card: Any):
        from odml.data.wordpiece import WordPiece

        if not card.vocab:
            raise SpecError(f"{card.name or self.name}: a MobileBERT model needs its vocabulary (vocab.txt); "
                            "train it with odml or give one")
        wp = WordPiece(card.vocab, card.config.seq_len)
        return lambda texts: wp.encode(list(texts))

    def read(self, card: Any, data: str, val_split: float = 0.2, seed: int = 0, **options: Any) -> Any:
        return read_texts(self, card, data, val_split, seed, card.config.seq_len, **options)

    def score(self, logits: np.ndarray, y: np.ndarray) -> dict[str, float]:
        return classification_scores(logits, y)

    # ---- compression ------------------------------------------------------------------
    def student(self, item: str, width: float | None, teacher: Any) -> tuple[str, MobileBertConfig]:
        t = teacher.card.config
        cfg = dataclasses.replace(self.config(item), num_classes=teacher.num_classes, seq_len=t.seq_len,
                                  vocab=t.vocab, max_positions=t.max_positions)
        if width is not None:
            cfg = self.scale(cfg, width)
        return item + (f"_w{width:g}" if width is not None else ""), cfg.validate()
