"""Shared fixtures for the fine-tune / plug / run tests: a tiny llama folder and a tiny task."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
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


def tiny_job(model_dir: Path, task: Path) -> dict:
    """The start of a `scaleot run` job on the tiny model and task: model, tasks, device and a
    3-step stage 1 on a 1+1 adapter split (callers add emulators, tuning and evaluation)."""
    return {
        "model": str(model_dir),
        "tasks": [str(task)],
        "device": "cpu",
        "importance": {"n_bottom": 1, "n_top": 1, "steps": 3, "group_size": 2, "n_configs": 2,
                       "batch_size": 2, "score_batch_size": 2, "block_size": 32, "max_train_blocks": 32,
                       "max_heldout_blocks": 8, "checkpoint_every": 0, "autocast": "none"},
    }


def build_tiny_emulator(root: Path, model_dir: Path, keep: int = 2) -> Path:
    """A uniform-LayerDrop emulator of the tiny model: adapter 1+1, ``keep`` middle blocks."""
    from scaleot.model_owner.emulator import EmulatorConfig, build_emulator
    from scaleot.models import load_model

    out = root / f"emu-{model_dir.name}"
    if (out / "manifest.json").is_file():
        return out
    model, tok = load_model(str(model_dir), device="cpu")
    cfg = EmulatorConfig(method="uniform", n_bottom=1, n_top=1, keep=keep)
    build_emulator(model, cfg, tokenizer=tok, base_model=str(model_dir)).save(out)
    return out


@pytest.fixture
def one_thread():
    """Tiny models run fastest (and least disturbed by other jobs) on one thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    """``(root, model_dir, task_path, emulator_dir)`` shared by a test module."""
    root = tmp_path_factory.mktemp("tiny")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    model_dir = tiny_model_dir(root)
    task = tiny_task(root)
    emu = build_tiny_emulator(root, model_dir)
    torch.set_num_threads(n)
    return root, model_dir, task, emu
