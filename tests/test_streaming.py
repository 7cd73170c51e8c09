"""Memory: ``scaleot emulate`` builds the emulator on the full model's own tensors (no second
copy) and gives byte-identical bundles; the leak check's chunked Gram matrix equals the
stacked one."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors.torch import load_file

from scaleot.model_owner.emulator import EmulatorConfig, build_emulator, find_leaks
from scaleot.model_owner.emulator.leaks import _gram
from scaleot.models import fingerprint_model, get_blocks
from tests.emulator_helpers import fake_importance, make_model
from tests.test_emulator_bundle import fake_crash_text


@pytest.fixture
def no_text(monkeypatch):
    import scaleot.data as data
    import scaleot.model_owner.emulator.crash as crash
    import scaleot.model_owner.emulator.distill as distill

    for mod in (data, crash, distill):
        monkeypatch.setattr(mod, "corpus_splits", fake_crash_text)


@pytest.mark.parametrize("method", ["scaleot", "uniform-kd"])
def test_shared_weights_give_the_same_bundle_and_leave_the_model_alone(method, tmp_path, hf_tokenizer, no_text):
    model = make_model()
    imp = fake_importance(tmp_path / "imp", model, [4, 2, 5, 3])
    cfg = {"scaleot": EmulatorConfig(method="scaleot", importance=str(imp), alpha=0.5, beta=0.25,
                                     diagnostic_blocks=0),
           "uniform-kd": EmulatorConfig(method="uniform-kd", keep=2, beta=0.5, block_size=16, kd_steps=2,
                                        kd_batch=1, kd_run_dir=str(tmp_path / "kd"), diagnostic_blocks=0,
                                        autocast="none")}[method]
    before = fingerprint_model(model)
    copied = build_emulator(model, cfg, tokenizer=hf_tokenizer).save(tmp_path / "copied")
    if method == "uniform-kd":
        cfg.kd_run_dir = str(tmp_path / "kd2")
    shared = build_emulator(model, cfg, tokenizer=hf_tokenizer, share_weights=True)
    assert fingerprint_model(model) == before  # building (and KD) left the full model unchanged
    emb = shared.model.get_input_embeddings().weight
    assert emb.data_ptr() == model.get_input_embeddings().weight.data_ptr()  # no second copy
    adapter = get_blocks(shared.model)[0].mlp.up_proj.weight
    assert adapter.data_ptr() == get_blocks(model)[0].mlp.up_proj.weight.data_ptr()
    shared.save(tmp_path / "shared")
    ta, tb = (load_file(str(p / "model.safetensors")) for p in (copied, tmp_path / "shared"))
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)  # the same weights
    # (not the same file bytes: safetensors writes its metadata map in no fixed order)
    assert safetensors_header(copied) == safetensors_header(tmp_path / "shared")


def safetensors_header(folder) -> dict:
    raw = (folder / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n])


def test_chunked_gram_equals_the_stacked_one():
    g = torch.Generator().manual_seed(0)
    a = [torch.randn(37, 11, generator=g) for _ in range(3)]
    b = [torch.randn(11, 37, generator=g).t() for _ in range(2)]  # transposed views, as find_leaks passes
    a_sq, b_sq, cross = _gram(a, b, chunk=40)  # 3 rows at a time
    am = torch.stack([t.double().flatten() for t in a])
    bm = torch.stack([t.double().flatten() for t in b])
    torch.testing.assert_close(cross, am @ bm.T)
    torch.testing.assert_close(a_sq, (am**2).sum(1))
    torch.testing.assert_close(b_sq, (bm**2).sum(1))


def test_find_leaks_still_catches_a_transposed_leak():
    model = make_model()
    bundle = build_emulator(model, EmulatorConfig(method="uniform", keep=2, beta=0.0))
    dropped = get_blocks(model)[2].mlp.down_proj.weight  # [32, 64]
    with torch.no_grad():  # up_proj is [64, 32]: a transposed copy of a dropped weight
        get_blocks(bundle.model)[0].mlp.up_proj.weight.copy_(dropped.t() * (1 + 1e-5))
    leaks = find_leaks(bundle.model, {"b2.down": dropped})
    assert leaks and "b2.down^T" in leaks[0]
