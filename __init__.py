"""odml: from neural-network design to a measured on-device model.

Nothing here imports TensorFlow: ``odml --help`` and ``odml bench`` stay fast.
"""

__version__ = "0.1.0"

from odml.errors import OdmlError  # noqa: E402,F401
