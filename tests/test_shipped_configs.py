"""The run YAMLs shipped in configs/ are valid: `make demo` and the README commands use them."""

from pathlib import Path

import pytest

from scaleot.recipes.run import load_run_config

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


def test_configs_are_shipped():
    assert {p.name for p in CONFIGS} >= {"default.yaml", "quick.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_loads(path):
    cfg = load_run_config(path)
    assert cfg["tasks"], f"{path.name} names no task"
    assert cfg["emulators"], f"{path.name} builds no emulator"


def test_demo_shows_the_default_emulator():
    """The demo runs the default job's ScaleOT emulator (same alpha and beta), cut to one task."""
    quick, default = (load_run_config(CONFIGS[0].parent / n) for n in ("quick.yaml", "default.yaml"))
    pick = {k: v for k, v in default["emulators"][0].items() if k != "name"}
    assert any({k: v for k, v in e.items() if k != "name"} == pick for e in quick["emulators"])
    assert set(quick["tasks"]) <= set(default["tasks"])


def test_audit_defaults_to_the_default_jobs_tasks():
    """`scaleot audit` measures the capability gap on the tasks the default job tunes on, and
    `scaleot fetch` prepares those tasks."""
    from scaleot.data import DEFAULT_TASKS as FETCHED
    from scaleot.model_owner.audit.config import DEFAULT_TASKS

    default = load_run_config(CONFIGS[0].parent / "default.yaml")
    assert DEFAULT_TASKS.split(",") == default["tasks"]
    assert list(FETCHED) == default["tasks"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_need_no_bigbench(path):
    """Defaults run anywhere: no shipped config names the optional BIG-bench source."""
    assert "bigbench" not in path.read_text()
    assert all(t.split(":")[0] in ("gen", "pkg") for t in load_run_config(path)["tasks"])
