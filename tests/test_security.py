"""Security properties outside the dashboard's sign-in (tests/test_app_auth.py):

- ``dm export -o`` writes only inside the export root (``DM_EXPORT_DIR``, else the current
  directory), whatever the spelling: ``..``, an absolute path, a symlink on the way.
- the database password never appears in what ``dm up``, ``dm worker``, the store, the
  dashboard or their errors print or log.
- the database URL can come from a file (``DM_DATABASE_URL_FILE``, e.g. a Docker secret),
  and a password given with ``--db`` on the command line (readable by every user) is warned
  about.
- ``dm up`` warns when the dashboard is reachable without a login (the same rule the
  dashboard applies: an empty ``[auth]`` table is no login) and when an OIDC login has no
  allowlist.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_app_support import app_db_fixture  # noqa: F401
from test_packaging import free_port
from typer.testing import CliRunner

from dm_core.events import EvalEvent, HistogramEvent, ScalarsEvent
from dm_store import Store, StoreError, mask_url
from studio.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
SECRET = "s3cr3t-Pa55"


def cli(*args: str, env: dict | None = None):
    return runner.invoke(app, list(args), env={"COLUMNS": "200", "NO_COLOR": "1", **(env or {})})


# ---------------------------------------------------------------- export confinement

@pytest.fixture
def exported(tmp_path, monkeypatch):
    """A run with rows; the working directory is ``tmp_path/work``; returns (db URL, work)."""
    db = f"sqlite:///{tmp_path / 'dm.sqlite'}"
    store = Store(db)
    from dm_core.config import parse_config

    store.submit([parse_config({"name": "x", "dataset": {"name": "digits"}, "iterations": 3})])
    run = store.claim("w", "cpu")
    store.write_batch(run.id, 1, [ScalarsEvent(i, {"loss": 1.0}) for i in (1, 2, 3)],
                      [HistogramEvent(3, np.ones(4, np.int32), np.ones(4, np.int32))],
                      [EvalEvent(3, {"test_acc": 0.5})])
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("DM_EXPORT_DIR", raising=False)
    return db, work


def files_under(path: Path) -> set[Path]:
    return {p for p in path.rglob("*") if p.is_file()}


def test_export_inside_the_root_is_written(exported):
    db, work = exported
    for args, where in ((["-o", "a.csv"], work / "a.csv"),
                        (["-o", "sub/dir/b.csv"], work / "sub" / "dir" / "b.csv"),
                        (["-o", str(work / "c.csv")], work / "c.csv"),  # absolute, inside
                        (["-o", "sub/../d.csv"], work / "d.csv"),  # .. that stays inside
                        (["--out-dir", "out", "-o", "e.csv"], work / "out" / "e.csv"),
                        (["--out-dir", "out"], work / "out" / "run-1-scalars.csv")):
        result = cli("export", "1", "--db", db, *args)
        assert result.exit_code == 0, (args, result.output)
        assert where.is_file(), args


@pytest.mark.parametrize("spelling", ["dotdot", "absolute", "dir symlink", "file symlink",
                                      "out-dir", "home"])
def test_export_outside_the_root_is_refused(exported, tmp_path, spelling):
    db, work = exported
    outside = tmp_path / "outside"
    outside.mkdir()
    args = {"dotdot": ["-o", "../outside/x.csv"],
            "absolute": ["-o", str(outside / "x.csv")],
            "dir symlink": ["-o", "link/x.csv"],
            "file symlink": ["-o", "innocent.csv"],
            "out-dir": ["--out-dir", "../outside", "-o", "x.csv"],
            "home": ["-o", "~/x.csv"]}[spelling]
    (work / "link").symlink_to(outside, target_is_directory=True)
    (work / "innocent.csv").symlink_to(outside / "x.csv")
    before = files_under(work) | files_under(outside)
    result = cli("export", "1", "--db", db, *args, env={"HOME": str(outside)})
    assert result.exit_code == 2, result.output
    option = "--out-dir" if spelling == "out-dir" else "-o/--output"
    assert result.output.startswith(f"error: {option} "), result.output
    assert f"outside the export root {work}" in result.output
    assert "DM_EXPORT_DIR" in result.output and "Traceback" not in result.output
    assert files_under(work) | files_under(outside) == before  # nothing written anywhere
    assert not (outside / "x.csv").exists()


def test_export_root_from_the_environment(exported, tmp_path):
    db, work = exported
    root = tmp_path / "exports"
    root.mkdir()
    env = {"DM_EXPORT_DIR": str(root)}
    result = cli("export", "1", "--db", db, "-o", "r.csv", env=env)
    assert result.exit_code == 0, result.output
    assert (root / "r.csv").is_file() and not (work / "r.csv").exists()
    result = cli("export", "1", "--db", db, "-o", str(work / "r.csv"), env=env)
    assert result.exit_code == 2  # the working directory is not the root any more
    assert f"outside the export root {root} (DM_EXPORT_DIR)" in result.output
    result = cli("export", "1", "--db", db, "-o", ".", env=env)
    assert result.exit_code == 2 and "is a directory" in result.output


# ---------------------------------------------------------------- secrets never shown

DEAD_URL = f"postgresql+psycopg://dm:{SECRET}@127.0.0.1:1/dm?connect_timeout=2"


def test_mask_url_hides_every_password_spelling():
    for url in (DEAD_URL, f"postgresql://dm:{SECRET}@db/dm",
                f"postgresql+psycopg://dm:{SECRET.replace('-', '%2D')}@db:5432/dm",
                f"sqlite:///tmp/{SECRET}-not-a-password.sqlite"):
        masked = mask_url(url)
        if url.startswith("postgresql"):
            assert SECRET not in masked and "***" in masked, masked
    assert mask_url(f"not a url {SECRET}") == "<invalid database URL>"


def test_store_errors_and_logs_never_show_the_password(caplog, tmp_path):
    store = Store(DEAD_URL, tmp_path)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(StoreError) as err:
            store.queue_counts()
        assert SECRET not in str(err.value) and "***" in str(err.value)
        assert SECRET not in repr(store)
        cause = err.value.__cause__  # what a logged traceback would show under it
        while cause is not None:
            assert SECRET not in str(cause), type(cause)
            cause = cause.__cause__ or cause.__context__
    assert SECRET not in caplog.text


def test_dm_worker_and_db_upgrade_never_print_the_password():
    result = cli("worker", "--db", DEAD_URL, "--device", "cpu", "--exit-when-idle")
    assert result.exit_code == 1, result.output
    assert SECRET not in result.output and "***" in result.output
    result = cli("db", "upgrade", "--db", DEAD_URL)
    assert SECRET not in result.output and "***" in result.output
    result = cli("runs", env={"DM_DATABASE_URL": DEAD_URL})
    assert result.exit_code == 1 and SECRET not in result.output


def _logged_an_outage(text: str) -> bool:
    return "database unavailable" in text or "could not" in text


@pytest.mark.slow
@pytest.mark.postgres
def test_a_running_worker_logs_never_show_the_password(postgres_url, tmp_path):
    """A real ``dm worker`` against a server that wants a password: start-up line, a run, an
    outage of the server (connection errors) -- the password is in none of its output."""
    from sqlalchemy.engine import make_url

    from dm_store.testing import fresh_database, start_server, stop_server

    with fresh_database(postgres_url) as url:
        admin = Store(url)
        with admin.engine.connect() as conn:  # a role with a password (trust auth accepts
            conn.exec_driver_sql(f"CREATE ROLE dm_secret LOGIN SUPERUSER PASSWORD '{SECRET}'")
            conn.commit()
        admin.dispose()
        secret_url = make_url(url).set(username="dm_secret", password=SECRET) \
            .render_as_string(hide_password=False)
        from test_workers import cfg

        store = Store(secret_url, tmp_path / "artifacts")
        store.submit([cfg("secret", iterations=400, eval_every=100)])
        log = tmp_path / "worker.log"
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
                   DM_DATABASE_URL=secret_url)
        with open(log, "w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "studio.cli", "worker", "--device",
                                     "cpu", "--artifacts", str(tmp_path / "artifacts"),
                                     "--poll", "0.2"], cwd=ROOT, env=env, stdout=out,
                                    stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while "claimed" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.2)
            stop_server(url)  # connection errors while it trains and polls
            # Down until the worker has met the outage (it may still be starting its run),
            # however long that takes on this machine.
            deadline = time.monotonic() + 120
            while not _logged_an_outage(log.read_text()) and time.monotonic() < deadline:
                time.sleep(0.2)
            start_server(url)
            deadline = time.monotonic() + 120
            while store.get_run(1).status not in ("succeeded", "failed") \
                    and time.monotonic() < deadline:
                time.sleep(0.2)
            proc.terminate()
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
            store.dispose()
        text = log.read_text()
        assert "claimed" in text and "run 1: succeeded" in text, text
        assert _logged_an_outage(text), text  # errors were logged
        assert SECRET not in text, text
        assert "dm_secret:***@" in text  # the URL is shown, masked
        with Store(url).engine.connect() as conn:
            conn.exec_driver_sql("DROP OWNED BY dm_secret")
            conn.exec_driver_sql("DROP ROLE dm_secret")
            conn.commit()


def test_dm_up_passes_the_database_url_in_the_environment_not_the_command_line(tmp_path):
    """Command lines are readable by every user of the machine (ps, /proc/*/cmdline)."""
    from studio import supervisor

    assert "--db" in cli("worker", "--help").output  # the option exists, and is not used
    children = supervisor.worker_children(2, 0, DEAD_URL, tmp_path, {"PATH": "/bin"})
    for child in children:
        assert not any(SECRET in arg for arg in child.argv), child.argv
        assert child.env["DM_DATABASE_URL"] == DEAD_URL
    argv = supervisor.streamlit_argv(ROOT / "app" / "streamlit_app.py", "127.0.0.1", 8501)
    assert not any(SECRET in arg for arg in argv)


def test_a_url_that_does_not_parse_is_not_echoed():
    bad = f"postgresql://dm:{SECRET}@db:port/dm"  # the port is not a number
    assert mask_url(bad) == "<invalid database URL>"
    with pytest.raises(StoreError, match="is not a URL") as err:
        Store(bad)
    assert SECRET not in str(err.value)
    result = cli("runs", "--db", bad)
    assert result.exit_code == 1 and SECRET not in result.output
    assert "--db / DM_DATABASE_URL" in result.output


def _texts(node) -> list[str]:
    """Every element's protobuf text under an AppTest node."""
    out = [str(getattr(node, "proto", "") or "")]
    for child in getattr(node, "children", {}).values():
        out += _texts(child)
    return out


def test_the_dashboard_never_shows_the_password(monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    from app.db import get_store

    monkeypatch.setenv("DM_DATABASE_URL", DEAD_URL)
    monkeypatch.delenv("DM_PASSWORD", raising=False)
    get_store.clear()
    try:
        at = AppTest.from_file(str(ROOT / "app" / "streamlit_app.py"), default_timeout=120).run()
        for page in (None, "views/runs.py", "views/monitor.py", "views/launch.py"):
            if page is not None:
                at.switch_page(page).run()
            texts = _texts(at._tree)
            assert any("dm:***@127.0.0.1:1" in t for t in texts), page  # shown, masked
            assert not any(SECRET in t for t in texts), page
            assert at.error, page  # the page says the database cannot be reached
    finally:
        get_store.clear()


# ---------------------------------------------------------------- dm up's access warnings

OIDC = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32,
        "client_id": "dm-studio", "client_secret": "not-a-real-secret",
        "server_metadata_url": "https://idp.example/.well-known/openid-configuration"}
NO_LOGIN = "without authentication"
ANY_ACCOUNT = "any account the provider authenticates can sign in"


class _StopBeforeChildren(Exception):
    pass


@pytest.fixture
def up_here(tmp_path, monkeypatch):
    """``dm up`` run in-process in ``tmp_path`` (no global secrets), stopped just before it
    starts any child; returns a function writing ``.streamlit/secrets.toml``."""
    from studio import supervisor
    from studio.cli import up as up_module

    script = tmp_path / "app" / "streamlit_app.py"
    script.parent.mkdir()
    script.write_text("import streamlit as st\n")
    monkeypatch.setattr(up_module, "_app_file", lambda: script)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    for name in ("DM_PASSWORD", "DM_ALLOWED_USERS", "DM_DATABASE_URL", "DM_DATABASE_URL_FILE"):
        monkeypatch.delenv(name, raising=False)

    def stop(self):
        raise _StopBeforeChildren

    monkeypatch.setattr(supervisor.Child, "start", stop)

    def secrets(text: str) -> None:
        (tmp_path / ".streamlit").mkdir(exist_ok=True)
        (tmp_path / ".streamlit" / "secrets.toml").write_text(text, encoding="utf-8")

    return secrets


def _toml(section: dict) -> str:
    import json

    lines = ["[auth]"] + [f"{k} = {json.dumps(v)}" for k, v in section.items()]
    return "\n".join(lines) + "\n"


def up_stderr(*args: str, env: dict | None = None) -> str:
    result = runner.invoke(app, ["up", "--no-workers", "--port", str(free_port()),
                                 "--db", "sqlite:///var/dm.sqlite", *args], env=env)
    assert isinstance(result.exception, _StopBeforeChildren), result.output
    return result.stderr


def test_dm_up_on_0000_without_a_login_warns(up_here):
    err = up_stderr("--host", "0.0.0.0")
    assert "WARNING" in err and NO_LOGIN in err and "DM_PASSWORD" in err, err
    assert NO_LOGIN not in up_stderr("--host", "127.0.0.1")
    assert NO_LOGIN not in up_stderr("--host", "0.0.0.0", env={"DM_PASSWORD": "pw"})


def test_dm_up_treats_an_empty_auth_table_as_no_login(up_here):
    """The dashboard is open with an empty [auth] (oidc_providers is None): so dm up warns."""
    up_here("[auth]\n")
    err = up_stderr("--host", "0.0.0.0")
    assert NO_LOGIN in err and "empty" in err, err


def test_dm_up_warns_that_oidc_without_an_allowlist_admits_any_account(up_here):
    up_here(_toml(OIDC))
    for host in ("0.0.0.0", "127.0.0.1"):
        err = up_stderr("--host", host)
        assert ANY_ACCOUNT in err and "DM_ALLOWED_USERS" in err, err
        assert NO_LOGIN not in err
    up_here(_toml(OIDC | {"allowed_domains": ["example.org"]}))
    assert "WARNING" not in up_stderr("--host", "0.0.0.0")
    up_here(_toml(OIDC))
    assert "WARNING" not in up_stderr("--host", "0.0.0.0", env={"DM_ALLOWED_USERS": "@example.org"})


def test_dm_up_refuses_a_malformed_allowlist(up_here):
    up_here(_toml(OIDC | {"allowed_emails": ["not-an-email"]}))
    result = runner.invoke(app, ["up", "--no-workers", "--port", str(free_port()),
                                 "--db", "sqlite:///var/dm.sqlite"])
    assert result.exit_code == 2, result.output
    assert "[auth] allowed_emails: 'not-an-email' is not an email address" in result.stderr


# ---------------------------------------------------------------- the URL from a file; --db warnings

DB_WARNING = "WARNING: --db carries a password"


def test_database_url_from_a_file(tmp_path, monkeypatch):
    from app.db import database_url
    from dm_core.config import parse_config
    from studio.cli import up as up_module

    url = f"sqlite:///{tmp_path / 'from-file.sqlite'}"
    secret = tmp_path / "db_url"
    secret.write_text(url + "\n", encoding="utf-8")  # as `echo URL > file` writes it
    monkeypatch.delenv("DM_DATABASE_URL", raising=False)
    monkeypatch.setenv("DM_DATABASE_URL_FILE", str(secret))
    store = Store()
    assert store.url == url
    store.submit([parse_config({"name": "from-the-file", "dataset": {"name": "digits"}})])
    store.dispose()
    result = cli("runs", env={"DM_DATABASE_URL": None, "DM_DATABASE_URL_FILE": str(secret)})
    assert result.exit_code == 0 and "from-the-file" in result.output, result.output
    assert database_url() == url  # the dashboard
    assert up_module._prepare_database(None, tmp_path / "artifacts") == url  # dm up
    # DM_DATABASE_URL wins (dm up hands its children the resolved URL in it).
    other = f"sqlite:///{tmp_path / 'other.sqlite'}"
    monkeypatch.setenv("DM_DATABASE_URL", other)
    assert Store().url == other


@pytest.mark.parametrize("problem", ["missing", "a directory", "empty", "not a URL", "binary"])
def test_database_url_file_problems_name_the_variable(tmp_path, monkeypatch, problem):
    path = tmp_path / "db_url"
    if problem == "a directory":
        path.mkdir()
    elif problem == "empty":
        path.write_text("  \n")
    elif problem == "not a URL":
        path.write_text(f"postgresql://dm:{SECRET}@db:port/dm")
    elif problem == "binary":
        path.write_bytes(b"\xff\xfe" + SECRET.encode())
    env = {"DM_DATABASE_URL": None, "DM_DATABASE_URL_FILE": str(path)}
    result = cli("runs", env=env)
    assert result.exit_code == 1, result.output
    assert "DM_DATABASE_URL_FILE" in result.output and "Traceback" not in result.output
    assert SECRET not in result.output
    if problem != "not a URL":
        assert str(path) in result.output
    monkeypatch.delenv("DM_DATABASE_URL", raising=False)
    monkeypatch.setenv("DM_DATABASE_URL_FILE", str(path))
    with pytest.raises(StoreError, match="DM_DATABASE_URL_FILE"):
        Store()


def test_a_password_in_a_url_file_is_never_printed(tmp_path):
    path = tmp_path / "db_url"
    path.write_text(DEAD_URL)
    result = cli("runs", env={"DM_DATABASE_URL": None, "DM_DATABASE_URL_FILE": str(path)})
    assert result.exit_code == 1 and SECRET not in result.output and "***" in result.output
    assert DB_WARNING not in result.stderr  # nothing on the command line


@pytest.mark.parametrize("args", [["runs", "--db", DEAD_URL], [f"--db={DEAD_URL}"],
                                  ["db", "upgrade", "--db", DEAD_URL]], ids=["runs", "=", "db"])
def test_a_password_on_the_command_line_is_warned_about(args):
    if args[0].startswith("--db="):
        args = ["runs", *args]
    result = cli(*args)
    assert DB_WARNING in result.stderr, result.stderr
    assert "DM_DATABASE_URL" in result.stderr and "DM_DATABASE_URL_FILE" in result.stderr
    assert SECRET not in result.output


def test_no_warning_without_a_password_on_the_command_line(tmp_path):
    sqlite = f"sqlite:///{tmp_path / 'dm.sqlite'}"
    for args, env in ((["runs", "--db", sqlite], {}),
                      (["runs", "--db", "postgresql+psycopg://dm@127.0.0.1:1/dm?connect_timeout=1"], {}),
                      (["runs"], {"DM_DATABASE_URL": DEAD_URL})):  # from the environment
        result = cli(*args, env=env)
        assert DB_WARNING not in result.stderr, (args, result.stderr)


def test_dm_up_warns_about_a_password_in_db(up_here):
    result = runner.invoke(app, ["up", "--no-workers", "--port", str(free_port()), "--db", DEAD_URL])
    assert DB_WARNING in result.stderr and SECRET not in result.output


# ---------------------------------------------------------------- the Launch form's text fields (issue 14 K)

# A YAML alias bomb in flow style, as it can be typed into one text field: 9**9 strings.
FLOW_ALIAS_BOMB = "[" + ", ".join(
    ["&a [lol,lol,lol,lol,lol,lol,lol,lol,lol]"]
    + [f"&{b} [{','.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi", strict=True)]) + "]"


@pytest.mark.parametrize(("key", "path", "text", "reason"), [
    ("L.model.mlp.hidden", "model.hidden", FLOW_ALIAS_BOMB, "values once its aliases are expanded"),
    ("L.model.mlp.hidden", "model.hidden", "[" * 20_000 + "]" * 20_000, "levels deep"),
    ("L.dataset.noise.asymmetric.transition", "dataset.noise.transition", FLOW_ALIAS_BOMB,
     "values once its aliases are expanded"),
], ids=["hidden-alias-bomb", "hidden-deep", "transition-alias-bomb"])
def test_launch_form_refuses_hostile_yaml_in_its_text_fields(app_db, key, path, text, reason):
    """What a text field of the Launch form holds is read with the same bounds as a config
    file: the error is under that field, nothing is queued, and the page keeps working."""
    from streamlit.testing.v1 import AppTest
    from test_app_support import APP, TIMEOUT, errors_under

    at = AppTest.from_file(APP.format("launch"), default_timeout=TIMEOUT).run()
    if "asymmetric" in key:
        at.selectbox(key="L.dataset.noise.kind").set_value("asymmetric").run()
    widget = at.text_area(key=key) if "transition" in key else at.text_input(key=key)
    widget.input(text).run()
    assert not at.exception, at.exception
    messages = errors_under(at, key)
    assert messages and all(m.startswith(f"{path}: ") and reason in m for m in messages), messages
    at.button(key="L.queue").click().run()
    assert any("Nothing queued" in e.value for e in at.error)
    assert Store(app_db).list_runs() == []
    # Back to a valid value (digits has 10 classes): no error left behind.
    valid = str(np.eye(10).tolist()) if "transition" in key else "32"
    widget = at.text_area(key=key) if "transition" in key else at.text_input(key=key)
    widget.input(valid).run()
    assert not errors_under(at, key) and not at.exception


# ---------------------------------------------------------------- control characters in names (issue 14 G)

CONTROLS = ["\x1b[2J", "\x1b]0;pwned\x07", "\x00", "\x08", "\r", "\n", "\x7f", "\x9b", "\u202e"]


@pytest.mark.parametrize("control", CONTROLS, ids=[repr(c) for c in CONTROLS])
def test_control_characters_in_run_names_are_refused(control):
    from dm_core.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as err:
        parse_config({"name": f"run{control}x"})
    [(path, message)] = err.value.errors
    assert path == "name" and "control character" in message
    assert repr(control[0]).strip("'") in message  # which one, spelt visibly
    assert control[0] not in message


# Unicode format characters (category Cf) print as nothing, or reorder the text around
# them: 'adm\u200fin' looks like 'admin' (issue 25, item 5).
INVISIBLE = ["\u200b", "\u200e", "\u200f", "\u061c", "\ufeff", "\u2062"]


@pytest.mark.parametrize("invisible", INVISIBLE, ids=[f"U+{ord(c):04X}" for c in INVISIBLE])
def test_invisible_format_characters_in_names_and_groups_are_refused(invisible):
    import unicodedata

    from dm_core.config import ConfigError, parse_config, visible_controls

    assert unicodedata.category(invisible) == "Cf"
    spelt = f"\\u{ord(invisible):04x}"  # how the message and the terminal show it
    with pytest.raises(ConfigError) as err:
        parse_config({"name": f"adm{invisible}in"})
    [(path, message)] = err.value.errors
    assert path == "name" and f"found {spelt} at position 3" in message
    assert invisible not in message
    store = Store("sqlite://")
    with pytest.raises(ConfigError) as err:
        store.submit([parse_config({"name": "fine"})], group=f"adm{invisible}in")
    assert err.value.paths() == ["group"] and spelt in str(err.value)
    assert store.list_runs() == []
    assert visible_controls(f"adm{invisible}in") == f"adm{spelt}in"


def test_dm_submit_refuses_control_characters_in_names_and_groups(tmp_path):
    config = tmp_path / "run.json"
    config.write_text('{"name": "a\\u001b[31mred", "dataset": {"name": "digits"}}')
    db = tmp_path / "dm.sqlite"
    env = {"DM_DATABASE_URL": f"sqlite:///{db}"}
    result = cli("submit", str(config), env=env)
    assert result.exit_code == 2 and "name" in result.output and "\\x1b" in result.output
    config.write_text('{"name": "fine", "dataset": {"name": "digits"}}')
    result = cli("submit", str(config), "--group", "g\x00rp", env=env)
    assert result.exit_code == 2 and "--group" in result.output and "\\x00" in result.output
    assert "\x00" not in result.output and "\x1b" not in result.output
    assert not db.exists()


def test_dm_runs_and_show_escape_control_characters_of_stored_rows(tmp_path):
    """Rows written before names were checked are shown with their control characters
    spelt out (\\x1b), never sent raw to the terminal."""
    import sqlalchemy as sa

    from dm_core.config import parse_config

    url = f"sqlite:///{tmp_path / 'dm.sqlite'}"
    store = Store(url)
    [run_id] = store.submit([parse_config({"name": "old"})], group="g").run_ids
    evil = "old\x1b]0;pwned\x07\x1b[2J\x00\u202e"
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE runs SET name = :n, group_id = :n, device = :n WHERE id = :i"),
                     {"n": evil, "i": run_id})
    store.dispose()
    for args in (["runs"], ["runs", "--wide"], ["show", str(run_id)]):
        result = cli(*args, "--db", url)
        assert result.exit_code == 0, result.output
        assert not any(c in result.output for c in "\x1b\x07\x00\u202e"), (args, repr(result.output))
        assert "\\x1b" in result.output and "\\u202e" in result.output, (args, result.output)


def test_launch_refuses_a_group_name_with_control_characters(app_db):
    from streamlit.testing.v1 import AppTest
    from test_app_support import APP, TIMEOUT

    at = AppTest.from_file(APP.format("launch"), default_timeout=TIMEOUT).run()
    at.text_input(key="L.group").input("g\x1b[2Jrp").run()
    at.button(key="L.queue").click().run()
    assert not at.exception
    assert any("Nothing queued" in e.value and "\\x1b" in e.value for e in at.error), at.error
    assert Store(app_db).list_runs() == []
