"""The zoo: the model families (``odml/zoo/families/``, one module each), the
spec language, and one registry of every family's models by name.

Importing this package does not import TensorFlow; building a model does.

    from odml.zoo import list_models, create_config, create_model
    list_models("pqrnn*")                  # every family's entries
    cfg = create_config("pqrnn_tiny", classes=3)
    model = create_model("mobilenet_edgetpu_v2_tiny", num_classes=10, input_size=32, width=0.5)
"""

from odml.zoo.registry import (  # noqa: F401
    create_config, create_model, create_spec, get_entry, get_family, list_models, resolve)
from odml.zoo.registry import families as list_families  # noqa: F401  (odml.zoo.families is the package of families)
from odml.zoo.spec import Block, Head, ModelSpec, Stem, parse_block  # noqa: F401
