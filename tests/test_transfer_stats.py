"""bench/transfer.py's statistics against numpy/scipy references (paired, pooled, over seeds, Spearman),
and its reuse of an emulator's untuned numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bench.transfer import Lab, key_of, over_seeds, paired, pooled, spearman
from scipy.stats import spearmanr


def _vectors(rng, n):
    return rng.integers(0, 2, n).tolist()


def test_paired_and_pooled_match_numpy():
    rng = np.random.default_rng(0)
    a, b = _vectors(rng, 300), _vectors(rng, 300)
    d = np.array(a) - np.array(b)
    m, se = paired(a, b)
    assert m == pytest.approx(100 * d.mean())
    assert se == pytest.approx(100 * d.std(ddof=1) / np.sqrt(len(d)))
    m2, se2 = pooled([(m, se), (2.0, 1.5)])
    assert (m2, se2) == pytest.approx(((m + 2.0) / 2, np.hypot(se, 1.5) / 2))


def test_over_seeds_matches_numpy():
    rng = np.random.default_rng(1)
    seeds, sizes = (0, 1, 2), (200, 150)
    per_seed = {s: [(_vectors(rng, n), _vectors(rng, n)) for n in sizes] for s in seeds}
    got = over_seeds(per_seed)
    # reference: per task, the seed-averaged per-example difference; pooled over the two tasks
    means, ses = [], []
    for t, n in enumerate(sizes):
        d = np.mean([np.array(per_seed[s][t][0]) - np.array(per_seed[s][t][1]) for s in seeds], axis=0)
        means.append(100 * d.mean())
        ses.append(100 * d.std(ddof=1) / np.sqrt(n))
    by_seed = [np.mean([100 * (np.mean(a) - np.mean(b)) for a, b in per_seed[s]]) for s in seeds]
    assert got["mean"] == pytest.approx(np.mean(means)) == pytest.approx(np.mean(by_seed))
    assert got["se_test"] == pytest.approx(np.sqrt(np.sum(np.square(ses))) / 2)
    assert got["sd_seed"] == pytest.approx(np.std(by_seed, ddof=1))
    assert got["se"] == pytest.approx(np.sqrt(got["se_test"] ** 2 + np.var(by_seed, ddof=1) / 3))
    assert got["by_seed"] == pytest.approx(by_seed)


def test_spearman_matches_scipy_with_ties():
    x = [0.1, 0.4, 0.4, -0.2, 0.9, 0.0]
    y = [1.0, 3.0, 2.0, 2.0, 5.0, -1.0]
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)


def test_untuned_numbers_are_reused_only_for_the_same_deterministic_emulator(tmp_path):
    """Emu ZS and the diagnostic come from a finished record of the same emulator and test split
    (any tuning), never from another emulator, a distilled one, or a record that itself reused."""
    lab = object.__new__(Lab)
    lab.out = tmp_path
    (tmp_path / "records").mkdir()
    base = {"row": "offsite", "task": "t", "n_train": 400, "n_test": 500, "method": "scaleot", "nb": 2, "nt": 2,
            "alpha": 0.25, "beta": 0.5, "tune": "full", "lr": 3e-4, "seed": 0}

    def put(spec, **extra):
        rec = {"spec": spec, "diagnostic": {"all": 0.5}, "emu_zs": {"acc": 0.3}, **extra}
        (tmp_path / "records" / f"{key_of(spec)}.json").write_text(json.dumps(rec))

    put(base)
    put({**base, "method": "uniform-kd"})
    put({**base, "alpha": 0.35, "seed": 1}, untuned_from="x")
    assert lab.untuned({**base, "seed": 3, "steps": 25, "tune": "lora", "lr": 1e-3})["spec"] == base
    assert lab.untuned({**base, "beta": 0.0}) is None
    assert lab.untuned({**base, "task": "other"}) is None
    assert lab.untuned({**base, "method": "uniform-kd", "seed": 1}) is None
    assert lab.untuned({**base, "alpha": 0.35}) is None


def test_matrix_plan_follows_configs_default_yaml(monkeypatch):
    """--plan matrix reads the emulator size, alpha, beta and tuning budget from configs/default.yaml."""
    import bench.transfer as transfer

    cfg = transfer.default_scale()
    m = cfg["matrix"]
    specs = transfer.plan("matrix", ["gen:x"], {"n_train": 10, "n_test": 10})
    offsite = [s for s in specs if s["row"] == "offsite"]
    at_default = [s for s in offsite if s["method"] != "reference" and s["alpha"] == m["alpha"]]
    assert sorted(s["method"] for s in at_default) == sorted(transfer.MATRIX_METHODS)
    assert {(s["nb"], s["nt"], s["beta"], s["steps"], s["lr"]) for s in at_default} == {
        (m["n_bottom"], m["n_top"], m["beta"], cfg["finetune"]["max_steps"], cfg["finetune"]["lr"])}
    swept = sorted(s["alpha"] for s in offsite if s["method"] == "scaleot")
    assert swept == sorted(m["alphas"])
    assert [s["lr"] for s in specs if s["row"] == "ft"] == [cfg["ft"]["lr"]]
    # a changed file changes the plan: nothing is hard-coded beside it
    changed = dict(cfg, matrix=dict(m, alpha=0.4, alphas=[0.4, 0.6], beta=0.1), finetune=dict(cfg["finetune"], max_steps=7))
    monkeypatch.setattr(transfer, "default_scale", lambda: changed)
    specs = transfer.plan("matrix", ["gen:x"], {"n_train": 10, "n_test": 10})
    emus = [s for s in specs if s["row"] == "offsite" and s["method"] != "reference"]
    assert {s["beta"] for s in emus} == {0.1} and {s["steps"] for s in emus} == {7}
    assert sorted(s["alpha"] for s in emus if s["method"] == "scaleot") == [0.4, 0.6]


