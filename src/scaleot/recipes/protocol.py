"""The one shape every workflow step has: a :class:`Recipe` (a ``typing.Protocol``, no base class).

A recipe is built from one config object (``ImportanceRecipe(ImportanceRun(...))``: the
step's inputs, its method options and the :class:`~scaleot.recipes.run_options.RunOptions`
shared by every command) and goes ``check_paths -> setup -> execute -> save``:

- ``check_paths``: refuse a destructive or missing path before any work (cheap, no model);
- ``setup``: load what the step needs (model, data, bundle);
- ``execute``: the step's work (train, build, score, attack);
- ``save``: write the output (atomically, with its manifest) and return where it is.

:func:`run_recipe` runs those four in order; ``scaleot <step>`` and ``scaleot run``
(:mod:`scaleot.recipes.run_steps`) both call it. ``fetch`` and ``doctor`` are utilities
that write no artifact, so they are plain functions, not recipes.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Recipe(Protocol):
    """One workflow step, constructed as ``Recipe(config)`` from its one config object."""

    def check_paths(self) -> None:
        """Refuse a bad ``--out`` (or other path) before loading anything.

        Raises:
            ScaleOTError: the path is an input, another artifact, or exists without
                ``--overwrite``/``--resume``.
        """

    def setup(self) -> None:
        """Load the model, data and inputs the step needs."""

    def execute(self) -> None:
        """Do the step's work (train, build, score, attack), keeping the results on ``self``."""

    def save(self) -> Any:
        """Write the output; return its path (or the document written)."""


def run_recipe(recipe: Recipe) -> Any:
    """Run one step: ``check_paths``, ``setup``, ``execute``, then return ``save()``."""
    recipe.check_paths()
    recipe.setup()
    recipe.execute()
    return recipe.save()
