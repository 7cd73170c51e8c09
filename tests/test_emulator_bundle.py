"""Emulator bundle: round trip, refusal of bad bundles, the privacy guarantee, crash, uniform-kd, CLI."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from scaleot.errors import ConfigError, ScaleOTError
from scaleot.exchange.manifest import write_manifest
from scaleot.model_owner.emulator import EmulatorConfig, build_emulator, find_leaks
from scaleot.models import get_blocks
from scaleot.models.emulator import load_emulator
from tests.emulator_helpers import fake_importance, make_model

RANKING = [4, 2, 5, 3]


@pytest.fixture(scope="module")
def model():
    return make_model()


@pytest.fixture
def imp(tmp_path, model):
    return fake_importance(tmp_path / "imp", model, RANKING)


def fake_crash_text(corpus, tokenizer, block_size, **kw):
    g = torch.Generator().manual_seed(0)
    blocks = torch.randint(3, 120, (16, block_size), generator=g)
    return blocks, blocks[:2]


def configs(imp):
    return {
        "uniform": EmulatorConfig(method="uniform", keep=2, beta=0.5, block_size=16),
        "scaleot": EmulatorConfig(method="scaleot", importance=str(imp), alpha=0.5, beta=0.25),
        "drop": EmulatorConfig(method="drop", importance=str(imp), alpha=0.5, beta=0.5),
        "crash": EmulatorConfig(method="crash", keep=2, beta=0.5, block_size=16, calib_blocks=8),
    }


@pytest.fixture
def patched_text(monkeypatch):
    import scaleot.data as data
    import scaleot.model_owner.emulator.crash as crash
    import scaleot.model_owner.emulator.distill as distill

    monkeypatch.setattr(data, "corpus_splits", fake_crash_text)  # the transfer diagnostic's text
    monkeypatch.setattr(crash, "corpus_splits", fake_crash_text)
    monkeypatch.setattr(distill, "corpus_splits", fake_crash_text)


@pytest.mark.parametrize("method", ["uniform", "scaleot", "drop", "crash"])
def test_round_trip_same_logits(method, model, imp, tmp_path, hf_tokenizer, patched_text):
    bundle = build_emulator(model, configs(imp)[method], tokenizer=hf_tokenizer)
    out = bundle.save(tmp_path / "emu")
    assert bundle.fingerprint and bundle.fingerprint.startswith("sha256:")
    files = sorted(p.name for p in out.iterdir())
    assert {"emulator.json", "model.safetensors", "config.json", "manifest.json", "tokenizer.json"} <= set(files)
    assert not any(f.endswith((".bin", ".pt", ".pkl", ".pth")) for f in files)
    loaded = load_emulator(out, device="cpu")
    assert loaded.fingerprint == bundle.fingerprint
    assert loaded.info["layer_map"] == bundle.info["layer_map"]
    assert loaded.adapter_positions == bundle.adapter_positions
    ids = torch.randint(3, 40, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids).logits, bundle.model(ids).logits, atol=0, rtol=0)
    assert loaded.model.lm_head.weight is loaded.model.model.embed_tokens.weight  # tied embeddings survive
    assert loaded.tokenizer is not None and loaded.tokenizer.pad_token is not None
    if method == "crash":
        lmap = loaded.info["layer_map"]
        shared = [e for e in lmap if e["kind"] == "shared"]
        assert len(shared) == 2 and loaded.info["crash"]["representatives"]
        blocks = get_blocks(loaded.model)
        for e in shared:
            a, b = blocks[e["position"]], blocks[e["shares"]]
            assert a is not b
            assert all(p is q for p, q in zip(a.parameters(), b.parameters(), strict=True))
            assert a.self_attn.layer_idx == e["position"]
        with safe_open(str(out / "model.safetensors"), "pt") as f:  # shared tensors stored once
            assert not any(k.startswith(f"model.layers.{shared[0]['position']}.") for k in f.keys())  # noqa: SIM118


def _build_saved(model, imp, tmp_path, tok):
    return build_emulator(model, configs(imp)["scaleot"], tokenizer=tok).save(tmp_path / "emu")


def test_tampered_truncated_foreign_refused(model, imp, tmp_path, hf_tokenizer):
    out = _build_saved(model, imp, tmp_path, hf_tokenizer)
    weights = out / "model.safetensors"
    good = weights.read_bytes()

    weights.write_bytes(good[:-100] + bytes([good[-100] ^ 1]) + good[-99:])
    with pytest.raises(ScaleOTError, match="model.safetensors was modified") as e:
        load_emulator(out)
    assert "\n" not in str(e.value)
    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(ScaleOTError, match="truncated"):
        load_emulator(out)
    weights.write_bytes(good)
    load_emulator(out)  # restored: fine

    (out / "extra.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(ScaleOTError, match="not listed in the manifest"):
        load_emulator(out)
    (out / "extra.bin").unlink()
    with pytest.raises(ScaleOTError, match="other base weights"):
        load_emulator(out, expected_base_fingerprint="sha256:" + "0" * 64)
    load_emulator(out, expected_base_fingerprint=json.loads((out / "emulator.json").read_text())["base_fingerprint"])
    write_manifest(out, "adapter")  # a foreign artifact kind
    with pytest.raises(ScaleOTError, match="expected 'emulator'"):
        load_emulator(out)
    with pytest.raises(ScaleOTError, match="not a folder"):
        load_emulator(tmp_path / "nope")


def test_consistent_edit_with_rehash_still_checked(model, imp, tmp_path, hf_tokenizer):
    out = _build_saved(model, imp, tmp_path, hf_tokenizer)
    info = json.loads((out / "emulator.json").read_text())
    info["layer_map"][3]["kind"] = "kept"  # lie about a harmonizer position, then re-hash
    (out / "emulator.json").write_text(json.dumps(info))
    write_manifest(out, "emulator")
    with pytest.raises(ScaleOTError, match="does not match the layer map"):
        load_emulator(out)


def test_importance_from_other_model_refused(model, tmp_path):
    other = fake_importance(tmp_path / "other", make_model(seed=1), RANKING)
    with pytest.raises(ScaleOTError, match="computed on other weights"):
        build_emulator(model, EmulatorConfig(method="scaleot", importance=str(other)))


def _protected(model, lmap):
    """Independent of the library: weights of blocks not kept; dense attention of SRC'd blocks."""
    blocks = get_blocks(model)
    kept = {e["source"]: e for e in lmap if e["kind"] == "kept"}
    out = {}
    for i in range(2, 6):
        if i not in kept:
            out.update({f"{i}.{k}": v for k, v in blocks[i].state_dict().items()})
        else:
            assert kept[i]["src_rank"], "every kept middle block is SRC'd in these configs"
            out.update({f"{i}.{k}": v for k, v in blocks[i].self_attn.state_dict().items()})
    return out


@pytest.mark.parametrize("method", ["uniform", "scaleot", "drop", "crash"])
def test_privacy_no_shipped_tensor_approximates_protected(method, model, imp, tmp_path, hf_tokenizer,
                                                         patched_text):
    bundle = build_emulator(model, configs(imp)[method], tokenizer=hf_tokenizer)
    out = bundle.save(tmp_path / "emu")
    protected = _protected(model, bundle.info["layer_map"])
    assert protected
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        shipped = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    # add the products of SRC factor pairs: the dense matrices a receiver could form
    for k in list(shipped):
        if k.endswith(".up.weight") and k.replace(".up.", ".down.") in shipped and "self_attn" in k:
            shipped[k + "@down"] = shipped[k] @ shipped[k.replace(".up.", ".down.")]
    for sname, s in shipped.items():
        for pname, w in protected.items():
            for cand in (w, w.T) if w.dim() == 2 else (w,):
                if cand.shape == s.shape:
                    rel = (torch.linalg.norm(s - cand) / torch.linalg.norm(cand)).item()
                    assert rel >= 1e-3, f"{sname} approximates protected {pname} (rel {rel:.1e})"


def test_find_leaks_catches_a_leak(model):
    bundle = build_emulator(model, EmulatorConfig(method="uniform", keep=2))
    dropped = get_blocks(model)[2]  # uniform keeps 3 and 5: block 2 is dropped
    with torch.no_grad():
        get_blocks(bundle.model)[2].mlp.up_proj.weight.copy_(dropped.mlp.up_proj.weight * (1 + 1e-5))
    leaks = find_leaks(bundle.model, {"b2.up": dropped.mlp.up_proj.weight})
    assert leaks and "b2.up" in leaks[0]


def test_crash_keeps_one_block_per_cluster(model, hf_tokenizer, patched_text):
    bundle = build_emulator(model, configs(None)["crash"], tokenizer=hf_tokenizer)
    crash = bundle.info["crash"]
    assert [i for c in crash["clusters"] for i in c] == [2, 3, 4, 5] and len(crash["clusters"]) == 2
    assert all(r in c for r, c in zip(crash["representatives"], crash["clusters"], strict=True))
    kept = [e["source"] for e in bundle.info["layer_map"] if e["kind"] == "kept"]
    assert kept == crash["representatives"]
    assert len(bundle.info["layer_map"]) == 8  # depth preserved


def test_uniform_kd_trains_and_resumes(model, tmp_path, hf_tokenizer, patched_text):
    def cfg(steps, run):
        return EmulatorConfig(method="uniform-kd", keep=2, kd_steps=steps, kd_batch=8, block_size=16, kd_lr=2e-3,
                              kd_checkpoint_every=2, kd_run_dir=str(tmp_path / run))

    full = build_emulator(model, cfg(4, "a"), tokenizer=hf_tokenizer)
    kd = full.info["distill"]
    assert kd["final"]["nmse"] < kd["first"]["nmse"]
    assert (tmp_path / "a" / "log.jsonl").read_text().count("\n") == 4
    assert list((tmp_path / "a" / "tb").iterdir())
    build_emulator(model, cfg(2, "b"), tokenizer=hf_tokenizer)
    resumed = build_emulator(model, cfg(4, "b"), tokenizer=hf_tokenizer, resume=True)
    for (n, p), q in zip(full.model.named_parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5, msg=n)
    # --resume on a run stopped before its first checkpoint (an empty run folder) starts afresh.
    (tmp_path / "c").mkdir()
    fresh = build_emulator(model, cfg(4, "c"), tokenizer=hf_tokenizer, resume=True)
    for (n, p), q in zip(full.model.named_parameters(), fresh.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5, msg=n)
    base = build_emulator(model, EmulatorConfig(method="uniform", keep=2))
    moved = [n for (n, p), q in zip(full.model.named_parameters(), base.model.parameters(), strict=True)
             if not torch.equal(p, q)]
    assert moved and all(n.startswith(("model.layers.2.", "model.layers.3.")) for n in moved)


def test_scaleot_calibration_trains_only_the_chosen_harmonizers(model, imp, tmp_path, hf_tokenizer, patched_text):
    """Stage-2 calibration: the shipped harmonizers move towards the full model; nothing else moves."""
    def cfg(steps):
        return EmulatorConfig(method="scaleot", importance=str(imp), alpha=0.5, beta=0.25, calibrate_steps=steps,
                              calibrate_lr=5e-3, kd_batch=8, block_size=16, kd_checkpoint_every=100,
                              kd_run_dir=str(tmp_path / f"cal{steps}"))

    base = build_emulator(model, cfg(0), tokenizer=hf_tokenizer)
    tuned = build_emulator(model, cfg(6), tokenizer=hf_tokenizer)
    cal = tuned.info["calibration"]
    assert "calibration" not in base.info and cal["trains"] == ["harmonizer"] and cal["steps"] == 6
    assert cal["final"]["nmse"] < cal["first"]["nmse"]
    replaced = {e["position"] for e in tuned.info["layer_map"] if e["kind"] == "harmonizer"}
    moved = {n for (n, p), q in zip(tuned.model.named_parameters(), base.model.parameters(), strict=True)
             if not torch.equal(p, q)}
    assert moved and {int(n.split(".")[2]) for n in moved} == replaced  # only harmonizer positions
    assert "calibrate_s" in tuned.info["timing"]
    from scaleot.model_owner.emulator.distill import boundary_input

    ids = torch.randint(0, 100, (2, 8))
    with torch.no_grad(), boundary_input(model, 6) as h, boundary_input(model, 8) as last:
        ref = model(input_ids=ids, output_hidden_states=True).hidden_states
    torch.testing.assert_close(h[0], ref[6])  # the input of block 6 = hidden_states[6]
    assert last[0].shape == ref[-1].shape  # past the last block: the final norm's input
    with pytest.raises(ConfigError, match="calibrate_steps applies to method 'scaleot' only"):
        EmulatorConfig(method="uniform", calibrate_steps=3)


def test_cli_emulate(model, tmp_path, hf_tokenizer, capsys):
    from scaleot.cli import main

    src = tmp_path / "tiny"
    model.save_pretrained(src)
    hf_tokenizer.save_pretrained(src)
    out = tmp_path / "emu"
    rc = main(["emulate", "--model", str(src), "--method", "uniform", "--keep", "2", "--beta", "0.5",
               "--out", str(out), "--device", "cpu"])
    assert rc == 0 and (out / "manifest.json").is_file()
    info = json.loads((out / "emulator.json").read_text())
    assert info["options"]["keep"] == 2 and info["options"]["beta"] == 0.5 and info["base_model"] == src.name  # no local path ships
    capsys.readouterr()
    rc = main(["emulate", "--model", str(src), "--method", "uniform", "--keep", "9", "--alpha", "1.5",
               "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("scaleot: error: invalid emulator config")
    assert not (tmp_path / "bad").exists()


def test_emulator_json_records_the_transfer_diagnostic(model, imp, tmp_path, hf_tokenizer, monkeypatch):
    """With a tokenizer, emulate records the gradient cosine per adapter block; 0 blocks skips it."""
    import scaleot.data as data

    monkeypatch.setattr(data, "corpus_splits", fake_crash_text)
    bundle = build_emulator(model, configs(imp)["scaleot"], tokenizer=hf_tokenizer)
    d = bundle.info["transfer_diagnostic"]
    assert d["loss"] == "next-token" and d["blocks"] >= 1
    cos = d["gradient_cosine"]
    assert set(cos["per_block"]) == {str(s) for s in bundle.adapter_sources}
    assert all(-1 <= v <= 1 for v in cos["per_block"].values()) and -1 <= cos["all"] <= 1
    cfg = configs(imp)["scaleot"]
    cfg.diagnostic_blocks = 0
    assert "transfer_diagnostic" not in build_emulator(model, cfg, tokenizer=hf_tokenizer).info
