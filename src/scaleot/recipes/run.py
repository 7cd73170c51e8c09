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

A step is skipped when its folder holds a verified manifest of the right kind *and*
``steps.json`` records the same config digest, so a rerun after an interruption redoes
only what is missing or changed. See ``configs/default.yaml`` for every section.
"""

from __future__ import annotations

import hashlib
import re
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
from scaleot.exchange.kinds import ADAPTER, AUDIT, EMULATOR, IMPORTANCE, RUN
from scaleot.exchange.manifest import manifest_matches, read_json, write_json_atomic
from scaleot.model_owner.audit.config import AuditConfig
from scaleot.model_owner.emulator.config import NEEDS_IMPORTANCE, EmulatorConfig
from scaleot.model_owner.importance.config import ImportanceConfig
from scaleot.models.device import lm_eval_autocast
from scaleot.models.loading import DEFAULT_MODEL
from scaleot.outputs import MAX_NAME_CHARS, check_name, path_inside
from scaleot.recipes.options import config_from_section
from scaleot.recipes.run_config import job_problems
from scaleot.split import AdapterSplit
from scaleot.validate.files import load_yaml_unique

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
    return (names - set(JOB_KEYS)) | split | set(SECTION_EXTRAS[section])


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
    return config_from_section(cls, values, where, extra=SECTION_EXTRAS[section], **fixed)


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
    """The job; ``run()`` goes step by step and returns the report path."""

    def __init__(self, config: dict, out: str | Path, progress: bool = True):
        self.cfg, self.out, self.progress = config, Path(out), progress
        check(f"run {out}", name_problems(config))  # a dict config too, before any work
        self.built: list[Path] = []  # every path the run builds inside --out (tests walk them)
        self.out.mkdir(parents=True, exist_ok=True)
        self.steps_file = self.path("steps.json")
        self.steps = read_json(self.steps_file, "steps.json") if self.steps_file.is_file() else {}
        self.device = config.get("device")

    def path(self, *names: str) -> Path:
        """``--out / names...``: the only way the run builds a path; each name passes
        :func:`scaleot.outputs.check_name` and the result stays inside ``--out``."""
        p = path_inside(self.out, *names)
        self.built.append(p)
        return p

    def step(self, name: str, folder: Path, kind: str, options, fn) -> Path:
        """Run ``fn()`` unless ``folder`` is complete and was made with the same ``options``."""
        key = digest(options)
        if manifest_matches(folder, kind) and self.steps.get(name, {}).get("digest") == key:
            return folder
        t0 = time.perf_counter()
        fn()
        self.steps[name] = {"digest": key, "seconds": round(time.perf_counter() - t0, 2),
                            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                            "folder": str(folder.relative_to(self.out))}
        write_json_atomic(self.steps_file, self.steps)
        return folder

    def importance(self) -> Path | None:
        if not any(e.get("method", "scaleot") in ("scaleot", "drop") for e in self.cfg["emulators"]):
            return None
        from scaleot.recipes.importance import ImportanceRun, run_importance

        opts = dict(self.cfg.get("importance") or {})
        if "from" in opts:  # reuse a finished stage 1 (verified; the emulator checks its fingerprint)
            from scaleot.exchange.manifest import verify_manifest

            folder = Path(opts["from"]).expanduser()
            manifest = verify_manifest(folder, IMPORTANCE)
            self.steps["importance"] = {"digest": digest([str(folder), manifest["files"]]), "seconds": 0.0,
                                        "reused": str(folder)}
            write_json_atomic(self.steps_file, self.steps)
            return folder
        corpus = opts.pop("corpus", "kjv")
        folder = self.path("importance")
        run = ImportanceRun(out=folder, model=self.cfg["model"], corpus=corpus,
                            options=ImportanceConfig(**opts), device=self.device, overwrite=True,
                            progress=self.progress)
        return self.step("importance", folder, "importance", [self.cfg["model"], corpus, opts],
                         lambda: run_importance(run))

    def emulate(self, importance: Path | None) -> dict[str, Path]:
        from scaleot.recipes.emulate import run_emulate

        out = {}
        for entry in self.cfg["emulators"]:
            opts = {k: v for k, v in entry.items() if k != "name"}
            if opts.get("method", "scaleot") in ("scaleot", "drop"):
                opts["importance"] = str(importance)
            config = EmulatorConfig(model=self.cfg["model"], device=self.device, **opts)
            folder = self.path("emulators", entry["name"])
            deps = [opts, self.steps.get("importance", {}).get("digest")]
            out[entry["name"]] = self.step(f"emulate/{entry['name']}", folder, EMULATOR, deps,
                                           lambda c=config, f=folder: run_emulate(c, f, overwrite=True))
        return out

    def finetune(self, emulators: dict[str, Path]) -> tuple[dict, dict]:
        from scaleot.recipes.finetune import run_finetune

        base = dict(self.cfg.get("finetune") or {}, device=self.device)
        adapters: dict[str, dict[str, Path]] = {}
        for name, emu in emulators.items():
            for task in self.cfg["tasks"]:
                folder = self.path("adapters", name, task_dir(task))
                deps = [task, base, self.steps.get(f"emulate/{name}", {}).get("digest")]
                adapters.setdefault(name, {})[task] = self.step(
                    f"finetune/{name}/{task_dir(task)}", folder, ADAPTER, deps,
                    lambda t=task, f=folder, e=emu: run_finetune(
                        f, t, FinetuneConfig(**base), emulator=e, progress=self.progress, overwrite=True,
                        disclose_task=True))  # the run plays both parties: its evaluate pairs adapters by task
        ft_opts = dict(base, **(self.cfg.get("ft") or {}))
        fts = {}
        for task in self.cfg["tasks"]:
            folder = self.path("ft", task_dir(task))
            fts[task] = self.step(f"ft/{task_dir(task)}", folder, ADAPTER, [task, ft_opts, self.cfg["model"]],
                                  lambda t=task, f=folder: run_finetune(
                                      f, t, FinetuneConfig(**ft_opts), model=self.cfg["model"],
                                      progress=self.progress, overwrite=True, disclose_task=True))
        return adapters, fts

    def plug(self, adapters: dict, emulators: dict) -> None:
        from scaleot.exchange.kinds import PLUGGED_MODEL
        from scaleot.model_owner.plug import plug

        names = self.cfg.get("plug")
        for name in [e["name"] for e in self.cfg["emulators"]] if names is None else names:
            for task, adapter in adapters[name].items():
                where = f"{name}/{task_dir(task)}"
                folder = self.path("plugged", name, task_dir(task))
                self.step(f"plug/{where}", folder, PLUGGED_MODEL,
                          [self.steps.get(f"finetune/{where}", {}).get("digest")],
                          lambda a=adapter, f=folder, n=name: plug(self.cfg["model"], a, f, device=self.device,
                                                           emulator=emulators[n], overwrite=True))

    def evaluate(self, emulators: dict, adapters: dict, fts: dict) -> dict[str, dict]:
        from scaleot.evaluation.offsite import evaluate_offsite, scorers_of
        from scaleot.evaluation.tables import offsite_table

        # an explicit `scorer:` is part of the digest; without one, results kept from before are not
        # redone (both scorers give the same numbers) and each row's `scorer` says which one ran
        opts = dict(self.cfg.get("evaluate") or {})
        docs, known = {}, None
        for name, emu in emulators.items():
            target = self.path("eval", f"{name}.json")
            key = digest([opts, [self.steps.get(f"finetune/{name}/{task_dir(t)}", {}).get("digest") for t in self.cfg["tasks"]],
                          [self.steps.get(f"ft/{task_dir(t)}", {}).get("digest") for t in self.cfg["tasks"]]])
            if target.is_file() and self.steps.get(f"evaluate/{name}", {}).get("digest") == key:
                docs[name] = read_json(target)
            else:
                t0 = time.perf_counter()
                doc = evaluate_offsite(self.cfg["model"], emu, list(adapters[name].values()), list(fts.values()),
                                       device=self.device, known=known, tasks=list(self.cfg["tasks"]),
                                       progress=self.progress,
                                       **dict(opts, autocast=lm_eval_autocast(opts.get("autocast"), self.device)))
                write_json_atomic(target, doc)
                (target.with_suffix(".md")).write_text(offsite_table(doc) + "\n")
                self.steps[f"evaluate/{name}"] = {"digest": key, "seconds": round(time.perf_counter() - t0, 2),
                                                  "scorer": scorers_of(doc["rows"])}
                write_json_atomic(self.steps_file, self.steps)
                docs[name] = doc
            known = {t: {r: docs[name]["rows"][t][r] for r in ("Full ZS", "FT") if r in docs[name]["rows"][t]}
                     for t in docs[name]["rows"]}
        return docs

    def audit(self, emulators: dict) -> dict[str, dict]:
        """``scaleot audit`` of every emulator (with an ``audit:`` section); a broken threshold
        is reported, it does not stop the run."""
        if "audit" not in self.cfg:
            return {}
        from scaleot.recipes.audit import AuditRun, run_audit

        opts = dict(self.cfg["audit"] or {})
        docs = {}
        for name, emu in emulators.items():
            folder = self.path("audit", name)
            deps = [opts, self.steps.get(f"emulate/{name}", {}).get("digest")]
            unfinished = folder.is_dir() and not (folder / "manifest.json").is_file()  # continue its attack
            run = AuditRun(emulator=emu, out=folder, config=AuditConfig(**opts), model=self.cfg["model"],
                           device=self.device, resume=unfinished, overwrite=not unfinished, progress=self.progress)
            self.step(f"audit/{name}", folder, AUDIT, deps, lambda r=run: run_audit(r))
            docs[name] = read_json(folder / "audit.json")
        return docs

    def run(self) -> Path:
        from scaleot.report import write_report

        importance = self.importance()
        emulators = self.emulate(importance)
        adapters, fts = self.finetune(emulators)
        self.plug(adapters, emulators)
        docs = self.evaluate(emulators, adapters, fts)
        audits = self.audit(emulators)
        report = write_report(self.out, self.cfg, docs, self.steps, importance)
        if audits:
            from scaleot.model_owner.audit.report import audit_columns
            from scaleot.report.plots import recovery_plot

            plot = recovery_plot(audits, docs, self.path("privacy_recovery.png"))
            with open(report, "a") as f:
                f.write("\n" + audit_columns(audits, docs) + "\n")
                if plot is not None:
                    f.write(f"\nPlug-in against the accuracy the attacker recovers (arrows start at Emu ZS):"
                            f"\n\n![privacy-recovery]({plot.name})\n")
        return report


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


def command(
    config: Annotated[Path, typer.Argument(help="run YAML (see configs/default.yaml)")],
    out: Annotated[Path, typer.Option(help="run folder (steps already done there are skipped)")],
    progress: Annotated[bool, typer.Option(help="show progress bars (every step)")] = True,
) -> None:
    report = run_job(config, out, progress=progress)
    typer.echo(f"report written to {report}")
