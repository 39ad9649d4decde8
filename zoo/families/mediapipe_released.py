"""MediaPipe's released models as odml models (``odml zoo import-mediapipe``
puts them in odml's data home): the BlazePose person detector
``blazepose_detector_released`` (pose_detection.tflite), the full landmark
model ``blazepose_full_released`` (pose_landmark_full.tflite) and the selfie
segmentation ``selfie_segmentation_released`` (selfie_segmentation.tflite),
rebuilt as tf_keras models one layer per op with the released weights.

They keep the released files' conventions: the input tensor ``input_1``
(the detector reads pixel / 127.5 - 1, the landmark model pixel / 255) and the
output tensors ``Identity``, ``Identity_1``, ... in the released order and
shapes (``odml.zoo.mediapipe`` says what each holds), so that what ``odml
export`` makes of them loads where the released file loads. They are not
trained by odml; the landmark model is a teacher for odml's BlazePose
landmark models (``odml compress``), its keypoints the students' targets;
the selfie model teaches odml's segmentation models (person / background),
its maps the students' targets."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from odml.errors import DataError, SpecError
from odml.zoo.family import Counts, Family, InputSpec, OutputSpec, OutputTensor
from odml.zoo.registry import register_family

PARTS = ("detector", "landmarks", "selfie")
SELFIE_CLASSES = ("background", "person")  # the selfie model as a teacher: its probability as two classes


@dataclass(frozen=True)
class ReleasedConfig:
    part: str  # detector | landmarks | selfie
    folder: str = ""  # the import folder ("" : odml's data home, see odml.zoo.mediapipe)

    def validate(self) -> "ReleasedConfig":
        if self.part not in PARTS:
            raise SpecError(f"part {self.part!r}: expected one of {', '.join(PARTS)}")
        return self


class _Released(Family):
    trainer = None
    config_type = ReleasedConfig
    _part = ""
    _entry = ""

    def models(self) -> dict[str, str]:
        from odml.zoo.mediapipe import released

        return {self._entry: f"{released(self._part).what}, imported by 'odml zoo import-mediapipe'"}

    def config(self, name: str) -> ReleasedConfig:
        if name != self._entry:
            raise SpecError(f"{self.name}: no zoo entry {name!r}")
        return ReleasedConfig(self._part)

    def _folder(self, cfg: ReleasedConfig) -> Path | None:
        from odml.zoo.mediapipe import imported

        return imported(cfg.folder or None)

    def count(self, cfg: ReleasedConfig) -> Counts:
        """The weights the import counted (0 before an import); MACs are not
        counted for a rebuilt graph."""
        import json

        d = self._folder(cfg)
        if d is None:
            return Counts(0, None)
        try:
            return Counts(int(json.loads((d / "manifest.json").read_text())["models"][self._part]["params"]), None)
        except (OSError, ValueError, KeyError, TypeError):
            return Counts(0, None)

    def model_file(self, cfg: ReleasedConfig) -> Path:
        from odml.zoo.mediapipe import not_imported_message

        d = self._folder(cfg)
        if d is None:
            raise DataError(not_imported_message(cfg.folder or None))
        return d / f"{self._part}.keras"

    def build(self, cfg: ReleasedConfig, name: str | None = None) -> Any:
        from odml.zoo.load import load_keras_model

        return load_keras_model(self.model_file(cfg))

    def describe(self, cfg: ReleasedConfig, name: str = "") -> str:
        n = self.count(cfg).params
        return f"released weights ({n:,})" if n else "not imported yet: 'odml zoo import-mediapipe'"

    def inputs(self, cfg: ReleasedConfig, vocab: list[str] | None = None) -> InputSpec:
        from odml.zoo.mediapipe import released

        r = released(self._part)
        return InputSpec("image", r.input_shape[1:], "float32", r.input_range, r.input_name, r.input_description)

    def _tensors(self) -> tuple[OutputTensor, ...]:
        from odml.zoo.mediapipe import OutputMeasure, released

        r = released(self._part)
        measures = r.output_measures or (OutputMeasure(),) * len(r.output_shapes)
        return tuple(OutputTensor(n, s[1:], d, **asdict(m))
                     for n, s, d, m in zip(r.output_names, r.output_shapes, r.output_descriptions, measures))

    def outputs(self, cfg: ReleasedConfig) -> OutputSpec:
        t = self._tensors()
        return OutputSpec(self.task, t[0].name, int(np.prod(t[0].shape)), t[0].description, t[0].shape, t)

    def read(self, card: Any, data: str, val_split: float = 0.2, seed: int = 0, **options: Any) -> Any:
        """Export inputs: people letterboxed (detector) or cropped on their ROI
        (landmark model), as odml's BlazePose families read them."""
        from odml.data import pose_items
        from odml.zoo.families.blazepose import _Inputs

        self.check_data(data)
        inputs = pose_items.detector_inputs if self._part == "detector" else pose_items.landmark_inputs
        size = self.inputs(card.config).shape[0]
        return _Inputs(*inputs(size, data, options.get("n_val", 100), options.get("n_cal", 200), seed), data)

    def data_hint(self) -> str:
        return "'synthetic' or a COCO-style keypoint .json"

    def check_data(self, data: str) -> None:
        if data != "synthetic" and not data.lower().endswith(".json"):
            raise DataError(f"--data {data}: {self.noun} takes 'synthetic' or a COCO-style keypoint .json")


@register_family
class ReleasedDetector(_Released):
    name = "blazepose_detector_released"
    task = "detect"
    noun = "MediaPipe's released pose detector"
    zoo_task = "pose_detection"
    title = "MediaPipe's released BlazePose person detector (pose_detection.tflite, Apache-2.0)"
    _part = "detector"
    _entry = "blazepose_detector_released"


@register_family
class ReleasedLandmarks(_Released):
    name = "blazepose_full_released"
    task = "keypoints"
    noun = "MediaPipe's released full pose landmark model"
    zoo_task = "pose_landmarks"
    title = "MediaPipe's released full BlazePose landmark model (pose_landmark_full.tflite, Apache-2.0)"
    _part = "landmarks"
    _entry = "blazepose_full_released"
    student_family = "blazepose_landmarks"

    def compressor(self, cfg: Any) -> str:
        return "keypoints"

    def landmarks(self, cfg: Any, outputs: list[np.ndarray]) -> np.ndarray:
        from odml.zoo.mediapipe import landmarks_as_odml
        from odml.zoo.poseconfig import LANDMARKS

        n = len(outputs[0])
        return np.stack([landmarks_as_odml([o[i] for o in outputs], LANDMARKS) for i in range(n)]).astype(np.float32)



@register_family
class ReleasedSelfie(_Released):
    """The selfie segmentation model: one output, per pixel the probability of
    a person; as a teacher its classes are background and person."""

    name = "selfie_segmentation_released"
    task = "segment"
    noun = "MediaPipe's released selfie segmentation model"
    zoo_task = "semantic_segmentation"
    title = "MediaPipe's released selfie segmentation (selfie_segmentation.tflite, Apache-2.0)"
    _part = "selfie"
    _entry = "selfie_segmentation_released"
    student_family = "segmentation"

    def num_classes(self, cfg: Any) -> int:
        return len(SELFIE_CLASSES)

    def class_logits(self, cfg: Any, outputs: Any) -> Any:
        """The person probability p as two classes' logits, log(1 - p) and
        log(p) (a softmax of them gives back 1 - p and p)."""
        from odml._tf import tf

        T = tf()
        p = T.clip_by_value(T.convert_to_tensor(outputs, T.float32), 1e-6, 1 - 1e-6)
        return T.concat([T.math.log(1 - p), T.math.log(p)], -1)

    def read(self, card: Any, data: str, val_split: float = 0.2, seed: int = 0, **options: Any) -> Any:
        """People to segment at 256x256: a folder of images and masks
        (``images/`` + ``masks/``, 0 background, 1 person), or images alone
        (a folder of photos, or ``synthetic``: odml's synthetic people), whose
        masks are then this model's own maps (p > 0.5)."""
        from pathlib import Path

        from odml.data.segmentation import PAIRS, load_labelled_by, load_segmentation

        self.check_data(data)
        h, w, c = self.inputs(card.config).shape
        split = options.get("split", "val")
        if Path(data).is_dir() and any((Path(data) / a).is_dir() and (Path(data) / b).is_dir() for a, b in PAIRS):
            return load_segmentation(data, (h, w), c, val_split, seed, classes=len(SELFIE_CLASSES), split=split)
        model = self.build(card.config)

        def label(x: np.ndarray) -> np.ndarray:
            p = np.concatenate([np.asarray(model(x[i:i + 16].astype(np.float32) / 255.0, training=False))
                                for i in range(0, len(x), 16)])
            return (p[..., 0] > 0.5).astype(np.uint8)

        return load_labelled_by(data, (h, w), label, list(SELFIE_CLASSES), c, val_split, seed, split,
                                "the released selfie model")

    def data_hint(self) -> str:
        return "'synthetic' (synthetic people), a folder of photos, or a folder of images/ and masks/"

    def check_data(self, data: str) -> None:
        from pathlib import Path

        if data != "synthetic" and not data.startswith("synthetic:") and not Path(data).is_dir():
            raise DataError(f"--data {data}: {self.noun} takes 'synthetic', a folder of photos or a folder of "
                            "images/ and masks/")
