# Set-up is implicit: every target first makes sure .venv exists and holds `pip install -e ".[dev]"`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.interpviz-installed
# glibc returns every freed block above its mmap threshold to the OS, so PyTorch's large CPU tensors are
# page-faulted in afresh on each allocation. Keeping freed memory (up to 1 GiB) for reuse makes dissection
# about 1.5x faster on a 2-core CPU (benchmarks/README.md). Ignored where glibc is not the C library.
export GLIBC_TUNABLES ?= glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824

.PHONY: lab test book doctor bench clean

# A new .venv takes about 6.1 GB (PyTorch's CUDA build from this machine's disk is most of it): say so before
# pip runs out of space half way.
NEW_VENV_KB := 7000000

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || { free_kb=$$(df -Pk . | awk 'NR==2 {print $$4}'); \
	  test "$$free_kb" -ge $(NEW_VENV_KB) || { echo "make: a new .venv needs about 7 GB of free disk;" \
	  "only $$((free_kb / 1024)) MB are free here ($$(pwd)). Free some space and run make again." >&2; exit 1; }; }
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
	$(BIN)/python benchmarks/dissect_vs_lite_baseline.py --images 100 --layer blocks.4
	$(BIN)/python benchmarks/dissect_vs_lite_baseline.py --images 100 --layer head

doctor: $(STAMP)  ## which weights and data this machine has
	$(BIN)/interpviz doctor

clean:
	rm -rf build .pytest_cache
