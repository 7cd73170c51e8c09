"""The tuned adapter format: what the data owner sends back (docs/method.md section 1, step 3).

A peer of :mod:`scaleot.exchange.bundle`: the data owner's fine-tuning writes it
(:func:`write_adapter`, through :func:`scaleot.data_owner.finetune.export.export_adapter`),
the model owner's ``plug`` and the evaluation read it once (:func:`read_adapter`: every
hash, the closed folder, ``adapter.json``, peft's config and the tensors' structure) and
get a :class:`TunedAdapter` that holds everything merging needs; neither side needs the
other's code.

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

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from scaleot.errors import ScaleOTError
from scaleot.exchange.checks import check_finite_tensors, lora_pairs
from scaleot.exchange.kinds import ADAPTER, KINDS
from scaleot.exchange.manifest import (
    atomic_output_dir,
    verify_manifest,
    write_json_atomic,
    write_manifest,
)
from scaleot.exchange.schemas import AdapterDoc, LoraConfigDoc, validate_doc
from scaleot.safetensors_io import save_tensors
from scaleot.validate.files import check_closed_folder, load_safetensors, read_json_object

FORMAT_VERSION = 1
KIND = ADAPTER
INFO = "adapter.json"
FULL_WEIGHTS = "adapter.safetensors"
LORA_CONFIG = "adapter_config.json"
LORA_WEIGHTS = "adapter_model.safetensors"


@dataclass(frozen=True)
class TunedAdapter:
    """A returned adapter, verified and read once by :func:`read_adapter`.

    Attributes:
        path: the folder.
        info: ``adapter.json``, schema-checked (:class:`~scaleot.exchange.schemas.AdapterDoc`).
        tensors: the weights, named by full-model block index: ``blocks.<i>.<param>``
            (``full``) or peft's ``...lora_A.weight``/``...lora_B.weight`` pairs (``lora``, ``ist``).
        lora_config: peft's ``adapter_config.json``, schema-checked
            (:class:`~scaleot.exchange.schemas.LoraConfigDoc`); ``None`` for ``full``.
    """

    path: Path
    info: dict
    tensors: dict[str, torch.Tensor]
    lora_config: dict | None = None

    @property
    def method(self) -> str:
        return self.info["method"]

    @property
    def sources(self) -> list[int]:
        return list(self.info["adapter_sources"])


def rename_blocks(name: str, blocks_path: str, mapping: dict[int, int]) -> str:
    """Rewrite ``<blocks_path>.<i>.`` in ``name`` to ``<blocks_path>.<mapping[i]>.``."""
    pattern = re.compile(rf"(^|\.){re.escape(blocks_path)}\.(\d+)(\.|$)")

    def sub(m: re.Match) -> str:
        i = int(m.group(2))
        return f"{m.group(1)}{blocks_path}.{mapping.get(i, i)}{m.group(3)}"

    return pattern.sub(sub, name, count=1)


def write_adapter(out: str | Path, info: dict, tensors: dict[str, torch.Tensor], sources: list[int],
                  peft_config=None, extra_writer=None) -> Path:
    """Write the adapter folder atomically.

    Args:
        out: target folder (replaced if it exists).
        info: the ``adapter.json`` fields (method, fingerprints, options, data, validation...).
        tensors: the weights, already named by full-model block index (``full``:
            ``blocks.<i>.<param>``; ``lora``/``ist``: peft's state dict).
        sources: the full-model block index of each tuned block.
        peft_config: peft's config (``lora``/``ist``), targets already renamed; written
            with its ``save_pretrained``.
        extra_writer: optional ``callable(folder)`` that adds files (e.g. IST's layer
            importance) before the manifest hashes the folder.

    Raises:
        ScaleOTError: a NaN or infinite tensor (nothing is written).
    """
    info = dict(info, format_version=FORMAT_VERSION, adapter_sources=list(sources))
    with atomic_output_dir(out) as tmp:
        check_finite_tensors(tensors, f"adapter {out}")
        if info["method"] == "full":
            save_tensors(tensors, tmp / FULL_WEIGHTS, metadata={"format": "pt", "kind": "scaleot-adapter"})
        else:
            if peft_config is None:
                raise ValueError("peft_config is required for lora/ist adapters")
            save_tensors(tensors, tmp / LORA_WEIGHTS, metadata={"format": "pt"})
            peft_config.save_pretrained(str(tmp))
        write_json_atomic(tmp / INFO, info)
        if extra_writer is not None:
            extra_writer(tmp)
        write_manifest(tmp, KIND, {"method": info["method"], "base_fingerprint": info.get("base_fingerprint"),
                                   "emulator_fingerprint": info.get("emulator_fingerprint")})
    return Path(out)


def read_adapter(path: str | Path) -> TunedAdapter:
    """Read a returned adapter folder once, validating everything that needs no model.

    Checks every hash (:func:`~scaleot.exchange.manifest.verify_manifest`); the folder is
    closed (no links, no unlisted files, content matching its type, only
    ``KINDS[ADAPTER].carries``); ``adapter.json`` and peft's config match their schemas; the
    method's files are there; the tensors load as plain safetensors; a LoRA state holds
    only complete ``lora_A``/``lora_B`` pairs with a bounded scale
    (:func:`~scaleot.exchange.checks.lora_pairs`). What needs the target model (which
    blocks, which shapes, finite values) is checked where the adapter is merged
    (:mod:`scaleot.merge`).

    Raises:
        ScaleOTError: not an adapter folder, a modified, missing or unlisted file, a
            malformed document or tensor file.
    """
    path = Path(path)
    manifest = verify_manifest(path, KIND)
    listed = manifest["files"]
    check_closed_folder(path, listed, KINDS[KIND].carries, "adapter")
    info = read_json_object(path / INFO, INFO)
    validate_doc(AdapterDoc, info, f"{INFO} in {path}")
    full = info["method"] == "full"
    for name in [FULL_WEIGHTS] if full else [LORA_CONFIG, LORA_WEIGHTS]:
        if name not in listed:
            raise ScaleOTError(f"{path}: {info['method']} adapter without {name}")
    if full:
        return TunedAdapter(path, info, load_safetensors(path / FULL_WEIGHTS, f"{path}: {FULL_WEIGHTS}"))
    cfg = read_json_object(path / LORA_CONFIG, LORA_CONFIG)
    validate_doc(LoraConfigDoc, cfg, f"{LORA_CONFIG} in {path}")
    tensors = load_safetensors(path / LORA_WEIGHTS, f"{path}: {LORA_WEIGHTS}")
    lora_pairs(tensors, cfg, f"adapter {path}")
    return TunedAdapter(path, info, tensors, cfg)
