"""Build a tf_keras model from a :class:`ModelSpec`, and count a built model's
MACs from its layers (a check on the spec's own count)."""

from __future__ import annotations

from odml.zoo.blocks import K, _Ctx, ibn_block
from odml.zoo.spec import ModelSpec


def build_model(spec: ModelSpec):
    spec.validate(spec.name)
    ctx = _Ctx(spec.activation, spec.bn_momentum, spec.bn_epsilon)
    inputs = K.Input(shape=spec.input_shape, name="image")
    x = ctx.conv_bn(inputs, spec.stem.filters, spec.stem.kernel, spec.stem.stride, "stem", act=spec.activation)
    cin = spec.stem.filters
    n = len(spec.blocks)
    for i, b in enumerate(spec.blocks):
        x = ibn_block(x, b, cin, ctx, f"block{i}", drop_rate=spec.drop_connect_rate * i / n)
        cin = b.filters
    if spec.head.filters:
        x = ctx.conv_bn(x, spec.head.filters, 1, 1, "head", act=spec.activation)
    x = K.layers.GlobalAveragePooling2D(name="pool")(x)
    if spec.head.dropout:
        x = K.layers.Dropout(spec.head.dropout, name="dropout")(x)
    outputs = K.layers.Dense(spec.num_classes, name="logits")(x)
    return K.Model(inputs, outputs, name=spec.name)


def trainable_params(model) -> int:
    return int(sum(int(w.shape.num_elements()) for w in model.trainable_weights))


def count_macs(model) -> int:
    """Multiply-adds of the convolutions and dense layers of a built model,
    read from each layer's configuration and output shape."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, K.layers.DepthwiseConv2D):  # before Conv2D: it subclasses it
            _, h, w, c = layer.output_shape
            kh, kw = layer.kernel_size
            total += h * w * kh * kw * c
        elif isinstance(layer, K.layers.Conv2D):
            _, h, w, cout = layer.output_shape
            cin = layer.input_shape[-1]
            kh, kw = layer.kernel_size
            total += h * w * kh * kw * (cin // layer.groups) * cout
        elif isinstance(layer, K.layers.Dense):
            spatial = 1
            for d in layer.input_shape[1:-1]:
                spatial *= d
            total += spatial * layer.input_shape[-1] * layer.units
    return int(total)
