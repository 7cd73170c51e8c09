"""HF-native artifacts: a LoRA/IST adapter folder is a peft adapter, and every emulator bundle
and plug-in model carries a model card (README.md with the hub's YAML header), listed in
its manifest and read as untrusted input."""

from __future__ import annotations

import json

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoModelForCausalLM

from scaleot.errors import ScaleOTError
from scaleot.exchange.model_card import audit_numbers
from scaleot.model_owner.plug import plug
from scaleot.models.emulator import load_emulator
from scaleot.recipes.finetune import FinetuneRecipe
from tests.finetune_helpers import one_thread, tiny_world  # noqa: F401
from tests.trust_helpers import copy_artifact, remanifest, tune_config


@pytest.fixture(scope="module")
def lora_adapter(tiny_world, tmp_path_factory):  # noqa: F811
    """A LoRA adapter tuned on the tiny emulator (IST adapters are the same peft format)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    root, model_dir, task, emu = tiny_world
    out = FinetuneRecipe.of(tmp_path_factory.mktemp("lora") / "ad", str(task), tune_config(method="lora"),
                         device="cpu", emulator=emu, progress=False).run()
    torch.set_num_threads(n)
    return out


def test_adapter_folder_loads_with_peft_and_matches_plug(tiny_world, lora_adapter, one_thread, tmp_path):  # noqa: F811
    """``PeftModel.from_pretrained(full_model, adapter_dir)`` gives the plug-in model's logits."""
    from peft import PeftModel

    root, model_dir, task, emu = tiny_world
    adapter = lora_adapter
    plugged = AutoModelForCausalLM.from_pretrained(plug(str(model_dir), adapter, tmp_path / "pl", device="cpu",
                                                        emulator=emu)).eval()
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), str(adapter)).eval()
    base = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    x = torch.randint(3, 1000, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want, got, zero = plugged(x).logits, peft_model(x).logits, base(x).logits
    assert (want - zero).abs().max() > 1e-3  # the adapter changed something
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def _front(path) -> dict:
    card = ModelCard.load(path)  # the hub's own parser
    return card.data.to_dict()


def test_bundle_and_plugged_model_carry_a_listed_model_card(tiny_world, lora_adapter, one_thread,  # noqa: F811
                                                            tmp_path):
    root, model_dir, task, emu = tiny_world
    info = json.loads((emu / "emulator.json").read_text())
    manifest = json.loads((emu / "manifest.json").read_text())
    assert "README.md" in manifest["files"]
    meta = _front(emu / "README.md")
    assert meta["library_name"] == "transformers" and "scaleot" in meta["tags"]
    sc = meta["scaleot"]
    assert sc["kind"] == "emulator" and sc["base_fingerprint"] == info["base_fingerprint"]
    assert (sc["N_a"], sc["alpha"], sc["beta"]) == (2, info["options"]["alpha"], info["options"]["beta"])
    assert sc["middle_compressed"] == 0.5  # uniform: 2 of the 4 middle blocks kept
    assert "No audit recorded" in (emu / "README.md").read_text()
    load_emulator(emu, device="cpu")  # the card passes the bundle's checks

    # an audit.json in the bundle: its numbers reach the plug-in model's card
    bundle = copy_artifact(emu, tmp_path / "emu")
    audit = {"emu_zs_gap": 0.125, "leaks": {"count": 0, "max_cosine": 0.031}, "verdict": "pass", "ok": True}
    (bundle / "audit.json").write_text(json.dumps(audit))
    remanifest(bundle)  # same model.safetensors, so the same bundle fingerprint
    out = plug(str(model_dir), lora_adapter, tmp_path / "pl", device="cpu", emulator=bundle)
    assert "README.md" in json.loads((out / "manifest.json").read_text())["files"]
    pm = _front(out / "README.md")["scaleot"]
    plugin = json.loads((out / "plugin.json").read_text())
    assert pm["kind"] == "plugged-model" and pm["base_fingerprint"] == plugin["base_fingerprint"]
    assert pm["plugged_fingerprint"] == plugin["plugged_fingerprint"] and pm["adapter_method"] == "lora"
    assert (pm["emulator"]["N_a"], pm["emulator"]["beta"]) == (2, info["options"]["beta"])
    assert pm["audit"] == {"emu_zs_gap": 0.125, "leaks.count": 0, "leaks.max_cosine": 0.031}
    assert audit_numbers(audit) == pm["audit"]
    assert "| leaks.max_cosine | 0.031 |" in (out / "README.md").read_text()


@pytest.mark.parametrize("card, message", [
    (b"no header at all\n", "no YAML header"),
    (b"---\n[1, 2\n---\nbody\n", "malformed YAML header"),
    (b"---\n- a list\n---\nbody\n", "not a mapping"),
    (b"---\na: 1\n---\n\x00\x01", "not text"),
    (b"---\na: \xff\n---\n", "not UTF-8"),
])
def test_forged_model_card_is_refused(tiny_world, tmp_path, card, message):  # noqa: F811
    """A card rewritten with its manifest recomputed is still read strictly: one line."""
    bundle = copy_artifact(tiny_world[3], tmp_path / "emu")
    (bundle / "README.md").write_bytes(card)
    remanifest(bundle)
    with pytest.raises(ScaleOTError, match=message) as e:
        load_emulator(bundle, device="cpu")
    assert "\n" not in str(e.value)


def test_other_markdown_files_are_refused(tiny_world, tmp_path):  # noqa: F811
    bundle = copy_artifact(tiny_world[3], tmp_path / "emu")
    (bundle / "NOTES.md").write_text((bundle / "README.md").read_text())
    remanifest(bundle)
    with pytest.raises(ScaleOTError, match="only markdown file allowed is README.md"):
        load_emulator(bundle, device="cpu")
