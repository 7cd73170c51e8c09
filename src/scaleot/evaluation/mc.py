"""Zero-shot multiple-choice accuracy: lm-evaluation-harness, or the same numbers faster.

Two scorers give lm-eval's ``multiple_choice`` numbers (``acc``, ``acc_norm`` per-character
normalised, their standard errors, the per-example ``correct``):

- ``"lm-eval"`` (the reference): each task's test split is written as JSONL plus a
  generated lm-eval task YAML (``output_type: multiple_choice``), and
  ``lm_eval.simple_evaluate`` runs ``HFLM(pretrained=<model object>)``. This works
  offline: the YAMLs point ``datasets``' ``json`` builder at local files and the
  ``TaskManager`` is built without the harness's built-in task index.
- ``"fast"`` (the default, measured faster in ``bench/scoring.py``):
  :mod:`scaleot.evaluation.fast_mc` runs each context once and scores its choices on the
  shared KV cache, with lm-eval's tokenisation, window and metrics. Where it cannot
  reproduce a plain forward pass (:func:`~scaleot.evaluation.fast_mc.fast_scorer_problem`)
  it falls back to lm-eval with a warning, and the result's ``scorer`` says ``lm-eval``
  (``scorer_fallback`` gives the reason).

Both scorers refuse examples with fewer than 2 choices or an empty choice string, and
count the examples whose ``context + choice`` had to be cut from the left to fit the
model's window (``truncated``).
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
from scaleot.errors import ScaleOTError
from scaleot.evaluation.fast_mc import (
    encode_examples,
    fast_scorer_problem,
    model_window,
    predictions,
    score_examples,
)
from scaleot.models.device import use_bf16

log = logging.getLogger(__name__)

METRICS = ("acc", "acc_norm")
SCORERS = ("fast", "lm-eval")
DEFAULT_SCORER = "fast"  # bench/results/scoring.md: several times lm-eval's examples/s, same accuracies


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
    scorer: str = DEFAULT_SCORER,
    keep_loglikelihoods: bool = False,
    progress: bool = False,
    desc: str = "score",
) -> dict[str, dict]:
    """Zero-shot accuracy of ``model`` on each task's ``split``.

    Args:
        model: a causal LM object (full model, emulator, plug-in...).
        tokenizer: its tokenizer.
        splits: tasks, already split (see :func:`scaleot.data.load_task`).
        limit: evaluate only the first ``limit`` examples of each split.
        batch_size: lm-eval's batch size (requests); the fast scorer sizes its batches in tokens
            (:data:`~scaleot.evaluation.fast_mc.CONTEXT_BUDGET`).
        autocast_dtype: e.g. ``"bfloat16"`` to run forward passes under autocast (where fast).
        yaml_dir: where to keep the generated task YAMLs (``"lm-eval"``; default: a temporary folder).
        scorer: ``"fast"`` or ``"lm-eval"`` (see the module docstring).
        keep_loglikelihoods: also return ``loglikelihoods`` (per example, per choice).
        progress: show a progress bar (:func:`scaleot.progress.progress_bar`, labelled ``desc``)
            over the examples of every task (the fast scorer; lm-eval draws its own over its requests).

    Returns:
        ``{task_name: {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "n", "split": {...},
        "correct": [0/1, ...], "truncated", "scorer"}}`` with accuracies as fractions in
        [0, 1]; ``correct`` is the per-example ``acc`` of the scored examples in document order
        (for paired comparisons of two models on the same examples); ``scorer`` is the scorer
        that really ran (plus ``scorer_fallback``, the reason, where ``"fast"`` fell back).

    Raises:
        ScaleOTError: an unknown scorer; an example with fewer than 2 choices, an empty choice,
            or a choice longer than the model's window.
    """
    if scorer not in SCORERS:
        raise ScaleOTError(f"unknown scorer {scorer!r} (use {' or '.join(SCORERS)})")
    examples = {s.name: _examples(s, split, limit) for s in splits}
    window = model_window(model, tokenizer)
    encoded = {name: encode_examples(name, exs, tokenizer, window) for name, exs in examples.items()}
    device = next(model.parameters()).device
    if autocast_dtype in ("bfloat16", "bf16") and not use_bf16(True, device):
        autocast_dtype = None  # no fast bf16 on this CPU (models.device.bf16_is_fast)
    fallback = None
    if scorer == "fast":
        if autocast_dtype not in (None, "bfloat16", "bf16"):
            fallback = f"the fast scorer runs fp32 or bf16 autocast, not {autocast_dtype}"
        else:
            fallback = fast_scorer_problem(model, bf16=autocast_dtype is not None)
        if fallback:
            log.warning("fast scorer unavailable for %s (%s): scoring with lm-eval", type(model).__name__, fallback)
            scorer = "lm-eval"
    if scorer == "fast":
        from scaleot.progress import progress_bar

        results = {}
        total = sum(len(e.groups) for e in encoded.values())
        with progress_bar(total, desc, progress, unit="ex", leave=False) as bar:
            for s in splits:
                scored = score_examples(model, tokenizer, examples[s.name], s.name,
                                        bf16=autocast_dtype is not None, window=window, bar=bar)
                results[s.name] = _fast_row(s, examples[s.name], scored.loglikelihoods, keep_loglikelihoods)
    else:
        results = _lm_eval(model, tokenizer, splits, examples, batch_size, split, limit, autocast_dtype, yaml_dir,
                           keep_loglikelihoods)
    for name, row in results.items():
        row["truncated"] = encoded[name].truncated
        row["scorer"] = scorer
        if fallback:
            row["scorer_fallback"] = fallback
    return results


def _examples(s: TaskSplits, split: str, limit: int | None) -> list:
    return getattr(s, split)[:limit] if limit else getattr(s, split)


def _fast_row(s: TaskSplits, examples: list, lls: list[list[float]], keep: bool) -> dict:
    """lm-eval's ``multiple_choice`` metrics from per-choice log-likelihoods."""
    correct, correct_norm = [], []
    for ex, ll in zip(examples, lls, strict=True):
        pred, pred_norm = predictions(ll, ex.choices)
        correct.append(int(pred == ex.label))
        correct_norm.append(int(pred_norm == ex.label))
    n = len(examples)
    row = {"n": n, "split": s.describe()}
    for m, values in (("acc", correct), ("acc_norm", correct_norm)):
        row[m] = sum(values) / n
        row[f"{m}_stderr"] = _binomial_stderr(row[m], n)
    row["correct"] = correct
    if keep:
        row["loglikelihoods"] = lls
    return row


def _lm_eval(model, tokenizer, splits, examples, batch_size, split, limit, autocast_dtype, yaml_dir,
             keep_loglikelihoods) -> dict[str, dict]:
    """The reference: ``simple_evaluate`` on generated task YAMLs with ``HFLM(pretrained=model)``."""
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
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
                  mixed_precision_dtype=autocast_dtype, device=str(device))
        out = simple_evaluate(model=lm, tasks=list(slugs), task_manager=manager, log_samples=True,
                              bootstrap_iters=0, verbosity="ERROR")
    model.train(was_training)
    results = {}
    for slug, s in slugs.items():
        r = out["results"][slug]
        n = len(examples[s.name])
        row = {"n": n, "split": s.describe()}
        for m in METRICS:
            row[m] = float(r[f"{m},none"])
            err = r.get(f"{m}_stderr,none")
            row[f"{m}_stderr"] = float(err) if isinstance(err, int | float) else _binomial_stderr(row[m], n)
        samples = out.get("samples", {}).get(slug, [])
        row["correct"] = _correct(samples)
        if keep_loglikelihoods:
            row["loglikelihoods"] = _loglikelihoods(samples)
        results[s.name] = row
    return results


def _loglikelihoods(samples: list[dict]) -> list[list[float]]:
    """Per-example, per-choice log-likelihoods from lm-eval's logged samples, sorted by ``doc_id``."""
    return [[float(r[0]) for r in x["filtered_resps"]] for x in sorted(samples, key=lambda x: x["doc_id"])]


def _correct(samples: list[dict]) -> list[int]:
    """Per-example 0/1 ``acc`` from lm-eval's logged samples, sorted by ``doc_id``."""
    return [int(round(float(x["acc"]))) for x in sorted(samples, key=lambda x: x["doc_id"])]


def _binomial_stderr(p: float, n: int) -> float:
    """Standard error of a mean of ``n`` 0/1 outcomes (what lm-eval reports for acc)."""
    return (p * (1 - p) / max(n - 1, 1)) ** 0.5
