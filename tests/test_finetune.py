"""The data owner's loop: only adapter weights change; resume; adapter folder contents."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from scaleot.data_owner.finetune import FinetuneConfig
from scaleot.errors import ScaleOTError
from scaleot.exchange.adapter import read_adapter
from scaleot.models import get_blocks
from scaleot.recipes.finetune import FinetuneRecipe
from tests.finetune_helpers import one_thread, tiny_world  # noqa: F401


def _cfg(**kw) -> FinetuneConfig:
    base = dict(epochs=1, n_val=16, n_test=16, n_train=48, batch_size=8, lr=1e-3)
    return FinetuneConfig(**{**base, **kw})


@pytest.mark.parametrize("method", ["full", "lora"])
def test_only_adapter_weights_change(tiny_world, one_thread, tmp_path, method):  # noqa: F811
    root, _, task, emu = tiny_world
    recipe = FinetuneRecipe.of(tmp_path / "ad", str(task), _cfg(method=method), device="cpu", emulator=emu, progress=False)
    recipe.setup()
    before = {k: v.clone() for k, v in recipe.model.state_dict().items()}
    recipe.execute()
    after = recipe.model.state_dict()
    blocks_path = "model.layers"
    adapter_prefixes = tuple(f"{blocks_path}.{p}." for p in recipe.positions)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    if method == "full":
        trainable = {k for k in before if k.removeprefix("base_model.model.").startswith(adapter_prefixes)}
        assert changed == {k for k in trainable if before[k].is_floating_point() and "rotary" not in k}
    else:
        assert changed and all("lora_" in k for k in changed)
        assert all(k.removeprefix("base_model.model.").startswith(adapter_prefixes) for k in changed)
        assert any(".lora_B." in k for k in changed)
    path = recipe.save()
    files = {p.name for p in path.iterdir()}
    expected = {"adapter.json", "manifest.json"} | (
        {"adapter.safetensors"} if method == "full" else {"adapter_config.json", "adapter_model.safetensors"})
    assert files == expected
    info = json.loads((path / "adapter.json").read_text())
    assert json.dumps(info).count('"autocast": "none"') >= 1  # the precision that really ran is recorded
    info = json.loads((path / "adapter.json").read_text())
    assert info["emulator_fingerprint"] == read_adapter(path).info["emulator_fingerprint"] is not None
    assert info["adapter_sources"] == [0, 5] and info["data"]["n_train"] == 48
    assert len(info["validation"]) == 1 and 0 <= info["best"]["val_acc"] <= 1
    text = "".join(p.read_text(errors="ignore") for p in path.iterdir() if p.suffix == ".json")
    assert "even?" not in text  # the data owner's data never leaves
    if method == "full":  # tensors named by full-model index, equal to the emulator's block
        weights = load_file(str(path / "adapter.safetensors"))
        top = get_blocks(recipe.model)[recipe.positions[-1]].state_dict()
        assert all(torch.equal(weights[f"blocks.5.{k}"], v) for k, v in top.items())


class _Interrupt:
    """A step controller that stops the run after optimizer step ``at``."""

    def __init__(self, at: int):
        self.at = at

    def before_step(self, step):
        pass

    def after_backward(self, step):
        pass

    def after_step(self, step):
        if step + 1 == self.at:
            raise KeyboardInterrupt

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_resume_after_interruption_matches_uninterrupted(tiny_world, one_thread, tmp_path):  # noqa: F811
    root, _, task, emu = tiny_world
    cfg = dict(method="full", epochs=2, checkpoint_every=2)
    ref = FinetuneRecipe.of(tmp_path / "ref", str(task), _cfg(**cfg), device="cpu", emulator=emu, progress=False).run()
    broken = FinetuneRecipe.of(tmp_path / "ad", str(task), _cfg(**cfg), device="cpu", emulator=emu, progress=False)
    broken.setup()
    broken.controller = _Interrupt(at=9)  # epoch 2 of 6 steps each; last checkpoint at step 8
    with pytest.raises(KeyboardInterrupt):
        broken.execute()
    assert not (tmp_path / "ad").exists()
    resumed = FinetuneRecipe.of(tmp_path / "ad", str(task), _cfg(**cfg), device="cpu", emulator=emu, resume=True,
                             progress=False).run()
    a, b = load_file(str(ref / "adapter.safetensors")), load_file(str(resumed / "adapter.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    va = json.loads((ref / "adapter.json").read_text())["validation"]
    vb = json.loads((resumed / "adapter.json").read_text())["validation"]
    assert va == vb


def test_resume_without_checkpoint_and_bad_config_fail_clearly(tiny_world, tmp_path):  # noqa: F811
    root, _, task, emu = tiny_world
    with pytest.raises(ScaleOTError, match="no checkpoint"):
        FinetuneRecipe.of(tmp_path / "x", str(task), _cfg(), device="cpu", emulator=emu, resume=True, progress=False).run()
    with pytest.raises(ScaleOTError, match="method must be one of.*lr must be > 0"):
        FinetuneConfig(method="adapterX", lr=-1.0)
    with pytest.raises(ScaleOTError, match="exactly one of"):
        FinetuneRecipe.of(tmp_path / "x", str(task), _cfg(), device="cpu", emulator=emu, model="smollm2-135m")


def test_ist_method_tunes_sparse_lora_and_ships_its_importance(tiny_world, one_thread, tmp_path):  # noqa: F811
    """`--method ist` inside the data owner's loop: LoRA on the adapter blocks, IST scores saved."""
    _, _, task, emu = tiny_world
    recipe = FinetuneRecipe.of(tmp_path / "ad", str(task), _cfg(method="ist"), device="cpu", emulator=emu, progress=False)
    recipe.setup()
    before = {k: v.clone() for k, v in recipe.model.state_dict().items()}
    recipe.execute()
    changed = {k for k, v in recipe.model.state_dict().items() if not torch.equal(before[k], v)}
    assert changed and all("lora_" in k for k in changed)
    path = recipe.save()
    files = {p.name for p in path.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "ist_importance.json",
            "ist_state.safetensors", "ist_importance.png"} <= files
    record = json.loads((path / "ist_importance.json").read_text())
    assert set(record["scores"]) == {str(p) for p in recipe.positions}
    manifest = json.loads((path / "manifest.json").read_text())
    assert "ist_importance.json" in manifest["files"]
    from scaleot.exchange.adapter import read_adapter

    assert read_adapter(path).method == "ist"  # the closed-folder check accepts what IST ships
