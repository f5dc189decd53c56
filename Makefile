# ChargeTracker — the two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP_RUN  := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test
PYTEST_ARGS ?=
## Test processes (pytest-xdist; one per core). Modules stay whole on one worker
## (--dist loadscope), so module fixtures are built once. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2

.PHONY: demo test lint bench venv install install-test system-deps clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[server]'
	$(PY) scripts/warmup.py
	touch $@

$(STAMP_TEST): pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[test]'
	$(PY) scripts/warmup.py
	touch $@ $(STAMP_RUN)

install: $(STAMP_RUN)
install-test: $(STAMP_TEST)

## System packages the tests need (Chromium for the dashboard tests). Installed with apt
## when running as root and missing; otherwise the browser tests say why they skip.
system-deps:
	@bash scripts/system-deps.sh

demo: $(STAMP_RUN)
	$(VENV)/bin/chargetracker demo

test: $(STAMP_TEST) system-deps
	$(PY) -m ruff check src tests
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

lint: $(STAMP_TEST)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m mypy

bench: $(STAMP_TEST)
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
