"""BlazePose detector and landmark models as tf_keras models: the networks of
zoo/poseconfig.py run on a Keras backend. Builtin TFLite ops only (CONV_2D,
DEPTHWISE_CONV_2D, ADD, PAD, MAX_POOL_2D, RESIZE_BILINEAR, RESHAPE,
CONCATENATION, LOGISTIC; ReLU fused or alone).

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


class KerasBackend:
    def input(self, shape, name=""):
        return K.Input(shape, name=name)

    def conv(self, x, filters, k, stride=1, act=None, name="", padding="same"):
        return K.layers.Conv2D(filters, k, stride, padding=padding, activation=act, name=name)(x)

    def dw(self, x, k, stride=1, name=""):
        return K.layers.DepthwiseConv2D(k, stride, padding="same", name=name)(x)

    def relu(self, x, name=""):
        return K.layers.ReLU(name=name)(x)

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
