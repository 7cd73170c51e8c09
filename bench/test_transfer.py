"""bench/transfer.py's own bookkeeping: the untuned numbers of an emulator are reused only from a
record of the same deterministic emulator, and ``--plan matrix`` follows configs/default.yaml.

bench's checks of itself live beside it (``pytest bench``; the library's tests never import
bench). Its statistics are the library's (:mod:`scaleot.stats`, tested in tests/test_stats.py).
"""

from __future__ import annotations

import copy
import json

import pytest

from bench.transfer import Lab, key_of


def test_untuned_numbers_are_reused_only_for_the_same_deterministic_emulator(tmp_path):
    """Emu ZS and the diagnostic come from a finished record of the same emulator and test split
    (any tuning), never from another emulator, a distilled one, or a record that itself reused."""
    lab = object.__new__(Lab)
    lab.out = tmp_path
    (tmp_path / "records").mkdir()
    base = {"row": "offsite", "task": "t", "n_train": 400, "n_test": 500, "method": "scaleot", "nb": 2, "nt": 2,
            "alpha": 0.25, "beta": 0.5, "tune": "full", "lr": 3e-4, "seed": 0}

    def put(spec, **extra):
        rec = {"spec": spec, "diagnostic": {"all": 0.5}, "emu_zs": {"acc": 0.3}, **extra}
        (tmp_path / "records" / f"{key_of(spec)}.json").write_text(json.dumps(rec))

    put(base)
    put({**base, "method": "uniform-kd"})
    put({**base, "alpha": 0.35, "seed": 1}, untuned_from="x")
    assert lab.untuned({**base, "seed": 3, "steps": 25, "tune": "lora", "lr": 1e-3})["spec"] == base
    assert lab.untuned({**base, "beta": 0.0}) is None
    assert lab.untuned({**base, "task": "other"}) is None
    assert lab.untuned({**base, "method": "uniform-kd", "seed": 1}) is None
    assert lab.untuned({**base, "alpha": 0.35}) is None


def test_matrix_plan_follows_configs_default_yaml(monkeypatch):
    """--plan matrix reads the emulator size, alpha, beta and tuning budget from configs/default.yaml."""
    import bench.transfer as transfer

    cfg = transfer.default_scale()
    m = cfg["matrix"]
    specs = transfer.plan("matrix", ["gen:x"], {"n_train": 10, "n_test": 10})
    offsite = [s for s in specs if s["row"] == "offsite"]
    at_default = [s for s in offsite if s["method"] != "reference" and s["alpha"] == m["alpha"]]
    assert sorted(s["method"] for s in at_default) == sorted(transfer.MATRIX_METHODS)
    assert {(s["nb"], s["nt"], s["beta"], s["steps"], s["lr"]) for s in at_default} == {
        (m["n_bottom"], m["n_top"], m["beta"], cfg["finetune"]["max_steps"], cfg["finetune"]["lr"])}
    swept = sorted(s["alpha"] for s in offsite if s["method"] == "scaleot")
    assert swept == sorted(m["alphas"])
    assert [s["lr"] for s in specs if s["row"] == "ft"] == [cfg["ft"]["lr"]]
    # a changed file changes the plan: nothing is hard-coded beside it
    changed = dict(cfg, matrix=dict(m, alpha=0.4, alphas=[0.4, 0.6], beta=0.1), finetune=dict(cfg["finetune"], max_steps=7))
    monkeypatch.setattr(transfer, "default_scale", lambda: changed)
    specs = transfer.plan("matrix", ["gen:x"], {"n_train": 10, "n_test": 10})
    emus = [s for s in specs if s["row"] == "offsite" and s["method"] != "reference"]
    assert {s["beta"] for s in emus} == {0.1} and {s["steps"] for s in emus} == {7}
    assert sorted(s["alpha"] for s in emus if s["method"] == "scaleot") == [0.4, 0.6]




def _tiny_llama(n_layers=4):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=n_layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


def test_middle_drop_skips_kept_blocks_during_a_step_only():
    """p=1 inside a step: the model equals itself with the kept middle blocks taken out; after the
    step (validation, scoring) it is the emulator as shipped again; remove() leaves no hook."""
    import copy

    import torch

    from bench.transfer import MiddleDrop

    model = _tiny_llama()
    layer_map = [{"position": i, "kind": k, "source": i} for i, k in enumerate(["adapter", "kept", "kept", "adapter"])]
    ids = torch.randint(0, 64, (2, 7))
    before = model(ids, use_cache=False).logits
    pruned = copy.deepcopy(model)
    pruned.model.layers = torch.nn.ModuleList([pruned.model.layers[0], pruned.model.layers[3]])
    pruned.config.num_hidden_layers = 2
    drop = MiddleDrop(model, layer_map, p=1.0, seed=0)
    drop.before_step(0)
    assert drop.skip == {1, 2}
    torch.testing.assert_close(model(ids, use_cache=False).logits, pruned(ids, use_cache=False).logits)
    drop.after_step(0)
    torch.testing.assert_close(model(ids, use_cache=False).logits, before)
    drop.before_step(1)
    drop.remove()
    torch.testing.assert_close(model(ids, use_cache=False).logits, before)
    half = MiddleDrop(model, layer_map, p=0.5, seed=3)
    draws = set()
    for step in range(20):
        half.before_step(step)
        draws.add(frozenset(half.skip))
    assert len(draws) > 1 and all(d <= {1, 2} for d in draws)


def test_anchor_pulls_trainable_weights_back_toward_their_start():
    import torch

    from bench.transfer import Anchor

    model = _tiny_llama(2)
    for n, p in model.named_parameters():
        p.requires_grad_(n.startswith("model.layers.0."))
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    anchor = Anchor(model, strength=0.25)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    anchor.after_step(0)
    for n, p in model.named_parameters():
        expect = start[n] + (0.75 if n.startswith("model.layers.0.") else 1.0)
        torch.testing.assert_close(p.detach(), expect)


def test_precorrect_trains_only_the_adapter_blocks_and_returns_their_weights():
    import torch

    from bench.transfer import precorrect

    model = _tiny_llama()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    blocks = torch.randint(0, 64, (16, 12))
    corrected = precorrect(model, [0, 3], blocks, steps=3, lr=1e-2, bf16=False)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(n.startswith(("model.layers.0.", "model.layers.3.")) for n in changed)
    assert set(corrected) == {f"{pos}.{n}" for pos in (0, 3) for n in model.model.layers[pos].state_dict()}
    torch.testing.assert_close(corrected["3.mlp.up_proj.weight"], model.model.layers[3].mlp.up_proj.weight)
    assert not any(p.requires_grad for p in model.parameters())


def _reference_lab(tmp_path, monkeypatch):
    """A Lab on a tiny 4-block llama and a two-fact task file, set up for a 1+1 reference run;
    ``score`` records each model it is given. Returns (lab, spec, scored, weights before)."""
    import json as _json
    from types import SimpleNamespace

    from tests.conftest import _build_hf_tokenizer

    import bench.transfer as transfer
    from scaleot.data import SplitConfig, load_task

    rows = [{"context": f"Q: the {t} is A:", "choices": [f" {a}", " red"] if i % 3 else [" red", f" {a}"],
             "label": 0 if i % 3 else 1} for i, (t, a) in enumerate([("sky", "blue"), ("grass", "green")] * 30)]
    task = tmp_path / "t.jsonl"
    task.write_text("\n".join(_json.dumps(r) for r in rows) + "\n")
    lab = object.__new__(transfer.Lab)
    lab.args, lab.out = SimpleNamespace(autocast="none"), tmp_path
    lab.full, lab.tok = _tiny_llama(), _build_hf_tokenizer()
    lab.n = 4
    spec = {"row": "offsite", "task": str(task), "n_train": 24, "n_test": 12, "method": "reference", "nb": 1,
            "nt": 1, "tune": "full", "lr": 1e-2, "seed": 0, "steps": 2}
    lab.splits = {(str(task), 24, 12): load_task(str(task), SplitConfig(seed=0, n_test=12, n_val=12, n_train=24))}
    scored = []
    monkeypatch.setattr(transfer, "score", lambda m, tok, s: scored.append(m) or {"acc": 0.5, "correct": [1]})
    before = {k: v.clone() for k, v in lab.full.state_dict().items()}
    return lab, spec, scored, before


def test_lab_plugs_the_tuned_blocks_through_the_products_path(tmp_path, monkeypatch):
    """Lab.run's plug-in (export_adapter -> read_adapter -> plug_into) is the full model with the
    tuned adapter blocks copied in and every other block untouched."""
    import torch

    lab, spec, scored, before = _reference_lab(tmp_path, monkeypatch)
    lab.run(spec)
    (plugged,) = scored  # the reference: the plug-in is the only score
    tuned = {f"model.layers.{i}.": 0 for i in (0, 3)}
    changed = [k for k, v in plugged.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and all(k.startswith(tuple(tuned)) for k in changed)
    assert all(torch.equal(v, before[k]) for k, v in lab.full.state_dict().items())  # the full model untouched


def test_halves_score_the_plug_in_with_one_half_of_the_adapter_tuned(tmp_path, monkeypatch):
    """``"halves"``: besides the plug-in, the full model with only the bottom adapter block
    tuned (the top one back at the full model's weights) and with only the top one.
    ``"tune_blocks"``: only that half trains at all."""
    import torch

    lab, spec, scored, before = _reference_lab(tmp_path, monkeypatch)
    spec = {**spec, "halves": True}
    rec = lab.run(spec)
    assert {"plug_in_bottom", "plug_in_top"} <= set(rec)
    plugged, bottom, top = scored

    def changed(m):
        return {k.split(".")[2] for k, v in m.state_dict().items() if not torch.equal(v, before[k])}

    assert changed(plugged) == {"0", "3"} and changed(bottom) == {"0"} and changed(top) == {"3"}
    for half, block in ((bottom, "model.layers.0."), (top, "model.layers.3.")):
        assert all(torch.equal(v, plugged.state_dict()[k]) for k, v in half.state_dict().items() if k.startswith(block))
    scored.clear()
    lab.run({**spec, "halves": False, "tune_blocks": "top"})  # only the top half trains
    (plugged,) = scored
    assert changed(plugged) == {"3"}


def test_fake_quantize_rounds_only_the_kept_middle_to_the_asked_levels():
    """Kept blocks' 2-D weights take at most 2**bits values per group of 64 inputs and stay close
    (RTN error <= half a step); adapter blocks and 1-D weights (norms) are untouched."""
    import copy

    import torch

    from bench.transfer import fake_quantize

    model = _tiny_llama()
    layer_map = [{"position": i, "kind": k, "source": i} for i, k in enumerate(["adapter", "kept", "kept", "adapter"])]
    before = copy.deepcopy(model)
    fake_quantize(model, layer_map, bits=3)
    blocks, ref = model.model.layers, before.model.layers
    for pos in (0, 3):
        for a, b in zip(blocks[pos].parameters(), ref[pos].parameters(), strict=True):
            assert torch.equal(a, b)
    down = blocks[1].mlp.down_proj.weight  # [32, 64]: one group per row
    assert all(len(torch.unique(row)) <= 8 for row in down)
    w0 = ref[1].mlp.down_proj.weight
    step = w0.abs().amax(-1, keepdim=True) / 3
    assert torch.all((down - w0).abs() <= step / 2 + 1e-6)
    assert not torch.equal(down, w0)
    assert torch.equal(blocks[1].input_layernorm.weight, ref[1].input_layernorm.weight)
    q = blocks[2].self_attn.q_proj.weight  # [32, 32]: in-dim 32 is not a multiple of 64, left as is
    assert torch.equal(q, ref[2].self_attn.q_proj.weight)


def test_mlp_rank_cut_replaces_the_kept_mlp_projections_with_their_svd_truncation():
    """The library's SRC on the MLP roles: kept blocks' gate/up/down become rank-r factors equal
    to the truncated SVD; attention and the adapter blocks are untouched."""
    import copy

    import torch

    from bench.transfer import mlp_rank_cut
    from scaleot.exchange.layers import LowRankLinear

    model = _tiny_llama()
    before = copy.deepcopy(model)
    layer_map = [{"position": i, "kind": k, "source": i} for i, k in enumerate(["adapter", "kept", "kept", "adapter"])]
    mlp_rank_cut(model, layer_map, beta=0.5)
    for pos in (1, 2):
        mlp = model.model.layers[pos].mlp
        for role in ("gate_proj", "up_proj", "down_proj"):
            lr = getattr(mlp, role)
            assert isinstance(lr, LowRankLinear)
            w0 = getattr(before.model.layers[pos].mlp, role).weight
            u, s, vh = torch.linalg.svd(w0, full_matrices=False)
            r = 16  # ceil(0.5 * min(32, 64))
            assert lr.rank == r
            torch.testing.assert_close(lr.dense(), (u[:, :r] * s[:r]) @ vh[:r], atol=1e-5, rtol=1e-4)
        assert isinstance(model.model.layers[pos].self_attn.q_proj, torch.nn.Linear)
    assert isinstance(model.model.layers[0].mlp.gate_proj, torch.nn.Linear)


def test_important_adapter_tunes_the_top_ranked_kept_blocks_and_freezes_the_ends():
    """drop at alpha 0.5 on 10 blocks (2+2, middle 2..7): the 3 lowest-ranked are removed; the
    adapter becomes the 4 highest-ranked kept middle blocks, the ends become kept, nothing else
    (positions, sources, removed blocks) changes."""
    from bench.transfer import important_adapter
    from scaleot.model_owner.emulator.layer_map import plan_ranked

    ranking = [5, 3, 7, 2, 6, 4]  # most important first
    layer_map = plan_ranked(10, 2, 2, ranking, alpha=0.5, stand_in="identity")
    with pytest.raises(ValueError, match="only 3 kept middle blocks"):
        important_adapter(layer_map, ranking)  # 3 removed: 3 kept for an adapter of 4
    layer_map = plan_ranked(10, 2, 2, ranking, alpha=1 / 3, stand_in="identity")  # 2 removed: 6, 4
    moved = important_adapter(layer_map, ranking)
    assert sorted(e["source"] for e in moved if e["kind"] == "adapter") == [2, 3, 5, 7]
    assert [e["source"] for e in moved if e["kind"] == "kept"] == [0, 1, 8, 9]
    for a, b in zip(layer_map, moved, strict=True):
        assert (a["position"], a["source"]) == (b["position"], b["source"])
        assert (a["kind"] == "identity") == (b["kind"] == "identity")


def test_rebase_map_recovers_a_linear_relation_between_the_two_models_inputs():
    """Ridge regression in closed form: when the emulator's inputs are ``A`` times the full
    model's, the map is ``A``; numpy's least squares on the same data agrees."""
    import numpy as np
    import torch

    from bench.transfer import rebase_map

    g = torch.Generator().manual_seed(0)
    xf = torch.randn(500, 6, generator=g, dtype=torch.float64)
    a = torch.randn(6, 6, generator=g, dtype=torch.float64)
    xe = xf @ a.T + 0.01 * torch.randn(500, 6, generator=g, dtype=torch.float64)
    m = rebase_map(xe.T @ xf, xf.T @ xf, ridge=1e-9)
    ref = np.linalg.lstsq(xf.numpy(), xe.numpy(), rcond=None)[0].T
    assert torch.allclose(m, torch.from_numpy(ref), atol=1e-6) and torch.allclose(m, a, atol=0.01)


def test_rebased_plug_is_the_plain_plug_when_the_emulator_sees_the_full_models_inputs():
    """The emulator is the full model itself: every input covariance pairs a model with itself,
    so the map is the identity (up to the ridge) and the re-based plug-in equals the plain one;
    only the adapter blocks change."""
    import torch

    from bench.transfer import input_covariances, rebased_plug
    from scaleot.models import get_blocks

    full = _tiny_llama()
    emu = copy.deepcopy(full)
    pairs = [(0, 0), (3, 3)]
    text = torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(0))
    cov = input_covariances(full, emu, pairs, text, batch=2)
    assert {k.split(".")[0] for k in cov} == {"0", "3"} and any(k.endswith("mlp.down_proj") for k in cov)
    start = {p: copy.deepcopy(get_blocks(emu)[p].state_dict()) for p, _ in pairs}
    tuned = {p: {n: w + 0.1 * torch.randn_like(w) for n, w in start[p].items()} for p, _ in pairs}
    plugged = rebased_plug(full, tuned, start, pairs, cov, ridge=1e-9)
    for p, src in pairs:
        for n, w in get_blocks(plugged)[src].state_dict().items():
            assert torch.allclose(w, tuned[p][n], atol=1e-4), n
    assert all(torch.equal(a, b) for a, b in zip(get_blocks(plugged)[1].parameters(), get_blocks(full)[1].parameters(), strict=True))
