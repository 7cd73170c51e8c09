"""The fine-tuning loop shared by the data owner (emulator) and the FT row (full model).

Features: AdamW over the trainable weights only, a ``transformers.get_scheduler`` schedule
with warmup, gradient accumulation, dynamic padding (:class:`scaleot.data.PadCollator`),
loss on answer tokens only with the LM head applied at answer positions only (the 49k
vocabulary head is the largest single matmul of a small model), optional bf16 autocast,
data parallel through ``accelerate`` (run under ``accelerate launch``), a tqdm bar,
TensorBoard + JSONL logs, validation accuracy after each epoch with the best weights
kept, and pickle-free checkpoints for ``--resume`` (:mod:`scaleot.run_folder`: a resume
made with other options or on other inputs is refused).

A *step controller* (IST, docs/method.md section 4) can steer which weights train: any object
with ``before_step(step)``, ``after_backward(step)``, ``after_step(step)``,
``state_dict() -> dict`` and ``load_state_dict(dict)``; its state is checkpointed. If it
has ``bind(optimizer=..., loss_model=..., splits=...)`` the loop calls it once the optimizer
exists (IST keeps unselected layers' optimizer state off the device and probes a held-out batch).
If it has ``log_record() -> dict[str, float]`` the loop adds it to each step's log record
(``log.jsonl`` and TensorBoard; IST's score trajectory). Under DDP a controller's
unselected weights are left out of the step's graph, so the loop asks DDP to find unused
parameters (they then keep no gradient).
"""

from __future__ import annotations

import math
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from scaleot.data import IGNORE_INDEX, MCExample, PadCollator, TaskSplits, encode_example
from scaleot.data_owner.finetune.config import FinetuneConfig
from scaleot.errors import ScaleOTError
from scaleot.exchange.schemas import FinetuneStateDoc, validate_doc
from scaleot.models import arch_spec, get_submodule
from scaleot.models.device import autocast_used, bf16_autocast, wants_bf16
from scaleot.progress import progress_bar
from scaleot.run_folder import RunFolder


class StepController(Protocol):
    """Hooks a sparse tuner (IST) uses to choose what trains at each step."""

    def before_step(self, step: int) -> None: ...
    def after_backward(self, step: int) -> None: ...
    def after_step(self, step: int) -> None: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


class AnswerLoss(nn.Module):
    """Wraps a causal LM: ``forward(input_ids, attention_mask, labels) -> mean answer-token NLL``.

    The decoder runs on every token; the head only on positions whose next token is an
    answer token (``labels != -100``), so the head costs ``N_answer x V`` not ``B x T x V``.

    Shapes: ``input_ids``, ``attention_mask``, ``labels``: ``[B, T]``; returns a scalar.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.head = get_submodule(model, arch_spec(model).head)

    def answer_hidden(self, input_ids, attention_mask, labels) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != IGNORE_INDEX
        return hidden[:, :-1][keep], targets[keep]  # [N, H], [N]

    def forward(self, input_ids, attention_mask, labels) -> torch.Tensor:
        h, y = self.answer_hidden(input_ids, attention_mask, labels)
        return F.cross_entropy(self.head(h).float(), y)


def mc_accuracy(model: nn.Module, tokenizer, examples: list[MCExample], max_length: int | None = None,
                batch_size: int = 16, bf16: bool = False) -> float:
    """Fraction of ``examples`` whose gold choice has the highest summed log-likelihood (lm-eval's ``acc``).

    The validation pass of each epoch, scored by the same context-sharing scorer as
    ``scaleot evaluate`` (:func:`scaleot.evaluation.fast_mc.score_examples`: lm-eval's
    tokenisation, one context pass per example).

    Args:
        max_length: context window in tokens (default: the model's, as lm-eval uses).
        batch_size: examples per batch.
        bf16: bf16 autocast where it is fast.
    """
    from scaleot.evaluation.fast_mc import predictions, score_examples

    if not examples:
        return float("nan")
    scored = score_examples(model, tokenizer, examples, "validation", bf16=bf16, batch_size=batch_size,
                            window=max_length)
    hits = sum(predictions(lls, ex.choices)[0] == ex.label
               for lls, ex in zip(scored.loglikelihoods, examples, strict=True))
    return hits / len(examples)


@dataclass
class TrainResult:
    """What a run produced: best weights (trainable names), curves, counts and costs."""

    weights: dict[str, torch.Tensor]
    validation: list[dict]
    best: dict
    steps: int
    timing: dict = field(default_factory=dict)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def _check_answer_tokens(encoded: list[dict], task: str) -> None:
    """Every training example has an answer token the loss can predict.

    The first token of a sequence is never predicted, so an example whose context is empty
    (and no leading special token opens it) and whose answer is one token teaches nothing;
    a batch of only such examples would make the loss 0/0. Refused here, before training.
    """
    empty = sum(1 for e in encoded if all(y == IGNORE_INDEX for y in e["labels"][1:]))
    if empty:
        raise ScaleOTError(f"task {task}: {empty} of {len(encoded)} training examples leave no answer token to "
                           "learn (an empty context before a one-token answer); give every example a context")


class _Run:
    """The state of one fine-tuning run; :func:`train` drives it (setup -> epochs -> validate -> save)."""

    def __init__(self, model: nn.Module, tokenizer, splits: TaskSplits, config: FinetuneConfig,
                 run_dir: str | Path, controller: StepController | None, progress: bool,
                 provenance: dict | None = None, device: str | None = None):
        from accelerate import Accelerator, DistributedDataParallelKwargs
        from transformers import get_scheduler

        self.model, self.tokenizer, self.splits, self.config = model, tokenizer, splits, config
        self.controller, self.progress = controller, progress
        # A step controller (IST) leaves some trainable weights out of a step's graph: DDP must look for them.
        ddp = [DistributedDataParallelKwargs(find_unused_parameters=True)] if controller is not None else None
        self.accelerator = Accelerator(cpu=device == "cpu", kwargs_handlers=ddp)
        self.device = self.accelerator.device
        self.bf16 = wants_bf16(config.autocast, self.device)
        model.to(self.device)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        if not self.params:
            raise ScaleOTError("nothing to train: no parameter requires a gradient")
        self.encoded = [encode_example(ex, tokenizer, config.max_length) for ex in splits.train]
        _check_answer_tokens(self.encoded, splits.name)
        self.collate = PadCollator(tokenizer.pad_token_id)
        self.world, self.rank = self.accelerator.num_processes, self.accelerator.process_index
        self.global_batch = config.batch_size * self.world
        micro_per_epoch = math.ceil(len(self.encoded) / self.global_batch)
        self.steps_per_epoch = max(1, micro_per_epoch // config.grad_accum)
        self.total_steps = self.steps_per_epoch * config.epochs
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)
        optimizer = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = get_scheduler(config.schedule, optimizer,
                                       num_warmup_steps=int(config.warmup_ratio * self.total_steps),
                                       num_training_steps=self.total_steps)
        self.loss_model, self.optimizer = self.accelerator.prepare(AnswerLoss(model), optimizer)
        if controller is not None and hasattr(controller, "bind"):
            controller.bind(optimizer=self.optimizer, loss_model=self.loss_model, splits=splits)
        self.step, self.epoch, self.micro_done, self.validation = 0, 0, 0, []
        self.best = {"val_acc": -1.0, "step": 0, "epoch": 0}
        self.best_weights = _trainable_state(model)
        self.folder = RunFolder(run_dir, config.record(device), may_change=("device", "checkpoint_every"),
                                main=self.accelerator.is_main_process, provenance=provenance)
        self.tokens, self.train_time = 0, 0.0

    def resume(self) -> None:
        """Continue from the newest checkpoint (weights, optimizer, schedule, RNG, controller)."""
        from scaleot.validate.files import load_safetensors

        weights, state = self.folder.resume(self.optimizer)
        ckpt = f"{self.folder.path / 'checkpoints'} (step {state.get('step')})"
        validate_doc(FinetuneStateDoc, state, f"checkpoint state {ckpt}")
        current = dict(self.model.named_parameters())
        if set(weights) != set(self.names) or any(weights[n].shape != current[n].shape for n in self.names):
            raise ScaleOTError(f"--resume: checkpoint {ckpt} holds other weights than this run trains")
        with torch.no_grad():
            for n, t in weights.items():
                current[n].copy_(t)
        try:
            self.scheduler.load_state_dict(state["scheduler"])
        except (KeyError, TypeError, ValueError) as e:
            raise ScaleOTError(f"--resume: checkpoint {ckpt} has a damaged scheduler state ({e})") from None
        self.step, self.epoch, self.micro_done = state["step"], state["epoch"], state["micro_done"]
        self.validation, self.best = state["validation"], state["best"]
        best = self.folder.path / "best.safetensors"
        if best.is_file():
            self.best_weights = load_safetensors(best)
            if set(self.best_weights) != set(self.names):
                raise ScaleOTError(f"--resume: {best} holds other weights than this run trains")
        if self.controller is not None and "controller" in state:
            try:
                self.controller.load_state_dict(state["controller"])
            except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
                raise ScaleOTError(f"--resume: checkpoint {ckpt} has a damaged IST state ({e})") from None

    def checkpoint(self) -> None:
        self.accelerator.wait_for_everyone()
        state = {"epoch": self.epoch, "micro_done": self.micro_done, "validation": self.validation,
                 "best": self.best, "scheduler": self.scheduler.state_dict()}
        if self.controller is not None:
            state["controller"] = self.controller.state_dict()
        if self.folder.main:
            self.folder.save(self.step, _trainable_state(self.model), self.optimizer, state)

    def validate(self) -> None:
        """Validation accuracy; the best weights so far are kept (and written for resume)."""
        cfg = self.config
        acc = mc_accuracy(self.model, self.tokenizer, self.splits.val[: cfg.val_limit],
                          batch_size=cfg.eval_batch_size, bf16=self.bf16)
        self.validation.append({"epoch": self.epoch, "step": self.step, "val_acc": acc})
        self.folder.log({"step": self.step, "epoch": self.epoch, "val_acc": float(acc)})
        if acc > self.best["val_acc"]:
            self.best = {"val_acc": acc, "step": self.step, "epoch": self.epoch}
            self.best_weights = _trainable_state(self.model)
            if self.folder.main:
                from safetensors.torch import save_file

                save_file(self.best_weights, str(self.folder.path / "best.safetensors"))

    def micro_step(self, indices: list[int]) -> torch.Tensor:
        """Forward and backward of one micro-batch (this process's share); returns the loss."""
        if self.micro_done % self.config.grad_accum == 0 and self.controller is not None:
            self.controller.before_step(self.step)
        batch = self.collate([self.encoded[i] for i in indices[self.rank::self.world]] or [self.encoded[0]])
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with bf16_autocast(self.bf16, self.device):
            loss = self.loss_model(**batch) / self.config.grad_accum
        if not torch.isfinite(loss.detach()).all():
            raise ScaleOTError(f"the training loss became {loss.item()} at step {self.step + 1} "
                               "(diverged; lower --lr); nothing was written")
        self.accelerator.backward(loss)
        self.tokens += int(batch["attention_mask"].sum()) * self.world
        self.micro_done += 1
        return loss

    def optimizer_step(self, loss: torch.Tensor, bar) -> None:
        cfg = self.config
        if self.controller is not None:
            self.controller.after_backward(self.step)
        if cfg.max_grad_norm > 0:
            self.accelerator.clip_grad_norm_(self.params, cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.controller is not None:
            self.controller.after_step(self.step)
        self.step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item() * cfg.grad_accum:.3f}")
        record = {"step": self.step, "epoch": self.epoch, "loss": loss.item() * cfg.grad_accum,
                  "lr": self.scheduler.get_last_lr()[0]}
        if self.controller is not None and hasattr(self.controller, "log_record"):
            record.update(self.controller.log_record())  # IST: the score trajectory
        self.folder.log(record)
        if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.step < self.total_steps:
            self.checkpoint()

    def epoch_batches(self) -> list[list[int]]:
        """This epoch's micro-batches (global indices): a permutation seeded by ``seed + epoch``."""
        gen = torch.Generator().manual_seed(self.config.seed + self.epoch)
        order = torch.randperm(len(self.encoded), generator=gen).tolist()
        micro = [order[i:i + self.global_batch] for i in range(0, len(order), self.global_batch)]
        return micro[: self.steps_per_epoch * self.config.grad_accum]

    def run_epoch(self, bar) -> None:
        micro = self.epoch_batches()
        while self.micro_done < len(micro) and self.step < self.total_steps:
            t0 = time.perf_counter()
            loss = self.micro_step(micro[self.micro_done])
            if self.micro_done % self.config.grad_accum == 0:
                self.optimizer_step(loss, bar)
            self.train_time += time.perf_counter() - t0

    def result(self) -> TrainResult:
        """Put the best weights back into the model; what the run produced."""
        timing = {"train_seconds": round(self.train_time, 3), "tokens": self.tokens,
                  "tokens_per_second": round(self.tokens / self.train_time, 1) if self.train_time else None,
                  "peak_memory_mb": round(_peak_memory_mb(self.device), 1), "processes": self.world,
                  "autocast": autocast_used(self.bf16, self.device)}
        with torch.no_grad():
            current = dict(self.model.named_parameters())
            for n in self.names:
                current[n].copy_(self.best_weights[n])
        return TrainResult(self.best_weights, self.validation, self.best, self.step, timing)


def train(
    model: nn.Module,
    tokenizer,
    splits: TaskSplits,
    config: FinetuneConfig,
    run_dir: str | Path,
    resume: bool = False,
    step_controller: StepController | None = None,
    progress: bool = True,
    provenance: dict | None = None,
    device: str | None = None,
) -> TrainResult:
    """Fine-tune the trainable weights of ``model`` on ``splits.train``; score ``splits.val``.

    Setup, then per epoch: the micro-batches of a seeded permutation, an optimizer step
    every ``grad_accum`` of them, validation accuracy and a checkpoint at the end; then
    the best-validation weights go back into ``model``.

    Args:
        model: a causal LM whose trainable parameters (``requires_grad``) are already chosen
            (see :mod:`scaleot.data_owner.finetune.trainable`); LoRA layers already injected.
        tokenizer: its tokenizer (with a pad token).
        splits: the task; only ``train`` and ``val`` are read.
        config: the options.
        run_dir: the run folder (:class:`scaleot.run_folder.RunFolder`: checkpoints,
            ``log.jsonl``, ``tb/``, ``best.safetensors``; never the adapter folder).
        resume: continue from the newest checkpoint in ``run_dir``.
        step_controller: optional IST-style hooks (see module docstring).
        provenance: what this run trains on (task, model or emulator, adapter blocks);
            recorded in every checkpoint and checked by ``resume``
            (:mod:`scaleot.provenance`).
        device: the run-level ``--device``: ``"cpu"`` keeps the run on the CPU; anything
            else lets ``accelerate`` place it. Recorded in the run folder's options, and
            one of the options a ``resume`` may change.

    Returns:
        :class:`TrainResult` with the best-validation weights.

    Raises:
        ScaleOTError: ``resume`` with no checkpoint, or a checkpoint from other options or
            other inputs; a loss that becomes NaN or infinite.
    """
    run = _Run(model, tokenizer, splits, config, run_dir, step_controller, progress, provenance, device)
    if resume:
        run.resume()
    run.folder.open_log(run.step if resume else None)
    bar = progress_bar(run.total_steps, "finetune", progress and run.folder.main, unit="step", initial=run.step)
    model.train()
    try:
        while run.step < run.total_steps and run.epoch < config.epochs:
            run.run_epoch(bar)
            run.validate()
            run.epoch += 1
            run.micro_done = 0
            run.checkpoint()
        bar.close()
        if not run.validation or run.validation[-1]["step"] != run.step:
            run.validate()
    finally:
        run.folder.close()
    return run.result()
