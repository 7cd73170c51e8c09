"""Benchmark: the fast context-sharing scorer against lm-eval, side by side (issue 11).

Usage:
    .venv/bin/python -m bench.scoring --limit 500 --out bench/results/scoring

For each task the examples are cut into ``--rounds`` slices; each slice is scored by both
scorers, each in its own fresh process (so peak RSS is that scorer's alone), alternating
which goes first, so both see the same share of whatever else the machine runs. Reported:
examples/s (wall) and examples per CPU-second (user + sys of the scoring process, less
sensitive to other jobs), acc / acc_norm (must be identical), per-example predictions and
the largest log-likelihood difference, peak RSS, and the arithmetic bound: decoder positions the fast
scorer runs / positions lm-eval runs (lm-eval's one-token-continuation cache counted), and
the same with the head's share of the FLOPs weighted in (the head runs at every position
for lm-eval, only at continuation positions for the fast scorer).

Writes ``<out>.json`` and ``<out>.md``. It also projects (does not measure) the quick
matrix's evaluation share from ``bench/results/offsite_matrix_quick/steps.json`` and the
measured speed-up.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASKS = ["pkg:word_sentiment", "gen:letters"]
STEPS = Path(__file__).parent / "results" / "offsite_matrix_quick" / "steps.json"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args) -> None:
    """One scorer on one task in this process; writes its measurements as JSON to ``args.worker``."""
    import torch

    from scaleot.data import SplitConfig, load_task
    from scaleot.evaluation import evaluate_mc
    from scaleot.models import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok = load_model(args.model, device="cpu")
    splits = load_task(args.task[0], SplitConfig(seed=0, n_test=500, n_val=100))
    splits.test = splits.test[args.start:args.stop]
    before = rss_mb()
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    row = evaluate_mc(model, tok, [splits], batch_size=args.batch_size, scorer=args.scorer,
                      keep_loglikelihoods=True)[splits.name]
    seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    row.update(seconds=seconds, cpu_seconds=cpu, rss_after_load_mb=before, peak_rss_mb=rss_mb(),
               threads=torch.get_num_threads())
    Path(args.worker).write_text(json.dumps(row))


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def bound(task: str, model: str, limit: int) -> dict:
    """Decoder positions (and head-weighted FLOPs) each scorer needs on the first ``limit`` test examples."""
    from scaleot.data import SplitConfig, load_task
    from scaleot.evaluation.fast_mc import LmEvalEncoder, encode_examples
    from scaleot.models import load_model

    m, tok = load_model(model, device="cpu")
    window = m.config.max_position_embeddings
    examples = load_task(task, SplitConfig(seed=0, n_test=500, n_val=100)).test[:limit]
    enc = encode_examples(task, examples, tok, window)
    # lm-eval computes requests sharing context + continuation[:-1] once (one-token continuations)
    pair = LmEvalEncoder(tok).pair
    seen, lm_positions = set(), 0
    for ex in examples:
        for choice in ex.choices:
            ctx, cont = pair(ex.context, choice)
            key = tuple(ctx + cont[:-1])
            if key not in seen:
                seen.add(key)
                lm_positions += min(len(ctx) + len(cont) - 1, window)
    head_positions = sum(len(cont) for g in enc.groups for _, cont in g.choices)
    head = m.config.vocab_size * m.config.hidden_size
    body = sum(p.numel() for n, p in m.named_parameters() if "embed_tokens" not in n and "lm_head" not in n)
    share = head / (head + body)  # FLOPs share of the head in one position
    fast_flops = enc.tokens_fast * (1 - share) + head_positions * share
    return {"positions_fast": enc.tokens_fast, "positions_lm_eval": lm_positions,
            "positions_ratio": lm_positions / enc.tokens_fast, "head_flops_share": round(share, 3),
            "flops_ratio": lm_positions / fast_flops, "truncated": enc.truncated}


def run_worker(scorer: str, task: str, start: int, stop: int, args) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = f.name
    cmd = [sys.executable, __file__, "--worker", path, "--scorer", scorer, "--task", task, "--start", str(start),
           "--stop", str(stop), "--batch-size", str(args.batch_size), "--model", args.model]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    print(f"  {scorer:8s} {task} [{start}:{stop}] ...", flush=True)
    subprocess.run(cmd, check=True, env=dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false"),
                   stdout=subprocess.DEVNULL)
    row = json.loads(Path(path).read_text())
    os.unlink(path)
    print(f"  {scorer:8s} {row['n'] / row['seconds']:.2f} examples/s, {row['n'] / row['cpu_seconds']:.2f} "
          "examples/CPU-s", flush=True)
    return row


def measure(task: str, args) -> dict[str, dict]:
    """Both scorers on the first ``args.limit`` test examples, slice by slice, alternating who goes first."""
    from scaleot.evaluation.fast_mc import predictions

    cuts = [round(i * args.limit / args.rounds) for i in range(args.rounds + 1)]
    parts: dict[str, list[dict]] = {"lm-eval": [], "fast": []}
    for r in range(args.rounds):
        order = ("lm-eval", "fast") if r % 2 == 0 else ("fast", "lm-eval")
        for scorer in order:
            parts[scorer].append(run_worker(scorer, task, cuts[r], cuts[r + 1], args))
    examples = _test_examples(task, args.limit)
    out = {}
    for scorer, rows in parts.items():
        lls = [ll for row in rows for ll in row["loglikelihoods"]]
        correct = [c for row in rows for c in row["correct"]]
        norm = [int(predictions(ll, ex.choices)[1] == ex.label) for ll, ex in zip(lls, examples, strict=True)]
        n, seconds, cpu = len(correct), sum(r["seconds"] for r in rows), sum(r["cpu_seconds"] for r in rows)
        out[scorer] = {"n": n, "acc": sum(correct) / n, "acc_norm": sum(norm) / n, "seconds": seconds,
                       "cpu_seconds": cpu, "examples_per_second": n / seconds, "examples_per_cpu_second": n / cpu,
                       "peak_rss_mb": max(r["peak_rss_mb"] for r in rows),
                       "rss_after_load_mb": max(r["rss_after_load_mb"] for r in rows),
                       "scorer": sorted({r["scorer"] for r in rows}), "correct": correct, "loglikelihoods": lls,
                       "truncated": sum(r["truncated"] for r in rows), "rounds": len(rows)}
    return out


def _test_examples(task: str, limit: int) -> list:
    from scaleot.data import SplitConfig, load_task

    return load_task(task, SplitConfig(seed=0, n_test=500, n_val=100)).test[:limit]


def projection(speedup: float) -> dict | None:
    """The quick matrix's evaluation share if every evaluation step ran ``speedup`` times faster."""
    if not STEPS.is_file():
        return None
    steps = json.loads(STEPS.read_text())
    total = sum(v.get("seconds", 0) for v in steps.values())
    evaluation = sum(v.get("seconds", 0) for k, v in steps.items() if k.startswith("evaluate"))
    new_eval = evaluation / speedup
    n_same_wall = 100 * speedup  # test examples per task affordable in the old evaluation minutes
    return {"recorded_total_min": round(total / 60, 1), "recorded_evaluation_min": round(evaluation / 60, 1),
            "recorded_share": round(evaluation / total, 3), "projected_evaluation_min": round(new_eval / 60, 1),
            "projected_total_min": round((total - evaluation + new_eval) / 60, 1),
            "projected_share": round(new_eval / (total - evaluation + new_eval), 3),
            "n_test_same_wall": int(n_same_wall),
            "stderr_at_100_pts": round(100 * math.sqrt(0.25 / 99), 1),
            "stderr_same_wall_pts": round(100 * math.sqrt(0.25 / (n_same_wall - 1)), 1),
            "stderr_at_100_avg_pts": round(100 * math.sqrt(0.25 / 99) / math.sqrt(2), 1),
            "stderr_same_wall_avg_pts": round(100 * math.sqrt(0.25 / (n_same_wall - 1)) / math.sqrt(2), 1),
            "speedup": round(speedup, 2)}


def markdown(doc: dict) -> str:
    lines = [f"# Fast scorer vs lm-eval ({doc['date']})", "",
             f"`{doc['command']}`", "",
             f"Machine: {doc['machine']}; torch threads per process: {doc['threads']}; model {doc['model']}; "
             f"first {doc['limit']} test examples per task (split seed 0), in {doc['rounds']} slices scored "
             f"alternately; lm-eval batch size {doc['batch_size']}.", "",
             "| task | scorer | examples/s | examples/CPU-s | seconds | acc | acc_norm | peak RSS (MB) |",
             "|---|---|---|---|---|---|---|---|"]
    for task, r in doc["tasks"].items():
        for s in ("lm-eval", "fast"):
            x = r[s]
            lines.append(f"| {task} | {s} | {x['examples_per_second']:.2f} | {x['examples_per_cpu_second']:.2f} | "
                         f"{x['seconds']:.0f} | {x['acc']:.3f} | {x['acc_norm']:.3f} | {x['peak_rss_mb']:.0f} |")
    lines += ["", "| task | speed-up (wall) | speed-up (CPU) | bound (positions) | bound (head-weighted FLOPs) | "
              "same predictions | max abs log-likelihood diff | truncated |", "|---|---|---|---|---|---|---|---|"]
    for task, r in doc["tasks"].items():
        b = r["bound"]
        lines.append(f"| {task} | {r['speedup']:.2f}x | {r['speedup_cpu']:.2f}x | {b['positions_ratio']:.2f}x | "
                     f"{b['flops_ratio']:.2f}x | {r['same_predictions']} | {r['max_abs_ll_diff']:.1e} | "
                     f"{b['truncated']} |")
    m = doc["mean"]
    lines += ["", f"**Two-task mean: {m['fast_examples_per_second']:.2f} vs {m['lm-eval_examples_per_second']:.2f} "
              f"examples/s = {m['speedup']:.2f}x** (target >= 2.5x); per CPU-second "
              f"{m['fast_examples_per_cpu_second']:.2f} vs {m['lm-eval_examples_per_cpu_second']:.2f} = "
              f"{m['speedup_cpu']:.2f}x.", ""]
    p = doc.get("matrix_projection")
    if p:
        lines += ["Quick matrix, **projected, not re-run**: its recorded `steps.json` has "
                  f"{p['recorded_evaluation_min']} of {p['recorded_total_min']} min in evaluation "
                  f"({100 * p['recorded_share']:.0f}%). Divided by the smaller of the two measured speed-ups "
                  f"({p['speedup']:.2f}x), evaluation would take {p['projected_evaluation_min']} min of "
                  f"{p['projected_total_min']} ({100 * p['projected_share']:.0f}%). Model loading and building "
                  "inside the evaluation steps do not speed up, so this is optimistic. Spending the old evaluation "
                  f"minutes on more examples instead: about {p['n_test_same_wall']} test examples per task instead "
                  f"of 100, a standard error of about {p['stderr_same_wall_pts']} points per task instead of "
                  f"{p['stderr_at_100_pts']} (at acc = 0.5; the two-task average: {p['stderr_same_wall_avg_pts']} "
                  f"instead of {p['stderr_at_100_avg_pts']})."]
    return "\n".join(lines) + "\n"


def main() -> None:
    from scaleot.models.loading import DEFAULT_MODEL

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--task", action="append", default=None)
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None, help="torch threads per process (default: torch's)")
    ap.add_argument("--out", default="bench/results/scoring")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=4, help="slices per task; scorers alternate who goes first")
    ap.add_argument("--scorer", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--stop", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    tasks = args.task or TASKS
    doc = {"date": datetime.date.today().isoformat(), "command": "python -m bench.scoring " + " ".join(sys.argv[1:]),
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                      f"{_cpu_name()}, shared with other jobs",
           "model": args.model, "limit": args.limit, "batch_size": args.batch_size, "threads": args.threads or "default",
           "rounds": args.rounds,
           "tasks": {}}
    for task in tasks:
        print(task, flush=True)
        res = measure(task, args)
        ref, fast = res["lm-eval"], res["fast"]
        diff = max(abs(a - b) for ra, rb in zip(ref["loglikelihoods"], fast["loglikelihoods"], strict=True)
                   for a, b in zip(ra, rb, strict=True))
        drop = ("loglikelihoods", "correct")
        doc["tasks"][task] = {"lm-eval": {k: v for k, v in ref.items() if k not in drop},
                              "fast": {k: v for k, v in fast.items() if k not in drop},
                              "speedup": fast["examples_per_second"] / ref["examples_per_second"],
                              "speedup_cpu": fast["examples_per_cpu_second"] / ref["examples_per_cpu_second"],
                              "same_predictions": ref["correct"] == fast["correct"] and ref["acc"] == fast["acc"]
                              and ref["acc_norm"] == fast["acc_norm"],
                              "max_abs_ll_diff": diff, "bound": bound(task, args.model, args.limit)}
    rows = doc["tasks"].values()
    mean = {}
    for key in ("examples_per_second", "examples_per_cpu_second"):
        for scorer in ("fast", "lm-eval"):
            mean[f"{scorer}_{key}"] = sum(r[scorer][key] for r in rows) / len(rows)
    mean["speedup"] = mean["fast_examples_per_second"] / mean["lm-eval_examples_per_second"]
    mean["speedup_cpu"] = mean["fast_examples_per_cpu_second"] / mean["lm-eval_examples_per_cpu_second"]
    doc["mean"] = mean
    doc["matrix_projection"] = projection(min(mean["speedup"], mean["speedup_cpu"]))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(doc))
    print(markdown(doc))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
