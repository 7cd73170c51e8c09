"""Why does (or doesn't) the emulator-tuned adapter transfer? Issue 14's experiments.

One process, one loaded full model; every experiment is one record
``OUT/records/<key>.json`` (resumable: a finished record is never redone). An experiment
is (task, emulator spec, adapter split, tuning method, lr, steps, seed):

1. build the emulator in memory (``build_emulator``; ScaleOT/drop read ``--importance``,
   whose ranking is restricted to the middle of the adapter split asked for, so one 2+2
   stage 1 serves 3+3 and 4+4 too: its harmonizers cover every middle block of those);
2. the transfer diagnostic on task batches: cosine between the adapter's gradient through
   the emulator and through the full model (:mod:`scaleot.model_owner.emulator.diagnostic`);
3. tune the adapter through the emulator with the library's fine-tuning loop;
4. plug it into a copy of the full model through the product's path (export, read, merge);
5. score Emu ZS, Emu FT and Plug-in on the test split (per-example ``correct`` kept, so
   every difference gets a paired standard error). Full ZS, FT and the ``reference`` (the
   same adapter tuned on the full model itself) are records of their own.

    .venv/bin/python -m bench.transfer --out runs/transfer --importance runs/transfer/importance \
        --plan scan           # or: --plan na, --plan alpha, ...  (see PLANS); --model: another model
    .venv/bin/python -m bench.transfer --out runs/transfer --report   # tables from the records
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import inspect
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.offsite_matrix import MATRIX_METHODS, default_scale  # configs/default.yaml, read once
from scaleot import stats
from scaleot.data import SplitConfig, load_task
from scaleot.data.finetune import PadCollator, encode_example
from scaleot.data_owner.finetune import FinetuneConfig, freeze_all_but_blocks, train
from scaleot.data_owner.finetune.export import export_adapter
from scaleot.data_owner.finetune.loop import AnswerLoss
from scaleot.data_owner.finetune.methods import TUNING_METHODS
from scaleot.evaluation import evaluate_mc
from scaleot.exchange.adapter import read_adapter
from scaleot.exchange.importance import load_harmonizers, read_importance_info, write_importance
from scaleot.exchange.manifest import write_json_atomic
from scaleot.merge import plug_into
from scaleot.model_owner.emulator import EmulatorConfig, build_emulator
from scaleot.model_owner.emulator.diagnostic import gradient_alignment
from scaleot.models import fingerprint_model, get_blocks, load_model, num_blocks
from scaleot.models.loading import DEFAULT_MODEL
from scaleot.split import AdapterSplit

TASKS = default_scale()["tasks"]  # configs/default.yaml's tasks
N_VAL = 50  # validation examples (scored on the tuned model each epoch; the best epoch is kept)


# What decides the emulator and the test examples (not the tuning); DETERMINISTIC: methods
# whose emulator is a function of these and the importance folder alone.
EMULATOR_KEYS = ("task", "n_train", "n_test", "method", "nb", "nt", "alpha", "beta", "calibrate_steps", "split", "noise",
                 "quant", "mlp_beta", "adapter_blocks", "gradmatch", "gm_steps")
DETERMINISTIC = ("scaleot", "uniform", "drop", "crash")


def key_of(spec: dict) -> str:
    text = json.dumps(spec, sort_keys=True)
    return f"{spec['row']}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


SCORE_AUTOCAST = None  # "bfloat16" to score under bf16 autocast (bench/suite.py sets it from --autocast)


def score(model, tok, splits) -> dict:
    """acc and per-example correct on the test split (the fast scorer where this tree has one)."""
    kw = {"scorer": "fast"} if "scorer" in inspect.signature(evaluate_mc).parameters else {}
    r = evaluate_mc(model, tok, [splits], batch_size=32, autocast_dtype=SCORE_AUTOCAST, **kw)[splits.name]
    return {"acc": r["acc"], "acc_stderr": r["acc_stderr"], "n": r["n"], "correct": r["correct"],
            "scorer": r.get("scorer", kw.get("scorer", "lm-eval"))}


def derived_importance(src: Path, n_bottom: int, n_top: int, n_blocks: int, root: Path) -> Path:
    """An importance folder for another adapter split: the 2+2 ranking cut to its middle.

    A middle block the 2+2 stage 1 never scored (block 0, 1, 28 or 29 of a split with fewer
    adapter blocks) has no harmonizer: it is ranked most important, so it is never replaced.
    """
    if (n_bottom, n_top) == (2, 2):
        return src
    dst = root / f"importance_{n_bottom}_{n_top}"
    if (dst / "manifest.json").is_file():
        return dst
    info = read_importance_info(src)
    middle = list(range(n_bottom, n_blocks - n_top))
    unscored = [i for i in middle if i not in info["ranking"]]
    info["ranking"] = unscored + [i for i in info["ranking"] if i in middle]
    info["options"] = dict(info["options"], n_bottom=n_bottom, n_top=n_top)
    info["derived_from"] = str(src)
    tmp = Path(tempfile.mkdtemp(dir=root))
    write_importance(tmp, info, load_harmonizers(src / "harmonizers.safetensors"))
    tmp.rename(dst)
    return dst


def important_adapter(layer_map: list[dict], ranking: list[int]) -> list[dict]:
    """The same emulator with another adapter: the ``len(adapter)`` kept middle blocks stage 1
    ranked most important are tuned, and the sandwich ends become frozen kept blocks.

    Issue 28's "which blocks are the adapter" hypothesis, on the bench only: the product's bundle
    format names the sandwich split. The emulator's weights do not change, only what is tuned;
    the plug-in puts the tuned blocks back at their sources, as for the ends.
    """
    n = sum(e["kind"] == "adapter" for e in layer_map)
    kept = {e["source"] for e in layer_map if e["kind"] == "kept"}
    chosen = [i for i in ranking if i in kept][:n]
    if len(chosen) < n:
        raise ValueError(f"only {len(chosen)} kept middle blocks for an adapter of {n}")
    def kind(e):  # chosen kept blocks become the adapter, the ends become kept, the rest stays
        if e["kind"] == "kept" and e["source"] in chosen:
            return "adapter"
        return "kept" if e["kind"] == "adapter" else e["kind"]

    return [{**e, "kind": kind(e)} for e in layer_map]


def add_weight_noise(model, layer_map: list[dict], scale: float, seed: int = 0) -> None:
    """Withhold the model by noise, not by a rank cut: every 2-D weight of the kept middle blocks
    gets Gaussian noise of ``scale`` times that weight's own standard deviation (seeded; the
    adapter blocks and harmonizers are untouched, so the adapter's gradient path is intact)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for w in kept_matrices(model, layer_map):
            w.add_(torch.randn(w.shape, generator=g, dtype=w.dtype) * (scale * w.std()))


def kept_matrices(model, layer_map: list[dict]) -> list[torch.Tensor]:
    """The 2-D weights of the emulator's kept middle blocks, in block order."""
    blocks = get_blocks(model)
    return [w for e in layer_map if e["kind"] == "kept" for w in blocks[e["position"]].parameters() if w.dim() == 2]


def fake_quantize(model, layer_map: list[dict], bits: int, group: int = 64) -> None:
    """Withhold the model by low-bit weights, not by removing blocks (issue 28, "low-bit
    quantisation of the kept middle"): every 2-D weight of the kept middle blocks is rounded to
    ``bits``-bit integers, symmetric round-to-nearest with one scale per ``group`` consecutive
    input weights of a row (the common RTN scheme of weight-only quantisation), then stored back
    dequantised. The blocks keep their shape, so the adapter's gradient path runs through every
    one of them; only their precision is withheld."""
    qmax = 2 ** (bits - 1) - 1
    with torch.no_grad():
        for w in kept_matrices(model, layer_map):
            if w.shape[1] % group:
                continue
            g = w.view(w.shape[0], -1, group)
            scale = g.abs().amax(-1, keepdim=True).clamp_min(1e-12) / qmax
            g.copy_((g / scale).round().clamp(-qmax - 1, qmax) * scale)


def mlp_rank_cut(model, layer_map: list[dict], beta: float) -> None:
    """SRC's rank cut on the MLP projections of the kept middle blocks instead of attention
    (issue 28 hypothesis): the library's own :func:`compress_block` code path, pointed at the
    MLP roles of the architecture table."""
    from dataclasses import replace

    from scaleot.model_owner.emulator.src_compress import compress_block
    from scaleot.models import arch_spec

    spec = arch_spec(model)
    mlp_only = replace(spec, attn=spec.mlp)
    blocks = get_blocks(model)
    for e in layer_map:
        if e["kind"] == "kept":
            compress_block(blocks[e["position"]], mlp_only, beta)


class MiddleDrop:
    """A stochastic emulator (issue 28, hypothesis "tuning that cannot fit one emulator's quirks").

    A step controller (:class:`scaleot.data_owner.finetune.loop.StepController`): before each optimizer step,
    every kept middle block of the emulator is skipped (its input passed through) with
    probability ``p``, drawn from a seeded generator; after the step every block runs again, so
    validation and scoring see the emulator as shipped. The skip is a scoped forward hook on each
    kept block (the block still runs; its output is replaced by its input)."""

    def __init__(self, model, layer_map: list[dict], p: float, seed: int = 0):
        blocks = get_blocks(model)
        self.p, self.skip = p, set()
        self.gen = torch.Generator().manual_seed(seed)
        self.kept = [e["position"] for e in layer_map if e["kind"] == "kept"]
        self.handles = [blocks[pos].register_forward_hook(self._hook(pos), with_kwargs=True) for pos in self.kept]

    def _hook(self, pos: int):
        def hook(module, args, kwargs, output):
            if pos in self.skip:
                return args[0] if args else kwargs["hidden_states"]
            return None
        return hook

    def before_step(self, step: int) -> None:
        draw = torch.rand(len(self.kept), generator=self.gen)
        self.skip = {pos for pos, u in zip(self.kept, draw.tolist(), strict=True) if u < self.p}

    def after_backward(self, step: int) -> None:
        pass

    def after_step(self, step: int) -> None:
        self.skip = set()

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.skip = set()

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Anchor:
    """An adapter regularised toward its starting weights (L2-SP, decoupled like AdamW's decay).

    After each optimizer step every trainable weight moves a fraction ``strength`` of the way
    back to where it started: ``w <- w0 + (1 - strength) * (w - w0)``, so what the adapter keeps
    is what the gradient asks for step after step, not one emulator's quirk fitted once."""

    def __init__(self, model, strength: float):
        self.strength = strength
        self.start = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        self.params = {n: p for n, p in model.named_parameters() if n in self.start}

    def before_step(self, step: int) -> None:
        pass

    def after_backward(self, step: int) -> None:
        pass

    def after_step(self, step: int) -> None:
        with torch.no_grad():
            for n, p in self.params.items():
                p.sub_(self.strength * (p - self.start[n]))

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def precorrect(model, positions: list[int], blocks: torch.Tensor, steps: int, lr: float, bf16: bool,
               seed: int = 0) -> dict[str, torch.Tensor]:
    """Repair what the emulator distorts before tuning on the task (issue 28, session 3).

    The data owner first tunes only the adapter blocks with next-token loss on public text
    (``blocks``: ``[n, block_size]`` token ids), ``steps`` AdamW steps of 8 blocks at a constant
    ``lr``: the adapter absorbs the emulator's quirks there, so the task tuning that follows starts
    from an emulator closer to the full model. Returns the adapter blocks' weights after the
    correction (``{"<position>.<name>": tensor}``), from which a *delta plug* subtracts it."""
    from scaleot.models.device import bf16_autocast

    layers = get_blocks(model)
    for p in model.parameters():
        p.requires_grad_(False)
    params = [p for pos in positions for p in layers[pos].parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        batch = blocks[torch.randint(0, len(blocks), (8,), generator=gen)]
        with bf16_autocast(bf16, torch.device("cpu")):
            loss = model(input_ids=batch, labels=batch, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return {f"{pos}.{n}": t.detach().clone() for pos in positions for n, t in layers[pos].state_dict().items()}


def input_covariances(full, emu, pairs: list[tuple[int, int]], blocks: torch.Tensor,
                      batch: int = 8) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per linear layer of the adapter blocks, ``(C_ef, C_ff)``: sums over the tokens of public
    text ``blocks`` of ``x_e x_f^T`` and ``x_f x_f^T``, where ``x_e`` is the layer's input in the
    (untuned) emulator and ``x_f`` in the full model at the same token. ``pairs``: (emulator
    position, full-model block) of each adapter block; keys ``"<full block>.<linear name>"``."""
    def hook_all(model, which: int):
        hooks = []
        for pos, src in pairs:
            block = get_blocks(model)[pos if which == 0 else src]
            for name, mod in block.named_modules():
                if isinstance(mod, torch.nn.Linear):
                    def grab(m, args, key=f"{src}.{name}"):
                        seen[which][key] = args[0].detach().reshape(-1, args[0].shape[-1]).double()
                    hooks.append(mod.register_forward_pre_hook(grab))
        return hooks

    seen: list[dict] = [{}, {}]
    hooks = hook_all(emu, 0) + hook_all(full, 1)
    sums: dict[str, list[torch.Tensor]] = {}
    try:
        with torch.no_grad():
            for i in range(0, len(blocks), batch):
                emu(input_ids=blocks[i:i + batch], use_cache=False)
                full(input_ids=blocks[i:i + batch], use_cache=False)
                for key, xe in seen[0].items():
                    xf = seen[1][key]
                    c = sums.setdefault(key, [torch.zeros(xe.shape[1], xf.shape[1], dtype=torch.float64),
                                              torch.zeros(xf.shape[1], xf.shape[1], dtype=torch.float64)])
                    c[0] += xe.T @ xf
                    c[1] += xf.T @ xf
    finally:
        for h in hooks:
            h.remove()
    return {k: (a, b) for k, (a, b) in sums.items()}


def rebase_map(c_ef: torch.Tensor, c_ff: torch.Tensor, ridge: float) -> torch.Tensor:
    """``M`` minimising sum ||x_e - M x_f||^2 + ridge * mean(diag C_ff) * ||M||^2: the full model's
    input mapped to the emulator's at the same token (ridge regression, closed form)."""
    lam = ridge * torch.diagonal(c_ff).mean()
    return torch.linalg.solve(c_ff + lam * torch.eye(len(c_ff), dtype=c_ff.dtype), c_ef.T).T


def rebased_plug(full, tuned_blocks: dict[int, dict], start: dict[int, dict], pairs: list[tuple[int, int]],
                 cov: dict, ridge: float):
    """The plug-in with each adapter linear's change re-based onto the full model's inputs:
    ``W_full + (W_tuned - W_start) M`` (so the change acts on ``M x_f``, the full model's input
    mapped to where the emulator's was); every other tensor as the plain plug-in."""
    model = copy.deepcopy(full)
    with torch.no_grad():
        for pos, src in pairs:
            block = get_blocks(model)[src]
            state = block.state_dict()
            new = {}
            for n, w in state.items():
                delta = tuned_blocks[pos][n].to(w.dtype) - start[pos][n].to(w.dtype)
                key = f"{src}.{n.rsplit('.', 1)[0]}"
                if n.endswith(".weight") and key in cov and w.dim() == 2:
                    m = rebase_map(*cov[key], ridge).to(w.dtype)
                    delta = delta @ m
                new[n] = w + delta
            block.load_state_dict(new)
    return model


class Chain:
    """Several step controllers called in order (a tuner's own and the regularisers above)."""

    def __init__(self, parts: list):
        self.parts = parts

    def before_step(self, step: int) -> None:
        for p in self.parts:
            p.before_step(step)

    def after_backward(self, step: int) -> None:
        for p in self.parts:
            p.after_backward(step)

    def after_step(self, step: int) -> None:
        for p in self.parts:
            p.after_step(step)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Lab:
    """Holds the full model, tasks and finished emulators of one process."""

    def __init__(self, args):
        self.args = args
        self.out = Path(args.out)
        (self.out / "records").mkdir(parents=True, exist_ok=True)
        self.full, self.tok = load_model(getattr(args, "model", DEFAULT_MODEL), device="cpu")
        self.full.eval()
        self.n = num_blocks(self.full)
        self.splits = {}

    def task(self, spec: dict):
        key = (spec["task"], spec["n_train"], spec["n_test"])
        if key not in self.splits:
            self.splits[key] = load_task(spec["task"], SplitConfig(seed=0, n_test=spec["n_test"], n_val=N_VAL,
                                                                   n_train=spec["n_train"]))
        return self.splits[key]

    def emulator(self, spec: dict):
        if spec["method"] == "reference":  # the full model itself: the plug-in ceiling
            model = copy.deepcopy(self.full)
            positions = AdapterSplit(spec["nb"], spec["nt"]).positions(self.n)
            layer_map = [{"position": i, "kind": "adapter" if i in positions else "kept", "source": i}
                         for i in range(self.n)]
            return model, layer_map
        imp = derived_importance(Path(self.args.importance), spec["nb"], spec["nt"], self.n, self.out)
        cfg = EmulatorConfig(method=spec["method"], n_bottom=spec["nb"], n_top=spec["nt"], alpha=spec["alpha"],
                             beta=spec.get("beta", 0.0), importance=str(imp), kd_steps=spec.get("kd_steps", 50),
                             calibrate_steps=spec.get("calibrate_steps", 0),
                             kd_run_dir=str(self.out / "kd" / key_of(spec)), autocast="none")
        bundle = build_emulator(self.full, cfg, self.tok)
        if spec.get("noise"):
            add_weight_noise(bundle.model, bundle.layer_map, spec["noise"], seed=0)
        if spec.get("quant"):
            fake_quantize(bundle.model, bundle.layer_map, spec["quant"])
        if spec.get("mlp_beta"):
            mlp_rank_cut(bundle.model, bundle.layer_map, spec["mlp_beta"])
        if "gradmatch" in spec:
            self.refit_harmonizers(spec, bundle.model, bundle.layer_map)
        if spec.get("adapter_blocks") == "important":
            return bundle.model, important_adapter(bundle.layer_map, read_importance_info(imp)["ranking"])
        return bundle.model, bundle.layer_map

    def refit_harmonizers(self, spec: dict, model, layer_map: list[dict]) -> None:
        """bench/gradmatch.py's refit (outputs, and input gradients with weight ``gradmatch``),
        once per emulator: the fitted harmonizers are kept in ``<out>/gradmatch/`` (safetensors,
        with the fit's numbers beside them) and reused by every task."""
        from safetensors.torch import load_file, save_file

        from bench.gradmatch import fit_harmonizers

        keys = {k: spec.get(k) for k in ("method", "nb", "nt", "alpha", "beta", "gradmatch", "gm_steps")}
        stem = self.out / "gradmatch" / hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:12]
        blocks = get_blocks(model)
        mine = [e["position"] for e in layer_map if e["kind"] == "harmonizer"]
        if not stem.with_suffix(".safetensors").is_file():
            fit = fit_harmonizers(self.full, model, layer_map, self.text_blocks(), lam=spec["gradmatch"],
                                  steps=spec.get("gm_steps", 200))
            stem.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(stem.with_suffix(".json"), {"spec": keys, "fit": fit})
            save_file({f"{pos}.{n}": t.contiguous() for pos in mine for n, t in blocks[pos].state_dict().items()},
                      str(stem.with_suffix(".safetensors")))
            print(f"gradmatch {keys}: {fit['first']} -> {fit['final']}", flush=True)
        state = load_file(str(stem.with_suffix(".safetensors")))
        for pos in mine:
            blocks[pos].load_state_dict({k.split(".", 1)[1]: v for k, v in state.items() if k.split(".")[0] == str(pos)})

    def diagnostic(self, emu, layer_map, splits, n_batches=4, batch_size=8) -> dict:
        collate = PadCollator(self.tok.pad_token_id)
        enc = [encode_example(ex, self.tok, 128) for ex in splits.train[: n_batches * batch_size]]
        batches = [collate(enc[i:i + batch_size]) for i in range(0, len(enc), batch_size)]
        return gradient_alignment(self.full, emu, layer_map, batches, lambda m, b: AnswerLoss(m)(**b))

    def run(self, spec: dict) -> dict:
        """One data-owner experiment: diagnostic, tuning, Emu ZS/FT and Plug-in."""
        t0 = time.perf_counter()
        splits = self.task(spec)
        emu, layer_map = self.emulator(spec)
        reference = spec["method"] == "reference"
        rec = {"spec": spec}
        if not reference:  # the reference's gradients are the full model's: cosine 1 by definition
            done = self.untuned(spec)
            if done is not None:  # same emulator, same test split: its untuned numbers are the same
                rec.update({k: done[k] for k in ("diagnostic", "emu_zs")}, untuned_from=key_of(done["spec"]))
            else:
                rec["diagnostic"] = self.diagnostic(emu, layer_map, splits)
                rec["emu_zs"] = score(emu, self.tok, splits)
        positions = [e["position"] for e in layer_map if e["kind"] == "adapter"]
        sources = [e["source"] for e in layer_map if e["kind"] == "adapter"]
        if spec.get("tune_blocks"):  # only one half of the adapter trains; the other stays as shipped
            half = positions[:spec["nb"]] if spec["tune_blocks"] == "bottom" else positions[spec["nb"]:]
            sources = [src for pos, src in zip(positions, sources, strict=True) if pos in half]
            positions = half
        corrected = None
        if spec.get("precorrect"):
            corrected = precorrect(emu, positions, self.text_blocks(), spec["precorrect"], spec["lr"],
                                   getattr(self.args, "autocast", "none") == "bf16", seed=spec["seed"])
            rec["emu_corrected_zs"] = score(emu, self.tok, splits)
        cfg = FinetuneConfig(method=spec["tune"], lr=spec["lr"], epochs=spec.get("epochs", 1),
                             max_steps=spec.get("steps"), batch_size=8, max_length=128, n_train=spec["n_train"],
                             n_val=N_VAL, n_test=spec["n_test"], seed=spec["seed"], val_limit=N_VAL,
                             eval_batch_size=32, lora_rank=spec.get("rank", 8),
                             lora_alpha=2.0 * spec.get("rank", 8),
                             autocast=getattr(self.args, "autocast", "none"))
        # the product's registry (full / lora / ist), as `scaleot finetune --method` does
        start = ({p: copy.deepcopy(get_blocks(emu)[p].state_dict()) for p in positions}
                 if spec.get("halves") or spec.get("rebase") else None)
        cov = (input_covariances(self.full, emu, list(zip(positions, sources, strict=True)), self.text_blocks()[:64])
               if spec.get("rebase") else None)
        peft, controller = TUNING_METHODS[spec["tune"]].prepare(emu, positions, cfg, self.tok)
        extra = []
        if spec.get("drop"):
            extra.append(MiddleDrop(emu, layer_map, spec["drop"], seed=spec["seed"]))
        if spec.get("anchor"):
            extra.append(Anchor(emu, spec["anchor"]))
        if extra:
            controller = Chain(([controller] if controller is not None else []) + extra)
        with tempfile.TemporaryDirectory() as run_dir:
            res = train(emu, self.tok, splits, cfg, run_dir, step_controller=controller, progress=False, device="cpu")
        for part in extra:
            if isinstance(part, MiddleDrop):
                part.remove()
        # the plug-in through the product's own path: the data owner's export, the model owner's
        # one read of the returned folder, the merge (LoRA deltas merged into the full blocks)
        with tempfile.TemporaryDirectory() as folder:
            info = {"method": spec["tune"], "base_fingerprint": self.fingerprint(), "data": {"task": spec["task"]},
                    "options": {"split_seed": 0, "n_test": spec["n_test"], "n_val": N_VAL, "n_train": spec["n_train"]}}
            export_adapter(Path(folder) / "adapter", emu, positions, sources, info, peft_model=peft)
            plugged = plug_into(copy.deepcopy(self.full), read_adapter(Path(folder) / "adapter"), check=False)
        if peft is not None:
            emu = peft.merge_and_unload()
        emu.eval()
        if not reference:
            rec["emu_ft"] = score(emu, self.tok, splits)
        rec["train"] = {"steps": res.steps, "validation": res.validation, **res.timing}
        rec["plug_in"] = score(plugged, self.tok, splits)
        eb, pb = get_blocks(emu), get_blocks(plugged)
        if corrected is not None:  # the delta plug: full model's block + (tuned - corrected)
            fb = get_blocks(self.full)
            with torch.no_grad():
                for pos, src in zip(positions, sources, strict=True):
                    tuned = eb[pos].state_dict()
                    pb[src].load_state_dict({n: fb[src].state_dict()[n] + tuned[n] - corrected[f"{pos}.{n}"]
                                             for n in tuned})
            rec["plug_in_delta"] = score(plugged, self.tok, splits)
        if cov is not None:
            tuned = {p: get_blocks(emu)[p].state_dict() for p in positions}
            rec["plug_in_rebased"] = score(rebased_plug(self.full, tuned, start, list(zip(positions, sources, strict=True)),
                                                        cov, spec["rebase"]), self.tok, splits)
        if spec.get("halves"):
            rec.update(self.halves(spec, emu, plugged, positions, sources, start, splits, reference))
        rec["seconds"] = round(time.perf_counter() - t0, 1)
        return rec

    def halves(self, spec, emu, plugged, positions, sources, start, splits, reference) -> dict:
        """Where does the transfer live? The plug-in (and the tuned emulator) with only the bottom
        or only the top adapter blocks tuned, the other half back at its starting weights."""
        out = {}
        fb = get_blocks(self.full)
        for name, half in (("bottom", positions[:spec["nb"]]), ("top", positions[spec["nb"]:])):
            model = copy.deepcopy(plugged)
            for pos, src in zip(positions, sources, strict=True):
                if pos not in half:
                    get_blocks(model)[src].load_state_dict(fb[src].state_dict())
            out[f"plug_in_{name}"] = score(model, self.tok, splits)
            if not reference:
                model = copy.deepcopy(emu)
                for pos in positions:
                    if pos not in half:
                        get_blocks(model)[pos].load_state_dict(start[pos])
                out[f"emu_ft_{name}"] = score(model, self.tok, splits)
        return out

    def fingerprint(self) -> str:
        """The full model's fingerprint (written into each exported adapter, as the data owner's is)."""
        if not hasattr(self, "_fingerprint"):
            self._fingerprint = fingerprint_model(self.full)
        return self._fingerprint

    def text_blocks(self) -> torch.Tensor:
        """Public generic text for :func:`precorrect`: 2048 KJV blocks of 128 tokens (cached)."""
        if not hasattr(self, "_text"):
            from scaleot.data.text import pack_blocks, read_corpus

            self._text = pack_blocks(read_corpus("kjv"), self.tok, 128, max_blocks=2048)
        return self._text

    def untuned(self, spec: dict) -> dict | None:
        """A finished record of the same emulator on the same task split, if any.

        Its diagnostic (first training batches, split seed 0) and Emu ZS do not depend on the
        tuning (method, lr, steps, seed), so they are reused rather than recomputed (about a
        third of an experiment). Only for emulators built without training: uniform-kd's
        distillation is rebuilt and rescored every time.
        """
        if spec["method"] not in DETERMINISTIC:
            return None
        def emulator_of(s):  # beta absent = 0 (records older than SRC)
            return tuple(s.get(k, 0.0 if k == "beta" else None) for k in EMULATOR_KEYS)
        for path in sorted((self.out / "records").glob("offsite-*.json")):
            rec = json.loads(path.read_text())
            if emulator_of(rec["spec"]) == emulator_of(spec) and "emu_zs" in rec and "untuned_from" not in rec:
                return rec
        return None

    def zero_shot(self, spec: dict) -> dict:
        return {"full_zs": score(self.full, self.tok, self.task(spec))}

    def ft(self, spec: dict) -> dict:
        model = copy.deepcopy(self.full)
        freeze_all_but_blocks(model, list(range(self.n)))
        cfg = FinetuneConfig(method="full", lr=spec["lr"], epochs=1, max_steps=spec.get("steps"), batch_size=8,
                             max_length=128, n_train=spec["n_train"], n_val=N_VAL, n_test=spec["n_test"],
                             seed=spec["seed"], val_limit=N_VAL, eval_batch_size=32,
                             autocast=getattr(self.args, "autocast", "none"))
        splits = self.task(spec)
        with tempfile.TemporaryDirectory() as run_dir:
            res = train(model, self.tok, splits, cfg, run_dir, progress=False, device="cpu")
        model.eval()
        return {"spec": spec, "ft": score(model, self.tok, splits), "train": res.timing}

    def do(self, spec: dict) -> dict:
        path = self.out / "records" / f"{key_of(spec)}.json"
        if path.is_file():
            return json.loads(path.read_text())
        t0 = time.perf_counter()
        if spec["row"] == "zs":
            rec = self.zero_shot(spec)
        elif spec["row"] == "ft":
            rec = self.ft(spec)
        else:
            rec = self.run(spec)
        rec["spec"], rec["seconds"] = spec, round(time.perf_counter() - t0, 1)
        write_json_atomic(path, rec)
        print(summary(rec), flush=True)
        return rec


def summary(rec: dict) -> str:
    s = rec["spec"]
    parts = [json.dumps(s, sort_keys=True)]
    for k in ("full_zs", "ft", "emu_zs", "emu_ft", "plug_in"):
        if k in rec:
            parts.append(f"{k}={100 * rec[k]['acc']:.1f}")
    if "diagnostic" in rec:
        parts.append(f"cos={rec['diagnostic']['all']:.2f}")
    parts.append(f"{rec.get('seconds', 0):.0f}s")
    return " ".join(parts)


def emu(method="scaleot", nb=2, nt=2, alpha=0.5, beta=0.0, **kw) -> dict:
    return dict(method=method, nb=nb, nt=nt, alpha=alpha, beta=beta, **kw)


def tune(kind="full", lr=3e-4, seed=0, **kw) -> dict:
    return dict(tune=kind, lr=lr, seed=seed, **kw)


def plan(name: str, tasks: list[str], split: dict) -> list[dict]:
    """The experiment lists, one per hypothesis of issue 14 (``split``: n_train, n_test)."""
    specs = []
    for t in tasks:
        base = [{"row": "zs", "task": t, **split}]
        if name == "ceiling":  # the reference adapter: what any emulator's plug-in can reach
            base.append({"row": "offsite", "task": t, **split, **emu("reference", 2, 2), **tune()})
        elif name == "ft":
            base.append({"row": "ft", "task": t, **split, "lr": 5e-5, "seed": 0})
        elif name == "hyp":  # one hypothesis per line, in the order they are worth the CPU
            base += [
                {"row": "offsite", "task": t, **split, **emu("scaleot", 2, 2, 0.25), **tune()},   # alpha
                {"row": "offsite", "task": t, **split, **emu("scaleot", 0, 4, 0.25), **tune()},   # top only
                {"row": "offsite", "task": t, **split, **emu("uniform", 2, 2, 0.25), **tune()},   # baseline
                {"row": "offsite", "task": t, **split, **emu("scaleot", 2, 2, 0.5), **tune()},    # status quo
                {"row": "offsite", "task": t, **split, **emu("scaleot", 2, 2, 0.25), **tune("lora", 1e-3)},
                {"row": "offsite", "task": t, **split, **emu("scaleot", 3, 3, 0.25), **tune()},   # N_a
                {"row": "offsite", "task": t, **split, **emu("scaleot", 2, 2, 0.15), **tune()},
                {"row": "offsite", "task": t, **split, **emu("scaleot", 4, 0, 0.25), **tune()},   # bottom only
            ]
        elif name == "na":  # adapter size, ScaleOT at alpha 0.5 and the reference ceiling
            for nb in (2, 3, 4):
                base.append({"row": "offsite", "task": t, **split, **emu("reference", nb, nb), **tune()})
                base.append({"row": "offsite", "task": t, **split, **emu("scaleot", nb, nb, 0.5), **tune()})
        elif name == "alpha":
            for a in (0.15, 0.25, 0.35, 0.5):
                base.append({"row": "offsite", "task": t, **split, **emu("scaleot", 2, 2, a), **tune()})
        elif name == "matrix":  # the benchmark matrix at the default configuration, read from configs/default.yaml
            cfg = default_scale()
            m, ft = cfg["matrix"], cfg["ft"]
            size = (m["n_bottom"], m["n_top"])
            budget = tune(lr=cfg["finetune"]["lr"], steps=cfg["finetune"]["max_steps"])
            for method in MATRIX_METHODS:
                base.append({"row": "offsite", "task": t, **split, **emu(method, *size, m["alpha"], m["beta"]), **budget})
            for a in (a for a in m["alphas"] if a != m["alpha"]):
                base.append({"row": "offsite", "task": t, **split, **emu("scaleot", *size, a, m["beta"]), **budget})
            base.append({"row": "offsite", "task": t, **split, **emu("reference", *size), **budget})
            base.append({"row": "ft", "task": t, **split, "lr": ft["lr"], "seed": 0})
        elif name == "tuning":  # LoRA vs full, learning rate
            for kind, lr in (("full", 1e-4), ("full", 3e-4), ("full", 1e-3), ("lora", 1e-3), ("lora", 3e-3)):
                base.append({"row": "offsite", "task": t, **split, **emu("scaleot", 2, 2, 0.5), **tune(kind, lr)})
        else:
            raise SystemExit(f"unknown plan {name!r}")
        specs += base
    return specs


def method_of(s: dict) -> str:
    """The emulator column: the method, plus ``+calN`` when ScaleOT's harmonizers had N steps of
    stage-2 calibration (the harmonizer-objective hypothesis), so the two never pool together."""
    return s["method"] + (f"+cal{s['calibrate_steps']}" if s.get("calibrate_steps") else "")


def tuning(s: dict) -> str:
    """The tuning column: method, plus the budget when it is not the default one epoch."""
    label = s["tune"]
    if s.get("epochs", 1) != 1:
        label += f" x{s['epochs']} ep"
    if s.get("steps") is not None:
        label += f" {s['steps']} steps"
    return label


def paired(a: list[int], b: list[int]) -> tuple[float, float]:
    """mean(a - b) and its paired standard error, in points (scaleot.stats)."""
    mean, se = stats.paired_difference(a, b)
    return 100 * mean, 100 * se


spearman = stats.spearman  # Spearman rank correlation (average ranks for ties)
pooled = stats.pooled  # mean over tasks of (difference, se) and its standard error sqrt(sum se^2) / k


CONDITIONS = (  # issue 14's "done when", on the pooled tasks: (name, difference, threshold, min standard errors)
    ("Plug-in - Full ZS", ("plug_in", "full_zs"), 5.0, 3.0),
    ("Plug-in - FT", ("plug_in", "ft"), -2.0, None),
    ("Delta = Plug-in - Emu FT", ("plug_in", "emu_ft"), 3.0, 2.0),
    ("Full ZS - Emu ZS", ("full_zs", "emu_zs"), 5.0, None),
)


def conditions(recs: list[dict], zs: dict, ft: dict) -> list[str]:
    """The four conditions per configuration (method, split, alpha, beta, tuning, lr, seed), pooled
    over every task that has the configuration's record, its zero-shot and (for the FT one) FT."""
    groups: dict[tuple, list[dict]] = {}
    for r in recs:
        s = r["spec"]
        if s["row"] == "offsite" and s["method"] != "reference":
            cfg = (method_of(s), f"{s['nb']}+{s['nt']}", s["alpha"], s.get("beta", 0.0), tuning(s), s["lr"],
                   s["seed"], s["n_train"], s["n_test"])
            groups.setdefault(cfg, []).append(r)
    lines = ["Issue 14's conditions, pooled over the tasks each configuration ran on (mean of per-task paired "
             "differences, ± sqrt(sum se^2)/k; pass = the threshold, and the standard errors where asked):", "",
             "| emulator | N_a | alpha | beta | tuning | lr | seed | tasks | "
             + " | ".join(c[0] for c in CONDITIONS) + " |", "|---" * (8 + len(CONDITIONS)) + "|"]
    for cfg, rows in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        cells = []
        for _name, (a, b), thr, n_se in CONDITIONS:
            diffs = []
            for r in rows:
                key = (r["spec"]["task"], r["spec"]["n_train"], r["spec"]["n_test"])
                get = {"full_zs": zs.get(key), "ft": ft.get(key), **{k: r.get(k) for k in ("plug_in", "emu_ft",
                                                                                         "emu_zs")}}
                if get[a] is None or get[b] is None:
                    diffs = []
                    break
                diffs.append(paired(get[a]["correct"], get[b]["correct"]))
            if not diffs:
                cells.append("-")
                continue
            m, se = pooled(diffs)
            ok = m >= thr and (n_se is None or (se > 0 and m / se >= n_se))
            cells.append(f"{m:+.1f} ± {se:.1f} {'pass' if ok else 'FAIL'}")
        lines.append(f"| {cfg[0]} | {cfg[1]} | {cfg[2]} | {cfg[3]} | {cfg[4]} | {cfg[5]} | {cfg[6]} | {len(rows)} | "
                     + " | ".join(cells) + " |")
    lines.append("")
    return lines


def matched(recs: list[dict]) -> list[str]:
    """ScaleOT's plug-in against every other method at matched size (same split, alpha, beta,
    tuning, lr, seed, budget): paired difference pooled over the tasks both ran on."""
    def size(s):
        return (s["nb"], s["nt"], s["alpha"], s.get("beta", 0.0), tuning(s), s["lr"], s["seed"], s["n_train"],
                s["n_test"])
    offsite = [r for r in recs if r["spec"]["row"] == "offsite" and r["spec"]["method"] != "reference"]
    ours = {(size(r["spec"]), r["spec"]["task"]): r for r in offsite if method_of(r["spec"]) == "scaleot"}
    pairs: dict[tuple, list[tuple[float, float]]] = {}
    for r in offsite:
        s = r["spec"]
        mine = ours.get((size(s), s["task"]))
        if method_of(s) != "scaleot" and mine is not None:
            pairs.setdefault((method_of(s), size(s)), []).append(
                paired(mine["plug_in"]["correct"], r["plug_in"]["correct"]))
    if not pairs:
        return []
    lines = ["ScaleOT's plug-in minus each baseline's at matched size (same N_a, alpha, beta, tuning, seed), "
             "pooled over the tasks both ran on:", "", "| baseline | N_a | alpha | beta | tuning | lr | seed | tasks | "
             "ScaleOT - baseline (plug-in) |", "|---" * 9 + "|"]
    for (method, sz), diffs in sorted(pairs.items(), key=lambda kv: tuple(map(str, kv[0]))):
        m, se = pooled(diffs)
        lines.append(f"| {method} | {sz[0]}+{sz[1]} | {sz[2]} | {sz[3]} | {sz[4]} | {sz[5]} | {sz[6]} | {len(diffs)} | "
                     f"{m:+.1f} ± {se:.1f} |")
    lines.append("")
    return lines


def over_seeds(per_seed: dict[int, list[tuple[list[int], list[int]]]]) -> dict:
    """:func:`scaleot.stats.over_seeds` in points (``per_seed``: seed -> per task ``(a correct, b correct)``)."""
    q = stats.over_seeds(per_seed)
    return {**{k: 100 * q[k] for k in ("mean", "se_test", "sd_seed", "se")}, "k": q["k"],
            "by_seed": [100 * x for x in q["by_seed"]]}


def seeded(recs: list[dict], zs: dict, ft: dict) -> list[str]:
    """Configurations run with more than one training seed on the same tasks: the four conditions
    and ScaleOT's matched-size margin, as the mean over seeds with seed noise in the error."""
    def cfg_of(s):
        return (method_of(s), s["nb"], s["nt"], s["alpha"], s.get("beta", 0.0), tuning(s), s["lr"],
                s["n_train"], s["n_test"])
    groups: dict[tuple, dict[int, dict[str, dict]]] = {}
    for r in recs:
        s = r["spec"]
        if s["row"] == "offsite" and s["method"] != "reference":
            groups.setdefault(cfg_of(s), {}).setdefault(s["seed"], {})[s["task"]] = r
    def complete(by_seed):  # seeds that ran every task any seed ran
        tasks = sorted({t for recs_t in by_seed.values() for t in recs_t})
        return tasks, {sd: rt for sd, rt in by_seed.items() if all(t in rt for t in tasks)}
    lines = []
    for cfg, by_seed in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        tasks, full = complete(by_seed)
        if len(full) < 2:
            continue
        if not lines:
            lines = ["Over training seeds (same test examples; mean over seeds ± sqrt(se_test^2 + sd_seed^2/k): "
                     "se_test the paired test-sampling error of the seed-averaged difference, sd_seed the spread "
                     "of the per-seed pooled differences):", "",
                     "| emulator | N_a | alpha | beta | tuning | seeds | tasks | quantity | mean ± se | se_test | "
                     "sd_seed | per seed |", "|---" * 12 + "|"]
        quantities = []
        for name, (a, b), thr, n_se in CONDITIONS:
            per_seed = {}
            for sd, rt in full.items():
                pairs = []
                for t in tasks:
                    r = rt[t]
                    key = (t, r["spec"]["n_train"], r["spec"]["n_test"])
                    get = {"full_zs": zs.get(key), "ft": ft.get(key), **{x: r.get(x) for x in ("plug_in", "emu_ft",
                                                                                             "emu_zs")}}
                    if get[a] is None or get[b] is None:
                        break
                    pairs.append((get[a]["correct"], get[b]["correct"]))
                else:
                    per_seed[sd] = pairs
            if len(per_seed) == len(full):
                quantities.append((name, over_seeds(per_seed), thr, n_se))
        if cfg[0] != "scaleot":  # ScaleOT's margin over this baseline, seed by seed
            ours = groups.get(("scaleot", *cfg[1:]), {})
            both = {sd: [(ours[sd][t]["plug_in"]["correct"], full[sd][t]["plug_in"]["correct"]) for t in tasks]
                    for sd in full if sd in ours and all(t in ours[sd] for t in tasks)}
            if len(both) >= 2:
                quantities.append((f"ScaleOT - {cfg[0]} (plug-in)", over_seeds(both), None, None))
        for name, q, thr, n_se in quantities:
            verdict = ""
            if thr is not None:
                ok = q["mean"] >= thr and (n_se is None or (q["se"] > 0 and q["mean"] / q["se"] >= n_se))
                verdict = " pass" if ok else " FAIL"
            lines.append(f"| {cfg[0]} | {cfg[1]}+{cfg[2]} | {cfg[3]} | {cfg[4]} | {cfg[5]} | {q['k']} | {len(tasks)} | "
                         f"{name} | {q['mean']:+.1f} ± {q['se']:.1f}{verdict} | {q['se_test']:.1f} | {q['sd_seed']:.1f} |"
                         f" {', '.join(f'{x:+.1f}' for x in q['by_seed'])} |")
    return lines + [""] if lines else []


def report(out: Path, tasks: list[str] | None = None) -> str:
    """One table row per offsite record: Emu ZS, Emu FT, Plug-in and the gains with paired se;
    then the diagnostic's rank correlation with the plug-in gain. ``tasks``: only these tasks'
    records (every pooled figure is then over these tasks alone)."""
    recs = [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]
    if tasks:
        recs = [r for r in recs if r["spec"]["task"] in tasks]
    zs = {(r["spec"]["task"], r["spec"]["n_train"], r["spec"]["n_test"]): r["full_zs"] for r in recs
          if r["spec"]["row"] == "zs"}
    ft = {(r["spec"]["task"], r["spec"]["n_train"], r["spec"]["n_test"]): r["ft"] for r in recs
          if r["spec"]["row"] == "ft"}
    lines = [f"Records of {', '.join(t.removeprefix('bigbench:') for t in tasks)} only (`--tasks`).", ""] if tasks else []
    lines += ["| task | emulator | N_a | alpha | beta | tuning | lr | seed | cos (all / min block) | Full ZS | Emu ZS | "
             "Emu FT | Plug-in | Plug-in - Full ZS | Plug-in - Emu FT | FT |", "|---" * 16 + "|"]
    xs, ys, in_matrix = [], [], []
    for r in sorted((r for r in recs if r["spec"]["row"] == "offsite"),
                    key=lambda r: (r["spec"]["task"], method_of(r["spec"]), r["spec"]["nb"], r["spec"]["alpha"])):
        s = r["spec"]
        key = (s["task"], s["n_train"], s["n_test"])
        base = zs.get(key)
        plug = r["plug_in"]
        gain = paired(plug["correct"], base["correct"]) if base else None
        delta = paired(plug["correct"], r["emu_ft"]["correct"]) if "emu_ft" in r else None
        d = r.get("diagnostic")
        if d and gain:
            xs.append(d["all"])
            ys.append(gain[0])
            in_matrix.append(key_of(s) in {key_of(m) for m in plan("matrix", [s["task"]], {
                "n_train": s["n_train"], "n_test": s["n_test"]})})
        f = ft.get(key)
        lines.append(
            f"| {s['task'].removeprefix('bigbench:')} | {method_of(s)} | {s['nb']}+{s['nt']} | {s['alpha']} | "
            f"{s.get('beta', 0)} | {tuning(s)} | {s['lr']} | {s['seed']} | "
            + (f"{d['all']:.2f} / {d['min_block']:.2f}" if d else "1 (full model)") + " | "
            + (f"{100 * base['acc']:.1f}" if base else "-") + " | "
            + (f"{100 * r['emu_zs']['acc']:.1f}" if "emu_zs" in r else "-") + " | "
            + (f"{100 * r['emu_ft']['acc']:.1f}" if "emu_ft" in r else "-") + " | "
            + f"{100 * plug['acc']:.1f} | "
            + (f"{gain[0]:+.1f} ± {gain[1]:.1f}" if gain else "-") + " | "
            + (f"{delta[0]:+.1f} ± {delta[1]:.1f}" if delta else "-") + " | "
            + (f"{100 * f['acc']:.1f}" if f else "-") + " |")
    lines.append("")
    lines += conditions(recs, zs, ft)
    lines += matched(recs)
    lines += seeded(recs, zs, ft)
    if len(xs) >= 3:
        lines.append(f"Transfer diagnostic (task-batch gradient cosine, all adapter weights) against the measured "
                     f"plug-in gain over {len(xs)} emulator-tuned records: Spearman rank correlation "
                     f"{spearman(xs, ys):+.2f}.")
    mx = [(x, y) for x, y, m in zip(xs, ys, in_matrix, strict=True) if m]
    if len(mx) >= 3:
        lines.append(f"Over the {len(mx)} records of the matrix at the default configuration (`--plan matrix`): "
                     f"Spearman {spearman([x for x, _ in mx], [y for _, y in mx]):+.2f}.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, help="model name or HF folder (the full model; records are not keyed by it: give another --out)")
    ap.add_argument("--out", default="runs/transfer")
    ap.add_argument("--importance", default="runs/transfer/importance")
    ap.add_argument("--plan", nargs="*", default=[])
    ap.add_argument("--spec", nargs="*", default=[], help="JSON experiment specs")
    ap.add_argument("--tasks", nargs="*", default=None,
                    help="tasks of --plan (default: configs/default.yaml's); with --report: only these tasks' records")
    ap.add_argument("--n-train", type=int, default=400)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--report", help="write the table of every record here (no tuning)")
    args = ap.parse_args()
    if args.report:
        text = report(Path(args.out), args.tasks)
        Path(args.report).write_text(text + "\n")
        print(text)
        return
    split = {"n_train": args.n_train, "n_test": args.n_test}
    specs = [s for p in args.plan for s in plan(p, args.tasks or TASKS, split)] + [json.loads(s) for s in args.spec]
    if not specs:
        sys.exit("nothing to do: give --plan or --spec")
    torch.manual_seed(0)
    lab = Lab(args)
    for s in specs:
        lab.do(s)


if __name__ == "__main__":
    main()
