"""Configuration of a harmonizer (docs/method.md section 2)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

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
