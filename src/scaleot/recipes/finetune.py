"""Fine-tune on a task: the adapter through an emulator (data owner), or the full model (FT row).

Recipe shape (:class:`~scaleot.recipes.protocol.Recipe`): :class:`FinetuneRecipe` reads one
:class:`FinetuneRun`, ``check_paths -> setup -> execute (train) -> save``.

- ``--emulator DIR``: the data owner's step (docs/method.md section 1, step 3). Only the
  emulator's adapter blocks train; embeddings, final norm, head and the emulator's middle
  are frozen. The output adapter names its tensors by full-model block index and records
  the emulator's and the base model's fingerprints, so ``scaleot plug`` can check it.
- ``--model M``: the FT row, the same loop on the full model (all blocks train, or the
  sandwich with ``--blocks sandwich``).

Writes ``OUT/`` (the tuned adapter, see :mod:`scaleot.exchange.adapter`) and keeps
checkpoints, ``log.jsonl`` and TensorBoard events in ``--run-dir`` (default ``OUT.run``).
The adapter records a built-in task by its public name (``gen:``, ``pkg:``, ``bigbench:``);
a local task file or folder, or an ``hf:`` dataset, is recorded as ``"undisclosed"`` unless
``--disclose-task`` (then a file by its name and sha256, never its path): see
:mod:`scaleot.exchange.disclosure`. A task whose test examples also appear among its training or
validation examples is warned about (the test accuracy would measure memory).

Runs under ``accelerate launch`` for data parallel. Raises :class:`ScaleOTError` for a
missing/tampered emulator, unknown task or method, bad options, or ``--resume`` without a
checkpoint.
"""

from __future__ import annotations

import logging
import time
from dataclasses import MISSING, dataclass, field
from pathlib import Path

import typer

from scaleot.data import load_task
from scaleot.data_owner.finetune import FinetuneConfig, train
from scaleot.data_owner.finetune.export import export_adapter
from scaleot.data_owner.finetune.methods import TUNING_METHODS
from scaleot.data_owner.finetune.trainable import count_params
from scaleot.errors import ScaleOTError
from scaleot.exchange.kinds import ADAPTER
from scaleot.models import fingerprint_model, load_model, num_blocks
from scaleot.recipes.options import step_command
from scaleot.recipes.protocol import run_recipe
from scaleot.recipes.run_options import RunOptions, run_field
from scaleot.split import AdapterSplit

log = logging.getLogger(__name__)


def _opt(default, help: str, **extra):
    return field(default=default, metadata={"help": help, **extra})


@dataclass(kw_only=True)
class FinetuneRun:
    """One ``scaleot finetune``: the task, the emulator (or the full model), and the tuning options.

    ``run.device`` is where the emulator (or model) loads and :func:`~scaleot.data_owner.finetune.train`
    runs; ``adapter.json`` records it among the options (:meth:`FinetuneConfig.record`).
    """

    run: RunOptions = run_field("out", "model", "resume", "overwrite", "device", required=("out",),
                                defaults={"model": None},
                                notes={"out": "the adapter folder",
                                       "model": "the full model to tune directly (the FT row), instead of "
                                                "--emulator",
                                       "resume": "the checkpoints of --run-dir",
                                       "overwrite": "the adapter, and --run-dir starts over"})
    task: str = _opt(MISSING, "task: gen:<family>[?n=<size>&seed=<seed>], pkg:<family>, a .jsonl file or dataset "
                     "folder, hf:<dataset>, bigbench:<name>[/<sub>]")
    config: FinetuneConfig = field(default_factory=FinetuneConfig, metadata={"flatten": True})
    emulator: Path | None = _opt(None, "emulator bundle (data owner: tune its adapter)")
    blocks: str = _opt("all", "with --model: all, or sandwich (the --adapter blocks)")
    adapter: str = _opt("2,2", "with --blocks sandwich: adapter blocks N_BOTTOM,N_TOP")
    run_dir: Path | None = _opt(None, "checkpoints and logs (default OUT.run)")
    disclose_task: bool = _opt(False, "record a local task file's name and sha256 (or an hf: name) in the adapter; "
                               "default: 'undisclosed' (built-in gen:/pkg:/bigbench: names are always recorded)",
                               switch=True)


class FinetuneRecipe:
    """One fine-tuning job; :func:`~scaleot.recipes.protocol.run_recipe` (or ``run()``) =
    ``check_paths()``, ``setup()``, ``execute()``, ``save()``. The constructor checks the paths
    too, so a bad ``--out`` fails before anything else."""

    def __init__(self, config: FinetuneRun):
        r = config.run
        if (config.emulator is None) == (r.model is None):
            raise ScaleOTError("give exactly one of --emulator DIR (data owner) or --model M (FT row)")
        if config.blocks not in ("all", "sandwich"):
            raise ScaleOTError(f"--blocks must be all or sandwich (got {config.blocks!r})")
        self.run_config, self.run_options = config, r
        self.out, self.task, self.config = Path(r.out), config.task, config.config
        self.device = r.device
        self.emulator, self.model_name = config.emulator, r.model
        self.blocks, self.split = config.blocks, AdapterSplit.parse(config.adapter)
        self.run_dir = Path(config.run_dir) if config.run_dir else None  # default OUT.run, once --out is a name
        self.resume, self.progress, self.overwrite = r.resume, r.progress, r.overwrite
        self.disclose_task = config.disclose_task
        self.check_paths()

    @classmethod
    def of(cls, out: str | Path, task: str, config: FinetuneConfig, emulator: str | Path | None = None,
           model: str | None = None, blocks: str = "all", adapter: AdapterSplit | str = "2,2",
           run_dir: str | Path | None = None, resume: bool = False, progress: bool = True,
           overwrite: bool = False, disclose_task: bool = False, device: str | None = None) -> FinetuneRecipe:
        """Python API: the recipe from keyword arguments (``device``: auto, cpu, cuda or cuda:N; unset: auto)."""
        run = RunOptions(out=Path(out), model=model, device=device, resume=resume, overwrite=overwrite,
                         progress=progress)
        return cls(FinetuneRun(run=run, task=task, config=config, emulator=emulator, blocks=blocks,
                               adapter=str(AdapterSplit.parse(adapter)), run_dir=run_dir,
                               disclose_task=disclose_task))

    def check_paths(self) -> None:
        """Refuse a destructive ``--out`` or ``--run-dir`` before any work (:mod:`scaleot.outputs`)."""
        from scaleot.outputs import check_output, check_run_dir, local_path

        if self.blocks == "sandwich" and self.split.n_bottom + self.split.n_top < 1:
            raise ScaleOTError(f"--adapter needs at least one adapter block with --blocks sandwich (got {self.split})")
        inputs = [self.emulator, local_path(self.model_name), local_path(self.task)]
        check_output(self.out, ADAPTER, overwrite=self.overwrite, inputs=[*inputs, self.run_dir])
        if self.run_dir is None:
            self.run_dir = self.out.with_name(self.out.name + ".run")
        check_run_dir(self.run_dir, resume=self.resume, overwrite=self.overwrite, inputs=[*inputs, self.out])

    def setup(self) -> None:
        """Load the task, the emulator bundle (or the full model) and the tuning method."""
        t0 = time.perf_counter()
        self.splits = load_task(self.task, self.config.split_config())
        warn_repeated_examples(self.splits)
        if self.emulator is not None:
            from scaleot.models.emulator import load_emulator

            bundle = load_emulator(self.emulator, device=self.device)
            self.model, self.tokenizer = bundle.model, bundle.tokenizer
            self.positions, self.sources = list(bundle.adapter_positions), list(bundle.adapter_sources)
            self.identity = {"base_model": bundle.info.get("base_model"),
                             "base_fingerprint": bundle.info["base_fingerprint"],
                             "emulator_fingerprint": bundle.fingerprint,
                             "emulator_method": bundle.info.get("method"),
                             "adapter": bundle.info.get("adapter")}
        else:
            self.model, self.tokenizer = load_model(self.model_name, device=self.device)
            n = num_blocks(self.model)
            self.positions = self.split.positions(n) if self.blocks == "sandwich" else list(range(n))
            self.sources = list(self.positions)
            self.identity = {"base_model": self.model_name, "base_fingerprint": fingerprint_model(self.model),
                             "emulator_fingerprint": None, "emulator_method": None,
                             "adapter": self.split.to_dict()
                             if self.blocks == "sandwich" else {"all_blocks": len(self.positions)}}
        method = TUNING_METHODS[self.config.method]
        self.peft_model, self.controller = method.prepare(self.model, self.positions, self.config, self.tokenizer)
        self.params = count_params(self.model)
        self.setup_seconds = time.perf_counter() - t0
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def provenance(self) -> dict:
        """What this run trains on; every checkpoint records it and ``--resume`` checks it."""
        from scaleot.provenance import task_provenance

        return dict(task_provenance(self.splits), base_fingerprint=self.identity["base_fingerprint"],
                    emulator_fingerprint=self.identity["emulator_fingerprint"],
                    positions=list(self.positions), sources=list(self.sources))

    def execute(self) -> None:
        """Train (``self.result``)."""
        self.result = train(self.model, self.tokenizer, self.splits, self.config, self.run_dir,
                            resume=self.resume, step_controller=self.controller, progress=self.progress,
                            provenance=self.provenance(), device=self.device)

    def save(self) -> Path:
        """Write the adapter (the main process under ``accelerate launch``); returns its folder."""
        from scaleot.exchange.disclosure import public_info, public_task
        from scaleot.outputs import check_output

        info = dict(self.identity, method=self.config.method, options=self.config.record(self.device),
                    data=dict(self.splits.describe(), **public_task(self.task, self.disclose_task)), validation=self.result.validation, best=self.result.best,
                    steps=self.result.steps, params=self.params,
                    timing=dict(self.result.timing, setup_seconds=round(self.setup_seconds, 2)))
        extra = None
        if self.controller is not None:  # IST: its layer importance travels with the adapter
            from scaleot.data_owner.tuners.ist import save_importance

            def extra(folder: Path) -> None:
                save_importance(self.controller.controller, folder)

        from accelerate import PartialState

        state = PartialState()  # under accelerate launch only the main process writes; the others wait
        if state.is_main_process:
            check_output(self.out, ADAPTER, overwrite=self.overwrite)  # still safe after training
            export_adapter(self.out, self.model, self.positions, self.sources, public_info(info), self.peft_model,
                          extra_writer=extra)
        state.wait_for_everyone()
        return self.out

    def run(self) -> Path:
        """The whole recipe (:func:`~scaleot.recipes.protocol.run_recipe`); returns the adapter folder."""
        return run_recipe(self)


def warn_repeated_examples(splits) -> int:
    """Warn (log) when test examples also appear among the training or validation examples;
    returns how many do."""
    def key(e):
        return (e.context, tuple(e.choices), e.label)

    seen = {key(e) for e in [*splits.train, *splits.val]}
    repeated = sum(1 for e in splits.test if key(e) in seen)
    if repeated:
        log.warning("scaleot: warning: %d of %d test examples of %s also appear among its training or validation "
                    "examples (the task repeats examples): the test accuracy measures memory, not transfer",
                    repeated, len(splits.test), splits.name)
    return repeated


def run_finetune(out: str | Path, task: str, config: FinetuneConfig | None = None, **kwargs) -> Path:
    """Python API: fine-tune and write the adapter folder; see :meth:`FinetuneRecipe.of`."""
    return FinetuneRecipe.of(out, task, config or FinetuneConfig(), **kwargs).run()


@step_command(FinetuneRun)
def command(config: FinetuneRun) -> None:
    path = run_recipe(FinetuneRecipe(config))
    typer.echo(f"adapter written to {path}")
