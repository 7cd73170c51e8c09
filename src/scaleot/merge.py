"""Merge a read adapter into a model: ``[A', E]`` (docs/method.md section 1, step 4).

:func:`plug_into` takes a :class:`~scaleot.exchange.adapter.TunedAdapter` (read and
validated once by :func:`scaleot.exchange.adapter.read_adapter`) and merges it: ``full``
adapters replace the weights of their blocks (named by full-model index); ``lora``/``ist``
adapters are merged (``W += lora_alpha / r * B @ A``, what peft's ``merge_and_unload`` does),
so the result is a plain transformers model. Only what needs the target model is checked
here: the base fingerprint (:func:`check_adapter_fits`), which blocks the tensors touch,
their shapes, dtypes and values. The same function puts an adapter back into its emulator
(the Emu FT row) through a source -> position map, so the model owner's ``plug``
(:mod:`scaleot.model_owner.plug`) and the offsite evaluation share it.
"""

from __future__ import annotations

import torch
from torch import nn

from scaleot.errors import ScaleOTError
from scaleot.exchange.adapter import TunedAdapter, rename_blocks
from scaleot.exchange.checks import check_full_tensors, check_lora_tensors, lora_scale
from scaleot.models import arch_spec, fingerprint_model, get_blocks, get_submodule, num_blocks


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
    checked against it (:func:`scaleot.exchange.checks.check_lora_tensors`): only
    projections of the ``allowed`` blocks (default: the adapter's own), right shapes, finite.
    """
    cfg = adapter.lora_config
    if model is None:
        raise ScaleOTError("lora_deltas needs the model the adapter goes into")
    pairs = check_lora_tensors(adapter.tensors, cfg, model, blocks_path or arch_spec(model).blocks,
                               adapter.sources if allowed is None else allowed, f"adapter {adapter.path}")
    scaling = lora_scale(cfg)
    return {path: (b.float() @ a.float()) * scaling for path, (a, b) in pairs.items()}


def plug_into(model: nn.Module, adapter: TunedAdapter, check: bool = True,
              block_of_source: dict[int, int] | None = None, allowed: list[int] | None = None) -> nn.Module:
    """Put the adapter's weights into ``model`` in place (LoRA merged) and return it.

    Args:
        model: the full model, or an emulator (then pass ``block_of_source`` and ``check=False``).
        adapter: a tuned adapter, as :func:`scaleot.exchange.adapter.read_adapter` returns it.
        check: refuse an adapter whose base fingerprint is not ``model``'s.
        block_of_source: full-model block index -> position in ``model`` (default identity);
            an emulator's ``dict(zip(adapter_sources, adapter_positions))`` gives Emu FT.
        allowed: full-model blocks the adapter may change (default: its own
            ``adapter_sources``; :func:`plug` passes the emulator bundle's adapter blocks).
            Tensors for any other module, wrong shapes or dtypes, and NaN are refused.
    """
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
        tensors = adapter.tensors
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
