"""One multiple-choice example, the record every task loader returns."""

from __future__ import annotations

from dataclasses import dataclass

from scaleot.errors import ScaleOTError

MAX_CONTEXT_CHARS = 32_768
MAX_CHOICE_CHARS = 4_096


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class MCExample:
    """One multiple-choice example: the model scores each ``context + choice``."""

    context: str
    choices: list[str]
    label: int

    def validate(self, where: str) -> None:
        """One line naming ``where`` for anything a scorer or trainer cannot use.

        The context is a string of at most :data:`MAX_CONTEXT_CHARS` characters; the
        choices are at least 2 distinct non-blank strings of at most
        :data:`MAX_CHOICE_CHARS`; the label is an integer index into them (not a bool).
        Every string is valid Unicode (a lone surrogate such as ``"\\ud800"``, which JSON
        escapes allow, cannot be written as UTF-8 and is refused here, before training).
        """
        if not isinstance(self.context, str) or not isinstance(self.choices, list):
            raise ScaleOTError(f"{where}: needs a string 'context' and a list 'choices'")
        for name, text in [("context", self.context), *((f"choice {i}", c) for i, c in enumerate(self.choices))]:
            if isinstance(text, str) and not _is_unicode(text):
                raise ScaleOTError(f"{where}: {name} holds a lone surrogate (e.g. \\ud800), not valid Unicode text")
        if len(self.context) > MAX_CONTEXT_CHARS:
            raise ScaleOTError(f"{where}: context longer than {MAX_CONTEXT_CHARS} characters")
        if len(self.choices) < 2:
            raise ScaleOTError(f"{where}: a multiple-choice example needs at least 2 choices")
        for i, c in enumerate(self.choices):
            if not isinstance(c, str) or not c.strip() or len(c) > MAX_CHOICE_CHARS:
                raise ScaleOTError(f"{where}: choice {i} must be a non-empty string of at most "
                                   f"{MAX_CHOICE_CHARS} characters (got {c!r:.40})")
        if len(set(self.choices)) != len(self.choices):
            raise ScaleOTError(f"{where}: two choices are the same")
        if isinstance(self.label, bool) or not isinstance(self.label, int) or not 0 <= self.label < len(self.choices):
            raise ScaleOTError(f"{where}: label {self.label!r} is not an index into the choices")
