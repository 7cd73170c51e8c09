"""Task fine-tuning: the data owner's adapter tuning on an emulator, and the FT row."""

from scaleot.adapter import TunedAdapter, block_state, read_adapter, write_adapter
from scaleot.finetune.config import FinetuneConfig
from scaleot.finetune.loop import AnswerLoss, StepController, TrainResult, mc_accuracy, train
from scaleot.finetune.methods import TUNING_METHODS, TuningMethod
from scaleot.finetune.trainable import (
    apply_lora,
    freeze_all_but_blocks,
    lora_target_names,
)

__all__ = [
    "TunedAdapter", "read_adapter", "write_adapter", "FinetuneConfig", "TUNING_METHODS", "TuningMethod",
    "AnswerLoss", "StepController", "TrainResult", "mc_accuracy", "train", "apply_lora",
    "block_state", "freeze_all_but_blocks", "lora_target_names",
]
