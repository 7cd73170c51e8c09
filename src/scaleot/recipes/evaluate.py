"""Evaluate a model zero-shot on multiple-choice tasks (lm-eval's numbers) and optionally perplexity.

Recipe shape: :func:`setup` loads the model and the task splits, :func:`run` scores them
(``--scorer fast``, the default: one context pass per example; ``--scorer lm-eval``: through
lm-evaluation-harness itself; see :mod:`scaleot.evaluation.mc`), :func:`save` writes JSON
(with the scorer that ran, the split seed and sizes, the model fingerprint and timings) and
prints a markdown table.

Raises ScaleOTError for unknown models/tasks, malformed task files, bad split sizes.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from scaleot.data.tasks import DEFAULT_TASKS
from scaleot.errors import ScaleOTError, check
from scaleot.models.device import AUTOCAST, lm_eval_autocast, machine_info
from scaleot.models.loading import DEFAULT_MODEL
from scaleot.validate.options import nonfinite_fields

SPLITS = {"test": "test", "dev": "val"}  # --split -> the TaskSplits field it scores


@dataclass
class EvaluateConfig:
    """What to evaluate and how."""

    model: str = DEFAULT_MODEL
    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))
    split: str = "test"  # "dev" for choosing (tasks, settings); "test" is scored once, for reporting
    limit: int | None = None
    split_seed: int = 0
    n_test: int = 400
    n_val: int = 300
    batch_size: int = 32
    device: str | None = None
    dtype: str | None = None
    autocast: str = "none"  # one model's table: exact fp32 unless asked (--offsite: auto, as `scaleot run`)
    scorer: str = "fast"  # scaleot.evaluation.DEFAULT_SCORER (not imported here: it pulls in torch)
    perplexity_corpus: str | None = None
    perplexity_blocks: int = 32
    out: str | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        problems = nonfinite_fields(self)
        if not self.tasks:
            problems.append("at least one --task is needed")
        if self.split not in SPLITS:
            problems.append(f"--split must be one of {', '.join(SPLITS)} (got {self.split!r})")
        if self.limit is not None and self.limit <= 0:
            problems.append(f"--limit must be > 0 (got {self.limit})")
        if self.batch_size <= 0:
            problems.append(f"--batch-size must be > 0 (got {self.batch_size})")
        from scaleot.evaluation.mc import SCORERS

        if self.scorer not in SCORERS:
            problems.append(f"--scorer must be one of {', '.join(SCORERS)} (got {self.scorer!r})")
        if self.autocast not in AUTOCAST:
            problems.append(f"--autocast must be one of {', '.join(AUTOCAST)} (got {self.autocast!r})")
        if self.perplexity_blocks <= 0:
            problems.append(f"--ppl-blocks must be > 0 (got {self.perplexity_blocks})")
        check("evaluate options", problems)
        if self.out:
            from scaleot.outputs import check_output_file, local_path

            check_output_file(self.out, overwrite=self.overwrite,
                              inputs=[local_path(self.model), *(local_path(t) for t in self.tasks)])


def setup(cfg: EvaluateConfig):
    """Check the model name, load the tasks (fails fast on bad names), then the model."""
    from scaleot.data import SplitConfig, load_task
    from scaleot.models import KNOWN_MODELS, load_model, resolve_model_path

    if cfg.model not in KNOWN_MODELS:  # fail fast on a bad name or path (known names convert later)
        resolve_model_path(cfg.model)

    split = SplitConfig(seed=cfg.split_seed, n_test=cfg.n_test, n_val=cfg.n_val)
    splits = [load_task(t, split) for t in cfg.tasks]
    model, tokenizer = load_model(cfg.model, device=cfg.device, dtype=cfg.dtype)
    return model, tokenizer, splits


def run(cfg: EvaluateConfig, model, tokenizer, splits, progress: bool = False) -> dict:
    """Score the model (with a progress bar over the examples if asked); returns the result document."""
    from scaleot.evaluation import evaluate_mc, perplexity
    from scaleot.models import fingerprint_model

    t0 = time.perf_counter()
    device = next(model.parameters()).device
    precision = lm_eval_autocast(cfg.autocast, device)
    results = evaluate_mc(model, tokenizer, splits, limit=cfg.limit, batch_size=cfg.batch_size,
                          split=SPLITS[cfg.split], autocast_dtype=precision, scorer=cfg.scorer,
                          progress=progress, desc="evaluate")
    seconds = time.perf_counter() - t0
    n = sum(r["n"] for r in results.values())
    doc = {"format_version": 1, "kind": "evaluation", "model": cfg.model,
           "model_fingerprint": fingerprint_model(model), "options": asdict(cfg), "split": cfg.split,
           "precision": {"weights": str(next(model.parameters()).dtype).removeprefix("torch."),
                         "autocast": "bf16" if precision else "none"},
           "machine": machine_info(device),
           "scorer": ", ".join(sorted({r["scorer"] for r in results.values()})),
           "tasks": results, "timing": {"mc_seconds": round(seconds, 2), "examples_per_second": round(n / seconds, 2)}}
    if cfg.perplexity_corpus:
        from scaleot.data import corpus_splits

        _, held = corpus_splits(cfg.perplexity_corpus, tokenizer, block_size=128,
                                max_heldout_blocks=cfg.perplexity_blocks)
        doc["perplexity"] = {"corpus": cfg.perplexity_corpus, "blocks": len(held), "block_size": 128,
                             "value": perplexity(model, held)}
    return doc


def save(cfg: EvaluateConfig, doc: dict) -> str:
    """Write JSON (atomically) if asked; return the markdown table."""
    from scaleot.evaluation import mc_table
    from scaleot.exchange.manifest import write_json_atomic

    table = mc_table(doc["tasks"], title=cfg.model)
    if "perplexity" in doc:
        p = doc["perplexity"]
        table += f"\n\nperplexity on held-out {p['corpus']} ({p['blocks']}x{p['block_size']} tokens): {p['value']:.2f}"
    if cfg.out:
        write_json_atomic(Path(cfg.out), doc)
    return table


def evaluate(cfg: EvaluateConfig, progress: bool = False) -> tuple[dict, str]:
    """The whole recipe as one call (for notebooks and `scaleot run`)."""
    model, tokenizer, splits = setup(cfg)
    doc = run(cfg, model, tokenizer, splits, progress=progress)
    return doc, save(cfg, doc)


def run_offsite_command(model: str, emulator: str | None, adapters: list[str] | None, ft: list[str] | None,
                        limit: int | None, batch_size: int, autocast: str | None, device: str | None,
                        out: str | None, overwrite: bool = False, tasks: list[str] | None = None,
                        scorer: str | None = None, progress: bool = False) -> str:
    """``scaleot evaluate --offsite``: check the options, score, write JSON (+ .md); return the table.

    ``tasks`` are the task specs the adapters' recorded tasks are matched against (local
    task files are recorded by name and content hash only).
    """
    from scaleot.evaluation.offsite import evaluate_offsite
    from scaleot.evaluation.tables import offsite_table
    from scaleot.exchange.manifest import write_json_atomic

    problems = []
    if not emulator:
        problems.append("--offsite needs --emulator DIR")
    if not adapters:
        problems.append("--offsite needs at least one --adapter DIR (the data owner's, one per task)")
    from scaleot.evaluation.mc import SCORERS

    if scorer is not None and scorer not in SCORERS:
        problems.append(f"--scorer must be one of {', '.join(SCORERS)} (got {scorer!r})")
    check("evaluate --offsite options", problems)
    if out:
        from scaleot.outputs import check_output_file

        check_output_file(out, overwrite=overwrite, inputs=[emulator, *adapters, *(ft or [])])
        check_output_file(Path(out).with_suffix(".md"), overwrite=overwrite, what="--out (its .md)")
    doc = evaluate_offsite(model, emulator, adapters, ft, limit=limit, batch_size=batch_size,
                           autocast=autocast, device=device, tasks=tasks, scorer=scorer, progress=progress)
    table = offsite_table(doc)
    if out:
        write_json_atomic(Path(out), doc)
        Path(out).with_suffix(".md").write_text(table + "\n")
    return table


def command(
    model: Annotated[str, typer.Option(help="known model name (smollm2-135m, gemma3-270m), local HF folder or hub id")] = DEFAULT_MODEL,
    task: Annotated[list[str], typer.Option(help="task: gen:<family>, pkg:<family>, a .jsonl file or dataset "
                                                 "folder, hf:<dataset>, bigbench:<task>; repeatable "
                                                 "(default: the default job's tasks)")] = None,
    split: Annotated[str, typer.Option(help="dev (for choosing tasks and settings) or test (scored once, "
                                            "for the numbers you report)")] = "test",
    limit: Annotated[int | None, typer.Option(help="evaluate only the first N examples of the split")] = None,
    split_seed: Annotated[int, typer.Option(help="seed of the task split")] = 0,
    n_test: Annotated[int, typer.Option(help="test split size")] = 400,
    n_val: Annotated[int, typer.Option(help="dev split size (held out from train)")] = 300,
    batch_size: Annotated[int, typer.Option(help="lm-eval batch size (the fast scorer batches by tokens)")] = 32,
    scorer: Annotated[str, typer.Option(help="fast (one context pass per example, the default) or lm-eval "
                                             "(the reference); both give lm-eval's numbers")] = "fast",
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:N")] = None,
    dtype: Annotated[str | None, typer.Option(help="auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16")] = None,
    autocast: Annotated[str | None, typer.Option(
        help="bf16 autocast of the forwards: none, bf16, auto (auto = bf16 where it is fast). Default: auto "
             "with --offsite, as scaleot run scores the five rows; none for one model's table, which "
             "differs from configs/default.yaml (its evaluate: section is the offsite rows): exact fp32 "
             "on any machine. Every result records the precision that ran")] = None,
    ppl_corpus: Annotated[str | None, typer.Option(help="also report perplexity on this corpus's held-out text (kjv, .txt, .jsonl)")] = None,
    ppl_blocks: Annotated[int, typer.Option(help="number of 128-token blocks for perplexity")] = 32,
    out: Annotated[str | None, typer.Option(help="write the results JSON here")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing --out file")] = False,
    offsite: Annotated[bool, typer.Option(help="the five offsite rows + Delta (needs --emulator, --adapter)")] = False,
    emulator: Annotated[str | None, typer.Option(help="--offsite: the emulator bundle")] = None,
    adapter: Annotated[list[str], typer.Option(help="--offsite: data owner's adapter, one per task; repeatable")] = None,
    ft: Annotated[list[str], typer.Option(help="--offsite: FT-row adapter per task; repeatable")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar (rows, examples)")] = True,
) -> None:
    """Evaluate a model zero-shot on multiple-choice tasks (lm-eval's acc / acc_norm)."""
    if offsite:  # tasks and splits come from the adapters (scaleot.evaluation.offsite)
        autocast = autocast or "auto"  # what scaleot run scores with (configs/default.yaml evaluate:)
        if autocast not in AUTOCAST:
            raise ScaleOTError(f"--autocast must be one of {', '.join(AUTOCAST)} (got {autocast!r})")
        typer.echo(run_offsite_command(model, emulator, adapter, ft, limit, batch_size,
                                       lm_eval_autocast(autocast, device), device, out,
                                       overwrite=overwrite, tasks=task, scorer=scorer, progress=progress))
        return
    cfg = EvaluateConfig(model=model, tasks=task or list(DEFAULT_TASKS), split=split, limit=limit, split_seed=split_seed,
                         n_test=n_test, n_val=n_val, batch_size=batch_size, device=device, dtype=dtype,
                         autocast=autocast or "none", scorer=scorer, perplexity_corpus=ppl_corpus,
                         perplexity_blocks=ppl_blocks, out=out, overwrite=overwrite)
    _, table = evaluate(cfg, progress=progress)
    typer.echo(table)
