"""Configuration of IST, importance-aware sparse tuning (docs/method.md section 4)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from scaleot.errors import check

SAMPLINGS = ("ist", "rst")


@dataclass
class ISTConfig:
    """Which layers' PEFT modules train at each step, and how their importance is learned.

    "Layers" are decoder blocks that hold at least one PEFT (LoRA/DoRA) module. Sizes
    given as fractions in ``(0, 1]`` are resolved against the number of such layers
    ``L`` by :meth:`resolve`: ``ceil(fraction * L)`` (at least 1)
    so one config fits every model.

    Convention (IST's): a layer's score ``s_i`` is *high* when its adapter can be
    suppressed safely, so training samples with weights ``1 - sigmoid(s_i)``.
    """

    n_update: float = field(default=0.25, metadata={"help": "fraction of layers trained per step"})
    T: int = field(default=10, metadata={"help": "importance update every T steps (0 = never)"})
    K: int = field(default=3, metadata={"help": "probe forward passes per importance update"})
    n_suppress: float = field(default=0.5, metadata={"help": "fraction of layers suppressed per probe pass"})
    gamma: float = field(default=0.25, metadata={"help": "scale of the suppressed layers' PEFT output"})
    eta: float = field(default=10.0, metadata={"help": "score learning rate"})
    sampling: str = field(default="ist", metadata={"help": f"one of {SAMPLINGS}; rst = uniform (baseline)"})
    seed: int = field(default=0, metadata={"help": "seed of the selection generator (same on every rank)"})
    offload_optimizer: bool = field(
        default=True,
        metadata={"help": "keep unselected layers' optimizer state in (pinned) CPU memory when training on an accelerator"},
    )
    sync_selection: bool = field(
        default=True, metadata={"help": "under torch.distributed, broadcast rank 0's selection every step"},
    )

    def __post_init__(self) -> None:
        self.sampling = self.sampling.lower()
        problems = []
        for name in ("n_update", "n_suppress"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                problems.append(f"{name} must be a fraction in (0, 1] (got {value})")
        if self.T < 0:
            problems.append(f"T must be >= 0 (got {self.T})")
        if self.K < 1:
            problems.append(f"K must be >= 1 (got {self.K})")
        if not 0 <= self.gamma < 1:
            problems.append(f"gamma must be in [0, 1) (got {self.gamma})")
        if self.eta < 0:
            problems.append(f"eta must be >= 0 (got {self.eta})")
        if self.sampling not in SAMPLINGS:
            problems.append(f"sampling must be one of {SAMPLINGS} (got {self.sampling!r})")
        check("IST config", problems)

    def resolve(self, num_layers: int) -> tuple[int, int]:
        """``(n_update, n_suppress)`` as layer counts for ``num_layers`` layers (each >= 1)."""
        n_update = min(num_layers, max(1, math.ceil(self.n_update * num_layers)))
        n_suppress = min(num_layers, max(1, math.ceil(self.n_suppress * num_layers)))
        return n_update, n_suppress

    def to_dict(self) -> dict:
        return asdict(self)
