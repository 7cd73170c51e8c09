"""What an artifact that crosses to the other party may say about its maker.

- Emulator bundle (model owner -> data owner): the method, its options, the layer map,
  fingerprints, parameter counts and timings. Local paths (the model folder, the
  importance folder, run folders) are cut to their last component.
- Tuned adapter (data owner -> model owner): the method, options, fingerprints, split
  sizes, validation accuracies and timings. The task: a public built-in name
  (``gen:...``, ``pkg:...``, ``bigbench:...``) as given; anything else (a local file or
  folder, an ``hf:`` dataset, which may be private) only as ``"undisclosed"`` unless the
  data owner passes ``finetune --disclose-task``, which records a local file by its name
  and content hash (never its path) and an ``hf:`` name as given. The example counts of
  the split always travel.
- Both manifests record ``scaleot <subcommand>``, never the command line.

:func:`public_info` applies the path rule to a JSON-able document; :func:`public_task`
describes a task for an adapter.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from scaleot.exchange.hashing import file_sha256

SAFE_PREFIXES = ("gen:", "pkg:", "bigbench:", "hf:", "sha256:")
PUBLIC_TASKS = ("gen:", "pkg:", "bigbench:")  # built-in task names: public, recorded as given
UNDISCLOSED = "undisclosed"


def _is_local_path(value: str) -> bool:
    if not value or value.startswith(SAFE_PREFIXES) or "\n" in value or len(value) > 4096:
        return False
    return value.startswith(("/", "~", "./", "../")) or (os.sep in value and Path(value).expanduser().exists())


def public_info(obj: Any) -> Any:
    """A copy of ``obj`` with every local path replaced by its last component."""
    if isinstance(obj, dict):
        return {k: public_info(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [public_info(v) for v in obj]
    if isinstance(obj, str) and _is_local_path(obj):
        return Path(obj).expanduser().name
    return obj


def public_task(task: str, disclose: bool = False) -> dict:
    """How an adapter records its task: ``{"task": ...}`` (plus ``task_sha256`` for a disclosed file).

    A built-in public name (:data:`PUBLIC_TASKS`) is recorded as given. Anything else is
    ``"undisclosed"`` unless ``disclose``: then a local file by name and content hash
    (never its path), a local folder by its name, and an ``hf:`` name as given.
    """
    if task.startswith(PUBLIC_TASKS):
        return {"task": task}
    if not disclose:
        return {"task": UNDISCLOSED}
    p = Path(task).expanduser()
    if p.is_file():
        return {"task": p.name, "task_sha256": file_sha256(p, tag=True)}
    if p.is_dir():
        return {"task": p.name}
    return {"task": task}


def task_matches(recorded: dict, task: str) -> bool:
    """True when the task spec ``task`` (a name or a local path) is the one ``recorded`` describes.

    An undisclosed task matches any task that would itself be undisclosed (a local file
    or folder, an ``hf:`` name): whoever evaluates it names the task with ``--task``.
    """
    if recorded.get("task") == UNDISCLOSED and "task_sha256" not in recorded:
        return public_task(task) == {"task": UNDISCLOSED}
    mine = public_task(task, disclose=True)
    return mine == {k: recorded.get(k) for k in mine} and (
        "task_sha256" not in recorded or Path(task).expanduser().is_file())
