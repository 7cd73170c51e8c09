"""What a run's five rows mean for the model owner, with paired standard errors.

A report that leads with ``Delta = Plug-in - Emu FT`` can show success where there is
none: Delta is large whenever the emulator is bad, even if the plug-in gained nothing
over the untuned model. The quantities that decide whether offsite tuning worked are:

- ``gain = Plug-in - Full ZS``: what the model owner got from the data owner's tuning;
- ``cost = FT - Plug-in``: what tuning through the emulator cost against tuning the
  full model directly;
- ``Delta = Plug-in - Emu FT`` and ``Emu ZS - Full ZS``: the privacy gap.

Each difference is paired (the two rows are scored on the same test examples); averaged
over tasks, its standard error is ``sqrt(sum se_t^2) / k``, as for Delta.
"""

from __future__ import annotations

import math

from scaleot.evaluation.offsite import delta_of

# A difference is called real when it is at least this many standard errors from zero.
SIGNIFICANT_SE = 2.0


def difference(doc: dict, a: str, b: str) -> dict | None:
    """``row a - row b`` averaged over the doc's tasks, with its standard error; ``None``
    when a task lacks either row."""
    per_task = {}
    for task in doc["tasks"]:
        rows = doc["rows"][task]
        if a not in rows or b not in rows:
            return None
        per_task[task] = delta_of(rows[a], rows[b])
    k = len(per_task)
    return {"acc": sum(d["acc"] for d in per_task.values()) / k,
            "stderr": math.sqrt(sum(d["stderr"] ** 2 for d in per_task.values())) / k,
            "paired": all(d["paired"] for d in per_task.values()), "per_task": per_task}


def fmt(d: dict | None) -> str:
    """``+6.1 ± 1.4`` in points, or ``-``."""
    return "-" if d is None else f"{100 * d['acc']:+.1f} ± {100 * d['stderr']:.1f}"


def verdict(doc: dict) -> str:
    """One plain line: did the adapter transfer, i.e. is the plug-in above Full ZS beyond noise?"""
    gain = difference(doc, "Plug-in", "Full ZS")
    if gain is None:
        return "no verdict: the run has no Full ZS row"
    if gain["stderr"] > 0:
        z = gain["acc"] / gain["stderr"]
    else:  # identical predictions on every example: no difference, or one without any spread
        z = 0.0 if gain["acc"] == 0 else math.copysign(math.inf, gain["acc"])
    if z >= SIGNIFICANT_SE:
        line = f"the adapter transferred: {fmt(gain)} over zero-shot"
    elif z <= -SIGNIFICANT_SE:
        line = f"the plug-in is worse than zero-shot: {fmt(gain)}"
    else:
        line = f"no transfer beyond noise: {fmt(gain)} over zero-shot"
    cost = difference(doc, "FT", "Plug-in")
    if cost is not None:
        line += f"; {fmt(cost)} below full fine-tuning"
    return line


def headline_table(docs: dict[str, dict]) -> str:
    """Markdown, one row per emulator: gain, cost, Delta, emulator gap and the verdict."""
    lines = ["| emulator | Plug-in - Full ZS | FT - Plug-in | Delta (Plug-in - Emu FT) | Emu ZS - Full ZS | verdict |",
             "|---|---|---|---|---|---|"]
    for name, doc in docs.items():
        lines.append(f"| {name} | {fmt(difference(doc, 'Plug-in', 'Full ZS'))} | "
                     f"{fmt(difference(doc, 'FT', 'Plug-in'))} | {fmt(difference(doc, 'Plug-in', 'Emu FT'))} | "
                     f"{fmt(difference(doc, 'Emu ZS', 'Full ZS'))} | {verdict(doc).split(':')[0]} |")
    return "\n".join(lines)
