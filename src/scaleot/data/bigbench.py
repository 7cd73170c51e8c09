"""BIG-bench multiple-choice tasks, an optional source: ``bigbench:<task>[/<subtask>]``.

The package index no longer serves ``bigbench==1.0.0`` (the 358 MB archive with the task
data; only a 0.0.1 stub without tasks is left), so scaleot never downloads it and no default
uses it. A user who has the data points ``SCALEOT_BIGBENCH`` at either

- the ``bigbench-1.0.0.tar.gz`` source archive (read by streaming the tar and extracting
  only the requested ``task.json``), or
- a ``benchmark_tasks`` folder of a BIG-bench checkout (``<task>/task.json`` inside).

(``SCALEOT_BIGBENCH_ARCHIVE``, the older name, and an archive left in
``$SCALEOT_HOME/bigbench/`` by an earlier version are read too.) Extracted tasks are cached as
``$SCALEOT_HOME/bigbench/tasks/<task>[__<subtask>].json``.

Prompt format (BIG-bench's own conventions): ``task_prefix + example_input_prefix +
input + example_output_prefix``; defaults ``"\\nQ: "`` and ``"\\nA: "`` as in
``bigbench/api/json_task.py``. Each answer choice is scored as a continuation. The
gold label is the choice with the highest ``target_score``.
"""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

from scaleot.data.example import MCExample
from scaleot.errors import ScaleOTError
from scaleot.paths import scaleot_home

ARCHIVE_NAME = "bigbench-1.0.0.tar.gz"
ENV = "SCALEOT_BIGBENCH"
HOW_TO = (f"bigbench: tasks need BIG-bench 1.0.0 data, which the package index no longer serves; "
          f"set {ENV}=/path/to/{ARCHIVE_NAME} (or to a checkout's bigbench/benchmark_tasks folder)")


def bigbench_dir() -> Path:
    d = scaleot_home() / "bigbench"
    d.mkdir(parents=True, exist_ok=True)
    return d


def data_source() -> Path | None:
    """The user's archive or ``benchmark_tasks`` folder, or None when there is none."""
    for env in (ENV, "SCALEOT_BIGBENCH_ARCHIVE"):
        value = os.environ.get(env)
        if value:
            path = Path(value).expanduser()
            if not path.exists():
                raise ScaleOTError(f"{env} points to a missing path: {path} ({HOW_TO})")
            return path
    cached = scaleot_home() / "bigbench" / ARCHIVE_NAME
    return cached if cached.is_file() else None


def _cache_file(task: str) -> Path:
    return bigbench_dir() / "tasks" / (task.replace("/", "__") + ".json")


def _read_from(source: Path, task: str) -> bytes | None:
    if source.is_dir():
        path = source / task / "task.json"
        return path.read_bytes() if path.is_file() else None
    suffix = f"/benchmark_tasks/{task}/task.json"
    try:
        with tarfile.open(source, "r|gz") as tf:  # stream: never unpack the whole archive
            for member in tf:
                if member.name.endswith(suffix):
                    return tf.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ScaleOTError(f"{source}: not a readable BIG-bench archive ({e})") from None
    return None


def extract_task_json(task: str) -> dict:
    """The parsed ``task.json`` of ``task`` (``name`` or ``name/subtask``), cached."""
    if not task or ".." in task.split("/") or task.startswith("/"):
        raise ScaleOTError(f"bad BIG-bench task name {task!r}")
    cache = _cache_file(task)
    if cache.is_file():
        return json.loads(cache.read_text())
    source = data_source()
    if source is None:
        raise ScaleOTError(HOW_TO)
    data = _read_from(source, task)
    if data is None:
        raise ScaleOTError(f"unknown BIG-bench task {task!r} (not in {source})")
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, cache)
    return json.loads(data)


def task_to_examples(task: str, spec: dict) -> list:
    """Turn a BIG-bench task dict into :class:`MCExample` records."""
    examples = spec.get("examples") or []
    if not examples:
        subs = ", ".join(f"{task}/{s['name'].split(':')[-1]}" for s in spec.get("subtasks", []) if isinstance(s, dict))
        hint = f"; it has subtasks: {subs}" if subs else ""
        raise ScaleOTError(f"BIG-bench task {task!r} has no examples{hint}")
    prefix = spec.get("task_prefix", "")
    q = spec.get("example_input_prefix", "\nQ: ")
    a = spec.get("example_output_prefix", "\nA: ")
    out = []
    for ex in examples:
        scores = ex.get("target_scores")
        if not scores:
            continue
        choices = list(scores)
        label = max(range(len(choices)), key=lambda i: scores[choices[i]])
        context = (prefix + q + ex["input"] + a).lstrip("\n").rstrip(" ")
        out.append(MCExample(context, [" " + c.strip() for c in choices], label))
    if not out:
        raise ScaleOTError(f"BIG-bench task {task!r} has no multiple-choice examples (no target_scores)")
    return out


def load_bigbench_task(task: str) -> list:
    """All multiple-choice examples of a BIG-bench task."""
    return task_to_examples(task, extract_task_json(task))
