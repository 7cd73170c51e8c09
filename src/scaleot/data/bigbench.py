"""BIG-bench multiple-choice tasks from the ``bigbench==1.0.0`` source archive on PyPI.

The archive (358 MB) is fetched once with ``pip download --no-deps`` into
``$SCALEOT_HOME/bigbench/`` (never ``pip install``: that drags in TensorFlow). Tasks are
read by streaming the tar and extracting only the requested ``task.json``, which is then
cached as ``$SCALEOT_HOME/bigbench/tasks/<task>[__<subtask>].json``.

Prompt format (BIG-bench's own conventions): ``task_prefix + example_input_prefix +
input + example_output_prefix``; defaults ``"\\nQ: "`` and ``"\\nA: "`` as in
``bigbench/api/json_task.py``. Each answer choice is scored as a continuation. The
gold label is the choice with the highest ``target_score``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from scaleot.data.example import MCExample
from scaleot.errors import ScaleOTError
from scaleot.paths import scaleot_home

ARCHIVE_NAME = "bigbench-1.0.0.tar.gz"
PIP_SPEC = "bigbench==1.0.0"
# The default job's tasks (configs/default.yaml, tests/test_shipped_configs.py checks it): what
# `scaleot fetch` extracts and `scaleot audit` measures unless told otherwise.
DEFAULT_TASKS = ("multiemo/all_sentence_en", "unit_conversion/si_conversion")


def bigbench_dir() -> Path:
    d = scaleot_home() / "bigbench"
    d.mkdir(parents=True, exist_ok=True)
    return d


def archive_path(fetch: bool = True) -> Path:
    """The source archive, fetched with pip on first use (``SCALEOT_BIGBENCH_ARCHIVE`` overrides)."""
    override = os.environ.get("SCALEOT_BIGBENCH_ARCHIVE")
    if override:
        if not Path(override).is_file():
            raise ScaleOTError(f"SCALEOT_BIGBENCH_ARCHIVE points to a missing file: {override}")
        return Path(override)
    path = bigbench_dir() / ARCHIVE_NAME
    if path.is_file() or not fetch:
        return path
    with tempfile.TemporaryDirectory(dir=bigbench_dir()) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", PIP_SPEC, "-d", tmp]
        result = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / ARCHIVE_NAME
        if result.returncode != 0 or not got.is_file():
            # pip >= 25 refuses this sdist ("cannot declare direct URL dependencies": its
            # setup.py names bleurt by URL) even with --no-deps, so fall back to the same
            # file from the registry's simple index, checked against the index's sha256.
            try:
                _download_from_simple_index(got)
            except (OSError, ValueError) as e:
                last = (result.stderr.strip().splitlines() or ["no output"])[-1]
                raise ScaleOTError(f"could not fetch {PIP_SPEC}: pip download said {last!r}; "
                                   f"the package index said {e}") from None
        os.replace(got, path)
    return path


def _download_from_simple_index(target: Path) -> None:
    """Download ``ARCHIVE_NAME`` from the PEP 503 simple index (``PIP_INDEX_URL`` or PyPI)."""
    import hashlib
    import re
    import urllib.parse
    import urllib.request

    from tqdm import tqdm

    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    page_url = f"{index}/bigbench/"
    with urllib.request.urlopen(page_url, timeout=60) as r:
        page = r.read().decode()
    match = re.search(r'href="([^"]*/' + re.escape(ARCHIVE_NAME) + r'#sha256=([0-9a-f]{64}))"', page)
    if match is None:
        raise ValueError(f"{ARCHIVE_NAME} is not listed at {page_url}")
    url, expected = urllib.parse.urljoin(page_url, match.group(1).split("#")[0]), match.group(2)
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=60) as r, open(target, "wb") as f:
        total = int(r.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {ARCHIVE_NAME}") as bar:
            while chunk := r.read(1 << 20):
                f.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    if digest.hexdigest() != expected:
        raise ValueError(f"sha256 mismatch for {url}")


def _cache_file(task: str) -> Path:
    return bigbench_dir() / "tasks" / (task.replace("/", "__") + ".json")


def extract_task_json(task: str, archive: Path | None = None) -> dict:
    """The parsed ``task.json`` of ``task`` (``name`` or ``name/subtask``), cached."""
    cache = _cache_file(task)
    if cache.is_file():
        return json.loads(cache.read_text())
    archive = archive or archive_path()
    suffix = f"/benchmark_tasks/{task}/task.json"
    data = None
    with tarfile.open(archive, "r|gz") as tf:  # stream: never unpack the whole archive
        for member in tf:
            if member.name.endswith(suffix):
                data = tf.extractfile(member).read()
                break
    if data is None:
        raise ScaleOTError(f"unknown BIG-bench task {task!r} (not in {archive.name}; "
                           f"defaults: {', '.join(DEFAULT_TASKS)})")
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
