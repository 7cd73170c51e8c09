"""IST under real data parallelism: ``accelerate launch`` with 2 CPU processes (gloo DDP).

The product loop (``scaleot finetune``'s :func:`scaleot.data_owner.finetune.loop.train`) wraps the
model in DDP; IST leaves the unselected layers out of each step's graph, which DDP must
tolerate (``find_unused_parameters``) without writing gradients into them. Each rank
trains on its own share of the batch; every rank must select the same layers at every
step and end with the same scores and weights, with rank 0's selection broadcast (default),
with the shared seed alone (``sync_selection=False``), and with scores from the DDP-averaged
gradient norms (``probe="grad"``). One launch runs both variants
(process start-up dominates the cost of this test).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_ranks_select_the_same_layers_under_accelerate_launch(tmp_path):
    out = tmp_path / "ranks.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), str(ROOT / "tests" / "ist_dist_worker.py"), str(out)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    both = json.loads(out.read_text())
    for sync in ("True", "False", "grad"):  # broadcast selection / shared seed + all-reduced probe losses / grad probe
        r0, r1 = both[0][sync], both[1][sync]
        assert r0["world"] == 2
        sel0 = [s["selected"] for s in r0["steps"]]
        assert sel0 == [s["selected"] for s in r1["steps"]] and len(sel0) == 4
        assert len({tuple(s) for s in sel0}) > 1  # the selection does change
        for rec in r0["steps"] + r1["steps"]:  # DDP left the unselected layers without gradients
            assert rec["with_grad"] == rec["selected"]
        assert r0["scores"] == r1["scores"] and any(s != 0 for s in r0["scores"])
        assert r0["checksum"] == r1["checksum"]
