"""Grouped configuration sampling (docs/method.md section 2).

The middle blocks are split into consecutive groups of ``N_g``. In each group we draw
``u_i ~ Uniform(0, p_i)`` and keep the blocks with the larger half of ``u``; the others
are replaced. A group of even size ``n`` keeps ``n / 2``; an odd group keeps ``n // 2``
or ``n // 2 + 1`` with equal chance, so every block (even a lone one) is sometimes
replaced and sometimes kept. All randomness comes from the ``generator`` argument, so
every data-parallel rank holding the same generator state samples the same
configuration.
"""

from __future__ import annotations

import torch


def groups(n: int, group_size: int) -> list[range]:
    """Consecutive groups of positions ``0..n-1`` of at most ``group_size`` each."""
    return [range(s, min(s + group_size, n)) for s in range(0, n, group_size)]


def sample_configuration(keep_prob: torch.Tensor, group_size: int, generator: torch.Generator) -> torch.Tensor:
    """One configuration.

    Args:
        keep_prob: ``p [n]``, keep-probability of each middle block (in order).
        group_size: ``N_g``.
        generator: CPU generator (shared seed across ranks).

    Returns:
        ``keep [n]`` bool: True = block runs, False = replaced by its stand-in.
    """
    p = keep_prob.detach().to("cpu", torch.float64)
    u = torch.rand(p.shape, generator=generator, dtype=torch.float64) * p
    keep = torch.zeros(p.shape, dtype=torch.bool)
    for g in groups(len(p), group_size):
        n = len(g)
        n_keep = n // 2
        if n % 2 == 1 and torch.rand((), generator=generator).item() < 0.5:
            n_keep += 1
        if n_keep:
            top = torch.topk(u[g.start : g.stop], n_keep).indices + g.start
            keep[top] = True
    return keep
