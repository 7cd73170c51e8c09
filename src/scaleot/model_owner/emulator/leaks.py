"""Finding protected weights among what an emulator ships (docs/method.md section 3).

The model owner's check, before a bundle is saved and again in the audit, that no
replaced block's weight (nor the dense weight behind an SRC factor pair) travels.
"""

from __future__ import annotations

import torch
from torch import nn

from scaleot.exchange.layers import LowRankLinear


def _gram(a: list[torch.Tensor], b: list[torch.Tensor], chunk: int = 1 << 16):
    """Squared norms of ``a`` and ``b`` and their inner products ``[len(a), len(b)]``, in float64.

    All tensors have one shape; they are read ``chunk`` elements' worth of leading rows at a
    time, so memory is ``(len(a) + len(b)) * chunk`` doubles, never a float64 copy of the
    tensors (which for the MLP shapes of a 1B model is several GiB).
    """
    a, b = [t.reshape(1, -1) if t.dim() == 0 else t for t in a], [t.reshape(1, -1) if t.dim() == 0 else t for t in b]
    rows = a[0].shape[0]
    step = max(1, chunk // max(1, a[0].numel() // max(rows, 1)))
    a_sq = torch.zeros(len(a), dtype=torch.float64)
    b_sq = torch.zeros(len(b), dtype=torch.float64)
    cross = torch.zeros(len(a), len(b), dtype=torch.float64)
    for r in range(0, rows, step):
        am = torch.stack([t[r:r + step].reshape(-1).double().cpu() for t in a])
        bm = torch.stack([t[r:r + step].reshape(-1).double().cpu() for t in b])
        a_sq += (am**2).sum(1)
        b_sq += (bm**2).sum(1)
        cross += am @ bm.T
    return a_sq, b_sq, cross


def find_leaks(model: nn.Module, protected: dict[str, torch.Tensor], tol: float = 1e-3) -> list[str]:
    """Shipped tensors (and SRC factor products) within relative error ``tol`` of a protected weight.

    Args:
        model: the emulator.
        protected: name -> weight that must not travel (replaced/dropped blocks, the dense
            attention weights of SRC-compressed blocks). Constant tensors (e.g. fresh norm
            weights of ones) carry no information and are skipped.

    Returns:
        ``"<shipped> ~ <protected> (rel err X)"`` lines; empty when nothing leaks.
    """
    shipped = {k: v.detach() for k, v in model.state_dict().items()}
    for name, mod in model.named_modules():
        if isinstance(mod, LowRankLinear):
            shipped[f"{name}.(up@down)"] = mod.dense().detach()
    by_shape: dict[tuple, list[tuple[str, torch.Tensor]]] = {}
    for name, w in protected.items():
        w = w.detach().float()
        if w.numel() > 1 and not torch.all(w == w.flatten()[0]):
            by_shape.setdefault(tuple(w.shape), []).append((name, w))
            if w.dim() == 2:
                by_shape.setdefault(tuple(w.t().shape), []).append((f"{name}^T", w.t()))
    groups: dict[tuple, list[tuple[str, torch.Tensor]]] = {}
    for sname, t in shipped.items():
        if tuple(t.shape) in by_shape:
            groups.setdefault(tuple(t.shape), []).append((sname, t))
    leaks = []
    for shape, items in groups.items():
        # ||s - w||^2 = ||s||^2 + ||w||^2 - 2 <s, w> for all pairs at once, in float64
        s_sq, p_sq, cross = _gram([t.detach() for _, t in items], [w for _, w in by_shape[shape]])
        dist = (s_sq[:, None] + p_sq[None, :] - 2 * cross).clamp_min(0)
        rel = (dist / p_sq[None, :].clamp_min(1e-24)).sqrt()
        for a, b in (rel < 10 * tol).nonzero().tolist():  # confirm candidates exactly
            (sname, t), (pname, w) = items[a], by_shape[shape][b]
            exact = (torch.linalg.norm(t.double() - w.double()) / torch.linalg.norm(w.double())).item()
            if exact < tol:
                leaks.append(f"{sname} ~ {pname} (rel err {exact:.2e})")
    return leaks
