"""odml report: a run folder's page (report.html), made again from its files."""

from __future__ import annotations

from pathlib import Path

import typer

from odml.cli.common import handle_errors, out, print_json


@handle_errors
def report_cmd(
    folder: Path = typer.Argument(..., help="A run folder: the --out of odml search or compress."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Write FOLDER/report.html: one self-contained page (inline SVG and CSS,
    nothing fetched) drawn from the run folder's files alone, so an old or
    interrupted run can be looked at too."""
    from odml import report

    kind = report.kind_of(folder)
    path = report.write(folder)
    info = {"page": str(path), "kind": kind, "size_bytes": path.stat().st_size}
    if json_out:
        print_json({"report": info})
        return
    out.print(f"{kind} page: {path} ({info['size_bytes']:,} bytes)", markup=False, highlight=False)
