"""Task fine-tuning: the data owner's adapter tuning on an emulator, and the FT row."""

from scaleot.data_owner.finetune.config import FinetuneConfig
from scaleot.data_owner.finetune.export import block_state, export_adapter
from scaleot.data_owner.finetune.loop import (
    AnswerLoss,
    StepController,
    TrainResult,
    mc_accuracy,
    train,
)
from scaleot.data_owner.finetune.methods import TUNING_METHODS, TuningMethod
from scaleot.data_owner.finetune.trainable import (
    apply_lora,
    freeze_all_but_blocks,
    lora_target_names,
)

__all__ = [
    "export_adapter", "FinetuneConfig", "TUNING_METHODS", "TuningMethod",
    "AnswerLoss", "StepController", "TrainResult", "mc_accuracy", "train", "apply_lora",
    "block_state", "freeze_all_but_blocks", "lora_target_names",
]
