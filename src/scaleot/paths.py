"""Where scaleot keeps what it fetches and converts: ``$SCALEOT_HOME`` (default ``~/.cache/scaleot``)."""

from __future__ import annotations

import os
from pathlib import Path


def scaleot_home() -> Path:
    """The cache root, created on first use."""
    root = Path(os.environ.get("SCALEOT_HOME", Path.home() / ".cache" / "scaleot")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root
