# Two entry points for a fresh machine (see README.md):
#   make run    set up .venv and run the default workflow (config.yaml) on CORES cores
#   make test   set up .venv and run the whole test suite (what CI runs; slow tests included)
#   make test-fast   the same without the tests marked slow (the inner loop)
# Override TORCH to choose another build of PyTorch, e.g. a CUDA one on a GPU node.

PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.skyscan-installed
# real public ZTF alerts (fink-science's source distribution), fetched at set-up, never at run
# time: the transient case's real-data check (scripts/real_alerts_check.py)
REAL_ALERTS := data/real/ztf/CTAO_blazar_datatest_v20-12-24.parquet

.PHONY: setup run test test-fast lint clean

setup: $(STAMP) $(REAL_ALERTS)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	# Torch first and pinned, so that nothing below pulls a different (multi-GB) build.
	$(BIN)/python -m pip install "$(TORCH)"
	$(BIN)/python -m pip install -e ".[workflow,test]"
	# lenscat's known-lens catalogue file only: its package imports ligo.skymap (heavy), which
	# skyscan never imports (skyscan.catalog.known reads the shipped CSV)
	$(BIN)/python -m pip install --no-deps "lenscat>=1.1"
	touch $@

$(REAL_ALERTS): scripts/fetch_real_alerts.py | $(STAMP)
	$(BIN)/python scripts/fetch_real_alerts.py --out $(dir $@)

run: setup
	$(BIN)/snakemake --cores $(CORES)

test: setup
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check src tests scripts
	$(BIN)/lint-imports
	$(BIN)/snakemake --lint

clean:
	rm -rf results/* .snakemake
	git checkout -- results/README.md 2>/dev/null || true
