"""The reliability report: what the fault and property tests did, in ``docs/reliability.md``.

A test asks for the ``reliability`` fixture and counts what it did::

    def test_kill_9(reliability):
        reliability.add(trials=20, faults=20, lost=0, claims=27)

With ``--reliability-report`` (``make reliability``), at the end of the session the counts
of every test that used the fixture, with its outcome and duration, are merged into
``docs/reliability.json`` (keyed by test id: a test that did not run this time keeps its last
entry, with that entry's date) and ``docs/reliability.md`` is regenerated from it. Without the
option nothing is written: ``make test`` leaves the tracked reports alone.

``ISSUE_14`` maps each item of the reliability and security hardening issue to the regression
tests that cover it; the report lists them with their latest outcome. Those tests need not use
the fixture: the outcome of every test named there is recorded too (``regression`` records,
shown only in the issue table), and ``make reliability`` runs them (``python
tests/reliability_report.py --issue-tests FILE...`` prints the files and their node ids).

Under pytest-xdist each worker process sends its records to the controller through
``workeroutput`` (the channel xdist provides for this) and only the controller writes the
files, once: no two processes ever write them. Without xdist the single process does.

Registered by ``tests/conftest.py`` (``pytest_plugins``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
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
    regression: bool = False  # an ISSUE_14 test that counts nothing: its outcome only

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

def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--reliability-report", action="store_true", default=False,
                     help="write docs/reliability.md and docs/reliability.json at the end "
                          "(make reliability)")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    record = _records.get(report.nodeid)
    if record is None and issue_items(report.nodeid):
        name = report.nodeid.split("::", 1)[-1]
        record = _records[report.nodeid] = Record(report.nodeid, name.replace("_", " "),
                                                  regression=True)
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
    if _records and config.getoption("reliability_report"):
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


# Issue 14 (reliability and security hardening): each item and the regression tests that
# failed before its fix. An item without tests here is not listed yet; its row says so.
ISSUE_14: list[tuple[str, str, list[str]]] = [
    ("A", "a frozen worker deleted the new owner's rows: every write and delete for a run is "
          "fenced by its claim", [
        "tests/test_faults.py::test_a_frozen_worker_never_deletes_the_new_owners_rows"]),
    ("B", "PostgreSQL: a worker frozen inside a transaction blocked everything: the server "
          "cuts it off, its run is re-queued, dm cancel and reapers never wait for it", [
        "tests/test_faults.py::test_postgres_cuts_off_a_worker_frozen_in_a_transaction"]),
    ("C", "SQLite: a frozen lock holder stalled the system: reads take no write lock, new "
          "workers wait instead of exiting", [
        "tests/test_faults.py::test_sqlite_frozen_lock_holder_stalls_neither_reads_nor_workers"]),
    ("D", "disk full: \"no space left on device\" and no checkpoint.pt.tmp; SQLite on a full "
          "disk reports the cause, not \"stopped sending heartbeats\"", [
        "tests/test_faults.py::test_disk_full_mid_checkpoint_says_no_space_left",
        "tests/test_faults.py::test_sqlite_disk_full_is_reported_as_the_cause"]),
    ("E", "a run deleted while its worker is frozen is dropped (the worker keeps serving); a "
          "deleted SQLite file is not recreated by dm runs", [
        "tests/test_faults.py::test_a_run_deleted_while_its_worker_is_frozen_is_dropped",
        "tests/test_faults.py::test_a_deleted_sqlite_database_is_not_recreated"]),
    ("F", "config inputs: depth, aliases and grid size bounded at submit time", [
        "tests/test_invalid_input.py::test_deeply_nested_files_are_refused_with_the_limit",
        "tests/test_invalid_input.py::test_a_yaml_alias_bomb_file_is_refused",
        "tests/test_invalid_input.py::test_alias_bombs_and_deep_values_in_set_or_grid_are_refused",
        "tests/test_invalid_input.py::test_a_config_file_over_the_size_limit_is_refused",
        "tests/test_invalid_input.py::test_a_grid_over_the_run_limit_is_refused_before_it_is_"
        "expanded"]),
    ("G", "control characters in run and group names rejected (the CLI, the Launch form, "
          "Store.submit); stored ones shown escaped", [
        "tests/test_security.py::test_control_characters_in_run_names_are_refused",
        "tests/test_security.py::test_dm_submit_refuses_control_characters_in_names_and_groups",
        "tests/test_security.py::test_dm_runs_and_show_escape_control_characters_of_stored_rows",
        "tests/test_security.py::test_launch_refuses_a_group_name_with_control_characters",
        "tests/test_store.py::test_submit_refuses_a_bad_group_name_and_queues_nothing"]),
    ("H", ".npz bombs: only the needed keys read, sizes checked first", [
        "tests/test_data.py::test_arrays_reads_only_the_four_arrays_it_needs"]),
    ("I", "password brute force: rate limit, back-off, failed logins logged", [
        "tests/test_app_auth.py::test_failed_sign_ins_lock_the_address_out_across_sessions"]),
    ("J", "markdown in run names rendered as text", [
        "tests/test_app_user_text.py"]),
    ("K", "the Launch form's hidden field bounded like F", [
        "tests/test_security.py::test_launch_form_refuses_hostile_yaml_in_its_text_fields"]),
    ("Minor", "a finished run keeps only its recorded checkpoint (killed attempts' files removed)", [
        "tests/test_faults.py::test_a_finished_run_keeps_only_its_recorded_checkpoint"]),
]

# Issue 25 (operations: what a second adversarial pass broke, and workers on a cluster): each
# item and the regression tests that failed before its fix.
ISSUE_25: list[tuple[str, str, list[str]]] = [
    ("1", "one cap on runs per submit, enforced by the store whatever path submits; the Launch "
          "grid counts all its rows", [
        "tests/test_store.py::test_submit_refuses_more_runs_than_the_cap_whatever_path_submits",
        "tests/test_app_launch.py::test_grid_rows_add_up_to_one_cap_and_nothing_is_queued_past_it"]),
    ("2", "a database replaced under a worker (deleted and created again, or a backup moved "
          "over it): every write checks the database's identity and the worker stops", [
        "tests/test_faults.py::test_a_database_created_again_under_a_worker_stops_it",
        "tests/test_faults.py::test_a_backup_moved_over_a_live_sqlite_database_stops_its_worker"]),
    ("3", ".npz/.npy limits count declared bytes, read from each array's header before "
          "anything is inflated", [
        "tests/test_label_files.py::test_an_npz_declaring_gibibytes_of_labels_is_refused_from_"
        "its_header",
        "tests/test_label_files.py::test_label_arrays_are_bounded_in_bytes_before_they_are_inflated",
        "tests/test_label_files.py::test_an_arrays_y_train_read_at_submit_is_bounded_like_labels"]),
    ("4", "a SQLite writer behind a held lock says that it waits and for what, retries to a "
          "deadline, then fails naming the file", [
        "tests/test_faults.py::test_a_writer_behind_a_held_lock_gives_up_naming_what_held_it",
        "tests/test_faults.py::test_a_sqlite_writer_says_that_it_waits_and_goes_on_once_the_lock_"
        "is_free",
        "tests/test_faults.py::test_dm_cancel_behind_a_locked_sqlite_database_says_so_on_stderr"]),
    ("5", "invisible (Unicode format, category Cf) characters refused in names", [
        "tests/test_security.py::test_invisible_format_characters_in_names_and_groups_are_refused"]),
    ("6", "sign-in backoff keyed by the source that failed (a guesser cannot lock others out); "
          "X-Forwarded-For read only from trusted proxies", [
        "tests/test_app_auth.py::test_a_guessers_failures_never_lock_out_another_sessions_right_"
        "password",
        "tests/test_app_auth.py::test_x_forwarded_for_is_believed_only_from_a_trusted_proxy"]),
    ("7", "no false \"failed\" for a write its fence refused; a full disk pauses the run "
          "instead of spending the outage retries", [
        "tests/test_faults.py::test_an_error_after_the_run_was_taken_over_is_not_its_failure",
        "tests/test_faults.py::test_a_full_database_disk_is_not_an_outage",
        "tests/test_faults.py::test_a_full_database_disk_pauses_the_run_until_space_is_freed",
        "tests/test_faults.py::test_sqlite_disk_full_is_reported_as_the_cause"]),
    ("8", "the CPU kernel's build is keyed by its source's content; a process waiting on the "
          "build lock says so; no build inside a run's timed section", [
        "tests/test_fused_cpu.py::test_checkouts_of_one_source_share_one_build_and_a_changed_"
        "source_gets_its_own",
        "tests/test_fused_cpu.py::test_a_process_waiting_for_another_ones_build_says_so",
        "tests/test_fused_cpu.py::test_training_loads_the_kernel_before_its_clock_starts"]),
    ("9", "dm --help, runs, show, cancel and submit import no torch", [
        "tests/test_cli_imports.py::test_help_runs_show_and_cancel_do_not_import_torch",
        "tests/test_cli_imports.py::test_submit_validates_and_queues_every_loss_family_without_"
        "torch"]),
    ("10", "dm worker as a Slurm job array through submitit (tested with its local executor); "
           "a Kubernetes manifest for the worker image", [
        "tests/test_slurm.py::test_a_worker_started_through_submitits_local_executor_trains_a_"
        "queued_run",
        "tests/test_slurm.py::test_dm_slurm_submits_one_array_of_one_gpu_workers",
        "tests/test_slurm.py::test_the_kubernetes_worker_runs_the_compose_image_as_dm_worker_on_"
        "the_secret_url"]),
]

# Every issue table the report shows: (issue number, title, items).
ISSUE_TABLES: list[tuple[int, str, list[tuple[str, str, list[str]]]]] = [
    (14, "reliability and security hardening", ISSUE_14),
    (25, "operations: a second adversarial pass, and workers on a cluster", ISSUE_25),
]


def _every_item() -> list[tuple[str, str, list[str]]]:
    return [item for _, _, items in ISSUE_TABLES for item in items]


def covers(spec: str, nodeid: str) -> bool:
    """Whether the ``ISSUE_14`` entry ``spec`` -- a test's node id, or a test file for every
    test in it -- names the test ``nodeid`` (any of its parameters).

    >>> covers("tests/a.py::test_x", "tests/a.py::test_x[sqlite-1]")
    True
    >>> covers("tests/a.py::test_x", "tests/a.py::test_xy")
    False
    >>> covers("tests/b.py", "tests/b.py::test_y")
    True
    """
    return nodeid == spec or nodeid.startswith((spec + "[", spec + "::"))


def issue_items(nodeid: str) -> list[str]:
    """The issue items (of every table) whose regression tests include ``nodeid``."""
    return [item for item, _, tests in _every_item() if any(covers(t, nodeid) for t in tests)]


def issue_tests(files: Sequence[str] = ()) -> list[str]:
    """``files``, then every test (node id or file) ``ISSUE_14`` names outside them, once
    each, in order: what ``make reliability`` runs (a test named twice would run twice).

    >>> "tests/test_data.py::test_arrays_reads_only_the_four_arrays_it_needs" in issue_tests()
    True
    >>> [t for t in issue_tests(["tests/test_faults.py"]) if t.startswith("tests/test_faults")]
    ['tests/test_faults.py']
    """
    named = (t for _, _, tests in _every_item() for t in tests)
    return list(dict.fromkeys([*files, *(t for t in named if t.split("::")[0] not in files)]))


def _issue_rows(entries: list[dict[str, Any]],
                items: list[tuple[str, str, list[str]]]) -> list[str]:
    """An issue's table: one row per item, its tests with their latest outcome."""
    lines = ["| item | what | regression test (latest outcome) |", "|---|---|---|"]
    for item, what, tests in items:
        cells = []
        for test in tests:
            runs = [e for e in entries if covers(test, e["test"])]
            shown = ", ".join(f"{e['test'][len(test):].lstrip(':')} {e['outcome']}".strip()
                              for e in runs)
            cells.append(f"`{test.split('::', 1)[-1]}` ({shown or 'not in this report yet'})")
        lines.append(f"| {item} | {_cell(what)} | "
                     f"{'; '.join(cells) if cells else 'not listed yet (added with its fix)'} |")
    return lines


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def render(entries: list[dict[str, Any]]) -> str:
    """The markdown report: a summary line, one table row per test, then each test's details."""
    issue_entries, entries = entries, [e for e in entries if not e.get("regression")]
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
        "`make reliability` (`make test` does not write this file).",
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
    for number, title, items in ISSUE_TABLES:
        lines += ["", f"## Issue {number}: {title}", "",
                  "Each item and the regression test that failed before its fix.", "",
                  *_issue_rows(issue_entries, items)]
    lines += ["", "## Details", ""]
    for e in entries:
        if e["details"]:
            shown = "; ".join(f"{k}: {_cell(v)}" for k, v in sorted(e["details"].items()))
            lines.append(f"- `{_cell(e['test'])}`: {shown}")
    return "\n".join(lines) + "\n"


__all__ = ["ISSUE_14", "ISSUE_25", "ISSUE_TABLES", "Record", "covers", "issue_items", "issue_tests", "reliability", "render",
           "write_report"]

if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--issue-tests"]:  # make reliability: these files and the issue tests
        print("\n".join(issue_tests(sys.argv[2:])))
    else:  # python tests/reliability_report.py: re-render the markdown
        write_report([])
        print(f"wrote {REPORT_MD} ({time.strftime('%H:%M:%S')})")
