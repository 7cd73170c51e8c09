"""Options of task fine-tuning (the data owner's step, and the FT row). METHOD.md section 1."""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass, field

from scaleot.errors import check
from scaleot.validate.options import nonfinite_fields

SCHEDULES = ("linear", "cosine", "constant", "constant_with_warmup")


def available_methods() -> tuple[str, ...]:
    """``full`` and ``lora`` always; ``ist`` once :mod:`scaleot.tuners.ist` exists."""
    methods = ("full", "lora")
    try:
        has_ist = importlib.util.find_spec("scaleot.tuners.ist") is not None
    except ModuleNotFoundError:
        has_ist = False
    return methods + ("ist",) if has_ist else methods


@dataclass
class FinetuneConfig:
    """Everything that shapes a fine-tuning run; recorded in ``adapter.json``.

    Attributes:
        method: ``full`` (every weight of the trainable blocks), ``lora`` (peft LoRA on the
            attention and MLP projections of the trainable blocks) or ``ist`` (sparse LoRA,
            METHOD.md section 4; needs :mod:`scaleot.tuners.ist`).
        lr: peak learning rate; ``None`` = 1e-4 for ``full``, 1e-3 for ``lora``/``ist``.
        epochs: passes over the training split.
        max_steps: cap on optimizer steps (``None`` = no cap).
        batch_size: examples per micro-batch (per process under data parallel).
        grad_accum: micro-batches per optimizer step.
        max_length: tokens per example (context truncated from the left).
        schedule: ``transformers.get_scheduler`` name.
        warmup_ratio: fraction of the optimizer steps spent warming up.
        weight_decay: AdamW weight decay.
        max_grad_norm: gradient clipping (0 = off).
        seed: seed of the data order and of LoRA initialisation.
        n_train / n_val / n_test / split_seed: the task split (see ``scaleot.data.SplitConfig``).
        val_limit: at most this many validation examples scored per epoch (``None`` = all).
        eval_batch_size: examples per batch when scoring validation accuracy.
        checkpoint_every: save a resumable checkpoint every N optimizer steps (0 = per epoch only).
        lora_rank / lora_alpha / lora_dropout: LoRA shape.
        bf16: bf16 autocast for forward/backward (fp32 master weights and optimizer state).
        device: ``auto``, ``cpu``, ``cuda``...
    """

    method: str = "full"
    lr: float | None = None
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 256
    schedule: str = "linear"
    warmup_ratio: float = 0.06
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    n_train: int | None = None
    n_val: int = 100
    n_test: int = 500
    split_seed: int = 0
    val_limit: int | None = None
    eval_batch_size: int = 16
    checkpoint_every: int = 0
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    bf16: bool = False
    device: str | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        methods = available_methods()
        if self.method not in methods:
            problems.append(f"method must be one of {', '.join(methods)} (got {self.method!r})")
        if self.lr is None:
            self.lr = 1e-4 if self.method == "full" else 1e-3
        if self.lr <= 0:
            problems.append(f"lr must be > 0 (got {self.lr})")
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1 (got {self.epochs})")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append(f"steps must be >= 1 (got {self.max_steps})")
        for name in ("batch_size", "grad_accum", "max_length", "eval_batch_size", "lora_rank"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1 (got {getattr(self, name)})")
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
        if self.checkpoint_every < 0:
            problems.append(f"checkpoint_every must be >= 0 (got {self.checkpoint_every})")
        if not 0 <= self.lora_dropout < 1:
            problems.append(f"lora_dropout must be in [0, 1) (got {self.lora_dropout})")
        problems += nonfinite_fields(self)
        check("finetune config", problems)

    def to_dict(self) -> dict:
        return asdict(self)

    def split_config(self):
        from scaleot.data import SplitConfig

        return SplitConfig(seed=self.split_seed, n_test=self.n_test, n_val=self.n_val, n_train=self.n_train)
