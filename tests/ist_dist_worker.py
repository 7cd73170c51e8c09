"""Run by ``tests/test_ist_dist.py`` under ``accelerate launch`` (2 CPU processes, gloo DDP).

Each rank trains a tiny llama with ``scaleot finetune``'s loop and IST
(:func:`scaleot.data_owner.tuners.ist.make_controller`), once with rank 0's selection broadcast and
once with the shared seed alone (``sync_selection=False``), and once with scores from
gradient norms (``probe="grad"``, shared seed: the DDP-averaged gradients must give every
rank the same scores); per step it records the
selected blocks and the blocks whose LoRA got a gradient under DDP. Rank 0 writes every
rank's records to ``argv[1]`` (JSON).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from scaleot.data import TaskSplits
from scaleot.data_owner.finetune.config import FinetuneConfig
from scaleot.data_owner.finetune.loop import train
from scaleot.data_owner.finetune.trainable import apply_lora
from scaleot.data_owner.tuners.ist import ISTConfig, make_controller
from tests.ist_helpers import CharTokenizer, tiny_examples, tiny_model


def run(out_dir: Path, sync: bool, probe: str = "suppress") -> dict:
    splits = TaskSplits("tiny", tiny_examples(16), tiny_examples(4, 1), tiny_examples(4, 2))
    cfg = FinetuneConfig(method="ist", max_steps=4, epochs=1, batch_size=2, lr=1e-2, val_limit=4,
                         checkpoint_every=0)
    model = tiny_model("llama")
    peft_model = apply_lora(model, [0, 1, 2, 3], cfg)
    hooks = make_controller(peft_model, [0, 1, 2, 3], cfg, tokenizer=CharTokenizer(),
                            ist_config=ISTConfig(n_update=0.5, T=2, K=2, sync_selection=sync, probe=probe))
    steps: list[dict] = []
    before, after_backward = hooks.before_step, hooks.after_backward

    def record_before(step):
        steps.append({"selected": before(step)})
        return steps[-1]["selected"]

    def record_grads(step):
        ctl = hooks.controller
        steps[-1]["with_grad"] = [b for b, ps in zip(ctl.blocks, ctl.params, strict=True)
                                  if any(p.grad is not None for p in ps)]
        after_backward(step)

    hooks.before_step, hooks.after_backward = record_before, record_grads
    train(model, CharTokenizer(), splits, cfg, out_dir / f"run_{sync}_{probe}", step_controller=hooks, progress=False,
          device="cpu")
    weights = torch.cat([p.detach().flatten() for ps in hooks.controller.params for p in ps])
    return {"steps": steps, "scores": hooks.controller._scores.tolist(), "checksum": weights.double().sum().item(),
            "world": dist.get_world_size()}


def main() -> None:
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    mine = {str(sync): run(out.parent, sync) for sync in (True, False)}
    mine["grad"] = run(out.parent, False, probe="grad")
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)
    if dist.get_rank() == 0:
        out.write_text(json.dumps(gathered))


if __name__ == "__main__":
    main()
