"""Pose data: the 33-point BlazePose topology (MediaPipe's pose landmark
model card; Bazarevsky et al. 2020), a
generator of synthetic people, a COCO-style keypoint JSON reader, and image
decoding with one-line errors.

A sample is a ``PoseSample``: an RGB uint8 image and, per person, 33
keypoints (x, y in pixels, z in pixels relative to the hips, smaller = nearer
the camera) with a mask of the points that are labelled and a visibility flag.

Synthetic people: a 3D stick figure with the 33-point topology in a random
pose (arms, legs, torso lean, head turn), turned about the vertical axis,
projected, rotated in the image plane, scaled and placed on a background of
gradients, shapes and noise; limbs drawn back to front with clothing and skin
colours, the face with eyes and mouth so that it has a front. Everything comes
from a seeded generator: the same seed gives the same images.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from odml.errors import DataError

NAMES = ["nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
         "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
         "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
         "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
         "left_heel", "right_heel", "left_foot_index", "right_foot_index"]
COCO17 = [0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28]  # COCO order -> 33-point index
# the drawn skeleton (and the synthetic person's limbs)
EDGES = [(11, 12), (11, 23), (12, 24), (23, 24), (11, 13), (13, 15), (12, 14), (14, 16), (15, 17), (15, 19),
         (15, 21), (17, 19), (16, 18), (16, 20), (16, 22), (18, 20), (23, 25), (25, 27), (24, 26), (26, 28),
         (27, 29), (29, 31), (27, 31), (28, 30), (30, 32), (28, 32), (0, 2), (0, 5), (2, 7), (5, 8), (9, 10)]
LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_HIP, RIGHT_HIP = 11, 12, 23, 24
NUM_KEYPOINTS = len(NAMES)  # 33
ALIGN_KEYPOINTS = 2  # mid-hip centre and the full-body point
LANDMARKS = NUM_KEYPOINTS + ALIGN_KEYPOINTS
DETECTOR_KEYPOINTS = 4  # mid-hip, full-body point, mid-shoulder, upper-body point
UPPER_BODY = list(range(0, 23))


@dataclass
class PoseSample:
    image: np.ndarray  # HxWx3 uint8
    keypoints: np.ndarray  # (P, 33, 3) x, y, z in pixels
    mask: np.ndarray  # (P, 33) 1 where labelled
    visible: np.ndarray  # (P, 33) 1 where visible
    source: str = ""

    @property
    def people(self) -> int:
        return int(len(self.keypoints))


def alignment_points(kp: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """The detector's 4 alignment keypoints of one person (x, y): mid-hip
    centre; the full-body point (from the hips along the hip->shoulder axis,
    at the radius of the circle around every labelled point); mid-shoulder
    centre; the upper-body point (from the shoulders along the axis, at the
    radius of the upper body's circle)."""
    m = np.ones(len(kp), bool) if mask is None else mask.astype(bool)
    xy = kp[:, :2]
    hip = (xy[LEFT_HIP] + xy[RIGHT_HIP]) / 2
    sho = (xy[LEFT_SHOULDER] + xy[RIGHT_SHOULDER]) / 2
    axis = sho - hip
    n = float(np.linalg.norm(axis)) or 1.0
    axis = axis / n
    r_full = max(float(np.linalg.norm(xy[m] - hip, axis=1).max()), n)
    up = m.copy()
    up[23:] = False
    r_up = max(float(np.linalg.norm(xy[up] - sho, axis=1).max()) if up.any() else 0.0, n / 2)
    return np.stack([hip, hip + axis * r_full, sho, sho + axis * r_up]).astype(np.float32)


def torso_size(kp: np.ndarray) -> float:
    """The torso diameter used by PCK: left shoulder to right hip."""
    return float(np.linalg.norm(kp[LEFT_SHOULDER, :2] - kp[RIGHT_HIP, :2]))


# --- synthetic people -----------------------------------------------------------------------------------------

def _unit(v: np.ndarray) -> np.ndarray:
    return v / (np.linalg.norm(v) + 1e-9)


def _dir(rng: np.random.Generator, base: tuple[float, float, float], spread: float) -> np.ndarray:
    """A random unit vector within about ``spread`` radians of ``base``."""
    return _unit(np.asarray(base, float) + rng.normal(0, spread, 3))


def _limb(side: int, abduction: float, flexion: float) -> np.ndarray:
    """The direction of a limb hanging from a joint: ``abduction`` radians
    out to the person's ``side`` (+1 left, -1 right) in the frontal plane from
    straight down, then ``flexion`` radians forward (towards +z)."""
    down = np.array([side * math.sin(abduction), -math.cos(abduction), 0.0])
    return _unit(down * math.cos(flexion) + np.array([0.0, 0.0, math.sin(flexion)]))


def _bend(d: np.ndarray, towards: np.ndarray, angle: float) -> np.ndarray:
    """``d`` turned by ``angle`` radians towards ``towards`` (a joint that bends
    one way)."""
    n = towards - d * float(np.dot(towards, d))
    return _unit(d * math.cos(angle) + _unit(n) * math.sin(angle))


def random_pose_3d(rng: np.random.Generator) -> np.ndarray:
    """33 points of a person 1.0 tall-ish (hips at the origin, y up, z towards
    the camera), in a random pose facing the camera +-50 degrees."""
    P = np.zeros((33, 3))
    lean = _dir(rng, (0, 1, 0), 0.15)
    sho_c = lean * 0.5
    side = _unit(np.cross(lean, (0, 0, 1)))  # the person's left: +x (image right) when facing the camera
    P[23], P[24] = side * 0.1, -side * 0.1
    P[11], P[12] = sho_c + side * 0.17, sho_c - side * 0.17
    head = sho_c + _dir(rng, tuple(lean), 0.2) * 0.2
    turn = rng.normal(0, 0.3)
    fwd = np.array([math.sin(turn), 0, math.cos(turn)])
    hs = _unit(np.cross((0, 1, 0), fwd))  # the head's left
    up = np.array([0.0, 1, 0])
    P[0] = head + fwd * 0.09 - up * 0.01
    for i, (dx, dy, dz) in zip(range(1, 7), [(0.02, 0.03, 0.075), (0.035, 0.03, 0.07), (0.05, 0.03, 0.06),
                                             (-0.02, 0.03, 0.075), (-0.035, 0.03, 0.07), (-0.05, 0.03, 0.06)]):
        P[i] = head + hs * dx + up * dy + fwd * dz
    P[7], P[8] = head + hs * 0.075 + up * 0.01, head - hs * 0.075 + up * 0.01
    P[9], P[10] = head + hs * 0.025 - up * 0.05 + fwd * 0.08, head - hs * 0.025 - up * 0.05 + fwd * 0.08
    for s, sh, el, wr, pk, ix, th in ((1, 11, 13, 15, 17, 19, 21), (-1, 12, 14, 16, 18, 20, 22)):
        # upper arm: raised sideways from hanging (0) to above the head, little across the chest; forward or back
        d1 = _limb(s, rng.uniform(-0.35, 2.6), rng.uniform(-0.6, 1.4))
        # the elbow bends one way only: the forearm turns from the upper arm towards the front and the midline
        d2 = _bend(d1, np.array([-0.4 * s, 0.3, 1.0]) + rng.normal(0, 0.4, 3), rng.uniform(0.0, 2.4))
        P[el] = P[sh] + d1 * 0.3
        P[wr] = P[el] + d2 * 0.27
        hand = _dir(rng, tuple(d2), 0.3)
        across = _unit(np.cross(hand, (0, 0, 1)) + 1e-3)
        P[ix] = P[wr] + hand * 0.08
        P[pk] = P[wr] + hand * 0.065 + across * 0.03 * s
        P[th] = P[wr] + hand * 0.05 - across * 0.035 * s
    for s, hp, kn, an, he, ft in ((1, 23, 25, 27, 29, 31), (-1, 24, 26, 28, 30, 32)):
        # thigh: hip abduction -10..+40 degrees (legs seldom cross), mostly within 20 degrees of straight
        d1 = _limb(s, rng.uniform(-0.18, 0.7), float(np.clip(rng.normal(0.1, 0.3), -0.35, 1.2)))
        # the knee bends backwards only
        d2 = _bend(d1, np.array([0.0, 0.0, -1.0]) + rng.normal(0, 0.15, 3), abs(rng.normal(0, 0.6)))
        P[kn] = P[hp] + d1 * 0.43
        P[an] = P[kn] + d2 * 0.42
        P[he] = P[an] + np.array([0, -0.04, -0.04])
        P[ft] = P[an] + np.array([0.03 * s, -0.06, 0.13])
    yaw = rng.uniform(-0.9, 0.9)
    c, s_ = math.cos(yaw), math.sin(yaw)
    R = np.array([[c, 0, s_], [0, 1, 0], [-s_, 0, c]])
    return P @ R.T


def place(P: np.ndarray, center: tuple[float, float], height_px: float, roll: float) -> np.ndarray:
    """Project a 3D pose to pixels: x right, y down, z = depth (nearer is
    smaller), rotated by ``roll`` radians in the image plane about the hips."""
    xy = np.stack([P[:, 0], -P[:, 1]], 1) * height_px
    c, s = math.cos(roll), math.sin(roll)
    xy = xy @ np.array([[c, s], [-s, c]])
    z = -P[:, 2] * height_px
    return np.concatenate([xy + np.asarray(center), z[:, None]], 1).astype(np.float32)


def background(rng: np.random.Generator, h: int, w: int) -> Any:
    from PIL import Image, ImageDraw

    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, h if rng.random() < 0.5 else w)
    g = (a[None] * (1 - t[:, None]) + b[None] * t[:, None])
    arr = np.broadcast_to(g[:, None, :], (h, w, 3)) if len(t) == h else np.broadcast_to(g[None, :, :], (h, w, 3))
    img = Image.fromarray(np.ascontiguousarray(arr).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 12))):
        x0, y0 = rng.uniform(-0.2, 1.0) * w, rng.uniform(-0.2, 1.0) * h
        x1, y1 = x0 + rng.uniform(0.05, 0.5) * w, y0 + rng.uniform(0.05, 0.5) * h
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        kind = rng.integers(3)
        if kind == 0:
            d.rectangle([x0, y0, x1, y1], fill=col)
        elif kind == 1:
            d.ellipse([x0, y0, x1, y1], fill=col)
        else:
            d.line([x0, y0, x1, y1], fill=col, width=int(rng.integers(1, max(2, w // 40))))
    return img


def draw_person(img: Any, kp: np.ndarray, rng: np.random.Generator) -> None:
    """Draw a person (33 points in pixels, with z) back to front."""
    from PIL import ImageDraw

    d = ImageDraw.Draw(img)
    xy, z = kp[:, :2], kp[:, 2]
    height = float(np.linalg.norm(xy[[11, 12]].mean(0) - xy[[27, 28]].mean(0))) + 1e-3
    skin = tuple(int(v) for v in rng.choice([[255, 219, 172], [224, 172, 105], [141, 85, 36], [198, 134, 66],
                                             [241, 194, 125]]) + rng.integers(-15, 16, 3))
    shirt, pants, shoes = (tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(3))
    sleeve = shirt if rng.random() < 0.5 else skin
    w_arm, w_leg = max(2, int(0.07 * height)), max(2, int(0.1 * height))
    edge = max(1, int(0.012 * height))
    parts: list[tuple[float, str, Any]] = []
    for a, b, col, wd in ((11, 13, sleeve, w_arm), (13, 15, skin, w_arm), (12, 14, sleeve, w_arm),
                          (14, 16, skin, w_arm), (23, 25, pants, w_leg), (25, 27, pants, w_leg),
                          (24, 26, pants, w_leg), (26, 28, pants, w_leg), (29, 31, shoes, w_leg),
                          (30, 32, shoes, w_leg), (27, 29, shoes, w_leg), (28, 30, shoes, w_leg)):
        parts.append((float(z[a] + z[b]) / 2, "line", (a, b, col, wd)))
    for wr, pts in ((15, (17, 19, 21)), (16, (18, 20, 22))):
        parts.append((float(z[wr]) - 0.01, "hand", (wr, pts)))
    parts.append((float(z[[11, 12, 23, 24]].mean()), "torso", None))
    parts.append((float(z[[0, 7, 8]].mean()), "head", None))
    for depth, kind, arg in sorted(parts, key=lambda p: -p[0]):  # far (large z) first
        if kind == "line":  # a limb with a darker outline, so that it shows against clothes of its colour
            a, b, col, wd = arg
            for c, w_ in ((_shade(col), wd + 2 * edge), (col, wd)):
                d.line([tuple(xy[a]), tuple(xy[b])], fill=c, width=w_)
                r = w_ / 2
                for p in (xy[a], xy[b]):
                    d.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=c)
        elif kind == "hand":
            wr, pts = arg
            for p in pts:
                d.line([tuple(xy[wr]), tuple(xy[p])], fill=skin, width=max(1, w_arm // 2))
        elif kind == "torso":
            d.polygon([tuple(xy[i]) for i in (11, 12, 24, 23)], fill=shirt, outline=_shade(shirt), width=edge)
            d.line([tuple(xy[11]), tuple(xy[12])], fill=shirt, width=w_arm)
        else:
            hc = xy[[7, 8]].mean(0)
            r = max(3.0, 0.5 * float(np.linalg.norm(xy[7] - xy[8])) + 0.02 * height, 0.06 * height)
            sho = xy[[11, 12]].mean(0)
            d.line([tuple(sho), tuple(hc)], fill=skin, width=max(2, int(0.05 * height)))
            d.ellipse([hc[0] - r, hc[1] - 1.15 * r, hc[0] + r, hc[1] + 1.15 * r], fill=skin, outline=_shade(skin),
                      width=edge)
            if z[0] < z[[7, 8]].mean():  # the face is towards the camera
                e = max(1.0, r * 0.14)
                for i in (2, 5):
                    d.ellipse([xy[i][0] - e, xy[i][1] - e, xy[i][0] + e, xy[i][1] + e], fill=(20, 20, 20))
                d.line([tuple(xy[9]), tuple(xy[10])], fill=(150, 30, 30), width=max(1, int(e)))
                d.ellipse([xy[0][0] - e, xy[0][1] - e, xy[0][0] + e, xy[0][1] + e], fill=(170, 110, 80))


def _shade(col: tuple[int, ...], k: float = 0.55) -> tuple[int, ...]:
    return tuple(int(v * k) for v in col)


@dataclass
class SyntheticPeople:
    """Scenes of ``size`` (HxW) with one person (or none, with probability
    ``empty``), person height ``scale`` of the image's smaller side, rolled up
    to ``roll`` degrees."""

    size: tuple[int, int] = (256, 256)
    scale: tuple[float, float] = (0.22, 0.5)  # units of the 3D figure (about 1.6 tall) per smaller image side
    roll: float = 45.0
    empty: float = 0.0
    noise: float = 6.0
    seed: int = 0
    _rng: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def sample(self) -> PoseSample:
        rng = self._rng
        h, w = self.size
        img = background(rng, h, w)
        kps = np.zeros((0, 33, 3), np.float32)
        if rng.random() >= self.empty:
            height = rng.uniform(*self.scale) * min(h, w)
            P = random_pose_3d(rng)
            roll = math.radians(rng.uniform(-self.roll, self.roll)) if rng.random() < 0.7 else 0.0
            kp = place(P, (0.0, 0.0), height, roll)
            lo, hi = kp[:, :2].min(0), kp[:, :2].max(0)
            span = hi - lo
            cx = rng.uniform(-lo[0], max(-lo[0], w - hi[0])) if span[0] < w else w / 2 - (lo[0] + hi[0]) / 2
            cy = rng.uniform(-lo[1], max(-lo[1], h - hi[1])) if span[1] < h else h / 2 - (lo[1] + hi[1]) / 2
            kp[:, 0] += cx
            kp[:, 1] += cy
            draw_person(img, kp, rng)
            kps = kp[None]
        arr = np.asarray(img, dtype=np.float32)
        if self.noise:
            arr = arr + rng.standard_normal(arr.shape, dtype=np.float32) * self.noise
        image = np.clip(arr, 0, 255).astype(np.uint8)
        inside = ((kps[..., 0] >= 0) & (kps[..., 0] < w) & (kps[..., 1] >= 0) & (kps[..., 1] < h)).astype(np.float32)
        return PoseSample(image, kps, np.ones(kps.shape[:2], np.float32), inside, "synthetic")

    def __iter__(self) -> Iterator[PoseSample]:
        while True:
            yield self.sample()


def moving_person(frames: int, size: tuple[int, int] = (256, 256), seed: int = 0,
                  truth: list | None = None) -> list[np.ndarray]:
    """A video: one person walking across a fixed background, the pose
    blending from one random pose to another. ``truth`` (a list) receives the
    (33, 3) keypoints of each frame."""
    rng = np.random.default_rng(seed)
    h, w = size
    bg = np.asarray(background(rng, h, w))
    a, b = random_pose_3d(rng), random_pose_3d(rng)
    height = 0.6 * min(h, w)
    out = []
    for i in range(frames):
        t = i / max(frames - 1, 1)
        P = (1 - t) * a + t * b
        kp = place(P, (w * (0.35 + 0.3 * t), h * 0.55), height, math.radians(10 * math.sin(4 * t)))
        from PIL import Image

        img = Image.fromarray(bg.copy())
        draw_person(img, kp, np.random.default_rng(seed))  # the same clothes in every frame
        out.append(np.asarray(img))
        if truth is not None:
            truth.append(kp)
    return out


# --- images ---------------------------------------------------------------------------------------------------

def read_image(path: str | Path) -> np.ndarray:
    """An image file as RGB uint8; a one-line DataError if missing or not decodable."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: image not found")
    try:
        with Image.open(p) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"{p}: cannot decode image: {' '.join(str(e).split())[:200]}") from None


# --- COCO keypoints -------------------------------------------------------------------------------------------

def _field(obj: dict, key: str, where: str, kind: Any) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise DataError(f"{where}: missing field {key!r}")
    v = obj[key]
    if not isinstance(v, kind) or isinstance(v, bool):
        raise DataError(f"{where}: field {key!r} has the wrong type ({type(v).__name__})")
    return v


@dataclass
class CocoKeypoints:
    """A COCO-style person keypoint file: ``items`` are (image path, (P, 33,
    3) keypoints, (P, 33) mask, (P, 33) visible). The 17 COCO points are placed
    in the 33-point topology and the other 16 masked; an annotation with
    ``keypoints33`` (odml's extension: 33 x (x, y, v)) gives every point."""

    path: Path
    items: list[tuple[Path, np.ndarray, np.ndarray, np.ndarray]]

    def __len__(self) -> int:
        return len(self.items)

    def sample(self, i: int) -> PoseSample:
        img_path, kp, m, v = self.items[i]
        return PoseSample(read_image(img_path), kp.copy(), m.copy(), v.copy(), str(img_path))


def read_coco(path: str | Path, images: str | Path | None = None) -> CocoKeypoints:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: keypoint file not found")
    try:
        doc = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{p}: not valid JSON: {e}") from None
    root = Path(images) if images is not None else p.parent
    imgs = {}
    for i, im in enumerate(_field(doc, "images", str(p), list)):
        where = f"{p}: images[{i}]"
        iid = _field(im, "id", where, int)
        fname = _field(im, "file_name", where, str)
        w, h = _field(im, "width", where, int), _field(im, "height", where, int)
        if w < 1 or h < 1:
            raise DataError(f"{where}: width and height must be positive, got {w}x{h}")
        imgs[iid] = (root / fname, w, h)
    people: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for i, ann in enumerate(_field(doc, "annotations", str(p), list)):
        where = f"{p}: annotations[{i}]"
        iid = _field(ann, "image_id", where, int)
        if iid not in imgs:
            raise DataError(f"{where}: image_id {iid} is not in 'images'")
        _, w, h = imgs[iid]
        if "keypoints33" in ann:
            raw, idx = _field(ann, "keypoints33", where, list), list(range(33))
        else:
            raw, idx = _field(ann, "keypoints", where, list), COCO17
        if len(raw) != 3 * len(idx) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw):
            raise DataError(f"{where}: expected {3 * len(idx)} numbers (x, y, v per point), got {len(raw)}")
        try:
            arr = np.asarray(raw, np.float64).reshape(-1, 3)  # checked against the image before any float32 cast
        except OverflowError:
            raise DataError(f"{where}: a coordinate too large for a number") from None
        kp = np.zeros((33, 3), np.float32)
        m, vis = np.zeros(33, np.float32), np.zeros(33, np.float32)
        for j, (x, y, v) in zip(idx, arr):
            if v not in (0, 1, 2):
                raise DataError(f"{where}: point {NAMES[j]}: visibility flag must be 0, 1 or 2, got {v:g}")
            if v > 0:
                if not (0 <= x <= w and 0 <= y <= h):
                    raise DataError(f"{where}: point {NAMES[j]} at ({x:g}, {y:g}) is outside its {w}x{h} image")
                kp[j, :2] = (x, y)
                m[j], vis[j] = 1.0, float(v == 2)
        people.setdefault(iid, []).append((kp, m, vis))
    items = []
    for iid, (fp, w, h) in imgs.items():
        ps = people.get(iid, [])
        kp = np.stack([q[0] for q in ps]) if ps else np.zeros((0, 33, 3), np.float32)
        m = np.stack([q[1] for q in ps]) if ps else np.zeros((0, 33), np.float32)
        v = np.stack([q[2] for q in ps]) if ps else np.zeros((0, 33), np.float32)
        items.append((fp, kp, m, v))
    if not items:
        raise DataError(f"{p}: no images")
    return CocoKeypoints(p, items)


def write_coco(out_dir: str | Path, count: int, seed: int = 0, size: tuple[int, int] = (256, 256),
               empty: float = 0.0) -> Path:
    """Synthetic people written as PNG files and a COCO-style keypoint JSON
    (``keypoints`` with the 17 COCO points, ``keypoints33`` with all 33);
    returns the JSON's path."""
    from PIL import Image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = SyntheticPeople(size=size, seed=seed, empty=empty)
    images, anns = [], []
    for i in range(count):
        s = gen.sample()
        name = f"person_{i:05d}.png"
        Image.fromarray(s.image).save(out / name)
        images.append({"id": i, "file_name": name, "width": size[1], "height": size[0]})
        for kp, vis in zip(s.keypoints, s.visible):
            h, w = size
            x = np.clip(kp[:, 0], 0, w)
            y = np.clip(kp[:, 1], 0, h)
            flags = np.where(vis > 0, 2, 0)
            k33 = np.stack([x, y, flags], 1)
            anns.append({"id": len(anns), "image_id": i, "category_id": 1, "num_keypoints": int((flags > 0).sum()),
                         "keypoints": [round(float(v), 2) for v in k33[COCO17].ravel()],
                         "keypoints33": [round(float(v), 2) for v in k33.ravel()]})
    doc = {"info": {"description": "odml synthetic people", "seed": seed}, "images": images, "annotations": anns,
           "categories": [{"id": 1, "name": "person", "keypoints": [NAMES[j] for j in COCO17],
                           "skeleton": [[COCO17.index(a) + 1, COCO17.index(b) + 1] for a, b in EDGES
                                        if a in COCO17 and b in COCO17]}]}
    from odml.files import write_json_atomic

    return write_json_atomic(out / "person_keypoints.json", doc, indent=None)
