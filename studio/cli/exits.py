"""How a ``dm`` command ends on an error: one line on stderr instead of a traceback, exit
code 2 for an invalid config or option, 1 for everything else (an unknown run, a refused
transition, the database).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from rich.console import Console

from dm_core.registry import ConfigError
from dm_store import RunNotFound, StoreError
from studio.cli._app import invalid_config_text

__all__ = ["err_console", "fail", "user_errors"]

err_console = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    err_console.print(f"error: {message}", markup=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """One clear line instead of a traceback for every error a user can cause."""
    try:
        yield
    except RunNotFound as err:
        fail(str(err))
    except ConfigError as err:
        fail(invalid_config_text(err), 2)
    except StoreError as err:
        fail(str(err))
    except ValueError as err:
        fail(str(err), 2)
