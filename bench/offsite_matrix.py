"""The offsite benchmark matrix (issue 7): every emulator method side by side, and ScaleOT's sweep.

One ``scaleot run`` job (:mod:`scaleot.recipes.run`) with many emulators, so every emulator
is tuned and scored with the same model, tasks, splits, seeds, steps and batch, the FT and
Full ZS rows are computed once, and an interrupted matrix continues where it stopped (each
finished step has a manifest). Then three summaries are written beside the run's own
``report.md``:

- ``matrix.md``: ``uniform``, ``uniform-kd``, ``crash``, ``drop`` and ``scaleot`` at the
  same emulator size (``alpha`` of the middle replaced or removed, the scale's ``beta``), plus the
  ``reference`` row: the adapter tuned on the full model itself (no emulator; the best any
  emulator's plug-in can do with this adapter and budget).
- ``sweep.md``: ScaleOT at every ``alpha x beta`` of the scale.
- ``claims.md``: the issue's claims, each checked on the numbers, and ``matrix.json``
  (everything machine-readable) and ``matrix.png`` (privacy-utility plane and Delta vs size).

Usage::

    python -m bench.offsite_matrix --scale quick --out runs/matrix_quick
    python -m bench.offsite_matrix --scale full --out runs/matrix_full --model /path/to/hf_model
    python -m bench.offsite_matrix --scale quick --out runs/matrix_quick --importance DIR  # reuse stage 1
    python -m bench.offsite_matrix --out runs/matrix_quick --report-only                  # redo summaries

Scales: ``default`` is ``configs/default.yaml`` itself (its tasks, stage 1, tuning budget and
emulator size; issue 14's settled configuration), with ScaleOT's alpha swept at its beta;
``quick`` is the issue-7 matrix sized for a 2-core CPU (SmolLM2-135M, two BIG-bench tasks; wall
time in BENCHMARKS.md); ``full`` has more tasks, data and steps, for a GPU or a long run.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

import yaml

from scaleot.errors import ScaleOTError
from scaleot.evaluation.tables import short_task
from scaleot.exchange.manifest import write_json_atomic
from scaleot.models.loading import DEFAULT_MODEL

MATRIX_METHODS = ("scaleot", "uniform", "uniform-kd", "crash", "drop")
REFERENCE = "reference"  # the adapter tuned on the full model (uniform emulator keeping every block)

_TASKS2 = ["pkg:word_sentiment", "gen:letters"]

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"


def default_scale(path: Path = DEFAULT_CONFIG) -> dict:
    """The ``default`` scale: ``configs/default.yaml``'s sections (read, not repeated here) and
    its ScaleOT emulator's size, with alpha swept around it at the same beta."""
    cfg = yaml.safe_load(path.read_text())
    ours = next(e for e in cfg["emulators"] if e["method"] == "scaleot")
    nb, nt = (int(x) for x in str(cfg.get("adapter", "2,2")).split(","))
    scale = {k: cfg[k] for k in ("model", "tasks", "device", "importance", "finetune", "ft", "evaluate") if k in cfg}
    scale["matrix"] = {"n_bottom": nb, "n_top": nt, "alpha": ours["alpha"], "beta": ours.get("beta", 0.0),
                       "alphas": sorted({0.15, 0.35, 0.5, ours["alpha"]}), "betas": [ours.get("beta", 0.0)],
                       "kd_steps": 50, "reference": True}
    return scale


SCALES: dict[str, dict] = {
    "default": default_scale(),
    # Sized for a 2-core CPU. On an AVX2-only CPU (no native bf16, so fp32: see
    # models.device.bf16_is_fast) one forward+backward of the 135M model takes ~6 s, so the
    # budget is tight: stage 1 is the default preset cut to 60 steps, 30 tuning steps per
    # emulator (240 examples), 100 test examples per task. Measured wall time: BENCHMARKS.md.
    "quick": {
        "model": DEFAULT_MODEL,
        "tasks": _TASKS2,
        "device": "auto",
        "importance": {"corpus": "kjv", "n_bottom": 2, "n_top": 2, "steps": 60, "batch_size": 4,
                       "score_batch_size": 4, "checkpoint_every": 20, "autocast": "auto"},
        # lr 3e-4: with few steps, 3e-4 beat 1e-4 both through the emulator and on the full
        # model (goal_inference plug-in 40.9 vs 39.6, adapter-on-full-model 45.8 vs 45.1;
        # bench/results/offsite_utility.md)
        "finetune": {"method": "full", "lr": 3e-4, "epochs": 1, "batch_size": 8, "max_length": 128,
                     "n_train": 240, "n_val": 20, "n_test": 100, "split_seed": 0, "seed": 0, "autocast": "auto",
                     "eval_batch_size": 32},
        "ft": {"lr": 5e-5},
        "evaluate": {"batch_size": 32, "autocast": "auto"},
        "matrix": {"n_bottom": 2, "n_top": 2, "alpha": 0.5, "alphas": [0.25, 0.5, 0.75],
                   "betas": [0.0, 0.3, 0.6], "kd_steps": 50, "reference": True},
    },
    # More tasks, data and steps: meant for a GPU (or a night on a CPU). --model takes larger
    # HF models by path; n_bottom/n_top stay 2+2 (the paper's sandwich).
    "full": {
        "model": DEFAULT_MODEL,
        "tasks": _TASKS2 + ["pkg:rhyme", "pkg:subdivision"],
        "device": "auto",
        "importance": {"corpus": "kjv", "n_bottom": 2, "n_top": 2, "steps": 200, "batch_size": 4,
                       "score_batch_size": 4, "autocast": "auto"},
        "finetune": {"method": "full", "lr": 1e-4, "epochs": 2, "batch_size": 8, "max_length": 192,
                     "n_train": 1500, "n_val": 100, "n_test": 500, "split_seed": 0, "seed": 0, "autocast": "auto",
                     "eval_batch_size": 32},
        "ft": {"lr": 5e-5},
        "evaluate": {"batch_size": 32, "autocast": "auto"},
        "matrix": {"n_bottom": 2, "n_top": 2, "alpha": 0.5, "alphas": [0.25, 0.5, 0.75],
                   "betas": [0.0, 0.3, 0.6], "kd_steps": 400, "reference": True},
    },
}


def sweep_name(alpha: float, beta: float) -> str:
    return f"scaleot-a{alpha:g}-b{beta:g}"


def matrix_config(scale: dict, model: str | None = None, tasks: list[str] | None = None,
                  importance: str | None = None) -> dict:
    """The ``scaleot run`` config of a matrix: the scale's sections plus every emulator.

    The emulator called ``scaleot`` is the sweep point ``(alpha, beta)``, shared by both tables
    (``beta``: the matrix's, 0 where it names none).
    """
    cfg = copy.deepcopy(scale)
    m = cfg.pop("matrix")
    if model:
        cfg["model"] = model
    if tasks:
        cfg["tasks"] = tasks
    if importance:
        cfg["importance"] = {"from": importance}
    adapter = {"n_bottom": m["n_bottom"], "n_top": m["n_top"]}
    beta = m.get("beta", 0.0)
    emus = [{"name": "scaleot", "method": "scaleot", **adapter, "alpha": m["alpha"], "beta": beta}]
    for method in MATRIX_METHODS[1:]:
        entry = {"name": method, "method": method, **adapter, "alpha": m["alpha"], "beta": beta}
        if method == "uniform-kd":
            entry["kd_steps"] = m["kd_steps"]
        emus.append(entry)
    if m.get("reference"):
        emus.append({"name": REFERENCE, "method": "uniform", **adapter, "alpha": 0.0, "beta": 0.0})
    for a in m["alphas"]:
        for b in m["betas"]:
            if (a, b) != (m["alpha"], beta):
                emus.append({"name": sweep_name(a, b), "method": "scaleot", **adapter, "alpha": a, "beta": b})
    cfg["emulators"] = emus
    cfg["plug"] = ["scaleot"]  # one plug-in model on disk is enough; every row is scored in memory
    return cfg


# ----------------------------------------------------------------------------- summaries

def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def stage1_seconds(out: Path, steps: dict) -> float | None:
    """Stage 1's own training time (from importance.json, so a reused stage 1 is counted too)."""
    folder = steps.get("importance", {}).get("reused") or (out / "importance")
    timing = _read(Path(folder) / "importance.json").get("timing", {})
    sec = timing.get("train_seconds_this_process")
    return float(sec) if sec is not None else steps.get("importance", {}).get("seconds")


def collect(out: Path, cfg: dict) -> dict:
    """One record per emulator: options, parameters, build cost and the averaged rows."""
    steps = _read(out / "steps.json")
    s1 = stage1_seconds(out, steps)
    records = {}
    for e in cfg["emulators"]:
        name = e["name"]
        doc = _read(out / "eval" / f"{name}.json")
        info = _read(out / "emulators" / name / "emulator.json")
        if not doc or not info:
            continue
        build = steps.get(f"emulate/{name}", {}).get("seconds")
        needs_s1 = e["method"] in ("scaleot", "drop")
        avg = doc["average"]
        records[name] = {
            "method": e["method"], "alpha": e.get("alpha"), "beta": e.get("beta", 0.0),
            "params": info["params"]["emulator"], "params_ratio": info["params"]["ratio"],
            "stage1_s": s1 if needs_s1 else 0.0, "stage2_s": build,
            "build_s": (build or 0.0) + ((s1 or 0.0) if needs_s1 else 0.0),
            "rows": {row: {"acc": v["acc"], "stderr": v["acc_stderr"]} for row, v in avg.items()},
            "delta": doc["delta"]["average"],
            "per_task": {t: {row: v["acc"] for row, v in r.items()} for t, r in doc["rows"].items()},
            "correct": {t: {row: v["correct"] for row, v in r.items() if v.get("correct")}
                        for t, r in doc["rows"].items()},
        }
    return records


def _pm(x: dict | None, signed: bool = False) -> str:
    if not x:
        return "-"
    return f"{100 * x['acc']:{'+' if signed else ''}.1f} ± {100 * x['stderr']:.1f}"


def _line(name: str, r: dict, extra: list[str]) -> str:
    rows = r["rows"]
    cells = extra + [f"{r['params'] / 1e6:.1f}M ({r['params_ratio']:.2f})", f"{r['build_s']:.0f}",
                     _pm(rows.get("Emu ZS")), _pm(rows.get("Emu FT")), _pm(rows.get("Plug-in")),
                     _pm(r["delta"], signed=True)]
    return f"| {name} | " + " | ".join(cells) + " |"


def _fixed_rows(records: dict) -> list[str]:
    first = next(iter(records.values()))["rows"]
    return [f"Full ZS (the full model, untuned): {_pm(first.get('Full ZS'))}; "
            f"FT (all blocks tuned on the task): {_pm(first.get('FT'))}."]


def matrix_table(records: dict) -> str:
    head = ["| emulator | method | params (share) | build s | Emu ZS | Emu FT | Plug-in | Delta |",
            "|---|---|---|---|---|---|---|---|"]
    names = [n for n in ("scaleot", *MATRIX_METHODS[1:], REFERENCE) if n in records]
    return "\n".join(head + [_line(n, records[n], [records[n]["method"]]) for n in names])


def sweep_table(records: dict, cfg: dict) -> str:
    head = ["| emulator | alpha | beta | params (share) | build s | Emu ZS | Emu FT | Plug-in | Delta |",
            "|---|---|---|---|---|---|---|---|---|"]
    rows = [(r["alpha"], r["beta"], n) for n, r in records.items() if r["method"] == "scaleot"]
    return "\n".join(head + [_line(n, records[n], [f"{a:g}", f"{b:g}"]) for a, b, n in sorted(rows)])


def _acc(records: dict, name: str, row: str) -> float | None:
    r = records.get(name, {}).get("rows", {}).get(row)
    return None if r is None else 100 * r["acc"]


def paired_diff(records: dict, a: tuple[str, str], b: tuple[str, str]) -> str:
    """``" (paired standard error of the difference: X)"`` of row a[1] of emulator a[0] minus
    row b[1] of b[0], averaged over tasks, where both were scored per example; else ``""``."""
    from scaleot.stats import paired_stderr

    ca, cb = records.get(a[0], {}).get("correct", {}), records.get(b[0], {}).get("correct", {})
    ses = []
    for task in ca:
        x, y = ca[task].get(a[1]), cb.get(task, {}).get(b[1])
        if not x or not y or len(x) != len(y):
            return ""
        ses.append(paired_stderr(x, y))
    if not ses:
        return ""
    return f", paired standard error of the difference {100 * math.sqrt(sum(v * v for v in ses)) / len(ses):.1f}"


def check_claims(records: dict, cfg: dict, m: dict) -> list[dict]:
    """The issue's claims, each ``{claim, holds (True/False/None = not measurable), evidence}``."""
    claims = []

    def add(text, holds, evidence):
        claims.append({"claim": text, "holds": holds, "evidence": evidence})

    ft, plug = _acc(records, "scaleot", "FT"), _acc(records, "scaleot", "Plug-in")
    if ft is not None and plug is not None:
        add("ScaleOT plug-in >= FT - 1 point (task average)", plug >= ft - 1,
            f"plug-in {plug:.1f} vs FT {ft:.1f} ({plug - ft:+.1f}"
            f"{paired_diff(records, ('scaleot', 'Plug-in'), ('scaleot', 'FT'))})")
    for other in ("uniform", "crash"):
        p2 = _acc(records, other, "Plug-in")
        if plug is not None and p2 is not None:
            add(f"ScaleOT plug-in >= {other} plug-in at the same size", plug >= p2,
                f"{plug:.1f} vs {p2:.1f} ({plug - p2:+.1f}"
                f"{paired_diff(records, ('scaleot', 'Plug-in'), (other, 'Plug-in'))})")
    if "scaleot" in records:
        d = records["scaleot"]["delta"]
        add("ScaleOT Delta > 0 beyond one standard error", d["acc"] > d["stderr"],
            f"Delta {100 * d['acc']:+.1f} ± {100 * d['stderr']:.1f}")
    sweep = {(r["alpha"], r["beta"]): r for r in records.values() if r["method"] == "scaleot"}
    if len(sweep) == len(m["alphas"]) * len(m["betas"]) and len(sweep) > 1:
        ups, total = 0, 0
        for a in m["alphas"]:  # Delta along beta at each alpha, and along alpha at each beta
            seq = [sweep[(a, b)]["delta"]["acc"] for b in m["betas"]]
            ups += sum(y > x for x, y in itertools.pairwise(seq))
            total += len(seq) - 1
        for b in m["betas"]:
            seq = [sweep[(a, b)]["delta"]["acc"] for a in m["alphas"]]
            ups += sum(y > x for x, y in itertools.pairwise(seq))
            total += len(seq) - 1
        add("the sweep's Delta grows as alpha or beta grows", ups == total,
            f"{ups} of {total} neighbouring steps (alpha up at fixed beta, beta up at fixed alpha) raise Delta")
        if ft is not None:
            ok = [(a, b) for (a, b), r in sweep.items() if b > 0 and 100 * r["rows"]["Plug-in"]["acc"] >= ft - 1]
            best = max((r for (a, b), r in sweep.items() if b > 0), key=lambda r: r["rows"]["Plug-in"]["acc"])
            add("plug-in within 1 point of FT for at least one setting with beta > 0", bool(ok),
                f"settings: {ok or 'none'}; best beta > 0 plug-in {100 * best['rows']['Plug-in']['acc']:.1f} "
                f"at alpha {best['alpha']:g}, beta {best['beta']:g} (FT {ft:.1f})")
    if "scaleot" in records and "uniform-kd" in records:
        s, k = records["scaleot"], records["uniform-kd"]
        ps, pk = 100 * s["rows"]["Plug-in"]["acc"], 100 * k["rows"]["Plug-in"]["acc"]
        add("ScaleOT build cost (stage 1 + 2) < uniform-kd's, at equal or better plug-in",
            s["build_s"] < k["build_s"] and ps >= pk,
            f"ScaleOT {s['build_s']:.0f} s (stage 1 {s['stage1_s'] or 0:.0f} s + stage 2 {s['stage2_s'] or 0:.0f} s), "
            f"plug-in {ps:.1f}; uniform-kd {k['build_s']:.0f} s ({m['kd_steps']} distillation steps), plug-in {pk:.1f}"
            f"{paired_diff(records, ('scaleot', 'Plug-in'), ('uniform-kd', 'Plug-in'))}")
    return claims


def claims_md(claims: list[dict]) -> str:
    mark = {True: "holds", False: "**does not hold**", None: "not measured"}
    lines = ["| claim | result | evidence |", "|---|---|---|"]
    lines += [f"| {c['claim']} | {mark[c['holds']]} | {c['evidence']} |" for c in claims]
    return "\n".join(lines)


def matrix_plot(records: dict, path: Path) -> Path:
    """Two panels: the privacy-utility plane (Emu FT vs Plug-in) and Delta vs emulator size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.6))
    markers = {"uniform": "s", "uniform-kd": "D", "crash": "^", "drop": "v"}
    first = next(iter(records.values()))["rows"]
    for name, r in records.items():
        x, y = 100 * r["rows"]["Emu FT"]["acc"], 100 * r["rows"]["Plug-in"]["acc"]
        if r["method"] == "scaleot":
            style = {"marker": "o", "color": plt.cm.viridis(r["alpha"]), "ms": 5 + 10 * r["beta"]}
            label = f"a{r['alpha']:g} b{r['beta']:g}"
        else:
            style = {"marker": markers.get(r["method"], "x"), "color": "black" if name != REFERENCE else "gray",
                     "ms": 7}
            label = name
        for axis, xv in ((ax, x), (bx, r["params_ratio"])):
            yv = y if axis is ax else 100 * r["delta"]["acc"]
            axis.plot(xv, yv, linestyle="none", **style)
            axis.annotate(label, (xv, yv), textcoords="offset points", xytext=(4, 4), fontsize=7)
    for row, ls in (("FT", "--"), ("Full ZS", ":")):
        if row in first:
            ax.axhline(100 * first[row]["acc"], linestyle=ls, color="gray", label=f"{row} (full model)")
    lims = [v for r in records.values() for v in (100 * r["rows"]["Emu FT"]["acc"], 100 * r["rows"]["Plug-in"]["acc"])]
    ax.plot([min(lims) - 2, max(lims) + 2], [min(lims) - 2, max(lims) + 2], color="lightgray", label="Plug-in = Emu FT")
    ax.set_xlabel("Emu FT (%)  <- more private")
    ax.set_ylabel("Plug-in (%)  (utility)")
    ax.set_title("Privacy-utility plane (ScaleOT: colour = alpha, size = beta)")
    ax.legend(fontsize=7, loc="lower right")
    bx.axhline(0, color="lightgray")
    bx.set_xlabel("emulator parameters / full model")
    bx.set_ylabel("Delta = Plug-in - Emu FT (points)")
    bx.set_title("Privacy gap against emulator size")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()}, {os.cpu_count()} CPUs, {gpu}, torch {torch.__version__}"


def anchors_md() -> str:
    """docs/method.md's published OPT-1.3B table, labelled as such."""
    from scaleot.report import ANCHORS

    lines = ["Published, for reference only: **OPT-1.3B, mean of 8 tasks** (OBQA, PIQA, ARC-E, ARC-C, "
             "HellaSwag, SciQ, WebQs, RACE), a different model and different tasks (docs/method.md section 7).", "",
             "| method | emulator made by | Plug-in | Emu FT | Delta |", "|---|---|---|---|---|"]
    lines += [f"| {m} | {how} | {p} | {e or '-'} | {d or '-'} |" for m, how, p, e, d in ANCHORS]
    return "\n".join(lines)


def write_summaries(out: Path, cfg: dict, m: dict, command: str, seconds: float | None) -> dict:
    """Write matrix.md, sweep.md, claims.md, matrix.json and matrix.png; return the JSON document."""
    records = collect(out, cfg)
    if not records:
        raise ScaleOTError(f"{out}: no evaluated emulator yet (run the matrix first)")
    claims = check_claims(records, cfg, m)
    tasks = ", ".join(short_task(t) for t in cfg["tasks"])
    f = cfg["finetune"]
    n_test = f.get("n_test")
    header = [
        f"Model {cfg['model']}; tasks {tasks}; {n_test} test examples per task; adapter "
        f"{m['n_bottom']}+{m['n_top']}; data owner's tuning `{f.get('method')}` lr {f.get('lr')}, "
        f"{f.get('epochs')} epoch(s) of {f.get('n_train')} examples, batch {f.get('batch_size')}; "
        f"split seed {f.get('split_seed', 0)}, seed {f.get('seed', 0)}.",
        "Accuracy: lm-eval `acc`, averaged over the tasks, ± one standard error; Delta = Plug-in - Emu FT "
        f"({'paired' if all(r['delta'].get('paired') for r in records.values()) else 'unpaired'} standard "
        "error). Build s: stage 1 + stage 2 for scaleot and drop, the build "
        "(distillation included) for the others.",
        "",
        *_fixed_rows(records),
        "",
    ]
    doc = {"format_version": 1, "kind": "offsite-matrix", "date": date.today().isoformat(),
           "machine": machine(),
           "command": command, "seconds": seconds, "config": cfg, "records": records, "claims": claims}
    write_json_atomic(out / "matrix.json", doc)
    when = f"Date {doc['date']}; machine {doc['machine']}; command `{command}`" + (
        f"; {seconds / 60:.1f} min." if seconds else ".")
    (out / "matrix.md").write_text("\n".join(["# Offsite matrix: every emulator at one size", "", when, "", *header,
                                              matrix_table(records), "", anchors_md(), ""]))
    (out / "sweep.md").write_text("\n".join(["# ScaleOT sweep: alpha x beta", "", when, "", *header,
                                             sweep_table(records, cfg), ""]))
    (out / "claims.md").write_text("\n".join(["# The issue's claims, checked", "", claims_md(claims), ""]))
    matrix_plot(records, out / "matrix.png")
    return doc


# ----------------------------------------------------------------------------- main

def run_matrix(scale: dict, out: str | Path, model: str | None = None, tasks: list[str] | None = None,
               importance: str | None = None, progress: bool = True, command: str = "",
               report_only: bool = False) -> dict:
    """Run (or continue) the matrix in ``out`` and write its summaries; return ``matrix.json``'s content."""
    from scaleot.recipes.run import RunRecipe, load_run_config

    out = Path(out)
    cfg_path = out / "matrix_config.yaml"
    if report_only:
        if not cfg_path.is_file():
            raise ScaleOTError(f"{out}: no matrix_config.yaml (nothing was run there)")
        saved = yaml.safe_load(cfg_path.read_text())
        return write_summaries(out, saved["run"], saved["matrix"], saved.get("command", command), None)
    cfg = matrix_config(scale, model=model, tasks=tasks, importance=importance)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(yaml.safe_dump({"command": command, "matrix": scale["matrix"], "run": cfg}, sort_keys=False))
    (out / "run.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    cfg = load_run_config(out / "run.yaml")  # the same checks as `scaleot run`
    t0 = time.perf_counter()
    RunRecipe(cfg, out, progress=progress).run()
    return write_summaries(out, cfg, scale["matrix"], command, round(time.perf_counter() - t0, 1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", choices=sorted(SCALES), default="quick")
    p.add_argument("--out", required=True, help="matrix folder (finished steps there are reused)")
    p.add_argument("--model", help="base model: a known name or a local HF folder (default: the scale's; quick and full: the library's default model)")
    p.add_argument("--tasks", help="comma-separated tasks (default: the scale's)")
    p.add_argument("--importance", help="reuse this finished stage-1 folder instead of running stage 1")
    p.add_argument("--report-only", action="store_true", help="only rewrite the summaries of --out")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    command = "python -m bench.offsite_matrix " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        doc = run_matrix(SCALES[args.scale], args.out, model=args.model,
                         tasks=args.tasks.split(",") if args.tasks else None, importance=args.importance,
                         progress=not args.no_progress, command=command, report_only=args.report_only)
    except ScaleOTError as e:
        print(f"offsite_matrix: error: {e}", file=sys.stderr)
        return 2
    print((Path(args.out) / "claims.md").read_text())
    n_bad = sum(c["holds"] is False for c in doc["claims"])
    print(f"{len(doc['records'])} emulators summarised; {n_bad} claim(s) do not hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
