"""One multiple-choice example, the record every task loader returns."""

from __future__ import annotations

from dataclasses import dataclass

from scaleot.errors import ScaleOTError


@dataclass(frozen=True)
class MCExample:
    """One multiple-choice example: the model scores each ``context + choice``."""

    context: str
    choices: list[str]
    label: int

    def validate(self, where: str) -> None:
        if not isinstance(self.context, str) or not isinstance(self.choices, list):
            raise ScaleOTError(f"{where}: needs a string 'context' and a list 'choices'")
        if len(self.choices) < 2:
            raise ScaleOTError(f"{where}: a multiple-choice example needs at least 2 choices")
        if not isinstance(self.label, int) or not 0 <= self.label < len(self.choices):
            raise ScaleOTError(f"{where}: label {self.label!r} is not an index into the choices")
