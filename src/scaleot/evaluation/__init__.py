"""Evaluation: multiple-choice accuracy (lm-eval, or the same numbers from the fast scorer), perplexity, tables."""

from scaleot.evaluation.mc import DEFAULT_SCORER, SCORERS, evaluate_mc, task_slug, write_task_yaml
from scaleot.evaluation.perplexity import perplexity
from scaleot.evaluation.tables import mc_table

__all__ = ["DEFAULT_SCORER", "SCORERS", "evaluate_mc", "task_slug", "write_task_yaml", "perplexity", "mc_table"]
