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


def test_pick_needs_both_privacy_conditions_and_reads_dev_only(tmp_path):
    """Three dev configurations on one task: the one that transfers most keeps no Delta, the one
    with a large Delta keeps the zero-shot gap too; only that one is eligible. A test record of
    a better configuration never reaches the ranking."""
    import bench.suite as suite
    from bench.transfer import emu, tune

    (tmp_path / "records").mkdir()

    def write(name, split, row, seeds=(0, 1, 2), **fields):  # an emulator at every seed PICK needs
        spec = {"row": row, **suite.base("a", split)}
        cfg = fields.pop("cfg", {})
        for seed in seeds if row == "offsite" and cfg["method"] != "reference" else (0,):
            if row == "offsite":
                spec.update(**cfg, **tune(**suite.BUDGET, seed=seed))
            rec = {"spec": dict(spec), **{k: {"acc": v, "correct": [1] * round(100 * v) + [0] * (100 - round(100 * v))}
                                          for k, v in fields.items()}}
            (tmp_path / "records" / f"{name}-{split}-{seed}.json").write_text(json.dumps(rec))

    for split in ("dev", "test"):
        write("zs", split, "zs", full_zs=0.50)
        write("ref", split, "offsite", cfg=emu("reference", alpha=0.0), plug_in=0.90, emu_ft=0.90, emu_zs=0.50)
    write("leaky", "dev", "offsite", cfg=emu("drop", alpha=0.4), emu_zs=0.40, emu_ft=0.80, plug_in=0.70)  # Delta -10
    write("private", "dev", "offsite", cfg=emu("drop", alpha=0.6), emu_zs=0.30, emu_ft=0.50, plug_in=0.60)  # +10
    write("close", "dev", "offsite", cfg=emu("drop", alpha=0.7), emu_zs=0.47, emu_ft=0.40, plug_in=0.55)  # ZS gap 3
    write("best", "test", "offsite", cfg=emu("drop", alpha=0.3), emu_zs=0.20, emu_ft=0.20, plug_in=0.90)
    # one lucky seed: every condition met, but tuned at one seed only
    write("lucky", "dev", "offsite", seeds=(0,), cfg=emu("drop", alpha=0.65), emu_zs=0.3, emu_ft=0.5, plug_in=0.8)
    # a shorter budget for the data owner: more Delta from the same emulator, never a pick
    spec = {"row": "offsite", **suite.base("a", "dev"), **emu("drop", alpha=0.6), **tune(lr=3e-4, steps=10)}
    rec = {"spec": spec, **{k: {"acc": v, "correct": [1] * round(100 * v) + [0] * (100 - round(100 * v))}
                            for k, v in (("emu_zs", 0.3), ("emu_ft", 0.4), ("plug_in", 0.8))}}
    (tmp_path / "records" / "short-dev.json").write_text(json.dumps(rec))
    doc = suite.pick(tmp_path, ["a"])
    eligible = [r["config"]["alpha"] for r in doc["ranking"] if r["eligible"]]
    assert eligible == [0.6]
    assert doc["ranking"][0]["config"]["alpha"] == 0.6
    assert doc["ranking"][0]["median_ceiling_ratio"] == pytest.approx(0.25)
    assert 0.3 not in [r["config"]["alpha"] for r in doc["ranking"]]
    assert doc["rule"]["min_pooled_delta"] == 3.0
    assert "fallback" not in doc
    # the third session's rule (no Delta condition) picks the leaky one
    assert [r["config"]["steps"] for r in doc["ranking"] if r["config"]["alpha"] == 0.6] == [25, 10]
    old = suite.pick(tmp_path, ["a"], rule={"max_emu_zs_minus_full_zs": -5.0, "default_tuning": True, "min_seeds": 3})
    assert old["ranking"][0]["config"]["alpha"] == 0.4
    # without the seed condition the lucky single seed wins
    one = suite.pick(tmp_path, ["a"], rule={k: v for k, v in suite.PICK.items() if k != "min_seeds"})
    assert one["ranking"][0]["config"]["alpha"] == 0.65
    # with no configuration keeping Delta, the pick falls back to that rule and says so
    assert [r["seeds"] for r in doc["ranking"] if r["config"]["alpha"] == 0.65] == [[0]]
    for seed in (0, 1, 2):
        (tmp_path / "records" / f"private-dev-{seed}.json").unlink()
    doc = suite.pick(tmp_path, ["a"])
    assert "fallback" in doc and doc["rule"] == suite.PICK_FALLBACK
    assert doc["ranking"][0]["config"]["alpha"] == 0.4


def test_halves_runs_are_diagnostics_not_configurations_or_references(tmp_path):
    """A ``"halves"`` rerun (extra scores) is neither a configuration for the pick nor the
    reference the ratios divide by; its table gives each half's gain over Full ZS."""
    import bench.suite as suite
    from bench.transfer import emu, tune

    (tmp_path / "records").mkdir()

    def write(name, spec, **scores):
        rec = {"spec": spec, **{k: {"acc": v, "correct": [1, 0]} for k, v in scores.items()}}
        (tmp_path / "records" / f"{name}.json").write_text(json.dumps(rec))

    write("zs", {"row": "zs", **suite.base("a", "dev")}, full_zs=0.5)
    plain = {"row": "offsite", **suite.base("a", "dev"), **tune(**suite.BUDGET)}
    write("ref", {**plain, **emu("reference")}, plug_in=0.9)
    write("ref-h", {**plain, **emu("reference"), "halves": True}, plug_in=0.1, plug_in_bottom=0.6, plug_in_top=0.7)
    write("drop", {**plain, **emu("drop")}, plug_in=0.7, emu_ft=0.6, emu_zs=0.3)
    write("drop-h", {**plain, **emu("drop"), "halves": True}, plug_in=0.7, emu_ft=0.6, emu_zs=0.3,
          plug_in_bottom=0.55, plug_in_top=0.65, emu_ft_bottom=0.5, emu_ft_top=0.4)
    sums = suite.summaries(tmp_path, "dev", ["a"])
    assert len(sums) == 1 and abs(next(iter(sums.values()))["median_ceiling_ratio"] - 0.5) < 1e-9
    (row,) = [line for line in suite.halves(tmp_path, "dev", ["a"]) if line.startswith("| a |")]
    assert row == "| a | +10.0 | +0.0 | -10.0 | +20.0 | +5.0 | +15.0 | -40.0 | +10.0 | +20.0 |"


def test_budget_choice_leaves_the_scored_task_out_of_the_choice(tmp_path):
    """Three tasks, two budgets: the budget chosen for each task is the best on the other two,
    whatever the task's own numbers say; the pooled line pairs it with the default budget."""
    import bench.suite as suite
    from bench.transfer import emu, tune

    (tmp_path / "records").mkdir()
    gains = {(3e-4, 25): {"a": 0.6, "b": 0.6, "c": 0.9}, (1e-3, 25): {"a": 0.9, "b": 0.7, "c": 0.5}}
    for t in "abc":
        zs = {"row": "zs", **suite.base(t, "dev")}
        (tmp_path / "records" / f"zs-{t}.json").write_text(json.dumps({"spec": zs, "full_zs": {"acc": 0.5, "correct": [1, 0]}}))
        for (lr, steps), g in gains.items():
            spec = {"row": "offsite", **suite.base(t, "dev"), **emu("drop", alpha=0.6), **tune(lr=lr, steps=steps)}
            rec = {"spec": spec, **{k: {"acc": g[t], "correct": [1, int(g[t] > 0.6)]} for k in ("plug_in", "emu_ft", "emu_zs")}}
            (tmp_path / "records" / f"{t}-{lr}.json").write_text(json.dumps(rec))
    lines = suite.budget_choice(tmp_path, "dev", list("abc"), {"method": "drop", "alpha": 0.6})
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1] for line in lines if line.startswith("| ") and "---" not in line}
    # a: b and c say 3e-4 (1.5 against 1.2); b: a and c say 3e-4 (1.5 against 1.4); c: a and b say 1e-3
    assert (rows["a"], rows["b"], rows["c"]) == ("(0.0003, 25)", "(0.0003, 25)", "(0.001, 25)")
    assert lines[-1].startswith("chosen − default, pooled over 3 tasks:")
    with pytest.raises(SystemExit, match="needs the default budget"):
        suite.budget_choice(tmp_path, "dev", list("abc"), {"method": "drop", "alpha": 0.5})


def test_pick_refuses_a_configuration_whose_plug_in_loses_to_zero_shot_on_a_task(tmp_path):
    """Two tasks: X transfers fully on one and falls 10 points below zero-shot on the other
    (median ratio 0.375), Y gains 10 on both (0.25). Issue 28's no-task-below condition makes Y
    the pick; without it X wins."""
    import bench.suite as suite
    from bench.transfer import emu, tune

    (tmp_path / "records").mkdir()

    def correct(v):
        return [1] * round(100 * v) + [0] * (100 - round(100 * v))

    for t in "ab":
        (tmp_path / "records" / f"zs-{t}.json").write_text(json.dumps(
            {"spec": {"row": "zs", **suite.base(t, "dev")}, "full_zs": {"acc": 0.5, "correct": correct(0.5)}}))
        ref = {"row": "offsite", **suite.base(t, "dev"), **emu("reference"), **tune(**suite.BUDGET)}
        (tmp_path / "records" / f"ref-{t}.json").write_text(json.dumps({"spec": ref, "plug_in": {"acc": 0.9}}))
        for name, alpha, plug in (("x", 0.6, 0.9 if t == "a" else 0.4), ("y", 0.7, 0.6)):
            for seed in (0, 1, 2):
                spec = {"row": "offsite", **suite.base(t, "dev"), **emu("drop", alpha=alpha), **tune(**suite.BUDGET, seed=seed)}
                rec = {"spec": spec, "plug_in": {"acc": plug, "correct": correct(plug)},
                       "emu_ft": {"acc": 0.2, "correct": correct(0.2)}, "emu_zs": {"acc": 0.2, "correct": correct(0.2)}}
                (tmp_path / "records" / f"{name}-{t}-{seed}.json").write_text(json.dumps(rec))
    assert suite.pick(tmp_path, ["a", "b"])["ranking"][0]["config"]["alpha"] == 0.7
    loose = {k: v for k, v in suite.PICK.items() if k != "no_task_below_zs"}
    assert suite.pick(tmp_path, ["a", "b"], rule=loose)["ranking"][0]["config"]["alpha"] == 0.6


def test_audited_emulators_join_the_frontier_at_their_suite_plug_in_gain(tmp_path):
    """An audit folder's finished audit becomes a third-panel point: privacy left after the
    attack's largest budget (Full ZS − attacked Emu ZS), at the suite's plug-in gain of the same
    method and alpha; an audited emulator the suite never ran is left out."""
    import bench.suite as suite
    from bench.transfer import emu, tune

    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "zs.json").write_text(json.dumps(
        {"spec": {"row": "zs", **suite.base("a", "dev")}, "full_zs": {"acc": 0.5, "correct": [1, 0, 1, 0]}}))
    spec = {"row": "offsite", **suite.base("a", "dev"), **emu("drop", alpha=0.6), **tune(**suite.BUDGET)}
    (tmp_path / "records" / "drop.json").write_text(json.dumps(
        {"spec": spec, **{k: {"acc": 0.75, "correct": [1, 1, 1, 0]} for k in ("plug_in", "emu_ft", "emu_zs")}}))
    for method, alpha in (("drop", 0.6), ("uniform", 0.5)):
        folder = tmp_path / "audits" / f"audit-{method}"
        folder.mkdir(parents=True)
        (folder / "audit.json").write_text(json.dumps({
            "emulator": {"options": {"method": method, "alpha": alpha}}, "full": {"acc": 0.5, "acc_stderr": 0.03},
            "emulator_zs": {"acc": 0.3}, "attack": [{"tokens": 1000, "acc": 0.35, "acc_stderr": 0.04},
                                                    {"tokens": 2000, "acc": 0.4, "acc_stderr": 0.04}]}))
    points = suite.frontier(tmp_path, "dev", ["a"], tmp_path / "f.png", audits=[tmp_path / "audits"])
    (a,) = [p["audit"] for p in points if "audit" in p]
    assert (a["method"], a["tokens"]) == ("drop", 2000)
    assert a["kept"] == pytest.approx((10.0, 5.0)) and a["untuned"] == pytest.approx(20.0)
    assert a["gain"][0] == pytest.approx(25.0) and (tmp_path / "f.png").stat().st_size > 0
