"""Self-describing artifact folders.

Every folder scaleot writes holds ``manifest.json``::

    {"format": "scaleot-manifest", "format_version": 1, "kind": "emulator",
     "created_by": "scaleot 0.1.0", "created_at": "...", "command": [...],
     "files": {"model.safetensors": {"sha256": "...", "bytes": 123}, ...},
     "info": {...}}

Folders are written under a temporary name beside the target and renamed into place
(:func:`atomic_output_dir`), so a crash never leaves a half-written artifact where a
finished one is expected. :func:`verify_manifest` checks every hash before a later step
trusts the folder.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scaleot.errors import ScaleOTError
from scaleot.exchange.hashing import file_sha256

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_json(path: str | Path, what: str = "file") -> dict:
    """Read a JSON object strictly (UTF-8, finite numbers), or fail with one line naming it."""
    from scaleot.validate.files import read_json_object

    return read_json_object(path, what)


def command_name() -> str:
    """``scaleot <subcommand>``: which step made an artifact, without paths or options.

    Artifacts cross to the other party, so the full command line (local paths, file
    names) is never recorded.
    """
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    return f"scaleot {args[0]}" if args and args[0].isidentifier() else "scaleot"


def write_manifest(folder: str | Path, kind: str, info: dict | None = None) -> dict:
    """Hash every file in ``folder`` (recursively, except the manifest) and write the manifest."""
    from scaleot import __version__

    folder = Path(folder)
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != MANIFEST and not p.name.startswith("."):
            rel = p.relative_to(folder).as_posix()
            files[rel] = {"sha256": file_sha256(p), "bytes": p.stat().st_size}
    manifest = {
        "format": "scaleot-manifest",
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "created_by": f"scaleot {__version__}",
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": command_name(),
        "files": files,
        "info": info or {},
    }
    write_json_atomic(folder / MANIFEST, manifest)
    return manifest


def verify_manifest(folder: str | Path, kind: str | None = None) -> dict:
    """Check that ``folder`` has a manifest of ``kind`` whose files all match their hashes.

    Raises:
        ScaleOTError: missing folder or manifest, wrong kind, a missing, truncated or
            modified file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ScaleOTError(f"not a folder: {folder}")
    if not (folder / MANIFEST).is_file():
        raise ScaleOTError(f"{folder} is not a scaleot {kind or 'artifact'} folder (no {MANIFEST})")
    manifest = read_json(folder / MANIFEST, "manifest")
    if manifest.get("format") != "scaleot-manifest":
        raise ScaleOTError(f"{folder} is not a scaleot artifact (foreign manifest)")
    if kind is not None and manifest.get("kind") != kind:
        raise ScaleOTError(f"{folder} holds a {manifest.get('kind')!r} artifact, expected {kind!r}")
    from scaleot.exchange.schemas import ManifestDoc, validate_doc
    from scaleot.validate.files import safe_relative

    validate_doc(ManifestDoc, manifest, f"manifest {folder / MANIFEST}")
    for rel, meta in manifest["files"].items():
        if not safe_relative(rel) or rel == MANIFEST:
            raise ScaleOTError(f"{folder}: manifest path {rel!r} leaves the folder")
        p = folder / rel
        if p.is_symlink() or not p.is_file():
            raise ScaleOTError(f"{folder}: file {rel} listed in the manifest is missing or a link")
        if p.stat().st_size != meta["bytes"]:
            raise ScaleOTError(f"{folder}: file {rel} is truncated or resized (hash check failed)")
        if file_sha256(p) != meta["sha256"]:
            raise ScaleOTError(f"{folder}: file {rel} was modified (sha256 mismatch)")
    return manifest


def manifest_matches(folder: str | Path, kind: str) -> bool:
    """True when ``folder`` holds a complete, verified artifact of ``kind`` (for skip-if-done)."""
    try:
        verify_manifest(folder, kind)
    except ScaleOTError:
        return False
    return True


@contextlib.contextmanager
def atomic_output_dir(target: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it replaces ``target``.

    On an exception the temporary folder is removed and ``target`` is left as it was.
    """
    target = Path(target)
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ScaleOTError(f"output {target} exists and is not a folder; refusing to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not overwrite:
        raise ScaleOTError(f"output exists: {target} (remove it or pass --overwrite)")
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(old, target)  # put the previous artifact back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
