"""BlazePose (Bazarevsky et al., "BlazePose: On-device Real-time Body Pose
tracking", CVPR workshops 2020; MediaPipe's pose detection and landmark model
cards): two families, the person detector and the landmark model, trained
together by ``odml train blazepose``.

- Detector: 224x224x3 in [-1, 1] -> (2254, 13) detections: per SSD anchor a
  score, a box and 4 alignment keypoints.
- Landmark model: 256x256x3 in [0, 1] -> 176 values: 35 keypoints (33 + 2
  alignment points) x (x, y, z, visibility, presence), then the pose flag.

The networks are written once in ``odml.zoo.poseconfig`` (counted there
without TensorFlow, built by ``odml.zoo.blazepose``); these are the families:
what goes in and comes out, the export inputs, and which models train
together."""

from __future__ import annotations

import dataclasses
from typing import Any

from odml.errors import DataError, SpecError
from odml.zoo.family import TRAIN_POSE, Counts, Family, InputSpec, OutputSpec
from odml.zoo.poseconfig import LANDMARKS, PUBLISHED_WEIGHTS, DetectorConfig, LandmarkConfig, \
    anchor_counts, count, pose_config
from odml.zoo.registry import register_family

VARIANTS = ("lite", "full", "tiny")
PAIR = "blazepose"  # `odml train blazepose --variant V`: the detector and the landmark model V


class _BlazePose(Family):
    trainer = "pose"
    train_options = TRAIN_POSE
    train_defaults = {"batch_size": 8, "learning_rate": 2e-3}
    config_type: type = LandmarkConfig

    def config(self, name: str) -> Any:
        return pose_config(name)

    def with_classes(self, cfg: Any, n: int) -> Any:
        raise SpecError(f"--classes: a {self.name} model has no classes")

    def count(self, cfg: Any) -> Counts:
        c = count(cfg)
        extra = {k: c[k] for k in ("heatmap_params",) if k in c}
        return Counts(c["params"], c["macs"], extra)

    def line(self, cfg: Any) -> str:
        return f"{self.name}(" + ",".join(f"{k}={v}" for k, v in dataclasses.asdict(cfg).items()) + ")"

    def settings(self, cfg: Any) -> list[tuple[str, str]]:
        c = count(cfg)
        rows = list(super().settings(cfg))
        if "heatmap_params" in c:
            rows.append(("heatmap heads (training only)", f"{c['heatmap_params']:,}"))
        return rows

    def build(self, cfg: Any, name: str | None = None) -> Any:
        from odml.zoo.blazepose import build_pose_model

        return build_pose_model(cfg, name or self.name).deploy

    def data_hint(self) -> str:
        return "'synthetic' or a COCO-style keypoint .json"

    def check_data(self, data: str) -> None:
        if data != "synthetic" and not data.lower().endswith(".json"):
            raise DataError(f"--data {data}: a pose model takes 'synthetic' or a COCO-style keypoint .json")

    def pair(self, name: str, variant: str | None = None) -> tuple[str, str]:
        """(detector, landmark model) that ``odml train NAME`` trains."""
        if name == PAIR or name in BlazePoseDetector._names:
            variant = variant or "lite"
            if variant not in VARIANTS:
                raise DataError(f"--variant: expected {', '.join(VARIANTS)}, got {variant!r}")
            lm = f"blazepose_{variant}"
        else:
            if variant is not None:
                raise DataError(f"--variant: {name} is one landmark model; --variant picks the landmark model of "
                                f"'odml train {PAIR}'")
            lm = name
        return ("blazepose_detector_tiny" if lm == "blazepose_tiny" else "blazepose_detector"), lm


@register_family
class BlazePoseDetector(_BlazePose):
    name = "blazepose_detector"
    task = "detect"
    noun = "a pose detector"
    zoo_task = "pose_detection"
    title = "the BlazePose person detector (MediaPipe pose_detection)"
    config_type = DetectorConfig
    _names = ("blazepose_detector", "blazepose_detector_tiny")

    def models(self) -> dict[str, str]:
        return {"blazepose_detector": "BlazePose person detector (SSD, 2254 anchors)"}

    def hidden(self) -> set[str]:
        return {"blazepose_detector_tiny"}

    def describe(self, cfg: DetectorConfig, name: str = "") -> str:
        desc = f"{sum(anchor_counts(cfg.input_size).values())} anchors, box + 4 alignment keypoints each"
        if name in PUBLISHED_WEIGHTS:
            desc += f"; released model: {PUBLISHED_WEIGHTS[name]:,} weights"
        return desc

    def inputs(self, cfg: DetectorConfig, vocab: list[str] | None = None) -> InputSpec:
        s = cfg.input_size
        return InputSpec("image", (s, s, 3), "float32", (-1.0, 1.0), "image",
                         "RGB image letterboxed to a square; the model reads pixel / 127.5 - 1")

    def outputs(self, cfg: DetectorConfig) -> OutputSpec:
        n = sum(anchor_counts(cfg.input_size).values())
        return OutputSpec("detect", "detections", n * 13,
                          "per SSD anchor: score, box (x, y, w, h) and 4 alignment keypoints (x, y), as offsets",
                          (n, 13))

    def read(self, card: Any, data: str, val_split: float = 0.2, seed: int = 0, **options: Any) -> Any:
        from odml.data.pose_items import detector_inputs

        self.check_data(data)
        return _Inputs(*detector_inputs(card.config.input_size, data, options.get("n_val", 100),
                                        options.get("n_cal", 200), seed), data)


@register_family
class BlazePoseLandmarks(_BlazePose):
    name = "blazepose_landmarks"
    student_family = "blazepose_landmarks"  # a trained landmark model teaches smaller ones
    task = "keypoints"
    noun = "a pose landmark model"
    zoo_task = "pose_landmarks"
    title = "the BlazePose landmark model: 33 keypoints and the pose flag (MediaPipe pose_landmark)"

    def models(self) -> dict[str, str]:
        return {"blazepose_lite": "BlazePose landmark model, lite", "blazepose_full": "BlazePose landmark model, full"}

    def hidden(self) -> set[str]:
        return {"blazepose_tiny", PAIR}

    def config(self, name: str) -> LandmarkConfig:
        return pose_config("blazepose_lite" if name == PAIR else name)

    def describe(self, cfg: LandmarkConfig, name: str = "") -> str:
        desc = f"{LANDMARKS} keypoints x (x, y, z, visibility, presence) + pose flag"
        if name in PUBLISHED_WEIGHTS:
            desc += f"; released model: {PUBLISHED_WEIGHTS[name]:,} weights"
        return desc

    def inputs(self, cfg: LandmarkConfig, vocab: list[str] | None = None) -> InputSpec:
        s = cfg.input_size
        return InputSpec("image", (s, s, 3), "float32", (0.0, 1.0), "image",
                         "RGB crop around the person's region of interest; the model reads pixel / 255")

    def outputs(self, cfg: LandmarkConfig) -> OutputSpec:
        return OutputSpec("keypoints", "landmarks", 5 * LANDMARKS + 1,
                          f"{LANDMARKS} keypoints x (x, y as fractions of the crop, z in crop widths, visibility, "
                          "presence), then the pose flag")

    def landmarks(self, cfg: LandmarkConfig, outputs: Any) -> Any:
        import numpy as np

        return np.asarray(outputs[0] if isinstance(outputs, (list, tuple)) else outputs, np.float32)

    # ---- compression: odml's landmark models are the students of a keypoint teacher (distilled on its keypoints)
    def student(self, item: str, width: float | None, teacher: Any) -> tuple[str, LandmarkConfig]:
        if item not in self.models() and item != "blazepose_tiny":
            raise SpecError(f"student {item!r}: not a BlazePose landmark model ({', '.join(self.models())})")
        if width is not None and width != 1.0:
            raise SpecError(f"student {item}@{width:g}: BlazePose landmark models are not scaled by a width")
        cfg = self.config(item)
        if (cfg.input_size, cfg.input_size, 3) != tuple(teacher.input.shape):
            raise SpecError(f"student {item!r}: reads {cfg.input_size}x{cfg.input_size} crops but the teacher reads "
                            f"{'x'.join(map(str, teacher.input.shape))}")
        return item, cfg

    def compressor(self, cfg: Any) -> str:
        return "keypoints"

    def derived(self, base: Any, width: float, teacher: Any) -> Any:
        raise SpecError("sizes: BlazePose students are named (--students blazepose_lite), not derived by size")

    def check_teacher(self, teacher: Any) -> None:
        shape = tuple(teacher.input.shape)
        if teacher.input.kind != "image" or len(shape) != 3 or shape[0] != shape[1]:
            raise SpecError(f"a keypoint teacher reads square image crops; this one reads {list(shape)}")

    def read(self, card: Any, data: str, val_split: float = 0.2, seed: int = 0, **options: Any) -> Any:
        from odml.data.pose_items import landmark_inputs

        self.check_data(data)
        return _Inputs(*landmark_inputs(card.config.input_size, data, options.get("n_val", 100),
                                        options.get("n_cal", 200), seed), data)


@dataclasses.dataclass
class _Inputs:
    """Export inputs of a pose model: no labels (keypoints and boxes are
    checked by their errors, not by a class)."""

    x_val: Any
    x_train: Any
    source: str
    y_val: Any = None
    class_names: list[str] | None = None
    notes: list[str] = dataclasses.field(default_factory=list)

    def sample(self, split: str, n: int | None = None, seed: int | None = None) -> tuple[Any, None]:
        x = self.x_train if split == "train" else self.x_val
        return (x if n is None else x[:n]), None

