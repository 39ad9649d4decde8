"""Ctrl-C that is never lost.

Python turns SIGINT into a KeyboardInterrupt at the next bytecode of the main
thread; when that happens inside a finaliser or a callback whose exceptions
are swallowed (a ``__del__`` run by the garbage collector, a TensorFlow
py_function), the interrupt disappears and a long run goes on. The handler
installed here also remembers the signal, and the long loops (training steps
and epochs) call :func:`check` between steps, so the interrupt is raised again
where it is sure to reach the command."""

from __future__ import annotations

import signal
import threading

_pending = {"sigint": False}


def _handler(signum, frame) -> None:  # noqa: ARG001 - the signal module's signature
    _pending["sigint"] = True
    raise KeyboardInterrupt


def install() -> None:
    """Use the remembering handler (main thread only, and only where SIGINT
    still has Python's default handler: a host program's own is kept)."""
    if threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _handler)


def clear() -> None:
    """A new command starts with no interrupt pending."""
    _pending["sigint"] = False


def check() -> None:
    """Raise KeyboardInterrupt if Ctrl-C came and has not yet been handled."""
    if _pending["sigint"]:
        _pending["sigint"] = False
        raise KeyboardInterrupt
