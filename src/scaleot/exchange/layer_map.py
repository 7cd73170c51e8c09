"""The layer map: what each emulator position holds (docs/method.md sections 3 and 5).

A layer map is a list of entries, one per emulator block position, in order::

    {"position": 5, "kind": "kept", "source": 7, "src_rank": {"q": 288, ...} | None, "shares": None}

``kind`` is ``adapter`` (a full-model block shipped whole, trainable), ``kept`` (a frozen
middle block, optionally SRC-compressed), ``harmonizer`` (stands in for block ``source``),
``identity`` (block ``source`` dropped, depth kept) or ``shared`` (reuses the parameters
of the block at position ``shares``; CRaSh). ``source`` is always a full-model block index.

This module is the format: the entry kinds, reading the adapter blocks off a map and
checking a map read from a bundle. The model owner's planning of a map for each method is
:mod:`scaleot.model_owner.emulator.layer_map`.
"""

from __future__ import annotations

from scaleot.errors import ScaleOTError

KINDS = ("adapter", "kept", "harmonizer", "identity", "shared")


def entry(position: int, kind: str, source: int, shares: int | None = None) -> dict:
    return {"position": position, "kind": kind, "source": source, "src_rank": None, "shares": shares}


def adapter_positions(layer_map: list[dict]) -> list[int]:
    return [e["position"] for e in layer_map if e["kind"] == "adapter"]


def adapter_sources(layer_map: list[dict]) -> list[int]:
    return [e["source"] for e in layer_map if e["kind"] == "adapter"]


def validate_layer_map(layer_map: list[dict]) -> None:
    """Check the structure of a layer map read from a bundle (one-line error)."""
    for pos, e in enumerate(layer_map):
        if e.get("position") != pos or e.get("kind") not in KINDS or not isinstance(e.get("source"), int):
            raise ScaleOTError(f"emulator.json: malformed layer map entry at position {pos}")
        if e["kind"] == "shared":
            target = e.get("shares")
            if not isinstance(target, int) or not 0 <= target < len(layer_map) or layer_map[target]["kind"] != "kept":
                raise ScaleOTError(f"emulator.json: position {pos} shares an invalid position {target!r}")
