"""Selective Rank Compression (SRC): low-rank attention projections (docs/method.md section 3).

Each attention projection ``W [d_out, d_in]`` of a kept middle block is replaced by its
rank-``r`` SVD truncation ``W_r = U_r S_r V_r^T`` with ``r = ceil((1 - beta) · min(d_out, d_in))``.
Only the two factors travel, split as ``up = U_r sqrt(S_r)`` ``[d_out, r]`` and
``down = sqrt(S_r) V_r^T`` ``[r, d_in]``; the dense matrix is never stored. With
``beta > 0`` the rank is capped at ``min(d_out, d_in) - 1`` so the full-rank matrix cannot be
recovered from the factors, even where the ceiling would round back to full rank.
"""

from __future__ import annotations

import math

from torch import nn

from scaleot.exchange.layers import LowRankLinear
from scaleot.models.arch import ArchSpec, get_submodule, set_submodule


def src_rank(d_out: int, d_in: int, beta: float) -> int:
    """Rank kept by SRC: ``ceil((1 - beta) · min(d_out, d_in))``, below full rank when ``beta > 0``."""
    full = min(d_out, d_in)
    r = math.ceil((1.0 - beta) * full - 1e-9)
    if beta > 0:
        r = min(r, full - 1)
    return max(1, r)


def compress_block(block: nn.Module, spec: ArchSpec, beta: float) -> dict[str, int]:
    """Replace every attention projection of ``block`` by its SRC truncation, in place.

    Returns:
        role -> rank kept (``{"q": 288, "k": 96, ...}``); empty when ``beta == 0``.
    """
    if beta <= 0:
        return {}
    ranks = {}
    for role, path in spec.attn.items():
        proj = get_submodule(block, path)
        w = proj.weight.t() if spec.transposed else proj.weight
        rank = src_rank(w.shape[0], w.shape[1], beta)
        set_submodule(block, path, LowRankLinear.from_weight(w, getattr(proj, "bias", None), rank))
        ranks[role] = rank
    return ranks
