"""Choosing on dev, reporting on test: the transfer suite's rule and the guard that keeps test clean.

docs/method.md section 7. A choice (which tasks form the suite, which configuration becomes the
default) reads only records scored on the **dev** split; :func:`require_dev` refuses anything
else, so a test number can never leak into a selection. The suite rule is fixed before any
emulator result is seen: a task qualifies when, on dev, the reference adapter (the adapter
blocks tuned on the full model itself) gains at least ``min_reference_gain`` points over the
full model's zero-shot, and that zero-shot is above the majority-class rate (so the reference,
higher still, is no constant answer, and an emulator can be measurably worse than the model).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

from scaleot import stats
from scaleot.errors import ScaleOTError


@dataclass(frozen=True)
class SuiteRule:
    """When a task enters the transfer suite (points, on dev)."""

    min_reference_gain: float = 8.0
    zero_shot_above_majority: bool = True


def require_dev(records: list[dict], what: str = "a choice") -> None:
    """Raise unless every record was scored on dev (``record["split"] == "dev"``)."""
    bad = [r for r in records if r.get("split") != "dev"]
    if bad:
        raise ScaleOTError(f"refusing {what}: {len(bad)} record(s) were not scored on dev "
                           f"(e.g. {bad[0].get('task', '?')} on {bad[0].get('split')!r}); "
                           "choices are made on dev only and test is scored once, for reporting")


def paired_difference(a: list[int], b: list[int]) -> tuple[float, float]:
    """``mean(a - b)`` and its paired standard error, in points (:mod:`scaleot.stats`), for
    per-example 0/1 correctness of two models on the same examples."""
    if len(a) != len(b) or len(a) < 2:
        raise ScaleOTError(f"a paired difference needs two equal lists of at least 2 (got {len(a)} and {len(b)})")
    mean, se = stats.paired_difference(a, b)
    return 100 * mean, 100 * se


def majority_rate(labels: list[int]) -> float:
    """Accuracy of always answering the most frequent label."""
    return max(Counter(labels).values()) / len(labels)


def choose_suite(records: list[dict], rule: SuiteRule = SuiteRule()) -> dict:
    """Apply ``rule`` to one dev record per task.

    Args:
        records: ``{"task", "split", "labels", "full_zs", "reference"}``; ``full_zs`` and
            ``reference`` are per-example 0/1 correctness on the same dev examples, ``labels``
            their gold labels.

    Returns:
        ``{"rule", "tasks": [{task, majority, full_zs, reference, gain, gain_se, in_suite, why_not}],
        "suite": [task, ...]}`` (accuracies in points).

    Raises:
        ScaleOTError: a record not scored on dev.
    """
    require_dev(records, "to choose the suite")
    rows = []
    for r in records:
        major = 100 * majority_rate(r["labels"])
        zs = 100 * sum(r["full_zs"]) / len(r["full_zs"])
        ref = 100 * sum(r["reference"]) / len(r["reference"])
        gain, se = paired_difference(r["reference"], r["full_zs"])
        why = []
        if gain < rule.min_reference_gain:
            why.append(f"reference gain {gain:.1f} < {rule.min_reference_gain}")
        if rule.zero_shot_above_majority and zs <= major:
            why.append(f"zero-shot {zs:.1f} <= majority {major:.1f}")
        rows.append({"task": r["task"], "majority": major, "full_zs": zs, "reference": ref, "gain": gain,
                     "gain_se": se, "in_suite": not why, "why_not": "; ".join(why)})
    return {"rule": asdict(rule), "tasks": rows, "suite": [r["task"] for r in rows if r["in_suite"]]}
