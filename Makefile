# Every target builds .venv on first use; `make demo` and `make test` are all a new machine needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SOAK_DURATION ?= 30m

.PHONY: install demo test lint bench bench-more acceptance soak notebooks figures clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/eventlake demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check common flows sources sinks tests benchmarks notebooks
	$(BIN)/ruff format --check common flows sources sinks tests benchmarks notebooks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m benchmarks.ratios

bench-more: $(STAMP)
	$(BIN)/python -m benchmarks
	$(BIN)/python -m benchmarks.files

acceptance: $(STAMP)
	$(BIN)/python -m benchmarks.acceptance

soak: $(STAMP)
	$(BIN)/python -m benchmarks.soak --duration $(SOAK_DURATION)

demo-output: $(STAMP)
	$(BIN)/eventlake demo

notebooks: demo-output
	$(BIN)/python -m pip install --quiet -e '.[notebooks]'
	EVENTLAKE_OUT=$(CURDIR)/demo-output $(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/

figures: demo-output
	EVENTLAKE_OUT=$(CURDIR)/demo-output $(BIN)/python notebooks/export_figures.py

clean:
	rm -rf $(VENV) demo-output .eventlake
