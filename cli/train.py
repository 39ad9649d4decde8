"""odml train: build a zoo model or a spec and train it on an image dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from odml.cli.common import err, fmt_int, fmt_macs, handle_errors, out, print_json, resolve_spec


@handle_errors
def train_cmd(
    model: str = typer.Argument(..., help="A zoo name (see 'odml zoo list') or a spec JSON file."),
    data: str = typer.Option("digits", "--data", help="'digits' (embedded), a folder of class subfolders, or an .npz with x and y."),
    epochs: int = typer.Option(5, "--epochs", min=1, help="Training epochs."),
    out_path: Path = typer.Option(..., "--out", help="Where to save the trained model (.keras or .h5)."),
    input_size: Optional[str] = typer.Option(None, "--input-size", help="Input size N or HxW (images are resized to it)."),
    width: Optional[float] = typer.Option(None, "--width", help="Width multiplier of a zoo model."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    lr: float = typer.Option(2e-3, "--lr", min=0.0, help="Peak learning rate (AdamW, warm-up then cosine decay)."),
    val_split: float = typer.Option(0.2, "--val-split", help="Fraction of each class held out for validation."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split, the initialisation and the shuffling."),
    logdir: Optional[Path] = typer.Option(None, "--logdir", help="TensorBoard log folder (default: OUT's name + '.logs')."),
    tensorboard: bool = typer.Option(True, "--tensorboard/--no-tensorboard", help="Write TensorBoard logs."),
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Train MODEL on DATA and save it to OUT; print accuracy, parameters and MACs."""
    from odml.data.images import load_images
    from odml.train.trainer import TrainConfig, check_output_path, train_classifier

    out_path = check_output_path(out_path)
    spec = resolve_spec(model, None, input_size, width)  # classes follow the data
    h, w, c = spec.input_shape
    ds = load_images(data, (h, w), c, val_split, seed)
    spec = spec.replace(num_classes=ds.num_classes)
    spec.validate(model)
    if logdir is None and tensorboard:
        logdir = out_path.with_name(out_path.stem + ".logs")
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, learning_rate=lr, seed=seed,
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
