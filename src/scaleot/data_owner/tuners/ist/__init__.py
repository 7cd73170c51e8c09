"""IST: importance-aware sparse tuning for any per-layer PEFT (docs/method.md section 4).

Laid out like a peft tuner: :mod:`config` (``ISTConfig``), :mod:`layer` (PEFT modules by
block, response suppression, LoRA targets from the architecture table),
:mod:`controller` (``ISTController``: the hooks a training loop calls), :mod:`hooks`
(``ISTStepController``: the controller as a step controller of :mod:`scaleot.data_owner.finetune.loop`),
:mod:`optim` (optimizer state placement), :mod:`artifacts` (the scores saved beside the
adapter; their files' format is :mod:`scaleot.exchange.ist_scores`). IST trains through the one fine-tuning loop (``scaleot finetune --method ist``).
"""

from scaleot.data_owner.tuners.ist.artifacts import importance_record, save_importance
from scaleot.data_owner.tuners.ist.config import ISTConfig
from scaleot.data_owner.tuners.ist.controller import ISTController, default_loss
from scaleot.data_owner.tuners.ist.hooks import ISTStepController, make_controller
from scaleot.data_owner.tuners.ist.layer import (
    lora_config_for,
    lora_target_modules,
    peft_layers_by_block,
    peft_parameters,
    suppressed,
)
from scaleot.data_owner.tuners.ist.optim import move_optimizer_state, optimizer_state_bytes
from scaleot.exchange.ist_scores import load_importance, plot_importance

__all__ = [
    "ISTConfig", "ISTController", "ISTStepController", "make_controller", "default_loss", "lora_config_for", "lora_target_modules",
    "peft_layers_by_block", "peft_parameters", "suppressed", "move_optimizer_state",
    "optimizer_state_bytes",
    "importance_record", "save_importance", "load_importance", "plot_importance",
]
