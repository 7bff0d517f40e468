# Two commands from a fresh clone: `make demo` and `make test`.
# Everything lives in ./.venv, created on first use with the interpreter named by PYTHON.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
OUT    ?= ./retrain-demo

.DEFAULT_GOAL := help
.PHONY: help demo test lint typecheck unit browser docs docs-serve bench bench-label-studio check-official-sdk clean

help:
	@echo "make demo   run the main job on the offline sandbox"
	@echo "make test   install dev dependencies, then ruff, mypy --strict and the test suite"
	@echo "           (which builds the documentation site in strict mode)"
	@echo "make docs   build the documentation site into ./site (make docs-serve: at http://127.0.0.1:8000)"
	@echo "make bench  run the benchmarks under bench/ (not part of make test)"
	@echo "make bench-label-studio  push and pull 10,000 tasks on a real Label Studio (~40 min; installs it once)"
	@echo "make check-official-sdk  run the official modzy-sdk 0.11.6 against the sandbox (needs PyPI)"

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "modzy_retrain needs Python >= 3.10; set PYTHON=python3.x")'
	$(PYTHON) -m venv $(VENV)

# Stamps record what was installed, so a second run installs nothing.
$(VENV)/.runtime: pyproject.toml | $(PY)
	$(PIP) install -e .
	@touch $@

$(VENV)/.dev: pyproject.toml | $(PY)
	$(PIP) install -e '.[dev]'
	@touch $@ $(VENV)/.runtime $(VENV)/.docs

$(VENV)/.docs: pyproject.toml | $(PY)
	$(PIP) install -e '.[docs]'
	@touch $@ $(VENV)/.runtime

demo: $(VENV)/.runtime
	$(BIN)/modzy-retrain demo --out $(OUT)

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev
	$(BIN)/mypy

# The feedback report's browser test (tests/report/test_browser.py) opens the report in
# the system's Chromium: Debian's package, installed here when it is missing and this
# runs as root (CI does; a fresh machine has no browser). Under make test that test
# fails, never skips, without a browser; MODZY_RETRAIN_REQUIRE_BROWSER=0 make test
# lets it skip on a machine where nobody can install one.
MODZY_RETRAIN_REQUIRE_BROWSER ?= 1
export MODZY_RETRAIN_REQUIRE_BROWSER

browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the report's browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "no chromium, and not root: install it (apt-get install chromium) for the browser test"; \
	fi

# The suites that mostly wait on servers they start (Label Studio, Dagster, moto and
# the GCS emulator, PostgreSQL) run in a second pytest beside the rest: the machine has
# two cores and one pytest keeps about one busy. Their output follows the rest's.
SERVER_SUITES := tests/label_studio tests/dagster tests/cloud tests/sql
SERVER_LOG    := $(VENV)/pytest-server-suites.log

unit: $(VENV)/.dev browser
	@$(PY) -m pytest $(SERVER_SUITES) > $(SERVER_LOG) 2>&1 & servers=$$!; \
	$(PY) -m pytest $(addprefix --ignore=,$(SERVER_SUITES)); rest=$$?; \
	wait $$servers; server_rc=$$?; \
	echo "==== the server suites ($(SERVER_SUITES)) ===="; cat $(SERVER_LOG); \
	echo "pytest exit codes: $$rest (the rest), $$server_rc (the server suites)"; \
	[ $$rest -eq 0 ] && [ $$server_rc -eq 0 ]

test: lint typecheck unit

# The site from docs/ and mkdocs.yml, API reference included. Warnings are printed, not
# fatal; `make test` builds it in strict mode (tests/test_docs_site.py), where they are.
# Material prints a notice (its end of life, MkDocs 2) unless NO_MKDOCS_2_WARNING is set.
docs: $(VENV)/.docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build

docs-serve: $(VENV)/.docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

bench: $(VENV)/.dev
	$(PY) bench/parse.py
	$(PY) bench/harvest.py
	$(PY) bench/harvest_layers.py
	$(PY) bench/lineage_s3.py
	$(PY) bench/sql_lineage.py
	$(PY) bench/sql_lineage.py --latency-ms 1
	$(PY) bench/memory.py
	$(PY) bench/hostile_memory.py --bound 350
	$(PY) bench/loaders.py

# A real Label Studio (installed once into ~/.cache/modzy-retrain, needs PyPI then);
# `.venv/bin/python bench/label_studio.py --quick` tries it in a few minutes.
bench-label-studio: $(VENV)/.dev
	$(PY) bench/label_studio.py

check-official-sdk: $(VENV)/.runtime
	$(PY) scripts/check_official_sdk.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache site
