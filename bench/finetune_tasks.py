"""Pick default tasks by measurement (METHOD.md section 6): zero-shot vs a short full FT.

For each candidate: validation accuracy of SmolLM2-135M zero-shot, then after one short
epoch of full fine-tuning (all blocks) on ``--n-train`` examples; the gain decides.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/finetune_tasks.py --n-train 400 --n-val 200
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from scaleot.data import load_task
from scaleot.finetune import FinetuneConfig, freeze_all_but_blocks, mc_accuracy, train
from scaleot.models import load_model, num_blocks

CANDIDATES = ["bigbench:social_iqa", "bigbench:goal_step_wikihow/goal_inference", "bigbench:strategyqa",
              "bigbench:winowhy", "bigbench:abstract_narrative_understanding/4_distractors"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", nargs="*", default=CANDIDATES)
    ap.add_argument("--n-train", type=int, default=400)
    ap.add_argument("--n-val", type=int, default=200)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--out", default="bench/results/finetune_tasks.jsonl")
    args = ap.parse_args()
    for task in args.tasks:
        cfg = FinetuneConfig(method="full", lr=args.lr, epochs=1, batch_size=8, n_train=args.n_train,
                             n_val=args.n_val, n_test=400, max_length=192, bf16=True, device="cpu")
        splits = load_task(task, cfg.split_config())
        model, tok = load_model("smollm2-135m", device="cpu")
        t0 = time.perf_counter()
        zs = mc_accuracy(model, tok, splits.val, 192, 32, bf16=True)
        t_eval = time.perf_counter() - t0
        freeze_all_but_blocks(model, list(range(num_blocks(model))))
        res = train(model, tok, splits, cfg, f"/tmp/ft_tasks/{task.replace('/', '_')}", progress=False)
        rec = {"task": task, "zs_val": zs, "ft_val": res.validation[-1]["val_acc"],
               "gain": res.validation[-1]["val_acc"] - zs, "n_val": len(splits.val), "n_train": len(splits.train),
               "n_total": splits.n_total, "eval_s": round(t_eval, 1), **res.timing}
        print(json.dumps(rec), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        del model
        torch.cuda.empty_cache() if torch.cuda.is_available() else None


if __name__ == "__main__":
    main()
