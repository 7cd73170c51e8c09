"""Fine-tune on a task: the adapter through an emulator (data owner), or the full model (FT row).

Recipe shape: ``setup -> train -> save``.

- ``--emulator DIR``: the data owner's step (METHOD.md section 1, step 3). Only the
  emulator's adapter blocks train; embeddings, final norm, head and the emulator's middle
  are frozen. The output adapter names its tensors by full-model block index and records
  the emulator's and the base model's fingerprints, so ``scaleot plug`` can check it.
- ``--model M``: the FT row, the same loop on the full model (all blocks train, or the
  sandwich with ``--blocks sandwich``).

Writes ``OUT/`` (the tuned adapter, see :mod:`scaleot.finetune.adapter_io`) and keeps
checkpoints, ``log.jsonl`` and TensorBoard events in ``--run-dir`` (default ``OUT.run``).
Runs under ``accelerate launch`` for data parallel. Raises :class:`ScaleOTError` for a
missing/tampered emulator, unknown task or method, bad options, or ``--resume`` without a
checkpoint.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from scaleot.data import load_task
from scaleot.errors import ScaleOTError
from scaleot.finetune import (
    FinetuneConfig,
    apply_lora,
    freeze_all_but_blocks,
    sandwich_positions,
    train,
)
from scaleot.finetune.adapter_io import write_adapter
from scaleot.finetune.trainable import count_params
from scaleot.models import fingerprint_model, load_model, num_blocks


class FinetuneRecipe:
    """One fine-tuning job; ``run()`` = ``setup()``, ``train()``, ``save()``."""

    def __init__(self, out: str | Path, task: str, config: FinetuneConfig, emulator: str | Path | None = None,
                 model: str | None = None, blocks: str = "all", n_bottom: int = 2, n_top: int = 2,
                 run_dir: str | Path | None = None, resume: bool = False, progress: bool = True,
                 overwrite: bool = False):
        if (emulator is None) == (model is None):
            raise ScaleOTError("give exactly one of --emulator DIR (data owner) or --model M (FT row)")
        if blocks not in ("all", "sandwich"):
            raise ScaleOTError(f"--blocks must be all or sandwich (got {blocks!r})")
        self.out, self.task, self.config = Path(out), task, config
        self.emulator, self.model_name = emulator, model
        self.blocks, self.n_bottom, self.n_top = blocks, n_bottom, n_top
        self.run_dir = Path(run_dir) if run_dir else self.out.with_name(self.out.name + ".run")
        self.resume, self.progress, self.overwrite = resume, progress, overwrite
        self.check_paths()

    def check_paths(self) -> None:
        """Refuse a destructive ``--out`` or ``--run-dir`` before any work (:mod:`scaleot.outputs`)."""
        from scaleot.outputs import check_output, check_run_dir, local_path

        if self.n_bottom < 0 or self.n_top < 0 or (self.blocks == "sandwich" and self.n_bottom + self.n_top < 1):
            raise ScaleOTError(f"--n-bottom and --n-top must be >= 0 with at least one adapter block "
                               f"(got {self.n_bottom}, {self.n_top})")
        inputs = [self.emulator, local_path(self.model_name), local_path(self.task)]
        check_output(self.out, "adapter", overwrite=self.overwrite, inputs=[*inputs, self.run_dir])
        check_run_dir(self.run_dir, resume=self.resume, overwrite=self.overwrite, inputs=[*inputs, self.out])

    def setup(self) -> None:
        t0 = time.perf_counter()
        self.splits = load_task(self.task, self.config.split_config())
        if self.emulator is not None:
            from scaleot.emulator import load_emulator

            bundle = load_emulator(self.emulator, device=self.config.device)
            self.model, self.tokenizer = bundle.model, bundle.tokenizer
            self.positions, self.sources = list(bundle.adapter_positions), list(bundle.adapter_sources)
            self.identity = {"base_model": bundle.info.get("base_model"),
                             "base_fingerprint": bundle.info["base_fingerprint"],
                             "emulator_fingerprint": bundle.fingerprint,
                             "emulator_method": bundle.info.get("method"),
                             "adapter": bundle.info.get("adapter")}
        else:
            self.model, self.tokenizer = load_model(self.model_name, device=self.config.device)
            n = num_blocks(self.model)
            if self.blocks == "sandwich":
                if self.n_bottom + self.n_top > n:
                    raise ScaleOTError(f"adapter {self.n_bottom}+{self.n_top} exceeds the model's {n} blocks")
                self.positions = sandwich_positions(n, self.n_bottom, self.n_top)
            else:
                self.positions = list(range(n))
            self.sources = list(self.positions)
            self.identity = {"base_model": self.model_name, "base_fingerprint": fingerprint_model(self.model),
                             "emulator_fingerprint": None, "emulator_method": None,
                             "adapter": {"n_bottom": self.n_bottom, "n_top": self.n_top}
                             if self.blocks == "sandwich" else {"all_blocks": len(self.positions)}}
        self.peft_model = None
        if self.config.method == "full":
            freeze_all_but_blocks(self.model, self.positions)
        else:  # lora, and ist (sparse LoRA) whose controller the IST package provides
            self.peft_model = apply_lora(self.model, self.positions, self.config)
        self.controller = None
        if self.config.method == "ist":
            from scaleot.tuners import ist

            make = getattr(ist, "make_controller", None)
            if make is None:
                raise ScaleOTError("--method ist is not wired into scaleot finetune yet "
                                   "(scaleot.tuners.ist.make_controller is missing)")
            self.controller = make(self.peft_model, self.positions, self.config, tokenizer=self.tokenizer)
        self.params = count_params(self.model)
        self.setup_seconds = time.perf_counter() - t0
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def provenance(self) -> dict:
        """What this run trains on; every checkpoint records it and ``--resume`` checks it."""
        from scaleot.validate.provenance import task_provenance

        return dict(task_provenance(self.splits), base_fingerprint=self.identity["base_fingerprint"],
                    emulator_fingerprint=self.identity["emulator_fingerprint"],
                    positions=list(self.positions), sources=list(self.sources))

    def train(self) -> None:
        self.result = train(self.model, self.tokenizer, self.splits, self.config, self.run_dir,
                            resume=self.resume, step_controller=self.controller, progress=self.progress,
                            provenance=self.provenance())

    def save(self) -> Path:
        from scaleot.disclosure import public_info, public_task
        from scaleot.outputs import check_output

        info = dict(self.identity, method=self.config.method, options=self.config.to_dict(),
                    data=dict(self.splits.describe(), **public_task(self.task)), validation=self.result.validation, best=self.result.best,
                    steps=self.result.steps, params=self.params,
                    timing=dict(self.result.timing, setup_seconds=round(self.setup_seconds, 2)))
        extra = None
        if self.controller is not None:  # IST: its layer importance travels with the adapter
            from scaleot.tuners.ist import save_importance

            def extra(folder: Path) -> None:
                save_importance(self.controller.controller, folder)

        check_output(self.out, "adapter", overwrite=self.overwrite)  # still safe after training
        return write_adapter(self.out, self.model, self.positions, self.sources, public_info(info), self.peft_model,
                             extra_writer=extra)

    def run(self) -> Path:
        self.setup()
        self.train()
        return self.save()


def run_finetune(out: str | Path, task: str, config: FinetuneConfig | None = None, **kwargs) -> Path:
    """Python API: fine-tune and write the adapter folder; see :class:`FinetuneRecipe`."""
    return FinetuneRecipe(out, task, config or FinetuneConfig(), **kwargs).run()


def command(
    task: Annotated[str, typer.Option(help="task: bigbench:<name>[/<sub>] or a .jsonl file")],
    out: Annotated[Path, typer.Option(help="output adapter folder")],
    emulator: Annotated[Path | None, typer.Option(help="emulator bundle (data owner: tune its adapter)")] = None,
    model: Annotated[str | None, typer.Option(help="full model to tune directly (the FT row)")] = None,
    method: Annotated[str, typer.Option(help="full, lora (or ist once installed)")] = "full",
    epochs: Annotated[int, typer.Option(help="passes over the training split")] = 1,
    steps: Annotated[int | None, typer.Option(help="cap on optimizer steps")] = None,
    lr: Annotated[float | None, typer.Option(help="peak learning rate (default 1e-4 full, 1e-3 lora)")] = None,
    batch_size: Annotated[int, typer.Option(help="examples per micro-batch")] = 8,
    grad_accum: Annotated[int, typer.Option(help="micro-batches per optimizer step")] = 1,
    max_length: Annotated[int, typer.Option(help="max tokens per example")] = 256,
    schedule: Annotated[str, typer.Option(help="linear, cosine, constant, constant_with_warmup")] = "linear",
    warmup_ratio: Annotated[float, typer.Option(help="warmup fraction of the steps")] = 0.06,
    n_train: Annotated[int | None, typer.Option(help="training examples (default: all left)")] = None,
    n_val: Annotated[int, typer.Option(help="validation examples")] = 100,
    n_test: Annotated[int, typer.Option(help="test examples held out (never trained on)")] = 500,
    split_seed: Annotated[int, typer.Option(help="seed of the task split")] = 0,
    seed: Annotated[int, typer.Option(help="seed of data order and LoRA init")] = 0,
    lora_rank: Annotated[int, typer.Option(help="LoRA rank")] = 8,
    bf16: Annotated[bool, typer.Option(help="bf16 autocast (fp32 master weights)")] = False,
    blocks: Annotated[str, typer.Option(help="with --model: all or sandwich")] = "all",
    n_bottom: Annotated[int, typer.Option(help="with --blocks sandwich: bottom adapter blocks")] = 2,
    n_top: Annotated[int, typer.Option(help="with --blocks sandwich: top adapter blocks")] = 2,
    checkpoint_every: Annotated[int, typer.Option(help="checkpoint every N steps (0: each epoch)")] = 0,
    run_dir: Annotated[Path | None, typer.Option(help="checkpoints and logs (default OUT.run)")] = None,
    resume: Annotated[bool, typer.Option(help="continue from the newest checkpoint")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing adapter at --out and "
                                            "start the run folder over")] = False,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda")] = None,
) -> None:
    config = FinetuneConfig(method=method, lr=lr, epochs=epochs, max_steps=steps, batch_size=batch_size,
                            grad_accum=grad_accum, max_length=max_length, schedule=schedule,
                            warmup_ratio=warmup_ratio, n_train=n_train, n_val=n_val, n_test=n_test,
                            split_seed=split_seed, seed=seed, lora_rank=lora_rank, lora_alpha=2.0 * lora_rank,
                            bf16=bf16, checkpoint_every=checkpoint_every, device=device)
    path = run_finetune(out, task, config, emulator=emulator, model=model, blocks=blocks, n_bottom=n_bottom,
                        n_top=n_top, run_dir=run_dir, resume=resume, overwrite=overwrite)
    typer.echo(f"adapter written to {path}")
