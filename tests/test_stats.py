"""scaleot.stats against references: scipy's spearmanr where scipy is installed (a by-hand
Pearson-of-ranks otherwise), numpy's ddof=1 standard deviation for the paired error, its pooling over tasks and seeds."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from scaleot.stats import over_seeds, paired_difference, paired_stderr, pooled, ranks, spearman


def _reference_spearman(x, y) -> float:
    try:
        from scipy.stats import spearmanr
    except ImportError:  # Pearson correlation of the average ranks, through numpy
        def avg_ranks(v):
            v = np.asarray(v, dtype=float)
            return np.array([np.mean(np.flatnonzero(np.sort(v) == e)) for e in v])

        return float(np.corrcoef(avg_ranks(x), avg_ranks(y))[0, 1])
    return float(spearmanr(x, y).statistic)


@pytest.mark.parametrize("seed", range(6))
def test_spearman_matches_the_reference(seed):
    rng = random.Random(seed)
    n = rng.randint(3, 40)
    x = [rng.choice([0.1, 0.2, 0.3, 0.5]) if seed % 2 else rng.random() for _ in range(n)]  # ties on odd seeds
    y = [v + rng.gauss(0, 0.3) for v in x]
    assert spearman(x, y) == pytest.approx(_reference_spearman(x, y), abs=1e-12)


def test_spearman_edges():
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert ranks([5, 1, 5, 3]) == [2.5, 0.0, 2.5, 1.0]
    with pytest.raises(ValueError):
        spearman([1], [1])
    with pytest.raises(ValueError):
        spearman([1, 2], [1, 2, 3])


@pytest.mark.parametrize("seed", range(4))
def test_paired_stderr_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 2, 200).tolist(), rng.integers(0, 2, 200).tolist()
    d = np.asarray(a) - np.asarray(b)
    assert paired_stderr(a, b) == pytest.approx(d.std(ddof=1) / np.sqrt(len(d)), abs=1e-12)
    mean, se = paired_difference(a, b)
    assert mean == pytest.approx(d.mean()) and se == pytest.approx(paired_stderr(a, b))
    with pytest.raises(ValueError):
        paired_stderr([1], [0])


def test_the_offsite_rows_use_this_paired_error():
    from scaleot.evaluation import offsite

    assert offsite.paired_stderr is paired_stderr


def test_pooled_matches_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 2, 300).tolist(), rng.integers(0, 2, 300).tolist()
    m, se = paired_difference(a, b)
    m2, se2 = pooled([(m, se), (0.02, 0.015)])
    assert (m2, se2) == pytest.approx(((m + 0.02) / 2, np.hypot(se, 0.015) / 2))
    with pytest.raises(ValueError):
        pooled([])


def test_over_seeds_matches_numpy():
    rng = np.random.default_rng(1)
    seeds, sizes = (0, 1, 2), (200, 150)
    per_seed = {s: [(rng.integers(0, 2, n).tolist(), rng.integers(0, 2, n).tolist()) for n in sizes]
                for s in seeds}
    got = over_seeds(per_seed)
    # reference: per task, the seed-averaged per-example difference; pooled over the two tasks
    means, ses = [], []
    for t, n in enumerate(sizes):
        d = np.mean([np.array(per_seed[s][t][0]) - np.array(per_seed[s][t][1]) for s in seeds], axis=0)
        means.append(d.mean())
        ses.append(d.std(ddof=1) / np.sqrt(n))
    by_seed = [np.mean([np.mean(a) - np.mean(b) for a, b in per_seed[s]]) for s in seeds]
    assert got["mean"] == pytest.approx(np.mean(means)) == pytest.approx(np.mean(by_seed))
    assert got["se_test"] == pytest.approx(np.sqrt(np.sum(np.square(ses))) / 2)
    assert got["sd_seed"] == pytest.approx(np.std(by_seed, ddof=1))
    assert got["se"] == pytest.approx(np.sqrt(got["se_test"] ** 2 + np.var(by_seed, ddof=1) / 3))
    assert got["by_seed"] == pytest.approx(by_seed) and got["k"] == 3
    one = over_seeds({0: per_seed[0]})
    assert one["sd_seed"] == 0.0 and one["se"] == pytest.approx(one["se_test"])
