"""The harmonizer module and its safetensors file.

File layout of ``harmonizers.safetensors``: tensors ``<block>.down.weight``,
``<block>.up.weight`` (and ``<block>.norm.weight``) keyed by the *original* block index;
the safetensors metadata holds ``{"harmonizer_config": json, "hidden_size": str}``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from scaleot.errors import ScaleOTError
from scaleot.safetensors_io import save_tensors
from scaleot.tuners.harmonizer.config import HarmonizerConfig

_ACT = {"gelu": nn.GELU, "silu": nn.SiLU, "relu": nn.ReLU}


class Harmonizer(nn.Module):
    """Residual low-rank MLP with the decoder-block calling convention.

    Args:
        hidden_size: model width ``d``.
        config: rank ``r``, activation, norm.

    Shapes: ``hidden_states [B, T, d] -> [B, T, d]``. Extra positional or keyword
    arguments that a decoder block receives (mask, positions, cache...) are accepted
    and ignored: a harmonizer mixes nothing across tokens and owns no cache slot.
    """

    def __init__(self, hidden_size: int, config: HarmonizerConfig | None = None):
        super().__init__()
        self.config = config or HarmonizerConfig()
        self.hidden_size = hidden_size
        self.norm = nn.RMSNorm(hidden_size, eps=1e-6) if self.config.use_norm else nn.Identity()
        self.down = nn.Linear(hidden_size, self.config.rank, bias=False)
        self.act = _ACT[self.config.activation]()
        self.up = nn.Linear(self.config.rank, hidden_size, bias=False)
        nn.init.zeros_(self.up.weight)  # identity at initialisation

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return hidden_states + self.up(self.act(self.down(self.norm(hidden_states))))


class IdentityBlock(nn.Module):
    """A dropped block: returns its input (Dynamic LayerDrop, uniform drop stand-in)."""

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return hidden_states


def save_harmonizers(path: str | Path, harmonizers: dict[int, Harmonizer]) -> None:
    """Write harmonizers keyed by original block index (atomically)."""
    if not harmonizers:
        raise ValueError("no harmonizers to save")
    first = next(iter(harmonizers.values()))
    tensors = {f"{i}.{k}": v.detach().to("cpu", torch.float32).contiguous()
               for i, h in harmonizers.items() for k, v in h.state_dict().items()}
    meta = {"harmonizer_config": json.dumps(first.config.to_dict()), "hidden_size": str(first.hidden_size),
            "blocks": json.dumps(sorted(harmonizers))}
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    save_tensors(tensors, tmp, metadata=meta)
    tmp.replace(path)


def load_harmonizers(path: str | Path) -> dict[int, Harmonizer]:
    """Read a ``harmonizers.safetensors`` file back into modules."""
    path = Path(path)
    if not path.is_file():
        raise ScaleOTError(f"harmonizer file not found: {path}")
    from scaleot.validate.exchange import check_finite_tensors
    from scaleot.validate.files import check_safetensors

    check_safetensors(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
        config = HarmonizerConfig(**json.loads(meta["harmonizer_config"]))
        hidden = int(meta["hidden_size"])
        blocks = json.loads(meta["blocks"])
        out = {}
        for i in blocks:
            h = Harmonizer(hidden, config)
            h.load_state_dict({k.split(".", 1)[1]: v for k, v in tensors.items() if k.split(".", 1)[0] == str(i)})
            out[int(i)] = h
    except (KeyError, ValueError, OSError, TypeError, RuntimeError, AttributeError) as e:
        raise ScaleOTError(f"{path} is not a scaleot harmonizer file ({str(e).splitlines()[0][:160]})") from None
    check_finite_tensors(tensors, f"harmonizer file {path}")
    return out
