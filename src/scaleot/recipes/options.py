"""Option parsing shared by several commands."""

from __future__ import annotations

from scaleot.errors import ScaleOTError


def parse_adapter(text: str) -> tuple[int, int]:
    """``"2,2"`` -> ``(2, 2)``: the sandwich adapter split ``n_bottom,n_top``."""
    try:
        bottom, top = (int(v) for v in text.split(","))
    except ValueError:
        raise ScaleOTError(f"--adapter must be 'N_BOTTOM,N_TOP', e.g. 2,2 (got {text!r})") from None
    if bottom < 0 or top < 0:
        raise ScaleOTError(f"--adapter sizes must be >= 0 (got {text!r})")
    return bottom, top
