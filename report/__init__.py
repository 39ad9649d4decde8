"""report.html: one self-contained page per run folder (report/page.py,
report/svg.py), drawn by the view of the verb that made the folder
(report/views.py) from the folder's files alone. The verbs call
``write(folder)`` at their end; `odml report FOLDER` calls it again."""

from __future__ import annotations

from pathlib import Path

from odml.report.views import VIEWS, ReportError

PAGE = "report.html"
MARKERS = {"search": "search.json", "compress": "compress.json", "export": "export.json",
           "calibrate": "calibrate.json", "bench": "bench.json"}  # the settings file that says who made a folder


def kind_of(folder: Path) -> str:
    """Which verb made ``folder`` (one-line ReportError when none did)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ReportError(f"{folder}: not a folder (give the run folder a verb wrote, its --out)")
    for kind, marker in MARKERS.items():
        if (folder / marker).is_file():
            return kind
    raise ReportError(f"{folder}: no odml run in it (none of {', '.join(MARKERS.values())}); give the --out folder "
                      "of odml search, compress, export or calibrate, or bench's --report")


def render(folder: Path, shown_as: str | None = None) -> str:
    """The page of ``folder`` as HTML text (``shown_as``: the folder's name
    on the page, when it is drawn from a staging copy)."""
    folder = Path(folder)
    page = VIEWS[kind_of(folder)](folder)
    page.source = Path(shown_as or folder.resolve()).name  # its name, not the path it was given by
    return page.render()


def write(folder: Path, shown_as: str | None = None) -> Path:
    """``folder``/report.html written (atomically) from its files."""
    from odml.files import write_text_atomic

    folder = Path(folder)
    return write_text_atomic(folder / PAGE, render(folder, shown_as))


def write_after(folder: Path, shown_as: str | None = None) -> Path | None:
    """The page written at the end of a verb whose work is done: a page that
    cannot be drawn must not undo it. It warns on stderr (the run's files
    stand; `odml report FOLDER` tries again) and returns None."""
    import sys

    try:
        return write(folder, shown_as)
    except Exception as e:  # noqa: BLE001 - the run's results are written; the page is a view of them
        print(f"warning: {Path(shown_as or folder)}/{PAGE} not written: {type(e).__name__}: "
              f"{' '.join(str(e).split())[:300]}", file=sys.stderr)
        return None


__all__ = ["MARKERS", "PAGE", "ReportError", "kind_of", "render", "write", "write_after"]
