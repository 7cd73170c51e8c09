"""Fixtures for the emulator tests: a tiny llama with distinct weights and a fake importance folder."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import LlamaForCausalLM

from scaleot.exchange.importance import save_harmonizers
from scaleot.exchange.layers import Harmonizer, HarmonizerConfig
from scaleot.exchange.manifest import write_manifest
from scaleot.models import fingerprint_model
from tests.conftest import tiny_llama_config

N_LAYERS = 8  # adapter 2,2 -> middle blocks 2..5


def make_model(n_layers: int = N_LAYERS, seed: int = 0) -> LlamaForCausalLM:
    """Random tiny llama whose norm weights differ from 1 (so no two blocks share a tensor)."""
    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_llama_config(num_hidden_layers=n_layers)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def fake_importance(folder: Path, model, ranking: list[int], n_bottom: int = 2, n_top: int = 2,
                    rank: int = 4, fingerprint: str | None = None) -> Path:
    """An importance folder per the contract, with random (non-identity) harmonizers."""
    folder.mkdir(parents=True, exist_ok=True)
    n = model.config.num_hidden_layers
    middle = list(range(n_bottom, n - n_top))
    hcfg = HarmonizerConfig(rank=rank)
    harmonizers = {}
    for i in middle:
        h = Harmonizer(model.config.hidden_size, hcfg)
        torch.nn.init.normal_(h.up.weight, std=0.02)
        harmonizers[i] = h
    save_harmonizers(folder / "harmonizers.safetensors", harmonizers)
    info = {
        "format_version": 1, "model": "tiny", "model_fingerprint": fingerprint or fingerprint_model(model),
        "model_type": "llama", "num_blocks": n, "adapter": {"n_bottom": n_bottom, "n_top": n_top},
        "middle": middle, "scores": {str(i): {"logit": 0.0, "keep_prob": 0.5} for i in middle},
        "ranking": ranking, "variant": "replace", "harmonizer": hcfg.to_dict(), "options": {},
        "corpus": "kjv", "steps": 1, "seed": 0, "final_losses": {}, "timing": {"total_s": 1.5},
    }
    (folder / "importance.json").write_text(json.dumps(info))
    write_manifest(folder, "importance")
    return folder
