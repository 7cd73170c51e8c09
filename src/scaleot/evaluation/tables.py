"""Markdown tables of evaluation results: zero-shot accuracy, and the five offsite rows."""

from __future__ import annotations

from pathlib import Path


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def mc_table(results: dict[str, dict], title: str = "model") -> str:
    """One row per task: acc ± stderr, acc_norm ± stderr, n (percent)."""
    lines = [f"| task ({title}) | acc | acc_norm | n |", "|---|---|---|---|"]
    for task, r in results.items():
        lines.append(f"| {task} | {pct(r['acc'])} ± {pct(r['acc_stderr'])} | "
                     f"{pct(r['acc_norm'])} ± {pct(r['acc_norm_stderr'])} | {r['n']} |")
    if len(results) > 1:
        accs = [r["acc"] for r in results.values()]
        norms = [r["acc_norm"] for r in results.values()]
        lines.append(f"| **mean** | {pct(sum(accs) / len(accs))} | {pct(sum(norms) / len(norms))} | |")
    notes = []
    scorers = sorted({r["scorer"] for r in results.values() if "scorer" in r})
    if scorers:
        notes.append("scorer: " + ", ".join(scorers))
    truncated = sum(r.get("truncated", 0) for r in results.values())
    if truncated:
        notes.append(f"{truncated} example(s) cut from the left to fit the model's window, as lm-eval does")
    if notes:
        lines += ["", "; ".join(notes)]
    return "\n".join(lines)


def _cell(r: dict | None) -> str:
    return "-" if r is None else f"{100 * r['acc']:.1f} ± {100 * r['acc_stderr']:.1f}"


def short_task(task: str) -> str:
    """A column title: ``bigbench:a/b`` -> ``a/b``; a file path -> its stem."""
    return Path(task).stem if task.endswith(".jsonl") else task.removeprefix("bigbench:")


def delta_stderr_kind(*docs: dict) -> str:
    """``"paired"`` when every doc's averaged Delta has a paired standard error, else
    ``"conservative, unpaired"`` (results saved before per-example scores were kept)."""
    paired = bool(docs) and all(d["delta"]["average"].get("paired") for d in docs)
    return "paired" if paired else "conservative, unpaired"


def offsite_table(doc: dict) -> str:
    """Markdown: one row per evaluation row, one column per task plus the average (acc, %)."""
    tasks = doc["tasks"]
    head = "| row | " + " | ".join(short_task(t) for t in tasks) + " | average |"
    lines = [head, "|---" * (len(tasks) + 2) + "|"]
    from scaleot.evaluation.offsite import ROWS, precision_of, scorers_of

    for row in ROWS:
        cells = [_cell(doc["rows"][t].get(row)) for t in tasks] + [_cell(doc["average"].get(row))]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    d = doc["delta"]
    cells = [f"{100 * d[t]['acc']:+.1f} ± {100 * d[t]['stderr']:.1f}" for t in tasks + ["average"]]
    lines.append("| **Delta** (Plug-in - Emu FT) | " + " | ".join(cells) + " |")
    n = {t: doc["rows"][t]["Plug-in"]["n"] for t in tasks}
    lines.append("")
    lines.append(f"acc in %, ± one standard error ({delta_stderr_kind(doc)} for Delta); scorer: "
                 f"{scorers_of(doc['rows'])}; precision: {precision_of(doc)}; test examples per task: "
                 + ", ".join(f"{short_task(t)} {v}" for t, v in n.items()))
    return "\n".join(lines)
