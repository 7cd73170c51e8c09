"""Held-out perplexity against alpha, per model: what ``--target-ppl-ratio`` chooses from.

For every ``k = 1 .. |E| - 1`` the emulator with ``k`` middle blocks replaced or removed
(``alpha = k / |E|``) is built exactly as ``scaleot emulate`` builds it, and its perplexity on
the corpus's held-out blocks is divided by the full model's, in the precision asked for. This
is the same measurement :func:`scaleot.model_owner.emulator.choose.choose_alpha` makes, run over
the whole range instead of stopping at the target, so that the curve can be read and plotted.

    python -m bench.alpha_curve --model smollm2-135m --importance runs/suite/importance \\
        --out bench/results/alpha_choice/smollm2-135m.json
    python -m bench.alpha_curve --plot bench/results/alpha_choice/*.json --target 6.5 \\
        --png bench/results/alpha_choice/curves.png
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch


def curve(model_name: str, importance: str, method: str, autocast: str) -> dict:
    from scaleot.evaluation.perplexity import perplexity
    from scaleot.model_owner.emulator import EmulatorConfig, build_emulator
    from scaleot.model_owner.emulator.choose import held_out_blocks
    from scaleot.models import get_blocks, load_model
    from scaleot.models.device import autocast_used, bf16_autocast, machine_info, wants_bf16

    model, tok = load_model(model_name, device="cpu")
    cfg = EmulatorConfig(method=method, importance=importance, beta=0.0, diagnostic_blocks=0, autocast=autocast)
    blocks = held_out_blocks(cfg, tok)
    device = torch.device("cpu")
    bf16 = wants_bf16(autocast, device)

    def ppl(m) -> float:
        with bf16_autocast(bf16, device):
            return perplexity(m, blocks, batch_size=4)

    full = ppl(model)
    n = len(cfg.check_for(len(get_blocks(model))))
    points = []
    for k in range(1, n):
        emu = build_emulator(model, replace(cfg, alpha=k / n), tok, share_weights=True).model
        value = ppl(emu)
        points.append({"replaced": k, "alpha": round(k / n, 4), "ppl": round(value, 3), "ratio": round(value / full, 3)})
        print(f"{model_name} k={k} alpha={k / n:.3f} ppl={value:.1f} ratio={value / full:.2f}", flush=True)
    return {"model": model_name, "method": method, "corpus": cfg.corpus, "blocks": int(len(blocks)),
            "block_size": cfg.block_size, "precision": autocast_used(bf16, device), "machine": machine_info(),
            "full_ppl": round(full, 3), "middle": n, "points": points}


def plot(paths: list[Path], target: float, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for p in paths:
        d = json.loads(p.read_text())
        xs = [q["alpha"] for q in d["points"]]
        ax.plot(xs, [q["ratio"] for q in d["points"]], "o-", ms=3, label=f"{d['model']} ({d['method']}, |E| = {d['middle']})")
        chosen = next((q for q in d["points"] if q["ratio"] >= target), None)
        if chosen:
            ax.annotate(f"k={chosen['replaced']}", (chosen["alpha"], chosen["ratio"]), xytext=(4, -12),
                        textcoords="offset points", fontsize=8)
    ax.axhline(target, color="gray", ls="--", lw=0.8, label=f"target_ppl_ratio {target}")
    ax.set_yscale("log")
    ax.set_xlabel("alpha (fraction of the middle removed)")
    ax.set_ylabel("held-out KJV perplexity / full model's")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--importance")
    ap.add_argument("--method", default="drop")
    ap.add_argument("--autocast", default="bf16", choices=("none", "bf16", "auto"))
    ap.add_argument("--out", help="JSON to write the curve to")
    ap.add_argument("--plot", nargs="*", help="curve JSONs to plot")
    ap.add_argument("--target", type=float, default=6.5)
    ap.add_argument("--png")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.plot:
        plot([Path(p) for p in args.plot], args.target, Path(args.png))
        return
    doc = curve(args.model, args.importance, args.method, args.autocast)
    Path(args.out).write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
