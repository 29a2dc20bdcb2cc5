"""The Typer application that every ``dm_core.cli`` submodule adds its commands to."""

from __future__ import annotations

import typer

from dm_core import __version__

app = typer.Typer(
    name="dm",
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
