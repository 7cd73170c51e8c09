"""One recipe shape (issue 29): every step implements :class:`~scaleot.recipes.protocol.Recipe`,
``scaleot run`` drives them from one table, and the run-level options are declared once."""

from __future__ import annotations

import inspect
from dataclasses import fields

import pytest
import typer
from typer.testing import CliRunner

from scaleot.cli import app
from scaleot.recipes.audit import AuditRecipe
from scaleot.recipes.emulate import EmulateRecipe
from scaleot.recipes.evaluate import EvaluateRecipe
from scaleot.recipes.finetune import FinetuneRecipe
from scaleot.recipes.importance import ImportanceRecipe
from scaleot.recipes.plug import PlugRecipe
from scaleot.recipes.protocol import Recipe, run_recipe
from scaleot.recipes.run import SECTIONS
from scaleot.recipes.run_options import NOTE, RunOptions
from scaleot.recipes.run_steps import STEPS

STEP_COMMANDS = {"importance": ImportanceRecipe, "emulate": EmulateRecipe, "finetune": FinetuneRecipe,
                 "plug": PlugRecipe, "evaluate": EvaluateRecipe, "audit": AuditRecipe}
SHARED = {f.name: f.metadata["help"] for f in fields(RunOptions)}


def _params(command: str) -> dict[str, typer.core.click.Parameter]:
    return {p.name: p for p in typer.main.get_command(app).commands[command].params}


@pytest.mark.parametrize("recipe", sorted({*STEP_COMMANDS.values(), *(s.recipe for s in STEPS)}, key=str))
def test_every_step_implements_the_protocol(recipe):
    assert issubclass(recipe, Recipe), recipe
    for method in ("check_paths", "setup", "execute", "save"):
        assert list(inspect.signature(getattr(recipe, method)).parameters) == ["self"], (recipe, method)
    assert list(inspect.signature(recipe).parameters)[0] == "config"  # built from its one config object


def test_run_recipe_calls_the_four_steps_in_order():
    calls = []

    class Toy:
        def check_paths(self):
            calls.append("check_paths")

        def setup(self):
            calls.append("setup")

        def execute(self):
            calls.append("execute")

        def save(self):
            calls.append("save")
            return "out"

    assert isinstance(Toy(), Recipe)
    assert run_recipe(Toy()) == "out" and calls == ["check_paths", "setup", "execute", "save"]


def test_the_run_is_a_table_of_steps():
    names = [s.name for s in STEPS]
    assert names == ["importance", "emulate", "finetune", "ft", "plug", "evaluate", "audit"]
    for i, step in enumerate(STEPS):
        assert set(step.reads) <= set(names[:i]), f"{step.name} reads a later step"
        assert step.section in SECTIONS, step.section
        assert callable(step.instances)


@pytest.mark.parametrize("command", sorted(typer.main.get_command(app).commands))
def test_run_level_options_have_one_help_text(command):
    params = _params(command)
    for name, help_text in SHARED.items():
        if name in params:
            assert params[name].help == help_text or params[name].help.startswith(help_text + NOTE), \
                f"scaleot {command} --{name}: {params[name].help!r}"


@pytest.mark.parametrize("command", sorted(STEP_COMMANDS))
def test_every_step_command_has_the_run_level_options(command):
    params = _params(command)
    assert {"out", "model", "device", "overwrite"} <= set(params), sorted(params)


def test_old_evaluate_flag_spellings_still_work(monkeypatch):
    """--ppl-corpus/--ppl-blocks (fields perplexity_*) and --task (field tasks) are kept as aliases."""
    import scaleot.recipes.evaluate as evaluate

    seen = {}

    def fake_run_recipe(recipe):
        seen["cfg"] = recipe.cfg
        recipe.doc = {"tasks": {}}

    monkeypatch.setattr(evaluate, "run_recipe", fake_run_recipe)
    monkeypatch.setattr(evaluate.EvaluateRecipe, "table", lambda self: "table")
    result = CliRunner().invoke(app, ["evaluate", "--ppl-corpus", "kjv", "--ppl-blocks", "4", "--task", "gen:a",
                                      "--task", "gen:b"])
    assert result.exit_code == 0, result.output
    cfg = seen["cfg"]
    assert (cfg.perplexity_corpus, cfg.perplexity_blocks, cfg.tasks) == ("kjv", 4, ["gen:a", "gen:b"])
    assert cfg.autocast == "none"  # one model's table: exact fp32 unless asked
