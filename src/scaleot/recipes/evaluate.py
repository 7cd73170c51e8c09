"""Evaluate a model zero-shot on multiple-choice tasks (lm-eval's numbers) and optionally perplexity.

Recipe shape (:class:`~scaleot.recipes.protocol.Recipe`): :class:`EvaluateRecipe` reads one
:class:`EvaluateRun`. One model's table: ``setup`` loads the model and the task splits,
``execute`` scores them (``--scorer fast``, the default: one context pass per example;
``--scorer lm-eval``: through lm-evaluation-harness itself; see :mod:`scaleot.evaluation.mc`),
``save`` writes JSON (with the scorer that ran, the split seed and sizes, the model
fingerprint and timings) and keeps the markdown table. ``--offsite``: the five rows +
Delta of an emulator and its adapters (:mod:`scaleot.evaluation.offsite`), written as
JSON and a ``.md`` table beside it; ``scaleot run`` scores each emulator this way.
The options are :class:`~scaleot.evaluation.config.EvaluateConfig`'s fields.

Raises ScaleOTError for unknown models/tasks, malformed task files, bad split sizes.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import typer

from scaleot.data.tasks import DEFAULT_TASKS
from scaleot.errors import check
from scaleot.evaluation.config import SPLITS, EvaluateConfig
from scaleot.models.device import lm_eval_autocast, machine_info
from scaleot.recipes.options import step_command
from scaleot.recipes.protocol import run_recipe
from scaleot.recipes.run_options import RunOptions, run_field

__all__ = ["EvaluateConfig", "EvaluateRecipe", "EvaluateRun", "evaluate", "command"]


def _opt(default, help: str, **extra):
    return field(default=default, metadata={"help": help, **extra})


@dataclass(kw_only=True)
class EvaluateRun:
    """One ``scaleot evaluate``: the run-level options, the evaluation options, the offsite inputs."""

    run: RunOptions = run_field("model", "device", "dtype", "out", "overwrite", "progress",
                                notes={"out": "the results JSON (--offsite: and its .md table)"})
    config: EvaluateConfig = field(default_factory=EvaluateConfig, metadata={"flatten": True})
    offsite: bool = _opt(False, "the five offsite rows + Delta (needs --emulator, --adapter)")
    emulator: str | None = _opt(None, "--offsite: the emulator bundle")
    adapter: list[str] | None = _opt(None, "--offsite: data owner's adapter, one per task; repeatable")
    ft: list[str] | None = _opt(None, "--offsite: FT-row adapter per task; repeatable")
    known: dict | None = _opt(None, "--offsite: rows already scored ({task: {row: result}}, Full ZS and FT)",
                              cli=False)


class EvaluateRecipe:
    """``scaleot evaluate``: one model's table, or (``offsite``) the five rows of an emulator."""

    def __init__(self, config: EvaluateRun):
        self.config, self.run = config, config.run
        cfg = config.config
        if not config.offsite:  # one model's table: the default tasks, exact fp32 unless asked
            cfg = replace(cfg, tasks=cfg.tasks or list(DEFAULT_TASKS), autocast=cfg.autocast or "none")
        self.cfg = cfg

    def check_paths(self) -> None:
        """``--out`` (and with ``--offsite`` its ``.md``) is not an input and not replaced unless asked."""
        from scaleot.outputs import check_output_file, local_path

        c, r = self.config, self.run
        if c.offsite:
            self._check_offsite()
            if r.out:
                check_output_file(r.out, overwrite=r.overwrite, inputs=[c.emulator, *c.adapter, *(c.ft or [])])
                check_output_file(Path(r.out).with_suffix(".md"), overwrite=r.overwrite, what="--out (its .md)")
        elif r.out:
            check_output_file(r.out, overwrite=r.overwrite,
                              inputs=[local_path(r.model), *(local_path(t) for t in self.cfg.tasks)])

    def _check_offsite(self) -> None:
        problems = []
        if not self.config.emulator:
            problems.append("--offsite needs --emulator DIR")
        if not self.config.adapter:
            problems.append("--offsite needs at least one --adapter DIR (the data owner's, one per task)")
        check("evaluate --offsite options", problems)

    def setup(self) -> None:
        """Check the model name, load the tasks (fails fast on bad names), then the model."""
        if self.config.offsite:
            return  # evaluate_offsite loads the full model, the bundle and each adapter's task itself
        from scaleot.data import SplitConfig, load_task
        from scaleot.models import KNOWN_MODELS, load_model, resolve_model_path

        cfg, r = self.cfg, self.run
        if r.model not in KNOWN_MODELS:  # fail fast on a bad name or path (known names convert later)
            resolve_model_path(r.model)
        split = SplitConfig(seed=cfg.split_seed, n_test=cfg.n_test, n_val=cfg.n_val)
        self.splits = [load_task(t, split) for t in cfg.tasks]
        self.model, self.tokenizer = load_model(r.model, device=r.device, dtype=r.dtype)

    def execute(self) -> None:
        """Score: the result document lands in ``self.doc``."""
        self.doc = self._offsite() if self.config.offsite else self._one_model()

    def _offsite(self) -> dict:
        from scaleot.evaluation.offsite import evaluate_offsite

        c, cfg, r = self.config, self.cfg, self.run
        return evaluate_offsite(r.model, c.emulator, list(c.adapter), list(c.ft or []) or None, limit=cfg.limit,
                                batch_size=cfg.batch_size, autocast=lm_eval_autocast(cfg.autocast, r.device),
                                device=r.device, known=c.known, tasks=cfg.tasks, scorer=cfg.scorer,
                                progress=r.progress)

    def _one_model(self) -> dict:
        from scaleot.evaluation import evaluate_mc, perplexity
        from scaleot.models import fingerprint_model

        cfg, r, model = self.cfg, self.run, self.model
        t0 = time.perf_counter()
        device = next(model.parameters()).device
        precision = lm_eval_autocast(cfg.autocast, device)
        results = evaluate_mc(model, self.tokenizer, self.splits, limit=cfg.limit, batch_size=cfg.batch_size,
                              split=SPLITS[cfg.split], autocast_dtype=precision, scorer=cfg.scorer,
                              progress=r.progress, desc="evaluate")
        seconds = time.perf_counter() - t0
        n = sum(x["n"] for x in results.values())
        options = {"model": r.model, **asdict(cfg), "device": r.device, "dtype": r.dtype,
                   "out": None if r.out is None else str(r.out), "overwrite": r.overwrite}
        doc = {"format_version": 1, "kind": "evaluation", "model": r.model,
               "model_fingerprint": fingerprint_model(model), "options": options, "split": cfg.split,
               "precision": {"weights": str(next(model.parameters()).dtype).removeprefix("torch."),
                             "autocast": "bf16" if precision else "none"},
               "machine": machine_info(device),
               "scorer": ", ".join(sorted({x["scorer"] for x in results.values()})),
               "tasks": results,
               "timing": {"mc_seconds": round(seconds, 2), "examples_per_second": round(n / seconds, 2)}}
        if cfg.perplexity_corpus:
            from scaleot.data import corpus_splits

            _, held = corpus_splits(cfg.perplexity_corpus, self.tokenizer, block_size=128,
                                    max_heldout_blocks=cfg.perplexity_blocks)
            doc["perplexity"] = {"corpus": cfg.perplexity_corpus, "blocks": len(held), "block_size": 128,
                                 "value": perplexity(model, held)}
        return doc

    def table(self) -> str:
        """The markdown table of ``self.doc``."""
        from scaleot.evaluation import mc_table
        from scaleot.evaluation.tables import offsite_table

        if self.config.offsite:
            return offsite_table(self.doc)
        table = mc_table(self.doc["tasks"], title=self.run.model)
        if "perplexity" in self.doc:
            p = self.doc["perplexity"]
            table += (f"\n\nperplexity on held-out {p['corpus']} ({p['blocks']}x{p['block_size']} tokens): "
                      f"{p['value']:.2f}")
        return table

    def save(self) -> Path | None:
        """Write the JSON (atomically; ``--offsite``: and the ``.md`` table) if ``--out``; returns it."""
        from scaleot.exchange.manifest import write_json_atomic

        out = self.run.out
        if out:
            write_json_atomic(Path(out), self.doc)
            if self.config.offsite:
                Path(out).with_suffix(".md").write_text(self.table() + "\n")
        return None if out is None else Path(out)


def evaluate(cfg: EvaluateConfig, run: RunOptions | None = None) -> tuple[dict, str]:
    """One model's table as one call (for notebooks): ``(result document, markdown table)``."""
    recipe = EvaluateRecipe(EvaluateRun(run=run or RunOptions(progress=False), config=cfg))
    run_recipe(recipe)
    return recipe.doc, recipe.table()


@step_command(EvaluateRun)
def command(config: EvaluateRun) -> None:
    """Evaluate a model zero-shot on multiple-choice tasks (lm-eval's acc / acc_norm)."""
    if config.offsite:  # unset autocast: what scaleot run scores with (configs/default.yaml evaluate:)
        config.config = replace(config.config, autocast=config.config.autocast or "auto")
    recipe = EvaluateRecipe(config)
    run_recipe(recipe)
    typer.echo(recipe.table())
