"""Data: multiple-choice tasks (generated, package-shipped, JSONL, HF, BIG-bench), splits, generic text,
fine-tuning examples."""

from scaleot.data.finetune import IGNORE_INDEX, PadCollator, encode_example
from scaleot.data.tasks import (
    DEFAULT_TASKS,
    MCExample,
    SplitConfig,
    TaskSplits,
    builtin_tasks,
    load_jsonl_task,
    load_task,
    load_task_examples,
    split_examples,
)
from scaleot.data.text import corpus_splits, pack_blocks, read_corpus

__all__ = [
    "DEFAULT_TASKS", "IGNORE_INDEX", "builtin_tasks", "PadCollator", "encode_example", "MCExample", "SplitConfig", "TaskSplits",
    "load_jsonl_task", "load_task", "load_task_examples", "split_examples", "corpus_splits",
    "pack_blocks", "read_corpus",
]
