"""IST's scores as the adapter carries them: the record of a controller, saved beside the adapter.

The files' format is :mod:`scaleot.exchange.ist_scores`; this module turns an
:class:`~scaleot.data_owner.tuners.ist.controller.ISTController` into that record.
"""

from __future__ import annotations

from pathlib import Path

from scaleot.data_owner.tuners.ist.controller import ISTController
from scaleot.exchange.ist_scores import write_ist_scores


def importance_record(controller: ISTController) -> dict:
    imp = controller.importance()
    return {
        "format_version": 1,
        "config": controller.config.to_dict(),
        "blocks": controller.blocks,
        "scores": {str(b): s for b, s in controller.scores().items()},
        "importance": {str(b): v for b, v in imp.items()},
        "counts": {str(b): int(c) for b, c in zip(controller.blocks, controller.counts, strict=True)},
        "step": controller.step,
        "ranking": sorted(imp, key=lambda b: -imp[b]),
        "trajectory": {"steps": [step for step, _ in controller.history],
                       "scores": {str(b): [row[i] for _, row in controller.history]
                                  for i, b in enumerate(controller.blocks)}},
    }


def save_importance(controller: ISTController, folder: str | Path, plot: bool = True) -> dict:
    """Write the controller's scores and state into ``folder`` (:func:`~scaleot.exchange.ist_scores.write_ist_scores`)."""
    return write_ist_scores(folder, importance_record(controller), controller.state_dict(), plot=plot)
