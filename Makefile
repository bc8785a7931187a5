# One command runs the service (`make run`), one runs the tests (`make test`).
PYTHON ?= python3
# Two test processes (the machines here have two cores); a module's tests stay together so that
# module-scoped services (the e2e tests' running service) start once.
PYTEST_ARGS ?= -n 2 --dist loadfile
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall only when the dependency list changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	touch $@

install: $(STAMP) node_modules/.installed

run: $(STAMP)
	$(BIN)/python -m provisioner

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

bench: install
	$(BIN)/python -m bench.processor
	$(BIN)/python -m bench.api
	$(BIN)/python -m bench.listing_statement
	$(BIN)/python -m bench.dataplane

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
