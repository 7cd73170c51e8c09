"""IST scores saved beside a tuned adapter, and their plot (docs/method.md section 4).

Files written into an adapter folder (next to peft's ``adapter_config.json`` +
``adapter_model.safetensors``):

- ``ist_importance.json``: ``{"format_version": 1, "config": ISTConfig fields,
  "blocks": [...], "scores": {block: s}, "importance": {block: 1 - sigmoid(s)},
  "counts": {block: times trained}, "step": N, "ranking": [most important first],
  "trajectory": {"steps": [...], "scores": {block: [score after each update]}}}``;
- ``ist_state.safetensors``: the controller's full state (scores, counts, step, RNG);
- ``ist_importance.png``: the score trajectory (one line per block over the importance
  updates) above a bar plot of importance and selection counts per block.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from scaleot.exchange.manifest import read_json, write_json_atomic

SCORES = "ist_importance.json"
STATE = "ist_state.safetensors"
PLOT = "ist_importance.png"


def write_ist_scores(folder: str | Path, record: dict, state: dict[str, torch.Tensor], plot: bool = True) -> dict:
    """Write ``ist_importance.json``, ``ist_state.safetensors`` and (optionally) the plot.

    Args:
        folder: the adapter folder being written (created if missing).
        record: the ``ist_importance.json`` document (:func:`scaleot.data_owner.tuners.ist.artifacts.importance_record`).
        state: the controller's state tensors.
        plot: also draw ``ist_importance.png``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / SCORES, record)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / STATE))
    if plot:
        plot_importance(record, folder / PLOT)
    return record


def load_importance(folder: str | Path) -> dict:
    return read_json(Path(folder) / SCORES)


def plot_importance(record: dict, path: str | Path, title: str = "IST layer importance") -> None:
    """Top: the score trajectory, ``-s`` per block over the importance updates (colour =
    depth); bottom: bars of the final ``-s`` per block (positive = important = trained
    more) and a line of times trained."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = record["blocks"]
    imp = [-record["scores"][str(b)] for b in blocks]
    counts = [record["counts"][str(b)] for b in blocks]
    trajectory = record.get("trajectory") or {"steps": []}
    fig, (top, ax) = plt.subplots(2, 1, figsize=(max(5, 0.3 * len(blocks) + 2), 6.4))
    cmap = plt.get_cmap("viridis")
    for i, b in enumerate(blocks):
        series = trajectory.get("scores", {}).get(str(b), [])
        top.plot([0, *trajectory["steps"]], [0.0, *(-v for v in series)], color=cmap(i / max(1, len(blocks) - 1)),
                 lw=1.0, label=str(b) if i in (0, len(blocks) - 1) else None)
    top.set_xlabel("training step")
    top.set_ylabel("-s (importance logit)")
    top.legend(title="block (dark = low)", fontsize=7, loc="upper left")
    top.set_title(f"{title}: score trajectory")
    ax.bar([str(b) for b in blocks], imp, color=["tab:blue" if v >= 0 else "tab:red" for v in imp])
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("block")
    ax.set_ylabel("importance -s (weight 1 - sigmoid(s))")
    ax.tick_params(axis="x", labelsize=7)
    ax2 = ax.twinx()
    ax2.plot([str(b) for b in blocks], counts, color="tab:orange", marker=".", label="times trained")
    ax2.set_ylabel("times trained")
    probe = record["config"].get("probe", "suppress")
    ax.set_title(f"{title} (step {record['step']}, {record['config']['sampling']}, probe {probe})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
