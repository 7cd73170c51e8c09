"""Helpers for the trust-boundary tests: folder digests, re-manifesting, forging adapters."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from scaleot.data_owner.finetune import FinetuneConfig
from scaleot.exchange.manifest import read_json, write_manifest
from scaleot.recipes.finetune import FinetuneRecipe


def folder_digest(folder: Path) -> str:
    """sha256 over every path, link target and file content below ``folder`` (or of a file)."""
    folder = Path(folder)
    h = hashlib.sha256()
    if folder.is_file():
        h.update(folder.read_bytes())
        return h.hexdigest()
    for p in sorted(folder.rglob("*")):
        h.update(p.relative_to(folder).as_posix().encode())
        if p.is_symlink():
            h.update(b"->" + str(p.readlink()).encode())
        elif p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def remanifest(folder: Path) -> None:
    """Rewrite the manifest over the folder's current files, keeping its kind and info (a forger's move)."""
    old = read_json(folder / "manifest.json", "manifest")
    write_manifest(folder, old["kind"], old.get("info"))


def copy_artifact(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def edit_json(path: Path, fn) -> None:
    doc = json.loads(path.read_text())
    new = fn(doc)
    doc = new if isinstance(new, dict | list) else doc
    path.write_text(json.dumps(doc))


def edit_tensors(path: Path, fn) -> None:
    state = load_file(str(path))
    fn(state)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))


def lora_pair(r: int, out_f: int, in_f: int, scale: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(r, in_f, generator=g) * scale, torch.randn(out_f, r, generator=g) * scale


def tune_config(**kw) -> FinetuneConfig:
    base = dict(method="lora", epochs=1, n_val=16, n_test=16, n_train=32, batch_size=8, lr=1e-2)
    return FinetuneConfig(**dict(base, **kw))


@pytest.fixture(scope="module")
def adapters(tiny_world, tmp_path_factory):
    """``{"lora": DIR, "full": DIR}``: adapters tuned on the tiny emulator (run folders beside them)."""
    root, model_dir, task, emu = tiny_world
    base = tmp_path_factory.mktemp("adapters")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    for method in ("lora", "full"):
        out[method] = FinetuneRecipe.of(base / method, str(task), tune_config(method=method), device="cpu", emulator=emu,
                                     progress=False).run()
    torch.set_num_threads(n)
    return out
