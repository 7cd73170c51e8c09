"""Held-out perplexity against alpha, per model: what ``--target-ppl-ratio`` chooses from.

For every ``k = 1 .. |E| - 1`` the emulator with ``k`` middle blocks replaced or removed
(``alpha = k / |E|``) is built exactly as ``scaleot emulate`` builds it, and its perplexity on
the corpus's held-out blocks is divided by the full model's, in the precision asked for: the
scan ``--target-ppl-ratio`` makes, run over the whole range so that the curve can be plotted.

    python -m bench.alpha_curve --model smollm2-135m --importance runs/suite/importance \\
        --out bench/results/alpha_choice/smollm2-135m.json
    python -m bench.alpha_curve --plot bench/results/alpha_choice/*.json --target 6.5 \\
        --png bench/results/alpha_choice/curves.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def curve(model_name: str, importance: str, method: str, autocast: str) -> dict:
    """The library's own candidate scan (:func:`~scaleot.model_owner.emulator.choose.scan`),
    run to the end instead of stopping at a target."""
    from scaleot.model_owner.emulator import EmulatorConfig, build_emulator
    from scaleot.model_owner.emulator.choose import scan
    from scaleot.models import get_blocks, load_model
    from scaleot.models.device import machine_info

    model, tok = load_model(model_name, device="cpu")
    cfg = EmulatorConfig(method=method, importance=importance, beta=0.0, diagnostic_blocks=0, autocast=autocast)
    middle = cfg.check_for(len(get_blocks(model)))
    found = scan(model, tok, cfg, lambda c: build_emulator(model, c, tok, share_weights=True).model, middle,
                 progress=True)
    points = [{k: round(c[k], 4 if k == "alpha" else 3) for k in ("replaced", "alpha", "ppl", "ratio")}
              for c in found["candidates"]]
    return {"model": model_name, "method": method, "corpus": cfg.corpus, "blocks": found["blocks"],
            "block_size": cfg.block_size, "precision": found["autocast"], "machine": machine_info(),
            "full_ppl": round(found["full_ppl"], 3), "middle": len(middle), "points": points}


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
