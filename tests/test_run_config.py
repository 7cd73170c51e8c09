"""The run YAML is checked against the config dataclasses at load time, the job-level
``adapter:`` reaches every step, and IST settings set in the YAML change what trains."""

from __future__ import annotations

import json

import pytest
import yaml
from safetensors.torch import load_file

from scaleot.data_owner.finetune import FinetuneConfig
from scaleot.errors import ScaleOTError
from scaleot.recipes.finetune import run_finetune
from scaleot.recipes.run import load_run_config
from tests.finetune_helpers import one_thread, tiny_world  # noqa: F401

BASE = {"tasks": ["gen:arithmetic"], "importance": {"steps": 3},
        "emulators": [{"name": "s", "method": "scaleot"}, {"name": "u", "method": "uniform"}]}


def _load(tmp_path, **changes):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(dict(BASE, **changes)))
    return load_run_config(path)


def test_job_level_adapter_reaches_every_section(tmp_path):
    cfg = _load(tmp_path, adapter="1,3")
    assert (cfg["importance"]["n_bottom"], cfg["importance"]["n_top"]) == (1, 3)
    assert all((e["n_bottom"], e["n_top"]) == (1, 3) for e in cfg["emulators"])


@pytest.mark.parametrize("changes, message", [
    ({"adapter": "2"}, "adapter must be 'N_BOTTOM,N_TOP'"),
    ({"emulators": [{"name": "s", "method": "scaleot", "adapter": "1,1"}]}, "differs from the importance"),
    ({"emulators": [{"name": "s", "method": "scaleot", "n_bottom": 1, "adapter": "1,1"}]}, "not both"),
    ({"emulators": [{"name": "s", "method": "scaleot", "alpah": 0.5}]}, "unknown options ['alpah']"),
    ({"emulators": [{"name": "s", "method": "uniform", "beta": 2}]}, "beta must be in [0, 1)"),
    ({"finetune": {"bf16": True}}, "finetune: unknown options ['bf16']"),
    ({"finetune": {"method": "lora", "ist": {"T": 2}}}, "ist options apply to method 'ist' only"),
    ({"ft": {"ist": {"K": 0}}, "finetune": {"method": "ist"}}, "K must be >= 1"),
    ({"importance": {"steps": 0}}, "steps must be > 0"),
    ({"importance": {"steps": 3, "device": "cpu"}}, "set once for the whole job"),
])
def test_bad_sections_fail_at_load_time(tmp_path, changes, message):
    with pytest.raises(ScaleOTError) as e:
        _load(tmp_path, **changes)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_ist_settings_from_the_yaml_change_what_trains(tiny_world, tmp_path, one_thread):  # noqa: F811
    """Two YAML ``finetune.ist`` settings: both recorded, and the tuned adapters differ."""
    root, model_dir, task, emu = tiny_world
    common = {"method": "ist", "max_steps": 4, "batch_size": 4, "n_train": 16, "n_val": 8, "n_test": 16,
              "lr": 1e-2, "val_limit": 4}
    weights, options = [], []
    for name, ist in (("one", {"n_update": 0.5, "T": 1, "seed": 1}), ("all", {"n_update": 1.0, "T": 0})):
        cfg = _load(tmp_path, finetune=dict(common, ist=ist))
        out = run_finetune(tmp_path / name, str(task), FinetuneConfig(**cfg["finetune"]),
                           device="cpu", emulator=emu, progress=False)
        options.append(json.loads((out / "adapter.json").read_text())["options"]["ist"])
        weights.append(load_file(str(out / "adapter_model.safetensors")))
    assert options[0]["n_update"] == 0.5 and options[0]["T"] == 1 and options[0]["seed"] == 1
    assert options[1]["n_update"] == 1.0 and options[1]["T"] == 0 and options[1]["seed"] == 0
    assert weights[0].keys() == weights[1].keys()
    assert any(not (weights[0][k] == weights[1][k]).all() for k in weights[0])
