"""Options of ``scaleot audit`` (docs/method.md section 9, "Recovery attack").

One dataclass, validated at once in ``__post_init__`` (every problem in one
:class:`~scaleot.errors.ConfigError` line). ``scaleot audit``'s options and the ``audit:``
section of the run YAML are generated from it (:mod:`scaleot.recipes.options`).

Three groups of fields:

- what to measure on: ``tasks`` (the audit tasks), ``n_test``/``split_seed`` (their test
  split, the same cut as ``scaleot finetune``'s), ``ppl_corpus``/``ppl_blocks`` (held-out
  generic text for perplexity);
- the attacker's recipe: ``attack_corpus`` (public text that is *not* the stage-1 corpus),
  ``budgets`` (cumulative token budgets), AdamW with ``attack_lr``, ``attack_batch`` blocks of
  ``block_size`` tokens a step;
- the owner's release thresholds: ``max_recovery``, ``max_recovered_acc``, ``max_fidelity``, ``min_gap``; a
  shipped near-copy of a withheld weight, or an attention projection above its promised
  rank, always fails.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from scaleot.data.tasks import DEFAULT_TASKS as DEFAULT_TASK_NAMES
from scaleot.errors import check
from scaleot.models.device import AUTOCAST
from scaleot.validate.options import nonfinite_fields

DEFAULT_TASKS = ",".join(DEFAULT_TASK_NAMES)  # configs/default.yaml's
# The transfer check's proxy tasks: generated families outside the transfer suite whose reference
# adapter gains the most on dev (bench/results/suite/choose_dev.md: +41.7, +58.7, +33.0 points)
PROXY_TASKS = ("gen:arithmetic", "gen:sequence", "gen:alphabetical")
OPTIMIZER = "AdamW (betas 0.9/0.999, constant lr, no weight decay, grad-norm clip 1.0)"
# The attack draws its batches from the first ATTACK_POOL_TOKENS tokens of the attack corpus (all
# of it when shorter), reshuffled every pass. The pool does not depend on the budgets, so adding
# a larger budget on --resume continues the very batches an uninterrupted run would have seen.
ATTACK_POOL_TOKENS = 4_000_000


def _opt(default, help: str, **extra):
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class AuditConfig:
    """What ``scaleot audit`` measures, how the attacker works, and when the release fails."""

    tasks: str = _opt(DEFAULT_TASKS, "audit tasks, comma-separated (gen:<family>, pkg:<family>, a .jsonl file, ...)")
    n_test: int = _opt(500, "test examples per task (the same seeded cut as scaleot finetune)")
    split_seed: int = _opt(0, "seed of the task split")
    scorer: str = _opt("fast", "multiple-choice scorer: fast or lm-eval (same predictions)")
    ppl_corpus: str = _opt("kjv", "generic text whose held-out tail measures perplexity")
    ppl_blocks: int = _opt(32, "held-out blocks for perplexity")
    attack_corpus: str = _opt("python-docs", "attacker's public text (must differ from the owner's corpora)")
    owner_corpus: str = _opt("kjv", "the owner's stage-1 (harmonizer) corpus, which the attacker must not use")
    budgets: str = _opt("100000,500000,2000000", "cumulative attack token budgets, comma-separated, increasing")
    attack_lr: float = _opt(1e-4, "attacker's AdamW learning rate (every emulator parameter trains)")
    attack_batch: int = _opt(4, "attacker's blocks per step")
    block_size: int = _opt(128, "tokens per text block (attack and perplexity)")
    checkpoint_every: int = _opt(50, "attack steps between checkpoints (every budget end is one too)")
    autocast: str = _opt("auto", f"one of {AUTOCAST}: bf16 autocast of the attack's forwards where fast")
    near_copy_cos: float = _opt(0.99, "|cosine| at which a shipped row/column copies a withheld one")
    rank_rtol: float = _opt(1e-4, "singular values above rank_rtol * largest count toward effective rank")
    max_recovery: float | None = _opt(0.5, "fail when R at the largest budget exceeds this (unset: no check)")
    max_recovered_acc: float | None = _opt(
        None, "fail when the attacked emulator's accuracy (pooled, fraction) at the largest budget exceeds this")
    max_fidelity: float | None = _opt(None, "fail when fidelity at the largest budget exceeds this")
    min_gap: float | None = _opt(None, "fail when Full ZS - Emu ZS (pooled, fraction) is below this")
    transfer_tasks: str = _opt(",".join(PROXY_TASKS),
                               "the model owner's proxy tasks for the transfer check, comma-separated (generated "
                               "ones, never the data owner's; empty: no check)")
    min_transfer_ratio: float | None = _opt(
        None, "fail when the proxies' median ceiling ratio (Plug-in - Full ZS) / (reference - Full ZS) is below this")
    seed: int = _opt(0, "seed of the attacker's data order")
    keep_checkpoints: bool = _opt(False, "keep the attack's checkpoints after the audit finishes")

    def __post_init__(self) -> None:
        self.scorer, self.autocast = str(self.scorer).lower(), str(self.autocast).lower()
        p = []
        if not self.task_list:
            p.append("tasks must name at least one task")
        try:
            budgets = self.budget_list
        except ValueError:
            budgets = None
            p.append(f"budgets must be comma-separated whole token counts (got {self.budgets!r})")
        if budgets is not None and (not budgets or any(b < 1 for b in budgets)
                                    or any(a >= b for a, b in zip(budgets, budgets[1:], strict=False))):
            p.append(f"budgets must be positive and increasing (got {self.budgets!r})")
        for name in ("n_test", "ppl_blocks", "attack_batch", "block_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                p.append(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.scorer not in ("fast", "lm-eval"):
            p.append(f"scorer must be fast or lm-eval (got {self.scorer!r})")
        if self.autocast not in AUTOCAST:
            p.append(f"autocast must be one of {', '.join(AUTOCAST)} (got {self.autocast!r})")
        if self.attack_lr <= 0:
            p.append(f"attack_lr must be > 0 (got {self.attack_lr})")
        if not 0.0 < self.near_copy_cos <= 1.0:
            p.append(f"near_copy_cos must be in (0, 1] (got {self.near_copy_cos})")
        if not 0.0 < self.rank_rtol < 1.0:
            p.append(f"rank_rtol must be in (0, 1) (got {self.rank_rtol})")
        if self.attack_corpus == self.owner_corpus:
            p.append(f"attack_corpus must differ from the owner's stage-1 corpus (both {self.attack_corpus!r})")
        p += nonfinite_fields(self)
        check("audit config", p)

    @property
    def task_list(self) -> list[str]:
        return [t.strip() for t in str(self.tasks).split(",") if t.strip()]

    @property
    def transfer_task_list(self) -> list[str]:
        return [t.strip() for t in str(self.transfer_tasks or "").split(",") if t.strip()]

    @property
    def budget_list(self) -> list[int]:
        """Cumulative token budgets (``"1e5,5e5"`` and ``"100k"`` are accepted too)."""
        out = []
        for b in str(self.budgets).split(","):
            b = b.strip().lower()
            scale = {"k": 1_000, "m": 1_000_000}.get(b[-1:], 1)
            value = float(b[:-1] if scale > 1 else b) * scale
            if value != int(value):
                raise ValueError(b)
            out.append(int(value))
        return out

    def steps_for(self, budget: int) -> int:
        """Attack steps that consume ``budget`` tokens (rounded up to whole steps)."""
        per_step = self.attack_batch * self.block_size
        return -(-budget // per_step)

    def attack_recipe(self) -> dict:
        """The attacker's recipe as the report records it."""
        return {"optimizer": OPTIMIZER, "lr": self.attack_lr, "batch_blocks": self.attack_batch,
                "block_size": self.block_size, "tokens_per_step": self.attack_batch * self.block_size,
                "corpus": self.attack_corpus, "pool_tokens_max": ATTACK_POOL_TOKENS, "budgets_tokens": self.budget_list,
                "steps": [self.steps_for(b) for b in self.budget_list], "trains": "every emulator parameter",
                "seed": self.seed, "autocast": self.autocast}

    def to_dict(self) -> dict:
        return asdict(self)
