"""Plug a tuned adapter into the full model: ``[A', E]`` (METHOD.md section 1, step 4).

The model owner checks that the adapter was tuned on an emulator of *this* model (the
adapter records the base model's fingerprint) and refuses anything else. ``full``
adapters replace the weights of their blocks (named by full-model index); ``lora``/``ist``
adapters are loaded with peft and merged, so the result is a plain transformers model.
"""

from __future__ import annotations

import time
from pathlib import Path

from torch import nn

from scaleot.errors import ScaleOTError
from scaleot.finetune.adapter_io import TunedAdapter, read_adapter
from scaleot.manifest import atomic_output_dir, write_json_atomic, write_manifest
from scaleot.models import fingerprint_model, get_blocks, load_model, num_blocks

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


def plug_into(model: nn.Module, adapter: TunedAdapter | str | Path, check: bool = True) -> nn.Module:
    """Return ``model`` with the adapter's weights in place (LoRA merged).

    ``model`` is modified in place for ``full``; for ``lora``/``ist`` the merged base model
    (the same object, LoRA layers removed) is returned.
    """
    if not isinstance(adapter, TunedAdapter):
        adapter = read_adapter(adapter)
    if check:
        check_adapter_fits(model, adapter)
    if adapter.method == "full":
        blocks = get_blocks(model)
        per_block: dict[int, dict] = {}
        for key, t in adapter.full_weights().items():
            _, idx, name = key.split(".", 2)
            per_block.setdefault(int(idx), {})[name] = t
        if sorted(per_block) != sorted(adapter.sources):
            raise ScaleOTError(f"adapter {adapter.path}: tensors do not match its adapter_sources")
        for idx, state in per_block.items():
            missing, unexpected = blocks[idx].load_state_dict(state, strict=False)
            if missing or unexpected:
                raise ScaleOTError(f"adapter {adapter.path}: block {idx} does not fit "
                                   f"(missing {missing[:2]}, unexpected {unexpected[:2]})")
        return model
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(model, str(adapter.path), is_trainable=False)
    return peft_model.merge_and_unload()


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
