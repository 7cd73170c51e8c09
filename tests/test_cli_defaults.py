"""Defaults that are the measured ones: every option ``configs/default.yaml`` sets has the same
default on the command that runs that step, or the option's ``--help`` says why it differs
(its help holds "differs from configs/default.yaml" and the reason). The YAML is read, not copied here, so the check follows it."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
import yaml

from scaleot.cli import app
from scaleot.data_owner.finetune import FinetuneConfig
from scaleot.model_owner.emulator.config import EmulatorConfig
from scaleot.model_owner.importance.config import ImportanceConfig
from scaleot.models.device import resolve_device

DEFAULT_YAML = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"
# run YAML section -> (the command that runs that step, its config: resolves a None default such as lr)
SECTIONS = {"importance": ("importance", ImportanceConfig), "emulators": ("emulate", EmulatorConfig),
            "finetune": ("finetune", FinetuneConfig), "evaluate": ("evaluate", None)}
MARKER = "differs from configs/default.yaml"  # what a --help says where a default differs, with the reason
NOT_OPTIONS = {"name"}  # an emulator entry's name is its folder in the run, not an option
JOB_LEVEL = ("model", "adapter", "device")  # set once at the top of the YAML, for every step


def _params(command: str) -> dict:
    cmd = typer.main.get_command(app).commands[command]
    params = {p.name: p for p in cmd.params}
    params.update({o.lstrip("-").replace("-", "_"): p for p in cmd.params for o in p.opts})
    return params


def _same(yaml_value, default) -> bool:
    if isinstance(yaml_value, float) or isinstance(default, float):
        return default is not None and yaml_value is not None and float(yaml_value) == pytest.approx(float(default))
    return str(yaml_value) == str(default) if isinstance(default, str) else yaml_value == default


def _disagreements(command: str, values: dict, config_cls) -> list[str]:
    params, out = _params(command), []
    try:
        resolved = config_cls() if config_cls is not None else None
    except Exception:  # a config that needs an input (an emulator needs its importance folder)
        resolved = None
    for key, value in values.items():
        if key in NOT_OPTIONS:
            continue
        p = params.get(key)
        if p is None:
            out.append(f"{command}: configs/default.yaml sets {key!r}, which the command has no option for")
            continue
        default = p.default
        if default is None and resolved is not None and hasattr(resolved, key):
            default = getattr(resolved, key)  # derived in __post_init__ (lr from the method)
        if key == "device" and default is None:
            default = "auto" if resolve_device(None) == resolve_device("auto") else None
        if not _same(value, default) and MARKER not in (p.help or ""):
            out.append(f"scaleot {command} --{key.replace('_', '-')}: default {default!r}, "
                       f"configs/default.yaml {value!r}, and --help does not say why")
    return out


def test_the_yaml_has_the_sections_this_test_reads():
    cfg = yaml.safe_load(DEFAULT_YAML.read_text())
    assert set(SECTIONS) <= set(cfg), sorted(set(SECTIONS) - set(cfg))


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_command_defaults_are_the_default_yaml(section):
    cfg = yaml.safe_load(DEFAULT_YAML.read_text())
    command, config_cls = SECTIONS[section]
    entries = cfg[section] if isinstance(cfg[section], list) else [cfg[section] or {}]
    if section == "emulators":  # the command builds one emulator: the entry of its default method
        default_method = _params(command)["method"].default
        entries = [e for e in entries if e.get("method", "scaleot") == default_method]
        assert entries, f"configs/default.yaml has no {default_method} emulator"
    params = _params(command)
    # a job-level option whose default is None means "from elsewhere" (plug's model: the bundle), except
    # the device, whose None is auto
    job = {k: cfg[k] for k in JOB_LEVEL if k in cfg and k in params and (params[k].default is not None
                                                                         or k == "device")}
    if command == "finetune":  # the data owner's model and split come from the emulator bundle
        job.pop("adapter", None)
    problems = [p for e in entries for p in _disagreements(command, {**job, **e}, config_cls)]
    assert not problems, "\n".join(problems)


def test_the_checker_catches_a_difference():
    found = _disagreements("finetune", {"lr": 1.0, "max_length": 7, "method": "full"}, FinetuneConfig)
    assert found == ["scaleot finetune --lr: default 0.0003, configs/default.yaml 1.0, and --help does not say why",
                     "scaleot finetune --max-length: default 128, configs/default.yaml 7, and --help does not say why"]
    assert any("no option" in p for p in _disagreements("evaluate", {"no_such_option": 1}, None))
