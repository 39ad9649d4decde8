"""Image-classification data: a folder of class subfolders (the conventions of
Keras' ``image_dataset_from_directory``), an ``.npz`` with ``x`` and ``y``, or
the embedded default ``digits`` (scikit-learn's 1,797 real 8x8 handwritten
digits, upscaled), so the main job needs no download, or the generated
``shapes`` (data/shapes.py: ten classes of figures in clutter, a proxy task
that small models do not saturate).

Images are held as uint8 arrays at the model's input size (images of other
sizes are resized); models read float32 in [0, 1]. The train/validation split
is stratified and fixed by a seed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from odml.errors import DataError

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
EMBEDDED = ("digits", "shapes")  # and shapes:N


@dataclass
class ImageDataset:
    x_train: np.ndarray  # uint8 (N, H, W, C)
    y_train: np.ndarray  # int64 (N,)
    x_val: np.ndarray
    y_val: np.ndarray
    class_names: list[str]
    source: str
    notes: list[str] = field(default_factory=list)  # what the reader did (resized images, ...)
    split: str = ""  # which images validate: a stratified fraction, the file's own x_val, another source, all
    _pipeline: Any = field(default=None, init=False, repr=False, compare=False)  # ((batch, seed), tf.data)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    def summary(self) -> dict:
        return {
            "source": self.source,
            "classes": self.num_classes,
            "train": int(len(self.y_train)),
            "val": int(len(self.y_val)),
            "image_shape": list(self.image_shape),
            "split": self.split,
            "notes": self.notes,
        }

    def count(self, split: str) -> int:
        return len(self.y_train if split == "train" else self.y_val)

    def sample(self, split: str, n: int | None = None, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(images, labels) of ``n`` images of ``split``: the first ones, or ``n``
        chosen by ``seed`` (uint8: a model's input spec maps them)."""
        x, y = (self.x_train, self.y_train) if split == "train" else (self.x_val, self.y_val)
        if n is None or n >= len(y):
            return x, y
        idx = sample_indices(len(y), n, seed)
        return x[idx], y[idx]

    def batches(self, split: str, batch: int, epoch: int = 0, seed: int = 0, shuffle: bool = False,
                distortion: float = 0.0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        x, y = (self.x_train, self.y_train) if split == "train" else (self.x_val, self.y_val)
        order = epoch_order(len(y), epoch, seed, shuffle)
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            yield x[idx], y[idx]

    def epoch_dataset(self, epoch: int, batch: int, seed: int, distortion: float = 0.0) -> Any:
        """The training pipeline (the same object every epoch: it reshuffles
        each pass), images as float [0, 1]."""
        if self._pipeline is None or self._pipeline[0] != (batch, seed):
            self._pipeline = ((batch, seed), tf_dataset(self.x_train, self.y_train, batch, True, seed))
        return self._pipeline[1]

    def everything(self) -> tuple[np.ndarray, np.ndarray]:
        """Every image of the source, training and validation together."""
        return np.concatenate([self.x_train, self.x_val]), np.concatenate([self.y_train, self.y_val])


def sample_indices(total: int, n: int | None, seed: int | None) -> np.ndarray:
    """Which ``n`` of ``total`` items a sample takes (in order): all, the
    first ``n``, or ``n`` drawn by ``seed``."""
    if n is None or n >= total:
        return np.arange(total)
    return np.arange(n) if seed is None else np.sort(np.random.default_rng(seed).permutation(total)[:n])


def epoch_order(total: int, epoch: int, seed: int, shuffle: bool) -> np.ndarray:
    """The order of ``total`` items in ``epoch``: as they are, or shuffled
    (the same for a seed and epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(total) if shuffle else np.arange(total)


def tf_dataset(x: np.ndarray, y: np.ndarray, batch: int, shuffle: bool, seed: int, num_classes: int | None = None):
    """A tf.data pipeline over uint8 arrays that yields float [0, 1] images
    (and one-hot labels when ``num_classes`` is given); arrays that are model
    inputs already pass as they are."""
    from odml._tf import tf

    T = tf()
    ds = T.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(min(len(x), 10_000), seed=seed, reshuffle_each_iteration=True)

    def prep(img, label):
        if img.dtype == T.uint8:  # images; text features and token ids are model inputs already
            img = T.cast(img, T.float32) / 255.0
        if num_classes:
            label = T.one_hot(label, num_classes)
        return img, label

    return ds.batch(batch).map(prep, num_parallel_calls=T.data.AUTOTUNE).prefetch(T.data.AUTOTUNE)


def to_float(x: np.ndarray) -> np.ndarray:
    """uint8 images -> the float32 [0, 1] inputs the models read; arrays that
    are already model inputs (text features, token ids) pass through."""
    if x.dtype != np.uint8:
        return x
    return x.astype(np.float32) / 255.0


def stratified_split(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): ``val_fraction`` of every class, chosen by ``seed``."""
    if not 0 < val_fraction < 1:
        raise DataError(f"validation fraction must be in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        n_val = int(round(len(idx) * val_fraction))
        if len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        val.extend(idx[:n_val])
        train.extend(idx[n_val:])
    return rng.permutation(np.array(train, dtype=np.int64)), np.sort(np.array(val, dtype=np.int64))


def _resize_all(images: list[np.ndarray] | np.ndarray, size: tuple[int, int], channels: int) -> np.ndarray:
    from PIL import Image

    h, w = size
    out = np.empty((len(images), h, w, channels), dtype=np.uint8)
    for i, img in enumerate(images):
        arr = np.asarray(img)
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        pil = Image.fromarray(arr)
        pil = pil.convert("L" if channels == 1 else "RGB")
        if pil.size != (w, h):
            pil = pil.resize((w, h), Image.BILINEAR)
        a = np.asarray(pil)
        out[i] = a[..., None] if channels == 1 else a
    return out


def _check_labels(y: np.ndarray, where: str) -> None:
    classes = np.unique(y)
    if len(classes) < 2:
        raise DataError(f"{where}: only one class ({classes[0] if len(classes) else 'none'}); a classifier needs at least two")


def load_digits(size: tuple[int, int], channels: int = 3, val_fraction: float = 0.2, seed: int = 0) -> ImageDataset:
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    imgs = (d.images / 16.0 * 255.0).round().astype(np.uint8)  # 8x8, 0..16 -> 0..255
    x = _resize_all(imgs, size, channels)
    y = d.target.astype(np.int64)
    tr, va = stratified_split(y, val_fraction, seed)
    return ImageDataset(x[tr], y[tr], x[va], y[va], [str(i) for i in range(10)], "digits",
                        [f"scikit-learn digits: 1797 8x8 images upscaled to {size[0]}x{size[1]}"])


def load_shapes(source: str, size: tuple[int, int], channels: int = 3, val_fraction: float = 0.2,
                seed: int = 0) -> ImageDataset:
    """``shapes`` or ``shapes:N``: the generated figures-in-clutter set
    (data/shapes.py), drawn at the model's input size."""
    from odml.data.shapes import CLASSES, DEFAULT_COUNT, generate

    n = DEFAULT_COUNT
    if source != "shapes":
        text = source.split(":", 1)[1]
        if not text.isdigit() or not 100 <= int(text) <= 500_000:
            raise DataError(f"--data {source}: shapes:N takes a number of images from 100 to 500000")
        n = int(text)
    h, w = size
    x, y = generate(n, max(h, w))
    if h != w:
        x = _resize_all(x, size, 3)
    if channels == 1:
        x = np.round(x.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)[..., None]
    tr, va = stratified_split(y, val_fraction, seed)
    return ImageDataset(x[tr], y[tr], x[va], y[va], list(CLASSES), source,
                        [f"generated: {n} figures in clutter, {len(CLASSES)} classes, at {h}x{w}"])


def load_npz(path: Path, size: tuple[int, int], channels: int = 3, val_fraction: float = 0.2, seed: int = 0) -> ImageDataset:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile / pickle / value errors all mean "not a usable npz"
        raise DataError(f"{path}: cannot read .npz: {type(e).__name__}: {e}") from None
    for key in ("x", "y"):
        if key not in arrays:
            raise DataError(f"{path}: missing array {key!r} (found {', '.join(arrays) or 'none'})")

    def prep(x: np.ndarray, y: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
        if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3, 4)):
            raise DataError(f"{path}: {what} must have shape (N, H, W) or (N, H, W, C) with C in 1, 3, 4; got {x.shape}")
        y = np.asarray(y).reshape(-1)
        if len(x) != len(y):
            raise DataError(f"{path}: {what} holds {len(x)} images but {len(y)} labels")
        if len(x) == 0:
            raise DataError(f"{path}: {what} is empty")
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{path}: labels must be integers, got {y.dtype}")
        if x.dtype != np.uint8:
            xf = x.astype(np.float32)
            if np.nanmin(xf) < 0 or np.nanmax(xf) > 1 or np.isnan(xf).any():
                raise DataError(f"{path}: float images must lie in [0, 1] (or be uint8 0..255)")
            x = (xf * 255.0).round().astype(np.uint8)
        if x.ndim == 4 and x.shape[-1] == 4:
            x = x[..., :3]
        return _resize_all(x, size, channels), y.astype(np.int64)

    x, y = prep(arrays["x"], arrays["y"], "x")
    if y.min() < 0:
        raise DataError(f"{path}: labels must be >= 0, found {y.min()}")
    split = ""
    if "x_val" in arrays and "y_val" in arrays:
        xv, yv = prep(arrays["x_val"], arrays["y_val"], "x_val")
        xt, yt = x, y
        split = f"train: x, y of {path}; validation: its x_val, y_val"
    else:
        _check_labels(y, str(path))
        tr, va = stratified_split(y, val_fraction, seed)
        xt, yt, xv, yv = x[tr], y[tr], x[va], y[va]
    n_classes = int(max(yt.max(), yv.max())) + 1
    _check_labels(yt, str(path))
    if "class_names" in arrays:
        names = [str(s) for s in arrays["class_names"].tolist()]
        if len(names) < n_classes:
            raise DataError(f"{path}: {len(names)} class_names for labels up to {n_classes - 1}")
    else:
        names = [str(i) for i in range(n_classes)]
    return ImageDataset(xt, yt, xv, yv, names, str(path), [], split)


def list_image_folder(path: Path) -> tuple[list[Path], np.ndarray, list[str]]:
    """Files and labels of a folder of class subfolders (classes in sorted order)."""
    if not path.is_dir():
        raise DataError(f"{path}: data folder not found")
    class_dirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{path}: no class subfolders (expected {path}/CLASS_NAME/IMAGE.jpg)")
    files, labels, names = [], [], []
    for d in class_dirs:
        found = sorted(
            Path(root) / f
            for root, _, fs in os.walk(d, followlinks=True)
            for f in fs
            if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")
        )
        if not found:
            continue
        names.append(d.name)
        files.extend(found)
        labels.extend([len(names) - 1] * len(found))
    if not files:
        raise DataError(f"{path}: no images ({', '.join(IMAGE_EXTENSIONS)}) in any class subfolder")
    if len(names) < 2:
        raise DataError(f"{path}: only one class ({names[0]}) has images; a classifier needs at least two")
    return files, np.array(labels, dtype=np.int64), names


def read_image(f: Path, size: tuple[int, int], channels: int = 3) -> tuple[np.ndarray, tuple[int, int]]:
    """The image file ``f`` resized to ``size`` (uint8 HxWxC) and its own
    (width, height); one line naming the file when it cannot be decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(f) as img:
            return _resize_all([np.asarray(img.convert("RGB"))], size, channels)[0], img.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"{f}: cannot decode image: {' '.join(str(e).split())[:200]}") from None


def load_folder(path: Path, size: tuple[int, int], channels: int = 3, val_fraction: float = 0.2, seed: int = 0,
                progress: Callable[[int, int], None] | None = None) -> ImageDataset:
    files, y, names = list_image_folder(path)
    h, w = size
    x = np.empty((len(files), h, w, channels), dtype=np.uint8)
    sizes = set()
    for i, f in enumerate(files):
        x[i], own = read_image(f, size, channels)
        sizes.add(own)
        if progress:
            progress(i + 1, len(files))
    notes = []
    if len(sizes) > 1 or sizes != {(w, h)}:
        notes.append(f"{len(sizes)} image size(s) found; all resized to {h}x{w}")
    tr, va = stratified_split(y, val_fraction, seed)
    return ImageDataset(x[tr], y[tr], x[va], y[va], names, str(path), notes)


def load_images(source: str, size: tuple[int, int], channels: int = 3, val_fraction: float = 0.2, seed: int = 0,
                progress: Callable[[int, int], None] | None = None, val_data: str | None = None,
                split: str = "val") -> ImageDataset:
    """Read an image-classification dataset from ``source``: ``digits``, a
    folder of class subfolders or an ``.npz``; images come at ``size``.
    Validation: a stratified ``val_fraction`` of ``source`` (fixed by
    ``seed``; an .npz's own x_val / y_val when it has them), or every image of
    ``val_data`` (then ``source`` trains whole; the classes must be the same),
    or with ``split="all"`` every image of ``source`` (scoring a model on all
    of it)."""
    if val_data is not None:
        train = _load(source, size, channels, val_fraction, seed, progress)
        val = _load(val_data, size, channels, val_fraction, seed, progress)
        if list(val.class_names) != list(train.class_names):
            raise DataError(f"{val_data}: classes {val.class_names} differ from {source}'s {train.class_names} (the "
                            "validation data must have the same classes, in the same order)")
        (xt, yt), (xv, yv) = train.everything(), val.everything()
        return ImageDataset(xt, yt, xv, yv, train.class_names, train.source, train.notes + val.notes,
                            f"train: all of {source}; validation: all of {val_data}")
    ds = _load(source, size, channels, val_fraction, seed, progress)
    if split == "all":
        x, y = ds.everything()
        return ImageDataset(x, y, x, y, ds.class_names, ds.source, ds.notes, f"all of {source} ({len(y)} images)")
    if split != "val":
        raise DataError(f"--split {split!r}: expected val or all")
    return ds


def _load(source: str, size: tuple[int, int], channels: int, val_fraction: float, seed: int,
          progress: Callable[[int, int], None] | None) -> ImageDataset:
    ds = _read(source, size, channels, val_fraction, seed, progress)
    if not ds.split:
        ds.split = f"stratified {1 - val_fraction:.0%}/{val_fraction:.0%} of {source} (seed {seed})"
    return ds


def _read(source: str, size: tuple[int, int], channels: int, val_fraction: float, seed: int,
          progress: Callable[[int, int], None] | None) -> ImageDataset:
    if source == "digits":
        return load_digits(size, channels, val_fraction, seed)
    if source == "shapes" or source.startswith("shapes:"):
        return load_shapes(source, size, channels, val_fraction, seed)
    p = Path(source)
    if p.suffix.lower() == ".npz":
        if not p.is_file():
            raise DataError(f"{p}: .npz file not found")
        return load_npz(p, size, channels, val_fraction, seed)
    if p.is_file():
        raise DataError(f"{p}: not an image dataset (expected a folder of class subfolders, an .npz, 'digits' or 'shapes')")
    return load_folder(p, size, channels, val_fraction, seed, progress)
