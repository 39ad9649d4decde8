"""pQRNN (the family: odml.zoo.families.pqrnn) as a tf_keras model over the ternary
projection (data/projection.py), built from builtin ops only so that it
converts to a full-int8 TFLite without custom ops:

    projection (max_len, features), 0 rows = padding
      -> mask = max |x| over features (exactly 0 or 1 for a ternary projection)
      -> bottleneck: dense + batch norm + ReLU, padding zeroed
      -> bidirectional QRNN layers (fo-pooling, causal kernel-3 convolution,
         zoneout on the forget gate in training); the recurrence is a scan
         (one small loop, quick to trace and about 2x faster to train) in
         training and unrolled over max_len for inference and export (TFLite
         builtin ops, int8 without a WHILE op): the same function, see
         ``fo_pooling``
      -> attention pooling (softmax over time, renormalised over valid positions)
      -> dense logits
"""

from __future__ import annotations

from contextlib import contextmanager

from odml.zoo.blocks import K
from odml.zoo.families.pqrnn import PRESETS, PQRNNConfig  # noqa: F401


@K.utils.register_keras_serializable(package="odml")
class QRNN(K.layers.Layer):
    """One direction of a QRNN layer with fo-pooling (a scan in training,
    unrolled over time otherwise; ``recurrence`` forces one form)."""

    def __init__(self, hidden: int, kernel: int = 3, zoneout: float = 0.0, reverse: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.hidden, self.kernel, self.zoneout, self.reverse = hidden, kernel, zoneout, reverse
        self.conv = K.layers.Conv1D(3 * hidden, kernel, padding="valid", name="gates")

    def build(self, input_shape):
        x_shape = input_shape[0]
        self.conv.build((x_shape[0], None, x_shape[-1]))  # built here so that a pruning wrapper can see its kernel
        super().build(input_shape)

    def call(self, inputs, training=None):
        import tensorflow as tf

        x, mask = inputs  # a list, so that a pruning wrapper passes both through
        if self.reverse:
            x, mask = tf.reverse(x, [1]), tf.reverse(mask, [1])
        x = tf.pad(x, [[0, 0], [self.kernel - 1, 0], [0, 0]])  # causal: step t sees t-k+1 .. t
        g = self.conv(x)
        z, f, o = tf.split(g, 3, axis=-1)
        z, f, o = tf.tanh(z), tf.sigmoid(f), tf.sigmoid(o)
        if training and self.zoneout:
            keep = tf.cast(tf.random.uniform(tf.shape(f)) < self.zoneout, f.dtype)
            f = f + keep * (1.0 - f)  # zoneout: some units keep their state this step
        f = f * mask + (1.0 - mask)  # padding keeps the state unchanged
        form = _FORM[-1] if _FORM else ("scan" if training else "unrolled")
        h = o * tf.tanh(fo_pooling(f, z, form)) * mask
        return tf.reverse(h, [1]) if self.reverse else h

    def get_prunable_weights(self):
        """For tfmot magnitude pruning: the gate convolution's kernel."""
        return [self.conv.kernel]

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden, "kernel": self.kernel, "zoneout": self.zoneout,
                "reverse": self.reverse}


_FORM: list[str] = []  # the innermost ``recurrence`` block's form, if any


def fo_pooling(f, z, form: str = "unrolled"):
    """The QRNN cell states c_t = f_t * c_(t-1) + (1 - f_t) * z_t (c_(-1) = 0)
    over axis 1 of (batch, time, hidden) tensors. ``"scan"``: a tf.scan over
    time (a loop of one step: fast to trace, used in training); ``"unrolled"``:
    one op chain per step (what TFLite converts to builtin ops and int8
    quantizes). Both compute the same values (tests/test_text_streaming.py)."""
    import tensorflow as tf

    if form == "scan":
        a = tf.transpose(f, [1, 0, 2])
        b = tf.transpose((1.0 - f) * z, [1, 0, 2])
        c = tf.scan(lambda c, ab: ab[0] * c + ab[1], (a, b), initializer=tf.zeros_like(z[:, 0]))
        return tf.transpose(c, [1, 0, 2])
    if form != "unrolled":
        raise ValueError(f"fo_pooling: form is 'scan' or 'unrolled', got {form!r}")
    c = tf.zeros_like(z[:, 0])
    cs = []
    for t in range(z.shape[1]):
        c = f[:, t] * c + (1.0 - f[:, t]) * z[:, t]
        cs.append(c)
    return tf.stack(cs, axis=1)


@contextmanager
def recurrence(form: str):
    """Within this block (while a graph is traced), every QRNN layer computes
    its recurrence in ``form`` ("scan" or "unrolled"), in training or not."""
    _FORM.append(form)
    try:
        yield
    finally:
        _FORM.pop()


@K.utils.register_keras_serializable(package="odml")
class AttentionPool(K.layers.Layer):
    """A logit per position, softmax over time, renormalised over the valid
    positions (a multiplicative mask keeps int8 ranges small), weighted sum.
    The renormalising denominator is (valid mass + 1/16): in int8 the mass of
    a short text among many padded positions can round to 0, and TFLite's
    int8 DIV refuses a zero divisor; the same formula is used in training."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.score = K.layers.Dense(1, name="score")

    def call(self, inputs):
        import tensorflow as tf

        h, mask = inputs
        w = tf.nn.softmax(self.score(h), axis=1) * mask
        w = w / (tf.reduce_sum(w, axis=1, keepdims=True) + 0.0625)
        return tf.reduce_sum(w * h, axis=1)


def build_pqrnn(cfg: PQRNNConfig, name: str = "pqrnn"):
    cfg.validate()
    inp = K.Input(shape=(cfg.max_len, cfg.features), name="projection")
    mask = _Mask(name="mask")(inp)
    x = K.layers.Dense(cfg.bottleneck, name="bottleneck")(inp)
    x = K.layers.BatchNormalization(momentum=0.9, name="bottleneck_bn")(x)  # few steps: converge fast
    x = K.layers.ReLU(name="bottleneck_relu")(x)
    x = K.layers.Multiply(name="bottleneck_mask")([x, mask])
    for i in range(cfg.layers):
        fw = QRNN(cfg.hidden, cfg.kernel, cfg.zoneout, False, name=f"qrnn{i}_fw")([x, mask])
        bw = QRNN(cfg.hidden, cfg.kernel, cfg.zoneout, True, name=f"qrnn{i}_bw")([x, mask])
        x = K.layers.Concatenate(name=f"qrnn{i}")([fw, bw])
        if cfg.dropout:
            x = K.layers.Dropout(cfg.dropout, name=f"qrnn{i}_dropout")(x)
    x = AttentionPool(name="attention_pool")([x, mask])
    out = K.layers.Dense(cfg.num_classes, name="logits")(x)
    return K.Model(inp, out, name=name)


@K.utils.register_keras_serializable(package="odml")
class _Mask(K.layers.Layer):
    """1 where a position holds a token, 0 for padding: max |x| over the
    features of a ternary projection."""

    def call(self, x):
        import tensorflow as tf

        return tf.reduce_max(tf.abs(x), axis=-1, keepdims=True)
