"""IST: importance-aware sparse tuning for any per-layer PEFT (docs/method.md section 4).

Laid out like a peft tuner: :mod:`config` (``ISTConfig``), :mod:`layer` (PEFT modules by
block, response suppression, LoRA targets from the architecture table),
:mod:`controller` (``ISTController``: the hooks a training loop calls), :mod:`hooks`
(``ISTStepController``: the controller as a step controller of :mod:`scaleot.finetune.loop`),
:mod:`optim` (optimizer state placement), :mod:`artifacts` (scores saved beside the
adapter, plot). IST trains through the one fine-tuning loop (``scaleot finetune --method ist``).
"""

from scaleot.tuners.ist.artifacts import load_importance, plot_importance, save_importance
from scaleot.tuners.ist.config import ISTConfig
from scaleot.tuners.ist.controller import ISTController, default_loss
from scaleot.tuners.ist.hooks import ISTStepController, make_controller
from scaleot.tuners.ist.layer import (
    lora_config_for,
    lora_target_modules,
    peft_layers_by_block,
    peft_parameters,
    suppressed,
)
from scaleot.tuners.ist.optim import move_optimizer_state, optimizer_state_bytes

__all__ = [
    "ISTConfig", "ISTController", "ISTStepController", "make_controller", "default_loss", "lora_config_for", "lora_target_modules",
    "peft_layers_by_block", "peft_parameters", "suppressed", "move_optimizer_state",
    "optimizer_state_bytes",
    "save_importance", "load_importance", "plot_importance",
]
