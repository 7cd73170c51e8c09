"""The measurements of ``bench/gpu_check.sh`` on a random-initialised model (nothing downloaded).

1. Emulator tuning against FT throughput (tokens/s) in bf16, against the FLOP-count limit.
   FT trains every parameter of the full model: ``6 P_full`` FLOPs per token (forward 2,
   backward 4; ``P`` counts the blocks and the LM head, not the embedding lookup). Emulator tuning trains the adapter blocks through a frozen emulator: a
   forward and an activation-gradient backward through the emulator (``4 P_emu``) plus the
   weight gradients of the adapter blocks (``2 P_A``). The limit of the speed-up is
   ``6 P_full / (4 P_emu + 2 P_A)``; the measured ratio is reported beside it.
2. Peak CUDA memory of IST, LoRA and full fine-tuning at the same batch, through the real
   ``FinetuneRecipe`` on the full model (the FT row with each method).
3. The cost of one stage-1 step (a harmonizer step and a score step of ``ImportanceTrainer``).

``--tiny`` uses a 4-block hidden-64 llama, so the whole script runs in seconds on a CPU
(that is how ``tests/test_gpu_check.py`` keeps it from rotting); without it the model has
TinyLlama-1.1B's shape. Writes ``OUT/gpu_check.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from contextlib import contextmanager
from pathlib import Path

import torch

SHAPES = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=6, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=49152, tie_word_embeddings=True),
    "tinyllama-1.1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                           num_key_value_heads=4, vocab_size=49152, tie_word_embeddings=False),
}


def build_folder(root: Path, shape: str) -> Path:
    """A random llama of ``SHAPES[shape]`` with the default model's (SmolLM2's) tokenizer, saved as an HF folder."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from scaleot.models import DEFAULT_MODEL, resolve_model_path

    folder = root / f"model-{shape}"
    if (folder / "config.json").is_file():
        return folder
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**SHAPES[shape], max_position_embeddings=2048)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve_model_path(DEFAULT_MODEL)).save_pretrained(folder)
    return folder


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def peak_memory(device: torch.device, out: dict, key: str):
    """``out[key]`` = peak CUDA bytes allocated inside the block (``None`` on CPU)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    yield
    out[key] = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def tokens_per_second(model, params, device, batch: int, seq: int, steps: int) -> float:
    """Training throughput of ``model`` updating ``params`` (AdamW, bf16 autocast on CUDA)."""
    opt = torch.optim.AdamW(params, lr=1e-5)
    x = torch.randint(3, 1000, (batch, seq), device=device)
    model.train()
    times = []
    for i in range(steps + 2):  # two warm-up steps
        sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = model(input_ids=x, labels=x, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    del opt
    return batch * seq * len(times) / sum(times)


def throughput(folder: Path, device: torch.device, dtype: torch.dtype, batch: int, seq: int, steps: int) -> dict:
    """Emulator tuning vs FT tokens/s and the FLOP-count limit of their ratio."""
    from scaleot.model_owner.emulator import EmulatorConfig, build_emulator
    from scaleot.models import get_blocks, load_model

    full, _ = load_model(str(folder), device=str(device), dtype=str(dtype).removeprefix("torch."))
    emu = build_emulator(full, EmulatorConfig(method="uniform", n_bottom=2, n_top=2, alpha=0.5, beta=0.3,
                                              diagnostic_blocks=0)).model
    adapter = [b for i, b in enumerate(get_blocks(emu)) if i in (0, 1, len(get_blocks(emu)) - 2,
                                                                len(get_blocks(emu)) - 1)]
    # FLOP-bearing parameters: the blocks and the LM head (the embedding lookup costs no FLOPs)
    head = full.get_output_embeddings().weight.numel()
    p_full = sum(p.numel() for b in get_blocks(full) for p in b.parameters()) + head
    p_emu = sum(p.numel() for b in get_blocks(emu) for p in b.parameters()) + head
    p_a = sum(p.numel() for b in adapter for p in b.parameters())
    emu.requires_grad_(False)
    a_params = [p for b in adapter for p in b.parameters()]
    for p in a_params:
        p.requires_grad_(True)
    tps_emu = tokens_per_second(emu, a_params, device, batch, seq, steps)
    del emu, adapter, a_params
    full.requires_grad_(True)
    tps_ft = tokens_per_second(full, list(full.parameters()), device, batch, seq, steps)
    del full
    limit = 6 * p_full / (4 * p_emu + 2 * p_a)
    return {"params_full": p_full, "params_emulator": p_emu, "params_adapter": p_a, "batch": batch, "seq": seq,
            "ft_tokens_per_s": round(tps_ft, 1), "emulator_tokens_per_s": round(tps_emu, 1),
            "speedup": round(tps_emu / tps_ft, 3), "flop_limit": round(limit, 3),
            "fraction_of_limit": round(tps_emu / tps_ft / limit, 3)}


def method_memory(folder: Path, root: Path, device: torch.device, batch: int, seq: int) -> dict:
    """Peak CUDA memory of full, LoRA and IST fine-tuning at the same batch (2 steps each)."""
    from scaleot.data_owner.finetune import FinetuneConfig
    from scaleot.recipes.finetune import FinetuneRecipe

    task = root / "parity.jsonl"
    task.write_text("".join(json.dumps({"context": f"Is {x} even?\nA:", "choices": [" yes", " no"],
                                        "label": x % 2}) + "\n" for x in range(64)))
    out: dict = {}
    for method in ("ist", "lora", "full"):
        cfg = FinetuneConfig(method=method, max_steps=2, batch_size=batch, max_length=seq, n_train=16, n_val=4,
                             n_test=4, val_limit=4, checkpoint_every=0)
        t0 = time.perf_counter()
        with peak_memory(device, out, f"{method}_peak_bytes"):
            FinetuneRecipe.of(root / f"ft-{method}", str(task), cfg, model=str(folder), progress=False,
                           overwrite=True, device=str(device)).run()
        out[f"{method}_seconds"] = round(time.perf_counter() - t0, 2)
    return out


def stage1_step(folder: Path, device: torch.device, dtype: torch.dtype, seq: int) -> dict:
    """Seconds and peak memory of one harmonizer step and one score step of stage 1."""
    from scaleot.model_owner.importance import ImportanceConfig, ImportanceTrainer
    from scaleot.models import load_model

    model, _ = load_model(str(folder), device=str(device), dtype=str(dtype).removeprefix("torch."))
    g = torch.Generator().manual_seed(0)
    blocks = torch.randint(3, 1000, (16, seq), generator=g)
    cfg = ImportanceConfig(n_bottom=2, n_top=2, steps=1, batch_size=4, score_batch_size=4, block_size=seq,
                           autocast="bf16" if device.type == "cuda" else "none", checkpoint_every=0)
    trainer = ImportanceTrainer(model, blocks, blocks[:8], cfg, progress=False)
    out: dict = {}
    trainer.harmonizer_step()  # warm-up
    for name, fn in (("harmonizer_step", trainer.harmonizer_step), ("score_step", trainer.score_step)):
        with peak_memory(device, out, f"{name}_peak_bytes"):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
        out[f"{name}_s"] = round(time.perf_counter() - t0, 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="a tiny model: the CPU run that keeps this script working")
    ap.add_argument("--out", type=Path, default=Path("bench/results/gpu_check"))
    ap.add_argument("--work", type=Path, default=None, help="model folders (default OUT/work)")
    a = ap.parse_args()
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device (use --device cpu --tiny for the CPU run)")
    shape = "tiny" if a.tiny else "tinyllama-1.1b"
    batch, seq, steps = (2, 32, 2) if a.tiny else (8, 512, 5)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    work = a.work or a.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    folder = build_folder(work, shape)
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
              "shape": shape, "dtype": str(dtype), "torch": torch.__version__,
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for key, fn in (("throughput", lambda: throughput(folder, device, dtype, batch, seq, steps)),
                    ("method_memory", lambda: method_memory(folder, work, device, batch, seq)),
                    ("stage1_step", lambda: stage1_step(folder, device, dtype, seq))):
        t0 = time.perf_counter()
        result[key] = fn()
        result[key]["wall_s"] = round(time.perf_counter() - t0, 1)
        print(f"[gpu_check] {key}: {json.dumps(result[key])}", flush=True)
    (a.out / "gpu_check.json").write_text(json.dumps(result, indent=1))
    t, m = result["throughput"], result["method_memory"]
    gib = lambda b: "n/a (CPU)" if b is None else f"{b / 2**30:.2f}"  # noqa: E731
    print(f"\n| device | {result['device']} ({shape}, {result['dtype']}) |\n|---|---|\n"
          f"| FT tokens/s | {t['ft_tokens_per_s']} |\n| emulator-tuning tokens/s | {t['emulator_tokens_per_s']} |\n"
          f"| speed-up / FLOP limit | {t['speedup']} / {t['flop_limit']} ({t['fraction_of_limit']:.0%}) |\n"
          f"| peak GiB full / LoRA / IST (batch {batch} x {seq}) | {gib(m['full_peak_bytes'])} / "
          f"{gib(m['lora_peak_bytes'])} / {gib(m['ist_peak_bytes'])} |\n"
          f"| stage-1 harmonizer step / score step | {result['stage1_step']['harmonizer_step_s']} s / "
          f"{result['stage1_step']['score_step_s']} s |")


if __name__ == "__main__":
    main()
