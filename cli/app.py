"""The odml command line. Each verb lives in its own module; importing this
one must stay cheap (no TensorFlow): heavy imports happen inside commands."""

from __future__ import annotations

from typing import Optional

import typer

from odml import __version__
from odml.cli import bench as bench_mod
from odml.cli import calibrate as calibrate_mod
from odml.cli import compress as compress_mod
from odml.cli import devices as devices_mod
from odml.cli import export as export_mod
from odml.cli import inspect as inspect_mod
from odml.cli import pose as pose_mod
from odml.cli import report as report_mod
from odml.cli import search as search_mod
from odml.cli import train as train_mod
from odml.cli import zoo as zoo_mod
from odml.cli.common import STATE

app = typer.Typer(
    name="odml",
    help="odml: from neural-network design to a measured on-device model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"odml {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True, help="Print the version."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    STATE["debug"] = debug


app.add_typer(zoo_mod.app, name="zoo")
app.command("train")(train_mod.train_cmd)
app.command("export")(export_mod.export_cmd)
app.command("inspect")(inspect_mod.inspect_cmd)
app.command("bench")(bench_mod.bench_cmd)
app.command("devices")(devices_mod.devices_cmd)
app.command("search")(search_mod.search_cmd)
app.command("calibrate")(calibrate_mod.calibrate_cmd)
app.command("predict")(calibrate_mod.predict_cmd)
app.command("compress")(compress_mod.compress_cmd)
app.command("pose")(pose_mod.pose_cmd)
app.command("pose-data")(pose_mod.pose_data_cmd)
app.command("report")(report_mod.report_cmd)


def _reflow(doc: str | None) -> str | None:
    """A docstring as paragraphs on one line each, so that --help wraps them to
    the terminal (rich keeps the line breaks of every paragraph but the first)."""
    if not doc:
        return doc
    import inspect

    paras = [" ".join(p.split()) for p in inspect.cleandoc(doc).split("\n\n")]
    return "\n\n".join(p for p in paras if p)


def _reflow_all(typer_app: typer.Typer) -> None:
    for cmd in typer_app.registered_commands:
        cmd.callback.__doc__ = _reflow(cmd.callback.__doc__)
    for group in typer_app.registered_groups:
        _reflow_all(group.typer_instance)


_reflow_all(app)


def main() -> None:
    from odml import interrupts

    interrupts.install()
    app()


if __name__ == "__main__":
    main()
