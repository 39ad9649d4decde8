"""Rich progress bars for long work (training now; search and compression
later), drawn on stderr so that --json output on stdout stays clean."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from odml.cli.common import err


class TrainProgress:
    """Implements odml.train.trainer.Progress with one bar over all steps."""

    def __init__(self, title: str):
        self.title = title
        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False,
        )
        self.task = None
        self.steps = 1
        self.epochs = 1
        self.last_val = ""

    def start(self, epochs: int, steps_per_epoch: int) -> None:
        self.epochs, self.steps = epochs, steps_per_epoch
        self.bar.start()
        self.task = self.bar.add_task(self.title, total=epochs * steps_per_epoch, info="")

    def batch(self, epoch: int, step: int, logs: dict) -> None:
        info = f"epoch {epoch + 1}/{self.epochs} loss {logs.get('loss', float('nan')):.3f} " \
               f"acc {logs.get('accuracy', float('nan')):.3f}{self.last_val}"
        self.bar.update(self.task, completed=epoch * self.steps + step, info=info)

    def epoch(self, epoch: int, logs: dict) -> None:
        # the validation accuracy after re-estimating batch-norm statistics (what the results table shows);
        # Keras' own val_accuracy uses moving averages that lag far behind in short runs
        if "val_accuracy_bn" in logs:
            self.last_val = f" val_acc {logs['val_accuracy_bn']:.3f}"
        elif "val_accuracy" in logs:
            self.last_val = f" val_acc {logs['val_accuracy']:.3f}"
        self.bar.update(self.task, completed=(epoch + 1) * self.steps)

    def stop(self) -> None:
        self.bar.stop()
