"""Benchmark: model load time (``--model``, default the default model) (cold GGUF conversion vs warm cache) and evaluation throughput.

Usage:
    .venv/bin/python -m bench.load_and_eval --repeats 3 --limit 200 --out bench/results/load_and_eval.md

Cold load converts the GGUF into a fresh temporary $SCALEOT_HOME (once per repeat); warm
load reads the safetensors cache. Throughput is examples/s of `evaluate_mc` on
pkg:word_sentiment (3 choices), fp32 and bf16 autocast measured side by side,
alternating, medians reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time


def cold_load_seconds(model: str) -> float:
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, SCALEOT_HOME=home, HF_HUB_OFFLINE="1")
        code = ("import sys,time;t=time.perf_counter();from scaleot.models import load_model;load_model(sys.argv[1]);"
                "print(time.perf_counter()-t)")
        out = subprocess.run([sys.executable, "-c", code, model], env=env, capture_output=True, text=True, check=True)
        return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from scaleot.models import DEFAULT_MODEL

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL, help="model name or HF folder")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from scaleot.data import load_task
    from scaleot.evaluation import evaluate_mc
    from scaleot.models import load_model

    load_model(args.model)  # make sure the cache exists
    cold = [cold_load_seconds(args.model) for _ in range(args.repeats)]
    warm = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        model, tok = load_model(args.model)
        warm.append(time.perf_counter() - t)
    splits = load_task("pkg:word_sentiment")
    rates = {"fp32": [], "bf16 autocast": []}
    accs = {}
    for _ in range(args.repeats):
        for name, ac in (("fp32", None), ("bf16 autocast", "bfloat16")):
            t = time.perf_counter()
            r = evaluate_mc(model, tok, [splits], limit=args.limit, autocast_dtype=ac)["pkg:word_sentiment"]
            rates[name].append(args.limit / (time.perf_counter() - t))
            accs[name] = r["acc"]
    med = statistics.median
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch threads {__import__('torch').get_num_threads()}; "
        f"date {time.strftime('%Y-%m-%d')}; repeats {args.repeats} (medians).",
        f"Command: `.venv/bin/python -m bench.load_and_eval --model {args.model} --repeats {args.repeats} "
        f"--limit {args.limit}`",
        "",
        "| what | median | all runs |", "|---|---|---|",
        f"| cold load (GGUF dequantize + convert to safetensors cache + load) | {med(cold):.1f} s | {', '.join(f'{x:.1f}' for x in cold)} |",
        f"| warm load (safetensors cache) | {med(warm):.2f} s | {', '.join(f'{x:.2f}' for x in warm)} |",
    ]
    for name, xs in rates.items():
        lines.append(f"| eval throughput, social_iqa, {name} (acc {100 * accs[name]:.1f} on {args.limit}) | "
                     f"{med(xs):.1f} examples/s | {', '.join(f'{x:.1f}' for x in xs)} |")
    lines.append(f"| bf16 autocast / fp32 throughput ratio | {med(rates['bf16 autocast']) / med(rates['fp32']):.2f}x | |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
