"""MediaPipe's released models in odml: ``odml zoo import-mediapipe``.

The BlazePose person detector (``pose_detection.tflite``), the full landmark
model (``pose_landmark_full.tflite``) and the selfie segmentation model
(``selfie_segmentation.tflite``) are Apache-2.0 files that ship inside the
``mediapipe`` wheel on PyPI (``mediapipe/modules/`` of the 0.10.x wheels;
the 1.x wheels no longer hold them). The importer takes them from the wheel
(downloaded with ``pip download --no-deps``: mediapipe itself is never
installed), checks that each graph is the one expected (the op sequence;
one line naming the first op that differs), rebuilds it as a tf_keras model
layer for op with the file's weights (``zoo/tflite_graph.py``), checks that
the Keras model computes what the file computes, and writes one folder that
``odml pose`` reads:

    detector.keras   landmarks.keras   selfie.keras     odml's Keras models (the released graphs, one layer per op)
    detector.tflite  landmarks.tflite  selfie.tflite    the released files, as they were in the wheel
    manifest.json                        source, versions, sha256, parity figures

The folder is written beside its destination and renamed into place, so an
interrupted import leaves nothing half-written.

The released conventions (MediaPipe's pose_detection and pose_landmark
graphs, modules/pose_detection/pose_detection_cpu.pbtxt and
modules/pose_landmark/pose_landmark_by_roi_cpu.pbtxt):
- detector: input 224x224x3, pixel / 127.5 - 1, letterboxed; outputs
  ``Identity`` (2254, 12): per SSD anchor the box centre, size and 4 alignment
  keypoints as offsets in input pixels (x first), and ``Identity_1`` (2254, 1):
  score logits (sigmoid, clipped at +-100).
- landmark model: input 256x256x3, pixel / 255; outputs ``Identity`` (195):
  39 landmarks x (x, y, z in input pixels, visibility and presence logits),
  of which 33 body points then 2 alignment points (hip centre, full-body
  point); ``Identity_1`` (1): the pose flag (a probability);
  ``Identity_2`` 256x256x1 segmentation logits; ``Identity_3`` 64x64x39
  heatmaps; ``Identity_4`` (117): world landmarks in metres.
- selfie segmentation (MediaPipe's model card "Selfie Segmentation", the
  general 256x256 model; modules/selfie_segmentation/
  selfie_segmentation_cpu.pbtxt): input 256x256x3, pixel / 255; output
  ``activation_10`` 256x256x1, per pixel the probability of a person (a
  sigmoid after MediaPipe's custom Convolution2DTransposeBias upsampling).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from odml.errors import CheckFailed, DataError
from odml.files import data_home, temp_dir_beside, write_file

MEDIAPIPE_VERSION = "0.10.21"  # the newest wheel that holds the pose models (1.2.3 does not)
WHEEL_PLATFORM = "manylinux_2_28_x86_64"
FOLDER = "mediapipe_pose"
MANIFEST = "manifest.json"
DETECTOR_ANCHORS = 2254
DETECTOR_SCALE = 224.0  # offsets are in pixels of the 224 input (x_scale = y_scale = w_scale = h_scale)
LANDMARK_SIZE = 256
SELFIE_SIZE = 256
SCORE_CLIP = 100.0


@dataclass(frozen=True)
class OutputMeasure:
    """How odml judges an export against one released output (zoo.family.MEASURES and OutputTensor's fields)."""

    measure: str = "error"
    points: int = 0  # values per point or row
    extent: float = 0.0  # what the coordinates are measured against (keypoints)
    logits: bool = False  # scores as logits
    extent_name: str = ""  # the extent in words (default: the crop)
    scored_by: str = ""  # the output scoring this one's rows (boxes judged where the source detects)


@dataclass(frozen=True)
class Released:
    part: str  # detector | landmarks
    member: str  # path in the wheel
    what: str
    signature: str  # op sequence after DEQUANTIZE / DENSIFY are folded (letters of tflite_graph.LETTERS)
    input_shape: tuple[int, ...]
    output_shapes: tuple[tuple[int, ...], ...]
    input_range: tuple[float, float]  # what pixels 0..255 become at the input
    input_description: str
    output_descriptions: tuple[str, ...]
    input_name: str = "input_1"  # the released tensors' names
    output_measures: tuple[OutputMeasure, ...] = ()  # per output, how an export is judged (default: relative error)
    outputs_named: tuple[str, ...] = ()  # the output tensors' names (default Identity, Identity_1, ...)

    @property
    def output_names(self) -> tuple[str, ...]:
        if self.outputs_named:
            return self.outputs_named
        return tuple("Identity" + (f"_{i}" if i else "") for i in range(len(self.output_shapes)))


RELEASED = (
    Released("detector", "mediapipe/modules/pose_detection/pose_detection.tflite",
             "MediaPipe's pose detector (pose_detection.tflite)",
             "PCDCCPDCCDCACPDCCDCACDCPDCCDCACDCACDCCDCACDCACDCPDCCDCACDCACDCACDTRCADCADCATRCADCADCATPDCSDCSPDCSDCSPDCSKDC"
             "SK", (1, 224, 224, 3), ((1, DETECTOR_ANCHORS, 12), (1, DETECTOR_ANCHORS, 1)), (-1.0, 1.0),
             "RGB image letterboxed to 224x224; the model reads pixel / 127.5 - 1",
             ("per SSD anchor: box centre x, y, width, height and 4 alignment keypoints (x, y), offsets in input pixels",
              "per SSD anchor: score logit"),
             output_measures=(OutputMeasure("boxes", 12, scored_by="Identity_1"),
                              OutputMeasure("probability", logits=True))),
    Released("landmarks", "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
             "MediaPipe's full pose landmark model (pose_landmark_full.tflite)",
             "PCDCCDCPDCCDCACDCPDCCDCACDCPDCCDCACDCACDCCDCACDCACDCPDCCDCACDCACDCACDDCRARARADCRADCADCARDCADCACCDCDCMADCADCA"
             "DCADCADCMADCADCADCADCADCACSCSCLS", (1, 256, 256, 3),
             ((1, 195), (1, 1), (1, 256, 256, 1), (1, 64, 64, 39), (1, 117)), (0.0, 1.0),
             "RGB crop around the person's region of interest, 256x256; the model reads pixel / 255",
             ("39 landmarks x (x, y, z in input pixels, visibility logit, presence logit): 33 body points, 2 alignment "
              "points, 4 more", "pose flag: the probability that a person is in the crop",
             "segmentation logits", "heatmaps of the 39 landmarks", "39 world landmarks x (x, y, z) in metres"),
             output_measures=(OutputMeasure("keypoints", 5, float(LANDMARK_SIZE)), OutputMeasure("probability"),
                              OutputMeasure("pixels"), OutputMeasure("error"),
                              OutputMeasure("keypoints", 3, 1.0, extent_name="a metre"))),
    Released("selfie", "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
             "MediaPipe's selfie segmentation (selfie_segmentation.tflite, the general model)",
             "CHCUDUVCUCLXCCUDUCCUDUCACHDHVCUCLXCCHDHVCUCLXCACHDHVCUCLXCACHDHVCUCLXCACHDHVCUCLXCAVCCULXRCAVCUCLXACUDUAR"
             "CAVCUCLXACUDUARCAVCUCLXACUDUABL", (1, SELFIE_SIZE, SELFIE_SIZE, 3),
             ((1, SELFIE_SIZE, SELFIE_SIZE, 1),), (0.0, 1.0),
             "RGB image (a selfie, a video call frame) resized to 256x256; the model reads pixel / 255",
             ("per pixel, the probability that it belongs to a person",),
             output_measures=(OutputMeasure("pixels"),), outputs_named=("activation_10",)),
)


def released(part: str) -> Released:
    return next(r for r in RELEASED if r.part == part)


FAMILIES = {"detector": "blazepose_detector_released", "landmarks": "blazepose_full_released",
            "selfie": "selfie_segmentation_released"}  # zoo/families/


def default_folder() -> Path:
    return data_home() / FOLDER


def imported(folder: str | Path | None = None) -> Path | None:
    """The import folder when a finished import is there (its manifest is
    written last; an import made before the models had cards beside them
    counts as none, so that the user is told to import again), else None."""
    d = Path(folder) if folder is not None else default_folder()
    done = (d / MANIFEST).is_file() and all((d / f"{r.part}.odml.json").is_file() for r in RELEASED)
    return d if done else None


def not_imported_message(folder: str | Path | None = None) -> str:
    d = Path(folder) if folder is not None else default_folder()
    return (f"{d}: MediaPipe's released pose models are not imported; run 'odml zoo import-mediapipe' "
            "(it downloads the mediapipe wheel with pip, or give it one with --wheel)")


# ---- the released output conventions, as odml's pipeline reads them --------------------------------

def is_released_detector(outputs: list[np.ndarray]) -> bool:
    return len(outputs) == 2 and outputs[0].shape[-1] == 12 and outputs[1].shape[-1] == 1


def is_released_landmarks(outputs: list[np.ndarray]) -> bool:
    return len(outputs) == 5 and outputs[0].shape[-1] == 195


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, np.float64), -SCORE_CLIP, SCORE_CLIP)))


def detector_as_odml(outputs: list[np.ndarray], reg_scale: float) -> np.ndarray:
    """The released detector's (boxes, score logits) of one image as odml's
    (2254, 13) layout: score probability, then the 12 offsets in input widths
    x ``reg_scale`` (data/pose_geometry.py)."""
    boxes = np.asarray(outputs[0], np.float32).reshape(-1, 12)
    scores = _sigmoid(np.asarray(outputs[1], np.float32).reshape(-1, 1))
    return np.concatenate([scores, boxes / DETECTOR_SCALE * reg_scale], 1)


def landmarks_as_odml(outputs: list[np.ndarray], landmarks: int) -> np.ndarray:
    """The released landmark model's outputs of one crop as odml's layout:
    ``landmarks`` x (x, y as fractions of the crop, z in crop widths,
    visibility, presence), then the pose flag."""
    kp = np.asarray(outputs[0], np.float64).reshape(-1, 5)[:landmarks].copy()
    kp[:, :3] /= LANDMARK_SIZE
    kp[:, 3:] = _sigmoid(kp[:, 3:])
    return np.concatenate([kp.ravel(), np.asarray(outputs[1], np.float64).reshape(-1)[:1]])


# ---- import --------------------------------------------------------------------------------------

def download_wheel(version: str, into: Path) -> Path:
    """``pip download mediapipe==VERSION --no-deps``: the CPython 3.11 Linux
    x86-64 wheel whatever this machine runs (every platform's wheel holds the
    same model files, and 0.10.21 has no wheel for Python 3.13)."""
    cmd = [sys.executable, "-m", "pip", "download", f"mediapipe=={version}", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.11", "--platform", WHEEL_PLATFORM, "--disable-pip-version-check", "-q",
           "-d", str(into)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DataError(f"pip download mediapipe=={version}: {type(e).__name__} (give a wheel with --wheel)") from None
    wheels = sorted(into.glob("mediapipe-*.whl"))
    if r.returncode != 0 or not wheels:
        last = (r.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise DataError(f"pip download mediapipe=={version} failed: {last[:200]} (give a wheel with --wheel)")
    return wheels[0]


def _extract(wheel: Path, into: Path) -> dict[str, Path]:
    if not wheel.is_file():
        raise DataError(f"--wheel {wheel}: file not found")
    try:
        z = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"--wheel {wheel}: not a wheel (zip): {e}") from None
    out = {}
    with z:
        names = set(z.namelist())
        for r in RELEASED:
            if r.member not in names:
                raise DataError(f"{wheel}: no {r.member} in the wheel (mediapipe {MEDIAPIPE_VERSION} has it; the 1.x "
                                "wheels no longer ship the pose models)")
            dest = into / f"{r.part}.tflite"
            try:
                with z.open(r.member) as src, open(dest, "wb") as f:
                    shutil.copyfileobj(src, f)
            except (zipfile.BadZipFile, OSError, EOFError) as e:  # a damaged member
                raise DataError(f"{wheel}: cannot read {r.member}: {e}") from None
            out[r.part] = dest
    return out


def parity(keras_model: Any, tflite: str | Path, part: str, x: np.ndarray) -> dict[str, float]:
    """How far odml's Keras model is from the released file on inputs ``x``
    (already normalised): keypoints in % of the input size, scores as
    probabilities, detector boxes in pixels of the 224 input."""
    from odml.litert import load_interpreter, run_outputs

    ref = run_outputs(load_interpreter(tflite, threads=2), x.astype(np.float32))
    got = keras_model(x.astype(np.float32), training=False)
    got = [np.asarray(g) for g in (got if isinstance(got, (list, tuple)) else [got])]
    if part == "detector":
        return {"box_px": float(np.abs(got[0] - ref[0]).max()),
                "score": float(np.abs(_sigmoid(got[1]) - _sigmoid(ref[1])).max())}
    if part == "selfie":  # probabilities, and the share of pixels whose side of 0.5 differs
        return {"probability": float(np.abs(got[0] - ref[0]).max()),
                "pixels_differ": float(((got[0] > 0.5) != (ref[0] > 0.5)).mean())}
    a, b = got[0].reshape(len(x), -1, 5), ref[0].reshape(len(x), -1, 5)
    return {"keypoint_pct": float(np.abs(a[..., :2] - b[..., :2]).max() / LANDMARK_SIZE * 100),
            "z_pct": float(np.abs(a[..., 2] - b[..., 2]).max() / LANDMARK_SIZE * 100),
            "score": float(max(np.abs(_sigmoid(a[..., 3:]) - _sigmoid(b[..., 3:])).max(),
                               np.abs(got[1] - ref[1]).max())),
            "world_m": float(np.abs(got[4] - ref[4]).max())}


LIMITS = {"box_px": 1.0, "keypoint_pct": 0.5, "score": 1e-3, "probability": 1e-3, "pixels_differ": 1e-3}


def check_parity(figures: dict[str, float], where: str) -> None:
    for k, lim in LIMITS.items():
        if k in figures and not figures[k] <= lim:
            raise CheckFailed(f"{where}: the rebuilt Keras model differs from the released file by {figures[k]:.4g} "
                            f"({k}; at most {lim:g} expected)")


def import_mediapipe(wheel: str | Path | None = None, folder: str | Path | None = None,
                     version: str = MEDIAPIPE_VERSION, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Import the two released models into ``folder`` (default: the odml data
    home); returns the manifest."""
    from odml._tf import quiet_stderr_fd
    from odml.zoo.card import ModelCard
    from odml.zoo.registry import get_family
    from odml.zoo.tflite_graph import build_keras, check_signature, read_graph

    say = say or (lambda s: None)
    dest = Path(folder) if folder is not None else default_folder()
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".{dest.name}.import-*"):  # left by an import that was killed
        shutil.rmtree(stale, ignore_errors=True)
    stage = temp_dir_beside(dest, "import")
    try:
        with tempfile.TemporaryDirectory(prefix="odml-mediapipe-") as dl:
            if wheel is None:
                say(f"downloading the mediapipe {version} wheel (pip download --no-deps)")
                wheel_path = download_wheel(version, Path(dl))
            else:
                wheel_path = Path(wheel)
            files = _extract(wheel_path, stage)
        manifest: dict[str, Any] = {"schema": 1, "source": wheel_path.name, "license": "Apache-2.0 (MediaPipe)",
                                    "models": {}}
        rng = np.random.default_rng(0)
        for r in RELEASED:
            say(f"reading {r.member}")
            g = read_graph(files[r.part], f"{wheel_path.name}:{r.member}")
            check_signature(g, r.signature, r.what)
            shapes = (tuple(g.shapes[g.inputs[0]]), tuple(tuple(g.shapes[i]) for i in g.outputs))
            if shapes != (r.input_shape, r.output_shapes):
                raise DataError(f"{g.path}: not {r.what}: input and outputs {shapes}, expected "
                                f"{(r.input_shape, r.output_shapes)}")
            say(f"building the Keras {r.part} model ({len(g.ops)} layers)")
            model = build_keras(g, FAMILIES[r.part])
            lo = r.input_range[0]
            x = rng.uniform(lo, 1.0, (2, *r.input_shape[1:])).astype(np.float32)
            if r.part == "selfie":  # on noise the model sees no one (p ~ 0 everywhere): people instead
                from odml.data.pose import SyntheticPeople

                people = SyntheticPeople(tuple(r.input_shape[1:3]), seed=0)
                x = np.stack([people.sample().image for _ in range(2)]).astype(np.float32) / 255.0
            fig = parity(model, files[r.part], r.part, x)
            check_parity(fig, f"{r.what}")
            keras_path = stage / f"{r.part}.keras"
            with quiet_stderr_fd():
                model.save(keras_path)
            family = get_family(FAMILIES[r.part])
            ModelCard(family, family.config_from_dict({"part": r.part, "folder": "" if folder is None else
                                                       str(dest.resolve())}), family.name).save(keras_path)
            manifest["models"][r.part] = {
                "member": r.member, "sha256": hashlib.sha256(files[r.part].read_bytes()).hexdigest(),
                "keras": keras_path.name, "tflite": files[r.part].name, "params": int(model.count_params()),
                "folded": g.folded, "parity_random_inputs": {k: round(v, 7) for k, v in fig.items()}}
        write_file(stage / MANIFEST, json.dumps(manifest, indent=2) + "\n")  # last: marks a finished import
        os.chmod(stage, 0o755)
        old = None
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, old)
        os.replace(stage, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return {**manifest, "folder": str(dest)}
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
