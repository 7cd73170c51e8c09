"""``bench/offsite_matrix.py`` end to end on a tiny model and task: every emulator, the sweep, the summaries
(bench checks itself here, beside the script: the library's tests never import bench)."""

from __future__ import annotations

import copy
import json

import pytest
from tests.finetune_helpers import one_thread, tiny_job, tiny_model_dir, tiny_task  # noqa: F401

from bench import offsite_matrix as om


def _tiny_scale(model_dir, task) -> dict:
    return {
        **tiny_job(model_dir, task),
        "finetune": {"method": "full", "epochs": 1, "n_train": 24, "n_val": 8, "n_test": 16,
                     "batch_size": 8, "lr": 1e-3},
        "ft": {"lr": 1e-4},
        "evaluate": {"batch_size": 16},
        "matrix": {"n_bottom": 1, "n_top": 1, "alpha": 0.5, "alphas": [0.25, 0.5], "betas": [0.0, 0.5],
                   "kd_steps": 2, "reference": True},
    }


def test_matrix_config_names_every_emulator_once():
    preset = copy.deepcopy(om.SCALES["quick"])
    cfg = om.matrix_config(om.SCALES["quick"])
    names = [e["name"] for e in cfg["emulators"]]
    assert names[0] == "scaleot" and len(names) == len(set(names))
    assert set(om.MATRIX_METHODS) | {om.REFERENCE} <= set(names)
    sweep = {(e["alpha"], e["beta"]) for e in cfg["emulators"] if e["method"] == "scaleot"}
    assert sweep == {(a, b) for a in (0.25, 0.5, 0.75) for b in (0.0, 0.3, 0.6)}  # 9 points, (0.5, 0) shared
    sizes = {e["alpha"] for e in cfg["emulators"] if e["name"] in om.MATRIX_METHODS}
    assert sizes == {0.5} and all(e["beta"] == 0.0 for e in cfg["emulators"] if e["name"] in om.MATRIX_METHODS)
    assert cfg["importance"] == preset["importance"] and "matrix" not in cfg
    reused = om.matrix_config(om.SCALES["quick"], importance="/x", model="/m", tasks=["t.jsonl"])
    assert reused["importance"] == {"from": "/x"} and reused["model"] == "/m" and reused["tasks"] == ["t.jsonl"]
    assert om.SCALES["quick"] == preset  # the preset itself is not modified


@pytest.mark.parametrize("scale", sorted(om.SCALES))
def test_every_scale_is_a_valid_run_config(scale, tmp_path):
    """Each preset passes the same checks as `scaleot run` (unknown options would fail here)."""
    import yaml

    from scaleot.data_owner.finetune import FinetuneConfig
    from scaleot.model_owner.emulator import EmulatorConfig
    from scaleot.recipes.run import load_run_config

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(om.matrix_config(om.SCALES[scale], importance="/imp")))
    cfg = load_run_config(path)
    FinetuneConfig(**cfg["finetune"])
    FinetuneConfig(**{**cfg["finetune"], **cfg["ft"]})
    for e in cfg["emulators"]:
        EmulatorConfig(**{k: v for k, v in e.items() if k != "name"}, importance="/imp")


def test_claims_are_checked_on_the_numbers():
    def rec(method, plug, emu, alpha=0.5, beta=0.0, build=10.0):
        row = lambda a: {"acc": a, "stderr": 0.01}  # noqa: E731
        return {"method": method, "alpha": alpha, "beta": beta, "build_s": build, "stage1_s": 5.0, "stage2_s": 5.0,
                "rows": {"FT": row(0.45), "Plug-in": row(plug), "Emu FT": row(emu)},
                "delta": {"acc": plug - emu, "stderr": 0.014}}

    m = {"alphas": [0.5], "betas": [0.0, 0.3], "kd_steps": 9}
    records = {"scaleot": rec("scaleot", 0.445, 0.40), "uniform": rec("uniform", 0.43, 0.38),
               "crash": rec("crash", 0.46, 0.39), "uniform-kd": rec("uniform-kd", 0.44, 0.42, build=100.0),
               "s-b0.3": rec("scaleot", 0.42, 0.36, beta=0.3)}
    claims = {c["claim"]: c["holds"] for c in om.check_claims(records, {}, m)}
    assert claims["ScaleOT plug-in >= FT - 1 point (task average)"] is True
    assert claims["ScaleOT plug-in >= uniform plug-in at the same size"] is True
    assert claims["ScaleOT plug-in >= crash plug-in at the same size"] is False
    assert claims["ScaleOT Delta > 0 beyond one standard error"] is True
    assert claims["the sweep's Delta grows as alpha or beta grows"] is True  # 4.5 -> 6.0
    assert claims["plug-in within 1 point of FT for at least one setting with beta > 0"] is False  # 42 < 44
    assert claims["ScaleOT build cost (stage 1 + 2) < uniform-kd's, at equal or better plug-in"] is True
    records["s-b0.3"]["delta"]["acc"] = 0.01
    assert {c["claim"]: c["holds"] for c in om.check_claims(records, {}, m)}[
        "the sweep's Delta grows as alpha or beta grows"] is False


def test_matrix_runs_end_to_end_and_continues(tmp_path, one_thread):  # noqa: F811
    model_dir, task = tiny_model_dir(tmp_path), tiny_task(tmp_path)
    scale, out = _tiny_scale(model_dir, task), tmp_path / "matrix"
    assert om.main(["--out", str(out), "--report-only"]) == 2  # nothing there yet: one-line error
    doc = om.run_matrix(copy.deepcopy(scale), out, progress=False, command="test")
    names = ["scaleot", "uniform", "uniform-kd", "crash", "drop", om.REFERENCE,
             om.sweep_name(0.25, 0.0), om.sweep_name(0.25, 0.5), om.sweep_name(0.5, 0.5)]
    assert list(doc["records"]) == names
    for name in names:
        rows = doc["records"][name]["rows"]
        assert set(rows) == {"Full ZS", "Emu ZS", "FT", "Emu FT", "Plug-in"}, name
        assert doc["records"][name]["delta"]["acc"] == pytest.approx(rows["Plug-in"]["acc"] - rows["Emu FT"]["acc"])
    recs = doc["records"]
    # same size for the matrix methods (reference keeps every middle block), SRC makes beta > 0 smaller
    assert len({recs[n]["params"] for n in ("uniform", "crash", "drop")}) == 1
    assert recs[om.REFERENCE]["params_ratio"] == 1.0
    assert recs[om.sweep_name(0.5, 0.5)]["params"] < recs["scaleot"]["params"]
    # the FT and Full ZS rows were computed once and shared by every emulator
    assert len({json.dumps(recs[n]["rows"]["FT"]) for n in names}) == 1
    # stage 1 is charged to scaleot and drop only
    assert recs["scaleot"]["stage1_s"] > 0 and recs["uniform"]["stage1_s"] == 0
    assert recs["scaleot"]["build_s"] >= recs["scaleot"]["stage1_s"]
    for f in ("matrix.md", "sweep.md", "claims.md", "matrix.json", "matrix.png", "report.md", "matrix_config.yaml"):
        assert (out / f).is_file(), f
    assert "uniform-kd" in (out / "matrix.md").read_text()
    assert om.sweep_name(0.25, 0.5) in (out / "sweep.md").read_text()
    assert len(doc["claims"]) == 7 and all(c["holds"] in (True, False) for c in doc["claims"])
    assert "paired standard error of the difference" in doc["claims"][1]["evidence"]  # scaleot vs uniform
    assert len(recs["uniform"]["correct"][str(task)]["Plug-in"]) == 16
    # a second call redoes no step; --report-only rewrites the summaries from disk
    steps = (out / "steps.json").read_text()
    om.run_matrix(copy.deepcopy(scale), out, progress=False)
    assert (out / "steps.json").read_text() == steps
    (out / "claims.md").unlink()
    assert om.main(["--out", str(out), "--report-only"]) == 0
    assert (out / "claims.md").is_file()
    # the investigation tool: Emu ZS and perplexity of the full model and each ScaleOT emulator
    from bench import emulator_quality as eq

    text = tmp_path / "text.txt"
    text.write_text("\n\n".join(f"Paragraph {i}: " + "the quick brown fox jumps over the lazy dog. " * 30
                                for i in range(8)))
    q = tmp_path / "quality.json"
    assert eq.main(["--model", str(model_dir), "--importance", f"r={out / 'importance'}", "--alpha", "0.25",
                    "--alpha", "0.5", "--task", str(task), "--n-test", "16", "--ppl-corpus", str(text),
                    "--ppl-blocks", "2", "--out", str(q)]) == 0
    rows = json.loads(q.read_text())["rows"]
    assert [(r["label"], r["alpha"]) for r in rows] == [("full model", 0.0), ("r", 0.25), ("r", 0.5)]
    assert rows[2]["params"] < rows[1]["params"] < rows[0]["params"]
    assert all(r["perplexity"][str(text)] > 1 and 0 <= r["acc"][str(task)]["acc"] <= 1 for r in rows)
    assert rows[1]["stage1"]["steps"] == 3
    assert eq.main(["--importance", "no-equals-sign", "--alpha", "0.5", "--task", str(task), "--out", str(q)]) == 2


def test_default_scale_is_the_shipped_default_config():
    """`--scale default` reruns the matrix at configs/default.yaml's settings, read from the file:
    every method at its ScaleOT emulator's size (same alpha and beta), alpha swept at that beta."""
    import yaml

    shipped = yaml.safe_load(om.DEFAULT_CONFIG.read_text())
    ours = next(e for e in shipped["emulators"] if e["method"] == "scaleot")
    scale = om.SCALES["default"]
    for k in ("tasks", "importance", "finetune", "ft", "evaluate"):
        assert scale[k] == shipped[k]
    cfg = om.matrix_config(scale)
    by_name = {e["name"]: e for e in cfg["emulators"]}
    for m in om.MATRIX_METHODS:
        assert (by_name[m]["alpha"], by_name[m]["beta"]) == (ours["alpha"], ours["beta"])
    sweep = sorted(e["alpha"] for e in cfg["emulators"] if e["method"] == "scaleot")
    assert ours["alpha"] in sweep and len(sweep) >= 3
    assert all(e["beta"] == ours["beta"] for e in cfg["emulators"] if e["method"] == "scaleot")
