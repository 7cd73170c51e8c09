"""Audit an emulator before shipping it: leak scan, capability gap, recovery attack, verdict.

Recipe shape (:class:`~scaleot.recipes.protocol.Recipe`): :class:`AuditRecipe` reads one
:class:`AuditRun`, ``check_paths -> setup -> execute (scan, transfer, baseline, attack) -> save``, run by the
model owner, who
holds both the emulator bundle and the full model (docs/method.md section 9):

- **scan**: exact copies, near-copies (``|cos| >= 0.99`` on whole rows or columns, transposes
  and one-axis slices included) and effective ranks of the shipped attention projections
  (:mod:`scaleot.model_owner.audit.leak_scan`);
- **transfer**: will the data owner's tuning carry? On the owner's proxy tasks
  (``--transfer-tasks``, generated ones, never the data owner's) the adapter is tuned through
  the emulator as shipped and through the full model, and the plug-in is compared with both
  (:mod:`scaleot.model_owner.audit.transfer_check`; ``transfer.json``, ``--min-transfer-ratio``);
- **baseline**: Full ZS and Emu ZS on the audit tasks (fast scorer), the emulator's fidelity,
  perplexity on held-out generic text;
- **attack**: every emulator parameter fine-tuned on public text that is not the owner's
  corpus, budget by budget (``--budgets``, cumulative tokens); after each, Emu ZS, perplexity,
  R and fidelity (:mod:`scaleot.model_owner.audit.recovery`). Each budget is a resumable step: the
  checkpoint at its end carries the measurements, and ``--resume`` continues from the newest
  checkpoint (also to add a larger budget while ``--keep-checkpoints`` kept them);
- **save**: ``audit.json`` (with ``transfer``), ``report.md``, ``log.jsonl`` and ``tb/`` (the attack's loss) and a
  ``manifest.json`` of kind ``audit`` in ``--out``.

Exit status: 0 when every check passes, 1 when a threshold is broken (one line on stderr
naming the checks; the report is written either way), 2 for bad input (one line).
"""

from __future__ import annotations

import shutil
from dataclasses import MISSING, dataclass, field
from pathlib import Path

import typer

from scaleot.errors import ScaleOTError
from scaleot.exchange.audit import KIND, write_audit
from scaleot.model_owner.audit import AuditConfig, RecoveryAttack, measure, render, scan, verdict
from scaleot.model_owner.audit.config import ATTACK_POOL_TOKENS
from scaleot.model_owner.audit.recovery import fidelity, gap, recovery, summary
from scaleot.recipes.options import step_command
from scaleot.recipes.protocol import run_recipe
from scaleot.recipes.run_options import RunOptions, run_field

OWN_ENTRIES = ("audit.json", "report.md", "manifest.json", "transfer.json")
# Options a --resume may change: they shape neither the attack nor its measurements.
# the thresholds, the scan's settings and the transfer check (kept apart in transfer.json, keyed by
# its own options) do not change what the attack trains on, so --resume may change them
MAY_CHANGE = ("budgets", "checkpoint_every", "keep_checkpoints", "max_recovery", "max_recovered_acc", "max_fidelity",
              "min_gap", "min_transfer_ratio", "transfer_tasks", "near_copy_cos", "rank_rtol")
# Corpora the owner trained the emulator on, by method (emulator.json options.corpus).
TRAINS_ON_CORPUS = ("uniform-kd", "crash")


class AuditFailed(ScaleOTError):
    """The emulator breaks a release threshold: exit status 1 (the report is written)."""

    exit_code = 1


@dataclass(kw_only=True)
class AuditRun:
    """One ``scaleot audit``: the bundle, the run-level options (the full model, ``--out``...) and the options."""

    run: RunOptions = run_field("out", "model", "resume", "overwrite", "device", "dtype", "progress",
                                required=("out",),
                                notes={"out": "report.md, audit.json, the attack's logs",
                                       "model": "the full model the emulator was built from",
                                       "resume": "the recovery attack",
                                       "dtype": "of both models (default float32; --autocast bf16 speeds the "
                                                "attack where fast)"})
    emulator: Path = field(default=MISSING, metadata={"help": "the emulator bundle to audit"})
    config: AuditConfig = field(default_factory=AuditConfig, metadata={"flatten": True})


class AuditRecipe:
    """``check_paths() -> setup() -> execute()`` (``scan()``, ``baseline()``, ``attack()``) ``-> save()``;
    the constructor checks the paths too, so a bad ``--out`` fails before anything else."""

    def __init__(self, config: AuditRun, full_model=None, tokenizer=None, full_measurement: dict | None = None,
                 deadline: float | None = None):
        """``full_model``/``tokenizer``: the full model already loaded (several audits in one
        process); ``full_measurement``: its :func:`~scaleot.model_owner.audit.recovery.measure` on the same
        tasks, split and text (skips measuring it again); ``deadline``: a ``time.monotonic()``
        at which the attack checkpoints and raises :class:`~scaleot.model_owner.audit.recovery.AttackPaused`."""
        self.audit, self.run, self.config, self.deadline = config, config.run, config.config, deadline
        self.out = Path(config.run.out)
        self.full, self.tokenizer, self.full_measurement = full_model, tokenizer, full_measurement
        self.transfer_doc: dict | None = None
        self.check_paths()

    # ------------------------------------------------------------------ setup
    def check_paths(self) -> None:
        """Refuse a destructive ``--out`` before any work (:mod:`scaleot.outputs`)."""
        from scaleot.outputs import check_output, local_path

        r, emulator = self.run, self.audit.emulator
        if not Path(emulator).is_dir():
            raise ScaleOTError(f"--emulator {emulator}: not a folder")
        check_output(r.out, KIND, overwrite=r.overwrite, resume=r.resume, own_entries=OWN_ENTRIES,
                     inputs=[emulator, local_path(r.model), local_path(self.config.attack_corpus)])
        if Path(r.out).exists() and any(Path(r.out).iterdir()) and not (r.resume or r.overwrite):
            raise ScaleOTError(f"output exists: {r.out} (pass --resume to continue it or --overwrite to replace it)")

    def check_corpus(self, info: dict) -> None:
        """The attacker's text must not be what the owner trained the emulator on."""
        from scaleot.provenance import corpus_provenance

        c = self.config
        owner = [c.owner_corpus]
        stage1 = info.get("importance") or {}
        if stage1.get("corpus"):  # the harmonizers' corpus, as emulator.json records it
            owner.append(str(stage1["corpus"]))
        opts = info.get("options") or {}
        if info["method"] in TRAINS_ON_CORPUS or opts.get("calibrate_steps"):
            owner.append(str(opts.get("corpus")))
        attack = corpus_provenance(c.attack_corpus)
        for o in owner:
            if corpus_provenance(o) == attack or Path(o).name == attack["corpus"]:
                raise ScaleOTError(f"--attack-corpus {c.attack_corpus}: the owner trained this emulator on it; "
                                   "the recovery attack needs other public text")

    def setup(self) -> None:
        """Load the full model and the verified bundle (same base weights), tasks and text."""
        from scaleot.data import SplitConfig, corpus_splits, load_task
        from scaleot.models import fingerprint_model, load_model
        from scaleot.models.emulator import load_emulator

        r, c = self.run, self.config
        dtype = r.dtype or "float32"  # the attack trains fp32 master weights (bf16 only under autocast)
        if self.full is None:
            self.full, self.tokenizer = load_model(r.model, device=r.device, dtype=dtype)
        self.full_fp = fingerprint_model(self.full)
        self.bundle = load_emulator(self.audit.emulator, device=r.device, dtype=dtype, expected_base_fingerprint=self.full_fp)
        self.check_corpus(self.bundle.info)
        self.splits = [load_task(t, SplitConfig(seed=c.split_seed, n_test=c.n_test, n_val=0)) for t in c.task_list]
        _, self.ppl_blocks = corpus_splits(c.ppl_corpus, self.tokenizer, c.block_size, max_train_blocks=1,
                                           max_heldout_blocks=c.ppl_blocks)
        self.attack_blocks, _ = corpus_splits(c.attack_corpus, self.tokenizer, c.block_size,
                                              max_train_blocks=ATTACK_POOL_TOKENS // c.block_size,
                                              max_heldout_blocks=1)  # the same pool whatever the budgets
        if r.overwrite and not r.resume and Path(r.out).exists():
            shutil.rmtree(r.out)

    # ------------------------------------------------------------------ steps
    def scan(self) -> dict:
        c = self.config
        return scan(self.bundle.model, self.full, self.bundle.info, c.near_copy_cos, c.rank_rtol)

    def attack_folder(self):
        from scaleot.provenance import corpus_provenance
        from scaleot.run_folder import RunFolder

        c = self.config
        provenance = dict(corpus_provenance(c.attack_corpus), model_fingerprint=self.full_fp,
                          emulator=self.bundle.fingerprint)
        return RunFolder(self.run.out, c.to_dict(), may_change=MAY_CHANGE, provenance=provenance)

    def baseline(self, attack: RecoveryAttack) -> dict:
        """Full ZS and Emu ZS before any attack (measured once; kept in every checkpoint)."""
        if "full" not in attack.extra:
            full = self.full_measurement or measure(self.full, self.tokenizer, self.splits, self.ppl_blocks,
                                                    self.config.scorer)
            emu = measure(self.bundle.model, self.tokenizer, self.splits, self.ppl_blocks, self.config.scorer)
            attack.extra.update(full=full, emu=emu)
        return attack.extra

    def attack(self) -> tuple[dict, list[dict]]:
        """The recovery attack, budget by budget; returns ``(baseline, one record a budget)``."""
        from scaleot.models.device import use_bf16, wants_bf16

        c = self.config
        device = next(self.bundle.model.parameters()).device
        attack = RecoveryAttack(self.bundle.model, self.attack_blocks, self.attack_folder(), c.attack_lr,
                                c.attack_batch, seed=c.seed, checkpoint_every=c.checkpoint_every,
                                bf16=use_bf16(wants_bf16(c.autocast, device), device), deadline=self.deadline)
        resumed = attack.resume() if self.run.resume else False
        attack.folder.open_log(attack.step if resumed else None)
        base = self.baseline(attack)
        full, emu = base["full"], base["emu"]

        def evaluate() -> dict:
            m = measure(self.bundle.model, self.tokenizer, self.splits, self.ppl_blocks, c.scorer)
            return {**summary(m), **recovery(m, emu, full), **fidelity(m, full)}

        try:
            results = attack.run([(b, c.steps_for(b)) for b in c.budget_list], evaluate, progress=self.run.progress)
        finally:
            attack.folder.close()
        wanted = set(c.budget_list)
        return base, [r for r in results if r["tokens"] in wanted]

    def transfer(self) -> dict | None:
        """The transfer check on the proxy tasks, on the emulator as shipped (before the attack
        changes it; the check tunes copies). Kept in ``OUT/transfer.json`` so ``--resume`` does
        not redo it when the emulator, model and check options are the same."""
        from scaleot.exchange.manifest import read_json, write_json_atomic
        from scaleot.model_owner.audit.transfer_check import TransferCheckConfig, transfer_check
        from scaleot.models.device import use_bf16, wants_bf16

        c = self.config
        if not c.transfer_task_list:
            return None
        device = next(self.bundle.model.parameters()).device
        bf16 = use_bf16(wants_bf16(c.autocast, device), device)
        check = TransferCheckConfig(tasks=c.transfer_task_list, seed=c.split_seed,
                                    tuning={"autocast": "bf16" if bf16 else "none", "device": str(device)})
        key = {"emulator": self.bundle.fingerprint, "model": self.full_fp, "tasks": check.tasks, "seed": check.seed,
               "tuning": check.tuning}
        path = Path(self.run.out) / "transfer.json"
        if self.run.resume and path.is_file():
            done = read_json(path)
            if done.get("key") == key:
                return done["transfer"]
        doc = transfer_check(self.full, self.bundle.model, self.bundle.info["layer_map"], self.tokenizer, check,
                             autocast="bfloat16" if bf16 else None, progress=self.run.progress)
        Path(self.run.out).mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"key": key, "transfer": doc})
        return doc

    def execute(self) -> None:
        """Scan the bundle, the transfer check on proxy tasks, then the baseline and the recovery
        attack (``self.scan_doc``, ``self.transfer_doc``, ``self.base``, ``self.results``)."""
        self.scan_doc = self.scan()
        self.transfer_doc = self.transfer()
        self.base, self.results = self.attack()

    def save(self) -> dict:
        """Write ``audit.json``, ``report.md`` and the manifest; returns the document."""
        c, info = self.config, self.bundle.info
        scan_doc, base, results = self.scan_doc, self.base, self.results
        full, emu = base["full"], base["emu"]
        g = gap(full, emu)
        v = verdict(c, scan_doc, g, results, self.transfer_doc)
        doc = {
            "format_version": 1, "kind": KIND,
            "emulator": {"name": Path(self.audit.emulator).name, "method": info["method"],
                         "fingerprint": self.bundle.fingerprint, "options": info.get("options"),
                         "params": info.get("params")},
            "model": self.run.model, "model_fingerprint": self.full_fp, "config": c.to_dict(),
            "verdict": v, "scan": scan_doc, "full": summary(full), "emulator_zs": summary(emu),
            "emulator_fidelity": fidelity(emu, full), "gap": g,
            "attack_recipe": c.attack_recipe(), "attack": results, "transfer": self.transfer_doc,
        }
        out = Path(self.run.out)
        if not c.keep_checkpoints:
            shutil.rmtree(out / "checkpoints", ignore_errors=True)
        write_audit(out, doc, render(doc), self.bundle.fingerprint)
        return doc



def run_audit(run: AuditRun) -> dict:
    """``scaleot audit`` as a function: returns ``audit.json``'s content."""
    return run_recipe(AuditRecipe(run))


@step_command(AuditRun)
def command(config: AuditRun) -> None:
    doc = run_audit(config)
    out = Path(config.run.out)
    typer.echo(str(out / "report.md"))
    if not doc["verdict"]["ok"]:
        raise AuditFailed(f"audit failed: {', '.join(doc['verdict']['broken'])} (see {out / 'report.md'})")
