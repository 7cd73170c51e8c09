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

from safetensors.torch import save_file

from scaleot.manifest import read_json, write_json_atomic
from scaleot.tuners.ist.controller import ISTController


def importance_record(controller: ISTController) -> dict:
    imp = controller.importance()
    return {
        "format_version": 1,
        "config": controller.config.to_dict(),
        "blocks": controller.blocks,
        "scores": {str(b): s for b, s in controller.scores().items()},
        "importance": {str(b): v for b, v in imp.items()},
        "counts": {str(b): int(c) for b, c in zip(controller.blocks, controller.counts, strict=True)},
        "step": controller.step,
        "ranking": sorted(imp, key=lambda b: -imp[b]),
        "trajectory": {"steps": [step for step, _ in controller.history],
                       "scores": {str(b): [row[i] for _, row in controller.history]
                                  for i, b in enumerate(controller.blocks)}},
    }


def save_importance(controller: ISTController, folder: str | Path, plot: bool = True) -> dict:
    """Write ``ist_importance.json``, ``ist_state.safetensors`` and (optionally) the plot."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    record = importance_record(controller)
    write_json_atomic(folder / "ist_importance.json", record)
    save_file({k: v.contiguous() for k, v in controller.state_dict().items()}, str(folder / "ist_state.safetensors"))
    if plot:
        plot_importance(record, folder / "ist_importance.png")
    return record


def load_importance(folder: str | Path) -> dict:
    return read_json(Path(folder) / "ist_importance.json")


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
