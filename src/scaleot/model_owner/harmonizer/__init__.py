"""Fitting harmonizers: Dynamic LayerReplace's switchable blocks (docs/method.md section 2).

The harmonizer module itself, and its file, are part of the exchange
(:mod:`scaleot.exchange.layers`, :mod:`scaleot.exchange.importance`): the data owner runs
them inside an emulator. What stays here is what only the model owner does: switching
blocks for their stand-ins while stage 1 learns the scores and the harmonizers.
"""

from scaleot.model_owner.harmonizer.model import (
    SwitchableBlock,
    apply_configuration,
    unwrap_blocks,
    wrap_blocks,
)

__all__ = ["SwitchableBlock", "apply_configuration", "unwrap_blocks", "wrap_blocks"]
