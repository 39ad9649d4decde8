"""A registry of model families in the timm style: builders register by name,
``list_models(pattern)`` lists them and ``create_spec(name, **overrides)``
gives the spec (``create_model`` builds it with tf_keras)."""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from typing import Any, Callable

from odml.errors import UnknownModelError


@dataclass(frozen=True)
class Entry:
    name: str
    task: str
    builder: Callable[..., Any]  # (**overrides) -> ModelSpec
    description: str = ""


_REGISTRY: dict[str, Entry] = {}


def register(name: str, task: str, description: str = ""):
    def deco(fn):
        _REGISTRY[name] = Entry(name, task, fn, description)
        return fn

    return deco


def _load_families() -> None:
    # importing a family module registers its models
    from odml.zoo import mobilenet_edgetpu  # noqa: F401


def list_models(pattern: str | None = None) -> list[str]:
    _load_families()
    names = sorted(_REGISTRY)
    if pattern:  # a glob or a plain substring, matched anywhere in the name
        names = [n for n in names if fnmatch.fnmatch(n, pattern) or fnmatch.fnmatch(n, f"*{pattern}*")]
    return names


def get_entry(name: str) -> Entry:
    _load_families()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see 'odml zoo list'"
        raise UnknownModelError(f"unknown model {name!r}{hint}")
    return _REGISTRY[name]


def create_spec(name: str, **overrides: Any):
    """The spec of zoo model ``name`` with overrides (num_classes, input_size,
    width, ...)."""
    return get_entry(name).builder(**{k: v for k, v in overrides.items() if v is not None})
