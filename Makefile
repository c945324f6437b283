# The README's commands, one word each. `make help` lists them.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: help setup setup-dev demo test lint bench reliability clean

help:  ## show this help
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PY) -m venv $(VENV)

setup: $(BIN)/python  ## install refseq into .venv
	$(BIN)/pip install -q -e .

setup-dev: $(BIN)/python  ## install refseq with the dev extras into .venv
	$(BIN)/pip install -q -e '.[dev]'

demo: setup  ## the whole main job end to end on the embedded default (SQLite in ./demo, no Redis)
	rm -rf demo && $(BIN)/refseq demo --dir demo

test: setup-dev  ## lint, type-check, layer contract, then the whole test suite (SQLite + PostgreSQL)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q
	$(BIN)/python -m benchmarks --quick

bench: setup-dev  ## every stage vs its raw baseline, SQLite + PostgreSQL (ARGS=--quick|--large, --only STAGE)
	$(BIN)/python -m benchmarks $(ARGS)

reliability: setup-dev  ## fault + bad-input suite -> docs/reliability.md (ARGS=--soak for the long variant)
	$(BIN)/python -m tests.reliability_report $(ARGS)

clean:  ## remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache demo
