"""Build an emulator bundle [A, E*] to hand to the data owner (ScaleOT stage 2 and baselines).

Recipe shape (:class:`~scaleot.recipes.protocol.Recipe`): :class:`EmulateRecipe` reads one
:class:`EmulateRun`, ``check_paths -> setup -> execute (build) -> save``. Methods (``--method``): ``scaleot`` (harmonizers
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
from dataclasses import dataclass, field, replace
from pathlib import Path

import typer

from scaleot.exchange.kinds import EMULATOR
from scaleot.model_owner.emulator import EmulatorConfig, build_emulator
from scaleot.models import load_model
from scaleot.recipes.options import step_command
from scaleot.recipes.protocol import run_recipe
from scaleot.recipes.run_options import RunOptions, run_field

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class EmulateRun:
    """One ``scaleot emulate``: the run-level options and the emulator's config.

    ``run`` names the base model, device, dtype and ``--resume``; the recipe passes them to
    :func:`~scaleot.models.load_model` and :func:`~scaleot.model_owner.emulator.build_emulator`.
    """

    run: RunOptions = run_field("out", "model", "resume", "overwrite", "device", "dtype", "progress",
                                required=("out",),
                                notes={"out": "the emulator bundle", "resume": "uniform-kd's distillation"})
    config: EmulatorConfig = field(default_factory=EmulatorConfig, metadata={"flatten": True})


class EmulateRecipe:
    """``scaleot emulate``: ``check_paths -> setup (load) -> execute (build) -> save``.

    For ``uniform-kd`` (and calibration) the distillation run (checkpoints, logs) goes to
    ``config.kd_run_dir`` or, by default, ``<out>.kd`` beside the bundle.
    """

    def __init__(self, config: EmulateRun):
        r = config.run
        self.config, self.run, self.out = config, r, Path(r.out)
        self.emulator = replace(config.config)  # check_paths fills kd_run_dir: the caller's config stays as given

    def check_paths(self) -> None:
        """Refuse a destructive ``--out`` or ``--kd-run-dir`` before loading the model."""
        from scaleot.outputs import check_output, check_run_dir, local_path

        c, r, out = self.emulator, self.run, self.out
        inputs = [c.importance, local_path(r.model), local_path(c.corpus)]
        check_output(out, EMULATOR, overwrite=self.run.overwrite, inputs=[*inputs, c.kd_run_dir])
        if (c.method == "uniform-kd" or c.calibrate_steps) and not c.kd_run_dir:
            c.kd_run_dir = str(out.with_name(out.name + ".kd"))
        if c.kd_run_dir:
            check_run_dir(c.kd_run_dir, resume=r.resume, overwrite=r.overwrite, inputs=[*inputs, out],
                          what="--kd-run-dir")

    def setup(self) -> None:
        """Load the full model and tokenizer."""
        t0 = time.perf_counter()
        r = self.run
        self.model, self.tokenizer = load_model(r.model, r.device, r.dtype)
        self.load_seconds = time.perf_counter() - t0

    def execute(self) -> None:
        """Build the emulator (the full model is left unchanged; the emulator reuses its
        tensors instead of copying them, since it is only saved)."""
        self.bundle = build_emulator(self.model, self.emulator, tokenizer=self.tokenizer, share_weights=True,
                                     base_model=self.run.model, resume=self.run.resume, progress=self.run.progress)
        self.bundle.info["timing"]["load_model_s"] = round(self.load_seconds, 3)

    def save(self) -> Path:
        """Write the bundle atomically; returns its folder."""
        return self.bundle.save(self.out, overwrite=self.run.overwrite)


@step_command(EmulateRun)
def command(config: EmulateRun) -> None:
    typer.echo(str(run_recipe(EmulateRecipe(config))))
