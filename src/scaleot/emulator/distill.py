"""OT with distillation (``uniform-kd``): train the uniform emulator to match the full model.

METHOD.md section 5. On generic text, only the kept middle blocks of the emulator train;
the adapter blocks, embeddings and head stay frozen. The loss at each step is::

    NMSE(h_emu, h_full) + lm_weight · CE(emulator logits, next token)
    NMSE(a, b) = ||a - b||^2 / ||b||^2

where ``h`` is the hidden state at the emulator boundary (the output of the last middle
position = the input of the top adapter), ``[B, T, d]``. Progress bar, JSONL and
TensorBoard logs, and pickle-free checkpoints (:mod:`scaleot.checkpoint`) every
``kd_checkpoint_every`` steps; ``resume=True`` continues from the newest one, restoring
weights, optimizer and RNG. Batches are a function of the step, so a resumed run sees the
same data as an uninterrupted one.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from scaleot.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from scaleot.data.text import corpus_splits
from scaleot.errors import ScaleOTError
from scaleot.models.arch import get_blocks


def _trainable(student: nn.Module, layer_map: list[dict]) -> dict[str, nn.Parameter]:
    blocks = get_blocks(student)
    kept = {e["position"] for e in layer_map if e["kind"] == "kept"}
    out = {}
    for pos in sorted(kept):
        for name, p in blocks[pos].named_parameters():
            out[f"{pos}.{name}"] = p
    return out


def nmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``||pred - target||^2 / ||target||^2`` over the whole batch."""
    return (pred - target).pow(2).sum() / target.pow(2).sum().clamp_min(1e-12)


def distill(student: nn.Module, teacher: nn.Module, tokenizer, layer_map: list[dict], config) -> dict:
    """Distil ``student`` (the emulator, in place) towards ``teacher`` (the full model).

    Returns:
        ``{"steps", "seconds", "run_dir", "first": {...}, "final": {...}}`` losses summary.
    """
    run_dir = Path(config.kd_run_dir) if config.kd_run_dir else Path(tempfile.mkdtemp(prefix="scaleot-kd-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    n_bottom = config.n_bottom
    n_mid_emu = sum(e["kind"] != "adapter" for e in layer_map)
    n_mid_full = len(get_blocks(teacher)) - config.n_bottom - config.n_top
    s_idx, t_idx = n_bottom + n_mid_emu, n_bottom + n_mid_full  # hidden_states[0] = embeddings
    params = _trainable(student, layer_map)
    if not params:
        raise ScaleOTError("uniform-kd: the emulator has no kept middle block to distil")
    for p in student.parameters():
        p.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(list(params.values()), lr=config.kd_lr)
    torch.manual_seed(config.seed)
    n_need = config.kd_steps * config.kd_batch
    train, _ = corpus_splits(config.corpus, tokenizer, config.block_size, max_train_blocks=n_need)
    device = next(student.parameters()).device

    step = 0
    if config.resume:
        ckpt = latest_checkpoint(run_dir)
        if ckpt is None:
            raise ScaleOTError(f"--resume: no checkpoint in {run_dir}")
        weights, state = load_checkpoint(ckpt, optimizer)
        with torch.no_grad():
            for k, v in weights.items():
                params[k].copy_(v)
        step = state["step"]
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run_dir / "tb"))
    log = (run_dir / "log.jsonl").open("a")
    t0, first, last = time.perf_counter(), None, None
    student.train()
    bar = tqdm(total=config.kd_steps, initial=step, desc="uniform-kd", leave=False)
    while step < config.kd_steps:
        idx = torch.arange(step * config.kd_batch, (step + 1) * config.kd_batch) % len(train)
        ids = train[idx].to(device)
        with torch.no_grad():
            target = teacher(input_ids=ids, output_hidden_states=True).hidden_states[t_idx]
        out = student(input_ids=ids, labels=ids, output_hidden_states=True)
        l_h = nmse(out.hidden_states[s_idx], target)
        loss = l_h + config.kd_lm_weight * out.loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        last = {"step": step, "loss": loss.item(), "nmse": l_h.item(), "lm": out.loss.item()}
        first = first or last
        log.write(json.dumps(last) + "\n")
        for k in ("loss", "nmse", "lm"):
            writer.add_scalar(f"kd/{k}", last[k], step)
        bar.update(1)
        bar.set_postfix(nmse=f"{last['nmse']:.3f}", lm=f"{last['lm']:.3f}")
        if step % config.kd_checkpoint_every == 0 or step == config.kd_steps:
            save_checkpoint(run_dir, step, {k: p for k, p in params.items()}, optimizer, {"kind": "uniform-kd"})
    bar.close()
    log.close()
    writer.close()
    student.eval()
    for p in student.parameters():
        p.requires_grad_(True)
    return {"steps": config.kd_steps, "resumed": bool(config.resume), "seconds": round(time.perf_counter() - t0, 2),
            "run_dir": str(run_dir), "first": first, "final": last}
