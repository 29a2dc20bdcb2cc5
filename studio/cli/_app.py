"""The Typer application that every ``studio.cli`` submodule adds its commands to.

It also warns, before any command runs, when ``--db`` on the command line carries a password:
every user of the machine can read command lines (``ps``, ``/proc/*/cmdline``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import typer
from typer.core import TyperGroup

from dm_core import __version__

if TYPE_CHECKING:
    from dm_core.registry import ConfigError

DB_PASSWORD_WARNING = (
    "dm: WARNING: --db carries a password, and every user of this machine can read command "
    "lines (ps, /proc/*/cmdline; your shell history keeps it too). Put the URL in "
    "DM_DATABASE_URL, or in a file named by DM_DATABASE_URL_FILE (e.g. a Docker secret), "
    "instead.")


def db_argument(args: list[str]) -> str | None:
    """The value of ``--db URL`` / ``--db=URL`` among command-line arguments, or None."""
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--db" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--db="):
            return arg.removeprefix("--db=")
    return None


def url_has_password(url: str) -> bool:
    """True when ``url`` has a password (``scheme://user:PASSWORD@host/...``).

    >>> url_has_password("postgresql+psycopg://dm:secret@db/dm"), url_has_password("sqlite:///x")
    (True, False)
    """
    try:
        return bool(urlsplit(url).password)
    except ValueError:  # not a URL at all: the command itself will say so
        return False


def warn_if_db_argument_has_password(args: list[str]) -> None:
    """Warn on stderr when ``--db`` on the command line carries a password."""
    url = db_argument(args)
    if url is not None and url_has_password(url):
        typer.echo(DB_PASSWORD_WARNING, err=True)


def invalid_config_text(err: ConfigError) -> str:
    """What a command prints for an invalid config: the one problem on one line, or one
    indented ``field: message`` line per problem.

    >>> from dm_core.registry import ConfigError
    >>> print(invalid_config_text(ConfigError("loss.lam: must be >= 0")))
    invalid config: loss.lam: must be >= 0
    >>> print(invalid_config_text(ConfigError(errors=[("loss.lam", "must be >= 0"), ("seed", "too big")])))
    invalid config (2 problems):
      loss.lam: must be >= 0
      seed: too big
    """
    lines = err.lines()
    if len(lines) == 1:
        return f"invalid config: {lines[0]}"
    return f"invalid config ({len(lines)} problems):\n" + "\n".join(f"  {line}" for line in lines)


class _DMGroup(TyperGroup):
    """The ``dm`` command group: it sees the whole command line before any command runs."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        warn_if_db_argument_has_password(args)
        return super().parse_args(ctx, args)


app = typer.Typer(
    name="dm",
    cls=_DMGroup,
    help="DM Studio: derivative manipulation for training under label noise and imbalance.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dm-studio {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """DM Studio: derivative manipulation for training under label noise and imbalance."""
