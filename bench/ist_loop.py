"""A small LoRA / IST / RST training loop around :class:`ISTController`, for benchmarks (docs/method.md section 4).

The product trains IST through the one fine-tuning loop (``scaleot finetune --method ist``,
:mod:`scaleot.data_owner.finetune.loop` with :class:`scaleot.data_owner.tuners.ist.ISTStepController`); this
loop stays here because ``bench/ist.py`` interleaves LoRA, IST and RST step by step on the
same batches to compare their memory and speed, which the product loop does not do.

:class:`SparseTuner` owns one peft model, one AdamW and (for IST/RST) one controller,
and runs one step at a time (so a benchmark can interleave methods side by side);
:func:`train_ist` is the whole loop with logging, checkpoints and ``resume``. The data
order is a pure function of ``(seed, step)``, so a resumed run sees the same batches.

Loss: next-token cross-entropy on the answer tokens only; the LM head is applied only at
positions whose next token is a label (``logits_to_keep``), which keeps the
``[tokens, vocab]`` logits out of memory for both LoRA and IST alike.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn
from tqdm import tqdm

from scaleot.data import IGNORE_INDEX, MCExample, PadCollator, encode_example
from scaleot.data_owner.tuners.ist.config import ISTConfig
from scaleot.data_owner.tuners.ist.controller import ISTController
from scaleot.data_owner.tuners.ist.layer import lora_config_for
from scaleot.errors import ScaleOTError
from scaleot.models.device import bf16_autocast
from scaleot.run_folder import RunFolder


def answer_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy over label positions, computing logits only there.

    Args:
        batch: ``input_ids``, ``attention_mask``, ``labels`` (``[B, T]``, ``-100`` = ignored).

    Returns:
        Scalar loss, equal to ``model(**batch).loss`` for a causal LM.
    """
    targets = batch["labels"][:, 1:]
    keep = (targets != IGNORE_INDEX).any(dim=0).nonzero().squeeze(-1)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep)
    logits = out.logits.float()
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets[:, keep].reshape(-1),
                           ignore_index=IGNORE_INDEX)


@dataclass
class TrainOptions:
    """Options of :func:`train_ist` (all recorded in the run's log)."""

    steps: int = 100
    batch_size: int = 8
    lr: float = 5e-4
    weight_decay: float = 0.0
    max_length: int = 256
    probe_batch_size: int = 8
    seed: int = 0
    bf16: bool = field(default=False, metadata={"help": "bf16 autocast (fp32 master weights and state)"})
    checkpoint_every: int = 0
    log_every: int = 10


class SparseTuner:
    """One peft model trained with LoRA on every layer (``ist=None``), IST or RST.

    Args:
        model: a causal LM, or a ``PeftModel`` already wrapped.
        tokenizer: its tokenizer.
        train_examples, probe_examples: multiple-choice examples (context + gold answer);
            probe examples come from a held-out split and feed the importance updates.
        ist: :class:`ISTConfig`, or None for the dense LoRA baseline.
        lora: the peft ``LoraConfig`` (default :func:`lora_config_for` over all blocks).
        options: :class:`TrainOptions`.
    """

    def __init__(self, model: nn.Module, tokenizer, train_examples: Sequence[MCExample],
                 probe_examples: Sequence[MCExample], ist: ISTConfig | None = None,
                 lora: LoraConfig | None = None, options: TrainOptions | None = None):
        self.options = opts = options or TrainOptions()
        if not train_examples:
            raise ScaleOTError("no training examples")
        if not isinstance(model, PeftModel):
            torch.manual_seed(opts.seed)
            model = get_peft_model(model, lora or lora_config_for(model))
        self.model = model
        self.model.train()
        self.collate = PadCollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        self.train = [encode_example(ex, tokenizer, opts.max_length) for ex in train_examples]
        self.probe = [encode_example(ex, tokenizer, opts.max_length) for ex in probe_examples]
        self.trainable = [p for n, p in model.named_parameters() if "lora_" in n]
        self.names = [n for n, p in model.named_parameters() if "lora_" in n]
        for p in self.trainable:
            p.requires_grad_(True)
        self.optimizer = torch.optim.AdamW(self.trainable, lr=opts.lr, weight_decay=opts.weight_decay)
        self.controller = ISTController(model, ist, self.optimizer) if ist is not None else None
        if ist is not None and ist.T and ist.sampling == "ist" and not self.probe:
            raise ScaleOTError("IST needs probe examples (a held-out split) for its importance updates")
        self.device = self.trainable[0].device

    # ----- data ------------------------------------------------------------------------
    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """The training batch of ``step`` (1-based): a seeded permutation per epoch."""
        bs, n = self.options.batch_size, len(self.train)
        idx = []
        for flat in range((step - 1) * bs, step * bs):
            epoch, pos = divmod(flat, n)
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.options.seed * 100003 + epoch))
            idx.append(int(perm[pos]))
        return self._to_device(self.collate([self.train[i] for i in idx]))

    def probe_batch(self, step: int) -> dict[str, torch.Tensor]:
        """The probe batch used at ``step``, cycling through the held-out examples."""
        bs = self.options.probe_batch_size
        t = max(1, self.controller.config.T) if self.controller else 1
        start = ((step // t) * bs) % len(self.probe)
        rows = [self.probe[(start + i) % len(self.probe)] for i in range(min(bs, len(self.probe)))]
        return self._to_device(self.collate(rows))

    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.device) for k, v in batch.items()}

    def loss(self, model: nn.Module, batch: dict) -> torch.Tensor:
        with bf16_autocast(self.options.bf16, self.device):
            return answer_loss(model, batch)

    # ----- one step --------------------------------------------------------------------
    def train_step(self, step: int) -> dict:
        """Select (IST/RST), forward, backward, AdamW step, importance update every ``T``."""
        t0 = time.perf_counter()
        selected = self.controller.before_step(step) if self.controller else None
        loss = self.loss(self.model, self.batch(step))
        loss.backward()
        if self.controller:
            self.controller.after_backward(step)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        t_step = time.perf_counter() - t0
        record = {"step": step, "loss": loss.item(), "step_s": t_step}
        if self.controller:
            self.controller.after_step(step)
            record["selected"] = selected
            if self.controller.maybe_update_importance(step, self.model, self.probe_batch(step), self.loss):
                record["probe_losses"] = self.controller.last_update.get("losses")
                record["scores"] = self.controller.scores()
        record["time_s"] = time.perf_counter() - t0
        return record

    # ----- state -----------------------------------------------------------------------
    def checkpoint(self, folder: RunFolder, step: int) -> Path | None:
        weights = {n: p for n, p in zip(self.names, self.trainable, strict=True)}
        if self.controller:
            weights.update(self.controller.state_dict())
        return folder.save(step, weights, self.optimizer)

    def restore(self, folder: RunFolder) -> int:
        """Load the newest checkpoint (weights, optimizer, RNG, IST state); returns its step."""
        weights, state = folder.resume(self.optimizer)
        with torch.no_grad():
            for n, p in zip(self.names, self.trainable, strict=True):
                p.copy_(weights[n])
        if self.controller:
            self.controller.load_state_dict({k: v for k, v in weights.items() if k.startswith("ist.")})
        return int(state["step"])


def train_ist(model: nn.Module, tokenizer, train_examples: Sequence[MCExample], probe_examples: Sequence[MCExample],
              ist_config: ISTConfig | None, lora_config: LoraConfig | None = None,
              options: TrainOptions | None = None, run_dir: str | Path | None = None,
              resume: bool = False, progress: bool = True) -> SparseTuner:
    """Fine-tune with IST (or RST, or dense LoRA when ``ist_config`` is None).

    Writes, when ``run_dir`` is given: ``log.jsonl`` (one record per step), ``tb/``
    (TensorBoard), ``checkpoints/`` every ``options.checkpoint_every`` steps.

    Args:
        resume: continue from the newest checkpoint in ``run_dir``; the result is
            identical to an uninterrupted run (same batches, selections, scores, RNG).

    Returns:
        The :class:`SparseTuner` (``.model`` is the trained ``PeftModel``, ``.controller``
        holds the scores; save them with :func:`scaleot.data_owner.tuners.ist.save_importance`).
    """
    tuner = SparseTuner(model, tokenizer, train_examples, probe_examples, ist_config, lora_config, options)
    opts = tuner.options
    start = 1
    folder = None
    if run_dir is not None:
        folder = RunFolder(run_dir, dict(vars(opts), ist=ist_config.to_dict() if ist_config else None),
                           may_change=("steps", "checkpoint_every", "log_every"))
        if resume:
            start = tuner.restore(folder) + 1
        folder.open_log(start - 1 if resume else None)
    for step in tqdm(range(start, opts.steps + 1), disable=not progress, desc="ist" if ist_config else "lora"):
        record = tuner.train_step(step)
        if folder is not None:
            scalars = {"train/loss": record["loss"], "train/step_s": record["step_s"]}
            scalars.update({f"ist/score_block_{b}": s for b, s in record.get("scores", {}).items()})
            folder.log(record, scalars)
            if opts.checkpoint_every and step % opts.checkpoint_every == 0:
                tuner.checkpoint(folder, step)
    if folder is not None:
        folder.close()
    return tuner
