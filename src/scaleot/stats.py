"""The statistics every comparison uses, once: paired differences of two models scored on the
same examples, their pooling over tasks and over training seeds, and Spearman's rank
correlation of two score lists.

Pure Python on lists (no torch, no scipy): the library and bench/ both import them from here.
"""

from __future__ import annotations

import math


def paired_stderr(a: list[float], b: list[float]) -> float:
    """Standard error of ``mean(a) - mean(b)`` for two scores of the same ``n`` examples: the
    sample standard deviation (ddof=1) of the per-example differences over ``sqrt(n)``.

    Raises:
        ValueError: lists of different lengths, or fewer than 2 examples.
    """
    n = len(a)
    if n != len(b) or n < 2:
        raise ValueError(f"paired standard error needs two lists of the same length >= 2, got {n} and {len(b)}")
    d = [x - y for x, y in zip(a, b, strict=True)]
    mean = sum(d) / n
    return math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1) / n)


def paired_difference(a: list[float], b: list[float]) -> tuple[float, float]:
    """``(mean(a - b), paired standard error)`` in the units of ``a`` and ``b`` (fractions for
    per-example 0/1 correctness; multiply by 100 for points)."""
    se = paired_stderr(a, b)
    return sum(a) / len(a) - sum(b) / len(b), se


def ranks(values: list[float]) -> list[float]:
    """0-based ranks of ``values``, ties given the average of the ranks they span."""
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2
        i = j + 1
    return out


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation of two equally long lists (average ranks for ties; what
    ``scipy.stats.spearmanr`` gives). ``nan`` when either list is constant.

    Raises:
        ValueError: lists of different lengths, or fewer than 2 values.
    """
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"Spearman needs two lists of the same length >= 2, got {len(x)} and {len(y)}")
    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    num = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    den = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    return num / den if den else float("nan")


def pooled(per_task: list[tuple[float, float]]) -> tuple[float, float]:
    """Mean over ``k`` tasks of ``(difference, standard error)`` pairs, and its standard error
    ``sqrt(sum se^2) / k`` (the tasks' test examples are independent).

    Raises:
        ValueError: no task.
    """
    k = len(per_task)
    if not k:
        raise ValueError("pooling needs at least one task")
    return sum(m for m, _ in per_task) / k, math.sqrt(sum(se ** 2 for _, se in per_task)) / k


def over_seeds(per_seed: dict[int, list[tuple[list[float], list[float]]]]) -> dict:
    """A paired difference repeated over training seeds on the same test examples, pooled over tasks.

    Args:
        per_seed: seed -> per task ``(a scores, b scores)``, the same tasks and examples for
            every seed.

    Returns:
        ``mean`` (over seeds and tasks), ``se_test`` (paired standard error of the
        seed-averaged per-example difference, pooled over tasks: test-sampling noise),
        ``sd_seed`` (standard deviation of the per-seed pooled differences: training noise),
        ``se = sqrt(se_test^2 + sd_seed^2 / k)``, ``k`` (seeds) and ``by_seed`` (each seed's
        pooled difference), in the units of the scores.
    """
    seeds = sorted(per_seed)
    k, n_tasks = len(seeds), len(per_seed[seeds[0]])

    def seed_mean(t: int, side: int) -> list[float]:  # per-example mean over seeds
        return [sum(col) / k for col in zip(*(per_seed[s][t][side] for s in seeds), strict=True)]

    mean, se_test = pooled([paired_difference(seed_mean(t, 0), seed_mean(t, 1)) for t in range(n_tasks)])
    by_seed = [pooled([paired_difference(a, b) for a, b in per_seed[s]])[0] for s in seeds]
    sd = math.sqrt(sum((x - mean) ** 2 for x in by_seed) / (k - 1)) if k > 1 else 0.0
    return {"mean": mean, "se_test": se_test, "sd_seed": sd, "se": math.sqrt(se_test ** 2 + sd ** 2 / k),
            "k": k, "by_seed": by_seed}
