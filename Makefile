# `make test` and `make demo` are all a fresh clone needs: both (re)build the
# local virtualenv .venv from setup.py when setup.py changed or .venv is missing.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
PY := $(VENV)/bin/python
# Test processes (pytest-xdist, `--dist loadgroup`: tests/conftest.py keeps each file in one
# process, so its module fixtures are built once, gives each benchmark of test_benchmarks.py
# a group of its own and starts the slowest files first): 2 matches this project's 2-core
# machines; 0 runs the tests in the pytest process itself (for pdb).
PYTEST_WORKERS ?= 2

.PHONY: venv test test-fast demo bench wheel clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# The whole suite (slow end-to-end tests included).
test: $(STAMP)
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadgroup --durations=15 tests

# Everything but the tests marked `slow`.
test-fast: $(STAMP)
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadgroup -m "not slow" tests

demo: $(STAMP)
	$(PY) -m cnn_rnn_tf.demo --workdir=runs/demo

bench: $(STAMP)
	$(PY) -m benchmarks.run --out=benchmarks

wheel: $(STAMP)
	$(PY) -m pip wheel --no-deps -w dist .

clean:
	rm -rf $(VENV) build dist *.egg-info
