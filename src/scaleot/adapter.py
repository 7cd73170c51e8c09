"""The tuned adapter format: what the data owner sends back (docs/method.md section 1, step 3).

A peer of :mod:`scaleot.emulator.bundle`: the data owner's fine-tuning writes it
(:func:`write_adapter`), the model owner's ``plug`` and the evaluation read it
(:func:`read_adapter`), and neither side needs the other's code.

Layout (``manifest.json`` of kind ``"adapter"`` holds the sha256 of every file)::

    adapter.json                 method, fingerprints, split, options, data split sizes, curve
    adapter.safetensors          (full) ``blocks.<full-model index>.<param>`` tensors
    adapter_config.json          (lora, ist) peft's config, targets named by full-model index
    adapter_model.safetensors    (lora, ist) peft's weights, named by full-model index

Tensors are always named by the block's index in the *full* model, so the model owner
plugs them in without knowing how the emulator was laid out. No training data, prompt or
example is ever written here: only weights, sizes and accuracies.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from scaleot.errors import ScaleOTError
from scaleot.manifest import (
    atomic_output_dir,
    verify_manifest,
    write_json_atomic,
    write_manifest,
)
from scaleot.models import arch_spec, get_blocks
from scaleot.safetensors_io import save_tensors
from scaleot.validate.exchange import check_finite_tensors

FORMAT_VERSION = 1
KIND = "adapter"


@dataclass
class TunedAdapter:
    """A verified adapter folder: ``info`` is ``adapter.json``; ``path`` the folder."""

    path: Path
    info: dict

    @property
    def method(self) -> str:
        return self.info["method"]

    @property
    def sources(self) -> list[int]:
        return list(self.info["adapter_sources"])

    def full_weights(self) -> dict[str, torch.Tensor]:
        """``blocks.<i>.<param>`` tensors (``full`` method only)."""
        from scaleot.validate.files import load_safetensors

        return load_safetensors(self.path / "adapter.safetensors", f"{self.path}: adapter.safetensors")


def rename_blocks(name: str, blocks_path: str, mapping: dict[int, int]) -> str:
    """Rewrite ``<blocks_path>.<i>.`` in ``name`` to ``<blocks_path>.<mapping[i]>.``."""
    pattern = re.compile(rf"(^|\.){re.escape(blocks_path)}\.(\d+)(\.|$)")

    def sub(m: re.Match) -> str:
        i = int(m.group(2))
        return f"{m.group(1)}{blocks_path}.{mapping.get(i, i)}{m.group(3)}"

    return pattern.sub(sub, name, count=1)


def block_state(model: nn.Module, positions: list[int], sources: list[int]) -> dict[str, torch.Tensor]:
    """Weights of the blocks at ``positions`` named ``blocks.<source>.<param>`` (the ``full`` format)."""
    blocks = get_blocks(model)
    out = {}
    for pos, src in zip(positions, sources, strict=True):
        for name, t in blocks[pos].state_dict().items():
            out[f"blocks.{src}.{name}"] = t.detach().cpu().contiguous()
    return out


def write_adapter(
    out: str | Path,
    model: nn.Module,
    positions: list[int],
    sources: list[int],
    info: dict,
    peft_model=None,
    extra_writer=None,
) -> Path:
    """Write the adapter folder atomically.

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
    info = dict(info, format_version=FORMAT_VERSION, adapter_sources=list(sources))
    mapping = dict(zip(positions, sources, strict=True))
    with atomic_output_dir(out) as tmp:
        if info["method"] == "full":
            state = block_state(model, positions, sources)
            check_finite_tensors(state, f"adapter {out}")
            save_tensors(state, tmp / "adapter.safetensors", metadata={"format": "pt", "kind": "scaleot-adapter"})
        else:
            from peft import get_peft_model_state_dict

            if peft_model is None:
                raise ValueError("peft_model is required for lora/ist adapters")
            blocks_path = arch_spec(model).blocks
            state = get_peft_model_state_dict(peft_model)
            renamed = {rename_blocks(k, blocks_path, mapping): v.detach().cpu().contiguous()
                       for k, v in state.items()}
            check_finite_tensors(renamed, f"adapter {out}")
            save_tensors(renamed, tmp / "adapter_model.safetensors", metadata={"format": "pt"})
            cfg = copy.deepcopy(peft_model.peft_config["default"])
            cfg.target_modules = sorted(rename_blocks(t, blocks_path, mapping) for t in cfg.target_modules)
            cfg.base_model_name_or_path = info.get("base_model")
            cfg.save_pretrained(str(tmp))
        write_json_atomic(tmp / "adapter.json", info)
        if extra_writer is not None:
            extra_writer(tmp)
        write_manifest(tmp, KIND, {"method": info["method"], "base_fingerprint": info.get("base_fingerprint"),
                                   "emulator_fingerprint": info.get("emulator_fingerprint")})
    return Path(out)


def read_adapter(path: str | Path) -> TunedAdapter:
    """Verify every hash and read ``adapter.json``.

    Raises:
        ScaleOTError: not an adapter folder, a modified or missing file, unknown format.
    """
    path = Path(path)
    manifest = verify_manifest(path, KIND)
    info = check_adapter_folder(path, manifest)
    return TunedAdapter(path, info)


ADAPTER_SUFFIXES = (".json", ".safetensors", ".png")  # IST ships its layer-importance plot


def check_adapter_folder(folder: Path, manifest: dict) -> dict:
    """A returned adapter folder: closed (no links, no unlisted files, content matching its
    type), with a valid ``adapter.json`` (and peft config); returns ``adapter.json``."""
    from scaleot.validate.files import check_closed_folder, read_json_object
    from scaleot.validate.schemas import AdapterDoc, validate_doc

    check_closed_folder(folder, manifest["files"], ADAPTER_SUFFIXES, "adapter")
    info = read_json_object(folder / "adapter.json", "adapter.json")
    validate_doc(AdapterDoc, info, f"adapter.json in {folder}")
    needed = ["adapter.safetensors"] if info["method"] == "full" else ["adapter_config.json",
                                                                       "adapter_model.safetensors"]
    for name in needed:
        if name not in manifest["files"]:
            raise ScaleOTError(f"{folder}: {info['method']} adapter without {name}")
    if info["method"] != "full":
        read_lora_config(folder)
    return info


def read_lora_config(folder: Path) -> dict:
    """``adapter_config.json`` as plug uses it, checked (:class:`scaleot.validate.schemas.LoraConfigDoc`)."""
    from scaleot.validate.files import read_json_object
    from scaleot.validate.schemas import LoraConfigDoc, validate_doc

    cfg = read_json_object(folder / "adapter_config.json", "adapter_config.json")
    validate_doc(LoraConfigDoc, cfg, f"adapter_config.json in {folder}")
    return cfg
