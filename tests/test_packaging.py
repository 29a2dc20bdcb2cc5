"""Packaging: the Dockerfile, docker-compose.yml, Makefile, CI script, presets and ``dm up``
agree with each other and with the ``dm`` command line they drive.

The CLI side is read from the real Typer app (``dm --help`` through CliRunner), never from a
list kept by hand, so a renamed command or option fails here before it fails in a container.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
import yaml
from typer.main import get_command
from typer.testing import CliRunner

import studio.cli.up as up_module
from studio import supervisor
from studio.cli import app

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
WIDE = {"COLUMNS": "200", "NO_COLOR": "1"}  # one help row per line, nothing truncated
runner = CliRunner()


def cli(*args: str):
    return runner.invoke(app, list(args), env=WIDE)


def registered_commands() -> dict:
    group = get_command(app)
    return {name: cmd for name, cmd in group.commands.items() if not cmd.hidden}


def command_rows(help_text: str, box: str = "Commands") -> list[tuple[str, str]]:
    """(first column, rest) of every row in one of rich's help boxes; continuation rows have ''."""
    rows, inside = [], False
    for line in help_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("╭─") and box in stripped:
            inside = True
            continue
        if inside and stripped.startswith("╰"):
            break
        if inside:
            body = stripped.strip("│").rstrip()
            first, _, rest = body.strip().partition(" ")
            rows.append(("" if body.startswith("  ") else first, rest.strip()))
    return rows


# ---------------------------------------------------------------- the dm command line

def test_version_matches_pyproject():
    result = cli("--version")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"dm-studio {PYPROJECT['project']['version']}"


def test_python_dash_m_runs_the_same_cli():
    out = subprocess.run([sys.executable, "-m", "studio.cli", "--version"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"dm-studio {PYPROJECT['project']['version']}"


def test_help_lists_every_command_with_one_line_of_help():
    result = cli("--help")
    assert result.exit_code == 0, result.output
    rows = command_rows(result.output)
    assert rows, result.output
    assert all(first for first, _ in rows), f"a command's help wraps onto a second line:\n{result.output}"
    listed = {first: rest for first, rest in rows}
    commands = registered_commands()
    assert set(listed) == set(commands), result.output
    for name, cmd in commands.items():
        summary = (cmd.help or cmd.short_help or "").strip().splitlines()
        assert summary and summary[0].strip(), f"`dm {name}` has no help text"
        assert listed[name] == summary[0].strip(), (name, listed[name])


def test_every_command_has_working_help():
    for name in registered_commands():
        result = cli(name, "--help")
        assert result.exit_code == 0, (name, result.output)
        assert f"dm {name}" in result.output


def test_choice_options_offer_exactly_the_values_the_code_knows(tmp_path):
    """--status takes the store's RunStatus values; --what/--format what dm export writes. A
    value outside them is refused by the option itself: exit 2, every allowed value listed."""
    from dm_store import RunStatus

    db = f"sqlite:///{tmp_path / 'dm.sqlite'}"
    assert cli("db", "upgrade", "--db", db).exit_code == 0  # dm runs never creates a database
    for status in RunStatus:
        result = cli("runs", "--status", status.value, "--json", "--db", db)
        assert result.exit_code == 0 and result.stdout.strip() == "[]", result.output
    for argv, allowed in ((["runs", "--status", "done"], [s.value for s in RunStatus]),
                          (["export", "1", "--what", "weights"], ["scalars", "histograms", "evals"]),
                          (["export", "1", "--format", "xlsx"], ["csv", "parquet"])):
        result = cli(*argv, "--db", db)
        assert result.exit_code == 2, (argv, result.output)
        assert all(f"'{value}'" in result.output for value in allowed), (argv, result.output)


# ---------------------------------------------------------------- dm runs in a terminal

@pytest.fixture
def listed_runs(tmp_path):
    """Three runs (one running with a long name, one queued, one cancelled) and the database URL."""
    from dm_core.config import parse_config
    from dm_store import Store

    url = f"sqlite:///{tmp_path / 'dm.sqlite'}"
    store = Store(url)
    long_name = "digits-symmetric-40-dm[loss.lam=0.5,loss.beta=12,optimizer.lr=0.05]"
    ids = store.submit([parse_config({"name": n}) for n in (long_name, "short", "gone")],
                       group="a-rather-long-group-name-20261204").run_ids
    store.claim("worker-1", "cuda:0")
    store.cancel(ids[2])
    store.dispose()
    return url, ids, long_name


def _runs_at(columns: int, url: str, *args: str):
    result = runner.invoke(app, ["runs", "--db", url, *args],
                           env={"COLUMNS": str(columns), "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("columns", [80, 60])
def test_dm_runs_fits_the_terminal(listed_runs, columns):
    """At 80 (and 60) columns every line fits; the id, status and progress of each run are
    whole; the name is shortened (…), not the key columns; what is left out is said."""
    url, ids, long_name = listed_runs
    out = _runs_at(columns, url)
    lines = out.splitlines()
    assert all(len(line) <= columns for line in lines), out
    # What every run shares (here loss, λ/β, noise, seed) is said once, above the table.
    assert lines[0].startswith("every run listed: loss dm")
    header = next(line for line in lines if line.startswith("id ")).split()
    for key in ("id", "status", "progress", "name"):
        assert key in header, out
    rows = {int(line.split()[0]): line for line in lines if line.split() and line.split()[0].isdigit()}
    assert set(rows) == set(ids), out
    assert "running" in rows[ids[0]] and "0/1000" in rows[ids[0]]
    assert "queued" in rows[ids[1]] and "short" in rows[ids[1]]
    assert "cancelled" in rows[ids[2]]
    assert long_name not in out and "…" in rows[ids[0]]  # shortened to fit
    # The columns left out are named, with how to see them.
    flat = " ".join(out.split())
    assert f"hidden at {columns} columns: " in flat and flat.endswith("(--wide shows them)")


def test_dm_runs_wide_shows_every_column_whole(listed_runs):
    url, ids, long_name = listed_runs
    out = _runs_at(80, url, "--wide")
    assert out.splitlines()[0].split() == ["id", "name", "status", "test", "acc", "sel", "acc",
                                           "loss", "params", "noise", "seed", "progress",
                                           "attempt", "group", "device", "heartbeat"]
    assert long_name in out and "a-rather-long-group-name-20261204" in out and "cuda:0" in out
    assert "…" not in out


def test_dm_runs_at_80_columns_keeps_what_tells_grid_runs_apart(tmp_path):
    """A grid's names share a long start: it is said once, and each row keeps the end of
    its name, its λ and β, its final and selected accuracy; what every run shares (loss,
    noise, seed) is said once instead of taking a column."""
    from dm_store import Store
    from studio.sweeps import expand_grid

    url = f"sqlite:///{tmp_path / 'dm.sqlite'}"
    store = Store(url)
    base = {"name": "digits-symmetric-40-dm", "dataset": {"noise": {"kind": "symmetric", "rate": 0.4}}}
    configs = expand_grid(base, ["loss.lam=0.5,1", "loss.beta=4,12"])
    ids = store.submit(configs, group="digits-symmetric-40-dm-20261206-120000-abcd").run_ids
    store.claim("worker-1", "cpu")
    store.finish(ids[0], "worker-1", "succeeded", summary={"test_acc_final": 0.9012,
                                                          "test_acc_selected": 0.8876})
    store.dispose()
    out = _runs_at(80, url)
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines), out
    assert "names: digits-symmetric-40-dm[…" in out
    assert "every run listed: loss dm · noise symmetric 0.4 · seed 0" in out
    header = lines[[i for i, line in enumerate(lines) if line.startswith("id")][0]]
    assert header.split()[:8] == ["id", "name", "status", "test", "acc", "sel", "acc", "params"]
    rows = {int(line.split()[0]): line for line in lines if line.split() and line.split()[0].isdigit()}
    for run_id, cfg in zip(ids, configs, strict=True):
        lam, beta = cfg.loss.params()["lam"], cfg.loss.params()["beta"]
        assert f"λ={lam:g} β={beta:g}" in rows[run_id], out
        assert f"beta={beta:g}]" in rows[run_id], out  # the name's end is kept
        assert "digits-symmetri" not in rows[run_id]
    assert "0.9012" in rows[ids[0]] and "0.8876" in rows[ids[0]]


def test_dm_runs_in_a_wide_terminal_needs_no_wide(listed_runs):
    url, _, long_name = listed_runs
    out = _runs_at(250, url)
    assert long_name in out and "cuda:0" in out and "--wide" not in out


# ---------------------------------------------------------------- Dockerfile

def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    logical, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    out = []
    for line in logical:
        instruction, _, args = line.partition(" ")
        out.append((instruction.upper(), args.strip()))
    return out


def test_dockerfile_base_image_is_a_build_arg_with_a_cuda_default():
    instr = dockerfile_instructions()
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for i, a in instr if i == "ARG" and "=" in a}
    base = args["BASE_IMAGE"]
    assert base.startswith("pytorch/pytorch:") and "cuda" in base and "runtime" in base
    assert ("FROM", "${BASE_IMAGE}") in instr
    # The default base's torch must be allowed by our own pin.
    torch_version = tuple(int(x) for x in re.match(r"pytorch/pytorch:(\d+)\.(\d+)", base).groups())
    assert (2, 2) <= torch_version <= (2, 14)
    assert "python:3.11-slim" in (ROOT / "Dockerfile").read_text(encoding="utf-8"), \
        "the CPU variant (BASE_IMAGE=python:3.11-slim) must be documented"


def test_dockerfile_installs_the_project_with_studio_and_postgres_extras_as_non_root():
    instr = dockerfile_instructions()
    runs = " ".join(a for i, a in instr if i == "RUN")
    assert re.search(r"pip install [^&;]*\.\[studio,postgres\]", runs), runs
    users = [a for i, a in instr if i == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"
    user = users[-1]
    assert "useradd" in runs and user in runs
    # Nothing the image copies is missing from the build context.
    for i, a in instr:
        if i == "COPY":
            for src in shlex.split(a)[:-1]:
                if not src.startswith("--"):
                    assert (ROOT / src).exists(), f"COPY {src}: not in the repository"


def test_dockerfile_points_the_installed_app_at_the_copied_presets(monkeypatch, tmp_path):
    """The installed app has no source tree beside it: ``DM_CONFIGS`` names the copied presets."""
    instr = dockerfile_instructions()
    workdir = next(a for i, a in instr if i == "WORKDIR")
    copied = [shlex.split(a) for i, a in instr if i == "COPY"]
    assert ["configs", "./configs"] in copied
    env = " ".join(a for i, a in instr if i == "ENV")
    assert f"DM_CONFIGS={workdir}/configs" in env
    from app.presets import configs_dir, yaml_presets
    (tmp_path / "only.yaml").write_text("name: only\n", encoding="utf-8")
    monkeypatch.setenv("DM_CONFIGS", str(tmp_path))
    assert configs_dir() == tmp_path and list(yaml_presets()) == ["only.yaml"]


def test_dockerfile_entrypoint_is_dm_and_exposes_8501():
    instr = dockerfile_instructions()
    entry = [a for i, a in instr if i == "ENTRYPOINT"]
    assert entry and json.loads(entry[-1]) == ["dm"]
    assert any(i == "EXPOSE" and "8501" in a.split() for i, a in instr)
    cmd = json.loads([a for i, a in instr if i == "CMD"][-1])
    assert_dm_invocation_valid(cmd)


def test_dockerignore_keeps_what_the_image_copies():
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert ".venv" in ignored and ".git" in ignored and "var" in ignored
    copied = [shlex.split(a)[0] for i, a in dockerfile_instructions() if i == "COPY"]
    for src in copied:
        assert src.rstrip("/") not in ignored, f"{src} is copied but excluded by .dockerignore"


# ---------------------------------------------------------------- docker-compose.yml

@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def dm_services(compose: dict) -> dict:
    """Services built from this repository (they run ``dm`` through the image's ENTRYPOINT)."""
    return {n: s for n, s in compose["services"].items() if "build" in s}


def option_names(subcommand: str) -> set[str]:
    """Option names as printed by ``dm <subcommand> --help``."""
    result = cli(subcommand, "--help")
    assert result.exit_code == 0, result.output
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", result.output))


def assert_dm_invocation_valid(argv: list[str]) -> None:
    """``argv`` (what follows ``dm``) names a listed subcommand and only options it has."""
    top = cli("--help")
    listed = {first for first, _ in command_rows(top.output) if first}
    sub = argv[0]
    assert sub in listed, f"`dm {sub}` is run but `dm --help` does not list it ({sorted(listed)})"
    known = option_names(sub)
    for token in argv[1:]:
        if token.startswith("--"):
            name = token.split("=", 1)[0]
            assert name in known, f"`dm {sub}` has no option {name} (it has {sorted(known)})"


def test_compose_services_and_commands(compose):
    services = compose["services"]
    assert {"postgres", "app", "worker"} <= set(services)
    for name, svc in dm_services(compose).items():
        command = svc["command"]
        assert isinstance(command, list), f"{name}: give the command as a list"
        assert_dm_invocation_valid(command)
    app_cmd = services["app"]["command"]
    assert app_cmd[0] == "up" and "--no-workers" in app_cmd
    assert app_cmd[app_cmd.index("--host") + 1] == "0.0.0.0"
    assert services["worker"]["command"][0] == "worker"


def test_compose_database_url_everywhere(compose):
    services = compose["services"]
    pg = services["postgres"]["environment"]
    for name, svc in dm_services(compose).items():
        url = svc["environment"]["DM_DATABASE_URL"]
        assert url.startswith("postgresql+psycopg://"), (name, url)
        m = re.match(r"postgresql\+psycopg://([^:]+):(.+)@postgres:5432/(\w+)$", url)
        assert m, url
        user, password, db = m.groups()
        assert (user, password, db) == (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"])
        # The password comes from the environment; the default is only for local use.
        assert password.startswith("${POSTGRES_PASSWORD:-"), password
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_compose_postgres_has_volume_and_healthcheck(compose):
    pg = compose["services"]["postgres"]
    assert any(v.split(":")[0] in compose["volumes"] for v in pg["volumes"])
    test = pg["healthcheck"]["test"]
    assert "pg_isready" in (test if isinstance(test, str) else " ".join(test))


def test_compose_app_port_and_worker_gpu_and_scaling(compose):
    services = compose["services"]
    ports = services["app"]["ports"]
    assert any(str(p).endswith("8501:8501") for p in ports)
    worker = services["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]} in devices
    # --scale worker=N needs no fixed name and no published port.
    assert "container_name" not in worker and "ports" not in worker


def test_compose_artifacts_volume_is_shared(compose):
    mounts = {}
    for name, svc in dm_services(compose).items():
        target = svc["environment"]["DM_ARTIFACTS"]
        vols = [v for v in svc.get("volumes", []) if v.split(":")[1] == target]
        assert vols, f"{name}: nothing mounted at DM_ARTIFACTS={target}"
        mounts[name] = vols[0].split(":")[0]
    assert mounts["app"] == mounts["worker"] and mounts["app"] in compose["volumes"]
    assert set(mounts.values()) == {mounts["app"]}, mounts


def test_compose_workers_read_datasets_where_the_image_allows(compose):
    """Workers load datasets only from DM_DATA_DIRS (the Dockerfile sets it): compose mounts
    the host's data folder there, read-only, for every worker service."""
    env = dict(re.findall(r"(DM_[A-Z_]+)=(\S+)", (ROOT / "Dockerfile").read_text()))
    allowed = env["DM_DATA_DIRS"]
    workers = {name: svc for name, svc in dm_services(compose).items()
               if svc["command"][0] == "worker"}
    assert workers, "no compose service runs `dm worker`"
    for name, svc in workers.items():
        mounts = [v.rsplit(":", 2) for v in svc["volumes"]]
        assert any(target == allowed and mode == "ro" for _, target, mode in
                   (m for m in mounts if len(m) == 3)), (name, svc["volumes"])


def test_compose_publishes_dashboard_on_loopback_by_default(compose):
    port = compose["services"]["app"]["ports"][0]
    assert port.startswith("${DM_BIND:-127.0.0.1}:"), port


def readme_dm_commands() -> list[list[str]]:
    """Every ``dm ...`` line of the README's shell blocks, continuations joined, comments cut."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            while argv and "=" in argv[0] and not argv[0].startswith("-"):
                argv = argv[1:]  # leading VAR=value assignments
            if argv and argv[0] == "dm":
                commands.append(argv[1:])
    return commands


def test_readme_commands_exist():
    commands = readme_dm_commands()
    assert {c[0] for c in commands} >= {"train", "submit", "runs", "worker", "up", "export"}
    for argv in commands:
        assert_dm_invocation_valid(argv)


def test_wheel_carries_migrations_pages_and_theme(tmp_path):
    """A non-editable install (the Docker image, a wheel) has every file the app needs at runtime."""
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                          "-q", "-w", str(tmp_path), str(ROOT)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (wheel,) = tmp_path.glob("dm_studio-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    needed = {"dm_store/migrations/script.py.mako", "dm_store/migrations/env.py",
              "dm_store/migrations/versions/0001_initial.py", "app/.streamlit/config.toml",
              "app/streamlit_app.py", "workers/worker.py"}
    needed |= {f"app/views/{p.name}" for p in (ROOT / "app" / "views").glob("*.py")}
    assert needed <= names, f"missing from the wheel: {sorted(needed - names)}"


def test_readme_images_and_links_exist():
    """Every image and relative link in the README points at a file in the repository."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#]+)\)", text)
    local = [t for t in targets if "://" not in t]
    assert any(t.endswith(".png") for t in local), "the README shows the dashboard's screenshots"
    for target in local:
        assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


# ---------------------------------------------------------------- dependencies: the engine, the studio

STDLIB = frozenset(sys.stdlib_module_names)
PROJECT_PACKAGES = ("dm_core", "dm_store", "workers", "studio", "app")
STUDIO_PACKAGES = ("dm_store", "workers", "studio", "app")
# Imported only where the feature is used, each with its own install hint in the error.
FEATURE_EXTRAS = {"psycopg": "postgres", "submitit": "cluster"}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(requirements: list[str]) -> set[str]:
    return {_normalized(re.match(r"[A-Za-z0-9._-]+", r.strip()).group(0)) for r in requirements}


def _is_import_error(handler: ast.ExceptHandler) -> bool:
    caught = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(c, ast.Name) and c.id in ("ImportError", "ModuleNotFoundError")
               for c in caught)


def third_party_imports(package: str) -> dict[str, list[tuple[str, bool]]]:
    """Every third-party module ``package`` imports, at any depth, with where (file:line) and
    whether that import is guarded (inside ``try`` with an ``except ImportError``)."""
    found: dict[str, list[tuple[str, bool]]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        guarded = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.Try)
                   and any(_is_import_error(h) for h in node.handlers)
                   for statement in node.body for inner in ast.walk(statement)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in STDLIB and top not in PROJECT_PACKAGES and top != "__future__":
                    found.setdefault(top, []).append(
                        (f"{path.relative_to(ROOT)}:{node.lineno}", id(node) in guarded))
    return found


@functools.cache
def _installed_distributions() -> dict[str, list[str]]:
    """Top-level module -> distributions, read once: each read goes through every installed
    package's records, and the scans ask about dozens of modules (10-30 s a scan uncached)."""
    from importlib.metadata import packages_distributions

    return packages_distributions()


def distribution_of(module: str) -> str:
    """The installed distribution that provides top-level ``module`` (``yaml`` -> ``pyyaml``),
    read from the installed packages' own records."""
    (name, *_) = _installed_distributions()[module]
    return _normalized(name)


def test_the_import_scan_sees_guarded_and_lazy_imports(tmp_path, monkeypatch):
    # The scan must be able to fail: a lazy import counts, and only try/except ImportError guards.
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "m.py").write_text(
        "import os\nimport numpy\n"
        "def f():\n    from yaml import safe_load\n"
        "try:\n    import cleanlab.rank\nexcept ImportError:\n    cleanlab = None\n"
        "try:\n    import torch\nexcept ValueError:\n    pass\n", encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert third_party_imports("probe") == {
        "numpy": [("probe/m.py:2", False)], "yaml": [("probe/m.py:4", False)],
        "cleanlab": [("probe/m.py:6", True)], "torch": [("probe/m.py:10", False)]}


def test_the_engine_declares_every_dependency_it_imports():
    """``pip install dm-studio`` is the engine alone: whatever dm_core imports unguarded is a
    base dependency; what it imports guarded (the fused kernel's ninja, cleanlab's reference
    score) is declared in the base or in an extra."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    base = _requirement_names(PYPROJECT["project"]["dependencies"])
    anywhere = base.union(*(_requirement_names(r) for r in extras.values()))
    for module, places in third_party_imports("dm_core").items():
        dist = distribution_of(module)
        needed = not all(guarded for _, guarded in places)
        assert dist in (base if needed else anywhere), \
            f"dm_core imports {module} ({places[0][0]}): declare {dist}"


def test_the_base_dependencies_are_the_engines_alone():
    # Nothing in the base that the engine does not import: the studio's belong to its extra.
    base = _requirement_names(PYPROJECT["project"]["dependencies"])
    assert base <= {distribution_of(module) for module in third_party_imports("dm_core")}


def test_the_studio_packages_imports_are_in_the_studio_extra():
    extras = PYPROJECT["project"]["optional-dependencies"]
    declared = (_requirement_names(PYPROJECT["project"]["dependencies"])
                | _requirement_names(extras["studio"]))
    for package in STUDIO_PACKAGES:
        for module, places in third_party_imports(package).items():
            if module in FEATURE_EXTRAS:
                assert distribution_of(module) in _requirement_names(extras[FEATURE_EXTRAS[module]])
                continue
            assert distribution_of(module) in declared, \
                f"{package} imports {module} ({places[0][0]}): add it to the studio extra"


def test_dev_installs_the_studio_and_every_feature_extra():
    dev = PYPROJECT["project"]["optional-dependencies"]["dev"]
    (own,) = [r for r in dev if _normalized(r).startswith(PYPROJECT["project"]["name"] + "[")]
    assert set(own.split("[")[1].rstrip("]").split(",")) == {"studio", *FEATURE_EXTRAS.values()}


def test_dm_without_the_studio_extra_names_the_install_command():
    """The console script checks the studio extra before importing the command line: here
    Typer's distribution reads as not installed, and ``dm`` says what to install instead of a
    traceback (and never gets as far as importing studio.cli)."""
    code = ("import sys; from importlib import metadata; real = metadata.distribution\n"
            "def fake(name):\n"
            "    if name.lower() == 'typer': raise metadata.PackageNotFoundError(name)\n"
            "    return real(name)\n"
            "metadata.distribution = fake\n"
            "from studio import entry_point\n"
            "try:\n    entry_point.main()\n"
            "finally:\n    print('studio.cli' in sys.modules, file=sys.stderr)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=tempfile.gettempdir())
    assert out.returncode == 1
    name = PYPROJECT["project"]["name"]
    assert out.stderr.splitlines() == [
        "False", f"dm: error: the dm command needs the studio extra of {name}, and typer is not "
                 f"installed: pip install '{name}[studio]'"]


def test_the_console_script_is_the_checked_entry_point():
    assert PYPROJECT["project"]["scripts"] == {"dm": "studio.entry_point:main"}
    from studio import entry_point

    assert entry_point.DISTRIBUTION == PYPROJECT["project"]["name"]
    assert entry_point.EXTRA in PYPROJECT["project"]["optional-dependencies"]



# ---------------------------------------------------------------- Makefile and CI

def test_ci_run_is_executable_and_runs_make_test_under_ci():
    ci = ROOT / ".ci" / "run"
    assert os.access(ci, os.X_OK), ".ci/run must be executable"
    text = ci.read_text(encoding="utf-8")
    assert "set -euo pipefail" in text
    assert re.search(r"^export CI=true$", text, re.M)
    assert re.search(r"^exec make test\b", text, re.M)


def test_make_targets_dry_run(tmp_path):
    """``make -n`` prints what each entry point would run, without running it."""
    venv = tmp_path / "venv"
    out = subprocess.run(["make", "-n", "-C", str(ROOT), f"VENV={venv}", "run", "test", "test-fast",
                          "lint", "bench"],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "CI": "false"})
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert f"-m venv {venv}" in text
    assert "pip install --disable-pip-version-check -e '.[studio]'" in text  # make run
    assert "pip install --disable-pip-version-check -e '.[dev]'" in text
    assert f"{venv}/bin/dm up" in text
    assert f"{venv}/bin/python -m pytest -n 2" in text
    assert f'{venv}/bin/python -m pytest -n 2 -m "not slow"' in text  # make test-fast
    assert f"{venv}/bin/ruff check ." in text
    assert f"{venv}/bin/python benchmarks/run_all.py" in text  # make bench writes docs/benchmarks.md


def test_make_test_reinstalls_only_when_pyproject_changes(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    stamp = venv / ".dm-installed-dev"
    stamp.touch()
    os.utime(stamp, (time.time() + 3600,) * 2)  # newer than pyproject.toml
    out = subprocess.run(["make", "-n", "-C", str(ROOT), f"VENV={venv}", "test"],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "CI": "false"})
    assert out.returncode == 0, out.stderr
    assert "pip install" not in out.stdout and "-m pytest" in out.stdout
    os.utime(stamp, (0, 0))  # older than pyproject.toml
    out = subprocess.run(["make", "-n", "-C", str(ROOT), f"VENV={venv}", "test"],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "CI": "false"})
    assert "pip install --disable-pip-version-check -e '.[dev]'" in out.stdout


# ---------------------------------------------------------------- presets

PRESETS = sorted((ROOT / "configs").glob("*.yaml"))


def test_there_are_presets():
    assert len(PRESETS) >= 3, PRESETS


@pytest.mark.parametrize("path", PRESETS, ids=[p.stem for p in PRESETS])
def test_preset_validates(path):
    from dm_core.config import load_config

    cfg = load_config(path)
    assert cfg.name == path.stem, "a preset's name is its file name"
    if cfg.schedule.milestones:
        assert cfg.schedule.milestones[-1] < cfg.iterations


def test_cifar10_preset_follows_the_papers_table():
    """The paper's CIFAR-10 table (dm_core.reference.PAPER_CIFAR10): SGD momentum 0.9, lr 0.1
    times 0.1 every 5k iterations, batch 128, weight decay 1e-4; at 40% noise the best final
    test accuracy is DM with λ = 1, β = 16."""
    from dm_core.config import load_config
    from dm_core.reference import PAPER_CIFAR10

    cfg = load_config(ROOT / "configs" / "cifar10-resnet56-symmetric-40-dm.yaml")
    assert cfg.model.name == "resnet56" and cfg.dataset.name == "cifar10"
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.momentum) == ("sgd", 0.1, 0.9)
    assert cfg.optimizer.weight_decay == pytest.approx(1e-4)
    assert cfg.batch_size == 128 and cfg.iterations == 20_000
    assert cfg.schedule.milestones == [5_000, 10_000, 15_000] and cfg.schedule.gamma == pytest.approx(0.1)
    at_40 = [r for r in PAPER_CIFAR10 if r.rate == 0.4 and r.method.startswith("DM")]
    best = max(at_40, key=lambda r: r.final)
    assert (cfg.loss.lam, cfg.loss.beta) == (1.0, 16.0) == (float(best.method.split("=")[1]), best.beta)


# ---------------------------------------------------------------- dashboard theme

def _luminance(hex_colour: str) -> float:
    """WCAG 2.x relative luminance."""
    channels = [int(hex_colour.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _contrast(a: str, b: str) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize("mode", ["light", "dark"])
def test_theme_is_readable(mode):
    config = tomllib.loads((ROOT / "app" / ".streamlit" / "config.toml").read_text())
    theme = config["theme"][mode]
    for bg in ("backgroundColor", "secondaryBackgroundColor"):
        assert _contrast(theme["textColor"], theme[bg]) >= 7.0, (mode, bg)
        assert _contrast(theme["linkColor"], theme[bg]) >= 4.5, (mode, bg)
    assert _contrast(theme["primaryColor"], theme["backgroundColor"]) >= 4.5, mode
    assert _contrast("#FFFFFF", theme["primaryColor"]) >= 4.0, "white text on primary buttons"


def test_theme_contrast_reference_values():
    # WCAG's own examples: black on white is 21:1, a colour on itself 1:1.
    assert _contrast("#000000", "#FFFFFF") == pytest.approx(21.0)
    assert _contrast("#777777", "#777777") == pytest.approx(1.0)


# ---------------------------------------------------------------- dm up

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fake_app(tmp_path, monkeypatch):
    """Point ``dm up`` (in-process) at a trivial script, for checks that stop before Streamlit."""
    script = tmp_path / "streamlit_app.py"
    script.write_text("import streamlit as st\nst.write('hi')\n")
    monkeypatch.setattr(up_module, "_app_file", lambda: script)
    monkeypatch.delenv("DM_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    return script


def test_up_refuses_a_port_in_use(fake_app, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli("up", "--no-workers", "--port", str(port), "--db", f"sqlite:///{tmp_path}/dm.sqlite")
    assert result.exit_code != 0
    assert f"port {port}" in result.output and "not available" in result.output


def test_up_fails_clearly_without_the_app_file(fake_app, tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "streamlit_app.py"
    monkeypatch.setattr(up_module, "_app_file", lambda: missing)
    result = cli("up", "--no-workers", "--port", str(free_port()))
    assert result.exit_code != 0
    assert str(missing) in result.output and "missing" in result.output


def test_up_rejects_contradictory_worker_options(fake_app):
    result = cli("up", "--workers", "2", "--no-workers")
    assert result.exit_code != 0 and "contradict" in result.output


def test_up_rejects_a_malformed_database_url(fake_app):
    result = cli("up", "--no-workers", "--port", str(free_port()), "--db", "not a url")
    assert result.exit_code != 0 and "is not a URL" in result.output


def test_up_fails_clearly_when_the_database_is_unreachable(fake_app):
    dead = f"postgresql+psycopg://dm:pw-Zq81x@127.0.0.1:{free_port()}/dm?connect_timeout=2"
    result = cli("up", "--no-workers", "--port", str(free_port()), "--db", dead)
    assert result.exit_code != 0 and "database error" in result.output
    assert "pw-Zq81x" not in result.output, "the password must never be printed"


def test_default_database_is_sqlite_under_var_with_the_schema_in_place(fake_app, tmp_path):
    import sqlalchemy as sa

    url = up_module._prepare_database(None, tmp_path / "artifacts")
    assert url == f"sqlite:///{tmp_path}/var/dm.sqlite"
    with sa.create_engine(url).connect() as conn:
        assert "runs" in sa.inspect(conn).get_table_names()


def test_workers_get_one_gpu_each_round_robin(tmp_path):
    children = supervisor.worker_children(3, 2, "sqlite:///x", tmp_path, {})
    devices = [c.argv[c.argv.index("--device") + 1] for c in children]
    assert devices == ["cuda:0", "cuda:1", "cuda:0"]
    assert all(c.argv[:4] == [sys.executable, "-m", "studio.cli", "worker"] for c in children)
    for child in children:  # every option it passes is one `dm worker` has
        assert_dm_invocation_valid(child.argv[3:])
    cpu = supervisor.worker_children(2, 0, "sqlite:///x", tmp_path, {})
    assert [c.argv[c.argv.index("--device") + 1] for c in cpu] == ["cpu", "cpu"]
    # Two CPU workers split the cores instead of oversubscribing them.
    assert all(int(c.env["OMP_NUM_THREADS"]) >= 1 for c in cpu)


def test_up_passes_stale_after_to_its_workers(monkeypatch, tmp_path):
    # The real `dm worker` options: the flag must be one the worker accepts.
    children = supervisor.worker_children(2, 0, "sqlite:///x", tmp_path, {}, stale_after=7.5)
    assert all(c.argv[c.argv.index("--stale-after") + 1] == "7.5" for c in children)
    assert_dm_invocation_valid(children[0].argv[3:])
    assert "--stale-after" not in supervisor.worker_children(1, 0, "sqlite:///x", tmp_path, {})[0].argv
    result = CliRunner().invoke(app, ["up", "--stale-after", "0.1"], env=WIDE)
    assert result.exit_code == 2 and "--stale-after" in result.output


def test_auth_detection(tmp_path, monkeypatch, fake_app):
    from studio.access import auth_section_for, is_loopback, login_required

    def configured() -> bool:
        return login_required(auth_section_for(fake_app), os.environ)

    monkeypatch.delenv("DM_PASSWORD", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert not configured()
    monkeypatch.setenv("DM_PASSWORD", "s3cret")
    assert configured()
    monkeypatch.delenv("DM_PASSWORD")
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text('[auth]\nredirect_uri = "http://x/oauth2callback"\n')
    assert configured()
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0")


def _child(name: str, code: str) -> supervisor.Child:
    return supervisor.Child(name, [sys.executable, "-c", code], dict(os.environ))


SLEEPER = "import time\nwhile True: time.sleep(0.05)"
# Ignores the first SIGTERM (as a worker that is checkpointing: it says so in argv[2]) and
# exits on the second; argv[1] says its handler is installed.
TWO_TERMS = ("import pathlib, signal, sys, time\n"
             "def on_term(*_):\n"
             "    if pathlib.Path(sys.argv[2]).exists(): sys.exit(0)\n"
             "    pathlib.Path(sys.argv[2]).touch()\n"
             "signal.signal(signal.SIGTERM, on_term)\n"
             "pathlib.Path(sys.argv[1]).touch()\n"
             "while True: time.sleep(0.05)")


def test_supervisor_restarts_a_crashed_worker_but_not_one_that_stopped_on_purpose():
    dashboard, crashed, done = _child("dashboard", SLEEPER), _child("w0", "raise SystemExit(3)"), \
        _child("w1", "raise SystemExit(0)")
    for c in (dashboard, crashed, done):
        c.start()
    try:
        # "Signal" as soon as the crashed worker was started again: the loop then returns 0.
        assert supervisor.supervise(dashboard, [crashed, done], lambda: crashed.restarts) == 0
        assert crashed.restarts == 1 and done.restarts == 0 and done.proc.returncode == 0
    finally:
        supervisor.stop_all([dashboard, crashed, done], 30, lambda: 0)
    dashboard.start()
    dashboard.proc.kill()
    dashboard.proc.wait()
    assert supervisor.supervise(dashboard, [], lambda: 0) == 1  # the dashboard died


def test_supervisor_stops_warm_then_cold_then_kills(tmp_path):
    ready, warm = tmp_path / "ready", tmp_path / "warm"
    stubborn = _child("stubborn", TWO_TERMS)
    stubborn.argv += [str(ready), str(warm)]
    stubborn.start()
    while not ready.exists():  # its SIGTERM handler is installed
        assert stubborn.alive()
        time.sleep(0.01)
    # The user signals again once the first SIGTERM was taken: the second SIGTERM ends it
    # long before the grace period (600 s) is over.
    supervisor.stop_all([stubborn], 600, lambda: int(warm.exists()))
    assert stubborn.proc.returncode == 0 and warm.exists()
    deaf_ready = tmp_path / "deaf-ready"
    deaf = _child("deaf", "import pathlib, signal, sys, time\n"
                          "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                          "pathlib.Path(sys.argv[1]).touch()\nwhile True: time.sleep(0.05)")
    deaf.argv.append(str(deaf_ready))
    deaf.start()
    while not deaf_ready.exists():
        assert deaf.alive()
        time.sleep(0.01)
    supervisor.stop_all([deaf], 0, lambda: 0)  # no grace at all: killed
    assert deaf.proc.returncode == -signal.SIGKILL


APP_FILE = ROOT / "app" / "streamlit_app.py"


@pytest.mark.slow
def test_up_serves_the_dashboard_and_stops_cleanly_on_sigterm(tmp_path):
    """The real thing: ``dm up --no-workers`` on a free port and a temporary SQLite database;
    /_stcore/health answers ``ok``; SIGTERM stops it, with exit code 0, within seconds."""
    assert APP_FILE.is_file(), f"{APP_FILE} is missing"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DM_DATABASE_URL", "DM_PASSWORD")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "studio.cli", "up", "--no-workers", "--port", str(port),
         "--db", f"sqlite:///{tmp_path}/dm.sqlite", "--artifacts", str(tmp_path / "artifacts")],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        body, deadline = None, time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    body = r.read().decode()
                    break
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        assert body == "ok", f"no health answer; dm up exited with {proc.poll()}"
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, output
        assert "stopped" in output
        with pytest.raises((urllib.error.URLError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
