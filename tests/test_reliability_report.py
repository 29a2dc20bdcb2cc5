"""docs/reliability.md's generator (tests/reliability_report.py): the issue table lists each
item's regression tests with their recorded outcome, whether or not the test counts faults
through the ``reliability`` fixture. Written to tmp_path only."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict

import pytest
from reliability_report import (
    ISSUE_TABLES,
    ROOT,
    Record,
    covers,
    issue_items,
    issue_tests,
    write_report,
)

FAULT = "tests/test_faults.py::test_a_frozen_worker_never_deletes_the_new_owners_rows"
CONTROL = "tests/test_security.py::test_control_characters_in_run_names_are_refused"
USER_TEXT = "tests/test_app_user_text.py::test_runs_page"


@pytest.mark.slow  # a pytest subprocess that imports torch, SQLAlchemy and Streamlit
def test_every_test_the_issue_table_names_is_collected():
    """A renamed or deleted regression test fails here rather than showing up in the report as
    "not in this report yet": pytest collects every node id and file the table names."""
    assert [(n, item) for n, _, items in ISSUE_TABLES for item, _, tests in items if not tests] == []
    named = issue_tests()
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                          "-p", "no:cacheprovider", *named],
                         cwd=ROOT, capture_output=True, text=True)
    # Exit code 4 is pytest's "not found" for a node id that names no test.
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    collected = [line for line in out.stdout.splitlines() if "::" in line]
    assert [t for t in named if not any(covers(t, c) for c in collected)] == []


def test_issue_tests_are_reported_with_their_outcome_but_not_as_fault_tests(tmp_path):
    fault = Record(FAULT, "a frozen worker", trials=5, faults=5, outcome="passed")
    control = Record(f"{CONTROL}[\\x1b]", "control", outcome="passed", regression=True)
    text = Record(USER_TEXT, "runs page", outcome="failed", regression=True)
    assert issue_items(control.test) == ["G"] and issue_items(text.test) == ["J"]
    md, js = tmp_path / "reliability.md", tmp_path / "reliability.json"
    write_report([asdict(r) for r in (fault, control, text)], md=md, js=js)

    lines = md.read_text(encoding="utf-8").splitlines()
    assert "**1 tests, 5 trials, 5 faults injected, 0 data lost or duplicated; 1 passed.**" \
        in lines  # the regression records count no trials and are no fault-test rows
    assert not any(line.startswith("| runs page") for line in lines)
    rows = {line.split(" | ")[0]: line for line in lines if line.startswith("| ")}
    assert "`test_control_characters_in_run_names_are_refused` ([\\x1b] passed)" in rows["| G"]
    assert "`tests/test_app_user_text.py` (test_runs_page failed)" in rows["| J"]
    assert "not in this report yet" in rows["| H"]
    assert "## Issue 25: operations: a second adversarial pass, and workers on a cluster" in lines
    assert "`test_invisible_format_characters_in_names_and_groups_are_refused` (not in this " \
        "report yet)" in rows["| 5"]
    # Merged by test id: a later report keeps what this one recorded.
    assert {e["test"] for e in json.loads(js.read_text())} == {FAULT, control.test, text.test}
