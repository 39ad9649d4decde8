"""odml compress: Learn2Compress - distillation into several students at once,
pruning, quantization, and a table to pick from."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from odml.cli.common import err, fmt_int, handle_errors, out, print_json


@handle_errors
def compress_cmd(
    teacher: Path = typer.Argument(..., help="The pre-trained classifier: .keras (Keras 3 or tf_keras) or .h5 (loaded with safe_mode), a SavedModel folder, or an .onnx graph; or a keypoint teacher: a BlazePose landmark model, or blazepose_full_released (MediaPipe's, once imported)."),
    data: Optional[str] = typer.Option(None, "--data", help="'digits' (the default) or 'shapes' (embedded), a folder of class subfolders, or an .npz; a .tsv/.csv of texts for a text teacher; 'synthetic' (the default) or a COCO-style keypoint .json for a keypoint teacher."),
    out_dir: Path = typer.Option(..., "--out", help="Run folder; rerun the same command to resume."),
    val_data: Optional[str] = typer.Option(None, "--val-data", help="Score the teacher and students on all of this data (your validation set; the same classes) and train on all of --data."),
    recipe: Optional[Path] = typer.Option(None, "--recipe", help="A YAML/JSON recipe (keys in the README); options given here override it."),
    students: Optional[str] = typer.Option(None, "--students", help="Comma-separated: zoo NAME or NAME@WIDTH, or spec files (default: sizes from the teacher's MACs)."),
    sizes: Optional[str] = typer.Option(None, "--sizes", help="Derived students at these fractions of the teacher's MACs, e.g. 0.5,0.25,0.125."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Training epochs (overrides the recipe)."),
    distill: Optional[bool] = typer.Option(None, "--distill/--no-distill", help="Distil from the teacher (default on)."),
    augment: Optional[str] = typer.Option(None, "--augment", help="Distil on a perturbed copy of each batch too: mixup, dropout, ngram (text: windows of 1-5 tokens) or none."),
    init: Optional[str] = typer.Option(None, "--init", help="Where the students start: random, or teacher (pQRNN: the teacher's most important channels and their weights)."),
    joint: Optional[bool] = typer.Option(None, "--joint/--fixed-teacher", help="Train the teacher with the students."),
    prune: Optional[float] = typer.Option(None, "--prune", help="Magnitude pruning to this sparsity in [0, 1)."),
    prune_structure: Optional[str] = typer.Option(None, "--prune-structure", help="unstructured or 2:4."),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="ptq (post-training int8, default), qat or none."),
    device: str = typer.Option("host", "--device", help="Where latency is measured: host, adb:SERIAL or edgetpu."),
    threads: int = typer.Option(1, "--threads"),
    runs: int = typer.Option(50, "--runs", help="Benchmark runs per model (and at least half a second of them; fewer runs, a shorter floor in proportion)."),
    pick_expr: Optional[str] = typer.Option(None, "--pick", help="Mark the most accurate student within a budget, e.g. 'latency_ms<=5, size_kb<500'."),
    benchmark_binary: Optional[str] = typer.Option(None, "--benchmark-binary", help="adb: TFLite's benchmark_model for the phone."),
    input_size: Optional[str] = typer.Option(None, "--input-size", help="The teacher's input size HxW, when its file leaves it open (an ONNX graph's dynamic size)."),
    input_range: Optional[str] = typer.Option(None, "--input-range", help="What pixels become at the teacher's input: 0,1 (the default), -1,1 or 0,255 (default 0,255 for a model that starts with Rescaling or Normalization)."),
    calibration_samples: Optional[int] = typer.Option(None, "--calibration-samples", min=1, help="int8: calibration inputs (overrides the recipe's quantize.calibration_samples)."),
    shared: Optional[bool] = typer.Option(None, "--shared/--separate", help="The students are widths of one network, trained together: one width per step, every width in one graph (a step costs about one student's), then each copied out (recipe shared.widths_per_step: 3 for the sandwich rule; shared.finetune_epochs to fine-tune each width apart at the end)."),
    steps: Optional[str] = typer.Option(None, "--steps", help="A keypoint teacher's students: heatmap and regression training steps (default 700,2000)."),
    distribute: str = typer.Option("none", "--distribute", help="Train the students on this machine's devices with tf.distribute: mirrored (every GPU; each batch split between them)."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Compress TEACHER into several students: distillation (one teacher pass per batch for all
    students), optional pruning and quantization-aware training, int8 TFLite, latency on --device,
    and a table sorted by latency with the Pareto set marked."""
    from odml.compress.run import CompressError, CompressOptions, prepare, run

    size_list = None
    if sizes is not None:
        try:
            size_list = [float(s) for s in sizes.split(",") if s.strip()]
        except ValueError:
            raise CompressError(f"--sizes {sizes!r}: expected comma-separated fractions such as 0.5,0.25") from None
    opts = CompressOptions(
        teacher=str(teacher), data=data, out=str(out_dir), recipe=str(recipe) if recipe else None,
        students=[s for s in (students or "").split(",") if s.strip()], sizes=size_list, epochs=epochs, joint=joint,
        prune=prune, prune_structure=prune_structure, quantize=quantize, distill=distill, augment=augment, init=init,
        device=device, threads=threads, runs=runs, pick=pick_expr, benchmark_binary=benchmark_binary,
        input_size=input_size, input_range=input_range, val_data=val_data, steps=steps,
        calibration_samples=calibration_samples, shared=shared, distribute=distribute)
    if epochs is not None and epochs < 1:
        raise CompressError(f"--epochs {epochs}: must be at least 1")
    p = prepare(opts)
    stages = p.epochs is None  # a run in stages and steps (a keypoint teacher's students): its stages as lines
    bar = None if json_out or stages else _Bar(p.epochs, [lbl for lbl, _ in p.students])
    said = (lambda s: err.print(s, markup=False)) if stages and not json_out else None
    try:
        if bar:
            bar.start()
        rep = run(p, on_stage=bar.stage if bar else said, on_epoch=bar.epoch if bar else None)
    except KeyboardInterrupt:
        err.print("interrupted; run the same command to resume", markup=False)
        raise typer.Exit(130)
    finally:
        if bar:
            bar.stop()
    if json_out:
        print_json({"compress": rep})
        return
    TABLES[p.teacher.compressor](rep)


class _Bar:
    def __init__(self, epochs: int, labels: list[str]):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("[bold]compress"), BarColumn(), MofNCompleteColumn(), TextColumn("epochs"),
                            TextColumn("[dim]{task.fields[info]}"), TimeElapsedColumn(), console=err)
        self.epochs, self.labels, self.task = epochs, labels, None

    def start(self) -> None:
        self.bar.start()
        self.task = self.bar.add_task("compress", total=self.epochs, info="")

    def stage(self, text: str) -> None:
        self.bar.update(self.task, info=text)

    def epoch(self, epoch: int, logs: dict[str, Any]) -> None:
        info = "  ".join(f"{k} {v['accuracy']:.3f}" for k, v in logs.items())
        self.bar.update(self.task, completed=epoch + 1, info=f"train acc: {info}")

    def stop(self) -> None:
        self.bar.stop()


def _table(rep: dict[str, Any]) -> None:
    t = rep["teacher"]
    # beside accuracy, what the family scores most: a text classifier's ROC AUC, a segmentation's mIoU
    extra = next(((k, name) for k, name in (("auc", "AUC"), ("miou", "mIoU")) if k in t), None)
    more = f", {extra[1]} {t[extra[0]]:.4f}" if extra else ""
    acc = "pixel accuracy" if extra and extra[0] == "miou" else "accuracy"
    tab = Table(title=f"odml compress on {rep['device']}: teacher {Path(t['model']).name} "
                      f"({acc} {t['accuracy']:.4f}{more}, {t['size_bytes'] / 1024:,.0f} KiB fp32, "
                      f"{t['latency_ms']:.3f} ms)")
    qat = any(r.get("ptq_int8_accuracy") is not None for r in rep["students"])
    cols = ("", "student", "accuracy", "int8 acc", *(("float", "PTQ int8") if qat else ()),
            *((extra[1], f"int8 {extra[1]}") if extra else ()), "params", "size KiB",
            "gzip KiB", "latency ms", "smaller", "faster", "sparsity")
    for c in cols:
        tab.add_column(c, justify="left" if c in ("", "student") else "right")
    for r in rep["students"]:
        mark = " ".join(m for m, on in (("picked", r["picked"]), ("pareto", r["pareto"])) if on)
        k = extra[0] if extra else ""
        aucs = (f"{r[k]:.4f}", "-" if r.get(f"int8_{k}") is None else f"{r[f'int8_{k}']:.4f}") if extra else ()
        qats = tuple("-" if r.get(k) is None else f"{r[k]:.4f}" for k in ("float_accuracy", "ptq_int8_accuracy")
                     ) if qat else ()
        tab.add_row(mark, r["label"], f"{r['accuracy']:.4f}",
                    "-" if r["int8_accuracy"] is None else f"{r['int8_accuracy']:.4f}", *qats, *aucs,
                    fmt_int(r["params"]),
                    f"{r['size_bytes'] / 1024:,.1f}", f"{r['gzip_bytes'] / 1024:,.1f}", f"{r['latency_ms']:.3f}",
                    f"{r['size_ratio']:.1f}x", f"{r['speedup']:.1f}x",
                    "-" if "sparsity" not in r else f"{r['sparsity']:.0%}")
    out.print(tab)
    ph = rep.get("phases") or {}
    if ph.get("wall_s") is not None:
        f = lambda k: "-" if ph.get(k) is None else f"{ph[k]:.1f} s"  # noqa: E731
        sh = ph.get("shared")
        cost = (f" ({ph['students']} students{' sharing one network' if sh else ''}: {ph['vs_one_student']:.2f}x "
                "one student's training step)" if ph.get("vs_one_student") is not None else "")
        if sh and sh.get("finetune_epochs"):
            cost += f", of which {sh['finetune_s']:.1f} s fine-tuning the widths apart"
        out.print(f"time: {ph['wall_s']:.1f} s = teacher {f('teacher_s')}, training {f('training_s')}{cost}, "
                  f"export {f('export_s')}, measurement {f('measure_s')}", markup=False)
        vs = ph.get("run_vs_one_student")
        if vs and vs.get("ratio") is not None:
            this, one = vs["this_run"], vs["one_student"]
            per = ", ".join(f"{k[:-2].replace('_', ' ')} {this[k]:.1f}/{one[k]:.1f}" for k in this
                            if this[k] or one[k])
            out.print(f"against one student's run ({vs['student']} alone, estimated from this run): "
                      f"{vs['ratio']:.2f}x ({per} s)", markup=False)
    if rep["pick"]:
        out.print(f"pick {rep['pick']!r}: {rep['picked'] or 'no student meets it'}", markup=False)
    if rep.get("data", {}).get("split"):
        out.print(f"data: {rep['data']['split']}", markup=False)
    for note in rep.get("notes", []):
        out.print(f"note: {note}", markup=False)
    for name, path in rep["files"].items():
        out.print(f"{name}: {path}")


def _keypoint_table(rep: dict[str, Any]) -> None:
    t = rep["teacher"]
    tab = Table(title=f"odml compress on {rep['device']}: keypoint teacher {Path(t['model']).name} "
                      f"({t['size_bytes'] / 1024:,.0f} KiB fp16, {t['latency_ms']:.3f} ms)")
    cols = ("student", "PCK@0.2 vs teacher", "int8", "fp16", "vs truth", "params", "int8 KiB", "int8 ms", "fp16 ms",
            "smaller", "faster")
    for c in cols:
        tab.add_column(c, justify="left" if c == "student" else "right")

    def f(v: Any) -> str:
        return "-" if v is None else f"{v:.4f}"

    for r in rep["students"]:
        tab.add_row(r["label"], f(r["pck@0.2_vs_teacher"]), f(r.get("int8_pck@0.2_vs_teacher")),
                    f(r.get("fp16_pck@0.2_vs_teacher")), f(r.get("pck@0.2_vs_truth")), fmt_int(r["params"]),
                    f"{r['int8_size_bytes'] / 1024:,.1f}", f"{r['int8_latency_ms']:.3f}", f"{r['fp16_latency_ms']:.3f}",
                    f"{r['size_ratio']:.1f}x", f"{r['speedup']:.1f}x")
    out.print(tab)
    out.print(f"metric: {rep['metric']}", markup=False)
    for name, path in rep["files"].items():
        out.print(f"{name}: {path}")


TABLES = {"distill": _table, "keypoints": _keypoint_table}  # by the pipeline the teacher's family names
