"""Training a text classifier (any text family: pQRNN, MobileBERT) on labelled
texts: featurized by the family (a pQRNN projection distorted afresh every
epoch, or WordPiece ids), AdamW with warm-up and cosine decay, accuracy and
ROC AUC on the validation split. The model is saved with its card (family,
configuration, labels, vocabulary)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from odml import interrupts
from odml.data.text import TextDataset


@dataclass
class TextTrainConfig:
    epochs: int = 5
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-5
    distortion: float = 0.25  # probability that a token is distorted in training (0: off)
    seed: int = 0
    patience: int | None = 3  # epochs without a better validation loss before stopping (None: all epochs)
    jit_compile: bool = False  # XLA for the training step (whole batches only); pQRNN's scan trains faster without


def train_text(name: str, cfg: Any, data: TextDataset, tc: TextTrainConfig, out: Path | None = None,
               vocab: list[str] | None = None, progress: Any = None) -> dict[str, Any]:
    """Train text model ``name`` of configuration ``cfg`` on ``data``; save it
    and its model card when ``out`` is given. The texts are featurized batch
    by batch while the model trains (nothing held but the texts), distorted
    afresh every epoch when the family distorts them (tc.distortion; the same
    for a seed and epoch); a family that needs a vocabulary (MobileBERT)
    needs ``vocab``. After every epoch the validation split is scored; the
    weights of the epoch with the lowest validation loss are kept, and
    training stops after ``tc.patience`` epochs without a better one."""
    from odml._tf import keras
    from odml.data.text import FeaturizedText
    from odml.train.trainer import _keras_callback, interrupt_callback, make_optimizer, save_model_atomic
    from odml.zoo.builder import trainable_params
    from odml.zoo.card import ModelCard
    from odml.zoo.registry import family_for

    K = keras()
    K.utils.set_random_seed(tc.seed)
    fam = family_for(cfg)
    cfg = fam.validate(fam.with_classes(cfg, data.num_classes), name)
    card = ModelCard(fam, cfg, out.stem if out is not None else name, list(data.classes), vocab)
    max_len = card.input.shape[0]
    fdata = FeaturizedText(data.texts_train, data.y_train, data.texts_val, data.y_val, list(data.classes),
                           data.source, list(data.notes), fam.featurizer(card), max_len, data.split)
    model = fam.build(cfg, name)
    n_train = len(data.texts_train)
    batch = min(tc.batch_size, n_train)
    jit = bool(tc.jit_compile)
    # XLA compiles one step per shape: whole batches only (the remainder, others every epoch, is left out)
    steps = n_train // batch if jit else int(np.ceil(n_train / batch))
    model.compile(optimizer=make_optimizer(tc.learning_rate, tc.weight_decay, tc.epochs, steps),
                  loss=K.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"],
                  jit_compile=jit)
    distortion = tc.distortion if fam.distorts_text else 0.0
    forward = inference_function(model)
    history: list[dict[str, Any]] = []
    best: tuple[float, int, list[np.ndarray]] | None = None
    t0, fit_s = time.perf_counter(), 0.0
    cbs = [interrupt_callback(K)]
    if progress is not None:
        cbs.append(_keras_callback(K, progress))
        progress.start(tc.epochs, steps)
    for epoch in range(tc.epochs):
        t_fit = time.perf_counter()
        h = model.fit(fdata.epoch_dataset(epoch, batch, tc.seed, distortion, full=jit), epochs=epoch + 1,
                      initial_epoch=epoch, steps_per_epoch=steps, verbose=0, callbacks=cbs)
        fit_s += time.perf_counter() - t_fit
        interrupts.check()
        logits = predict_split(forward, fdata, "val")
        val = fam.score(logits, data.y_val)
        val_loss = cross_entropy(logits, data.y_val)
        history.append({"epoch": epoch, "loss": float(h.history["loss"][-1]),
                        "accuracy": float(h.history["accuracy"][-1]), "val_loss": val_loss,
                        "val_accuracy": val["accuracy"], "val_auc": val.get("auc")})
        if best is None or val_loss < best[0]:
            best = (val_loss, epoch, model.get_weights())
        if stop_early([e["val_loss"] for e in history], tc.patience):
            break
    wall = time.perf_counter() - t0
    if progress is not None:
        progress.stop()
    assert best is not None
    if best[1] != history[-1]["epoch"]:
        model.set_weights(best[2])
    res = history[best[1]]
    if out is not None:
        save_model_atomic(model, out, card)
    epochs_run = len(history)
    return {"model": name, "family": fam.name, "config": fam.config_to_dict(cfg), "params": trainable_params(model),
            "val_accuracy": res["val_accuracy"], "val_auc": res["val_auc"], "val_loss": res["val_loss"],
            "best_epoch": best[1], "epochs_run": epochs_run, "train_samples": len(data.texts_train),
            "val_samples": len(data.texts_val), "classes": data.num_classes,
            "truncated": {"train": fdata.cut.get("train", 0), "val": fdata.cut.get("val", 0), "max_len": max_len},
            "train_wall_s": round(wall, 2), "fit_s": round(fit_s, 2), "xla": jit,
            "sentences_per_s": round(len(data.texts_train) * epochs_run / max(fit_s, 1e-9), 1),
            "history": history, "out": str(out) if out else None}


def stop_early(val_losses: list[float], patience: int | None) -> bool:
    """Whether training stops after these epochs: ``patience`` epochs have
    passed since the lowest validation loss (None: never stop early)."""
    if patience is None or not val_losses:
        return False
    return len(val_losses) - 1 - int(np.argmin(val_losses)) >= patience


def inference_function(model: Any) -> Any:
    """``model``'s forward pass in inference mode as a graph (no XLA: one
    quick trace per batch shape)."""
    from odml._tf import tf

    return tf().function(lambda x: model(x, training=False), reduce_retracing=True)


def predict_split(forward: Any, data: Any, split: str, batch: int = 512) -> np.ndarray:
    """``forward``'s outputs on every input of ``split``, featurized batch by batch."""
    return np.concatenate([np.asarray(forward(x)) for x, _ in data.batches(split, batch)])


def cross_entropy(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean softmax cross-entropy of ``logits`` against integer labels ``y``."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


def train_pqrnn(cfg: Any, data: TextDataset, tc: TextTrainConfig, out: Path | None = None) -> dict[str, Any]:
    return train_text("pqrnn", cfg, data, tc, out)


def train_entry(c: Any, req: Any, out: Path, progress: Any, log: Callable[[str], None]) -> dict[str, Any]:
    """`odml train` for a text family: labelled texts from --data, the
    sequence length from --max-len, the vocabulary (a family that needs one)
    from --vocab or trained on the texts (--vocab-size)."""
    from odml.data.text import load_text, require_text_file
    from odml.train.trainer import check_output_path

    out = check_output_path(out)
    fam, cfg = c.family, c.config
    data = req.data or "digits"
    require_text_file(data, c.name)
    if req.max_len is not None:
        cfg = fam.validate(fam.with_length(cfg, req.max_len), c.name)
    ds = load_text(data, req.label_col, req.text_col, None, req.val_split, req.seed, req.val_data)
    vocab = fam.vocabulary(ds.texts_train, req.vocab, req.vocab_size)
    if vocab is not None:
        cfg = fam.with_vocabulary(cfg, vocab)
    tc = TextTrainConfig(epochs=req.epochs, batch_size=req.batch(fam), learning_rate=req.lr(fam),
                         distortion=req.distortion, seed=req.seed, patience=req.patience or None)
    log(f"data: {ds.split}")
    for note in ds.notes:
        log(f"data: {note}")
    res = train_text(c.name, cfg, ds, tc, out, vocab, progress)
    res["data"] = ds.summary()
    t = res["truncated"]
    if t["train"] or t["val"]:
        log(f"data: {t['train']} training and {t['val']} validation texts longer than {t['max_len']} tokens were cut")
    res["summary"] = [
        ("val accuracy", f"{res['val_accuracy']:.4f}"), ("val ROC AUC", f"{res['val_auc']:.4f}"),
        ("parameters", f"{res['params']:,}"), ("classes", str(res["classes"])),
        ("train / val texts", f"{res['train_samples']} / {res['val_samples']}"),
        ("epochs", f"{res['epochs_run']} of {req.epochs} (kept: {res['best_epoch'] + 1}, lowest val loss)"),
        ("train wall time", f"{res['train_wall_s']:.1f} s ({res['sentences_per_s']:.0f} texts/s)"),
        ("model", str(res["out"]))]
    res["title"] = f"trained {c.name} on {ds.source}"
    return res

