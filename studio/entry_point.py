"""The ``dm`` console script: the command line, once the studio's dependencies are known to be
installed.

The distribution's base dependencies are the engine's alone (``pip install dm-studio`` gives
``dm_core``); the store, the workers, the command line and the dashboard need the ``studio``
extra. Without it, ``dm`` would fail on its first import with a traceback about Typer or
SQLAlchemy; instead it names what is missing and the command that installs it. The list is the
installed distribution's own metadata (pyproject.toml's ``studio`` extra), so it cannot drift.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from importlib import metadata

DISTRIBUTION = "dm-studio"
EXTRA = "studio"
INSTALL_HINT = f"pip install '{DISTRIBUTION}[{EXTRA}]'"

# A requirement's distribution name (PEP 508): what precedes its extras, version and marker.
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")

__all__ = ["DISTRIBUTION", "EXTRA", "INSTALL_HINT", "main", "missing_requirements"]


def _installed(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def missing_requirements(requirements: Iterable[str], extra: str = EXTRA) -> list[str]:
    """The distributions that ``requirements`` (``Requires-Dist`` lines) ask for under
    ``extra`` and that are not installed, in their order.

    >>> missing_requirements(["numpy>=1.26", 'not-a-distribution-dm>=1; extra == "studio"',
    ...                       'pytest>=8; extra == "dev"'])
    ['not-a-distribution-dm']
    """
    missing = []
    for requirement in requirements:
        requirement, _, marker = requirement.partition(";")
        extras = _EXTRA_MARKER.findall(marker)
        name = _NAME.match(requirement)
        if extra in extras and name and not _installed(name.group(1)):
            missing.append(name.group(1))
    return missing


def main() -> None:
    """Run ``dm``; exit 1 with the install command when the studio extra is incomplete."""
    try:
        requirements = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:  # run from a checkout that is not installed
        requirements = []
    missing = missing_requirements(requirements)
    if missing:
        sys.exit(f"dm: error: the dm command needs the {EXTRA} extra of {DISTRIBUTION}, and "
                 f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed: "
                 f"{INSTALL_HINT}")
    from studio.cli import app

    app(prog_name="dm")
