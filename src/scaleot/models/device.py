"""Device and precision, chosen in one place.

Default: CUDA with bf16 weights where a GPU is present, fp32 on CPU. Every command takes
``--device`` and ``--dtype`` to override; nothing else in scaleot picks a device.
"""

from __future__ import annotations

import os
import warnings

import torch

from scaleot.errors import ScaleOTError

AUTOCAST = ("none", "bf16", "auto")  # the one spelling of forward precision (--autocast)

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


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 autocast speeds ``device`` up: always on CUDA; on a CPU only with native
    bf16 (AVX512-BF16 / AMX, what oneDNN reports). Measured on an AVX2-only AMD EPYC: a
    SmolLM2-135M forward+backward took 5.6 s in fp32 and 120 s under bf16 autocast
    (BENCHMARKS.md), so there bf16 requests fall back to fp32 unless ``SCALEOT_CPU_BF16=1``.
    """
    if device.type != "cpu":
        return True
    if os.environ.get("SCALEOT_CPU_BF16") == "1":
        return True
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def use_bf16(requested: bool, device: torch.device) -> bool:
    """``requested`` unless ``device`` has no fast bf16 (then fp32, with one warning per process)."""
    if not requested or bf16_is_fast(device):
        return requested
    global _WARNED
    if not _WARNED:
        _WARNED = True
        warnings.warn("bf16 autocast requested but this CPU has no native bf16 (AVX512-BF16/AMX): running "
                      "in fp32, about 20x faster here (set SCALEOT_CPU_BF16=1 to force bf16)", stacklevel=2)
    return False


def wants_bf16(autocast: str, device: torch.device) -> bool:
    """An ``--autocast`` value (:data:`AUTOCAST`) as a bf16 request: ``auto`` asks only where
    :func:`bf16_is_fast`; ``bf16`` always asks (and may fall back, see :func:`use_bf16`)."""
    if autocast not in AUTOCAST:
        raise ScaleOTError(f"autocast must be one of {', '.join(AUTOCAST)} (got {autocast!r})")
    return autocast == "bf16" or (autocast == "auto" and bf16_is_fast(device))


def lm_eval_autocast(autocast: str | None, device: str | torch.device | None = None) -> str | None:
    """An ``--autocast`` value as lm-eval's ``mixed_precision_dtype``: ``"bfloat16"`` or None."""
    if autocast in (None, "none"):
        return None
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    return "bfloat16" if use_bf16(wants_bf16(autocast, dev), dev) else None


def autocast_used(requested: bool, device: torch.device) -> str:
    """``"bf16"`` or ``"none"``: what a bf16 request really runs as on ``device`` (for run records)."""
    return "bf16" if use_bf16(requested, device) else "none"


def bf16_autocast(requested: bool, device: torch.device):
    """The autocast context every scaleot forward uses: bf16 where :func:`use_bf16` says so, else none."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16(requested, device))


_WARNED = False


def machine_info(device: torch.device | None = None) -> dict:
    """What every result records about where it ran: CPU model and its bf16 flags, or the GPU.

    Machines of this project differ (some CPUs have native bf16, some do not), and ``autocast:
    auto`` follows them, so two results are comparable only when this and their precision agree.
    """
    import platform

    info = {"torch": torch.__version__, "platform": platform.machine()}
    cpu, flags = "", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name") and not cpu:
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    info["cpu"] = cpu or platform.processor() or "unknown"
    info["cpu_bf16"] = sorted(flags & {"avx512_bf16", "amx_bf16", "avx2", "avx512f"})
    info["cpu_native_bf16"] = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if (device is None or device.type == "cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(device or 0)
    return info
