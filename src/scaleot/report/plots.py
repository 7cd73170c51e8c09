"""The privacy-utility plot of a run (matplotlib, Agg backend)."""

from __future__ import annotations

import json
from pathlib import Path


def privacy_utility_plot(docs: dict[str, dict], path: str | Path, run_dir: Path | None = None) -> Path:
    """Scatter Plug-in vs Emu FT average accuracy, one point per emulator, with FT and Full ZS lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    xs, ys = [], []
    for name, doc in docs.items():
        avg = doc["average"]
        x, y = 100 * avg["Emu FT"]["acc"], 100 * avg["Plug-in"]["acc"]
        xs.append(x)
        ys.append(y)
        label = name
        if run_dir is not None:
            info_path = Path(run_dir) / "emulators" / name / "emulator.json"
            if info_path.is_file():
                ratio = json.loads(info_path.read_text()).get("params", {}).get("ratio")
                label = f"{name} ({ratio:.2f} of params)" if ratio else name
        ax.errorbar(x, y, xerr=100 * avg["Emu FT"]["acc_stderr"], yerr=100 * avg["Plug-in"]["acc_stderr"],
                    fmt="o", capsize=3)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    first = next(iter(docs.values()))["average"]
    for row, style in (("FT", "--"), ("Full ZS", ":")):
        if row in first:
            ax.axhline(100 * first[row]["acc"], linestyle=style, color="gray", label=f"{row} (full model)")
    lo = min(xs + ys) - 3
    hi = max(xs + ys + [100 * first.get("FT", {"acc": 0})["acc"]]) + 3
    ax.plot([lo, hi], [lo, hi], color="lightgray", linewidth=1, label="Plug-in = Emu FT")
    ax.set_xlabel("Emu FT accuracy (%)  <- more private")
    ax.set_ylabel("Plug-in accuracy (%)  (utility)")
    ax.set_title("Privacy-utility of the run's emulators")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
