# Set-up is implicit: every target first makes sure .venv exists and holds `pip install -e ".[dev]"`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.interpviz-installed

.PHONY: lab test book doctor bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

lab: $(STAMP)  ## start JupyterLab on the course notebooks
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

test: $(STAMP)  ## the whole suite, notebooks included, offline and in fast mode (what CI runs)
	INTERPVIZ_FAST=1 INTERPVIZ_OFFLINE=1 MPLBACKEND=Agg $(BIN)/python -m pytest

book: $(STAMP)  ## execute every notebook in full and write HTML pages plus index.html to build/book/
	MPLBACKEND=Agg $(BIN)/interpviz book --notebooks notebooks --out build/book

bench: $(STAMP)  ## timing scripts (installs torch-lucent, the comparison baseline, into .venv)
	$(BIN)/python -m pip install -e ".[dev,bench]"
	$(BIN)/python benchmarks/forward_to.py
	$(BIN)/python benchmarks/optvis_vs_lucent.py
	$(BIN)/python benchmarks/dissect_vs_lite_baseline.py

doctor: $(STAMP)  ## which weights and data this machine has
	$(BIN)/interpviz doctor

clean:
	rm -rf build .pytest_cache
