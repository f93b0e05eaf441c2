# caloflow-serve: every target sets up its own virtual environment on first use.
#   make test   - lint, type-check and run the whole test suite (what CI runs)
#   make demo   - the main job (for now: stand-in data for both particles, checked)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA   ?= data
SCALE  ?= 1.0

.PHONY: setup test lint typecheck pytest demo bench-standin clean

setup: $(STAMP)

# torch first, pinned: on the build machines torch==2.13.0 resolves to a local CPU wheel,
# anything else pulls several GB of CUDA wheels.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/caloflow data standin --particle photon --out $(DATA)/standin_photons_1.h5 --seed 1 --scale $(SCALE)
	$(BIN)/caloflow data standin --particle pion --out $(DATA)/standin_pions_1.h5 --seed 1 --scale $(SCALE)
	$(BIN)/caloflow data check $(DATA)/standin_photons_1.h5 --particle photon
	$(BIN)/caloflow data check $(DATA)/standin_pions_1.h5 --particle pion

bench-standin: $(STAMP)
	$(BIN)/python benchmarks/bench_standin.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
