"""Configurations of the text families (REFERENCE.md sections 2 and 3), free of
TensorFlow so that `odml zoo list` stays fast: pQRNN and MobileBERT /
MobileBERT-EdgeTPU, with parameter counts computed from the configuration
(tests check them against the built models)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from odml.errors import SpecError


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


PQRNN_PRESETS = {
    "default": PQRNNConfig(),
    "tiny": PQRNNConfig(max_len=24, features=64, bottleneck=16, hidden=8, layers=1, dropout=0.0),
}


@dataclass
class MobileBertConfig:
    """MobileBERT (Sun et al. 2020) and MobileBERT-EdgeTPU: bottleneck blocks
    (hidden -> intra -> hidden), key and query from one shared bottleneck and
    the value from the block input, ``ffn`` stacked feed-forward networks,
    no_norm (element-wise scale and bias) everywhere, ReLU, a trigram
    projection of 128-wide word embeddings to the hidden size."""

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


MOBILEBERT_PRESETS = {
    "mobilebert": MobileBertConfig(),
    "mobilebert_edgetpu_xs": MobileBertConfig(layers=8, intra=256, intermediate=1024, ffn=4),
    "mobilebert_edgetpu_s": MobileBertConfig(layers=12, intra=256, intermediate=1024, ffn=4),
    "mobilebert_edgetpu_m": MobileBertConfig(layers=12, intra=256, intermediate=1024, ffn=6),
}
# the published encoder sizes (REFERENCE.md section 2)
MOBILEBERT_PUBLISHED = {"mobilebert": 24.6e6, "mobilebert_edgetpu_xs": 27.1e6, "mobilebert_edgetpu_s": 38.3e6,
                        "mobilebert_edgetpu_m": 50.9e6}


def text_config(name: str, **overrides: Any) -> PQRNNConfig | MobileBertConfig:
    """The configuration of text model ``name`` ("pqrnn", "pqrnn_tiny",
    "mobilebert", "mobilebert_edgetpu_xs", ...) with overrides."""
    if name in ("pqrnn", "pqrnn_tiny"):
        base = PQRNN_PRESETS["tiny" if name == "pqrnn_tiny" else "default"]
    elif name in MOBILEBERT_PRESETS:
        base = MOBILEBERT_PRESETS[name]
    else:
        raise KeyError(name)
    cfg = replace(base, **{k: v for k, v in overrides.items() if v is not None})
    return cfg.validate()


TEXT_MODELS = ("pqrnn", "pqrnn_tiny", *MOBILEBERT_PRESETS)
