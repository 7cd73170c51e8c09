"""Choices on dev only: the suite rule, and the guard that refuses a test record in a selection."""

from __future__ import annotations

import math

import pytest

from scaleot.errors import ScaleOTError
from scaleot.evaluation.selection import (
    SuiteRule,
    choose_suite,
    majority_rate,
    paired_difference,
    require_dev,
)


def record(task, zs, ref, labels=None, split="dev"):
    return {"task": task, "split": split, "full_zs": zs, "reference": ref, "labels": labels or [0, 1] * (len(zs) // 2)}


def test_paired_difference_against_the_formula():
    a, b = [1, 1, 0, 1, 0, 1, 1, 0], [0, 1, 0, 0, 0, 1, 0, 0]
    d = [x - y for x, y in zip(a, b, strict=True)]
    mean = sum(d) / len(d)
    se = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1) / len(d))
    assert paired_difference(a, b) == pytest.approx((100 * mean, 100 * se))
    with pytest.raises(ScaleOTError, match="two equal lists"):
        paired_difference([1, 0], [1])


def test_rule_keeps_tasks_that_learn_and_start_above_majority():
    n = 100
    learns = record("gen:a", [1] * 60 + [0] * 40, [1] * 80 + [0] * 20)           # +20, zs 60 > 50
    flat = record("gen:b", [1] * 60 + [0] * 40, [1] * 62 + [0] * 38)             # +2
    below = record("gen:c", [1] * 40 + [0] * 60, [1] * 90 + [0] * 10)            # zs 40 <= 50
    doc = choose_suite([learns, flat, below])
    assert doc["suite"] == ["gen:a"]
    why = {t["task"]: t["why_not"] for t in doc["tasks"]}
    assert why["gen:b"] == "reference gain 2.0 < 8.0"
    assert why["gen:c"] == "zero-shot 40.0 <= majority 50.0"
    assert choose_suite([flat], SuiteRule(min_reference_gain=1.0))["suite"] == ["gen:b"]
    assert majority_rate([0] * 3 + [1] * (n - 3)) == 0.97


def test_a_test_record_never_enters_a_choice():
    good = record("gen:a", [1, 0] * 10, [1] * 20)
    with pytest.raises(ScaleOTError, match="refusing to choose the suite: 1 record.*on 'test'"):
        choose_suite([good, record("gen:b", [1, 0] * 10, [1] * 20, split="test")])
    with pytest.raises(ScaleOTError, match="not scored on dev"):
        require_dev([{"task": "x"}])  # no split recorded: refused too
    require_dev([good])
