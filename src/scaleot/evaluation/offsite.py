"""The five evaluation rows of offsite-tuning, and ``Delta = Plug-in - Emu FT`` (docs/method.md section 1).

| row     | model        | built from                                   |
|---------|--------------|----------------------------------------------|
| Full ZS | ``[A, E]``   | the full model untouched                     |
| Emu ZS  | ``[A, E*]``  | the emulator untouched                       |
| FT      | ``[A, E]``   | the full model with the FT-row adapter       |
| Emu FT  | ``[A', E*]`` | the emulator with the data owner's adapter   |
| Plug-in | ``[A', E]``  | the full model with the data owner's adapter |

Each adapter names its task and split (``adapter.json``), so every row of a task is
scored on the same test examples through :func:`scaleot.evaluation.evaluate_mc` (lm-eval's
numbers; ``scorer`` picks lm-eval itself or the faster context-sharing scorer, and every row
records which one ran).
Models are built one at a time from fresh copies; nothing is swapped in place.
Standard error of Delta: paired, because Plug-in and Emu FT are scored on the same test
examples: ``std(c_plug - c_emu, ddof=1) / sqrt(n)`` over the per-example 0/1 ``correct``
lists. Results saved without ``correct`` fall back to the unpaired
``sqrt(se_plug^2 + se_emu^2)`` (conservative: it ignores the positive correlation of the
two rows); both are kept (``stderr``, ``stderr_unpaired``) and ``paired`` says which.

The Markdown of these documents is :func:`scaleot.evaluation.tables.offsite_table`; the
command line is ``scaleot evaluate --offsite`` (:mod:`scaleot.recipes.evaluate`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from scaleot.data import SplitConfig, load_task
from scaleot.errors import ScaleOTError
from scaleot.exchange.adapter import TunedAdapter, read_adapter
from scaleot.exchange.checks import check_adapter_matches_bundle
from scaleot.merge import check_adapter_fits, plug_into
from scaleot.models.device import machine_info, resolve_device
from scaleot.stats import paired_stderr

ROWS = ("Full ZS", "Emu ZS", "FT", "Emu FT", "Plug-in")


def _split_of(adapter: TunedAdapter, tasks: list[str] | None = None) -> tuple[str, SplitConfig]:
    """The task spec to load (a name, or the local file among ``tasks`` the adapter names) and its split."""
    from scaleot.exchange.disclosure import task_matches

    o, d = adapter.info["options"], adapter.info["data"]
    split = SplitConfig(seed=o["split_seed"], n_test=o["n_test"], n_val=o["n_val"], n_train=o["n_train"])
    for t in tasks or []:
        if task_matches(d, t):
            return t, split
    if "task_sha256" in d or Path(d["task"]).is_absolute():
        raise ScaleOTError(f"adapter {adapter.path} was tuned on the local task file {Path(d['task']).name}: "
                           "pass it with --task PATH")
    return d["task"], split


def _score(build, splits, limit, batch_size, autocast, scorer, bar, row: str) -> dict:
    """Score one row on ``splits``; ``bar`` (the rows' bar) advances by one per task, and the
    examples get their own bar inside it."""
    from scaleot.evaluation.mc import evaluate_mc

    model, tokenizer = build()
    t0 = time.perf_counter()
    bar.set_postfix_str(row)
    out = evaluate_mc(model, tokenizer, splits, limit=limit, batch_size=batch_size, autocast_dtype=autocast,
                      scorer=scorer, progress=not bar.disable, desc=row)
    for r in out.values():
        r["seconds"] = round(time.perf_counter() - t0, 2)
    bar.update(len(splits))
    del model
    return out


def evaluate_offsite(
    model: str, emulator: str | Path, adapters: list[str | Path], ft: list[str | Path] | None = None,
    limit: int | None = None, batch_size: int = 16, autocast: str | None = None, device: str | None = None,
    known: dict[str, dict] | None = None, tasks: list[str] | None = None, scorer: str | None = None,
    progress: bool = False,
) -> dict:
    """Score the five rows for every task that has an adapter.

    Args:
        model: the full model (name or folder).
        emulator: the emulator bundle the adapters were tuned on.
        adapters: the data owner's tuned adapters, one per task.
        ft: FT-row adapters (``scaleot finetune --model``), matched to tasks by name; a task
            without one gets no FT row.
        limit: score only the first ``limit`` test examples.
        tasks: task specs to match the adapters' recorded tasks against (needed for local
            task files, which an adapter records by name and content hash only).
        known: ``{task: {row: result}}`` already scored (Full ZS and FT do not depend on the
            emulator, so a run with several emulators scores them once).
        scorer: ``"fast"`` or ``"lm-eval"`` (default: :data:`scaleot.evaluation.DEFAULT_SCORER`).
        progress: a progress bar over the rows to score (one per task and row), and one over
            the examples of the row being scored.

    Returns:
        ``{"rows": {task: {row: {acc, acc_stderr, acc_norm, ..., correct}}}, "delta": {task|"average":
        {"acc", "stderr", "stderr_unpaired", "paired"}}, "average": {row: acc}, "tasks": [...]}``.

    Raises:
        ScaleOTError: an adapter tuned on another emulator or for another model, two
            adapters for one task, an FT adapter for a task with no adapter.
    """
    from scaleot.models import fingerprint_model, load_model
    from scaleot.models.emulator import load_emulator

    tuned = [read_adapter(a) for a in adapters]
    fts = [read_adapter(f) for f in (ft or [])]
    by_task = {}
    for a in tuned:
        task, _ = _split_of(a, tasks)
        if task in by_task:
            raise ScaleOTError(f"two adapters for task {task}: {by_task[task].path} and {a.path}")
        by_task[task] = a
    for f in fts:
        if f.info.get("emulator_fingerprint") is not None:
            raise ScaleOTError(f"--ft {f.path} is a data owner's adapter (tuned on an emulator); "
                               "the FT row needs one tuned on the full model (scaleot finetune --model)")
    ft_by_task = {_split_of(f, tasks)[0]: f for f in fts}
    extra = sorted(set(ft_by_task) - set(by_task))
    if extra:
        raise ScaleOTError(f"FT adapter for {extra[0]} but no emulator adapter for that task")
    splits = {t: load_task(t, _split_of(a, tasks)[1]) for t, a in by_task.items()}

    bundle = load_emulator(emulator, device=device)
    emu_fp = bundle.fingerprint
    for a in tuned:
        if a.info.get("emulator_fingerprint") != emu_fp:
            raise ScaleOTError(f"adapter {a.path} was not tuned on emulator {emulator} (fingerprint differs)")
        check_adapter_matches_bundle(a.info, bundle.info, emu_fp, f"adapter {a.path}")
    allowed = list(bundle.adapter_sources)
    full, tok = load_model(model, device=device)
    base_fp = fingerprint_model(full)
    for a in tuned + fts:
        check_adapter_fits(full, a, base_fp)
    place = dict(zip(bundle.adapter_sources, bundle.adapter_positions, strict=True))  # source -> emulator block
    del full, bundle

    def emulator_model():
        b = load_emulator(emulator, device=device)
        return b.model, b.tokenizer

    rows: dict[str, dict] = {t: dict((known or {}).get(t, {})) for t in by_task}
    from scaleot.evaluation.mc import DEFAULT_SCORER
    from scaleot.progress import progress_bar

    todo = [splits[t] for t in by_task if "Full ZS" not in rows[t]]
    n_ft = sum(1 for t in by_task if t in ft_by_task and "FT" not in rows[t])
    bar = progress_bar(len(todo) + 3 * len(by_task) + n_ft, "evaluate", progress, unit="row")
    kw = dict(limit=limit, batch_size=batch_size, autocast=autocast, scorer=scorer or DEFAULT_SCORER, bar=bar)
    with bar:
        _score_rows(rows, model, device, emulator_model, place, splits, by_task, ft_by_task, allowed, todo, kw)
    return summarise(rows, {"model": model, "base_fingerprint": base_fp, "emulator": str(emulator),
                            "emulator_fingerprint": emu_fp, "adapters": [str(a) for a in adapters],
                            "ft": [str(f) for f in (ft or [])], "limit": limit,
                            "scorer": scorers_of(rows), "precision": "bf16 autocast" if autocast else "fp32",
                            "machine": machine_info(resolve_device(device))})


def _score_rows(rows, model, device, emulator_model, place, splits, by_task, ft_by_task, allowed, todo,
                kw) -> None:
    """Fill ``rows[task][row]``: Full ZS (where not known), Emu ZS, Emu FT, Plug-in, FT (where not known)."""
    from scaleot.models import load_model

    if todo:
        for task, r in _score(lambda: load_model(model, device=device), todo, row="Full ZS", **kw).items():
            rows[task]["Full ZS"] = r
    for task, r in _score(emulator_model, list(splits.values()), row="Emu ZS", **kw).items():
        rows[task]["Emu ZS"] = r
    for task, a in by_task.items():
        def emu_ft(a=a):
            m, t = emulator_model()
            return plug_into(m, a, check=False, block_of_source=place, allowed=allowed), t

        def plugged(a=a):
            m, t = load_model(model, device=device)
            return plug_into(m, a, check=False, allowed=allowed), t

        rows[task]["Emu FT"] = _score(emu_ft, [splits[task]], row="Emu FT", **kw)[task]
        rows[task]["Plug-in"] = _score(plugged, [splits[task]], row="Plug-in", **kw)[task]
        if task in ft_by_task and "FT" not in rows[task]:
            def ft_model(f=ft_by_task[task]):
                m, t = load_model(model, device=device)
                return plug_into(m, f, check=False), t

            rows[task]["FT"] = _score(ft_model, [splits[task]], row="FT", **kw)[task]


def precision_of(doc: dict) -> str:
    """How an offsite document was scored: ``"fp32"`` or ``"bf16 autocast"``, and on which CPU/GPU."""
    meta = doc.get("meta") or {}
    m = meta.get("machine") or {}
    where = m.get("gpu") or m.get("cpu", "an unrecorded machine")
    return f"{meta.get('precision', 'precision not recorded')} on {where}"


def scorers_of(rows: dict[str, dict]) -> str:
    """The scorers that produced ``{task: {row: result}}``: ``"fast"``, ``"lm-eval"`` or both, comma-separated
    (results saved before the scorer was recorded count as ``"lm-eval"``)."""
    return ", ".join(sorted({r.get("scorer", "lm-eval") for task in rows.values() for r in task.values()}))


def delta_of(p: dict, e: dict) -> dict:
    """Delta = ``p - e`` (Plug-in - Emu FT) with its standard error: paired when both carry
    per-example ``correct`` lists of the same length, else the unpaired (conservative) one."""
    unpaired = math.hypot(p["acc_stderr"], e["acc_stderr"])
    cp, ce = p.get("correct"), e.get("correct")
    paired = bool(cp) and bool(ce) and len(cp) == len(ce) and len(cp) >= 2
    return {"acc": p["acc"] - e["acc"], "stderr": paired_stderr(cp, ce) if paired else unpaired,
            "stderr_unpaired": unpaired, "paired": paired}


def summarise(rows: dict[str, dict], meta: dict | None = None) -> dict:
    """Add Delta per task and averaged, and the per-row average over tasks.

    Tasks are independent, so the average's standard error is ``sqrt(sum se_t^2) / k``
    (the same for ``stderr_unpaired``); the average is ``paired`` when every task is.
    """
    delta, average = {}, {}
    for task, r in rows.items():
        delta[task] = delta_of(r["Plug-in"], r["Emu FT"])
    for row in ROWS:
        have = [r[row] for r in rows.values() if row in r]
        if len(have) == len(rows):
            average[row] = {"acc": sum(h["acc"] for h in have) / len(have),
                            "acc_stderr": math.sqrt(sum(h["acc_stderr"] ** 2 for h in have)) / len(have)}
    k = len(delta)
    delta["average"] = {"acc": sum(d["acc"] for d in delta.values()) / k,
                        "stderr": math.sqrt(sum(d["stderr"] ** 2 for d in delta.values())) / k,
                        "stderr_unpaired": math.sqrt(sum(d["stderr_unpaired"] ** 2 for d in delta.values())) / k,
                        "paired": all(d["paired"] for d in delta.values())}
    return {"format_version": 1, "kind": "offsite-evaluation", "tasks": list(rows), "rows": rows,
            "average": average, "delta": delta, "meta": meta or {}}
