"""Planning a layer map for each emulator method (docs/method.md sections 3 and 5).

The format of a map (entry kinds, what each entry holds) is :mod:`scaleot.exchange.layer_map`.
The planning functions here are pure: they take indices and return entries, so every
method's map is testable without a model.
"""

from __future__ import annotations

from scaleot.errors import ScaleOTError
from scaleot.exchange.layer_map import entry
from scaleot.split import AdapterSplit


def split_blocks(num_blocks: int, n_bottom: int, n_top: int) -> tuple[list[int], list[int], list[int]]:
    """The sandwich split: ``(bottom adapter, middle, top adapter)`` block indices."""
    split = AdapterSplit(n_bottom, n_top)
    return split.bottom(), split.middle(num_blocks), split.top(num_blocks)


def _assemble(num_blocks: int, n_bottom: int, n_top: int, middle_entries: list[tuple]) -> list[dict]:
    """Bottom adapter + middle ``(kind, source, shares)`` tuples + top adapter, numbered."""
    bottom, _, top = split_blocks(num_blocks, n_bottom, n_top)
    rows = [("adapter", i, None) for i in bottom] + list(middle_entries) + [("adapter", i, None) for i in top]
    return [entry(pos, kind, src, shares) for pos, (kind, src, shares) in enumerate(rows)]


def uniform_indices(middle: list[int], keep: int) -> list[int]:
    """``keep`` evenly spaced middle blocks (OT's uniform LayerDrop), centred in their strides."""
    n = len(middle)
    if not 1 <= keep <= n:
        raise ScaleOTError(f"keep must be in [1, {n}] (got {keep})")
    return [middle[int((i + 0.5) * n / keep)] for i in range(keep)]


def plan_uniform(num_blocks: int, n_bottom: int, n_top: int, keep: int) -> list[dict]:
    """OT uniform LayerDrop: the emulator holds only the kept middle blocks (shallower)."""
    _, middle, _ = split_blocks(num_blocks, n_bottom, n_top)
    return _assemble(num_blocks, n_bottom, n_top, [("kept", i, None) for i in uniform_indices(middle, keep)])


def replaced_blocks(ranking: list[int], middle: list[int], alpha: float) -> list[int]:
    """The ``round(alpha · |E|)`` lowest-ranked middle blocks (``ranking``: most important first)."""
    if sorted(ranking) != sorted(middle):
        raise ScaleOTError("the importance ranking does not cover exactly the middle blocks of this adapter split")
    n = round(alpha * len(middle))
    return sorted(ranking[len(ranking) - n:]) if n else []


def plan_ranked(num_blocks: int, n_bottom: int, n_top: int, ranking: list[int], alpha: float,
                stand_in: str = "harmonizer") -> list[dict]:
    """ScaleOT (``stand_in="harmonizer"``) or its drop ablation (``"identity"``): depth preserved."""
    _, middle, _ = split_blocks(num_blocks, n_bottom, n_top)
    gone = set(replaced_blocks(ranking, middle, alpha))
    return _assemble(num_blocks, n_bottom, n_top,
                     [(stand_in if i in gone else "kept", i, None) for i in middle])


def plan_shared(num_blocks: int, n_bottom: int, n_top: int, clusters: list[list[int]],
                representatives: list[int]) -> list[dict]:
    """CRaSh: one kept block per cluster; every other position shares the nearest kept block.

    Args:
        clusters: consecutive groups of middle block indices covering the middle.
        representatives: the kept block of each cluster.

    Ties in distance go to the position's own cluster representative.
    """
    _, middle, _ = split_blocks(num_blocks, n_bottom, n_top)
    if [i for c in clusters for i in c] != middle:
        raise ValueError("clusters must cover the middle blocks in order")
    own = {i: rep for c, rep in zip(clusters, representatives, strict=True) for i in c}
    position = {i: n_bottom + k for k, i in enumerate(middle)}
    rows = []
    for i in middle:
        if i in representatives:
            rows.append(("kept", i, None))
            continue
        nearest = min(representatives, key=lambda r: (abs(r - i), r != own[i]))
        rows.append(("shared", i, position[nearest]))
    return _assemble(num_blocks, n_bottom, n_top, rows)
