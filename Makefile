# make run: start the server on the embedded SQLite default (with demo keys).
# make test: create the venv, install, lint, run the tests.
# Dependencies are declared in pyproject.toml: `make run` installs the runtime
# ones (uv pip install .), `make test` the `test` extra too (.[test]).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Test processes. The suite mostly waits (servers, sockets, sleeps), so more
# workers than this machine's 2 cores pay: see README "Development".
TEST_WORKERS ?= 4

.PHONY: run test lint fmt bench clean

# The venv gets uv, which installs the dependencies in about half of pip's
# time (README "Dependencies"); bytecode is compiled at install, as pip does,
# so no test process compiles a library again.
INSTALL := $(BIN)/uv pip install -q --python $(BIN)/python --compile-bytecode

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(BIN)/uv: | $(BIN)/python
	$(BIN)/pip install -q uv

$(VENV)/.runtime: pyproject.toml | $(BIN)/uv
	$(INSTALL) .
	touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/uv
	$(INSTALL) ".[test]"
	touch $@ $(VENV)/.runtime

run: $(VENV)/.runtime
	$(BIN)/python server.py --demo

# Lint first (seconds), then the suite on TEST_WORKERS processes. loadgroup with
# the groups tests/xdist_groups.py names: a file's tests on one worker, and the
# real-Mongo tier's in two groups, each on one worker and one wire server.
# Bytecode is cached (in __pycache__/, ignored by git) even where the
# environment sets PYTHONDONTWRITEBYTECODE: the suite starts ~200 server and CLI
# processes, and each would compile the project again.
test: lint
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# Style (ruff), types (mypy), and which room may import which (import-linter).
lint: $(VENV)/.test
	$(BIN)/ruff check --output-format concise .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: $(VENV)/.test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(VENV)/.test
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info
