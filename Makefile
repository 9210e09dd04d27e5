# The two commands a newcomer needs: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install up down status check lint types unit test demo bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

up: install
	$(BIN)/sdlcflow up

down: install
	$(BIN)/sdlcflow down

status: install
	$(BIN)/sdlcflow status

lint: install
	$(BIN)/ruff check sdlcflow tests benchmarks
	$(BIN)/ruff format --check sdlcflow tests benchmarks

types: install
	$(BIN)/mypy

check: lint types

unit: install
	$(BIN)/pytest -q tests/unit

test: check up
	$(BIN)/pytest -q -rs tests

demo: up
	$(BIN)/sdlcflow demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
