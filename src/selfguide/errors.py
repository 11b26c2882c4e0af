"""User-facing errors: the CLI prints them without a traceback and exits with code 2."""

from __future__ import annotations

from pathlib import Path


class SelfGuideError(Exception):
    """A problem with the user's input or setup, worded so they can fix it."""

    exit_code = 2


class BadInputError(SelfGuideError):
    """A file or value the user gave does not have the expected shape."""

    def __init__(self, source: str | Path, where: str, expected: str, got: str | None = None):
        self.source, self.where, self.expected, self.got = str(source), where, expected, got
        message = f"{source}: {where}: expected {expected}"
        if got is not None:
            message += f", got {got}"
        super().__init__(message)


class MissingDependencyError(SelfGuideError):
    """An optional extra (vllm, serving) was chosen but is not installed."""


class BudgetExceeded(SelfGuideError):
    """A run stopped at its --max-calls budget; everything finished so far is cached."""

    exit_code = 3
