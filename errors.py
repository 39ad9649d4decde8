"""Errors a user can cause. The CLI prints the message on one line and exits
with ``exit_code``: 2 for bad input, 1 for a failed check."""

from __future__ import annotations


class OdmlError(Exception):
    """Base class: a problem with the user's input, described in one line."""

    exit_code = 2

    def __str__(self) -> str:  # keep it to one line whatever the cause says
        return " ".join(str(self.args[0] if self.args else "").split())


class SpecError(OdmlError):
    """An architecture spec that cannot be parsed or is invalid."""


class UnknownModelError(OdmlError):
    """A zoo name that is not registered."""


class DataError(OdmlError):
    """A dataset that is missing, malformed or unusable."""


class OutputError(OdmlError):
    """An output path that cannot be written."""


class CheckFailed(OdmlError):
    """A check the user asked for did not pass (a budget, a parity threshold)."""

    exit_code = 1
