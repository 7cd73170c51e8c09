"""Benchmark of `scaleot importance` (ScaleOT stage 1) on the default model and corpus.

Runs the default preset with two seeds, the leave-one-out reference, and a bf16-vs-fp32
loss check; prints a markdown report (wall time, per-step times, ratio to a full-model
forward+backward, peak memory, Spearman between seeds and vs leave-one-out).

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.importance --out /tmp/bench_importance \
        > bench/results/importance.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import statistics
import time
from pathlib import Path

import torch

from scaleot.data import corpus_splits
from scaleot.model_owner.importance import (
    ImportanceConfig,
    ImportanceTrainer,
    leave_one_out,
    spearman,
)
from scaleot.models import DEFAULT_MODEL, load_model
from scaleot.recipes.importance import ImportanceRun, run_importance
from scaleot.recipes.run_options import RunOptions


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL, help="model name or HF folder")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_importance"))
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--steps", type=int, default=ImportanceConfig.steps)
    ap.add_argument("--loo-blocks", type=int, default=32)
    ap.add_argument("--train-only", action="store_true", help="only run the seeds (run one process per seed)")
    ap.add_argument("--report-only", action="store_true", help="only report on finished (or partial) runs")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    if not a.report_only:
        for seed in seeds:
            t0 = time.perf_counter()
            run = RunOptions(out=a.out / f"seed{seed}", model=a.model, resume=True, progress=False)
            run_importance(ImportanceRun(run=run, options=ImportanceConfig(seed=seed, steps=a.steps),
                                         keep_checkpoints=True))
            (a.out / f"seed{seed}" / "wall_seconds.txt").write_text(f"{time.perf_counter() - t0:.1f}")
    if a.train_only:
        return
    report(a, seeds)


def partial(folder: Path, middle: list[int]) -> dict:
    """An unfinished run, read from its log: ranking and probabilities at its last step."""
    last = json.loads((folder / "log.jsonl").read_text().splitlines()[-1])
    logits = last["logits"]
    ranking = [middle[j] for j in sorted(range(len(middle)), key=lambda j: (-logits[j], middle[j]))]
    times = {}
    ckpts = sorted((folder / "checkpoints").glob("step-*/state.json"))
    if ckpts:
        state = json.loads(ckpts[-1].read_text())
        times = {k: round(statistics.median(v), 2) for k, v in state.get("times", {}).items() if v}
    return {"ranking": ranking, "steps": last["step"], "partial": True, "times": times,
            "scores": {str(i): {"keep_prob": 1 / (1 + math.exp(-s))} for i, s in zip(middle, logits, strict=True)}}


def partial_at(logits: list[float], middle: list[int]) -> list[int]:
    return [middle[j] for j in sorted(range(len(middle)), key=lambda j: (-logits[j], middle[j]))]


def side_by_side(model, tok, cfg: ImportanceConfig, steps: int = 2) -> None:
    """Step time vs one full-model forward+backward of the same batch, in this one process."""
    train, held = corpus_splits("kjv", tok, cfg.block_size, cfg.heldout_fraction, 64, 16)
    trainer = ImportanceTrainer(model, train, held, cfg, progress=False)
    ref = trainer.full_step_seconds(repeats=2)
    trainer.train(steps)
    ref2 = trainer.full_step_seconds(repeats=1)
    trainer.close()
    t = trainer.timing()
    full = statistics.median([ref, ref2])
    step = t["harmonizer_step_s"] + t["score_step_s"]
    print(f"\nSide by side in one process ({torch.get_num_threads()} threads, {steps} steps, medians): full-model "
          f"forward+backward {full:.2f} s; harmonizer step {t['harmonizer_step_s']:.2f} s "
          f"({t['harmonizer_step_s'] / full:.2f}x); score step (N_c={cfg.n_configs} forwards) "
          f"{t['score_step_s']:.2f} s ({t['score_step_s'] / full:.2f}x); one whole step {step:.2f} s "
          f"(**{step / full:.2f}x** a full forward+backward); peak RSS {t['peak_rss_mib']} MiB.")


def report(a, seeds: list[int]) -> None:
    cfg = ImportanceConfig()
    middle = cfg.middle(30)
    runs = {}
    for seed in seeds:
        folder = a.out / f"seed{seed}"
        if (folder / "importance.json").is_file():
            wall = float((folder / "wall_seconds.txt").read_text()) if (folder / "wall_seconds.txt").is_file() else 0
            runs[seed] = (json.loads((folder / "importance.json").read_text()), wall)
        else:
            runs[seed] = (partial(folder, middle), float("nan"))

    model, tok = load_model(a.model)
    _, held = corpus_splits("kjv", tok, cfg.block_size, cfg.heldout_fraction, cfg.max_train_blocks, a.loo_blocks)
    cache = a.out / f"leave_one_out_{a.loo_blocks}.json"
    if cache.is_file():
        loo, loo_s = json.loads(cache.read_text()), float("nan")
        loo["delta"] = {int(k): v for k, v in loo["delta"].items()}
    else:
        t0 = time.perf_counter()
        loo = leave_one_out(model, held, middle, batch_size=8, autocast=True)
        loo_s = time.perf_counter() - t0
        cache.write_text(json.dumps(loo))
    x = held[:8]
    with torch.no_grad():
        fp32 = float(model(input_ids=x, labels=x).loss)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = float(model(input_ids=x, labels=x).loss)

    print(f"# `scaleot importance` benchmark\n\nDate: {datetime.date.today()}, machine: {platform.machine()} "
          f"{torch.get_num_threads()} threads (2-core CPU VM shared with other jobs; timings are noisy), "
          f"torch {torch.__version__}.\n")
    print("Command: `HF_HUB_OFFLINE=1 .venv/bin/python -m bench.importance "
          f"--model {a.model} --out {a.out} --seeds {a.seeds} --steps {a.steps}`\n")
    print(f"Default preset: {json.dumps({k: v for k, v in cfg.to_dict().items() if k != 'harmonizer'})}\n")
    print("| seed | wall (s) | harmonizer step (s) | score step (s) | full fwd+bwd (s) | step / full fwd+bwd "
          "| peak RSS (MiB) | held-out loss full | lowest half replaced |")
    print("|---|---|---|---|---|---|---|---|---|")
    for seed, (info, wall) in runs.items():
        if info.get("partial"):
            tm = info["times"]
            print(f"| {seed} | unfinished at step {info['steps']} | {tm.get('harmonizer_step', '')} | "
                  f"{tm.get('score_step', '')} | | | | | |")
            continue
        t, fl = info["timing"], info["final_losses"]
        rep = next(v for k, v in fl.items() if k.startswith("heldout_lowest"))
        print(f"| {seed} | {wall:.0f} | {t.get('harmonizer_step_s')} | {t.get('score_step_s')} | "
              f"{t['full_forward_backward_s']} | {t['step_over_full_fwd_bwd']} | {t['peak_rss_mib']} | "
              f"{fl['heldout_full']:.3f} | {rep:.3f} |")
    rankings = {s: info["ranking"] for s, (info, _) in runs.items()}
    side_by_side(model, tok, cfg)
    if len(seeds) >= 2:
        print("\nSpearman between the two seeds' rankings along the run (from log.jsonl):\n")
        logs = [[json.loads(ln) for ln in (a.out / f"seed{s}" / "log.jsonl").read_text().splitlines()]
                for s in seeds[:2]]
        n = min(len(lg) for lg in logs)
        cells = []
        for step in sorted({max(1, n * k // 8) for k in range(1, 9)}):
            r = [partial_at(lg[step - 1]["logits"], middle) for lg in logs]
            cells.append(f"step {step}: {spearman(r[0], r[1]):.3f}")
        print(", ".join(cells) + "\n")
    print()
    if len(seeds) >= 2:
        print(f"Spearman between seeds {seeds[0]} and {seeds[1]}: "
              f"**{spearman(rankings[seeds[0]], rankings[seeds[1]]):.3f}**\n")
    for s in seeds:
        print(f"Spearman seed {s} vs leave-one-out: {spearman(rankings[s], loo['ranking']):.3f}  ")
    print(f"\nLeave-one-out ({len(held)} held-out blocks, {loo_s:.0f} s): full loss {loo['full_loss']:.4f}; "
          f"ranking {loo['ranking']}  ")
    print(f"loss increase per block: { {i: round(d, 3) for i, d in loo['delta'].items()} }\n")
    for s in seeds:
        info = runs[s][0]
        print(f"seed {s} ranking: {info['ranking']}  ")
        print(f"seed {s} keep-probabilities: { {k: round(v['keep_prob'], 3) for k, v in info['scores'].items()} }\n")
    print(f"bf16 autocast vs fp32 forward loss on 8x{cfg.block_size} held-out tokens: {bf16:.4f} vs {fp32:.4f} "
          f"(diff {abs(bf16 - fp32):.4f})")


if __name__ == "__main__":
    main()
