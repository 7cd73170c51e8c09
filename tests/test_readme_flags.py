"""README and --help agree: every ``--flag`` the README's command examples use exists on
that command, and ``scaleot plug`` finds the base model in the adapter by itself."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from scaleot.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"


def _commands() -> dict[str, set[str]]:
    group = typer.main.get_command(app)
    return {name: {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
            for name, cmd in group.commands.items()}


def readme_flags() -> list[tuple[str, str]]:
    """``(command, flag)`` for every flag in the README's code blocks, attributed to the
    ``scaleot <command>`` line it follows (continuation and ``#`` comment lines included)."""
    out, command, in_code = [], None, False
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            in_code, command = not in_code, None
            continue
        if not in_code:
            continue
        m = re.search(r"(?:^|\s)(?:scaleot|scaleot\.cli)\s+([a-z]+)", line)
        if m:  # flags before the command belong to another program (accelerate launch ...)
            command, line = m.group(1), line[m.end():]
        elif not line.startswith((" ", "#")):
            command = None
        if command:
            out += [(command, f) for f in re.findall(r"(?<![\w-])--[a-z][\w-]*", line)]
    return out


def test_readme_flags_exist():
    commands = _commands()
    pairs = readme_flags()
    assert len(pairs) > 20  # the parser really read the examples
    missing = [(c, f) for c, f in pairs if c in commands and f not in commands[c]]
    assert not missing, missing
