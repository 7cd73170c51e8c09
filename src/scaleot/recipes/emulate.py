"""Build an emulator bundle [A, E*] to hand to the data owner (ScaleOT stage 2 and baselines).

Recipe shape: ``setup -> build -> save``. Methods (``--method``): ``scaleot`` (harmonizers
at stage 1's lowest-ranked positions, ``--importance DIR --alpha A``), ``drop`` (the same
with identities), ``uniform`` (OT uniform LayerDrop, ``--keep K``), ``uniform-kd`` (uniform
+ distillation on generic text, with progress, checkpoints and ``--resume``), ``crash``
(CKA clustering + sharing). ``--beta`` (Selective Rank Compression) composes with every
method. Output: the emulator bundle (``emulator.json``, ``model.safetensors``,
``config.json``, tokenizer files, ``manifest.json`` of kind ``emulator``).

Raises :class:`~scaleot.errors.ScaleOTError` (one line) for a bad option, an importance
folder from another model, or an unknown model.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

import typer

from scaleot.emulator import EmulatorConfig, build_emulator
from scaleot.emulator.bundle import EmulatorBundle
from scaleot.models import DEFAULT_MODEL, load_model
from scaleot.recipes.options import parse_adapter

log = logging.getLogger(__name__)


def setup(config: EmulatorConfig):
    """Load the full model and tokenizer; returns ``(model, tokenizer, load seconds)``."""
    t0 = time.perf_counter()
    model, tokenizer = load_model(config.model, config.device, config.dtype)
    return model, tokenizer, time.perf_counter() - t0


def build(model, tokenizer, config: EmulatorConfig) -> EmulatorBundle:
    """Build the emulator (the full model is left unchanged)."""
    return build_emulator(model, config, tokenizer=tokenizer)


def save(bundle: EmulatorBundle, out: Path, overwrite: bool = False) -> Path:
    """Write the bundle atomically; returns its folder."""
    return bundle.save(out, overwrite=overwrite)


def run_emulate(config: EmulatorConfig, out: str | Path, overwrite: bool = False) -> Path:
    """``scaleot emulate`` as a function: load, build, save; returns the bundle folder.

    For ``uniform-kd`` the distillation run (checkpoints, logs) goes to
    ``config.kd_run_dir`` or, by default, ``<out>.kd`` beside the bundle.
    """
    from scaleot.outputs import check_output, check_run_dir, local_path

    out = Path(out)
    inputs = [config.importance, local_path(config.model), local_path(config.corpus)]
    check_output(out, "emulator", overwrite=overwrite, inputs=[*inputs, config.kd_run_dir])
    if (config.method == "uniform-kd" or config.calibrate_steps) and not config.kd_run_dir:
        config.kd_run_dir = str(out.with_name(out.name + ".kd"))
    if config.kd_run_dir:
        check_run_dir(config.kd_run_dir, resume=config.resume, overwrite=overwrite, inputs=[*inputs, out],
                      what="--kd-run-dir")
    model, tokenizer, load_s = setup(config)
    bundle = build(model, tokenizer, config)
    bundle.info["timing"]["load_model_s"] = round(load_s, 3)
    return save(bundle, out, overwrite=overwrite)


def command(
    out: Annotated[Path, typer.Option("--out", help="output folder (emulator bundle)")],
    method: Annotated[str, typer.Option(help="scaleot, drop, uniform, uniform-kd or crash")] = "scaleot",
    model: Annotated[str, typer.Option(help="model name or HF folder")] = DEFAULT_MODEL,
    adapter: Annotated[str, typer.Option(help="adapter blocks N_BOTTOM,N_TOP (sent whole)")] = "2,2",
    importance: Annotated[str | None, typer.Option(help="importance folder (scaleot, drop)")] = None,
    alpha: Annotated[float, typer.Option(help="fraction of middle blocks replaced, [0, 1)")] = 0.5,
    beta: Annotated[float, typer.Option(help="SRC: fraction of attention rank removed, [0, 1)")] = 0.0,
    keep: Annotated[int | None, typer.Option(help="middle blocks kept (uniform, uniform-kd, crash); "
                                             "default: as many as scaleot keeps at --alpha")] = None,
    corpus: Annotated[str, typer.Option(help="generic text for crash / uniform-kd")] = "kjv",
    block_size: Annotated[int, typer.Option(help="tokens per generic-text block")] = 128,
    calib_blocks: Annotated[int, typer.Option(help="crash: text blocks for CKA")] = 16,
    kd_steps: Annotated[int, typer.Option(help="uniform-kd: distillation steps")] = 200,
    kd_lr: Annotated[float, typer.Option(help="uniform-kd: learning rate")] = 1e-4,
    kd_batch: Annotated[int, typer.Option(help="uniform-kd: blocks per step")] = 4,
    kd_checkpoint_every: Annotated[int, typer.Option(help="uniform-kd: steps between checkpoints")] = 50,
    kd_run_dir: Annotated[str | None, typer.Option(help="uniform-kd: run folder (default OUT.kd)")] = None,
    calibrate_steps: Annotated[int, typer.Option(help="scaleot: stage-2 harmonizer calibration steps "
                                                 "against the full model (0 = none)")] = 0,
    calibrate_lr: Annotated[float, typer.Option(help="scaleot: calibration learning rate")] = 1e-3,
    diagnostic_blocks: Annotated[int, typer.Option(help="generic-text blocks for the transfer diagnostic in emulator.json (0 = skip)")] = 4,
    resume: Annotated[bool, typer.Option("--resume", help="uniform-kd: continue from the newest checkpoint")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing emulator at --out")] = False,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda")] = None,
    dtype: Annotated[str | None, typer.Option(help="weights dtype: auto, float32, bfloat16")] = None,
) -> None:
    n_bottom, n_top = parse_adapter(adapter)
    config = EmulatorConfig(
        method=method, model=model, n_bottom=n_bottom, n_top=n_top, alpha=alpha, beta=beta, keep=keep,
        importance=importance, corpus=corpus, block_size=block_size, calib_blocks=calib_blocks,
        kd_steps=kd_steps, kd_lr=kd_lr, kd_batch=kd_batch, kd_checkpoint_every=kd_checkpoint_every,
        kd_run_dir=kd_run_dir, calibrate_steps=calibrate_steps, calibrate_lr=calibrate_lr, diagnostic_blocks=diagnostic_blocks, resume=resume, seed=seed, device=device, dtype=dtype)
    folder = run_emulate(config, out, overwrite=overwrite)
    typer.echo(str(folder))
