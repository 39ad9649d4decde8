"""The BlazePose pipeline: detector -> ROI -> landmark model on the first
frame; on later frames the ROI comes from the previous frame's alignment
keypoints (the detector runs again only when the pose flag says the person
is lost). Models are Keras models, .keras files or .tflite files (LiteRT).

    from odml.pose.pipeline import PoseTracker
    tracker = PoseTracker.from_dir("runs/pose")          # detector.* and landmarks.*
    result = tracker.process(rgb_uint8)                  # None: no person found
    result.keypoints                                     # (33, 5) x, y px, z px, visibility, presence
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from odml.data.pose import EDGES, NAMES
from odml.errors import DataError
from odml.data.pose_geometry import REG_SCALE, Roi, anchors, crop_roi, crop_to_image, decode, letterbox, \
    roi_from_alignment
from odml.zoo.mediapipe import detector_as_odml, is_released_detector, is_released_landmarks, landmarks_as_odml
from odml.zoo.poseconfig import LANDMARKS, NUM_KEYPOINTS


@dataclass
class PoseResult:
    keypoints: np.ndarray  # (33, 5): x, y (image pixels), z (pixels, smaller = nearer), visibility, presence
    score: float  # pose flag
    roi: Roi
    detected: bool  # the ROI came from the detector on this frame (not tracked)

    def to_dict(self) -> dict[str, Any]:
        return {"score": round(self.score, 4), "roi": self.roi.to_dict(), "detected": self.detected,
                "keypoints": [{"name": n, "x": round(float(k[0]), 2), "y": round(float(k[1]), 2),
                               "z": round(float(k[2]), 2), "visibility": round(float(k[3]), 3),
                               "presence": round(float(k[4]), 3)} for n, k in zip(NAMES, self.keypoints)]}


class _Runner:
    """One model, Keras or LiteRT, as x (1, H, W, 3) float -> its outputs
    (a list, the batch dimension dropped)."""

    def __init__(self, model: Any, part: str, threads: int = 2):
        self.interp = None
        self.name = f"{model}" if isinstance(model, (str, Path)) else f"the {part} model"
        self.part = part
        if isinstance(model, (str, Path)):
            p = Path(model)
            if p.suffix == ".tflite":
                from odml.litert import load_interpreter

                if not p.is_file():
                    raise DataError(f"{p}: model not found")
                self.interp = load_interpreter(p, threads=threads)
                shape = tuple(int(v) for v in self.interp.get_input_details()[0]["shape"])
            else:
                from odml.zoo.load import load_keras_model

                model = load_keras_model(p)
        if self.interp is None:
            self.model = model
            shape = tuple(model.input_shape)
        if len(shape) != 4 or shape[3] != 3 or shape[1] != shape[2] or not shape[1] or shape[1] < 16:
            raise DataError(f"{self.name}: takes inputs of shape {list(shape)}; a BlazePose {part} takes square RGB "
                            "images (1, S, S, 3), S at least 16")
        self.size = int(shape[1])

    def check(self, ok: bool, outs: list[np.ndarray], expected: str) -> None:
        """Refuse a model whose answer to one image is not what the pipeline reads."""
        if not ok:
            got = ", ".join(str(list(o.shape)) for o in outs)
            raise DataError(f"{self.name}: answers {got}; a BlazePose {self.part} answers {expected}")

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        if self.interp is not None:
            from odml.litert import run_outputs

            outs = [y[0] for y in run_outputs(self.interp, x.astype(np.float32))]
        else:
            y = self.model(x.astype(np.float32), training=False)
            outs = [np.asarray(t)[0] for t in (y if isinstance(y, (list, tuple)) else [y])]
        _finite(self.name, *outs, what="answers")
        return outs


def _finite(name: str, *arrays: Any, what: str) -> None:
    """Refuse NaN and infinities: from the model itself (broken weights, an
    overflow) or from where its answers put the person."""
    if not all(np.isfinite(np.asarray(a, np.float64)).all() for a in arrays):
        raise DataError(f"{name}: {what} NaN or infinite values on this frame; its weights are broken or its answers "
                        "overflow")


class PoseTracker:
    def __init__(self, detector: Any, landmarks: Any, min_detection: float = 0.5, min_pose: float = 0.5,
                 threads: int = 2):
        self.det = _Runner(detector, "detector", threads)
        self.lm = _Runner(landmarks, "landmark model", threads)
        self.anc = anchors(self.det.size)
        n = len(self.anc)
        outs = self.det(np.zeros((1, self.det.size, self.det.size, 3), np.float32))
        self.det.check(is_released_detector(outs) and outs[0].size == 12 * n and outs[1].size == n
                       or not is_released_detector(outs) and len(outs) >= 1 and outs[0].size == 13 * n, outs,
                       f"[{n}, 13] (a score and 12 offsets per anchor) or MediaPipe's boxes [{n}, 12] and scores "
                       f"[{n}, 1]")
        outs = self.lm(np.zeros((1, self.lm.size, self.lm.size, 3), np.float32))
        self.lm.check(is_released_landmarks(outs) and outs[0].size >= 5 * LANDMARKS and outs[1].size >= 1
                      or not is_released_landmarks(outs) and len(outs) >= 1 and outs[0].size >= 5 * LANDMARKS + 1,
                      outs, f"[{5 * LANDMARKS + 1}] ({LANDMARKS} points x, y, z, visibility, presence, then the "
                      "pose flag) or MediaPipe's five outputs")
        self.min_detection, self.min_pose = min_detection, min_pose
        self.names = {"detector": self.det.name, "landmarks": self.lm.name}  # for errors on a frame
        self.roi: Roi | None = None

    @classmethod
    def from_dir(cls, folder: str | Path, prefer: str = "keras", **kw: Any) -> "PoseTracker":
        """detector.{keras,tflite} and landmarks.{keras,tflite} of a folder
        (``odml train blazepose`` writes the .keras files)."""
        d = Path(folder)
        if not d.is_dir():
            raise DataError(f"{d}: pose model folder not found (import MediaPipe's released models with "
                            "'odml zoo import-mediapipe' and give --model mediapipe, or train one with "
                            "'odml train blazepose')")
        found = {}
        for part in ("detector", "landmarks"):
            order = (".keras", ".tflite") if prefer == "keras" else (".tflite", ".keras")
            hit = next((d / f"{part}{ext}" for ext in order if (d / f"{part}{ext}").is_file()), None)
            if hit is None:
                raise DataError(f"{d}: no {part}.keras or {part}.tflite in the folder")
            found[part] = hit
        return cls(found["detector"], found["landmarks"], **kw)

    def reset(self) -> None:
        self.roi = None

    @classmethod
    def released(cls, folder: str | Path | None = None, prefer: str = "keras", **kw: Any) -> "PoseTracker":
        """MediaPipe's released models as imported by 'odml zoo import-mediapipe'."""
        from odml.zoo.mediapipe import imported, not_imported_message

        d = imported(folder)
        if d is None:
            raise DataError(not_imported_message(folder))
        return cls.from_dir(d, prefer, **kw)

    def detect(self, image: np.ndarray) -> Roi | None:
        x, lb = letterbox(image, self.det.size)
        outs = self.det((x / 127.5 - 1.0)[None])
        # MediaPipe's released detector answers in its own layout (boxes and score logits)
        raw = detector_as_odml(outs, REG_SCALE) if is_released_detector(outs) else outs[0].reshape(len(self.anc), -1)
        dets = decode(raw, self.anc, self.min_detection)
        if not dets:
            return None
        kp = lb.to_image(dets[0].keypoints)
        roi = roi_from_alignment(kp[0], kp[1])
        _finite(self.names["detector"], kp, [roi.cx, roi.cy, roi.size, roi.angle], what="places the person at")
        return roi

    def process(self, image: np.ndarray) -> PoseResult | None:
        """Keypoints of the person in an RGB uint8 image (a video frame), or
        None when no person is found."""
        if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 2 or image.shape[1] < 2:
            raise DataError(f"expected an RGB image HxWx3, got shape {image.shape}")
        detected = False
        if self.roi is None:
            self.roi = self.detect(image)
            detected = True
            if self.roi is None:
                return None
        res = self._landmarks(image, self.roi, detected)
        if res is None and not detected:  # lost: look again on this frame
            self.roi = self.detect(image)
            if self.roi is None:
                return None
            res = self._landmarks(image, self.roi, True)
        if res is None:
            self.roi = None
            return None
        a = res.keypoints  # the alignment points were appended after the 33
        self.roi = roi_from_alignment(a[NUM_KEYPOINTS, :2], a[NUM_KEYPOINTS + 1, :2])
        _finite(self.names["landmarks"], [self.roi.cx, self.roi.cy, self.roi.size, self.roi.angle],
                what="places the next frame's ROI at")
        res.keypoints = a[:NUM_KEYPOINTS]
        return res

    def _landmarks(self, image: np.ndarray, roi: Roi, detected: bool) -> PoseResult | None:
        size = self.lm.size
        crop = crop_roi(image, roi, size) / 255.0
        outs = self.lm(crop[None])
        # (any shape: a flat [176] from odml's model, [1, 195] from MediaPipe's; its size was checked at load)
        out = landmarks_as_odml(outs, LANDMARKS) if is_released_landmarks(outs) else np.reshape(outs[0], -1)
        if out.size < 5 * LANDMARKS + 1:  # a model whose output shape depends on the frame
            raise DataError(f"{self.names['landmarks']}: answers {out.size} values on this frame; a BlazePose "
                            f"landmark model answers {5 * LANDMARKS + 1}")
        flag = float(out[5 * LANDMARKS])
        if flag < self.min_pose:
            return None
        kp = out[: 5 * LANDMARKS].reshape(LANDMARKS, 5).astype(np.float64)
        xy = crop_to_image(kp[:, :2] * size, roi, size)
        z = kp[:, 2] * roi.size
        _finite(self.names["landmarks"], xy, z, what="places the keypoints at")
        return PoseResult(np.concatenate([xy, z[:, None], kp[:, 3:]], 1), flag, roi, detected)


# --- drawing and media ----------------------------------------------------------------------------------------

def draw(image: np.ndarray, result: PoseResult | None, min_visibility: float = 0.3) -> np.ndarray:
    """The image with the skeleton, the keypoints and the ROI drawn; 'no
    person found' written when there is none."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(image)
    d = ImageDraw.Draw(im)
    h, w = image.shape[:2]
    lw = max(1, round(min(h, w) / 150))
    if result is None:
        d.text((5, 5), "no person found", fill=(255, 60, 60))
        return np.asarray(im)
    k = result.keypoints
    ok = k[:, 3] >= min_visibility
    for a, b in EDGES:
        if ok[a] and ok[b]:
            left = a % 2 == 1 and b % 2 == 1 and a > 10
            d.line([tuple(k[a, :2]), tuple(k[b, :2])], fill=(255, 160, 0) if left else (0, 200, 255), width=lw)
    r = lw + 1
    for i in np.where(ok)[0]:
        x, y = k[i, :2]
        d.ellipse([x - r, y - r, x + r, y + r], fill=(255, 255, 255), outline=(0, 0, 0))
    corners = crop_to_image(np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]], float) * 100, result.roi, 100)
    d.line([tuple(p) for p in corners], fill=(0, 255, 0), width=1)
    return np.asarray(im)


VIDEO_EXT = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif"}


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXT


def read_frames(path: str | Path) -> Iterator[np.ndarray]:
    """RGB uint8 frames of a video (ffmpeg through imageio; GIF through
    Pillow); a one-line DataError for a file that cannot be read or has no
    frames."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: video not found")
    import imageio.v3 as iio

    n = 0
    try:
        for f in iio.imiter(p):
            f = np.asarray(f)
            if f.ndim == 2:
                f = np.stack([f] * 3, -1)
            n += 1
            yield np.ascontiguousarray(f[..., :3]).astype(np.uint8)
    except DataError:
        raise
    except Exception as e:  # imageio raises OSError, ValueError, RuntimeError ... for a bad file
        if n:
            raise DataError(f"{p}: cannot decode frame {n + 1}: {type(e).__name__}") from None
        raise DataError(f"{p}: cannot read video: {' '.join(str(e).split())[:120]}") from None
    if n == 0:
        raise DataError(f"{p}: the video has no frames")
