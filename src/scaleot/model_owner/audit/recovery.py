"""The capability gap and the recovery attack (docs/method.md section 9, "Recovery attack").

**Measurement** (:func:`measure`): zero-shot accuracy on the audit tasks (the fast scorer,
lm-eval's numbers), each example's predicted choice, and perplexity on held-out generic
text. From two measurements: the pooled gap ``Full ZS - Emu ZS``; the **recovery ratio**
``R = (attacked - Emu ZS) / (Full ZS - Emu ZS)`` (0: nothing recovered, 1: the full model's
zero-shot; undefined when the emulator shows no gap); the **fidelity**, the share of
examples where the attacked emulator predicts the same choice as the full model.

**Attack** (:class:`RecoveryAttack`): the data owner holds every emulator weight, so it
fine-tunes *all* of them (adapter, kept blocks, harmonizers, SRC factors, embeddings) with
next-token loss on public text that is not the model owner's stage-1 corpus, with AdamW at a
constant learning rate. Token budgets are cumulative: budget ``b`` ends at step
``ceil(b / (batch * block_size))``. The run folder (:class:`scaleot.run_folder.RunFolder`)
holds a checkpoint every ``checkpoint_every`` steps and one at each budget's end with the
measurements so far, so ``--resume`` repeats neither training nor evaluation; the data order
is a seeded permutation per pass over the corpus, a function of the step alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import nn

from scaleot.data import TaskSplits
from scaleot.evaluation import evaluate_mc, perplexity
from scaleot.evaluation.fast_mc import predictions
from scaleot.models.device import bf16_autocast
from scaleot.run_folder import RunFolder
from scaleot.stats import paired_stderr


def _stderr(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / max(n - 1, 1))


def measure(model: nn.Module, tokenizer, splits: list[TaskSplits], ppl_blocks: torch.Tensor,
            scorer: str = "fast") -> dict:
    """Zero-shot accuracy per task and pooled, per-example predictions, perplexity.

    Returns:
        ``{"tasks": {name: {"acc", "acc_stderr", "n"}}, "acc", "acc_stderr", "n" (pooled),
        "correct": [0/1 ...], "pred": [choice index ...] (pooled, task order), "ppl", "scorer"}``.
    """
    rows = evaluate_mc(model, tokenizer, splits, scorer=scorer, keep_loglikelihoods=True)
    correct, pred, tasks = [], [], {}
    for s in splits:
        r = rows[s.name]
        tasks[s.name] = {"acc": r["acc"], "acc_stderr": r["acc_stderr"], "n": r["n"]}
        correct += r["correct"]
        pred += [predictions(ll, ex.choices)[0] for ll, ex in zip(r["loglikelihoods"], s.test, strict=True)]
    n = len(correct)
    acc = sum(correct) / n
    return {"tasks": tasks, "acc": acc, "acc_stderr": _stderr(acc, n), "n": n, "correct": correct, "pred": pred,
            "ppl": perplexity(model, ppl_blocks), "scorer": ",".join(sorted({r["scorer"] for r in rows.values()}))}


def gap(full: dict, emu: dict) -> dict:
    """``Full ZS - Emu ZS`` (pooled, paired standard error) and the perplexity ratio ``emu / full``."""
    return {"zs": full["acc"] - emu["acc"], "zs_stderr": paired_stderr(full["correct"], emu["correct"]),
            "ppl_ratio": emu["ppl"] / full["ppl"]}


def fidelity(attacked: dict, full: dict) -> dict:
    """Share of examples where ``attacked`` predicts the full model's choice, with its standard error."""
    same = [int(a == b) for a, b in zip(attacked["pred"], full["pred"], strict=True)]
    f = sum(same) / len(same)
    return {"fidelity": f, "fidelity_stderr": _stderr(f, len(same))}


def recovery(attacked: dict, emu: dict, full: dict) -> dict:
    """``R = (attacked - Emu ZS) / (Full ZS - Emu ZS)``; ``None`` when the gap is not positive.

    ``R_stderr`` is the paired standard error of ``attacked - Emu ZS`` divided by the gap
    (the gap taken as known; it is measured on the same examples).
    """
    g = full["acc"] - emu["acc"]
    gain = attacked["acc"] - emu["acc"]
    se = paired_stderr(attacked["correct"], emu["correct"])
    if g <= 0:
        return {"R": None, "R_stderr": None, "gain": gain, "gain_stderr": se}
    return {"R": gain / g, "R_stderr": se / g, "gain": gain, "gain_stderr": se}


def summary(m: dict) -> dict:
    """A measurement without its per-example lists (for reports)."""
    return {k: v for k, v in m.items() if k not in ("correct", "pred")}


class AttackPaused(Exception):
    """The attack reached its ``deadline``: checkpointed, continue with ``--resume``."""


class RecoveryAttack:
    """Full fine-tuning of every emulator parameter on public text, budget by budget.

    Args:
        model: the emulator (trained in place).
        blocks: ``[n, block_size]`` token ids of the attacker's corpus.
        folder: the run folder (checkpoints, ``log.jsonl``, ``tb/``).
        lr, batch, seed: AdamW learning rate, blocks per step, data-order seed.
        checkpoint_every: steps between checkpoints.
        bf16: bf16 autocast of the forward passes.
        deadline: a ``time.monotonic()`` after which the attack checkpoints and raises
            :class:`AttackPaused` (a job with a time limit resumes it next time).
    """

    def __init__(self, model: nn.Module, blocks: torch.Tensor, folder: RunFolder, lr: float, batch: int,
                 seed: int = 0, checkpoint_every: int = 50, bf16: bool = False, deadline: float | None = None):
        self.model, self.blocks, self.folder = model, blocks, folder
        self.batch, self.seed, self.checkpoint_every, self.bf16 = batch, seed, checkpoint_every, bf16
        self.deadline = deadline
        self.device = next(model.parameters()).device
        for p in model.parameters():
            p.requires_grad_(True)
        self.named = dict(model.named_parameters())  # tied and shared tensors once
        self.optimizer = torch.optim.AdamW(self.named.values(), lr=lr, weight_decay=0.0)
        self.step, self.train_seconds, self.results, self.extra = 0, 0.0, [], {}

    def batch_at(self, step: int) -> torch.Tensor:
        """The blocks of ``step``: a seeded permutation per pass over the corpus."""
        n = len(self.blocks)
        rows = []
        for k in range(step * self.batch, (step + 1) * self.batch):
            epoch, i = divmod(k, n)
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
            rows.append(int(perm[i]))
        return self.blocks[rows].to(self.device)

    def train_step(self) -> float:
        self.model.train()
        ids = self.batch_at(self.step)
        with bf16_autocast(self.bf16, self.device):
            loss = self.model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(self.named.values()), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return float(loss.detach())

    def checkpoint(self) -> None:
        self.folder.save(self.step, self.named, self.optimizer,
                         {"train_seconds": self.train_seconds, "results": self.results, "extra": self.extra})

    def resume(self) -> bool:
        """Continue from the newest checkpoint, if any; returns whether one was loaded."""
        loaded = self.folder.resume(self.optimizer, required=False)
        if loaded is None:
            return False
        weights, state = loaded
        with torch.no_grad():
            for name, p in self.named.items():
                p.copy_(weights[name].to(p.device, p.dtype))
        self.step, self.train_seconds = int(state["step"]), float(state.get("train_seconds", 0.0))
        self.results, self.extra = list(state.get("results", [])), dict(state.get("extra", {}))
        return True

    def run(self, budget_steps: list[tuple[int, int]], evaluate: Callable[[], dict],
            progress: bool = True) -> list[dict]:
        """Train through every ``(tokens, steps)`` budget; after each, ``evaluate()`` the emulator.

        Returns:
            one record a budget: ``{"tokens", "steps", "train_seconds", **evaluate()}``.
        """
        from scaleot.progress import progress_bar

        done = {r["tokens"] for r in self.results}
        total = budget_steps[-1][1]
        bar = progress_bar(total, "attack", progress, unit="step", initial=self.step, leave=False)
        try:
            for tokens, steps in budget_steps:
                if tokens in done:
                    continue
                while self.step < steps:
                    t0 = time.perf_counter()
                    loss = self.train_step()
                    self.train_seconds += time.perf_counter() - t0
                    self.folder.log({"step": self.step, "loss": loss,
                                     "tokens": self.step * self.batch * self.blocks.shape[1]})
                    bar.update(1)
                    if self.step % self.checkpoint_every == 0 and self.step < steps:
                        self.checkpoint()
                    if self.deadline is not None and time.monotonic() > self.deadline and self.step < steps:
                        self.checkpoint()
                        raise AttackPaused(f"paused at step {self.step} of {steps}")
                self.model.eval()
                record = {"tokens": tokens, "steps": steps, "train_seconds": round(self.train_seconds, 1),
                          **evaluate()}
                self.results.append(record)
                self.checkpoint()
        finally:
            bar.close()
        return self.results
