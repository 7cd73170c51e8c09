"""Progress on every long step: scoring draws the same bar as tuning and stage 1
(:func:`scaleot.progress.progress_bar`), and obeys ``--progress/--no-progress``."""

from __future__ import annotations

import pytest
import typer

from scaleot.cli import app
from scaleot.data import SplitConfig, load_task
from scaleot.evaluation import evaluate_mc
from scaleot.progress import progress_bar


def test_one_bar_counts_and_can_be_switched_off(capsys):
    with progress_bar(3, "demo", unit="row") as bar:
        bar.update(3)
    assert "demo" in capsys.readouterr().err
    with progress_bar(3, "quiet", enabled=False) as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("progress", [True, False])
def test_scoring_shows_a_bar_over_the_examples(tiny_llama, hf_tokenizer, tiny_task_file, capsys, progress):
    from transformers import LlamaForCausalLM

    from tests.conftest import tiny_llama_config

    model = LlamaForCausalLM(tiny_llama_config(vocab_size=len(hf_tokenizer))).eval()
    splits = load_task(str(tiny_task_file), SplitConfig(seed=0, n_test=12, n_val=4))
    quiet = evaluate_mc(model, hf_tokenizer, [splits])
    capsys.readouterr()
    row = evaluate_mc(model, hf_tokenizer, [splits], progress=progress, desc="Emu ZS")
    err = capsys.readouterr().err
    assert ("Emu ZS" in err and "/12 " in err) if progress else err == "", err[-500:]  # a bar over the 12 examples (a fast run may close it before it redraws 12/12)
    assert row == quiet  # the bar changes nothing in the result


def test_scoring_commands_take_the_progress_switch():
    commands = typer.main.get_command(app).commands
    for name in ("evaluate", "run", "importance", "audit"):
        flags = {o for p in commands[name].params for o in (*p.opts, *p.secondary_opts)}
        assert {"--progress", "--no-progress"} <= flags, name
