"""The steps of ``scaleot run`` as one table: which recipe, which YAML section, what it reads.

Each :class:`Step` names its recipe (:class:`~scaleot.recipes.protocol.Recipe`), the run
YAML section it reads, the earlier steps whose outputs on disk it reads, the manifest kind
of its output (``None``: a result file, ``eval/<name>.json``) and a function that lists
its instances (one per emulator, task, or both) with the one config object each recipe
reads. :class:`~scaleot.recipes.run.RunRecipe` loops over :data:`STEPS` in order. The
digest of each instance is exactly what ``steps.json`` recorded before the table existed,
so a run folder made by an earlier version skips the same steps.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scaleot.data_owner.finetune import FinetuneConfig
from scaleot.evaluation.config import EvaluateConfig
from scaleot.exchange.kinds import ADAPTER, AUDIT, EMULATOR, IMPORTANCE, PLUGGED_MODEL
from scaleot.exchange.manifest import read_json
from scaleot.model_owner.audit.config import AuditConfig
from scaleot.model_owner.emulator.config import NEEDS_IMPORTANCE, EmulatorConfig
from scaleot.model_owner.importance.config import ImportanceConfig
from scaleot.outputs import MAX_NAME_CHARS, check_name
from scaleot.recipes.audit import AuditRecipe, AuditRun
from scaleot.recipes.emulate import EmulateRecipe, EmulateRun
from scaleot.recipes.evaluate import EvaluateRecipe, EvaluateRun
from scaleot.recipes.finetune import FinetuneRecipe, FinetuneRun
from scaleot.recipes.importance import ImportanceRecipe, ImportanceRun
from scaleot.recipes.plug import PlugRecipe, PlugRun
from scaleot.recipes.protocol import run_recipe  # noqa: F401 (RunRecipe calls it from here; tests stub it)
from scaleot.recipes.run_options import RunOptions

if TYPE_CHECKING:
    from scaleot.recipes.run import RunRecipe

# Keys an emulator entry accepted while EmulatorConfig held the run-level options (issue 29). The
# recipe always replaced them with the run's own (default dtype, no resume), so they never acted;
# they are still accepted (:func:`scaleot.recipes.run.load_run_config` warns), left out of the
# config and kept in the digest input: a YAML that ran before runs, and skips, as before.
IGNORED_KEYS = {"emulators": ("dtype", "resume")}


@dataclass(frozen=True)
class Instance:
    """One piece of work of a step: its ``steps.json`` name, output, config and digest input."""

    name: str  # "finetune/scaleot/parity"
    of: tuple[str, ...]  # (), (emulator,), (emulator, task) or (task,): how later steps find the output
    out: Path
    config: Any  # the recipe's one config object
    deps: Any  # what the digest covers


@dataclass(frozen=True)
class Step:
    """One row of the table."""

    name: str
    recipe: type
    section: str | None  # the run YAML section it reads
    reads: tuple[str, ...]  # earlier steps whose outputs it reads from disk
    kind: str | None  # manifest kind of each output; None: a result file
    instances: Callable[[RunRecipe], Iterator[Instance]]
    record: Callable[[Path], dict] | None = None  # extra steps.json fields, from the output


def task_dir(task: str) -> str:
    """A folder name for a task (``bigbench:a/b`` -> ``a__b``; a file path -> its stem;
    ``gen:arithmetic?n=40&seed=1`` -> ``gen_arithmetic_n_40_seed_1``).

    Always a name under :func:`scaleot.outputs.check_name`'s rule: characters outside
    ``[0-9A-Za-z_.-]`` become ``_``, a leading ``.`` or ``-`` becomes ``_`` (so never
    ``.``, ``..`` or hidden), an empty result is ``_``, and a long one is cut and ends in a
    hash of the whole task name.
    """
    name = Path(task).stem if task.endswith(".jsonl") else task.removeprefix("bigbench:")
    name = re.sub(r"[^0-9A-Za-z_.-]+", "_", name.replace("/", "__"))
    name = re.sub(r"^[.-]+", "_", name) or "_"
    if len(name) > MAX_NAME_CHARS:
        name = name[:MAX_NAME_CHARS - 13] + "-" + hashlib.sha256(task.encode("utf-8", "replace")).hexdigest()[:12]
    return check_name(name, f"task {task!r:.60}: folder name")


def _digest_of(run: RunRecipe, name: str) -> str | None:
    return run.steps.get(name, {}).get("digest")


def _options(run: RunRecipe, out: Path, **kw) -> RunOptions:
    """The run-level options every step of the job gets: the job's model and device, overwrite."""
    return RunOptions(**{"out": out, "model": run.cfg["model"], "device": run.device, "overwrite": True,
                         "progress": run.progress, **kw})


def importance_instances(run: RunRecipe) -> Iterator[Instance]:
    """Stage 1 once, when an emulator needs it (or a finished one reused with ``from:``)."""
    if not any(e.get("method", "scaleot") in NEEDS_IMPORTANCE for e in run.cfg["emulators"]):
        return
    opts = dict(run.cfg.get("importance") or {})
    if "from" in opts:  # reuse a finished stage 1 (verified; the emulator checks its fingerprint)
        run.reuse_importance(Path(opts["from"]).expanduser())
        return
    corpus = opts.pop("corpus", "kjv")
    folder = run.path("importance")
    config = ImportanceRun(run=_options(run, folder), options=ImportanceConfig(**opts), corpus=corpus)
    yield Instance("importance", (), folder, config, [run.cfg["model"], corpus, opts])


def emulate_instances(run: RunRecipe) -> Iterator[Instance]:
    """One bundle per entry of ``emulators``."""
    importance = run.outputs["importance"].get(())
    for entry in run.cfg["emulators"]:
        opts = {k: v for k, v in entry.items() if k != "name"}
        if opts.get("method", "scaleot") in NEEDS_IMPORTANCE:
            opts["importance"] = str(importance)
        folder = run.path("emulators", entry["name"])
        kept = {k: v for k, v in opts.items() if k not in IGNORED_KEYS["emulators"]}
        config = EmulateRun(run=_options(run, folder), config=EmulatorConfig(**kept))
        yield Instance(f"emulate/{entry['name']}", (entry["name"],), folder, config,
                       [opts, _digest_of(run, "importance")])


def _with_device(run: RunRecipe, opts: dict) -> dict:
    """A finetune digest input: the section's options with the job's ``device``.

    The device is run-level (the recipe gets it from :func:`_options`), no longer a
    :class:`FinetuneConfig` field (issue 29), but the digest input keeps it, as it was
    recorded before, so an existing run folder skips the same steps."""
    return dict(opts, device=run.device)


def finetune_instances(run: RunRecipe) -> Iterator[Instance]:
    """The data owner's adapter per emulator and task (the task is disclosed: the run plays both
    parties, and its evaluate pairs adapters with tasks)."""
    base = dict(run.cfg.get("finetune") or {})
    for (name,), emu in run.outputs["emulate"].items():
        for task in run.cfg["tasks"]:
            folder = run.path("adapters", name, task_dir(task))
            config = FinetuneRun(run=_options(run, folder, model=None), task=task, config=FinetuneConfig(**base),
                                 emulator=emu, disclose_task=True)
            yield Instance(f"finetune/{name}/{task_dir(task)}", (name, task), folder, config,
                           [task, _with_device(run, base), _digest_of(run, f"emulate/{name}")])


def ft_instances(run: RunRecipe) -> Iterator[Instance]:
    """The FT row: the full model tuned directly, per task (``ft:`` overrides ``finetune:``)."""
    ft_opts = dict(run.cfg.get("finetune") or {}, **(run.cfg.get("ft") or {}))
    for task in run.cfg["tasks"]:
        folder = run.path("ft", task_dir(task))
        config = FinetuneRun(run=_options(run, folder), task=task, config=FinetuneConfig(**ft_opts),
                             disclose_task=True)
        yield Instance(f"ft/{task_dir(task)}", (task,), folder, config, [task, _with_device(run, ft_opts),
                                                                           run.cfg["model"]])


def plug_instances(run: RunRecipe) -> Iterator[Instance]:
    """The plug-in model of each emulator in ``plug:`` (default: all) and task."""
    names = run.cfg.get("plug")
    emulators = run.outputs["emulate"]
    for name in [e["name"] for e in run.cfg["emulators"]] if names is None else names:
        for (_, task), adapter in ((k, v) for k, v in run.outputs["finetune"].items() if k[0] == name):
            where = f"{name}/{task_dir(task)}"
            folder = run.path("plugged", name, task_dir(task))
            config = PlugRun(run=_options(run, folder), adapter=adapter, emulator=emulators[(name,)])
            yield Instance(f"plug/{where}", (name, task), folder, config, [_digest_of(run, f"finetune/{where}")])


def _offsite_defaults() -> dict:
    from scaleot.evaluation.offsite import evaluate_offsite

    params = inspect.signature(evaluate_offsite).parameters
    return {f.name: params[f.name].default for f in fields(EvaluateConfig) if f.metadata.get("offsite")}


# An ``evaluate:`` key the YAML leaves out takes evaluate_offsite's own default (an unset
# ``scorer`` lets rows kept from before stand; ``batch_size`` 16), as before the table.
OFFSITE_DEFAULTS = _offsite_defaults()


def evaluate_instances(run: RunRecipe) -> Iterator[Instance]:
    """The five rows + Delta per emulator; Full ZS and FT are scored once and read back from the
    previous emulator's ``eval/<name>.json``."""
    opts = dict(run.cfg.get("evaluate") or {})
    tasks = list(run.cfg["tasks"])
    known = None
    for (name,), emu in run.outputs["emulate"].items():
        target = run.path("eval", f"{name}.json")
        adapters = [run.outputs["finetune"][(name, t)] for t in tasks]
        config = EvaluateRun(run=_options(run, target), config=EvaluateConfig(**dict(OFFSITE_DEFAULTS, **opts),
                                                                                tasks=tasks),
                             offsite=True, emulator=emu, adapter=adapters,
                             ft=[run.outputs["ft"][(t,)] for t in tasks], known=known)
        # an explicit `scorer:` is part of the digest; without one, results kept from before are not
        # redone (both scorers give the same numbers) and each row's `scorer` says which one ran
        deps = [opts, [_digest_of(run, f"finetune/{name}/{task_dir(t)}") for t in tasks],
                [_digest_of(run, f"ft/{task_dir(t)}") for t in tasks]]
        yield Instance(f"evaluate/{name}", (name,), target, config, deps)
        rows = read_json(target)["rows"]
        known = {t: {r: rows[t][r] for r in ("Full ZS", "FT") if r in rows[t]} for t in rows}


def audit_instances(run: RunRecipe) -> Iterator[Instance]:
    """``scaleot audit`` of every emulator (with an ``audit:`` section); an unfinished audit
    continues its attack. A broken threshold is reported, it does not stop the run."""
    if "audit" not in run.cfg:
        return
    opts = dict(run.cfg["audit"] or {})
    for (name,), emu in run.outputs["emulate"].items():
        folder = run.path("audit", name)
        unfinished = folder.is_dir() and not (folder / "manifest.json").is_file()
        config = AuditRun(run=_options(run, folder, resume=unfinished, overwrite=not unfinished), emulator=emu,
                          config=AuditConfig(**opts))
        yield Instance(f"audit/{name}", (name,), folder, config, [opts, _digest_of(run, f"emulate/{name}")])


def _scorer_record(out: Path) -> dict:
    from scaleot.evaluation.offsite import scorers_of

    return {"scorer": scorers_of(read_json(out)["rows"])}


STEPS: tuple[Step, ...] = (
    Step("importance", ImportanceRecipe, "importance", (), IMPORTANCE, importance_instances),
    Step("emulate", EmulateRecipe, "emulators", ("importance",), EMULATOR, emulate_instances),
    Step("finetune", FinetuneRecipe, "finetune", ("emulate",), ADAPTER, finetune_instances),
    Step("ft", FinetuneRecipe, "ft", (), ADAPTER, ft_instances),
    Step("plug", PlugRecipe, "plug", ("emulate", "finetune"), PLUGGED_MODEL, plug_instances),
    Step("evaluate", EvaluateRecipe, "evaluate", ("emulate", "finetune", "ft"), None, evaluate_instances,
         record=_scorer_record),
    Step("audit", AuditRecipe, "audit", ("emulate",), AUDIT, audit_instances),
)
