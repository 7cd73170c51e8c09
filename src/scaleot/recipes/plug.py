"""Plug a tuned adapter into the full model and write a standard HF model folder.

The model owner's step (docs/method.md section 1, step 4): the adapter must have been tuned on
this very emulator bundle (checked by a fingerprint over its weights, config, tokenizer files
and ``emulator.json``), and may change only the bundle's adapter blocks (``--emulator``),
otherwise it is refused. ``--model`` defaults to the base model recorded in the model owner's
own bundle (``emulator.json``: a known name or hub id; a local folder is recorded by its name
only, so pass ``--model`` for it: :func:`recorded_base_model`), never the one the adapter
names: the data owner's file does not choose which folder or hub id is opened. LoRA
adapters are merged, so ``AutoModelForCausalLM.from_pretrained(OUT)`` loads the result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scaleot.merge import check_adapter_fits, plug_into
from scaleot.model_owner.plug import plug, recorded_base_model

__all__ = ["command", "plug", "plug_into", "check_adapter_fits", "recorded_base_model"]


def command(
    adapter: Annotated[Path, typer.Option(help="tuned adapter folder (from scaleot finetune)")],
    out: Annotated[Path, typer.Option(help="output HF model folder")],
    emulator: Annotated[Path | None, typer.Option(help="the emulator bundle the adapter was tuned on "
                                                  "(required: it says which blocks the adapter may change)")] = None,
    model: Annotated[str | None, typer.Option(help="the full model: a known name or a local HF folder "
                                              "(default: the base model the --emulator bundle records)")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing plug-in model at --out")] = False,
    self_tuned: Annotated[bool, typer.Option("--self-tuned", help="your own adapter tuned on the full model "
                                             "(scaleot finetune --model): no emulator")] = False,
) -> None:
    path = plug(model, adapter, out, device=device, emulator=emulator, overwrite=overwrite, self_tuned=self_tuned)
    typer.echo(f"plug-in model written to {path}")
