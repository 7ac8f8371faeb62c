# Two commands for a new user: `make run` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FLASK := $(VENV)/bin/flask --app app
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: install install-prod run test bench lint audit migrate clean

# Development install: the runtime set plus test, lint, audit and browser-driving tools.
install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

# Production host: the runtime set only (no pytest, playwright, ruff, ...).
install-prod:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt

migrate: install
	$(FLASK) triage migrate

# A model that misses the quality gate is kept but not activated; the service still starts and sends
# every email to the triage queue until a model is active (serve says so).
# `make run PORT=5001 HOST=0.0.0.0` to listen elsewhere.
run: migrate
	-$(FLASK) triage train --if-missing
	$(FLASK) triage serve --host $(HOST) --port $(PORT)

# Two test processes (pytest-xdist), a test file at a time each; TEST_WORKERS=1 runs them in one.
TEST_WORKERS ?= 2
test: install
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

# Quick profile by default (a few minutes on 2 cores); BENCH_FULL=1 make bench for the full sizes.
bench: install
	$(PY) -m bench

# Offline: ruff's checks, ruff's format check, and mypy --strict on triage/ (settings in pyproject.toml).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Needs the network (PyPI advisory data). pip-audit checks every pinned requirement, runtime and development;
# --strict fails when a package cannot be checked, rather than passing with nothing audited.
audit: install
	$(VENV)/bin/pip-audit --requirement requirements-dev.txt --no-deps --disable-pip --strict --progress-spinner off

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
