"""BlazePose (Bazarevsky et al. 2020; MediaPipe's pose model cards) described
once and read two ways: the
network functions below run either on ``Count`` (shapes, parameters and MACs,
no TensorFlow: `odml zoo list` stays fast) or on the tf_keras backend of
zoo/blazepose.py, which builds the model. A test checks that both agree.

Detector (224x224x3 in [-1, 1]): a BlazeFace-style SSD of BlazeBlocks and
double BlazeBlocks; heads at strides 8, 16 and 32 with 2, 2 and 6 anchors per
cell (28*28*2 + 14*14*2 + 7*7*6 = 2254 anchors); per anchor a score and 12
regressors (box centre, width, height, 4 alignment keypoints).

Landmark model (256x256x3 in [0, 1]): an encoder of BlazeBlocks, a heatmap
tower (decoder back to 32x32 with encoder skips; heatmap + offset heads used
in training only) and a regression tower fed by the heatmap tower and the
encoder; 35 keypoints (33 + 2 alignment) x (x, y, z, visibility, presence)
plus a pose flag. Where the released model regresses x and y with a dense
layer at 2x2, ours reads them out at 16x16 with a soft-argmax (a softmax over
the cells of a 1x1 conv's map, then the expected cell centre; learnt from the
coordinate loss alone, no heatmap target): on held-out synthetic people after
the same training (tests/bench/pose_synthetic.py) PCK@0.2 0.834 where the
dense read-out reached 0.669 (``readout=0`` builds the dense one).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from odml.data.pose import ALIGN_KEYPOINTS, DETECTOR_KEYPOINTS, LANDMARKS, NUM_KEYPOINTS  # noqa: F401
from odml.data.pose_geometry import ANCHORS_PER_CELL


@dataclass
class DetectorConfig:
    input_size: int = 224
    stem: int = 24
    stage112: tuple[int, ...] = (24, 24)
    stage56: tuple[int, ...] = (48, 48)
    mid: int = 24  # double BlazeBlock: project to this, expand to `wide`
    wide: int = 96
    repeats: tuple[int, int, int] = (3, 3, 2)  # double blocks at strides 8, 16, 32
    batch_norm: bool = False  # in training (folded into the convolutions on export); slower per step on CPU

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LandmarkConfig:
    input_size: int = 256
    channels: tuple[int, int, int, int, int] = (24, 48, 96, 160, 224)  # at 128, 64, 32, 16, 8
    repeats: tuple[int, int, int, int, int] = (2, 3, 4, 4, 4)
    decoder: int = 48  # heatmap tower width
    reg_repeats: int = 2  # blocks per level in the regression tower
    heatmap_size: int = 32
    readout: int = 16  # x, y read out by a soft-argmax over the regression tower's cells at this size; 0: dense
    batch_norm: bool = False  # in training (folded into the convolutions on export); slower per step on CPU

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


POSE_PRESETS: dict[str, Any] = {
    "blazepose_detector": DetectorConfig(),
    "blazepose_lite": LandmarkConfig(),
    "blazepose_full": LandmarkConfig(channels=(32, 64, 128, 224, 352), repeats=(2, 4, 5, 6, 7), decoder=64,
                                     reg_repeats=3),
    # for tests: the same graph, narrow
    "blazepose_tiny": LandmarkConfig(channels=(8, 16, 16, 24, 32), repeats=(1, 1, 1, 1, 1), decoder=16,
                                     reg_repeats=1),
    "blazepose_detector_tiny": DetectorConfig(stem=8, stage112=(8,), stage56=(16,), mid=8, wide=32,
                                              repeats=(1, 1, 1)),
}
POSE_MODELS = [n for n in POSE_PRESETS if "tiny" not in n]
PUBLISHED_WEIGHTS = {"blazepose_detector": 2_965_026, "blazepose_full": 3_169_489}


def pose_config(name: str, **overrides: Any) -> Any:
    from odml.errors import UnknownModelError

    if name not in POSE_PRESETS:
        raise UnknownModelError(f"unknown pose model {name!r}; choose from {', '.join(POSE_PRESETS)}")
    return replace(POSE_PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})


def anchor_counts(input_size: int = 224) -> dict[int, int]:
    return {s: (-(-input_size // s)) ** 2 * n for s, n in ANCHORS_PER_CELL.items()}


# --- the networks, written once against a backend ---------------------------------------------------------

def blaze_block(B: Any, x: Any, out: int, stride: int = 1, name: str = "") -> Any:
    """5x5 depthwise + 1x1 conv, residual; stride 2: max-pool shortcut with
    zero channel padding; ReLU after the add."""
    y = B.dw(x, 5, stride, name=f"{name}_dw")
    y = B.conv(y, out, 1, name=f"{name}_pw")
    return B.relu(B.add(y, _shortcut(B, x, out, stride, name)), name=f"{name}_relu")


def double_blaze_block(B: Any, x: Any, mid: int, out: int, stride: int = 1, name: str = "") -> Any:
    """5x5 dw -> 1x1 project to ``mid`` (ReLU) -> 5x5 dw -> 1x1 expand to
    ``out``, residual."""
    y = B.dw(x, 5, stride, name=f"{name}_dw1")
    y = B.conv(y, mid, 1, act="relu", name=f"{name}_project")
    y = B.dw(y, 5, 1, name=f"{name}_dw2")
    y = B.conv(y, out, 1, name=f"{name}_expand")
    return B.relu(B.add(y, _shortcut(B, x, out, stride, name)), name=f"{name}_relu")


def _shortcut(B: Any, x: Any, out: int, stride: int, name: str) -> Any:
    if stride == 2:
        x = B.maxpool(x, name=f"{name}_pool")
    c = B.channels(x)
    if c < out:
        x = B.pad_channels(x, out - c, name=f"{name}_padc")
    elif c > out:
        x = B.conv(x, out, 1, name=f"{name}_skip")  # a narrowing residual needs a projection
    return x


def detector_net(B: Any, cfg: DetectorConfig) -> dict[str, Any]:
    x = B.input((cfg.input_size, cfg.input_size, 3), name="image")
    h = B.conv(x, cfg.stem, 5, 2, act="relu", name="stem")
    for i, c in enumerate(cfg.stage112):
        h = blaze_block(B, h, c, name=f"b112_{i}")
    for i, c in enumerate(cfg.stage56):
        h = blaze_block(B, h, c, 2 if i == 0 else 1, name=f"b56_{i}")
    feats = {}
    for stride, reps in zip((8, 16, 32), cfg.repeats):
        for i in range(reps):
            h = double_blaze_block(B, h, cfg.mid, cfg.wide, 2 if i == 0 else 1, name=f"d{stride}_{i}")
        feats[stride] = h
    scores, regs = [], []
    for stride, f in feats.items():
        n = ANCHORS_PER_CELL[stride]
        s = B.conv(f, n, 3, name=f"score{stride}", head=True)
        r = B.conv(f, n * 12, 3, name=f"reg{stride}", head=True)
        scores.append(B.reshape(s, (-1, 1), name=f"score{stride}_flat"))
        regs.append(B.reshape(r, (-1, 12), name=f"reg{stride}_flat"))
    logits = B.concat(scores, axis=1, name="scores")
    boxes = B.concat(regs, axis=1, name="regressors")
    prob = B.sigmoid(logits, name="score_prob")
    deploy = B.concat([prob, boxes], axis=-1, name="detections")  # (2254, 13): score, box, keypoints
    return {"input": x, "logits": logits, "regressors": boxes, "deploy": deploy}


def landmark_net(B: Any, cfg: LandmarkConfig) -> dict[str, Any]:
    c, reps = cfg.channels, cfg.repeats
    x = B.input((cfg.input_size, cfg.input_size, 3), name="image")
    h = B.conv(x, c[0], 3, 2, act="relu", name="stem")
    enc = []
    for lvl in range(5):  # 128, 64, 32, 16, 8
        for i in range(reps[lvl]):
            h = blaze_block(B, h, c[lvl], 2 if (i == 0 and lvl > 0) else 1, name=f"e{lvl}_{i}")
        enc.append(h)
    # heatmap tower: back up to 32x32 with encoder skips
    d = B.conv(enc[4], cfg.decoder, 1, act="relu", name="h8")
    d = B.upsample(d, name="h8_up")
    d = B.add(d, B.conv(enc[3], cfg.decoder, 1, act="relu", name="h16_skip"))
    d = blaze_block(B, d, cfg.decoder, name="h16")
    d = B.upsample(d, name="h16_up")
    d = B.add(d, B.conv(enc[2], cfg.decoder, 1, act="relu", name="h32_skip"))
    d = blaze_block(B, d, cfg.decoder, name="h32")
    heat = B.conv(d, LANDMARKS, 3, name="heatmap", head=True)
    offs = B.conv(d, 2 * LANDMARKS, 3, name="offsets", head=True)
    # regression tower: from the heatmap tower's features down to 2x2, with encoder skips
    r = B.coords(d, name="r32_coords")  # x and y of every cell: where the regression starts from
    xy = None
    for lvl, res in ((3, 16), (4, 8)):
        r = blaze_block(B, r, c[lvl], 2, name=f"r{res}_0")
        r = B.add(r, B.conv(enc[lvl], c[lvl], 1, act="relu", name=f"r{res}_skip"))
        for i in range(1, cfg.reg_repeats + 1):
            r = blaze_block(B, r, c[lvl], name=f"r{res}_{i}")
        if res == cfg.readout:  # x, y: a soft-argmax over these cells (a map learnt from the coordinates alone)
            xy = B.soft_argmax(B.conv(r, LANDMARKS, 1, name="xy_logits", head=True), name="xy")
    for res in (4, 2):
        for i in range(cfg.reg_repeats):
            r = blaze_block(B, r, c[4], 2 if i == 0 else 1, name=f"r{res}_{i}")
    size = B.spatial(r)
    if xy is None:
        coords = B.reshape(B.conv(r, 3 * LANDMARKS, size, padding="valid", name="coords", head=True), (LANDMARKS, 3),
                           name="coords_r")
    else:
        z = B.reshape(B.conv(r, LANDMARKS, size, padding="valid", name="coords", head=True), (LANDMARKS, 1),
                      name="coords_r")
        coords = B.concat([xy, z], axis=-1, name="coords_xyz")
    flags = B.reshape(B.sigmoid(B.conv(r, 2 * LANDMARKS, size, padding="valid", name="flags", head=True), name="flags_p"),
                      (LANDMARKS, 2), name="flags_r")
    pose_logit = B.reshape(B.conv(r, 1, size, padding="valid", name="pose_flag", head=True), (1,), name="pose_flag_r")
    landmarks = B.reshape(B.concat([coords, flags], axis=-1, name="kp"), (5 * LANDMARKS,), name="landmarks")
    deploy = B.concat([landmarks, B.sigmoid(pose_logit, name="pose_prob")], axis=-1, name="pose")
    return {"input": x, "heatmap": heat, "offsets": offs, "coords": coords, "flags": flags,
            "pose_logit": pose_logit, "deploy": deploy}


def build_net(B: Any, cfg: Any) -> dict[str, Any]:
    B.batch_norm = cfg.batch_norm
    return detector_net(B, cfg) if isinstance(cfg, DetectorConfig) else landmark_net(B, cfg)


class Count:
    """A backend that follows shapes and counts parameters and MACs
    (multiply-accumulates of convolutions; 'same' padding)."""

    def __init__(self) -> None:
        self.params = 0  # as deployed: batch norm folded into the convolutions' biases
        self.keras_params = 0  # as tf_keras counts them (a batch norm has 4 per channel)
        self.macs = 0
        self.batch_norm = False

    def input(self, shape: tuple[int, ...], name: str = "") -> tuple[int, ...]:
        return tuple(shape)

    def conv(self, x, filters, k, stride=1, act=None, name="", padding="same", head=False):
        h, w, c = x
        oh, ow = (-(-h // stride), -(-w // stride)) if padding == "same" else ((h - k) // stride + 1, (w - k) // stride + 1)
        self._add(k * k * c * filters, filters, self.batch_norm and not head)
        self.macs += oh * ow * k * k * c * filters
        return (oh, ow, filters)

    def _add(self, weights: int, channels: int, bn: bool) -> None:
        self.params += weights + channels
        self.keras_params += weights + (4 * channels if bn else channels)

    def dw(self, x, k, stride=1, name=""):
        h, w, c = x
        oh, ow = -(-h // stride), -(-w // stride)
        self._add(k * k * c, c, self.batch_norm)
        self.macs += oh * ow * k * k * c
        return (oh, ow, c)

    def relu(self, x, name=""):
        return x

    def sigmoid(self, x, name=""):
        return x

    def add(self, a, b, name=""):
        assert a == b, (a, b)
        return a

    def maxpool(self, x, name=""):
        return (x[0] // 2, x[1] // 2, x[2])

    def pad_channels(self, x, n, name=""):
        return (*x[:-1], x[-1] + n)

    def upsample(self, x, name=""):
        return (2 * x[0], 2 * x[1], x[2])

    def coords(self, x, name=""):
        return (*x[:-1], x[-1] + 2)

    def soft_argmax(self, x, name=""):
        h, w, k = x
        self.macs += h * w * k * 2
        return (k, 2)

    def channels(self, x) -> int:
        return x[-1]

    def spatial(self, x) -> int:
        return x[0]

    def reshape(self, x, shape, name=""):
        total = 1
        for d in x:
            total *= d
        known = 1
        for d in shape:
            known *= d if d != -1 else 1
        return tuple(total // known if d == -1 else d for d in shape)

    def concat(self, xs, axis=-1, name=""):
        first = list(xs[0])
        ax = axis if axis >= 0 else len(first) + axis
        ax = ax - 1 if axis > 0 else ax  # shapes here have no batch dimension
        first[ax] = sum(s[ax] for s in xs)
        return tuple(first)


def count(cfg: Any) -> dict[str, int]:
    """Parameters and MACs of the deployed model (heatmap heads removed for
    the landmark model; they are counted separately)."""
    B = Count()
    net = build_net(B, cfg)
    res = {"params_train": B.params, "macs_train": B.macs, "keras_params_train": B.keras_params}
    if isinstance(cfg, LandmarkConfig):
        hm = Count()
        d = (cfg.heatmap_size, cfg.heatmap_size, cfg.decoder)
        hm.conv(d, LANDMARKS, 3, head=True)
        hm.conv(d, 2 * LANDMARKS, 3, head=True)
        res.update(params=B.params - hm.params, macs=B.macs - hm.macs, heatmap_params=hm.params,
                   keras_params=B.keras_params - hm.keras_params)
    else:
        res.update(params=B.params, macs=B.macs, keras_params=B.keras_params)
    res["output"] = list(net["deploy"])
    return res
