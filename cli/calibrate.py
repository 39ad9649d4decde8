"""odml calibrate and odml predict: a latency predictor fitted to your device,
and what it says about a model."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from odml.cli.common import err, fmt_macs, handle_errors, out, print_json


@handle_errors
def calibrate_cmd(
    device: str = typer.Option("host", "--device", help="Where to measure: host, adb:SERIAL or edgetpu."),
    space: str = typer.Option("small32", "--space", help="A built-in space (small32, edgetpu_v2, autoseg64) or a space file."),
    precision: str = typer.Option("int8", "--precision", help="int8, fp32, fp16 or dynamic: what the search exports."),
    out_dir: Path = typer.Option(..., "--out", help="Run folder; rerun the same command to resume."),
    minutes: float = typer.Option(10.0, "--minutes", help="Time budget: half on blocks, half on whole models (to fit and to hold out)."),
    threads: int = typer.Option(1, "--threads", help="Threads of every measurement."),
    runtime: str = typer.Option("interpreter", "--runtime", help="host: interpreter or compiled (LiteRT's CompiledModel)."),
    input_size: Optional[int] = typer.Option(None, "--input-size", help="Override the space's input size."),
    classes: int = typer.Option(10, "--classes", help="Classes of the head (as in your search)."),
    runs: int = typer.Option(30, "--runs", help="Timed runs per measurement (at least)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the designed blocks and the sampled architectures."),
    statistic: str = typer.Option("min", "--statistic", help="The figure predicted: min (a model's fastest timed run) or median (of its runtime instances' medians). Rerun with the other to refit the same measurements."),
    benchmark_binary: Optional[str] = typer.Option(None, "--benchmark-binary", help="adb: TFLite's benchmark_model for the phone."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Fit a latency predictor for SPACE at PRECISION on DEVICE.

    Measures a designed set of blocks (every block type, kernel, expansion, group count and stride
    of the space, at the widths and resolutions its stages have), then whole architectures drawn
    from the space: half fit what a whole model adds to the sum of its blocks, half are held out
    and only predicted. Writes OUT/predictor.json for 'odml predict' and 'odml search --predictor'
    and reports the accuracy on the held-out architectures. Interrupted, it resumes where it was.
    """
    from odml.nas.predictor import CalibrationConfig, calibrate

    cfg = CalibrationConfig(device=device, space=space, precision=precision, threads=threads, runtime=runtime,
                            input_size=input_size, classes=classes, seed=seed, minutes=minutes, runs=runs,
                            benchmark_binary=benchmark_binary, statistic=statistic)
    try:
        with err.status("calibrating") as status:
            res = calibrate(cfg, out_dir, progress=status.update)
    except KeyboardInterrupt:
        from odml.files import read_jsonl

        n = len(read_jsonl(out_dir / "measurements.jsonl"))
        err.print(f"interrupted after {n} measurements, kept in {out_dir}; run the same command to resume",
                  markup=False)
        raise typer.Exit(130)
    if json_out:
        print_json({"calibrate": res})
        return
    a = res["accuracy"]
    out.print(f"calibrated {res['space']} at {res['precision']} ({res['statistic']} latency) on {res['device']} in {res['calibration_s'] / 60:.1f} "
              f"min: {res['units']} blocks, {res['models_fit']} whole models to fit, {res['models_held_out']} held out")
    if a.get("models"):
        out.print(f"held-out architectures: {a['within_5pct']:.0%} within ±5%, {a['within_10pct']:.0%} within ±10%, "
                  f"RMSE {a['rmse_ms']:.4f} ms, mean error {a['mape']:.1%}, worst {a['max_error']:.0%}")
    out.print(f"predictor: {res['predictor']}")


@handle_errors
def predict_cmd(
    model: str = typer.Argument(..., help="A spec JSON, a zoo name, or a .tflite / .keras with its odml card."),
    predictor: Path = typer.Option(..., "--predictor", help="The predictor.json 'odml calibrate' wrote."),
    device: Optional[str] = typer.Option(None, "--device", help="Refuse unless the predictor was fitted on this device."),
    precision: Optional[str] = typer.Option(None, "--precision", help="Refuse unless fitted at this precision (a .tflite says its own)."),
    blocks: bool = typer.Option(False, "--blocks", help="Show the predicted latency of every block."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Predict MODEL's latency on the device a predictor was calibrated on."""
    from odml.nas.predictor import PredictorError, load_predictor
    from odml.nas.units import spec_of

    pred = load_predictor(predictor)
    spec, file_precision = spec_of(model)
    if file_precision is not None and precision is not None and file_precision != precision:
        raise PredictorError(f"--precision {precision}: {model} is a {file_precision} file")
    want = precision or file_precision
    if want is not None and want != pred.precision:
        raise PredictorError(f"--predictor {predictor}: fitted at precision {pred.precision}, and {model} is "
                             f"{want}; calibrate at {want}")
    if device is not None and device != pred.device:
        raise PredictorError(f"--predictor {predictor}: fitted on device {pred.device}, not {device}")
    notes, refuse = pred.outside(spec)
    in_space = pred.in_space(spec)
    if refuse:
        raise PredictorError(f"{model}: too far outside what {predictor} measured to predict: {notes[0]}")
    res = {"model": model, "line": spec.to_line(), "device": pred.device, "precision": pred.precision,
           "statistic": pred.statistic, "in_space": in_space, "outside": notes, **pred.breakdown(spec)}
    for n in ([] if json_out else ([f"{model} is not a point of space {pred.doc['space']['name']}"] if not in_space
                                   else []) + notes[:5]):
        err.print(f"warning: {n}", markup=False)
    if json_out:
        print_json({"predict": res})
        return
    if blocks:
        t = Table(title=f"{model}: predicted per block on {pred.device} ({pred.precision})")
        for col in ("block", "MACs", "predicted ms"):
            t.add_column(col, justify="left" if col == "block" else "right")
        for u in res["units"]:
            t.add_row(u["unit"], fmt_macs(u["macs"]), f"{u['predicted_ms']:.4f}")
        out.print(t)
    out.print(f"{model}: predicted {res['predicted_ms']:.4f} ms ({pred.statistic}) on {pred.device} ({pred.precision}; blocks "
              f"{res['sum_ms']:.4f} ms, the whole model adds {res['whole_model_adds_ms']:+.4f} ms)")
