"""The run-level options live only in :class:`~scaleot.recipes.run_options.RunOptions` (issue 29),
yet what was written from them before is written the same: ``emulator.json``'s ``options``,
``adapter.json``'s and the run folder's options, and the digests ``steps.json`` records."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

from scaleot.data_owner.finetune import FinetuneConfig
from scaleot.model_owner.emulator.config import EmulatorConfig
from scaleot.recipes.run_steps import emulate_instances, finetune_instances, ft_instances

RUN_LEVEL = {"model", "device", "dtype", "resume"}

# the documents as written before the run-level fields left the configs (key order included)
EMULATOR_OPTIONS = ["method", "model", "n_bottom", "n_top", "alpha", "beta", "keep", "importance", "corpus",
                    "block_size", "calib_blocks", "kd_steps", "kd_lr", "kd_batch", "kd_lm_weight",
                    "kd_checkpoint_every", "kd_run_dir", "calibrate_steps", "calibrate_lr", "diagnostic_blocks",
                    "autocast", "seed"]
FINETUNE_OPTIONS = ["method", "lr", "epochs", "max_steps", "batch_size", "grad_accum", "max_length", "schedule",
                    "warmup_ratio", "weight_decay", "max_grad_norm", "seed", "n_train", "n_val", "n_test",
                    "split_seed", "val_limit", "eval_batch_size", "checkpoint_every", "lora_rank", "lora_alpha",
                    "lora_dropout", "autocast", "device", "ist"]


def test_the_step_configs_hold_no_run_level_field():
    for cls in (EmulatorConfig, FinetuneConfig):
        assert not RUN_LEVEL & {f.name for f in fields(cls)}, cls.__name__
        assert not any(f.metadata.get("run_level") for f in fields(cls)), cls.__name__


def test_emulator_options_are_written_as_before():
    options = EmulatorConfig(method="uniform", keep=2).options("tiny")
    assert list(options) == EMULATOR_OPTIONS
    assert options["model"] == "tiny" and options["method"] == "uniform"
    # the alpha choice (issue 28) adds its two keys only where it is used
    chosen = EmulatorConfig(method="uniform", target_ppl_ratio=4.0).options("tiny")
    at = EMULATOR_OPTIONS.index("diagnostic_blocks")
    assert list(chosen) == EMULATOR_OPTIONS[:at] + ["target_ppl_ratio", "choice_blocks"] + EMULATOR_OPTIONS[at:]


def test_finetune_options_are_written_as_before():
    config = FinetuneConfig(method="lora")
    recorded = config.record("cpu")
    assert list(recorded) == FINETUNE_OPTIONS
    assert recorded["device"] == "cpu" and config.record(None)["device"] is None
    assert {k: v for k, v in recorded.items() if k != "device"} == config.to_dict()


def _run(**cfg) -> SimpleNamespace:
    """The parts of a RunRecipe the instance functions read."""
    return SimpleNamespace(cfg=dict({"model": "m", "tasks": ["t.jsonl"]}, **cfg), device="cpu", progress=False,
                           steps={}, outputs={"importance": {}, "emulate": {("e",): Path("/emu")}},
                           path=lambda *parts: Path("/out", *parts))


def test_finetune_digests_keep_the_device():
    run = _run(finetune={"lr": 1e-3}, ft={"lr": 5e-5})
    (tuned,) = finetune_instances(run)
    assert tuned.deps == ["t.jsonl", {"lr": 1e-3, "device": "cpu"}, None]
    assert tuned.config.run.device == "cpu" and tuned.config.config.lr == 1e-3
    (ft,) = ft_instances(run)
    assert ft.deps == ["t.jsonl", {"lr": 5e-5, "device": "cpu"}, "m"]
    assert ft.config.run.device == "cpu"


def test_an_emulator_entry_keeps_its_former_run_level_keys_in_its_digest():
    entry = {"name": "u", "method": "uniform", "keep": 2, "dtype": "bfloat16", "resume": True}
    (emulate,) = emulate_instances(_run(emulators=[entry]))
    assert emulate.deps == [{k: v for k, v in entry.items() if k != "name"}, None]
    assert emulate.config.config == EmulatorConfig(method="uniform", keep=2)
    assert emulate.config.run.device == "cpu" and emulate.config.run.model == "m"


def test_a_run_yaml_with_former_emulator_keys_still_loads(tmp_path, caplog):
    import yaml

    from scaleot.recipes.run import load_run_config

    entry = {"name": "u", "method": "uniform", "dtype": "bfloat16", "resume": False}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"tasks": ["gen:arithmetic"], "emulators": [entry]}))
    with caplog.at_level("WARNING", logger="scaleot.recipes.run"):
        (loaded,) = load_run_config(path)["emulators"]
    assert {k: loaded[k] for k in entry} == entry
    assert "['dtype', 'resume'] ignored" in caplog.text
