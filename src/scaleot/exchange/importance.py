"""The importance folder: stage 1's output, written by ``scaleot importance`` and read by
``scaleot emulate`` (docs/method.md section 2).

Layout (``manifest.json`` of kind ``importance`` holds the sha256 of every file)::

    importance.json            scores, ranking (most important first), adapter split, options, timing
    harmonizers.safetensors    one harmonizer per middle block (identities for variant drop)
    importance.png             the score chart
    log.jsonl, tb/             the training log (:mod:`scaleot.run_folder`)

File layout of ``harmonizers.safetensors``: tensors ``<block>.down.weight``,
``<block>.up.weight`` (and ``<block>.norm.weight``) keyed by the *original* block index;
the safetensors metadata holds ``{"harmonizer_config": json, "hidden_size": str, "blocks": json}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from scaleot.errors import ScaleOTError
from scaleot.exchange.checks import check_finite_tensors
from scaleot.exchange.hashing import file_sha256
from scaleot.exchange.kinds import IMPORTANCE
from scaleot.exchange.layers import Harmonizer, HarmonizerConfig
from scaleot.exchange.manifest import verify_manifest, write_json_atomic, write_manifest
from scaleot.exchange.schemas import ImportanceDoc, validate_doc
from scaleot.safetensors_io import save_tensors
from scaleot.validate.files import check_safetensors, read_json_object

FORMAT_VERSION = 1
KIND = IMPORTANCE
HARMONIZERS = "harmonizers.safetensors"


def write_importance(out: str | Path, info: dict, harmonizers: dict, extra_writer: Callable | None = None) -> Path:
    """Write ``importance.json`` and the harmonizers, then ``extra_writer(out)`` (the chart),
    then the manifest that seals the folder."""
    out = Path(out)
    save_harmonizers(out / HARMONIZERS, harmonizers)
    write_json_atomic(out / "importance.json", dict(info, format_version=FORMAT_VERSION))
    if extra_writer is not None:
        extra_writer(out)
    write_manifest(out, KIND, {"model_fingerprint": info["model_fingerprint"], "ranking": info["ranking"]})
    return out


def read_importance_info(folder: str | Path) -> dict:
    """``importance.json`` of a folder, schema-checked (middle, ranking and scores consistent;
    :class:`~scaleot.exchange.schemas.ImportanceDoc`) but the hashes not verified: for
    "is it finished?" checks."""
    info = read_json_object(Path(folder) / "importance.json", "importance.json")
    validate_doc(ImportanceDoc, info, f"importance.json in {folder}")
    return info


def read_importance(folder: str | Path, base_fingerprint: str, with_harmonizers: bool):
    """Verify an importance folder and check it belongs to this model.

    Returns:
        ``(importance.json dict, {block: Harmonizer} or None, record for emulator.json)``.

    Raises:
        ScaleOTError: a tampered or malformed folder, another model's folder, or no ranking.
    """
    folder = Path(folder)
    verify_manifest(folder, KIND)
    info = read_importance_info(folder)
    if info.get("model_fingerprint") != base_fingerprint:
        raise ScaleOTError(f"importance folder {folder} was computed on other weights "
                           f"({info.get('model_fingerprint')}, this model is {base_fingerprint})")
    if not isinstance(info.get("ranking"), list):
        raise ScaleOTError(f"{folder}/importance.json has no ranking")
    harmonizers = load_harmonizers(folder / HARMONIZERS) if with_harmonizers else None
    record = {"path": str(folder), "importance_sha256": file_sha256(folder / "importance.json", tag=True),
              "variant": info.get("variant"), "steps": info.get("steps"), "corpus": info.get("corpus"),
              "timing": info.get("timing")}
    return info, harmonizers, record


def save_harmonizers(path: str | Path, harmonizers: dict[int, Harmonizer]) -> None:
    """Write harmonizers keyed by original block index (atomically)."""
    if not harmonizers:
        raise ValueError("no harmonizers to save")
    first = next(iter(harmonizers.values()))
    tensors = {f"{i}.{k}": v.detach().to("cpu", torch.float32).contiguous()
               for i, h in harmonizers.items() for k, v in h.state_dict().items()}
    meta = {"harmonizer_config": json.dumps(first.config.to_dict()), "hidden_size": str(first.hidden_size),
            "blocks": json.dumps(sorted(harmonizers))}
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    save_tensors(tensors, tmp, metadata=meta)
    tmp.replace(path)


def load_harmonizers(path: str | Path) -> dict[int, Harmonizer]:
    """Read a ``harmonizers.safetensors`` file back into modules."""
    path = Path(path)
    if not path.is_file():
        raise ScaleOTError(f"harmonizer file not found: {path}")
    check_safetensors(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
        config = HarmonizerConfig(**json.loads(meta["harmonizer_config"]))
        hidden = int(meta["hidden_size"])
        blocks = json.loads(meta["blocks"])
        out = {}
        for i in blocks:
            h = Harmonizer(hidden, config)
            h.load_state_dict({k.split(".", 1)[1]: v for k, v in tensors.items() if k.split(".", 1)[0] == str(i)})
            out[int(i)] = h
    except (KeyError, ValueError, OSError, TypeError, RuntimeError, AttributeError) as e:
        raise ScaleOTError(f"{path} is not a scaleot harmonizer file ({str(e).splitlines()[0][:160]})") from None
    check_finite_tensors(tensors, f"harmonizer file {path}")
    return out
