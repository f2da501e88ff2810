"""Errors that digitlab reports to its users as one clear line."""

from __future__ import annotations

from pathlib import Path

INTERRUPTION_EXPLAINED = "digitlab: the interruption was explained where it happened"
"""A note on a KeyboardInterrupt whose consequences were already told to the user (training
says which checkpoint is kept): the command line then adds nothing."""


class DigitlabError(Exception):
    """A problem the user can fix; the CLI prints its message without a traceback."""


class DataError(DigitlabError, ValueError):
    """Bad input data: names the file and, where known, the place in it."""

    def __init__(self, path: str | Path | None, problem: str, place: str | None = None):
        self.path = None if path is None else Path(path)
        self.problem = problem
        self.place = place
        where = "" if path is None else str(path)
        if place:
            where = f"{where}, {place}" if where else place
        super().__init__(f"{where}: {problem}" if where else problem)


class NoDigitError(DataError):
    """An image with no ink: there is no digit in it to read."""

    def __init__(self, path: str | Path | None):
        super().__init__(path, "no digit found")


class OutputExistsError(DigitlabError, FileExistsError):
    """An output would replace something the user already has."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        super().__init__(f"{path} already exists; pass --force to replace it")


class DataNotFoundError(DigitlabError, FileNotFoundError):
    """A named dataset is neither on disk nor downloadable."""
