"""Fine-tuning throughput: emulator (data owner) vs full FT, our LoRA loop vs Trainer + peft.

Each measurement runs in its own subprocess (so peak RSS is its own), the configurations
alternate round by round (same machine load for all), and the medians over rounds are
reported. Same data (social_iqa train split, same order), same batch, bf16 autocast.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.finetune --rounds 3 --steps 6   # --model: another model

Configurations:
  emu-full      our loop, ``--method full`` on the adapter (2+2) of a uniform emulator (alpha 0.5)
  ft-full       our loop, ``--method full`` on every block of the full model (the FT row)
  ours-lora     our loop, ``--method lora`` (r 8) on every block of the full model
  trainer-lora  ``transformers.Trainer`` + ``peft`` LoRA (r 8), same model, data, batch

The FLOPs arithmetic (per token, matmuls only; see :func:`flops_per_token`): forward through
every emulator block and the 49k head at answer positions, backward input-gradients through
every block and the head, weight gradients only for the trainable blocks.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

CONFIGS = ("emu-full", "ft-full", "ours-lora", "trainer-lora")
TASK = "pkg:word_sentiment"


def matmul_params(module: nn.Module) -> int:
    """Parameters that enter a matmul per token (2-D weights), excluding embeddings."""
    return sum(p.numel() for n, p in module.named_parameters() if p.dim() == 2 and "embed" not in n)


def flops_per_token(model: nn.Module, trainable: list[int], answer_fraction: float) -> dict:
    """Training FLOPs per token: ``2P`` forward, ``2P`` input grads, ``2P`` weight grads if trainable."""
    from scaleot.models import get_blocks

    blocks = get_blocks(model)
    per_block = [matmul_params(b) for b in blocks]
    head = model.config.vocab_size * model.config.hidden_size * answer_fraction
    fwd = 2 * sum(per_block) + 2 * head
    bwd_in = 2 * sum(per_block[min(trainable):]) + 2 * head
    bwd_w = 2 * sum(per_block[i] for i in trainable)
    return {"forward": fwd, "backward_input": bwd_in, "backward_weight": bwd_w, "total": fwd + bwd_in + bwd_w,
            "block_params": sum(per_block), "head_per_token": head}


def _data(n_train: int, max_length: int):
    from scaleot.data import load_task
    from scaleot.data_owner.finetune import FinetuneConfig

    cfg = FinetuneConfig(n_train=n_train, n_val=2, n_test=400, max_length=max_length)
    return cfg, load_task(TASK, cfg.split_config())


def worker(name: str, steps: int, batch: int, max_length: int, model_name: str) -> dict:
    from scaleot.data import encode_example
    from scaleot.data_owner.finetune import FinetuneConfig, apply_lora, freeze_all_but_blocks, train
    from scaleot.model_owner.emulator import EmulatorConfig, build_emulator
    from scaleot.models import load_model, num_blocks

    base, splits = _data(steps * batch, max_length)
    opts = dict(epochs=1, max_steps=steps, batch_size=batch, max_length=max_length, n_train=steps * batch,
                n_val=2, n_test=400, val_limit=2, autocast="bf16", device="cpu", warmup_ratio=0.0)
    model, tok = load_model(model_name, device="cpu")
    encoded = [encode_example(ex, tok, max_length) for ex in splits.train]
    answer = sum(sum(1 for y in e["labels"] if y != -100) for e in encoded)
    total_tokens = sum(len(e["input_ids"]) for e in encoded)
    frac = answer / total_tokens
    if name == "emu-full":
        bundle = build_emulator(model, EmulatorConfig(method="uniform", alpha=0.5, n_bottom=2, n_top=2))
        del model
        model, positions = bundle.model, list(bundle.adapter_positions)
        freeze_all_but_blocks(model, positions)
    else:
        positions = list(range(num_blocks(model)))
    flops = flops_per_token(model, positions, frac)
    t_start = time.perf_counter()
    if name in ("emu-full", "ft-full"):
        if name == "ft-full":
            freeze_all_but_blocks(model, positions)
        res = train(model, tok, splits, FinetuneConfig(method="full", lr=1e-5, **opts), f"/tmp/bench_ft/{name}",
                    progress=False)
        tps, seconds = res.timing["tokens_per_second"], res.timing["train_seconds"]
    elif name == "ours-lora":
        cfg = FinetuneConfig(method="lora", lr=1e-4, **opts)
        apply_lora(model, positions, cfg)
        res = train(model, tok, splits, cfg, "/tmp/bench_ft/ours-lora", progress=False)
        tps, seconds = res.timing["tokens_per_second"], res.timing["train_seconds"]
    else:
        tps, seconds = _trainer_lora(model, tok, encoded, positions, steps, batch)
    return {"config": name, "tokens_per_second": tps, "train_seconds": seconds,
            "wall_seconds": round(time.perf_counter() - t_start, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "answer_fraction": round(frac, 4), "flops_per_token": flops, "trainable_blocks": len(positions),
            "mean_tokens": total_tokens / len(encoded)}


def _trainer_lora(model, tok, encoded, positions, steps, batch) -> tuple[float, float]:
    """Plain Trainer + peft LoRA on the same blocks, same examples in the same order as our loop."""
    from peft import LoraConfig, get_peft_model
    from torch.utils.data import SequentialSampler
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from scaleot.data import PadCollator
    from scaleot.data_owner.finetune import lora_target_names

    order = torch.randperm(len(encoded), generator=torch.Generator().manual_seed(0)).tolist()
    data = [encoded[i] for i in order]  # our loop's epoch-0 order
    # the cached SmolLM2 config still carries the GGUF quantization_config although its weights
    # are plain fp32; Trainer would refuse to train it, so drop the stale marker
    model.hf_quantizer, model.is_quantized = None, False
    torch.manual_seed(0)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=lora_target_names(model, positions),
                                                  task_type="CAUSAL_LM"))

    class Clock(TrainerCallback):
        def __init__(self):
            self.t, self.seconds, self.tokens = 0.0, 0.0, 0

        def on_step_begin(self, args, state, control, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.seconds += time.perf_counter() - self.t

    class Ordered(Trainer):
        def _get_train_sampler(self, *a, **k):
            return SequentialSampler(self.train_dataset)

    clock = Clock()
    args = TrainingArguments(output_dir="/tmp/bench_ft/trainer", per_device_train_batch_size=batch, max_steps=steps,
                             learning_rate=1e-4, bf16=True, use_cpu=True, report_to=[], save_strategy="no",
                             logging_strategy="no", disable_tqdm=True, dataloader_num_workers=0,
                             remove_unused_columns=False, lr_scheduler_type="linear")
    trainer = Ordered(model=peft_model, args=args, train_dataset=data, data_collator=PadCollator(tok.pad_token_id),
                      callbacks=[clock])
    trainer.train()
    tokens = sum(len(e["input_ids"]) for e in data[: steps * batch])
    return round(tokens / clock.seconds, 1), round(clock.seconds, 3)


def main() -> None:
    from scaleot.models import DEFAULT_MODEL

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL, help="model name or HF folder")
    ap.add_argument("--worker", choices=CONFIGS)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--configs", nargs="*", default=list(CONFIGS))
    ap.add_argument("--out", default="bench/results/finetune.jsonl")
    args = ap.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.steps, args.batch, args.max_length, args.model)), flush=True)
        return
    results: dict[str, list[dict]] = {c: [] for c in args.configs}
    for r in range(args.rounds):
        for c in args.configs:
            cmd = [sys.executable, __file__, "--worker", c, "--steps", str(args.steps), "--batch", str(args.batch),
                   "--max-length", str(args.max_length), "--model", args.model]
            out = subprocess.run(cmd, capture_output=True, text=True)
            line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
            if not line:
                print(out.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{c} failed")
            rec = json.loads(line[0][7:]) | {"round": r}
            results[c].append(rec)
            print(json.dumps(rec), flush=True)
            with open(args.out, "a") as f:
                f.write(json.dumps(rec) + "\n")
    med = {c: statistics.median(x["tokens_per_second"] for x in v) for c, v in results.items()}
    summary = {"median_tokens_per_second": med,
               "median_peak_rss_mb": {c: statistics.median(x["peak_rss_mb"] for x in v) for c, v in results.items()}}
    if "emu-full" in med and "ft-full" in med:
        fe, ff = results["emu-full"][0]["flops_per_token"], results["ft-full"][0]["flops_per_token"]
        allowed = ff["total"] / fe["total"]
        measured = med["emu-full"] / med["ft-full"]
        summary |= {"speedup_allowed_by_flops": round(allowed, 3), "speedup_measured": round(measured, 3),
                    "fraction_of_allowed": round(measured / allowed, 3)}
    if "ours-lora" in med and "trainer-lora" in med:
        summary["lora_ours_over_trainer"] = round(med["ours-lora"] / med["trainer-lora"], 3)
    print("SUMMARY " + json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
