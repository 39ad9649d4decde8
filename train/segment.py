"""Train a semantic segmentation model (a :class:`~odml.zoo.segspec.SegSpec`)
on a :class:`~odml.data.segmentation.SegDataset`: per-pixel cross-entropy
with the logits resized bilinearly to the mask (the models' logits are at
stride 8 or 16, as the Model Garden trains them), ignored pixels left out;
AdamW with warm-up and cosine decay; batch-norm statistics re-estimated
after training; mIoU and pixel accuracy on the validation split."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from odml import interrupts
from odml.data.images import to_float
from odml.data.segmentation import SegDataset, confusion, seg_scores
from odml.errors import DataError
from odml.train.trainer import (TrainConfig, _keras_callback, check_output_path, interrupt_callback, make_optimizer,
                                recalibrate_batchnorm, save_model_atomic)


def seg_loss(ignore_label: int):
    from odml._tf import tf

    T = tf()

    def loss(y_true, logits):
        y = T.cast(y_true, T.int32)  # (batch, height, width)
        up = T.image.resize(logits, T.shape(y)[1:3], method="bilinear")
        valid = T.not_equal(y, ignore_label)
        ce = T.nn.sparse_softmax_cross_entropy_with_logits(labels=T.where(valid, y, 0), logits=up)
        w = T.cast(valid, ce.dtype)
        return T.reduce_sum(ce * w) / T.maximum(T.reduce_sum(w), 1.0)

    return loss


def predict_maps(model: Any, x: np.ndarray, size: tuple[int, int], batch: int = 32,
                 y: np.ndarray | None = None, ignore_label: int = 255) -> tuple[np.ndarray, float | None]:
    """Label maps (uint8) at ``size``: the logits resized bilinearly, then
    argmax; with masks ``y``, also the mean per-pixel cross-entropy (ignored
    pixels left out)."""
    from odml._tf import tf

    T = tf()
    out, ce_sum, n = [], 0.0, 0
    for i in range(0, len(x), batch):
        up = T.image.resize(model(to_float(x[i:i + batch]), training=False), size, method="bilinear")
        out.append(T.argmax(up, -1).numpy().astype(np.uint8))
        if y is not None:
            yb = T.constant(y[i:i + batch].astype(np.int32))
            valid = T.not_equal(yb, ignore_label)
            ce = T.nn.sparse_softmax_cross_entropy_with_logits(labels=T.where(valid, yb, 0), logits=up)
            ce_sum += float(T.reduce_sum(ce * T.cast(valid, ce.dtype)))
            n += int(T.reduce_sum(T.cast(valid, T.int32)))
    maps = np.concatenate(out) if out else np.zeros((0, *size), np.uint8)
    return maps, (ce_sum / n if n else None)


def prior_loss(data: SegDataset) -> float:
    """The cross-entropy on the validation masks of the best constant
    prediction: the training masks' class frequencies everywhere (what a
    model that learned nothing from the image can reach)."""
    counts = np.bincount(data.y_train[data.y_train != data.ignore_label].ravel(), minlength=data.num_classes)
    p = (counts + 1) / (counts.sum() + data.num_classes)
    yv = data.y_val[data.y_val != data.ignore_label].ravel()
    return float(-np.log(p[yv]).mean())


def evaluate_seg(model: Any, data: SegDataset) -> dict[str, Any]:
    pred, loss = predict_maps(model, data.x_val, data.y_val.shape[1:3], y=data.y_val, ignore_label=data.ignore_label)
    return {**seg_scores(confusion(pred, data.y_val, data.num_classes, data.ignore_label)), "loss": loss,
            "prior_loss": prior_loss(data)}


def check_fits(spec: Any, data: SegDataset) -> None:
    if spec.num_classes != data.num_classes:
        raise DataError(f"{data.source}: {data.num_classes} classes in the data but the model has "
                        f"{spec.num_classes} outputs")
    if data.image_shape != tuple(spec.input_shape):
        raise DataError(f"{data.source}: images are {data.image_shape}, the model takes {tuple(spec.input_shape)}")


def train_segmentation(spec: Any, data: SegDataset, cfg: TrainConfig, out: Path | None = None,
                       progress: Any = None, should_stop: Callable[[int, dict], bool] | None = None) -> dict[str, Any]:
    from odml._tf import keras
    from odml.zoo.builder import trainable_params
    from odml.zoo.segbuild import build_segmentation

    K = keras()
    check_fits(spec, data)
    if out is not None:
        out = check_output_path(out)
    K.utils.set_random_seed(cfg.seed)
    model = build_segmentation(spec)
    steps = int(np.ceil(len(data.y_train) / cfg.batch_size))
    model.compile(optimizer=make_optimizer(cfg.learning_rate, cfg.weight_decay, cfg.epochs, steps),
                  loss=seg_loss(data.ignore_label))
    callbacks = [interrupt_callback(K)]
    if cfg.logdir:
        callbacks.append(K.callbacks.TensorBoard(log_dir=cfg.logdir, histogram_freq=0, write_graph=False,
                                                 update_freq="epoch", profile_batch=0))
    if progress:
        callbacks.append(_keras_callback(K, progress))
        progress.start(cfg.epochs, steps)
    if should_stop:
        from odml.train.trainer import _stop_callback

        callbacks.append(_stop_callback(K, should_stop))
    t0 = time.perf_counter()
    try:
        hist = model.fit(data.epoch_dataset(0, cfg.batch_size, cfg.seed), epochs=cfg.epochs, callbacks=callbacks,
                         verbose=0)
        interrupts.check()
    finally:
        if progress:
            progress.stop()
    if cfg.precise_bn:
        recalibrate_batchnorm(model, data.x_train, batch_size=min(cfg.batch_size * 2, 64), seed=cfg.seed)
    wall = time.perf_counter() - t0
    scores = evaluate_seg(model, data)
    if out is not None:
        from odml.zoo.card import ModelCard
        from odml.zoo.registry import family_for

        save_model_atomic(model, out, ModelCard(family_for(spec), spec, out.stem, list(data.class_names)))
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    return {"model": spec.name, "line": spec.to_line(), "input_shape": list(spec.input_shape),
            "classes": spec.num_classes, "params": trainable_params(model), "macs": spec.macs,
            "epochs": cfg.epochs, "epochs_run": len(hist.epoch), "train_samples": int(len(data.y_train)),
            "val_samples": int(len(data.y_val)), "val_miou": scores["miou"],
            "val_pixel_accuracy": scores["pixel_accuracy"], "val_iou": scores["iou"], "val_loss": scores["loss"],
            "val_prior_loss": scores["prior_loss"],
            "train_loss": history.get("loss", [float("nan")])[-1], "train_wall_s": round(wall, 2),
            "out": str(out) if out else None, "logdir": cfg.logdir, "history": history}


def train_entry(c: Any, req: Any, out: Path, progress: Any, log: Callable[[str], None]) -> dict[str, Any]:
    """`odml train` for a segmentation model: the data at the model's input
    size, classes from the data; the result has the summary rows."""
    from odml.train.trainer import _macs, prepare_entry

    out, ds, spec, cfg = prepare_entry(c, req, out, "shapes-seg")
    for note in ds.notes:
        log(f"data: {note}")
    res = train_segmentation(spec, ds, cfg, out, progress)
    res["data"] = ds.summary()
    present = [v for v in res["val_iou"] if v is not None]
    res["summary"] = [
        ("val mIoU", f"{res['val_miou']:.4f}"), ("val pixel accuracy", f"{res['val_pixel_accuracy']:.4f}"),
        ("classes present", f"{len(present)} of {res['classes']}"),
        ("val loss", "-" if res["val_loss"] is None else
         f"{res['val_loss']:.4f} (class frequencies alone: {res['val_prior_loss']:.4f})"),
        ("train loss", f"{res['train_loss']:.4f}"),
        ("parameters", f"{res['params']:,}"), ("MACs", _macs(res["macs"])),
        ("input", "x".join(map(str, res["input_shape"]))),
        ("train / val images", f"{res['train_samples']} / {res['val_samples']}"), ("epochs", str(res["epochs"])),
        ("train wall time", f"{res['train_wall_s']:.1f} s"), ("model", str(res["out"])),
        ("TensorBoard logs", str(res["logdir"] or "-"))]
    res["title"] = f"trained {spec.name} on {ds.source}"
    return res
