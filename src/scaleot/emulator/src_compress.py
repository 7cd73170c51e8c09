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

import torch
from torch import nn

from scaleot.models.arch import ArchSpec, get_submodule, set_submodule


def src_rank(d_out: int, d_in: int, beta: float) -> int:
    """Rank kept by SRC: ``ceil((1 - beta) · min(d_out, d_in))``, below full rank when ``beta > 0``."""
    full = min(d_out, d_in)
    r = math.ceil((1.0 - beta) * full - 1e-9)
    if beta > 0:
        r = min(r, full - 1)
    return max(1, r)


class LowRankLinear(nn.Module):
    """``y = up(down(x)) + bias``: a rank-``r`` projection held as two factors.

    Args:
        in_features: ``d_in``; out_features: ``d_out``; rank: ``r``.
        bias: whether the projection has a bias ``[d_out]``.

    Shapes: ``x [..., d_in] -> [..., d_out]``; ``down.weight [r, d_in]``, ``up.weight [d_out, r]``.
    Works in place of a ``Linear`` and of GPT-2's ``Conv1D`` (both map ``x -> y``).
    """

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = False):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))

    @classmethod
    def from_weight(cls, weight: torch.Tensor, bias: torch.Tensor | None, rank: int) -> LowRankLinear:
        """Truncated SVD of ``weight [d_out, d_in]`` (computed in float64, stored in its dtype)."""
        d_out, d_in = weight.shape
        u, s, vh = torch.linalg.svd(weight.detach().double(), full_matrices=False)
        root = s[:rank].sqrt()
        mod = cls(d_in, d_out, rank, bias=bias is not None).to(device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            mod.up.weight.copy_(u[:, :rank] * root)
            mod.down.weight.copy_(root[:, None] * vh[:rank])
            if bias is not None:
                mod.up.bias.copy_(bias.detach())
        return mod

    def dense(self) -> torch.Tensor:
        """The ``[d_out, d_in]`` product (for tests and error reports; never shipped)."""
        return self.up.weight @ self.down.weight


def projection_shape(module: nn.Module, transposed: bool) -> tuple[int, int]:
    """``(d_out, d_in)`` of a Linear or (transposed) Conv1D projection."""
    w = module.weight
    return (w.shape[1], w.shape[0]) if transposed else (w.shape[0], w.shape[1])


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


def low_rank_shell(block: nn.Module, spec: ArchSpec, ranks: dict[str, int]) -> None:
    """Swap ``block``'s attention projections for empty factor modules of the given ranks.

    Used by the loader to rebuild the module structure before the weights are read.
    """
    for role, rank in ranks.items():
        path = spec.attn[role]
        proj = get_submodule(block, path)
        d_out, d_in = projection_shape(proj, spec.transposed)
        has_bias = getattr(proj, "bias", None) is not None
        shell = LowRankLinear(d_in, d_out, rank, bias=has_bias).to(proj.weight.dtype)
        set_submodule(block, path, shell)
