"""One registry of model families and their zoo entries, in the timm style:
``list_models(pattern)`` lists every family's models, ``create_config(name,
**overrides)`` gives a configuration and ``create_model`` builds it with
tf_keras; ``resolve(model)`` turns a zoo name or a spec file into a
:class:`~odml.zoo.family.Configured`.

Families register themselves when their module in ``odml/zoo/families/`` is
imported; every module there is imported on first use, so a new kind of model
is one new file in that folder."""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from odml.errors import SpecError, UnknownModelError

_FAMILIES: dict[str, Any] = {}
_LOADED = False


def register_family(cls: type) -> type:
    """Class decorator: register one instance of a Family subclass."""
    _FAMILIES[cls.name] = cls()
    return cls


def _load_families() -> None:
    global _LOADED
    if _LOADED:
        return
    pkg = importlib.import_module("odml.zoo.families")

    for m in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        importlib.import_module(f"{pkg.__name__}.{m.name}")
    _LOADED = True


def families() -> list[Any]:
    _load_families()
    return list(_FAMILIES.values())


def get_family(name: str) -> Any:
    _load_families()
    if name not in _FAMILIES:
        raise UnknownModelError(f"unknown model family {name!r}; odml knows {', '.join(sorted(_FAMILIES))}")
    return _FAMILIES[name]


def _entries(hidden: bool = True) -> dict[str, Any]:
    out = {}
    for fam in families():
        for name in fam.models():
            out[name] = fam
        if hidden:
            for name in fam.hidden():
                out[name] = fam
    return out


def list_models(pattern: str | None = None) -> list[str]:
    """Every listed zoo entry of every family (a glob or a substring)."""
    names = sorted(_entries(hidden=False))
    if pattern:  # a glob or a plain substring, matched anywhere in the name
        names = [n for n in names if fnmatch.fnmatch(n, pattern) or fnmatch.fnmatch(n, f"*{pattern}*")]
    return names


@dataclass(frozen=True)
class Entry:
    name: str
    family: Any
    description: str

    @property
    def task(self) -> str:
        return self.family.zoo_task


def family_of(name: str) -> Any:
    """The family of zoo entry ``name``; a one-line error with suggestions."""
    entries = _entries()
    if name not in entries:
        close = difflib.get_close_matches(name, list(entries), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see 'odml zoo list'"
        raise UnknownModelError(f"unknown model {name!r}{hint}")
    return entries[name]


def get_entry(name: str) -> Entry:
    fam = family_of(name)
    return Entry(name, fam, fam.models().get(name, ""))


def is_model(name: str) -> bool:
    return name in _entries()


def create_config(name: str, classes: int | None = None, input_size: Any = None, width: float | None = None,
                  **fields: Any) -> Any:
    """The configuration of zoo entry ``name`` with overrides: the class
    count, the input size (a text model: its sequence length), a width
    multiplier, and any field of the family's configuration."""
    return family_of(name).configure(name, classes=classes, input_size=input_size, width=width,
                                     sets={k: v for k, v in fields.items() if v is not None} or None)


def create_spec(name: str, num_classes: int | None = None, input_size: Any = None, width: float | None = None,
                **overrides: Any):
    """The ModelSpec of an image zoo entry (MobileNetEdgeTPU v1/v2) with
    overrides (num_classes, input_size, width, dropout, drop_connect_rate)."""
    from odml.zoo.spec import ModelSpec

    cfg = create_config(name, num_classes, input_size, width, **overrides)
    if not isinstance(cfg, ModelSpec):
        raise SpecError(f"{name}: a {family_of(name).name} model is configured by create_config, not a spec")
    return cfg


def resolve(model: str, classes: int | None = None, input_size: Any = None, width: float | None = None,
            sets: list[str] | None = None) -> Any:
    """A zoo name (with overrides) or a spec file -> Configured(family,
    config, name), validated. ``sets``: ``KEY=VALUE`` overrides."""
    from odml.zoo.family import Configured

    if is_model(model):
        fam = family_of(model)
        parsed = fam.parse_sets(sets, fam.config(model)) if sets else None
        cfg = fam.configure(model, classes=classes, input_size=input_size, width=width, sets=parsed)
        return Configured(fam, cfg, model)
    p = Path(model)
    readers = [f for f in families() if p.suffix.lower() in f.file_suffixes]
    looks_like_file = bool(readers) or p.exists() or "/" in model
    if not looks_like_file:
        family_of(model)  # the unknown-name error, with suggestions
    if not readers:
        kinds = sorted({s for f in families() for s in f.file_suffixes})
        raise SpecError(f"{model}: not a zoo name nor a spec file ({', '.join(kinds)})")
    if sets:
        raise SpecError(f"{model}: --set applies to zoo names; edit the file instead")
    # several families read this suffix (specs of classifiers and of segmentation models are JSON): a family
    # says NotThisFormat of a file that is not its format, and the next is asked; any other error is the answer
    from odml.errors import NotThisFormat

    first: SpecError | None = None
    for fam in readers:
        try:
            cfg = fam.load_file(model, classes=classes, input_size=input_size, width=width)
        except NotThisFormat as e:
            first = first or e
            continue
        return Configured(fam, cfg, getattr(cfg, "name", None) or p.stem)
    assert first is not None
    raise first


def family_for(config: Any) -> Any:
    """The family whose configuration type ``config`` is."""
    for fam in families():
        if fam.config_type is not None and type(config) is fam.config_type:
            return fam
    raise SpecError(f"{type(config).__name__} is not the configuration of any model family")


def create_model(name_or_config: Any, **overrides: Any) -> Any:
    """Build a tf_keras model from a zoo name (with overrides) or a
    configuration (a ModelSpec, or any family's configuration)."""
    if isinstance(name_or_config, str):
        return family_of(name_or_config).build(create_config(name_or_config, **overrides), name_or_config)
    return family_for(name_or_config).build(name_or_config)
