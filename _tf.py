"""The one place odml imports TensorFlow: it selects Keras 2 (tf_keras) first,
because the compression toolkit rejects Keras 3 models, and keeps TensorFlow's
C++ start-up chatter (CUDA probes, absl warnings) off the user's terminal.
Set ODML_TF_VERBOSE=1 to see it."""

from __future__ import annotations

import os

from odml._fd import quiet_stderr_fd  # noqa: F401  (re-exported)


def _prepare_env() -> None:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


_TF = None


def tf():
    global _TF
    if _TF is None:
        _prepare_env()
        with quiet_stderr_fd():
            import tensorflow

            tensorflow.get_logger().setLevel("ERROR")
            tensorflow.config.list_physical_devices()  # the CUDA probe logs here, once
        _TF = tensorflow
    return _TF


def keras():
    """The tf_keras (Keras 2) module."""
    tf()
    import tf_keras

    return tf_keras
