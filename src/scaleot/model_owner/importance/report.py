"""Stage 1's TensorBoard scalars and the ``importance.png`` bar chart."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def tb_scalars(rec: dict, middle: list[int]) -> dict[str, float]:
    """TensorBoard scalars of one stage-1 log record: losses and one score curve per middle block."""
    out = {f"loss/{k}": rec[k] for k in ("harmonizer_loss", "score_loss_mean") if k in rec}
    out.update({f"score/block_{i:02d}": s for i, s in zip(middle, rec.get("logits", []), strict=False)})
    return out


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
