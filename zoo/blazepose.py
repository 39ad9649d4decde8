"""BlazePose detector and landmark models as tf_keras models: the networks of
zoo/poseconfig.py run on a Keras backend. Builtin TFLite ops only: those of
the released models (CONV_2D, DEPTHWISE_CONV_2D, ADD, PAD, MAX_POOL_2D,
RESIZE_BILINEAR, RESHAPE, CONCATENATION, LOGISTIC; ReLU fused or alone), and
in the landmark model's soft-argmax read-out TRANSPOSE, SOFTMAX and
FULLY_CONNECTED.

``build_pose_model(cfg)`` returns ``PoseModels``: ``train`` (every head, for
training), ``deploy`` (one output: the detections (2254, 13), or the 176
landmark values; the heatmap branch removed) and for the landmark model the
names of the layers of the heatmap tower (frozen in the second stage)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from odml._tf import keras, tf
from odml.zoo.poseconfig import DetectorConfig, LandmarkConfig, build_net

K = keras()
_tf = tf()


@K.utils.register_keras_serializable(package="odml")
class ChannelPad(K.layers.Layer):
    """Zero channels appended (the shortcut of a widening BlazeBlock): one PAD op."""

    def __init__(self, extra: int, **kwargs):
        super().__init__(**kwargs)
        self.extra = int(extra)

    def call(self, x):
        return _tf.pad(x, [[0, 0], [0, 0], [0, 0], [0, self.extra]])

    def compute_output_shape(self, s):
        return (*s[:-1], s[-1] + self.extra)

    def get_config(self):
        return {**super().get_config(), "extra": self.extra}


@K.utils.register_keras_serializable(package="odml")
class DepthToSpace(K.layers.Layer):
    """Channels moved into block x block cells (one DEPTH_TO_SPACE op): the
    upsampling of MediaPipe's released pose detector."""

    def __init__(self, block: int, **kwargs):
        super().__init__(**kwargs)
        self.block = int(block)

    def call(self, x):
        return _tf.nn.depth_to_space(x, self.block)

    def compute_output_shape(self, s):
        b = self.block
        return (s[0], None if s[1] is None else s[1] * b, None if s[2] is None else s[2] * b, s[3] // (b * b))

    def get_config(self):
        return {**super().get_config(), "block": self.block}


@K.utils.register_keras_serializable(package="odml")
class AddCoords(K.layers.Layer):
    """Two channels appended: the x and y of each cell in [0, 1] (a constant
    tensor: one CONCATENATION op), so that the regression knows where it is."""

    def call(self, x):
        h, w = int(x.shape[1]), int(x.shape[2])
        ys, xs = _tf.meshgrid((_tf.range(h, dtype=x.dtype) + 0.5) / h, (_tf.range(w, dtype=x.dtype) + 0.5) / w,
                              indexing="ij")
        grid = _tf.stack([xs, ys], -1)[None]
        return _tf.concat([x, _tf.tile(grid, [_tf.shape(x)[0], 1, 1, 1])], -1)

    def compute_output_shape(self, s):
        return (*s[:-1], s[-1] + 2)


@K.utils.register_keras_serializable(package="odml")
class SoftArgmax(K.layers.Layer):
    """(h, w, K) logits -> (K, 2): for each channel the expected x and y (in
    [0, 1]) of a softmax over the cells. TRANSPOSE, SOFTMAX and a
    FULLY_CONNECTED (or BATCH_MATMUL) with the cell centres."""

    def call(self, x):
        h, w, k = int(x.shape[1]), int(x.shape[2]), int(x.shape[3])
        p = _tf.nn.softmax(_tf.transpose(_tf.reshape(x, [-1, h * w, k]), [0, 2, 1]), axis=-1)
        ys, xs = _tf.meshgrid((_tf.range(h, dtype=x.dtype) + 0.5) / h, (_tf.range(w, dtype=x.dtype) + 0.5) / w,
                              indexing="ij")
        grid = _tf.reshape(_tf.stack([xs, ys], -1), [h * w, 2])
        return _tf.matmul(p, grid)

    def compute_output_shape(self, s):
        return (s[0], s[3], 2)


class KerasBackend:
    batch_norm = False

    def input(self, shape, name=""):
        return K.Input(shape, name=name)

    def conv(self, x, filters, k, stride=1, act=None, name="", padding="same", head=False):
        if head or not self.batch_norm:
            return K.layers.Conv2D(filters, k, stride, padding=padding, activation=act, name=name)(x)
        y = K.layers.Conv2D(filters, k, stride, padding=padding, use_bias=False, name=name)(x)
        y = K.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(y)
        return K.layers.Activation(act, name=f"{name}_{act}")(y) if act else y

    def dw(self, x, k, stride=1, name=""):
        if not self.batch_norm:
            return K.layers.DepthwiseConv2D(k, stride, padding="same", name=name)(x)
        y = K.layers.DepthwiseConv2D(k, stride, padding="same", use_bias=False, name=name)(x)
        return K.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(y)

    def coords(self, x, name=""):
        return AddCoords(name=name)(x)

    def relu(self, x, name=""):
        return K.layers.ReLU(name=name)(x)

    def soft_argmax(self, x, name=""):
        return SoftArgmax(name=name)(x)

    def sigmoid(self, x, name=""):
        return K.layers.Activation("sigmoid", name=name)(x)

    def add(self, a, b, name=None):
        return K.layers.Add(name=name)([a, b])

    def maxpool(self, x, name=""):
        return K.layers.MaxPool2D(2, 2, name=name)(x)

    def pad_channels(self, x, n, name=""):
        return ChannelPad(n, name=name)(x)

    def upsample(self, x, name=""):
        return K.layers.UpSampling2D(2, interpolation="bilinear", name=name)(x)

    def channels(self, x) -> int:
        return int(x.shape[-1])

    def spatial(self, x) -> int:
        return int(x.shape[1])

    def reshape(self, x, shape, name=""):
        return K.layers.Reshape(shape, name=name)(x)

    def concat(self, xs, axis=-1, name=""):
        return K.layers.Concatenate(axis=axis, name=name)(xs)


@dataclass
class PoseModels:
    cfg: Any
    train: Any
    deploy: Any
    heatmap_tower: list[str]  # layers trained in stage 1 only (landmark model)
    heat: Any = None  # the heatmap tower alone (stage 1)


def build_pose_model(cfg: Any, name: str = "blazepose") -> PoseModels:
    net = build_net(KerasBackend(), cfg)
    x = net["input"]
    if isinstance(cfg, DetectorConfig):
        train = K.Model(x, {"logits": net["logits"], "regressors": net["regressors"]}, name=f"{name}_train")
        deploy = K.Model(x, net["deploy"], name=name)
        return PoseModels(cfg, train, deploy, [])
    assert isinstance(cfg, LandmarkConfig)
    outs = {k: net[k] for k in ("heatmap", "offsets", "coords", "flags", "pose_logit")}
    train = K.Model(x, outs, name=f"{name}_train")
    deploy = K.Model(x, net["deploy"], name=name)
    # the heatmap tower: every layer the heatmap depends on (encoder + decoder)
    tower = K.Model(x, {"heatmap": net["heatmap"], "offsets": net["offsets"]}, name=f"{name}_heatmap")
    return PoseModels(cfg, train, deploy, [layer.name for layer in tower.layers], tower)
