"""Plug a tuned adapter into the full model and write a standard HF model folder.

The model owner's step (docs/method.md section 1, step 4): the adapter must have been tuned on
an emulator of this very model (checked by fingerprint), otherwise it is refused. ``--model``
defaults to the base model recorded in the adapter's ``adapter.json``. LoRA
adapters are merged, so ``AutoModelForCausalLM.from_pretrained(OUT)`` loads the result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scaleot.adapter import read_adapter
from scaleot.errors import ScaleOTError
from scaleot.plug import check_adapter_fits, plug, plug_into

__all__ = ["command", "plug", "plug_into", "check_adapter_fits"]


def command(
    adapter: Annotated[Path, typer.Option(help="tuned adapter folder (from scaleot finetune)")],
    out: Annotated[Path, typer.Option(help="output HF model folder")],
    model: Annotated[str | None, typer.Option(help="the full model: a known name or a local HF folder "
                                              "(default: the base model the adapter records)")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda")] = None,
) -> None:
    if model is None:
        model = read_adapter(adapter).info.get("base_model")
        if not model:
            raise ScaleOTError(f"adapter {adapter} records no base model: pass --model")
    path = plug(model, adapter, out, device=device)
    typer.echo(f"plug-in model written to {path}")
