"""Shared fixtures for the fine-tune / plug / run tests: a tiny llama folder and a tiny task."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from scaleot.models import resolve_model_path


def tiny_model_dir(root: Path, layers: int = 6, seed: int = 0) -> Path:
    """A random 6-block llama (hidden 32) with SmolLM2's tokenizer, saved with save_pretrained."""
    path = root / f"tiny-llama-{seed}"
    if (path / "config.json").is_file():
        return path
    tok = AutoTokenizer.from_pretrained(resolve_model_path("smollm2-135m"))
    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=len(tok), tie_word_embeddings=True,
                      max_position_embeddings=256)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def tiny_task(root: Path, n: int = 160, seed: int = 0) -> Path:
    """A learnable 2-choice JSONL task (parity of a number)."""
    rng = random.Random(seed)
    path = root / "parity.jsonl"
    with open(path, "w") as f:
        for _ in range(n):
            x = rng.randrange(100)
            f.write(json.dumps({"context": f"Is {x} even?\nA:", "choices": [" yes", " no"],
                                "label": 0 if x % 2 == 0 else 1}) + "\n")
    return path
