"""Dynamic LayerReplace trainer: harmonizer steps + REINFORCE score steps (docs/method.md section 2).

One :class:`ImportanceTrainer` owns a frozen causal LM whose middle blocks are wrapped
in :class:`~scaleot.model_owner.harmonizer.SwitchableBlock` s, one logit per middle block
(``scores [n_middle]``, float64), the harmonizers and their AdamW optimizer.

Each step ``t = 1..steps``:

1. **Harmonizer step** (variant ``replace`` only): sample a configuration, next-token
   cross-entropy on a generic-text batch, update the harmonizers (the LLM is frozen).
2. Every ``score_every`` steps, a **score step**: on one held-out batch, sample ``N_c``
   configurations, losses ``l_j`` (no grad), advantages ``a_j`` (see
   :class:`~scaleot.model_owner.importance.config.ImportanceConfig` for the reward scalings), and
   ``s_i += eta * p_i (1 - p_i) * sum_j [i kept in j] a_j``.

Data parallel: when ``torch.distributed`` is initialised (``accelerate launch`` does it
through :class:`accelerate.Accelerator`), every rank draws the same batch indices and
configurations from generators with the same seed, takes its slice of each batch,
averages harmonizer gradients and losses with ``all_reduce``, and so holds bit-identical
scores. Checkpoints (rank 0 writes, all ranks read) hold harmonizers, optimizer,
scores, generator states and the step (:mod:`scaleot.run_folder`); resuming gives the same
result as not stopping.
"""

from __future__ import annotations

import contextlib
import resource
import statistics
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from scaleot.errors import ScaleOTError
from scaleot.exchange.layers import Harmonizer, IdentityBlock
from scaleot.model_owner.harmonizer import apply_configuration, unwrap_blocks, wrap_blocks
from scaleot.model_owner.importance.config import ImportanceConfig
from scaleot.model_owner.importance.report import tb_scalars
from scaleot.model_owner.importance.sampling import sample_configuration
from scaleot.models.arch import get_blocks
from scaleot.models.device import bf16_autocast, wants_bf16
from scaleot.progress import progress_bar
from scaleot.run_folder import RunFolder
from scaleot.scores import advantages


def _dist() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextlib.contextmanager
def discard_grads(params: list[torch.nn.Parameter]):
    """Within the block, each parameter's gradient is dropped right after backward accumulates it.

    Yields a dict counting the accumulations per parameter id (so a caller can check that every
    gradient was computed). Peak memory then holds one parameter's gradient, not all of them.
    """
    counts: dict[int, int] = {}

    def drop(p: torch.Tensor) -> None:
        counts[id(p)] = counts.get(id(p), 0) + 1
        p.grad = None

    handles = [p.register_post_accumulate_grad_hook(drop) for p in params]
    try:
        yield counts
    finally:
        for h in handles:
            h.remove()


class ImportanceTrainer:
    """Learns middle-block scores and harmonizers for one model.

    Args:
        model: a causal LM from the architecture table; frozen here, wrapped in place
            (call :meth:`close` to unwrap).
        train_blocks: ``[n, T]`` token ids of generic text for harmonizer steps.
        heldout_blocks: ``[m, T]`` token ids for score steps and the final losses.
        config: the options.
        run_dir: the run folder (:class:`~scaleot.run_folder.RunFolder`: checkpoints, and
            ``log.jsonl`` + ``tb/`` once :meth:`RunFolder.open_log` is called); None = neither.
        progress: show a tqdm bar on rank 0.
        provenance: what the scores are computed on (corpus, model, adapter split); recorded
            in every checkpoint and checked on resume (:mod:`scaleot.provenance`).
    """

    def __init__(self, model: nn.Module, train_blocks: torch.Tensor, heldout_blocks: torch.Tensor,
                 config: ImportanceConfig, run_dir: str | Path | None = None, progress: bool = True,
                 provenance: dict | None = None):
        self.model, self.config, self.progress = model, config, progress
        self.provenance = dict(provenance or {})
        self.rank, self.world = _dist()
        self.folder = None if run_dir is None else RunFolder(
            run_dir, config.to_dict(), may_change=ImportanceConfig.RESUMABLE_CHANGES, main=self.rank == 0,
            provenance=self.provenance)
        for name, size in (("batch_size", config.batch_size), ("score_batch_size", config.score_batch_size)):
            if size % self.world:
                raise ScaleOTError(f"{name} {size} is not divisible by the {self.world} data-parallel processes")
        self.train_blocks, self.heldout_blocks = train_blocks, heldout_blocks
        self.device = next(model.parameters()).device
        self.middle = config.middle(len(get_blocks(model)))
        model.requires_grad_(False)
        model.eval()
        hidden = model.config.get_text_config().hidden_size
        torch.manual_seed(config.seed)
        if config.variant == "replace":
            stand_ins = {i: Harmonizer(hidden, config.harmonizer).to(self.device) for i in self.middle}
        else:
            stand_ins = {i: IdentityBlock() for i in self.middle}
        self.stand_ins = stand_ins
        self.wrappers = wrap_blocks(model, stand_ins)
        params = [p for h in stand_ins.values() for p in h.parameters()]
        self.optimizer = (torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
                          if params else None)
        self.scores = torch.zeros(len(self.middle), dtype=torch.float64)
        self.sample_gen = torch.Generator().manual_seed(config.seed)
        self.data_gen = torch.Generator().manual_seed(config.seed + 1_000_003)
        self.step = 0
        self.times: dict[str, list[float]] = {"harmonizer_step": [], "score_step": []}
        self.last: dict[str, float] = {}

    # ----------------------------------------------------------------- pieces
    @property
    def keep_prob(self) -> torch.Tensor:
        return torch.sigmoid(self.scores)

    def _autocast(self):
        return bf16_autocast(wants_bf16(self.config.autocast, self.device), self.device)

    def _batch(self, blocks: torch.Tensor, size: int) -> torch.Tensor:
        """This rank's slice of a global batch drawn from the shared data generator."""
        idx = torch.randint(len(blocks), (size,), generator=self.data_gen)
        return blocks[idx[self.rank :: self.world]].to(self.device)

    def _loss(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.model(input_ids=x, labels=x, use_cache=False).loss.float()

    def _mean(self, value: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            value = value.detach().clone()
            dist.all_reduce(value)
            value /= self.world
        return value

    def harmonizer_step(self) -> float:
        """One harmonizer update on a generic-text batch; returns the (global) loss."""
        keep = sample_configuration(self.keep_prob, self.config.group_size, self.sample_gen)
        x = self._batch(self.train_blocks, self.config.batch_size)
        apply_configuration(self.wrappers, keep, self.middle)
        loss = self._loss(x)
        loss.backward()
        for h in self.stand_ins.values():
            for p in h.parameters():
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                p.grad = self._mean(p.grad)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(self._mean(loss.detach()))

    @torch.no_grad()
    def score_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One REINFORCE update of the scores; returns ``(losses [N_c], keep [N_c, n])``."""
        x = self._batch(self.heldout_blocks, self.config.score_batch_size)
        keeps, losses = [], []
        for _ in range(self.config.n_configs):
            keep = sample_configuration(self.keep_prob, self.config.group_size, self.sample_gen)
            apply_configuration(self.wrappers, keep, self.middle)
            losses.append(self._mean(self._loss(x)).cpu())
            keeps.append(keep)
        losses_t, keep_t = torch.stack(losses).to(torch.float64), torch.stack(keeps)
        a = advantages(losses_t, self.config.reward)
        p = self.keep_prob
        self.scores += self.config.eta * p * (1 - p) * (a[:, None] * keep_t.to(torch.float64)).sum(0)
        return losses_t, keep_t

    # ----------------------------------------------------------------- loop
    def train(self, steps: int | None = None) -> None:
        """Run until ``steps`` (default ``config.steps``), checkpointing on the way."""
        cfg, steps = self.config, steps or self.config.steps
        bar = progress_bar(steps, "importance", self.progress and self.rank == 0, unit="step", initial=self.step)
        while self.step < steps:
            rec: dict = {"step": self.step + 1}
            if cfg.variant == "replace":
                t0 = time.perf_counter()
                rec["harmonizer_loss"] = self.harmonizer_step()
                self.times["harmonizer_step"].append(time.perf_counter() - t0)
            self.step += 1
            if self.step % cfg.score_every == 0:
                t0 = time.perf_counter()
                losses, _ = self.score_step()
                self.times["score_step"].append(time.perf_counter() - t0)
                rec["score_losses"] = [round(float(v), 6) for v in losses]
                rec["score_loss_mean"] = float(losses.mean())
            rec["logits"] = [round(float(v), 6) for v in self.scores]
            self.last.update({k: v for k, v in rec.items() if isinstance(v, float)})
            if self.folder is not None:
                self.folder.log(rec, tb_scalars(rec, self.middle))
            p = self.keep_prob
            bar.set_postfix(loss=f"{self.last.get('harmonizer_loss', self.last.get('score_loss_mean', 0)):.3f}",
                            p=f"{float(p.min()):.2f}-{float(p.max()):.2f}")
            bar.update(1)
            if self.folder is not None and cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.save_checkpoint()
        bar.close()

    # ----------------------------------------------------------------- state
    def _weights(self) -> dict[str, torch.Tensor]:
        w = {f"harmonizer.{i}.{k}": v for i, h in self.stand_ins.items() for k, v in h.state_dict().items()}
        w["scores"] = self.scores.clone()
        w["gen.sample"] = self.sample_gen.get_state()
        w["gen.data"] = self.data_gen.get_state()
        return w

    def save_checkpoint(self) -> None:
        self.folder.save(self.step, self._weights(), self.optimizer,
                         {"middle": self.middle, "last": self.last, "times": self.times})
        if self.world > 1:
            dist.barrier()

    def resume(self) -> bool:
        """Load the newest checkpoint in the run folder, if any; True if one was loaded.

        Raises:
            ScaleOTError: the checkpoint was made with different options (other than
                ``steps`` / ``checkpoint_every``) or on other inputs, or is damaged.
        """
        from scaleot.exchange.schemas import ImportanceStateDoc, validate_doc

        loaded = self.folder.resume(self.optimizer, required=False) if self.folder is not None else None
        if loaded is None:
            return False
        weights, state = loaded
        ckpt = f"{self.folder.path / 'checkpoints'} (step {state.get('step')})"
        validate_doc(ImportanceStateDoc, state, f"checkpoint state {ckpt}")
        try:
            for i, h in self.stand_ins.items():
                sd = {k.split(".", 2)[2]: v for k, v in weights.items() if k.startswith(f"harmonizer.{i}.")}
                if sd:
                    h.load_state_dict(sd)
            scores = weights["scores"].to(torch.float64).clone()
            if scores.shape != self.scores.shape or not torch.isfinite(scores).all():
                raise ValueError("scores do not fit this run")
            self.scores = scores
            self.sample_gen.set_state(weights["gen.sample"])
            self.data_gen.set_state(weights["gen.data"])
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise ScaleOTError(f"cannot resume from {ckpt}: damaged checkpoint ({str(e).splitlines()[0][:120]})") from None
        self.step, self.last, self.times = int(state["step"]), state.get("last", {}), state.get("times", self.times)
        return True

    # ----------------------------------------------------------------- results
    def ranking(self) -> list[int]:
        """Middle block indices, most important (highest logit) first; ties by index."""
        order = sorted(range(len(self.middle)), key=lambda j: (-float(self.scores[j]), self.middle[j]))
        return [self.middle[j] for j in order]

    @torch.no_grad()
    def heldout_loss(self, keep: torch.Tensor, n: int = 8) -> float:
        """Mean loss of a configuration on the first ``n`` held-out sequences (this rank's share)."""
        apply_configuration(self.wrappers, keep, self.middle)
        x = self.heldout_blocks[:n][self.rank :: self.world].to(self.device)
        return float(self._mean(self._loss(x)))

    def final_losses(self, alpha: float = 0.5) -> dict[str, float]:
        """Held-out losses: full model, and the lowest-ranked ``alpha`` fraction replaced."""
        n_rep = round(alpha * len(self.middle))
        replaced = set(self.ranking()[len(self.middle) - n_rep :])
        keep = torch.tensor([i not in replaced for i in self.middle])
        out = {"heldout_full": self.heldout_loss(torch.ones(len(self.middle), dtype=torch.bool)),
               f"heldout_lowest_{n_rep}_replaced": self.heldout_loss(keep)}
        out.update({k: v for k, v in self.last.items() if k in ("harmonizer_loss", "score_loss_mean")})
        return {k: round(v, 6) for k, v in out.items()}

    def full_step_seconds(self, repeats: int = 2) -> float:
        """Median seconds of one full-model forward+backward (all weights trainable) on a train batch.

        Every weight gradient is computed, as in full fine-tuning, but freed as soon as it is
        accumulated (:func:`discard_grads`): holding them all would cost a second fp32 copy of
        the model, which stage 1 itself never needs (``bench/scale.py`` measured stage 1's peak
        at 1.6x the model with it).
        """
        apply_configuration(self.wrappers, torch.ones(len(self.middle), dtype=torch.bool), self.middle)
        x = self.train_blocks[: self.config.batch_size][self.rank :: self.world].to(self.device)
        params = list(self.model.parameters())
        flags = [p.requires_grad for p in params]
        times = []
        for _ in range(repeats):
            for p in params:
                p.requires_grad_(True)
            with discard_grads(params):
                t0 = time.perf_counter()
                self._loss(x).backward()
                times.append(time.perf_counter() - t0)
            for p, f in zip(params, flags, strict=True):
                p.grad = None
                p.requires_grad_(f)
        return statistics.median(times)

    def timing(self) -> dict[str, float]:
        med = {f"{k}_s": round(statistics.median(v), 4) for k, v in self.times.items() if v}
        med["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        if torch.cuda.is_available():
            med["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        return med

    def close(self) -> None:
        """Unwrap the model's blocks (the harmonizers stay in ``stand_ins``)."""
        unwrap_blocks(self.model)

