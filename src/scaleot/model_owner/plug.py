"""Plug a returned adapter into the full model: ``[A', E]`` (docs/method.md section 1, step 4).

The model owner checks that the adapter was tuned on an emulator of *this* model (the
adapter records the base model's fingerprint) and on the owner's own bundle, and refuses
anything else; then merges it (:mod:`scaleot.merge`) and writes a plain transformers
model folder of kind ``plugged-model``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from scaleot.errors import ScaleOTError
from scaleot.exchange.adapter import read_adapter
from scaleot.exchange.audit import read_audit
from scaleot.exchange.bundle import weights_fingerprint
from scaleot.exchange.checks import check_adapter_matches_bundle, check_finite_model
from scaleot.exchange.kinds import PLUGGED_MODEL
from scaleot.exchange.manifest import (
    MANIFEST,
    atomic_output_dir,
    read_json,
    write_json_atomic,
    write_manifest,
)
from scaleot.exchange.model_card import plugged_card, write_card
from scaleot.merge import check_adapter_fits, plug_into
from scaleot.models import KNOWN_MODELS, fingerprint_model, load_model
from scaleot.models.emulator import read_bundle
from scaleot.outputs import check_output, local_path


def plug(model: str | None, adapter: str | Path, out: str | Path, device: str | None = None,
         emulator: str | Path | None = None, overwrite: bool = False, self_tuned: bool = False) -> Path:
    """Load ``model``, plug ``adapter`` in, write a standard HF model folder to ``out``.

    The adapter folder is read and validated once (:func:`scaleot.exchange.adapter.read_adapter`);
    what follows checks it against the bundle and the model and merges it
    (:func:`scaleot.merge.plug_into`). The adapter may change only the adapter blocks of ``emulator``, the bundle it names
    (its fingerprint is recorded at tuning time and checked here): see
    :mod:`scaleot.exchange.checks`. The folder loads with
    ``AutoModelForCausalLM.from_pretrained``; ``plugin.json`` records the adapter and both
    fingerprints; ``README.md`` is its model card (:mod:`scaleot.exchange.model_card`, with the
    bundle's ``audit.json`` numbers when the bundle holds one); ``manifest.json`` has kind
    ``plugged-model``. ``self_tuned=True`` (no
    emulator) is for the model owner's own adapter tuned on the full model
    (``scaleot finetune --model``): it may change the blocks it lists, and an adapter
    tuned on an emulator is refused.

    ``model=None`` takes the base model the model owner's own ``emulator`` bundle records
    (:func:`recorded_base_model`: a known name or a hub id), never
    the one ``adapter.json`` names: the data owner's file does not choose what is opened.

    Raises:
        ScaleOTError: no ``emulator``; an adapter from another bundle or model, touching
            anything but the bundle's adapter blocks, malformed or non-finite; an ``out``
            that is an input, holds another artifact, or exists without ``overwrite``.
    """
    t0 = time.perf_counter()
    if (emulator is None) == (not self_tuned):
        raise ScaleOTError("plug needs --emulator DIR: the bundle the adapter was tuned on (it says which "
                           "blocks the adapter may change); --self-tuned only for your own full-model adapter")
    if model is None and self_tuned:
        raise ScaleOTError("--self-tuned needs --model: the base model comes from --model or from an "
                           "emulator bundle, never from the adapter")
    check_output(out, PLUGGED_MODEL, overwrite=overwrite, inputs=[adapter, emulator, local_path(model)])
    tuned = read_adapter(adapter)
    if self_tuned:
        if tuned.info.get("emulator_fingerprint") is not None:
            raise ScaleOTError(f"adapter {adapter} was tuned on an emulator: plug it with --emulator DIR")
        allowed = tuned.sources
    else:
        bundle_info, bundle_fp = read_bundle(Path(emulator))
        if model is None:  # the model owner's own bundle says which base model, never the adapter
            model = recorded_base_model(bundle_info, f"emulator bundle {emulator}")
        listed = read_json(Path(emulator) / MANIFEST, "manifest")["files"]  # verified just above
        allowed = check_adapter_matches_bundle(tuned.info, bundle_info, bundle_fp, f"adapter {adapter}",
                                               weights_fingerprint=weights_fingerprint(listed))
    full, tokenizer = load_model(model, device=device)
    base_fp = fingerprint_model(full)
    check_adapter_fits(full, tuned, base_fp)
    plugged = plug_into(full, tuned, check=False, allowed=allowed)
    check_finite_model(plugged, f"plug-in model {out}")
    with atomic_output_dir(out) as tmp:
        plugged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        plugin = {
            "format_version": 1, "base_model": model, "base_fingerprint": base_fp,
            "adapter": str(adapter), "adapter_method": tuned.method,
            "adapter_sources": tuned.sources, "emulator_fingerprint": tuned.info.get("emulator_fingerprint"),
            "plugged_fingerprint": fingerprint_model(plugged), "seconds": round(time.perf_counter() - t0, 2),
        }
        write_json_atomic(tmp / "plugin.json", plugin)
        audit = None if self_tuned else (read_audit(Path(emulator)) or bundle_info.get("audit"))
        write_card(tmp, plugged_card(plugin, None if self_tuned else bundle_info, audit))
        write_manifest(tmp, PLUGGED_MODEL, {"base_model": model, "adapter_method": tuned.method})
    return Path(out)


HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


def recorded_base_model(info: dict, source: str | Path = "the emulator bundle") -> str:
    """The base model a document records (the model owner's ``emulator.json``), as ``plug --model``'s default.

    A known name (``smollm2-135m``) or a hub id (``owner/name``) is used as recorded; a local
    model folder is recorded by its name only (artifacts that cross to the other party carry
    no local paths, :mod:`scaleot.exchange.disclosure`), and anything else (an absolute path, ``..``)
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
