"""Configuration of a zero-shot evaluation (``scaleot evaluate`` and the run's ``evaluate:`` section).

One dataclass, each field with its ``--help`` text: ``scaleot evaluate``'s options are
generated from it (:mod:`scaleot.recipes.options`), and the run YAML's ``evaluate:``
section accepts the fields marked ``offsite`` (what the five offsite rows use). Where a
field's flag was spelled otherwise before, the old spelling is kept as an alias
(``--ppl-corpus``, ``--ppl-blocks``, ``--task``). The model, device, dtype and output file
are the run-level options (:class:`scaleot.recipes.run_options.RunOptions`), not fields here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scaleot.errors import check
from scaleot.models.device import AUTOCAST
from scaleot.validate.options import nonfinite_fields

SPLITS = {"test": "test", "dev": "val"}  # --split -> the TaskSplits field it scores


def _opt(default, help: str, **extra):
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class EvaluateConfig:
    """What to evaluate and how (``None`` where the command picks: see each field)."""

    tasks: list[str] | None = _opt(None, "task: gen:<family>, pkg:<family>, a .jsonl file or dataset folder, "
                                   "hf:<dataset>, bigbench:<task>; repeatable (default: the default job's tasks)",
                                   aliases=("--task",))
    split: str = _opt("test", "dev (for choosing tasks and settings) or test (scored once, for the numbers you "
                      "report)")
    limit: int | None = _opt(None, "evaluate only the first N examples of the split", offsite=True)
    split_seed: int = _opt(0, "seed of the task split")
    n_test: int = _opt(400, "test split size")
    n_val: int = _opt(300, "dev split size (held out from train)")
    batch_size: int = _opt(32, "lm-eval batch size (the fast scorer batches by tokens)", offsite=True)
    autocast: str | None = _opt(None, "bf16 autocast of the forwards: none, bf16, auto (auto = bf16 where it is "
                                "fast). Default: auto with --offsite, as scaleot run scores the five rows; none "
                                "for one model's table, which differs from configs/default.yaml (its evaluate: "
                                "section is the offsite rows): exact fp32 on any machine. Every result records "
                                "the precision that ran", offsite=True)
    scorer: str | None = _opt("fast", "fast (one context pass per example, the default) or lm-eval (the "
                              "reference); both give lm-eval's numbers", offsite=True)
    perplexity_corpus: str | None = _opt(None, "also report perplexity on this corpus's held-out text (kjv, .txt, "
                                         ".jsonl)", aliases=("--ppl-corpus",))
    perplexity_blocks: int = _opt(32, "number of 128-token blocks for perplexity", aliases=("--ppl-blocks",))

    def __post_init__(self) -> None:
        from scaleot.evaluation.mc import SCORERS

        problems = nonfinite_fields(self)
        if self.tasks is not None and not self.tasks:
            problems.append("at least one --task is needed")
        if self.split not in SPLITS:
            problems.append(f"--split must be one of {', '.join(SPLITS)} (got {self.split!r})")
        if self.limit is not None and self.limit <= 0:
            problems.append(f"--limit must be > 0 (got {self.limit})")
        if self.batch_size <= 0:
            problems.append(f"--batch-size must be > 0 (got {self.batch_size})")
        if self.scorer is not None and self.scorer not in SCORERS:
            problems.append(f"--scorer must be one of {', '.join(SCORERS)} (got {self.scorer!r})")
        if self.autocast is not None and self.autocast not in AUTOCAST:
            problems.append(f"--autocast must be one of {', '.join(AUTOCAST)} (got {self.autocast!r})")
        if self.perplexity_blocks <= 0:
            problems.append(f"--ppl-blocks must be > 0 (got {self.perplexity_blocks})")
        check("evaluate options", problems)
