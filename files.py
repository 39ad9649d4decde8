"""Writing files so that an interrupted run never leaves a half-written one:
every output goes to a temporary name in the same folder and is renamed into
place (an atomic replace on POSIX), and append-only records are flushed and
fsynced line by line. The one place odml writes files; nothing here imports
TensorFlow."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from odml.errors import OutputError


WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR}
_WRITE_WORDS = ("No space left on device", "File too large", "Disk quota exceeded", "Read-only file system",
                "Permission denied")


def write_failure(e: BaseException) -> OutputError | None:
    """The one-line error for ``e`` when it (or what caused it) is a failed
    write: a full disk, a file size limit, a read-only or unwritable folder.
    TensorFlow's writers raise their own error types with the system's
    message in the text; None for anything else."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OutputError):
            return e
        if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
            where = e.filename or "a file"
            return OutputError(f"{where}: cannot write: {e.strerror}")
        text = " ".join(str(e).split())
        word = next((w for w in _WRITE_WORDS if w in text), None)
        if word:
            return OutputError(f"cannot write: {word} ({type(e).__name__}: {text[:200]})")
        e = e.__cause__ or e.__context__
    return None


def _check_parent(path: Path) -> None:
    if not path.parent.is_dir():
        raise OutputError(f"{path}: output folder {path.parent} does not exist")


def write_file(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` directly (a file in a staging or temporary
    folder that is renamed or removed as a whole); a failed write is a
    one-line OutputError naming the file."""
    path = Path(path)
    try:
        path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    except OSError as e:
        if e.errno not in WRITE_ERRNOS:
            raise
        with contextlib.suppress(OSError):
            path.unlink()
        raise OutputError(f"{path}: cannot write: {e.strerror}") from None
    return path


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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep_temporaries(folder: Path, prefix: str) -> None:
    """Remove what killed writers left in ``folder``: entries named
    ``prefix`` + the writer's pid + ``.`` or ``-`` ..., when that process is
    gone (a live writer's are left alone)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if not name.startswith(prefix):
            continue
        digits = name[len(prefix):].split(".", 1)[0].split("-", 1)[0]
        if not digits.isdigit() or int(digits) == os.getpid() or _alive(int(digits)):
            continue
        p = folder / name
        with contextlib.suppress(OSError):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()


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
    sweep_temporaries(path.parent, f".{path.stem}.tmp-")  # a killed run's half-written file of this name
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{suffix}")
    try:
        try:
            yield tmp
            os.replace(tmp, path)
        except OutputError:
            raise
        except Exception as e:  # a full disk, a size limit: say which file (the temporary one goes below)
            failed = write_failure(e)
            if failed is None:
                raise
            raise OutputError(f"{path}: cannot write: {str(failed).split('cannot write: ', 1)[-1]}") from None
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
    sweep_temporaries(path.parent, f".{path.name}.{what}-")  # staging folders of killed runs
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.{what}-{os.getpid()}-", dir=path.parent))


RENAME_EXCHANGE = 2  # linux/fs.h: swap two paths in one step


def _exchange(a: Path, b: Path) -> bool:
    """Swap the folders ``a`` and ``b`` in one step (renameat2 with
    RENAME_EXCHANGE: Linux 3.15+, glibc 2.28+); False where the platform or
    the file system cannot."""
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd = -100
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def replace_folder(staged: Path, target: Path) -> None:
    """Put the complete folder ``staged`` (made by ``temp_dir_beside(target)``)
    in place of ``target`` in one step, so that a reader, or a kill -9 at any
    moment, sees the old folder whole or the new one whole, never a mix: a
    rename when ``target`` is new, an atomic exchange when it exists (the old
    contents end at ``staged``'s name and are removed; a kill before that
    leaves them to the next write's sweep). Where the file system cannot
    exchange, the old folder is renamed aside first (a short window with no
    ``target``)."""
    if target.exists():  # the folder keeps its permissions (the staging folder was made private)
        os.chmod(staged, target.stat().st_mode & 0o7777)
    else:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(staged, 0o777 & ~mask)
    for f in staged.rglob("*"):  # the files' data on disk before the name points at them
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    if not target.exists():
        os.rename(staged, target)
    elif not _exchange(staged, target):
        aside = staged.with_name(staged.name + "-old")
        os.rename(target, aside)
        os.rename(staged, target)
        staged = aside
    _fsync_dir(target.parent)
    if staged.exists():
        shutil.rmtree(staged, ignore_errors=True)


@contextlib.contextmanager
def held(lock: str | Path, busy: Any, remove: bool = False) -> Iterator[None]:
    """Hold ``lock`` (a file) for this process: when another live process
    holds it, raise ``busy(pid)`` (the error that names it). The lock goes with
    the process, so one left by a killed run is simply taken over. ``remove``:
    delete the file when done (a lock beside a user's file, not in a run
    folder)."""
    lock = Path(lock)
    while True:
        f = open(lock, "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid = f.read().strip() or "?"
            f.close()
            raise busy(pid) from None
        try:
            same = os.fstat(f.fileno()).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        f.close()  # the holder removed the file as we opened it: take the one there now
    try:
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        yield
    finally:
        if remove:
            with contextlib.suppress(OSError):
                lock.unlink()  # still held: a process that opened it meanwhile sees another file and retries
        f.close()


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one record durably (flushed and fsynced before returning). A
    torn line left by an earlier kill is ended first, so it cannot swallow
    this record."""
    line = (json.dumps(record, sort_keys=True, default=jsonable) + "\n").encode()
    try:
        with open(path, "a+b", buffering=0) as f:  # unbuffered: what failed to go out can be taken back
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # one writer at a time (two searches sharing a latency cache)
            end = f.seek(0, os.SEEK_END)
            if end:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    line = b"\n" + line
            try:
                view = memoryview(line)
                while view:
                    n = f.write(view)
                    if not n:
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    view = view[n:]
                os.fsync(f.fileno())
            except OSError:
                os.ftruncate(f.fileno(), end)  # no torn record left behind
                raise
    except OSError as e:
        if e.errno not in WRITE_ERRNOS:
            raise
        raise OutputError(f"{path}: cannot write: {e.strerror}") from None


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
