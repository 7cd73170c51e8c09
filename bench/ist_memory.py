"""Peak training memory beyond the frozen model: IST vs LoRA (all layers), measured (issue 15).

Every configuration runs in a fresh subprocess (fp32 on CPU, SmolLM2-135M or ``--model``, LoRA r=8 on
q,k,v,o,gate,up,down, the same batches of the same task for all). After the model and
its LoRA modules are built (and paged in by one no-grad forward) the process resets its peak-RSS counter (``/proc/self/clear_refs``
``5``), so ``VmHWM - VmRSS(after model)`` is the peak memory *beyond the frozen model*
over the training steps: activations, backward's transient buffers, adapter gradients,
optimizer state and allocator slack, whatever the load-time spikes were.

Configurations:

- ``lora``: every layer's LoRA trains each step (the baseline);
- ``ist``, ``ist-depth<D>``: IST with ``ISTConfig(depth=D)`` drawing its own selections;
- ``floor<F>``: IST with the selection forced to block ``F`` plus the 7 blocks evenly
  spaced above it (8 of 30, IST's default sparsity; ``floor22`` is exactly what
  ``ist-depth0.25`` selects every step: blocks 22-29). Backpropagation stops at the lowest
  selected block, so the peak of a step is set by ``F``; with the distribution of ``F``
  under IST's draw (``P(F >= k) = C(30 - k, 8) / C(30, 8)`` for uniform scores) these
  give the distribution of peaks over selected sets.

Each worker also records the parameters outside the selected LoRA that hold a gradient
or optimizer state (must be none: embeddings, head and inactive layers carry neither).
Records are appended to ``<out>.jsonl`` as they finish (resumable); the report is
``<out>.json`` + ``<out>.md``.

    flock /tmp/cpu1.lock env OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 \\
        .venv/bin/python -m bench.ist_memory
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench.ist import SavedBytes
from bench.ist_loop import SparseTuner, TrainOptions
from scaleot.data import SplitConfig, load_task
from scaleot.data_owner.tuners.ist import ISTConfig, lora_config_for, optimizer_state_bytes
from scaleot.models import DEFAULT_MODEL, load_model

DEFAULT_CONFIGS = ["lora", "floor22", "floor0", "ist", "floor15", "ist-depth0.5"]


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def forced_selection(floor: int, n_layers: int, n_update: int) -> list[int]:
    """Block ``floor`` and ``n_update - 1`` blocks evenly spaced above it (sorted, distinct)."""
    above = torch.linspace(floor + 1, n_layers - 1, n_update - 1).round().long().tolist() if n_update > 1 else []
    picked = sorted({floor, *above})
    if len(picked) != n_update:
        raise ValueError(f"floor {floor} leaves fewer than {n_update} blocks above it")
    return picked


def worker(name: str, args) -> dict:
    torch.manual_seed(0)
    splits = load_task(args.task, SplitConfig(seed=0, n_test=200, n_val=32))
    model, tok = load_model(args.model, device="cpu")
    ist = None
    if name.startswith("ist"):
        ist = ISTConfig(depth=float(name.removeprefix("ist-depth")) if "depth" in name else 1.0)
    elif name.startswith("floor"):
        ist = ISTConfig(T=0)
    opts = TrainOptions(steps=args.steps, batch_size=args.batch_size, max_length=args.max_length)
    tuner = SparseTuner(model, tok, splits.train, splits.val, ist, lora_config_for(model), opts)
    ctl = tuner.controller
    if name.startswith("floor"):
        forced = forced_selection(int(name.removeprefix("floor")), len(ctl.blocks), ctl.n_update)
        ctl.select = lambda: forced
    lora_ids = {id(p) for p in tuner.trainable}
    params = list(tuner.model.parameters())
    with torch.no_grad():  # page in every (memory-mapped) weight and warm the kernels before measuring
        tuner.loss(tuner.model, tuner.batch(1))
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS (the frozen model + LoRA)
    rss0 = _status("VmRSS")
    saved, floors, strays, tokens = 0, [], set(), 0
    for step in range(1, args.steps + 1):
        chosen = ctl.before_step(step) if ctl else list(range(30))
        floors.append(min(chosen))
        counter = SavedBytes(params)
        batch = tuner.batch(step)
        tokens = max(tokens, batch["input_ids"].numel())
        with torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda t: t):
            loss = tuner.loss(tuner.model, batch)
        loss.backward()
        saved = max(saved, counter.total())
        selected_ids = ({id(p) for pos in ctl.selected for p in ctl.params[pos]} if ctl else lora_ids)
        strays |= {n for n, p in tuner.model.named_parameters() if p.grad is not None and id(p) not in selected_ids}
        tuner.optimizer.step()
        tuner.optimizer.zero_grad(set_to_none=True)
        if ctl:
            ctl.after_step(step)
            ctl.maybe_update_importance(step, tuner.model, tuner.probe_batch(step), tuner.loss)
    ever = set(ctl.counts.nonzero().flatten().tolist()) if ctl else set(range(30))
    allowed = {id(p) for pos in ever for p in ctl.params[pos]} if ctl else lora_ids
    stateful_strays = [n for n, p in tuner.model.named_parameters() if p in tuner.optimizer.state and id(p) not in allowed]
    non_lora_trainable = [n for n, p in tuner.model.named_parameters() if p.requires_grad and id(p) not in lora_ids]
    return {"config": name, "rss_after_model": rss0, "peak_rss": _status("VmHWM"), "saved_activations": saved,
            "optimizer_state": optimizer_state_bytes(tuner.optimizer), "lowest_selected": floors,
            "steps": args.steps, "batch_size": args.batch_size, "max_length": args.max_length, "max_tokens": tokens,
            "grads_outside_selection": sorted(strays), "state_outside_selected": stateful_strays,
            "non_lora_trainable": non_lora_trainable}


def floor_distribution(n_layers: int = 30, n_update: int = 8) -> dict[int, float]:
    """``P(lowest selected block = k)`` when ``n_update`` of ``n_layers`` are drawn uniformly."""
    total = math.comb(n_layers, n_update)
    return {k: (math.comb(n_layers - k, n_update) - math.comb(n_layers - k - 1, n_update)) / total
            for k in range(n_layers - n_update + 1)}


def _mb(x: float) -> str:
    return f"{x / 2**20:.0f}"


def report(out: Path) -> dict:
    recs = {r["config"]: r for r in map(json.loads, out.with_suffix(".jsonl").read_text().splitlines())}
    base = recs["lora"]["peak_rss"] - recs["lora"]["rss_after_model"]
    rows = []
    for name, r in recs.items():
        beyond = r["peak_rss"] - r["rss_after_model"]
        rows.append({"config": name, "beyond_model": beyond, "ratio": beyond / base, "saved": r["saved_activations"],
                     "optimizer_state": r["optimizer_state"], "lowest_selected": r["lowest_selected"],
                     "clean": not (r["grads_outside_selection"] or r["state_outside_selected"] or r["non_lora_trainable"])})
    first = recs["lora"]
    lines = [f"SmolLM2-135M fp32, CPU, batch {first['batch_size']}, max_length {first['max_length']} "
             f"(largest batch {first['max_tokens']} tokens), {first['steps']} steps per process, LoRA r=8 on all "
             "7 projections; IST/RST 8 of 30 blocks per step.", "",
             "| config | lowest selected block per step | saved activations MB | optimizer state MB |"
             " peak beyond model MB | ratio vs LoRA | no stray grad/state |", "|---" * 7 + "|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['lowest_selected'] if r['config'] != 'lora' else 'all'} | {_mb(r['saved'])} |"
                     f" {_mb(r['optimizer_state'])} | {_mb(r['beyond_model'])} | {r['ratio']:.3f} |"
                     f" {'yes' if r['clean'] else 'NO'} |")
    floors = sorted((int(r["config"].removeprefix("floor")), r["ratio"]) for r in rows if r["config"].startswith("floor"))
    dist = None
    if len(floors) >= 2:  # peak ratio of a step vs its lowest block: linear interpolation of the measured floors
        dist_f = floor_distribution()
        ks, vs = [k for k, _ in floors], [v for _, v in floors]
        ratio_at = {k: _interp(k, ks, vs) for k in dist_f}
        mean = sum(p * ratio_at[k] for k, p in dist_f.items())
        below = {t: sum(p for k, p in dist_f.items() if ratio_at[k] <= t) for t in (0.75, 0.9)}
        dist = {"p_floor": dist_f, "ratio_at_floor": ratio_at, "mean_ratio": mean, "p_ratio_le": below}
        lines += ["", f"Uniform scores (IST's start, and RST): the lowest of 8 blocks drawn from 30 is block 0 with "
                  f"probability {dist_f[0]:.2f}, <= 2 with {sum(dist_f[k] for k in range(3)):.2f}; interpolating the "
                  f"measured floors, a step's peak is {mean:.3f}x LoRA on average, <= 0.75x with probability "
                  f"{below[0.75]:.2f}. A run's peak is its worst step's."]
    summary = {"rows": rows, "floor_distribution": dist, "records": recs}
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


def _interp(k: float, ks: list[int], vs: list[float]) -> float:
    if k <= ks[0]:
        return vs[0]
    for (k0, v0), (k1, v1) in zip(zip(ks, vs, strict=True), zip(ks[1:], vs[1:], strict=True), strict=False):
        if k <= k1:
            return v0 + (v1 - v0) * (k - k0) / (k1 - k0)
    return vs[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, help="model name or HF folder")
    ap.add_argument("--configs", nargs="*", default=DEFAULT_CONFIGS)
    ap.add_argument("--task", default="pkg:word_sentiment")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--out", default="bench/results/ist_memory")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--report", action="store_true", help="only summarise the recorded runs")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return
    out = Path(args.out)
    log = out.with_suffix(".jsonl")
    if not args.report:
        done = {json.loads(line)["config"] for line in log.read_text().splitlines()} if log.exists() else set()
        for name in args.configs:
            if name in done:
                continue
            t0 = time.time()
            cmd = [sys.executable, "-m", "bench.ist_memory", "--worker", name, "--task", args.task,
                   "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--max-length",
                   str(args.max_length), "--model", args.model]
            res = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
            if res.returncode:
                sys.exit(f"{name} failed: {res.stderr.strip().splitlines()[-1]}")
            rec = json.loads(res.stdout.strip().splitlines()[-1])
            with log.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            print(name, _mb(rec["peak_rss"] - rec["rss_after_model"]), "MB", f"{time.time() - t0:.0f} s", flush=True)
    report(out)


if __name__ == "__main__":
    main()
