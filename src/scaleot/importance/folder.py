"""The importance folder: stage 1's output, written by ``scaleot importance`` and read by
``scaleot emulate`` (docs/method.md section 2).

Layout (``manifest.json`` of kind ``importance`` holds the sha256 of every file)::

    importance.json            scores, ranking (most important first), adapter split, options, timing
    harmonizers.safetensors    one harmonizer per middle block (identities for variant drop)
    importance.png             the score chart
    log.jsonl, tb/             the training log (:mod:`scaleot.run_folder`)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from scaleot.errors import ScaleOTError
from scaleot.manifest import (
    sha256_file,
    verify_manifest,
    write_json_atomic,
    write_manifest,
)
from scaleot.tuners.harmonizer import load_harmonizers, save_harmonizers

FORMAT_VERSION = 1
KIND = "importance"


def write_importance(out: str | Path, info: dict, harmonizers: dict, extra_writer: Callable | None = None) -> Path:
    """Write ``importance.json`` and the harmonizers, then ``extra_writer(out)`` (the chart),
    then the manifest that seals the folder."""
    out = Path(out)
    save_harmonizers(out / "harmonizers.safetensors", harmonizers)
    write_json_atomic(out / "importance.json", dict(info, format_version=FORMAT_VERSION))
    if extra_writer is not None:
        extra_writer(out)
    write_manifest(out, KIND, {"model_fingerprint": info["model_fingerprint"], "ranking": info["ranking"]})
    return out


def read_importance_info(folder: str | Path) -> dict:
    """``importance.json`` of a folder, schema-checked (middle, ranking and scores consistent;
    :class:`~scaleot.validate.schemas.ImportanceDoc`) but the hashes not verified: for
    "is it finished?" checks."""
    from scaleot.validate.files import read_json_object
    from scaleot.validate.schemas import ImportanceDoc, validate_doc

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
    harmonizers = load_harmonizers(folder / "harmonizers.safetensors") if with_harmonizers else None
    record = {"path": str(folder), "importance_sha256": "sha256:" + sha256_file(folder / "importance.json"),
              "variant": info.get("variant"), "steps": info.get("steps"), "corpus": info.get("corpus"),
              "timing": info.get("timing")}
    return info, harmonizers, record
