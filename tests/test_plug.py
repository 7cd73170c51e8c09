"""Plug-in: the tuned adapter lands in the full model exactly; foreign adapters are refused."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from scaleot.cli import main as cli_main
from scaleot.data_owner.finetune import FinetuneConfig
from scaleot.errors import ScaleOTError
from scaleot.exchange.adapter import read_adapter
from scaleot.merge import plug_into
from scaleot.model_owner.plug import plug
from scaleot.models import get_blocks, load_model
from scaleot.models.emulator import load_emulator
from scaleot.recipes.finetune import FinetuneRecipe
from tests.finetune_helpers import one_thread, tiny_model_dir, tiny_world  # noqa: F401


def _error_lines(capsys) -> list[str]:
    """stderr lines that are not progress bars (weight loading may draw one before failing)."""
    lines = capsys.readouterr().err.strip().splitlines()
    return [x for x in lines if x.strip() and "it/s]" not in x and "%|" not in x]


def _tune(tmp_path, task, emu, method):
    cfg = FinetuneConfig(method=method, epochs=1, n_val=16, n_test=16, n_train=32, batch_size=8,
                         lr=1e-2)
    recipe = FinetuneRecipe.of(tmp_path / f"ad-{method}", str(task), cfg, device="cpu", emulator=emu, progress=False)
    path = recipe.run()
    return recipe, path


@pytest.mark.parametrize("method", ["full", "lora"])
def test_plugin_reproduces_tuned_adapter_in_full_model(tiny_world, one_thread, tmp_path, method):  # noqa: F811
    root, model_dir, task, emu = tiny_world
    recipe, adapter = _tune(tmp_path, task, emu, method)
    tuned = recipe.peft_model.merge_and_unload() if method == "lora" else recipe.model
    out = plug(str(model_dir), adapter, tmp_path / "plugged", device="cpu", emulator=emu)
    plugged = AutoModelForCausalLM.from_pretrained(out)  # a standard HF folder
    original, _ = load_model(str(model_dir), device="cpu")
    p_blocks, o_blocks, t_blocks = get_blocks(plugged), get_blocks(original), get_blocks(tuned)
    for pos, src in zip(recipe.positions, recipe.sources, strict=True):
        tuned_sd, plugged_sd = t_blocks[pos].state_dict(), p_blocks[src].state_dict()
        assert tuned_sd.keys() == plugged_sd.keys()
        for k, v in tuned_sd.items():
            if method == "full":
                assert torch.equal(plugged_sd[k], v), k
            else:
                torch.testing.assert_close(plugged_sd[k], v, rtol=0, atol=1e-6)
        assert any(not torch.equal(plugged_sd[k], o_blocks[src].state_dict()[k]) for k in plugged_sd)
    for i in set(range(len(o_blocks))) - set(recipe.sources):  # the middle is the real one
        for k, v in o_blocks[i].state_dict().items():
            assert torch.equal(p_blocks[i].state_dict()[k], v)
    assert torch.equal(plugged.lm_head.weight, original.lm_head.weight)
    info = json.loads((out / "plugin.json").read_text())
    assert info["adapter_method"] == method and info["adapter_sources"] == [0, 5]
    # Emu FT: the same adapter back into a fresh emulator gives the tuned emulator
    bundle = load_emulator(emu)
    place = dict(zip(bundle.adapter_sources, bundle.adapter_positions, strict=True))
    emu_ft = plug_into(bundle.model, read_adapter(adapter), check=False, block_of_source=place)
    for pos in recipe.positions:
        for k, v in t_blocks[pos].state_dict().items():
            torch.testing.assert_close(get_blocks(emu_ft)[pos].state_dict()[k], v, rtol=0, atol=1e-6)


def test_foreign_and_tampered_adapters_are_refused(tiny_world, one_thread, tmp_path, capsys):  # noqa: F811
    root, model_dir, task, emu = tiny_world
    _, adapter = _tune(tmp_path, task, emu, "full")
    other = tiny_model_dir(tmp_path, seed=1)
    with pytest.raises(ScaleOTError, match="tuned for another model"):
        plug(str(other), adapter, tmp_path / "nope", device="cpu", emulator=emu)
    assert not (tmp_path / "nope").exists()
    capsys.readouterr()
    code = cli_main(["plug", "--model", str(other), "--adapter", str(adapter), "--out", str(tmp_path / "x"),
                     "--emulator", str(emu)])
    err = _error_lines(capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("scaleot: error: adapter")
    with open(adapter / "adapter.safetensors", "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02")
    with pytest.raises(ScaleOTError, match="sha256 mismatch"):
        plug(str(model_dir), adapter, tmp_path / "nope", device="cpu", emulator=emu)
    code = cli_main(["plug", "--model", str(model_dir), "--adapter", str(tmp_path / "missing"),
                     "--out", str(tmp_path / "x"), "--emulator", str(emu)])
    err = _error_lines(capsys)
    assert code == 2 and len(err) == 1 and "not a folder" in err[0]


def test_finetune_cli_bad_inputs_fail_with_one_line(tiny_world, tmp_path, capsys):  # noqa: F811
    root, model_dir, task, emu = tiny_world
    cases = [
        (["--task", str(task), "--out", str(tmp_path / "a")], "exactly one of"),
        (["--task", str(task), "--out", str(tmp_path / "a"), "--emulator", str(emu), "--method", "bitfit"],
         "method must be one of"),
        (["--task", str(task), "--out", str(tmp_path / "a"), "--emulator", str(tmp_path / "none")], "not a folder"),
        (["--task", "gen:no_such_task_zz", "--out", str(tmp_path / "a"), "--emulator", str(emu)],
         "unknown generated task"),
        (["--task", str(task), "--out", str(tmp_path / "a"), "--model", str(model_dir), "--steps", "0"],
         "steps must be >= 1"),
    ]
    capsys.readouterr()
    for args, message in cases:
        code = cli_main(["finetune", *args, "--n-test", "16", "--n-val", "16"])
        err = _error_lines(capsys)
        assert code == 2 and len(err) == 1 and err[0].startswith("scaleot: error:"), (args, err)
        assert message in err[0], (message, err[0])
