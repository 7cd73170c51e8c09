"""The CLI: commands listed, bad input -> one line on stderr, exit 2, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scaleot.cli import main


def run_cli(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_lists_commands(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    for name in ("evaluate", "fetch"):
        assert name in out


@pytest.mark.parametrize("args, message", [
    (["evaluate", "--model", "gpt-17"], "unknown model 'gpt-17' (known names: gemma3-270m, smollm2-135m"),
    (["evaluate", "--task", "mmlu"], "unknown task 'mmlu'"),
    (["evaluate", "--task", "/nonexistent/t.jsonl"], "task file not found: /nonexistent/t.jsonl"),
    (["evaluate", "--limit", "0"], "--limit must be > 0"),
    (["evaluate", "--no-such-flag"], "No such option: --no-such-flag"),
])
def test_bad_input_is_one_line_exit_2(capsys, args, message):
    code, _, err = run_cli(capsys, *args)
    assert code == 2
    assert err.startswith("scaleot: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_malformed_jsonl_and_non_mc_task(capsys, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"context": "a", "choices": ["x", "y"], "label": 0}\n{oops\n')
    code, _, err = run_cli(capsys, "evaluate", "--task", str(bad))
    assert code == 2 and f"{bad}:2: not valid JSON" in err
    one = tmp_path / "one.jsonl"
    one.write_text('{"context": "a", "choices": ["only"], "label": 0}\n')
    code, _, err = run_cli(capsys, "evaluate", "--task", str(one))
    assert code == 2 and "needs at least 2 choices" in err


def test_console_script_exit_code(tmp_path):
    """The installed entry point really exits 2 (not only main()'s return value)."""
    proc = subprocess.run([sys.executable, "-m", "scaleot.cli", "evaluate", "--model", "nope"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("scaleot: error: unknown model 'nope'")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", ["importance", "emulate", "finetune", "plug", "evaluate", "audit", "run", "fetch"])
def test_every_command_has_help(capsys, command):
    code, out, err = run_cli(capsys, command, "--help")
    assert code == 0, err
    assert f" {command} [OPTIONS]" in out


@pytest.mark.parametrize("error", [OSError(28, "No space left on device", "/full/disk/model.safetensors"),
                                   "SafetensorError"])
def test_a_full_disk_is_one_line_exit_1(capsys, monkeypatch, tmp_path, error):
    """The machine failing (here: a full disk while saving) is one line and exit 1, not a traceback."""
    import scaleot.recipes.fetch as fetch

    if error == "SafetensorError":
        error = type("SafetensorError", (Exception,), {})(
            "Error while serializing: I/O error: No space left on device (os error 28)")

    def full_disk(*a, **kw):
        raise error

    monkeypatch.setattr(fetch, "fetch", full_disk)
    assert main(["fetch", "--model", "smollm2-135m"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("scaleot: error: ") and "No space left on device" in err and err.count("\n") == 1
