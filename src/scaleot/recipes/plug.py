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

import re
from pathlib import Path
from typing import Annotated

import typer

from scaleot.errors import ScaleOTError
from scaleot.models import KNOWN_MODELS
from scaleot.plug import check_adapter_fits, plug, plug_into

__all__ = ["command", "plug", "plug_into", "check_adapter_fits", "recorded_base_model"]


HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


def recorded_base_model(info: dict, source: str | Path = "the emulator bundle") -> str:
    """The base model a document records (the model owner's ``emulator.json``), as ``plug --model``'s default.

    A known name (``smollm2-135m``) or a hub id (``owner/name``) is used as recorded; a local
    model folder is recorded by its name only (artifacts that cross to the other party carry
    no local paths, :mod:`scaleot.disclosure`), and anything else (an absolute path, ``..``)
    is never opened: pass ``--model``.

    Raises:
        ScaleOTError: no base model recorded, a local folder's name, or not a name at all.
    """
    model = info.get("base_model")
    if not isinstance(model, str) or not model:
        raise ScaleOTError(f"{source} records no base model: pass --model")
    if model in KNOWN_MODELS:
        return model
    if HUB_ID.fullmatch(model) and ".." not in model:
        return model
    raise ScaleOTError(f"{source} records the base model {model!r:.60}, not a known name or hub id "
                       "(a local folder is recorded by its name only): pass --model PATH")


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
