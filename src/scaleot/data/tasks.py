"""Multiple-choice tasks as records ``{context, choices, label}``, and their splits.

Task names (one scheme, ``<source>:<name>``; README "Tasks" lists what each source needs):

- ``gen:<family>[?n=<size>&seed=<seed>]``: generated in this project, any size, answer known
  (:mod:`scaleot.data.generated`). Needs nothing.
- ``pkg:<family>[?n=<size>&seed=<seed>]``: curated real data shipped by a pinned registry
  package (:mod:`scaleot.data.packaged`). Needs the packages ``make`` installs.
- a path to a ``.jsonl`` file with one ``{"context", "choices", "label"}`` object a line, or a
  local HF dataset folder (``datasets.save_to_disk``) with those columns.
- ``hf:<dataset>[:<config>]`` with fields ``context``/``choices``/``label`` (needs a hub).
- ``bigbench:<task>[/<subtask>]``: optional; reads a BIG-bench archive or task folder the
  user supplies (``SCALEOT_BIGBENCH``, see :mod:`scaleot.data.bigbench`). Never a default.

Splits are deterministic: a seeded permutation of all examples, cut into test first
(``n_test``), then dev (``n_val``, also called validation), then train (the rest, or
``n_train``). Choices (tasks, hyperparameters, budgets) are made on dev; test is scored once. The
same seed and sizes always give the same three lists, and :class:`TaskSplits` records
both so they can be written wherever results are.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from scaleot.data.example import MAX_CHOICE_CHARS, MAX_CONTEXT_CHARS, MCExample  # noqa: F401 (re-exported)
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
    from scaleot.validate.files import parse_json_bytes

    examples = []
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            obj = parse_json_bytes(line, where)
            if not isinstance(obj, dict) or not {"context", "choices", "label"} <= obj.keys():
                raise ScaleOTError(f"{where}: expected an object with context, choices, label")
            ex = MCExample(obj["context"], list(obj["choices"]) if isinstance(obj["choices"], list) else obj["choices"], obj["label"])
            ex.validate(where)
            examples.append(ex)
    if not examples:
        raise ScaleOTError(f"{path}: no examples")
    return examples


def _hf_rows_to_examples(dataset_dict, spec: str) -> list[MCExample]:
    examples = []
    splits = dataset_dict.values() if hasattr(dataset_dict, "values") else [dataset_dict]
    for split in splits:
        missing = {"context", "choices", "label"} - set(split.column_names)
        if missing:
            raise ScaleOTError(f"{spec}: the dataset has no column {sorted(missing)[0]!r} (needs context, choices, label)")
        for i, row in enumerate(split):
            label = row["label"]
            ex = MCExample(row["context"], list(row["choices"]) if isinstance(row["choices"], list) else row["choices"], label)
            ex.validate(f"{spec}[{i}]")
            examples.append(ex)
    if not examples:
        raise ScaleOTError(f"{spec}: no examples")
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
    return _hf_rows_to_examples(ds, spec)


def load_hf_folder(path: Path) -> list[MCExample]:
    """A local dataset folder written by ``datasets``' ``save_to_disk`` (no hub needed)."""
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # FileNotFoundError, ValueError, ... depending on what is missing
        raise ScaleOTError(f"{path}: not a dataset folder saved by datasets ({str(e).splitlines()[0]})") from None
    return _hf_rows_to_examples(ds, str(path))


SOURCES = "gen:<family>, pkg:<family>, a .jsonl file or dataset folder, hf:<dataset>, bigbench:<task>"


def load_task_examples(task: str) -> list[MCExample]:
    """All examples of a task name (see module docstring)."""
    if task.startswith("gen:"):
        from scaleot.data.generated import generate_task

        return generate_task(task)
    if task.startswith("pkg:"):
        from scaleot.data.packaged import load_packaged_task

        return load_packaged_task(task)
    if task.startswith("bigbench:"):
        from scaleot.data.bigbench import load_bigbench_task

        return load_bigbench_task(task.removeprefix("bigbench:"))
    if task.startswith("hf:"):
        return load_hf_task(task)
    if task.endswith(".jsonl") or Path(task).is_file():
        return load_jsonl_task(task)
    if Path(task).is_dir():
        return load_hf_folder(Path(task))
    from scaleot.data.generated import FAMILIES

    raise ScaleOTError(f"unknown task {task!r} (use {SOURCES}; e.g. "
                       f"{', '.join('gen:' + f for f in list(FAMILIES)[:3])})")


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


# The default job's tasks (configs/default.yaml; tests/test_shipped_configs.py checks they agree):
# what `scaleot fetch` prepares and `scaleot audit` measures unless told otherwise. Chosen on dev
# splits by the rule in bench/suite.py (BENCHMARKS.md, "Task foundation").
DEFAULT_TASKS = ("gen:uppercase", "pkg:rhyme")


def builtin_tasks() -> list[str]:
    """Every generated and package-shipped task family, by name."""
    from scaleot.data.generated import FAMILIES as GENERATED
    from scaleot.data.packaged import FAMILIES as PACKAGED

    return [f"gen:{f}" for f in GENERATED] + [f"pkg:{f}" for f in PACKAGED]
