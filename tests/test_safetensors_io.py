"""Reproducible safetensors files (scaleot.safetensors_io): same tensors + metadata -> same bytes."""

from __future__ import annotations

import hashlib
import json

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from scaleot.model_owner.emulator import EmulatorConfig, build_emulator
from scaleot.safetensors_io import canonicalize, save_tensors
from tests.emulator_helpers import fake_importance, make_model

META = {f"key{i}": f"value {i} é" for i in range(6)} | {"format": "pt"}


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _header_keys(path) -> list[str]:
    """The metadata keys in the order the file stores them (safe_open's dict has its own order)."""
    raw = path.read_bytes()
    return list(json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])["__metadata__"])


def _tensors():
    g = torch.Generator().manual_seed(0)
    return {"b.weight": torch.randn(3, 4, generator=g), "a.bias": torch.randn(5, generator=g)}


def test_same_tensors_and_metadata_give_the_same_bytes(tmp_path):
    # without canonicalisation the 7 metadata keys come out in a random order (7! orders)
    paths = [tmp_path / f"t{i}.safetensors" for i in range(4)]
    for p in paths:
        save_tensors(_tensors(), p, metadata=dict(META))
    assert len({_sha(p) for p in paths}) == 1
    with safe_open(str(paths[0]), "pt") as f:  # still a valid file: safetensors reads it back
        assert f.metadata() == META
    assert _header_keys(paths[0]) == sorted(META)
    for k, v in load_file(str(paths[0])).items():
        assert torch.equal(v, _tensors()[k])


def test_canonicalize_touches_only_the_metadata_order(tmp_path):
    p = tmp_path / "raw.safetensors"
    save_file(_tensors(), str(p), metadata=dict(META))
    before = p.read_bytes()
    canonicalize(p)
    after = p.read_bytes()
    assert len(after) == len(before)
    n = int.from_bytes(before[:8], "little")
    assert after[8 + n:] == before[8 + n:]  # tensor data untouched
    with safe_open(str(p), "pt") as f:
        assert f.metadata() == META
    assert _header_keys(p) == sorted(META)
    assert canonicalize(p) is False  # already canonical: nothing rewritten
    q = tmp_path / "nometa.safetensors"
    save_file(_tensors(), str(q))
    assert canonicalize(q) is False


def test_a_rebuilt_emulator_has_the_same_fingerprint(tmp_path):
    model = make_model()
    imp = fake_importance(tmp_path / "imp", model, [4, 2, 5, 3])
    cfg = EmulatorConfig(method="scaleot", importance=str(imp), alpha=0.5, beta=0.25)
    prints = {build_emulator(model, cfg, tokenizer=None).save(tmp_path / f"emu{i}") and _sha(
        tmp_path / f"emu{i}" / "model.safetensors") for i in range(4)}
    assert len(prints) == 1
