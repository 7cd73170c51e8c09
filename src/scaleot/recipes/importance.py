"""Learn which middle blocks matter and train their harmonizers (ScaleOT stage 1).

Recipe shape: ``setup -> train -> save``. Features: Dynamic LayerReplace or LayerDrop
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
from typing import Annotated

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
    DEFAULT_MODEL,
    arch_spec,
    fingerprint_model,
    get_blocks,
    load_model,
    resolve_model_path,
)
from scaleot.models.device import autocast_used, wants_bf16
from scaleot.provenance import corpus_provenance
from scaleot.recipes.options import config_command


@dataclass
class ImportanceRun:
    """One ``scaleot importance`` run: what to read, where to write, and the method options."""

    out: Path
    model: str = DEFAULT_MODEL
    corpus: str = "kjv"
    options: ImportanceConfig = field(default_factory=ImportanceConfig)
    device: str | None = None
    dtype: str | None = None
    resume: bool = False
    overwrite: bool = False
    keep_checkpoints: bool = False
    progress: bool = True


def _init_distributed() -> None:
    """Under ``accelerate launch`` (WORLD_SIZE > 1) let Accelerator set up the process group."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        from accelerate import Accelerator

        Accelerator(cpu=not torch.cuda.is_available())


def _check_before_loading(run: ImportanceRun) -> None:
    """Fail fast (one line) on an adapter larger than the model or an unknown corpus."""
    from transformers import AutoConfig

    if run.corpus not in KNOWN_CORPORA and not Path(run.corpus).is_file():
        read_corpus(run.corpus)  # raises the one-line "unknown corpus" / "not found" error
    config = AutoConfig.from_pretrained(resolve_model_path(run.model))
    n_blocks = getattr(config.get_text_config(), arch_spec(config.model_type).num_layers_attr)
    run.options.middle(n_blocks)


OWN_ENTRIES = ("importance.json", "harmonizers.safetensors", "importance.png", "manifest.json")


def check_importance_out(run: ImportanceRun) -> None:
    """``--out`` is new, empty, or this command's own (finished with --overwrite, unfinished with --resume)."""
    from scaleot.outputs import check_output, local_path

    out = Path(run.out)
    check_output(out, KIND, overwrite=run.overwrite, resume=run.resume, own_entries=OWN_ENTRIES,
                 inputs=[local_path(run.model), local_path(run.corpus)])
    if out.exists() and any(out.iterdir()) and not (run.resume or run.overwrite):
        raise ScaleOTError(f"output exists: {out} (pass --resume to continue it or --overwrite to replace it)")


def provenance(run: ImportanceRun, fingerprint: str) -> dict:
    """What stage 1 trains on; checkpoints record it and ``--resume`` checks it."""
    return dict(corpus_provenance(run.corpus), model_fingerprint=fingerprint,
                adapter=[run.options.n_bottom, run.options.n_top])


def check_finished(run: ImportanceRun) -> bool:
    """``--resume`` on a finished folder: True when it was made from the same inputs and options."""
    done = read_importance_info(run.out)
    theirs = done.get("provenance") or {}
    mine = corpus_provenance(run.corpus)
    diff = [k for k in mine if theirs.get(k) != mine[k]]
    if done.get("model") != run.model:
        diff.append("model")
    if [done["adapter"]["n_bottom"], done["adapter"]["n_top"]] != [run.options.n_bottom, run.options.n_top]:
        diff.append("adapter")
    opts = run.options.to_dict()
    diff += [k for k in opts if k not in ImportanceConfig.RESUMABLE_CHANGES
             and (done.get("options") or {}).get(k) != opts[k]]
    if diff:
        raise ScaleOTError(f"--resume: {run.out} was made from other inputs or options ({', '.join(diff[:4])}); "
                           "use a new --out or --overwrite")
    return done.get("steps", 0) >= run.options.steps


def setup(run: ImportanceRun):
    """Check the output folder, load model and corpus, build the trainer."""
    out = Path(run.out)
    _check_before_loading(run)
    _init_distributed()
    check_importance_out(run)
    if dist.is_initialized():
        dist.barrier()  # every rank has looked at --out before rank 0 touches it
    if run.overwrite and not run.resume and out.exists() and (not dist.is_initialized() or dist.get_rank() == 0):
        shutil.rmtree(out)
    if dist.is_initialized():
        dist.barrier()
    device = None if run.device is None else run.device
    if dist.is_initialized() and torch.cuda.is_available() and device in (None, "auto", "cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    model, tok = load_model(run.model, device=device, dtype=run.dtype)
    run.options.middle(len(get_blocks(model)))  # adapter too large -> one-line error before reading data
    fingerprint = fingerprint_model(model)
    o = run.options
    train, held = corpus_splits(run.corpus, tok, o.block_size, o.heldout_fraction, o.max_train_blocks,
                                o.max_heldout_blocks)
    return model, fingerprint, train, held


def train(run: ImportanceRun, model, train_blocks, heldout_blocks,
          run_provenance: dict | None = None) -> tuple[ImportanceTrainer, dict]:
    """Resume if asked, measure the reference step, run the trainer."""
    out = Path(run.out)
    trainer = ImportanceTrainer(model, train_blocks, heldout_blocks, run.options, run_dir=out,
                                progress=run.progress, provenance=run_provenance)
    resumed = trainer.resume() if run.resume else False
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
    per_step = timing.get("harmonizer_step_s", 0) + timing.get("score_step_s", 0) / run.options.score_every
    timing["step_over_full_fwd_bwd"] = round(per_step / reference, 3)
    timing["train_seconds_this_process"] = round(time.perf_counter() - t0, 1)
    timing["world_size"] = trainer.world
    timing["autocast"] = autocast_used(wants_bf16(run.options.autocast, trainer.device), trainer.device)  # what ran
    return trainer, timing


def save(run: ImportanceRun, trainer: ImportanceTrainer, fingerprint: str, timing: dict) -> Path:
    """Write importance.json, harmonizers, plot and manifest (rank 0)."""
    out, o = Path(run.out), run.options
    final = trainer.final_losses()
    if trainer.rank != 0:
        return out
    n_blocks = len(get_blocks(trainer.model))
    logits = [float(v) for v in trainer.scores]
    info = {
        "format_version": FORMAT_VERSION, "model": run.model, "model_fingerprint": fingerprint,
        "model_type": trainer.model.config.model_type, "num_blocks": n_blocks,
        "adapter": o.split.to_dict(), "middle": trainer.middle,
        "scores": {str(i): {"logit": round(s, 8), "keep_prob": round(float(torch.sigmoid(torch.tensor(s))), 8)}
                   for i, s in zip(trainer.middle, logits, strict=True)},
        "ranking": trainer.ranking(), "variant": o.variant, "harmonizer": o.harmonizer.to_dict(),
        "options": o.to_dict(),
        "reward_scaling": {"reward": o.reward, "eta": o.eta,
                           "rule": "s_i += eta * p_i(1-p_i) * sum_j [i kept in j] a_j; a block whose presence "
                                   "lowers the loss gains score"},
        "corpus": corpus_provenance(run.corpus)["corpus"], "provenance": trainer.provenance, "steps": trainer.step, "seed": o.seed, "final_losses": final, "timing": timing,
    }
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
                        title=f"{run.model}: {o.variant}, {trainer.step} steps, seed {o.seed}")
        if not run.keep_checkpoints:
            shutil.rmtree(folder / "checkpoints", ignore_errors=True)

    return write_importance(out, info, harmonizers, extra_writer=chart_and_cleanup)


def run_importance(run: ImportanceRun) -> Path:
    """The whole recipe; returns the importance folder (skips work if already complete)."""
    if run.resume and manifest_matches(run.out, KIND) and check_finished(run):
        return Path(run.out)  # finished; more --steps continue from a kept checkpoint
    model, fingerprint, train_blocks, heldout_blocks = setup(run)
    trainer, timing = train(run, model, train_blocks, heldout_blocks, provenance(run, fingerprint))
    try:
        return save(run, trainer, fingerprint, timing)
    finally:
        trainer.close()


@config_command(ImportanceConfig, name="options")
def command(
    out: Annotated[Path, typer.Option("--out", help="output folder (importance folder)")],
    options: ImportanceConfig,
    model: Annotated[str, typer.Option(help="model name or HF folder")] = DEFAULT_MODEL,
    corpus: Annotated[str, typer.Option(help="generic text: kjv, or a .txt/.jsonl file")] = "kjv",
    resume: Annotated[bool, typer.Option("--resume", help="continue from the newest checkpoint in --out")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing --out")] = False,
    keep_checkpoints: Annotated[bool, typer.Option("--keep-checkpoints", help="keep checkpoints")] = False,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda")] = None,
    dtype: Annotated[str | None, typer.Option(help="weights dtype: auto, float32, bfloat16")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    folder = run_importance(ImportanceRun(out=out, model=model, corpus=corpus, options=options, device=device,
                                          dtype=dtype, resume=resume, overwrite=overwrite,
                                          keep_checkpoints=keep_checkpoints, progress=progress))
    if not dist.is_initialized() or dist.get_rank() == 0:
        typer.echo(str(folder))
