"""Build a tf_keras segmentation model from a :class:`~odml.zoo.segspec.SegSpec`:
the backbone's stem and blocks (``zoo/blocks.py``), its features at the
strides the head reads, and the DeepLabv3+ or BiFPN head. The output is
per-pixel class logits at the head's stride (the Model Garden's models do
not upsample inside the model either: export's ``--finalize`` does)."""

from __future__ import annotations

from odml.zoo.blocks import K, _Ctx, _tf, activation, ibn_block
from odml.zoo.segspec import SegSpec, bifpn_nodes


@K.utils.register_keras_serializable(package="odml")
class WeightedFusion(K.layers.Layer):
    """EfficientDet's fast normalized fusion: sum_i relu(w_i) x_i / (sum_i relu(w_i) + eps)."""

    def build(self, shapes):
        self.w = self.add_weight(name="w", shape=(len(shapes),), initializer="ones", trainable=True)

    def call(self, xs):
        w = _tf.nn.relu(self.w)
        w = w / (_tf.reduce_sum(w) + 1e-4)
        return _tf.add_n([w[i] * x for i, x in enumerate(xs)])


def _resize(x, h: int, w: int, name: str):
    if tuple(x.shape[1:3]) == (h, w):
        return x
    return K.layers.Resizing(h, w, interpolation="bilinear", name=name)(x)


def backbone_features(spec: SegSpec, inputs, ctx: _Ctx) -> dict[int, object]:
    """The backbone's output at every level (log2 stride) it reaches."""
    bb = spec.backbone
    at = {idx: lv for lv, (idx, *_rest) in spec.endpoints().items()}
    x = ctx.conv_bn(inputs, bb.stem.filters, bb.stem.kernel, bb.stem.stride, "stem", act=bb.activation)
    feats = {at[0]: x} if 0 in at else {}
    cin, n = bb.stem.filters, len(bb.blocks)
    for i, b in enumerate(bb.blocks):
        x = ibn_block(x, b, cin, ctx, f"block{i}", drop_rate=bb.drop_connect_rate * i / n)
        cin = b.filters
        if i + 1 in at:
            feats[at[i + 1]] = x
    return feats


def _deeplab(spec: SegSpec, feats: dict, ctx: _Ctx):
    hd, act = spec.head, spec.backbone.activation
    hi = feats[hd.level]
    h, w = int(hi.shape[1]), int(hi.shape[2])
    a = hd.aspp_filters
    branches = [ctx.conv_bn(hi, a, 1, 1, "aspp_b0", act=act)]
    for j, r in enumerate(hd.rates):
        y = K.layers.DepthwiseConv2D(3, dilation_rate=r, padding="same", use_bias=False, name=f"aspp_b{j + 1}_dw")(hi)
        branches.append(ctx.conv_bn(y, a, 1, 1, f"aspp_b{j + 1}", act=act))
    p = K.layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pool")(hi)
    p = ctx.conv_bn(p, a, 1, 1, "aspp_pool", act=act)
    branches.append(K.layers.UpSampling2D(size=(h, w), name="aspp_pool_up")(p))
    x = K.layers.Concatenate(name="aspp_concat")(branches)
    x = ctx.conv_bn(x, a, 1, 1, "aspp_project", act=act)
    if hd.dropout:
        x = K.layers.Dropout(hd.dropout, name="aspp_dropout")(x)
    lo = feats[hd.low_level]
    lh, lw = int(lo.shape[1]), int(lo.shape[2])
    low = ctx.conv_bn(lo, hd.low_filters, 1, 1, "decoder_low", act=act)
    x = K.layers.Concatenate(name="decoder_concat")([_resize(x, lh, lw, "decoder_up"), low])
    for j in range(hd.convs):
        x = K.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"decoder{j}_dw_conv")(x)
        x = ctx.bn(f"decoder{j}_dw_bn")(x)
        x = activation(act, f"decoder{j}_dw_act")(x)
        x = ctx.conv_bn(x, hd.filters, 1, 1, f"decoder{j}_pw", act=act)
    return K.layers.Conv2D(spec.num_classes, 1, use_bias=True, name="logits")(x)


def _sep_bn(x, f: int, ctx: _Ctx, name: str):
    x = K.layers.SeparableConv2D(f, 3, padding="same", use_bias=False, name=f"{name}_sep")(x)
    x = ctx.bn(f"{name}_bn")(x)
    return activation("relu6", f"{name}_act")(x)


def _bifpn(spec: SegSpec, feats: dict, ctx: _Ctx):
    hd, f = spec.head, spec.head.filters
    top = max(feats)
    raw = dict(feats)
    for lv in range(top + 1, hd.max_level + 1):  # levels past the backbone
        x = raw[lv - 1]
        if int(x.shape[-1]) != f:
            x = K.layers.Conv2D(f, 1, use_bias=True, name=f"bifpn_extra{lv}_conv")(x)
        raw[lv] = K.layers.AveragePooling2D(3, strides=2, padding="same", name=f"bifpn_extra{lv}_pool")(x)
    levels = {}
    for lv in range(hd.min_level, hd.max_level + 1):
        x = raw[lv]
        if int(x.shape[-1]) != f:
            x = K.layers.Conv2D(f, 1, use_bias=True, name=f"bifpn_in{lv}_conv")(x)
            x = ctx.bn(f"bifpn_in{lv}_bn")(x)
        levels[lv] = x
    size = {lv: (int(x.shape[1]), int(x.shape[2])) for lv, x in levels.items()}
    nodes = bifpn_nodes(hd.min_level, hd.max_level)
    for c in range(hd.repeats):
        out = [levels[lv] for lv in range(hd.min_level, hd.max_level + 1)]
        lv_of = list(range(hd.min_level, hd.max_level + 1))
        for k, (lv, ins) in enumerate(nodes):
            name = f"bifpn{c}_n{k}"
            xs = []
            for j, i in enumerate(ins):
                x, li = out[i], lv_of[i]
                if li < lv:
                    for step in range(lv - li):
                        x = K.layers.AveragePooling2D(3, strides=2, padding="same", name=f"{name}_down{j}_{step}")(x)
                elif li > lv:
                    x = _resize(x, *size[lv], f"{name}_up{j}")
                xs.append(x)
            x = (WeightedFusion(name=f"{name}_fuse")(xs) if hd.fusion == "weighted"
                 else K.layers.Add(name=f"{name}_add")(xs))
            out.append(_sep_bn(x, f, ctx, name))
            lv_of.append(lv)
        levels = {lv: out[max(i for i, v in enumerate(lv_of) if v == lv)] for lv in levels}
    h3, w3 = size[hd.min_level]
    x = K.layers.Add(name="bifpn_sum")([_resize(levels[lv], h3, w3, f"bifpn_out{lv}_up") for lv in sorted(levels)])
    x = _sep_bn(x, f, ctx, "bifpn_head")
    return K.layers.SeparableConv2D(spec.num_classes, 3, padding="same", use_bias=True, name="logits")(x)


@K.utils.register_keras_serializable(package="odml")
class ArgMax(K.layers.Layer):
    """The class of each pixel: int32 without the channel axis (``keepdims``
    False), or a float (h, w, 1) map that later steps can resize."""

    def __init__(self, keepdims: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.keepdims = bool(keepdims)

    def call(self, x):
        labels = _tf.argmax(x, axis=-1, output_type=_tf.int32)
        return _tf.cast(labels, _tf.float32)[..., None] if self.keepdims else labels

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}


def finalize(x, steps: list[tuple[str, int]]):
    """The finalize steps (``zoo/segspec.py`` finalize_steps) after the logits ``x``."""
    done = False
    for i, (step, size) in enumerate(steps):
        if step == "resize":
            x = K.layers.Resizing(size, size, interpolation="nearest" if done else "bilinear",
                                  name=f"finalize{i}_resize{size}")(x)
        elif step == "argmax":
            x = ArgMax(keepdims=i < len(steps) - 1, name=f"finalize{i}_argmax")(x)
            done = True
        else:
            x = K.layers.Reshape(tuple(int(d) for d in x.shape[1:3]), name=f"finalize{i}_squeeze")(x)
    return x


def with_finalize(model, spec: SegSpec):
    """``model`` (logits) with ``spec.finalize``'s steps after its output."""
    from odml.zoo.segspec import finalize_steps

    if not spec.finalize:
        return model
    return K.Model(model.inputs, finalize(model.outputs[0], finalize_steps(spec.finalize)), name=model.name)


def build_segmentation(spec: SegSpec):
    spec.validate(spec.name)
    bb = spec.backbone
    ctx = _Ctx(bb.activation, bb.bn_momentum, bb.bn_epsilon)
    inputs = K.Input(shape=spec.input_shape, name="image")
    feats = backbone_features(spec, inputs, ctx)
    logits = (_deeplab if spec.head.kind == "deeplabv3plus" else _bifpn)(spec, feats, ctx)
    return with_finalize(K.Model(inputs, logits, name=spec.name), spec)
