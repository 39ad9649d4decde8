"""``shapes``: an embedded, generated image-classification set that small
models do not saturate, for comparing architectures (the proxy task of a
search) where ``digits`` is too easy (every zoo model reaches 0.93-0.95 on
it, within a few images of each other).

Ten classes of figures (disc, ring, square, frame, triangle, star, cross,
hexagon, crescent, arrow), each drawn with a random pose (rotation), scale,
position, colour and a striped or plain fill, on a cluttered background: two
coloured gratings, noise, and distractors (bars and small blobs of the same
colours as the figures), with a bar across the figure in some images. The
figures are rasterised from signed distance functions with antialiasing, in
numpy, at the size asked for: 10,000 images at 32x32 take a few seconds. The
images depend on the generator's seed alone (``shapes`` is always the same
set; ``shapes:N`` has N images), the split on ``--seed``.
"""

from __future__ import annotations

import numpy as np

CLASSES = ("disc", "ring", "square", "frame", "triangle", "star", "cross", "hexagon", "crescent", "arrow")
DEFAULT_COUNT = 10000
GENERATOR_SEED = 20261203  # the set itself never changes with --seed


def _polygon_sd(px: np.ndarray, py: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """Signed distance to a convex or star-shaped polygon (negative inside),
    by the even-odd rule and the distance to the nearest edge."""
    d = np.full(px.shape, np.inf)
    inside = np.zeros(px.shape, dtype=bool)
    n = len(verts)
    for i in range(n):
        ax, ay = verts[i]
        bx, by = verts[(i + 1) % n]
        ex, ey = bx - ax, by - ay
        wx, wy = px - ax, py - ay
        t = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0.0, 1.0)
        d = np.minimum(d, np.hypot(wx - ex * t, wy - ey * t))
        cross = ((ay > py) != (by > py)) & (px < (bx - ax) * (py - ay) / (by - ay + 1e-12) + ax)
        inside ^= cross
    return np.where(inside, -d, d)


def _regular(n: int, r: float = 1.0, phase: float = 0.0) -> np.ndarray:
    a = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([r * np.cos(a), r * np.sin(a)], 1)


_STAR = np.concatenate([[_regular(5, 1.0, np.pi / 2)[i], _regular(5, 0.42, np.pi / 2 + np.pi / 5)[i]] for i in range(5)])
_ARROW = np.array([[-1.0, -0.25], [0.2, -0.25], [0.2, -0.6], [1.0, 0.0], [0.2, 0.6], [0.2, 0.25], [-1.0, 0.25]])
_CROSS = np.array([[-1, -.3], [-.3, -.3], [-.3, -1], [.3, -1], [.3, -.3], [1, -.3], [1, .3], [.3, .3], [.3, 1],
                   [-.3, 1], [-.3, .3], [-1, .3]], dtype=float)


def _shape_sd(cls: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed distance of class ``cls`` in its own frame (about unit size)."""
    name = CLASSES[cls]
    r = np.hypot(x, y)
    if name == "disc":
        return r - 0.9
    if name == "ring":
        return np.abs(r - 0.7) - 0.22
    if name == "square":
        return np.maximum(np.abs(x), np.abs(y)) - 0.8
    if name == "frame":
        return np.abs(np.maximum(np.abs(x), np.abs(y)) - 0.65) - 0.2
    if name == "triangle":
        return _polygon_sd(x, y, _regular(3, 1.0, np.pi / 2))
    if name == "star":
        return _polygon_sd(x, y, _STAR)
    if name == "cross":
        return _polygon_sd(x, y, _CROSS)
    if name == "hexagon":
        return _polygon_sd(x, y, _regular(6, 0.95))
    if name == "crescent":
        return np.maximum(r - 0.9, 0.75 - np.hypot(x - 0.45, y))
    return _polygon_sd(x, y, _ARROW)  # arrow


def _grating(rng: np.random.Generator, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    f = rng.uniform(1.5, 6.0)
    a = rng.uniform(0, np.pi)
    return 0.5 + 0.5 * np.sin(f * np.pi * (gx * np.cos(a) + gy * np.sin(a)) + rng.uniform(0, 2 * np.pi))


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.0, 1.0, 3)


def _paint(img: np.ndarray, cover: np.ndarray, colour: np.ndarray) -> None:
    img *= 1 - cover[..., None]
    img += cover[..., None] * colour


def render(cls: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One image of class ``cls`` at ``size`` x ``size``, float RGB in [0, 1]."""
    return render_scene(cls, size, rng)[0]


def render_scene(cls: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One image of class ``cls`` and its label map (uint8: ``cls + 1`` where
    the figure shows, 0 for the background, the distractors and a bar drawn
    across it): the same random draws as :func:`render`, so ``shapes`` and
    ``shapes-seg`` hold the same scenes."""
    c = (np.arange(size) + 0.5) / size * 2 - 1
    gy, gx = np.meshgrid(c, c, indexing="ij")
    px = 2.0 / size  # one pixel in these units: the antialiasing width
    # background: two gratings in two colours, and noise
    g1, g2 = _grating(rng, gx, gy), _grating(rng, gx, gy)
    img = g1[..., None] * _colour(rng) * 0.6 + g2[..., None] * _colour(rng) * 0.4
    # distractors: bars and blobs of the same palette as the figures
    for _ in range(rng.integers(1, 4)):
        a, (cx, cy) = rng.uniform(0, np.pi), rng.uniform(-1, 1, 2)
        u = (gx - cx) * np.cos(a) + (gy - cy) * np.sin(a)
        v = -(gx - cx) * np.sin(a) + (gy - cy) * np.cos(a)
        if rng.random() < 0.5:
            sd = np.maximum(np.abs(u) - rng.uniform(0.2, 0.8), np.abs(v) - rng.uniform(0.03, 0.08))
        else:
            sd = np.hypot(u, v) - rng.uniform(0.05, 0.15)
        _paint(img, np.clip(0.5 - sd / px, 0, 1), _colour(rng))
    # the figure: pose, scale, position, a plain or striped fill
    scale = rng.uniform(0.45, 0.8)
    a = rng.uniform(0, 2 * np.pi)
    cx, cy = rng.uniform(-1 + scale * 0.9, 1 - scale * 0.9, 2)
    u = ((gx - cx) * np.cos(a) + (gy - cy) * np.sin(a)) / scale
    v = (-(gx - cx) * np.sin(a) + (gy - cy) * np.cos(a)) / scale
    cover = np.clip(0.5 - _shape_sd(cls, u, v) * scale / px, 0, 1)
    mask = np.where(cover >= 0.5, cls + 1, 0).astype(np.uint8)
    fill = _colour(rng)
    if rng.random() < 0.5:
        stripes = _grating(rng, u, v)[..., None]
        fill = fill * (0.55 + 0.45 * stripes) + (1 - fill) * 0.2 * (1 - stripes)
        img *= 1 - cover[..., None]
        img += cover[..., None] * fill
    else:
        _paint(img, cover, fill)
    if rng.random() < 0.3:  # a bar across the figure
        a2 = rng.uniform(0, np.pi)
        w = (gx - cx) * np.sin(a2) - (gy - cy) * np.cos(a2)
        bar = np.clip(0.5 - (np.abs(w) - rng.uniform(0.04, 0.1)) / px, 0, 1)
        _paint(img, bar, _colour(rng))
        mask[bar >= 0.5] = 0
    img += rng.normal(0, rng.uniform(0.01, 0.05), img.shape)
    return np.clip(img, 0, 1), mask


def generate_scenes(count: int, size: int, seed: int = GENERATOR_SEED) -> tuple[np.ndarray, np.ndarray]:
    """``shapes-seg``: the images of :func:`generate` (uint8, (N, size, size, 3))
    and their label maps (uint8, (N, size, size): 0 background, 1 + the class)."""
    x = np.empty((count, size, size, 3), dtype=np.uint8)
    m = np.empty((count, size, size), dtype=np.uint8)
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        img, m[i] = render_scene(i % len(CLASSES), size, rng)
        x[i] = np.round(img * 255).astype(np.uint8)
    return x, m


def generate(count: int, size: int, seed: int = GENERATOR_SEED) -> tuple[np.ndarray, np.ndarray]:
    """``count`` images (uint8, (N, size, size, 3)) and their labels, classes
    balanced, each image from its own generator (the same index gives the
    same image at any count)."""
    x = np.empty((count, size, size, 3), dtype=np.uint8)
    y = np.arange(count, dtype=np.int64) % len(CLASSES)
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        x[i] = np.round(render(int(y[i]), size, rng) * 255).astype(np.uint8)
    return x, y
