# DM Studio entry points. Needs only Python 3.11+ (and, under CI=true, apt-get for Chromium,
# PostgreSQL and g++ so that no test skips).
#
#   make run     dashboard on http://127.0.0.1:8501 + one worker (SQLite in ./var); Ctrl-C stops
#   make test    the whole pytest suite (installs the dev extra when pyproject.toml changed)
#   make test-fast  the suite without the tests marked slow (5 s or more each), for the inner loop
#   make lint    ruff check
#   make bench   every benchmarks/bench_*.py in turn, written to docs/benchmarks.md
#   make reliability  the fault, invalid-input and issue regression tests, written to docs/reliability.md
#   make reproduction  the digits studies (studies/*.yaml) here, then docs/reproduction.md
#   make screenshots  docs/screenshots/*.png, taken by the browser test (tests/ui/test_e2e.py)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# The first Python >= 3.11 on PATH (override: make test PYTHON=/path/to/python3.12).
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3 python; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& { echo $$p; break; }; done)
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?= -n 2
BENCH_ARGS ?=
# Stamps: the install is redone only when pyproject.toml is newer than the last install.
RUN_STAMP := $(VENV)/.dm-installed-run
DEV_STAMP := $(VENV)/.dm-installed-dev

.PHONY: help run test test-fast lint bench reliability reproduction screenshots ci-system-deps

help:
	@sed -n 's/^#   make /make /p' $(firstword $(MAKEFILE_LIST))

$(BIN)/python:
	@if [ -z "$(PYTHON)" ]; then echo "error: Python 3.11 or newer is needed (none found on PATH)" >&2; exit 1; fi
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[studio]'
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[dev]'
	touch $@ $(RUN_STAMP)

# python -m dm_core.fused_cpu: compile the losses' CPU kernel now (about 30 s, once per
# machine; then a cache check) rather than in the first training run or test.
run: $(RUN_STAMP)
	$(BIN)/python -m dm_core.fused_cpu
	$(BIN)/dm up

# One intra-op thread per pytest process: two xdist workers on two cores with torch's default
# thread pools oversubscribe the CPU and run several times slower.
test: $(DEV_STAMP) ci-system-deps
	$(BIN)/python -m dm_core.fused_cpu
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest $(PYTEST_ARGS)

# The slow marker (pyproject.toml) is on every test that takes 5 s or more: training runs,
# subprocess workers and pytest subprocesses, and the browser tests.
test-fast: $(DEV_STAMP) ci-system-deps
	$(BIN)/python -m dm_core.fused_cpu
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest $(PYTEST_ARGS) -m "not slow"

# The only target that rewrites docs/reliability.md and docs/reliability.json (`make test`
# runs the same tests without --reliability-report and writes nothing): the fault and
# invalid-input tests, and every regression test the report's issue table names
# (tests/reliability_report.py, ISSUE_TABLES), each once.
reliability: $(DEV_STAMP) ci-system-deps
	$(BIN)/python -m dm_core.fused_cpu
	tests=$$($(BIN)/python tests/reliability_report.py --issue-tests tests/test_faults.py \
		tests/test_invalid_input.py); \
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest $$tests $(PYTEST_ARGS) \
		--reliability-report

lint: $(DEV_STAMP)
	$(BIN)/ruff check .

# One intra-op thread per process, as in `make test`: the side-by-side ratios are measured
# on a single core and the queue benchmark's workers each get one.
bench: $(DEV_STAMP)
	$(BIN)/python -m dm_core.fused_cpu
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=$${MKL_NUM_THREADS:-1} \
		$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

# The browser test writes its screenshots here only when asked (DM_SCREENSHOTS); `make test`
# leaves them untouched.
# REPRO_ARGS="--budget 1 --iterations 20" runs the same pipeline at toy size.
REPRO_ARGS ?=
REPRO_OUT ?= docs/reproduction
reproduction: $(RUN_STAMP)
	$(BIN)/python -m dm_core.fused_cpu
	for study in digits-noise digits-imbalance digits-instance; do \
		OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(BIN)/dm repro $$study --local --out $(REPRO_OUT) $(REPRO_ARGS); \
	done
	$(BIN)/dm repro --summary --out $(REPRO_OUT) --summary-out $(dir $(REPRO_OUT))reproduction.md

screenshots: $(DEV_STAMP) ci-system-deps
	$(BIN)/python -m dm_core.fused_cpu
	DM_SCREENSHOTS=$(CURDIR)/docs/screenshots OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} \
		$(BIN)/python -m pytest -n 0 -q tests/ui/test_e2e.py

# Under CI=true every test must run: install Chromium (browser tests), PostgreSQL (store
# tests) and a C++ compiler (the losses' fused CPU kernel) when missing. Elsewhere nothing is
# installed and those tests skip with a reason.
ci-system-deps:
	@if [ "$${CI:-}" != "true" ]; then exit 0; fi; \
	missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v c++ >/dev/null 2>&1 || missing="$$missing g++"; \
	if [ -z "$$missing" ]; then echo "CI: chromium, postgresql and a C++ compiler are present"; exit 0; fi; \
	echo "CI: installing$$missing"; \
	sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	export DEBIAN_FRONTEND=noninteractive; \
	$$sudo apt-get update && $$sudo apt-get install -y $$missing
