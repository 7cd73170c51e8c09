"""Options are generated from the config dataclasses: every field is reachable from the CLI
and from the run YAML under the same name, and what is set arrives in the config."""

from __future__ import annotations

from dataclasses import fields

import pytest
import typer
from typer.testing import CliRunner

from scaleot.cli import app
from scaleot.data_owner.finetune import FinetuneConfig
from scaleot.data_owner.tuners.ist import ISTConfig
from scaleot.errors import ScaleOTError
from scaleot.evaluation.config import EvaluateConfig
from scaleot.model_owner.audit.config import AuditConfig
from scaleot.model_owner.emulator import EmulatorConfig
from scaleot.model_owner.importance.config import ImportanceConfig
from scaleot.recipes.options import config_command, config_flags
from scaleot.recipes.run import SECTION_CONFIGS
from scaleot.split import AdapterSplit

COMMANDS = {"importance": ImportanceConfig, "emulate": EmulatorConfig, "finetune": FinetuneConfig,
            "evaluate": EvaluateConfig, "audit": AuditConfig}


def _flags(command_name: str) -> set[str]:
    cmd = typer.main.get_command(app).commands[command_name]
    return {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_config_field_is_a_cli_option(name):
    flags = _flags(name)
    wanted = config_flags(COMMANDS[name])
    assert len(wanted) >= len(fields(COMMANDS[name]))
    missing = {path: flag for path, flag in wanted.items() if flag not in flags}
    assert not missing, f"scaleot {name} lacks {missing}"


@pytest.mark.parametrize("section, cls", sorted(SECTION_CONFIGS.items(), key=lambda kv: kv[0]))
def test_every_config_field_is_a_yaml_key(section, cls):
    """The run YAML's sections are checked against the same dataclasses (no hand-kept list)."""
    from scaleot.recipes.run import JOB_KEYS, section_keys

    keys = section_keys(section)
    for f in fields(cls):
        assert f.name in keys or f.name in JOB_KEYS, f"{section}: {f.name}"
    assert ("adapter" in keys) == hasattr(cls, "split")


def test_generated_options_reach_the_config():
    seen = {}

    @config_command(FinetuneConfig)
    def command(config: FinetuneConfig, out: str = typer.Option(...)) -> None:
        seen["config"] = config

    t = typer.Typer()
    t.command()(command)
    t.command("other")(lambda: None)
    result = CliRunner().invoke(t, ["command", "--out", "x", "--method", "ist", "--steps", "3", "--lora-rank", "4",
                                    "--weight-decay", "0.1", "--ist-T", "2", "--ist-n-update", "0.5",
                                    "--no-ist-offload-optimizer", "--seed", "7", "--autocast", "auto"])
    assert result.exit_code == 0, result.output
    c = seen["config"]
    assert (c.method, c.max_steps, c.lora_rank, c.lora_alpha, c.weight_decay, c.autocast) == \
        ("ist", 3, 4, 8.0, 0.1, "auto")
    assert c.ist == ISTConfig(T=2, n_update=0.5, offload_optimizer=False, seed=7)

    result = CliRunner().invoke(t, ["command", "--out", "x"])
    assert result.exit_code == 0 and seen["config"] == FinetuneConfig()


def test_adapter_option_fills_the_split():
    seen = {}

    @config_command(ImportanceConfig, name="options")
    def command(options: ImportanceConfig) -> None:
        seen["c"] = options

    t = typer.Typer()
    t.command()(command)
    t.command("other")(lambda: None)
    assert CliRunner().invoke(t, ["command", "--adapter", "1,3", "--rank", "8"]).exit_code == 0
    assert seen["c"].split == AdapterSplit(1, 3) and seen["c"].harmonizer.rank == 8


def test_adapter_split():
    s = AdapterSplit.parse("2,3")
    assert (s.n_bottom, s.n_top, str(s)) == (2, 3, "2,3")
    assert s.middle(8) == [2, 3, 4] and s.positions(8) == [0, 1, 5, 6, 7]
    assert AdapterSplit.parse([1, 1]) == AdapterSplit.parse({"n_bottom": 1, "n_top": 1}) == AdapterSplit(1, 1)
    for bad in ("2", "a,b", "1,2,3", [1.5, 1], "-1,2", True):
        with pytest.raises(ScaleOTError, match="adapter"):
            AdapterSplit.parse(bad)
    with pytest.raises(ScaleOTError, match="leaves no middle blocks"):
        s.middle(5)
    with pytest.raises(ScaleOTError, match="leaves no middle blocks"):
        s.positions(4)


def test_ist_settings_only_with_method_ist():
    assert FinetuneConfig(method="ist", seed=3).ist == ISTConfig(seed=3)
    assert FinetuneConfig(method="ist", ist={"T": 4}).ist.T == 4
    with pytest.raises(ScaleOTError, match="ist options apply to method 'ist' only"):
        FinetuneConfig(method="lora", ist={"T": 4})
    with pytest.raises(ScaleOTError, match="T must be >= 0"):
        FinetuneConfig(method="ist", ist={"T": -1})
