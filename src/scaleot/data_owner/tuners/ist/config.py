"""Configuration of IST, importance-aware sparse tuning (docs/method.md section 4)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from scaleot.errors import check
from scaleot.scores import REWARDS
from scaleot.validate.options import nonfinite_fields

SAMPLINGS = ("ist", "rst")
CREDITS = ("count", "set")
PROBES = ("suppress", "grad")


@dataclass
class ISTConfig:
    """Which layers' PEFT modules train at each step, and how their importance is learned.

    "Layers" are decoder blocks that hold at least one PEFT (LoRA/DoRA) module. Sizes
    given as fractions in ``(0, 1]`` are resolved against the number of such layers
    ``L`` by :meth:`resolve`: ``ceil(fraction * L)`` (at least 1)
    so one config fits every model.

    Convention (IST's): a layer's score ``s_i`` is *high* when its adapter can be
    suppressed safely, so training samples with weights ``1 - sigmoid(s_i)``.

    Reward scaling (``reward``, the same choices as stage 1's
    :class:`~scaleot.model_owner.importance.config.ImportanceConfig`): ``normalized`` (default) turns
    the ``K`` probe losses of one update into advantages ``(r_k - mean r) / std r`` with
    ``r_k = -l_k`` (all zero when the losses are equal), so ``eta`` alone sets how fast
    the scores separate whatever the loss scale; ``neg_loss`` is ``-(l_k - mean l)``; ``exp`` is the paper's
    ``exp(-l_k) - mean exp(-l)``, whose advantages are ~1e-3 at LM losses and barely
    move the scores. The default ``eta`` was chosen by measurement (BENCHMARKS.md, IST).

    Credit (``credit``): ``set`` (default) gives every suppressed layer its probe's
    advantage (the paper); ``count`` scales layer ``i``'s share by ``(mean(c) + 1) / (c_i + 1)``,
    ``c`` the selection counts so far, to credit the effect per update rather than one that
    grows with how often a layer was trained. Measured, it did not make two seeds agree
    (BENCHMARKS.md, IST), so it is not the default.

    Probe (``probe``): ``suppress`` (default) is the paper's probe above. ``grad`` reads
    instead, after every backward pass, the gradient norm of each selected layer's PEFT
    parameters (no extra forward or backward, no probe batch) and keeps per layer an
    exponential moving average of its log (factor ``grad_decay`` per observation, 0.97 chosen
    by measurement: seeds agree more than at 0.9, BENCHMARKS.md, IST); every
    ``T`` steps the scores become ``s_i = -eta (m_i - mean m)``, the mean over the layers
    of the window seen so far (unseen layers get 0), so a layer is trained with weight
    ``g_i^eta / (g_i^eta + gbar^eta)``: more where a step would move the loss most. The
    suppression probe measures what an adapter has learned, which depends on the seed's
    earlier picks; gradient norms agree across seeds (BENCHMARKS.md, IST). ``K``,
    ``n_suppress``, ``gamma``, ``reward`` and ``credit`` belong to ``suppress`` only.

    ``depth`` bounds memory: only the top ``ceil(depth * L)`` layers (the output side)
    may be selected or probed, so backpropagation never reaches below them and the
    activations of the lower blocks are never stored (peak memory is set by the lowest
    selected layer of the worst step, so only a bound lowers the peak).
    """

    n_update: float = field(default=0.25, metadata={"help": "fraction of layers trained per step"})
    T: int = field(default=5, metadata={"help": "importance update every T steps (0 = never)"})
    K: int = field(default=3, metadata={"help": "probe forward passes per importance update"})
    n_suppress: float = field(default=0.5, metadata={"help": "fraction of layers suppressed per probe pass"})
    gamma: float = field(default=0.25, metadata={"help": "scale of the suppressed layers' PEFT output"})
    eta: float = field(default=1.0, metadata={"help": "score learning rate"})
    reward: str = field(default="normalized", metadata={"help": f"one of {REWARDS}: probe reward scaling"})
    credit: str = field(default="set", metadata={
        "help": f"one of {CREDITS}: how a probe's advantage is shared by the suppressed layers"})
    probe: str = field(default="suppress", metadata={
        "help": f"one of {PROBES}: importance from suppressed probe passes (the paper) or from gradient norms"})
    grad_decay: float = field(default=0.97, metadata={
        "help": "probe grad: moving-average factor of a layer's log gradient norm per observation"})
    depth: float = field(
        default=1.0, metadata={"help": "fraction of the layers, counted from the top, that may be selected (memory bound)"},
    )
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
        self.reward = self.reward.lower()
        for name in ("n_update", "n_suppress", "depth"):
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
        if self.reward not in REWARDS:
            problems.append(f"reward must be one of {REWARDS} (got {self.reward!r})")
        self.credit = self.credit.lower()
        if self.credit not in CREDITS:
            problems.append(f"credit must be one of {CREDITS} (got {self.credit!r})")
        self.probe = self.probe.lower()
        if self.probe not in PROBES:
            problems.append(f"probe must be one of {PROBES} (got {self.probe!r})")
        if not 0 <= self.grad_decay < 1:
            problems.append(f"grad_decay must be in [0, 1) (got {self.grad_decay})")
        if self.sampling not in SAMPLINGS:
            problems.append(f"sampling must be one of {SAMPLINGS} (got {self.sampling!r})")
        problems += nonfinite_fields(self)
        check("IST config", problems)

    def resolve(self, num_layers: int) -> tuple[int, int]:
        """``(n_update, n_suppress)`` as layer counts for ``num_layers`` layers (each >= 1).

        ``n_update`` counts against all layers (the same sparsity whatever ``depth``),
        ``n_suppress`` against the selectable window; both at most the window.
        """
        window = self.window(num_layers)
        n_update = min(window, max(1, math.ceil(self.n_update * num_layers)))
        n_suppress = min(window, max(1, math.ceil(self.n_suppress * window)))
        return n_update, n_suppress

    def window(self, num_layers: int) -> int:
        """How many of the top layers may be selected: ``ceil(depth * num_layers)`` (>= 1)."""
        return min(num_layers, max(1, math.ceil(self.depth * num_layers)))

    def to_dict(self) -> dict:
        return asdict(self)
