"""Running an emulator bundle: rebuild its model from the files (docs/method.md section 1, step 2).

The bundle's format (files, fingerprint, ``emulator.json``, the block types it may carry)
is :mod:`scaleot.exchange.bundle`; this module is what the data owner (and every
evaluation) runs to turn a verified bundle into a model. :func:`load_emulator` verifies
every hash, rebuilds the module structure from ``config.json`` and the layer map
(decoder blocks, :class:`~scaleot.exchange.layers.Harmonizer`,
:class:`~scaleot.exchange.layers.IdentityBlock`, SRC's
:class:`~scaleot.exchange.layers.LowRankLinear`, shared blocks), then loads
``model.safetensors`` strictly. It lives in the foundation, below both parties' code,
because both run bundles.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from scaleot.errors import ScaleOTError
from scaleot.exchange.bundle import CONFIG, WEIGHTS, EmulatorBundle, read_bundle_info
from scaleot.exchange.checks import check_finite_model
from scaleot.exchange.layer_map import validate_layer_map
from scaleot.exchange.layers import Harmonizer, HarmonizerConfig, IdentityBlock, LowRankLinear
from scaleot.models.arch import (
    ArchSpec,
    arch_spec,
    get_blocks,
    get_submodule,
    set_blocks,
    set_submodule,
)
from scaleot.models.device import resolve_device, resolve_dtype
from scaleot.models.loading import check_model_config, prepare_tokenizer


def read_bundle(folder: Path) -> tuple[dict, str]:
    """:func:`scaleot.exchange.bundle.read_bundle_info`, then ``config.json`` names a supported
    architecture (:func:`scaleot.models.loading.check_model_config`).

    Returns:
        ``(emulator.json as a dict, the bundle's fingerprint)``.
    """
    info, fingerprint = read_bundle_info(folder)
    check_model_config(folder / CONFIG)
    return info, fingerprint


def projection_shape(module: nn.Module, transposed: bool) -> tuple[int, int]:
    """``(d_out, d_in)`` of a Linear or (transposed) Conv1D projection."""
    w = module.weight
    return (w.shape[1], w.shape[0]) if transposed else (w.shape[0], w.shape[1])


def low_rank_shell(block: nn.Module, spec: ArchSpec, ranks: dict[str, int]) -> None:
    """Swap ``block``'s attention projections for empty factor modules of the given ranks.

    Used by the loader to rebuild the module structure before the weights are read.
    """
    for role, rank in ranks.items():
        path = spec.attn[role]
        proj = get_submodule(block, path)
        d_out, d_in = projection_shape(proj, spec.transposed)
        has_bias = getattr(proj, "bias", None) is not None
        shell = LowRankLinear(d_in, d_out, rank, bias=has_bias).to(proj.weight.dtype)
        set_submodule(block, path, shell)


def shared_copy(block: nn.Module) -> nn.Module:
    """A separate module instance that reuses ``block``'s Parameter tensors (CRaSh sharing)."""
    memo = {id(p): p for p in block.parameters()}
    memo.update({id(b): b for b in block.buffers()})
    return copy.deepcopy(block, memo)


def build_blocks(model: nn.Module, info: dict) -> list[nn.Module]:
    """Shells for every layer-map position, built on ``model``'s fresh blocks (loader side)."""
    spec = arch_spec(model)
    fresh = list(get_blocks(model))
    hidden = model.config.hidden_size
    hcfg = HarmonizerConfig(**info["harmonizer"]) if info.get("harmonizer") else None
    out: list[nn.Module | None] = [None] * len(fresh)
    for e in info["layer_map"]:
        pos, kind = e["position"], e["kind"]
        if kind in ("adapter", "kept"):
            out[pos] = fresh[pos]
            if e.get("src_rank"):
                low_rank_shell(out[pos], spec, e["src_rank"])
        elif kind == "harmonizer":
            if hcfg is None:
                raise ScaleOTError("emulator.json: harmonizer positions but no harmonizer config")
            out[pos] = Harmonizer(hidden, hcfg)
        elif kind == "identity":
            out[pos] = IdentityBlock()
    for e in info["layer_map"]:
        if e["kind"] == "shared":
            out[e["position"]] = shared_copy(out[e["shares"]])
    return out


def load_weights_streaming(model: nn.Module, path: Path) -> None:
    """Copy the tensors of a safetensors file into ``model`` one at a time, strictly.

    What ``safetensors.torch.load_model(strict=True)`` checks (every file tensor names a
    model tensor of the same shape; every model tensor is in the file, or shares its
    storage with one that is: tied weights), without holding the whole file's tensors
    beside the model: the peak is the model plus one tensor.

    Raises:
        RuntimeError: a missing, unexpected or mis-shaped tensor (first line names it).
    """
    state = model.state_dict()
    with safe_open(str(path), "pt") as f:
        names = set(f.keys())
        unexpected = sorted(names - set(state))
        loaded_ptrs = {state[k].data_ptr() for k in names if k in state}
        missing = sorted(k for k in state if k not in names and state[k].data_ptr() not in loaded_ptrs)
        if missing or unexpected:
            raise RuntimeError(f"missing {missing[:3]}, unexpected {unexpected[:3]}")
        with torch.no_grad():
            for name in sorted(names):
                t = f.get_tensor(name)
                if tuple(t.shape) != tuple(state[name].shape):
                    raise RuntimeError(f"size mismatch for {name}: {tuple(t.shape)} in the file, "
                                       f"{tuple(state[name].shape)} in the model")
                state[name].copy_(t)
                del t


def check_src_ranks(layer_map: list[dict], config, folder: Path) -> None:
    """SRC ranks name attention projections and lie in ``[1, min(out, in))``."""
    hidden = getattr(config, "hidden_size", None)
    roles = arch_spec(config.model_type).attn
    for e in layer_map:
        for name, r in (e.get("src_rank") or {}).items():
            if name not in roles or (isinstance(hidden, int) and not 1 <= r <= hidden):
                raise ScaleOTError(f"{folder}: emulator.json layer_map.{e['position']}.src_rank.{name} = {r!r} "
                                   "is not a rank of an attention projection")


def load_emulator(path: str | Path, device: str | None = None, dtype: str | None = None,
                  expected_base_fingerprint: str | None = None) -> EmulatorBundle:
    """Verify and load an emulator bundle.

    Args:
        path: the bundle folder.
        device, dtype: where and in which precision to put the model (``auto`` by default).
        expected_base_fingerprint: refuse a bundle made from other base weights.

    Raises:
        ScaleOTError: one line, for a missing, tampered, truncated, foreign or malformed bundle.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = Path(path)
    info, fingerprint = read_bundle(folder)  # hashes, closed folder, emulator.json, config.json
    if expected_base_fingerprint and info.get("base_fingerprint") != expected_base_fingerprint:
        raise ScaleOTError(f"{folder}: emulator was built from other base weights "
                           f"({info.get('base_fingerprint')}, expected {expected_base_fingerprint})")
    try:
        config = AutoConfig.from_pretrained(str(folder))
    except Exception as e:  # transformers raises many types for a bad config
        raise ScaleOTError(f"{folder}: config.json is not a usable model config "
                           f"({str(e).splitlines()[0][:160]})") from None
    spec = arch_spec(config.model_type)
    layer_map = info.get("layer_map")
    if not isinstance(layer_map, list) or len(layer_map) != getattr(config, spec.num_layers_attr):
        raise ScaleOTError(f"{folder}: layer map and config.json disagree on the number of blocks")
    validate_layer_map(layer_map)
    check_src_ranks(layer_map, config, folder)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    blocks = build_blocks(model, info)
    set_blocks(model, blocks, list(range(len(blocks))))
    try:
        load_weights_streaming(model, folder / WEIGHTS)
    except RuntimeError as e:
        raise ScaleOTError(f"{folder}: model.safetensors does not match the layer map "
                           f"({str(e).splitlines()[0][:200]})") from None
    check_finite_model(model, f"emulator bundle {folder}")
    dev = resolve_device(device)
    model.to(device=dev, dtype=resolve_dtype(dtype, dev)).eval()
    tokenizer = None
    if (folder / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
            prepare_tokenizer(tokenizer)
        except Exception as e:  # tokenizers raise many types for a malformed file
            raise ScaleOTError(f"{folder}: the tokenizer files are malformed "
                               f"({str(e).splitlines()[0][:160] if str(e) else type(e).__name__})") from None
    return EmulatorBundle(model=model, tokenizer=tokenizer, info=info, fingerprint=fingerprint)
