"""Markdown tables of evaluation results."""

from __future__ import annotations


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
