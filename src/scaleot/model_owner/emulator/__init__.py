"""Emulators: ScaleOT's (N_a, alpha, beta) builder, SRC, the baselines.

See docs/method.md sections 3 and 5. ``build_emulator(model, EmulatorConfig(...))`` returns an
:class:`~scaleot.exchange.bundle.EmulatorBundle`; ``bundle.save(dir)`` writes it;
:func:`scaleot.models.emulator.load_emulator` verifies and loads it as an ordinary
transformers causal LM.
"""

from scaleot.model_owner.emulator.build import build_emulator, count_params
from scaleot.model_owner.emulator.config import METHODS, EmulatorConfig
from scaleot.model_owner.emulator.leaks import find_leaks
from scaleot.model_owner.emulator.src_compress import src_rank

__all__ = ["build_emulator", "count_params", "find_leaks", "METHODS", "EmulatorConfig", "src_rank"]
