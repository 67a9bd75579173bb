# Two commands for a fresh clone: `make demo` and `make test` (each sets up .venv first).
# `make test-fast` skips the tests marked slow: under a minute on a 2-core CPU without a GPU.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast docs install clean

demo: $(STAMP)
	$(PY) -m fastnmf demo

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# The API reference (numpydoc docstrings + docs/*.md) as HTML in docs/_build/html; warnings are errors.
docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html

install: $(STAMP)

# Without a GPU, pin the CPU build of torch that lies on this kind of machine's disk (a plain range would
# pull a multi-GB CUDA build); with a GPU, the project's own range keeps whatever CUDA build is there.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install "torch==2.13.0"; fi
	$(PY) -m pip install -e ".[test,plot]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info demo-output docs/_build
