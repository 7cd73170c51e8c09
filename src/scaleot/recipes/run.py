"""Run the whole offsite-tuning job from one YAML: importance, emulate, finetune, plug, evaluate, report.

Steps and where they write (inside ``--out DIR``)::

    importance/                    stage 1 (only if an emulator needs it: scaleot, drop)
    emulators/<name>/              one bundle per entry of ``emulators``
    adapters/<name>/<task>/        the data owner's tuned adapter, per emulator and task
    ft/<task>/                     the FT row: the full model tuned directly
    plugged/<name>/<task>/         the plug-in model of each emulator in ``plug:`` (default: all; HF folder)
    eval/<name>.json, .md          the five rows + Delta per emulator
    audit/<name>/                  with an ``audit:`` section: ``scaleot audit`` of each emulator
    report.md, *.png               the report (:mod:`scaleot.report`)
    steps.json                     config digest, seconds and peak memory of each step

The steps are one table (:data:`scaleot.recipes.run_steps.STEPS`: step name, recipe,
YAML section, what it reads from earlier steps' outputs); :class:`RunRecipe` loops over it,
building each step's one config and calling :func:`~scaleot.recipes.protocol.run_recipe`.
A step is skipped when its folder holds a verified manifest of the right kind (evaluate:
its result file exists) *and* ``steps.json`` records the same config digest, so a rerun
after an interruption redoes only what is missing or changed. See ``configs/default.yaml``
for every section.
"""

from __future__ import annotations

import logging
import resource
import time
from dataclasses import fields
from pathlib import Path
from typing import Annotated

import typer
import yaml

from scaleot.data_owner.finetune import FinetuneConfig
from scaleot.errors import ScaleOTError, check
from scaleot.exchange.hashing import json_sha256
from scaleot.exchange.kinds import IMPORTANCE, RUN
from scaleot.exchange.manifest import manifest_matches, read_json, write_json_atomic
from scaleot.model_owner.audit.config import AuditConfig
from scaleot.model_owner.emulator.config import NEEDS_IMPORTANCE, EmulatorConfig
from scaleot.model_owner.importance.config import ImportanceConfig
from scaleot.models.loading import DEFAULT_MODEL
from scaleot.outputs import check_name, path_inside
from scaleot.recipes import run_steps
from scaleot.recipes.options import config_from_section, run_options_command
from scaleot.recipes.run_config import job_problems
from scaleot.recipes.run_options import RunLevel, RunOptions
from scaleot.recipes.run_steps import IGNORED_KEYS, STEPS, task_dir
from scaleot.split import AdapterSplit
from scaleot.validate.files import load_yaml_unique

log = logging.getLogger(__name__)

SECTIONS = {"model", "adapter", "tasks", "device", "importance", "emulators", "finetune", "ft", "plug",
            "evaluate", "report", "audit"}
JOB_KEYS = ("model", "device")  # job-level: every step uses the same model and device
SECTION_CONFIGS = {"importance": ImportanceConfig, "emulators": EmulatorConfig, "finetune": FinetuneConfig,
                   "ft": FinetuneConfig, "audit": AuditConfig}
SECTION_EXTRAS = {"importance": ("corpus", "from"), "emulators": ("name",), "finetune": (), "ft": (), "audit": ()}
RUN_FOLDER_ENTRIES = ("steps.json", "importance", "emulators", "adapters", "ft", "plugged", "eval", "audit",
                      "report.md")


def section_keys(section: str) -> set[str]:
    """The keys a section accepts: its config's fields (less the job-level ones), ``adapter``, extras."""
    names = {f.name for f in fields(SECTION_CONFIGS[section])}
    split = {"adapter"} if {"n_bottom", "n_top"} <= names else set()
    return (names - set(JOB_KEYS)) | split | set(SECTION_EXTRAS[section]) | set(IGNORED_KEYS.get(section, ()))


def _section(section: str, values: dict | None, where: str, split: AdapterSplit | None, **fixed) -> dict:
    """Check one section (or emulator entry) against its dataclass; fill the job's ``adapter:``."""
    if values is not None and not isinstance(values, dict):
        raise ScaleOTError(f"{where}: expected a mapping of options, found {type(values).__name__}")
    values = dict(values or {})
    bad = sorted(set(values) & set(JOB_KEYS))
    if bad:
        raise ScaleOTError(f"{where}: {bad} are set once for the whole job (top level)")
    cls = SECTION_CONFIGS[section]
    if split is not None and "n_bottom" in {f.name for f in fields(cls)} and \
            not ({"adapter", "n_bottom", "n_top"} & set(values)):
        values["adapter"] = str(split)
    ignored = {k: values.pop(k) for k in IGNORED_KEYS.get(section, ()) if k in values}
    if ignored:
        log.warning("scaleot run: %s: %s ignored (the run loads the model in its default dtype and resumes "
                    "on its own)", where, sorted(ignored))
    return dict(config_from_section(cls, values, where, extra=SECTION_EXTRAS[section], **fixed), **ignored)


def name_problems(cfg: dict) -> list[str]:
    """Every name of the job that becomes a path inside ``--out``, checked against the one rule
    (:func:`scaleot.outputs.check_name`): emulator names, and task folder names (distinct)."""
    problems = []
    emulators = cfg.get("emulators")
    for e in emulators if isinstance(emulators, list) else []:
        if isinstance(e, dict) and isinstance(e.get("name"), str):
            try:
                check_name(e["name"], "emulators: name")
            except ScaleOTError as err:
                problems.append(str(err))
    seen: dict[str, str] = {}
    tasks = cfg.get("tasks")
    for t in tasks if isinstance(tasks, list) else []:
        if isinstance(t, str) and t:
            try:
                d = task_dir(t)
            except ScaleOTError as err:
                problems.append(str(err))
                continue
            if d in seen and seen[d] != t:
                problems.append(f"tasks: {seen[d]!r:.60} and {t!r:.60} would share the folder {d!r}; "
                                "rename one task file")
            seen.setdefault(d, t)
    return problems


def load_run_config(path: str | Path) -> dict:
    """Read and check a run YAML; every problem is reported at once."""
    path = Path(path)
    if not path.is_file():
        raise ScaleOTError(f"config not found: {path}")
    try:
        cfg = load_yaml_unique(path.read_bytes().decode("utf-8")) or {}
    except UnicodeDecodeError:
        raise ScaleOTError(f"{path} is not UTF-8 text") from None
    except yaml.YAMLError as e:
        raise ScaleOTError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    problems = []
    if not isinstance(cfg, dict):
        raise ScaleOTError(f"{path}: expected a mapping of sections, found {type(cfg).__name__}")
    unknown = sorted(set(cfg) - SECTIONS)
    if unknown:
        problems.append(f"unknown sections {unknown} (known: {sorted(SECTIONS)})")
    emus = cfg.get("emulators")
    if not emus or not isinstance(emus, list) or \
            not all(isinstance(e, dict) and isinstance(e.get("name"), str) and e["name"] for e in emus):
        problems.append("emulators: a list of {name, method, ...} entries is needed")
    elif len({e["name"] for e in emus}) != len(emus):
        problems.append("emulators: names must be unique")
    elif "plug" in cfg and (not isinstance(cfg["plug"], list) or not all(isinstance(n, str) for n in cfg["plug"])
                            or set(cfg["plug"]) - {e["name"] for e in emus}):
        problems.append(f"plug: a list of emulator names is needed (got {cfg['plug']!r:.60})")
    if "adapter" in cfg:
        try:
            AdapterSplit.parse(cfg["adapter"], name="adapter")
        except ScaleOTError as e:
            problems.append(str(e))
    problems += name_problems(cfg)  # names that become paths stay inside --out
    readable = not problems  # the emulators and the job's adapter split can be read
    problems += job_problems(cfg)  # model, device, tasks (loaded), evaluate, report
    if readable:
        _check_sections(cfg, problems)
    else:  # the sections' own problems too, where they can be read
        imp = cfg.get("importance")
        if isinstance(imp, dict) and "from" not in imp:
            _collect(problems, _section, "importance", imp, "importance", None)
        for sec in ("finetune", "ft"):
            _collect(problems, _section, sec, cfg.get(sec), sec, None)
    check(f"run config {path}", problems)
    return cfg


def _collect(problems: list[str], fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, or None with its one-line error added to ``problems``."""
    try:
        return fn(*args, **kwargs)
    except ScaleOTError as e:
        problems.append(str(e))
        return None


def _check_sections(cfg: dict, problems: list[str]) -> None:
    """Check every section against its dataclass and normalise it in place (``adapter`` expanded)."""
    cfg.setdefault("model", DEFAULT_MODEL)
    split = AdapterSplit.parse(cfg["adapter"], name="adapter") if "adapter" in cfg else None
    imp = cfg.get("importance") or {}
    if not isinstance(imp, dict):
        problems.append(f"importance: expected a mapping of options, found {type(imp).__name__}")
        imp = {}
    elif "from" in imp and not isinstance(imp["from"], str):
        problems.append(f"importance.from: a folder path is needed (got {imp['from']!r:.40})")
    if "from" not in imp:
        imp = cfg["importance"] = _collect(problems, _section, "importance", imp, "importance", split) or imp
    for i, entry in enumerate(cfg["emulators"]):
        where = f"emulators[{entry['name']}]"
        ranked = entry.get("method", "scaleot") in NEEDS_IMPORTANCE
        if "importance" in entry:
            problems.append(f"{where}: importance is set by the run (its importance section), not per emulator")
            continue
        entry = _collect(problems, _section, "emulators", entry, where, split,
                         **({"importance": "importance"} if ranked else {}))
        if entry is None:
            continue
        cfg["emulators"][i] = entry
        if ranked and "from" not in imp:
            mine = AdapterSplit(entry.get("n_bottom", 2), entry.get("n_top", 2))
            theirs = AdapterSplit(imp.get("n_bottom", 2), imp.get("n_top", 2))
            if mine != theirs:
                problems.append(f"{where}: adapter {mine} differs from the importance section's {theirs} "
                                "(stage 1 scores exactly the middle blocks of one split)")
    if "audit" in cfg:  # the audit tasks default to the job's
        audit = dict(cfg["audit"] or {}) if isinstance(cfg["audit"], dict | None) else cfg["audit"]
        if isinstance(audit, dict) and "tasks" not in audit:
            audit["tasks"] = ",".join(cfg["tasks"])
        cfg["audit"] = _collect(problems, _section, "audit", audit, "audit", None) or audit
    base = _collect(problems, _section, "finetune", cfg.get("finetune"), "finetune", None)
    if base is not None:
        cfg["finetune"] = base
        cfg["ft"] = _collect(problems, _section, "ft", cfg.get("ft"), "ft", None, **base) or cfg.get("ft")
    else:  # ft's own problems too
        _collect(problems, _section, "ft", cfg.get("ft"), "ft", None)


def digest(obj) -> str:
    return json_sha256(obj)[:16]


class RunRecipe:
    """The job: ``run()`` loops over the table of steps (:data:`scaleot.recipes.run_steps.STEPS`)
    and returns the report path."""

    def __init__(self, config: dict, out: str | Path, progress: bool = True):
        self.cfg, self.out, self.progress = config, Path(out), progress
        check(f"run {out}", name_problems(config))  # a dict config too, before any work
        self.built: list[Path] = []  # every path the run builds inside --out (tests walk them)
        self.out.mkdir(parents=True, exist_ok=True)
        self.steps_file = self.path("steps.json")
        self.steps = read_json(self.steps_file, "steps.json") if self.steps_file.is_file() else {}
        self.device = config.get("device")
        self.outputs: dict[str, dict[tuple[str, ...], Path]] = {}  # step -> {instance's `of`: its output}

    def path(self, *names: str) -> Path:
        """``--out / names...``: the only way the run builds a path; each name passes
        :func:`scaleot.outputs.check_name` and the result stays inside ``--out``."""
        p = path_inside(self.out, *names)
        self.built.append(p)
        return p

    def _record(self, name: str, entry: dict) -> None:
        self.steps[name] = entry
        write_json_atomic(self.steps_file, self.steps)

    def run_instance(self, step, instance) -> Path:
        """Run one instance of ``step`` unless its output is complete (a verified manifest of the
        step's kind, or the result file) and ``steps.json`` records the same digest."""
        key, out = digest(instance.deps), instance.out
        done = manifest_matches(out, step.kind) if step.kind else out.is_file()
        if done and self.steps.get(instance.name, {}).get("digest") == key:
            return out
        t0 = time.perf_counter()
        run_steps.run_recipe(step.recipe(instance.config))  # looked up at call time: tests stub it
        entry = {"digest": key, "seconds": round(time.perf_counter() - t0, 2)}
        if step.kind:
            entry.update(peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                         folder=str(out.relative_to(self.out)))
        self._record(instance.name, dict(entry, **(step.record(out) if step.record else {})))
        return out

    def reuse_importance(self, folder: Path) -> None:
        """``importance: {from: DIR}``: a finished stage 1, verified, stands in for the step."""
        from scaleot.exchange.manifest import verify_manifest

        manifest = verify_manifest(folder, IMPORTANCE)
        self._record("importance", {"digest": digest([str(folder), manifest["files"]]), "seconds": 0.0,
                                    "reused": str(folder)})
        self.outputs["importance"][()] = folder

    def run_step(self, name: str) -> dict[tuple[str, ...], Path]:
        """Every instance of the step ``name``; returns ``{instance's of: output}``."""
        step = next(s for s in STEPS if s.name == name)
        self.outputs[name] = {}
        for instance in step.instances(self):
            self.outputs[name][instance.of] = self.run_instance(step, instance)
        return self.outputs[name]

    def run(self) -> Path:
        from scaleot.report import write_report

        for step in STEPS:
            self.run_step(step.name)
        docs = {of[0]: read_json(p) for of, p in self.outputs["evaluate"].items()}
        report = write_report(self.out, self.cfg, docs, self.steps, self.outputs["importance"].get(()))
        audits = {of[0]: read_json(p / "audit.json") for of, p in self.outputs["audit"].items()}
        if audits:
            self._audit_section(report, audits, docs)
        return report

    def _audit_section(self, report: Path, audits: dict, docs: dict) -> None:
        """The audit columns and the privacy-recovery view, appended to ``report.md``."""
        from scaleot.model_owner.audit.report import audit_columns
        from scaleot.report.plots import recovery_plot

        plot = recovery_plot(audits, docs, self.path("privacy_recovery.png"))
        with open(report, "a") as f:
            f.write("\n" + audit_columns(audits, docs) + "\n")
            if plot is not None:
                f.write(f"\nPlug-in against the accuracy the attacker recovers (arrows start at Emu ZS):"
                        f"\n\n![privacy-recovery]({plot.name})\n")


def check_run_out(out: str | Path, config: str | Path | dict) -> None:
    """A run folder is new, empty, or an earlier run's (``steps.json``); never a user's folder."""
    from scaleot.outputs import check_output

    out = Path(out)
    inputs = [] if isinstance(config, dict) else [config]
    earlier_run = (out / "steps.json").is_file()  # an earlier run: continue it, skipping finished steps
    own = [p.name for p in out.iterdir()] if earlier_run and out.is_dir() else RUN_FOLDER_ENTRIES
    check_output(out, RUN, resume=True, inputs=inputs, own_entries=own)


def run_job(config: str | Path | dict, out: str | Path, progress: bool = True) -> Path:
    """Python API: run a job from a YAML path (or an already loaded dict); returns ``report.md``."""
    check_run_out(out, config)
    cfg = load_run_config(config) if not isinstance(config, dict) else config
    return RunRecipe(cfg, out, progress=progress).run()


@run_options_command(RunLevel(("out", "progress"), required=("out",),
                              notes={"out": "the run folder (steps already done there are skipped)",
                                     "progress": "every step"}))
def command(config: Annotated[Path, typer.Argument(help="run YAML (see configs/default.yaml)")],
            run: RunOptions) -> None:
    report = run_job(config, run.out, progress=run.progress)
    typer.echo(f"report written to {report}")
