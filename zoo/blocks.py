"""Keras (tf_keras) building blocks: depthwise IBN, fused IBN, GC-IBN (a fused
IBN whose k x k expansion conv is a native grouped ``Conv2D(groups=g)``),
ibn_grouped (1x1 expand, k x k group conv, 1x1 project), optional
squeeze-excite, ReLU / ReLU6 / hard-swish, a residual when stride 1 and
Cin == Cout, and drop-connect (stochastic depth) on the residual branch in
training.

The two custom layers are registered as serializable under the ``odml``
package, so models that use them load with ``safe_mode=True`` once this
module is imported.
"""

from __future__ import annotations

from odml._tf import keras, tf
from odml.zoo.spec import Block, expanded_filters, has_residual, se_filters

K = keras()
_tf = tf()


@K.utils.register_keras_serializable(package="odml")
class HardSwish(K.layers.Layer):
    """x * relu6(x + 3) / 6 (MobileNetV3's hard-swish)."""

    def call(self, x):
        return x * _tf.nn.relu6(x + 3.0) * (1.0 / 6.0)


@K.utils.register_keras_serializable(package="odml")
class StochasticDepth(K.layers.Layer):
    """Drop the whole residual branch of a sample with probability ``rate`` in
    training (drop-connect); identity at inference."""

    def __init__(self, rate: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)

    def call(self, x, training=None):
        if not training or self.rate <= 0:
            return x
        keep = 1.0 - self.rate
        shape = _tf.concat([_tf.shape(x)[:1], _tf.ones([_tf.rank(x) - 1], dtype=_tf.int32)], 0)
        mask = _tf.floor(keep + _tf.random.uniform(shape, dtype=x.dtype))
        return x / keep * mask

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


def activation(name: str, layer_name: str):
    if name == "relu":
        return K.layers.ReLU(name=layer_name)
    if name == "relu6":
        return K.layers.ReLU(6.0, name=layer_name)
    if name == "hswish":
        return HardSwish(name=layer_name)
    raise ValueError(f"unknown activation {name!r}")


class _Ctx:
    """Settings shared by every block of one model."""

    def __init__(self, act: str, momentum: float, epsilon: float):
        self.act, self.momentum, self.epsilon = act, momentum, epsilon

    def bn(self, name: str):
        return K.layers.BatchNormalization(momentum=self.momentum, epsilon=self.epsilon, name=name)

    def conv_bn(self, x, filters, kernel, stride, name, groups=1, act: str | None = None):
        x = K.layers.Conv2D(filters, kernel, strides=stride, padding="same", groups=groups, use_bias=False,
                            name=f"{name}_conv")(x)
        x = self.bn(f"{name}_bn")(x)
        if act:
            x = activation(act, f"{name}_act")(x)
        return x


def squeeze_excite(x, cexp: int, cse: int, act: str, name: str):
    s = K.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_pool")(x)
    s = K.layers.Conv2D(cse, 1, name=f"{name}_se_reduce")(s)
    s = activation(act, f"{name}_se_act")(s)
    s = K.layers.Conv2D(cexp, 1, activation="sigmoid", name=f"{name}_se_expand")(s)
    return K.layers.Multiply(name=f"{name}_se_scale")([x, s])


def ibn_block(x, b: Block, cin: int, ctx: _Ctx, name: str, drop_rate: float = 0.0):
    """One inverted-bottleneck block of any of the four types."""
    act = b.activation or ctx.act
    cexp = expanded_filters(b, cin)
    shortcut = x
    expand = b.expansion != 1
    stride_done = False
    if b.type in ("ibn_dw", "ibn_grouped"):
        if expand:
            x = ctx.conv_bn(x, cexp, 1, 1, f"{name}_expand", act=act)
        if b.type == "ibn_dw":
            x = K.layers.DepthwiseConv2D(b.kernel, strides=b.stride, padding="same", use_bias=False,
                                         name=f"{name}_dw_conv")(x)
            x = ctx.bn(f"{name}_dw_bn")(x)
            x = activation(act, f"{name}_dw_act")(x)
        else:
            x = ctx.conv_bn(x, cexp, b.kernel, b.stride, f"{name}_group", groups=b.groups, act=act)
        stride_done = True
    elif expand:  # ibn_fused / ibn_gc: one k x k (group) conv expands and strides
        groups = b.groups if b.type == "ibn_gc" else 1
        x = ctx.conv_bn(x, cexp, b.kernel, b.stride, f"{name}_expand", groups=groups, act=act)
        stride_done = True
    if b.se:
        x = squeeze_excite(x, cexp, se_filters(b, cin), act, name)
    x = ctx.conv_bn(x, b.filters, 1, 1 if stride_done else b.stride, f"{name}_project")
    if has_residual(b, cin):
        if drop_rate > 0:
            x = StochasticDepth(drop_rate, name=f"{name}_drop")(x)
        x = K.layers.Add(name=f"{name}_add")([x, shortcut])
    return x


@K.utils.register_keras_serializable(package="odml")
class SplitGroupConv2D(K.layers.Layer):
    """A grouped convolution as split -> one conv per group -> concat (how the
    Model Garden writes it), for targets without native grouped convs, such as
    the Edge TPU. Numerically the same as ``Conv2D(groups=g)``."""

    def __init__(self, filters: int, kernel_size, strides=1, groups: int = 1, padding: str = "same",
                 use_bias: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.groups, self.padding, self.use_bias = int(filters), int(groups), padding, use_bias
        self.kernel_size = tuple(kernel_size) if not isinstance(kernel_size, int) else (kernel_size, kernel_size)
        self.strides = tuple(strides) if not isinstance(strides, int) else (strides, strides)
        self.convs = [
            K.layers.Conv2D(self.filters // self.groups, self.kernel_size, strides=self.strides, padding=padding,
                            use_bias=use_bias, name=f"g{i}")
            for i in range(self.groups)
        ]

    def call(self, x):
        parts = _tf.split(x, self.groups, axis=-1)
        return _tf.concat([conv(p) for conv, p in zip(self.convs, parts)], axis=-1)

    def set_from_grouped(self, kernel, bias=None) -> None:
        """Take the weights of a Conv2D(groups=g): kernel [k, k, Cin/g, Cout]."""
        step = self.filters // self.groups
        for i, conv in enumerate(self.convs):
            w = [kernel[..., i * step:(i + 1) * step]]
            if self.use_bias:
                w.append(bias[i * step:(i + 1) * step])
            conv.set_weights(w)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "groups": self.groups, "padding": self.padding, "use_bias": self.use_bias}
