"""The reliability report: what the fault and property tests did, in ``docs/reliability.md``.

A test asks for the ``reliability`` fixture and counts what it did::

    def test_kill_9(reliability):
        reliability.add(trials=20, faults=20, lost=0, claims=27)

At the end of the session the counts of every test that used the fixture, with its outcome
and duration, are merged into ``docs/reliability.json`` (keyed by test id: a test that did
not run this time keeps its last entry, with that entry's date) and ``docs/reliability.md``
is regenerated from it.

Under pytest-xdist each worker process sends its records to the controller through
``workeroutput`` (the channel xdist provides for this) and only the controller writes the
files, once: no two processes ever write them. Without xdist the single process does.

Registered by ``tests/conftest.py`` (``pytest_plugins``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
REPORT_MD = ROOT / "docs" / "reliability.md"
REPORT_JSON = ROOT / "docs" / "reliability.json"
WORKER_KEY = "dm_reliability"

# The records of this process, by test id.
_records: dict[str, Record] = {}


@dataclass
class Record:
    """What one test did. ``lost`` counts data lost or duplicated (a passing test has 0)."""

    test: str
    title: str
    trials: int = 0
    faults: int = 0
    lost: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    outcome: str = "not finished"
    seconds: float = 0.0
    date: str = ""

    def add(self, trials: int = 0, faults: int = 0, lost: int = 0, **details: Any) -> None:
        """Add to the counts; numeric ``details`` are summed, others replaced."""
        self.trials += int(trials)
        self.faults += int(faults)
        self.lost += int(lost)
        for key, value in details.items():
            old = self.details.get(key)
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            self.details[key] = old + value if numeric and isinstance(old, int | float) else value


@pytest.fixture
def reliability(request) -> Record:
    """This test's ``Record`` (see the module docstring)."""
    doc = (request.function.__doc__ or "").strip().splitlines()
    title = doc[0].rstrip(".") if doc else request.function.__name__.replace("_", " ")
    record = Record(request.node.nodeid, title)
    _records[request.node.nodeid] = record
    return record


# ---------------------------------------------------------------- hooks

def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    record = _records.get(report.nodeid)
    if record is None:
        return
    if report.when == "call" or report.outcome != "passed":
        record.outcome = report.outcome
        record.seconds += report.duration
        record.date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:  # noqa: ARG001 (xdist's hook signature)
    """The controller receives a worker's records when the worker finishes."""
    payload = getattr(node, "workeroutput", {}).get(WORKER_KEY)
    for data in json.loads(payload) if payload else []:
        _records[data["test"]] = Record(**data)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if hasattr(config, "workerinput"):  # an xdist worker: hand the records to the controller
        config.workeroutput[WORKER_KEY] = json.dumps([asdict(r) for r in _records.values()])
        return
    if _records and not os.environ.get("DM_NO_RELIABILITY_REPORT"):
        write_report([asdict(r) for r in _records.values()])


# ---------------------------------------------------------------- the files

def write_report(records: list[dict[str, Any]], md: Path = REPORT_MD,
                 js: Path = REPORT_JSON) -> None:
    """Merge ``records`` into ``js`` (by test id) and regenerate ``md`` from it."""
    entries: dict[str, dict[str, Any]] = {}
    if js.is_file():
        try:
            entries = {e["test"]: e for e in json.loads(js.read_text(encoding="utf-8"))}
        except (ValueError, KeyError, TypeError):
            entries = {}  # a corrupt file is regenerated, not fatal
    for r in records:
        entries[r["test"]] = r
    ordered = [entries[k] for k in sorted(entries)]
    js.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(js, json.dumps(ordered, indent=1, sort_keys=True) + "\n")
    _write_atomically(md, render(ordered))


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def render(entries: list[dict[str, Any]]) -> str:
    """The markdown report: a summary line, one table row per test, then each test's details."""
    trials = sum(e["trials"] for e in entries)
    faults = sum(e["faults"] for e in entries)
    lost = sum(e["lost"] for e in entries)
    failed = [e for e in entries if e["outcome"] != "passed"]
    lines = [
        "# Reliability",
        "",
        "Generated by the test suite (`tests/reliability_report.py`) from the fault tests in",
        "`tests/test_faults.py` and the property tests over invalid input in",
        "`tests/test_invalid_input.py`; each row is the latest run of that test. Regenerate with",
        "`pytest tests/test_faults.py tests/test_invalid_input.py -n 2`.",
        "",
        f"**{len(entries)} tests, {trials} trials, {faults} faults injected, {lost} data lost "
        f"or duplicated; {len(entries) - len(failed)} passed"
        + (f", {len(failed)} not passing" if failed else "") + ".**",
        "",
        "| test | trials | faults injected | data lost | outcome | seconds | last run |",
        "|---|---:|---:|---:|---|---:|---|",
    ]
    for e in entries:
        name = e["test"].split("::", 1)[-1]
        lines.append(f"| {_cell(e['title'])} (`{_cell(name)}`) | {e['trials']} | {e['faults']} | "
                     f"{e['lost']} | {e['outcome']} | {e['seconds']:.1f} | {e['date']} |")
    lines += ["", "## Details", ""]
    for e in entries:
        if e["details"]:
            shown = "; ".join(f"{k}: {_cell(v)}" for k, v in sorted(e["details"].items()))
            lines.append(f"- `{_cell(e['test'])}`: {shown}")
    return "\n".join(lines) + "\n"


__all__ = ["Record", "reliability", "render", "write_report"]

if __name__ == "__main__":  # python tests/reliability_report.py: re-render the markdown
    write_report([])
    print(f"wrote {REPORT_MD} ({time.strftime('%H:%M:%S')})")
