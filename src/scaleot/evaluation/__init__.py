"""Evaluation: lm-eval multiple-choice accuracy, perplexity, markdown tables."""

from scaleot.evaluation.mc import evaluate_mc, task_slug, write_task_yaml
from scaleot.evaluation.perplexity import perplexity
from scaleot.evaluation.tables import mc_table

__all__ = ["evaluate_mc", "task_slug", "write_task_yaml", "perplexity", "mc_table"]
