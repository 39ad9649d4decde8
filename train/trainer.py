"""Train a classifier built from a spec on an :class:`ImageDataset`, with
TensorBoard logs, and save it atomically (a temporary name, then a rename)."""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from odml import interrupts
from odml.data.images import ImageDataset, to_float
from odml.data.images import tf_dataset as make_tf_dataset
from odml.errors import DataError, OutputError
from odml.zoo.spec import ModelSpec

MODEL_SUFFIXES = (".keras", ".h5")


class Progress(Protocol):
    def start(self, epochs: int, steps_per_epoch: int) -> None: ...
    def batch(self, epoch: int, step: int, logs: dict) -> None: ...
    def epoch(self, epoch: int, logs: dict) -> None: ...
    def stop(self) -> None: ...


@dataclass
class TrainConfig:
    epochs: int = 5
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-5
    label_smoothing: float = 0.0
    precise_bn: bool = True  # re-estimate BN statistics after training
    seed: int = 0
    logdir: str | None = None  # TensorBoard; None: no logs
    distribute: str = "none"  # none | mirrored | multiworker (odml.train.distribute)


def check_output_path(out: str | Path, suffixes: tuple[str, ...] = MODEL_SUFFIXES) -> Path:
    """Refuse an output path before any work is done: a missing folder, a
    folder in place of a file, or an unknown suffix."""
    p = Path(out)
    if p.suffix.lower() not in suffixes:
        raise OutputError(f"{p}: output must end in {' or '.join(suffixes)}")
    if not p.parent.is_dir():
        raise OutputError(f"{p}: output folder {p.parent} does not exist")
    if p.is_dir():
        raise OutputError(f"{p}: is a folder, expected a file path")
    if not os.access(p.parent, os.W_OK):
        raise OutputError(f"{p}: output folder {p.parent} is not writable")
    return p


def save_model_atomic(model: Any, out: Path, card: Any = None) -> None:
    """Save ``model`` through a temporary name and a rename; with ``card``,
    its model card beside it (what every model odml saves has)."""
    if card is not None:
        from odml.zoo.load import save_model

        save_model(model, out, card)
        return
    from odml.files import atomic_output

    with atomic_output(out) as tmp:
        model.save(tmp)


def check_data_fits(spec: ModelSpec, data: ImageDataset) -> None:
    if spec.num_classes != data.num_classes:
        raise DataError(
            f"{data.source}: {data.num_classes} classes in the data but the model has {spec.num_classes} outputs"
        )
    if data.image_shape != tuple(spec.input_shape):
        raise DataError(f"{data.source}: images are {data.image_shape}, the model takes {tuple(spec.input_shape)}")
    bad = int(max(data.y_train.max(), data.y_val.max()))
    if bad >= spec.num_classes:
        raise DataError(f"{data.source}: label {bad} out of range for {spec.num_classes} classes")


def _keras_callback(K, progress: Progress, on_epoch: Callable[[Any], dict] | None = None):
    """Progress after every batch and epoch; ``on_epoch(model)`` adds figures
    to the epoch's logs (the validation accuracy the final table will show)."""
    class _CB(K.callbacks.Callback):
        epoch_idx = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_idx = epoch

        def on_train_batch_end(self, batch, logs=None):
            progress.batch(self.epoch_idx, batch + 1, dict(logs or {}))

        def on_epoch_end(self, epoch, logs=None):
            logs = dict(logs or {})
            if on_epoch is not None:
                logs.update(on_epoch(self.model))
            progress.epoch(epoch, logs)

    return _CB()


def precise_val(data: ImageDataset, batches: int = 8, seed: int = 0) -> Callable[[Any], dict]:
    """The validation accuracy after a short precise-BN pass (what the results
    table reports after the full one), with the model's batch-norm statistics
    put back afterwards, so that training goes on unchanged. The validation
    accuracy Keras computes during training uses the moving averages, which
    lag far behind in short runs (near chance on digits after 12 epochs)."""
    def measure(model: Any) -> dict:
        from odml._tf import keras

        K = keras()
        bns = [m for m in model.submodules if isinstance(m, K.layers.BatchNormalization)]
        saved = [(b.moving_mean.numpy(), b.moving_variance.numpy()) for b in bns]
        try:
            recalibrate_batchnorm(model, data.x_train, max_batches=batches, seed=seed)
            return {"val_accuracy_bn": evaluate(model, data.x_val, data.y_val)["accuracy"]}
        finally:
            for b, (m, v) in zip(bns, saved):
                b.moving_mean.assign(m)
                b.moving_variance.assign(v)

    return measure


def interrupt_callback(K):
    """Raise a Ctrl-C that Keras or TensorFlow swallowed, after the batch it
    came in (see odml.interrupts)."""
    from odml import interrupts

    class _Interrupt(K.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            interrupts.check()

        def on_epoch_end(self, epoch, logs=None):
            interrupts.check()

    return _Interrupt()


def _stop_callback(K, should_stop: Callable[[int, dict], bool]):
    class _Stop(K.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if should_stop(epoch, dict(logs or {})):
                self.model.stop_training = True

    return _Stop()


def make_optimizer(learning_rate: float, weight_decay: float, epochs: int, steps_per_epoch: int):
    """AdamW with a linear warm-up (a tenth of training, at most 5 epochs)
    then cosine decay to 1% of the peak rate."""
    from odml._tf import keras

    K = keras()
    total = max(1, epochs * steps_per_epoch)
    warmup = min(total // 10, 5 * steps_per_epoch)
    schedule = K.optimizers.schedules.CosineDecay(
        initial_learning_rate=learning_rate if not warmup else 0.0,
        decay_steps=max(1, total - warmup),
        warmup_target=learning_rate if warmup else None,
        warmup_steps=warmup,
        alpha=0.01,
    )
    return K.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay)


def compile_classifier(model: Any, cfg: TrainConfig, steps_per_epoch: int) -> None:
    from odml._tf import keras

    K = keras()
    opt = make_optimizer(cfg.learning_rate, cfg.weight_decay, cfg.epochs, steps_per_epoch)
    if cfg.label_smoothing:
        loss = K.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=cfg.label_smoothing)
    else:
        loss = K.losses.SparseCategoricalCrossentropy(from_logits=True)
    metric = "accuracy" if not cfg.label_smoothing else K.metrics.CategoricalAccuracy(name="accuracy")
    model.compile(optimizer=opt, loss=loss, metrics=[metric])


def bn_batches(x: np.ndarray, samples: int = 5120) -> dict[str, int]:
    """``recalibrate_batchnorm``'s batches for ``x``: small inputs in larger
    batches (up to 512; each batch is one eager pass, whose cost is mostly
    per layer, not per example), up to ``samples`` examples in all."""
    per = int(np.prod(x.shape[1:])) if len(x) else 1
    batch = int(max(128, min(512, (1 << 21) // max(1, per))))
    return {"batch_size": batch, "max_batches": max(1, -(-samples // batch))}


def recalibrate_batchnorm(model: Any, x: np.ndarray, batch_size: int = 128, max_batches: int = 40,
                          seed: int = 0) -> int:
    """Precise BN: re-estimate every BatchNormalization layer's moving mean and
    variance as the plain average of batch statistics over up to
    ``max_batches`` training batches. With few training steps the moving
    averages (momentum 0.99) are still far from the data's statistics, and
    validation accuracy collapses although training accuracy is high.
    Returns the number of batches used."""
    from odml._tf import keras

    K = keras()
    bns = [m for m in model.submodules if isinstance(m, K.layers.BatchNormalization)]
    if not bns or len(x) == 0:
        return 0
    idx = np.random.default_rng(seed).permutation(len(x))[: batch_size * max_batches]
    saved = [b.momentum for b in bns]
    n = 0
    try:
        for i, start in enumerate(range(0, len(idx), batch_size)):
            batch = idx[start:start + batch_size]
            if len(batch) < 2:
                break
            for b in bns:
                b.momentum = i / (i + 1)  # moving = running mean of the batch statistics
            model(to_float(x[np.sort(batch)]), training=True)
            n += 1
    finally:
        for b, m in zip(bns, saved):
            b.momentum = m
    return n


def evaluate(model: Any, x: np.ndarray, y: np.ndarray, batch: int = 256) -> dict[str, float]:
    logits = model.predict(to_float(x), batch_size=batch, verbose=0).astype(np.float64)
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return {
        "accuracy": float((logits.argmax(-1) == y).mean()),
        "loss": float(-logp[np.arange(len(y)), y].mean()),
        "n": int(len(y)),
    }


def train_classifier(spec: ModelSpec, data: ImageDataset, cfg: TrainConfig, out: Path | None = None,
                     progress: Progress | None = None,
                     should_stop: Callable[[int, dict], bool] | None = None) -> dict[str, Any]:
    """Build ``spec``, train it on ``data`` and save it to ``out``. Returns the
    results: accuracy, loss, parameters, MACs, wall time, history.
    ``should_stop(epoch, logs)``, called after every epoch, ends training
    early when it returns True (the search's median stopping rule)."""
    from odml._tf import keras
    from odml.zoo.builder import build_model, trainable_params

    from odml.train import distribute

    cluster = distribute.check(cfg.distribute)
    K = keras()
    check_data_fits(spec, data)
    if not cluster.chief:  # another worker of a multi-worker run writes nothing: no model, no logs
        out = None
        cfg = dataclasses.replace(cfg, logdir=None)
    if out is not None:
        out = check_output_path(out)
    at = {"epoch": 0}

    def where() -> str:
        return f"epoch {at['epoch']} of {cfg.epochs}" if at["epoch"] else "the set-up before the first epoch"

    with distribute.guarded(cluster, where):
        distribute.strategy(cluster)  # before any other TensorFlow op (MultiWorkerMirroredStrategy must be first)
        K.utils.set_random_seed(cfg.seed)
        steps = int(np.ceil(len(data.y_train) / cfg.batch_size))
        with distribute.scope(cluster):
            model = build_model(spec)
            compile_classifier(model, cfg, steps)
    onehot = spec.num_classes if cfg.label_smoothing else None
    train_ds = make_tf_dataset(data.x_train, data.y_train, cfg.batch_size, True, cfg.seed, onehot)
    val_ds = make_tf_dataset(data.x_val, data.y_val, 256, False, cfg.seed, onehot)
    callbacks = [interrupt_callback(K)]
    if cfg.logdir:
        callbacks.append(K.callbacks.TensorBoard(log_dir=cfg.logdir, histogram_freq=0, write_graph=False,
                                                 update_freq="epoch", profile_batch=0))
    if progress:
        callbacks.append(_keras_callback(K, progress, precise_val(data, seed=cfg.seed) if cfg.precise_bn else None))
        progress.start(cfg.epochs, steps)
    if should_stop:
        callbacks.append(_stop_callback(K, should_stop))
    callbacks.append(K.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs=None: at.update(epoch=e + 1)))
    t0 = time.perf_counter()
    try:
        with distribute.guarded(cluster, where):
            hist = model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, callbacks=callbacks, verbose=0)
        interrupts.check()
    finally:
        if progress:
            progress.stop()
    if cluster.kind != "none":  # the trained weights in a model of this process alone: what follows needs no peer
        local = build_model(spec)
        local.set_weights(model.get_weights())
        compile_classifier(local, cfg, steps)
        model = local
    if cfg.precise_bn:
        recalibrate_batchnorm(model, data.x_train, seed=cfg.seed)
    wall = time.perf_counter() - t0
    final = evaluate(model, data.x_val, data.y_val)
    if out is not None:
        from odml.zoo.card import ModelCard
        from odml.zoo.registry import family_for

        save_model_atomic(model, out, ModelCard(family_for(spec), spec, out.stem, list(data.class_names)))
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    return {
        "model": spec.name,
        "line": spec.to_line(),
        "input_shape": list(spec.input_shape),
        "classes": spec.num_classes,
        "params": trainable_params(model),
        "macs": spec.macs,
        "epochs": cfg.epochs,
        "epochs_run": len(hist.epoch),
        "train_samples": int(len(data.y_train)),
        "val_samples": int(len(data.y_val)),
        "train_accuracy": history.get("accuracy", [float("nan")])[-1],
        "val_accuracy": final["accuracy"],
        "val_loss": final["loss"],
        "train_wall_s": round(wall, 2),
        "out": str(out) if out else None,
        "logdir": cfg.logdir,
        "history": history,
        "distribute": {"kind": cluster.kind, "replicas": distribute.replicas(cluster), "workers": len(cluster.workers) or 1,
                       "worker": cluster.index},
    }


def prepare_entry(c: Any, req: Any, out: Path, default_data: str) -> tuple[Path, Any, Any, TrainConfig]:
    """What an image loop of `odml train` starts from: the output path
    checked, the data read at the model's input size, the configuration
    with the data's classes, the settings (TensorBoard logs beside the
    model unless told otherwise)."""
    from odml.train.distribute import check
    from odml.zoo.card import ModelCard

    if check(req.distribute).chief:  # (another worker of a multi-worker run writes nothing, needs no folder)
        out = check_output_path(out)
    fam = c.family
    ds = fam.read(ModelCard(fam, c.config, c.name), req.data or default_data, req.val_split, req.seed,
                  val_data=req.val_data)
    spec = fam.validate(fam.with_classes(c.config, ds.num_classes), c.name)
    logdir = req.logdir
    if logdir is None and req.tensorboard:
        logdir = str(out.with_name(out.stem + ".logs"))
    cfg = TrainConfig(epochs=req.epochs, batch_size=req.batch(fam), learning_rate=req.lr(fam), seed=req.seed,
                      logdir=str(logdir) if req.tensorboard and logdir else None, distribute=req.distribute)
    return out, ds, spec, cfg


def train_entry(c: Any, req: Any, out: Path, progress: Any, log: Callable[[str], None]) -> dict[str, Any]:
    """`odml train` for an image classifier of the spec language: the data at
    the model's input size, classes from the data, TensorBoard logs beside
    the model; the result has the summary rows of the table."""
    out, ds, spec, cfg = prepare_entry(c, req, out, "digits")
    log(f"data: {ds.split}")
    for note in ds.notes:
        log(f"data: {note}")
    res = train_classifier(spec, ds, cfg, out, progress)
    res["data"] = ds.summary()
    res["summary"] = [
        ("val accuracy", f"{res['val_accuracy']:.4f}"), ("train accuracy", f"{res['train_accuracy']:.4f}"),
        ("val loss", f"{res['val_loss']:.4f}"), ("parameters", f"{res['params']:,}"), ("MACs", _macs(res["macs"])),
        ("input", "x".join(map(str, res["input_shape"]))), ("classes", str(res["classes"])),
        ("train / val images", f"{res['train_samples']} / {res['val_samples']}"), ("epochs", str(res["epochs"])),
        ("train wall time", f"{res['train_wall_s']:.1f} s"), ("model", str(res["out"])),
        ("TensorBoard logs", str(res["logdir"] or "-"))]
    res["title"] = f"trained {spec.name} on {ds.source}"
    return res


def _macs(n: int) -> str:
    return f"{n / 1e9:.2f}G" if n >= 1e9 else f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"
