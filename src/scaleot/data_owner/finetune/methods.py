"""The tuning methods ``scaleot finetune --method`` knows: one registry (docs/method.md section 4).

Each :class:`TuningMethod` says how to make a model's adapter blocks trainable and, for
sparse methods, which *step controller* steers the loop (:mod:`scaleot.data_owner.finetune.loop`).
Adding a method = one entry here; :class:`~scaleot.data_owner.finetune.config.FinetuneConfig`, the
CLI help and the run YAML read the names from :data:`TUNING_METHODS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class TuningMethod:
    """One way of tuning the adapter blocks.

    Attributes:
        name: the ``--method`` value.
        help: one line for ``--help``.
        default_lr: the peak learning rate when ``lr`` is not given.
        prepare: ``(model, positions, config, tokenizer) -> (peft_model | None, controller | None)``;
            freezes everything but what trains at ``positions``.
    """

    name: str
    help: str
    default_lr: float
    prepare: Callable


def _full(model: nn.Module, positions: list[int], config, tokenizer):
    from scaleot.data_owner.finetune.trainable import freeze_all_but_blocks

    freeze_all_but_blocks(model, positions)
    return None, None


def _lora(model: nn.Module, positions: list[int], config, tokenizer):
    from scaleot.data_owner.finetune.trainable import apply_lora

    return apply_lora(model, positions, config), None


def _ist(model: nn.Module, positions: list[int], config, tokenizer):
    from scaleot.data_owner.finetune.trainable import apply_lora
    from scaleot.data_owner.tuners.ist import make_controller

    peft_model = apply_lora(model, positions, config)
    return peft_model, make_controller(peft_model, positions, config, tokenizer=tokenizer,
                                       ist_config=config.ist)


TUNING_METHODS: dict[str, TuningMethod] = {m.name: m for m in (
    TuningMethod("full", "every weight of the adapter blocks", 3e-4, _full),  # measured: BENCHMARKS.md, "Transfer"
    TuningMethod("lora", "peft LoRA on the adapter blocks' attention and MLP projections", 1e-3, _lora),
    TuningMethod("ist", "importance-aware sparse LoRA: a few blocks' LoRA train per step (ist: options)",
                 1e-3, _ist),
)}
