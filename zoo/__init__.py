"""The zoo: blocks, the spec language and the model families, by name.

Importing this package does not import TensorFlow; ``create_model`` does.
"""

from odml.zoo.registry import create_spec, get_entry, list_models  # noqa: F401
from odml.zoo.spec import Block, Head, ModelSpec, Stem, parse_block  # noqa: F401


def create_model(name_or_spec, **overrides):
    """Build a tf_keras model from a zoo name (with overrides) or a ModelSpec."""
    from odml.zoo.builder import build_model

    spec = name_or_spec if isinstance(name_or_spec, ModelSpec) else create_spec(name_or_spec, **overrides)
    return build_model(spec)
