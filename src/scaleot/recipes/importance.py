"""Learn which middle blocks matter and train their harmonizers (ScaleOT stage 1).

Recipe shape (:class:`~scaleot.recipes.protocol.Recipe`): :class:`ImportanceRecipe` reads one
:class:`ImportanceRun`, ``check_paths -> setup -> execute (train) -> save``. Features: Dynamic LayerReplace or LayerDrop
(``--variant``), every docs/method.md section 2 knob as an option, a tqdm bar, JSONL +
TensorBoard logs, checkpoints every ``--checkpoint-every`` steps and ``--resume`` (also
to extend ``--steps``), data parallel under ``accelerate launch`` (on CPU-only machines:
``accelerate launch --multi_gpu --num_processes 2 -m scaleot.cli importance ...``, which
accelerate runs as gloo ``MULTI_CPU``; ``--cpu --num_processes 2`` starts one process). Output folder (the
"importance folder" contract): ``importance.json``, ``harmonizers.safetensors``,
``log.jsonl``, ``tb/``, ``importance.png``, ``manifest.json`` (kind ``importance``).

Raises :class:`~scaleot.errors.ScaleOTError` (one line) for a bad option, an adapter
that leaves no middle block, an unknown model or corpus, or an occupied ``--out``.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import typer

from scaleot.data import corpus_splits, read_corpus
from scaleot.data.text import KNOWN_CORPORA
from scaleot.errors import ScaleOTError
from scaleot.exchange.importance import FORMAT_VERSION, KIND, read_importance_info, write_importance
from scaleot.exchange.layers import Harmonizer
from scaleot.exchange.manifest import manifest_matches
from scaleot.model_owner.importance.config import ImportanceConfig
from scaleot.model_owner.importance.report import plot_importance
from scaleot.model_owner.importance.trainer import ImportanceTrainer
from scaleot.models import (
    arch_spec,
    fingerprint_model,
    get_blocks,
    load_model,
    resolve_model_path,
)
from scaleot.models.device import autocast_used, wants_bf16
from scaleot.provenance import corpus_provenance
from scaleot.recipes.options import step_command
from scaleot.recipes.protocol import run_recipe
from scaleot.recipes.run_options import RunOptions, run_field


@dataclass(kw_only=True)
class ImportanceRun:
    """One ``scaleot importance`` run: what to read, where to write, and the method options."""

    run: RunOptions = run_field("out", "model", "resume", "overwrite", "device", "dtype", "progress",
                                required=("out",), notes={"out": "the importance folder"})
    options: ImportanceConfig = field(default_factory=ImportanceConfig, metadata={"flatten": True})
    corpus: str = field(default="kjv", metadata={"help": "generic text: kjv, or a .txt/.jsonl file"})
    keep_checkpoints: bool = field(default=False, metadata={"help": "keep checkpoints", "switch": True})


def _init_distributed() -> None:
    """Under ``accelerate launch`` (WORLD_SIZE > 1) let Accelerator set up the process group."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        from accelerate import Accelerator

        Accelerator(cpu=not torch.cuda.is_available())


OWN_ENTRIES = ("importance.json", "harmonizers.safetensors", "importance.png", "manifest.json")


class ImportanceRecipe:
    """``scaleot importance``: ``check_paths -> setup -> execute (train) -> save``."""

    def __init__(self, config: ImportanceRun):
        self.config, self.run, self.options = config, config.run, config.options
        self.out = Path(config.run.out)
        self.finished = False  # --resume on a folder already complete: nothing to do

    def check_paths(self) -> None:
        """Fail fast (one line) on an adapter larger than the model, an unknown corpus or a bad ``--out``;
        a finished folder under ``--resume`` made from the same inputs and options is kept as it is."""
        if self.run.resume and manifest_matches(self.out, KIND) and self.check_finished():
            self.finished = True  # more --steps continue from a kept checkpoint
            return
        self._check_before_loading()
        _init_distributed()
        self.check_out()

    def _check_before_loading(self) -> None:
        from transformers import AutoConfig

        corpus = self.config.corpus
        if corpus not in KNOWN_CORPORA and not Path(corpus).is_file():
            read_corpus(corpus)  # raises the one-line "unknown corpus" / "not found" error
        config = AutoConfig.from_pretrained(resolve_model_path(self.run.model))
        n_blocks = getattr(config.get_text_config(), arch_spec(config.model_type).num_layers_attr)
        self.options.middle(n_blocks)

    def check_out(self) -> None:
        """``--out`` is new, empty, or this command's own (finished with --overwrite, unfinished with --resume)."""
        from scaleot.outputs import check_output, local_path

        r, out = self.run, self.out
        check_output(out, KIND, overwrite=r.overwrite, resume=r.resume, own_entries=OWN_ENTRIES,
                     inputs=[local_path(r.model), local_path(self.config.corpus)])
        if out.exists() and any(out.iterdir()) and not (r.resume or r.overwrite):
            raise ScaleOTError(f"output exists: {out} (pass --resume to continue it or --overwrite to replace it)")

    def provenance(self, fingerprint: str) -> dict:
        """What stage 1 trains on; checkpoints record it and ``--resume`` checks it."""
        return dict(corpus_provenance(self.config.corpus), model_fingerprint=fingerprint,
                    adapter=[self.options.n_bottom, self.options.n_top])

    def check_finished(self) -> bool:
        """``--resume`` on a finished folder: True when it was made from the same inputs and options."""
        done = read_importance_info(self.out)
        theirs = done.get("provenance") or {}
        mine = corpus_provenance(self.config.corpus)
        diff = [k for k in mine if theirs.get(k) != mine[k]]
        if done.get("model") != self.run.model:
            diff.append("model")
        if [done["adapter"]["n_bottom"], done["adapter"]["n_top"]] != [self.options.n_bottom, self.options.n_top]:
            diff.append("adapter")
        opts = self.options.to_dict()
        diff += [k for k in opts if k not in ImportanceConfig.RESUMABLE_CHANGES
                 and (done.get("options") or {}).get(k) != opts[k]]
        if diff:
            raise ScaleOTError(f"--resume: {self.out} was made from other inputs or options ({', '.join(diff[:4])}); "
                               "use a new --out or --overwrite")
        return done.get("steps", 0) >= self.options.steps

    def setup(self) -> None:
        """Clear a replaced ``--out`` (rank 0), load model and corpus."""
        if self.finished:
            return
        r, out, o = self.run, self.out, self.options
        if dist.is_initialized():
            dist.barrier()  # every rank has looked at --out before rank 0 touches it
        if r.overwrite and not r.resume and out.exists() and (not dist.is_initialized() or dist.get_rank() == 0):
            shutil.rmtree(out)
        if dist.is_initialized():
            dist.barrier()
        device = r.device
        if dist.is_initialized() and torch.cuda.is_available() and device in (None, "auto", "cuda"):
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        self.model, tok = load_model(r.model, device=device, dtype=r.dtype)
        o.middle(len(get_blocks(self.model)))  # adapter too large -> one-line error before reading data
        self.fingerprint = fingerprint_model(self.model)
        self.train_blocks, self.heldout_blocks = corpus_splits(self.config.corpus, tok, o.block_size,
                                                               o.heldout_fraction, o.max_train_blocks,
                                                               o.max_heldout_blocks)

    def execute(self) -> None:
        """Resume if asked, measure the reference step, run the trainer (``self.trainer``, ``self.timing``)."""
        if self.finished:
            return
        trainer = self.trainer = ImportanceTrainer(
            self.model, self.train_blocks, self.heldout_blocks, self.options, run_dir=self.out,
            progress=self.run.progress, provenance=self.provenance(self.fingerprint))
        resumed = trainer.resume() if self.run.resume else False
        trainer.folder.open_log(trainer.step if resumed else None)
        t0 = time.perf_counter()
        try:
            reference = trainer.last.get("full_forward_backward_s") or trainer.full_step_seconds()
            trainer.last["full_forward_backward_s"] = reference  # checkpointed with the rest
            trainer.train()
        finally:
            trainer.folder.close()
        timing = trainer.timing()
        timing["full_forward_backward_s"] = round(reference, 4)
        per_step = timing.get("harmonizer_step_s", 0) + timing.get("score_step_s", 0) / self.options.score_every
        timing["step_over_full_fwd_bwd"] = round(per_step / reference, 3)
        timing["train_seconds_this_process"] = round(time.perf_counter() - t0, 1)
        timing["world_size"] = trainer.world
        timing["autocast"] = autocast_used(wants_bf16(self.options.autocast, trainer.device), trainer.device)
        self.timing = timing

    def save(self) -> Path:
        """Write importance.json, harmonizers, plot and manifest (rank 0); returns the folder."""
        if self.finished:
            return self.out
        try:
            return self._write()
        finally:
            self.trainer.close()

    def _info(self, trainer: ImportanceTrainer, logits: list[float], n_blocks: int) -> dict:
        o = self.options
        return {
            "format_version": FORMAT_VERSION, "model": self.run.model, "model_fingerprint": self.fingerprint,
            "model_type": trainer.model.config.model_type, "num_blocks": n_blocks,
            "adapter": o.split.to_dict(), "middle": trainer.middle,
            "scores": {str(i): {"logit": round(s, 8), "keep_prob": round(float(torch.sigmoid(torch.tensor(s))), 8)}
                       for i, s in zip(trainer.middle, logits, strict=True)},
            "ranking": trainer.ranking(), "variant": o.variant, "harmonizer": o.harmonizer.to_dict(),
            "options": o.to_dict(),
            "reward_scaling": {"reward": o.reward, "eta": o.eta,
                               "rule": "s_i += eta * p_i(1-p_i) * sum_j [i kept in j] a_j; a block whose presence "
                                       "lowers the loss gains score"},
            "corpus": corpus_provenance(self.config.corpus)["corpus"], "provenance": trainer.provenance,
            "steps": trainer.step, "seed": o.seed, "final_losses": self.final, "timing": self.timing,
        }

    def _write(self) -> Path:
        trainer, out, o = self.trainer, self.out, self.options
        self.final = trainer.final_losses()
        if trainer.rank != 0:
            return out
        n_blocks = len(get_blocks(trainer.model))
        logits = [float(v) for v in trainer.scores]
        info = self._info(trainer, logits, n_blocks)
        if o.variant == "replace":
            harmonizers = trainer.stand_ins
        else:  # identity stand-ins, written as fresh (exactly identity) harmonizers to keep one file format
            hidden = trainer.model.config.get_text_config().hidden_size
            harmonizers = {i: Harmonizer(hidden, o.harmonizer) for i in trainer.middle}
        from scaleot.exchange.checks import check_finite_tensors

        check_finite_tensors({f"score of block {i}": torch.tensor(v) for i, v in zip(trainer.middle, logits,
                                                                                  strict=True)}, f"importance {out}")
        check_finite_tensors({f"harmonizer {i}.{k}": v for i, h in harmonizers.items()
                              for k, v in h.state_dict().items()}, f"importance {out}")

        def chart_and_cleanup(folder: Path) -> None:
            plot_importance(folder / "importance.png", trainer.middle, logits, n_blocks, (o.n_bottom, o.n_top),
                            title=f"{self.run.model}: {o.variant}, {trainer.step} steps, seed {o.seed}")
            if not self.config.keep_checkpoints:
                shutil.rmtree(folder / "checkpoints", ignore_errors=True)

        return write_importance(out, info, harmonizers, extra_writer=chart_and_cleanup)


def run_importance(run: ImportanceRun) -> Path:
    """The whole recipe; returns the importance folder (skips work if already complete)."""
    return run_recipe(ImportanceRecipe(run))


@step_command(ImportanceRun)
def command(config: ImportanceRun) -> None:
    folder = run_importance(config)
    if not dist.is_initialized() or dist.get_rank() == 0:
        typer.echo(str(folder))
