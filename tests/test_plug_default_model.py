"""``scaleot plug`` without --model plugs into the base model the adapter records: a known
name as recorded; a local folder is recorded by its name only (no paths cross to the other
party), so plug asks for --model again."""

from __future__ import annotations

import json

import pytest

from scaleot.cli import main as cli_main
from scaleot.data_owner.finetune import FinetuneConfig
from scaleot.errors import ScaleOTError
from scaleot.recipes.finetune import run_finetune
from scaleot.recipes.plug import recorded_base_model
from tests.finetune_helpers import one_thread, tiny_world  # noqa: F401


def test_plug_defaults_to_the_recorded_base_model(tiny_world, one_thread, tmp_path, capsys):  # noqa: F811
    root, model_dir, task, emu = tiny_world
    cfg = FinetuneConfig(max_steps=1, n_train=8, n_val=4, n_test=16, batch_size=4, val_limit=4)
    adapter = run_finetune(tmp_path / "a", str(task), cfg, device="cpu", emulator=emu, progress=False)
    assert json.loads((adapter / "adapter.json").read_text())["base_model"] == model_dir.name  # no path
    args = ["plug", "--adapter", str(adapter), "--emulator", str(emu), "--out", str(tmp_path / "p"), "--device", "cpu"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pass --model" in err[0]
    assert cli_main([*args, "--model", str(model_dir)]) == 0
    assert json.loads((tmp_path / "p" / "plugin.json").read_text())["base_model"] == str(model_dir)


def test_a_known_name_or_hub_id_is_the_default():
    assert recorded_base_model({"base_model": "smollm2-135m"}) == "smollm2-135m"
    assert recorded_base_model({"base_model": "HuggingFaceTB/SmolLM2-135M"}) == "HuggingFaceTB/SmolLM2-135M"
    with pytest.raises(ScaleOTError, match="pass --model"):
        recorded_base_model({})
