"""Issue 16's table: what each emulator method gives away to a recovery attacker.

One process, one loaded full model (the default SmolLM2-135M). For every method at matched
size (adapter 2+2 and EmulatorConfig's alpha and beta, 0.25 and 0.5: the shipped configuration):

1. build the emulator in memory (``build_emulator``; ``scaleot``/``drop`` read the stage-1
   ``--importance`` folder, ``crash`` calibrates on KJV, ``uniform-kd`` distils ``--kd-steps``
   steps on KJV) and save it to ``OUT/emu-<method>`` (skipped when already there);
2. run the ``scaleot audit`` recipe on it into ``OUT/audit-<method>`` with the library's
   attack, so every budget is a resumable checkpointed step: rerunning the same command
   continues where a killed run stopped, and a finished audit is never redone. The full
   model's measurement is shared between methods (``OUT/full.json``).

``--report`` collects the ``audit.json`` files into the issue's table (Emu ZS, R and fidelity
per budget, attack wall time) and writes ``OUT/table.md``. Timings on this machine are taken
under load (other jobs share the CPU); compare them only within one table.

    flock /tmp/cpu1.lock timeout 840 .venv/bin/python -m bench.audit --out runs/audit --minutes 10 \\
        --importance runs/transfer/importance --methods uniform,drop,scaleot --budgets 10000,40000 \\
        --tasks pkg:word_sentiment --n-test 200
    .venv/bin/python -m bench.audit --out runs/audit --report
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from scaleot.data import SplitConfig, corpus_splits, load_task
from scaleot.exchange.manifest import manifest_matches, write_json_atomic
from scaleot.model_owner.audit import AuditConfig, measure
from scaleot.model_owner.audit.recovery import AttackPaused, summary
from scaleot.model_owner.emulator import EmulatorConfig, build_emulator
from scaleot.models import DEFAULT_MODEL, load_model
from scaleot.recipes.audit import AuditRecipe, AuditRun
from scaleot.recipes.protocol import run_recipe
from scaleot.recipes.run_options import RunOptions

METHODS = ("uniform", "uniform-kd", "crash", "drop", "scaleot")


def emulator_for(method: str, model, tok, out: Path, args) -> Path:
    folder = out / f"emu-{method}"
    if manifest_matches(folder, "emulator"):
        return folder
    cfg = EmulatorConfig(method=method, n_bottom=2, n_top=2, alpha=args.alpha, beta=args.beta,
                         importance=args.importance if method in ("scaleot", "drop") else None,
                         kd_steps=args.kd_steps, kd_run_dir=str(out / f"kd-{method}"), diagnostic_blocks=0)
    t0 = time.perf_counter()
    bundle = build_emulator(model, cfg, tokenizer=tok, base_model=args.model, resume=True)
    bundle.info["timing"]["bench_build_s"] = round(time.perf_counter() - t0, 1)
    return bundle.save(folder)


def full_measurement(model, tok, config: AuditConfig, out: Path) -> dict:
    """The full model's measurement on the audit tasks, computed once for every method."""
    path = out / "full.json"
    key = {k: v for k, v in config.to_dict().items() if k in ("tasks", "n_test", "split_seed", "scorer",
                                                                "ppl_corpus", "ppl_blocks", "block_size")}
    if path.is_file():
        doc = json.loads(path.read_text())
        if doc["key"] == key:
            return doc["measurement"]
    splits = [load_task(t, SplitConfig(seed=config.split_seed, n_test=config.n_test, n_val=0))
              for t in config.task_list]
    _, ppl = corpus_splits(config.ppl_corpus, tok, config.block_size, max_train_blocks=1,
                           max_heldout_blocks=config.ppl_blocks)
    m = measure(model, tok, splits, ppl, config.scorer)
    write_json_atomic(path, {"key": key, "measurement": m})
    return m


def run(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = AuditConfig(tasks=args.tasks, n_test=args.n_test, budgets=args.budgets, attack_lr=args.lr,
                         checkpoint_every=args.checkpoint_every, ppl_blocks=args.ppl_blocks,
                         max_recovery=0.5, autocast=args.autocast, keep_checkpoints=args.keep_checkpoints,
                         transfer_tasks=args.transfer_tasks)
    deadline = time.monotonic() + args.minutes * 60 if args.minutes else None
    model, tok = load_model(args.model, device="cpu")
    full = full_measurement(model, tok, config, out)
    print(f"full ZS {summary(full)['acc']:.3f} ppl {full['ppl']:.2f}", flush=True)
    for method in args.methods.split(","):
        folder = out / f"audit-{method}"
        if manifest_matches(folder, "audit"):
            print(f"{method}: done", flush=True)
            continue
        emu = emulator_for(method, model, tok, out, args)
        resume = folder.is_dir() and any(folder.iterdir())
        t0 = time.perf_counter()
        recipe = AuditRecipe(AuditRun(emulator=emu, config=config, run=RunOptions(
                                          out=folder, model=args.model, device="cpu", resume=resume, progress=False)),
                             full_model=model, tokenizer=tok, full_measurement=full, deadline=deadline)
        try:
            doc = run_recipe(recipe)
        except AttackPaused as e:
            print(f"{method}: {e}; rerun the same command to continue", flush=True)
            return
        print(f"{method}: {'PASS' if doc['verdict']['ok'] else 'FAIL'} in {time.perf_counter() - t0:.0f} s; "
              + "; ".join(f"{r['tokens']} tok: ZS {r['acc']:.3f} R {r['R']} fid {r['fidelity']:.3f}"
                          for r in doc["attack"]), flush=True)
        del recipe


def _pct(x, se=None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}" + (f" ± {100 * se:.1f}" if se is not None else "")


def report(args) -> str:
    out = Path(args.out)
    docs = {m: json.loads((out / f"audit-{m}" / "audit.json").read_text())
            for m in METHODS if (out / f"audit-{m}" / "audit.json").is_file()}
    if not docs:
        return "no finished audit"
    any_doc = next(iter(docs.values()))
    budgets = any_doc["attack_recipe"]["budgets_tokens"]
    full = any_doc["full"]
    head = ["method", "params", "Emu ZS", "fidelity (0)"]
    for b in budgets:
        head += [f"ZS @{b / 1000:g}k", f"R @{b / 1000:g}k", f"fidelity @{b / 1000:g}k"]
    head += ["attack s (train only)", "leak scan"]
    lines = [f"Full ZS {_pct(full['acc'], full['acc_stderr'])} (n = {full['n']}, {', '.join(full['tasks'])}); "
             f"full perplexity {full['ppl']:.2f} (held-out KJV)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, d in docs.items():
        e, f0 = d["emulator_zs"], d["emulator_fidelity"]
        row = [m, f"{d['emulator']['params']['ratio']:.2f}", _pct(e["acc"], e["acc_stderr"]),
               _pct(f0["fidelity"], f0["fidelity_stderr"])]
        for r in d["attack"]:
            rr = "n/a" if r["R"] is None else f"{r['R']:.2f} ± {r['R_stderr']:.2f}"
            row += [_pct(r["acc"], r["acc_stderr"]), rr, _pct(r["fidelity"], r["fidelity_stderr"])]
        row += [str(d["attack"][-1]["train_seconds"]) if d["attack"] else "-",
                "clean" if d["scan"]["ok"] else "LEAK"]
        lines.append("| " + " | ".join(row) + " |")
    text = "\n".join(lines) + "\n"
    (out / "table.md").write_text(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--report", action="store_true", help="only collect the table from finished audits")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--importance", help="stage-1 folder (scaleot, drop)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--alpha", type=float, default=EmulatorConfig.alpha)
    ap.add_argument("--beta", type=float, default=EmulatorConfig.beta)
    ap.add_argument("--kd-steps", type=int, default=200)
    ap.add_argument("--tasks", default="pkg:word_sentiment")
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--ppl-blocks", type=int, default=16)
    ap.add_argument("--budgets", default="100000,500000,2000000")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--checkpoint-every", type=int, default=10)
    ap.add_argument("--autocast", default="none", help="the attack's forwards: none (fp32) or bf16 (scoring stays fp32)")
    ap.add_argument("--transfer-tasks", default="",
                    help="scaleot audit's proxy transfer check (default here: none; bench/suite.py measures transfer)")
    ap.add_argument("--keep-checkpoints", action="store_true",
                    help="keep each attack's last checkpoint, so a later run can add a larger budget")
    ap.add_argument("--minutes", type=float, default=0,
                    help="stop the attack cleanly (checkpointed) after this many minutes (0: no limit)")
    args = ap.parse_args()
    if not args.report:
        run(args)
    print(report(args))


if __name__ == "__main__":
    main()
