"""The one exception type for bad input, so callers and the CLI can tell a user's file problem
from a bug in this package."""

from __future__ import annotations

import os


class InputFileError(ValueError):
    """A file the user gave cannot be used. The message always names the file and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class OutputExistsError(InputFileError):
    """An output path already holds a file, and nothing may be replaced unless asked: the CLI
    names its own option (--overwrite) in the message instead of the Python argument."""

    def __init__(self, path: str | os.PathLike, clash: str):
        self.clash = clash  # what is there, e.g. "already exists"
        super().__init__(path, f"{clash}; overwrite=True replaces it")

    def for_cli(self) -> str:
        return f"{self.path}: {self.clash}; add --overwrite to replace"
