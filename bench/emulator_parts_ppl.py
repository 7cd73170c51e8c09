"""Which part of the shipped emulator breaks Gemma 3 270M? Held-out KJV perplexity per variant.

Builds ScaleOT as shipped, without SRC, SRC alone, drop and uniform LayerDrop from the stage 1 of
the Gemma quick job (``runs/gemma_quick/importance``, BENCHMARKS.md "A second real architecture")
and prints each one's perplexity on 16 held-out KJV blocks of 128 tokens, next to the full model's.
About 4 minutes on one core.

    env PYTHONPATH=$PWD/src OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 taskset -c 0 .venv/bin/python bench/emulator_parts_ppl.py
"""

import time

import torch

from scaleot.data import corpus_splits
from scaleot.emulator import EmulatorConfig, build_emulator
from scaleot.evaluation.perplexity import perplexity
from scaleot.models import load_model

torch.set_num_threads(1)
model, tok = load_model("gemma3-270m", device="cpu")
_, held = corpus_splits("kjv", tok, 128, max_train_blocks=1, max_heldout_blocks=16)
print("full ppl", round(perplexity(model, held), 2), flush=True)
imp = "runs/gemma_quick/importance"
for name, kw in [("scaleot a0.25 b0.5", dict(method="scaleot", importance=imp, alpha=0.25, beta=0.5)),
                 ("scaleot a0.25 b0", dict(method="scaleot", importance=imp, alpha=0.25, beta=0.0)),
                 ("scaleot a0 b0.5", dict(method="scaleot", importance=imp, alpha=0.0, beta=0.5)),
                 ("drop a0.25 b0", dict(method="drop", importance=imp, alpha=0.25, beta=0.0)),
                 ("uniform a0.25 b0", dict(method="uniform", alpha=0.25, beta=0.0))]:
    t = time.time()
    b = build_emulator(model, EmulatorConfig(**kw, diagnostic_blocks=0), tokenizer=tok)
    print(name, "ppl", round(perplexity(b.model, held), 2), f"({time.time() - t:.0f} s)", flush=True)
    del b
