"""Options of Dynamic LayerReplace (docs/method.md section 2), with their defaults.

Every knob of the method is a field here; ``ImportanceConfig.to_dict()`` is written
verbatim into ``importance.json["options"]``. The config checks itself on construction
and reports every problem at once (:class:`scaleot.errors.ConfigError`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from scaleot.errors import ScaleOTError, check
from scaleot.exchange.layers import HarmonizerConfig
from scaleot.models.device import AUTOCAST
from scaleot.scores import REWARDS
from scaleot.split import AdapterSplit
from scaleot.validate.options import nonfinite_fields

VARIANTS = ("replace", "drop")


@dataclass
class ImportanceConfig:
    """Dynamic LayerReplace / LayerDrop options.

    Reward scaling (the ``reward`` field; docs/method.md section 2 explains why the paper's
    raw ``exp(-loss)`` does not separate scores in a short run):

    - ``normalized`` (default): ``r_j = -l_j``, ``a_j = (r_j - mean r) / (std r + 1e-6)``.
      Advantages are O(1) whatever the loss scale, so ``eta`` directly sets how many
      steps it takes for scores to separate.
    - ``neg_loss``: ``a_j = -(l_j - mean l)`` (raw loss differences).
    - ``exp``: the paper's ``a_j = exp(-l_j) - mean exp(-l)``.

    Sign convention: a block kept in configurations whose loss is below the mean gets
    ``s_i += eta * a_j * p_i (1 - p_i)`` with ``a_j > 0``, so a block whose presence
    lowers the loss gains score; ``keep_prob = sigmoid(s_i)``.
    """

    n_bottom: int = field(default=2, metadata={"help": "adapter blocks at the bottom (never scored)"})
    n_top: int = field(default=2, metadata={"help": "adapter blocks at the top (never scored)"})
    variant: str = field(default="replace", metadata={"help": f"one of {VARIANTS}: harmonizer or identity"})
    steps: int = field(default=60, metadata={"help": "harmonizer steps (score steps every `score_every`)"})
    group_size: int = field(default=4, metadata={"help": "N_g: consecutive middle blocks per sampling group"})
    n_configs: int = field(default=3, metadata={"help": "N_c: configurations sampled per score step"})
    score_every: int = field(default=1, metadata={"help": "T: one score step every T harmonizer steps"})
    eta: float = field(default=0.2, metadata={"help": "score learning rate"})
    reward: str = field(default="normalized", metadata={"help": f"one of {REWARDS}"})
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate of the harmonizers"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    batch_size: int = field(default=4, metadata={"help": "sequences per harmonizer step (global)"})
    score_batch_size: int = field(default=4, metadata={"help": "held-out sequences per score step (global)"})
    block_size: int = field(default=128, metadata={"help": "tokens per sequence"})
    heldout_fraction: float = field(default=0.05, metadata={"help": "last part of the corpus kept for scoring"})
    max_train_blocks: int = field(default=4096, metadata={"help": "cap on training sequences read"})
    max_heldout_blocks: int = field(default=256, metadata={"help": "cap on held-out sequences read"})
    autocast: str = field(default="auto", metadata={"help": f"one of {AUTOCAST}: bf16 autocast of the forwards (auto = where it is fast)"})
    seed: int = field(default=0, metadata={"help": "seed of sampling, data order and harmonizer init"})
    checkpoint_every: int = field(default=20, metadata={"help": "steps between checkpoints (0 = never)"})
    harmonizer: HarmonizerConfig = field(default_factory=HarmonizerConfig,
                                         metadata={"help": "the harmonizers' shape"})

    def __post_init__(self) -> None:
        if isinstance(self.harmonizer, dict):
            self.harmonizer = HarmonizerConfig(**self.harmonizer)
        self.variant, self.reward, self.autocast = self.variant.lower(), self.reward.lower(), self.autocast.lower()
        p = []
        try:
            self.split  # noqa: B018 (validates n_bottom, n_top)
        except ScaleOTError as e:
            p.append(str(e))
        for name in ("checkpoint_every", "max_heldout_blocks"):
            if getattr(self, name) < 0:
                p.append(f"{name} must be >= 0 (got {getattr(self, name)})")
        for name in ("steps", "group_size", "n_configs", "score_every", "batch_size", "score_batch_size",
                     "block_size", "max_train_blocks"):
            if getattr(self, name) <= 0:
                p.append(f"{name} must be > 0 (got {getattr(self, name)})")
        if self.n_configs < 2:
            p.append(f"n_configs must be >= 2 for a mean baseline (got {self.n_configs})")
        if self.variant not in VARIANTS:
            p.append(f"variant must be one of {VARIANTS} (got {self.variant!r})")
        if self.reward not in REWARDS:
            p.append(f"reward must be one of {REWARDS} (got {self.reward!r})")
        if self.autocast not in AUTOCAST:
            p.append(f"autocast must be one of {AUTOCAST} (got {self.autocast!r})")
        if not self.eta > 0:
            p.append(f"eta must be > 0 (got {self.eta})")
        if not self.lr > 0:
            p.append(f"lr must be > 0 (got {self.lr})")
        if not 0 < self.heldout_fraction < 1:
            p.append(f"heldout_fraction must be in (0, 1) (got {self.heldout_fraction})")
        p += nonfinite_fields(self)
        check("importance config", p)

    @property
    def split(self) -> AdapterSplit:
        """The adapter split ``N_a`` (``--adapter``)."""
        return AdapterSplit(self.n_bottom, self.n_top)

    def middle(self, num_blocks: int) -> list[int]:
        """Indices of the middle (scored) blocks of a model with ``num_blocks`` blocks.

        Raises:
            ConfigError: the adapter leaves no middle block.
        """
        return self.split.middle(num_blocks)

    def to_dict(self) -> dict:
        return asdict(self)

    # Options that may differ between a run and its resumption.
    RESUMABLE_CHANGES = ("steps", "checkpoint_every")
