"""Data: multiple-choice tasks (BIG-bench, JSONL, HF), splits, generic text, fine-tuning examples."""

from scaleot.data.finetune import IGNORE_INDEX, PadCollator, encode_example
from scaleot.data.tasks import (
    MCExample,
    SplitConfig,
    TaskSplits,
    load_jsonl_task,
    load_task,
    load_task_examples,
    split_examples,
)
from scaleot.data.text import corpus_splits, pack_blocks, read_corpus

__all__ = [
    "IGNORE_INDEX", "PadCollator", "encode_example", "MCExample", "SplitConfig", "TaskSplits",
    "load_jsonl_task", "load_task", "load_task_examples", "split_examples", "corpus_splits",
    "pack_blocks", "read_corpus",
]
