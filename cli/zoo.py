"""odml zoo: list and inspect the models of the zoo (and spec files)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from odml.cli.common import fmt_int, fmt_macs, handle_errors, out, print_json, resolve_spec, write_text_atomic

app = typer.Typer(help="List and inspect the models of the zoo.", no_args_is_help=True, add_completion=False)


@app.command("list")
@handle_errors
def list_cmd(
    pattern: Optional[str] = typer.Argument(None, help="Glob or substring, e.g. 'mobilenet_edgetpu_v2*'."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List zoo models: name, task, input shape, parameters and MACs."""
    from odml.zoo import create_spec, get_entry, list_models

    rows = []
    for name in list_models(pattern):
        spec, entry = create_spec(name), get_entry(name)
        rows.append({"name": name, "task": entry.task, "input_shape": list(spec.input_shape),
                     "classes": spec.num_classes, "params": spec.params, "macs": spec.macs,
                     "description": entry.description})
    rows += _text_rows(pattern)
    from odml.zoo.poseconfig import pose_rows

    rows += pose_rows(pattern)
    if json_out:
        print_json({"models": rows})
        return
    t = Table(title=f"odml zoo ({len(rows)} models)")
    for col, just in (("name", "left"), ("task", "left"), ("input", "left"), ("params", "right"), ("MACs", "right")):
        t.add_column(col, justify=just)
    notes = [f"{r['name']}: {r['description']}" for r in rows if "encoder_params" in r or r["task"].startswith("pose")]
    for r in rows:
        t.add_row(r["name"], r["task"], r.get("input") or "x".join(map(str, r["input_shape"])), fmt_int(r["params"]),
                  fmt_macs(r["macs"]) if r["macs"] is not None else "-")
    out.print(t)
    for n in notes:
        out.print(n, markup=False)


def _text_rows(pattern: str | None) -> list[dict]:
    """The text models (TensorFlow-free configurations): pQRNN over a ternary
    projection, MobileBERT(-EdgeTPU) over WordPiece ids; parameters of the
    encoder alone are given for MobileBERT, as published."""
    import fnmatch

    from odml.zoo.textconfig import MOBILEBERT_PUBLISHED, TEXT_MODELS, MobileBertConfig, text_config

    rows = []
    for name in TEXT_MODELS:
        if pattern and not (fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(name, f"*{pattern}*")):
            continue
        cfg = text_config(name)
        if isinstance(cfg, MobileBertConfig):
            rows.append({"name": name, "task": "text_classification", "input_shape": [cfg.seq_len],
                         "input": f"{cfg.seq_len} token ids", "classes": cfg.num_classes, "params": cfg.params,
                         "encoder_params": cfg.encoder_params, "macs": None,
                         "description": f"{cfg.layers} blocks, intra {cfg.intra}, {cfg.ffn} FFNs; encoder "
                                        f"{cfg.encoder_params:,} parameters (published: "
                                        f"{MOBILEBERT_PUBLISHED[name] / 1e6:.1f}M), the rest is the head"})
        else:
            rows.append({"name": name, "task": "text_classification", "input_shape": [cfg.max_len, cfg.features],
                         "input": f"{cfg.max_len}x{cfg.features} projection", "classes": cfg.num_classes,
                         "params": cfg.params, "macs": None,
                         "description": f"{cfg.layers} bidirectional QRNN layers of {cfg.hidden}"})
    return rows


@app.command("show")
@handle_errors
def show_cmd(
    model: str = typer.Argument(..., help="A zoo name or a spec JSON file."),
    classes: Optional[int] = typer.Option(None, "--classes", help="Number of classes."),
    input_size: Optional[str] = typer.Option(None, "--input-size", help="Input size: N or HxW."),
    width: Optional[float] = typer.Option(None, "--width", help="Width multiplier (filters rounded to multiples of 8)."),
    spec_out: Optional[Path] = typer.Option(None, "--out", help="Also write the spec as JSON to this file."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Every block of a model (type, kernel, expansion, stride, filters, groups,
    output shape, parameters, MACs) and the spec's one-line form; for a text
    model, its configuration and parameters."""
    from odml.zoo.poseconfig import POSE_PRESETS
    from odml.zoo.textconfig import TEXT_MODELS

    if model in TEXT_MODELS:
        _show_text(model, classes, json_out)
        return
    if model in POSE_PRESETS:
        _show_pose(model, json_out)
        return
    spec = resolve_spec(model, classes, input_size, width)
    layers = spec.layers()
    if spec_out is not None:
        write_text_atomic(spec_out, spec.to_json() + "\n")
    if json_out:
        print_json({"spec": spec.to_dict(), "layers": layers, "params": spec.params, "macs": spec.macs})
        return
    t = Table(title=f"{spec.name}  input {'x'.join(map(str, spec.input_shape))}  classes {spec.num_classes}")
    for col in ("#", "part", "type", "k", "e", "s", "filters", "groups", "output", "params", "MACs"):
        t.add_column(col, justify="left" if col in ("part", "type") else "right")
    for i, r in enumerate(layers):
        e = r["expansion"]
        t.add_row(str(i), r["name"], r["type"], str(r["kernel"]), f"{e:g}", str(r["stride"]), str(r["filters"]),
                  str(r["groups"]), "x".join(map(str, r["output_shape"])), fmt_int(r["params"]), fmt_macs(r["macs"]))
    t.add_section()
    t.add_row("", "total", "", "", "", "", "", "", "", fmt_int(spec.params), fmt_macs(spec.macs))
    out.print(t)
    out.print("[bold]one-line form:[/]", markup=True)
    out.print(spec.to_line(), markup=False)
    if spec_out is not None:
        out.print(f"spec written to {spec_out}", markup=False)


def _show_text(name: str, classes: int | None, json_out: bool) -> None:
    from odml.zoo.textconfig import MobileBertConfig, text_config

    cfg = text_config(name, num_classes=classes)
    d = {"name": name, "config": cfg.to_dict(), "params": cfg.params}
    if isinstance(cfg, MobileBertConfig):
        d["encoder_params"] = cfg.encoder_params
    if json_out:
        print_json(d)
        return
    t = Table(title=f"{name} (text classification, {cfg.num_classes} classes)")
    t.add_column("setting")
    t.add_column("value", justify="right")
    for k, v in cfg.to_dict().items():
        t.add_row(k, str(v))
    t.add_section()
    if "encoder_params" in d:
        t.add_row("encoder parameters", fmt_int(d["encoder_params"]))
    t.add_row("parameters", fmt_int(d["params"]))
    out.print(t)


def _show_pose(name: str, json_out: bool) -> None:
    from odml.zoo.poseconfig import count, pose_config

    cfg = pose_config(name)
    c = count(cfg)
    d = {"name": name, "config": cfg.to_dict(), **c}
    if json_out:
        print_json(d)
        return
    t = Table(title=f"{name} (input {cfg.input_size}x{cfg.input_size}x3, output {'x'.join(map(str, c['output']))})")
    t.add_column("setting")
    t.add_column("value", justify="right")
    for k, v in cfg.to_dict().items():
        t.add_row(k, str(v))
    t.add_section()
    t.add_row("parameters (deployed)", fmt_int(c["params"]))
    t.add_row("MACs (deployed)", fmt_macs(c["macs"]))
    if "heatmap_params" in c:
        t.add_row("heatmap heads (training only)", fmt_int(c["heatmap_params"]))
    out.print(t)
