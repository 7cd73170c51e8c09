"""Plug a tuned adapter into the full model: ``[A', E]`` (docs/method.md section 1, step 4).

The model owner checks that the adapter was tuned on an emulator of *this* model (the
adapter records the base model's fingerprint) and refuses anything else. ``full``
adapters replace the weights of their blocks (named by full-model index); ``lora``/``ist``
adapters are merged (``W += lora_alpha / r * B @ A``, what peft's ``merge_and_unload`` does),
so the result is a plain transformers model. The same function puts an adapter back into
its emulator (the Emu FT row) through a source -> position map.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from scaleot.adapter import TunedAdapter, read_adapter, rename_blocks
from scaleot.errors import ScaleOTError
from scaleot.manifest import atomic_output_dir, read_json, write_json_atomic, write_manifest
from scaleot.models import (
    arch_spec,
    fingerprint_model,
    get_blocks,
    get_submodule,
    load_model,
    num_blocks,
)

PLUGGED_KIND = "plugged-model"


def check_adapter_fits(model: nn.Module, adapter: TunedAdapter, fingerprint: str | None = None) -> None:
    """Refuse an adapter whose recorded base model is not ``model``.

    Raises:
        ScaleOTError: fingerprint mismatch, or block indices outside the model.
    """
    fingerprint = fingerprint or fingerprint_model(model)
    theirs = adapter.info.get("base_fingerprint")
    if theirs != fingerprint:
        raise ScaleOTError(
            f"adapter {adapter.path} was tuned for another model (base fingerprint {str(theirs)[:19]}..., "
            f"this model is {fingerprint[:19]}...); refusing to plug it in"
        )
    n = num_blocks(model)
    bad = [i for i in adapter.sources if not 0 <= i < n]
    if bad:
        raise ScaleOTError(f"adapter {adapter.path} names blocks {bad} outside this model's {n} blocks")


def lora_deltas(adapter: TunedAdapter) -> dict[str, torch.Tensor]:
    """``{module path (full-model numbering): delta W [out, in]}`` of a LoRA adapter.

    ``delta W = scaling * B @ A`` with ``scaling = lora_alpha / r`` (``/ sqrt(r)`` for rsLoRA),
    exactly what peft's ``merge_and_unload`` adds.
    """
    cfg = read_json(adapter.path / "adapter_config.json", "adapter_config.json")
    r, alpha = cfg["r"], cfg["lora_alpha"]
    scaling = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
    state = load_file(str(adapter.path / "adapter_model.safetensors"))
    deltas = {}
    for key, a in state.items():
        if ".lora_A." not in key:
            continue
        path = key.split(".lora_A.")[0].removeprefix("base_model.model.")
        b = state[key.replace(".lora_A.", ".lora_B.")]
        deltas[path] = (b.float() @ a.float()) * scaling
    if not deltas:
        raise ScaleOTError(f"adapter {adapter.path}: no LoRA weights in adapter_model.safetensors")
    return deltas


def plug_into(model: nn.Module, adapter: TunedAdapter | str | Path, check: bool = True,
              block_of_source: dict[int, int] | None = None) -> nn.Module:
    """Put the adapter's weights into ``model`` in place (LoRA merged) and return it.

    Args:
        model: the full model, or an emulator (then pass ``block_of_source`` and ``check=False``).
        adapter: a tuned adapter (folder or :class:`TunedAdapter`).
        check: refuse an adapter whose base fingerprint is not ``model``'s.
        block_of_source: full-model block index -> position in ``model`` (default identity);
            an emulator's ``dict(zip(adapter_sources, adapter_positions))`` gives Emu FT.
    """
    if not isinstance(adapter, TunedAdapter):
        adapter = read_adapter(adapter)
    if check:
        check_adapter_fits(model, adapter)
    mapping = block_of_source or {i: i for i in adapter.sources}
    missing_src = [s for s in adapter.sources if s not in mapping]
    if missing_src:
        raise ScaleOTError(f"adapter {adapter.path}: blocks {missing_src} have no place in this model")
    spec = arch_spec(model)
    blocks = get_blocks(model)
    if adapter.method == "full":
        per_block: dict[int, dict] = {}
        for key, t in adapter.full_weights().items():
            _, idx, name = key.split(".", 2)
            per_block.setdefault(int(idx), {})[name] = t
        if sorted(per_block) != sorted(adapter.sources):
            raise ScaleOTError(f"adapter {adapter.path}: tensors do not match its adapter_sources")
        for idx, state in per_block.items():
            missing, unexpected = blocks[mapping[idx]].load_state_dict(state, strict=False)
            if missing or unexpected:
                raise ScaleOTError(f"adapter {adapter.path}: block {idx} does not fit "
                                   f"(missing {missing[:2]}, unexpected {unexpected[:2]})")
        return model
    with torch.no_grad():
        for path, delta in lora_deltas(adapter).items():
            target = get_submodule(model, rename_blocks(path, spec.blocks, mapping))
            w = target.weight
            w.add_((delta.t() if spec.transposed else delta).to(w.dtype))
    return model


def plug(model: str, adapter: str | Path, out: str | Path, device: str | None = None) -> Path:
    """Load ``model``, plug ``adapter`` in, write a standard HF model folder to ``out``.

    The folder loads with ``AutoModelForCausalLM.from_pretrained``; ``plugin.json``
    records the adapter and both fingerprints; ``manifest.json`` has kind ``plugged-model``.
    """
    t0 = time.perf_counter()
    tuned = read_adapter(adapter)
    full, tokenizer = load_model(model, device=device)
    base_fp = fingerprint_model(full)
    check_adapter_fits(full, tuned, base_fp)
    plugged = plug_into(full, tuned, check=False)
    with atomic_output_dir(out) as tmp:
        plugged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json_atomic(tmp / "plugin.json", {
            "format_version": 1, "base_model": model, "base_fingerprint": base_fp,
            "adapter": str(adapter), "adapter_method": tuned.method,
            "adapter_sources": tuned.sources, "emulator_fingerprint": tuned.info.get("emulator_fingerprint"),
            "plugged_fingerprint": fingerprint_model(plugged), "seconds": round(time.perf_counter() - t0, 2),
        })
        write_manifest(tmp, PLUGGED_KIND, {"base_model": model, "adapter_method": tuned.method})
    return Path(out)
