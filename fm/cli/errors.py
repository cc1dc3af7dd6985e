"""How every fm command reports a user's bad input: one line on stderr and exit status 1, no
traceback (anything else that escapes is a bug and keeps its traceback)."""

from __future__ import annotations

import functools
import sys

import click

from fm.core.errors import InputError, OutputExistsError

EXIT_BAD_INPUT = 1


def reports_input_errors(command):
    """Turn InputError into `error: <what was given>: <problem>` and a non-zero exit."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except OutputExistsError as err:
            click.echo(f"error: {err.for_cli()}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except InputError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(EXIT_BAD_INPUT)

    return wrapper
