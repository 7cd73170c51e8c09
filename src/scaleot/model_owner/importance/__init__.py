"""ScaleOT stage 1: Dynamic LayerReplace (block importance + harmonizers), docs/method.md section 2."""

from scaleot.model_owner.importance.config import ImportanceConfig
from scaleot.model_owner.importance.leave_one_out import leave_one_out, spearman
from scaleot.model_owner.importance.sampling import groups, sample_configuration
from scaleot.model_owner.importance.trainer import ImportanceTrainer, advantages, discard_grads

__all__ = ["ImportanceConfig", "ImportanceTrainer", "advantages", "discard_grads", "groups", "leave_one_out",
           "sample_configuration", "spearman"]
