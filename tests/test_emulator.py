"""Emulator: layer maps, SRC against a reference SVD, config validation (docs/method.md section 3, 5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scaleot.errors import ConfigError, ScaleOTError
from scaleot.exchange.layers import LowRankLinear
from scaleot.model_owner.emulator import EmulatorConfig, build_emulator, src_rank
from scaleot.model_owner.emulator import layer_map as lm
from scaleot.model_owner.emulator.crash import cluster_adjacent, linear_cka
from scaleot.model_owner.emulator.src_compress import compress_block
from scaleot.models import arch_spec, get_blocks
from tests.emulator_helpers import fake_importance, make_model


def kinds(layer_map):
    return [(e["kind"], e["source"], e["shares"]) for e in layer_map]


# ---------- layer maps (pure) ----------

def test_uniform_indices_evenly_spaced():
    assert lm.uniform_indices(list(range(2, 28)), 13) == list(range(3, 28, 2))
    assert lm.uniform_indices([2, 3, 4, 5], 2) == [3, 5]
    assert lm.uniform_indices([2, 3, 4, 5], 4) == [2, 3, 4, 5]


def test_plan_ranked_replaces_lowest_ranked():
    ranking = [4, 2, 5, 3]  # most important first -> 5 and 3 are the lowest
    m = lm.plan_ranked(8, 2, 2, ranking, 0.5)
    assert kinds(m) == [("adapter", 0, None), ("adapter", 1, None), ("kept", 2, None), ("harmonizer", 3, None),
                        ("kept", 4, None), ("harmonizer", 5, None), ("adapter", 6, None), ("adapter", 7, None)]
    assert [e["position"] for e in m] == list(range(8))
    drop = lm.plan_ranked(8, 2, 2, ranking, 0.25, stand_in="identity")
    assert [k for k, _, _ in kinds(drop)][2:6] == ["kept", "identity", "kept", "kept"]
    with pytest.raises(ScaleOTError, match="ranking"):
        lm.plan_ranked(8, 2, 2, [2, 3, 4], 0.5)


def test_plan_shared_nearest_kept():
    m = lm.plan_shared(9, 1, 1, [[1, 2, 3], [4, 5, 6, 7]], [1, 6])
    # positions: 0 adapter, 1..7 middle, 8 adapter; block 4 is 3 from 1 and 2 from 6 -> shares 6
    assert kinds(m)[1:8] == [("kept", 1, None), ("shared", 2, 1), ("shared", 3, 1), ("shared", 4, 6),
                             ("shared", 5, 6), ("kept", 6, None), ("shared", 7, 6)]


def test_cka_and_adjacent_clustering():
    x = torch.randn(200, 8)
    q, _ = torch.linalg.qr(torch.randn(8, 8))
    assert linear_cka(x, 3.0 * x @ q) == pytest.approx(1.0, abs=1e-6)  # invariant to rotation and scale
    assert linear_cka(x, torch.randn(200, 8)) < 0.3
    sim = [[1, .9, .1, .1], [.9, 1, .2, .1], [.1, .2, 1, .8], [.1, .1, .8, 1]]
    assert cluster_adjacent(sim, 2) == [[0, 1], [2, 3]]
    assert cluster_adjacent(sim, 4) == [[0], [1], [2], [3]]


# ---------- SRC ----------

@pytest.mark.parametrize("shape,beta", [((12, 20), 0.5), ((20, 12), 0.25), ((16, 16), 0.1), ((16, 16), 0.0)])
def test_src_matches_reference_svd(shape, beta):
    torch.manual_seed(1)
    w = torch.randn(*shape)
    r = src_rank(*shape, beta)
    expect = math.ceil((1 - beta) * min(shape))
    assert r == (min(expect, min(shape) - 1) if beta > 0 else expect)
    mod = LowRankLinear.from_weight(w, None, r)
    assert mod.down.weight.shape == (r, shape[1]) and mod.up.weight.shape == (shape[0], r)
    u, s, vh = np.linalg.svd(w.double().numpy(), full_matrices=False)
    ref = (u[:, :r] * s[:r]) @ vh[:r]
    np.testing.assert_allclose(mod.dense().detach().double().numpy(), ref, atol=1e-5)
    err = np.linalg.norm(w.numpy() - mod.dense().detach().numpy())
    assert err == pytest.approx(np.sqrt((s[r:] ** 2).sum()), rel=1e-4, abs=1e-5)  # Eckart-Young
    x = torch.randn(3, shape[1])
    torch.testing.assert_close(mod(x), x @ torch.tensor(ref, dtype=torch.float32).T, atol=1e-5, rtol=1e-4)


def test_src_rank_never_full_when_beta_positive():
    assert src_rank(576, 576, 0.001) == 575
    assert src_rank(192, 576, 0.5) == 96


def test_src_on_gpt2_conv1d():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=50, n_positions=32)).eval()
    block = get_blocks(model)[0]
    w_qkv = block.attn.c_attn.weight.detach().t().clone()  # [out=48, in=16]
    bias = block.attn.c_attn.bias.detach().clone()
    ranks = compress_block(block, arch_spec(model), 0.5)
    assert ranks == {"qkv": 8, "o": 8}
    x = torch.randn(2, 5, 16)
    u, s, vh = torch.linalg.svd(w_qkv.double(), full_matrices=False)
    ref = ((u[:, :8] * s[:8]) @ vh[:8]).float()
    torch.testing.assert_close(block.attn.c_attn(x), x @ ref.T + bias, atol=1e-5, rtol=1e-4)
    model(torch.randint(0, 50, (1, 6)))  # still runs


# ---------- build: the layer map of each method on a tiny model ----------

def test_layer_map_per_method(tmp_path, hf_tokenizer, monkeypatch):
    model = make_model()
    imp = fake_importance(tmp_path / "imp", model, ranking=[4, 2, 5, 3])
    uni = build_emulator(model, EmulatorConfig(method="uniform", keep=2), base_model="tiny")
    assert kinds(uni.info["layer_map"]) == [("adapter", 0, None), ("adapter", 1, None), ("kept", 3, None),
                                            ("kept", 5, None), ("adapter", 6, None), ("adapter", 7, None)]
    assert uni.model.config.num_hidden_layers == 6 and len(get_blocks(uni.model)) == 6
    assert uni.adapter_positions == [0, 1, 4, 5] and uni.adapter_sources == [0, 1, 6, 7]
    sc = build_emulator(model, EmulatorConfig(method="scaleot", importance=str(imp), alpha=0.5, beta=0.5))
    assert [e["kind"] for e in sc.info["layer_map"]][2:6] == ["kept", "harmonizer", "kept", "harmonizer"]
    assert sc.info["layer_map"][2]["src_rank"] == {"q": 16, "k": 8, "v": 8, "o": 16}
    assert sc.info["importance"]["corpus"] == "kjv"  # stage 1's text, for the audit's attacker check
    dr = build_emulator(model, EmulatorConfig(method="drop", importance=str(imp), alpha=0.25, beta=0.0))
    assert [e["kind"] for e in dr.info["layer_map"]][2:6] == ["kept", "identity", "kept", "kept"]
    assert dr.info["layer_map"][2]["src_rank"] is None
    # the full model is untouched
    assert len(get_blocks(model)) == 8 and model.config.num_hidden_layers == 8
    # the drop emulator computes like the full model with block 3 skipped
    ids = torch.randint(3, 100, (2, 7))
    with torch.no_grad():
        h = model.model.embed_tokens(ids)
        pos = torch.arange(7)[None]
        pe = model.model.rotary_emb(h, pos)
        for i, b in enumerate(get_blocks(model)):
            if i != 3:
                h = b(h, attention_mask=None, position_ids=pos, position_embeddings=pe)
        ref = model.lm_head(model.model.norm(h))
        torch.testing.assert_close(dr.model(ids).logits, ref, atol=1e-4, rtol=1e-4)


def test_params_counted(tmp_path):
    model = make_model()
    uni = build_emulator(model, EmulatorConfig(method="uniform", keep=2, beta=0.0))
    blocks = get_blocks(model)
    per_block = sum(p.numel() for p in blocks[0].parameters())
    full = sum(p.numel() for p in model.parameters())
    assert uni.info["params"] == {"emulator": full - 2 * per_block, "full": full,
                                  "ratio": round((full - 2 * per_block) / full, 4)}


# ---------- options ----------

def test_bad_options_one_line():
    with pytest.raises(ConfigError) as e:
        EmulatorConfig(method="scaleot", alpha=1.0, beta=-0.1)
    msg = str(e.value)
    assert "\n" not in msg and "alpha must be in [0, 1)" in msg and "beta must be in [0, 1)" in msg
    assert "needs an importance folder" in msg
    with pytest.raises(ConfigError, match="method must be one of"):
        EmulatorConfig(method="magic")
    with pytest.raises(ConfigError, match=r"beta must be in \[0, 1\)"):
        EmulatorConfig(method="uniform", beta=1.0)
    with pytest.raises(ConfigError, match=r"keep must be <= the 4 middle blocks \(got 5\)"):
        build_emulator(make_model(), EmulatorConfig(method="uniform", keep=5))
    with pytest.raises(ConfigError, match="leaves no middle blocks"):
        build_emulator(make_model(), EmulatorConfig(method="uniform", n_bottom=4, n_top=4))
