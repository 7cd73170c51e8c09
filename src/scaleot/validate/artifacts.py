"""Readers of the artifacts that cross the trust boundary: emulator bundles and adapters.

Each reader verifies the manifest (every hash), then the folder is *closed* (no links,
no unlisted files, content matching its type; :func:`~scaleot.validate.files.check_closed_folder`),
then every JSON document is checked against its schema (:mod:`scaleot.validate.schemas`).
"""

from __future__ import annotations

from pathlib import Path

from scaleot.errors import ScaleOTError
from scaleot.validate.files import check_closed_folder, read_json_object
from scaleot.validate.schemas import (
    AdapterDoc,
    EmulatorDoc,
    ImportanceDoc,
    LoraConfigDoc,
    ModelConfigDoc,
    validate_doc,
)

BUNDLE_SUFFIXES = (".json", ".safetensors", ".txt", ".jinja", ".model")
ADAPTER_SUFFIXES = (".json", ".safetensors", ".png")  # IST ships its layer-importance plot


def read_bundle_info(folder: Path) -> tuple[dict, str]:
    """Verify an emulator bundle (hashes, closed folder, emulator.json, config.json).

    Returns:
        ``(emulator.json as a dict, "sha256:<hex> of model.safetensors")``.
    """
    from scaleot.emulator.config import METHODS
    from scaleot.manifest import verify_manifest

    manifest = verify_manifest(folder, "emulator")
    listed = manifest["files"]
    check_closed_folder(folder, listed, BUNDLE_SUFFIXES, "bundle")
    for need in ("emulator.json", "model.safetensors", "config.json"):
        if need not in listed:
            raise ScaleOTError(f"{folder}: incomplete emulator bundle (no {need})")
    info = read_json_object(folder / "emulator.json", "emulator.json")
    validate_doc(EmulatorDoc, info, f"emulator.json in {folder}")
    if info["method"] not in METHODS:
        raise ScaleOTError(f"{folder}: emulator.json names an unknown method {info['method']!r}")
    check_model_config(folder / "config.json")
    return info, "sha256:" + listed["model.safetensors"]["sha256"]


def check_model_config(path: Path) -> dict:
    """``config.json`` is an object with the fields scaleot relies on and no remote code."""
    from scaleot.models.arch import ARCHITECTURES as ARCH

    raw = read_json_object(path, "config.json")
    validate_doc(ModelConfigDoc, raw, f"config.json {path}")
    if raw["model_type"] not in ARCH:
        raise ScaleOTError(f"{path}: model_type {raw['model_type']!r} is not supported "
                           f"(known: {', '.join(sorted(ARCH))})")
    return raw


def check_adapter_folder(folder: Path, manifest: dict) -> dict:
    """A returned adapter folder: closed, with a valid ``adapter.json`` (and peft config)."""
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
    cfg = read_json_object(folder / "adapter_config.json", "adapter_config.json")
    validate_doc(LoraConfigDoc, cfg, f"adapter_config.json in {folder}")
    return cfg


def read_importance_info(folder: Path) -> dict:
    info = read_json_object(folder / "importance.json", "importance.json")
    validate_doc(ImportanceDoc, info, f"importance.json in {folder}")
    return info
