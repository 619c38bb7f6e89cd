# `make demo` and `make test` do all set-up on a fresh machine: they create .venv and install
# focalkit with the extras they need, pinned by constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --constraint constraints.txt
EXTRAS := torch,cli,keras-dev,gbdt-dev,dev

.PHONY: install test demo bench clean

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
	$(BIN)/python -m pytest --ignore=tests/keras3
	for backend in tensorflow jax torch; do \
		KERAS_BACKEND=$$backend $(BIN)/python -m pytest tests/keras3 src/focalkit/keras -q || exit 1; \
	done

demo: install
	$(BIN)/focalkit demo

bench: install
	cd benchmarks && for script in softmax_focal.py sigmoid_focal.py fused_linear.py; do \
		OMP_WAIT_POLICY=PASSIVE ../$(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
