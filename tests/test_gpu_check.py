"""bench/gpu_check.sh cannot rot: its CPU run (``--device cpu --tiny``) works end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_runs_on_cpu_tiny(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=os.environ.get("PYTHON", sys.executable))
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--device", "cpu", "--tiny", "--out",
                           str(tmp_path), "--tests-k", "bundle or stage1"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    t = result["throughput"]
    assert t["ft_tokens_per_s"] > 0 and t["emulator_tokens_per_s"] > 0 and t["flop_limit"] > 1
    assert set(result["method_memory"]) >= {"full_seconds", "lora_seconds", "ist_seconds"}
    assert result["stage1_step"]["harmonizer_step_s"] > 0
    assert "passed" in (tmp_path / "pytest_gpu.txt").read_text()  # the gpu tests ran (on the CPU)
