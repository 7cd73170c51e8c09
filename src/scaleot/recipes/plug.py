"""Plug a tuned adapter into the full model and write a standard HF model folder.

The model owner's step (docs/method.md section 1, step 4): the adapter must have been tuned on
this very emulator bundle (checked by a fingerprint over its weights, config, tokenizer files
and ``emulator.json``), and may change only the bundle's adapter blocks (``--emulator``),
otherwise it is refused. ``--model`` defaults to the base model recorded in the model owner's
own bundle (``emulator.json``: a known name or hub id; a local folder is recorded by its name
only, so pass ``--model`` for it: :func:`recorded_base_model`), never the one the adapter
names: the data owner's file does not choose which folder or hub id is opened. LoRA
adapters are merged, so ``AutoModelForCausalLM.from_pretrained(OUT)`` loads the result.

Recipe shape (:class:`~scaleot.recipes.protocol.Recipe`): :class:`PlugRecipe` reads one
:class:`PlugRun`. :func:`scaleot.model_owner.plug.plug` is one call that checks ``--out``, reads and
checks the adapter against the bundle, merges and writes, so ``execute`` makes that call
and the other three steps have nothing of their own to do.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field
from pathlib import Path

import typer

from scaleot.merge import check_adapter_fits, plug_into
from scaleot.model_owner.plug import plug, recorded_base_model
from scaleot.recipes.options import step_command
from scaleot.recipes.protocol import run_recipe
from scaleot.recipes.run_options import RunOptions, run_field

__all__ = ["PlugRecipe", "PlugRun", "command", "plug", "plug_into", "check_adapter_fits", "recorded_base_model"]


def _opt(default, help: str, **extra):
    return field(default=default, metadata={"help": help, **extra})


@dataclass(kw_only=True)
class PlugRun:
    """One ``scaleot plug``: the adapter, the bundle it was tuned on, where the HF folder goes."""

    run: RunOptions = run_field("out", "model", "device", "overwrite", required=("out",), defaults={"model": None},
                                notes={"out": "the plug-in HF model folder",
                                       "model": "default: the base model the --emulator bundle records"})
    adapter: Path = _opt(MISSING, "tuned adapter folder (from scaleot finetune)")
    emulator: Path | None = _opt(None, "the emulator bundle the adapter was tuned on (required: it says which "
                                 "blocks the adapter may change)")
    self_tuned: bool = _opt(False, "your own adapter tuned on the full model (scaleot finetune --model): no "
                            "emulator", switch=True)


class PlugRecipe:
    """``scaleot plug``: :func:`scaleot.model_owner.plug.plug` as a recipe."""

    def __init__(self, config: PlugRun):
        self.config, self.run, self.out = config, config.run, Path(config.run.out)

    def check_paths(self) -> None:
        """Nothing before :meth:`execute`: :func:`scaleot.model_owner.plug.plug` checks ``--out`` before loading anything."""

    def setup(self) -> None:
        """Nothing: :func:`scaleot.model_owner.plug.plug` loads the model and the adapter itself."""

    def execute(self) -> None:
        """Check, merge and write the plug-in model (``self.path``)."""
        from scaleot.model_owner.plug import (
            plug as plug_adapter,  # looked up at call time (tests stub it)
        )

        c, r = self.config, self.run
        self.path = plug_adapter(r.model, c.adapter, r.out, device=r.device, emulator=c.emulator, overwrite=r.overwrite,
                         self_tuned=c.self_tuned)

    def save(self) -> Path:
        """The folder :meth:`execute` wrote (atomically, with its manifest)."""
        return self.path


@step_command(PlugRun)
def command(config: PlugRun) -> None:
    path = run_recipe(PlugRecipe(config))
    typer.echo(f"plug-in model written to {path}")
