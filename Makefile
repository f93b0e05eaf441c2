# caloflow-serve: every target sets up its own virtual environment on first use.
#   make test   - lint, type-check and run the whole test suite (what CI runs)
#   make serve  - the main job: serve the demo models (HTTP 8000, gRPC 8001, metrics 8002)
#   make demo   - stand-in data for both particles, written and checked
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA   ?= data
SCALE  ?= 1.0

.PHONY: setup protos serve test lint typecheck pytest gpu-check demo models model-photon model-pion model-ild model-ds2 model-ds3 bench-standin bench-generate bench-serve eval-demo quality clean

setup: $(STAMP)

# torch first, pinned: on the build machines torch==2.13.0 resolves to a local CPU wheel,
# anything else pulls several GB of CUDA wheels.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python server/caloflow_server/gen_protos.py
	$(BIN)/python clients/python/caloflow_client/_protogen.py
	sh docker/install-test-deps.sh
	sh clients/cpp/install-deps.sh
	npm ci --prefix tests/k8s --no-audit --no-fund
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

protos: $(STAMP)
	$(BIN)/python server/caloflow_server/gen_protos.py
	$(BIN)/python clients/python/caloflow_client/_protogen.py

pytest: protos
	$(BIN)/pytest -q

test: lint typecheck pytest

serve: protos
	$(BIN)/caloflow serve --repo model_repo

demo: $(STAMP)
	$(BIN)/caloflow data standin --particle photon --out $(DATA)/standin_photons_1.h5 --seed 1 --scale $(SCALE)
	$(BIN)/caloflow data standin --particle pion --out $(DATA)/standin_pions_1.h5 --seed 1 --scale $(SCALE)
	$(BIN)/caloflow data check $(DATA)/standin_photons_1.h5 --particle photon
	$(BIN)/caloflow data check $(DATA)/standin_pions_1.h5 --particle pion

# Demo models: the `small` preset on stand-in data (not Geant4), one particle per core, one thread each so
# that the same seed gives the same weights on any machine with this torch build. Each export is the model's
# next version; `repo prune` then removes the older ones (model_repo/ is committed: one version per model, holding
# only the artifact the server runs, model.fast.onnx; export other formats from $(RUNS)/small_<particle> if needed).
MODEL_SEED ?= 1
RUNS       ?= runs

models: $(STAMP)
	$(MAKE) -j2 model-photon model-pion model-ild model-ds2 model-ds3

model-photon model-pion: model-%: $(STAMP)
	$(BIN)/caloflow data standin --particle $* --out $(DATA)/standin_$*_1.h5 --seed 1 --no-progress
	$(BIN)/caloflow train all --particle $* --preset small --data $(DATA)/standin_$*_1.h5 \
		--out $(RUNS)/small_$* --seed $(MODEL_SEED) --threads 1 --resume --no-progress
	$(BIN)/caloflow export $(RUNS)/small_$* --repo model_repo --model caloflow_$* --formats fast_onnx --make-default
	$(BIN)/caloflow repo prune caloflow_$* --repo model_repo

# L2LFlows for the ILD ECAL: 10 000 stand-in photons (--scale 0.1), the central 10 x 10 crop of each layer,
# served as one ONNX graph (Scan loops). About 25 min on one thread of this 2-core CPU.
model-ild: $(STAMP)
	$(BIN)/caloflow data standin --dataset ild-photon --out $(DATA)/standin_ild_1.h5 --seed 1 --scale 0.1 --no-progress
	$(BIN)/caloflow train all --dataset ild-photon --preset small --data $(DATA)/standin_ild_1.h5 \
		--out $(RUNS)/small_ild --seed $(MODEL_SEED) --threads 1 --resume --no-progress
	$(BIN)/caloflow export $(RUNS)/small_ild --repo model_repo --model l2lflows_ild --formats onnx --make-default
	$(BIN)/caloflow repo prune l2lflows_ild --repo model_repo

# iCaloFlow for CaloChallenge Datasets 2 and 3 (electrons, 45 layers): 20 000 stand-in showers each (--scale 0.2),
# the `small` preset, served as one fast ONNX graph (float16 students). One thread each, both at once on 2 cores
# beside other work: DS2 38 min (peak RSS 1.7 GB), DS3 89 min (4.1 GB).
model-ds2 model-ds3: model-%: $(STAMP)
	$(BIN)/caloflow data standin --dataset $*-electron --out $(DATA)/standin_$*-electron_1.h5 --seed 1 --scale 0.2 --no-progress
	$(BIN)/caloflow train all --dataset $*-electron --preset small --data $(DATA)/standin_$*-electron_1.h5 \
		--out $(RUNS)/small_$* --seed $(MODEL_SEED) --threads 1 --resume --no-progress
	$(BIN)/caloflow export $(RUNS)/small_$* --repo model_repo --model icaloflow_$* --formats fast_onnx --make-default
	$(BIN)/caloflow repo prune icaloflow_$* --repo model_repo

bench-standin: $(STAMP)
	$(BIN)/python benchmarks/bench_standin.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Evaluate the demo models against an independent stand-in file (seed 2) with the CaloChallenge metrics:
# eval-demo/summary.md (the README's table), eval-demo/<particle>/index.html.
eval-demo: $(STAMP)
	$(BIN)/caloflow evaluate-demo --repo model_repo --runs-dir $(RUNS) --data $(DATA) --out eval-demo

# Benchmarks: figures printed, never timed assertions. Generation speed of the published (paper-size,
# untrained) photon pipeline against the nflows reference, torch-runtime formats and ONNX Runtime formats in
# separate processes (two runtimes' thread pools on two cores stall each other); the server against the model.
bench-generate: $(STAMP)
	$(BIN)/caloflow bench generate --model paper-photon --batch-sizes 1,1000,10000 --groups 8 \
		--formats fast_aoti --compare-reference --threads 2 --json bench_generate_torch.json
	$(BIN)/caloflow bench generate --model paper-photon --batch-sizes 1,1000,10000 \
		--formats fast_onnx,onnx --compare-reference --threads 2 --json bench_generate_onnx.json

bench-serve: $(STAMP)
	$(BIN)/caloflow bench serve --model caloflow_photon --count 1000000 --json bench_serve.json

# The quality report of each demo model's default version: N showers as served, evaluated against an independent
# stand-in file (seed 2; the demo models were trained on seed 1), written to model_repo/<model>/<version>/quality.json
# with its checksum in quality.sha256 (`caloflow repo verify` checks it; the server answers it at
# /v2/models/<model>/quality). Rerun after re-exporting a demo model: about 5-10 min per model on one thread.
QUALITY_N ?= 10000

$(DATA)/standin_ild_2.h5:
	$(BIN)/caloflow data standin --dataset ild-photon --out $@ --seed 2 --scale 0.1 --no-progress

$(DATA)/standin_ds2-electron_2.h5 $(DATA)/standin_ds3-electron_2.h5: $(DATA)/standin_%_2.h5:
	$(BIN)/caloflow data standin --dataset $* --out $@ --seed 2 --scale 0.1 --no-progress

$(DATA)/standin_%_2.h5:
	$(BIN)/caloflow data standin --particle $* --out $@ --seed 2 --no-progress

quality: $(STAMP) $(DATA)/standin_photon_2.h5 $(DATA)/standin_pion_2.h5 $(DATA)/standin_ild_2.h5 \
		$(DATA)/standin_ds2-electron_2.h5 $(DATA)/standin_ds3-electron_2.h5
	$(BIN)/caloflow repo quality caloflow_photon --repo model_repo --reference $(DATA)/standin_photon_2.h5 \
		--n $(QUALITY_N) --threads 1 --no-progress
	$(BIN)/caloflow repo quality caloflow_pion --repo model_repo --reference $(DATA)/standin_pion_2.h5 \
		--n $(QUALITY_N) --threads 1 --no-progress
	$(BIN)/caloflow repo quality l2lflows_ild --repo model_repo --reference $(DATA)/standin_ild_2.h5 \
		--n $(QUALITY_N) --threads 1 --no-progress --metrics hist,energy,corr,cls-high,fpd,kpd,w1,prdc
	$(BIN)/caloflow repo quality icaloflow_ds2 --repo model_repo --reference $(DATA)/standin_ds2-electron_2.h5 \
		--n $(QUALITY_N) --threads 1 --no-progress
	$(BIN)/caloflow repo quality icaloflow_ds3 --repo model_repo --reference $(DATA)/standin_ds3-electron_2.h5 \
		--n 5000 --threads 1 --no-progress --metrics hist,energy,corr,cls-high,fpd,kpd,w1,prdc

# Everything that needs a GPU (CUDA tests, paper-size photon benchmark in every precision mode, the served path on
# CUDA with its TF32 state asserted, the GPU precision gates) in one run of at most ~8 min on one H100, into one
# JSON file ($(OUT)/gpu_check.json, or ./gpu_check.json). Without CUDA it writes a "no CUDA device: skipped" file.
gpu-check: protos
	$(BIN)/python benchmarks/gpu_check.py --out $${OUT:-.}/gpu_check.json
