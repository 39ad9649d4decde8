"""odml export: a zoo model, spec, Keras file, SavedModel, ONNX graph or float
.tflite -> TFLite (fp32, fp16, dynamic, int8), Edge TPU and ONNX, with
metadata and parity judged per output by what the output is."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from odml.cli.common import err, handle_errors, out, print_json


@handle_errors
def export_cmd(
    model: str = typer.Argument(..., help="A zoo name, a spec JSON, a .keras (Keras 3 or tf_keras) or .h5 model, a SavedModel folder, an .onnx graph, or a float .tflite (re-quantized)."),
    out_dir: Path = typer.Option(..., "--out", help="Output folder (created if missing; its parent must exist)."),
    quantize: str = typer.Option("fp32,int8", "--quantize", help="Comma list of fp32, fp16, dynamic, int8."),
    data: Optional[str] = typer.Option(None, "--data", help="Calibration and parity data: 'digits', 'shapes', an image folder or an .npz; for a text model a .tsv/.csv."),
    val_data: Optional[str] = typer.Option(None, "--val-data", help="Check parity on all of this data (your validation set) and calibrate on all of --data."),
    calibration: str = typer.Option("data", "--calibration", help="'data' (from --data) or 'random' (int8 accuracy unknown)."),
    calibration_samples: int = typer.Option(200, "--calibration-samples", min=1),
    io: str = typer.Option("float", "--io", help="int8 models: 'int8' or 'float' input and output."),
    fmt: str = typer.Option("tflite", "--format", help="'tflite' or 'tflite,onnx' (ONNX via tf2onnx from the fp32 TFLite)."),
    finalize: Optional[str] = typer.Option(None, "--finalize", help="Segmentation: steps after the logits in the exported files, e.g. resize512,argmax or resize256,argmax,resize512,squeeze (argmax at a lower resolution, then nearest-neighbour upsampling: faster)."),
    target: str = typer.Option("cpu", "--target", help="'cpu' or 'edgetpu' (int8, lowered to map, with a compatibility report)."),
    parity_samples: int = typer.Option(100, "--parity-samples", min=1),
    min_top1: Optional[float] = typer.Option(None, "--min-top1", help="Override the minimum top-1 agreement for every precision."),
    max_rel_err: Optional[float] = typer.Option(None, "--max-rel-err", help="Override the maximum relative mean error."),
    budget: Optional[str] = typer.Option(None, "--budget", help="int8 budget per output meaning or output name, e.g. keypoints=1.5,pixels=0.95,Identity_4=3 (keypoints: % of the crop; boxes: pixels; probability; pixels/steps/top1: minimum agreement; error: relative)."),
    input_size: Optional[str] = typer.Option(None, "--input-size", help="Input size N or HxW: of a zoo model or spec, or of a model file that leaves it open (a dynamic ONNX size)."),
    input_range: Optional[str] = typer.Option(None, "--input-range", help="Model files: what pixels become at the input, 0,1 (default), -1,1 or 0,255 (default 0,255 for a model that starts with Rescaling or Normalization)."),
    task: Optional[str] = typer.Option(None, "--task", help="Model files: what the outputs are, classify, segment, detect, keypoints, sequence or features (how parity judges them; default: its card, else read off the shapes)."),
    width: Optional[float] = typer.Option(None, "--width", help="Zoo models: width multiplier."),
    classes: Optional[int] = typer.Option(None, "--classes", help="Zoo/spec models: number of classes."),
    name: Optional[str] = typer.Option(None, "--name", help="Metadata: model name."),
    version: str = typer.Option("1", "--model-version", help="Metadata: model version."),
    author: str = typer.Option("", "--author", help="Metadata: author."),
    license_: str = typer.Option("", "--license", help="Metadata: license."),
    description: str = typer.Option("", "--description", help="Metadata: description."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Labels file (one per line); default: the data's class names."),
    metadata: bool = typer.Option(True, "--metadata/--no-metadata", help="Attach TFLite metadata."),
    recipe: Optional[Path] = typer.Option(None, "--recipe", help="int8: make the file by this recipe (a .recipe.json an earlier export saved beside its int8 file) instead of searching."),
    search: bool = typer.Option(True, "--search/--no-search", help="int8: when the converter's file misses the budget, try recipes (int8, int16 activations, float per op; latency measured on this host) and keep the fastest in budget."),
    qat: bool = typer.Option(False, "--qat/--no-qat", help="int8: when no recipe meets the budget, fine-tune a quantization-aware copy toward the float model's outputs (no labels; tf_keras models). Off by default: on BlazePose it does not beat post-training int8 yet (docs/benchmarks/int8_qat.md)."),
    qat_steps: int = typer.Option(300, "--qat-steps", min=0, help="Steps of quantization-aware fine-tuning."),
    diagnose: bool = typer.Option(False, "--diagnose", help="int8: the error each op adds against the fp32 file (both run on calibration inputs, every tensor kept), mapped back to its layer; the worst ten shown."),
    seed: int = typer.Option(0, "--seed"),
    json_out: bool = typer.Option(False, "--json", help="Print the export report as JSON."),
) -> None:
    """Export MODEL and check that every file still computes what the model computes."""
    from dataclasses import replace

    from odml.errors import OdmlError
    from odml.exporters.export import ExportOptions, check_replaceable, load_source, run_export
    from odml.exporters.tflite import DEFAULT_THRESHOLDS, ExportError, parity_failure, parse_precisions

    precisions = parse_precisions(quantize)
    formats = [f.strip() for f in fmt.split(",") if f.strip()]
    if set(formats) - {"tflite", "onnx"} or "tflite" not in formats and "onnx" not in formats:
        raise ExportError(f"--format: expected tflite and/or onnx, got {fmt!r}")
    if io not in ("float", "int8"):
        raise ExportError(f"--io: expected int8 or float, got {io!r}")
    if calibration not in ("data", "random"):
        raise ExportError(f"--calibration: expected data or random, got {calibration!r}")
    if target not in ("cpu", "edgetpu"):
        raise ExportError(f"--target: expected cpu or edgetpu, got {target!r}")
    if target == "edgetpu" and "int8" not in precisions:
        precisions.append("int8")
    recipe_obj = None
    if recipe is not None:
        from odml.exporters.int8_search import load_recipe

        if "int8" not in precisions:
            raise ExportError("--recipe makes the int8 file: add int8 to --quantize")
        if io != "float" or target != "cpu":
            raise ExportError("--recipe applies to int8 files with float input and output for the CPU (--io float, "
                              "--target cpu)")
        recipe_obj = load_recipe(recipe)
    if diagnose and "int8" not in precisions:
        raise ExportError("--diagnose explains an int8 file: add int8 to --quantize")
    check_replaceable(out_dir)
    if val_data is not None and data is None:
        raise ExportError("--val-data goes with --data (the calibration data)")
    label_list = None
    if labels is not None:
        if not labels.is_file():
            raise OdmlError(f"{labels}: labels file not found")
        label_list = [ln.strip() for ln in labels.read_text(encoding="utf-8").splitlines() if ln.strip()]
    from odml.zoo.families.external import parse_range

    from odml.zoo.tflite_model import RequantizeError

    try:
        src = load_source(model, classes, input_size, width, input_range=parse_range(input_range), task=task)
    except RequantizeError as e:  # an int8 file: nothing to compare it with
        if not diagnose:
            raise
        raise RequantizeError(f"--diagnose compares an int8 file with the float file it came from; {model} has no "
                              f"float reference: {str(e).split(': ', 1)[-1]}") from None
    if finalize is not None:
        from odml.exporters.export import finalized

        src = finalized(src, finalize)
    x_val = y_val = x_cal = None
    if data is not None:  # the family reads its own data: images, labelled texts, pose samples
        ds = src.family.read(src.card, data, 0.2, seed, n_val=min(parity_samples, 100), n_cal=calibration_samples,
                             val_data=val_data)
        x_val, y_val = ds.sample("val", parity_samples)
        x_val, x_cal = src.input.from_pixels(x_val), src.input.from_pixels(ds.sample("train", calibration_samples,
                                                                                    seed)[0])
        if src.classifies and ds.class_names and len(ds.class_names) != src.outputs:
            raise OdmlError(f"{data}: {len(ds.class_names)} classes in the data but the model has {src.outputs} "
                            "outputs")
        label_list = label_list or (list(ds.class_names) if ds.class_names else None)
    label_list = label_list or src.card.label_names()
    if label_list is not None and src.classifies and len(label_list) != src.outputs:
        raise OdmlError(f"{labels}: {len(label_list)} labels for a model with {src.outputs} outputs")
    thresholds = {p: replace(t, **({"min_top1": min_top1} if min_top1 is not None else {}),
                             **({"max_rel_mean_err": max_rel_err} if max_rel_err is not None else {}))
                  for p, t in DEFAULT_THRESHOLDS.items()}
    if budget is not None:  # int8's limits, each output judged in its own units (exporters/tflite.py parse_budget)
        from odml.exporters.tflite import check_budget, parse_budget

        if "int8" not in precisions:
            raise ExportError("--budget judges the int8 file: add int8 to --quantize")
        thresholds["int8"] = parse_budget(budget, thresholds["int8"])
        check_budget(thresholds["int8"], src.output.tensors)
    info = None
    if metadata:
        from odml.exporters.metadata import ModelInfo

        info = ModelInfo(name=name or src.name, version=version, author=author, license=license_,
                         description=description or f"{src.name} exported by odml", labels=label_list,
                         card=replace(src.card, labels=label_list if src.classifies else None))
    opts = ExportOptions(precisions=precisions, out_dir=out_dir, formats=formats, io=io, calibration=calibration,
                         calibration_samples=calibration_samples, parity_samples=parity_samples,
                         thresholds=thresholds, target=target, metadata=info, seed=seed, diagnose=diagnose,
                         search=search, recipe=recipe_obj, timer=host_timer if search else None,
                         finetune=_finetune(qat_steps, seed) if qat and search else None,
                         data={"source": data, "split": getattr(ds, "split", "")} if data is not None else None)

    def warn(msg: str) -> None:
        from rich.markup import escape

        err.print(f"[yellow]warning:[/] {escape(msg)}", markup=True, highlight=False)

    with err.status("exporting") as status:
        report = run_export(src, opts, x_val, y_val, x_cal, warn=warn,
                            step=lambda s: status.update(f"exporting {s}"))
    if json_out:
        print_json({"export": report})
    else:
        render_report(report)
    failure = parity_failure(report["artifacts"], report["parity_inputs"] == "random")
    if failure is not None:
        raise failure


def host_timer(files: list[bytes]) -> list[float]:
    """The median latency (ms) of each file on this host (LiteRT, XNNPACK,
    one thread), measured in one child process one after the other."""
    import tempfile

    from odml.devices.host import HostOptions, bench_host_many

    with tempfile.TemporaryDirectory(prefix="odml-int8-") as d:
        paths = []
        for i, data in enumerate(files):
            paths.append(Path(d) / f"candidate_{i}.tflite")
            paths[-1].write_bytes(data)
        res = bench_host_many(paths, HostOptions(threads=1, runs=30, min_secs=0.3, max_warmup_secs=1.0, instances=1))
    return [float(r["median_ms"]) for r in res]


def _finetune(steps: int, seed: int):
    """(tf_keras model, calibration inputs) -> an int8 file fine-tuned toward
    the model's own float outputs (compress.qat_targets)."""
    def run(model, x):
        from odml.compress.qat_targets import qat_finetune, qat_tflite

        return qat_tflite(qat_finetune(model, x, steps=steps, seed=seed), x)

    return run


def render_report(report: dict) -> None:
    from odml.exporters.tflite import agreement_text

    t = Table(title=f"export {report['model']} ({report['source']}, parity on {report['parity_inputs']} inputs)")
    for col in ("file", "precision", "io", "size", "vs fp32", "max err", "mean err", "agreement", "accuracy", "parity"):
        t.add_column(col, justify="left" if col in ("file", "precision", "io", "parity") else "right")
    for a in report["artifacts"]:
        p = a["parity"]
        per = p.get("outputs") or {}
        acc = f"{p['tflite_accuracy']:.4f} (keras {p['keras_accuracy']:.4f})" if "tflite_accuracy" in p else "-"
        agree = agreement_text(next(iter(per.values())) if len(per) == 1 else p)
        t.add_row(a["file"], a["precision"], a["io"], f"{a['size_bytes'] / 1024:,.1f} KiB",
                  f"{a['size_vs_fp32']:.3f}" if "size_vs_fp32" in a else "-", f"{p['max_abs_err']:.2e}", f"{p['mean_abs_err']:.2e}",
                  agree, acc,
                  ("[green]ok[/]" + ("*" if "note" in p else "")) if not a["parity_failed"] else "[red]FAILED[/]")
        if len(per) > 1:  # one line per output, judged by what it is
            for n, q in per.items():
                t.add_row(f"  {n}", "", "", "", "", f"{q['max_abs_err']:.2e}", f"{q['mean_abs_err']:.2e}",
                          agreement_text(q) if agreement_text(q) != "-" else f"rel {q['rel_mean_err']:.1e}", "", "")
    out.print(t)
    if report.get("data", {}).get("split"):
        out.print(f"data: {report['data']['split']}", markup=False)
    notes = sorted({a["parity"]["note"] for a in report["artifacts"] if "note" in a["parity"]}
                   | {f"{n}: {q['note']}" for a in report["artifacts"] for n, q in (a["parity"].get("outputs") or {}).items()
                      if "note" in q and len(a["parity"]["outputs"]) > 1})
    for n in notes:
        out.print(f"* {n}", markup=False)
    for a in report["artifacts"]:
        if "search" in a:
            render_search(a)
    for a in report["artifacts"]:
        if "diagnosis" in a:
            render_diagnosis(a)
    for a in report["artifacts"]:
        if "edgetpu" in a:
            e = a["edgetpu"]
            out.print(f"Edge TPU ({a['file']}): {e['on_edgetpu']} ops on the Edge TPU, {e['on_cpu']} on the CPU"
                      + (f"; first unsupported: #{e['first_unsupported']['index']} {e['first_unsupported']['op']}: "
                         f"{e['first_unsupported']['reason']}" if e["first_unsupported"] else ""), markup=False)
            d = (e.get("compiler") or {}).get("delegation")
            if d and d.get("ops_total"):
                out.print(f"edgetpu_compiler ({a['file']}): {d['ops_delegated']} of {d['ops_total']} ops on the Edge "
                          f"TPU ({d['share_ops']:.0%})" + ("; on the CPU: " + ", ".join(
                              f"{x['op']} x{x['count']} ({x['reason']})" for x in d["fallback"])
                              if d["fallback"] else ""), markup=False)
    if report["ok"]:
        out.print(f"written to {report['out_dir']}", markup=False)



def render_search(a: dict) -> None:
    """The int8 recipes tried, their cost and drift, the chosen one marked."""
    srch = a["search"]
    t = Table(title=f"{a['file']}: int8 recipes tried (budget: each output in its own measure)")
    for col in ("step", "recipe", "ms", "vs fp16", "size", "worst output / budget", "in budget"):
        t.add_column(col, justify="right" if col in ("ms", "vs fp16", "size", "worst output / budget") else "left")
    for st in srch["steps"]:
        worst = max(st["ratios"].items(), key=lambda kv: kv[1], default=None)
        mark = " (chosen)" if st["step"] == srch.get("chosen") else ""
        t.add_row(st["step"] + mark, st["what"], f"{st['ms']:.2f}" if "ms" in st else "-",
                  f"{st['vs_fp16']:.2f}" if "vs_fp16" in st else "-",
                  f"{st['size_bytes'] / 1024:,.0f} KiB" if st["size_bytes"] else "-",
                  f"{worst[0]} {worst[1]:.2f}" if worst else st["budget"][:60], "[green]yes[/]" if st["met"] else "no")
    out.print(t)
    if a.get("recipe_file") and a.get("written", True):
        out.print(f"recipe: {a['recipe_file']} (give it back with --recipe)", markup=False)


def render_diagnosis(a: dict) -> None:
    d = a["diagnosis"]
    outs = ", ".join(f"{n} {e:.4f}" for n, e in d["outputs"].items())
    t = Table(title=f"{a['file']}: where int8 loses most ({d['ops_matched']} ops compared on {d['samples']} inputs; "
                    f"at the outputs: {outs})")
    for col in ("layer", "op", "adds", "error", "tensor"):
        t.add_column(col, justify="right" if col in ("adds", "error") else "left")
    for r in d["worst"]:
        t.add_row(r["layer"], r["kind"], f"{r['added']:.4f}", f"{r['error']:.4f}", r["tensor"][:60])
    out.print(t)
    out.print("error: per channel, the mean absolute difference from the fp32 file over the channel's RMS, averaged; "
              "adds: the op's error less the largest of its inputs'", markup=False)
