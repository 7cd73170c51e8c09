"""``scaleot plug`` without --model plugs into the base model the adapter records."""

from __future__ import annotations

import json

from scaleot.cli import main as cli_main
from scaleot.finetune import FinetuneConfig
from scaleot.recipes.finetune import run_finetune
from tests.finetune_helpers import one_thread, tiny_world  # noqa: F401


def test_plug_defaults_to_the_recorded_base_model(tiny_world, one_thread, tmp_path):  # noqa: F811
    root, model_dir, task, emu = tiny_world
    cfg = FinetuneConfig(max_steps=1, n_train=8, n_val=4, n_test=16, batch_size=4, device="cpu", val_limit=4)
    adapter = run_finetune(tmp_path / "a", str(task), cfg, emulator=emu, progress=False)
    assert json.loads((adapter / "adapter.json").read_text())["base_model"] == str(model_dir)
    assert cli_main(["plug", "--adapter", str(adapter), "--out", str(tmp_path / "p"), "--device", "cpu"]) == 0
    assert json.loads((tmp_path / "p" / "plugin.json").read_text())["base_model"] == str(model_dir)
