"""Known problems end a command with their message (exit 1), not a traceback."""

from __future__ import annotations

import functools
from collections.abc import Callable

import click


def reported(*errors: type[Exception]) -> Callable:
    """Decorator: turn `errors` raised by the command into a clean ClickException."""

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            try:
                return command(*args, **kwargs)
            except errors as err:
                raise click.ClickException(str(err)) from err

        return wrapper

    return decorate
