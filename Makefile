# Two commands do all the set-up on a fresh machine with Python >= 3.10:
#   make demo   -- install and run the main recipe (lasso feature selection on scikit-learn's diabetes data)
#   make test   -- install and pass the checks: ruff, mypy, pytest
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?= -n 2

.PHONY: install demo test lint typecheck pytest figures-quick docs clean test-oldest

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/reglight run lasso

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy src

pytest: install
	WANDB_MODE=offline $(BIN)/pytest $(PYTEST_ARGS)

# every gallery figure with small computations (under 2 minutes on 2 cores)
figures-quick: install
	WANDB_MODE=offline $(BIN)/reglight figures --quick --out build/gallery-quick

test: lint typecheck pytest figures-quick

# The tests against the oldest supported releases (.ci/oldest-constraints.txt), in a fresh venv.
# OLDEST_TORCH: torch is installed first and kept out of the constraints; the default is the torch
# this was last run with (PyPI's Linux torch 2.4 is a multi-GB CUDA build). For the real lower
# bound: make test-oldest OLDEST_TORCH="torch==2.4.0 torchvision==0.19.0"
OLDEST_VENV  ?= build/venv-oldest
OLDEST_TORCH ?= torch==2.14.1 torchvision==0.29.1

test-oldest:
	rm -rf $(OLDEST_VENV)
	$(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(OLDEST_VENV)/bin/pip install -q $(OLDEST_TORCH)
	$(OLDEST_VENV)/bin/pip install -q -c .ci/oldest-constraints.txt -e ".[dev]"
	$(OLDEST_VENV)/bin/pip list
	WANDB_MODE=offline $(OLDEST_VENV)/bin/pytest $(PYTEST_ARGS)

docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) site build dist .pytest_cache .mypy_cache .ruff_cache
