"""The shipped study files (``studies/*.yaml``): what ``dm repro NAME`` runs by name.

They are looked up in ``./studies`` (the working directory, as in the Docker image) and then
beside the source tree (an editable install)."""

from __future__ import annotations

from pathlib import Path

_SOURCE_STUDIES = Path(__file__).resolve().parents[2] / "studies"


def study_dirs() -> list[Path]:
    dirs = [Path("studies").resolve(), _SOURCE_STUDIES]
    return [d for i, d in enumerate(dirs) if d.is_dir() and d not in dirs[:i]]


def study_files() -> list[tuple[str, Path]]:
    """(name, path) of every shipped study, by file name, the first directory winning."""
    found: dict[str, Path] = {}
    for d in study_dirs():
        for p in sorted(d.glob("*.yaml")):
            found.setdefault(p.stem, p)
    return list(found.items())


def find_study(name: str) -> Path | None:
    return dict(study_files()).get(name)
