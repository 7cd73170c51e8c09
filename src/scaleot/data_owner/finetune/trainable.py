"""Which weights train: the adapter blocks only (full), or LoRA on them (lora). docs/method.md section 1.

Everything else (embeddings, final norm, LM head, the emulator's middle) is frozen with
``requires_grad=False``, so autograd computes no weight gradient for it and AdamW keeps
no state for it. LoRA targets come from the architecture table's ``attn`` and ``mlp``
roles of the trainable blocks only, named by their full dotted path so no other module
can match.

Names inside a model follow *positions* (where a block sits in this model); names in a
tuned adapter follow *sources* (the block's index in the full model):
:func:`scaleot.exchange.adapter.rename_blocks` maps one to the other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from scaleot.models import arch_spec, get_blocks

if TYPE_CHECKING:  # the config holds the registry that calls back into this module
    from scaleot.data_owner.finetune.config import FinetuneConfig


def freeze_all_but_blocks(model: nn.Module, positions: list[int]) -> list[str]:
    """Freeze every parameter except those of the blocks at ``positions``.

    Returns:
        Names (as in ``model.named_parameters()``) of the parameters left trainable.
    """
    model.requires_grad_(False)
    blocks = get_blocks(model)
    for pos in positions:
        blocks[pos].requires_grad_(True)
    return [n for n, p in model.named_parameters() if p.requires_grad]


def lora_target_names(model: nn.Module, positions: list[int]) -> list[str]:
    """Full dotted names of every attention/MLP projection in the blocks at ``positions``."""
    spec = arch_spec(model)
    roles = list(spec.attn.values()) + list(spec.mlp.values())
    return [f"{spec.blocks}.{pos}.{path}" for pos in positions for path in roles]


def apply_lora(model: nn.Module, positions: list[int], config: FinetuneConfig):
    """Wrap ``model`` with peft LoRA on the projections of the blocks at ``positions``.

    Returns:
        The ``PeftModel``; its base model (``.get_base_model()``) is ``model`` itself with
        LoRA layers injected, and only ``lora_A``/``lora_B`` weights are trainable.
    """
    from peft import LoraConfig, get_peft_model

    model.requires_grad_(False)
    lora = LoraConfig(
        r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=lora_target_names(model, positions), bias="none",
        fan_in_fan_out=arch_spec(model).transposed, task_type="CAUSAL_LM",
    )
    torch.manual_seed(config.seed)
    return get_peft_model(model, lora)


def count_params(model: nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}
