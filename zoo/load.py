"""Load a user's Keras model safely (``safe_mode=True``: no arbitrary code from
Lambda layers; odml's own layers registered first) together with its model
card: what the model is comes from the card beside it, or, for a model odml
did not make, from the model itself (the ``keras`` family)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from odml.errors import OdmlError
from odml.zoo.card import Carded


class ModelFileError(OdmlError):
    """A model file that is missing, malformed or unsafe to load."""


def _register_layers() -> None:
    import odml.zoo.blazepose  # noqa: F401  (registers odml's custom layers)
    import odml.zoo.blocks  # noqa: F401
    import odml.zoo.mobilebert  # noqa: F401
    import odml.zoo.pqrnn  # noqa: F401


def load_keras_model(path: str | Path) -> Any:
    from odml._tf import keras, quiet_stderr_fd

    _register_layers()
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


def load_keras_savedmodel(p: Path) -> Any:
    """A Keras model saved in the SavedModel format (``model.save(folder)``).
    Its functions are traced graphs, not Python, so there is no code to run."""
    from odml._tf import keras, quiet_stderr_fd

    _register_layers()
    if not (p / "saved_model.pb").is_file():
        raise ModelFileError(f"{p}: folder without saved_model.pb (not a SavedModel)")
    K = keras()
    try:
        with quiet_stderr_fd():
            model = K.models.load_model(p, compile=False)
    except Exception as e:
        msg = " ".join(str(e).split())[:300]
        raise ModelFileError(f"{p}: cannot load the SavedModel as a Keras model: {type(e).__name__}: {msg}") from None
    if not isinstance(model, K.Model) or not getattr(model, "inputs", None):
        raise ModelFileError(f"{p}: the SavedModel is not a Keras model (save it with model.save)")
    return model


@dataclass
class Loaded(Carded):
    """A model loaded from a file, with its card."""

    path: Path
    model: Any  # the tf_keras model
    card: Any  # ModelCard

    @property
    def counts(self) -> Any:
        return self.card.family.count(self.card.config)


def card_of(model: Any, path: Path) -> Any:
    """The card saved beside ``path``, checked against the loaded model, or a
    card of the ``keras_model`` family read off the model."""
    from odml.zoo.card import ModelCard
    from odml.zoo.registry import get_family

    card = ModelCard.load(path) if not path.is_dir() else None
    stem = path.stem if path.suffix else path.name
    if card is None:
        fam = get_family(FOREIGN)
        try:
            return ModelCard(fam, fam.from_model(model, str(path)), stem)
        except OdmlError as e:
            raise ModelFileError(str(e)) from None
    shape = tuple(int(d) for d in model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else None
    if shape is not None and shape != tuple(card.input.shape):
        raise ModelFileError(f"{path}: the model takes {list(shape)} but its card ({stem}.odml.json) says "
                             f"{list(card.input.shape)}; the card belongs to another model")
    card.name = card.name or stem
    return card


FOREIGN = "keras_model"  # the family of models odml did not make


def foreign_card(input_shape: tuple[int, ...], output_shape: tuple[int, ...], dtype: str = "float32",
                 name: str = "") -> Any:
    """The card of a model odml did not make, from its tensors alone (a
    SavedModel's signature, a .tflite without odml metadata)."""
    from odml.zoo.card import ModelCard
    from odml.zoo.families.keras import KerasModelConfig
    from odml.zoo.registry import get_family

    cfg = KerasModelConfig(tuple(int(d) for d in input_shape), tuple(int(d) for d in output_shape), dtype)
    return ModelCard(get_family(FOREIGN), cfg, name)


def load_model(path: str | Path) -> Loaded:
    """A .keras / .h5 file or a Keras SavedModel folder, with its card."""
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"{p}: model not found")
    model = load_keras_savedmodel(p) if p.is_dir() else load_keras_model(p)
    return Loaded(p, model, card_of(model, p))


def save_model(model: Any, path: str | Path, card: Any) -> Path:
    """Save a tf_keras model through a temporary name and a rename, and its
    card beside it."""
    from odml.files import atomic_output

    p = Path(path)
    with atomic_output(p) as tmp:
        model.save(tmp)
    card.name = card.name or p.stem
    card.save(p)
    return p
