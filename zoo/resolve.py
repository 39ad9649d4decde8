"""A zoo name (with overrides) or a spec JSON file -> a validated spec: the
one resolution every verb and library entry point uses."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from odml.errors import SpecError


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
