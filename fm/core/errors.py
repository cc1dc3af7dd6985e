"""The exception types for bad input, so callers and the CLI can tell a user's problem from a bug
in this package: `InputError` is the one to catch; anything else that escapes is a bug."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from typing import Any


class InputError(ValueError):
    """Input the user gave cannot be used: an array or Volume passed in memory, an option value, a
    set of scans. The message names what was given and the problem. A ValueError, so code written
    against the plain type still catches it."""

    def __init__(self, problem: str):
        self.problem = problem
        super().__init__(problem)


class InputFileError(InputError):
    """A file the user gave cannot be used. The message always names the file and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = os.fspath(path)
        super().__init__(f"{self.path}: {problem}")
        self.problem = problem


class OutputExistsError(InputFileError):
    """An output path already holds a file, and nothing may be replaced unless asked: the CLI
    names its own option (--overwrite) in the message instead of the Python argument."""

    def __init__(self, path: str | os.PathLike, clash: str):
        self.clash = clash  # what is there, e.g. "already exists"
        super().__init__(path, f"{clash}; overwrite=True replaces it")

    def for_cli(self) -> str:
        return f"{self.path}: {self.clash}; add --overwrite to replace"


def look_up(option: str, value: Any, choices: Mapping | Collection) -> Any:
    """`choices[value]` for a table (`value` itself for a plain collection of names); an
    InputError naming the option and every choice when `value` is not one of them."""
    if value in choices:
        return choices[value] if isinstance(choices, Mapping) else value
    raise InputError(f"unknown {option} {value!r}; choose from {', '.join(map(str, choices))}")
