"""The run-level options every command shares, declared once (issue 29).

:class:`RunOptions` holds ``--out``, ``--model``, ``--device``, ``--dtype``, ``--resume``,
``--overwrite`` and ``--progress``, each with one help text. A step's config dataclass
carries them in a field made by :func:`run_field`, which names the ones the command
offers (a command offers only those it uses: ``plug`` has no ``--resume``), which are
required, the command's own defaults (``finetune``'s ``--model`` is unset: the emulator
names the model) and a short note where the option's role differs (the note follows the
shared help after ``; here:``). :func:`scaleot.recipes.options.step_command` turns them
into typer options; the run YAML sets ``model`` and ``device`` once at its top level
(:data:`scaleot.recipes.run.JOB_KEYS`), the run folder decides ``out`` and ``overwrite``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scaleot.models.loading import DEFAULT_MODEL

NOTE = "; here: "  # between an option's shared help and a command's note


def _opt(default, help: str, **extra):
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class RunOptions:
    """Where a step writes, which model on which device, and how it treats an earlier output."""

    out: Path | None = _opt(None, "where the command writes its output")
    model: str | None = _opt(DEFAULT_MODEL, "the model: a known name (smollm2-135m, gemma3-270m), a local HF "
                             "folder or a hub id")
    device: str | None = _opt(None, "auto, cpu, cuda or cuda:N (unset: auto)")
    dtype: str | None = _opt(None, "weights dtype: auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16")
    resume: bool = _opt(False, "continue from the newest checkpoint instead of starting over")
    overwrite: bool = _opt(False, "replace an existing output at --out (and start its run folder over)",
                           switch=True)
    progress: bool = _opt(True, "show progress bars")


@dataclass(frozen=True)
class RunLevel:
    """Which :class:`RunOptions` a command offers, and how (see :func:`run_field`)."""

    names: tuple[str, ...]
    required: tuple[str, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


def run_field(*names: str, required: tuple[str, ...] = (), defaults: dict[str, Any] | None = None,
              notes: dict[str, str] | None = None):
    """The ``run: RunOptions`` field of a step config: the command offers ``names``.

    Args:
        names: the :class:`RunOptions` fields the command offers as options.
        required: those the command needs (``--out``).
        defaults: the command's own defaults (``{"model": None}``).
        notes: a few words per option where its role differs on this command.
    """
    spec = RunLevel(tuple(names), tuple(required), dict(defaults or {}), dict(notes or {}))
    unknown = set(names) | set(required) | set(spec.defaults) | set(spec.notes)
    unknown -= set(RunOptions.__dataclass_fields__)
    if unknown:
        raise TypeError(f"not run-level options: {sorted(unknown)}")
    return field(default_factory=lambda: RunOptions(**spec.defaults), metadata={"run_level_options": spec})
