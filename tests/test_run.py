"""``scaleot run`` end to end on a tiny model and a tiny task: every file, the report, skip-if-done."""

from __future__ import annotations

import json

import pytest
import yaml

from scaleot.cli import main as cli_main
from scaleot.errors import ScaleOTError
from scaleot.recipes.run import load_run_config, run_job
from tests.finetune_helpers import one_thread, tiny_job, tiny_model_dir, tiny_task  # noqa: F401


def _config(root, model_dir, task) -> dict:
    return {
        **tiny_job(model_dir, task),
        "emulators": [{"name": "scaleot", "method": "scaleot", "n_bottom": 1, "n_top": 1, "alpha": 0.5,
                       "beta": 0.25},
                      {"name": "uniform", "method": "uniform", "n_bottom": 1, "n_top": 1}],
        "finetune": {"method": "full", "epochs": 1, "n_train": 32, "n_val": 16, "n_test": 24,
                     "batch_size": 8, "lr": 1e-3},
        "ft": {"lr": 1e-4},
        "evaluate": {"batch_size": 16},
    }


def test_run_produces_every_file_and_skips_done_steps(tmp_path, one_thread, capsys):  # noqa: F811
    model_dir, task = tiny_model_dir(tmp_path), tiny_task(tmp_path)
    cfg_path = tmp_path / "job.yaml"
    cfg_path.write_text(yaml.safe_dump(_config(tmp_path, model_dir, task)))
    out = tmp_path / "run"
    assert cli_main(["run", str(cfg_path), "--out", str(out)]) == 0
    bars = capsys.readouterr().err  # every long step shows its bar, scoring included
    for label in ("importance", "finetune", "evaluate", "Emu ZS", "Plug-in"):
        assert label in bars, label
    t = "parity"
    expected = [
        "importance/importance.json", "importance/harmonizers.safetensors", "importance/importance.png",
        "importance/manifest.json", "emulators/scaleot/emulator.json", "emulators/scaleot/model.safetensors",
        "emulators/uniform/manifest.json", f"adapters/scaleot/{t}/adapter.json",
        f"adapters/scaleot/{t}/adapter.safetensors", f"adapters/uniform/{t}/manifest.json",
        f"ft/{t}/adapter.json", f"plugged/scaleot/{t}/config.json", f"plugged/scaleot/{t}/model.safetensors",
        f"plugged/uniform/{t}/model.safetensors",
        "eval/scaleot.json", "eval/scaleot.md", "eval/uniform.json", "report.md", "privacy_utility.png",
        "steps.json",
    ]
    missing = [p for p in expected if not (out / p).is_file()]
    assert not missing, missing
    doc = json.loads((out / "eval" / "scaleot.json").read_text())
    rows = doc["rows"][str(task)]
    assert set(rows) == {"Full ZS", "Emu ZS", "FT", "Emu FT", "Plug-in"}
    assert rows["Plug-in"]["n"] == 24
    assert doc["delta"]["average"]["acc"] == pytest.approx(rows["Plug-in"]["acc"] - rows["Emu FT"]["acc"])
    assert len(rows["Plug-in"]["correct"]) == len(rows["Emu FT"]["correct"]) == 24
    assert doc["delta"]["average"]["paired"] is True  # same test examples: paired standard error
    uni = json.loads((out / "eval" / "uniform.json").read_text())["rows"][str(task)]
    assert uni["Full ZS"] == rows["Full ZS"] and uni["FT"] == rows["FT"]  # scored once, reused
    meta = json.loads((out / "eval" / "scaleot.json").read_text())["meta"]
    assert meta["precision"] in ("fp32", "bf16 autocast") and meta["machine"]["cpu"]  # recorded beside every result
    report = (out / "report.md").read_text()
    for needle in ("Five rows", "Delta", "standard error (paired", "never compare numbers of different precision", "importance.png", "privacy_utility.png", "Costs", "published"):
        assert needle in report, needle
    steps = json.loads((out / "steps.json").read_text())
    assert {"importance", "emulate/scaleot", "finetune/uniform/parity", "ft/parity", "plug/scaleot/parity", "plug/uniform/parity",
            "evaluate/scaleot"} <= set(steps)
    # a second run redoes nothing; a changed finetune option redoes only what depends on it
    kept = [p for p in expected if p not in ("report.md", "privacy_utility.png")]  # the report is redrawn
    stamps = {p: (out / p).stat().st_mtime_ns for p in kept}
    run_job(cfg_path, out, progress=False)
    assert stamps == {p: (out / p).stat().st_mtime_ns for p in kept}
    cfg = _config(tmp_path, model_dir, task)
    cfg["ft"] = {"lr": 2e-4}
    run_job(cfg, out, progress=False)
    assert (out / "importance/manifest.json").stat().st_mtime_ns == stamps["importance/manifest.json"]
    assert (out / "adapters/scaleot/parity/adapter.json").stat().st_mtime_ns == stamps[
        "adapters/scaleot/parity/adapter.json"]
    assert (out / "ft/parity/adapter.json").stat().st_mtime_ns != stamps["ft/parity/adapter.json"]


def test_bad_run_configs_fail_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"tasks": [], "emulators": [{"method": "uniform"}], "finetune": {"lrr": 1},
                                   "extra": 1}))
    with pytest.raises(ScaleOTError) as e:
        load_run_config(bad)
    msg = str(e.value)
    assert "tasks" in msg and "emulators" in msg and "lrr" in msg and "extra" in msg
    assert cli_main(["run", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"scaleot: error: config not found: {tmp_path / 'nope.yaml'}"]


def test_run_reuses_a_finished_stage_1(tmp_path):
    """`importance: {from: DIR}` reuses a verified stage-1 folder instead of recomputing it."""
    from scaleot.errors import ScaleOTError
    from scaleot.exchange.manifest import write_manifest
    from scaleot.recipes.run import RunRecipe

    stage1 = tmp_path / "imp"
    stage1.mkdir()
    (stage1 / "importance.json").write_text("{}")
    write_manifest(stage1, "importance")
    cfg = {"tasks": ["t.jsonl"], "emulators": [{"name": "s", "method": "scaleot"}],
           "importance": {"from": str(stage1)}}
    runner = RunRecipe(cfg, tmp_path / "run", progress=False)
    assert runner.run_step("importance") == {(): stage1}
    assert runner.steps["importance"]["reused"] == str(stage1)
    (stage1 / "importance.json").write_text('{"tampered": 1}')
    with pytest.raises(ScaleOTError, match="hash check failed"):
        RunRecipe(cfg, tmp_path / "run2", progress=False).run_step("importance")


def test_run_with_an_audit_section_adds_the_columns_and_the_recovery_view(tmp_path, one_thread):  # noqa: F811
    model_dir, task = tiny_model_dir(tmp_path), tiny_task(tmp_path)
    text = tmp_path / "public.txt"
    text.write_text("\n\n".join(f"the {w} is red and the {w} is blue" for w in "abcdefghijklmnop" * 4))
    cfg = _config(tmp_path, model_dir, task)
    cfg["emulators"] = cfg["emulators"][1:]  # uniform only: no stage 1
    cfg.pop("importance")
    cfg["audit"] = {"budgets": "64", "ppl_corpus": str(text), "attack_corpus": str(text), "ppl_blocks": 2,
                    "block_size": 16, "n_test": 8, "max_recovery": None, "autocast": "none",
                    "transfer_tasks": "gen:parity"}  # the real transfer check, end to end, on one proxy
    out = tmp_path / "run"
    report = run_job(cfg, out, progress=False)
    audit = json.loads((out / "audit" / "uniform" / "audit.json").read_text())
    proxy = audit["transfer"]["tasks"]["gen:parity"]
    assert proxy["n"] == 300 and {"emu_ft", "plug_in", "reference", "ceiling_ratio"} <= set(proxy)
    assert "## Transfer check" in (out / "audit" / "uniform" / "report.md").read_text()
    assert (out / "privacy_recovery.png").read_bytes()[:4] == b"\x89PNG"
    text = report.read_text()
    assert "## Audit: what each emulator gives away" in text and "![privacy-recovery](privacy_recovery.png)" in text
