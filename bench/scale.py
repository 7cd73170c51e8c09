"""Scaling benchmark: every CLI step on random-initialised models of real families' shapes.

Builds models from the configs of real families at growing sizes (random weights: no
download; the numbers are memory, time and "does it run", never utility), saves each as an
HF folder, and runs every command on it with tiny budgets, each in a fresh subprocess:
``importance`` (3 steps), ``emulate`` (scaleot + SRC, and uniform), ``finetune`` (3 steps,
full and LoRA), ``plug`` and ``evaluate`` (20 examples). For each step it records wall time,
peak RSS of the process (``wait4``'s ``ru_maxrss``) and the model's fp32 bytes, then writes
``bench/results/scale.{jsonl,md,png}``: a table and a log-log plot of cost against
parameters, with the targets checked (peak RSS <= 1.5x one fp32 copy + what the step
trains + the process's import baseline; no step growing faster than linearly).

Resumable per (size, step): finished rows in ``scale.jsonl`` are skipped. Run it under the
CPU lock on a shared machine, one size at a time if you like::

    flock /tmp/cpu1.lock .venv/bin/python -m bench.scale --sizes smollm2-135m,llama-360m
    .venv/bin/python -m bench.scale --report-only

No ``--model``: the models are random ones of the ``--sizes`` shapes, with the default model's
tokenizer (their vocabulary size is the default model's).

Wall times taken on a shared CPU are only indicative; peak RSS does not depend on load.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

# Shapes of real families (vocabularies as published; the tokenizer is SmolLM2's, whose 49152
# ids fit every vocabulary but TinyLlama's 32000, so that one uses 49152 and says so).
SIZES: dict[str, dict] = {
    "smollm2-135m": dict(model_type="llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True,
                         rope_theta=100000.0, max_position_embeddings=8192),
    "llama-360m": dict(model_type="llama", hidden_size=960, intermediate_size=2560, num_hidden_layers=32,
                       num_attention_heads=15, num_key_value_heads=5, vocab_size=49152, tie_word_embeddings=True,
                       rope_theta=100000.0, max_position_embeddings=8192),  # SmolLM2-360M's shape
    "qwen2-0.5b": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                       num_attention_heads=14, num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True,
                       rope_theta=1000000.0, max_position_embeddings=32768),  # Qwen2.5-0.5B's shape
    "tinyllama-1.1b": dict(model_type="llama", hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                           num_attention_heads=32, num_key_value_heads=4, vocab_size=49152,
                           tie_word_embeddings=False, rope_theta=10000.0,
                           max_position_embeddings=2048),  # TinyLlama-1.1B's shape, vocab 49152 not 32000
}
STEPS = ["build", "importance", "emulate-scaleot", "emulate-uniform", "finetune-full", "finetune-lora", "plug",
         "evaluate"]


def build_model(name: str, folder: Path) -> dict:
    """Random-initialised model of ``SIZES[name]`` saved to ``folder`` with the default model's tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from scaleot.models import DEFAULT_MODEL, resolve_model_path

    kw = dict(SIZES[name])
    config = AutoConfig.for_model(kw.pop("model_type"), **kw, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve_model_path(DEFAULT_MODEL)).save_pretrained(folder)
    return {"params": sum(p.numel() for p in model.parameters()),
            "params_per_block": sum(p.numel() for p in model.model.layers[0].parameters()),
            "num_blocks": config.num_hidden_layers}


def task_file(folder: Path, n: int = 64) -> Path:
    """A 2-choice JSONL task (parity), enough for the tiny splits below."""
    path = folder / "parity.jsonl"
    with open(path, "w") as f:
        for x in range(n):
            f.write(json.dumps({"context": f"Is {x} even?\nA:", "choices": [" yes", " no"],
                                "label": x % 2}) + "\n")
    return path


def commands(work: Path, model: Path, task: Path, tag: str = "current") -> dict[str, list[str]]:
    """Each step's ``scaleot`` command line (tiny budgets). Another ``tag`` (an older source
    tree, for before/after numbers) reads the current artifacts and writes ``<out>.<tag>``."""
    imp, emu, emu_u = work / "importance", work / "emu-scaleot", work / "emu-uniform"
    sfx = "" if tag == "current" else f".{tag}"
    ft = ["--task", str(task), "--emulator", str(emu), "--steps", "3", "--batch-size", "2", "--n-train", "16",
          "--n-val", "8", "--n-test", "20", "--val-limit", "8", "--max-length", "64", "--overwrite"]
    return {
        "importance": ["importance", "--model", str(model), "--corpus", "kjv", "--adapter", "2,2", "--steps", "3",
                       "--score-every", "3", "--batch-size", "1", "--score-batch-size", "1", "--block-size", "64",
                       "--max-train-blocks", "8", "--max-heldout-blocks", "4", "--checkpoint-every", "0",
                       "--no-progress", "--out", f"{imp}{sfx}", "--overwrite"],
        "emulate-scaleot": ["emulate", "--model", str(model), "--method", "scaleot", "--importance", str(imp),
                            "--adapter", "2,2", "--alpha", "0.5", "--beta", "0.3", "--out", f"{emu}{sfx}", "--overwrite"],
        "emulate-uniform": ["emulate", "--model", str(model), "--method", "uniform", "--adapter", "2,2", "--alpha",
                            "0.5", "--out", f"{emu_u}{sfx}", "--overwrite"],
        "finetune-full": ["finetune", *ft, "--method", "full", "--out", f"{work / 'ad-full'}{sfx}"],
        "finetune-lora": ["finetune", *ft, "--method", "lora", "--out", f"{work / 'ad-lora'}{sfx}"],
        "plug": ["plug", "--adapter", str(work / "ad-lora"), "--emulator", str(emu), "--model", str(model),
                 "--out", f"{work / 'plugged'}{sfx}", "--overwrite"],
        "evaluate": ["evaluate", "--model", str(work / "plugged"), "--task", str(task), "--n-test", "20", "--n-val",
                     "8", "--limit", "20", "--out", f"{work / 'eval'}{sfx}.json", "--overwrite"],
    }


def _anon_bytes(pid: int) -> int:
    """``RssAnon`` of a process (its own memory, without mapped file pages), or 0."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_measured(argv: list[str], log: Path, env: dict) -> dict:
    """Run ``argv`` in a fresh process: wall seconds, exit code, peak RSS (``ru_maxrss``,
    bytes: counts the pages of safetensors files mapped while loading) and peak anonymous
    RSS (sampled every 20 ms: the process's own memory)."""
    import threading

    t0 = time.perf_counter()
    peak_anon = [0]
    with open(log, "w") as f:
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak_anon[0] = max(peak_anon[0], _anon_bytes(proc.pid))
                done.wait(0.02)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        _, status, usage = os.wait4(proc.pid, 0)
        done.set()
        thread.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"seconds": round(time.perf_counter() - t0, 2), "peak_rss": usage.ru_maxrss * 1024,
            "peak_anon": peak_anon[0], "rc": proc.returncode}


def trained_bytes(step: str, meta: dict) -> int:
    """fp32 bytes of what the step trains, with gradients and AdamW's two moments (x4)."""
    if step == "finetune-full":
        return 4 * 4 * 4 * meta["params_per_block"]  # 4 adapter blocks
    return 0  # harmonizers, LoRA factors: under 1% of the model at these sizes


def load_rows(path: Path, tag: str = "current") -> dict[tuple[str, str], dict]:
    """Finished and failed rows of one ``tag`` (the source tree measured), the last per (size, step)."""
    rows = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if r.get("tag", "current") == tag:
                rows[(r["size"], r["step"])] = r
    return rows


def run_size(name: str, work: Path, rows_path: Path, steps: list[str], python: str, src: Path,
             tag: str, keep: bool = False) -> None:
    """Run ``steps`` for one size; once all succeed, remove its models and artifacts unless ``keep``
    (a 1B-class size leaves about 10 GB there)."""
    rows = load_rows(rows_path, tag)
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "model"
    env = dict(os.environ, PYTHONPATH=f"{src}:{os.environ.get('PYTHONPATH', '')}", HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    cmds = commands(folder, model, task_file(folder), tag)
    for step in steps:
        if (name, step) in rows and rows[(name, step)]["rc"] == 0:
            continue
        if step == "build" and (folder / "meta.json").is_file() and tag != "current":
            continue
        if step == "build":
            argv = [python, __file__, "--build", name, "--work", str(work)]
        else:
            argv = [python, "-m", "scaleot.cli", *cmds[step]]
        print(f"[scale] {name} {step} ...", flush=True)
        res = run_measured(argv, folder / f"{step}.{tag}.log", env)
        meta = json.loads((folder / "meta.json").read_text()) if (folder / "meta.json").is_file() else {}
        row = {"size": name, "step": step, "tag": tag, **res, "params": meta.get("params"),
               "model_bytes_fp32": 4 * meta["params"] if meta else None,
               "trained_bytes": trained_bytes(step, meta) if meta else 0,
               "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        print(f"[scale] {name} {step} ({tag}): rc {res['rc']}, {res['seconds']} s, peak "
              f"{res['peak_rss'] / 2**30:.2f} GiB (anon {res['peak_anon'] / 2**30:.2f})", flush=True)
        with open(rows_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if res["rc"] != 0:
            print((folder / f"{step}.{tag}.log").read_text()[-2000:], file=sys.stderr)
            print(f"[scale] kept {folder} for inspection", flush=True)
            return
    if keep:
        print(f"[scale] kept {folder} (--keep)", flush=True)
    else:
        shutil.rmtree(folder)
        print(f"[scale] removed {folder} (its rows are in {rows_path}; --keep keeps the models)", flush=True)


def baseline(python: str) -> dict:
    """Peak RSS and anon of a process that only imports scaleot's CLI and its libraries."""
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}:{os.environ.get('PYTHONPATH', '')}")
    code = "import torch, transformers, peft, scaleot.cli; from transformers import AutoModelForCausalLM"
    return run_measured([python, "-c", code], Path(os.devnull), env)


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log y on log x."""
    if len(xs) < 2:
        return None
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    den = sum((a - mx) ** 2 for a in lx)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / den if den else None


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _gib(row: dict, key: str) -> str:
    return f"{row[key] / 2**30:.2f}" if row.get(key) else "-"


def report(rows_path: Path, out: Path, base_doc: dict) -> str:
    base, base_anon = base_doc["peak_rss"], base_doc.get("peak_anon", 0)
    rows = [r for r in load_rows(rows_path).values() if r["rc"] == 0 and r["params"]]
    sizes = sorted({r["size"] for r in rows}, key=lambda s: next(r["params"] for r in rows if r["size"] == s))
    gib = 2**30
    lines = ["# Scaling: every step on random-initialised real shapes (CPU)", "",
             f"Import baseline (python + torch + transformers + peft + scaleot): {base / gib:.2f} GiB peak RSS, "
             f"{base_anon / gib:.2f} GiB anon.",
             "Target: 1.5 x fp32 model + trained state (weights, grads, AdamW) above the baseline. "
             "Wall times were measured on a shared 2-core CPU (under load): indicative only.", "",
             "Peak RSS is the kernel's high-water mark: it also counts the pages of safetensors files "
             "mapped while loading (page cache the kernel can drop). Anon is the sampled peak of the "
             "process's own memory (every 20 ms); transformers keeps weights it loads as mapped file "
             "pages, so anon alone undercounts them. `x fp32` = (peak - baseline) / fp32 bytes, for "
             "RSS and for anon; `ok` holds when peak RSS - baseline <= 1.5 x fp32 + trained state.", "",
             "| model | params | fp32 GiB | step | wall s | peak RSS GiB | peak anon GiB | x fp32 RSS | "
             "x fp32 anon | ok |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in sizes:
        for step in STEPS:
            r = next((x for x in rows if x["size"] == s and x["step"] == step), None)
            if r is None:
                continue
            limit = 1.5 * r["model_bytes_fp32"] + r["trained_bytes"] + base
            anon, fp32 = r.get("peak_anon", 0), r["model_bytes_fp32"]
            lines.append(f"| {s} | {r['params'] / 1e6:.0f}M | {fp32 / gib:.2f} | {step} | "
                         f"{r['seconds']:.0f} | {r['peak_rss'] / gib:.2f} | {_gib(r, 'peak_anon')} | "
                         f"{(r['peak_rss'] - base) / fp32:.2f} | {(anon - base_anon) / fp32:.2f} | "
                         f"{'yes' if r['peak_rss'] <= limit else '**no**'} |")
    lines += ["", "Growth with parameters (log-log slope over the sizes that ran; 1 = linear):", "",
              "| step | sizes | slope of wall time | slope of peak RSS - baseline |", "|---|---|---|---|"]
    for step in STEPS:
        rs = sorted((x for x in rows if x["step"] == step), key=lambda x: x["params"])
        st = slope([x["params"] for x in rs], [x["seconds"] for x in rs])
        sm = slope([x["params"] for x in rs], [max(x["peak_rss"] - base, 1) for x in rs])
        lines.append(f"| {step} | {len(rs)} | {_fmt(st)} | {_fmt(sm)} |")
    before = load_rows(rows_path, "before")
    if before:
        lines += ["", "Before and after the streaming changes (`--tag before`: the source tree before them, "
                  "same model folders; the importance rows: before stage 1's timing reference stopped holding "
                  "every weight gradient):", "",
                  "| model | step | peak RSS before | after | peak anon before | after |", "|---|---|---|---|---|---|"]
        for (size, step), b in sorted(before.items(), key=lambda kv: (kv[1]["params"] or 0, kv[0][1])):
            r = next((x for x in rows if x["size"] == size and x["step"] == step), None)
            if r is None or b["rc"] != 0:
                continue
            lines.append(f"| {size} | {step} | {_gib(b, 'peak_rss')} | {_gib(r, 'peak_rss')} | "
                         f"{_gib(b, 'peak_anon')} | {_gib(r, 'peak_anon')} |")
    text = "\n".join(lines) + "\n"
    (out / "scale.md").write_text(text)
    plot(rows, out / "scale.png")
    return text


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for step in STEPS:
        rs = sorted((x for x in rows if x["step"] == step), key=lambda x: x["params"])
        if not rs:
            continue
        xs = [x["params"] for x in rs]
        a.plot(xs, [x["seconds"] for x in rs], "o-", label=step)
        b.plot(xs, [x["peak_rss"] / 2**30 for x in rs], "o-", label=step)
    fp32 = sorted({(x["params"], x["model_bytes_fp32"]) for x in rows})
    b.plot([p for p, _ in fp32], [1.5 * m / 2**30 for _, m in fp32], "k--", label="1.5 x fp32 model")
    for ax, title in ((a, "wall time (s, shared CPU)"), (b, "peak RSS (GiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("parameters")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=",".join(SIZES), help=f"comma list of {', '.join(SIZES)}")
    ap.add_argument("--steps", default=",".join(STEPS))
    ap.add_argument("--work", type=Path, default=Path("/tmp/scaleot-scale"), help="models and artifacts")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep each size's models and artifacts under --work")
    ap.add_argument("--src", type=Path, default=ROOT / "src", help="scaleot source tree to measure")
    ap.add_argument("--tag", default="current", help="name of that tree in the rows (e.g. before)")
    ap.add_argument("--build", help=argparse.SUPPRESS)  # internal: build one model in this process
    a = ap.parse_args()
    if a.build:
        folder = a.work / a.build
        (folder / "meta.json").write_text(json.dumps(build_model(a.build, folder / "model")))
        return
    rows_path = a.results / "scale.jsonl"
    a.results.mkdir(parents=True, exist_ok=True)
    if not a.report_only:
        for name in a.sizes.split(","):
            run_size(name, a.work, rows_path, a.steps.split(","), sys.executable, a.src, a.tag, a.keep)
    base_path = a.results / "scale_baseline.json"
    if not base_path.is_file() or "peak_anon" not in json.loads(base_path.read_text()):
        base_path.write_text(json.dumps(baseline(sys.executable)))
    print(report(rows_path, a.results, json.loads(base_path.read_text())))


if __name__ == "__main__":
    main()
