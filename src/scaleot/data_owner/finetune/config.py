"""Options of task fine-tuning (the data owner's step, and the FT row). docs/method.md section 1.

Every field carries its ``--help`` text in ``metadata["help"]``: ``scaleot finetune``'s
options and the ``finetune:``/``ft:`` sections of the run YAML are generated from this
dataclass (:mod:`scaleot.recipes.options`), under the same names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from scaleot.data_owner.finetune.methods import TUNING_METHODS
from scaleot.data_owner.tuners.ist.config import ISTConfig
from scaleot.errors import check
from scaleot.models.device import AUTOCAST
from scaleot.validate.options import nonfinite_fields

SCHEDULES = ("linear", "cosine", "constant", "constant_with_warmup")
MAX_LENGTH = 1 << 17  # tokens per example: beyond any supported model's context
MAX_COUNT = 1 << 31  # any other count (steps, batch sizes, examples, rank): past it is a typo


def _opt(default, help: str, **extra):
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class FinetuneConfig:
    """Everything that shapes a fine-tuning run; recorded in ``adapter.json``.

    ``method`` names an entry of :data:`scaleot.data_owner.finetune.methods.TUNING_METHODS`;
    ``ist`` (an :class:`~scaleot.data_owner.tuners.ist.ISTConfig`, or a dict of its fields) shapes
    ``method: ist`` and defaults to ``ISTConfig(seed=seed)`` for it; it must stay unset
    for the other methods. ``n_train``/``n_val``/``n_test``/``split_seed`` are the task
    split (:class:`scaleot.data.SplitConfig`); ``seed`` is the data order and LoRA init.
    The device is a run-level option, not a field: :func:`~scaleot.data_owner.finetune.train`
    takes it (``device=``), and :meth:`record` writes it where ``adapter.json`` keeps it.
    """

    method: str = _opt("full", "tuning method: " + ", ".join(TUNING_METHODS))
    lr: float | None = _opt(None, "peak learning rate (default: 3e-4 full, the data owner's measured setting; "
                            "1e-3 lora/ist; the FT row of configs/default.yaml, tuned on the full model, "
                            "uses 5e-5)")
    epochs: int = _opt(1, "passes over the training split")
    max_steps: int | None = _opt(25, "cap on optimizer steps (25, half an epoch of 400 examples, is what "
                                 "transfers: longer tuning fits the adapter to the emulator; the FT row of "
                                 "configs/default.yaml, max_steps: null, runs every epoch)", aliases=("--steps",))
    batch_size: int = _opt(8, "examples per micro-batch (per process under data parallel)")
    grad_accum: int = _opt(1, "micro-batches per optimizer step")
    max_length: int = _opt(128, "tokens per example (context truncated from the left)")
    schedule: str = _opt("linear", "learning-rate schedule: " + ", ".join(SCHEDULES))
    warmup_ratio: float = _opt(0.06, "fraction of the optimizer steps spent warming up")
    weight_decay: float = _opt(0.0, "AdamW weight decay")
    max_grad_norm: float = _opt(1.0, "gradient clipping norm (0 = off)")
    seed: int = _opt(0, "seed of the data order and of LoRA initialisation")
    n_train: int | None = _opt(400, "training examples (at most; the task's examples left after test and "
                               "validation when fewer)")
    n_val: int = _opt(300, "dev examples, held out from training (choices are made on dev: docs/method.md section 7)")
    n_test: int = _opt(400, "test examples held out (never trained on; scored once, for reporting)")
    split_seed: int = _opt(0, "seed of the task split")
    val_limit: int | None = _opt(50, "at most this many dev examples scored per epoch to pick the best epoch")
    eval_batch_size: int = _opt(32, "examples per batch when scoring validation accuracy")
    checkpoint_every: int = _opt(0, "save a resumable checkpoint every N optimizer steps (0 = per epoch)")
    lora_rank: int = _opt(8, "LoRA rank r (lora, ist)")
    lora_alpha: float | None = _opt(None, "LoRA alpha (default: 2 x lora_rank)")
    lora_dropout: float = _opt(0.0, "LoRA dropout")
    autocast: str = _opt("none", "bf16 autocast of forward/backward (fp32 master weights): "
                         + ", ".join(AUTOCAST) + " (auto = bf16 where it is fast). none differs from "
                         "configs/default.yaml (auto): a run's numbers then do not depend on the CPU it "
                         "lands on; the shipped job asks for auto, bf16 where it is fast")
    ist: ISTConfig | None = _opt(None, "IST options (method ist; default: ISTConfig with seed = seed)")

    def __post_init__(self) -> None:
        problems = []
        if isinstance(self.ist, dict):
            self.ist = ISTConfig(**dict({"seed": self.seed}, **self.ist))
        if self.method not in TUNING_METHODS:
            problems.append(f"method must be one of {', '.join(TUNING_METHODS)} (got {self.method!r})")
        elif self.method == "ist" and self.ist is None:
            self.ist = ISTConfig(seed=self.seed)
        elif self.method != "ist" and self.ist is not None:
            problems.append(f"ist options apply to method 'ist' only (got method {self.method!r})")
        if self.lr is None and self.method in TUNING_METHODS:
            self.lr = TUNING_METHODS[self.method].default_lr
        if self.lora_alpha is None:
            self.lora_alpha = 2.0 * self.lora_rank
        self.autocast = str(self.autocast).lower()
        if self.autocast not in AUTOCAST:
            problems.append(f"autocast must be one of {', '.join(AUTOCAST)} (got {self.autocast!r})")
        if self.lr is not None and self.lr <= 0:
            problems.append(f"lr must be > 0 (got {self.lr})")
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1 (got {self.epochs})")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append(f"steps must be >= 1 (got {self.max_steps})")
        for name in ("batch_size", "grad_accum", "max_length", "eval_batch_size", "lora_rank"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.max_length > MAX_LENGTH:
            problems.append(f"max_length must be <= {MAX_LENGTH} tokens (got {self.max_length:.3g})")
        for name in ("epochs", "max_steps", "batch_size", "grad_accum", "eval_batch_size", "lora_rank", "n_train",
                     "n_val", "n_test", "val_limit", "checkpoint_every", "seed", "split_seed"):
            v = getattr(self, name)
            if isinstance(v, int) and abs(v) >= MAX_COUNT:
                problems.append(f"{name} must be below {MAX_COUNT} (got {v:.3g})")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule must be one of {', '.join(SCHEDULES)} (got {self.schedule!r})")
        if not 0 <= self.warmup_ratio < 1:
            problems.append(f"warmup_ratio must be in [0, 1) (got {self.warmup_ratio})")
        if self.n_val < 1:
            problems.append(f"n_val must be >= 1: validation accuracy picks the best epoch (got {self.n_val})")
        if self.n_test < 1:
            problems.append(f"n_test must be >= 1 (got {self.n_test})")
        if self.n_train is not None and self.n_train < 1:
            problems.append(f"n_train must be >= 1 (got {self.n_train})")
        if self.val_limit is not None and self.val_limit < 1:
            problems.append(f"val_limit must be >= 1 (got {self.val_limit})")
        if self.checkpoint_every < 0:
            problems.append(f"checkpoint_every must be >= 0 (got {self.checkpoint_every})")
        if not 0 <= self.lora_dropout < 1:
            problems.append(f"lora_dropout must be in [0, 1) (got {self.lora_dropout})")
        if self.max_grad_norm < 0 or self.weight_decay < 0:
            problems.append("max_grad_norm and weight_decay must be >= 0")
        problems += nonfinite_fields(self)
        check("finetune config", problems)

    def to_dict(self) -> dict:
        """The fields as a dict (``ist`` as a dict too)."""
        return asdict(self)

    def record(self, device: str | None) -> dict:
        """The options as ``adapter.json`` and the run folder record them (a ``--resume`` checks them).

        The run-level ``device`` (``--device``, the run's ``device:``) is written between
        ``autocast`` and ``ist``, where the config's field stood before issue 29, so the
        document is the same as before: old adapters and run folders read and resume as
        they did, and a resume may still change the device (``may_change``) and nothing else.

        Args:
            device: the device the run was asked for (``None``: unset, auto).
        """
        d = self.to_dict()
        ist = d.pop("ist")
        return {**d, "device": device, "ist": ist}

    def split_config(self):
        from scaleot.data import SplitConfig

        return SplitConfig(seed=self.split_seed, n_test=self.n_test, n_val=self.n_val, n_train=self.n_train)
