"""Where unselected layers' optimizer state lives (docs/method.md section 4, "Memory").

IST uses one ordinary ``torch.optim.AdamW`` over every PEFT parameter. Three facts make
it sparse without a custom optimizer:

1. Unselected layers' parameters have ``requires_grad=False`` during the step, so they
   get no gradient buffer (``grad is None``; gradients are cleared with
   ``zero_grad(set_to_none=True)``).
2. AdamW skips every parameter whose ``grad`` is ``None``: no update, no weight decay,
   and its per-parameter ``step`` counter does not advance (lazy Adam: bias correction
   counts only the steps the layer really trained). Its state is created lazily, on the
   layer's first selection.
3. On an accelerator, :func:`move_optimizer_state` keeps the state of unselected layers
   in pinned CPU memory and brings the selected layers' state to the device just
   before the step (non-blocking copies). On a CPU-only machine host memory *is* the
   training memory, so the state is "kept and skipped": nothing moves.

A single standard optimizer keeps checkpoints plain
(:func:`scaleot.checkpoint.save_checkpoint` works unchanged).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def move_optimizer_state(
    optimizer: torch.optim.Optimizer, params: Iterable[torch.Tensor], device: torch.device | str,
) -> int:
    """Move the tensor state (``exp_avg``, ``exp_avg_sq``...) of ``params`` to ``device``.

    Scalar ``step`` tensors stay where the optimizer keeps them. CPU targets are pinned
    when CUDA is available, so the copies back are asynchronous.

    Returns:
        Bytes moved.
    """
    device = torch.device(device)
    pin = device.type == "cpu" and torch.cuda.is_available()
    moved = 0
    for p in params:
        state = optimizer.state.get(p)
        if not state:
            continue
        for key, value in state.items():
            if key == "step" or not torch.is_tensor(value) or value.device == device:
                continue
            new = value.to(device, non_blocking=True)
            if pin:
                new = new.pin_memory()
            state[key] = new
            moved += value.numel() * value.element_size()
    return moved


def optimizer_state_bytes(optimizer: torch.optim.Optimizer, device_type: str | None = None) -> int:
    """Bytes of tensor optimizer state, optionally only those on one device type."""
    total = 0
    for state in optimizer.state.values():
        for key, value in state.items():
            if key != "step" and torch.is_tensor(value) and (device_type is None or value.device.type == device_type):
                total += value.numel() * value.element_size()
    return total
