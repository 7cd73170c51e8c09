"""CUDA checks (marker ``gpu``): the CPU tests' numerics on the device in bf16, and FSDP.

Skipped without CUDA. ``bench/gpu_check.sh`` runs them on a lent GPU; its CPU run
(``--device cpu --tiny``, :mod:`tests.test_gpu_check`) sets ``SCALEOT_GPU_TEST_DEVICE=cpu``
so they run here too and cannot rot (FSDP stays CUDA-only).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.finetune_helpers import tiny_world  # noqa: F401

DEVICE = os.environ.get("SCALEOT_GPU_TEST_DEVICE", "cuda")
ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(), reason="no CUDA device"),
]


def _ids(n: int = 2, t: int = 16) -> torch.Tensor:
    return torch.randint(3, 1000, (n, t), generator=torch.Generator().manual_seed(0))


def _close_bf16(got: torch.Tensor, want: torch.Tensor) -> None:
    """bf16 weights and activations against fp32: a loose absolute bound, and the same argmax mostly."""
    got, want = got.float().cpu(), want.float().cpu()
    assert torch.isfinite(got).all()
    assert (got - want).abs().max() < 0.05 * want.abs().max() + 0.05
    assert (got.argmax(-1) == want.argmax(-1)).float().mean() > 0.9


def test_emulator_bundle_on_device_in_bf16(tiny_world):  # noqa: F811
    from scaleot.models.emulator import load_emulator

    emu = tiny_world[3]
    ref = load_emulator(emu, device="cpu", dtype="float32").model
    dev = load_emulator(emu, device=DEVICE, dtype="bfloat16").model
    assert next(dev.parameters()).dtype == torch.bfloat16
    with torch.no_grad():
        _close_bf16(dev(_ids().to(DEVICE)).logits, ref(_ids()).logits)


def test_plugged_lora_equals_peft_on_device(tiny_world, tmp_path):  # noqa: F811
    """The peft round trip of tests/test_hf_artifacts.py, on the device in bf16."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from scaleot.model_owner.plug import plug
    from scaleot.recipes.finetune import FinetuneRecipe
    from tests.trust_helpers import tune_config

    root, model_dir, task, emu = tiny_world
    adapter = FinetuneRecipe.of(tmp_path / "ad", str(task), tune_config(method="lora"), emulator=emu, device=DEVICE,
                             progress=False).run()
    plugged = plug(str(model_dir), adapter, tmp_path / "pl", device=DEVICE, emulator=emu)
    want = AutoModelForCausalLM.from_pretrained(plugged, dtype=torch.bfloat16).to(DEVICE).eval()
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).to(DEVICE)
    got = PeftModel.from_pretrained(base, str(adapter)).eval()
    with torch.no_grad():
        _close_bf16(got(_ids().to(DEVICE)).logits, want(_ids().to(DEVICE)).logits)


def test_stage1_step_on_device_with_bf16_autocast(tiny_world):  # noqa: F811
    from scaleot.model_owner.importance import ImportanceConfig, ImportanceTrainer
    from scaleot.models import load_model

    model, _ = load_model(str(tiny_world[1]), device=DEVICE)
    blocks = _ids(8, 32)
    cfg = ImportanceConfig(n_bottom=1, n_top=1, steps=2, batch_size=2, score_batch_size=2, block_size=32,
                           autocast="bf16", checkpoint_every=0)
    trainer = ImportanceTrainer(model, blocks, blocks, cfg, progress=False)
    loss = trainer.harmonizer_step()
    losses, keep = trainer.score_step()
    assert torch.isfinite(torch.tensor(loss)) and torch.isfinite(losses).all()
    assert torch.isfinite(trainer.scores).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FSDP runs on CUDA only")
def test_fsdp_full_finetune_through_accelerate(tiny_world, tmp_path):  # noqa: F811
    """The FT row (full fine-tuning of the whole model) under FSDP, one process per GPU."""
    root, model_dir, task, emu = tiny_world
    n = torch.cuda.device_count()
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "configs/accelerate/fsdp.yaml"), "--num_processes", str(n), "-m", "scaleot.cli", "finetune",
           "--model", str(model_dir), "--task", str(task), "--method", "full", "--steps", "2", "--batch-size",
           str(2 * n), "--n-train", "16", "--n-val", "8", "--n-test", "8",
           "--out", str(tmp_path / "ft")]
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}:{ROOT}")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "ft" / "manifest.json").is_file()
