"""ISTController: layer scores, per-step selection, importance updates (docs/method.md section 4).

A small object any training loop can drive through hooks::

    ctl = ISTController(peft_model, ISTConfig(), optimizer)   # optimizer: AdamW over all PEFT params
    for step in range(1, steps + 1):
        ctl.before_step(step)                 # choose n_update layers; only they require grad
        loss = loss_fn(model, next(batches)); loss.backward()
        ctl.after_backward(step)              # probe "grad": read the selected layers' gradient norms
        optimizer.step(); optimizer.zero_grad(set_to_none=True)
        ctl.after_step(step)
        ctl.maybe_update_importance(step, model, probe_batch, loss_fn)   # every T steps

Selection draws ``n_update`` layers without replacement with weights ``1 - sigmoid(s)``
(IST) or uniform weights (RST), among the top ``config.depth`` of the layers, from a
``torch.Generator`` seeded with ``config.seed``;
the scores, the step and the generator state are all in :meth:`state_dict`, so a resumed
run selects exactly what the uninterrupted one would. Under ``torch.distributed`` the
probe losses are averaged over ranks (identical score updates everywhere) and rank 0's
selection is broadcast (``config.sync_selection``), so every rank trains the same layers.
With ``probe: grad`` the scores come from the selected layers' gradient norms, read in
:meth:`ISTController.after_backward` (after DDP has averaged them, so every rank reads the
same numbers; rank 0's scores are broadcast all the same).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.utils import get_total_norm

from scaleot.data_owner.tuners.ist.config import ISTConfig
from scaleot.data_owner.tuners.ist.layer import peft_layers_by_block, peft_parameters, suppressed
from scaleot.data_owner.tuners.ist.optim import move_optimizer_state
from scaleot.scores import advantages

LossFn = Callable[[nn.Module, dict], torch.Tensor]


def default_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    """``model(**batch).loss`` (batch with ``labels``)."""
    return model(**batch).loss


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


class ISTController:
    """Importance-aware sparse tuning of a peft model's per-block LoRA/DoRA modules.

    Args:
        model: a ``PeftModel`` (LoRA or DoRA on any architecture of the table).
        config: :class:`ISTConfig`.
        optimizer: the optimizer over the PEFT parameters; when given and the parameters
            live on an accelerator, unselected layers' state is kept in pinned CPU memory.

    Attributes:
        blocks: block indices that hold PEFT modules (the IST "layers"), in order.
        n_update, n_suppress: the resolved counts.
        counts: ``LongTensor[L]``, how often each layer was selected.
        last_update: the latest importance update's losses, rewards and suppressed sets.
        grad_log, grad_seen: probe ``grad``: per layer, the moving average of its log
            gradient norm and whether it was observed yet.
        history: ``[(step, [score per layer])]`` after every importance update (the
            score trajectory; checkpointed, plotted beside the adapter).
        window: positions (into :attr:`blocks`) that may be selected: the top
            ``config.window(L)`` layers.
    """

    def __init__(self, model: nn.Module, config: ISTConfig, optimizer: torch.optim.Optimizer | None = None):
        self.config = config
        self.optimizer = optimizer
        by_block = peft_layers_by_block(model)
        self.blocks: list[int] = sorted(by_block)
        self.peft_layers = [by_block[b] for b in self.blocks]
        self.params = [[p for layer in layers for p in peft_parameters(layer)] for layers in self.peft_layers]
        self.n_update, self.n_suppress = config.resolve(len(self.blocks))
        self.window = list(range(len(self.blocks) - config.window(len(self.blocks)), len(self.blocks)))
        self._in_window = torch.zeros(len(self.blocks), dtype=torch.float64)
        self._in_window[self.window] = 1.0
        self.history: list[tuple[int, list[float]]] = []
        self._scores = torch.zeros(len(self.blocks), dtype=torch.float64)
        self.counts = torch.zeros(len(self.blocks), dtype=torch.long)
        self.grad_log = torch.zeros(len(self.blocks), dtype=torch.float64)
        self.grad_seen = torch.zeros(len(self.blocks), dtype=torch.bool)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.selected: list[int] = []
        self.last_update: dict | None = None
        device = self.params[0][0].device
        self._offload = config.offload_optimizer and optimizer is not None and device.type != "cpu"
        self._device = device
        self.freeze_all()

    # ----- selection -------------------------------------------------------------------
    def weights(self) -> torch.Tensor:
        """Sampling weights of the layers for training, ``[L]`` (zero outside the window)."""
        if self.config.sampling == "rst":
            return self._in_window.clone()
        return (1 - torch.sigmoid(self._scores)).clamp_min(1e-6) * self._in_window

    def _draw(self, weights: torch.Tensor, n: int) -> torch.Tensor:
        picked = torch.multinomial(weights, n, replacement=False, generator=self.generator)
        if _distributed() and self.config.sync_selection:
            picked = self._collective(picked, lambda buf: dist.broadcast(buf, src=0))
        return picked.sort().values

    def _collective(self, tensor: torch.Tensor, op: Callable[[torch.Tensor], object]) -> torch.Tensor:
        """Run ``op`` (an in-place collective) on ``tensor`` where the backend wants it (the
        model's device under nccl, the CPU under gloo); the result comes back on the CPU."""
        buf = tensor.to(self._device if dist.get_backend() == "nccl" else torch.device("cpu"))
        op(buf)
        return buf.cpu()

    def select(self) -> list[int]:
        """Draw ``n_update`` layer positions (indices into :attr:`blocks`)."""
        return self._draw(self.weights(), self.n_update).tolist()

    def freeze_all(self, frozen: bool = True) -> None:
        for params in self.params:
            for p in params:
                p.requires_grad_(not frozen)

    def before_step(self, step: int) -> list[int]:
        """Select this step's layers and make only their PEFT parameters trainable.

        Returns:
            The selected block indices (full-model / emulator block numbering).
        """
        self.selected = self.select()
        chosen = set(self.selected)
        for pos, params in enumerate(self.params):
            for p in params:
                p.requires_grad_(pos in chosen)
                if pos not in chosen:
                    p.grad = None
        self.counts[self.selected] += 1
        if self._offload:
            for pos in self.selected:
                move_optimizer_state(self.optimizer, self.params[pos], self._device)
        return [self.blocks[pos] for pos in self.selected]

    @torch.no_grad()
    def after_backward(self, step: int | None = None) -> None:
        """Probe ``grad``: fold each selected layer's gradient norm into its moving average.

        Call after ``backward`` and before the optimizer step (and before any gradient
        clipping). With the suppression probe (or RST) it does nothing.
        """
        if self.config.probe != "grad" or self.config.sampling != "ist":
            return
        norms = [get_total_norm([p.grad for p in self.params[pos] if p.grad is not None]) for pos in self.selected]
        decay = self.config.grad_decay
        for pos, norm in zip(self.selected, torch.stack(norms).cpu().tolist() if norms else [], strict=True):
            if not norm > 0 or not math.isfinite(norm):
                continue  # no gradient reached this layer's adapter (or it overflowed): no observation
            m = math.log(norm)
            self.grad_log[pos] = decay * self.grad_log[pos] + (1 - decay) * m if self.grad_seen[pos] else m
            self.grad_seen[pos] = True

    def after_step(self, step: int) -> None:
        """Offload the stepped layers' state; mark every PEFT parameter trainable again.

        Between steps every PEFT parameter has ``requires_grad=True`` (and no gradient), so
        generic loops that find "the trainable weights" by ``requires_grad`` (best-weight
        snapshots, adapter saving) see all of them; only :meth:`before_step` narrows it.
        """
        if self._offload:
            for pos in self.selected:
                move_optimizer_state(self.optimizer, self.params[pos], "cpu")
        self.freeze_all(frozen=False)
        self.step = step

    # ----- importance ------------------------------------------------------------------
    def maybe_update_importance(
        self, step: int, model: nn.Module | None = None, probe_batch: dict | None = None,
        loss_fn: LossFn = default_loss,
    ) -> bool:
        """Update the scores when ``step`` is a multiple of ``T`` (IST only): from the probe
        passes (:meth:`update_importance`, probe ``suppress``, needs ``model`` and
        ``probe_batch``) or from the gradient norms (:meth:`update_from_gradients`)."""
        if self.config.sampling != "ist" or self.config.T == 0 or step % self.config.T:
            return False
        if self.config.probe == "grad":
            self.update_from_gradients()
        else:
            self.update_importance(model, probe_batch, loss_fn)
        return True

    def update_from_gradients(self) -> torch.Tensor:
        """Probe ``grad``: ``s_i = -eta (m_i - mean m)`` over the window's observed layers.

        ``m_i`` is layer ``i``'s moving average of its log gradient norm; a layer not yet
        observed (or outside the window) gets ``s_i = 0``. Under ``torch.distributed`` rank
        0's scores are broadcast.

        Returns:
            The new scores ``[L]``.
        """
        seen = self.grad_seen & self._in_window.bool()
        scores = torch.zeros_like(self._scores)
        if seen.any():
            scores[seen] = -self.config.eta * (self.grad_log[seen] - self.grad_log[seen].mean())
        if _distributed():
            scores = self._collective(scores, lambda buf: dist.broadcast(buf, src=0))
        self._scores = scores
        self.last_update = {"log_grad_norm": {self.blocks[i]: float(self.grad_log[i]) for i in range(len(self.blocks))
                                              if seen[i]}}
        self.history.append((self.step, self._scores.tolist()))
        return self._scores.clone()

    def credit_weights(self) -> torch.Tensor:
        """Per-layer share of a probe's advantage, ``[L]`` (``config.credit``).

        ``set``: all ones. ``count``: ``(mean(c) + 1) / (c_i + 1)`` over the window, ``c``
        the selection counts, so a layer trained twice as often as the average gets half
        the credit for the loss its suppression causes (its effect per update).
        """
        if self.config.credit == "set":
            return torch.ones_like(self._scores)
        c = self.counts.to(torch.float64)
        mean = c[self.window].mean()
        return (mean + 1) / (c + 1)

    @torch.no_grad()
    def update_importance(self, model: nn.Module, probe_batch: dict, loss_fn: LossFn = default_loss) -> torch.Tensor:
        """``K`` suppressed forward passes on ``probe_batch`` and the REINFORCE score update.

        For pass ``k`` a set ``S_k`` of ``n_suppress`` layers is drawn with weights
        ``sigmoid(s)`` (within the window), their PEFT output scaled by ``gamma``, loss
        ``l_k``; advantages ``a_k`` from the losses (``config.reward``; default
        ``normalized``: ``(r_k - mean r) / std r``, ``r = -l``, zero when ``std r = 0``);
        ``s_i += eta · w_i Σ_k [i ∈ S_k] a_k p_i (1 - p_i)``, ``w`` from :meth:`credit_weights`. A layer whose suppression costs
        little gets a higher score and is trained less.

        Returns:
            The new scores ``[L]``.
        """
        cfg = self.config
        was_training = model.training
        model.eval()
        try:
            sets, losses = [], []
            for _ in range(cfg.K):
                weights = torch.sigmoid(self._scores).clamp_min(1e-6) * self._in_window
                chosen = self._draw(weights, self.n_suppress).tolist()
                layers = [layer for pos in chosen for layer in self.peft_layers[pos]]
                with suppressed(layers, cfg.gamma):
                    losses.append(float(loss_fn(model, probe_batch)))
                sets.append(chosen)
        finally:
            model.train(was_training)
        loss_t = torch.tensor(losses, dtype=torch.float64)
        if _distributed():
            loss_t = self._collective(loss_t, dist.all_reduce) / dist.get_world_size()
        adv = advantages(loss_t, self.config.reward)
        p = torch.sigmoid(self._scores)
        delta = torch.zeros_like(self._scores)
        for chosen, a in zip(sets, adv, strict=True):
            delta[chosen] += a
        delta *= self.credit_weights()
        self._scores += cfg.eta * delta * p * (1 - p)
        self.last_update = {"losses": loss_t.tolist(), "advantages": adv.tolist(),
                            "suppressed": [[self.blocks[i] for i in s] for s in sets]}
        self.history.append((self.step, self._scores.tolist()))
        return self._scores.clone()

    # ----- state -----------------------------------------------------------------------
    def scores(self) -> dict[int, float]:
        """``{block index: score}``; high = safe to suppress = trained less."""
        return {b: float(s) for b, s in zip(self.blocks, self._scores, strict=True)}

    def importance(self) -> dict[int, float]:
        """``{block index: 1 - sigmoid(score)}``, the training weight (high = important)."""
        return {b: float(1 - torch.sigmoid(s)) for b, s in zip(self.blocks, self._scores, strict=True)}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors only (safetensors-ready): scores, counts, step, generator state, blocks."""
        return {
            "ist.scores": self._scores.clone(),
            "ist.counts": self.counts.clone(),
            "ist.step": torch.tensor([self.step], dtype=torch.long),
            "ist.rng": self.generator.get_state(),
            "ist.blocks": torch.tensor(self.blocks, dtype=torch.long),
            "ist.grad_log": self.grad_log.clone(),
            "ist.grad_seen": self.grad_seen.to(torch.long),
            "ist.history": torch.tensor([[step, *scores] for step, scores in self.history],
                                        dtype=torch.float64).reshape(-1, 1 + len(self.blocks)),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        blocks = state["ist.blocks"].tolist()
        if blocks != self.blocks:
            raise ValueError(f"IST state is for PEFT blocks {blocks}, this model has {self.blocks}")
        self._scores = state["ist.scores"].to(torch.float64).clone()
        self.counts = state["ist.counts"].to(torch.long).clone()
        self.step = int(state["ist.step"][0])
        zeros = torch.zeros(len(blocks))  # states written before probe "grad" existed
        self.grad_log = state.get("ist.grad_log", zeros).to(torch.float64).clone()
        self.grad_seen = state.get("ist.grad_seen", zeros).to(torch.bool).clone()
        self.generator.set_state(state["ist.rng"].clone())
        rows = state.get("ist.history", torch.zeros(0, 1 + len(blocks))).to(torch.float64).reshape(-1, 1 + len(blocks))
        self.history = [(int(r[0]), r[1:].tolist()) for r in rows]
