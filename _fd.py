"""Native libraries (TensorFlow, LiteRT) print to file descriptor 2 from C++,
where Python's sys.stderr redirection cannot reach: capture at the fd level."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile


@contextlib.contextmanager
def quiet_stderr_fd():
    """Send what native code writes to fd 2 to a temporary file; show it only
    if the block raises. ODML_TF_VERBOSE=1 leaves fd 2 alone."""
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
