"""IST vs RST vs LoRA accuracy, resumable over the full grid (issue 15).

The grid: setting x task x seed x method, with

- setting ``standalone``: LoRA on every block of the full model (``--model``, default
  SmolLM2-135M; another model is recorded in the key), tuned directly;
  ``offsite``: the data owner's adapter tuned through the default ScaleOT emulator (its
  adapter split, alpha and beta read from ``configs/default.yaml``; needs ``--importance``,
  a stage-1 folder), then plugged into the full model;
- method ``lora`` (every adapter layer each step), ``ist`` (IST defaults: the paper's
  suppression probe), ``ist-grad`` (IST with ``probe: grad``, scores from gradient norms),
  ``rst`` (the same sparsity, uniform selection);
- the same steps, learning rate, batches (``--seed`` also seeds the data order and LoRA
  init) for all three, through the product's fine-tuning loop (``scaleot finetune``'s
  :func:`scaleot.data_owner.finetune.loop.train`).

Every run is one record ``<out>/records/<key>.json`` (test accuracy with per-example
``correct``, training timing, IST scores and trajectory); a finished record is never
redone, so the grid fills in over several invocations. ``--report`` writes
``<out>.md``: per (setting, task) the mean ± standard error over seeds of each method, and
the paired differences of each method against RST and LoRA (per-seed differences, mean ± se).
``--eta`` (and ``--grad-decay``) run the IST variants with another score step (moving-average
factor), recorded in the key and the label.

    flock /tmp/cpu1.lock env OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 \\
        .venv/bin/python -m bench.ist_accuracy --settings standalone --tasks pkg:word_sentiment \\
        --seeds 0 1 2 --steps 40
    .venv/bin/python -m bench.ist_accuracy --report
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.offsite_matrix import default_scale  # configs/default.yaml, read once
from bench.transfer import score
from scaleot.data import SplitConfig, load_task
from scaleot.data_owner.finetune import FinetuneConfig, apply_lora, train
from scaleot.data_owner.tuners.ist import ISTConfig, make_controller
from scaleot.exchange.manifest import write_json_atomic
from scaleot.models import DEFAULT_MODEL, get_blocks, load_model, num_blocks

TASKS = default_scale()["tasks"]  # configs/default.yaml's
METHODS = ("ist", "rst", "lora", "ist-grad")
IST_VARIANTS = {"ist": {"sampling": "ist"}, "rst": {"sampling": "rst"}, "ist-grad": {"sampling": "ist", "probe": "grad"}}


def key_of(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


class Grid:
    def __init__(self, args):
        self.args, self.out = args, Path(args.out)
        (self.out / "records").mkdir(parents=True, exist_ok=True)
        self.full = self.tok = None
        self.splits: dict[str, object] = {}
        self.emulators: dict = {}

    def model(self):
        if self.full is None:
            self.full, self.tok = load_model(self.args.model, device="cpu")
            self.full.eval()
        return self.full

    def task(self, name: str):
        if name not in self.splits:
            self.splits[name] = load_task(name, SplitConfig(seed=0, n_test=self.args.n_test, n_val=32,
                                                            n_train=self.args.n_train))
        return self.splits[name]

    def target(self, setting: str):
        """(model to tune, adapter positions, full-model blocks they came from)."""
        full = self.model()
        n = num_blocks(full)
        if setting == "standalone":
            return copy.deepcopy(full), list(range(n)), list(range(n))
        if not self.args.importance:
            raise SystemExit("the offsite setting needs --importance (a stage-1 folder of the default model)")
        if "emu" not in self.emulators:
            from scaleot.model_owner.emulator import EmulatorConfig, build_emulator

            m = default_scale()["matrix"]  # configs/default.yaml's ScaleOT emulator
            cfg = EmulatorConfig(method="scaleot", n_bottom=m["n_bottom"], n_top=m["n_top"], alpha=m["alpha"],
                                 beta=m["beta"], importance=self.args.importance, autocast="none")
            self.emulators["emu"] = build_emulator(full, cfg, self.tok)
        bundle = self.emulators["emu"]
        return (copy.deepcopy(bundle.model), list(bundle.adapter_positions), list(bundle.adapter_sources))

    def run(self, spec: dict) -> dict:
        t0 = time.perf_counter()
        splits = self.task(spec["task"])
        model, positions, sources = self.target(spec["setting"])
        epochs = math.ceil(spec["steps"] * spec["batch_size"] / len(splits.train))  # so that every step runs
        cfg = FinetuneConfig(method="lora" if spec["method"] == "lora" else "ist", lr=spec["lr"], epochs=epochs,
                             max_steps=spec["steps"], batch_size=spec["batch_size"], max_length=spec["max_length"],
                             seed=spec["seed"], val_limit=32, eval_batch_size=32,
                             n_train=None, n_val=100)  # the split its records were measured on
        peft = apply_lora(model, positions, cfg)
        hooks = None
        if spec["method"] != "lora":
            extra = {k: spec[k] for k in ("eta", "grad_decay") if k in spec}
            ist = ISTConfig(seed=spec["seed"], **IST_VARIANTS[spec["method"]], **extra)
            hooks = make_controller(peft, positions, cfg, tokenizer=self.tok, ist_config=ist)
        with tempfile.TemporaryDirectory() as run_dir:
            res = train(model, self.tok, splits, cfg, run_dir, step_controller=hooks, progress=False, device="cpu")
        tuned = peft.merge_and_unload().eval()
        rec = {"spec": spec, "train": {"steps": res.steps, **res.timing}}
        if spec["setting"] == "offsite":  # plug the tuned adapter blocks into the full model
            plugged = copy.deepcopy(self.model())
            eb, pb = get_blocks(tuned), get_blocks(plugged)
            with torch.no_grad():
                for pos, src in zip(positions, sources, strict=True):
                    pb[src].load_state_dict(eb[pos].state_dict())
            tuned = plugged
        rec["test"] = score(tuned, self.tok, splits)
        if hooks is not None:
            ctl = hooks.controller
            rec["ist"] = {"blocks": ctl.blocks, "scores": ctl._scores.tolist(), "counts": ctl.counts.tolist(),
                          "history": ctl.history}
        rec["seconds"] = round(time.perf_counter() - t0, 1)
        return rec

    def do(self, spec: dict) -> None:
        path = self.out / "records" / f"{key_of(spec)}.json"
        if path.is_file():
            return
        rec = self.run(spec)
        write_json_atomic(path, rec)
        print(f"{spec['setting']} {spec['task']} seed {spec['seed']} {spec['method']}: "
              f"{100 * rec['test']['acc']:.1f} ({rec['seconds']} s)", flush=True)


def _mean_se(xs: list[float]) -> str:
    if len(xs) < 2:
        return f"{100 * xs[0]:.1f} (1 seed)" if xs else "-"
    return f"{100 * statistics.mean(xs):.1f} ± {100 * statistics.stdev(xs) / len(xs) ** 0.5:.1f}"


def method_label(spec: dict) -> str:
    """The method with any non-default IST option (``ist-grad eta 3``, ``ist-grad decay 0.97``)."""
    return (spec["method"] + (f" eta {spec['eta']:g}" if "eta" in spec else "")
            + (f" decay {spec['grad_decay']:g}" if "grad_decay" in spec else ""))


def report(out: Path) -> str:
    """Per (setting, task, budget): every method's mean ± se over seeds, each method's paired
    per-seed difference to RST and to LoRA (over the seeds both have), and how many of an IST
    variant's layer picks differ from RST's under the same seed (the selection generator is
    seeded alike, so mildly non-uniform weights mostly pick what uniform ones would)."""
    recs = [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]
    groups: dict[tuple, dict[str, dict[int, float]]] = {}
    counts: dict[tuple, dict[str, dict[int, list[int]]]] = {}
    for r in recs:
        s = r["spec"]
        cell = (s["setting"], s["task"], s["steps"], s["lr"], s["batch_size"], s["max_length"], r["test"]["n"])
        groups.setdefault(cell, {}).setdefault(method_label(s), {})[s["seed"]] = r["test"]["acc"]
        if "ist" in r:
            counts.setdefault(cell, {}).setdefault(method_label(s), {})[s["seed"]] = r["ist"]["counts"]
    lines = ["| setting | task | steps | lr | batch x len | n_test | method | seeds | accuracy | - RST | - LoRA |"
             " picks unlike RST's |", "|---" * 12 + "|"]
    order = {"lora": 0, "rst": 1, "ist": 2}
    for (setting, task, steps, lr, bs, ml, n), by in sorted(groups.items()):
        def diff(a, b, by=by):
            common = sorted(set(by[a]) & set(by.get(b, {})))
            return _mean_se([by[a][s] - by[b][s] for s in common]) if a != b and common else "-"
        def unlike(m, cell=(setting, task, steps, lr, bs, ml, n)):
            """Share of the layer picks that differ from RST's with the same seed (total variation of counts)."""
            mine, rst = counts.get(cell, {}).get(m, {}), counts.get(cell, {}).get("rst", {})
            tv = [sum(abs(a - b) for a, b in zip(mine[s], rst[s], strict=True)) / 2 / sum(mine[s])
                  for s in sorted(set(mine) & set(rst))]
            return f"{statistics.mean(tv):.2f}" if m != "rst" and tv else "-"
        for m in sorted(by, key=lambda m: (order.get(m, 3), m)):
            seeds = sorted(by[m])
            lines.append(f"| {setting} | {task} | {steps} | {lr:g} | {bs} x {ml} | {n} | {m} | {seeds} |"
                         f" {_mean_se([by[m][s] for s in seeds])} | {diff(m, 'rst')} | {diff(m, 'lora')} | {unlike(m)} |")
    text = "\n".join(lines) + "\n"
    out.with_suffix(".md").write_text(text)
    print(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, help="model name or HF folder (in the record key unless the default)")
    ap.add_argument("--settings", nargs="*", default=["standalone", "offsite"], choices=["standalone", "offsite"])
    ap.add_argument("--tasks", nargs="*", default=TASKS)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--n-train", type=int, default=400)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--eta", type=float, default=None, help="IST score step (default: ISTConfig's); in the record key")
    ap.add_argument("--grad-decay", type=float, default=None,
                    help="ist-grad's moving-average factor (default: ISTConfig's); always in ist-grad's record key")
    ap.add_argument("--importance", default=None, help="stage-1 folder for the offsite setting's emulator")
    ap.add_argument("--out", default="bench/results/ist_accuracy")
    ap.add_argument("--report", action="store_true", help="only summarise the records")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if not args.report:
        grid = Grid(args)
        for setting in args.settings:
            for task in args.tasks:
                for seed in args.seeds:  # seed-major: every finished seed completes a row of the table
                    for method in args.methods:
                        spec = {"setting": setting, "task": task, "seed": seed, "method": method,
                                "steps": args.steps, "lr": args.lr, "batch_size": args.batch_size,
                                "max_length": args.max_length, "n_train": args.n_train, "n_test": args.n_test}
                        if args.model != DEFAULT_MODEL:
                            spec["model"] = args.model  # only then: records of the default keep their keys
                        if args.eta is not None and method in ("ist", "ist-grad"):
                            spec["eta"] = args.eta  # only then: records of the default keep their keys
                        if method == "ist-grad":  # always in the key: its default changed once (0.9 -> 0.97)
                            spec["grad_decay"] = args.grad_decay if args.grad_decay is not None else ISTConfig.grad_decay
                        grid.do(spec)
    report(Path(args.out))


if __name__ == "__main__":
    main()
