"""Distil an emulator's middle towards the full model on generic text.

Two users, one loop:

- OT with distillation (``uniform-kd``, docs/method.md section 5): the kept middle blocks of
  the uniform emulator train (``kinds=("kept",)``).
- ScaleOT's stage-2 harmonizer calibration (``scaleot`` with ``calibrate_steps > 0``, our
  option; docs/method.md section 8 leaves the harmonizers' training open): only the harmonizers
  standing in for the replaced blocks train (``kinds=("harmonizer",)``), for the one
  configuration that ships, instead of the random configurations of stage 1.

The adapter blocks, embeddings and head stay frozen. The loss at each step is::

    NMSE(h_emu, h_full) + lm_weight · CE(emulator logits, next token)
    NMSE(a, b) = ||a - b||^2 / ||b||^2

where ``h`` is the hidden state at the emulator boundary (the output of the last middle
position = the input of the top adapter), ``[B, T, d]``. Progress bar, JSONL and
TensorBoard logs, and pickle-free checkpoints (:mod:`scaleot.run_folder`) every
``kd_checkpoint_every`` steps; ``resume=True`` continues from the newest one, restoring
weights, optimizer and RNG, and refuses one made with other options. Batches are a function of the step, so a resumed run sees the
same data as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from scaleot.data.text import corpus_splits
from scaleot.errors import ScaleOTError
from scaleot.models.arch import arch_spec, get_blocks, get_submodule
from scaleot.models.device import autocast_used, bf16_autocast, wants_bf16
from scaleot.models.loading import DEFAULT_MODEL
from scaleot.progress import progress_bar
from scaleot.run_folder import RunFolder


def _trainable(student: nn.Module, layer_map: list[dict], kinds: tuple[str, ...]) -> dict[str, nn.Parameter]:
    blocks = get_blocks(student)
    kept = {e["position"] for e in layer_map if e["kind"] in kinds}
    out = {}
    for pos in sorted(kept):
        for name, p in blocks[pos].named_parameters():
            out[f"{pos}.{name}"] = p
    return out


@contextlib.contextmanager
def boundary_input(model: nn.Module, index: int):
    """Capture the hidden state entering block ``index`` (or the final norm past the last block).

    A forward pre-hook rather than ``output_hidden_states``: transformers collects hidden
    states only from its own decoder-layer classes, and an emulator's middle holds harmonizers.
    Yields a list that holds the tensor once the model has run.
    """
    blocks = get_blocks(model)
    module = blocks[index] if index < len(blocks) else get_submodule(model, arch_spec(model).final_norm)
    seen: list[torch.Tensor] = []

    def hook(_module, args, kwargs):
        seen[:] = [args[0] if args else kwargs["hidden_states"]]

    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


def nmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``||pred - target||^2 / ||target||^2`` over the whole batch."""
    return (pred - target).pow(2).sum() / target.pow(2).sum().clamp_min(1e-12)


def distill(student: nn.Module, teacher: nn.Module, tokenizer, layer_map: list[dict], config,
            kinds: tuple[str, ...] = ("kept",), steps: int | None = None, lr: float | None = None,
            label: str = "uniform-kd", *, base_model: str = DEFAULT_MODEL, resume: bool = False) -> dict:
    """Distil ``student`` (the emulator, in place) towards ``teacher`` (the full model).

    Only the middle positions whose layer-map kind is in ``kinds`` train, for ``steps``
    (default ``config.kd_steps``) at ``lr`` (default ``config.kd_lr``). ``base_model`` (the
    teacher's name or path, as given) is recorded in the run folder's options and provenance;
    ``resume`` continues from the newest checkpoint in ``config.kd_run_dir``.

    Returns:
        ``{"steps", "seconds", "run_dir", "first": {...}, "final": {...}}`` losses summary.
    """
    run_dir = Path(config.kd_run_dir) if config.kd_run_dir else Path(tempfile.mkdtemp(prefix="scaleot-kd-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    # the boundary: where the top adapter starts, in the full model and in the emulator
    top_full = config.split.top_start(len(get_blocks(teacher)))
    top_emu = config.split.top_start(len(layer_map))
    steps = config.kd_steps if steps is None else steps
    lr = config.kd_lr if lr is None else lr
    params = _trainable(student, layer_map, kinds)
    if not params:
        raise ScaleOTError(f"{label}: the emulator has no {'/'.join(kinds)} middle block to train")
    for p in student.parameters():
        p.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(list(params.values()), lr=lr)
    torch.manual_seed(config.seed)
    n_need = steps * config.kd_batch
    train, _ = corpus_splits(config.corpus, tokenizer, config.block_size, max_train_blocks=n_need)
    device = next(student.parameters()).device

    def amp():
        return bf16_autocast(wants_bf16(config.autocast, device), device)

    from scaleot.provenance import corpus_provenance

    provenance = dict(corpus_provenance(config.corpus), label=label, model=base_model, layer_map=layer_map,
                      lr=lr, kd_batch=config.kd_batch, block_size=config.block_size, seed=config.seed)
    options = dict(config.options(base_model), label=label, kinds=list(kinds), steps=steps, lr=lr)
    folder = RunFolder(run_dir, options, may_change=("steps", "kd_steps", "calibrate_steps", "kd_checkpoint_every",
                                                     "kd_run_dir"), provenance=provenance)
    step = 0
    # --resume continues from the newest checkpoint; a run stopped before its first one starts afresh.
    loaded = folder.resume(optimizer, required=False) if resume else None
    if loaded is not None:
        weights, state = loaded
        if set(weights) != set(params):
            raise ScaleOTError(f"--resume: the checkpoint in {run_dir} holds other weights than this run trains")
        with torch.no_grad():
            for k, v in weights.items():
                params[k].copy_(v)
        step = state["step"]
    folder.open_log(step if loaded is not None else None)
    t0, first, last = time.perf_counter(), None, None
    student.train()
    bar = progress_bar(steps, label, unit="step", initial=step, leave=False)
    while step < steps:
        idx = torch.arange(step * config.kd_batch, (step + 1) * config.kd_batch) % len(train)
        ids = train[idx].to(device)
        with amp(), torch.no_grad(), boundary_input(teacher, top_full) as target:
            teacher(input_ids=ids)
        with amp(), boundary_input(student, top_emu) as h:
            out = student(input_ids=ids, labels=ids)
        l_h = nmse(h[0].float(), target[0].float())
        loss = l_h + config.kd_lm_weight * out.loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        last = {"step": step, "loss": loss.item(), "nmse": l_h.item(), "lm": out.loss.item()}
        first = first or last
        folder.log(last, {f"kd/{k}": last[k] for k in ("loss", "nmse", "lm")})
        bar.update(1)
        bar.set_postfix(nmse=f"{last['nmse']:.3f}", lm=f"{last['lm']:.3f}")
        if step % config.kd_checkpoint_every == 0 or step == steps:
            folder.save(step, dict(params), optimizer, {"kind": label})
    bar.close()
    folder.close()
    student.eval()
    for p in student.parameters():
        p.requires_grad_(True)
    return {"steps": steps, "trains": list(kinds), "params_trained": sum(p.numel() for p in params.values()),
            "resumed": bool(resume), "seconds": round(time.perf_counter() - t0, 2),
            "run_dir": str(run_dir), "first": first, "final": last,
            "autocast": autocast_used(wants_bf16(config.autocast, device), device)}
