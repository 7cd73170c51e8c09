"""The model owner's transfer check on proxy tasks (scaleot.model_owner.audit.transfer_check)."""

from __future__ import annotations

import json

import pytest
import torch

from scaleot.errors import ScaleOTError
from scaleot.model_owner.audit.transfer_check import (
    TransferCheckConfig,
    check_task,
    summarize,
    transfer_check,
)
from scaleot.model_owner.emulator import EmulatorConfig, build_emulator
from scaleot.models import fingerprint_model, get_blocks
from tests.emulator_helpers import make_model


@pytest.fixture
def proxy_file(tmp_path):
    """60 two-choice examples (the colour task of conftest, more of them) as a local proxy task."""
    rows = []
    for i in range(60):
        thing, answer = [("sky", "blue"), ("grass", "green")][i % 2]
        choices = [f" {answer}", " red"] if i % 3 else [" red", f" {answer}"]
        rows.append({"context": f"Q: the {thing} is A:", "choices": choices, "label": choices.index(f" {answer}")})
    path = tmp_path / "proxy.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path)


def _setup(hf_tokenizer):
    model = make_model()
    bundle = build_emulator(model, EmulatorConfig(method="uniform", keep=2, beta=0.0, diagnostic_blocks=0),
                            tokenizer=hf_tokenizer)
    return model, bundle


def test_check_leaves_both_models_unchanged_and_plugs_what_the_emulator_learned(hf_tokenizer, proxy_file):
    model, bundle = _setup(hf_tokenizer)
    before = (fingerprint_model(model), fingerprint_model(bundle.model))
    cfg = TransferCheckConfig(tasks=[proxy_file], n_train=24, n_dev=12, n_heldout=12,
                              tuning={"max_steps": 3, "batch_size": 4, "lr": 1e-2})
    doc = transfer_check(model, bundle.model, bundle.layer_map, hf_tokenizer, cfg, progress=False)
    assert (fingerprint_model(model), fingerprint_model(bundle.model)) == before
    (row,) = doc["tasks"].values()
    assert row["n"] == 12 and set(row) >= {"full_zs", "emu_zs", "emu_ft", "plug_in", "reference", "gain",
                                          "delta", "ceiling_ratio"}
    assert doc["config"]["tuning"]["max_steps"] == 3 and doc["config"]["n_heldout"] == 12


def test_the_plug_in_carries_exactly_the_tuned_adapter_blocks(hf_tokenizer, proxy_file, monkeypatch):
    """The plug-in scored is the full model with the emulator's tuned adapter blocks (through the
    product's write_adapter + plug_into), every other block the full model's own."""
    import scaleot.model_owner.audit.transfer_check as tc

    model, bundle = _setup(hf_tokenizer)
    scored = []
    monkeypatch.setattr(tc, "_score", lambda m, tok, splits, autocast: scored.append(m) or [1] * len(splits.test))
    cfg = TransferCheckConfig(tasks=[proxy_file], n_train=24, n_dev=12, n_heldout=12,
                              tuning={"max_steps": 2, "batch_size": 4, "lr": 1e-2})
    check_task(model, bundle.model, bundle.layer_map, hf_tokenizer, proxy_file, cfg)
    _full, _emu, emu_ft, plugged, _reference = scored
    pos = {e["source"]: e["position"] for e in bundle.layer_map if e["kind"] == "adapter"}
    for i, block in enumerate(get_blocks(plugged)):
        want = get_blocks(emu_ft)[pos[i]] if i in pos else get_blocks(model)[i]
        for (n, a), b in zip(block.state_dict().items(), want.state_dict().values(), strict=True):
            assert torch.equal(a, b), (i, n)
    assert any(not torch.equal(a, b) for a, b in zip(get_blocks(plugged)[0].parameters(),
                                                     get_blocks(model)[0].parameters(), strict=True))


def test_summary_ratio_gain_and_delta():
    rows = [{"task": "a", "n": 4, "full_zs": [0, 0, 1, 1], "emu_zs": [0, 0, 0, 0], "emu_ft": [1, 0, 1, 1],
             "plug_in": [1, 0, 1, 1], "reference": [1, 1, 1, 1]},
            {"task": "b", "n": 2, "full_zs": [1, 1], "emu_zs": [0, 0], "emu_ft": [0, 0], "plug_in": [1, 1],
             "reference": [1, 1]}]
    doc = summarize(rows)
    a = doc["tasks"]["a"]
    assert a["gain"] == pytest.approx(25.0) and a["ceiling_ratio"] == pytest.approx(0.5) and a["delta"] == 0.0
    assert doc["tasks"]["b"]["ceiling_ratio"] is None  # the reference gained nothing: no ratio
    assert doc["median_ceiling_ratio"] == pytest.approx(0.5)


def test_config_refuses_nonsense():
    with pytest.raises(ScaleOTError, match="at least one proxy task"):
        TransferCheckConfig(tasks=[])
    with pytest.raises(ScaleOTError, match="must be >= 1"):
        TransferCheckConfig(n_dev=0)
