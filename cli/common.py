"""What every verb shares: the consoles, one-line errors with exit codes,
JSON output, and turning a zoo name or spec file into a spec."""

from __future__ import annotations

import functools
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable

import typer
from rich.console import Console

from odml.errors import OdmlError, OutputError, SpecError

# Tables keep their columns when piped (rich would otherwise assume 80 columns).
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)
STATE = {"debug": False}
JSON_SCHEMA = 1


def fail(message: str, code: int = 2) -> None:
    from rich.markup import escape

    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def handle_errors(fn: Callable) -> Callable:
    """Turn an OdmlError into one line on stderr and its exit code (2 for bad
    input, 1 for a failed check); a traceback only with --debug."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OdmlError as e:
            if STATE["debug"]:
                traceback.print_exc()
            fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130)
        except typer.Exit:
            raise
        except Exception as e:  # a bug of ours: one line, the traceback with --debug
            if STATE["debug"]:
                raise
            fail(f"internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)", 1)

    return wrapper


def print_json(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps({"schema": JSON_SCHEMA, **obj}, indent=2, default=_jsonable) + "\n")


def _jsonable(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    if not path.parent.is_dir():
        raise OutputError(f"{path}: output folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def resolve_spec(model: str, classes: int | None = None, input_size: str | None = None,
                 width: float | None = None):
    """A zoo name (with overrides) or a spec JSON file (with classes / input
    size overrides) -> a validated ModelSpec."""
    from odml.zoo import ModelSpec, create_spec

    is_file = model.lower().endswith(".json") or os.sep in model or Path(model).is_file()
    if is_file:
        spec = ModelSpec.load(model)
        changes: dict[str, Any] = {}
        if classes is not None:
            changes["num_classes"] = classes
        if input_size is not None:
            from odml.zoo.mobilenet_edgetpu import _input_shape

            h, w, _ = _input_shape(input_size)
            changes["input_shape"] = (h, w, spec.input_shape[2])
        if width is not None and width != 1.0:
            raise SpecError(f"{model}: --width applies to zoo names; edit the spec's filters instead")
        spec = spec.replace(**changes)
        spec.validate(model)
        return spec
    overrides: dict[str, Any] = {"num_classes": classes, "input_size": _size_arg(input_size), "width": width}
    return create_spec(model, **overrides)


def _size_arg(value: str | None) -> Any:
    if value is None:
        return None
    return int(value) if value.isdigit() else value


def fmt_int(n: int) -> str:
    return f"{n:,}"


def fmt_macs(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f}G"
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    return f"{n / 1e3:.1f}K"
