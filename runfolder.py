"""One run folder for every long, resumable job (search, compress, pose
training): the settings it was started with, refusal to resume with other
settings (naming every key that differs), keys added to the settings after a
run began read as their defaults, a lock against a second live run in the
same folder, durable JSONL records and atomic state files.

    run = RunFolder(out, "compress.json", "compression run", CompressError)
    resuming = run.check(settings, defaults={"recipe": Recipe().to_dict()})
    with run.lock():
        run.write_settings(settings)
        run.append("results.jsonl", row)
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

from odml.errors import OdmlError
from odml.files import append_jsonl, held, read_jsonl, write_json_atomic

LOCK = ".lock"


class RunFolderError(OdmlError):
    """A run folder that cannot be used for this run."""


def with_defaults(d: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``d`` with every key of ``defaults`` it lacks (recursively in dicts)."""
    out = dict(d)
    for k, v in defaults.items():
        if k not in out:
            out[k] = v
        elif isinstance(v, dict) and isinstance(out[k], dict):
            out[k] = with_defaults(out[k], v)
    return out


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def differences(old: dict[str, Any], new: dict[str, Any], keys: tuple[str, ...] | None = None,
                ignore: tuple[str, ...] = ()) -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) of every setting that differs; only
    ``keys`` (top-level) when given, never those in ``ignore``."""
    def pick(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if (keys is None or k in keys) and k not in ignore}

    a, b = _flatten(pick(json.loads(json.dumps(old, default=str)))), _flatten(pick(json.loads(json.dumps(new, default=str))))
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def set_dotted(obj: Any, overrides: dict[str, Any]) -> Any:
    """``obj`` (nested dataclasses, such as a recipe) with the value of each
    dotted key of ``overrides`` (``epochs``, ``distill.joint``) set in place,
    in order; a value of None is skipped (a command-line option not given)."""
    for key, value in overrides.items():
        if value is None:
            continue
        *path, last = key.split(".")
        target = obj
        for part in path:
            target = getattr(target, part)
        if not hasattr(target, last):
            raise KeyError(f"{key}: no such setting of {type(obj).__name__}")
        setattr(target, last, value)
    return obj


def _short(v: Any, n: int = 48) -> str:
    s = repr(v)
    return s if len(s) <= n else s[: n - 3] + "..."


class RunFolder:
    def __init__(self, path: str | Path, settings_name: str, what: str = "run",
                 error: type[OdmlError] = RunFolderError, flag: str = "--out"):
        self.path, self.settings_name, self.what, self.error, self.flag = Path(path), settings_name, what, error, flag

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def settings_path(self) -> Path:
        return self.path / self.settings_name

    def saved(self) -> dict[str, Any] | None:
        """The settings of the run in this folder, or None when there is none."""
        p = self.settings_path
        if not p.is_file():
            return None
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise self.error(f"{p}: unreadable settings of an earlier {self.what}: {e}") from None
        if not isinstance(d, dict):
            raise self.error(f"{p}: unreadable settings of an earlier {self.what}: not a JSON object")
        return d

    def check(self, settings: dict[str, Any], defaults: dict[str, Any] | None = None,
              keys: tuple[str, ...] | None = None, ignore: tuple[str, ...] = (), foreign_ok: bool = False,
              upgrade: Any = None) -> bool:
        """Refuse a folder that cannot hold this run; True when it holds the
        same run (resume). Nothing is written. ``defaults``: what keys that
        did not exist when the run began mean; ``keys``: the settings that
        must match (default: all but ``ignore``); ``foreign_ok``: a folder
        with other files and no settings is fine (a worker of a search)."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise self.error(f"{self.flag} {p}: is a file, expected a run folder")
        parent = next((q for q in p.parents if q.exists()), None)
        if not p.exists() and parent is not None and not (parent.is_dir() and os.access(parent, os.W_OK)):
            raise self.error(f"{self.flag} {p}: cannot create it under {parent}")
        old = self.saved()
        if old is None:
            if not foreign_ok and p.is_dir() and any(n != LOCK for n in os.listdir(p)):
                raise self.error(f"{self.flag} {p}: folder exists and holds no {self.what} ({self.settings_name} "
                                 "missing); use a new folder")
            return False
        if defaults:
            old = with_defaults(old, defaults)
        if upgrade is not None:  # settings an older version wrote in another form
            old = upgrade(old)
        diff = differences(old, settings, keys, ignore)
        if diff:
            said = "; ".join(f"{k}: {_short(a)} there, {_short(b)} now" for k, a, b in diff[:4])
            more = f"; and {len(diff) - 4} more" if len(diff) > 4 else ""
            raise self.error(f"{self.flag} {p}: holds a {self.what} with other settings ({said}{more}); resume "
                             "with the same settings or use a new folder")
        return True

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def write_settings(self, settings: dict[str, Any]) -> None:
        self.create()
        write_json_atomic(self.settings_path, settings)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder for this process: a second live run in the same
        folder is refused with one line (the lock goes with the process, so a
        killed run leaves none behind)."""
        self.create()

        def busy(pid: str) -> OdmlError:
            return self.error(f"{self.flag} {self.path}: another odml process (pid {pid}) is running a "
                              f"{self.what} in this folder; wait for it or use another folder")

        with held(self.path / LOCK, busy):
            yield

    # ---- records and state ------------------------------------------------------
    def append(self, name: str, record: dict[str, Any]) -> None:
        append_jsonl(self.path / name, record)

    def records(self, name: str) -> list[dict[str, Any]]:
        return read_jsonl(self.path / name)

    def read_state(self, name: str) -> dict[str, Any]:
        p = self.path / name
        if not p.is_file():
            return {}
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise self.error(f"{p}: unreadable state of an earlier {self.what}: {e}") from None
        return d if isinstance(d, dict) else {}

    def write_state(self, name: str, state: dict[str, Any]) -> None:
        self.create()
        write_json_atomic(self.path / name, state)
