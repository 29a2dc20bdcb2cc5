"""The ``dm`` command line. Each submodule registers its commands on the one Typer app, and
``dm --help`` lists them in the order they are registered: queueing and reading runs first."""

# isort: off
from studio.cli import submit as _submit  # noqa: F401  (registers commands)
from studio.cli import runs as _runs  # noqa: F401
from studio.cli import control as _control  # noqa: F401
from studio.cli import export as _export  # noqa: F401
from studio.cli import worker as _worker  # noqa: F401
from studio.cli import db as _db  # noqa: F401
from studio.cli import examples as _examples  # noqa: F401
from studio.cli import study as _study  # noqa: F401
from studio.cli import repro as _repro  # noqa: F401
from studio.cli import slurm as _slurm  # noqa: F401
from studio.cli import train as _train  # noqa: F401
from studio.cli import up as _up  # noqa: F401
# isort: on
from studio.cli._app import app

__all__ = ["app"]
