"""Multiple-choice tasks as records ``{context, choices, label}``, and their splits.

Task names:

- ``bigbench:<task>`` or ``bigbench:<task>/<subtask>``: any BIG-bench JSON task whose
  examples carry ``target_scores`` (see :mod:`scaleot.data.bigbench`).
- a path to a ``.jsonl`` file with one ``{"context", "choices", "label"}`` object a line.
- ``hf:<dataset>[:<config>]`` with fields ``context``/``choices``/``label`` (needs a hub).

Splits are deterministic: a seeded permutation of all examples, cut into test first
(``n_test``), then validation (``n_val``), then train (the rest, or ``n_train``). The
same seed and sizes always give the same three lists, and :class:`TaskSplits` records
both so they can be written wherever results are.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from scaleot.data.example import MCExample
from scaleot.errors import ScaleOTError


@dataclass
class SplitConfig:
    """How a task is split. ``n_train=None`` means all the remaining examples."""

    seed: int = 0
    n_test: int = 500
    n_val: int = 100
    n_train: int | None = None

    def validate(self) -> None:
        from scaleot.errors import check

        problems = []
        if self.n_test <= 0:
            problems.append(f"n_test must be > 0 (got {self.n_test})")
        if self.n_val < 0:
            problems.append(f"n_val must be >= 0 (got {self.n_val})")
        if self.n_train is not None and self.n_train <= 0:
            problems.append(f"n_train must be > 0 (got {self.n_train})")
        check("split", problems)


@dataclass
class TaskSplits:
    """A task cut into train / validation / test, with everything needed to redo the cut."""

    name: str
    train: list[MCExample]
    val: list[MCExample]
    test: list[MCExample]
    config: SplitConfig = field(default_factory=SplitConfig)
    n_total: int = 0

    def describe(self) -> dict:
        """What to record beside results: the task, seed and split sizes."""
        return {"task": self.name, "seed": self.config.seed, "n_total": self.n_total,
                "n_train": len(self.train), "n_val": len(self.val), "n_test": len(self.test)}


def load_jsonl_task(path: str | Path) -> list[MCExample]:
    """Read a local JSONL task; a bad line fails with its file and line number."""
    path = Path(path)
    if not path.is_file():
        raise ScaleOTError(f"task file not found: {path}")
    examples = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ScaleOTError(f"{where}: malformed JSON ({e.msg})") from None
            if not isinstance(obj, dict) or not {"context", "choices", "label"} <= obj.keys():
                raise ScaleOTError(f"{where}: expected an object with context, choices, label")
            ex = MCExample(obj["context"], list(obj["choices"]) if isinstance(obj["choices"], list) else obj["choices"], obj["label"])
            ex.validate(where)
            examples.append(ex)
    if not examples:
        raise ScaleOTError(f"{path}: no examples")
    return examples


def load_hf_task(spec: str) -> list[MCExample]:
    """``hf:<dataset>[:<config>]`` with context/choices/label columns (needs a reachable hub)."""
    import datasets

    parts = spec.split(":")
    name, config = parts[1], (parts[2] if len(parts) > 2 else None)
    try:
        ds = datasets.load_dataset(name, config)
    except Exception as e:  # datasets raises many types when offline
        raise ScaleOTError(f"cannot load HF dataset {name!r}: {str(e).splitlines()[0]}") from None
    examples = []
    for split in ds.values():
        for i, row in enumerate(split):
            ex = MCExample(row["context"], list(row["choices"]), int(row["label"]))
            ex.validate(f"{spec}[{i}]")
            examples.append(ex)
    return examples


def load_task_examples(task: str) -> list[MCExample]:
    """All examples of a task name (see module docstring)."""
    if task.startswith("bigbench:"):
        from scaleot.data.bigbench import load_bigbench_task

        return load_bigbench_task(task.removeprefix("bigbench:"))
    if task.startswith("hf:"):
        return load_hf_task(task)
    if task.endswith(".jsonl") or Path(task).exists():
        return load_jsonl_task(task)
    from scaleot.data.bigbench import DEFAULT_TASKS

    raise ScaleOTError(
        f"unknown task {task!r} (use bigbench:<task>[/<subtask>], e.g. "
        f"{', '.join('bigbench:' + t for t in DEFAULT_TASKS)}; a .jsonl file; or hf:<dataset>)"
    )


def split_examples(name: str, examples: list[MCExample], config: SplitConfig) -> TaskSplits:
    """Deterministic seeded split (test first, then validation, then train)."""
    config.validate()
    if len(examples) < config.n_test + config.n_val + 1:
        raise ScaleOTError(
            f"task {name} has {len(examples)} examples, fewer than n_test + n_val + 1 = "
            f"{config.n_test + config.n_val + 1}"
        )
    order = list(range(len(examples)))
    random.Random(config.seed).shuffle(order)
    test = [examples[i] for i in order[: config.n_test]]
    val = [examples[i] for i in order[config.n_test : config.n_test + config.n_val]]
    rest = order[config.n_test + config.n_val :]
    if config.n_train is not None:
        rest = rest[: config.n_train]
    train = [examples[i] for i in rest]
    return TaskSplits(name, train, val, test, config, len(examples))


def load_task(task: str, split: SplitConfig | None = None) -> TaskSplits:
    """Load a task by name and split it deterministically."""
    return split_examples(task, load_task_examples(task), split or SplitConfig())


def example_to_dict(ex: MCExample) -> dict:
    return asdict(ex)
