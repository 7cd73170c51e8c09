"""Would a gradient probe give IST scores that seeds agree on? (issue 15, feasibility)

IST's probe scales a layer's adapter output and scores the loss change, which measures what
that adapter has learned so far (path-dependent: two seeds agree at 0.11-0.20, BENCHMARKS.md).
This bench measures the alternative signal at the start of tuning: for each seed, a fresh
LoRA (r 8, every block; peft's random A, zero B) on SmolLM2-135M (``--model``), one batch of ``--batch-size``
training examples drawn by the seed, one backward; a layer's signal is the norm of its
``lora_B`` gradients. It reports Spearman between every pair of seeds' layer rankings and
between the ranking and depth. Nothing is trained; a few minutes on one core.

    env OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python -m bench.ist_grad_agreement \\
        --task gen:ordering --seeds 0 1 2 3 --out bench/results/ist_grad_agreement.md
"""

from __future__ import annotations

import argparse
import copy
import random
import re
from pathlib import Path

import torch
from peft import get_peft_model

from scaleot.data import PadCollator, SplitConfig, encode_example, load_task
from scaleot.data_owner.tuners.ist import lora_config_for
from scaleot.models import DEFAULT_MODEL, load_model
from scaleot.stats import spearman


def layer_grad_norms(base, tok, examples, cfg, max_length: int) -> list[float]:
    model = get_peft_model(copy.deepcopy(base), cfg)
    batch = PadCollator(tok.pad_token_id)([encode_example(e, tok, max_length) for e in examples])
    model(**batch).loss.backward()
    per: dict[int, float] = {}
    for name, p in model.named_parameters():
        if p.grad is not None and "lora_B" in name:
            block = int(re.search(r"layers\.(\d+)\.", name).group(1))
            per[block] = per.get(block, 0.0) + p.grad.pow(2).sum().item()
    return [per[b] ** 0.5 for b in sorted(per)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, help="model name or HF folder")
    ap.add_argument("--task", default="gen:ordering")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--out", default="bench/results/ist_grad_agreement.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    splits = load_task(args.task, SplitConfig(seed=0, n_test=200, n_val=64))
    base, tok = load_model(args.model, device="cpu")
    cfg = lora_config_for(base)
    norms = {}
    for seed in args.seeds:
        torch.manual_seed(seed)
        examples = random.Random(seed).sample(list(splits.train), args.batch_size)
        norms[seed] = layer_grad_norms(base, tok, examples, cfg, args.max_length)
    seeds = list(norms)
    pairs = [(a, b, spearman(norms[a], norms[b])) for i, a in enumerate(seeds) for b in seeds[i + 1:]]
    depth = {s: spearman(list(range(len(norms[s]))), norms[s]) for s in seeds}
    lines = [f"# Per-layer LoRA gradient norms at the start of tuning: {args.task}", "",
             f"{args.model} fp32, LoRA r 8 on every projection of all {len(norms[seeds[0]])} blocks, one batch of "
             f"{args.batch_size} training examples (max_length {args.max_length}) per seed; the seed draws the "
             "LoRA init and the batch.", "",
             "| seeds | Spearman of the layer rankings |", "|---|---|"]
    lines += [f"| {a}, {b} | {r:.2f} |" for a, b, r in pairs]
    mean = sum(r for *_, r in pairs) / len(pairs)
    lines += ["", f"Mean over pairs: **{mean:.2f}**. Spearman with depth per seed: "
              + ", ".join(f"{depth[s]:.2f}" for s in seeds) + " (negative: lower blocks have larger gradients).", "",
              "| block | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---" * (len(seeds) + 1) + "|"]
    lines += [f"| {b} | " + " | ".join(f"{norms[s][b]:.3f}" for s in seeds) + " |" for b in range(len(norms[seeds[0]]))]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:len(pairs) + 8]))


if __name__ == "__main__":
    main()
