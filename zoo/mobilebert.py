"""MobileBERT and MobileBERT-EdgeTPU (the family: odml.zoo.families.mobilebert) as tf_keras
models for text classification, built from layers that convert to builtin
TFLite ops only (int8 and fp16 at a fixed sequence length):

    token ids (seq_len,) int32, 0 = padding  -> mask = ids != 0
      -> word embedding (128) -> trigram projection to hidden (512)
         + learned positions + token type 0 -> no_norm -> dropout
      -> blocks: input bottleneck and shared key/query bottleneck (hidden ->
         intra), attention (query/key from the shared bottleneck, value from
         the block input, 4 heads), ``ffn`` stacked FFNs at the intra width,
         output bottleneck back to hidden; residuals with no_norm
      -> pooler (dense + tanh on the first token) -> logits

The configurations (and parameter counts) are in zoo/families/mobilebert.py.
"""

from __future__ import annotations

from odml.zoo.blocks import K
from odml.zoo.families.mobilebert import MobileBertConfig


@K.utils.register_keras_serializable(package="odml")
class NoNorm(K.layers.Layer):
    """MobileBERT's no_norm: x * scale + bias, element-wise (no statistics)."""

    def build(self, input_shape):
        d = int(input_shape[-1])
        self.scale = self.add_weight(name="scale", shape=(d,), initializer="ones")
        self.bias = self.add_weight(name="bias", shape=(d,), initializer="zeros")

    def call(self, x):
        return x * self.scale + self.bias


@K.utils.register_keras_serializable(package="odml")
class PositionAndType(K.layers.Layer):
    """Adds the learned position embeddings of the first seq_len positions and
    the token-type embedding of segment 0 (one segment for classification)."""

    def __init__(self, max_positions: int = 512, type_vocab: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.max_positions, self.type_vocab = max_positions, type_vocab

    def build(self, input_shape):
        d = int(input_shape[-1])
        self.positions = self.add_weight(name="positions", shape=(self.max_positions, d),
                                         initializer=K.initializers.TruncatedNormal(stddev=0.02))
        self.types = self.add_weight(name="types", shape=(self.type_vocab, d),
                                     initializer=K.initializers.TruncatedNormal(stddev=0.02))

    def call(self, x):
        t = x.shape[1]
        return x + self.positions[None, :t] + self.types[None, :1]

    def get_config(self):
        return {**super().get_config(), "max_positions": self.max_positions, "type_vocab": self.type_vocab}


@K.utils.register_keras_serializable(package="odml")
class Trigram(K.layers.Layer):
    """[e(t+1), e(t), e(t-1)] concatenated (zeros beyond the ends)."""

    def call(self, e):
        import tensorflow as tf

        nxt = tf.pad(e[:, 1:], [[0, 0], [0, 1], [0, 0]])
        prv = tf.pad(e[:, :-1], [[0, 0], [1, 0], [0, 0]])
        return tf.concat([nxt, e, prv], axis=-1)


@K.utils.register_keras_serializable(package="odml")
class PadMask(K.layers.Layer):
    """(attention mask (batch, 1, seq) as float: 1 for tokens, 0 for padding id 0)."""

    def call(self, ids):
        import tensorflow as tf

        return tf.cast(tf.not_equal(ids, 0), tf.float32)[:, None, :]


@K.utils.register_keras_serializable(package="odml")
class FirstToken(K.layers.Layer):
    def call(self, x):
        return x[:, 0]


def _dense(units: int, name: str, activation=None):
    return K.layers.Dense(units, activation=activation, name=name,
                          kernel_initializer=K.initializers.TruncatedNormal(stddev=0.02))


def build_mobilebert(cfg: MobileBertConfig, name: str = "mobilebert"):
    cfg.validate()
    ids = K.Input(shape=(cfg.seq_len,), dtype="int32", name="input_ids")
    mask = PadMask(name="pad_mask")(ids)
    e = K.layers.Embedding(cfg.vocab, cfg.embedding, name="word_embeddings",
                           embeddings_initializer=K.initializers.TruncatedNormal(stddev=0.02))(ids)
    x = _dense(cfg.hidden, "embedding_projection")(Trigram(name="trigram")(e))
    x = PositionAndType(cfg.max_positions, cfg.type_vocab, name="position_type")(x)
    x = NoNorm(name="embedding_norm")(x)
    x = K.layers.Dropout(cfg.dropout, name="embedding_dropout")(x)
    for i in range(cfg.layers):
        p = f"block{i}_"
        inp = NoNorm(name=p + "in_norm")(_dense(cfg.intra, p + "in_bottleneck")(x))
        kq = NoNorm(name=p + "kq_norm")(_dense(cfg.intra, p + "kq_bottleneck")(x))
        att = K.layers.MultiHeadAttention(cfg.heads, cfg.intra // cfg.heads, output_shape=cfg.intra,
                                          dropout=cfg.dropout, name=p + "attention")(
            query=kq, value=x, key=kq, attention_mask=mask)
        h = NoNorm(name=p + "attention_norm")(K.layers.Add(name=p + "attention_add")([att, inp]))
        for j in range(cfg.ffn):
            t = _dense(cfg.intermediate, f"{p}ffn{j}_in", "relu")(h)
            t = _dense(cfg.intra, f"{p}ffn{j}_out")(t)
            h = NoNorm(name=f"{p}ffn{j}_norm")(K.layers.Add(name=f"{p}ffn{j}_add")([t, h]))
        o = K.layers.Dropout(cfg.dropout, name=p + "out_dropout")(_dense(cfg.hidden, p + "out_bottleneck")(h))
        x = NoNorm(name=p + "out_norm")(K.layers.Add(name=p + "out_add")([o, x]))
    pooled = _dense(cfg.hidden, "pooler", "tanh")(FirstToken(name="first_token")(x))
    pooled = K.layers.Dropout(cfg.dropout, name="head_dropout")(pooled)
    out = _dense(cfg.num_classes, "logits")(pooled)
    return K.Model(ids, out, name=name)
