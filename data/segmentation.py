"""Segmentation data: images with label maps (one class id per pixel).

- ``shapes-seg`` / ``shapes-seg:N``: the ``shapes`` scenes (data/shapes.py)
  with their masks, which come for free from the generator: 11 classes,
  background and the ten figures, drawn at the model's input size.
- a folder of images and a folder of masks beside it, matched by file
  stem: ``images/`` + ``masks/``, Pascal VOC's ``JPEGImages/`` +
  ``SegmentationClass/`` or ADE20K's ``images/`` + ``annotations/``; a mask
  is a PNG of class ids (palette PNGs hold the ids as their indices), 255
  (VOC's boundary) marking pixels no loss or metric counts; ``classes.txt`` beside the folders names the classes (else
  the class count is the largest id seen plus one).

Images are resized bilinearly and masks by nearest neighbour to the model's
input size; training flips and scales image and mask together."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from odml.data.images import IMAGE_EXTENSIONS, ImageDataset, _resize_all, read_image
from odml.errors import DataError

IGNORE = 255
PAIRS = (("images", "masks"), ("JPEGImages", "SegmentationClass"), ("images", "annotations"))


@dataclass
class SegDataset(ImageDataset):
    """An :class:`~odml.data.images.ImageDataset` whose labels are maps:
    ``y_*`` uint8 (N, H, W) class ids, ``ignore_label`` where nothing is
    counted."""

    ignore_label: int = IGNORE
    scale_range: tuple[float, float] = (0.75, 1.25)  # training's random scale of image and mask together

    def summary(self) -> dict:
        return {**super().summary(), "ignore_label": self.ignore_label}

    def epoch_dataset(self, epoch: int, batch: int, seed: int, distortion: float = 0.0) -> Any:
        """The training pipeline: float [0, 1] images and int32 masks, shuffled,
        each pair flipped left-right together half the time and scaled
        together by a random factor in ``scale_range`` (image bilinearly,
        mask by nearest neighbour), then cropped back to the input size at a
        random place, or padded where it shrank (the mask's padding ignored),
        as the Model Garden's segmentation input pipeline does."""
        if self._pipeline is None or self._pipeline[0] != (batch, seed):
            from odml._tf import tf

            T = tf()
            ds = T.data.Dataset.from_tensor_slices((self.x_train, self.y_train))
            ds = ds.shuffle(min(len(self.y_train), 10_000), seed=seed, reshuffle_each_iteration=True)
            lo, hi = self.scale_range
            h, w = self.y_train.shape[1:3]
            c = self.x_train.shape[-1]
            ignore = self.ignore_label

            def prep(img, mask):
                img = T.cast(img, T.float32) / 255.0
                mask = T.cast(mask, T.int32)[..., None]
                flip = T.random.uniform([]) < 0.5
                img = T.cond(flip, lambda: T.image.flip_left_right(img), lambda: img)
                mask = T.cond(flip, lambda: T.image.flip_left_right(mask), lambda: mask)
                if (lo, hi) != (1.0, 1.0):
                    s = T.random.uniform([], lo, hi)
                    size = T.cast(T.round(T.constant([h, w], T.float32) * s), T.int32)
                    img = T.image.resize(img, size, method="bilinear")
                    mask = T.image.resize(mask, size, method="nearest")
                    ph, pw = T.maximum(h - size[0], 0), T.maximum(w - size[1], 0)
                    oy = T.random.uniform([], 0, ph + 1, dtype=T.int32)
                    ox = T.random.uniform([], 0, pw + 1, dtype=T.int32)
                    pads = [[oy, ph - oy], [ox, pw - ox], [0, 0]]
                    img = T.pad(img, pads)
                    mask = T.pad(mask - ignore, pads) + ignore  # padding: ignored pixels
                    both = T.image.random_crop(T.concat([img, T.cast(mask, T.float32)], -1), [h, w, c + 1])
                    img, mask = both[..., :c], T.cast(both[..., c:], T.int32)
                return img, mask[..., 0]

            ds = ds.map(prep, num_parallel_calls=T.data.AUTOTUNE).batch(batch).prefetch(T.data.AUTOTUNE)
            self._pipeline = ((batch, seed), ds)
        return self._pipeline[1]


def _split(n: int, val_fraction: float, seed: int, split: str = "val") -> tuple[np.ndarray, np.ndarray, str]:
    """(train, val) indices and what they are: ``val_fraction`` of the images
    chosen by ``seed``, or (``split="all"``) all of them validating."""
    if split == "all":
        return np.arange(n), np.arange(n), f"all {n} images (your own test set)"
    if n < 2:
        raise DataError(f"{n} image(s): a split into training and validation needs at least 2")
    order = np.random.default_rng(seed).permutation(n)
    nv = max(1, int(round(n * val_fraction)))
    return np.sort(order[nv:]), np.sort(order[:nv]), f"{nv} of {n} images validate ({val_fraction:.0%}, seed {seed})"


def load_shapes_seg(source: str, size: tuple[int, int], channels: int = 3, val_fraction: float = 0.2,
                    seed: int = 0, split: str = "val") -> SegDataset:
    from odml.data.shapes import CLASSES, DEFAULT_COUNT, generate_scenes

    n = DEFAULT_COUNT
    if source != "shapes-seg":
        text = source.split(":", 1)[1]
        if not text.isdigit() or not 20 <= int(text) <= 500_000:
            raise DataError(f"--data {source}: shapes-seg:N takes a number of images from 20 to 500000")
        n = int(text)
    h, w = size
    x, m = generate_scenes(n, max(h, w))
    if h != w:
        x, m = _resize(x, m, size, channels)
    elif channels == 1:
        x = _resize_all(x, size, channels)  # grey, no resize
    tr, va, how = _split(n, val_fraction, seed, split)
    return SegDataset(x[tr], m[tr], x[va], m[va], ["background", *CLASSES], source,
                      [f"generated: {n} figures in clutter with their masks, {len(CLASSES) + 1} classes "
                       f"(background and {len(CLASSES)} figures), at {h}x{w}"], split=how)


def _resize(x: np.ndarray, m: np.ndarray, size: tuple[int, int], channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Images resized bilinearly (``data/images.py``), masks by nearest neighbour."""
    from PIL import Image

    h, w = size
    mo = np.stack([np.asarray(Image.fromarray(mk).resize((w, h), Image.NEAREST)) for mk in m])
    return _resize_all(x, size, channels), mo


def find_pairs(path: Path) -> tuple[list[Path], list[Path], Path]:
    """(images, masks, mask folder) of a segmentation folder, matched by stem;
    an image without a mask is refused, naming it."""
    if not path.is_dir():
        raise DataError(f"{path}: data folder not found")
    for img_dir, mask_dir in PAIRS:
        if (path / img_dir).is_dir() and (path / mask_dir).is_dir():
            break
    else:
        raise DataError(f"{path}: expected an image folder and a mask folder in it ("
                        + ", ".join(f"{a}/ + {b}/" for a, b in PAIRS) + ")")
    images = sorted(p for p in (path / img_dir).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
                    and not p.name.startswith("."))
    if not images:
        raise DataError(f"{path / img_dir}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    masks = {p.relative_to(path / mask_dir).with_suffix("").as_posix(): p
             for p in (path / mask_dir).rglob("*.png")}
    pairs = []
    for img in images:
        key = img.relative_to(path / img_dir).with_suffix("").as_posix()
        if key not in masks:
            raise DataError(f"{img}: no mask for this image (expected {path / mask_dir / key}.png)")
        pairs.append(masks[key])
    return images, pairs, path / mask_dir


def load_seg_folder(path: Path, size: tuple[int, int], channels: int = 3, val_fraction: float = 0.2, seed: int = 0,
                    classes: int | None = None, ignore_label: int = IGNORE, split: str = "val") -> SegDataset:
    """A folder of images and masks (see the module's docstring), checked
    file by file: a mask whose size is not its image's, or a class id beyond
    the classes (other than ``ignore_label``), is refused naming the file."""
    from PIL import Image

    images, masks, mask_dir = find_pairs(path)
    names_file = path / "classes.txt"
    names = [ln.strip() for ln in names_file.read_text().splitlines() if ln.strip()] if names_file.is_file() else None
    n_classes = classes or (len(names) if names else None)
    h, w = size
    xs, ms, top = [], [], 0
    for img_path, mask_path in zip(images, masks):
        try:
            img = Image.open(img_path)
            img.load()
            mk = Image.open(mask_path)
            mk.load()
        except OSError as e:
            raise DataError(f"{img_path}: cannot read the image or its mask: {e}") from None
        if img.size != mk.size:
            raise DataError(f"{mask_path}: mask is {mk.size[0]}x{mk.size[1]}, its image {img_path.name} is "
                            f"{img.size[0]}x{img.size[1]}")
        if mk.mode not in ("L", "P", "I", "I;16"):
            raise DataError(f"{mask_path}: mask mode {mk.mode}: expected a single-channel PNG of class ids")
        ids = np.asarray(mk).astype(np.int64)
        valid = ids[ids != ignore_label]
        biggest = int(valid.max()) if valid.size else 0
        if n_classes is not None and biggest >= n_classes:
            raise DataError(f"{mask_path}: class id {biggest} is beyond the {n_classes} classes (0..{n_classes - 1}; "
                            f"{ignore_label} is ignored)")
        if biggest > 254:
            raise DataError(f"{mask_path}: class id {biggest}: odml reads at most 255 classes")
        top = max(top, biggest)
        x = np.asarray(img.convert("L" if channels == 1 else "RGB").resize((w, h), Image.BILINEAR))
        xs.append(x[..., None] if channels == 1 else x)
        ms.append(np.asarray(Image.fromarray(ids.astype(np.uint8)).resize((w, h), Image.NEAREST)))
    n_classes = n_classes or top + 1
    if n_classes < 2:
        raise DataError(f"{mask_dir}: every mask holds class 0 only; segmentation needs at least two classes")
    names = names or [str(i) for i in range(n_classes)]
    x, m = np.stack(xs), np.stack(ms)
    tr, va, how = _split(len(x), val_fraction, seed, split)
    return SegDataset(x[tr], m[tr], x[va], m[va], names[:n_classes], str(path),
                      [f"{len(x)} images with masks, {n_classes} classes, resized to {h}x{w}"], split=how,
                      ignore_label=ignore_label)


def load_segmentation(source: str, size: tuple[int, int], channels: int = 3, val_fraction: float = 0.2,
                      seed: int = 0, classes: int | None = None, ignore_label: int = IGNORE,
                      split: str = "val") -> SegDataset:
    if source == "shapes-seg" or source.startswith("shapes-seg:"):
        return load_shapes_seg(source, size, channels, val_fraction, seed, split)
    return load_seg_folder(Path(source), size, channels, val_fraction, seed, classes, ignore_label, split)


def confusion(pred: np.ndarray, y: np.ndarray, n: int, ignore_label: int = IGNORE) -> np.ndarray:
    """The n x n confusion matrix (rows: truth) of label maps, ignored pixels left out."""
    keep = y != ignore_label
    t, p = y[keep].astype(np.int64), pred[keep].astype(np.int64)
    return np.bincount(t * n + p, minlength=n * n).reshape(n, n)


def seg_scores(cm: np.ndarray) -> dict[str, Any]:
    """mIoU (over the classes present in the truth or the prediction), pixel
    accuracy and the per-class IoU, from a confusion matrix."""
    inter = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - inter
    present = union > 0
    iou = np.where(present, inter / np.maximum(union, 1), np.nan)
    return {"miou": float(np.nanmean(iou)) if present.any() else 0.0,
            "pixel_accuracy": float(inter.sum() / max(cm.sum(), 1)),
            "iou": [None if np.isnan(v) else float(v) for v in iou]}


def load_labelled_by(source: str, size: tuple[int, int], label: Any, names: list[str], channels: int = 3,
                     val_fraction: float = 0.2, seed: int = 0, split: str = "val", what: str = "the teacher"
                     ) -> SegDataset:
    """Images without masks, labelled by a model: ``label`` (uint8 images
    (N, H, W, C) -> masks (N, H, W) of class ids) is run on them, so that
    students learn, and are scored against, ``what`` labels. ``source``: a
    folder of images (searched recursively; a folder of images and masks
    reads as usual) or ``synthetic[:N]`` (odml's synthetic people, data/pose.py,
    400 by default)."""
    h, w = size
    if source == "synthetic" or source.startswith("synthetic:"):
        from odml.data.pose import SyntheticPeople

        n = 400
        if source != "synthetic":
            text = source.split(":", 1)[1]
            if not text.isdigit() or not 10 <= int(text) <= 100_000:
                raise DataError(f"--data {source}: synthetic:N takes a number of images from 10 to 100000")
            n = int(text)
        people = SyntheticPeople((h, w), seed=seed)
        x = np.stack([people.sample().image for _ in range(n)])
        x = x if channels == 3 else _resize_all(x, size, channels)
        note = f"{n} synthetic people at {h}x{w}"
    else:
        path = Path(source)
        if not path.is_dir():
            raise DataError(f"--data {source}: neither 'synthetic' nor a folder of images")
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if len(files) < 2:
            raise DataError(f"{path}: {len(files)} images found ({', '.join(IMAGE_EXTENSIONS)}); at least 2 needed")
        x = np.stack([read_image(f, size, channels)[0] for f in files])
        note = f"{len(files)} images of {path} at {h}x{w}"
    m = np.asarray(label(x), dtype=np.uint8)
    tr, va, how = _split(len(x), val_fraction, seed, split)
    share = float((m > 0).mean())
    return SegDataset(x[tr], m[tr], x[va], m[va], list(names), source,
                      [f"{note}; no masks: the masks are {what}'s maps ({share:.0%} of the pixels not background), "
                       f"so students learn and are scored against {what}"], split=how)
