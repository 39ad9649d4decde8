"""Errors a user can cause. The CLI prints the message on one line and exits
with ``exit_code``: 2 for bad input, 1 for a failed check. A bug of odml's
(any other exception) exits with ``INTERNAL_ERROR``, so that a CI gate can
tell a regression (1) from bad input (2) and from a crash of the tool (70).

    0 ok   1 a check failed (parity, a budget, a gate)   2 bad input   70 internal error   130 interrupted
"""

from __future__ import annotations

OK, CHECK_FAILED, BAD_INPUT = 0, 1, 2
INTERNAL_ERROR = 70  # EX_SOFTWARE of BSD's sysexits.h: an internal software error
INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


class OdmlError(Exception):
    """Base class: a problem with the user's input, described in one line."""

    exit_code = BAD_INPUT

    def __str__(self) -> str:  # keep it to one line whatever the cause says
        return " ".join(str(self.args[0] if self.args else "").split())


class SpecError(OdmlError):
    """An architecture spec that cannot be parsed or is invalid."""


class NotThisFormat(SpecError):
    """A spec file that is not this family's format (several families read
    the same suffix: the registry asks the next one)."""


class UnknownModelError(OdmlError):
    """A zoo name that is not registered."""


class DataError(OdmlError):
    """A dataset that is missing, malformed or unusable."""


class UnsupportedError(OdmlError):
    """Something a model's family does not do (a hook of ``zoo.family.Family``
    it does not provide), or an option it does not take: "<family>: <what> is
    not supported"."""


class OutputError(OdmlError):
    """An output path that cannot be written."""


class CheckFailed(OdmlError):
    """A check the user asked for did not pass (a budget, a parity threshold)."""

    exit_code = CHECK_FAILED
