"""bench/suite.py's checks of itself (``pytest bench``)."""

from __future__ import annotations

import json

import pytest


def test_a_configuration_runs_on_the_chosen_suite_only(tmp_path, monkeypatch):
    """Without suite.json (and without --tasks) a configuration is refused before any model
    loads: it used to fall back to every built-in task, three times the work, silently."""
    import bench.suite as suite

    monkeypatch.setattr(suite, "SuiteLab", lambda args: pytest.fail("no model may load"))
    monkeypatch.setattr("sys.argv", ["suite", "--out", str(tmp_path), "--config", '{"method": "drop"}'])
    with pytest.raises(SystemExit, match="suite.json is missing"):
        suite.main()
    ran = []

    class Lab:
        def __init__(self, args):
            pass

        def do(self, spec):
            ran.append(spec["task"])

    monkeypatch.setattr(suite, "SuiteLab", Lab)
    (tmp_path / "suite.json").write_text(json.dumps({"suite": ["gen:letters", "pkg:rhyme"]}))
    suite.main()
    assert sorted(set(ran)) == ["gen:letters", "pkg:rhyme"]


def test_versus_pairs_every_configuration_against_the_base_per_example(tmp_path):
    """Two tasks, two configurations: the pooled difference is the mean of the per-task paired
    differences, by the library's paired_difference."""
    import bench.suite as suite
    from bench.transfer import emu, tune
    from scaleot.evaluation.selection import paired_difference

    (tmp_path / "records").mkdir()
    answers = {("drop", "a"): [1, 1, 0, 0], ("drop", "b"): [1, 0, 1, 0],
               ("uniform", "a"): [1, 1, 1, 0], ("uniform", "b"): [0, 0, 1, 0]}
    for (method, task), correct in answers.items():
        spec = {"row": "offsite", **suite.base(task, "dev"), **emu(method, alpha=0.5), **tune(**suite.BUDGET)}
        rec = {"spec": spec, **{k: {"acc": sum(correct) / 4, "correct": correct} for k in ("plug_in", "emu_ft", "emu_zs")}}
        (tmp_path / "records" / f"{method}-{task}.json").write_text(json.dumps(rec))
    lines = suite.versus(tmp_path, "dev", ["a", "b"], {"method": "drop", "alpha": 0.5})
    (row,) = [line for line in lines if '"uniform"' in line]
    da = paired_difference(answers[("uniform", "a")], answers[("drop", "a")])
    db = paired_difference(answers[("uniform", "b")], answers[("drop", "b")])
    mean, se = (da[0] + db[0]) / 2, (da[1] ** 2 + db[1] ** 2) ** 0.5 / 2
    assert row.split(" | ")[1] == f"{mean:+.1f} ± {se:.1f}"
    with pytest.raises(SystemExit, match="no complete dev configuration"):
        suite.versus(tmp_path, "dev", ["a", "b"], {"method": "crash"})
