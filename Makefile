# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export ECM_HOME ?= $(CURDIR)/.ecm
export DAGSTER_HOME ?= $(ECM_HOME)/dagster

.PHONY: setup run test test-slow test-all lint dev demo check bench clean

$(BIN)/ecm: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

setup: $(BIN)/ecm

# Demo data is generated once; `make demo` regenerates it (and resets the sheet, outbox and lake).
$(ECM_HOME)/warehouse.duckdb: | $(BIN)/ecm
	$(BIN)/ecm demo

# The Dagster instance (runs, metadata) lives in $(DAGSTER_HOME), configured by the project's dagster.yaml.
$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

run: setup $(ECM_HOME)/warehouse.duckdb $(DAGSTER_HOME)/dagster.yaml  ## triage the latest tick and print the briefing
	$(BIN)/ecm triage

demo: setup
	$(BIN)/ecm demo

check: setup
	$(BIN)/ecm check

dev: setup $(ECM_HOME)/warehouse.duckdb $(DAGSTER_HOME)/dagster.yaml  ## the Dagster UI on http://127.0.0.1:3000
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

lint: setup
	$(BIN)/ruff check .

# The everyday suite (under 4 minutes on 2 cores); `make test-slow` runs the end-to-end tests marked
# slow, `make test-all` both. CI runs both.
test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow"

test-slow: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m slow

test-all: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# One table at 1x, 10x and 100x the demo volume (about 15 minutes; BENCH_ARGS="--json out.json" for
# machines). The focused scripts in bench/ are run by hand (bench/README.md).
bench: setup
	$(BIN)/python bench/bench_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(ECM_HOME) *.egg-info
