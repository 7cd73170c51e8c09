"""Model loading by path, device/dtype choice, fingerprints, manifests."""

from __future__ import annotations

import pytest
import torch

from scaleot.errors import ScaleOTError
from scaleot.exchange.manifest import atomic_output_dir, verify_manifest, write_manifest
from scaleot.models import (
    fingerprint_model,
    load_model,
    resolve_device,
    resolve_dtype,
    resolve_model_path,
)


def test_fingerprint_tracks_every_weight(tiny_llama):
    import copy

    a = fingerprint_model(tiny_llama)
    assert a.startswith("sha256:") and a == fingerprint_model(copy.deepcopy(tiny_llama))
    other = copy.deepcopy(tiny_llama)
    with torch.no_grad():
        other.model.layers[3].mlp.down_proj.weight[0, 0] += 1e-3
    assert fingerprint_model(other) != a


def test_load_local_folder_roundtrip(tiny_llama, hf_tokenizer, tmp_path):
    tiny_llama.save_pretrained(tmp_path / "m")
    hf_tokenizer.save_pretrained(tmp_path / "m")
    model, tok = load_model(str(tmp_path / "m"), device="cpu")
    assert fingerprint_model(model) == fingerprint_model(tiny_llama)
    assert tok.pad_token is not None and model.dtype == torch.float32
    bf16, _ = load_model(str(tmp_path / "m"), device="cpu", dtype="bfloat16")
    assert bf16.dtype == torch.bfloat16


def test_bad_model_names_and_devices(tmp_path):
    with pytest.raises(ScaleOTError, match="unknown model 'gpt-17'.*smollm2-135m"):
        resolve_model_path("gpt-17")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScaleOTError, match="not a Hugging Face model folder"):
        resolve_model_path(str(tmp_path / "empty"))
    assert resolve_device("cpu").type == "cpu"
    assert resolve_dtype(None, torch.device("cpu")) == torch.float32
    assert resolve_dtype(None, torch.device("cuda")) == torch.bfloat16
    with pytest.raises(ScaleOTError, match="unknown dtype 'fp8'"):
        resolve_dtype("fp8", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ScaleOTError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_manifest_detects_tampering_and_atomic_dir_keeps_old(tmp_path):
    target = tmp_path / "art"
    with atomic_output_dir(target) as tmp:
        (tmp / "a.bin").write_bytes(b"hello")
        write_manifest(tmp, "thing", {"x": 1})
    assert verify_manifest(target, "thing")["info"] == {"x": 1}
    with pytest.raises(ScaleOTError, match="expected 'other'"):
        verify_manifest(target, "other")
    with pytest.raises(RuntimeError), atomic_output_dir(target) as tmp:  # failure keeps the old folder
        (tmp / "a.bin").write_bytes(b"partial")
        raise RuntimeError("crash")
    assert (target / "a.bin").read_bytes() == b"hello"
    (target / "a.bin").write_bytes(b"hellO")
    with pytest.raises(ScaleOTError, match="modified"):
        verify_manifest(target)
    (target / "a.bin").write_bytes(b"hel")
    with pytest.raises(ScaleOTError, match="truncated"):
        verify_manifest(target)


def test_bf16_falls_back_to_fp32_on_cpus_without_native_bf16(monkeypatch):
    import warnings

    import scaleot.models.device as dev

    cpu = torch.device("cpu")
    monkeypatch.delenv("SCALEOT_CPU_BF16", raising=False)
    monkeypatch.setattr(dev, "_WARNED", False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert dev.use_bf16(True, cpu) is False
        assert dev.use_bf16(True, cpu) is False  # warned once per process
    assert len([w for w in caught if "no native bf16" in str(w.message)]) == 1
    assert dev.use_bf16(False, cpu) is False
    with dev.bf16_autocast(True, cpu):
        assert torch.get_autocast_dtype("cpu") != torch.bfloat16 or not torch.is_autocast_enabled("cpu")
    monkeypatch.setenv("SCALEOT_CPU_BF16", "1")  # forced
    assert dev.use_bf16(True, cpu) is True
    with dev.bf16_autocast(True, cpu):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    monkeypatch.delenv("SCALEOT_CPU_BF16")
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert dev.use_bf16(True, cpu) is True
    assert dev.bf16_is_fast(torch.device("cuda")) is True
