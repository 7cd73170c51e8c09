"""Plug a tuned adapter into the full model: ``[A', E]`` (docs/method.md section 1, step 4).

The model owner checks that the adapter was tuned on an emulator of *this* model (the
adapter records the base model's fingerprint) and refuses anything else. ``full``
adapters replace the weights of their blocks (named by full-model index); ``lora``/``ist``
adapters are merged (``W += lora_alpha / r * B @ A``, what peft's ``merge_and_unload`` does),
so the result is a plain transformers model. The same function puts an adapter back into
its emulator (the Emu FT row) through a source -> position map.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import torch
from torch import nn

from scaleot.adapter import TunedAdapter, read_adapter, rename_blocks
from scaleot.errors import ScaleOTError
from scaleot.manifest import atomic_output_dir, write_json_atomic, write_manifest
from scaleot.model_card import plugged_card, read_audit, write_card
from scaleot.models import (
    KNOWN_MODELS,
    arch_spec,
    fingerprint_model,
    get_blocks,
    get_submodule,
    load_model,
    num_blocks,
)

PLUGGED_KIND = "plugged-model"


def check_adapter_fits(model: nn.Module, adapter: TunedAdapter, fingerprint: str | None = None) -> None:
    """Refuse an adapter whose recorded base model is not ``model``.

    Raises:
        ScaleOTError: fingerprint mismatch, or block indices outside the model.
    """
    fingerprint = fingerprint or fingerprint_model(model)
    theirs = adapter.info.get("base_fingerprint")
    if theirs != fingerprint:
        raise ScaleOTError(
            f"adapter {adapter.path} was tuned for another model (base fingerprint {str(theirs)[:19]}..., "
            f"this model is {fingerprint[:19]}...); refusing to plug it in"
        )
    n = num_blocks(model)
    bad = [i for i in adapter.sources if not 0 <= i < n]
    if bad:
        raise ScaleOTError(f"adapter {adapter.path} names blocks {bad} outside this model's {n} blocks")


def lora_deltas(adapter: TunedAdapter, model: nn.Module | None = None,
                allowed: list[int] | None = None, blocks_path: str | None = None) -> dict[str, torch.Tensor]:
    """``{module path (full-model numbering): delta W [out, in]}`` of a LoRA adapter.

    ``delta W = scaling * B @ A`` with ``scaling = lora_alpha / r`` (``/ sqrt(r)`` for rsLoRA),
    exactly what peft's ``merge_and_unload`` adds. With ``model``, every pair is first
    checked against it (:func:`scaleot.validate.exchange.check_lora_tensors`): only
    projections of the ``allowed`` blocks (default: the adapter's own), right shapes, finite.
    """
    from scaleot.adapter import read_lora_config
    from scaleot.validate.exchange import check_lora_tensors, lora_scale
    from scaleot.validate.files import load_safetensors

    cfg = read_lora_config(adapter.path)
    state = load_safetensors(adapter.path / "adapter_model.safetensors",
                             f"{adapter.path}: adapter_model.safetensors")
    if model is None:
        raise ScaleOTError("lora_deltas needs the model the adapter goes into")
    pairs = check_lora_tensors(state, cfg, model, blocks_path or arch_spec(model).blocks,
                               adapter.sources if allowed is None else allowed, f"adapter {adapter.path}")
    scaling = lora_scale(cfg)
    return {path: (b.float() @ a.float()) * scaling for path, (a, b) in pairs.items()}


def plug_into(model: nn.Module, adapter: TunedAdapter | str | Path, check: bool = True,
              block_of_source: dict[int, int] | None = None, allowed: list[int] | None = None) -> nn.Module:
    """Put the adapter's weights into ``model`` in place (LoRA merged) and return it.

    Args:
        model: the full model, or an emulator (then pass ``block_of_source`` and ``check=False``).
        adapter: a tuned adapter (folder or :class:`TunedAdapter`).
        check: refuse an adapter whose base fingerprint is not ``model``'s.
        block_of_source: full-model block index -> position in ``model`` (default identity);
            an emulator's ``dict(zip(adapter_sources, adapter_positions))`` gives Emu FT.
        allowed: full-model blocks the adapter may change (default: its own
            ``adapter_sources``; :func:`plug` passes the emulator bundle's adapter blocks).
            Tensors for any other module, wrong shapes or dtypes, and NaN are refused.
    """
    from scaleot.validate.exchange import check_full_tensors

    if not isinstance(adapter, TunedAdapter):
        adapter = read_adapter(adapter)
    if check:
        check_adapter_fits(model, adapter)
    allowed = adapter.sources if allowed is None else list(allowed)
    if sorted(adapter.sources) != sorted(allowed):
        raise ScaleOTError(f"adapter {adapter.path}: adapter_sources {adapter.sources} are not the "
                           f"allowed blocks {allowed}")
    mapping = block_of_source or {i: i for i in adapter.sources}
    spec = arch_spec(model)
    blocks = get_blocks(model)
    missing_src = [s for s in adapter.sources if not 0 <= mapping.get(s, -1) < len(blocks)]
    if missing_src:
        raise ScaleOTError(f"adapter {adapter.path}: blocks {missing_src} have no place in this model")
    if adapter.method == "full":
        tensors = adapter.full_weights()
        # shapes are those of the full model's blocks (an emulator's adapter blocks are whole)
        view = nn.ModuleList([blocks[mapping[i]] if i in mapping else nn.Identity()
                              for i in range(max(mapping) + 1)])
        check_full_tensors(tensors, view, allowed, f"adapter {adapter.path}")
        per_block: dict[int, dict] = {}
        for key, t in tensors.items():
            _, idx, name = key.split(".", 2)
            per_block.setdefault(int(idx), {})[name] = t
        for idx, state in per_block.items():
            blocks[mapping[idx]].load_state_dict(state, strict=True)
        return model
    view_model = model if block_of_source is None else None
    deltas = lora_deltas(adapter, view_model or _FullNamed(model, spec.blocks, mapping), allowed, spec.blocks)
    with torch.no_grad():
        for path, delta in deltas.items():
            target = get_submodule(model, rename_blocks(path, spec.blocks, mapping))
            w = target.weight
            w.add_((delta.t() if spec.transposed else delta).to(w.dtype))
    return model


class _FullNamed:
    """``get_submodule`` by full-model block index on a model whose blocks sit elsewhere."""

    def __init__(self, model: nn.Module, blocks_path: str, mapping: dict[int, int]):
        self.model, self.blocks_path, self.mapping = model, blocks_path, mapping

    def get_submodule(self, path: str) -> nn.Module:
        return self.model.get_submodule(rename_blocks(path, self.blocks_path, self.mapping))


def plug(model: str | None, adapter: str | Path, out: str | Path, device: str | None = None,
         emulator: str | Path | None = None, overwrite: bool = False, self_tuned: bool = False) -> Path:
    """Load ``model``, plug ``adapter`` in, write a standard HF model folder to ``out``.

    The adapter may change only the adapter blocks of ``emulator``, the bundle it names
    (its fingerprint is recorded at tuning time and checked here): see
    :mod:`scaleot.validate.exchange`. The folder loads with
    ``AutoModelForCausalLM.from_pretrained``; ``plugin.json`` records the adapter and both
    fingerprints; ``README.md`` is its model card (:mod:`scaleot.model_card`, with the
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
    from scaleot.emulator.bundle import read_bundle_info
    from scaleot.outputs import check_output, local_path
    from scaleot.validate.exchange import check_adapter_matches_bundle, check_finite_model

    t0 = time.perf_counter()
    if (emulator is None) == (not self_tuned):
        raise ScaleOTError("plug needs --emulator DIR: the bundle the adapter was tuned on (it says which "
                           "blocks the adapter may change); --self-tuned only for your own full-model adapter")
    if model is None and self_tuned:
        raise ScaleOTError("--self-tuned needs --model: the base model comes from --model or from an "
                           "emulator bundle, never from the adapter")
    check_output(out, PLUGGED_KIND, overwrite=overwrite, inputs=[adapter, emulator, local_path(model)])
    tuned = read_adapter(adapter)
    if self_tuned:
        if tuned.info.get("emulator_fingerprint") is not None:
            raise ScaleOTError(f"adapter {adapter} was tuned on an emulator: plug it with --emulator DIR")
        allowed = tuned.sources
    else:
        from scaleot.emulator.bundle import weights_fingerprint
        from scaleot.manifest import read_json

        bundle_info, bundle_fp = read_bundle_info(Path(emulator))
        if model is None:  # the model owner's own bundle says which base model, never the adapter
            model = recorded_base_model(bundle_info, f"emulator bundle {emulator}")
        listed = read_json(Path(emulator) / "manifest.json", "manifest")["files"]  # verified just above
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
        write_manifest(tmp, PLUGGED_KIND, {"base_model": model, "adapter_method": tuned.method})
    return Path(out)


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
