"""Device and precision, chosen in one place.

Default: CUDA with bf16 weights where a GPU is present, fp32 on CPU. Every command takes
``--device`` and ``--dtype`` to override; nothing else in scaleot picks a device.
"""

from __future__ import annotations

import torch

from scaleot.errors import ScaleOTError

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def resolve_device(device: str | None = None) -> torch.device:
    """``None``/``"auto"`` -> cuda if available else cpu; otherwise the named device."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ScaleOTError(f"unknown device {device!r} (use auto, cpu, cuda, cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ScaleOTError(f"device {device!r} requested but no CUDA GPU is available")
    return dev


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """``None``/``"auto"`` -> bf16 on CUDA, fp32 on CPU; otherwise the named dtype."""
    if dtype in (None, "", "auto"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ScaleOTError(f"unknown dtype {dtype!r} (use auto, {', '.join(DTYPES)})") from None
