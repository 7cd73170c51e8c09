"""What a checkpoint trains on, so ``--resume`` continues only the same run.

A checkpoint's ``state.json`` holds ``provenance``: fingerprints of the task (name and a
hash of the examples), the corpus, the model or emulator, and the adapter split.
:func:`check_resume` refuses a resume whose provenance differs, naming each difference;
:func:`prunable` lets checkpoint pruning touch only the current run's older checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path

from scaleot.errors import ScaleOTError
from scaleot.exchange.hashing import file_sha256, json_sha256


def task_provenance(splits) -> dict:
    """The task as training sees it: its name and a hash of train + validation examples."""
    from dataclasses import asdict

    examples = [[asdict(e) for e in splits.train], [asdict(e) for e in splits.val]]
    return {"task": splits.name, "task_sha256": json_sha256(examples, tag=True, ensure_ascii=False)}


def corpus_provenance(corpus: str) -> dict:
    """A corpus: its name, and for a local file the hash of its bytes."""
    p = Path(corpus).expanduser()
    return {"corpus": corpus if not p.is_file() else p.name,
            "corpus_sha256": file_sha256(p, tag=True) if p.is_file() else None}


def _normal(obj):
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def provenance_differences(state: dict, provenance: dict) -> list[str]:
    """``key (there, now)`` for every recorded input that differs (empty when none does)."""
    theirs = state.get("provenance")
    if not isinstance(theirs, dict):
        return []
    mine = _normal(provenance)
    diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    return [f"{k} ({theirs.get(k)!r:.40} there, {mine.get(k)!r:.40} now)" for k in diff]


def check_resume(state: dict, provenance: dict, checkpoint: str | Path,
                 option_diff: list[str] | None = None) -> None:
    """Refuse resuming ``checkpoint`` for a run on other inputs (or, with ``option_diff``, other options).

    Every difference is named in the one line: the options that differ and the inputs
    (task, model or emulator fingerprint, blocks) that differ.

    Raises:
        ScaleOTError: the checkpoint has no provenance (made before scaleot recorded it,
            or damaged), or any recorded key or option differs.
    """
    if not isinstance(state.get("provenance"), dict):
        raise ScaleOTError(f"--resume: checkpoint {checkpoint} does not record what it trained on; "
                           "start a new run")
    inputs = provenance_differences(state, provenance)
    parts = []
    if option_diff:
        parts.append(f"options differ ({', '.join(option_diff)})")
    if inputs:
        parts.append(f"trained on other inputs: {', '.join(inputs[:3])}")
    if parts:
        raise ScaleOTError(f"--resume: checkpoint {checkpoint} {'; '.join(parts)}; use a new --out")


def prunable(root: Path, step: int, state: dict, keep: int) -> list[Path]:
    """Checkpoints of *this* run (same provenance) older than ``step``, all but the newest ``keep``.

    ``keep`` counts the checkpoint just written. Another run's checkpoints, whatever
    their step numbers, are never returned.
    """
    mine = _normal(state.get("provenance"))
    ours = []
    for p in root.glob("step-*"):
        try:
            other = json.loads((p / "state.json").read_text())
            n = int(other["step"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if n < step and _normal(other.get("provenance")) == mine:
            ours.append((n, p))
    ours.sort()
    return [p for _, p in ours[: max(0, len(ours) - (keep - 1))]]
