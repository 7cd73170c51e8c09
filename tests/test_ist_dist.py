"""IST under data parallelism: two CPU processes (gloo) select the same layers every step.

Each rank trains on its own data and probes with its own held-out batch (as data
parallel ranks do); gradients are all-reduced by hand. Every rank must select the same
layers at every step and end with the same scores and weights, with rank 0's selection
broadcast (default) and also with the shared seed alone (``sync_selection=False``).
"""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

STEPS = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(rank: int, world: int, sync: bool) -> dict:
    from bench.ist_loop import SparseTuner, TrainOptions

    from scaleot.tuners.ist import ISTConfig, lora_config_for
    from tests.ist_helpers import CharTokenizer, tiny_examples, tiny_model

    model = tiny_model("llama")
    tuner = SparseTuner(model, CharTokenizer(), tiny_examples(16, seed=10 + rank), tiny_examples(4, seed=20 + rank),
                        ISTConfig(n_update=0.5, T=2, sync_selection=sync), lora_config_for(model),
                        TrainOptions(batch_size=4, lr=1e-2, probe_batch_size=4))
    ctl, selections = tuner.controller, []
    for step in range(1, STEPS + 1):
        selections.append(ctl.before_step(step))
        tuner.loss(tuner.model, tuner.batch(step)).backward()
        for p in tuner.trainable:
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= world
        tuner.optimizer.step()
        tuner.optimizer.zero_grad(set_to_none=True)
        ctl.after_step(step)
        ctl.maybe_update_importance(step, tuner.model, tuner.probe_batch(step), tuner.loss)
    weights = torch.cat([p.detach().flatten() for p in tuner.trainable])
    return {"selections": selections, "scores": ctl._scores.tolist(), "checksum": weights.double().sum().item()}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        mine = {str(sync): _run(rank, world, sync) for sync in (True, False)}
        gathered = [None] * world
        dist.all_gather_object(gathered, mine)
        if rank == 0:
            with open(out, "w") as f:
                json.dump(gathered, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_select_the_same_layers(tmp_path):
    out = str(tmp_path / "ranks.json")
    mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    with open(out) as f:
        both = json.load(f)
    for sync in ("True", "False"):  # broadcast selection / shared seed + all-reduced probe losses
        r0, r1 = both[0][sync], both[1][sync]
        _check(r0, r1)


def _check(r0: dict, r1: dict) -> None:
    assert r0["selections"] == r1["selections"]
    assert len({tuple(s) for s in r0["selections"]}) > 1  # the selection does change
    assert r0["scores"] == r1["scores"] and any(s != 0 for s in r0["scores"])
    assert r0["checksum"] == r1["checksum"]
