"""Emulators: ScaleOT's (N_a, alpha, beta) builder, SRC, the baselines, the exchange bundle.

See docs/method.md sections 3 and 5. ``build_emulator(model, EmulatorConfig(...))`` returns an
:class:`EmulatorBundle`; ``bundle.save(dir)`` writes it; ``load_emulator(dir)`` verifies
and loads it as an ordinary transformers causal LM.
"""

from scaleot.emulator.build import build_emulator, count_params
from scaleot.emulator.bundle import EmulatorBundle, find_leaks, load_emulator
from scaleot.emulator.config import METHODS, EmulatorConfig
from scaleot.emulator.src_compress import LowRankLinear, src_rank

__all__ = ["build_emulator", "count_params", "EmulatorBundle", "find_leaks", "load_emulator", "METHODS",
           "EmulatorConfig", "LowRankLinear", "src_rank"]
