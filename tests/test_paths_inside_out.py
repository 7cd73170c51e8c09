"""Issue 30: every path ``scaleot run`` builds stays inside ``--out``.

Names that become paths (emulator names, task folder names) pass one rule
(:func:`scaleot.outputs.check_name`), and :meth:`RunRecipe.path` is the only way the run
builds a path. The job below runs every step with the work stubbed out (each stub records
the folder it was given and writes a manifest there), with task names chosen to stress the
folder-name rule; the test then walks every path the run built and every file on disk.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from scaleot.errors import ScaleOTError
from scaleot.exchange.manifest import write_manifest
from scaleot.outputs import MAX_NAME_CHARS, check_name, path_inside
from scaleot.recipes.run import RunRecipe, load_run_config, task_dir

HOSTILE_TASKS = ["bigbench:a/b", "x/parity.jsonl", "gen:arithmetic?n=40&seed=1", "..jsonl", "...", ".", "/", "pkg:..",
                 "-x.jsonl", "a" * 300, "/abs/data/folder", "hf:owner/ds", "été.jsonl", "a\x00b", "..\\..\\x",
                 "gen:arithmetic?n=../../x&seed=..", "~/t.jsonl", " ", "\n"]


@pytest.mark.parametrize("task", HOSTILE_TASKS)
def test_task_dir_is_always_a_name(task):
    name = task_dir(task)
    assert check_name(name, "task") == name
    assert name not in (".", "..") and "/" not in name and "\\" not in name and len(name) <= MAX_NAME_CHARS


def _rows(n: int = 40) -> str:
    return "".join(json.dumps({"context": f"Is {i} even?\nA:", "choices": [" yes", " no"], "label": i % 2}) + "\n"
                   for i in range(n))


@pytest.fixture
def stubbed(monkeypatch):
    """Every step's work replaced by a stub that records its folder and leaves a manifest there
    (evaluate runs for real with the scoring stubbed: it writes only its result file)."""
    import scaleot.evaluation.offsite
    import scaleot.evaluation.tables
    import scaleot.model_owner.audit.report
    import scaleot.recipes.run_steps as run_steps
    import scaleot.report
    import scaleot.report.plots
    from scaleot.exchange.kinds import PLUGGED_MODEL as PLUGGED_KIND
    from scaleot.recipes.audit import AuditRecipe
    from scaleot.recipes.emulate import EmulateRecipe
    from scaleot.recipes.finetune import FinetuneRecipe
    from scaleot.recipes.plug import PlugRecipe

    written: list[Path] = []
    kinds = {EmulateRecipe: "emulator", FinetuneRecipe: "adapter", PlugRecipe: PLUGGED_KIND, AuditRecipe: "audit"}
    real_run_recipe = run_steps.run_recipe

    def made(folder, kind):
        folder = Path(folder)
        written.append(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_manifest(folder, kind)
        return folder

    def run_recipe(recipe):
        kind = kinds.get(type(recipe))
        if kind is None:
            return real_run_recipe(recipe)
        folder = made(recipe.out, kind)
        if kind == "audit":
            (folder / "audit.json").write_text("{}")
        return folder

    def report(out, *args):
        written.append(Path(out) / "report.md")
        (Path(out) / "report.md").write_text("# report\n")
        return Path(out) / "report.md"

    monkeypatch.setattr(run_steps, "run_recipe", run_recipe)
    monkeypatch.setattr(scaleot.evaluation.offsite, "evaluate_offsite", lambda *a, **kw: {"rows": {}})
    monkeypatch.setattr(scaleot.evaluation.offsite, "scorers_of", lambda rows: "fast")
    monkeypatch.setattr(scaleot.evaluation.tables, "offsite_table", lambda doc: "| table |")
    monkeypatch.setattr(scaleot.model_owner.audit.report, "audit_columns", lambda audits, docs: "audit")
    monkeypatch.setattr(scaleot.report.plots, "recovery_plot", lambda audits, docs, path: None)
    monkeypatch.setattr(scaleot.report, "write_report", report)
    return written


def test_every_path_the_run_builds_stays_inside_out(tmp_path, stubbed):
    data = tmp_path / "data"
    data.mkdir()
    files = [data / "..jsonl", data / "-x.jsonl", data / ("t" * 230 + ".jsonl"), data / "été.jsonl"]
    for f in files:
        f.write_text(_rows())
    tasks = ["gen:arithmetic?n=40&seed=3", "gen:arithmetic", *map(str, files)]
    cfg = {"tasks": tasks, "device": "cpu", "model": "smollm2-135m",
           "emulators": [{"name": "u", "method": "uniform"}, {"name": "u.2-x_", "method": "uniform"}],
           "finetune": {"max_steps": 1}, "audit": {}}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    out = tmp_path / "runs" / "job"
    recipe = RunRecipe(load_run_config(path), out, progress=False)
    recipe.run()

    root = out.resolve()
    built = recipe.built + stubbed
    assert {p.relative_to(out).parts[0] for p in built} >= {"steps.json", "emulators", "adapters", "ft", "plugged",
                                                          "eval", "audit", "report.md"}
    for p in built:
        assert p.resolve().is_relative_to(root), p
        assert all(part not in ("", ".", "..") for part in p.relative_to(out).parts), p
    # and on disk: nothing was written outside --out (the task files and the YAML were there before)
    outside = [Path(d) / f for d, _, fs in os.walk(tmp_path) for f in fs
               if not (Path(d) / f).resolve().is_relative_to(root)]
    assert sorted(outside) == sorted([*files, path])
    n = len(tasks) * 2  # one adapter per emulator and task, one plug-in each
    assert len(list((out / "adapters").glob("*/*"))) == n == len(list((out / "plugged").glob("*/*")))
    assert len(list((out / "ft").iterdir())) == len(tasks)
    steps = json.loads((out / "steps.json").read_text())
    for s in steps.values():
        if "folder" in s:
            assert (out / s["folder"]).resolve().is_relative_to(root)


@pytest.mark.parametrize("name", ["../../escape", "/abs", "..", ".", "a/b", ".h", "-x", "", "x" * 101])
def test_one_rule_refuses_names_that_leave(tmp_path, name):
    with pytest.raises(ScaleOTError, match="cannot name a folder"):
        check_name(name, "emulators: name")
    with pytest.raises(ScaleOTError):
        path_inside(tmp_path, "emulators", name)


def test_a_link_inside_out_cannot_lead_outside(tmp_path, stubbed):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "run"
    out.mkdir()
    (out / "emulators").symlink_to(elsewhere)
    cfg = {"tasks": ["gen:arithmetic"], "model": "smollm2-135m", "emulators": [{"name": "u", "method": "uniform"}]}
    with pytest.raises(ScaleOTError, match="leads outside"):
        RunRecipe(cfg, out, progress=False).run()
    assert list(elsewhere.iterdir()) == []


def test_tasks_sharing_a_folder_name_are_refused(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for d in (a, b):
        (d / "same.jsonl").write_text(_rows())
    cfg = {"tasks": [str(a / "same.jsonl"), str(b / "same.jsonl")], "emulators": [{"name": "u", "method": "uniform"}]}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ScaleOTError, match="would share the folder 'same'"):
        load_run_config(path)
    with pytest.raises(ScaleOTError, match="would share the folder"):
        RunRecipe(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
