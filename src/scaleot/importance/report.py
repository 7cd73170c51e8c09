"""Training log (JSONL + TensorBoard) and the ``importance.png`` bar chart."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


class MetricsLog:
    """Append one record per step to ``log.jsonl`` and TensorBoard events under ``tb/``.

    On resume (``resume_step`` given) records after that step are dropped from the
    JSONL file and TensorBoard purges them, so the log reads like one run.

    Args:
        folder: the run folder.
        middle: middle block indices (names of the per-block score curves).
        resume_step: the step a resumed run continues from, or None.
    """

    def __init__(self, folder: str | Path, middle: list[int], resume_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        self.folder, self.middle = Path(folder), middle
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "log.jsonl"
        if resume_step is not None and path.is_file():
            kept = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= resume_step]
            path.write_text("".join(ln + "\n" for ln in kept))
        elif path.exists():
            path.unlink()
        self.file = open(path, "a")  # noqa: SIM115
        self.tb = SummaryWriter(str(self.folder / "tb"), purge_step=None if resume_step is None else resume_step + 1)

    def __call__(self, rec: dict) -> None:
        self.file.write(json.dumps(rec) + "\n")
        self.file.flush()
        step = rec["step"]
        for key in ("harmonizer_loss", "score_loss_mean"):
            if key in rec:
                self.tb.add_scalar(f"loss/{key}", rec[key], step)
        for i, s in zip(self.middle, rec.get("logits", []), strict=False):
            self.tb.add_scalar(f"score/block_{i:02d}", s, step)

    def close(self) -> None:
        self.file.close()
        self.tb.close()


def plot_importance(path: str | Path, middle: list[int], logits: list[float], num_blocks: int,
                    adapter: tuple[int, int], title: str = "") -> None:
    """Bar chart of keep-probability per middle block; adapter blocks shown as grey spans."""
    p = torch.sigmoid(torch.tensor(logits, dtype=torch.float64)).tolist()
    fig, ax = plt.subplots(figsize=(max(6, 0.3 * num_blocks + 2), 3.5))
    order = sorted(range(len(middle)), key=lambda j: -logits[j])
    rank = {j: r for r, j in enumerate(order)}
    colors = ["tab:red" if rank[j] < len(middle) / 2 else "tab:blue" for j in range(len(middle))]
    ax.bar(middle, p, color=colors)
    n_bottom, n_top = adapter
    if n_bottom:
        ax.axvspan(-0.5, n_bottom - 0.5, color="grey", alpha=0.25, label="adapter")
    if n_top:
        ax.axvspan(num_blocks - n_top - 0.5, num_blocks - 0.5, color="grey", alpha=0.25)
    ax.axhline(0.5, color="black", lw=0.5, ls="--")
    from matplotlib.patches import Patch

    handles = [Patch(color="tab:red", label="more important half: kept in the emulator first"),
               Patch(color="tab:blue", label="less important half: replaced first (alpha)")]
    if n_bottom or n_top:
        handles.append(Patch(color="grey", alpha=0.25, label="adapter blocks (never replaced)"))
    ax.legend(handles=handles, fontsize=7, loc="upper right", framealpha=0.8)
    ax.set_xlim(-0.5, num_blocks - 0.5)
    ax.set_ylim(0, 1.35)  # room for the legend above the bars
    ax.set_xlabel("block")
    ax.set_ylabel("keep probability sigmoid(s)")
    ax.set_title(title or "block importance (red: upper half, kept first)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
