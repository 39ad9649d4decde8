"""odml bench --report DIR: the run as a folder a page is drawn from.

``DIR/bench.json`` holds what the run measured (every result with its
timed runs, or the budget checks and their verdict) and ``DIR/report.html``
its page (report/views.py: the verdict first, the latency distributions,
the OVIC score, the per-op profile per block where measured)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from odml.errors import OutputError
from odml.files import write_json_atomic

SCHEMA = 1
NAME = "bench.json"


def check_folder(folder: Path) -> Path:
    """``folder`` usable for the report (made when its parent exists; not
    another verb's run folder), before anything is measured."""
    from odml.report import MARKERS

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"--report {folder}: exists and is not a folder")
    other = [m for k, m in MARKERS.items() if k != "bench" and (folder / m).is_file()]
    if other:
        raise OutputError(f"--report {folder}: it holds {other[0]}, another odml run's folder; give a folder of its own")
    if not folder.parent.is_dir():
        raise OutputError(f"--report {folder}: its parent folder {folder.parent} does not exist")
    return folder


def write(folder: Path, doc: dict[str, Any]) -> Path | None:
    """``folder``/bench.json and its page; returns the page's path (None
    when it could not be drawn: bench.json stands, a warning says why)."""
    from odml import report

    folder = check_folder(folder)
    folder.mkdir(exist_ok=True)
    write_json_atomic(folder / NAME, {"schema": SCHEMA, **doc})
    return report.write_after(folder)
