"""The one progress bar of every long step (tuning, stage 1, distillation, the attack, scoring).

Every bar is a tqdm bar on stderr (stdout keeps what a command prints), made here so that
they look alike and obey one switch: ``enabled=False`` (``--no-progress``, a non-main
process) draws nothing. Nested bars (the examples of one row inside the rows of
``scaleot evaluate --offsite``) pass ``leave=False`` so that only the outer one stays.
"""

from __future__ import annotations

from tqdm.auto import tqdm


def progress_bar(total: int | None, desc: str, enabled: bool = True, *, unit: str = "it", initial: int = 0,
                 leave: bool = True) -> tqdm:
    """A tqdm bar counting ``unit`` up to ``total`` (``None``: no known end); use it as a
    context manager or ``close()`` it."""
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, leave=leave,
                dynamic_ncols=True)
