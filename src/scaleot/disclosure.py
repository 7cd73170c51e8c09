"""What an artifact that crosses to the other party may say about its maker.

- Emulator bundle (model owner -> data owner): the method, its options, the layer map,
  fingerprints, parameter counts and timings. Local paths (the model folder, the
  importance folder, run folders) are cut to their last component.
- Tuned adapter (data owner -> model owner): the method, options, fingerprints, split
  sizes, validation accuracies and timings; the task by its name (``bigbench:...``) or,
  for a local file, by file name and content hash, never its path.
- Both manifests record ``scaleot <subcommand>``, never the command line.

:func:`public_info` applies the path rule to a JSON-able document; :func:`public_task`
describes a task for an adapter.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

SAFE_PREFIXES = ("bigbench:", "hf:", "sha256:")


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


def public_task(task: str) -> dict:
    """``{"task": name, "task_sha256": ...}``: a local file by name and content hash, never its path."""
    from scaleot.validate.provenance import file_hash

    p = Path(task).expanduser()
    if p.is_file():
        return {"task": p.name, "task_sha256": file_hash(p)}
    return {"task": task}


def task_matches(recorded: dict, task: str) -> bool:
    """True when the task spec ``task`` (a name or a local path) is the one ``recorded`` describes."""
    return public_task(task) == {k: recorded.get(k) for k in public_task(task)} and (
        "task_sha256" not in recorded or Path(task).expanduser().is_file())
