"""The adapter split ``N_a``: how many decoder blocks at each end are the adapter.

ScaleOT (docs/method.md section 1) cuts a model of ``n`` blocks into a *sandwich*: the
first ``n_bottom`` and the last ``n_top`` blocks are the adapter ``A`` (shipped whole and
tuned by the data owner), the blocks between them are the middle ``E`` (scored in stage 1,
compressed in stage 2). :class:`AdapterSplit` is the one place that knows this
arithmetic; every command spells it ``--adapter N_BOTTOM,N_TOP`` and the run YAML
``adapter: N_BOTTOM,N_TOP``. Records keep the two numbers as ``{"n_bottom", "n_top"}``.
"""

from __future__ import annotations

from dataclasses import dataclass

from scaleot.errors import ConfigError, ScaleOTError


@dataclass(frozen=True)
class AdapterSplit:
    """``n_bottom`` blocks at the bottom and ``n_top`` at the top form the adapter."""

    n_bottom: int = 2
    n_top: int = 2

    def __post_init__(self) -> None:
        if not (isinstance(self.n_bottom, int) and isinstance(self.n_top, int)) or min(self.n_bottom, self.n_top) < 0:
            raise ScaleOTError(f"adapter sizes must be integers >= 0 (got {self.n_bottom},{self.n_top})")

    @classmethod
    def parse(cls, value, name: str = "--adapter") -> AdapterSplit:
        """``"2,2"``, ``[2, 2]``, ``{"n_bottom": 2, "n_top": 2}`` or an AdapterSplit -> AdapterSplit.

        ``name`` is how the error message calls the value (``--adapter``, ``adapter:``).

        Raises:
            ScaleOTError: anything else (one line).
        """
        if isinstance(value, AdapterSplit):
            return value
        try:
            if isinstance(value, dict) and set(value) == {"n_bottom", "n_top"}:
                bottom, top = value["n_bottom"], value["n_top"]
            elif isinstance(value, list | tuple) and len(value) == 2:
                bottom, top = value
            elif isinstance(value, str):
                bottom, top = (int(v) for v in value.split(","))
            else:
                raise ValueError
            if isinstance(bottom, bool) or isinstance(top, bool) or int(bottom) != bottom or int(top) != top:
                raise ValueError
        except (ValueError, TypeError):
            raise ScaleOTError(f"{name} must be 'N_BOTTOM,N_TOP', e.g. 2,2 (got {value!r})") from None
        return cls(int(bottom), int(top))

    def __str__(self) -> str:
        return f"{self.n_bottom},{self.n_top}"

    def to_dict(self) -> dict[str, int]:
        """The record form written into importance.json, emulator.json and adapter.json."""
        return {"n_bottom": self.n_bottom, "n_top": self.n_top}

    def check(self, num_blocks: int) -> None:
        """Raise :class:`ConfigError` unless a model of ``num_blocks`` blocks keeps a middle block."""
        if self.n_bottom + self.n_top >= num_blocks:
            raise ConfigError("adapter split", [f"adapter {self} leaves no middle blocks in a model with "
                                                f"{num_blocks} blocks"])

    def middle(self, num_blocks: int) -> list[int]:
        """Indices of the middle blocks ``E`` (checked: at least one)."""
        self.check(num_blocks)
        return list(range(self.n_bottom, num_blocks - self.n_top))

    def bottom(self) -> list[int]:
        """Indices of the bottom adapter blocks."""
        return list(range(self.n_bottom))

    def top(self, num_blocks: int) -> list[int]:
        """Indices of the top adapter blocks."""
        return list(range(self.top_start(num_blocks), num_blocks))

    def top_start(self, num_blocks: int) -> int:
        """Index of the first top-adapter block (``num_blocks`` when ``n_top == 0``)."""
        return num_blocks - self.n_top

    def positions(self, num_blocks: int) -> list[int]:
        """Indices of the adapter blocks ``A`` (bottom then top; checked like :meth:`middle`)."""
        self.check(num_blocks)
        return self.bottom() + self.top(num_blocks)
