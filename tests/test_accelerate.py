"""``accelerate launch`` with the shipped configs: data-parallel finetune on 2 CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.finetune_helpers import tiny_world  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "accelerate"


def test_shipped_accelerate_configs_parse():
    for name, kind in (("ddp", "MULTI_GPU"), ("ddp_cpu", "MULTI_GPU"), ("ddp_multinode", "MULTI_GPU"),
                       ("fsdp", "FSDP")):
        cfg = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
        assert cfg["distributed_type"] == kind and cfg["mixed_precision"] == "no"


@pytest.mark.slow
def test_finetune_data_parallel_on_two_cpu_processes(tiny_world, tmp_path):  # noqa: F811
    root, model_dir, task, emu = tiny_world
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / "ddp_cpu.yaml"),
           "--num_processes", "2", "-m", "scaleot.cli", "finetune", "--emulator", str(emu), "--task", str(task),
           "--method", "full", "--steps", "2", "--batch-size", "4", "--n-train", "16", "--n-val", "8",
           "--n-test", "8", "--device", "cpu", "--out", str(tmp_path / "ad")]
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}:{ROOT}", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((tmp_path / "ad" / "adapter.json").read_text())
    assert '"processes": 2' in json.dumps(info), "the adapter does not record 2 data-parallel processes"
