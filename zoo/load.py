"""Load a user's Keras model safely: ``safe_mode=True`` (no arbitrary code
from Lambda layers), odml's own layers registered first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from odml.errors import OdmlError


class ModelFileError(OdmlError):
    """A model file that is missing, malformed or unsafe to load."""


def load_keras_model(path: str | Path) -> Any:
    from odml._tf import keras, quiet_stderr_fd
    import odml.zoo.blazepose  # noqa: F401  (registers odml's custom layers)
    import odml.zoo.blocks  # noqa: F401
    import odml.zoo.mobilebert  # noqa: F401
    import odml.zoo.pqrnn  # noqa: F401

    K = keras()
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"{p}: model not found")
    if p.is_dir():
        raise ModelFileError(f"{p}: is a folder; SavedModel folders are read by 'odml export'")
    if p.suffix.lower() not in (".keras", ".h5"):
        raise ModelFileError(f"{p}: expected a .keras or .h5 model")
    try:
        with quiet_stderr_fd():
            return K.models.load_model(p, compile=False, safe_mode=True)
    except Exception as e:  # Keras raises many types for a bad file; all mean the same to the user
        msg = " ".join(str(e).split())[:300]
        raise ModelFileError(f"{p}: cannot load Keras model: {type(e).__name__}: {msg}") from None
