"""Benchmark the emulator methods on SmolLM2-135M (``--model``: another), adapter 2+2 (issue 4).

For each method: emulator parameter count, build time (stage 2; ScaleOT also with stage 1
counted from importance.json's timing; uniform-kd with its distillation), KJV held-out
perplexity, and Emu ZS on two BIG-bench tasks. Methods run one after another in one
process on the same loaded model, so timings are comparable.

Usage::

    python -m bench.emulate --importance DIR [--model NAME] [--loo] [--kd-steps 40] [--limit 200] [--out bench/results/emulate.json]

``--loo`` also writes an importance folder whose ranking is the leave-one-out perplexity
increase (docs/method.md section 6) with the harmonizers of ``--importance``, and benchmarks
``scaleot``/``drop`` from it (a deterministic stand-in where stage 1 ran only briefly).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from scaleot.data import SplitConfig, corpus_splits, load_task
from scaleot.evaluation import evaluate_mc, perplexity
from scaleot.exchange.layers import IdentityBlock
from scaleot.exchange.manifest import read_json, write_manifest
from scaleot.model_owner.emulator import EmulatorConfig, build_emulator
from scaleot.models import DEFAULT_MODEL, get_blocks, load_model, set_blocks

TASKS = ["pkg:word_sentiment", "pkg:subdivision"]


@torch.no_grad()
def loo_folder(model, held, importance: Path, out: Path) -> tuple[Path, float]:
    """Importance folder with the leave-one-out ranking (most damaging removal first)."""
    t0 = time.perf_counter()
    info = read_json(importance / "importance.json")
    blocks = list(get_blocks(model))
    ppl = {}
    for i in info["middle"]:
        trial = blocks[:i] + [IdentityBlock()] + blocks[i + 1:]
        set_blocks(model, trial, list(range(len(blocks))))
        ppl[i] = perplexity(model, held)
    set_blocks(model, blocks, list(range(len(blocks))))
    info["ranking"] = sorted(ppl, key=lambda i: -ppl[i])
    info["timing"] = {"loo_s": round(time.perf_counter() - t0, 2)}
    info["loo_ppl"] = ppl
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(importance / "harmonizers.safetensors", out / "harmonizers.safetensors")
    (out / "importance.json").write_text(json.dumps(info))
    write_manifest(out, "importance")
    return out, time.perf_counter() - t0


def measure(name, model, tok, cfg, held, splits, limit, base_model):
    t0 = time.perf_counter()
    bundle = build_emulator(model, cfg, tokenizer=tok, base_model=base_model)
    build_s = time.perf_counter() - t0
    emu = bundle.model
    row = {"name": name, "method": cfg.method, "params": bundle.info["params"], "build_s": round(build_s, 2),
           "n_blocks": len(bundle.info["layer_map"]),
           "kinds": {k: sum(e["kind"] == k for e in bundle.info["layer_map"]) for k in
                     ("adapter", "kept", "harmonizer", "identity", "shared")}}
    imp = bundle.info.get("importance")
    if imp and imp.get("timing"):
        t = imp["timing"]
        row["stage1_s"] = t.get("train_seconds_this_process") or t.get("loo_s") or t.get("total_s")
    row["kjv_ppl"] = round(perplexity(emu, held), 2)
    if splits:
        res = evaluate_mc(emu, tok, splits, limit=limit)
        row["zs"] = {k: {"acc": v["acc"], "acc_stderr": v["acc_stderr"], "n": v["n"]} for k, v in res.items()}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL, help="model name or HF folder")
    ap.add_argument("--importance", type=Path, required=True)
    ap.add_argument("--loo", action="store_true")
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--kd-steps", type=int, default=40)
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--held-blocks", type=int, default=16)
    ap.add_argument("--no-zs", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("bench/results/emulate.json"))
    args = ap.parse_args()
    torch.manual_seed(0)
    model, tok = load_model(args.model, "cpu", "float32")
    _, held = corpus_splits("kjv", tok, 128, max_heldout_blocks=args.held_blocks)
    splits = [] if args.no_zs else [load_task(t, SplitConfig(seed=0)) for t in TASKS]
    rows = []
    full = {"name": "full model", "params": sum(p.numel() for p in model.parameters()),
            "kjv_ppl": round(perplexity(model, held), 2)}
    if splits:
        res = evaluate_mc(model, tok, splits, limit=args.limit)
        full["zs"] = {k: {"acc": v["acc"], "acc_stderr": v["acc_stderr"], "n": v["n"]} for k, v in res.items()}
    print(json.dumps(full), flush=True)
    rows.append(full)
    work = Path(tempfile.mkdtemp(prefix="bench-emulate-"))
    a = args.alpha
    plans = [("scaleot (importance folder)", EmulatorConfig(method="scaleot", importance=str(args.importance),
                                                            alpha=a)),
             ("drop (importance folder)", EmulatorConfig(method="drop", importance=str(args.importance), alpha=a))]
    if args.loo:
        loo, loo_s = loo_folder(model, held, args.importance, work / "loo")
        plans += [("scaleot (LOO ranking)", EmulatorConfig(method="scaleot", importance=str(loo), alpha=a)),
                  ("scaleot (LOO ranking) beta=0.5", EmulatorConfig(method="scaleot", importance=str(loo), alpha=a,
                                                                    beta=0.5)),
                  ("drop (LOO ranking)", EmulatorConfig(method="drop", importance=str(loo), alpha=a))]
    plans += [("uniform", EmulatorConfig(method="uniform", alpha=a)),
              ("uniform beta=0.5", EmulatorConfig(method="uniform", alpha=a, beta=0.5)),
              ("crash", EmulatorConfig(method="crash", alpha=a)),
              (f"uniform-kd ({args.kd_steps} steps)", EmulatorConfig(method="uniform-kd", alpha=a,
                                                                      kd_steps=args.kd_steps,
                                                                      kd_run_dir=str(work / "kd")))]
    for name, cfg in plans:
        rows.append(measure(name, model, tok, cfg, held, splits, args.limit, args.model))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
