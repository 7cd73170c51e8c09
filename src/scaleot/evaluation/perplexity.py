"""Perplexity on held-out generic text (token blocks from :func:`scaleot.data.corpus_splits`).

The LM head runs on chunks of positions, so the ``[B, T, V]`` logits (49k vocabulary for
SmolLM2) are never materialised in fp32: at most ``[chunk_tokens, V]`` at a time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from scaleot.evaluation.fast_mc import head_logits


@torch.no_grad()
def perplexity(model: torch.nn.Module, blocks: torch.Tensor, batch_size: int = 8, chunk_tokens: int = 1024) -> float:
    """``exp`` of the mean next-token cross-entropy over all predicted tokens of ``blocks``.

    Args:
        model: a causal LM.
        blocks: ``[n, T]`` token ids (full blocks, no padding).
        batch_size: blocks per decoder pass.
        chunk_tokens: positions per head + cross-entropy chunk (bounds the ``[chunk, V]`` logits).

    Returns:
        ``exp(sum_{b,t} CE(logits[b, t], blocks[b, t + 1]) / (n * (T - 1)))``, the same number
        as applying the whole model and ``F.cross_entropy`` to all ``[n, T - 1, V]`` logits.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(blocks), batch_size):
        ids = blocks[i : i + batch_size].to(device)
        hidden = model.base_model(input_ids=ids).last_hidden_state[:, :-1]  # [B, T-1, H]
        hidden = hidden.reshape(-1, hidden.size(-1))  # [B*(T-1), H]
        targets = ids[:, 1:].reshape(-1)  # [B*(T-1)]
        for start in range(0, len(targets), chunk_tokens):
            logits = head_logits(model, hidden[start : start + chunk_tokens]).float()  # [chunk, V]
            total += F.cross_entropy(logits, targets[start : start + chunk_tokens], reduction="sum").item()
        count += len(targets)
    model.train(was_training)
    return math.exp(total / count)
