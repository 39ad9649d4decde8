"""Reading the JSON and YAML documents users write (specs, search spaces,
recipes): one-line errors that say which file, and where in it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from odml.errors import OdmlError


def read_document(path: str | Path, what: str, error: type[OdmlError]) -> Any:
    """The parsed content of a JSON or (by suffix .yaml/.yml) YAML file."""
    p = Path(path)
    if not p.is_file():
        raise error(f"{p}: {what} file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{p}: cannot read {what}: {e}") from None
    if p.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
            raise error(f"{p}: not valid YAML{at}: {getattr(e, 'problem', e)}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{p}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
