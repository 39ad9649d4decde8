"""BlazePose training and evaluation items from pose samples (synthetic
people or a COCO-style keypoint file): landmark-model crops around a
(jittered) region of interest with their coordinate, flag and heatmap
targets; detector inputs letterboxed to [-1, 1] with their anchor targets;
batches made in a background thread; and the inputs export calibrates and
checks parity on."""

from __future__ import annotations

import math
import queue
import threading
from typing import Callable, Iterator

import numpy as np

from odml.data.pose import LANDMARKS, LEFT_HIP, LEFT_SHOULDER, NUM_KEYPOINTS, RIGHT_HIP, RIGHT_SHOULDER, PoseSample, \
    SyntheticPeople, alignment_points
from odml.data.pose_geometry import Roi, anchor_strides, anchors, crop_roi, detector_targets, image_to_crop, letterbox, \
    roi_from_alignment
from odml.errors import DataError


# --- samples -> training items ----------------------------------------------------------------------------------

def landmark_item(s: PoseSample, size: int, rng: np.random.Generator, jitter: float, hm: int) -> dict[str, np.ndarray]:
    """One crop of the landmark model and its targets."""
    coords = np.zeros((LANDMARKS, 3), np.float32)
    flags = np.zeros((LANDMARKS, 2), np.float32)
    mask = np.zeros(LANDMARKS, np.float32)
    if s.people:
        kp, m, vis = s.keypoints[0], s.mask[0], s.visible[0]
        roi = jittered_roi(kp, m, rng, jitter)
        pts = np.concatenate([kp[:, :2], alignment_points(kp, m)[:2]])
        uv = image_to_crop(pts, roi, size) / size
        coords[:, :2] = uv
        coords[:NUM_KEYPOINTS, 2] = kp[:, 2] / roi.size
        inside = ((uv >= 0) & (uv <= 1)).all(1).astype(np.float32)
        align_ok = float(m[[LEFT_HIP, RIGHT_HIP, LEFT_SHOULDER, RIGHT_SHOULDER]].all())
        mask[:NUM_KEYPOINTS], mask[NUM_KEYPOINTS:] = m, align_ok
        flags[:, 1] = inside * mask
        flags[:NUM_KEYPOINTS, 0] = vis * inside[:NUM_KEYPOINTS]
        flags[NUM_KEYPOINTS:, 0] = inside[NUM_KEYPOINTS:] * align_ok
        pose = 1.0
    else:  # no person: a random region
        h, w = s.image.shape[:2]
        side = rng.uniform(0.3, 1.0) * min(h, w)
        roi = Roi(rng.uniform(0, w), rng.uniform(0, h), side, rng.uniform(-0.5, 0.5))
        pose = 0.0
    img = crop_roi(s.image, roi, size) / 255.0
    heat, offs, omask = heatmap_targets(coords[:, :2], mask * flags[:, 1], hm)
    return {"image": img.astype(np.float32), "coords": coords, "flags": flags, "mask": mask,
            "pose": np.float32(pose), "heat": heat, "offs": offs, "omask": omask}


def jittered_roi(kp: np.ndarray, m: np.ndarray, rng: np.random.Generator, jitter: float) -> Roi:
    a = alignment_points(kp, m)
    roi = roi_from_alignment(a[0], a[1])
    if jitter:
        roi = Roi(roi.cx + rng.normal(0, jitter) * roi.size, roi.cy + rng.normal(0, jitter) * roi.size,
                  roi.size * math.exp(rng.normal(0, jitter)), roi.angle + rng.normal(0, 2 * jitter))
    return roi


def heatmap_targets(uv: np.ndarray, mask: np.ndarray, hm: int, sigma: float = 1.5):
    """Gaussian heatmaps (hm, hm, K), offsets (hm, hm, 2K) from the cell centre
    in cells, and the offsets' mask (hm, hm, K)."""
    K = len(uv)
    g = (np.arange(hm) + 0.5)
    heat = np.zeros((hm, hm, K), np.float32)
    offs = np.zeros((hm, hm, 2 * K), np.float32)
    omask = np.zeros((hm, hm, K), np.float32)
    for k in range(K):
        if not mask[k]:
            continue
        x, y = uv[k] * hm
        heat[:, :, k] = np.exp(-((g[None, :] - x) ** 2 + (g[:, None] - y) ** 2) / (2 * sigma ** 2))
        i, j = int(np.clip(math.floor(y), 0, hm - 1)), int(np.clip(math.floor(x), 0, hm - 1))
        offs[i, j, 2 * k:2 * k + 2] = (x - (j + 0.5), y - (i + 0.5))
        omask[i, j, k] = 1.0
    return heat, offs, omask


def detector_item(s: PoseSample, size: int, anc: np.ndarray, strides: np.ndarray) -> dict[str, np.ndarray]:
    img, lb = letterbox(s.image, size)
    pts, boxes = [], []
    for kp, m in zip(s.keypoints, s.mask):
        if m.sum() < 4:
            continue
        a = alignment_points(kp, m)
        pts.append(lb.to_input(a))
        xy = lb.to_input(kp[m > 0, :2])
        lo, hi = xy.min(0), xy.max(0)
        boxes.append(np.array([*(lo + hi) / 2, *(hi - lo) * 1.1], np.float32))
    labels, reg = detector_targets(np.array(pts).reshape(-1, 4, 2), np.array(boxes).reshape(-1, 4), anc, strides, size)
    return {"image": (img / 127.5 - 1.0).astype(np.float32), "labels": labels, "reg": reg}


def batches(make: Callable[[], dict[str, np.ndarray]], batch: int, prefetch: int = 4) -> Iterator[dict[str, np.ndarray]]:
    """Batches made in a background thread (NumPy and PIL release the GIL
    while TensorFlow trains)."""
    q: queue.Queue = queue.Queue(prefetch)
    stop = threading.Event()

    def work():
        try:
            while not stop.is_set():
                items = [make() for _ in range(batch)]
                q.put({k: np.stack([it[k] for it in items]) for k in items[0]})
        except BaseException as e:  # pragma: no cover - surfaced to the trainer
            q.put(e)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    try:
        while True:
            b = q.get()
            if isinstance(b, BaseException):
                raise b
            yield b
    finally:
        stop.set()


class Samples:
    """Where training and validation samples come from."""

    def __init__(self, data: str, seed: int, val_images: int, scene: tuple[int, int] = (256, 256)):
        self.data = data
        if data == "synthetic":
            self.train_gen = SyntheticPeople(size=scene, seed=seed + 1, empty=0.1)
            val = SyntheticPeople(size=scene, seed=10_000 + seed)
            self.val = [val.sample() for _ in range(val_images)]
            self.train = None
        else:
            from odml.data.pose import read_coco

            coco = read_coco(data)
            order = np.random.default_rng(seed).permutation(len(coco))
            n_val = max(1, min(val_images, len(coco) // 5))
            self.val = [coco.sample(i) for i in order[:n_val]]
            self.train = [coco.sample(i) for i in order[n_val:]]
            if not self.train:
                raise DataError(f"{data}: needs at least 2 images (one for validation)")
            self.train_gen = None
        self.rng = np.random.default_rng(seed)

    def next(self) -> PoseSample:
        if self.train_gen is not None:
            return self.train_gen.sample()
        return self.train[int(self.rng.integers(len(self.train)))]


def _inputs(make: Callable[[PoseSample], np.ndarray], data: str, n_val: int, n_cal: int, seed: int):
    samples = Samples(data, seed, n_val)
    x_val = np.stack([make(s) for s in samples.val[:n_val]])
    x_cal = np.stack([make(samples.next()) for _ in range(n_cal)])
    return x_val, x_cal


def detector_inputs(input_size: int, data: str, n_val: int, n_cal: int, seed: int = 0):
    """(parity inputs, calibration inputs) of the detector, letterboxed to
    [-1, 1], from ``synthetic`` or a COCO-style keypoint JSON."""
    anc, strides = anchors(input_size), anchor_strides(input_size)
    return _inputs(lambda s: detector_item(s, input_size, anc, strides)["image"], data, n_val, n_cal, seed)


def landmark_inputs(input_size: int, data: str, n_val: int, n_cal: int, seed: int = 0):
    """(parity inputs, calibration inputs) of the landmark model: crops in
    [0, 1] around each person's region of interest."""
    rng = np.random.default_rng(seed)
    return _inputs(lambda s: landmark_item(s, input_size, rng, 0.05, 8)["image"], data, n_val, n_cal, seed)
