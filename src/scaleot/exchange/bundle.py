"""The emulator bundle: a safe, verifiable exchange folder (docs/method.md section 1, step 2).

Folder layout::

    emulator.json       format version, method, options, base fingerprint, layer map, params
    model.safetensors   only the shipped weights (SRC factors as factors, shared tensors once)
    config.json         the base config with the emulator's block count
    tokenizer files     (when a tokenizer was given)
    README.md           the model card (hub YAML header: (N_a, alpha, beta), base fingerprint)
    manifest.json       kind "emulator": sha256 and size of every file

The bundle's *fingerprint* (:func:`bundle_fingerprint`) is one sha256 over the name and
sha256 of every file the data owner uses: the weights, ``config.json``, the tokenizer
files and ``emulator.json`` (everything but the model card ``README.md`` and an
``audit.json`` the model owner may add after auditing). The tuned
adapter records it, and ``plug`` refuses an adapter tuned on a bundle that differs from
the model owner's in any of those files. (Before this, the fingerprint covered
``model.safetensors`` only; adapters that record such a fingerprint are refused with a
line saying so: tune them again on the bundle.)

:func:`scaleot.models.emulator.load_emulator` verifies every hash, refuses unlisted or non-JSON/safetensors files
(no pickle anywhere), rebuilds the module structure from ``config.json`` and the layer
map, then loads ``model.safetensors`` strictly. The result is an ordinary transformers
causal LM whose block list mixes decoder blocks, harmonizers, identities and low-rank
projections.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from scaleot.errors import ScaleOTError
from scaleot.exchange.checks import check_finite_model
from scaleot.exchange.disclosure import public_info
from scaleot.exchange.hashing import tagged
from scaleot.exchange.kinds import EMULATOR, KINDS
from scaleot.exchange.layer_map import adapter_positions, adapter_sources
from scaleot.exchange.manifest import (
    atomic_output_dir,
    verify_manifest,
    write_json_atomic,
    write_manifest,
)
from scaleot.exchange.model_card import emulator_card, write_card
from scaleot.exchange.schemas import EmulatorDoc, validate_doc
from scaleot.safetensors_io import save_module
from scaleot.validate.files import check_closed_folder, read_json_object

FORMAT_VERSION = 1
METHODS = ("scaleot", "uniform", "uniform-kd", "crash", "drop")  # the methods a bundle may name
WEIGHTS = "model.safetensors"
INFO = "emulator.json"
CONFIG = "config.json"
SAFE_SUFFIXES = KINDS[EMULATOR].carries  # .md: README.md only
# Read by people (and by the model owner's plug, for the card), never by the data owner's tuning:
# the model card, and the audit numbers a model owner may add to a bundle after auditing it.
UNFINGERPRINTED = ("README.md", "audit.json")


def bundle_fingerprint(files: dict) -> str:
    """``sha256:<hex>`` over ``name NUL sha256 LF`` of every manifest-listed file the data
    owner uses (all but :data:`UNFINGERPRINTED`), in name order.

    Args:
        files: the manifest's ``files`` mapping (``{name: {"sha256": ..., "bytes": ...}}``).
    """
    h = hashlib.sha256(b"scaleot-emulator-bundle-v2\n")
    for name in sorted(files):
        if name not in UNFINGERPRINTED:
            h.update(f"{name}\0{files[name]['sha256']}\n".encode())
    return tagged(h.hexdigest())


def weights_fingerprint(files: dict) -> str:
    """The fingerprint older scaleot recorded: ``model.safetensors`` only (for the message
    that refuses an adapter carrying it)."""
    return tagged(files[WEIGHTS]["sha256"])


@dataclass
class EmulatorBundle:
    """An emulator ``[A, E*]`` with its description.

    Attributes:
        model: a transformers ``*ForCausalLM`` in eval mode.
        tokenizer: the base tokenizer, or ``None``.
        info: the ``emulator.json`` dict (method, options, layer map, params...).
        fingerprint: :func:`bundle_fingerprint` once saved or loaded (every file but the card).
    """

    model: nn.Module
    tokenizer: object | None
    info: dict
    fingerprint: str | None = field(default=None)

    @property
    def layer_map(self) -> list[dict]:
        return self.info["layer_map"]

    @property
    def adapter_positions(self) -> list[int]:
        """Emulator block positions holding adapter blocks, in order."""
        return adapter_positions(self.layer_map)

    @property
    def adapter_sources(self) -> list[int]:
        """Full-model block index of each adapter position."""
        return adapter_sources(self.layer_map)

    def save(self, path: str | Path, overwrite: bool = True) -> Path:
        """Write the bundle atomically to ``path`` and set :attr:`fingerprint`."""
        path = Path(path)
        check_finite_model(self.model, f"emulator {path}")
        with atomic_output_dir(path, overwrite=overwrite) as tmp:
            save_module(self.model, tmp / WEIGHTS, metadata={"format": "pt", "scaleot": "emulator"})
            self.model.config.to_json_file(str(tmp / "config.json"))
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(str(tmp))
            self.info = public_info(self.info)  # no local paths cross to the data owner
            write_json_atomic(tmp / INFO, self.info)
            for p in tmp.rglob("*"):
                if p.is_file() and (not p.name.endswith(SAFE_SUFFIXES) or p.suffix == ".md"):
                    p.unlink()  # nothing but JSON, text and safetensors travels (and our own card)
            write_card(tmp, emulator_card(self.info, self.info.get("audit")))
            manifest = write_manifest(tmp, EMULATOR, {"method": self.info["method"],
                                                        "base_fingerprint": self.info["base_fingerprint"]})
        self.fingerprint = bundle_fingerprint(manifest["files"])
        return path


def read_bundle_info(folder: Path) -> tuple[dict, str]:
    """Verify an emulator bundle (hashes, closed folder, emulator.json).

    The folder is *closed*: no links, no unlisted files, content matching its type
    (:func:`scaleot.validate.files.check_closed_folder`); ``emulator.json`` is checked
    against :class:`scaleot.exchange.schemas.EmulatorDoc`.

    ``config.json``'s architecture is checked by the reader that builds the model
    (:func:`scaleot.models.emulator.read_bundle`), which knows the supported ones.

    Returns:
        ``(emulator.json as a dict, the bundle's fingerprint)`` (:func:`bundle_fingerprint`).
    """
    manifest = verify_manifest(folder, EMULATOR)
    listed = manifest["files"]
    check_closed_folder(folder, listed, SAFE_SUFFIXES, "bundle")
    for need in (INFO, WEIGHTS, CONFIG):
        if need not in listed:
            raise ScaleOTError(f"{folder}: incomplete emulator bundle (no {need})")
    info = read_json_object(folder / "emulator.json", "emulator.json")
    validate_doc(EmulatorDoc, info, f"emulator.json in {folder}")
    if info["method"] not in METHODS:
        raise ScaleOTError(f"{folder}: emulator.json names an unknown method {info['method']!r}")
    return info, bundle_fingerprint(listed)
