"""Reproducible safetensors files: the same tensors and metadata give the same bytes.

``safetensors`` writes ``__metadata__`` from a Rust ``HashMap``, whose iteration order is
random per call: a file with two or more metadata entries (``save_model`` adds one per
tied tensor, so every emulator bundle has three) gets a different header, and so a
different sha256 fingerprint, each time it is written, although every tensor is equal.
Fingerprints identify emulators and adapters across the two parties, so a rebuilt artifact
must hash the same.

safetensors has no option for this, so :func:`canonicalize` rewrites the metadata object
in place with its keys sorted. Only that object's bytes change: same keys, same values,
same JSON escaping, so the same length, and the tensor entries and data are not touched.
If the re-serialised object would not have the same length (an escaping difference),
the file is left as safetensors wrote it. ``tests/test_safetensors_io.py`` checks that
the result loads with safetensors and equals what it wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file, save_model

_PREFIX = b'{"__metadata__":'


def canonicalize(path: str | Path) -> bool:
    """Sort the ``__metadata__`` keys of a safetensors file in place; True if it was rewritten."""
    path = Path(path)
    with path.open("r+b") as f:
        n = int.from_bytes(f.read(8), "little")
        header = f.read(n)
        if not header.startswith(_PREFIX):
            return False
        text = header.decode("utf-8")
        start = len(_PREFIX)
        meta, end = json.JSONDecoder().raw_decode(text, start)
        old = text[start:end].encode("utf-8")
        new = json.dumps(dict(sorted(meta.items())), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if new == old or len(new) != len(old):
            return False
        f.seek(8 + start)
        f.write(new)
    return True


def save_tensors(tensors: dict, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """``safetensors.torch.save_file`` with a reproducible header."""
    save_file(tensors, str(path), metadata=metadata)
    canonicalize(path)


def save_module(model, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """``safetensors.torch.save_model`` (shared tensors stored once) with a reproducible header."""
    save_model(model, str(path), metadata=metadata)
    canonicalize(path)
