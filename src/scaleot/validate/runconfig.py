"""The run YAML, checked key by key before any step runs.

Every section is checked against the config dataclass it feeds (strictly, with pydantic:
:func:`~scaleot.validate.options.option_problems`), then each dataclass is built once
to run its own range checks; tasks are loaded once, so a missing or malformed task
file fails here. Every problem is reported at once, each named by its place::

    scaleot: error: invalid run config quick.yaml: evaluate.limitt: unknown option (known:
    autocast, batch_size, limit); finetune.lr: Input should be a valid number (got 'fast')
"""

from __future__ import annotations

from typing import Any

from scaleot.validate.options import build_problems, option_problems

SECTIONS = {"model", "tasks", "device", "importance", "emulators", "finetune", "ft", "evaluate", "report"}
SET_BY_RUN = {"model", "device", "importance"}  # emulator fields the run fills in itself
EVALUATE_TYPES: dict[str, Any] = {"limit": int | None, "batch_size": int, "autocast": str | None,
                                  "scorer": str | None}
AUTOCASTS = (None, "bfloat16", "bf16", "float16", "none")


def _evaluate_problems(opts: Any) -> list[str]:
    from dataclasses import make_dataclass

    shape = make_dataclass("EvaluateOptions", [(k, t) for k, t in EVALUATE_TYPES.items()])
    problems = option_problems(shape, opts, "evaluate")
    if problems or not opts:
        return problems
    if opts.get("limit") is not None and opts["limit"] < 1:
        problems.append(f"evaluate.limit must be >= 1 (got {opts['limit']})")
    if "batch_size" in opts and opts["batch_size"] < 1:
        problems.append(f"evaluate.batch_size must be >= 1 (got {opts['batch_size']})")
    from scaleot.evaluation.mc import SCORERS

    if opts.get("scorer") is not None and opts["scorer"] not in SCORERS:
        problems.append(f"evaluate.scorer must be one of {', '.join(SCORERS)} (got {opts['scorer']!r})")
    if opts.get("autocast") not in AUTOCASTS:
        problems.append(f"evaluate.autocast must be one of bfloat16, float16 or none (got {opts['autocast']!r})")
    return problems


def _importance_problems(opts: Any) -> list[str]:
    from scaleot.importance.config import ImportanceConfig
    from scaleot.tuners.harmonizer import HarmonizerConfig

    problems = option_problems(ImportanceConfig, opts, "importance", extra={"corpus": str, "from": str})
    if not isinstance(opts, dict) or "from" in opts:
        return problems
    problems += option_problems(HarmonizerConfig, opts.get("harmonizer"), "importance.harmonizer")
    if problems:
        return problems
    return build_problems(ImportanceConfig, {k: v for k, v in opts.items() if k != "corpus"}, "importance")


def _emulator_problems(emus: Any) -> list[str]:
    from scaleot.emulator import EmulatorConfig

    if not isinstance(emus, list) or not emus:
        return ["emulators: a list of {name, method, ...} entries is needed"]
    problems = []
    names = []
    for i, e in enumerate(emus):
        where = f"emulators[{i}]"
        if not isinstance(e, dict) or not isinstance(e.get("name"), str) or not e["name"]:
            problems.append(f"{where}: needs a mapping with a string 'name'")
            continue
        names.append(e["name"])
        opts = {k: v for k, v in e.items() if k != "name"}
        fixed = sorted(SET_BY_RUN & set(opts))
        if fixed:
            problems.append(f"{where}: {', '.join(fixed)} are set by the run, not per emulator")
            continue
        own = option_problems(EmulatorConfig, opts, where)
        if not own:
            own = build_problems(EmulatorConfig, dict(opts, importance="(the run's importance folder)"), where)
        problems += own
    if len(set(names)) != len(names):
        problems.append("emulators: names must be unique")
    return problems


def _finetune_problems(cfg: dict) -> list[str]:
    from scaleot.finetune import FinetuneConfig

    problems = []
    for sec in ("finetune", "ft"):
        problems += option_problems(FinetuneConfig, cfg.get(sec), sec)
    if problems:
        return problems
    base = dict(cfg.get("finetune") or {})
    problems += build_problems(FinetuneConfig, base, "finetune")
    if cfg.get("ft"):
        problems += build_problems(FinetuneConfig, dict(base, **cfg["ft"]), "ft")
    return problems


def _task_problems(tasks: Any) -> list[str]:
    from scaleot.data.tasks import load_task_examples
    from scaleot.errors import ScaleOTError

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


def run_config_problems(cfg: Any) -> list[str]:
    """Every problem of a parsed run YAML (empty when it is fine)."""
    if not isinstance(cfg, dict):
        return [f"expected a mapping of sections, found {type(cfg).__name__}"]
    problems = []
    unknown = sorted(str(k) for k in set(cfg) - SECTIONS)
    if unknown:
        problems.append(f"unknown sections {unknown} (known: {sorted(SECTIONS)})")
    for key in ("model", "device"):
        if cfg.get(key) is not None and not isinstance(cfg[key], str):
            problems.append(f"{key}: a string is needed (got {cfg[key]!r:.40})")
    if cfg.get("report") not in (None, {}):
        problems.append("report: takes no options")
    problems += _task_problems(cfg.get("tasks"))
    problems += _importance_problems(cfg.get("importance"))
    problems += _emulator_problems(cfg.get("emulators"))
    problems += _finetune_problems(cfg)
    problems += _evaluate_problems(cfg.get("evaluate"))
    return problems
