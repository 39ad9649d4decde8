"""odml train: build a zoo model or a spec and train it with the loop its
family names: image classifiers on images, text classifiers on a TSV/CSV of
labelled texts, BlazePose on synthetic people or COCO-style keypoints."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from odml.cli.common import err, given_options, handle_errors, out, print_json


@handle_errors
def train_cmd(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="A zoo name (see 'odml zoo list') or a spec JSON file."),
    data: Optional[str] = typer.Option(None, "--data", help="'digits' (embedded, the default) or 'shapes' (generated figures in clutter), a folder of class subfolders, or an .npz with x and y; text models: a .tsv/.csv; blazepose: 'synthetic' (the default) or a COCO-style keypoint .json."),
    epochs: int = typer.Option(5, "--epochs", min=1, help="Training epochs."),
    out_path: Path = typer.Option(..., "--out", help="Where to save the trained model (.keras or .h5)."),
    input_size: Optional[str] = typer.Option(None, "--input-size", help="Input size N or HxW (images are resized to it)."),
    width: Optional[float] = typer.Option(None, "--width", help="Width multiplier of a zoo model."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Default 64 (blazepose: 8)."),
    learning_rate: Optional[float] = typer.Option(None, "--lr", min=0.0, help="Peak learning rate (AdamW, warm-up then cosine decay); default 2e-3 for images, 3e-3 pQRNN, 5e-4 MobileBERT."),
    val_split: float = typer.Option(0.2, "--val-split", help="Fraction of each class held out for validation."),
    val_data: Optional[str] = typer.Option(None, "--val-data", help="Validate on all of this data (your validation set; the same classes) and train on all of --data."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split, the initialisation and the shuffling."),
    logdir: Optional[Path] = typer.Option(None, "--logdir", help="TensorBoard log folder (default: OUT's name + '.logs')."),
    tensorboard: bool = typer.Option(True, "--tensorboard/--no-tensorboard", help="Write TensorBoard logs."),
    distribute: str = typer.Option("none", "--distribute", help="Image classifiers: train on several devices with tf.distribute: mirrored (this machine's GPUs) or multiworker (hosts listed in TF_CONFIG, each running this command; worker 0 writes OUT)."),
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    max_len: Optional[int] = typer.Option(None, "--max-len", help="Text: tokens kept per text (pQRNN) or sequence length (MobileBERT)."),
    label_col: Optional[str] = typer.Option(None, "--label-col", help="Text: the label column, by name or 0-based index (default: the first)."),
    text_col: Optional[str] = typer.Option(None, "--text-col", help="Text: the text column, by name or 0-based index (default: the last)."),
    vocab: Optional[Path] = typer.Option(None, "--vocab", help="MobileBERT: a WordPiece vocab.txt ([PAD] first); default: trained on the data."),
    vocab_size: int = typer.Option(8000, "--vocab-size", help="MobileBERT: size of the vocabulary trained on the data."),
    distortion: float = typer.Option(0.25, "--distortion", help="pQRNN: probability of distorting a token in training."),
    patience: int = typer.Option(3, "--patience", min=0, help="Text: stop after this many epochs without a lower validation loss and keep the best epoch (0: train every epoch, still keep the best)."),
    sets: list[str] = typer.Option([], "--set", help="Text: override a configuration value, e.g. --set layers=2 (repeatable)."),
    variant: Optional[str] = typer.Option(None, "--variant", help="blazepose: the landmark model, lite (default), full or tiny."),
    val_images: int = typer.Option(200, "--val-images", min=1, help="blazepose: held-out images for PCK (synthetic: generated with another seed)."),
    steps: str = typer.Option("300,700,2000", "--steps", help="blazepose: training steps of the detector, the heatmap stage and the regression stage (about 12 minutes for lite on 2 cores)."),
) -> None:
    """Train MODEL on DATA and save it to OUT with its model card (OUT.odml.json); print the validation figures,
    parameters and MACs. An option MODEL's family does not take is refused."""
    from odml.train import TrainRequest, check_options, train_model
    from odml.zoo.registry import resolve

    c = resolve(model, None, input_size, width, sets or None)  # the classes follow the data
    given, flags = given_options(ctx)
    check_options(c, given - {"model", "out_path", "json_out"}, flags)
    from odml.train.distribute import check as check_distribute

    cluster = check_distribute(distribute)
    req = TrainRequest(data=data, val_data=val_data, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                       val_split=val_split,
                       seed=seed, logdir=str(logdir) if logdir else None, tensorboard=tensorboard, max_len=max_len,
                       label_col=label_col, text_col=text_col, vocab=vocab, vocab_size=vocab_size,
                       distortion=distortion, patience=patience, variant=variant, val_images=val_images, steps=steps,
                       distribute=distribute)
    progress = None
    if not json_out:
        from odml.cli.progress import TrainProgress

        progress = TrainProgress(f"train {c.name}")
    log = (lambda m: None) if json_out else (lambda m: err.print(m, markup=False))
    try:
        res = train_model(c, req, out_path, progress, log)
    except KeyboardInterrupt:  # the model is written only once training ends (through a temporary name)
        if progress is not None:
            progress.stop()
        err.print(f"interrupted: no model written to {out_path}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    rows, title = res.pop("summary"), res.pop("title")
    if json_out:
        print_json({"train": res})
        return
    t = Table(title=title)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in rows:
        t.add_row(k, v)
    out.print(t)
