"""What a returned adapter may touch: the exchange ``plug`` enforces (METHOD.md section 1).

The model owner shipped an emulator whose layer map names the adapter blocks (full-model
indices). A tuned adapter may change exactly those blocks and nothing else:

- its ``emulator_fingerprint`` must be the bundle's, and its ``adapter_sources`` the
  bundle's adapter blocks (:func:`check_adapter_matches_bundle`);
- ``full`` tensors must be ``blocks.<i>.<param>`` for an allowed block ``i``, each
  parameter of the block present once, with the block's shape, a float dtype and finite
  values (:func:`check_full_tensors`);
- LoRA tensors must be ``lora_A``/``lora_B`` pairs on a linear projection inside an
  allowed block, ``A: [r, in]``, ``B: [out, r]`` with the config's ``r``, float and finite,
  and a scale ``lora_alpha / r`` (``/ sqrt(r)`` for rsLoRA) of at most
  :data:`MAX_LORA_SCALE` (:func:`check_lora_tensors`).

Anything else (a pair on block 15 of the middle, on ``lm_head`` or the embeddings, an
int32 tensor, NaN) is refused with one line before the full model is touched.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from scaleot.errors import ScaleOTError

MAX_LORA_SCALE = 64.0
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _split_claims(doc: dict) -> list[dict]:
    """Every ``{n_bottom, n_top}`` a document claims: its ``adapter`` entry and top-level keys."""
    claims = []
    split = doc.get("adapter")
    if isinstance(split, dict) and {"n_bottom", "n_top"} & set(split):
        claims.append({k: split.get(k) for k in ("n_bottom", "n_top")})
    if {"n_bottom", "n_top"} & set(doc):
        claims.append({k: doc.get(k) for k in ("n_bottom", "n_top")})
    return claims


def check_adapter_matches_bundle(adapter_info: dict, bundle_info: dict, bundle_fingerprint: str,
                                 where: str, weights_fingerprint: str | None = None) -> list[int]:
    """The adapter was tuned on this bundle and claims exactly its adapter blocks and split.

    Args:
        weights_fingerprint: the bundle's older, weights-only fingerprint: an adapter that
            records it was tuned before the fingerprint covered the whole bundle, and is
            refused with a line saying so.

    Returns:
        The allowed full-model block indices (the bundle's adapter sources).
    """
    allowed = [e["source"] for e in bundle_info["layer_map"] if e["kind"] == "adapter"]
    theirs = adapter_info.get("emulator_fingerprint")
    if weights_fingerprint is not None and theirs == weights_fingerprint:
        raise ScaleOTError(f"{where} records the older emulator fingerprint (model.safetensors only), which "
                           "cannot show it was tuned on this bundle's tokenizer, config and emulator.json; "
                           "tune it again on this bundle")
    if theirs != bundle_fingerprint:
        raise ScaleOTError(f"{where} was not tuned on this emulator bundle (emulator fingerprint "
                           f"{str(theirs)[:19]}..., the bundle is {bundle_fingerprint[:19]}...; it covers the "
                           "weights, config, tokenizer files and emulator.json)")
    if adapter_info.get("base_fingerprint") != bundle_info.get("base_fingerprint"):
        raise ScaleOTError(f"{where}: base fingerprint differs from the emulator bundle's")
    if sorted(adapter_info.get("adapter_sources", [])) != sorted(allowed):
        raise ScaleOTError(f"{where}: adapter_sources {adapter_info.get('adapter_sources')} are not the "
                           f"bundle's adapter blocks {allowed}")
    bundle = (_split_claims(bundle_info) or [None])[0]
    for mine in _split_claims(adapter_info):
        if mine != bundle:
            raise ScaleOTError(f"{where}: adapter.json claims the adapter split {mine}, the bundle's is {bundle}")
    return allowed


def _check_tensor(name: str, t: torch.Tensor, shape: tuple, where: str) -> None:
    if t.dtype not in FLOAT_DTYPES:
        raise ScaleOTError(f"{where}: tensor {name} has dtype {str(t.dtype).removeprefix('torch.')}, expected "
                           "float32, float16 or bfloat16")
    if tuple(t.shape) != tuple(shape):
        raise ScaleOTError(f"{where}: tensor {name} has shape {list(t.shape)}, expected {list(shape)}")
    if not torch.isfinite(t).all():
        raise ScaleOTError(f"{where}: tensor {name} holds NaN or infinite values")


def check_full_tensors(tensors: dict[str, torch.Tensor], blocks: nn.ModuleList, allowed: list[int],
                       where: str) -> None:
    """``blocks.<i>.<param>`` for every allowed block, each param once, right shape, finite."""
    expected = {}
    for i in allowed:
        if not 0 <= i < len(blocks):
            raise ScaleOTError(f"{where}: block {i} is outside this model's {len(blocks)} blocks")
        for k, v in blocks[i].state_dict().items():
            expected[f"blocks.{i}.{k}"] = tuple(v.shape)
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise ScaleOTError(f"{where}: tensors outside the adapter blocks {allowed}: {extra[:3]}")
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise ScaleOTError(f"{where}: tensors missing for the adapter blocks: {missing[:3]}")
    for name, t in tensors.items():
        _check_tensor(name, t, expected[name], where)


def lora_scale(cfg: dict) -> float:
    r, alpha = cfg["r"], cfg["lora_alpha"]
    return alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r


def lora_pairs(state: dict[str, torch.Tensor], cfg: dict, where: str) -> dict[str, dict[str, torch.Tensor]]:
    """What a LoRA state must be without a model: a bounded scale, only ``lora_A``/``lora_B``
    weights, each module with both. Returns ``{module path: {"lora_A": A, "lora_B": B}}``."""
    scale = lora_scale(cfg)
    if not math.isfinite(scale) or abs(scale) > MAX_LORA_SCALE:
        raise ScaleOTError(f"{where}: LoRA scale lora_alpha/r = {scale:g} is outside (0, {MAX_LORA_SCALE:g}]")
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in state.items():
        for part in ("lora_A", "lora_B"):
            marker = f".{part}.weight"
            if key.endswith(marker):
                path = key[: -len(marker)].removeprefix("base_model.model.")
                pairs.setdefault(path, {})[part] = t
                break
        else:
            raise ScaleOTError(f"{where}: unexpected tensor {key} (only lora_A/lora_B weights may travel)")
    if not pairs:
        raise ScaleOTError(f"{where}: no LoRA weights in adapter_model.safetensors")
    for path, pair in sorted(pairs.items()):
        if set(pair) != {"lora_A", "lora_B"}:
            raise ScaleOTError(f"{where}: {path} has {sorted(pair)} but LoRA needs lora_A and lora_B")
    return pairs


def check_lora_tensors(state: dict[str, torch.Tensor], cfg: dict, model: nn.Module, blocks_path: str,
                       allowed: list[int], where: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Check a LoRA state dict (full-model names) against ``model``: only projections of the
    ``allowed`` blocks, right shapes and dtypes, finite. Returns ``{module path: (A, B)}``."""
    prefixes = tuple(f"{blocks_path}.{i}." for i in allowed)
    out = {}
    for path, pair in sorted(lora_pairs(state, cfg, where).items()):
        if not path.startswith(prefixes):
            raise ScaleOTError(f"{where}: LoRA weights for {path}, outside the adapter blocks {allowed}")
        try:
            target = model.get_submodule(path)
        except AttributeError:
            raise ScaleOTError(f"{where}: LoRA weights for {path}, which this model does not have") from None
        weight = getattr(target, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or target.__class__.__name__ not in (
                "Linear", "Conv1D"):
            raise ScaleOTError(f"{where}: {path} is not a linear projection")
        out_f, in_f = weight.shape if target.__class__.__name__ == "Linear" else weight.shape[::-1]
        _check_tensor(f"{path}.lora_A", pair["lora_A"], (cfg["r"], in_f), where)
        _check_tensor(f"{path}.lora_B", pair["lora_B"], (out_f, cfg["r"]), where)
        out[path] = (pair["lora_A"], pair["lora_B"])
    return out


def check_finite_model(model: nn.Module, where: str) -> None:
    """Refuse to write a model with a NaN or infinite weight."""
    for name, p in model.state_dict().items():
        if p.is_floating_point() and not torch.isfinite(p).all():
            raise ScaleOTError(f"{where}: weight {name} became NaN or infinite; nothing was written")


def check_finite_tensors(tensors: dict[str, torch.Tensor], where: str) -> None:
    for name, t in tensors.items():
        if torch.is_tensor(t) and t.is_floating_point() and not torch.isfinite(t).all():
            raise ScaleOTError(f"{where}: {name} is NaN or infinite (diverged; try a lower --lr); "
                               "nothing was written")

