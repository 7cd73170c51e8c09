"""Transfer diagnostic: does the emulator give the adapter the full model's gradient?

The data owner's adapter is trained on gradients computed *through the emulator*; the
model owner then plugs it into the *full* model. If, for the same batch, the gradient of
the loss with respect to the adapter's weights through the emulator points the way the
gradient through the full model points, the emulator's updates are updates the full model
would also have made, and tuning transfers (the argument of GradOT and later work). The
diagnostic measures exactly that, before any tuning:

    g_full[b] = d loss_full / d theta_b          (full model, adapter block b)
    g_emu[b]  = d loss_emu  / d theta_b          (emulator, the same block's weights)
    cos[b]    = <g_full[b], g_emu[b]> / (|g_full[b]| |g_emu[b]|)
    cos_all   = the same over the concatenation of every adapter block

on a few batches (gradients summed over batches before the cosine). ``loss`` is the
next-token loss on generic text (what ``scaleot emulate`` records in ``emulator.json``) or
the answer loss of task examples (what ``bench/transfer.py`` uses).

Neither model is changed: ``requires_grad`` flags are restored and the gradients are taken
with :func:`torch.autograd.grad`, so no ``.grad`` is left behind.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from scaleot.models.arch import get_blocks


@contextlib.contextmanager
def _only_grad(model: nn.Module, params: list[nn.Parameter]):
    """Within the block, only ``params`` of ``model`` require grad; flags restored after."""
    flags = {p: p.requires_grad for p in model.parameters()}
    was_training = model.training
    model.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    model.eval()  # no dropout: the two gradients must see the same function of the batch
    try:
        yield
    finally:
        for p, f in flags.items():
            p.requires_grad_(f)
        model.train(was_training)


def lm_loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of ``batch`` (``[B, T]`` token ids, no padding)."""
    logits = model(input_ids=batch).logits[:, :-1].float()
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1))


def block_gradients(model: nn.Module, positions: list[int], batches: Iterable,
                    loss_fn: Callable[[nn.Module, object], torch.Tensor]) -> list[torch.Tensor]:
    """Flattened gradient of ``sum_batches loss_fn(model, batch)`` for each block at ``positions``.

    Returns:
        One fp32 vector per position (``[numel of block]``), in ``positions`` order.
    """
    blocks = get_blocks(model)
    params = [[p for _, p in sorted(blocks[i].named_parameters())] for i in positions]
    flat = [p for ps in params for p in ps]
    total = [torch.zeros(sum(p.numel() for p in ps)) for ps in params]
    with _only_grad(model, flat):
        for batch in batches:
            grads = torch.autograd.grad(loss_fn(model, batch), flat, allow_unused=True)
            k = 0
            for b, ps in enumerate(params):
                parts = [(g if g is not None else torch.zeros_like(p)).reshape(-1).float().cpu()
                         for p, g in zip(ps, grads[k:k + len(ps)], strict=True)]
                total[b] += torch.cat(parts)
                k += len(ps)
    return total


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    den = a.norm() * b.norm()
    return float(a @ b / den) if den > 0 else 0.0


def gradient_alignment(full: nn.Module, emulator: nn.Module, layer_map: list[dict], batches: list,
                       loss_fn: Callable[[nn.Module, object], torch.Tensor] = lm_loss) -> dict:
    """Cosine between the adapter's gradient through ``emulator`` and through ``full``.

    Args:
        full: the full model.
        emulator: the emulator built from it (its adapter blocks still equal the full model's).
        layer_map: the emulator's layer map (adapter entries give position and source).
        batches: what ``loss_fn`` takes; the same batches go through both models.
        loss_fn: ``(model, batch) -> scalar loss``; default :func:`lm_loss` on ``[B, T]`` ids.

    Returns:
        ``{"all": cos over every adapter weight, "per_block": {source: cos}, "min_block": min,
        "grad_norm_ratio": |g_emu| / |g_full| over every adapter weight}``.
    """
    adapter = [e for e in layer_map if e["kind"] == "adapter"]
    g_full = block_gradients(full, [e["source"] for e in adapter], batches, loss_fn)
    g_emu = block_gradients(emulator, [e["position"] for e in adapter], batches, loss_fn)
    per_block = {str(e["source"]): round(_cos(f, m), 4) for e, f, m in zip(adapter, g_full, g_emu, strict=True)}
    cat_full, cat_emu = torch.cat(g_full), torch.cat(g_emu)
    return {"all": round(_cos(cat_full, cat_emu), 4), "per_block": per_block,
            "min_block": min(per_block.values()),
            "grad_norm_ratio": round(float(cat_emu.norm() / cat_full.norm().clamp_min(1e-12)), 4)}
