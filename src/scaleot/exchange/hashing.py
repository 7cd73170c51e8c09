"""The one spelling of a hash in scaleot: sha256, as hex or tagged ``sha256:<hex>``.

Every digest an artifact records comes from here, so one concept has one function:

- :func:`file_sha256`: a file's bytes (manifests store the bare hex, provenance and
  records the tagged form);
- :func:`json_sha256`: a JSON-able object, serialised with sorted keys (task examples,
  ``scaleot run``'s step options).

:func:`tagged` adds the ``sha256:`` prefix that fingerprints carry. The stored forms are
unchanged from earlier versions, byte for byte (each caller passes the serialisation it
always used).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

PREFIX = "sha256:"


def tagged(hex_digest: str) -> str:
    """``sha256:<hex>``: the form fingerprints and provenance records carry."""
    return PREFIX + hex_digest


def file_sha256(path: str | Path, *, tag: bool = False, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, read in ``chunk``-byte blocks.

    Args:
        path: the file.
        tag: return ``sha256:<hex>`` instead of the bare hex.
        chunk: bytes read at a time.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return tagged(h.hexdigest()) if tag else h.hexdigest()


def json_sha256(obj, *, tag: bool = False, ensure_ascii: bool = True) -> str:
    """sha256 of ``json.dumps(obj, sort_keys=True, default=str, ensure_ascii=...)`` (UTF-8).

    Args:
        obj: a JSON-able object (anything else is written with ``str``).
        tag: return ``sha256:<hex>`` instead of the bare hex.
        ensure_ascii: JSON's escaping of non-ASCII text; task hashes were recorded with
            ``False``, run step digests with ``True``, and each keeps its form.
    """
    blob = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=ensure_ascii).encode()
    h = hashlib.sha256(blob).hexdigest()
    return tagged(h) if tag else h
