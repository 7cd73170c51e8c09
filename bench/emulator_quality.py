"""How much of the model an emulator keeps: Emu ZS and held-out perplexity (issue 7 investigation).

For each stage-1 importance folder given, builds the ScaleOT emulator at each ``alpha``
(``beta`` fixed) in memory and measures, on the same test split and the same held-out text:

- **Emu ZS**: zero-shot lm-eval accuracy of the emulator on a task. On a 4-way task an
  emulator at chance cannot give the data owner a useful gradient; this is the cheap
  proxy for "can the adapter learn through it" that explains the plug-in numbers.
- **perplexity** of the emulator on a generic corpus's held-out blocks.

The full model's numbers are printed first as the reference. The investigation's knobs
(harmonizer rank, stage-1 steps, corpus) are stage-1 options: run ``scaleot importance``
once per setting and pass each folder with a label.

Usage::

    python -m bench.emulator_quality --importance rank64=runs/imp_r64 --importance rank256=runs/imp_r256 \
        --alpha 0.25 --alpha 0.5 --task gen:letters --n-test 450 \
        --out bench/results/emulator_quality.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from scaleot.errors import ScaleOTError


def measure(model, tokenizer, splits, held: dict, n_test: int, batch_size: int) -> dict:
    from scaleot.evaluation import evaluate_mc, perplexity

    t0 = time.perf_counter()
    acc = evaluate_mc(model, tokenizer, splits, limit=n_test, batch_size=batch_size, autocast_dtype="bfloat16")
    ppl = {name: perplexity(model, blocks) for name, blocks in held.items()}
    out = {"acc": {k: {"acc": v["acc"], "stderr": v["acc_stderr"]} for k, v in acc.items()}, "perplexity": ppl,
           "seconds": round(time.perf_counter() - t0, 1),
           "params": sum(p.numel() for p in model.parameters())}
    return out


def main(argv: list[str] | None = None) -> int:
    from scaleot.models.loading import DEFAULT_MODEL

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--importance", action="append", required=True, help="LABEL=FOLDER (repeatable)")
    ap.add_argument("--alpha", action="append", type=float, required=True)
    ap.add_argument("--beta", type=float, default=0.0)
    ap.add_argument("--task", action="append", required=True)
    ap.add_argument("--n-test", type=int, default=450)
    ap.add_argument("--ppl-corpus", action="append", help="held-out perplexity corpus (repeatable; default kjv)")
    ap.add_argument("--ppl-blocks", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", required=True, help="results JSON")
    args = ap.parse_args(argv)
    try:
        labelled = [item.split("=", 1) for item in args.importance]
        if any(len(p) != 2 for p in labelled):
            raise ScaleOTError("--importance takes LABEL=FOLDER")
        run(args, labelled)
    except ScaleOTError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def run(args, labelled: list[list[str]]) -> None:
    from scaleot.data import corpus_splits, load_task
    from scaleot.data.tasks import SplitConfig
    from scaleot.exchange.manifest import write_json_atomic
    from scaleot.model_owner.emulator import EmulatorConfig, build_emulator
    from scaleot.models import load_model

    model, tokenizer = load_model(args.model)
    splits = [load_task(t, SplitConfig(n_test=args.n_test)) for t in args.task]
    held = {c: corpus_splits(c, tokenizer, block_size=128, max_heldout_blocks=args.ppl_blocks)[1]
            for c in args.ppl_corpus or ["kjv"]}
    rows = [{"label": "full model", "alpha": 0.0, **measure(model, tokenizer, splits, held, args.n_test,
                                                            args.batch_size)}]
    print(json.dumps(rows[-1]), flush=True)
    for label, folder in labelled:
        info = json.loads((Path(folder) / "importance.json").read_text())
        for alpha in args.alpha:
            cfg = EmulatorConfig(method="scaleot", alpha=alpha, beta=args.beta,
                                 importance=folder, n_bottom=info["options"]["n_bottom"],
                                 n_top=info["options"]["n_top"])
            emu = build_emulator(model, cfg, tokenizer, base_model=args.model).model
            rows.append({"label": label, "importance": folder, "alpha": alpha, "beta": args.beta,
                         "stage1": {"steps": info["options"]["steps"], "corpus": info.get("corpus"),
                                    "rank": info["options"]["harmonizer"]["rank"]},
                         **measure(emu, tokenizer, splits, held, args.n_test, args.batch_size)})
            print(json.dumps(rows[-1]), flush=True)
            del emu
    write_json_atomic(args.out, {"model": args.model, "tasks": args.task, "n_test": args.n_test,
                                 "ppl_corpus": args.ppl_corpus or ["kjv"], "ppl_blocks": args.ppl_blocks, "rows": rows})


if __name__ == "__main__":
    raise SystemExit(main())
