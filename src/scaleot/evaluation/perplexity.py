"""Perplexity on held-out generic text (token blocks from :func:`scaleot.data.corpus_splits`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


@torch.no_grad()
def perplexity(model: torch.nn.Module, blocks: torch.Tensor, batch_size: int = 8) -> float:
    """``exp`` of the mean next-token cross-entropy over all predicted tokens of ``blocks``.

    Args:
        model: a causal LM.
        blocks: ``[n, T]`` token ids (full blocks, no padding).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(blocks), batch_size):
        ids = blocks[i : i + batch_size].to(device)
        logits = model(input_ids=ids).logits[:, :-1].float()
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1), reduction="sum")
        total += loss.item()
        count += ids[:, 1:].numel()
    if was_training:
        model.train()
    return math.exp(total / count)
