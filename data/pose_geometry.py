"""The geometry of the BlazePose pipeline (Bazarevsky et al., "BlazePose:
On-device Real-time Body Pose tracking", 2020; MediaPipe's pose model
cards), NumPy only:
the region of interest from two alignment keypoints (centre at the hips,
radius to the full-body point, rotation from the body axis, x1.25, square),
the affine crop into the landmark model's input and back, the detector's
letterbox, its 2254 SSD anchors, training targets, decoding and weighted
non-maximum suppression, and PCK.

Coordinates are pixels with the centre of pixel (i, j) at (j + 0.5, i + 0.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ROI_SCALE = 1.25
REG_SCALE = 5.0  # detector regressors are offsets in input widths x REG_SCALE
ANCHORS_PER_CELL = {8: 2, 16: 2, 32: 6}  # the detector's SSD anchors per cell at strides 8, 16, 32 (2254 at 224)


@dataclass
class Roi:
    cx: float
    cy: float
    size: float  # side of the square, pixels
    angle: float  # radians; the crop's "down" is the image vector (-sin a, cos a)

    def axes(self) -> tuple[np.ndarray, np.ndarray]:
        c, s = math.cos(self.angle), math.sin(self.angle)
        return np.array([c, s]), np.array([-s, c])

    def to_dict(self) -> dict[str, float]:
        return {"cx": round(self.cx, 2), "cy": round(self.cy, 2), "size": round(self.size, 2),
                "angle_deg": round(math.degrees(self.angle), 2)}


def roi_from_alignment(center: np.ndarray, full: np.ndarray, scale: float = ROI_SCALE) -> Roi:
    """The square ROI around the circle of centre ``center`` through ``full``,
    rotated so that the centre -> full direction points up in the crop."""
    v = np.asarray(full, float) - np.asarray(center, float)
    r = float(np.hypot(*v)) or 1.0
    # crop "down" = -v / r = (-sin a, cos a)
    angle = math.atan2(v[0] / r, -v[1] / r)
    return Roi(float(center[0]), float(center[1]), 2 * r * scale, angle)


def roi_matrix(roi: Roi, out_size: int) -> np.ndarray:
    """2x3 matrix from crop pixels (x, y) to image pixels."""
    ex, ey = roi.axes()
    k = roi.size / out_size
    A = np.stack([ex * k, ey * k], 1)  # columns: image step per crop x / y pixel
    t = np.array([roi.cx, roi.cy]) - A @ np.array([out_size / 2, out_size / 2])
    return np.concatenate([A, t[:, None]], 1)


def image_to_crop(pts: np.ndarray, roi: Roi, out_size: int) -> np.ndarray:
    """Image pixels (N, 2) -> crop pixels."""
    M = roi_matrix(roi, out_size)
    A, t = M[:, :2], M[:, 2]
    return (np.asarray(pts, float)[:, :2] - t) @ np.linalg.inv(A).T


def crop_to_image(pts: np.ndarray, roi: Roi, out_size: int) -> np.ndarray:
    M = roi_matrix(roi, out_size)
    return np.asarray(pts, float)[:, :2] @ M[:, :2].T + M[:, 2]


def warp(image: np.ndarray, M: np.ndarray, out_size: int | tuple[int, int], fill: float = 0.0) -> np.ndarray:
    """Bilinear sampling: output pixel (x, y) takes the image at M @ (x+.5, y+.5, 1)
    (pixel-centre convention); outside the image: ``fill``. Returns float32."""
    oh, ow = (out_size, out_size) if isinstance(out_size, int) else out_size
    if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and not fill:
        from PIL import Image  # the same sampling, in C

        im = Image.fromarray(image).transform((ow, oh), Image.Transform.AFFINE, tuple(np.asarray(M, float).ravel()),
                                              resample=Image.Resampling.BILINEAR)
        return np.asarray(im, dtype=np.float32)
    ys, xs = np.mgrid[0:oh, 0:ow].astype(np.float32) + 0.5
    sx = M[0, 0] * xs + M[0, 1] * ys + M[0, 2] - 0.5
    sy = M[1, 0] * xs + M[1, 1] * ys + M[1, 2] - 0.5
    h, w = image.shape[:2]
    x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    img = image.astype(np.float32)
    out = np.zeros((oh, ow, image.shape[2]), np.float32)
    for dy, dx, wgt in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)), (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = x0 + dx, y0 + dy
        ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        v = np.full((oh, ow, image.shape[2]), fill, np.float32)
        v[ok] = img[yi[ok], xi[ok]]
        out += wgt * v
    return out


def crop_roi(image: np.ndarray, roi: Roi, out_size: int) -> np.ndarray:
    """The ROI of ``image`` as an out_size x out_size float32 crop (0..255)."""
    return warp(image, roi_matrix(roi, out_size), out_size)


# --- detector: letterbox, anchors, targets, decoding --------------------------------------------------------

@dataclass
class Letterbox:
    scale: float  # input pixels per image pixel
    pad_x: float
    pad_y: float
    size: int

    def to_image(self, pts: np.ndarray) -> np.ndarray:
        """Normalized input coordinates (N, 2) -> image pixels."""
        p = np.asarray(pts, float) * self.size
        return np.stack([(p[:, 0] - self.pad_x) / self.scale, (p[:, 1] - self.pad_y) / self.scale], 1)

    def to_input(self, pts: np.ndarray) -> np.ndarray:
        """Image pixels -> normalized input coordinates."""
        p = np.asarray(pts, float)
        return np.stack([p[:, 0] * self.scale + self.pad_x, p[:, 1] * self.scale + self.pad_y], 1) / self.size


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """The image scaled to fit a size x size square (aspect kept, centred,
    black bars), float32 0..255."""
    h, w = image.shape[:2]
    s = size / max(h, w)
    lb = Letterbox(s, (size - w * s) / 2, (size - h * s) / 2, size)
    M = np.array([[1 / s, 0, -lb.pad_x / s], [0, 1 / s, -lb.pad_y / s]])
    return warp(image, M, size), lb


def anchors(input_size: int = 224) -> np.ndarray:
    """(2254, 2) anchor centres, normalized, in the order of the detector's
    outputs (stride 8, 16, 32; row, column, anchor)."""
    out = []
    for stride, n in ANCHORS_PER_CELL.items():
        g = -(-input_size // stride)
        ys, xs = np.mgrid[0:g, 0:g]
        c = np.stack([(xs + 0.5) / g, (ys + 0.5) / g], -1).reshape(-1, 1, 2)
        out.append(np.repeat(c, n, axis=1).reshape(-1, 2))
    return np.concatenate(out).astype(np.float32)


def anchor_strides(input_size: int = 224) -> np.ndarray:
    return np.concatenate([np.full((-(-input_size // s)) ** 2 * n, s, np.float32) for s, n in ANCHORS_PER_CELL.items()])


def detector_targets(points: np.ndarray, boxes: np.ndarray, anc: np.ndarray, strides: np.ndarray,
                     input_size: int = 224) -> tuple[np.ndarray, np.ndarray]:
    """Per anchor: label (0/1) and the 12 regression targets, for people given
    by their 4 alignment points (P, 4, 2) and boxes (P, 4: cx, cy, w, h), all
    normalized. An anchor is positive when its centre is within 1.5 cells of
    a person's hip centre at a stride that suits the person's size."""
    labels = np.zeros(len(anc), np.float32)
    reg = np.zeros((len(anc), 12), np.float32)
    best = np.full(len(anc), np.inf)
    for pts, box in zip(points, boxes):
        r = float(np.hypot(*(pts[1] - pts[0]))) * input_size  # pixels of the input
        ok_stride = np.where(strides == 8, r < 56, np.where(strides == 16, (r > 28) & (r < 112), r > 56))
        cell = strides / input_size
        d = np.hypot(*(anc - pts[0]).T) / cell
        pos = ok_stride & (d < 1.5) & (d < best)
        if not pos.any():  # too small or too large for every rule: the nearest anchor of the nearest stride
            pos = d == d[ok_stride].min() if ok_stride.any() else d == d.min()
        best[pos] = d[pos]
        labels[pos] = 1
        a = anc[pos]
        t = np.concatenate([(box[None, :2] - a), np.repeat(box[None, 2:], len(a), 0)]
                           + [(pts[k][None] - a) for k in range(4)], axis=1)
        reg[pos] = t * REG_SCALE
    return labels, reg


@dataclass
class Detection:
    score: float
    box: np.ndarray  # cx, cy, w, h (normalized input coordinates)
    keypoints: np.ndarray  # (4, 2) normalized input coordinates


def decode(raw: np.ndarray, anc: np.ndarray, min_score: float = 0.5, iou: float = 0.3) -> list[Detection]:
    """The detector's (2254, 13) output (score probability, 12 regressors) ->
    detections after weighted non-maximum suppression, best first."""
    score = raw[:, 0]
    keep = np.where(score >= min_score)[0]
    keep = keep[np.argsort(-score[keep])[:100]]  # the 100 best are plenty for one image
    if not len(keep):
        return []
    r = raw[keep, 1:] / REG_SCALE
    a = anc[keep]
    boxes = np.concatenate([r[:, :2] + a, r[:, 2:4]], 1)
    kps = r[:, 4:].reshape(-1, 4, 2) + a[:, None]
    return weighted_nms(score[keep], boxes, kps, iou)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    def corners(b):
        return b[..., 0] - b[..., 2] / 2, b[..., 1] - b[..., 3] / 2, b[..., 0] + b[..., 2] / 2, b[..., 1] + b[..., 3] / 2

    ax0, ay0, ax1, ay1 = corners(box)
    bx0, by0, bx1, by1 = corners(boxes)
    iw = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None)
    ih = np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    inter = iw * ih
    union = box[2] * box[3] + boxes[:, 2] * boxes[:, 3] - inter
    return inter / np.maximum(union, 1e-9)


def weighted_nms(scores: np.ndarray, boxes: np.ndarray, kps: np.ndarray, iou: float = 0.3) -> list[Detection]:
    """BlazeFace's weighted NMS: the best remaining detection and every other
    that overlaps it by more than ``iou`` are merged into their
    score-weighted mean (box and keypoints); the score is the best one's."""
    order = np.argsort(-scores)
    left = order
    out = []
    while len(left):
        top = left[0]
        ov = _iou(boxes[top], boxes[left])
        group = left[ov > iou]
        if top not in group:
            group = np.append(group, top)
        w = scores[group][:, None]
        box = (boxes[group] * w).sum(0) / w.sum()
        kp = (kps[group] * w[:, :, None]).sum(0) / w.sum()
        out.append(Detection(float(scores[top]), box, kp))
        left = left[~np.isin(left, group)]
    return out


# --- metrics --------------------------------------------------------------------------------------------------

def pck(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray, torso: np.ndarray, alpha: float = 0.2) -> float:
    """Fraction of labelled keypoints whose 2D error is below alpha x torso
    size. pred, truth (N, K, >=2); mask (N, K); torso (N,)."""
    err = np.hypot(pred[..., 0] - truth[..., 0], pred[..., 1] - truth[..., 1])
    ok = (err < alpha * np.asarray(torso)[:, None]) & (mask > 0)
    n = (mask > 0).sum()
    return float(ok.sum() / n) if n else float("nan")
