"""odml train: build a zoo model or a spec and train it on an image dataset,
or a text model (pqrnn, mobilebert*) on a TSV/CSV of labelled texts."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from odml.cli.common import err, fmt_int, fmt_macs, handle_errors, out, print_json, resolve_spec


@handle_errors
def train_cmd(
    model: str = typer.Argument(..., help="A zoo name (see 'odml zoo list') or a spec JSON file."),
    data: Optional[str] = typer.Option(None, "--data", help="'digits' (embedded, the default), a folder of class subfolders, or an .npz with x and y; text models: a .tsv/.csv; blazepose: 'synthetic' (the default) or a COCO-style keypoint .json."),
    epochs: int = typer.Option(5, "--epochs", min=1, help="Training epochs."),
    out_path: Path = typer.Option(..., "--out", help="Where to save the trained model (.keras or .h5)."),
    input_size: Optional[str] = typer.Option(None, "--input-size", help="Input size N or HxW (images are resized to it)."),
    width: Optional[float] = typer.Option(None, "--width", help="Width multiplier of a zoo model."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Default 64 (blazepose: 8)."),
    lr: Optional[float] = typer.Option(None, "--lr", min=0.0, help="Peak learning rate (AdamW, warm-up then cosine decay); default 2e-3 for images, 3e-3 pQRNN, 5e-4 MobileBERT."),
    val_split: float = typer.Option(0.2, "--val-split", help="Fraction of each class held out for validation."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split, the initialisation and the shuffling."),
    logdir: Optional[Path] = typer.Option(None, "--logdir", help="TensorBoard log folder (default: OUT's name + '.logs')."),
    tensorboard: bool = typer.Option(True, "--tensorboard/--no-tensorboard", help="Write TensorBoard logs."),
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    max_len: Optional[int] = typer.Option(None, "--max-len", help="Text: tokens kept per text (pQRNN) or sequence length (MobileBERT)."),
    label_col: Optional[str] = typer.Option(None, "--label-col", help="Text: the label column, by name or 0-based index (default: the first)."),
    text_col: Optional[str] = typer.Option(None, "--text-col", help="Text: the text column, by name or 0-based index (default: the last)."),
    vocab: Optional[Path] = typer.Option(None, "--vocab", help="MobileBERT: a WordPiece vocab.txt ([PAD] first); default: trained on the data."),
    vocab_size: int = typer.Option(8000, "--vocab-size", help="MobileBERT: size of the vocabulary trained on the data."),
    distortion: float = typer.Option(0.25, "--distortion", help="pQRNN: probability of distorting a token in training."),
    sets: list[str] = typer.Option([], "--set", help="Text: override a configuration value, e.g. --set layers=2 (repeatable)."),
    variant: str = typer.Option("lite", "--variant", help="blazepose: the landmark model, lite, full or tiny."),
    val_images: int = typer.Option(200, "--val-images", min=1, help="blazepose: held-out images for PCK (synthetic: generated with another seed)."),
    steps: str = typer.Option("300,700,2000", "--steps", help="blazepose: training steps of the detector, the heatmap stage and the regression stage (about 12 minutes for lite on 2 cores)."),
) -> None:
    """Train MODEL on DATA and save it to OUT; print accuracy, parameters and MACs
    (text models: accuracy and ROC AUC)."""
    from odml.data.images import load_images
    from odml.train.trainer import TrainConfig, check_output_path, train_classifier
    from odml.zoo.textconfig import TEXT_MODELS

    if model == "blazepose":
        _train_pose(data or "synthetic", out_path, variant, steps, batch_size, lr, seed, json_out, val_images)
        return
    out_path = check_output_path(out_path)
    data = data or "digits"
    if model in TEXT_MODELS:
        _train_text(model, data, epochs, out_path, batch_size, lr, val_split, seed, json_out, max_len, label_col,
                    text_col, vocab, vocab_size, distortion, sets)
        return
    spec = resolve_spec(model, None, input_size, width)  # classes follow the data
    h, w, c = spec.input_shape
    ds = load_images(data, (h, w), c, val_split, seed)
    spec = spec.replace(num_classes=ds.num_classes)
    spec.validate(model)
    if logdir is None and tensorboard:
        logdir = out_path.with_name(out_path.stem + ".logs")
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size or 64, learning_rate=lr or 2e-3, seed=seed,
                      logdir=str(logdir) if tensorboard and logdir else None)
    progress = None
    if not json_out:
        from odml.cli.progress import TrainProgress

        progress = TrainProgress(f"train {spec.name}")
        for note in ds.notes:
            err.print(f"data: {note}", markup=False)
    res = train_classifier(spec, ds, cfg, out_path, progress)
    res["data"] = ds.summary()
    if json_out:
        print_json({"train": res})
        return
    t = Table(title=f"trained {spec.name} on {ds.source}")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in (
        ("val accuracy", f"{res['val_accuracy']:.4f}"), ("train accuracy", f"{res['train_accuracy']:.4f}"),
        ("val loss", f"{res['val_loss']:.4f}"), ("parameters", fmt_int(res["params"])), ("MACs", fmt_macs(res["macs"])),
        ("input", "x".join(map(str, res["input_shape"]))), ("classes", str(res["classes"])),
        ("train / val images", f"{res['train_samples']} / {res['val_samples']}"), ("epochs", str(res["epochs"])),
        ("train wall time", f"{res['train_wall_s']:.1f} s"), ("model", str(res["out"])),
        ("TensorBoard logs", str(res["logdir"] or "-")),
    ):
        t.add_row(k, v)
    out.print(t)


def _parse_sets(sets: list[str], cfg) -> dict:
    from dataclasses import fields

    from odml.errors import SpecError

    names = {f.name: f.type for f in fields(cfg)}
    out = {}
    for item in sets:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in names or key == "num_classes":
            raise SpecError(f"--set {item!r}: expected KEY=VALUE with KEY one of "
                            f"{', '.join(k for k in names if k != 'num_classes')}")
        cur = getattr(cfg, key)
        try:
            out[key] = type(cur)(value)
        except ValueError:
            raise SpecError(f"--set {item!r}: {key} takes a {type(cur).__name__}") from None
    return out


def _train_text(model, data, epochs, out_path, batch_size, lr, val_split, seed, json_out, max_len, label_col,
                text_col, vocab, vocab_size, distortion, sets) -> None:
    from odml.data.text import load_text
    from odml.data.textmodel import is_text_data
    from odml.errors import DataError
    from odml.train.text import TextTrainConfig, train_text
    from odml.zoo.textconfig import text_config

    if not is_text_data(data):
        raise DataError(f"--data {data}: {model} trains on a .tsv, .csv or .txt file of labelled texts")
    base = text_config(model)
    over = _parse_sets(sets, base)
    if max_len is not None:
        over["max_len" if model.startswith("pqrnn") else "seq_len"] = max_len
    cfg = text_config(model, **over)
    ds = load_text(data, label_col, text_col, None, val_split, seed)
    words = None
    if model.startswith("mobilebert"):
        from odml.data.wordpiece import read_vocab, train_vocab

        words = read_vocab(vocab) if vocab is not None else train_vocab(ds.texts_train, vocab_size)
        if len(words) != cfg.vocab:
            cfg = text_config(model, **{**over, "vocab": len(words)})
    tc = TextTrainConfig(epochs=epochs, batch_size=batch_size or 64, learning_rate=lr or (3e-3 if model.startswith("pqrnn") else 5e-4),
                         distortion=distortion, seed=seed)
    progress = None
    if not json_out:
        from odml.cli.progress import TrainProgress

        progress = TrainProgress(f"train {model}")
        for note in ds.notes:
            err.print(f"data: {note}", markup=False)
    res = train_text(model, cfg, ds, tc, out_path, words, progress)
    res["data"] = ds.summary()
    if json_out:
        print_json({"train": res})
        return
    if res["truncated"]["train"] or res["truncated"]["val"]:
        err.print(f"data: {res['truncated']['train']} training and {res['truncated']['val']} validation texts "
                  f"longer than {res['truncated']['max_len']} tokens were cut", markup=False)
    t = Table(title=f"trained {model} on {ds.source}")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in (
        ("val accuracy", f"{res['val_accuracy']:.4f}"), ("val ROC AUC", f"{res['val_auc']:.4f}"),
        ("parameters", fmt_int(res["params"])), ("classes", str(res["classes"])),
        ("train / val texts", f"{res['train_samples']} / {res['val_samples']}"), ("epochs", str(epochs)),
        ("train wall time", f"{res['train_wall_s']:.1f} s"), ("model", str(res["out"])),
    ):
        t.add_row(k, v)
    out.print(t)


def _train_pose(data, out_dir: Path, variant, steps, batch_size, lr, seed, json_out, val_images) -> None:
    """BlazePose: the detector and the landmark model (two stages) into the
    folder OUT; PCK@0.2 on held-out images."""
    from odml.errors import DataError, OutputError
    from odml.train.pose import PoseTrainConfig, train_pose

    if variant not in ("lite", "full", "tiny"):
        raise DataError(f"--variant: expected lite, full or tiny, got {variant!r}")
    try:
        d, h, r = (int(v) for v in steps.split(","))
        assert min(d, h, r) >= 0
    except (ValueError, AssertionError):
        raise DataError(f"--steps {steps!r}: expected three counts, e.g. 600,600,900") from None
    if data != "synthetic" and not (Path(data).suffix.lower() == ".json"):
        raise DataError(f"--data {data}: blazepose trains on 'synthetic' or a COCO-style keypoint .json")
    if data != "synthetic":
        from odml.data.pose import read_coco

        read_coco(data)  # bad files fail here, before anything is written
    if out_dir.suffix in (".keras", ".h5") or (out_dir.exists() and not out_dir.is_dir()):
        raise OutputError(f"{out_dir}: blazepose writes a folder (detector.keras, landmarks.keras, pose.json)")
    if not out_dir.parent.is_dir():
        raise OutputError(f"{out_dir}: parent folder {out_dir.parent} does not exist")
    cfg = PoseTrainConfig(landmark=f"blazepose_{variant}",
                          detector="blazepose_detector_tiny" if variant == "tiny" else "blazepose_detector",
                          detector_steps=d, heatmap_steps=h, regression_steps=r, batch_size=batch_size or 8,
                          learning_rate=lr or 2e-3, seed=seed, val_images=val_images)
    log = (lambda m: None) if json_out else (lambda m: err.print(m, markup=False))
    res = train_pose(data, out_dir, cfg, log)
    if json_out:
        print_json({"train": res})
        return
    t = Table(title=f"trained BlazePose ({variant}) on {data}")
    t.add_column("metric")
    t.add_column("value", justify="right")
    lm, dt = res["landmarks"], res["detector"]

    def f4(v) -> str:  # None: no person among the held-out images
        return "-" if v is None else f"{v:.4f}"

    for k, v in (
        ("landmark PCK@0.2 (ground-truth ROI)", f4(lm["pck@0.2"])),
        ("landmark PCK@0.2, COCO-17 points", f4(lm.get("pck@0.2_coco17"))),
        ("pipeline PCK@0.2 (detector -> ROI -> landmarks)", f4(res["pipeline"]["pck@0.2"])),
        ("detector ROI recall", f"{dt['roi_recall']:.4f}"),
        ("landmark parameters", fmt_int(lm["params"])), ("landmark MACs", fmt_macs(lm["macs"])),
        ("detector parameters", fmt_int(dt["params"])), ("validation images", str(res["val_images"])),
        ("train wall time", f"{res['wall_s']:.1f} s"), ("models", str(out_dir)),
    ):
        t.add_row(k, v)
    out.print(t)
