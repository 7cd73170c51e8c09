"""Harmonizers: small residual low-rank MLPs that stand in for replaced decoder blocks."""

from scaleot.tuners.harmonizer.config import HarmonizerConfig
from scaleot.tuners.harmonizer.layer import (
    Harmonizer,
    IdentityBlock,
    load_harmonizers,
    save_harmonizers,
)
from scaleot.tuners.harmonizer.model import (
    SwitchableBlock,
    apply_configuration,
    unwrap_blocks,
    wrap_blocks,
)

__all__ = ["HarmonizerConfig", "Harmonizer", "IdentityBlock", "load_harmonizers", "save_harmonizers",
           "SwitchableBlock", "apply_configuration", "unwrap_blocks", "wrap_blocks"]
