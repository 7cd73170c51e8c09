"""Which part of the shipped emulator breaks a model? Held-out KJV perplexity per variant.

Builds ScaleOT as shipped, without SRC, SRC alone, drop and uniform LayerDrop from a stage 1
(``--importance``, made on the same ``--model``) and prints each one's perplexity on 16
held-out KJV blocks of 128 tokens, next to the full model's. Written for Gemma 3 270M and the
stage 1 of its quick job (BENCHMARKS.md "A second real architecture"); about 4 minutes on one core:

    env OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 taskset -c 0 .venv/bin/python -m bench.emulator_parts_ppl \\
        --model gemma3-270m --importance runs/gemma_quick/importance
"""

from __future__ import annotations

import argparse
import time

import torch

from scaleot.data import corpus_splits
from scaleot.evaluation.perplexity import perplexity
from scaleot.model_owner.emulator import EmulatorConfig, build_emulator
from scaleot.models import DEFAULT_MODEL, load_model


def variants(importance: str) -> list[tuple[str, dict]]:
    """The emulators compared: (label, EmulatorConfig options)."""
    return [("scaleot a0.25 b0.5", dict(method="scaleot", importance=importance, alpha=0.25, beta=0.5)),
            ("scaleot a0.25 b0", dict(method="scaleot", importance=importance, alpha=0.25, beta=0.0)),
            ("scaleot a0 b0.5", dict(method="scaleot", importance=importance, alpha=0.0, beta=0.5)),
            ("drop a0.25 b0", dict(method="drop", importance=importance, alpha=0.25, beta=0.0)),
            ("uniform a0.25 b0", dict(method="uniform", alpha=0.25, beta=0.0))]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, help="model name or HF folder")
    ap.add_argument("--importance", required=True, help="a stage-1 folder made on --model")
    ap.add_argument("--held-blocks", type=int, default=16, help="held-out KJV blocks of 128 tokens")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    model, tok = load_model(args.model, device="cpu")
    _, held = corpus_splits("kjv", tok, 128, max_train_blocks=1, max_heldout_blocks=args.held_blocks)
    print("full ppl", round(perplexity(model, held), 2), flush=True)
    for name, kw in variants(args.importance):
        t = time.time()
        b = build_emulator(model, EmulatorConfig(**kw, diagnostic_blocks=0), tokenizer=tok)
        print(name, "ppl", round(perplexity(b.model, held), 2), f"({time.time() - t:.0f} s)", flush=True)
        del b


if __name__ == "__main__":
    main()
