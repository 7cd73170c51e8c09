"""scaleot: privacy-preserving offsite-tuning of LLMs (ScaleOT, IST and baselines).

See README.md for the workflow and ``docs/method.md`` for the algorithms.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load_model", "load_emulator", "build_emulator"]


def __getattr__(name: str):  # lazy: importing scaleot must not import torch
    if name == "load_model":
        from scaleot.models import load_model

        return load_model
    if name == "load_emulator":
        from scaleot.models.emulator import load_emulator

        return load_emulator
    if name == "build_emulator":
        from scaleot.model_owner.emulator import build_emulator

        return build_emulator
    raise AttributeError(name)
