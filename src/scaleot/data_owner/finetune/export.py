"""The data owner's side of the adapter format: take the tuned blocks off the model.

:func:`export_adapter` names every tensor by its block's full-model index (the emulator's
layout stays with the data owner) and hands the weights to
:func:`scaleot.exchange.adapter.write_adapter`, which owns the folder's format.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from scaleot.exchange.adapter import rename_blocks, write_adapter
from scaleot.models import arch_spec, get_blocks


def block_state(model: nn.Module, positions: list[int], sources: list[int]) -> dict[str, torch.Tensor]:
    """Weights of the blocks at ``positions`` named ``blocks.<source>.<param>`` (the ``full`` format)."""
    blocks = get_blocks(model)
    out = {}
    for pos, src in zip(positions, sources, strict=True):
        for name, t in blocks[pos].state_dict().items():
            out[f"blocks.{src}.{name}"] = t.detach().cpu().contiguous()
    return out


def export_adapter(
    out: str | Path,
    model: nn.Module,
    positions: list[int],
    sources: list[int],
    info: dict,
    peft_model=None,
    extra_writer=None,
) -> Path:
    """Write the tuned adapter of ``model`` to ``out`` (atomically).

    Args:
        out: target folder (replaced if it exists).
        model: the tuned causal LM (LoRA layers injected for ``lora``/``ist``).
        positions: positions of the trainable blocks in ``model``.
        sources: their full-model block indices.
        info: the ``adapter.json`` fields (method, fingerprints, options, data, validation...).
        peft_model: the ``PeftModel`` for ``lora``/``ist``.
        extra_writer: optional ``callable(folder)`` that adds files (e.g. IST's layer
            importance) before the manifest hashes the folder.
    """
    if info["method"] == "full":
        return write_adapter(out, info, block_state(model, positions, sources), sources, extra_writer=extra_writer)
    from peft import get_peft_model_state_dict

    if peft_model is None:
        raise ValueError("peft_model is required for lora/ist adapters")
    mapping = dict(zip(positions, sources, strict=True))
    blocks_path = arch_spec(model).blocks
    renamed = {rename_blocks(k, blocks_path, mapping): v.detach().cpu().contiguous()
               for k, v in get_peft_model_state_dict(peft_model).items()}
    cfg = copy.deepcopy(peft_model.peft_config["default"])
    cfg.target_modules = sorted(rename_blocks(t, blocks_path, mapping) for t in cfg.target_modules)
    cfg.base_model_name_or_path = info.get("base_model")
    return write_adapter(out, info, renamed, sources, peft_config=cfg, extra_writer=extra_writer)
