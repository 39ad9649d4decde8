"""What every verb shares: the consoles, one-line errors with exit codes,
JSON output and number formats."""

from __future__ import annotations

import functools
import json
import sys
import traceback
from typing import Any, Callable

import typer
from rich.console import Console

from odml import interrupts
from odml.errors import INTERNAL_ERROR, INTERRUPTED, OdmlError
from odml.files import jsonable

# Tables keep their columns when piped (rich would otherwise assume 80 columns).
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)
STATE = {"debug": False}
JSON_SCHEMA = 1


def fail(message: str, code: int = 2) -> None:
    from rich.markup import escape

    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def given_options(ctx: typer.Context) -> tuple[set[str], dict[str, str]]:
    """(the names of the options given on the command line or through the
    environment, each option's name -> its flag): what a verb checks
    against what a model's family takes."""
    def source(name: str) -> str:  # by name: typer carries its own copy of click and of its ParameterSource
        s = ctx.get_parameter_source(name)
        return s.name if s is not None else ""

    given = {p.name for p in ctx.command.params if p.name and source(p.name) in ("COMMANDLINE", "ENVIRONMENT")}
    flags = {p.name: "/".join([*p.opts, *p.secondary_opts]) for p in ctx.command.params
             if p.name and p.opts and p.opts[0].startswith("-")}
    return given, flags


def handle_errors(fn: Callable) -> Callable:
    """Turn an OdmlError into one line on stderr and its exit code (2 for bad
    input, 1 for a failed check), any other exception into one line and
    INTERNAL_ERROR (70); a traceback only with --debug."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        interrupts.clear()
        try:
            return fn(*args, **kwargs)
        except OdmlError as e:
            if STATE["debug"]:
                traceback.print_exc()
            fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(INTERRUPTED)
        except typer.Exit:
            raise
        except Exception as e:  # a bug of ours: one line, the traceback with --debug
            if STATE["debug"]:
                traceback.print_exc()
            from odml.files import write_failure

            failed = write_failure(e)  # a full disk, a size limit, an unwritable folder: the user's to fix
            if failed is not None:
                fail(str(failed), failed.exit_code)
            fail(f"internal error: {type(e).__name__}: {e}"
                 + ("" if STATE["debug"] else " (rerun with --debug for the traceback)"), INTERNAL_ERROR)

    return wrapper


def print_json(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps({"schema": JSON_SCHEMA, **obj}, indent=2, default=jsonable) + "\n")


def fmt_int(n: int) -> str:
    return f"{n:,}"


def fmt_macs(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f}G"
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    return f"{n / 1e3:.1f}K"
