"""Fingerprints tie artifacts to the exact weights they came from."""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def fingerprint_state_dict(state: dict[str, torch.Tensor]) -> str:
    """sha256 over sorted (name, shape, float32 bytes) of every tensor; ``"sha256:<hex>"``.

    Values are hashed as float32 so that the same weights give the same fingerprint
    whichever float dtype they sit in (a bf16 cast changes the values, hence the print).

    Tied weights (the same storage under two names) are hashed under each name, so the
    fingerprint depends only on the mapping name -> values, not on how it was loaded.
    """
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to("cpu")
        t = (t.float() if t.is_floating_point() else t).contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy() if t.numel() else b"")  # hashed in place, no copy
    return "sha256:" + h.hexdigest()


def fingerprint_model(model: nn.Module) -> str:
    """Fingerprint of a model's weights (parameters and persistent buffers)."""
    return fingerprint_state_dict(model.state_dict())
