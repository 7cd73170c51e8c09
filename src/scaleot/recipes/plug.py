"""Plug a tuned adapter into the full model and write a standard HF model folder.

The model owner's step (docs/method.md section 1, step 4): the adapter must have been tuned on
an emulator of this very model (checked by fingerprint), and may change only the adapter
blocks of the emulator bundle it names (``--emulator``), otherwise it is refused.
``--model`` defaults to the base model recorded in the adapter's ``adapter.json`` (a
known name or hub id; a local folder is recorded by its name only, so pass ``--model`` for
it: :func:`recorded_base_model`). LoRA
adapters are merged, so ``AutoModelForCausalLM.from_pretrained(OUT)`` loads the result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scaleot.adapter import read_adapter
from scaleot.errors import ScaleOTError
from scaleot.models import KNOWN_MODELS
from scaleot.plug import check_adapter_fits, plug, plug_into

__all__ = ["command", "plug", "plug_into", "check_adapter_fits", "recorded_base_model"]


def recorded_base_model(info: dict, adapter: str | Path = "the adapter") -> str:
    """The base model ``adapter.json`` records, as ``plug --model``'s default.

    A known name (``smollm2-135m``) or a hub id is recorded as given; a local model folder
    only by its name (artifacts that cross to the other party carry no local paths,
    :mod:`scaleot.disclosure`), so for a local folder pass ``--model`` again.

    Raises:
        ScaleOTError: no base model recorded, or only a local folder's name.
    """
    model = info.get("base_model")
    if not isinstance(model, str) or not model:
        raise ScaleOTError(f"adapter {adapter} records no base model: pass --model")
    if model not in KNOWN_MODELS and "/" not in model and not Path(model).expanduser().is_dir():
        raise ScaleOTError(f"adapter {adapter} records the base model {model!r}, a local folder's name "
                           "(local paths are not recorded): pass --model PATH")
    return model


def command(
    adapter: Annotated[Path, typer.Option(help="tuned adapter folder (from scaleot finetune)")],
    out: Annotated[Path, typer.Option(help="output HF model folder")],
    emulator: Annotated[Path | None, typer.Option(help="the emulator bundle the adapter was tuned on "
                                                  "(required: it says which blocks the adapter may change)")] = None,
    model: Annotated[str | None, typer.Option(help="the full model: a known name or a local HF folder "
                                              "(default: the base model the adapter records)")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing plug-in model at --out")] = False,
    self_tuned: Annotated[bool, typer.Option("--self-tuned", help="your own adapter tuned on the full model "
                                             "(scaleot finetune --model): no emulator")] = False,
) -> None:
    if model is None:
        model = recorded_base_model(read_adapter(adapter).info, adapter)
    path = plug(model, adapter, out, device=device, emulator=emulator, overwrite=overwrite, self_tuned=self_tuned)
    typer.echo(f"plug-in model written to {path}")
