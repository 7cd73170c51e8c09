"""Training checkpoints without pickle: tensors in safetensors, the rest in JSON.

A checkpoint folder ``<run>/checkpoints/step-<N>/`` holds:

- ``tensors.safetensors``: trainable weights (``model.<name>``), the optimizer's tensor
  state (``optim.<param_index>.<key>``), and the torch RNG states (``rng.cpu``, ``rng.cuda.<i>``);
- ``state.json``: step, data position, Python ``random`` state, the optimizer's scalar
  state and param groups, and anything else the recipe adds.

It is written to a temporary folder and renamed, so a crash mid-save leaves the
previous checkpoint intact. :func:`latest_checkpoint` finds the newest complete one.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from scaleot.exchange.manifest import atomic_output_dir


def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into tensors and JSON-able rest."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], rest: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, t in tensors.items():
        if name.startswith("optim."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = t
    for idx, kv in rest.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(kv)
    optimizer.load_state_dict({"state": state, "param_groups": rest["param_groups"]})


def rng_tensors() -> dict[str, torch.Tensor]:
    out = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng.cuda.{i}"] = s
    return out


def restore_rng(tensors: dict[str, torch.Tensor], py_state: list | None) -> None:
    if "rng.cpu" in tensors:
        torch.set_rng_state(tensors["rng.cpu"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    if py_state is not None:
        random.setstate((py_state[0], tuple(py_state[1]), py_state[2]))


def save_checkpoint(
    run_dir: str | Path, step: int, weights: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer | None, state: dict, keep: int = 2,
) -> Path:
    """Save a checkpoint ``step-<step>`` and prune all but the newest ``keep``."""
    root = Path(run_dir) / "checkpoints"
    target = root / f"step-{step:08d}"
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in weights.items()}
    tensors.update(rng_tensors())
    meta = dict(state, step=step, python_random=list(random.getstate()))
    if optimizer is not None:
        opt_t, opt_rest = optimizer_to_flat(optimizer)
        tensors.update(opt_t)
        meta["optimizer"] = opt_rest
    with atomic_output_dir(target) as tmp:
        save_file(tensors, str(tmp / "tensors.safetensors"))
        (tmp / "state.json").write_text(json.dumps(meta, default=str))
    from scaleot.provenance import prunable

    for old in prunable(root, step, meta, keep):  # only this run's older checkpoints
        shutil.rmtree(old, ignore_errors=True)
    return target


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    root = Path(run_dir) / "checkpoints"
    done = sorted(p for p in root.glob("step-*") if (p / "state.json").is_file())
    return done[-1] if done else None


def load_checkpoint(
    path: str | Path, optimizer: torch.optim.Optimizer | None = None, restore_random: bool = True,
) -> tuple[dict[str, torch.Tensor], dict]:
    """Load ``(weights, state)``; restores the optimizer and RNG states in place."""
    from scaleot.errors import ScaleOTError
    from scaleot.exchange.schemas import CheckpointStateDoc, validate_doc
    from scaleot.validate.files import load_safetensors, read_json_object

    path = Path(path)
    state = read_json_object(path / "state.json", "checkpoint state")
    validate_doc(CheckpointStateDoc, state, f"checkpoint state {path / 'state.json'}")
    tensors = load_safetensors(path / "tensors.safetensors", f"checkpoint {path}")
    try:
        if optimizer is not None and "optimizer" in state:
            optimizer_from_flat(optimizer, tensors, state["optimizer"])
        if restore_random:
            restore_rng(tensors, state.get("python_random"))
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as e:
        raise ScaleOTError(f"checkpoint {path} does not fit this run ({str(e).splitlines()[0][:120]})") from None
    weights = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    return weights, state
