# Two commands for a new user: `make run` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FLASK := $(VENV)/bin/flask --app app
STAMP := $(VENV)/.installed

.PHONY: install run test bench lint migrate train clean

install: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $(STAMP)

migrate: install
	$(FLASK) triage migrate

# A model that misses the quality gate is kept but not activated; the service still starts and sends
# every email to the triage queue until a model is active (serve says so).
run: migrate
	-$(FLASK) triage train --if-missing
	$(FLASK) triage serve

test: install
	$(PY) -m pytest

bench: install
	$(PY) -m bench

# pip-audit checks every pinned requirement against the PyPI advisory data; --strict fails when a package
# cannot be checked (no network to pypi.org), rather than passing with nothing audited.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pip-audit --requirement requirements.txt --no-deps --disable-pip --strict --progress-spinner off

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
