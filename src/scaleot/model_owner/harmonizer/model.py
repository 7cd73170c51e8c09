"""Switchable blocks: a frozen decoder block and its stand-in behind one explicit flag.

Dynamic LayerReplace (docs/method.md section 2) runs the model many times with different
sets of middle blocks replaced. Instead of patching ``forward`` or rebuilding the block
list every step, each middle block is wrapped once in a :class:`SwitchableBlock`; a
configuration is applied by setting the wrappers' ``replaced`` flags
(:func:`apply_configuration`), and :func:`unwrap_blocks` restores the original list.
Positions never change, so attention ``layer_idx`` and per-layer config stay valid.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from scaleot.models.arch import get_blocks


class SwitchableBlock(nn.Module):
    """A decoder block that can be switched to its stand-in (harmonizer or identity).

    Args:
        block: the original (frozen) decoder block.
        stand_in: a module with the block calling convention
            (``hidden_states [B, T, d], *args, **kwargs -> [B, T, d]``).

    Attributes:
        replaced: when True, ``forward`` runs ``stand_in`` instead of ``block``.
    """

    def __init__(self, block: nn.Module, stand_in: nn.Module):
        super().__init__()
        self.block = block
        self.stand_in = stand_in
        self.replaced = False

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if self.replaced:
            return self.stand_in(hidden_states, *args, **kwargs)
        return self.block(hidden_states, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"replaced={self.replaced}"


def wrap_blocks(model: nn.Module, stand_ins: dict[int, nn.Module]) -> dict[int, SwitchableBlock]:
    """Wrap the blocks at the keys of ``stand_ins`` in place; returns ``{index: wrapper}``."""
    blocks = get_blocks(model)
    out = {}
    for i, stand_in in stand_ins.items():
        if isinstance(blocks[i], SwitchableBlock):
            raise ValueError(f"block {i} is already wrapped")
        out[i] = blocks[i] = SwitchableBlock(blocks[i], stand_in)
    return out


def unwrap_blocks(model: nn.Module) -> None:
    """Put the original blocks back wherever a :class:`SwitchableBlock` sits."""
    blocks = get_blocks(model)
    for i, b in enumerate(blocks):
        if isinstance(b, SwitchableBlock):
            blocks[i] = b.block


def apply_configuration(wrappers: dict[int, SwitchableBlock], keep: Sequence[bool] | torch.Tensor,
                        order: Sequence[int]) -> None:
    """Set ``replaced = not keep[j]`` for the wrapper of block ``order[j]``."""
    for j, i in enumerate(order):
        wrappers[i].replaced = not bool(keep[j])
