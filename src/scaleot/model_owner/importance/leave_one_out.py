"""Leave-one-out reference ranking (docs/method.md section 2).

Cheap and deterministic: for each middle block, replace only that block by the identity
and measure the held-out loss. A block whose removal raises the loss most is the most
important. Learned rankings are compared to this one by Spearman correlation.
"""

from __future__ import annotations

import torch
from torch import nn

from scaleot.exchange.layers import IdentityBlock
from scaleot.model_owner.harmonizer import apply_configuration, unwrap_blocks, wrap_blocks
from scaleot.models.device import bf16_autocast


@torch.no_grad()
def leave_one_out(model: nn.Module, blocks: torch.Tensor, middle: list[int], batch_size: int = 8,
                  autocast: bool = False) -> dict[str, object]:
    """Loss increase when each middle block alone is dropped.

    Args:
        model: causal LM (not modified on return).
        blocks: ``[n, T]`` held-out token ids.
        middle: block indices to test.
        batch_size: sequences per forward.
        autocast: run forwards under bf16 autocast.

    Returns:
        ``{"full_loss": float, "delta": {block: loss_without_block - full_loss},
        "ranking": [block, ...]}`` (largest increase first).
    """
    wrappers = wrap_blocks(model, {i: IdentityBlock() for i in middle})
    device = next(model.parameters()).device

    def loss(keep: torch.Tensor) -> float:
        apply_configuration(wrappers, keep, middle)
        total, n = 0.0, 0
        for s in range(0, len(blocks), batch_size):
            x = blocks[s : s + batch_size].to(device)
            with bf16_autocast(autocast, device):
                total += float(model(input_ids=x, labels=x, use_cache=False).loss) * len(x)
            n += len(x)
        return total / n

    try:
        full = loss(torch.ones(len(middle), dtype=torch.bool))
        delta = {}
        for j, i in enumerate(middle):
            keep = torch.ones(len(middle), dtype=torch.bool)
            keep[j] = False
            delta[i] = loss(keep) - full
    finally:
        unwrap_blocks(model)
    return {"full_loss": full, "delta": delta, "ranking": sorted(middle, key=lambda i: (-delta[i], i))}


def spearman(a: list[int], b: list[int]) -> float:
    """Spearman rank correlation of two rankings of the same items (no ties)."""
    if sorted(a) != sorted(b):
        raise ValueError("rankings hold different items")
    n = len(a)
    if n < 2:
        return 1.0
    ra, rb = {x: r for r, x in enumerate(a)}, {x: r for r, x in enumerate(b)}
    d2 = sum((ra[x] - rb[x]) ** 2 for x in a)
    return 1 - 6 * d2 / (n * (n * n - 1))
