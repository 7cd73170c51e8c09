"""IST as a *step controller* of the generic fine-tuning loop (:mod:`scaleot.data_owner.finetune.loop`).

The loop calls ``bind(optimizer=, loss_model=, splits=)`` once, then per optimizer step
``before_step(step)``, ``after_backward(step)``, ``after_step(step)`` (``step`` counts the
steps done before this one, from 0), and checkpoints ``state_dict()`` in its JSON state.
:class:`ISTStepController` adapts :class:`ISTController` to that protocol: it builds the
probe batches from the validation split (held out, docs/method.md section 4) and runs the
importance update itself after every ``T``-th step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from scaleot.data import PadCollator, encode_example
from scaleot.data_owner.tuners.ist.config import ISTConfig
from scaleot.data_owner.tuners.ist.controller import ISTController
from scaleot.errors import ScaleOTError


class ISTStepController:
    """Hooks for :func:`scaleot.data_owner.finetune.loop.train` (see the module docstring).

    Args:
        peft_model: the ``PeftModel`` the loop trains (LoRA on the trainable blocks).
        config: :class:`ISTConfig`.
        tokenizer: encodes the probe examples.
        probe_batch_size, max_length: probe batch shape.
    """

    def __init__(self, peft_model: nn.Module, config: ISTConfig, tokenizer, probe_batch_size: int = 8,
                 max_length: int = 256):
        self.model, self.config, self.tokenizer = peft_model, config, tokenizer
        self.probe_batch_size, self.max_length = probe_batch_size, max_length
        self.controller = ISTController(peft_model, config)
        for params in self.controller.params:  # the loop builds its optimizer over these first
            for p in params:
                p.requires_grad_(True)
        self.loss_model = None
        self.probe: list[dict] = []
        self._pending: dict | None = None
        self._updated = False

    def bind(self, optimizer: torch.optim.Optimizer, loss_model: nn.Module, splits) -> None:
        if self.tokenizer is None:
            raise ScaleOTError("IST needs the tokenizer to build its probe batches (make_controller(..., tokenizer=))")
        if self.config.sampling == "ist" and self.config.T and self.config.probe == "suppress" and not splits.val:
            raise ScaleOTError("IST needs a validation split (n_val > 0) for its probe batches"
                               " (or --ist-probe grad, which needs none)")
        self.controller = ISTController(self.model, self.config, optimizer)
        if self._pending is not None:
            self.controller.load_state_dict(self._pending)
        self.loss_model = loss_model
        self.probe = [encode_example(ex, self.tokenizer, self.max_length) for ex in splits.val]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.collate = PadCollator(pad)

    def _probe_batch(self, update_index: int) -> dict:
        bs = min(self.probe_batch_size, len(self.probe))
        start = (update_index * bs) % len(self.probe)
        rows = [self.probe[(start + i) % len(self.probe)] for i in range(bs)]
        device = self.controller.params[0][0].device
        return {k: v.to(device) for k, v in self.collate(rows).items()}

    def before_step(self, step: int) -> list[int]:
        return self.controller.before_step(step + 1)

    def after_backward(self, step: int) -> None:
        """Probe ``grad``: read the selected layers' gradient norms (unselected layers have none)."""
        self.controller.after_backward(step + 1)

    def after_step(self, step: int) -> None:
        done = step + 1
        self.controller.after_step(done)
        self._updated = False
        if self.config.probe == "grad":
            self._updated = self.controller.maybe_update_importance(done)
        elif self.loss_model is not None and self.probe:
            batch = self._probe_batch(done // max(1, self.config.T))
            self._updated = self.controller.maybe_update_importance(done, self.loss_model, batch,
                                                                    lambda m, b: m(**b))

    def log_record(self) -> dict[str, float]:
        """What the loop adds to this step's log record (and TensorBoard): the scores
        ``ist/score_block_<b>`` after an importance update, else nothing."""
        if not self._updated:
            return {}
        return {f"ist/score_block_{b}": s for b, s in self.controller.scores().items()}

    def scores(self) -> dict[int, float]:
        return self.controller.scores()

    def state_dict(self) -> dict:
        """JSON-able: scores, counts, step, generator state (bytes as ints), blocks, history."""
        return {k: v.tolist() for k, v in self.controller.state_dict().items()}

    def load_state_dict(self, state: dict) -> None:
        dtypes = {"ist.rng": torch.uint8, "ist.scores": torch.float64, "ist.history": torch.float64,
                  "ist.grad_log": torch.float64}
        tensors = {k: torch.tensor(v, dtype=dtypes.get(k, torch.long)) for k, v in state.items()}
        self._pending = tensors
        self.controller.load_state_dict(tensors)


def make_controller(peft_model: nn.Module, positions: Sequence[int], config, tokenizer=None,
                    ist_config: ISTConfig | None = None) -> ISTStepController:
    """The step controller ``scaleot finetune --method ist`` passes to the loop.

    Args:
        peft_model: LoRA already injected on the trainable blocks (``positions``).
        positions: the trainable block positions (checked against the LoRA layout).
        config: the loop's ``FinetuneConfig`` (``batch_size``, ``max_length``, ``seed``, ``ist``).
        tokenizer: the model's tokenizer (for the probe batches).
        ist_config: the IST options (default: ``config.ist``, else ``ISTConfig(seed=config.seed)``).
    """
    if ist_config is None:
        ist_config = getattr(config, "ist", None) or ISTConfig(seed=getattr(config, "seed", 0))
    hooks = ISTStepController(peft_model, ist_config, tokenizer, getattr(config, "batch_size", 8),
                              getattr(config, "max_length", 256))
    if not set(hooks.controller.blocks) <= set(positions):
        raise ScaleOTError(f"LoRA sits on blocks {hooks.controller.blocks}, outside the trainable {list(positions)}")
    return hooks
