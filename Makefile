# `make demo` and `make test` do all set-up on a fresh machine: they create .venv and install
# focalkit with the extras they need, pinned by constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --constraint constraints.txt
EXTRAS := torch,dev

.PHONY: install test demo lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-$(EXTRAS): pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) --editable ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed-$(EXTRAS)

test: install
	$(BIN)/ruff check
	$(BIN)/ruff format --check
	$(BIN)/mypy src
	$(BIN)/python -m pytest

demo: install
	$(BIN)/python -m focalkit

bench: install
	$(BIN)/python benchmarks/softmax_focal.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
