"""The privacy-utility plot of a run (matplotlib, Agg backend)."""

from __future__ import annotations

import json
from pathlib import Path


def label_layout(points: list[tuple[float, float, str]], near: float = 1.0,
                 step: int = 11) -> list[tuple[tuple[float, float], str, int]]:
    """Labels that never sit on top of each other.

    Points at the same place (within ``near`` points on both axes) get one label that names
    them all; labels of points close in height are stacked ``step`` display points apart.

    Returns:
        ``[((x, y), text, vertical offset in display points)]``, one per distinct place.
    """
    places: list[list] = []
    for x, y, text in points:
        for place in places:
            if abs(place[0] - x) <= near and abs(place[1] - y) <= near:
                place[2].append(text)
                break
        else:
            places.append([x, y, [text]])
    places.sort(key=lambda p: (p[1], p[0]))
    out, used = [], []  # used: (x, label y in points-scale) of labels placed so far
    for x, y, texts in places:
        dy = 4
        while any(abs(ux - x) < 8 * near and abs(uy - (y + dy / step * near)) < near for ux, uy in used):
            dy += step
        used.append((x, y + dy / step * near))
        out.append(((x, y), " = ".join(texts), dy))
    return out


def _save(fig, ax, path: Path) -> Path:
    """Legend, layout, write ``path`` and free the figure (both privacy plots end this way)."""
    import matplotlib.pyplot as plt

    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def privacy_utility_plot(docs: dict[str, dict], path: str | Path, run_dir: Path | None = None) -> Path:
    """Scatter Plug-in vs Emu FT average accuracy, one point per emulator, with FT and Full ZS lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    xs, ys, points = [], [], []
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
        points.append((x, y, label))
    for (x, y), text, dy in label_layout(points):
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(6, dy), fontsize=8,
                    arrowprops={"arrowstyle": "-", "color": "gray", "lw": 0.5} if dy != 4 else None)
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
    return _save(fig, ax, path)


def recovery_points(audits: dict[str, dict], evals: dict[str, dict]) -> list[tuple[str, float, float, float]]:
    """``(name, Emu ZS, recovered ZS, Plug-in)`` in %, per emulator with an attack and a Plug-in row.

    Recovered ZS is the attacked emulator's accuracy at the largest budget (``audit.json``);
    Plug-in is the task average of ``eval/<name>.json``.
    """
    points = []
    for name, audit in audits.items():
        plug = (evals.get(name) or {}).get("average", {}).get("Plug-in")
        if audit.get("attack") and plug:
            points.append((name, 100 * audit["emulator_zs"]["acc"], 100 * audit["attack"][-1]["acc"],
                           100 * plug["acc"]))
    return points


def recovery_plot(audits: dict[str, dict], evals: dict[str, dict], path: str | Path) -> Path | None:
    """The privacy-utility plot's third view: Plug-in against the accuracy an attacker recovers.

    One point per emulator at (recovered ZS, Plug-in), with an arrow from where the attack started
    (Emu ZS); the further left, the less the attacker gets back. ``None`` when nothing was attacked.
    """
    points = recovery_points(audits, evals)
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for name, start, recovered, plug in points:
        ax.annotate("", (recovered, plug), (start, plug), arrowprops={"arrowstyle": "->", "color": "gray"})
        ax.plot([recovered], [plug], "o")
        ax.annotate(name, (recovered, plug), textcoords="offset points", xytext=(6, 4), fontsize=8)
    attacked = audits[points[0][0]]
    ax.axvline(100 * attacked["full"]["acc"], linestyle=":", color="gray",
               label="Full ZS (what a complete repair reaches)")
    budget = attacked["attack"][-1]["tokens"]
    ax.set_xlabel(f"attacked emulator accuracy after {budget} tokens (%)  <- more private")
    ax.set_ylabel("Plug-in accuracy (%)  (utility)")
    ax.set_title("Utility against what a recovery attack gets back")
    return _save(fig, ax, path)
