"""User-facing errors.

Anything a user can get wrong (a name, a path, an option) raises :class:`ScaleOTError`
with a one-line message. The CLI turns it into ``scaleot: error: <message>`` on stderr
and exit code 2, never a traceback.
"""

from __future__ import annotations


class ScaleOTError(Exception):
    """A problem with the user's input or artifacts, explained in one line."""

    exit_code = 2


class ConfigError(ScaleOTError):
    """A configuration dataclass found one or more invalid fields.

    All problems are collected and reported at once, joined with ``; ``.
    """

    def __init__(self, owner: str, problems: list[str]):
        self.problems = list(problems)
        super().__init__(f"invalid {owner}: " + "; ".join(self.problems))


def check(owner: str, problems: list[str]) -> None:
    """Raise :class:`ConfigError` if ``problems`` is not empty."""
    if problems:
        raise ConfigError(owner, problems)
