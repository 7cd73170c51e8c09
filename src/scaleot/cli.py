"""The ``scaleot`` command line: one subcommand per workflow step.

Each subcommand is a thin typed wrapper around a recipe in :mod:`scaleot.recipes`.
Every user error surfaces as ``scaleot: error: <one line>`` on stderr with exit code 2.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import typer

from scaleot.errors import ScaleOTError

app = typer.Typer(
    name="scaleot",
    help="Privacy-preserving offsite-tuning of LLMs: importance -> emulate -> finetune -> plug -> evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help strings hold literal [brackets] (gen:<family>[?n=<size>])
)

# (command name, module defining `command`), in workflow order.
COMMANDS = [
    ("importance", "scaleot.recipes.importance"),
    ("emulate", "scaleot.recipes.emulate"),
    ("finetune", "scaleot.recipes.finetune"),
    ("plug", "scaleot.recipes.plug"),
    ("evaluate", "scaleot.recipes.evaluate"),
    ("audit", "scaleot.recipes.audit"),
    ("run", "scaleot.recipes.run"),
    ("fetch", "scaleot.recipes.fetch"),
    ("doctor", "scaleot.recipes.doctor"),
]

for _name, _module in COMMANDS:  # an import error here is a bug: let it surface
    _mod = importlib.import_module(_module)
    app.command(_name, help=(_mod.__doc__ or "").strip().splitlines()[0])(_mod.command)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning :class:`ScaleOTError` into a one-line exit 2."""
    logging.basicConfig(level=os.environ.get("SCALEOT_LOGLEVEL", "WARNING"), format="%(message)s")
    try:
        rc = app(args=argv, standalone_mode=False)
    except ScaleOTError as e:
        print(f"scaleot: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("scaleot: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        # typer >= 0.20 vendors click (typer._click), so match click's exception shapes
        # instead of importing either private module.
        kind = type(e).__name__
        if kind == "Exit":
            return getattr(e, "exit_code", 0)
        if kind == "Abort":
            return 1
        if isinstance(e, OSError) or (kind == "SafetensorError" and "I/O error" in str(e)):
            # The machine, not the input (a full disk, a permission): one line, exit 1. Outputs are
            # written to a private folder and renamed when complete, so nothing is half-written.
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            print(f"scaleot: error: {e}", file=sys.stderr)
            return 1
        if hasattr(e, "format_message"):  # UsageError, NoSuchOption, BadParameter...
            message = e.format_message()
            if message:  # an empty message means click already printed the help
                print(f"scaleot: error: {message}", file=sys.stderr)
            return 2
        raise
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
