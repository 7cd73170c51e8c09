"""The job-level keys of a run YAML, checked before any step runs.

:func:`scaleot.recipes.run.load_run_config` checks every section against the config
dataclass it feeds (strictly, key by key: :func:`scaleot.recipes.options.config_from_section`);
this module checks what no section dataclass owns: ``model`` and ``device`` are strings, the
tasks load (so a missing or malformed task file fails here, not after emulate), the
``evaluate`` options (the offsite fields of :class:`~scaleot.evaluation.config.EvaluateConfig`),
and ``report`` (no options). Each problem names its place::

    evaluate: unknown options ['limitt'] (known: ['autocast', 'batch_size', 'limit', 'scorer'])
    evaluate.scorer must be one of fast, lm-eval (got 'quick')
"""

from __future__ import annotations

import typing
from dataclasses import fields, make_dataclass
from typing import Any

from scaleot.errors import ScaleOTError
from scaleot.evaluation.config import EvaluateConfig
from scaleot.models.device import AUTOCAST
from scaleot.validate.options import option_problems

# the evaluate: section: the EvaluateConfig fields the offsite rows use, with their types
EVALUATE_TYPES: dict[str, Any] = {f.name: typing.get_type_hints(EvaluateConfig)[f.name]
                                  for f in fields(EvaluateConfig) if f.metadata.get("offsite")}


def _evaluate_problems(opts: Any) -> list[str]:
    from scaleot.evaluation.mc import SCORERS

    if opts is None:
        return []
    if not isinstance(opts, dict):
        return [f"evaluate: expected a mapping of options, found {type(opts).__name__}"]
    problems = []
    unknown = sorted(str(k) for k in set(opts) - set(EVALUATE_TYPES))
    if unknown:
        problems.append(f"evaluate: unknown options {unknown} (known: {sorted(EVALUATE_TYPES)})")
    known = {k: v for k, v in opts.items() if k in EVALUATE_TYPES}
    shape = make_dataclass("EvaluateOptions", list(EVALUATE_TYPES.items()))
    typed = option_problems(shape, known, "evaluate")
    problems += typed
    if typed or not known:
        return problems
    if opts.get("limit") is not None and opts["limit"] < 1:
        problems.append(f"evaluate.limit must be >= 1 (got {opts['limit']})")
    if "batch_size" in opts and opts["batch_size"] < 1:
        problems.append(f"evaluate.batch_size must be >= 1 (got {opts['batch_size']})")
    if opts.get("autocast") not in (None, *AUTOCAST):
        problems.append(f"evaluate.autocast must be one of {', '.join(AUTOCAST)} (got {opts['autocast']!r})")
    if opts.get("scorer") is not None and opts["scorer"] not in SCORERS:
        problems.append(f"evaluate.scorer must be one of {', '.join(SCORERS)} (got {opts['scorer']!r})")
    return problems


def _task_problems(tasks: Any) -> list[str]:
    from scaleot.data.tasks import load_task_examples

    if not isinstance(tasks, list) or not tasks:
        return ["tasks: a list of at least one task is needed"]
    problems = []
    for i, t in enumerate(tasks):
        if not isinstance(t, str) or not t:
            problems.append(f"tasks[{i}]: a task name or .jsonl path is needed (got {t!r:.40})")
            continue
        try:
            load_task_examples(t)
        except ScaleOTError as e:
            problems.append(f"tasks[{i}]: {e}")
    if len(set(map(str, tasks))) != len(tasks):
        problems.append("tasks: a task is listed twice")
    return problems


def job_problems(cfg: dict) -> list[str]:
    """Problems of the job-level keys of a parsed run YAML (empty when they are fine)."""
    problems = []
    for key in ("model", "device"):
        if cfg.get(key) is not None and not isinstance(cfg[key], str):
            problems.append(f"{key}: a string is needed (got {cfg[key]!r:.40})")
    if cfg.get("report") not in (None, {}):
        problems.append("report: takes no options")
    problems += _task_problems(cfg.get("tasks"))
    problems += _evaluate_problems(cfg.get("evaluate"))
    return problems
