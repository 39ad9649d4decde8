"""The one place odml imports TensorFlow: it selects Keras 2 (tf_keras) first,
because the compression toolkit rejects Keras 3 models, and keeps TensorFlow's
C++ start-up chatter (CUDA probes, absl warnings) off the user's terminal.
Set ODML_TF_VERBOSE=1 to see it."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile


def _prepare_env() -> None:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


@contextlib.contextmanager
def quiet_stderr_fd():
    """Send what native code writes to file descriptor 2 to a temporary file;
    show it only if the block raises."""
    if os.environ.get("ODML_TF_VERBOSE") == "1":
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters)
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


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
