# Two entry points for a fresh machine (see README.md):
#   make run    set up .venv and run the default workflow (config.yaml) on CORES cores
#   make test   set up .venv and run the test suite
# Override TORCH to choose another build of PyTorch, e.g. a CUDA one on a GPU node.

PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.skyscan-installed

.PHONY: setup run test test-all lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	# Torch first and pinned, so that nothing below pulls a different (multi-GB) build.
	$(BIN)/python -m pip install "$(TORCH)"
	$(BIN)/python -m pip install -e ".[workflow,test]"
	touch $@

run: setup
	$(BIN)/snakemake --cores $(CORES)

test: setup
	$(BIN)/pytest $(PYTEST_ARGS)

test-all: setup
	$(BIN)/pytest -m "" $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check src tests scripts
	$(BIN)/snakemake --lint

clean:
	rm -rf results/* .snakemake
	git checkout -- results/README.md 2>/dev/null || true
