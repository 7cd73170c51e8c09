"""Advantages for learned block/layer scores, shared by stage 1 and IST.

Both ScaleOT's stage 1 (docs/method.md section 2) and IST's importance update (section 4)
sample configurations, measure a loss per configuration and move per-block scores by the
configuration's advantage. The reward scaling is the same decision in both places, so it
lives here, below both (``scaleot.model_owner.importance`` and ``scaleot.data_owner.tuners.ist`` import it).
"""

from __future__ import annotations

import torch

REWARDS = ("normalized", "neg_loss", "exp")  # reward scalings `advantages` knows


def advantages(losses: torch.Tensor, reward: str) -> torch.Tensor:
    """Advantages ``a [N_c]`` from losses ``l [N_c]`` with a mean baseline.

    ``exp``: ``exp(-l) - mean(exp(-l))`` (the papers' raw rewards); ``neg_loss``: ``-(l - mean(l))``;
    ``normalized``: the raw advantage divided by its standard deviation (zero when all
    losses are equal), so the step size ``eta`` does not depend on the loss scale.
    """
    losses = losses.to(torch.float64)
    if reward == "exp":
        r = torch.exp(-losses)
        return r - r.mean()
    a = -(losses - losses.mean())
    if reward == "normalized":
        a = a / (a.std(unbiased=False) + 1e-6)
    return a
