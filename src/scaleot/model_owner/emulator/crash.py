"""CRaSh baseline: cluster adjacent middle blocks by linear CKA, keep one per cluster (docs/method.md section 5).

1. Run the full model on ``calib_blocks`` blocks of generic text and record each middle
   block's output ``X_i [n_tokens, d]`` (a scoped forward hook, removed afterwards).
2. Linear CKA between every pair: ``CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)``
   on column-centred features.
3. Agglomerative clustering of *adjacent* blocks: start with singletons, repeatedly merge
   the neighbouring pair of clusters with the highest average CKA, until ``k`` remain.
4. Each cluster keeps its most central block (highest mean CKA to the other members);
   removed positions share the nearest kept block (:func:`~.layer_map.plan_shared`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from scaleot.data.text import corpus_splits
from scaleot.models.arch import get_blocks


@contextlib.contextmanager
def record_outputs(model: nn.Module, indices: list[int]) -> Iterator[dict[int, list[torch.Tensor]]]:
    """Scoped hooks collecting the output ``[B, T, d]`` of each block in ``indices``."""
    store: dict[int, list[torch.Tensor]] = {i: [] for i in indices}
    blocks = get_blocks(model)

    def hook(i):
        def fn(_mod, _args, out):
            store[i].append((out[0] if isinstance(out, tuple) else out).detach().float().cpu())
        return fn

    handles = [blocks[i].register_forward_hook(hook(i)) for i in indices]
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two feature matrices ``[n, d1]``, ``[n, d2]`` (1 = same up to rotation/scale)."""
    x = x.double() - x.double().mean(0, keepdim=True)
    y = y.double() - y.double().mean(0, keepdim=True)
    num = torch.linalg.norm(y.T @ x) ** 2
    den = torch.linalg.norm(x.T @ x) * torch.linalg.norm(y.T @ y)
    return float(num / den.clamp_min(1e-30))


def cluster_adjacent(sim: list[list[float]], k: int) -> list[list[int]]:
    """Merge neighbouring clusters with the highest average similarity until ``k`` remain."""
    clusters = [[i] for i in range(len(sim))]
    while len(clusters) > k:
        def link(j):
            a, b = clusters[j], clusters[j + 1]
            return sum(sim[p][q] for p in a for q in b) / (len(a) * len(b))
        best = max(range(len(clusters) - 1), key=link)
        clusters[best:best + 2] = [clusters[best] + clusters[best + 1]]
    return clusters


def representative(cluster: list[int], sim: list[list[float]]) -> int:
    """The member with the highest mean similarity to the others (the first on ties)."""
    if len(cluster) == 1:
        return cluster[0]
    return max(cluster, key=lambda i: sum(sim[i][j] for j in cluster if j != i))


@torch.no_grad()
def crash_clusters(model: nn.Module, tokenizer, middle: list[int], k: int, config):
    """Cluster the middle blocks of ``model`` into ``k`` groups on generic text.

    Returns:
        ``(clusters, representatives, cka)``: clusters as lists of block indices, the kept
        block of each, and the ``[|E|, |E|]`` CKA matrix (nested lists, middle order).
    """
    train, _ = corpus_splits(config.corpus, tokenizer, config.block_size, max_train_blocks=config.calib_blocks)
    device = next(model.parameters()).device
    with record_outputs(model, middle) as store:
        for batch in train[: config.calib_blocks].split(4):
            model(input_ids=batch.to(device))
    feats = [torch.cat(store[i]).flatten(0, 1) for i in middle]
    feats = [f - f.mean(0, keepdim=True) for f in feats]
    self_norm = [torch.linalg.norm(f.T @ f) for f in feats]
    n = len(middle)
    cka = [[1.0] * n for _ in range(n)]
    for a in range(n):  # linear_cka with the self terms computed once
        for b in range(a + 1, n):
            num = torch.linalg.norm(feats[b].T @ feats[a]) ** 2
            cka[a][b] = cka[b][a] = float(num / (self_norm[a] * self_norm[b]).clamp_min(1e-30))
    local = cluster_adjacent(cka, k)
    reps = [middle[representative(c, cka)] for c in local]
    return [[middle[i] for i in c] for c in local], reps, cka
