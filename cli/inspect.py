"""odml inspect: what a .tflite or .onnx file holds."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from odml.cli.common import fmt_int, handle_errors, out, print_json


@handle_errors
def inspect_cmd(
    model: Path = typer.Argument(..., help="A .tflite or .onnx file."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Size, inputs and outputs (shape, dtype, quantization), op histogram,
    parameters, metadata and Edge TPU compatibility of MODEL."""
    from odml.exporters.inspect import inspect_model

    info = inspect_model(model)
    if json_out:
        print_json({"inspect": info})
        return
    from rich.markup import escape

    out.print(f"[bold]{escape(info['file'])}[/]  {info['format']}  {info['size_bytes']:,} bytes  "
              f"{fmt_int(info['params'])} parameters  {info['op_count']} ops", markup=True, highlight=False)
    t = Table(title="tensors")
    for col in ("", "name", "shape", "dtype", "quantization"):
        t.add_column(col)
    for kind in ("inputs", "outputs"):
        for x in info[kind]:
            q = x.get("quantization")
            qs = f"scale {q['scale'][0]:.4g} zero point {q['zero_point'][0]}" + (
                f" (+{q['channels'] - 1} channels)" if q and q["channels"] > 1 else "") if q else "-"
            t.add_row(kind[:-1], x["name"], "x".join(str(d) for d in x["shape"]), x["dtype"], qs)
    out.print(t)
    ops = Table(title="operators")
    ops.add_column("op")
    ops.add_column("count", justify="right")
    for op, n in info["ops"].items():
        ops.add_row(op, str(n))
    out.print(ops)
    meta = info.get("metadata")
    if meta:
        m = Table(title="metadata")
        m.add_column("field")
        m.add_column("value")
        for k, v in meta.items():
            if k == "labels":
                v = f"{len(v)} labels: {', '.join(v[:8])}{' ...' if len(v) > 8 else ''}"
            m.add_row(k, str(v))
        out.print(m)
    else:
        out.print("metadata: none", markup=False)
    e = info.get("edgetpu")
    if e:
        line = (f"Edge TPU: {e['on_edgetpu']} ops would run on the Edge TPU, {e['on_cpu']} on the CPU")
        if e["first_unsupported"]:
            f = e["first_unsupported"]
            line += f"; from op #{f['index']} ({f['op']}: {f['reason']}) on, everything runs on the CPU"
        out.print(line, markup=False)
