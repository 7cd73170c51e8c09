"""IST vs LoRA (all layers) vs RST on SmolLM2-135M (``--model``: another): memory, step time, accuracy (issue 6).

Memory (one fresh subprocess per method, fp32, same batches and LoRA config):
- *counted*: bytes of autograd-saved activations (unique storages reached by
  ``torch.autograd.graph.saved_tensors_hooks``, parameters excluded), gradient buffers
  and optimizer state, at their peak over the measured steps;
- *RSS*: peak resident memory (``ru_maxrss``) minus the RSS right after the model and
  its LoRA modules were built (= the resident frozen weights), and the total peak.

Time and accuracy (one process, the three methods' steps interleaved one by one so they
share the machine's load; medians): per step, then zero-shot MC accuracy on each task's
test split with :func:`scaleot.evaluation.evaluate_mc` after the same number of steps.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.ist --steps 60 --out bench/results/ist.json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench.ist_loop import SparseTuner, TrainOptions
from scaleot.data import SplitConfig, load_task
from scaleot.data_owner.tuners.ist import ISTConfig, lora_config_for, optimizer_state_bytes
from scaleot.models import DEFAULT_MODEL, load_model

METHODS = {"lora": None, "ist": ISTConfig(), "rst": ISTConfig(sampling="rst")}


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class SavedBytes:
    """Unique storages saved for backward (activations), parameters excluded."""

    def __init__(self, params):
        self.param_ptrs = {p.untyped_storage().data_ptr() for p in params}
        self.seen: dict[int, int] = {}

    def pack(self, t):
        s = t.untyped_storage()
        if s.data_ptr() not in self.param_ptrs:
            self.seen[s.data_ptr()] = s.nbytes()
        return t

    def total(self) -> int:
        return sum(self.seen.values())


def memory_worker(method: str, task: str, steps: int, batch_size: int, model_name: str) -> dict:
    torch.manual_seed(0)
    splits = load_task(task, SplitConfig(seed=0, n_test=300, n_val=64))
    model, tok = load_model(model_name, device="cpu")
    opts = TrainOptions(steps=steps, batch_size=batch_size, max_length=192)
    tuner = SparseTuner(model, tok, splits.train, splits.val, METHODS[method], lora_config_for(model), opts)
    rss0 = rss_bytes()
    params = list(tuner.model.parameters())
    peak = {"saved": 0, "grads": 0, "optim": 0, "sum": 0}
    for step in range(1, steps + 1):
        ctl = tuner.controller
        if ctl:
            ctl.before_step(step)
        counter = SavedBytes(params)
        with torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda t: t):
            loss = tuner.loss(tuner.model, tuner.batch(step))
        loss.backward()
        grads = sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None)
        tuner.optimizer.step()
        optim = optimizer_state_bytes(tuner.optimizer)
        tuner.optimizer.zero_grad(set_to_none=True)
        if ctl:
            ctl.after_step(step)
            ctl.maybe_update_importance(step, tuner.model, tuner.probe_batch(step), tuner.loss)
        cur = {"saved": counter.total(), "grads": grads, "optim": optim}
        cur["sum"] = sum(cur.values())
        peak = {k: max(peak[k], cur[k]) for k in peak}
    # Optimizer state of the *selected* layers only: what sits on the device with offload.
    ctl = tuner.controller
    n_sel = ctl.n_update / len(ctl.blocks) if ctl else 1.0
    return {"method": method, "rss_after_model": rss0, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "peak_counted": peak, "optim_full": optimizer_state_bytes(tuner.optimizer), "selected_fraction": n_sel,
            "lora_params": sum(p.numel() for p in tuner.trainable)}


def run_memory(args) -> dict:
    out = {}
    for method in METHODS:
        cmd = [sys.executable, "-m", "bench.ist", "--memory-worker", method, "--threads", str(args.threads),
               "--mem-steps", str(args.mem_steps), "--batch-size", str(args.batch_size), "--tasks", args.tasks[0],
               "--model", args.model]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
        out[method] = json.loads(res.stdout.strip().splitlines()[-1])
        print(method, out[method], flush=True)
    return out


def run_accuracy(args) -> dict:
    from scaleot.evaluation import evaluate_mc

    results = {}
    for task in args.tasks:
        splits = load_task(task, SplitConfig(seed=0, n_test=args.n_test, n_val=64))
        tuners, times = {}, {m: [] for m in METHODS}
        for method, ist in METHODS.items():
            model, tok = load_model(args.model, device="cpu")
            opts = TrainOptions(steps=args.steps, batch_size=args.batch_size, lr=args.lr, max_length=192,
                                bf16=args.bf16)
            tuners[method] = SparseTuner(model, tok, splits.train, splits.val, ist, lora_config_for(model), opts)
        losses = {m: [] for m in METHODS}
        for step in range(1, args.steps + 1):
            for method, tuner in tuners.items():
                rec = tuner.train_step(step)
                times[method].append(rec["time_s"])
                losses[method].append(rec["loss"])
            if step % 10 == 0:
                print(task, step, {m: round(statistics.mean(v[-10:]), 3) for m, v in losses.items()}, flush=True)
        accs = {}
        base, tok = load_model(args.model, device="cpu")
        accs["zero-shot"] = evaluate_mc(base, tok, [splits], autocast_dtype="bfloat16" if args.bf16 else None)
        for method, tuner in tuners.items():
            merged = tuner.model.merge_and_unload().eval()
            accs[method] = evaluate_mc(merged, tok, [splits], autocast_dtype="bfloat16" if args.bf16 else None)
            print(task, method, accs[method], flush=True)
        ist = tuners["ist"].controller
        results[task] = {"acc": accs, "step_s": times, "losses": losses, "train_size": len(splits.train),
                         "ist_scores": ist.scores(), "ist_counts": ist.counts.tolist(),
                         "rst_counts": tuners["rst"].controller.counts.tolist()}
        if args.plot_dir:
            from scaleot.data_owner.tuners.ist import save_importance

            save_importance(ist, Path(args.plot_dir) / task.replace("/", "_").replace(":", "_"))
    return results


def _mb(x: float) -> str:
    return f"{x / 2**20:.1f}"


def summarize(report: dict) -> str:
    """Markdown tables of the memory, time and accuracy sections of a report."""
    mem, lines = report["memory"], []
    lines += ["| method | saved activations MB | grads MB | optim state MB (peak seen) | counted sum MB | ratio vs LoRA |"
              " peak RSS MB | RSS after model MB | peak - model MB | ratio vs LoRA |", "|---" * 10 + "|"]
    base_c = mem["lora"]["peak_counted"]["sum"]
    base_r = mem["lora"]["peak_rss"] - mem["lora"]["rss_after_model"]
    for m, r in mem.items():
        c, d = r["peak_counted"], r["peak_rss"] - r["rss_after_model"]
        lines.append(f"| {m} | {_mb(c['saved'])} | {_mb(c['grads'])} | {_mb(c['optim'])} | {_mb(c['sum'])} |"
                     f" {c['sum'] / base_c:.3f} | {_mb(r['peak_rss'])} | {_mb(r['rss_after_model'])} | {_mb(d)} |"
                     f" {d / base_r:.3f} |")
    for task, res in report.get("accuracy", {}).items():
        t = {m: statistics.median(v) for m, v in res["step_s"].items()}
        mean = {m: statistics.mean(v) for m, v in res["step_s"].items()}
        lines += ["", f"**{task}** ({res['train_size']} train examples, {len(res['step_s']['lora'])} steps)", "",
                  "| method | acc | acc_norm | n | median step s | mean step s (incl. probes) | median ratio | mean ratio |",
                  "|---" * 8 + "|"]
        for m, a in res["acc"].items():
            (name, v), = a.items()
            timing = (f"{t[m]:.2f} | {mean[m]:.2f} | {t[m] / t['lora']:.3f} | {mean[m] / mean['lora']:.3f}"
                      if m in t else "- | - | - | -")
            lines.append(f"| {m} | {100 * v['acc']:.1f} ± {100 * v['acc_stderr']:.1f} | {100 * v['acc_norm']:.1f} |"
                         f" {v['n']} | {timing} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL, help="model name or HF folder")
    ap.add_argument("--tasks", nargs="*", default=["pkg:word_sentiment", "pkg:rhyme"])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--n-test", type=int, default=300)
    ap.add_argument("--mem-steps", type=int, default=12)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--memory-worker", default=None)
    ap.add_argument("--plot-dir", default="bench/results/ist")
    ap.add_argument("--out", default="bench/results/ist.json")
    ap.add_argument("--memory-from", default=None, help="reuse the memory section of an earlier report")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--summarize", default=None, help="print the markdown tables of a saved report")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.summarize:
        print(summarize(json.loads(Path(args.summarize).read_text())))
        return
    if args.memory_worker:
        print(json.dumps(memory_worker(args.memory_worker, args.tasks[0], args.mem_steps, args.batch_size, args.model)))
        return
    t0 = time.time()
    report = {"args": vars(args), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "memory": json.loads(Path(args.memory_from).read_text())["memory"] if args.memory_from
              else run_memory(args)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    if not args.skip_accuracy:
        report["accuracy"] = {}
        for task in args.tasks:  # one task at a time, results written as they come
            report["accuracy"].update(run_accuracy(argparse.Namespace(**dict(vars(args), tasks=[task]))))
            Path(args.out).write_text(json.dumps(report, indent=1))
    report["wall_s"] = time.time() - t0
    Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
