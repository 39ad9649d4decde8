"""odml zoo: list and inspect the models of the zoo (and spec files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from odml.cli.common import fmt_int, fmt_macs, handle_errors, out, print_json
from odml.files import write_text_atomic

app = typer.Typer(help="List and inspect the models of the zoo.", no_args_is_help=True, add_completion=False)


@app.command("list")
@handle_errors
def list_cmd(
    pattern: Optional[str] = typer.Argument(None, help="Glob or substring, e.g. 'mobilenet_edgetpu_v2*'."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List zoo models of every family: name, task, input, parameters and MACs."""
    from odml.zoo.registry import get_entry, list_models, resolve

    rows, notes = [], []
    for name in list_models(pattern):
        e, c = get_entry(name), resolve(name)
        counts, inp, outp = c.counts, c.input, c.output
        note = e.family.describe(c.config, name)
        rows.append({"name": name, "family": e.family.name, "task": e.task, "input_shape": list(inp.shape),
                     "input": inp.describe(), "classes": outp.size if outp.task == "classify" else None,
                     "params": counts.params, **counts.extra, "macs": counts.macs,
                     "output": list(outp.shape or (outp.size,)), "description": note or e.description})
        if note:
            notes.append(f"{name}: {note}")
    if json_out:
        print_json({"models": rows})
        return
    t = Table(title=f"odml zoo ({len(rows)} models)")
    for col, just in (("name", "left"), ("task", "left"), ("input", "left"), ("params", "right"), ("MACs", "right")):
        t.add_column(col, justify=just)
    for r in rows:
        t.add_row(r["name"], r["task"], r["input"], fmt_int(r["params"]),
                  fmt_macs(r["macs"]) if r["macs"] is not None else "-")
    out.print(t)
    for n in notes:
        out.print(n, markup=False)


@app.command("show")
@handle_errors
def show_cmd(
    model: str = typer.Argument(..., help="A zoo name or a spec JSON file."),
    classes: Optional[int] = typer.Option(None, "--classes", help="Number of classes."),
    input_size: Optional[str] = typer.Option(None, "--input-size", help="Input size: N or HxW (text models: the sequence length)."),
    width: Optional[float] = typer.Option(None, "--width", help="Width multiplier (filters rounded to multiples of 8)."),
    sets: list[str] = typer.Option([], "--set", help="Override a configuration value, e.g. --set layers=2 (repeatable)."),
    spec_out: Optional[Path] = typer.Option(None, "--out", help="Also write the configuration as JSON to this file."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Every block of a model in the spec language (type, kernel, expansion, stride, filters, groups, output shape,
    parameters, MACs) and its one-line form; for the other families, the configuration, parameters and MACs."""
    from odml.zoo.registry import resolve

    c = resolve(model, classes, input_size, width, sets or None)
    fam, cfg, counts = c.family, c.config, c.counts
    layers = fam.blocks(cfg)  # the spec language's per-block rows (None: a family without blocks)
    doc = fam.config_to_dict(cfg)
    if spec_out is not None:
        write_text_atomic(spec_out, json.dumps(doc, indent=2) + "\n")
    if json_out:
        res = {"name": c.name, "family": fam.name, "config": doc, "params": counts.params, "macs": counts.macs,
               **counts.extra, "input": c.input.to_dict(), "output": c.output.to_dict()}
        if layers is not None:
            res.update(spec=doc, layers=layers)
        print_json(res)
        return
    shape = "x".join(map(str, c.input.shape))
    if layers is not None:
        t = Table(title=f"{c.name}  input {shape}  classes {c.output.size}")
        for col in ("#", "part", "type", "k", "e", "s", "filters", "groups", "output", "params", "MACs"):
            t.add_column(col, justify="left" if col in ("part", "type") else "right")
        for i, r in enumerate(layers):
            t.add_row(str(i), r["name"], r["type"], str(r["kernel"]), f"{r['expansion']:g}", str(r["stride"]),
                      str(r["filters"]), str(r["groups"]), "x".join(map(str, r["output_shape"])), fmt_int(r["params"]),
                      fmt_macs(r["macs"]))
        t.add_section()
        t.add_row("", "total", "", "", "", "", "", "", "", fmt_int(counts.params), fmt_macs(counts.macs or 0))
        out.print(t)
        out.print("[bold]one-line form:[/]", markup=True)
        out.print(c.to_line(), markup=False)
    else:
        outp = c.output
        what = f"{outp.size} classes" if outp.task == "classify" else "output " + "x".join(map(str, outp.shape or (outp.size,)))
        t = Table(title=f"{c.name} ({fam.zoo_task.replace('_', ' ')}, input {c.input.describe()}, {what})")
        t.add_column("setting")
        t.add_column("value", justify="right")
        for k, v in fam.settings(cfg):
            t.add_row(k, v)
        t.add_section()
        t.add_row("parameters", fmt_int(counts.params))
        t.add_row("MACs", fmt_macs(counts.macs) if counts.macs else "-")
        out.print(t)
    if spec_out is not None:
        out.print(f"configuration written to {spec_out}", markup=False)


@app.command("import-mediapipe")
@handle_errors
def import_mediapipe_cmd(
    wheel: Optional[Path] = typer.Option(None, "--wheel", help="A mediapipe wheel (.whl) already on disk; default: 'pip download mediapipe==VERSION --no-deps'."),
    version: str = typer.Option("0.10.21", "--version", help="The mediapipe wheel to download (0.10.x wheels hold the pose models)."),
    folder: Optional[Path] = typer.Option(None, "--out", help="Where the imported models go (default: $ODML_HOME/mediapipe_pose, ~/.local/share/odml/mediapipe_pose)."),
    json_out: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Import MediaPipe's released BlazePose models (person detector and full
    landmark model, Apache-2.0) from the mediapipe wheel into odml's Keras
    models, checked against the released files; 'odml pose' then uses them."""
    from odml.zoo.mediapipe import import_mediapipe

    if folder is not None and not folder.parent.is_dir():
        from odml.errors import OutputError

        raise OutputError(f"--out {folder}: parent folder {folder.parent} does not exist")
    m = import_mediapipe(wheel, folder, version, say=lambda s: out.print(s, markup=False) if not json_out else None)
    if json_out:
        print_json({"import": m})
        return
    for part, d in m["models"].items():
        fig = ", ".join(f"{k} {v:.2g}" for k, v in d["parity_random_inputs"].items())
        out.print(f"{part}: {d['params']:,} weights from {d['member']}; Keras vs released file: {fig}", markup=False)
    out.print(f"imported into {m['folder']} ('odml pose IMAGE' uses it)", markup=False)
