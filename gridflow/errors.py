"""One exception family. Every message is a single line a user can act on."""

from __future__ import annotations


class GridflowError(Exception):
    """Base class: anything gridflow reports to a user."""

    exit_code = 2


class CaseError(GridflowError):
    """A case file, net or name that cannot be read or is not a valid network."""

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None):
        where = ""
        if source is not None:
            where = f"{source}:{line}: " if line is not None else f"{source}: "
        super().__init__(where + message)
        self.source = source
        self.line = line


class ScenarioError(GridflowError):
    """A study scenario (TOML or Python) that cannot be used."""


class ConvergenceError(GridflowError):
    """The power flow did not converge; carries the worst mismatch and where."""

    exit_code = 3


class ValidationMismatch(GridflowError):
    """gridflow and the reference solver disagree beyond tolerance."""

    exit_code = 1
