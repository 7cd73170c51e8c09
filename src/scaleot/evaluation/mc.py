"""Zero-shot multiple-choice accuracy through lm-evaluation-harness.

scaleot does not score choices by hand: it writes each task's test split as JSONL plus a
generated lm-eval task YAML (``output_type: multiple_choice``), and runs
``lm_eval.simple_evaluate`` with ``HFLM(pretrained=<model object>)``, so ``acc``,
``acc_norm`` (per-character normalised) and their standard errors are exactly the
harness's. This works offline: the YAMLs point ``datasets``' ``json`` builder at local
files and the ``TaskManager`` is built without the harness's built-in task index.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from pathlib import Path

import torch
import yaml

from scaleot.data.tasks import TaskSplits
from scaleot.models.device import use_bf16

log = logging.getLogger(__name__)

METRICS = ("acc", "acc_norm")


def task_slug(name: str) -> str:
    """An lm-eval task name for a scaleot task name (``bigbench:a/b`` -> ``scaleot_a__b``)."""
    return "scaleot_" + re.sub(r"[^0-9A-Za-z]+", "_", name.removeprefix("bigbench:")).strip("_").lower()


def write_task_yaml(folder: Path, splits: TaskSplits, split: str = "test", limit: int | None = None) -> str:
    """Write ``<slug>.jsonl`` and ``<slug>.yaml`` for one task into ``folder``; return the slug."""
    slug = task_slug(splits.name)
    examples = getattr(splits, split)[:limit] if limit else getattr(splits, split)
    data = folder / f"{slug}.jsonl"
    with open(data, "w") as f:
        for ex in examples:
            f.write(json.dumps({"context": ex.context, "choices": ex.choices, "label": ex.label}) + "\n")
    spec = {
        "task": slug,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "context",
        "doc_to_choice": "choices",
        "doc_to_target": "label",
        "target_delimiter": "",  # choices carry their own leading space
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in METRICS],
        "metadata": {"version": 1.0, "scaleot_split": splits.describe()},
    }
    (folder / f"{slug}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return slug


def evaluate_mc(
    model: torch.nn.Module,
    tokenizer,
    splits: list[TaskSplits],
    limit: int | None = None,
    batch_size: int = 16,
    split: str = "test",
    autocast_dtype: str | None = None,
    yaml_dir: str | Path | None = None,
) -> dict[str, dict]:
    """Zero-shot accuracy of ``model`` on each task's ``split``.

    Args:
        model: a causal LM object (full model, emulator, plug-in...).
        tokenizer: its tokenizer.
        splits: tasks, already split (see :func:`scaleot.data.load_task`).
        limit: evaluate only the first ``limit`` examples of each split.
        batch_size: lm-eval batch size.
        autocast_dtype: e.g. ``"bfloat16"`` to run forward passes under autocast.
        yaml_dir: where to keep the generated task YAMLs (default: a temporary folder).

    Returns:
        ``{task_name: {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "n", "split": {...},
        "correct": [0/1, ...]}}`` with accuracies as fractions in [0, 1]; ``correct`` is the
        per-example ``acc`` of the scored examples in document order (for paired comparisons
        of two models on the same examples).
    """
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    was_training = model.training
    model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(yaml_dir) if yaml_dir else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        slugs = {write_task_yaml(folder, s, split, limit): s for s in splits}
        manager = TaskManager(include_path=str(folder), include_defaults=False, verbosity="ERROR")
        device = next(model.parameters()).device
        if autocast_dtype in ("bfloat16", "bf16") and not use_bf16(True, device):
            autocast_dtype = None  # no fast bf16 on this CPU (models.device.bf16_is_fast)
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
                  mixed_precision_dtype=autocast_dtype, device=str(device))
        out = simple_evaluate(model=lm, tasks=list(slugs), task_manager=manager, log_samples=True,
                              bootstrap_iters=0, verbosity="ERROR")
    if was_training:
        model.train()
    results = {}
    for slug, s in slugs.items():
        r = out["results"][slug]
        n = len(getattr(s, split)[:limit] if limit else getattr(s, split))
        row = {"n": n, "split": s.describe()}
        for m in METRICS:
            row[m] = float(r[f"{m},none"])
            err = r.get(f"{m}_stderr,none")
            row[f"{m}_stderr"] = float(err) if isinstance(err, int | float) else _binomial_stderr(row[m], n)
        row["correct"] = _correct(out.get("samples", {}).get(slug, []))
        results[s.name] = row
    return results


def _correct(samples: list[dict]) -> list[int]:
    """Per-example 0/1 ``acc`` from lm-eval's logged samples, sorted by ``doc_id``."""
    return [int(round(float(x["acc"]))) for x in sorted(samples, key=lambda x: x["doc_id"])]


def _binomial_stderr(p: float, n: int) -> float:
    """Standard error of a mean of ``n`` 0/1 outcomes (what lm-eval reports for acc)."""
    return (p * (1 - p) / max(n - 1, 1)) ** 0.5
