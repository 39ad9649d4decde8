"""Training a text classifier (any text family: pQRNN, MobileBERT) on labelled
texts: featurized by the family (a pQRNN projection distorted afresh every
epoch, or WordPiece ids), AdamW with warm-up and cosine decay, accuracy and
ROC AUC on the validation split. The model is saved with its card (family,
configuration, labels, vocabulary)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from odml.data.projection import distort
from odml.data.text import TextDataset


@dataclass
class TextTrainConfig:
    epochs: int = 5
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-5
    distortion: float = 0.25  # probability that a token is distorted in training (0: off)
    seed: int = 0


def train_text(name: str, cfg: Any, data: TextDataset, tc: TextTrainConfig, out: Path | None = None,
               vocab: list[str] | None = None, progress: Any = None) -> dict[str, Any]:
    """Train text model ``name`` of configuration ``cfg`` on ``data``; save it
    and its model card when ``out`` is given. Texts are distorted afresh
    every epoch when the family distorts them (tc.distortion); a family that
    needs a vocabulary (MobileBERT) needs ``vocab``."""
    from odml._tf import keras
    from odml.train.trainer import _keras_callback, make_optimizer, save_model_atomic
    from odml.zoo.builder import trainable_params
    from odml.zoo.card import ModelCard
    from odml.zoo.registry import family_for

    K = keras()
    K.utils.set_random_seed(tc.seed)
    fam = family_for(cfg)
    cfg = fam.validate(fam.with_classes(cfg, data.num_classes), name)
    card = ModelCard(fam, cfg, out.stem if out is not None else name, list(data.classes), vocab)
    featurize = fam.featurizer(card)
    model = fam.build(cfg, name)
    steps = int(np.ceil(len(data.texts_train) / tc.batch_size))
    model.compile(optimizer=make_optimizer(tc.learning_rate, tc.weight_decay, tc.epochs, steps),
                  loss=K.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    x_val, trunc_val = featurize(data.texts_val)
    distortion = tc.distortion if fam.distorts_text else 0.0
    fixed = None if distortion else featurize(data.texts_train)
    rng = random.Random(tc.seed)
    history, trunc_train = [], 0
    t0 = time.perf_counter()
    cbs = []
    if progress is not None:
        cbs.append(_keras_callback(K, progress))
        progress.start(tc.epochs, steps)
    for epoch in range(tc.epochs):
        if fixed is None:
            x, n = featurize([distort(t, rng, distortion) for t in data.texts_train])
        else:
            x, n = fixed
        trunc_train = max(trunc_train, n)
        h = model.fit(x, data.y_train, batch_size=tc.batch_size, epochs=epoch + 1, initial_epoch=epoch, verbose=0,
                      shuffle=True, callbacks=cbs)
        history.append({"epoch": epoch, "loss": float(h.history["loss"][-1]),
                        "accuracy": float(h.history["accuracy"][-1])})
    wall = time.perf_counter() - t0
    if progress is not None:
        progress.stop()
    res = fam.score(model.predict(x_val, batch_size=256, verbose=0), data.y_val)
    if out is not None:
        save_model_atomic(model, out, card)
    return {"model": name, "family": fam.name, "config": fam.config_to_dict(cfg), "params": trainable_params(model),
            "val_accuracy": res["accuracy"], "val_auc": res.get("auc"), "train_samples": len(data.texts_train),
            "val_samples": len(data.texts_val), "classes": data.num_classes,
            "truncated": {"train": trunc_train, "val": trunc_val, "max_len": card.input.shape[0]},
            "train_wall_s": round(wall, 2), "history": history, "out": str(out) if out else None}


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
                         distortion=req.distortion, seed=req.seed)
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
        ("train / val texts", f"{res['train_samples']} / {res['val_samples']}"), ("epochs", str(req.epochs)),
        ("train wall time", f"{res['train_wall_s']:.1f} s"), ("model", str(res["out"]))]
    res["title"] = f"trained {c.name} on {ds.source}"
    return res

