"""Do IST's layer scores learn? Spread and seed agreement on the real default model (issue 15).

For each ``eta`` and seed: IST (LoRA on every block of SmolLM2-135M, or ``--model``) trains for
``--steps`` steps on a default task; after the run we record the score logits. Per eta:

- *spread*: ``max(s) - min(s)`` and ``std(s)`` of the final score logits (target spread >= 1.0);
- *agreement*: Spearman's rank correlation between two seeds' final scores (target >= 0.6).
  The seed drives the selection and probe draws and the LoRA init (the data order too).

One record per (eta, seed) is appended to ``<out>/runs.jsonl`` as it finishes, so an
interrupted sweep resumes where it stopped; ``--report`` writes ``<out>.md``/``.json``
and the trajectory plot ``<out>/trajectory.png`` (the chosen eta, every seed).

    flock /tmp/cpu1.lock env OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 \\
        .venv/bin/python -m bench.ist_scores --etas 0.5 2 --seeds 0 1 --steps 100
    .venv/bin/python -m bench.ist_scores --report
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from bench.ist_loop import SparseTuner, TrainOptions
from scaleot.data import SplitConfig, load_task
from scaleot.data_owner.tuners.ist import ISTConfig, lora_config_for
from scaleot.models import DEFAULT_MODEL, load_model
from scaleot.stats import spearman


def run_one(args, eta: float, seed: int) -> dict:
    torch.manual_seed(seed)
    splits = load_task(args.task, SplitConfig(seed=0, n_test=args.n_test, n_val=64))
    model, tok = load_model(args.model, device="cpu")
    ist = ISTConfig(eta=eta, T=args.T, K=args.K, seed=seed, reward=args.reward, credit=args.credit, probe=args.probe,
                    grad_decay=args.grad_decay)
    opts = TrainOptions(steps=args.steps, batch_size=args.batch_size, lr=args.lr, max_length=args.max_length,
                        probe_batch_size=args.probe_batch_size, seed=seed)
    tuner = SparseTuner(model, tok, splits.train, splits.val, ist, lora_config_for(model), opts)
    t0, losses = time.time(), []
    for step in range(1, args.steps + 1):
        losses.append(tuner.train_step(step)["loss"])
    ctl = tuner.controller
    return {"eta": eta, "seed": seed, "task": args.task, "T": args.T, "K": args.K, "reward": args.reward,
            "credit": args.credit, "probe_batch_size": args.probe_batch_size, "probe": args.probe,
            "grad_decay": args.grad_decay,
            "steps": args.steps, "batch_size": args.batch_size, "max_length": args.max_length, "lr": args.lr,
            "blocks": ctl.blocks, "scores": ctl._scores.tolist(), "counts": ctl.counts.tolist(),
            "history": ctl.history, "losses": losses, "wall_s": round(time.time() - t0, 1)}


def setting(r: dict) -> tuple:
    """What a run's scores depend on besides the seed: (eta, credit, K, probe batch, probe).

    Records from before these fields were stored ran with the paper's ``set`` credit,
    a probe batch of 4 and the suppression probe (the command in BENCHMARKS.md, "IST that learns").
    Probe ``grad`` ignores credit, K and probe batch; its key carries them all the same.
    """
    return (r["eta"], r.get("credit", "set"), r["K"], r.get("probe_batch_size", 4),
            r.get("probe", "suppress") + (f" {r['grad_decay']:g}" if r.get("probe") == "grad" else ""))


def partial_agreement(rs: list[dict], covariates: tuple[str, ...]) -> list[float]:
    """Per pair of seeds, the Pearson correlation of their importance ranks (-s) after each
    seed's ranks are regressed on the ranks of its own ``covariates`` (``"blocks"`` = depth,
    ``"counts"`` = its selection counts): what the seeds share beyond depth and selection history."""
    import numpy as np
    from scipy.stats import rankdata

    def resid(r):
        y = rankdata([-x for x in r["scores"]])
        x = np.column_stack([np.ones(len(y))] + [rankdata(r[c]) for c in covariates])
        return y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
    res = [resid(r) for r in rs]
    return [float(np.corrcoef(res[i], res[j])[0, 1]) for i in range(len(rs)) for j in range(i + 1, len(rs))]


def mean(xs: list[float]) -> str:
    return f"{sum(xs) / len(xs):.2f}" if xs else "-"


def report(out: Path, target_spread: float = 1.0, target_rho: float = 0.6) -> dict:
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines() if line.strip()]
    by_eta: dict[tuple, list[dict]] = {}
    for r in runs:
        by_eta.setdefault(setting(r), []).append(r)
    rows = []
    for (eta, credit, K, probe, kind), rs in sorted(by_eta.items()):
        rs.sort(key=lambda r: r["seed"])
        spreads = [max(r["scores"]) - min(r["scores"]) for r in rs]
        stds = [torch.tensor(r["scores"]).std().item() for r in rs]
        rhos = [spearman(rs[i]["scores"], rs[j]["scores"]) for i in range(len(rs)) for j in range(i + 1, len(rs))]
        rows.append({"eta": eta, "credit": credit, "K": K, "probe_batch_size": probe, "probe": kind, "seeds": [r["seed"] for r in rs], "spread": spreads, "std": stds, "spearman": rhos,
                     "final_loss": [sum(r["losses"][-10:]) / 10 for r in rs],
                     "count_rho": [spearman(r["counts"], [-x for x in r["scores"]]) for r in rs],
                     "depth_rho": [spearman(r["blocks"], [-x for x in r["scores"]]) for r in rs],
                     "partial": partial_agreement(rs, ("blocks", "counts")), "wall_s": [r["wall_s"] for r in rs]})
    ok = [r for r in rows if r["spearman"] and min(r["spread"]) >= target_spread and min(r["spearman"]) >= target_rho]
    chosen = (max(ok, key=lambda r: min(r["spearman"])) if ok
              else max(rows, key=lambda r: (min(r["spearman"]) if r["spearman"] else -1)))
    first = runs[0]
    lines = [f"Task {first['task']}, SmolLM2-135M fp32 on CPU, LoRA r=8 on all 30 blocks, {first['steps']} steps,"
             f" batch {first['batch_size']}, max_length {first['max_length']}, lr {first['lr']},"
             f" IST T={first['T']} reward={first['reward']} (K per row); spread = max(s) - min(s) of the"
             " final score logits, std = their standard deviation, Spearman between seeds' final scores.", "",
             "| probe | eta | credit | K | probe batch | seeds | spread per seed | std per seed | Spearman per pair of seeds |"
             " mean Spearman | mean, depth and counts partialled out | count-importance Spearman |"
             " depth-importance Spearman | loss (last 10 steps) |", "|---" * 14 + "|"]
    for r in rows:
        fmt = lambda xs: ", ".join(f"{x:.2f}" for x in xs)  # noqa: E731
        lines.append(f"| {r['probe']} | {r['eta']:g} | {r['credit']} | {r['K']} | {r['probe_batch_size']} | {r['seeds']} | {fmt(r['spread'])} | {fmt(r['std'])} |"
                     f" {fmt(r['spearman']) or '-'} | {mean(r['spearman'])} | {mean(r['partial'])} | {fmt(r['count_rho'])} | {fmt(r['depth_rho'])} | {fmt(r['final_loss'])} |")
    lines += ["", "count-importance Spearman: between a seed's selection counts and its importance (-s);"
              " selection follows the scores by design, so it is high whatever the cause.",
              "depth-importance Spearman: between block index and importance (-s); negative = low blocks trained more.",
              "partialled out: each seed's importance ranks regressed on the ranks of its block index and its"
              " selection counts, then correlated between seeds (what depth and selection history do not explain).",
              "", f"Chosen: probe {chosen['probe']}, eta {chosen['eta']:g}, credit {chosen['credit']}, K {chosen['K']}, probe batch "
              f"{chosen['probe_batch_size']} ({'meets' if chosen in ok else 'does NOT meet'} spread >= "
              f"{target_spread} and Spearman >= {target_rho})."]
    plot_trajectories([r for r in runs if setting(r) == (chosen["eta"], chosen["credit"], chosen["K"],
                                                         chosen["probe_batch_size"], chosen["probe"])],
                      out / "trajectory.png")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    summary = {"rows": rows, "chosen_eta": chosen["eta"], "chosen_credit": chosen["credit"],
               "chosen_probe": chosen["probe"], "meets_targets": chosen in ok}
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    print("\n".join(lines))
    return summary


def plot_trajectories(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 3.6), squeeze=False, sharey=True)
    cmap = plt.get_cmap("viridis")
    for ax, r in zip(axes[0], runs, strict=True):
        steps = [0] + [h[0] for h in r["history"]]
        n = len(r["blocks"])
        for i, b in enumerate(r["blocks"]):
            ax.plot(steps, [0.0] + [-h[1][i] for h in r["history"]], color=cmap(i / max(1, n - 1)), lw=1,
                    label=str(b) if i in (0, n - 1) else None)
        ax.set_title(f"seed {r['seed']}, eta {r['eta']:g}, probe {r.get('probe', 'suppress')}")
        ax.set_xlabel("training step")
    axes[0][0].set_ylabel("-s (importance logit)")
    axes[0][0].legend(title="block (dark = low)", fontsize=7)
    fig.suptitle(f"IST score trajectories, {runs[0]['task']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL,
                    help="model name or HF folder (records are not keyed by it: give another --out)")
    ap.add_argument("--task", default="pkg:word_sentiment")
    ap.add_argument("--etas", type=float, nargs="*", default=[1.0])
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--probe-batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=96)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--T", type=int, default=ISTConfig.T)
    ap.add_argument("--K", type=int, default=ISTConfig.K)
    ap.add_argument("--reward", default="normalized")
    ap.add_argument("--credit", default=ISTConfig.credit, help="IST credit rule (ISTConfig.credit)")
    ap.add_argument("--probe", default=ISTConfig.probe, help="IST probe (ISTConfig.probe): suppress or grad")
    ap.add_argument("--grad-decay", type=float, default=ISTConfig.grad_decay, help="ISTConfig.grad_decay")
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--out", default="bench/results/ist_scores")
    ap.add_argument("--report", action="store_true", help="only summarise the recorded runs")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.report:
        log = out / "runs.jsonl"
        done = ({(*setting(r), r["seed"]) for r in map(json.loads, log.read_text().splitlines())}
                if log.exists() else set())
        for eta in args.etas:
            for seed in args.seeds:
                kind = args.probe + (f" {args.grad_decay:g}" if args.probe == "grad" else "")
                if (eta, args.credit, args.K, args.probe_batch_size, kind, seed) in done:
                    continue
                rec = run_one(args, eta, seed)
                with log.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
                print(f"eta {eta} credit {args.credit} seed {seed}: spread {max(rec['scores']) - min(rec['scores']):.2f}"
                      f" ({rec['wall_s']} s)", flush=True)
    report(out)


if __name__ == "__main__":
    main()
