# satwatch: two commands do all the set-up on a fresh clone.
#   make demo   the main job (installs, builds, serves, detects, reports)
#   make test   lint, format check and the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: install
	$(BIN)/ruff check src tests triton-repository
	$(BIN)/ruff format --check src tests triton-repository

format: install
	$(BIN)/ruff check --fix src tests triton-repository
	$(BIN)/ruff format src tests triton-repository

test: lint
	$(BIN)/pytest

demo: install
	$(BIN)/satwatch demo

clean:
	rm -rf $(VENV) artifacts build .pytest_cache
