"""The fine-tuning loop shared by the data owner (emulator) and the FT row (full model).

Features: AdamW over the trainable weights only, a ``transformers.get_scheduler`` schedule
with warmup, gradient accumulation, dynamic padding (:class:`scaleot.data.PadCollator`),
loss on answer tokens only with the LM head applied at answer positions only (the 49k
vocabulary head is the largest single matmul of a small model), optional bf16 autocast,
data parallel through ``accelerate`` (run under ``accelerate launch``), a tqdm bar,
TensorBoard + JSONL logs, validation accuracy after each epoch with the best weights
kept, and pickle-free checkpoints (:mod:`scaleot.checkpoint`) for ``--resume``.

A *step controller* (IST, docs/method.md section 4) can steer which weights train: any object
with ``before_step(step)``, ``after_backward(step)``, ``after_step(step)``,
``state_dict() -> dict`` and ``load_state_dict(dict)``; its state is checkpointed. If it
has ``bind(optimizer=..., loss_model=..., splits=...)`` the loop calls it once the optimizer
exists (IST keeps unselected layers' optimizer state off the device and probes a held-out batch).
"""

from __future__ import annotations

import json
import math
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from scaleot.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from scaleot.data import IGNORE_INDEX, MCExample, PadCollator, TaskSplits, encode_example
from scaleot.errors import ScaleOTError
from scaleot.finetune.config import FinetuneConfig
from scaleot.models import arch_spec, get_submodule
from scaleot.models.device import autocast_used, bf16_autocast, wants_bf16


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


def train(
    model: nn.Module,
    tokenizer,
    splits: TaskSplits,
    config: FinetuneConfig,
    run_dir: str | Path,
    resume: bool = False,
    step_controller: StepController | None = None,
    progress: bool = True,
) -> TrainResult:
    """Fine-tune the trainable weights of ``model`` on ``splits.train``; score ``splits.val``.

    Args:
        model: a causal LM whose trainable parameters (``requires_grad``) are already chosen
            (see :mod:`scaleot.finetune.trainable`); LoRA layers already injected.
        tokenizer: its tokenizer (with a pad token).
        splits: the task; only ``train`` and ``val`` are read.
        config: the options.
        run_dir: where checkpoints, ``log.jsonl`` and ``tb/`` go (never the adapter folder).
        resume: continue from the newest checkpoint in ``run_dir``.
        step_controller: optional IST-style hooks (see module docstring).

    Returns:
        :class:`TrainResult` with the best-validation weights.

    Raises:
        ScaleOTError: ``resume`` with no checkpoint, or a checkpoint from other options.
    """
    from accelerate import Accelerator
    from torch.utils.tensorboard import SummaryWriter
    from transformers import get_scheduler

    run_dir = Path(run_dir)
    accelerator = Accelerator(cpu=config.device == "cpu")
    device = accelerator.device
    bf16 = wants_bf16(config.autocast, device)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if not params:
        raise ScaleOTError("nothing to train: no parameter requires a gradient")
    encoded = [encode_example(ex, tokenizer, config.max_length) for ex in splits.train]
    collate = PadCollator(tokenizer.pad_token_id)
    world, rank = accelerator.num_processes, accelerator.process_index
    global_batch = config.batch_size * world
    micro_per_epoch = math.ceil(len(encoded) / global_batch)
    steps_per_epoch = max(1, micro_per_epoch // config.grad_accum)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)

    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = get_scheduler(config.schedule, optimizer, num_warmup_steps=int(config.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    loss_model = AnswerLoss(model)
    loss_model, optimizer = accelerator.prepare(loss_model, optimizer)
    if step_controller is not None and hasattr(step_controller, "bind"):
        step_controller.bind(optimizer=optimizer, loss_model=loss_model, splits=splits)

    step, epoch, micro_done, validation, best = 0, 0, 0, [], {"val_acc": -1.0, "step": 0, "epoch": 0}
    best_weights = _trainable_state(model)
    options = {k: v for k, v in config.to_dict().items() if k not in ("device", "checkpoint_every")}
    if resume:
        ckpt = latest_checkpoint(run_dir)
        if ckpt is None:
            raise ScaleOTError(f"--resume: no checkpoint in {run_dir / 'checkpoints'}")
        weights, state = load_checkpoint(ckpt, optimizer)
        if state.get("options") != json.loads(json.dumps(options)):
            raise ScaleOTError(f"--resume: checkpoint {ckpt} was made with other options")
        current = dict(model.named_parameters())
        with torch.no_grad():
            for n, t in weights.items():
                current[n].copy_(t)
        scheduler.load_state_dict(state["scheduler"])
        step, epoch, micro_done = state["step"], state["epoch"], state["micro_done"]
        validation, best = state["validation"], state["best"]
        if (run_dir / "best.safetensors").is_file():
            from safetensors.torch import load_file

            best_weights = load_file(str(run_dir / "best.safetensors"))
        if step_controller is not None and "controller" in state:
            step_controller.load_state_dict(state["controller"])

    main = accelerator.is_main_process
    writer = SummaryWriter(str(run_dir / "tb")) if main else None
    log_file = open(run_dir / "log.jsonl", "a") if main else None  # noqa: SIM115

    def log(record: dict) -> None:
        if main:
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
            for k, v in record.items():
                if isinstance(v, float) and k not in ("step", "epoch"):
                    writer.add_scalar(k, v, record.get("step", step))

    def checkpoint() -> None:
        accelerator.wait_for_everyone()
        if main:
            state = {"epoch": epoch, "micro_done": micro_done, "validation": validation, "best": best,
                     "scheduler": scheduler.state_dict(), "options": options}
            if step_controller is not None:
                state["controller"] = step_controller.state_dict()
            save_checkpoint(run_dir, step, _trainable_state(model), optimizer, state)

    def validate() -> None:
        nonlocal best, best_weights
        acc = mc_accuracy(model, tokenizer, splits.val[: config.val_limit], batch_size=config.eval_batch_size,
                          bf16=bf16)
        validation.append({"epoch": epoch, "step": step, "val_acc": acc})
        log({"step": step, "epoch": epoch, "val_acc": float(acc)})
        if acc > best["val_acc"]:
            best = {"val_acc": acc, "step": step, "epoch": epoch}
            best_weights = _trainable_state(model)
            if main:
                from safetensors.torch import save_file

                save_file(best_weights, str(run_dir / "best.safetensors"))

    tokens, train_time = 0, 0.0
    bar = tqdm(total=total_steps, initial=step, desc="finetune", disable=not (progress and main), unit="step")
    model.train()
    while step < total_steps and epoch < config.epochs:
        order = torch.randperm(len(encoded), generator=torch.Generator().manual_seed(config.seed + epoch)).tolist()
        micro = [order[i:i + global_batch] for i in range(0, len(order), global_batch)]
        micro = micro[: steps_per_epoch * config.grad_accum]
        while micro_done < len(micro) and step < total_steps:
            if micro_done % config.grad_accum == 0 and step_controller is not None:
                step_controller.before_step(step)
            t0 = time.perf_counter()
            batch = collate([encoded[i] for i in micro[micro_done][rank::world]] or [encoded[0]])
            batch = {k: v.to(device) for k, v in batch.items()}
            with bf16_autocast(bf16, device):
                loss = loss_model(**batch) / config.grad_accum
            accelerator.backward(loss)
            tokens += int(batch["attention_mask"].sum()) * world
            micro_done += 1
            if micro_done % config.grad_accum == 0:
                if step_controller is not None:
                    step_controller.after_backward(step)
                if config.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                if step_controller is not None:
                    step_controller.after_step(step)
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item() * config.grad_accum:.3f}")
                log({"step": step, "epoch": epoch, "loss": loss.item() * config.grad_accum,
                     "lr": scheduler.get_last_lr()[0]})
                if config.checkpoint_every and step % config.checkpoint_every == 0 and step < total_steps:
                    checkpoint()
            train_time += time.perf_counter() - t0
        validate()
        epoch += 1
        micro_done = 0
        checkpoint()
    bar.close()
    if not validation or validation[-1]["step"] != step:
        validate()
    if main:
        writer.close()
        log_file.close()
    timing = {"train_seconds": round(train_time, 3), "tokens": tokens,
              "tokens_per_second": round(tokens / train_time, 1) if train_time else None,
              "peak_memory_mb": round(_peak_memory_mb(device), 1), "processes": world,
              "autocast": autocast_used(bf16, device)}
    with torch.no_grad():
        current = dict(model.named_parameters())
        for n in names:
            current[n].copy_(best_weights[n])
    return TrainResult(best_weights, validation, best, step, timing)
