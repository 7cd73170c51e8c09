"""The block types an emulator bundle may carry, as the data owner runs them.

An emulator's block list mixes decoder blocks (from transformers) with the modules here:
:class:`Harmonizer` (a fitted stand-in for a replaced block, docs/method.md section 2),
:class:`IdentityBlock` (a dropped block) and :class:`LowRankLinear` (an SRC-compressed
attention projection, section 3). They live in the exchange, not with the model owner's
code that fits them, because running a bundle needs them: the data owner imports these
classes and nothing of the model owner's (:mod:`scaleot.models.emulator` builds a bundle's
model from them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from scaleot.errors import check

ACTIVATIONS = ("gelu", "silu", "relu")


@dataclass
class HarmonizerConfig:
    """A residual low-rank MLP that stands in for one decoder block.

    ``H(h) = h + W_up · act(W_down · norm(h))`` with ``W_up`` zero at initialisation, so
    a fresh harmonizer is the identity (the same as dropping the block).
    """

    rank: int = field(default=64, metadata={"help": "bottleneck width of the low-rank MLP", "aliases": ("--rank",)})
    activation: str = field(default="gelu", metadata={"help": f"one of {ACTIVATIONS}"})
    use_norm: bool = field(default=True, metadata={"help": "RMS-normalise the input of the branch"})

    def __post_init__(self) -> None:
        self.activation = self.activation.lower()
        problems = []
        if self.rank <= 0:
            problems.append(f"rank must be > 0 (got {self.rank})")
        if self.activation not in ACTIVATIONS:
            problems.append(f"activation must be one of {ACTIVATIONS} (got {self.activation!r})")
        check("harmonizer config", problems)

    def to_dict(self) -> dict:
        return asdict(self)


_ACT = {"gelu": nn.GELU, "silu": nn.SiLU, "relu": nn.ReLU}


class Harmonizer(nn.Module):
    """Residual low-rank MLP with the decoder-block calling convention.

    Args:
        hidden_size: model width ``d``.
        config: rank ``r``, activation, norm.

    Shapes: ``hidden_states [B, T, d] -> [B, T, d]``. Extra positional or keyword
    arguments that a decoder block receives (mask, positions, cache...) are accepted
    and ignored: a harmonizer mixes nothing across tokens and owns no cache slot.
    """

    def __init__(self, hidden_size: int, config: HarmonizerConfig | None = None):
        super().__init__()
        self.config = config or HarmonizerConfig()
        self.hidden_size = hidden_size
        self.norm = nn.RMSNorm(hidden_size, eps=1e-6) if self.config.use_norm else nn.Identity()
        self.down = nn.Linear(hidden_size, self.config.rank, bias=False)
        self.act = _ACT[self.config.activation]()
        self.up = nn.Linear(self.config.rank, hidden_size, bias=False)
        nn.init.zeros_(self.up.weight)  # identity at initialisation

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return hidden_states + self.up(self.act(self.down(self.norm(hidden_states))))


class IdentityBlock(nn.Module):
    """A dropped block: returns its input (Dynamic LayerDrop, uniform drop stand-in)."""

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return hidden_states


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
