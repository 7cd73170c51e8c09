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
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from scaleot.exchange.bundle import EmulatorBundle
from scaleot.exchange.kinds import EMULATOR
from scaleot.model_owner.emulator import EmulatorConfig, build_emulator
from scaleot.models import DEFAULT_MODEL, load_model
from scaleot.recipes.options import config_command

log = logging.getLogger(__name__)


def setup(config: EmulatorConfig):
    """Load the full model and tokenizer; returns ``(model, tokenizer, load seconds)``."""
    t0 = time.perf_counter()
    model, tokenizer = load_model(config.model, config.device, config.dtype)
    return model, tokenizer, time.perf_counter() - t0


def build(model, tokenizer, config: EmulatorConfig) -> EmulatorBundle:
    """Build the emulator (the full model is left unchanged; the emulator reuses its
    tensors instead of copying them, since it is only saved)."""
    return build_emulator(model, config, tokenizer=tokenizer, share_weights=True)


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
    check_output(out, EMULATOR, overwrite=overwrite, inputs=[*inputs, config.kd_run_dir])
    if (config.method == "uniform-kd" or config.calibrate_steps) and not config.kd_run_dir:
        config.kd_run_dir = str(out.with_name(out.name + ".kd"))
    if config.kd_run_dir:
        check_run_dir(config.kd_run_dir, resume=config.resume, overwrite=overwrite, inputs=[*inputs, out],
                      what="--kd-run-dir")
    model, tokenizer, load_s = setup(config)
    bundle = build(model, tokenizer, config)
    bundle.info["timing"]["load_model_s"] = round(load_s, 3)
    return save(bundle, out, overwrite=overwrite)


@config_command(EmulatorConfig)
def command(
    out: Annotated[Path, typer.Option("--out", help="output folder (emulator bundle)")],
    config: EmulatorConfig,
    model: Annotated[str, typer.Option(help="model name or HF folder")] = DEFAULT_MODEL,
    resume: Annotated[bool, typer.Option("--resume", help="uniform-kd: continue from the newest checkpoint")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing emulator at --out")] = False,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda")] = None,
    dtype: Annotated[str | None, typer.Option(help="weights dtype: auto, float32, bfloat16")] = None,
) -> None:
    config = replace(config, model=model, resume=resume, device=device, dtype=dtype)
    folder = run_emulate(config, out, overwrite=overwrite)
    typer.echo(str(folder))
