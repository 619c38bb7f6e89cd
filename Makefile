# `make demo` and `make test` do all set-up on a fresh machine: they create .venv and install
# focalkit with the extras they need, pinned by constraints.txt. One .venv serves both: a stamp
# file per set of extras records what is installed, and the full set includes the demo's, so
# `make demo` then `make test` adds the rest, and `make test` then `make demo` installs nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --constraint constraints.txt
# The demo needs the cli extra only (PyTorch CPU, scikit-learn, matplotlib, rich: about 1.3 GB).
DEMO_EXTRAS := cli
# The tests and the docs need every front-end and its test backends (TensorFlow, JAX,
# transformers: 3.8 GB).
EXTRAS := torch,cli,keras-dev,jax-dev,gbdt-dev,dask,transformers,dev,docs
DEMO_STAMP := $(VENV)/.installed-$(DEMO_EXTRAS)
STAMP := $(VENV)/.installed-$(EXTRAS)
SPHINX := $(BIN)/python -m sphinx -b html

.PHONY: install install-demo test docs demo bench clean

$(BIN)/python:
	@echo "Creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	@echo "Installing focalkit[$(EXTRAS)] into $(VENV): PyTorch, TensorFlow, JAX, XGBoost,"
	@echo "LightGBM, Dask, transformers and the dev tools, about 3.8 GB; several minutes on a first run."
	$(PIP) --editable ".[$(EXTRAS)]"
	touch $@ $(DEMO_STAMP)

$(DEMO_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	@echo "Installing focalkit[$(DEMO_EXTRAS)] into $(VENV): PyTorch (CPU), scikit-learn,"
	@echo "matplotlib and rich, about 1.3 GB; a few minutes on a first run."
	$(PIP) --editable ".[$(DEMO_EXTRAS)]"
	touch $@

install: $(STAMP)

install-demo: $(DEMO_STAMP)

test: install
	$(BIN)/ruff check
	$(BIN)/ruff format --check
	$(BIN)/mypy src
	$(BIN)/python -m pytest --ignore=tests/keras3
	for backend in tensorflow jax torch; do \
		KERAS_BACKEND=$$backend $(BIN)/python -m pytest tests/keras3 src/focalkit/keras -q || exit 1; \
	done
# The reference from scratch (-E), a warning (a broken docstring, a public name left out) failing it.
	$(SPHINX) -E -q -W --keep-going docs docs/_build/html

docs: install
	$(SPHINX) docs docs/_build/html
	@echo "The reference is in docs/_build/html/index.html"

# --force: each run rewrites focalkit-report/ (ignored by git) instead of refusing to.
demo: install-demo
	$(BIN)/focalkit demo --force

bench: install
	cd benchmarks && for script in softmax_focal.py sigmoid_focal.py fused_linear.py compiled.py jax_focal.py family.py transformers_fused.py vocab_parallel.py; do \
		OMP_WAIT_POLICY=PASSIVE ../$(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis docs/_build
