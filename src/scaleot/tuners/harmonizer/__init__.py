"""Harmonizers: small residual low-rank MLPs that stand in for replaced decoder blocks."""

from scaleot.tuners.harmonizer.config import HarmonizerConfig
from scaleot.tuners.harmonizer.layer import (
    Harmonizer,
    IdentityBlock,
    load_harmonizers,
    save_harmonizers,
)

__all__ = ["HarmonizerConfig", "Harmonizer", "IdentityBlock", "load_harmonizers", "save_harmonizers"]
