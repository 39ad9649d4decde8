"""Writing files so that an interrupted run never leaves a half-written one:
every output goes to a temporary name in the same folder and is renamed into
place (an atomic replace on POSIX), and append-only records are flushed and
fsynced line by line. The one place odml writes files; nothing here imports
TensorFlow."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from odml.errors import OutputError


def _check_parent(path: Path) -> None:
    if not path.parent.is_dir():
        raise OutputError(f"{path}: output folder {path.parent} does not exist")


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=indent, default=jsonable) + "\n")


@contextlib.contextmanager
def atomic_output(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """A temporary path beside ``path`` for writers that take a path (Keras'
    ``model.save``, ``savefig``, ``save_weights``): renamed to ``path`` when
    the block ends normally, removed when it raises. ``suffix`` (default: the
    path's own) matters to writers that choose the format by it (``.keras``,
    ``.weights.h5``)."""
    path = Path(path)
    _check_parent(path)
    suffix = path.name[len(path.stem):] if suffix is None else suffix
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def temp_dir_beside(path: str | Path, what: str = "stage") -> Path:
    """A fresh folder next to ``path`` (same file system, so its files can be
    renamed into place)."""
    path = Path(path)
    _check_parent(path)
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.{what}-", dir=path.parent))


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one record durably (flushed and fsynced before returning). A
    torn line left by an earlier kill is ended first, so it cannot swallow
    this record."""
    with open(path, "a+b") as f:
        f.seek(0, os.SEEK_END)
        if f.tell():
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
        f.write((json.dumps(record, sort_keys=True, default=jsonable) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The complete records of a JSONL file; a torn line (a kill during a
    write) is ignored."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def jsonable(o: Any) -> Any:
    """NumPy scalars and arrays and paths, as JSON values."""
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


def data_home() -> Path:
    """Where odml keeps what it imports for the user (released weights):
    $ODML_HOME, else $XDG_DATA_HOME/odml, else ~/.local/share/odml."""
    if os.environ.get("ODML_HOME"):
        return Path(os.environ["ODML_HOME"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "odml"
