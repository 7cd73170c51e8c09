"""How strong must a layer signal be for IST's score rule to rank the layers the same way twice?

A power analysis of the product's score update (issue 15, "two seeds agree: Spearman >= 0.6").
It drives the real :class:`scaleot.data_owner.tuners.ist.ISTController` (selection, suppression draws,
advantages, credit, the update) on a tiny 30-block LoRA model whose probe loss is *synthetic*:

    loss_k = sum over the suppressed layers i in S_k of (e_i + sigma * z_{i,u})

``e`` is a fixed per-layer effect (standard normal over the layers: how much suppressing
layer ``i`` costs, the property the scores should learn), ``z`` a fresh standard normal per
layer and importance update ``u`` (the batch-to-batch variation of that cost), and ``sigma``
the ratio of the two. The probe batch is shared by the ``K`` passes of an update, as in
IST, so only the suppressed sets and ``z`` make the losses differ. ``sigma = inf`` is the
null: the losses carry no layer signal at all.

For every ``(sigma, K, updates)``, ``--seeds`` seeds run the controller; the table gives the
mean spread ``max(s) - min(s)`` of the final scores, the mean Spearman between the final
scores of every pair of seeds (agreement), and the mean Spearman between a seed's scores and
``-e`` (accuracy: a layer that costs more when suppressed should score lower). No model
is trained: the synthetic loss stands in for the LoRA being tuned, so this measures the rule,
not the rich-get-richer feedback of real training.

    .venv/bin/python -m bench.ist_power --out bench/results/ist_power.md
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from pathlib import Path

import torch
from peft import get_peft_model
from scipy.stats import spearmanr
from transformers import LlamaConfig, LlamaForCausalLM

from scaleot.data_owner.tuners.ist import ISTConfig, ISTController, lora_config_for

N_LAYERS = 30  # SmolLM2-135M's block count


def tiny_peft_model() -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=N_LAYERS, num_attention_heads=2,
                      num_key_value_heads=1, vocab_size=32, max_position_embeddings=16)
    model = LlamaForCausalLM(cfg)
    return get_peft_model(model, lora_config_for(model, r=2))


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(spearmanr(a.tolist(), b.tolist()).statistic)


def run(model, effects: torch.Tensor, sigma: float, K: int, suppress: float, updates: int, seed: int,
        T: int = 5) -> torch.Tensor:
    """Final scores ``[L]`` after ``updates`` importance updates of one seed."""
    ctl = ISTController(model, ISTConfig(K=K, T=T, n_suppress=suppress, seed=seed))
    noise = torch.Generator().manual_seed(10_000 + seed)
    z = torch.zeros(N_LAYERS, dtype=torch.float64)
    base = [dict(layers[0].scaling) for layers in ctl.peft_layers]

    def loss_fn(_model, _batch):
        if math.isinf(sigma):
            return torch.randn((), generator=noise, dtype=torch.float64)
        # The controller scaled the suppressed layers' LoRA output by gamma: read which they are.
        hit = [pos for pos, layers in enumerate(ctl.peft_layers) if layers[0].scaling != base[pos]]
        idx = torch.tensor(hit, dtype=torch.long)
        return (effects[idx] + sigma * z[idx]).sum()

    for step in range(1, updates * T + 1):
        ctl.before_step(step)
        ctl.after_step(step)
        if step % T == 0:
            z = torch.randn(N_LAYERS, generator=noise, dtype=torch.float64)  # a new probe batch
        ctl.maybe_update_importance(step, model, {}, loss_fn)
    return ctl._scores.clone()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sigmas", type=float, nargs="*", default=[0.0, 1.0, 3.0, 10.0, math.inf])
    ap.add_argument("--Ks", type=int, nargs="*", default=[3, 8])
    ap.add_argument("--suppress", type=float, nargs="*", default=[0.5], help="n_suppress fractions")
    ap.add_argument("--updates", type=int, nargs="*", default=[6, 20, 100])
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--out", default="bench/results/ist_power.md")
    a = ap.parse_args()
    torch.set_num_threads(1)
    model = tiny_peft_model()
    effects = torch.randn(N_LAYERS, generator=torch.Generator().manual_seed(12345), dtype=torch.float64)
    t0 = time.time()
    rows = []
    for sigma, K, sup, updates in itertools.product(a.sigmas, a.Ks, a.suppress, a.updates):
        finals = [run(model, effects, sigma, K, sup, updates, seed) for seed in range(a.seeds)]
        spread = sum(float(s.max() - s.min()) for s in finals) / len(finals)
        agree = [spearman(x, y) for x, y in itertools.combinations(finals, 2)]
        truth = [spearman(s, -effects) for s in finals]
        rows.append((sigma, K, sup, updates, spread, sum(agree) / len(agree), min(agree), max(agree),
                     sum(truth) / len(truth)))
        print(rows[-1], flush=True)
    lines = [
        "# IST score rule: power analysis (`bench/ist_power.py`)", "",
        f"Real `ISTController` (8 of 30 layers trained per step, eta 1, T 5, normalized advantages, "
        f"set credit: the defaults; n_suppress 0.5 = 15 layers suppressed per probe pass is the default), synthetic probe loss = sum over the suppressed layers of "
        f"(e_i + sigma z); e ~ N(0, 1) per layer (fixed), z ~ N(0, 1) per layer and update. "
        f"{a.seeds} seeds per row; agreement = mean Spearman over the {a.seeds * (a.seeds - 1) // 2} seed "
        f"pairs (min..max); accuracy = mean Spearman with the true ranking. sigma = inf: losses "
        f"drawn at random (no layer signal). Runtime {time.time() - t0:.0f} s.", "",
        "| sigma (noise / layer signal) | K | n_suppress | updates (steps = 5 x) | spread max-min | agreement | "
        "agreement min..max | accuracy |", "|---|---|---|---|---|---|---|---|"]
    for sigma, K, sup, updates, spread, agree, lo, hi, acc in rows:
        lines.append(f"| {sigma:g} | {K} | {sup:g} | {updates} | {spread:.2f} | {agree:.2f} | {lo:.2f}..{hi:.2f} | "
                     f"{acc:.2f} |")
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
