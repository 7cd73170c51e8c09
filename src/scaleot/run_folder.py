"""One training run's folder, shared by every training loop (stage 1, distillation, fine-tuning).

Layout::

    <run>/checkpoints/step-<N>/   pickle-free checkpoints (:mod:`scaleot.checkpoint`)
    <run>/log.jsonl               one JSON record per step (each with a ``"step"``)
    <run>/tb/                     TensorBoard events of the same scalars

A :class:`RunFolder` is made with the *options* of the run (a JSON-able dict) and its
*provenance* (fingerprints of what it trains on: task, corpus, model or emulator, adapter
split; :mod:`scaleot.provenance`). Every checkpoint records both;
:meth:`RunFolder.resume` refuses a checkpoint made with other options (except the keys in
``may_change``, e.g. ``steps`` to extend a finished run) or on other inputs, so a resumed
run is the run that was interrupted. Checkpoint pruning only touches checkpoints of the
same provenance. On resume the log drops the records past
the checkpoint and TensorBoard purges them, so both read like one uninterrupted run.
Only the main process (``main=True``) writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch

from scaleot.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from scaleot.errors import ScaleOTError


def _jsonable(options: dict) -> dict:
    return json.loads(json.dumps(options, default=str))


class RunFolder:
    """Checkpoints, ``log.jsonl`` and ``tb/`` of one run, tied to the run's options.

    Args:
        path: the run folder (created).
        options: what shaped the run; recorded in every checkpoint and compared on resume.
        may_change: option keys a resume may change (``steps``, ``checkpoint_every``...).
        main: whether this process writes (rank 0 under data parallel).
        provenance: what the run trains on (task, corpus, model, emulator, adapter split);
            recorded in every checkpoint and checked on resume.
    """

    def __init__(self, path: str | Path, options: dict, may_change: Iterable[str] = (), main: bool = True,
                 provenance: dict | None = None):
        self.path, self.options, self.main = Path(path), _jsonable(options), main
        self.provenance = _jsonable(provenance or {})
        self.may_change = set(may_change)
        self._file = self._tb = None
        if main:
            self.path.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ checkpoints
    def save(self, step: int, weights: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer | None,
             state: dict | None = None) -> Path | None:
        """Write checkpoint ``step`` (main process only) with the options and provenance added to ``state``."""
        if not self.main:
            return None
        return save_checkpoint(self.path, step, weights, optimizer,
                               dict(state or {}, options=self.options, provenance=self.provenance))

    def resume(self, optimizer: torch.optim.Optimizer | None = None, required: bool = True):
        """Load the newest checkpoint: ``(weights, state)``, or None if there is none.

        Restores ``optimizer`` and the RNG states in place.

        Raises:
            ScaleOTError: no checkpoint while ``required``, a damaged one, or one made with
                other options or on other inputs.
        """
        from scaleot.provenance import check_resume
        from scaleot.validate.files import read_json_object

        ckpt = latest_checkpoint(self.path)
        if ckpt is None:
            if required:
                raise ScaleOTError(f"--resume: no checkpoint in {self.path / 'checkpoints'}")
            return None
        state = read_json_object(ckpt / "state.json", "checkpoint state")
        theirs = state.get("options")
        if not isinstance(theirs, dict):
            raise ScaleOTError(f"cannot resume from {ckpt}: it records no options; use a new --out")
        keys = sorted((set(self.options) | set(theirs)) - self.may_change)
        diff = [k for k in keys if self.options.get(k) != theirs.get(k)]
        check_resume(state, self.provenance, ckpt, option_diff=diff)  # names every difference at once
        return load_checkpoint(ckpt, optimizer)

    # ------------------------------------------------------------------ logs
    def open_log(self, resume_step: int | None = None) -> None:
        """Start ``log.jsonl`` and ``tb/``: fresh, or continuing after ``resume_step``."""
        if not self.main:
            return
        from torch.utils.tensorboard import SummaryWriter

        path = self.path / "log.jsonl"
        if resume_step is not None and path.is_file():
            kept = [ln for ln in path.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= resume_step]
            path.write_text("".join(ln + "\n" for ln in kept))
        elif path.exists():
            path.unlink()
        self._file = open(path, "a")  # noqa: SIM115 (closed in close())
        self._tb = SummaryWriter(str(self.path / "tb"),
                                 purge_step=None if resume_step is None else resume_step + 1)

    def log(self, record: dict, scalars: dict[str, float] | None = None) -> None:
        """Append ``record`` to ``log.jsonl``; ``scalars`` (default: the record's float
        values) go to TensorBoard at ``record["step"]``."""
        if self._file is None:
            return
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if scalars is None:
            scalars = {k: v for k, v in record.items() if isinstance(v, float) and k not in ("step", "epoch")}
        for tag, value in scalars.items():
            self._tb.add_scalar(tag, value, record["step"])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._tb.close()
            self._file = self._tb = None
